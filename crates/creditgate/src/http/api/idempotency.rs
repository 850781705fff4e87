//! `Idempotency-Key`: the first successful response to a key is recorded and replayed for
//! every repeat; the same key with another request is a 409.
//!
//! The record is written after the work, so a crash in between leaves no record. That is
//! safe because the ledger ids behind a key are derived from it ([`crate::ids::derived`]):
//! a retry recomputes the same ids and the ledger answers `exists` with the first result.

use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use creditgate_store::api::IdempotencyRecord;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::json;
use crate::state::AppState;

/// Longest `Idempotency-Key`.
pub const IDEMPOTENCY_KEY_LEN_MAX: usize = 255;

/// A JSON body with the request's `Idempotency-Key` (if any) and its fingerprint.
pub struct Idempotent<T> {
    /// The parsed body.
    pub body: T,
    /// The key, if the request has one.
    pub key: Option<String>,
    request_hash: String,
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Idempotent<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Idempotent<T>, ApiError> {
        let key = match request.headers().get("idempotency-key") {
            None => None,
            Some(value) => {
                let key = value.to_str().ok().filter(|k| {
                    !k.is_empty()
                        && k.len() <= IDEMPOTENCY_KEY_LEN_MAX
                        && k.bytes().all(|b| b.is_ascii_graphic())
                });
                match key {
                    Some(key) => Some(key.to_owned()),
                    None => {
                        return Err(ApiError::invalid(
                            "Idempotency-Key",
                            "parameter_invalid",
                            format!("Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_LEN_MAX} printable characters."),
                        ))
                    }
                }
            }
        };
        let mut hash = Sha256::new();
        hash.update(request.method().as_str());
        hash.update([0]);
        hash.update(request.uri().path());
        hash.update([0]);
        let bytes = json::read(request, state).await?;
        hash.update(&bytes);
        let body = if bytes.is_empty() {
            json::parse(b"{}")?
        } else {
            json::parse(&bytes)?
        };
        Ok(Idempotent {
            body,
            key,
            request_hash: hex::encode(hash.finalize()),
        })
    }
}

impl<T> Idempotent<T> {
    /// The key, or a 400 if the route needs one.
    pub fn require_key(&self) -> Result<&str, ApiError> {
        self.key.as_deref().ok_or_else(|| {
            ApiError::invalid(
                "Idempotency-Key",
                "parameter_missing",
                "This call moves money: send an Idempotency-Key header.",
            )
        })
    }

    /// The recorded response for this key, if the same request was answered before; a 409
    /// if the key was used for another request.
    pub async fn replay(
        &self,
        state: &AppState,
        caller: &Caller,
    ) -> Result<Option<Response>, ApiError> {
        let Some(key) = &self.key else {
            return Ok(None);
        };
        let Some(record) = state
            .store()
            .idempotency_record(&caller.idempotency_scope(), key)
            .await?
        else {
            return Ok(None);
        };
        self.respond_with(record).map(Some)
    }

    fn respond_with(&self, record: IdempotencyRecord) -> Result<Response, ApiError> {
        if record.request_hash != self.request_hash {
            return Err(ApiError::conflict(
                "idempotency_key_reused",
                "This Idempotency-Key was used with a different request.",
            ));
        }
        let status = StatusCode::from_u16(record.status).unwrap_or(StatusCode::OK);
        let mut response = (status, record.body).into_response();
        response.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        );
        response.headers_mut().insert(
            "idempotent-replayed",
            axum::http::HeaderValue::from_static("true"),
        );
        Ok(response)
    }

    /// Answers `view` with `status`, recording it first if the request has a key.
    pub async fn respond(
        &self,
        state: &AppState,
        caller: &Caller,
        status: StatusCode,
        view: &impl Serialize,
    ) -> Result<Response, ApiError> {
        let body = serde_json::to_string(view).map_err(ApiError::internal)?;
        if let Some(key) = &self.key {
            let record = IdempotencyRecord {
                scope: caller.idempotency_scope(),
                key: key.clone(),
                request_hash: self.request_hash.clone(),
                status: status.as_u16(),
                body: body.clone(),
                created_at: state.now(),
            };
            let first = state.store().save_idempotency_record(&record).await?;
            if first != record {
                // Another request with this key answered first: answer as it did.
                return self.respond_with(first);
            }
        }
        let mut response = (status, body).into_response();
        response.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        );
        Ok(response)
    }
}
