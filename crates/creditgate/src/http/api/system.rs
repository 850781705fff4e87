//! Health, readiness, metrics and the OpenAPI document.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::http::error::ApiError;
use crate::http::views::StatusView;
use crate::state::AppState;

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "system", security(()), responses((status = 200, body = StatusView)))]
pub async fn healthz() -> Json<StatusView> {
    Json(StatusView {
        status: "ok".into(),
    })
}

/// The process can reach its database and its ledger writer is running.
#[utoipa::path(get, path = "/readyz", tag = "system", security(()), responses((status = 200, body = StatusView), (status = 503, body = crate::http::error::ErrorBody)))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<StatusView>, ApiError> {
    match state.store().org("org_0").await {
        Ok(_) if !state.writer().is_stopped() => Ok(Json(StatusView {
            status: "ok".into(),
        })),
        Ok(_) => Err(ApiError::unavailable()),
        Err(error) => {
            tracing::warn!(%error, "not ready");
            Err(ApiError::unavailable())
        }
    }
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "system", security(()), responses((status = 200, content_type = "text/plain", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    let text = crate::metrics::render(state.writer());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "system", security(()), responses((status = 200, content_type = "application/json", body = Object)))]
pub async fn openapi_json() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        crate::http::openapi::document_json(),
    )
        .into_response()
}
