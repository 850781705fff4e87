//! Tests of the usage formula and of the answers in both styles, streamed and not.

use super::*;

#[test]
fn reply_words_counts_the_reply() {
    assert_eq!(REPLY.split_whitespace().count() as u64, REPLY_WORDS);
}

#[test]
fn usage_formula() {
    assert_eq!(anthropic_input_tokens(&anthropic_request(false)), 8);
    assert_eq!(openai_input_tokens(&openai_request(false, None)), 7);
    // At least 1, rounded up.
    assert_eq!(anthropic_input_tokens(&json!({"messages": []})), 1);
    assert_eq!(
        openai_input_tokens(&json!({"messages": [{"content": "abcde"}]})),
        2
    );
    assert_eq!(
        anthropic_input_tokens(&json!({"system": "abcd", "messages": [{"content": "abcd"}]})),
        2
    );
    assert_eq!(output_tokens(10), 10);
    assert_eq!(output_tokens(1_000), REPLY_WORDS);
    assert_eq!(output_tokens(0), 0);
}

#[tokio::test]
async fn anthropic_not_streamed() {
    let (status, headers, body) = call(post("/v1/messages", &[], &anthropic_request(false))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/json");
    assert!(body["id"].as_str().unwrap().starts_with("msg_demo_"));
    assert_eq!(body["type"], "message");
    assert_eq!(body["role"], "assistant");
    assert_eq!(body["model"], "claude-demo");
    assert_eq!(body["content"][0]["type"], "text");
    assert_eq!(body["content"][0]["text"], REPLY);
    assert_eq!(body["stop_reason"], "end_turn");
    assert_eq!(body["stop_sequence"], Value::Null);
    assert_eq!(
        body["usage"],
        json!({"input_tokens": 8, "output_tokens": 32,
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0}})
    );
}

/// A request with cache breakpoints of both lifetimes and two server tools (one without
/// `max_uses`), realistic in size: the usage splits the cache writes and counts the tool runs,
/// in the body and in the stream.
#[tokio::test]
async fn anthropic_cache_writes_and_server_tools() {
    let manual = "Section 4.2: refunds are issued within 14 days. ".repeat(31); // 1,488 bytes
    let style = "Answer tersely, cite the section.".repeat(3); // 99 bytes
    let request = json!({
        "model": "claude-demo", "max_tokens": 20,
        "system": [
            {"type": "text", "text": manual, "cache_control": {"type": "ephemeral", "ttl": "1h"}},
            {"type": "text", "text": style, "cache_control": {"type": "ephemeral"}},
        ],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "How long do refunds take?"}]}],
        "tools": [
            {"type": "web_search_20250305", "name": "web_search", "max_uses": 1},
            {"type": "web_fetch_20250910", "name": "web_fetch"},
        ],
    });
    assert_eq!(anthropic_cache_writes(&request), (25, 372));
    // Whole input 403 tokens (1,612 bytes); 397 of them are cache writes.
    assert_eq!(anthropic_input_tokens(&request), 403);
    let want = json!({"input_tokens": 6, "output_tokens": 20,
        "cache_creation_input_tokens": 397, "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 25, "ephemeral_1h_input_tokens": 372},
        "server_tool_use": {"web_search_requests": 1, "web_fetch_requests": SERVER_TOOL_RUNS}});
    let (status, _, body) = call(post("/v1/messages", &[], &request)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["usage"], want);

    let mut streamed = request.clone();
    streamed["stream"] = json!(true);
    let (_, _, chunks, failed) = read_chunks(post("/v1/messages", &[], &streamed)).await;
    assert!(!failed);
    let events: Vec<(String, Value)> = chunks.iter().map(|c| anthropic_event(c)).collect();
    let start = &events[0].1["message"]["usage"];
    assert_eq!(start["cache_creation"], want["cache_creation"]);
    assert_eq!(start["output_tokens"], 1);
    let delta = &events
        .iter()
        .find(|(name, _)| name == "message_delta")
        .unwrap()
        .1;
    assert_eq!(delta["usage"], want);
}

#[tokio::test]
async fn anthropic_max_tokens_cuts_the_reply() {
    let mut request = anthropic_request(false);
    request["max_tokens"] = json!(3);
    let (_, _, body) = call(post("/v1/messages", &[], &request)).await;
    assert_eq!(body["content"][0]["text"], "Hello from the");
    assert_eq!(body["stop_reason"], "max_tokens");
    assert_eq!(body["usage"]["output_tokens"], 3);
    // No max_tokens: the default limit (64) leaves the whole reply.
    request.as_object_mut().unwrap().remove("max_tokens");
    let (_, _, body) = call(post("/v1/messages", &[], &request)).await;
    assert_eq!(body["usage"]["output_tokens"], REPLY_WORDS);
}

