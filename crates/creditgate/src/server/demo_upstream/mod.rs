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
//!
//! # Layout
//!
//! Here: the router, `answer` (hooks, then the request, then a body or a paced stream), the
//! pacing and the error envelopes. `usage.rs`: the token counts; `request.rs`: what the hook
//! headers and the body ask for; `anthropic.rs` and `openai.rs`: each style's body and stream
//! events.

mod anthropic;
mod openai;
mod request;
#[cfg(test)]
mod tests;
mod usage;

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

use anthropic::{anthropic_events, anthropic_message};
use openai::{openai_completion, openai_events};
use request::{Ask, Hooks};
pub use usage::{anthropic_input_tokens, openai_input_tokens, output_tokens};

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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Style {
    Anthropic,
    OpenAi,
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
