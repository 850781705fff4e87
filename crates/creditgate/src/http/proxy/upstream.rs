//! Talking to the upstream: sending within its limits, reading a whole body, passing a
//! stream through while a task meters it.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

use crate::http::error::ApiError;

use super::formats::Style;
use super::settle::settle;
use super::{endpoints, Call, Unanswered};
use crate::state::AppState;

/// Sends the request upstream; connects within `upstream_connect_timeout_ms` and waits for
/// its headers at most `upstream_timeout_ms`.
pub(super) async fn send(
    state: &AppState,
    style: Style,
    method: reqwest::Method,
    path: &str,
    client_headers: &HeaderMap,
    body: Bytes,
    deadline: tokio::time::Instant,
) -> Result<reqwest::Response, Unanswered> {
    let (base, key) = base_and_key(state, style);
    let mut request = state
        .http()
        .request(method, format!("{base}{path}"))
        .header(header::CONTENT_TYPE, "application/json")
        // The usage is read from the bytes as they pass: no compression.
        .header(header::ACCEPT_ENCODING, "identity")
        .body(body);
    // Only what the upstream needs from the client; never its credentials. The demo
    // upstream's test hooks go to the demo upstream only.
    let to_demo = match style {
        Style::Anthropic => state.config().anthropic_upstream.is_demo(),
        Style::OpenAi => state.config().openai_upstream.is_demo(),
    };
    let demo_hooks: &[&str] = if to_demo { &DEMO_HOOK_HEADERS } else { &[] };
    for name in ["anthropic-version", "anthropic-beta"]
        .iter()
        .chain(demo_hooks)
    {
        if let Some(value) = client_headers.get(*name) {
            request = request.header(*name, value);
        }
    }
    if style == Style::Anthropic && !client_headers.contains_key("anthropic-version") {
        request = request.header("anthropic-version", "2023-06-01");
    }
    if !key.is_empty() {
        request = match style {
            Style::Anthropic => request.header("x-api-key", key),
            Style::OpenAi => request.bearer_auth(key),
        };
    }
    // The first byte within upstream_timeout_ms, and within the whole call's limit.
    let timeout = next_chunk_wait(state, deadline).unwrap_or(Duration::ZERO);
    match tokio::time::timeout(timeout, request.send()).await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(error)) if error.is_connect() => {
            tracing::warn!(%error, "upstream unreachable");
            Err(Unanswered::NotForwarded(ApiError::upstream(
                StatusCode::BAD_GATEWAY,
                "upstream_unreachable",
                "The upstream API could not be reached.",
            )))
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, "upstream connection failed after forwarding");
            Err(Unanswered::Forwarded(ApiError::upstream(
                StatusCode::BAD_GATEWAY,
                "upstream_failed",
                "The upstream's answer broke off.",
            )))
        }
        Err(_) => Err(Unanswered::Forwarded(ApiError::upstream(
            StatusCode::GATEWAY_TIMEOUT,
            "upstream_timeout",
            "The upstream API did not answer in time.",
        ))),
    }
}

/// How long to wait for the next chunk: `upstream_timeout_ms`, but not past the call's
/// deadline. `None` once the deadline has passed.
pub(super) fn next_chunk_wait(
    state: &AppState,
    deadline: tokio::time::Instant,
) -> Option<Duration> {
    let idle = Duration::from_millis(state.config().upstream_timeout_ms.max(1));
    let left = deadline.checked_duration_since(tokio::time::Instant::now())?;
    Some(idle.min(left))
}

/// The answer when a call passes `proxy_call_ms_max`.
pub(super) fn call_too_long() -> ApiError {
    ApiError::upstream(
        StatusCode::GATEWAY_TIMEOUT,
        "upstream_call_too_long",
        "The upstream API took longer than this service allows for one call.",
    )
}

/// The demo upstream's test hooks (see `demo_upstream`).
pub(super) const DEMO_HOOK_HEADERS: [&str; 5] = [
    "x-demo-status",
    "x-demo-delay-ms",
    "x-demo-malformed-usage",
    "x-demo-cut-stream",
    "x-demo-event-delay-ms",
];

