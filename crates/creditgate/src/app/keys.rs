//! API keys: list, create (the secret is returned once), revoke.

use creditgate_domain::member::Action;
use creditgate_domain::rate::RateLimits;
use creditgate_domain::Amount;
use creditgate_store::api::ApiKey;

use super::error::ApiError;
use super::input::{check_rate_limits, path_id, text};
use super::{authorize, org_for, Actor};
use crate::ids::random_hex;
use crate::state::AppState;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Prefix of every API key secret.
pub const SECRET_PREFIX: &str = "cg_live_";
/// Characters of the secret shown in lists.
pub const DISPLAY_PREFIX_LEN: usize = 12;

/// The keyed hash a secret is stored and found under.
pub fn secret_hash(key_hash_secret: &[u8], secret: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key_hash_secret).expect("HMAC takes any key length");
    mac.update(secret.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Longest key name.
pub const KEY_NAME_LEN_MAX: usize = 100;

/// Compares without an early exit, so the time taken says nothing about the token.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// A key to create.
#[derive(Clone, Debug, Default)]
pub struct NewKey {
    /// A label (up to [`KEY_NAME_LEN_MAX`] characters; may be empty).
    pub name: String,
    /// Monthly spend cap for calls made with it.
    pub spend_limit_monthly: Option<Amount>,
    /// Rate limits of calls made with it (the org's apply too).
    pub rate_limits: RateLimits,
}

/// A created key and its secret (shown this once).
#[derive(Clone, Debug)]
pub struct Created {
    /// The key as stored.
    pub key: ApiKey,
    /// The secret.
    pub secret: String,
}

/// An org's keys, newest first (revoked ones included).
pub async fn list(state: &AppState, actor: &Actor, org_id: &str) -> Result<Vec<ApiKey>, ApiError> {
    let org = org_for(state, actor, org_id, Action::ViewKeys).await?;
    Ok(state.store().keys(&org.id).await?)
}

/// Creates a key for the org.
pub async fn create(
    state: &AppState,
    actor: &Actor,
    org_id: &str,
    new: NewKey,
) -> Result<Created, ApiError> {
    let org = org_for(state, actor, org_id, Action::ManageKeys).await?;
    text("name", &new.name, 0, KEY_NAME_LEN_MAX)?;
    check_rate_limits(&new.rate_limits)?;
    let secret = format!("{SECRET_PREFIX}{}", random_hex(24));
    let key = ApiKey {
        id: state.new_id("key"),
        org_id: org.id,
        name: new.name,
        prefix: secret[..DISPLAY_PREFIX_LEN].to_owned(),
        spend_limit_monthly: new.spend_limit_monthly,
        rate_limits: new.rate_limits,
        created_at: state.now(),
        revoked_at: None,
    };
    state
        .store()
        .create_key(&key, &secret_hash(state.key_hash_secret(), &secret))
        .await?;
    Ok(Created { key, secret })
}

/// Revokes a key: it authenticates nothing from the next request on. Another org's key is
/// not found.
pub async fn revoke(state: &AppState, actor: &Actor, key_id: &str) -> Result<ApiKey, ApiError> {
    path_id("key_id", "key", key_id)?;
    let not_found = || ApiError::not_found("key_not_found", "No such key.");
    let key = state.store().key(key_id).await?.ok_or_else(not_found)?;
    if actor.require_org(&key.org_id).is_err() {
        return Err(not_found());
    }
    authorize(actor, Action::ManageKeys)?;
    state
        .store()
        .revoke_key(key_id, state.now())
        .await?
        .ok_or_else(not_found)
}
