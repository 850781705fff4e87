//! Orgs (operator).

use axum::extract::State;

use super::Path;
use axum::http::StatusCode;
use axum::Json;
use creditgate_domain::access::LOW_THRESHOLDS_MAX;
use creditgate_domain::Amount;
use creditgate_store::api::{NewOrg, OrgPatch, OrgUpdate};
use serde::Deserialize;
use utoipa::ToSchema;

use super::{double_option, org_for, path_id, text, ListQuery, Query};
use crate::server::auth::Caller;
use crate::server::error::{ApiError, ErrorBody};
use crate::server::json::{Body, Money, SignedMoney};
use crate::server::views::{ListView, OrgView, TransitionView};
use crate::server::AppState;

/// Most billing contacts per org.
pub const BILLING_EMAILS_MAX: usize = 10;
const EMAIL_LEN_MAX: usize = 254;
const NAME_LEN_MAX: usize = 200;

/// A new org.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Acme", "billing_emails": ["billing@acme.example"], "low_thresholds": ["10.00"]}))]
pub struct CreateOrg {
    /// Its name (1 to 200 characters).
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// Where billing notices go (at most 10).
    #[serde(default)]
    pub billing_emails: Vec<String>,
    /// Low-balance thresholds, decimal strings (at most 8).
    #[serde(default)]
    pub low_thresholds: Vec<Money>,
    /// The lowest available balance it may reach: "0" (default) or negative (an overdraft).
    pub floor: Option<SignedMoney>,
    /// Monthly spend cap.
    pub spend_limit_monthly: Option<Money>,
}

/// Changes to an org; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateOrg {
    /// New name (1 to 200 characters).
    #[schema(min_length = 1, max_length = 200)]
    pub name: Option<String>,
    /// New billing contacts.
    pub billing_emails: Option<Vec<String>>,
    /// New thresholds.
    pub low_thresholds: Option<Vec<Money>>,
    /// New floor ("0" or negative).
    pub floor: Option<SignedMoney>,
    /// Suspend (true) or lift the suspension (false).
    pub suspended: Option<bool>,
    /// New monthly cap; null removes it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Money>)]
    pub spend_limit_monthly: Option<Option<Money>>,
}

fn check_emails(emails: &[String]) -> Result<(), ApiError> {
    if emails.len() > BILLING_EMAILS_MAX {
        return Err(ApiError::invalid(
            "billing_emails",
            "parameter_invalid",
            format!("At most {BILLING_EMAILS_MAX} billing emails."),
        ));
    }
    for (index, email) in emails.iter().enumerate() {
        let valid = email.len() <= EMAIL_LEN_MAX
            && !email.chars().any(|c| c.is_whitespace() || c.is_control())
            && email.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty() && domain.contains('.') && !domain.contains('@')
            });
        if !valid {
            return Err(ApiError::invalid(
                format!("billing_emails[{index}]"),
                "parameter_invalid",
                format!("{email:?} is not an email address."),
            ));
        }
    }
    Ok(())
}

fn check_thresholds(thresholds: &[Money]) -> Result<Vec<Amount>, ApiError> {
    if thresholds.len() > LOW_THRESHOLDS_MAX {
        return Err(ApiError::invalid(
            "low_thresholds",
            "parameter_invalid",
            format!("At most {LOW_THRESHOLDS_MAX} thresholds."),
        ));
    }
    let mut amounts: Vec<Amount> = thresholds.iter().map(|m| m.0).collect();
    if let Some(index) = amounts.iter().position(|a| !a.is_positive()) {
        return Err(ApiError::invalid(
            format!("low_thresholds[{index}]"),
            "parameter_invalid",
            "Thresholds must be positive.",
        ));
    }
    amounts.sort_by(|a, b| b.cmp(a));
    amounts.dedup();
    Ok(amounts)
}

fn check_floor(floor: Option<SignedMoney>) -> Result<Option<Amount>, ApiError> {
    match floor {
        Some(SignedMoney(amount)) if amount.is_positive() => Err(ApiError::invalid(
            "floor",
            "parameter_invalid",
            "The floor must be 0 or negative (an overdraft).",
        )),
        other => Ok(other.map(|m| m.0)),
    }
}

