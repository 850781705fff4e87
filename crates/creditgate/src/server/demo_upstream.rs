//! The built-in demo upstream: answers Anthropic-style `POST /v1/messages` and OpenAI-style
//! `POST /v1/chat/completions` offline, with a canned reply and deterministic usage, so the
//! embedded default (`anthropic_upstream = "demo"`, `openai_upstream = "demo"`) works with no
//! network and no provider key. It checks no credentials.
//!
//! # Usage (what a test computes the expected charge from)
//!
//! * **Input tokens** = `max(1, ⌈B / 4⌉)`, where `B` is the number of UTF-8 bytes of every
//!   text in the request:
//!   - Anthropic: `system` (a string, or the `text` of each of its blocks) plus each message's
//!     `content` (a string, or the `text` of each of its blocks);
//!   - OpenAI: each message's `content` (a string, or the `text` of each of its parts; `null`
//!     counts 0).
//!
//!   Nothing else counts: roles, the model, tools, images, blocks without a `text` string.
//!   See [`anthropic_input_tokens`] and [`openai_input_tokens`].
//! * **Output tokens** = `min(limit, REPLY_WORDS)` ([`output_tokens`]), where the limit is
//!   Anthropic `max_tokens`, OpenAI `max_completion_tokens` else `max_tokens`, and
//!   [`DEFAULT_MAX_TOKENS`] (64) when the request gives none. [`REPLY_WORDS`] is 32, the
//!   number of words of [`REPLY`].
//! * Cache tokens are always 0 (Anthropic `cache_creation_input_tokens` and
//!   `cache_read_input_tokens`, OpenAI `prompt_tokens_details.cached_tokens`).
//!
//! The reply text is the first *output tokens* words of [`REPLY`] joined by single spaces (one
//! word per token). The stop reason is `end_turn` / `stop`, or `max_tokens` / `length` when the
//! limit cut the reply short.
//!
//! # Responses
//!
//! * Anthropic, not streamed: a `message` object with `usage` {`input_tokens`,
//!   `output_tokens`, `cache_creation_input_tokens`, `cache_read_input_tokens`}.
//! * Anthropic, `"stream": true`: `text/event-stream` with the real event sequence:
//!   `message_start` (usage: the input tokens, `output_tokens` 1), `content_block_start`,
//!   `ping`, one `content_block_delta` (`text_delta`) per word, `content_block_stop`,
//!   `message_delta` (`usage.output_tokens`: the output tokens), `message_stop`.
//! * OpenAI, not streamed: a `chat.completion` with `usage` {`prompt_tokens`,
//!   `completion_tokens`, `total_tokens`, `prompt_tokens_details`, `completion_tokens_details`}.
//! * OpenAI, `"stream": true`: `data: {chunk}` events (`chat.completion.chunk`): the role, one
//!   delta per word, a last chunk with `finish_reason`; then, only when
//!   `stream_options.include_usage` is true, a chunk with `"choices": []` and the usage (and
//!   every earlier chunk carries `"usage": null`, as OpenAI does); then `data: [DONE]`.
//!
//! Every event of a stream is its own body chunk, flushed before the next one is made;
//! [`DemoOptions::event_delay`] (default 0) or the `x-demo-event-delay-ms` header spaces them.
//! Ids are random (`msg_demo_…`, `chatcmpl-demo…`); everything else depends on the request only
//! (and `created` on the clock).
//!
//! # Test hooks (request headers)
//!
//! * `x-demo-status: S` (400–599): answers status `S` with the provider's error envelope
//!   (Anthropic `{"type":"error","error":{"type","message"}}`, e.g. 429 `rate_limit_error`, 500
//!   `api_error`, 529 `overloaded_error`; OpenAI `{"error":{"message","type","param","code"}}`,
//!   e.g. 429 `requests`/`rate_limit_exceeded`, 500 `server_error`) and no usage; 429 and 529
//!   carry `retry-after: 1`.
//! * `x-demo-delay-ms: N`: waits `N` ms (at most [`DELAY_MS_MAX`]; more is clamped) before
//!   answering anything, errors included.
//! * `x-demo-malformed-usage: 1`: the usage (body, or stream events) has the input count as a
//!   string and the output count negative (OpenAI: `total_tokens` a string too).
//! * `x-demo-cut-stream: N`: a stream sends its first `N` events, then the connection is torn
//!   down (the body ends in an error: no `message_delta` / usage chunk, no `message_stop` /
//!   `[DONE]`). Ignored for a request that is not streamed.
//! * `x-demo-event-delay-ms: N`: the pause between two stream events for this request (at most
//!   [`DELAY_MS_MAX`]).
//!
//! A hook header with a value that is not a number in range, or a body that is not a JSON object
//! with a string `model` and an array `messages`, is answered 400 in the style's envelope.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

