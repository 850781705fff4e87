//! The metering proxy: the endpoints customers call, forwarded to the configured upstream
//! (the path after `/anthropic` or `/openai`), so an SDK only changes its base URL.
//!
//! | route | metered | usage from |
//! |---|---|---|
//! | `POST /anthropic/v1/messages` | yes, streamed or not | `usage`; `message_start` / `message_delta` |
//! | `POST /openai/v1/chat/completions` | yes, streamed or not | `usage`; the usage chunk (asked for) |
//! | `POST /openai/v1/responses` | yes, streamed or not | `usage`; the `response.completed` (`.incomplete`, `.failed`) event's `response.usage` |
//! | `POST /openai/v1/embeddings` | yes (never streamed) | `usage.prompt_tokens` |
//! | `POST /anthropic/v1/messages/count_tokens` | free | — |
//! | `GET /anthropic/v1/models`, `GET /anthropic/v1/models/{model}` | free | — |
//! | `GET /openai/v1/models`, `GET /openai/v1/models/{model}` | free | — |
//!
//! What each endpoint's request and usage say, and how its worst case is bounded, is
//! `proxy::endpoints` (and `proxy::formats` for Messages and Chat Completions).
//!
//! Price before, settle after: the caller's creditgate key is checked, the request's worst
//! case is held (input tokens bounded by the request's bytes, output by `max_tokens` /
//! `max_completion_tokens` / `max_output_tokens` or the price's `max_output_tokens`; for
//! embeddings the input alone, at the input price), the request goes upstream with the
//! provider's key (never the caller's), and the hold is settled at the usage the upstream
//! reports, priced at the version in force when the hold was placed: Responses cached input
//! (`input_tokens_details.cached_tokens`, part of `input_tokens`) at the cache-read price,
//! its reasoning tokens (part of `output_tokens`) as output, once.
//!
//! Charge rules:
//! * 2xx with usage: the usage's price (body `usage`, or the stream's usage events).
//! * 2xx whose usage is missing, malformed or incomplete (a stream cut short): the hold's
//!   amount (the worst case), logged and counted (`creditgate_proxy_usage_unknown_total`).
//! * Upstream 4xx/5xx: voided (nothing charged); the upstream's status and body pass through.
//! * Upstream not reachable (no connection within `upstream_connect_timeout_ms`): nothing was
//!   forwarded, so voided; 502 `upstream_unreachable`, which a client may retry.
//! * Forwarded, then given up on (no headers within `upstream_timeout_ms`, a body that breaks
//!   off or stalls past it, the whole call past `proxy_call_ms_max`): the upstream may have
//!   served and billed it, so the hold's amount is charged (logged, and counted as usage
//!   unknown); 502 / 504 in the style's envelope with `x-should-retry: false`, which the
//!   official SDKs obey, so they do not send again a call the upstream may bill (they retry
//!   408, 409, 429 and 5xx otherwise).
//! * A stream that ends cleanly with its last line unterminated: that line ends its event (as
//!   the SDKs read it); the `anthropic` package's recorded streams end so, and each is charged
//!   the usage it reports (`tests/proxy_fixtures.rs`).
//! * Client gone mid-stream: the proxy keeps reading the upstream (each chunk within
//!   `upstream_timeout_ms`) to learn the usage it reports, then settles as above.
//! * The hold closed before the settlement (it expired, or someone voided it): the usage is
//!   recorded all the same, as a usage transfer with an id derived from the hold, even below
//!   the floor (reported as overspend); counted (`creditgate_proxy_usage_after_hold_closed_total`).
//! * In flight when the process stopped (kill -9, a crash, a shutdown past
//!   `proxy_drain_ms_max`): the next start of the same node (`node_id`, kept in the data
//!   directory; each hold names its node) settles each such hold at its amount, counts it
//!   (`creditgate_proxy_calls_recovered_total`), logs it and lists it for the operator
//!   (`GET /v1/proxy/recoveries`).
//!
//! No hold is released uncharged without a logged reason: every path ends in a settle, or a
//! void that is logged with its cause (an upstream error, nothing forwarded).
//!
//! Lifetime: proxied routes are outside the API's `request_timeout_ms`. A call has its own
//! limits: connect (`upstream_connect_timeout_ms`), first byte and idle between chunks
//! (`upstream_timeout_ms`), whole call (`proxy_call_ms_max`). Its hold's TTL is
//! `proxy_call_ms_max` plus a minute, so the hold outlives the call. A graceful shutdown
//! waits up to `proxy_drain_ms_max` for streams in flight to finish and settle.
//! * Refusals before forwarding (no credits, suspended, spend limit, unknown model, bad body,
//!   body too large) change nothing and answer in the style's own error envelope: 402 is
//!   Anthropic `billing_error` / OpenAI `insufficient_quota`, which SDKs do not retry.
//!
//! Headers on every proxied answer: `creditgate-balance-available` and
//! `creditgate-access-state`. For a non-streamed call they are read after the settlement;
//! for a stream (whose headers go out before the usage is known) they are as of the hold.
//!
//! Free routes (token counting, models): the org key is required (401 otherwise) and a
//! suspended org is refused (402 `org_suspended`); nothing is held or charged, so a depleted
//! org may still call them; the request (with its query) goes upstream as is, and the
//! upstream's answer, whatever its status, comes back with the balance headers.
//!
//! Any other method or path under `/anthropic` or `/openai` is a 404 `unknown_url` in that
//! style's envelope (Anthropic `not_found_error`, OpenAI `invalid_request_error`), naming the
//! routes served, with the balance headers when a valid org key came with it (none is needed):
//! the SDKs raise it as their `NotFoundError`. Nothing goes upstream.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use creditgate_domain::ledger::{
    Hold, HoldId, Operation, Rejection, UsageRequest, HOLD_TTL_MS_MAX,
};
use creditgate_domain::pricing::{self, PriceVersion, Usage};
use creditgate_store::api::Org;
use futures_util::StreamExt;

