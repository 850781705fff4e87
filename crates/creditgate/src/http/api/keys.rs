//! API keys: the JSON adapter of `app::keys` (the secret is in the create response only).

use axum::extract::State;

use super::Path;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::app::keys::{self, NewKey};
use crate::http::auth::Caller;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::json::{Body, Money};
use crate::http::views::{KeyCreatedView, KeyView, ListView, RateLimitsBody};
use crate::state::AppState;

/// A new key.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// A label (up to 100 characters, no control characters).
    #[serde(default)]
    #[schema(max_length = 100, pattern = r"^[^\x00-\x1F\x7F-\x9F]*$")]
    pub name: String,
    /// Monthly spend cap for calls made with this key.
    pub spend_limit_monthly: Option<Money>,
    /// Rate limits of calls made with this key (absent: none; the org's apply too).
    pub rate_limits: Option<RateLimitsBody>,
}

/// Create an API key for an org. The secret is shown in this response only.
#[utoipa::path(post, path = "/v1/orgs/{org_id}/keys", tag = "keys", params(("org_id" = String, Path, pattern = "^org_[A-Za-z0-9]{1,64}$")), request_body = CreateKey,
    responses((status = 201, body = KeyCreatedView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(org_id): Path<String>,
    Body(body): Body<CreateKey>,
) -> Result<(StatusCode, Json<KeyCreatedView>), ApiError> {
    let new = NewKey {
        name: body.name,
        spend_limit_monthly: body.spend_limit_monthly.map(|m| m.0),
        rate_limits: body.rate_limits.map(Into::into).unwrap_or_default(),
    };
    let created = keys::create(&state, &caller, &org_id, new).await?;
    Ok((
        StatusCode::CREATED,
        Json(KeyCreatedView {
            key: KeyView::from(&created.key),
            secret: created.secret,
        }),
    ))
}

/// List an org's keys, newest first (revoked ones included).
#[utoipa::path(get, path = "/v1/orgs/{org_id}/keys", tag = "keys", params(("org_id" = String, Path, pattern = "^org_[A-Za-z0-9]{1,64}$")),
    responses((status = 200, body = ListView<KeyView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_keys(
    State(state): State<AppState>,
    caller: Caller,
    Path(org_id): Path<String>,
) -> Result<Json<ListView<KeyView>>, ApiError> {
    let keys = keys::list(&state, &caller, &org_id).await?;
    Ok(Json(ListView::new(
        keys.iter().map(KeyView::from).collect(),
        false,
    )))
}

/// Revoke a key: it authenticates nothing from the next request on.
#[utoipa::path(delete, path = "/v1/keys/{key_id}", tag = "keys", params(("key_id" = String, Path, pattern = "^key_[A-Za-z0-9]{1,64}$")),
    responses((status = 200, body = KeyView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(key_id): Path<String>,
) -> Result<Json<KeyView>, ApiError> {
    let key = keys::revoke(&state, &caller, &key_id).await?;
    Ok(Json(KeyView::from(&key)))
}
