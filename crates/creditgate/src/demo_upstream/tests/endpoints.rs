//! Tests of the Responses API, embeddings, the token count and the model catalogue.

use super::*;

/// A Responses request: instructions 10 bytes + input 13 bytes = 23 → 6 tokens.
fn responses_request(stream: bool, extra: Value) -> Value {
    let mut request = json!({
        "model": "gpt-demo",
        "instructions": "Be concise",
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "Hello, there!"},
            {"type": "input_image", "image_url": "data:,"}]}],
        "stream": stream,
    });
    for (k, v) in extra.as_object().unwrap() {
        request[k] = v.clone();
    }
    request
}

/// `(event name, data)` of a Responses event chunk.
fn responses_event(chunk: &str) -> (String, Value) {
    // The same framing as Anthropic's.
    anthropic_event(chunk)
}

#[test]
fn responses_usage_formula() {
    assert_eq!(
        responses_input_tokens(&responses_request(false, json!({}))),
        6
    );
    assert_eq!(
        responses_input_tokens(&json!({"input": "abcdefgh", "instructions": null})),
        2
    );
    assert_eq!(responses_input_tokens(&json!({})), 1);
    assert_eq!(
        responses_input_tokens(&json!({"input": [{"content": "abcd"}, {"type": "function_call"}]})),
        1
    );
    assert_eq!(cached_tokens(1023), 0);
    assert_eq!(cached_tokens(1024), 512);
    assert_eq!(cached_tokens(1300), 640);
    assert_eq!(cached_tokens(5000), 2432);
    assert_eq!(embedding_input_tokens("abcde"), 2);
    assert_eq!(embedding_input_tokens(""), 1);
}

