//! The one API error envelope: `{"error": {"type", "code", "message", "param"?,
//! "billing_url"?}, "request_id"}`, rendering the application layer's [`ApiError`] with a
//! stable `code` per failure. 5xx bodies say nothing internal; the cause goes to the log under
//! the request id.

use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

pub use crate::app::error::{ApiError, Headers};

/// The error body as documented.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
    /// The request's id (`req_…`), also in the `request-id` header.
    pub request_id: String,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// The error's family.
    #[serde(rename = "type")]
    pub kind: String,
    /// Stable code.
    pub code: String,
    /// For people.
    pub message: String,
    /// The field at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
    /// Where to add credits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub billing_url: Option<String>,
}

tokio::task_local! {
    /// The id of the request being served, for error bodies.
    pub static REQUEST_ID: String;
}

/// The id of the request being served (`req_…`), when there is one.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID
        .try_with(Clone::clone)
        .ok()
        .filter(|id| !id.is_empty())
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let request_id = REQUEST_ID.try_with(Clone::clone).unwrap_or_default();
        let body = ErrorBody {
            error: ErrorDetail {
                kind: self.kind.to_owned(),
                code: self.code.to_owned(),
                message: self.message,
                param: self.param,
                billing_url: self.billing_url,
            },
            request_id,
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        add_headers(&mut response, self.headers.as_deref());
        response
    }
}

/// Adds an error's own headers (a 429's `retry-after`, say) to its answer.
pub fn add_headers(response: &mut Response, headers: Option<&Headers>) {
    for (name, value) in headers.into_iter().flatten() {
        if let Ok(value) = axum::http::HeaderValue::from_str(value) {
            response.headers_mut().insert(*name, value);
        }
    }
}
