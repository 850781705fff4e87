//! The metering proxy: `POST /anthropic/v1/messages` and `POST /openai/v1/chat/completions`
//! forward to the configured upstream, so an SDK only changes its base URL.
//!
//! Price before, settle after: the caller's creditgate key is checked, the request's worst
//! case is held (input tokens bounded by the request's bytes, output by `max_tokens` or the
//! price's `max_output_tokens`), the request goes upstream with the provider's key (never
//! the caller's), and the hold is settled at the usage the upstream reports, priced at the
//! version in force when the hold was placed.
//!
//! Charge rules:
//! * 2xx with usage: the usage's price (body `usage`, or the stream's usage events).
//! * 2xx whose usage is missing, malformed or incomplete (a stream cut short): the hold's
//!   amount (the worst case), logged and counted (`creditgate_proxy_usage_unknown_total`).
//! * Upstream 4xx/5xx: voided (nothing charged); the upstream's status and body pass through.
//! * Upstream unreachable or no response headers within `upstream_timeout_ms`: voided; 502 /
//!   504 in the style's envelope.
//! * Client gone mid-stream: the proxy keeps reading the upstream (each chunk within
//!   `upstream_timeout_ms`) to learn the usage it reports, then settles as above. No hold is
//!   left open: every path ends in a settle or a void (and the TTL expiry backs that up).
//! * Refusals before forwarding (no credits, suspended, spend limit, unknown model, bad body,
//!   body too large) change nothing and answer in the style's own error envelope: 402 is
//!   Anthropic `billing_error` / OpenAI `insufficient_quota`, which SDKs do not retry.
//!
//! Headers on every proxied answer: `creditgate-balance-available` and
//! `creditgate-access-state`. For a non-streamed call they are read after the settlement;
//! for a stream (whose headers go out before the usage is known) they are as of the hold.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use creditgate_domain::ledger::{AccountId, Hold, HoldId, HOLD_TTL_MS_MAX};
use creditgate_domain::pricing::{self, PriceVersion, Usage};
use creditgate_store::api::Org;
use futures_util::StreamExt;

use super::auth::Caller;
use super::error::ApiError;
use super::routes::holds;
use super::routes::prices::price_at;
use super::views::HoldTerms;
use super::{metrics, AppState};
use crate::proxy::formats::{self, Style};

/// Anthropic-style Messages.
#[utoipa::path(post, path = "/anthropic/v1/messages", tag = "proxy",
    request_body(content = Object, description = "An Anthropic Messages API request."),
    responses((status = 200, description = "The upstream's answer, streamed or not"), (status = 400), (status = 401), (status = 402), (status = 413), (status = 502), (status = 504)))]
pub async fn anthropic_messages(State(state): State<AppState>, request: Request) -> Response {
    proxy(state, Style::Anthropic, request).await
}

/// OpenAI-style Chat Completions.
#[utoipa::path(post, path = "/openai/v1/chat/completions", tag = "proxy",
    request_body(content = Object, description = "An OpenAI Chat Completions request."),
    responses((status = 200, description = "The upstream's answer, streamed or not"), (status = 400), (status = 401), (status = 402), (status = 413), (status = 502), (status = 504)))]
pub async fn openai_chat_completions(State(state): State<AppState>, request: Request) -> Response {
    proxy(state, Style::OpenAi, request).await
}

async fn proxy(state: AppState, style: Style, request: Request) -> Response {
    let mut org = None;
    match forward(&state, style, request, &mut org).await {
        Ok(response) => response,
        Err(error) => {
            let mut answer = style_error(style, error);
            // Refusals after authentication carry the balance headers too (a 402 says
            // `depleted` right there).
            if let Some(org) = &org {
                balance_headers(&state, org, answer.headers_mut()).await;
            }
            answer
        }
    }
}

/// What one proxied call holds and how to settle it.
struct Call {
    org: Org,
    hold: Hold,
    price: PriceVersion,
}