#[tokio::test]
async fn anthropic_streamed() {
    let (status, headers, chunks, failed) =
        read_chunks(post("/v1/messages", &[], &anthropic_request(true))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!failed);
    assert_eq!(headers["content-type"], "text/event-stream");
    let events: Vec<(String, Value)> = chunks.iter().map(|c| anthropic_event(c)).collect();
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    let words = REPLY_WORDS as usize;
    assert_eq!(names.len(), words + 6);
    assert_eq!(names[..3], ["message_start", "content_block_start", "ping"]);
    assert!(names[3..3 + words]
        .iter()
        .all(|name| *name == "content_block_delta"));
    assert_eq!(
        names[3 + words..],
        ["content_block_stop", "message_delta", "message_stop"]
    );
    for (name, data) in &events {
        assert_eq!(data["type"], name.as_str());
    }
    let start = &events[0].1["message"];
    assert!(start["id"].as_str().unwrap().starts_with("msg_demo_"));
    assert_eq!(start["model"], "claude-demo");
    assert_eq!(start["usage"]["input_tokens"], 8);
    assert_eq!(start["usage"]["output_tokens"], 1);
    let text: String = events[3..3 + words]
        .iter()
        .map(|(_, data)| {
            assert_eq!(data["delta"]["type"], "text_delta");
            data["delta"]["text"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(text, REPLY);
    let delta = &events[4 + words].1;
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["usage"]["output_tokens"], 32);
}

#[tokio::test]
async fn openai_not_streamed() {
    let (status, _, body) = call(post(
        "/v1/chat/completions",
        &[],
        &openai_request(false, Some(true)),
    ))
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-demo"));
    assert_eq!(body["object"], "chat.completion");
    assert!(body["created"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(body["model"], "gpt-demo");
    let choice = &body["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["message"]["role"], "assistant");
    // max_completion_tokens (10) wins over max_tokens.
    let ten: Vec<&str> = REPLY.split_whitespace().take(10).collect();
    assert_eq!(choice["message"]["content"], ten.join(" "));
    assert_eq!(choice["finish_reason"], "length");
    assert_eq!(body["usage"]["prompt_tokens"], 7);
    assert_eq!(body["usage"]["completion_tokens"], 10);
    assert_eq!(body["usage"]["total_tokens"], 17);
    // max_tokens alone, then neither (the default 64).
    let mut request = openai_request(false, None);
    request
        .as_object_mut()
        .unwrap()
        .remove("max_completion_tokens");
    request["max_tokens"] = json!(5);
    let (_, _, body) = call(post("/v1/chat/completions", &[], &request)).await;
    assert_eq!(body["usage"]["completion_tokens"], 5);
    request.as_object_mut().unwrap().remove("max_tokens");
    let (_, _, body) = call(post("/v1/chat/completions", &[], &request)).await;
    assert_eq!(body["usage"]["completion_tokens"], REPLY_WORDS);
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["choices"][0]["message"]["content"], REPLY);
}

#[tokio::test]
async fn openai_streamed_with_usage() {
    let (status, headers, chunks, failed) = read_chunks(post(
        "/v1/chat/completions",
        &[],
        &openai_request(true, Some(true)),
    ))
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(!failed);
    assert_eq!(headers["content-type"], "text/event-stream");
    // role, 10 words, finish, usage, [DONE]
    assert_eq!(chunks.len(), 14);
    let data: Vec<Option<Value>> = chunks.iter().map(|c| openai_chunk(c)).collect();
    assert!(data[13].is_none());
    let chunks: Vec<&Value> = data[..13].iter().map(|d| d.as_ref().unwrap()).collect();
    let id = chunks[0]["id"].as_str().unwrap();
    assert!(id.starts_with("chatcmpl-demo"));
    for chunk in &chunks {
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["id"], id);
        assert_eq!(chunk["model"], "gpt-demo");
    }
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks[1..11]
        .iter()
        .map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap())
        .collect();
    let ten: Vec<&str> = REPLY.split_whitespace().take(10).collect();
    assert_eq!(text, ten.join(" "));
    for chunk in &chunks[..12] {
        assert_eq!(chunk["usage"], Value::Null);
        assert!(chunk.as_object().unwrap().contains_key("usage"));
    }
    assert_eq!(chunks[11]["choices"][0]["finish_reason"], "length");
    assert_eq!(chunks[12]["choices"], json!([]));
    assert_eq!(chunks[12]["usage"]["prompt_tokens"], 7);
    assert_eq!(chunks[12]["usage"]["completion_tokens"], 10);
    assert_eq!(chunks[12]["usage"]["total_tokens"], 17);
}

#[tokio::test]
async fn openai_streamed_without_usage() {
    for include in [None, Some(false)] {
        let (_, _, chunks, failed) = read_chunks(post(
            "/v1/chat/completions",
            &[],
            &openai_request(true, include),
        ))
        .await;
        assert!(!failed);
        // role, 10 words, finish, [DONE]
        assert_eq!(chunks.len(), 13);
        assert_eq!(chunks[12], "data: [DONE]\n\n");
        for chunk in &chunks[..12] {
            let chunk = openai_chunk(chunk).unwrap();
            assert!(!chunk.as_object().unwrap().contains_key("usage"));
            assert_eq!(chunk["choices"].as_array().unwrap().len(), 1);
        }
        let last = openai_chunk(&chunks[11]).unwrap();
        assert_eq!(last["choices"][0]["finish_reason"], "length");
    }
}