/// The canned reply; a response carries its first *output tokens* words.
pub const REPLY: &str = "Hello from the creditgate demo upstream! This answer is canned and its \
usage is deterministic, so every call through the metering proxy is priced, debited and cut off \
at zero as documented.";
/// The number of words of [`REPLY`]: the most output tokens a response reports.
pub const REPLY_WORDS: u64 = 32;
/// The output limit when the request gives none.
pub const DEFAULT_MAX_TOKENS: u64 = 64;
/// The longest `x-demo-delay-ms` / `x-demo-event-delay-ms` honoured.
pub const DELAY_MS_MAX: u64 = 60_000;

/// How the demo upstream paces streams.
#[derive(Clone, Copy, Debug, Default)]
pub struct DemoOptions {
    /// The pause between two events of a stream (0: none, but each event is still flushed on
    /// its own).
    pub event_delay: Duration,
}

/// The demo upstream with the default options (no pause between stream events).
pub fn router() -> Router {
    router_with(DemoOptions::default())
}

/// The demo upstream with `options`.
pub fn router_with(options: DemoOptions) -> Router {
    Router::new()
        .route(
            "/v1/messages",
            post(move |headers: HeaderMap, body: Bytes| {
                answer(Style::Anthropic, options, headers, body)
            }),
        )
        .route(
            "/v1/chat/completions",
            post(move |headers: HeaderMap, body: Bytes| {
                answer(Style::OpenAi, options, headers, body)
            }),
        )
}

/// Input tokens of an Anthropic Messages request (see the module docs).
pub fn anthropic_input_tokens(request: &Value) -> u64 {
    let mut bytes = request.get("system").map_or(0, text_bytes);
    bytes += messages_bytes(request);
    tokens_of_bytes(bytes)
}

/// Input tokens of an OpenAI Chat Completions request (see the module docs).
pub fn openai_input_tokens(request: &Value) -> u64 {
    tokens_of_bytes(messages_bytes(request))
}

/// Output tokens for an output limit: `min(limit, REPLY_WORDS)`.
pub fn output_tokens(limit: u64) -> u64 {
    limit.min(REPLY_WORDS)
}

/// `max(1, ⌈bytes / 4⌉)`.
fn tokens_of_bytes(bytes: usize) -> u64 {
    u64::try_from(bytes.div_ceil(4)).unwrap_or(u64::MAX).max(1)
}

fn messages_bytes(request: &Value) -> usize {
    request
        .get("messages")
        .and_then(Value::as_array)
        .map_or(0, |messages| {
            messages
                .iter()
                .map(|message| message.get("content").map_or(0, text_bytes))
                .sum()
        })
}

