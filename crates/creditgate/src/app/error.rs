//! The one error type every operation answers: an HTTP status, a kind, a stable `code`, a
//! message, and the field at fault. The transports render it (`http::error`: the JSON
//! envelope, or the page's message); 5xx errors say nothing internal, their cause goes to the
//! log under the request id.

use axum::http::StatusCode;

/// Headers an error's answer carries, by name.
pub type Headers = Vec<(&'static str, String)>;

/// An operation's error, turned into a response by the transport.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// `invalid_request_error`, `authentication_error`, `billing_error`, `permission_error`,
    /// `not_found_error`, `conflict_error`, `rate_limit_error`, `api_error`.
    pub kind: &'static str,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// For people.
    pub message: String,
    /// The request field at fault, if one is.
    pub param: Option<String>,
    /// Where to add credits (billing errors).
    pub billing_url: Option<String>,
    /// Headers the answer carries besides the body (a 429's `retry-after` and limits).
    pub headers: Option<Box<Headers>>,
}

impl ApiError {
    fn new(
        status: StatusCode,
        kind: &'static str,
        code: &'static str,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            kind,
            code,
            message: message.into(),
            param: None,
            billing_url: None,
            headers: None,
        }
    }

    /// 400 naming the field at fault.
    pub fn invalid(
        param: impl Into<String>,
        code: &'static str,
        message: impl Into<String>,
    ) -> ApiError {
        let mut error = ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            code,
            message,
        );
        error.param = Some(param.into());
        error
    }

    /// 400 not about one field.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            code,
            message,
        )
    }

    /// 401.
    pub fn unauthenticated(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "invalid_api_key",
            message,
        )
    }

    /// 402 with the billing URL.
    pub fn billing(
        code: &'static str,
        message: impl Into<String>,
        billing_url: String,
    ) -> ApiError {
        let mut error = ApiError::new(StatusCode::PAYMENT_REQUIRED, "billing_error", code, message);
        error.billing_url = Some(billing_url);
        error
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            "forbidden",
            message,
        )
    }

    /// 403 with its own code (`csrf_failed`, `last_owner`, …).
    pub fn forbidden_code(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "permission_error", code, message)
    }

    /// 404.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found_error", code, message)
    }

    /// 405.
    pub fn method_not_allowed() -> ApiError {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            "method_not_allowed",
            "This route does not take this method.",
        )
    }

    /// 409.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "conflict_error", code, message)
    }

    /// 409 about one field.
    pub fn conflict_param(
        param: impl Into<String>,
        code: &'static str,
        message: impl Into<String>,
    ) -> ApiError {
        let mut error = ApiError::conflict(code, message);
        error.param = Some(param.into());
        error
    }

    /// 413.
    pub fn too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            "body_too_large",
            message,
        )
    }

    /// 429: a rate limit (never billing); the caller may retry after a while.
    pub fn rate_limited(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            "rate_limit_exceeded",
            message,
        )
    }

    /// With these headers on its answer.
    pub fn with_headers(mut self, headers: Headers) -> ApiError {
        self.headers = Some(Box::new(headers));
        self
    }

    /// 503: overloaded; safe to retry.
    pub fn unavailable() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "api_error",
            "overloaded",
            "The service is busy; retry shortly.",
        )
    }

    /// 502 / 504 about the upstream of the proxy.
    pub fn upstream(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError::new(status, "api_error", code, message)
    }

    /// 500. `cause` is logged, never sent.
    pub fn internal(cause: impl std::fmt::Display) -> ApiError {
        tracing::error!(%cause, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            "internal_error",
            "An internal error occurred.",
        )
    }
}

impl From<creditgate_store::StoreError> for ApiError {
    fn from(error: creditgate_store::StoreError) -> ApiError {
        ApiError::internal(error)
    }
}

impl From<creditgate_store::WriteError> for ApiError {
    fn from(error: creditgate_store::WriteError) -> ApiError {
        match error {
            creditgate_store::WriteError::Overloaded => ApiError::unavailable(),
            other => ApiError::internal(other),
        }
    }
}
