//! The HTTP transports, thin adapters over the application layer ([`crate::app`]): the JSON
//! API (`api/`), the billing pages (`billing/`) and the metering proxy (`proxy/`). No
//! transport calls another's handlers.
//!
//! Every handler reads the same way: authenticate → parse and validate (4xx, nothing
//! changed) → call one `app` operation (or, for the proxy, meter through it) → respond.

pub mod api;
pub mod auth;
pub mod billing;
pub mod error;
pub mod extract;
pub mod json;
pub mod openapi;
pub mod proxy;
pub(crate) mod views;

use std::time::Duration;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;

use crate::ids::{IdSource, RandomIds};
use crate::state::AppState;

/// The whole HTTP surface with its limits: body size, request timeout, request ids, metrics.
pub fn router(state: AppState) -> Router {
    let body_bytes_max = state.config().body_bytes_max;
    let timeout = Duration::from_millis(state.config().request_timeout_ms.max(1));
    let (api, _) = openapi::api_router().split_for_parts();
    api.merge(billing::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(axum::extract::DefaultBodyLimit::max(body_bytes_max))
        .layer(axum::middleware::from_fn(
            move |request: Request, next: Next| around_request(request, next, timeout),
        ))
}

async fn not_found(state: axum::extract::State<AppState>, request: Request) -> Response {
    // Under the proxy's prefixes, in the upstream style's own envelope.
    if crate::http::proxy::endpoints::style_of_path(request.uri().path()).is_some() {
        return proxy::unknown_route(state, request).await;
    }
    axum::response::IntoResponse::into_response(error::ApiError::not_found(
        "route_not_found",
        "No such route.",
    ))
}

async fn method_not_allowed(state: axum::extract::State<AppState>, request: Request) -> Response {
    // A method the proxy does not serve on one of its paths is an unknown URL to an SDK.
    if crate::http::proxy::endpoints::style_of_path(request.uri().path()).is_some() {
        return proxy::unknown_route(state, request).await;
    }
    axum::response::IntoResponse::into_response(error::ApiError::method_not_allowed())
}

/// Gives every request an id (`req_…`, in the `request-id` header and in error bodies), a log
/// span, a time limit and its metrics.
async fn around_request(request: Request, next: Next, timeout: Duration) -> Response {
    let request_id = RandomIds.generate("req");
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().clone();
    let started = std::time::Instant::now();
    let span = tracing::info_span!("request", id = %request_id, %method, %route);
    // A proxied call owns its lifetime (proxy.rs: connect, first byte, idle, whole call):
    // cutting it off here would answer a retryable 503 while the upstream may still bill.
    let proxied = route.starts_with("/anthropic/") || route.starts_with("/openai/");
    let run = error::REQUEST_ID.scope(request_id.clone(), async move {
        if proxied {
            return next.run(request).await;
        }
        match tokio::time::timeout(timeout, next.run(request)).await {
            Ok(response) => response,
            Err(_) => axum::response::IntoResponse::into_response(error::ApiError::unavailable()),
        }
    });
    let mut response = tracing::Instrument::instrument(run, span).await;
    if let Ok(value) = request_id.parse() {
        response.headers_mut().insert("request-id", value);
    }
    crate::metrics::record_request(
        &route,
        method.as_str(),
        response.status().as_u16(),
        started.elapsed(),
    );
    tracing::info!(id = %request_id, %method, %route, status = response.status().as_u16(), elapsed_us = started.elapsed().as_micros() as u64, "served");
    response
}
