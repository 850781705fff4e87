//! What the caller sees: the balance headers, the upstream headers passed on, errors in
//! the style's own envelope.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use creditgate_store::api::Org;

use crate::http::error::ApiError;

use super::formats;
use super::formats::Style;
use crate::app::rate_limit::Names;
use crate::state::AppState;
use creditgate_domain::pricing::PriceVersion;
use creditgate_domain::rate::Ask;

/// A metered call's answer headers: the balance's, and where its rate limits stand.
pub(super) async fn call_headers(
    state: &AppState,
    org: &Org,
    rate: &crate::http::error::Headers,
    answer: &mut Response,
) {
    balance_headers(state, org, answer.headers_mut()).await;
    crate::http::error::add_headers(answer, Some(rate));
}

/// The balance headers: the account read now, the access derived from it.
pub(super) async fn balance_headers(state: &AppState, org: &Org, headers: &mut HeaderMap) {
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
pub(super) fn pass_headers(upstream: &reqwest::header::HeaderMap) -> HeaderMap {
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

pub(super) fn status_of(status: reqwest::StatusCode) -> StatusCode {
    StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY)
}

pub(super) fn request_error(error: formats::RequestError) -> ApiError {
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
pub(super) fn style_error(style: Style, error: ApiError) -> Response {
    let request_id = crate::http::error::REQUEST_ID
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
                429 => "rate_limit_exceeded",
                _ => "api_error",
            };
            serde_json::json!({
                "error": { "message": error.message, "type": kind, "param": error.param, "code": error.code, "billing_url": error.billing_url },
                "request_id": request_id,
            })
        }
    };
    let mut response = (error.status, axum::Json(body)).into_response();
    crate::http::error::add_headers(&mut response, error.headers.as_deref());
    response
}

/// What a call asks of the rate limits: its input at the proxy's estimate, its output at its
/// most (given back at settlement).
pub(super) fn rate_ask(facts: &formats::RequestFacts, price: &PriceVersion) -> Ask {
    let output = facts.max_output_tokens.unwrap_or(price.max_output_tokens);
    Ask {
        input_tokens: facts.input_tokens_max,
        output_tokens: output.saturating_mul(facts.choices.max(1)),
    }
}

/// The rate-limit headers of `style`.
pub(super) fn names(style: Style) -> Names {
    match style {
        Style::Anthropic => Names::Anthropic,
        Style::OpenAi => Names::OpenAi,
    }
}
