//! Who is calling: the operator (its bearer token), an org (one of its API keys), or a member
//! of an org signed in to the billing page (its session cookie).
//!
//! A member's session reaches only the API routes the billing page uses, each allowed to the
//! member's role by `creditgate_domain::member::allows` (the table is
//! [`super::billing::api_action`]), and its writes must carry the session's CSRF token in
//! `x-csrf-token`: both checked here, before any handler runs.
//!
//! Keys are stored only as HMAC-SHA256(key_hash_secret, secret): a leaked database does not
//! yield usable keys without the server's secret. Every request looks its key up, so a
//! revocation or a suspension counts from the very next request.

use axum::extract::{FromRequestParts, MatchedPath};
use axum::http::request::Parts;
use axum::http::Method;
use creditgate_domain::member::{self, Role};
use creditgate_store::api::{ApiKey, Member, Org};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::error::ApiError;
use crate::node::AppState;

/// Prefix of every API key secret.
pub const SECRET_PREFIX: &str = "cg_live_";
/// Characters of the secret shown in lists.
pub const DISPLAY_PREFIX_LEN: usize = 12;
/// Longest credential looked at.
const CREDENTIAL_LEN_MAX: usize = 256;

/// The authenticated caller.
// One per request, built once and borrowed: the size difference of the variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Caller {
    /// The operator.
    Operator,
    /// An org, through one of its keys.
    Key {
        /// The key used.
        key: ApiKey,
        /// Its org, as of this request.
        org: Org,
    },
    /// A member of an org, through its billing-page session.
    Member {
        /// The member.
        member: Member,
        /// Its org, as of this request.
        org: Org,
    },
}

impl Caller {
    /// Refuses anyone but the operator.
    pub fn require_operator(&self) -> Result<(), ApiError> {
        match self {
            Caller::Operator => Ok(()),
            Caller::Key { .. } | Caller::Member { .. } => {
                Err(ApiError::forbidden("This call needs the operator token."))
            }
        }
    }

    /// Refuses anyone but the operator and members (whose role was checked for the route
    /// before the handler ran).
    pub fn require_operator_or_member(&self) -> Result<(), ApiError> {
        match self {
            Caller::Operator | Caller::Member { .. } => Ok(()),
            Caller::Key { .. } => Err(ApiError::forbidden("This call needs the operator token.")),
        }
    }

    /// The member's role; `None` for the operator and keys.
    pub fn role(&self) -> Option<Role> {
        match self {
            Caller::Member { member, .. } => Some(member.role),
            Caller::Operator | Caller::Key { .. } => None,
        }
    }

    /// Refuses callers that may not act on org `org_id`. An org's key sees another org as
    /// not found, so ids of other tenants are not confirmed.
    pub fn require_org(&self, org_id: &str) -> Result<(), ApiError> {
        match self {
            Caller::Operator => Ok(()),
            Caller::Key { org, .. } | Caller::Member { org, .. } if org.id == org_id => Ok(()),
            Caller::Key { .. } | Caller::Member { .. } => {
                Err(ApiError::not_found("org_not_found", "No such org."))
            }
        }
    }

    /// The org a metering call acts for: the key's own, or `org_id` for the operator.
    pub fn metering_org(&self, org_id: Option<&str>) -> Result<String, ApiError> {
        match (self, org_id) {
            (Caller::Key { org, .. }, None) => Ok(org.id.clone()),
            (Caller::Key { org, .. }, Some(id)) if id == org.id => Ok(org.id.clone()),
            (Caller::Key { .. }, Some(_)) => {
                Err(ApiError::not_found("org_not_found", "No such org."))
            }
            (Caller::Operator, Some(id)) => Ok(id.to_owned()),
            (Caller::Member { .. }, _) => Err(ApiError::forbidden(
                "Metering calls need an API key or the operator token.",
            )),
            (Caller::Operator, None) => Err(ApiError::invalid(
                "org_id",
                "parameter_missing",
                "org_id is required when calling with the operator token.",
            )),
        }
    }

    /// The key's id, when called with a key.
    pub fn key_id(&self) -> Option<&str> {
        match self {
            Caller::Operator | Caller::Member { .. } => None,
            Caller::Key { key, .. } => Some(&key.id),
        }
    }
}

/// The keyed hash a secret is stored and found under.
pub fn secret_hash(key_hash_secret: &[u8], secret: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key_hash_secret).expect("HMAC takes any key length");
    mac.update(secret.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Compares without an early exit, so the time taken says nothing about the token.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

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
    let Some(action) = super::billing::api_action(&parts.method, path) else {
        return Err(ApiError::forbidden(
            "This call is not available with a billing-page session.",
        ));
    };
    if !member::allows(session.member.role, action) {
        return Err(ApiError::forbidden("Your role may not do this."));
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
