//! Orgs: the JSON adapter of `app::orgs`, and the operator's reads.

use axum::extract::State;

use super::Path;
use axum::http::StatusCode;
use axum::Json;
use creditgate_domain::member::Action;
use creditgate_store::api::OrgPatch;
use serde::Deserialize;
use utoipa::ToSchema;

use super::{double_option, path_id, ListQuery, Query};
use crate::http::auth::Caller;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::json::{Body, Email, Money, NonPositiveMoney, PositiveMoney, SignedMoney};
use crate::http::views::{ListView, OrgView, RateLimitsBody, TransitionView};
use crate::state::AppState;

use crate::app;
use crate::app::orgs::NewOrgInput;

/// A new org.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Acme", "billing_emails": ["billing@acme.example"], "low_thresholds": ["10.00"]}))]
pub struct CreateOrg {
    /// Its name (1 to 200 characters, no control characters).
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1F\x7F-\x9F]*$"
    )]
    pub name: String,
    /// Where billing notices go (at most 10).
    #[serde(default)]
    #[schema(value_type = Vec<Email>, max_items = 10)]
    pub billing_emails: Vec<String>,
    /// Low-balance thresholds, positive decimal strings (at most 8).
    #[serde(default)]
    #[schema(value_type = Vec<PositiveMoney>, max_items = 8)]
    pub low_thresholds: Vec<Money>,
    /// The lowest available balance it may reach: "0" (default) or negative (an overdraft).
    #[schema(value_type = Option<NonPositiveMoney>)]
    pub floor: Option<SignedMoney>,
    /// Monthly spend cap.
    pub spend_limit_monthly: Option<Money>,
    /// Rate limits of all its calls together (absent: none).
    pub rate_limits: Option<RateLimitsBody>,
}

/// Changes to an org; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateOrg {
    /// New name (1 to 200 characters, no control characters).
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1F\x7F-\x9F]*$"
    )]
    pub name: Option<String>,
    /// New billing contacts (at most 10).
    #[schema(value_type = Option<Vec<Email>>, max_items = 10)]
    pub billing_emails: Option<Vec<String>>,
    /// New thresholds, positive (at most 8).
    #[schema(value_type = Option<Vec<PositiveMoney>>, max_items = 8)]
    pub low_thresholds: Option<Vec<Money>>,
    /// New floor ("0" or negative); raising it above the available balance is a 409.
    #[schema(value_type = Option<NonPositiveMoney>)]
    pub floor: Option<SignedMoney>,
    /// Suspend (true) or lift the suspension (false).
    pub suspended: Option<bool>,
    /// New monthly cap; null removes it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Money>)]
    pub spend_limit_monthly: Option<Option<Money>>,
    /// New rate limits, all three at once (a null or absent field in it: no limit).
    pub rate_limits: Option<RateLimitsBody>,
}

/// Create an org with its credit account.
#[utoipa::path(post, path = "/v1/orgs", tag = "orgs", request_body = CreateOrg,
    responses((status = 201, body = OrgView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create_org(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<CreateOrg>,
) -> Result<(StatusCode, Json<OrgView>), ApiError> {
    let input = NewOrgInput {
        name: body.name,
        billing_emails: body.billing_emails,
        low_thresholds: body.low_thresholds.iter().map(|m| m.0).collect(),
        floor: body.floor.map(|m| m.0),
        spend_limit_monthly: body.spend_limit_monthly.map(|m| m.0),
        rate_limits: body.rate_limits.map(Into::into).unwrap_or_default(),
    };
    let org = app::orgs::create(&state, &caller, input).await?;
    Ok((StatusCode::CREATED, Json(OrgView::from(&org))))
}

/// List orgs, in id order.
#[utoipa::path(get, path = "/v1/orgs", tag = "orgs",
    params(("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "Items per page (1 to 100, default 20)."),
        ("starting_after" = Option<String>, Query, pattern = "^org_[A-Za-z0-9]{1,64}$", description = "The id of the last org of the previous page.")),
    responses((status = 200, body = ListView<OrgView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_orgs(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<ListQuery>,
) -> Result<Json<ListView<OrgView>>, ApiError> {
    caller.require_operator()?;
    let limit = query.limit(&state)?;
    if let Some(after) = &query.starting_after {
        path_id("starting_after", "org", after)?;
    }
    let page = state
        .store()
        .orgs(limit, query.starting_after.as_deref())
        .await?;
    Ok(Json(ListView::new(
        page.items.iter().map(OrgView::from).collect(),
        page.has_more,
    )))
}

/// Get an org.
#[utoipa::path(get, path = "/v1/orgs/{org_id}", tag = "orgs", params(("org_id" = String, Path, pattern = "^org_[A-Za-z0-9]{1,64}$")),
    responses((status = 200, body = OrgView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_org(
    State(state): State<AppState>,
    caller: Caller,
    Path(org_id): Path<String>,
) -> Result<Json<OrgView>, ApiError> {
    let org = app::org_for(&state, &caller, &org_id, Action::ViewBalance).await?;
    Ok(Json(OrgView::from(&org)))
}

/// Change an org: name, billing contacts, thresholds, floor, suspension, spend cap.
#[utoipa::path(patch, path = "/v1/orgs/{org_id}", tag = "orgs", params(("org_id" = String, Path, pattern = "^org_[A-Za-z0-9]{1,64}$")), request_body = UpdateOrg,
    responses((status = 200, body = OrgView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn update_org(
    State(state): State<AppState>,
    caller: Caller,
    Path(org_id): Path<String>,
    Body(body): Body<UpdateOrg>,
) -> Result<Json<OrgView>, ApiError> {
    let patch = OrgPatch {
        name: body.name,
        billing_emails: body.billing_emails,
        low_thresholds: body
            .low_thresholds
            .map(|list| list.iter().map(|m| m.0).collect()),
        floor: body.floor.map(|m| m.0),
        suspended: body.suspended,
        spend_limit_monthly: body.spend_limit_monthly.map(|limit| limit.map(|m| m.0)),
        rate_limits: body.rate_limits.map(Into::into),
    };
    let org = app::orgs::update(&state, &caller, &org_id, patch).await?;
    Ok(Json(OrgView::from(&org)))
}

/// `?after=` of the transitions list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TransitionsQuery {
    /// Only transitions after this sequence number.
    pub after: Option<i64>,
    /// At most this many (1 to 100, default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

/// An org's access transitions, oldest first: every change of access state or threshold
/// level, with its cause.
#[utoipa::path(get, path = "/v1/orgs/{org_id}/access_transitions", tag = "orgs", params(("org_id" = String, Path, pattern = "^org_[A-Za-z0-9]{1,64}$"), TransitionsQuery),
    responses((status = 200, body = ListView<TransitionView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_access_transitions(
    State(state): State<AppState>,
    caller: Caller,
    Path(org_id): Path<String>,
    Query(query): Query<TransitionsQuery>,
) -> Result<Json<ListView<TransitionView>>, ApiError> {
    let org = app::org_for(&state, &caller, &org_id, Action::ViewBalance).await?;
    let limit = ListQuery {
        limit: query.limit,
        starting_after: None,
    }
    .limit(&state)?;
    let mut items = state
        .store()
        .access_transitions(&org.id, query.after.unwrap_or(0), limit + 1)
        .await?;
    let has_more = items.len() > limit;
    items.truncate(limit);
    Ok(Json(ListView::new(
        items.iter().map(TransitionView::from).collect(),
        has_more,
    )))
}