use super::auth::Caller;
use super::error::ApiError;

use super::views::HoldTerms;
use super::{metrics, AppState};
use crate::app::metering::{self as holds, price_at};
use crate::proxy::endpoints::{self, Endpoint};
use crate::proxy::formats::{self, Style};

/// Anthropic-style Messages.
#[utoipa::path(post, path = "/anthropic/v1/messages", tag = "proxy",
    request_body(content = Object, description = "An Anthropic Messages API request."),
    responses((status = 200, description = "The upstream's answer, streamed or not"), (status = 400), (status = 401, description = "No key, or an unknown or revoked one"), (status = 403, description = "The operator token: the proxy takes an org's API key"), (status = 402), (status = 413), (status = 502), (status = 504)))]
pub async fn anthropic_messages(State(state): State<AppState>, request: Request) -> Response {
    proxy(state, Route::Metered(Endpoint::Messages), request).await
}

/// OpenAI-style Chat Completions.
#[utoipa::path(post, path = "/openai/v1/chat/completions", tag = "proxy",
    request_body(content = Object, description = "An OpenAI Chat Completions request."),
    responses((status = 200, description = "The upstream's answer, streamed or not"), (status = 400), (status = 401, description = "No key, or an unknown or revoked one"), (status = 403, description = "The operator token: the proxy takes an org's API key"), (status = 402), (status = 413), (status = 502), (status = 504)))]
pub async fn openai_chat_completions(State(state): State<AppState>, request: Request) -> Response {
    proxy(state, Route::Metered(Endpoint::ChatCompletions), request).await
}

/// OpenAI-style Responses.
#[utoipa::path(post, path = "/openai/v1/responses", tag = "proxy",
    request_body(content = Object, description = "An OpenAI Responses API request (`background` is refused: it cannot be metered)."),
    responses((status = 200, description = "The upstream's answer, streamed or not"), (status = 400), (status = 401, description = "No key, or an unknown or revoked one"), (status = 403, description = "The operator token: the proxy takes an org's API key"), (status = 402), (status = 413), (status = 502), (status = 504)))]
