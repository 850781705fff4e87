//! Tests of the test hooks (status, delays, malformed usage, cut streams) and of streams
//! served over TCP as separate chunks.

use super::*;

#[tokio::test]
async fn status_hook_answers_the_providers_error_envelope() {
    for (status, kind) in [(429, "rate_limit_error"), (500, "api_error")] {
        for stream in [false, true] {
            let (got, headers, body) = call(post(
                "/v1/messages",
                &[("x-demo-status", &status.to_string())],
                &anthropic_request(stream),
            ))
            .await;
            assert_eq!(got.as_u16(), status);
            assert_eq!(headers["content-type"], "application/json");
            assert_eq!(body["type"], "error");
            assert_eq!(body["error"]["type"], kind);
            assert!(body["error"]["message"].is_string());
            assert!(body.get("usage").is_none());
            assert_eq!(headers.contains_key("retry-after"), status == 429);
        }
    }
    for (status, kind, code) in [
        (429, "requests", json!("rate_limit_exceeded")),
        (500, "server_error", Value::Null),
    ] {
        let (got, _, body) = call(post(
            "/v1/chat/completions",
            &[("x-demo-status", &status.to_string())],
            &openai_request(true, Some(true)),
        ))
        .await;
        assert_eq!(got.as_u16(), status);
        assert_eq!(body["error"]["type"], kind);
        assert_eq!(body["error"]["code"], code);
        assert!(body["error"]["message"].is_string());
        assert!(body.get("usage").is_none());
    }
}

#[tokio::test]
async fn bad_hooks_and_bodies_are_400_in_the_style() {
    for headers in [
        [("x-demo-status", "200")],
        [("x-demo-status", "abc")],
        [("x-demo-delay-ms", "-1")],
        [("x-demo-cut-stream", "x")],
    ] {
        let (status, _, body) =
            call(post("/v1/messages", &headers, &anthropic_request(false))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["type"], "invalid_request_error");
    }
    for bad in [
        json!([1]),
        json!({"messages": []}),
        json!({"model": "m"}),
        json!({"model": "m", "messages": [], "max_tokens": -1}),
        json!({"model": "m", "messages": [], "stream": "yes"}),
    ] {
        let (status, _, body) = call(post("/v1/chat/completions", &[], &bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(body["error"]["type"], "invalid_request_error");
    }
}

#[tokio::test]
async fn delay_hook_waits_and_is_bounded() {
    let started = std::time::Instant::now();
    let (status, _, _) = call(post(
        "/v1/messages",
        &[("x-demo-delay-ms", "60")],
        &anthropic_request(false),
    ))
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(60));
    let mut headers = HeaderMap::new();
    headers.insert("x-demo-delay-ms", HeaderValue::from_static("999999999"));
    headers.insert("x-demo-event-delay-ms", HeaderValue::from_static("70000"));
    let hooks = Hooks::parse(&headers).unwrap();
    assert_eq!(hooks.delay, Duration::from_millis(DELAY_MS_MAX));
    assert_eq!(hooks.event_delay, Some(Duration::from_millis(DELAY_MS_MAX)));
}

#[tokio::test]
async fn event_delay_spaces_the_events() {
    let started = std::time::Instant::now();
    let mut request = openai_request(true, None);
    request["max_completion_tokens"] = json!(2);
    // role, 2 words, finish, [DONE]: 4 pauses
    let (_, _, chunks, _) = read_chunks(post(
        "/v1/chat/completions",
        &[("x-demo-event-delay-ms", "20")],
        &request,
    ))
    .await;
    assert_eq!(chunks.len(), 5);
    assert!(started.elapsed() >= Duration::from_millis(80));
}

#[tokio::test]
async fn malformed_usage_hook() {
    let malformed = [("x-demo-malformed-usage", "1")];
    let (_, _, body) = call(post("/v1/messages", &malformed, &anthropic_request(false))).await;
    assert_eq!(body["usage"]["input_tokens"], "8");
    assert!(body["usage"]["output_tokens"].as_i64().unwrap() < 0);
    let (_, _, chunks, _) =
        read_chunks(post("/v1/messages", &malformed, &anthropic_request(true))).await;
    let events: Vec<(String, Value)> = chunks.iter().map(|c| anthropic_event(c)).collect();
    assert_eq!(events[0].1["message"]["usage"]["input_tokens"], "8");
    let delta = events
        .iter()
        .find(|(name, _)| name == "message_delta")
        .unwrap();
    assert!(delta.1["usage"]["output_tokens"].as_i64().unwrap() < 0);
    let (_, _, body) = call(post(
        "/v1/chat/completions",
        &malformed,
        &openai_request(false, None),
    ))
    .await;
    assert_eq!(body["usage"]["prompt_tokens"], "7");
    assert!(body["usage"]["completion_tokens"].as_i64().unwrap() < 0);
    let (_, _, chunks, _) = read_chunks(post(
        "/v1/chat/completions",
        &malformed,
        &openai_request(true, Some(true)),
    ))
    .await;
    let usage = openai_chunk(&chunks[chunks.len() - 2]).unwrap();
    assert_eq!(usage["usage"]["prompt_tokens"], "7");
    assert!(usage["usage"]["completion_tokens"].as_i64().unwrap() < 0);
    // An unset or 0 hook leaves the usage well-formed.
    let (_, _, body) = call(post(
        "/v1/messages",
        &[("x-demo-malformed-usage", "0")],
        &anthropic_request(false),
    ))
    .await;
    assert_eq!(body["usage"]["input_tokens"], 8);
}

#[tokio::test]
async fn cut_stream_hook_ends_abruptly() {
    let (status, _, chunks, failed) = read_chunks(post(
        "/v1/messages",
        &[("x-demo-cut-stream", "5")],
        &anthropic_request(true),
    ))
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(failed, "the body ends in an error");
    assert_eq!(chunks.len(), 5);
    assert!(chunks.iter().all(|c| !c.contains("message_delta")));
    assert!(chunks[0].starts_with("event: message_start"));
    let (_, _, chunks, failed) = read_chunks(post(
        "/v1/chat/completions",
        &[("x-demo-cut-stream", "3")],
        &openai_request(true, Some(true)),
    ))
    .await;
    assert!(failed);
    assert_eq!(chunks.len(), 3);
    assert!(chunks.iter().all(|c| !c.contains("[DONE]")));
    assert!(chunks
        .iter()
        .all(|c| openai_chunk(c).unwrap()["usage"].is_null()));
    // Ignored when not streamed.
    let (status, _, body) = call(post(
        "/v1/messages",
        &[("x-demo-cut-stream", "1")],
        &anthropic_request(false),
    ))
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["usage"]["output_tokens"], 32);
}

#[tokio::test]
async fn serves_over_tcp_as_separate_chunks() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, router()).await });
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let response = client
        .post(format!("http://{address}/v1/messages"))
        .header("x-demo-event-delay-ms", "5")
        .json(&anthropic_request(true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut response = response;
    let mut received = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        received.push(chunk);
    }
    // Paced events arrive one by one, not as one buffered body.
    assert!(received.len() > 10, "{} chunks", received.len());
    let text: String = received
        .iter()
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    assert!(text.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));
    server.abort();
}
