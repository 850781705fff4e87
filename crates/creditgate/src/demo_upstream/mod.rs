//! The built-in demo upstream: answers, offline, with a canned reply and deterministic usage,
//! every endpoint the metering proxy serves, so the embedded default (`anthropic_upstream =
//! "demo"`, `openai_upstream = "demo"`) works with no network and no provider key. It checks no
//! credentials.
//!
//! | route | answers |
//! |---|---|
//! | `POST /v1/messages` | Anthropic Messages, streamed or not |
//! | `POST /v1/messages/count_tokens` | Anthropic `{"input_tokens"}`: what `/v1/messages` reports for the body |
//! | `POST /v1/chat/completions` | OpenAI Chat Completions, streamed or not |
//! | `POST /v1/responses` | OpenAI Responses, streamed or not |
//! | `POST /v1/embeddings` | OpenAI embeddings (never streamed) |
//! | `GET /v1/models`, `GET /v1/models/{id}` | the model list, or any one model, in the Anthropic shape when the request has an `anthropic-version` header (the proxy always sends one), else the OpenAI shape |
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
//!   - OpenAI Responses: `instructions` plus `input` (a string, or each item's `content`: a
//!     string or the `text` of each of its parts);
//!   - embeddings: each input separately (a text `max(1, ⌈B / 4⌉)`, a token-id array its
//!     length), summed.
//!
//!   Nothing else counts: roles, the model, tools, images, blocks without a `text` string.
//!   See [`anthropic_input_tokens`], [`openai_input_tokens`], [`responses_input_tokens`] and
//!   [`embedding_input_tokens`]. A token count reports what Messages would.
//! * **Output tokens** = `min(limit, REPLY_WORDS)` ([`output_tokens`]), where the limit is
//!   Anthropic `max_tokens`, OpenAI `max_completion_tokens` else `max_tokens`, and
//!   [`DEFAULT_MAX_TOKENS`] (64) when the request gives none. [`REPLY_WORDS`] is 32, the
//!   number of words of [`REPLY`].
//! * Anthropic cache writes: each text block (of `system` or of a message) with
//!   `cache_control` writes its own `max(1, ⌈b / 4⌉)` tokens, to the 1-hour cache when its
//!   `ttl` is `"1h"`, else to the 5-minute one ([`anthropic_cache_writes`]); they are reported
//!   as `cache_creation_input_tokens` and split in `cache_creation`
//!   {`ephemeral_5m_input_tokens`, `ephemeral_1h_input_tokens`}, and taken out of the input
//!   tokens (`max(1, input − writes)`). A token count still reports the whole input.
//! * Anthropic server tools: each `web_search_*` (`web_fetch_*`) tool runs
//!   `min(max_uses, SERVER_TOOL_RUNS)` (2) searches (fetches), reported as `server_tool_use`
//!   {`web_search_requests`, `web_fetch_requests`} in the message's usage and in the stream's
//!   `message_delta` (which then carries every count, as Anthropic's does);
//!   [`anthropic_server_tool_requests`]. Without server tools there is no `server_tool_use`.
//! * Other cache tokens are 0 (Anthropic `cache_read_input_tokens`, OpenAI
//!   `prompt_tokens_details.cached_tokens`), except in Responses answers: `input_tokens_details.cached_tokens` = `128 × ⌊input / 256⌋` once the
//!   input reaches [`CACHE_MIN_TOKENS`] (1,024), else 0 ([`cached_tokens`]); they are part of
//!   `input_tokens`, as OpenAI reports them.
//! * Reasoning (Responses with a non-null `reasoning`): [`REASONING_TOKENS`] (8) reasoning
//!   tokens come before the reply: output tokens = `min(limit, 8 + REPLY_WORDS)`, of which
//!   `output_tokens_details.reasoning_tokens` = `min(limit, 8)`; the answer starts with a
//!   `reasoning` item. Otherwise `reasoning_tokens` is 0. The limit is `max_output_tokens`.
//! * Embeddings have no output; `usage` is {`prompt_tokens`, `total_tokens`}, both the input
//!   tokens.
//!
//! The reply text is the first *output tokens* (less the reasoning tokens) words of [`REPLY`]
//! joined by single spaces (one word per token). The stop reason is `end_turn` / `stop`, or
//! `max_tokens` / `length` when the limit cut the reply short (a Responses answer is then
//! `incomplete`, with `incomplete_details.reason = "max_output_tokens"`).
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
//! * OpenAI Responses, not streamed: a `response` object with `output` (a `reasoning` item
//!   when reasoning, then the `message` with one `output_text` part) and `usage`
//!   {`input_tokens`, `input_tokens_details` {`cached_tokens`, `cache_write_tokens`: 0},
//!   `output_tokens`, `output_tokens_details` {`reasoning_tokens`}, `total_tokens`}.
//! * OpenAI Responses, `"stream": true`: `event: <type>` / `data: {…}` events with increasing
//!   `sequence_number`, as OpenAI sends them: `response.created`, `response.in_progress`, (the
//!   reasoning item's `response.output_item.added` and `.done`), `response.output_item.added`,
//!   `response.content_part.added`, one `response.output_text.delta` per word,
//!   `response.output_text.done`, `response.content_part.done`, `response.output_item.done`,
//!   then `response.completed` (or `response.incomplete`) whose `response` carries the usage.
//! * Embeddings: `{"object": "list", "data": [{"object": "embedding", "index", "embedding"}],
//!   "model", "usage"}`, one deterministic vector per input of `dimensions` (default
//!   [`DEFAULT_EMBEDDING_DIMENSIONS`]) components, as floats or, with `encoding_format:
//!   "base64"` (the `openai` SDK's default), base64 of little-endian `f32`s.
//!
//! Every event of a stream is its own body chunk, flushed before the next one is made;
//! [`DemoOptions::event_delay`] (default 0) or the `x-demo-event-delay-ms` header spaces them.
//! Ids are random (`msg_demo_…`, `chatcmpl-demo…`, `resp_demo…`); everything else depends on the
//! request only (and `created` / `created_at` on the clock).
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
//!   string and the output count negative (OpenAI: `total_tokens` a string too; embeddings:
//!   `prompt_tokens` a string).
//! * `x-demo-cut-stream: N`: a stream sends its first `N` events, then the connection is torn
//!   down (the body ends in an error: no `message_delta` / usage chunk, no `message_stop` /
//!   `[DONE]`, no `response.completed`). Ignored for a request that is not streamed.
//! * `x-demo-event-delay-ms: N`: the pause between two stream events for this request (at most
//!   [`DELAY_MS_MAX`]).
//!
//! The hooks apply to every route (the status and delay ones to the model routes too). A hook
//! header with a value that is not a number in range, or a body that is not a JSON object with
//! a string `model` and what the endpoint needs (`messages` an array; Responses `input` a string
//! or an array if present; embeddings a non-empty `input`), is answered 400 in the style's
//! envelope.
//!
//! # Layout
//!
//! Here: the router, `answer` (hooks, then the request, then a body or a paced stream), the
//! pacing and the error envelopes. `usage.rs`: the token counts; `request.rs`: what the hook
//! headers and the body ask for; `anthropic.rs`, `openai.rs` and `openai_responses.rs`: each
//! API's body and stream events; `embeddings.rs`: the vectors; `models.rs`: the model
//! catalogue and the token count.