/// A string's bytes, or the `text` strings' bytes of an array of blocks.
fn text_bytes(content: &Value) -> usize {
    match content {
        Value::String(text) => text.len(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|block| block.get("text").and_then(Value::as_str))
            .map(str::len)
            .sum(),
        _ => 0,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Style {
    Anthropic,
    OpenAi,
}

/// What the request's hook headers ask for.
#[derive(Debug, Default, PartialEq, Eq)]
struct Hooks {
    status: Option<StatusCode>,
    delay: Duration,
    malformed_usage: bool,
    cut_after: Option<usize>,
    event_delay: Option<Duration>,
}

impl Hooks {
    fn parse(headers: &HeaderMap) -> Result<Hooks, String> {
        let number = |name: &str| -> Result<Option<u64>, String> {
            match headers.get(name) {
                None => Ok(None),
                Some(value) => value
                    .to_str()
                    .ok()
                    .and_then(|text| text.trim().parse::<u64>().ok())
                    .map(Some)
                    .ok_or_else(|| format!("{name} must be a whole number.")),
            }
        };
        let delay = |ms: u64| Duration::from_millis(ms.min(DELAY_MS_MAX));
        let status = match number("x-demo-status")? {
            None => None,
            Some(code) => Some(
                u16::try_from(code)
                    .ok()
                    .filter(|code| (400..=599).contains(code))
                    .and_then(|code| StatusCode::from_u16(code).ok())
                    .ok_or_else(|| "x-demo-status must be from 400 to 599.".to_owned())?,
            ),
        };
        Ok(Hooks {
            status,
            delay: number("x-demo-delay-ms")?.map_or(Duration::ZERO, delay),
            malformed_usage: number("x-demo-malformed-usage")?.is_some_and(|n| n != 0),
            cut_after: number("x-demo-cut-stream")?
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
            event_delay: number("x-demo-event-delay-ms")?.map(delay),
        })
    }
}

/// What a valid request asks for.
struct Ask {
    model: String,
    stream: bool,
    include_usage: bool,
    input_tokens: u64,
    output_tokens: u64,
}

impl Ask {
    fn parse(style: Style, body: &[u8]) -> Result<Ask, String> {
        let request: Value = serde_json::from_slice(body)
            .map_err(|e| format!("The body is not valid JSON: {e}."))?;
        if !request.is_object() {
            return Err("The body must be a JSON object.".into());
        }
        let model = request
            .get("model")
            .and_then(Value::as_str)
            .filter(|model| !model.is_empty())
            .ok_or("model: a non-empty string is required.")?
            .to_owned();
        if !request.get("messages").is_some_and(Value::is_array) {
            return Err("messages: an array is required.".into());
        }
        let limit_fields: &[&str] = match style {
            Style::Anthropic => &["max_tokens"],
            Style::OpenAi => &["max_completion_tokens", "max_tokens"],
        };
        let mut limit = DEFAULT_MAX_TOKENS;
        for field in limit_fields {
            match request.get(*field) {
                None | Some(Value::Null) => continue,
                Some(value) => {
                    limit = value
                        .as_u64()
                        .ok_or_else(|| format!("{field}: a whole number is required."))?;
                    break;
                }
            }
        }
        let stream = match request.get("stream") {
            None | Some(Value::Null) => false,
            Some(value) => value.as_bool().ok_or("stream: a boolean is required.")?,
        };
        let include_usage = request
            .get("stream_options")
            .and_then(|options| options.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let input_tokens = match style {
            Style::Anthropic => anthropic_input_tokens(&request),
            Style::OpenAi => openai_input_tokens(&request),
        };
        Ok(Ask {
            model,
            stream,
            include_usage,
            input_tokens,
            output_tokens: output_tokens(limit),
        })
    }

    /// The reply's words, one per output token.
    fn words(&self) -> Vec<&'static str> {
        REPLY
            .split_whitespace()
            .take(usize::try_from(self.output_tokens).unwrap_or(usize::MAX))
            .collect()
    }

    fn truncated(&self) -> bool {
        self.output_tokens < REPLY_WORDS
    }
}

async fn answer(style: Style, options: DemoOptions, headers: HeaderMap, body: Bytes) -> Response {
    let hooks = match Hooks::parse(&headers) {
        Ok(hooks) => hooks,
        Err(message) => return error(style, StatusCode::BAD_REQUEST, &message),
    };
    if !hooks.delay.is_zero() {
        tokio::time::sleep(hooks.delay).await;
    }
    if let Some(status) = hooks.status {
        return error(
            style,
            status,
            "Demo upstream: error asked for by x-demo-status.",
        );
    }
    let ask = match Ask::parse(style, &body) {
        Ok(ask) => ask,
        Err(message) => return error(style, StatusCode::BAD_REQUEST, &message),
    };
    let malformed = hooks.malformed_usage;
    if !ask.stream {
        let body = match style {
            Style::Anthropic => anthropic_message(&ask, malformed),
            Style::OpenAi => openai_completion(&ask, malformed),
        };
        return (StatusCode::OK, axum::Json(body)).into_response();
    }
    let events = match style {
        Style::Anthropic => anthropic_events(&ask, malformed),
        Style::OpenAi => openai_events(&ask, malformed),
    };
    let pause = hooks.event_delay.unwrap_or(options.event_delay);
    let mut response = Body::from_stream(paced(events, pause, hooks.cut_after)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The events one by one, each after `pause` (or a yield, so each is flushed alone); after
/// `cut_after` events, an error that tears the connection down.
fn paced(
    events: Vec<Bytes>,
    pause: Duration,
    cut_after: Option<usize>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    struct Pacing {
        events: std::vec::IntoIter<Bytes>,
        sent: usize,
        done: bool,
    }
    let start = Pacing {
        events: events.into_iter(),
        sent: 0,
        done: false,
    };
    futures_util::stream::unfold(start, move |mut pacing| async move {
        if pacing.done {
            return None;
        }
        if pacing.sent > 0 {
            if pause.is_zero() {
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(pause).await;
            }
        }
        if cut_after == Some(pacing.sent) {
            pacing.done = true;
            let cut = std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "demo upstream: stream cut by x-demo-cut-stream",
            );
            return Some((Err(cut), pacing));
        }
        let event = pacing.events.next()?;
        pacing.sent += 1;
        Some((Ok(event), pacing))
    })
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}{}", hex::encode(rand::random::<[u8; 12]>()))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// An input count as the usage reports it: a string when malformed.
fn input_count(ask: &Ask, malformed: bool) -> Value {
    if malformed {
        json!(ask.input_tokens.to_string())
    } else {
        json!(ask.input_tokens)
    }
}

/// An output count as the usage reports it: negative when malformed.
fn output_count(count: u64, malformed: bool) -> Value {
    if malformed {
        json!(-i64::try_from(count).unwrap_or(i64::MAX) - 1)
    } else {
        json!(count)
    }
}

fn anthropic_stop_reason(ask: &Ask) -> &'static str {
    if ask.truncated() {
        "max_tokens"
    } else {
        "end_turn"
    }
}

fn anthropic_message(ask: &Ask, malformed: bool) -> Value {
    json!({
        "id": new_id("msg_demo_"),
        "type": "message",
        "role": "assistant",
        "model": ask.model,
        "content": [{"type": "text", "text": ask.words().join(" ")}],
        "stop_reason": anthropic_stop_reason(ask),
        "stop_sequence": null,
        "usage": {
            "input_tokens": input_count(ask, malformed),
            "output_tokens": output_count(ask.output_tokens, malformed),
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    })
}

fn sse(event: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

fn anthropic_events(ask: &Ask, malformed: bool) -> Vec<Bytes> {
    let mut events = vec![
        sse(
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": new_id("msg_demo_"),
                "type": "message",
                "role": "assistant",
                "model": ask.model,
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                "usage": {
                    "input_tokens": input_count(ask, malformed),
                    "output_tokens": 1,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                },
            }}),
        ),
        sse(
            "content_block_start",
            &json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "text", "text": ""}}),
        ),
        sse("ping", &json!({"type": "ping"})),
    ];
    for (index, word) in ask.words().into_iter().enumerate() {
        let text = if index == 0 {
            word.to_owned()
        } else {
            format!(" {word}")
        };
        events.push(sse(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": text}}),
        ));
    }
    events.push(sse(
        "content_block_stop",
        &json!({"type": "content_block_stop", "index": 0}),
    ));
    events.push(sse(
        "message_delta",
        &json!({"type": "message_delta",
            "delta": {"stop_reason": anthropic_stop_reason(ask), "stop_sequence": null},
            "usage": {"output_tokens": output_count(ask.output_tokens, malformed)}}),
    ));
    events.push(sse("message_stop", &json!({"type": "message_stop"})));
    events
}