#[tokio::test]
async fn responses_not_streamed() {
    let (status, headers, body) = call(post(
        "/v1/responses",
        &[],
        &responses_request(false, json!({})),
    ))
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/json");
    assert!(body["id"].as_str().unwrap().starts_with("resp_demo"));
    assert_eq!(body["object"], "response");
    assert_eq!(body["status"], "completed");
    assert_eq!(body["model"], "gpt-demo");
    assert_eq!(body["instructions"], "Be concise");
    assert_eq!(body["incomplete_details"], Value::Null);
    let output = body["output"].as_array().unwrap();
    assert_eq!(output.len(), 1);
    assert_eq!(output[0]["type"], "message");
    assert_eq!(output[0]["role"], "assistant");
    assert_eq!(output[0]["content"][0]["type"], "output_text");
    assert_eq!(output[0]["content"][0]["text"], REPLY);
    assert_eq!(
        body["usage"],
        json!({"input_tokens": 6, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": 32, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 38})
    );
}

#[tokio::test]
async fn responses_limit_reasoning_and_cache() {
    // The limit cuts the reply: incomplete.
    let (_, _, body) = call(post(
        "/v1/responses",
        &[],
        &responses_request(false, json!({"max_output_tokens": 5})),
    ))
    .await;
    assert_eq!(body["status"], "incomplete");
    assert_eq!(body["incomplete_details"]["reason"], "max_output_tokens");
    assert_eq!(body["max_output_tokens"], 5);
    assert_eq!(body["usage"]["output_tokens"], 5);
    assert_eq!(
        body["output"][0]["content"][0]["text"],
        REPLY.split(' ').take(5).collect::<Vec<_>>().join(" ")
    );
    // Reasoning comes first and is part of the output tokens.
    let (_, _, body) = call(post(
        "/v1/responses",
        &[],
        &responses_request(false, json!({"reasoning": {"effort": "low"}})),
    ))
    .await;
    assert_eq!(body["status"], "completed");
    assert_eq!(body["output"][0]["type"], "reasoning");
    assert_eq!(body["output"][1]["content"][0]["text"], REPLY);
    assert_eq!(body["reasoning"]["effort"], "low");
    assert_eq!(body["usage"]["output_tokens"], 8 + 32);
    assert_eq!(
        body["usage"]["output_tokens_details"]["reasoning_tokens"],
        8
    );
    let (_, _, body) = call(post(
        "/v1/responses",
        &[],
        &responses_request(
            false,
            json!({"reasoning": {"effort": "high"}, "max_output_tokens": 10}),
        ),
    ))
    .await;
    assert_eq!(body["status"], "incomplete");
    assert_eq!(body["usage"]["output_tokens"], 10);
    assert_eq!(
        body["usage"]["output_tokens_details"]["reasoning_tokens"],
        8
    );
    assert_eq!(body["output"][1]["content"][0]["text"], "Hello from");
    // A long prompt: cached tokens, part of the input tokens.
    let long = "x".repeat(4 * 1300);
    let (_, _, body) = call(post(
        "/v1/responses",
        &[],
        &json!({"model": "gpt-demo", "input": long}),
    ))
    .await;
    assert_eq!(body["usage"]["input_tokens"], 1300);
    assert_eq!(body["usage"]["input_tokens_details"]["cached_tokens"], 640);
}

#[tokio::test]
async fn responses_streamed_with_the_real_event_sequence() {
    let (status, headers, chunks, failed) = read_chunks(post(
        "/v1/responses",
        &[],
        &responses_request(true, json!({"reasoning": {"effort": "low"}})),
    ))
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(!failed);
    assert_eq!(headers["content-type"], "text/event-stream");
    let events: Vec<(String, Value)> = chunks.iter().map(|c| responses_event(c)).collect();
    for (i, (name, data)) in events.iter().enumerate() {
        assert_eq!(&data["type"], name.as_str());
        assert_eq!(data["sequence_number"], i);
    }
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    let mut want = vec![
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
    ];
    want.extend(std::iter::repeat_n("response.output_text.delta", 32));
    want.extend([
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]);
    assert_eq!(names, want);
    assert_eq!(events[0].1["response"]["status"], "in_progress");
    assert_eq!(events[0].1["response"]["usage"], Value::Null);
    let text: String = events
        .iter()
        .filter(|(n, _)| n == "response.output_text.delta")
        .map(|(_, d)| d["delta"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(text, REPLY);
    let last = &events.last().unwrap().1["response"];
    assert_eq!(last["status"], "completed");
    assert_eq!(last["output"][1]["content"][0]["text"], REPLY);
    assert_eq!(last["usage"]["input_tokens"], 6);
    assert_eq!(last["usage"]["output_tokens"], 40);
    assert_eq!(
        last["usage"]["output_tokens_details"]["reasoning_tokens"],
        8
    );
    // Cut short by the limit: response.incomplete carries the usage.
    let (_, _, chunks, _) = read_chunks(post(
        "/v1/responses",
        &[],
        &responses_request(true, json!({"max_output_tokens": 3})),
    ))
    .await;
    let (name, data) = responses_event(chunks.last().unwrap());
    assert_eq!(name, "response.incomplete");
    assert_eq!(data["response"]["usage"]["output_tokens"], 3);
    assert_eq!(chunks.len(), 2 + 2 + 3 + 4);
}

#[tokio::test]
async fn responses_hooks() {
    let malformed = [("x-demo-malformed-usage", "1")];
    let (_, _, body) = call(post(
        "/v1/responses",
        &malformed,
        &responses_request(false, json!({})),
    ))
    .await;
    assert_eq!(body["usage"]["input_tokens"], "6");
    assert!(body["usage"]["output_tokens"].as_i64().unwrap() < 0);
    let (_, _, chunks, failed) = read_chunks(post(
        "/v1/responses",
        &[("x-demo-cut-stream", "4")],
        &responses_request(true, json!({})),
    ))
    .await;
    assert!(failed);
    assert_eq!(chunks.len(), 4);
    assert!(chunks.iter().all(|c| !c.contains("response.completed")));
    let (status, _, body) = call(post(
        "/v1/responses",
        &[("x-demo-status", "500")],
        &responses_request(false, json!({})),
    ))
    .await;
    assert_eq!(status.as_u16(), 500);
    assert_eq!(body["error"]["type"], "server_error");
    for bad in [
        json!({"input": "x"}),
        json!({"model": "m", "input": 5}),
        json!({"model": "m", "stream": "yes"}),
        json!({"model": "m", "max_output_tokens": "5"}),
    ] {
        let (status, _, body) = call(post("/v1/responses", &[], &bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(body["error"]["type"], "invalid_request_error");
    }
}

/// Decodes standard base64 (test side).
fn unbase64(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let mut out = Vec::new();
    for chunk in text.as_bytes().chunks(4) {
        let data: Vec<u8> = chunk.iter().copied().filter(|c| *c != b'=').collect();
        let mut n = 0u32;
        for (i, c) in data.iter().enumerate() {
            n |= value(*c) << (18 - 6 * i);
        }
        for i in 0..data.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

#[tokio::test]
async fn embeddings_as_floats_or_base64() {
    let request =
        json!({"model": "text-embedding-demo", "input": ["abcde", "fgh"], "dimensions": 4});
    let (status, _, body) = call(post("/v1/embeddings", &[], &request)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], "text-embedding-demo");
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 3, "total_tokens": 3})
    );
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    for (i, item) in data.iter().enumerate() {
        assert_eq!(item["object"], "embedding");
        assert_eq!(item["index"], i);
        assert_eq!(item["embedding"].as_array().unwrap().len(), 4);
    }
    // The same vectors in base64 (little-endian f32s).
    let mut b64 = request.clone();
    b64["encoding_format"] = json!("base64");
    let (_, _, encoded) = call(post("/v1/embeddings", &[], &b64)).await;
    for (plain, encoded) in data.iter().zip(encoded["data"].as_array().unwrap()) {
        let bytes = unbase64(encoded["embedding"].as_str().unwrap());
        let decoded: Vec<u32> = bytes
            .chunks(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]).to_bits())
            .collect();
        // The JSON floats are f32s printed as f64s: the same f32s once read back.
        let floats: Vec<u32> = plain["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| (x.as_f64().unwrap() as f32).to_bits())
            .collect();
        assert_eq!(decoded, floats);
    }
    // Token arrays count their length; the default dimensions.
    let (_, _, body) = call(post(
        "/v1/embeddings",
        &[],
        &json!({"model": "m", "input": [[1, 2, 3], [4]]}),
    ))
    .await;
    assert_eq!(body["usage"]["prompt_tokens"], 4);
    assert_eq!(
        body["data"][0]["embedding"].as_array().unwrap().len(),
        DEFAULT_EMBEDDING_DIMENSIONS
    );
    let (_, _, body) = call(post(
        "/v1/embeddings",
        &[],
        &json!({"model": "m", "input": [5, 6]}),
    ))
    .await;
    assert_eq!(body["usage"]["prompt_tokens"], 2);
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    // Malformed usage, and bad bodies.
    let (_, _, body) = call(post(
        "/v1/embeddings",
        &[("x-demo-malformed-usage", "1")],
        &json!({"model": "m", "input": "abcd"}),
    ))
    .await;
    assert_eq!(body["usage"]["prompt_tokens"], "1");
    for bad in [
        json!({"model": "m"}),
        json!({"model": "m", "input": ""}),
        json!({"model": "m", "input": []}),
        json!({"model": "m", "input": [[]]}),
        json!({"model": "m", "input": [{"a": 1}]}),
        json!({"model": "m", "input": "x", "dimensions": 0}),
        json!({"model": "m", "input": "x", "encoding_format": "hex"}),
    ] {
        let (status, _, body) = call(post("/v1/embeddings", &[], &bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(body["error"]["type"], "invalid_request_error");
    }
}

#[tokio::test]
async fn count_tokens_reports_what_messages_would() {
    let mut request = anthropic_request(false);
    request.as_object_mut().unwrap().remove("max_tokens");
    let (status, _, body) = call(post("/v1/messages/count_tokens", &[], &request)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"input_tokens": 8}));
    let (status, _, body) = call(post(
        "/v1/messages/count_tokens",
        &[],
        &json!({"model": "m"}),
    ))
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["type"], "error");
}

#[tokio::test]
async fn models_in_each_style() {
    let anthropic = [("anthropic-version", "2023-06-01")];
    let (status, _, body) = call(get("/v1/models", &anthropic)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["has_more"], false);
    assert_eq!(body["data"][0]["type"], "model");
    assert_eq!(body["data"][0]["id"], ANTHROPIC_MODELS[0]);
    assert_eq!(body["first_id"], ANTHROPIC_MODELS[0]);
    let (_, _, body) = call(get("/v1/models/claude-x", &anthropic)).await;
    assert_eq!(body["id"], "claude-x");
    assert_eq!(body["type"], "model");
    assert!(body["created_at"].is_string());
    let (_, _, body) = call(get("/v1/models", &[])).await;
    assert_eq!(body["object"], "list");
    let ids: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, OPENAI_MODELS);
    let (_, _, body) = call(get("/v1/models/ft:gpt-demo:acme::1", &[])).await;
    assert_eq!(
        body,
        json!({"id": "ft:gpt-demo:acme::1", "object": "model", "created": 1_735_689_600, "owned_by": "creditgate-demo"})
    );
    let (status, headers, body) = call(get("/v1/models", &[("x-demo-status", "529")])).await;
    assert_eq!(status.as_u16(), 529);
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(body["error"]["type"], "server_error");
}