/// Forwards one call; `known_org` is set once the caller is authenticated.
async fn forward(
    state: &AppState,
    style: Style,
    request: Request,
    known_org: &mut Option<Org>,
) -> Result<Response, ApiError> {
    let (mut parts, body) = request.into_parts();
    let caller = Caller::from_request_parts(&mut parts, state).await?;
    let Caller::Key { org, .. } = &caller else {
        return Err(ApiError::forbidden(
            "The proxy takes an org's API key, not the operator token.",
        ));
    };
    let org = org.clone();
    *known_org = Some(org.clone());
    let bytes = axum::body::to_bytes(body, state.config().body_bytes_max)
        .await
        .map_err(|_| ApiError::too_large("The request body is too large."))?;
    let json: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request("invalid_json", format!("The body is not valid JSON: {e}"))
    })?;
    let facts = formats::request_facts(style, &json).map_err(request_error)?;
    let now = state.now();
    let price = price_at(state, &facts.model, now, "model").await?;
    let output = facts.output_tokens_max(price.max_output_tokens);
    let amount = pricing::worst_case(&price.prices, facts.input_tokens_max, output)
        .map_err(|e| ApiError::invalid("max_tokens", "amount_overflow", e.to_string()))?;
    let terms = HoldTerms {
        model: Some(facts.model.clone()),
        price_id: Some(price.id.clone()),
        key_id: caller.key_id().map(str::to_owned),
        // Names the call in the transition a refusal of it records.
        request_id: super::error::current_request_id(),
    };
    let ttl_ms = i64::try_from(state.config().hold_ttl_s_default.saturating_mul(1000))
        .unwrap_or(HOLD_TTL_MS_MAX)
        .clamp(1, HOLD_TTL_MS_MAX);
    let hold_id = HoldId::new(state.new_id("hold"));
    let hold = holds::place(state, &caller, &org, hold_id, amount, &terms, ttl_ms, now).await?;
    let call = Call { org, hold, price };
    let upstream_body = formats::upstream_body(style, &json, &facts).map_or(bytes, Bytes::from);
    let response = match send(state, style, &parts.headers, upstream_body).await {
        Ok(response) => response,
        Err(error) => {
            void(state, &call).await;
            return Err(error);
        }
    };
    let status = response.status();
    let headers = pass_headers(response.headers());
    if !status.is_success() {
        // No usage on an upstream error: nothing is charged.
        let body = read_body(state, response).await.unwrap_or_default();
        void(state, &call).await;
        let mut answer = (status_of(status), headers, body).into_response();
        balance_headers(state, &call.org, answer.headers_mut()).await;
        return Ok(answer);
    }
    if facts.stream {
        let org = call.org.clone();
        let mut answer = stream(
            state.clone(),
            style,
            call,
            facts.client_wants_usage,
            response,
            headers,
        );
        balance_headers(state, &org, answer.headers_mut()).await;
        return Ok(answer);
    }
    let body = match read_body(state, response).await {
        Ok(body) => body,
        Err(error) => {
            settle(state, &call, None).await;
            return Err(error);
        }
    };
    let usage = match formats::usage_from_body(style, &body) {
        Ok(usage) => Some(usage),
        Err(error) => {
            tracing::warn!(?error, hold = %call.hold.id.as_str(), "upstream usage missing or malformed; charging the hold");
            None
        }
    };
    settle(state, &call, usage).await;
    let mut answer = (StatusCode::OK, headers, body).into_response();
    balance_headers(state, &call.org, answer.headers_mut()).await;
    Ok(answer)
}

/// Sends the request upstream; waits for its headers at most `upstream_timeout_ms`.
async fn send(
    state: &AppState,
    style: Style,
    client_headers: &HeaderMap,
    body: Bytes,
) -> Result<reqwest::Response, ApiError> {
    let (base, key) = state.upstream(style);
    let path = match style {
        Style::Anthropic => "/v1/messages",
        Style::OpenAi => "/v1/chat/completions",
    };
    let mut request = state
        .http()
        .post(format!("{base}{path}"))
        .header(header::CONTENT_TYPE, "application/json")
        // The usage is read from the bytes as they pass: no compression.
        .header(header::ACCEPT_ENCODING, "identity")
        .body(body);
    // Only what the upstream needs from the client; never its credentials. The demo
    // upstream's test hooks go to the demo upstream only.
    let to_demo = match style {
        Style::Anthropic => state.config().anthropic_upstream == "demo",
        Style::OpenAi => state.config().openai_upstream == "demo",
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
    let timeout = Duration::from_millis(state.config().upstream_timeout_ms.max(1));
    match tokio::time::timeout(timeout, request.send()).await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(error)) => {
            tracing::warn!(%error, "upstream unreachable");
            Err(ApiError::upstream(
                StatusCode::BAD_GATEWAY,
                "upstream_unreachable",
                "The upstream API could not be reached.",
            ))
        }
        Err(_) => Err(ApiError::upstream(
            StatusCode::GATEWAY_TIMEOUT,
            "upstream_timeout",
            "The upstream API did not answer in time.",
        )),
    }
}

/// The demo upstream's test hooks (see `demo_upstream`).
const DEMO_HOOK_HEADERS: [&str; 5] = [
    "x-demo-status",
    "x-demo-delay-ms",
    "x-demo-malformed-usage",
    "x-demo-cut-stream",
    "x-demo-event-delay-ms",
];

