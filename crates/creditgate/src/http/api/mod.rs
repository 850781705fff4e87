//! The handlers, one module per resource.

pub mod credits;
pub mod holds;
pub mod idempotency;
pub mod keys;
pub mod members;
pub mod notices;
pub mod orgs;
pub mod payments;
pub mod prices;
pub mod recoveries;
pub mod system;
pub mod usage;
pub mod webhooks;

use creditgate_domain::ledger::Rejection;
use serde::{Deserialize, Deserializer};

use super::error::ApiError;
use crate::node::AppState;

/// `?limit=&starting_after=` of list routes.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Items per page (1 to 100, default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// The id of the last item of the previous page (a transfer's id may be any printable
    /// ASCII the ledger accepts, e.g. `txn_pay_…`; other lists' ids are `prefix_alphanumerics`).
    #[param(pattern = "^[!-~]{1,256}$")]
    pub starting_after: Option<String>,
}

impl ListQuery {
    fn limit(&self, state: &AppState) -> Result<usize, ApiError> {
        let max = state.config().page_len_max.max(1);
        match self.limit {
            None => Ok(20.min(max)),
            Some(limit) if limit >= 1 && (limit as usize) <= max => Ok(limit as usize),
            Some(_) => Err(ApiError::invalid(
                "limit",
                "parameter_invalid",
                format!("limit must be between 1 and {max}."),
            )),
        }
    }
}

/// Query strings parsed with the field named on failure.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequestParts<S>
    for Query<T>
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Query<T>, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        let deserializer =
            serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer)
            .map(Query)
            .map_err(|error| {
                let param = error.path().to_string();
                ApiError::invalid(
                    if param == "." {
                        "query".to_owned()
                    } else {
                        param
                    },
                    "parameter_invalid",
                    error.into_inner().to_string(),
                )
            })
    }
}

/// A path parameter; a value axum cannot decode (not UTF-8, say) is a 400 naming it.
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> axum::extract::FromRequestParts<S>
    for Path<T>
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Path<T>, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(rejection) => {
                let param = parts
                    .extensions
                    .get::<axum::extract::MatchedPath>()
                    .and_then(|path| path.as_str().split('{').nth(1))
                    .and_then(|rest| rest.split('}').next())
                    .unwrap_or("path")
                    .to_owned();
                tracing::debug!(%rejection, "path refused");
                Err(ApiError::invalid(
                    param.clone(),
                    "invalid_id",
                    format!("{param} is not a valid id."),
                ))
            }
        }
    }
}

/// Validates a path id: a malformed one is a 400 naming it, so it never reaches a query.
pub fn path_id(param: &str, prefix: &str, id: &str) -> Result<(), ApiError> {
    if crate::ids::is_valid(prefix, id) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            param,
            "invalid_id",
            format!("{param} must look like {prefix}_…."),
        ))
    }
}

/// A ledger refusal as an API error, for the refusals the API's own checks do not catch first.
pub fn rejection(rejection: Rejection, param: &str) -> ApiError {
    match rejection {
        Rejection::ExistsWithDifferentFields => ApiError::conflict(
            "idempotency_conflict",
            "This id was used before with different parameters.",
        ),
        Rejection::HoldNotFound => ApiError::not_found("hold_not_found", "No such hold."),
        Rejection::HoldAlreadyClosed => ApiError::conflict(
            "hold_already_closed",
            "The hold is already settled, voided or expired.",
        ),
        Rejection::HoldExpired => ApiError::conflict("hold_expired", "The hold has expired."),
        Rejection::AccountNotFound
        | Rejection::DebitAccountNotFound
        | Rejection::CreditAccountNotFound => ApiError::not_found("org_not_found", "No such org."),
        other => ApiError::invalid(param, other.code(), other.to_string()),
    }
}

/// Double option: absent → `None`, `null` → `Some(None)`.
pub fn double_option<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

/// Checks free text: length and no control characters.
pub fn text(param: &str, value: &str, len_min: usize, len_max: usize) -> Result<(), ApiError> {
    let len = value.chars().count();
    if len < len_min || len > len_max {
        return Err(ApiError::invalid(
            param,
            "parameter_invalid",
            format!("{param} must be {len_min} to {len_max} characters."),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            param,
            "parameter_invalid",
            format!("{param} may not contain control characters."),
        ));
    }
    Ok(())
}

/// Loads an org the caller may act on, or 404.
pub async fn org_for(
    state: &AppState,
    caller: &super::auth::Caller,
    org_id: &str,
) -> Result<creditgate_store::api::Org, ApiError> {
    path_id("org_id", "org", org_id)?;
    caller.require_org(org_id)?;
    state
        .store()
        .org(org_id)
        .await?
        .ok_or_else(|| ApiError::not_found("org_not_found", "No such org."))
}