/// Create an org with its credit account.
#[utoipa::path(post, path = "/v1/orgs", tag = "orgs", request_body = CreateOrg,
    responses((status = 201, body = OrgView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create_org(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<CreateOrg>,
) -> Result<(StatusCode, Json<OrgView>), ApiError> {
    caller.require_operator()?;
    text("name", &body.name, 1, NAME_LEN_MAX)?;
    check_emails(&body.billing_emails)?;
    let low_thresholds = check_thresholds(&body.low_thresholds)?;
    let floor = check_floor(body.floor)?.unwrap_or(Amount::ZERO);
    let org = NewOrg {
        id: state.new_id("org"),
        name: body.name,
        billing_emails: body.billing_emails,
        low_thresholds,
        floor,
        spend_limit_monthly: body.spend_limit_monthly.map(|m| m.0),
    };
    if !state.store().create_org(&org, state.now()).await? {
        return Err(ApiError::internal(format!(
            "generated org id {} is taken",
            org.id
        )));
    }
    let created = state
        .store()
        .org(&org.id)
        .await?
        .ok_or_else(|| ApiError::internal("created org not found"))?;
    Ok((StatusCode::CREATED, Json(OrgView::from(&created))))
}

/// List orgs, in id order.
#[utoipa::path(get, path = "/v1/orgs", tag = "orgs", params(ListQuery),
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
    let org = org_for(&state, &caller, &org_id).await?;
    Ok(Json(OrgView::from(&org)))
}

/// Change an org: name, billing contacts, thresholds, floor, suspension, spend cap.
#[utoipa::path(patch, path = "/v1/orgs/{org_id}", tag = "orgs", params(("org_id" = String, Path, pattern = "^org_[A-Za-z0-9]{1,64}$")), request_body = UpdateOrg,
    responses((status = 200, body = OrgView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_org(
    State(state): State<AppState>,
    caller: Caller,
    Path(org_id): Path<String>,
    Body(body): Body<UpdateOrg>,
) -> Result<Json<OrgView>, ApiError> {
    path_id("org_id", "org", &org_id)?;
    caller.require_org(&org_id)?;
    caller.require_operator_or_member()?;
    if caller.role().is_some() {
        // Members change their billing contacts and low-balance thresholds, nothing else.
        let operator_only = [
            ("name", body.name.is_some()),
            ("floor", body.floor.is_some()),
            ("suspended", body.suspended.is_some()),
            ("spend_limit_monthly", body.spend_limit_monthly.is_some()),
        ];
        if let Some((param, _)) = operator_only.iter().find(|(_, set)| *set) {
            return Err(ApiError::forbidden(format!(
                "{param} is changed by the operator only."
            )));
        }
    }
    if let Some(name) = &body.name {
        text("name", name, 1, NAME_LEN_MAX)?;
    }
    if let Some(emails) = &body.billing_emails {
        check_emails(emails)?;
    }
    let patch = OrgPatch {
        name: body.name,
        billing_emails: body.billing_emails,
        low_thresholds: body
            .low_thresholds
            .as_deref()
            .map(check_thresholds)
            .transpose()?,
        floor: check_floor(body.floor)?,
        suspended: body.suspended,
        spend_limit_monthly: body.spend_limit_monthly.map(|limit| limit.map(|m| m.0)),
    };
    let org = match state
        .store()
        .update_org(&org_id, &patch, state.now())
        .await?
    {
        OrgUpdate::Updated(org) => org,
        OrgUpdate::NotFound => return Err(ApiError::not_found("org_not_found", "No such org.")),
        OrgUpdate::FloorAboveAvailable { available } => {
            return Err(ApiError::conflict_param(
                "floor",
                "floor_above_available",
                format!(
                    "The floor cannot be raised above the org's available balance ({available})."
                ),
            ))
        }
    };
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
    let org = org_for(&state, &caller, &org_id).await?;
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
