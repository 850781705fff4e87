//! Who is calling: the operator (its bearer token), an org (one of its API keys), or a member
//! of an org signed in to the billing page (its session cookie).
//!
//! A member's session reaches only the API routes the billing page uses (the table is
//! [`super::billing::api_action`]), and its writes must carry the session's CSRF token in
//! `x-csrf-token`: both checked here, before any handler runs. Whether the member's role may
//! do what it asks is the application layer's one decision (`app::authorize`), as for keys.
//!
//! Keys are stored only as HMAC-SHA256(key_hash_secret, secret): a leaked database does not
//! yield usable keys without the server's secret. Every request looks its key up, so a
//! revocation or a suspension counts from the very next request.

use axum::extract::{FromRequestParts, MatchedPath};
use axum::http::request::Parts;
use axum::http::Method;

use super::error::ApiError;
pub use crate::app::keys::{constant_time_eq, secret_hash, DISPLAY_PREFIX_LEN, SECRET_PREFIX};
pub use crate::app::Caller;
use crate::state::AppState;

/// Longest credential looked at.
const CREDENTIAL_LEN_MAX: usize = 256;

fn credential(parts: &Parts) -> Option<&str> {
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(key) = header("x-api-key").map(str::trim).filter(|k| !k.is_empty()) {
        return Some(key);
    }
    let authorization = header("authorization")?;
    let (scheme, token) = authorization.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Caller, ApiError> {
        let Some(credential) = credential(parts).filter(|c| !c.is_empty()) else {
            if let Some(secret) = super::billing::session_cookie(&parts.headers) {
                return member_caller(parts, state, &secret).await;
            }
            return Err(ApiError::unauthenticated(
                "No credentials: send an API key as x-api-key or Authorization: Bearer.",
            ));
        };
        if credential.len() > CREDENTIAL_LEN_MAX {
            return Err(ApiError::unauthenticated("Invalid API key."));
        }
        if constant_time_eq(credential.as_bytes(), state.operator_token().as_bytes()) {
            return Ok(Caller::Operator);
        }
        if !credential.starts_with(SECRET_PREFIX) {
            return Err(ApiError::unauthenticated("Invalid API key."));
        }
        let hash = secret_hash(state.key_hash_secret(), credential);
        match state.store().key_by_secret_hash(&hash).await? {
            Some((key, org)) => Ok(Caller::Key { key, org }),
            None => Err(ApiError::unauthenticated("Invalid or revoked API key.")),
        }
    }
}

/// The member whose session cookie is `secret`, allowed on this route by its role, with the
/// CSRF token on writes.
async fn member_caller(parts: &Parts, state: &AppState, secret: &str) -> Result<Caller, ApiError> {
    let session = super::billing::open_session(state, secret)
        .await?
        .ok_or_else(|| ApiError::unauthenticated("The session has ended: sign in again."))?;
    let path = parts
        .extensions
        .get::<MatchedPath>()
        .map(MatchedPath::as_str)
        .unwrap_or("");
    // Which routes a session reaches at all; what its role may do there is the operation's
    // to decide (`app::authorize`).
    if super::billing::api_action(&parts.method, path).is_none() {
        return Err(ApiError::forbidden(
            "This call is not available with a billing-page session.",
        ));
    }
    let safe = matches!(parts.method, Method::GET | Method::HEAD);
    let token = parts
        .headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !safe && !constant_time_eq(token.as_bytes(), session.csrf_token.as_bytes()) {
        return Err(ApiError::forbidden_code(
            "csrf_failed",
            "Send the session's CSRF token in x-csrf-token.",
        ));
    }
    let org = state
        .store()
        .org(&session.member.org_id)
        .await?
        .ok_or_else(|| ApiError::unauthenticated("The session has ended: sign in again."))?;
    Ok(Caller::Member {
        member: session.member,
        org,
    })
}