fn openai_finish_reason(ask: &Ask) -> &'static str {
    if ask.truncated() {
        "length"
    } else {
        "stop"
    }
}

fn openai_usage(ask: &Ask, malformed: bool) -> Value {
    let total = ask.input_tokens.saturating_add(ask.output_tokens);
    json!({
        "prompt_tokens": input_count(ask, malformed),
        "completion_tokens": output_count(ask.output_tokens, malformed),
        "total_tokens": if malformed { json!(total.to_string()) } else { json!(total) },
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    })
}

fn openai_completion(ask: &Ask, malformed: bool) -> Value {
    json!({
        "id": new_id("chatcmpl-demo"),
        "object": "chat.completion",
        "created": unix_now(),
        "model": ask.model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": ask.words().join(" "), "refusal": null},
            "logprobs": null,
            "finish_reason": openai_finish_reason(ask),
        }],
        "usage": openai_usage(ask, malformed),
        "system_fingerprint": null,
    })
}

fn openai_events(ask: &Ask, malformed: bool) -> Vec<Bytes> {
    let id = new_id("chatcmpl-demo");
    let created = unix_now();
    let chunk = |choices: Value, usage: Option<Value>| {
        let mut chunk = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": ask.model,
            "system_fingerprint": null,
            "choices": choices,
        });
        if ask.include_usage {
            chunk["usage"] = usage.unwrap_or(Value::Null);
        }
        Bytes::from(format!("data: {chunk}\n\n"))
    };
    let delta = |delta: Value, finish_reason: Value| json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}]);
    let mut events = vec![chunk(
        delta(
            json!({"role": "assistant", "content": "", "refusal": null}),
            Value::Null,
        ),
        None,
    )];
    for (index, word) in ask.words().into_iter().enumerate() {
        let text = if index == 0 {
            word.to_owned()
        } else {
            format!(" {word}")
        };
        events.push(chunk(delta(json!({"content": text}), Value::Null), None));
    }
    events.push(chunk(
        delta(json!({}), json!(openai_finish_reason(ask))),
        None,
    ));
    if ask.include_usage {
        events.push(chunk(json!([]), Some(openai_usage(ask, malformed))));
    }
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    events
}

