//! Tests of the demo upstream through its router: the shared request builders and body
//! readers here; the usage and each style's responses in `responses.rs`, the test hooks (and
//! serving over TCP) in `hooks.rs`, the Responses API, embeddings, token counts and models in
//! `endpoints.rs`.

use super::*;
use axum::http::Request;
use futures_util::StreamExt;
use tower::ServiceExt;

mod endpoints;
mod hooks;
mod responses;

fn post(path: &str, headers: &[(&str, &str)], body: &Value) -> Request<Body> {
    let mut request = Request::post(path).header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(Body::from(body.to_string())).unwrap()
}

fn get(path: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut request = Request::get(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(Body::empty()).unwrap()
}

async fn call(request: Request<Body>) -> (StatusCode, HeaderMap, Value) {
    let response = router().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, headers, serde_json::from_slice(&bytes).unwrap())
}

/// The body's chunks as sent, and whether it ended in an error.
async fn read_chunks(request: Request<Body>) -> (StatusCode, HeaderMap, Vec<String>, bool) {
    let response = router().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let mut stream = response.into_body().into_data_stream();
    let mut chunks = Vec::new();
    let mut failed = false;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => chunks.push(String::from_utf8(bytes.to_vec()).unwrap()),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    (status, headers, chunks, failed)
}

/// `(event name, data)` of an Anthropic event chunk.
fn anthropic_event(chunk: &str) -> (String, Value) {
    let mut lines = chunk.trim_end().lines();
    let name = lines.next().unwrap().strip_prefix("event: ").unwrap();
    let data = lines.next().unwrap().strip_prefix("data: ").unwrap();
    assert!(lines.next().is_none(), "one event per chunk: {chunk:?}");
    assert!(chunk.ends_with("\n\n"));
    (name.to_owned(), serde_json::from_str(data).unwrap())
}

/// The data of an OpenAI chunk (`None` for `[DONE]`).
fn openai_chunk(chunk: &str) -> Option<Value> {
    assert!(chunk.ends_with("\n\n"), "{chunk:?}");
    let data = chunk.trim_end().strip_prefix("data: ").unwrap();
    assert!(!data.contains('\n'));
    (data != "[DONE]").then(|| serde_json::from_str(data).unwrap())
}

fn anthropic_request(stream: bool) -> Value {
    // system 10 bytes + 13 + 6 = 29 bytes → 8 tokens
    json!({
        "model": "claude-demo",
        "max_tokens": 100,
        "system": [{"type": "text", "text": "Be concise"}],
        "messages": [
            {"role": "user", "content": "Hello, there!"},
            {"role": "assistant", "content": [{"type": "text", "text": "Hi! 👋"}]},
        ],
        "stream": stream,
    })
}

fn openai_request(stream: bool, include_usage: Option<bool>) -> Value {
    // 10 + 13 + 0 + 3 bytes = 26 → 7 tokens
    let mut request = json!({
        "model": "gpt-demo",
        "max_completion_tokens": 10,
        "max_tokens": 500,
        "messages": [
            {"role": "system", "content": "Be concise"},
            {"role": "user", "content": [{"type": "text", "text": "Hello, there!"},
                {"type": "image_url", "image_url": {"url": "data:,"}}]},
            {"role": "assistant", "content": null},
            {"role": "user", "content": "why"},
        ],
        "stream": stream,
    });
    if let Some(include) = include_usage {
        request["stream_options"] = json!({"include_usage": include});
    }
    request
}