pub async fn openai_responses(State(state): State<AppState>, request: Request) -> Response {
    proxy(state, Route::Metered(Endpoint::Responses), request).await
}

/// OpenAI-style embeddings (never streamed).
#[utoipa::path(post, path = "/openai/v1/embeddings", tag = "proxy",
    request_body(content = Object, description = "An OpenAI embeddings request."),
    responses((status = 200, description = "The upstream's answer"), (status = 400), (status = 401, description = "No key, or an unknown or revoked one"), (status = 403, description = "The operator token: the proxy takes an org's API key"), (status = 402), (status = 413), (status = 502), (status = 504)))]
pub async fn openai_embeddings(State(state): State<AppState>, request: Request) -> Response {
    proxy(state, Route::Metered(Endpoint::Embeddings), request).await
}

/// Anthropic-style token counting: passed through, free.
#[utoipa::path(post, path = "/anthropic/v1/messages/count_tokens", tag = "proxy",
    request_body(content = Object, description = "An Anthropic token-counting request."),
    responses((status = 200, description = "The upstream's answer, free"), (status = 400, description = "The body is not JSON, or has no model"), (status = 401, description = "No key, or an unknown or revoked one"), (status = 403, description = "The operator token: the proxy takes an org's API key"), (status = 402, description = "The org is suspended"), (status = 413), (status = 502), (status = 504)))]
pub async fn anthropic_count_tokens(State(state): State<AppState>, request: Request) -> Response {
    let route = Route::free(
        Style::Anthropic,
        reqwest::Method::POST,
        "/v1/messages/count_tokens",
        &request,
    );
    proxy(state, route, request).await
}

/// Anthropic-style model list: passed through, free.
#[utoipa::path(get, path = "/anthropic/v1/models", tag = "proxy",
    responses((status = 200, description = "The upstream's answer, free"), (status = 401, description = "No key, or an unknown or revoked one"), (status = 403, description = "The operator token: the proxy takes an org's API key"), (status = 402, description = "The org is suspended"), (status = 502), (status = 504)))]
pub async fn anthropic_models(State(state): State<AppState>, request: Request) -> Response {
    let route = Route::free(
        Style::Anthropic,
        reqwest::Method::GET,
        "/v1/models",
        &request,
    );
    proxy(state, route, request).await
}

/// One Anthropic-style model: passed through, free.
#[utoipa::path(get, path = "/anthropic/v1/models/{model}", tag = "proxy",
    params(("model" = String, Path, description = "The model's id.")),
    responses((status = 200, description = "The upstream's answer, free"), (status = 401, description = "No key, or an unknown or revoked one"), (status = 403, description = "The operator token: the proxy takes an org's API key"), (status = 402, description = "The org is suspended"), (status = 404), (status = 502), (status = 504)))]
pub async fn anthropic_model(
    State(state): State<AppState>,
    Path(model_id): Path<String>,
    request: Request,
) -> Response {
    model(state, Style::Anthropic, &model_id, request).await
}

/// OpenAI-style model list: passed through, free.
#[utoipa::path(get, path = "/openai/v1/models", tag = "proxy",
    responses((status = 200, description = "The upstream's answer, free"), (status = 401, description = "No key, or an unknown or revoked one"), (status = 403, description = "The operator token: the proxy takes an org's API key"), (status = 402, description = "The org is suspended"), (status = 502), (status = 504)))]
pub async fn openai_models(State(state): State<AppState>, request: Request) -> Response {
    let route = Route::free(Style::OpenAi, reqwest::Method::GET, "/v1/models", &request);
    proxy(state, route, request).await
}

/// One OpenAI-style model: passed through, free.
#[utoipa::path(get, path = "/openai/v1/models/{model}", tag = "proxy",
    params(("model" = String, Path, description = "The model's id.")),
    responses((status = 200, description = "The upstream's answer, free"), (status = 401, description = "No key, or an unknown or revoked one"), (status = 403, description = "The operator token: the proxy takes an org's API key"), (status = 402, description = "The org is suspended"), (status = 404), (status = 502), (status = 504)))]