/// A non-streamed body, whole, bounded in size and time.
pub(super) async fn read_body(
    state: &AppState,
    response: reqwest::Response,
    deadline: tokio::time::Instant,
) -> Result<Bytes, ApiError> {
    let limit = state.config().upstream_body_bytes_max;
    let mut stream = response.bytes_stream();
    let mut body = Vec::new();
    loop {
        let Some(wait) = next_chunk_wait(state, deadline) else {
            return Err(call_too_long());
        };
        match tokio::time::timeout(wait, stream.next()).await {
            Ok(Some(Ok(chunk))) => {
                if body.len() + chunk.len() > limit {
                    return Err(ApiError::upstream(
                        StatusCode::BAD_GATEWAY,
                        "upstream_body_too_large",
                        "The upstream's answer is too large.",
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(Bytes::from(body)),
            Ok(Some(Err(error))) => {
                tracing::warn!(%error, "upstream body failed");
                return Err(ApiError::upstream(
                    StatusCode::BAD_GATEWAY,
                    "upstream_failed",
                    "The upstream's answer broke off.",
                ));
            }
            Err(_) => {
                return Err(ApiError::upstream(
                    StatusCode::GATEWAY_TIMEOUT,
                    "upstream_timeout",
                    "The upstream API did not answer in time.",
                ))
            }
        }
    }
}

/// Passes a stream through as it arrives while a task meters it and settles at its end.
pub(super) fn stream(
    state: AppState,
    call: Call,
    client_wants_usage: bool,
    response: reqwest::Response,
    headers: HeaderMap,
    deadline: tokio::time::Instant,
) -> Response {
    let (sender, receiver) =
        tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(STREAM_CHUNKS_BUFFERED_MAX);
    // Tracked, so that a graceful shutdown waits (bounded) for it to settle.
    let tracker = state.proxy_calls().clone();
    tracker.spawn(async move {
        let mut meter = endpoints::stream_meter(call.endpoint, client_wants_usage);
        let mut upstream = response.bytes_stream();
        let mut client_open = true;
        // Whether the body ended cleanly with its last line unterminated: that line is the
        // end of an event (the SDKs read it so, and the `anthropic` package's own recorded
        // streams end that way), not a line cut short.
        let mut last_byte = b'\n';
        loop {
            let Some(wait) = next_chunk_wait(&state, deadline) else {
                tracing::warn!(hold = %call.hold.id.as_str(), "stream passed proxy_call_ms_max; cut off");
                break;
            };
            match tokio::time::timeout(wait, upstream.next()).await {
                Ok(Some(Ok(chunk))) => {
                    last_byte = chunk.last().copied().unwrap_or(last_byte);
                    let out = meter.feed(&chunk);
                    if client_open
                        && !out.is_empty()
                        && sender.send(Ok(Bytes::from(out))).await.is_err()
                    {
                        // The client went away: keep reading to learn the usage.
                        client_open = false;
                        tracing::info!(hold = %call.hold.id.as_str(), "client left mid-stream; draining the upstream for its usage");
                    }
                }
                Ok(None) => {
                    if last_byte != b'\n' {
                        let out = meter.feed(b"\n\n");
                        if client_open && !out.is_empty() {
                            let _ = sender.send(Ok(Bytes::from(out))).await;
                        }
                    }
                    break;
                }
                Ok(Some(Err(error))) => {
                    tracing::warn!(%error, "upstream stream broke off");
                    break;
                }
                Err(_) => {
                    tracing::warn!("upstream stream stalled past upstream_timeout_ms");
                    break;
                }
            }
        }
        let (rest, seen) = meter.finish();
        if client_open && !rest.is_empty() {
            let _ = sender.send(Ok(Bytes::from(rest))).await;
        }
        drop(sender);
        // A complete usage report counts even if some other event was unreadable.
        let usage = if seen.complete { seen.usage } else { None };
        if usage.is_none() {
            tracing::warn!(hold = %call.hold.id.as_str(), ?seen.usage, "stream usage incomplete or malformed; charging the hold");
        }
        settle(&state, &call, usage).await;
    });
    let body = Body::from_stream(futures_util::stream::unfold(
        receiver,
        |mut receiver| async move { receiver.recv().await.map(|item| (item, receiver)) },
    ));
    (StatusCode::OK, headers, body).into_response()
}

/// Chunks a stream may have in flight between the upstream and a slow client.
pub(super) const STREAM_CHUNKS_BUFFERED_MAX: usize = 64;

/// The style's upstream base URL and the provider's key for it.
fn base_and_key(state: &AppState, style: Style) -> (&str, &str) {
    match style {
        Style::Anthropic => state.anthropic_upstream(),
        Style::OpenAi => state.openai_upstream(),
    }
}