mod anthropic;
mod embeddings;
mod models;
mod openai;
mod openai_responses;
mod request;
#[cfg(test)]
mod tests;
mod usage;

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

use anthropic::{anthropic_events, anthropic_message};
pub use models::{ANTHROPIC_MODELS, OPENAI_MODELS};
use openai::{openai_completion, openai_events};
use openai_responses::{openai_response, openai_response_events};
use request::{Ask, EmbeddingsAsk, Hooks};
pub use usage::{
    anthropic_cache_writes, anthropic_input_tokens, anthropic_server_tool_requests, cached_tokens,
    embedding_input_tokens, openai_input_tokens, output_tokens, responses_input_tokens,
    CACHE_MIN_TOKENS, REASONING_TOKENS, SERVER_TOOL_RUNS,
};

/// The canned reply; a response carries its first *output tokens* words.
pub const REPLY: &str = "Hello from the creditgate demo upstream! This answer is canned and its \
usage is deterministic, so every call through the metering proxy is priced, debited and cut off \
at zero as documented.";
/// The number of words of [`REPLY`]: the most output tokens a response reports.
pub const REPLY_WORDS: u64 = 32;
/// The output limit when the request gives none.
pub const DEFAULT_MAX_TOKENS: u64 = 64;
/// The components of an embedding when the request gives no `dimensions`.
pub const DEFAULT_EMBEDDING_DIMENSIONS: usize = 16;
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
    let api = move |api: Api| {
        post(move |headers: HeaderMap, body: Bytes| answer(api, options, headers, body))
    };
    Router::new()
        .route("/v1/messages", api(Api::Messages))
        .route("/v1/messages/count_tokens", api(Api::CountTokens))
        .route("/v1/chat/completions", api(Api::ChatCompletions))
        .route("/v1/responses", api(Api::Responses))
        .route("/v1/embeddings", api(Api::Embeddings))
        .route(
            "/v1/models",
            get(|headers: HeaderMap| catalogue(headers, None)),
        )
        .route(
            "/v1/models/{id}",
            get(|headers: HeaderMap, Path(id): Path<String>| catalogue(headers, Some(id))),
        )
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Style {
    Anthropic,
    OpenAi,
}