pub async fn openai_model(
    State(state): State<AppState>,
    Path(model_id): Path<String>,
    request: Request,
) -> Response {
    model(state, Style::OpenAi, &model_id, request).await
}

async fn model(state: AppState, style: Style, model_id: &str, request: Request) -> Response {
    let Some(path) = endpoints::model_path(model_id) else {
        return unknown_route(State(state), request).await;
    };
    let route = Route::free(style, reqwest::Method::GET, &path, &request);
    proxy(state, route, request).await
}

/// Any other method or path under `/anthropic` or `/openai` (the router's fallbacks call it):
/// 404 `unknown_url` in the style's envelope, with the balance headers when the request
/// carries a valid org key. No key is needed to learn that a route does not exist.
pub async fn unknown_route(State(state): State<AppState>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let style = endpoints::style_of_path(&path).unwrap_or(Style::OpenAi);
    let message = endpoints::unknown_url_message(style, request.method().as_str(), &path);
    let mut answer = style_error(style, ApiError::not_found("unknown_url", message));
    let (mut parts, _) = request.into_parts();
    if let Ok(Caller::Key { org, .. }) = Caller::from_request_parts(&mut parts, &state).await {
        balance_headers(&state, &org, answer.headers_mut()).await;
    }
    answer
}

/// What a proxied route does.
enum Route {
    /// Held for its worst case, forwarded, settled at its usage.
    Metered(Endpoint),
    /// Passed through, free (no hold, no charge): the upstream method and path (with the
    /// request's query).
    Free(Style, reqwest::Method, String),
}

impl Route {
    fn free(style: Style, method: reqwest::Method, path: &str, request: &Request) -> Route {
        let path = match request.uri().query() {
            Some(query) => format!("{path}?{query}"),
            None => path.to_owned(),
        };
        Route::Free(style, method, path)
    }

    fn style(&self) -> Style {
        match self {
            Route::Metered(endpoint) => endpoint.style(),
            Route::Free(style, ..) => *style,
        }
    }
}

