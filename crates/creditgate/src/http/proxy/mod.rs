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

mod answer;
pub mod endpoints;
pub mod formats;
mod settle;
mod upstream;

use answer::*;
pub use settle::recover_calls;
use settle::*;
use upstream::*;

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use creditgate_domain::ledger::Hold;
use creditgate_domain::pricing::PriceVersion;
use creditgate_store::api::Org;

use super::auth::Caller;
use super::error::ApiError;

use super::views::HoldTerms;
use crate::app::metering::price_at;
use crate::limiter::Scope;
use crate::state::AppState;
use creditgate_domain::rate::Ask;
use endpoints::Endpoint;
use formats::Style;

/// Anthropic-style Messages.
#[utoipa::path(post, path = "/anthropic/v1/messages", tag = "proxy",
    request_body(content = Object, description = "An Anthropic Messages API request."),
    responses((status = 200, description = "The upstream's answer, streamed or not"), (status = 400), (status = 401, description = "No key, or an unknown or revoked one"), (status = 403, description = "The operator token: the proxy takes an org's API key"), (status = 402), (status = 413), (status = 429, description = "A rate limit of the org or the key: nothing held; retry-after says when"), (status = 502), (status = 504)))]
pub async fn anthropic_messages(State(state): State<AppState>, request: Request) -> Response {
    proxy(state, Route::Metered(Endpoint::Messages), request).await
}

/// OpenAI-style Chat Completions.
#[utoipa::path(post, path = "/openai/v1/chat/completions", tag = "proxy",
    request_body(content = Object, description = "An OpenAI Chat Completions request."),
    responses((status = 200, description = "The upstream's answer, streamed or not"), (status = 400), (status = 401, description = "No key, or an unknown or revoked one"), (status = 403, description = "The operator token: the proxy takes an org's API key"), (status = 402), (status = 413), (status = 429, description = "A rate limit of the org or the key: nothing held; retry-after says when"), (status = 502), (status = 504)))]
pub async fn openai_chat_completions(State(state): State<AppState>, request: Request) -> Response {
    proxy(state, Route::Metered(Endpoint::ChatCompletions), request).await
}

/// OpenAI-style Responses.
#[utoipa::path(post, path = "/openai/v1/responses", tag = "proxy",
    request_body(content = Object, description = "An OpenAI Responses API request (`background` is refused: it cannot be metered)."),
    responses((status = 200, description = "The upstream's answer, streamed or not"), (status = 400), (status = 401, description = "No key, or an unknown or revoked one"), (status = 403, description = "The operator token: the proxy takes an org's API key"), (status = 402), (status = 413), (status = 429, description = "A rate limit of the org or the key: nothing held; retry-after says when"), (status = 502), (status = 504)))]
pub async fn openai_responses(State(state): State<AppState>, request: Request) -> Response {
    proxy(state, Route::Metered(Endpoint::Responses), request).await
}

/// OpenAI-style embeddings (never streamed).
#[utoipa::path(post, path = "/openai/v1/embeddings", tag = "proxy",
    request_body(content = Object, description = "An OpenAI embeddings request."),
    responses((status = 200, description = "The upstream's answer"), (status = 400), (status = 401, description = "No key, or an unknown or revoked one"), (status = 403, description = "The operator token: the proxy takes an org's API key"), (status = 402), (status = 413), (status = 429, description = "A rate limit of the org or the key: nothing held; retry-after says when"), (status = 502), (status = 504)))]
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
    /// What it counts against of the rate limits, and what it took there.
    scopes: Vec<Scope>,
    ask: Ask,
    /// Where its rate limits stand, for the answer.
    rate_headers: crate::http::error::Headers,
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
    let call = hold_call(state, endpoint, &caller, org, &facts, price, amount, &terms).await?;
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
        call_headers(state, &call.org, &call.rate_headers, &mut answer).await;
        return Ok(answer);
    }
    if facts.stream {
        let (org, rate) = (call.org.clone(), call.rate_headers.clone());
        let mut answer = stream(
            state.clone(),
            call,
            facts.client_wants_usage,
            response,
            headers,
            deadline,
        );
        call_headers(state, &org, &rate, &mut answer).await;
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
    call_headers(state, &call.org, &call.rate_headers, &mut answer).await;
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