/// The API a POST route answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Api {
    Messages,
    CountTokens,
    ChatCompletions,
    Responses,
    Embeddings,
}

impl Api {
    fn style(self) -> Style {
        match self {
            Api::Messages | Api::CountTokens => Style::Anthropic,
            Api::ChatCompletions | Api::Responses | Api::Embeddings => Style::OpenAi,
        }
    }
}

/// The hooks every route obeys first: a bad hook is a 400, then the delay, then the status
/// asked for.
async fn hooks(style: Style, headers: &HeaderMap) -> Result<Hooks, Response> {
    let hooks = Hooks::parse(headers).map_err(|m| error(style, StatusCode::BAD_REQUEST, &m))?;
    if !hooks.delay.is_zero() {
        tokio::time::sleep(hooks.delay).await;
    }
    if let Some(status) = hooks.status {
        return Err(error(
            style,
            status,
            "Demo upstream: error asked for by x-demo-status.",
        ));
    }
    Ok(hooks)
}

/// `GET /v1/models` (`id` none) and `GET /v1/models/{id}`.
async fn catalogue(headers: HeaderMap, id: Option<String>) -> Response {
    let style = if headers.contains_key("anthropic-version") {
        Style::Anthropic
    } else {
        Style::OpenAi
    };
    if let Err(refused) = hooks(style, &headers).await {
        return refused;
    }
    let body = match id {
        None => models::models(style),
        Some(id) => models::model(style, &id),
    };
    (StatusCode::OK, axum::Json(body)).into_response()
}

async fn answer(api: Api, options: DemoOptions, headers: HeaderMap, body: Bytes) -> Response {
    let style = api.style();
    let hooks = match hooks(style, &headers).await {
        Ok(hooks) => hooks,
        Err(refused) => return refused,
    };
    let malformed = hooks.malformed_usage;
    let bad = |message: String| error(style, StatusCode::BAD_REQUEST, &message);
    let ask = match api {
        Api::Embeddings => {
            return match EmbeddingsAsk::parse(&body) {
                Ok(ask) => (
                    StatusCode::OK,
                    axum::Json(embeddings::embeddings(&ask, malformed)),
                )
                    .into_response(),
                Err(message) => bad(message),
            }
        }
        Api::Responses => Ask::parse_responses(&body),
        Api::Messages | Api::CountTokens | Api::ChatCompletions => Ask::parse(style, &body),
    };
    let ask = match ask {
        Ok(ask) => ask,
        Err(message) => return bad(message),
    };
    if api == Api::CountTokens {
        return (StatusCode::OK, axum::Json(models::token_count(&ask))).into_response();
    }
    if !ask.stream {
        let body = match api {
            Api::Messages => anthropic_message(&ask, malformed),
            Api::Responses => openai_response(&ask, malformed),
            _ => openai_completion(&ask, malformed),
        };
        return (StatusCode::OK, axum::Json(body)).into_response();
    }
    let events = match api {
        Api::Messages => anthropic_events(&ask, malformed),
        Api::Responses => openai_response_events(&ask, malformed),
        _ => openai_events(&ask, malformed),
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
    format!("{prefix}{}", crate::ids::random_hex(12))
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