async fn proxy(state: AppState, route: Route, request: Request) -> Response {
    let style = route.style();
    let mut org = None;
    match forward(&state, route, request, &mut org).await {
        Ok(response) => response,
        Err(error) => {
            let gave_up = GAVE_UP_AFTER_FORWARDING.contains(&error.code);
            let mut answer = style_error(style, error);
            if gave_up {
                // The upstream may still bill this call: the SDKs must not send it again.
                answer
                    .headers_mut()
                    .insert("x-should-retry", HeaderValue::from_static("false"));
            }
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
    endpoint: Endpoint,
    org: Org,
    hold: Hold,
    price: PriceVersion,
}

/// Forwards one call; `known_org` is set once the caller is authenticated.
async fn forward(
    state: &AppState,
    route: Route,
    request: Request,
    known_org: &mut Option<Org>,
) -> Result<Response, ApiError> {
    let endpoint = match route {
        Route::Metered(endpoint) => endpoint,
        Route::Free(style, method, path) => {
            return pass_through(state, style, method, &path, request, known_org).await
        }
    };
    let style = endpoint.style();
    let (mut parts, body) = request.into_parts();
    let caller = Caller::from_request_parts(&mut parts, state).await?;
    let Caller::Key { org, .. } = &caller else {
        return Err(ApiError::forbidden(
            "The proxy takes an org's API key, not the operator token.",
        ));
    };
    let org = org.clone();
    *known_org = Some(org.clone());
    let bytes = axum::body::to_bytes(body, state.config().proxy_body_bytes_max)
        .await
        .map_err(|_| ApiError::too_large("The request body is too large."))?;
    let json: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request("invalid_json", format!("The body is not valid JSON: {e}"))
    })?;
    let facts = endpoints::request_facts(endpoint, &json).map_err(request_error)?;
    let now = state.now();
    let price = price_at(state, &facts.model, now, "model").await?;
    let amount = endpoints::worst_case(endpoint, &price.prices, &facts, price.max_output_tokens)
        .map_err(|e| ApiError::invalid(endpoint.cost_field(), "amount_overflow", e.to_string()))?;
    let terms = HoldTerms {
        model: Some(facts.model.clone()),
        price_id: Some(price.id.clone()),
        key_id: caller.key_id().map(str::to_owned),
        // Names the call in the transition a refusal of it records.
        request_id: super::error::current_request_id(),
        // Marks it as this node's, so that a crash mid-call is settled at the next start.
        node_id: Some(state.node_id().to_owned()),
    };
    let ttl_ms = hold_ttl_ms(state.config().proxy_call_ms_max);
    let hold_id = HoldId::new(state.new_id("hold"));
    let hold = holds::place(state, &caller, &org, hold_id, amount, &terms, ttl_ms, now).await?;
    let call = Call {
        endpoint,
        org,
        hold,
        price,
    };
    let upstream_body =
        endpoints::upstream_body(endpoint, &json, &facts).map_or(bytes, Bytes::from);
    // The whole call, from here to its last byte, within proxy_call_ms_max.
    let deadline = tokio::time::Instant::now()
        + Duration::from_millis(state.config().proxy_call_ms_max.max(1));
    let path = endpoint.path();
    let method = reqwest::Method::POST;
    let response = match send(
        state,
        style,
        method,
        path,
        &parts.headers,
        upstream_body,
        deadline,
    )
    .await
    {
        Ok(response) => response,
        Err(Unanswered::NotForwarded(error)) => {
            void(state, &call).await;
            return Err(error);
        }
        Err(Unanswered::Forwarded(error)) => {
            // It reached the upstream, which may bill it: charged, never voided.
            tracing::warn!(hold = %call.hold.id.as_str(), code = error.code, "no answer from the upstream after forwarding; charging the hold");
            settle(state, &call, None).await;
            return Err(error);
        }
    };
    let status = response.status();
    let headers = pass_headers(response.headers());
    if !status.is_success() {
        // No usage on an upstream error: nothing is charged.
        let body = read_body(state, response, deadline)
            .await
            .unwrap_or_default();
        void(state, &call).await;
        let mut answer = (status_of(status), headers, body).into_response();
        balance_headers(state, &call.org, answer.headers_mut()).await;
        return Ok(answer);
    }
    if facts.stream {
        let org = call.org.clone();
        let mut answer = stream(
            state.clone(),
            call,
            facts.client_wants_usage,
            response,
            headers,
            deadline,
        );
        balance_headers(state, &org, answer.headers_mut()).await;
        return Ok(answer);
    }
    let body = match read_body(state, response, deadline).await {
        Ok(body) => body,
        Err(error) => {
            tracing::warn!(hold = %call.hold.id.as_str(), code = error.code, "upstream answer incomplete; charging the hold");
            settle(state, &call, None).await;
            return Err(error);
        }
    };
    let usage = match endpoints::usage_from_body(endpoint, &body) {
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

/// Passes one free call through (token counting, the model list): the caller's org key is
/// checked (and a suspended org refused), nothing is held or charged, and the upstream's
/// answer, whatever its status, is passed on with the balance headers.
async fn pass_through(
    state: &AppState,
    style: Style,
    method: reqwest::Method,
    path: &str,
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
    *known_org = Some(org.clone());
    if org.suspended {
        return Err(ApiError::billing(
            "org_suspended",
            "This organization's API access is suspended. Contact support.",
            state.billing_url(&org.id),
        ));
    }
    let bytes = axum::body::to_bytes(body, state.config().proxy_body_bytes_max)
        .await
        .map_err(|_| ApiError::too_large("The request body is too large."))?;
    let deadline = tokio::time::Instant::now()
        + Duration::from_millis(state.config().proxy_call_ms_max.max(1));
    let response = send(state, style, method, path, &parts.headers, bytes, deadline)
        .await
        .map_err(|unanswered| match unanswered {
            Unanswered::NotForwarded(error) | Unanswered::Forwarded(error) => error,
        })?;
    let status = response.status();
    let headers = pass_headers(response.headers());
    let body = read_body(state, response, deadline).await?;
    let mut answer = (status_of(status), headers, body).into_response();
    balance_headers(state, org, answer.headers_mut()).await;
    Ok(answer)
}

/// Why a forwarded request got no answer, and whether the upstream may have seen it.
enum Unanswered {
    /// Never connected: nothing was forwarded (voided; 502, which a client may retry).
    NotForwarded(ApiError),
    /// Sent, then no headers in time or the connection broke: the upstream may bill it
    /// (charged at the hold; 502 / 504 with `x-should-retry: false`).
    Forwarded(ApiError),
}

/// The codes of the answers sent when creditgate gives up on a call it forwarded: they carry
/// `x-should-retry: false`, which the official SDKs obey, so a call the upstream may bill is
/// not sent again by the SDK on its own.
const GAVE_UP_AFTER_FORWARDING: [&str; 4] = [
    "upstream_timeout",
    "upstream_failed",
    "upstream_body_too_large",
    "upstream_call_too_long",
];

/// A proxied call's hold TTL: its whole-call limit and a minute for the settlement, so the
/// hold never expires while its call runs.
fn hold_ttl_ms(proxy_call_ms_max: u64) -> i64 {
    i64::try_from(proxy_call_ms_max.saturating_add(HOLD_SETTLE_SLACK_MS))
        .unwrap_or(HOLD_TTL_MS_MAX)
        .clamp(1, HOLD_TTL_MS_MAX)
}

/// What a proxied call's hold outlives its call by: time to settle.
const HOLD_SETTLE_SLACK_MS: u64 = 60_000;

/// Sends the request upstream; connects within `upstream_connect_timeout_ms` and waits for
/// its headers at most `upstream_timeout_ms`.
async fn send(
    state: &AppState,
    style: Style,
    method: reqwest::Method,
    path: &str,
    client_headers: &HeaderMap,
    body: Bytes,
    deadline: tokio::time::Instant,
) -> Result<reqwest::Response, Unanswered> {
    let (base, key) = state.upstream(style);
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
fn next_chunk_wait(state: &AppState, deadline: tokio::time::Instant) -> Option<Duration> {
    let idle = Duration::from_millis(state.config().upstream_timeout_ms.max(1));
    let left = deadline.checked_duration_since(tokio::time::Instant::now())?;
    Some(idle.min(left))
}

/// The answer when a call passes `proxy_call_ms_max`.
fn call_too_long() -> ApiError {
    ApiError::upstream(
        StatusCode::GATEWAY_TIMEOUT,
        "upstream_call_too_long",
        "The upstream API took longer than this service allows for one call.",
    )
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
async fn read_body(
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
fn stream(
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
const STREAM_CHUNKS_BUFFERED_MAX: usize = 64;

/// Settles the call at `usage`'s price, or at the hold's amount when the usage is unknown.
async fn settle(state: &AppState, call: &Call, usage: Option<Usage>) {
    let charge = pricing::charge(&call.price.prices, usage.as_ref(), call.hold.amount);
    if let pricing::Charge::Unknown(_) = charge {
        metrics::proxy_usage_unknown();
    }
    let amount = charge.amount();
    match holds::settle(state, &call.hold, amount).await {
        Ok(Ok(_)) => {}
        Ok(Err(Rejection::HoldExpired | Rejection::HoldAlreadyClosed)) => {
            usage_after_hold_closed(state, &call.hold, amount).await;
        }
        Ok(Err(rejection)) => {
            tracing::error!(code = rejection.code(), hold = %call.hold.id.as_str(), "proxy settlement refused")
        }
        Err(error) => {
            tracing::error!(?error.code, hold = %call.hold.id.as_str(), "proxy settlement failed; the hold expires at its TTL")
        }
    }
}

/// The usage of a call whose hold closed before its settlement (it expired, or a caller voided
/// it): usage that happened is recorded all the same, as a usage transfer under an id derived
/// from the hold (so once), even below the floor (reported as overspend).
async fn usage_after_hold_closed(state: &AppState, hold: &Hold, amount: creditgate_domain::Amount) {
    metrics::proxy_usage_after_hold_closed();
    tracing::warn!(hold = %hold.id.as_str(), %amount, "hold closed before its call settled; recording the usage");
    let operation = Operation::RecordUsage(UsageRequest {
        id: creditgate_domain::ids::late_usage(&hold.id),
        debit_account_id: hold.debit_account_id.clone(),
        credit_account_id: hold.credit_account_id.clone(),
        amount,
        reference: hold.reference.clone(),
    });
    match state.writer().submit(operation).await {
        Ok(Ok(receipt)) => {
            if let Some(transfer) = &receipt.transfer {
                metrics::overspend(transfer.overspend.micros());
            }
        }
        Ok(Err(rejection)) => {
            tracing::error!(code = rejection.code(), hold = %hold.id.as_str(), "recording a closed hold's usage refused")
        }
        Err(error) => {
            tracing::error!(%error, hold = %hold.id.as_str(), "recording a closed hold's usage failed")
        }
    }
}

/// Most in-flight calls settled per batch at start.
const RECOVERED_PER_BATCH_MAX: usize = 1_000;

/// Settles the calls this node had in flight when it last stopped (kill -9, a crash, a
/// shutdown past `proxy_drain_ms_max`): its open proxy holds placed before this start. The
/// rule: each is charged its hold's amount (the call's worst case), since the upstream may
/// have served and billed it; counted in `creditgate_proxy_calls_recovered_total`, logged,
/// and listed for the operator (`GET /v1/proxy/recoveries`). Other nodes' calls are theirs.
pub async fn recover_calls(state: &AppState) {
    let marker = HoldTerms::node_marker(state.node_id());
    let mut recovered = 0_u64;
    loop {
        let holds = match state
            .store()
            .open_holds_marked(&marker, state.started_at(), RECOVERED_PER_BATCH_MAX)
            .await
        {
            Ok(holds) => holds,
            Err(error) => {
                tracing::error!(%error, "could not read the calls in flight at the last stop");
                return;
            }
        };
        if holds.is_empty() {
            break;
        }
        let count = holds.len();
        for hold in holds {
            let settled = holds::settle(state, &hold, hold.amount).await;
            let closed = match &settled {
                Ok(Ok(_)) => true,
                Ok(Err(Rejection::HoldExpired)) => {
                    // Past its TTL: the expiry releases it; its usage is recorded instead.
                    usage_after_hold_closed(state, &hold, hold.amount).await;
                    true
                }
                _ => false,
            };
            if !closed {
                tracing::error!(hold = %hold.id.as_str(), ?settled, "could not settle a call in flight at the last stop");
                return;
            }
            tracing::warn!(hold = %hold.id.as_str(), org = %hold.debit_account_id.as_str(), amount = %hold.amount, "proxied call in flight at the last stop: charged at its hold");
            if let Err(error) = state
                .store()
                .record_proxy_recovery(&hold, state.node_id(), state.now())
                .await
            {
                tracing::error!(%error, hold = %hold.id.as_str(), "could not list a recovered call");
            }
            recovered += 1;
        }
        if count < RECOVERED_PER_BATCH_MAX {
            break;
        }
    }
    if recovered > 0 {
        metrics::proxy_calls_recovered(recovered);
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
    // with the balance as of now: one read on every call's path.
    let Ok(Some((access_state, available))) = state.store().access_now(&org.id).await else {
        return;
    };
    if let Ok(value) = HeaderValue::from_str(&available.to_string()) {
        headers.insert("creditgate-balance-available", value);
    }
    headers.insert(
        "creditgate-access-state",
        HeaderValue::from_static(access_state.as_str()),
    );
    // Why calls are refused, when they are (the same as the balance API's `calls_refused`);
    // the settings are the request's, the state is the one just read.
    let mut now = org.clone();
    now.access.state = access_state;
    if let Ok(Some(refused)) = crate::app::balance::calls_refused(state, &now, state.now()).await {
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
