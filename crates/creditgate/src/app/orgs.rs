//! Orgs: create (operator), change (the operator anything; members their billing contacts
//! and low-balance thresholds).

use creditgate_domain::access::LOW_THRESHOLDS_MAX;
use creditgate_domain::member::Action;
use creditgate_domain::rate::RateLimits;
use creditgate_domain::Amount;
use creditgate_store::api::{NewOrg, Org, OrgPatch, OrgUpdate};

use super::error::ApiError;
use super::input::{check_rate_limits, path_id, text};
use super::{authorize, Actor};
use crate::state::AppState;

/// Most billing contacts per org.
pub const BILLING_EMAILS_MAX: usize = 10;
/// Longest billing email.
pub const EMAIL_LEN_MAX: usize = 254;
/// Longest org name.
pub const NAME_LEN_MAX: usize = 200;

/// A new org (thresholds in any order; they are stored highest first, once each).
#[derive(Clone, Debug)]
pub struct NewOrgInput {
    /// Its name (1 to [`NAME_LEN_MAX`] characters).
    pub name: String,
    /// Where billing notices go.
    pub billing_emails: Vec<String>,
    /// Low-balance thresholds.
    pub low_thresholds: Vec<Amount>,
    /// The lowest available balance it may reach (0 or negative).
    pub floor: Option<Amount>,
    /// Monthly spend cap.
    pub spend_limit_monthly: Option<Amount>,
    /// Rate limits of all its calls together.
    pub rate_limits: RateLimits,
}

/// Creates an org with its credit account (operator only).
pub async fn create(state: &AppState, actor: &Actor, input: NewOrgInput) -> Result<Org, ApiError> {
    actor.require_operator()?;
    text("name", &input.name, 1, NAME_LEN_MAX)?;
    check_emails(&input.billing_emails)?;
    check_rate_limits(&input.rate_limits)?;
    let org = NewOrg {
        id: state.new_id("org"),
        name: input.name,
        billing_emails: input.billing_emails,
        low_thresholds: check_thresholds(input.low_thresholds)?,
        floor: check_floor(input.floor)?.unwrap_or(Amount::ZERO),
        spend_limit_monthly: input.spend_limit_monthly,
        rate_limits: input.rate_limits,
    };
    if !state.store().create_org(&org, state.now()).await? {
        return Err(ApiError::internal(format!(
            "generated org id {} is taken",
            org.id
        )));
    }
    state
        .store()
        .org(&org.id)
        .await?
        .ok_or_else(|| ApiError::internal("created org not found"))
}

/// Changes an org; absent fields stay as they are. Members (with the settings action) change
/// billing contacts and thresholds only.
pub async fn update(
    state: &AppState,
    actor: &Actor,
    org_id: &str,
    mut patch: OrgPatch,
) -> Result<Org, ApiError> {
    path_id("org_id", "org", org_id)?;
    actor.require_org(org_id)?;
    authorize(actor, Action::ManageSettings)?;
    if actor.role().is_some() {
        let operator_only = [
            ("name", patch.name.is_some()),
            ("floor", patch.floor.is_some()),
            ("suspended", patch.suspended.is_some()),
            ("spend_limit_monthly", patch.spend_limit_monthly.is_some()),
            ("rate_limits", patch.rate_limits.is_some()),
        ];
        if let Some((param, _)) = operator_only.iter().find(|(_, set)| *set) {
            return Err(ApiError::forbidden(format!(
                "{param} is changed by the operator only."
            )));
        }
    }
    if let Some(name) = &patch.name {
        text("name", name, 1, NAME_LEN_MAX)?;
    }
    if let Some(emails) = &patch.billing_emails {
        check_emails(emails)?;
    }
    if let Some(limits) = &patch.rate_limits {
        check_rate_limits(limits)?;
    }
    patch.low_thresholds = patch.low_thresholds.map(check_thresholds).transpose()?;
    patch.floor = check_floor(patch.floor)?;
    match state
        .store()
        .update_org(org_id, &patch, state.now())
        .await?
    {
        OrgUpdate::Updated(org) => Ok(org),
        OrgUpdate::NotFound => Err(ApiError::not_found("org_not_found", "No such org.")),
        OrgUpdate::FloorAboveAvailable { available } => Err(ApiError::conflict_param(
            "floor",
            "floor_above_available",
            format!("The floor cannot be raised above the org's available balance ({available})."),
        )),
    }
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

/// At most [`LOW_THRESHOLDS_MAX`], each positive; highest first, once each.
fn check_thresholds(mut amounts: Vec<Amount>) -> Result<Vec<Amount>, ApiError> {
    if amounts.len() > LOW_THRESHOLDS_MAX {
        return Err(ApiError::invalid(
            "low_thresholds",
            "parameter_invalid",
            format!("At most {LOW_THRESHOLDS_MAX} thresholds."),
        ));
    }
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

fn check_floor(floor: Option<Amount>) -> Result<Option<Amount>, ApiError> {
    match floor {
        Some(amount) if amount.is_positive() => Err(ApiError::invalid(
            "floor",
            "parameter_invalid",
            "The floor must be 0 or negative (an overdraft).",
        )),
        other => Ok(other),
    }
}