/// `status` with the style's error envelope.
fn error(style: Style, status: StatusCode, message: &str) -> Response {
    let body = match style {
        Style::Anthropic => {
            let kind = match status.as_u16() {
                400 => "invalid_request_error",
                401 => "authentication_error",
                402 => "billing_error",
                403 => "permission_error",
                404 => "not_found_error",
                413 => "request_too_large",
                429 => "rate_limit_error",
                529 => "overloaded_error",
                500..=599 => "api_error",
                _ => "invalid_request_error",
            };
            json!({"type": "error", "error": {"type": kind, "message": message}})
        }
        Style::OpenAi => {
            let (kind, code) = match status.as_u16() {
                401 => ("invalid_request_error", json!("invalid_api_key")),
                429 => ("requests", json!("rate_limit_exceeded")),
                500..=599 => ("server_error", Value::Null),
                _ => ("invalid_request_error", Value::Null),
            };
            json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
        }
    };
    let mut response = (status, axum::Json(body)).into_response();
    if matches!(status.as_u16(), 429 | 529) {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;
    use futures_util::StreamExt;
    use tower::ServiceExt;

    fn post(path: &str, headers: &[(&str, &str)], body: &Value) -> Request<Body> {
        let mut request = Request::post(path).header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(Body::from(body.to_string())).unwrap()
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
        let (status, headers, body) =
            call(post("/v1/messages", &[], &anthropic_request(false))).await;
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
                "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0})
        );
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
}