/// A non-streamed body, whole, bounded in size and time.
async fn read_body(state: &AppState, response: reqwest::Response) -> Result<Bytes, ApiError> {
    let limit = state.config().upstream_body_bytes_max;
    let timeout = Duration::from_millis(state.config().upstream_timeout_ms.max(1));
    let mut stream = response.bytes_stream();
    let mut body = Vec::new();
    loop {
        match tokio::time::timeout(timeout, stream.next()).await {
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
fn stream(
    state: AppState,
    style: Style,
    call: Call,
    client_wants_usage: bool,
    response: reqwest::Response,
    headers: HeaderMap,
) -> Response {
    let (sender, receiver) =
        tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(STREAM_CHUNKS_BUFFERED_MAX);
    let timeout = Duration::from_millis(state.config().upstream_timeout_ms.max(1));
    tokio::spawn(async move {
        let mut meter =
            formats::StreamMeter::new(style, style == Style::Anthropic || client_wants_usage);
        let mut upstream = response.bytes_stream();
        let mut client_open = true;
        loop {
            match tokio::time::timeout(timeout, upstream.next()).await {
                Ok(Some(Ok(chunk))) => {
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
                Ok(None) => break,
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
const STREAM_CHUNKS_BUFFERED_MAX: usize = 64;

/// Settles the call at `usage`'s price, or at the hold's amount when the usage is unknown.
async fn settle(state: &AppState, call: &Call, usage: Option<Usage>) {
    let amount = match usage.map(|usage| pricing::cost(&call.price.prices, &usage)) {
        Some(Ok(amount)) => amount,
        Some(Err(_)) | None => {
            metrics::proxy_usage_unknown();
            call.hold.amount
        }
    };
    match holds::settle(state, &call.hold, amount).await {
        Ok(Ok(_)) => {}
        Ok(Err(rejection)) => {
            tracing::error!(code = rejection.code(), hold = %call.hold.id.as_str(), "proxy settlement refused")
        }
        Err(error) => {
            tracing::error!(?error.code, hold = %call.hold.id.as_str(), "proxy settlement failed; the hold expires at its TTL")
        }
    }
}

async fn void(state: &AppState, call: &Call) {
    match holds::void(state, &call.hold).await {
        Ok(Ok(_)) => {}
        Ok(Err(rejection)) => {
            tracing::error!(code = rejection.code(), hold = %call.hold.id.as_str(), "proxy void refused")
        }
        Err(error) => {
            tracing::error!(?error.code, hold = %call.hold.id.as_str(), "proxy void failed; the hold expires at its TTL")
        }
    }
}

/// The balance headers: the account read now, the access derived from it.
async fn balance_headers(state: &AppState, org: &Org, headers: &mut HeaderMap) {
    // The access as the last batch recorded it (the same the balance API and the page read),
    // with the balance as of now.
    let (Ok(Some(account)), Ok(Some(org))) = (
        state.store().account(&AccountId::new(org.id.clone())).await,
        state.store().org(&org.id).await,
    ) else {
        return;
    };
    let available = account.available();
    if let Ok(value) = HeaderValue::from_str(&available.to_string()) {
        headers.insert("creditgate-balance-available", value);
    }
    headers.insert(
        "creditgate-access-state",
        HeaderValue::from_static(org.access.state.as_str()),
    );
    // Why calls are refused, when they are (the same as the balance API's `calls_refused`).
    if let Ok(Some(refused)) = super::routes::credits::calls_refused(state, &org, state.now()).await
    {
        headers.insert(
            "creditgate-calls-refused",
            HeaderValue::from_static(refused.code),
        );
    }
}

/// The upstream headers a client may see.
fn pass_headers(upstream: &reqwest::header::HeaderMap) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for name in ["content-type", "retry-after", "request-id", "x-request-id"] {
        if let Some(value) = upstream
            .get(name)
            .and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok())
        {
            if let Ok(name) = header::HeaderName::from_bytes(name.as_bytes()) {
                headers.insert(name, value);
            }
        }
    }
    headers
}

fn status_of(status: reqwest::StatusCode) -> StatusCode {
    StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY)
}

fn request_error(error: formats::RequestError) -> ApiError {
    match error {
        formats::RequestError::NotJson => {
            ApiError::bad_request("invalid_json", "The body is not valid JSON.")
        }
        formats::RequestError::NotObject => {
            ApiError::bad_request("invalid_body", "The body must be a JSON object.")
        }
        formats::RequestError::MissingModel => {
            ApiError::invalid("model", "parameter_missing", "model is required.")
        }
        formats::RequestError::BadField { field, message } => {
            ApiError::invalid(field, "parameter_invalid", message)
        }
    }
}

/// An error in the style's own envelope, so SDKs show it for what it is.
fn style_error(style: Style, error: ApiError) -> Response {
    let request_id = super::error::REQUEST_ID
        .try_with(Clone::clone)
        .unwrap_or_default();
    let body = match style {
        Style::Anthropic => {
            let kind = match error.status.as_u16() {
                400 => "invalid_request_error",
                401 => "authentication_error",
                402 => "billing_error",
                403 => "permission_error",
                404 => "not_found_error",
                413 => "request_too_large",
                429 => "rate_limit_error",
                503 | 529 => "overloaded_error",
                _ => "api_error",
            };
            serde_json::json!({
                "type": "error",
                "error": { "type": kind, "message": error.message, "code": error.code, "billing_url": error.billing_url, "param": error.param },
                "request_id": request_id,
            })
        }
        Style::OpenAi => {
            let kind = match error.status.as_u16() {
                402 => "insufficient_quota",
                400 | 404 | 413 => "invalid_request_error",
                401 => "authentication_error",
                403 => "permission_error",
                _ => "api_error",
            };
            serde_json::json!({
                "error": { "message": error.message, "type": kind, "param": error.param, "code": error.code, "billing_url": error.billing_url },
                "request_id": request_id,
            })
        }
    };
    (error.status, axum::Json(body)).into_response()
}
