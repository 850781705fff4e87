//! Top-ups and auto-reload settings.

use creditgate_domain::member::Action;
use creditgate_domain::payment::{is_whole_cents, PaymentKind, PaymentMethod, PaymentState};
use creditgate_domain::reload::{validate, ReloadAmount, ReloadSettings};
use creditgate_domain::Amount;
use creditgate_store::api::{AutoReload, Payment, PaymentProfile};

use super::error::ApiError;
use super::input::text;
use super::{org_for, Actor};
use crate::app::charges;
use crate::state::AppState;
use creditgate_domain::ids;

/// Longest return URL.
pub const RETURN_URL_LEN_MAX: usize = 2000;
/// Longest provider payment-method id.
pub const PAYMENT_METHOD_LEN_MAX: usize = 255;
/// Longest consent signature.
pub const ACCEPTED_BY_LEN_MAX: usize = 200;

/// A top-up to make.
#[derive(Clone, Debug)]
pub struct TopUp {
    /// How much, in whole cents, within the deployment's top-up limits.
    pub amount: Amount,
    /// How it is paid.
    pub method: PaymentMethod,
    /// Where a checkout returns to.
    pub return_url: Option<String>,
}

/// The id of the top-up `actor` asks for under idempotency key `key`: a retry with the same
/// key finds the payment the first attempt made.
pub fn top_up_id(actor: &Actor, key: &str) -> String {
    ids::top_up_payment(&actor.idempotency_scope(), key)
}

/// Adds credits: opens a checkout, or charges the saved card. Idempotent by `key` (the
/// payment's id comes from it); credits land only once the provider says the payment
/// succeeded, exactly once.
pub async fn top_up(
    state: &AppState,
    actor: &Actor,
    org_id: &str,
    top_up: TopUp,
    key: &str,
) -> Result<Payment, ApiError> {
    let org = org_for(state, actor, org_id, Action::AddCredits).await?;
    amount_in_limits(state, top_up.amount)?;
    if let Some(url) = &top_up.return_url {
        http_url("return_url", url)?;
    }
    if top_up.method == PaymentMethod::SavedCard {
        require_saved_card(state, &org.id).await?;
    }
    let now = state.now();
    let payment = Payment {
        id: top_up_id(actor, key),
        org_id: org.id.clone(),
        kind: PaymentKind::TopUp,
        method: top_up.method,
        state: PaymentState::Created,
        amount: top_up.amount,
        currency: state.config().currency.clone(),
        provider: state.provider().name().to_owned(),
        provider_ref: None,
        action_url: None,
        return_url: top_up.return_url,
        failure_code: None,
        failure_message: None,
        transfer_id: None,
        created_at: now,
        updated_at: now,
    };
    // The id comes from the key: a retry after a crash finds the payment it made.
    state.store().insert_payment(&payment).await?;
    let payment = state
        .store()
        .payment(&payment.id)
        .await?
        .ok_or_else(|| ApiError::internal("a payment vanished"))?;
    let same = payment.org_id == org.id
        && payment.kind == PaymentKind::TopUp
        && payment.amount == top_up.amount
        && payment.method == top_up.method;
    if !same {
        return Err(ApiError::conflict(
            "idempotency_key_reused",
            "This idempotency key was used for another top-up.",
        ));
    }
    Ok(match (payment.method, payment.state) {
        (PaymentMethod::Checkout, PaymentState::Created) => {
            charges::open_checkout(state, &payment).await?
        }
        (PaymentMethod::SavedCard, PaymentState::Created | PaymentState::Charging) => {
            charges::charge(state, &payment).await?
        }
        _ => payment,
    })
}

/// A 400 unless the org has a saved card.
async fn require_saved_card(state: &AppState, org_id: &str) -> Result<(), ApiError> {
    match state.store().payment_profile(org_id).await?.payment_method {
        Some(_) => Ok(()),
        None => Err(ApiError::invalid(
            "method",
            "no_payment_method",
            "The org has no saved card: pay by checkout first, or save one with auto-reload settings.",
        )),
    }
}

fn amount_in_limits(state: &AppState, amount: Amount) -> Result<(), ApiError> {
    let limits = state.payment_limits();
    if !is_whole_cents(amount) {
        return Err(ApiError::invalid(
            "amount",
            "amount_not_whole_cents",
            "amount must be a whole number of cents.",
        ));
    }
    if amount < limits.amount_min || amount > limits.amount_max {
        return Err(ApiError::invalid(
            "amount",
            "amount_out_of_range",
            format!(
                "amount must be between {} and {}.",
                limits.amount_min, limits.amount_max
            ),
        ));
    }
    Ok(())
}

fn http_url(param: &str, url: &str) -> Result<(), ApiError> {
    text(param, url, 1, RETURN_URL_LEN_MAX)?;
    if url.starts_with("https://") || url.starts_with("http://") {
        Ok(())
    } else {
        Err(ApiError::invalid(
            param,
            "parameter_invalid",
            format!("{param} must be an http or https URL."),
        ))
    }
}

/// An org's auto-reload settings and state, with its payment profile (the saved card).
#[derive(Clone, Debug)]
pub struct AutoReloadState {
    /// The settings and their state.
    pub reload: AutoReload,
    /// The saved card, if any.
    pub profile: PaymentProfile,
}

/// The org's auto-reload, `None` if it was never set up.
pub async fn auto_reload(
    state: &AppState,
    actor: &Actor,
    org_id: &str,
) -> Result<Option<AutoReloadState>, ApiError> {
    let org = org_for(state, actor, org_id, Action::ManageAutoReload).await?;
    with_profile(state, state.store().auto_reload(&org.id).await?).await
}

async fn with_profile(
    state: &AppState,
    reload: Option<AutoReload>,
) -> Result<Option<AutoReloadState>, ApiError> {
    let Some(reload) = reload else {
        return Ok(None);
    };
    let profile = state.store().payment_profile(&reload.org_id).await?;
    Ok(Some(AutoReloadState { reload, profile }))
}

/// Agreement to the auto-reload consent text.
#[derive(Clone, Debug)]
pub struct Consent {
    /// Who agreed (an email or a name; a member's own email whatever is given).
    pub accepted_by: String,
    /// The version of the text shown (must be the current one).
    pub text_version: String,
}

/// Auto-reload settings to apply.
#[derive(Clone, Debug)]
pub struct SetAutoReload {
    /// On or off, the threshold, the amount or target, the monthly limit.
    pub settings: ReloadSettings,
    /// A card to save and charge (a provider payment-method id; default: the saved card).
    pub payment_method: Option<String>,
    /// The consent (needed the first time).
    pub consent: Option<Consent>,
}

/// `amount` or `target`, exactly one: the reload amount, or a 400 naming the field.
pub fn reload_amount(
    amount: Option<Amount>,
    target: Option<Amount>,
) -> Result<ReloadAmount, ApiError> {
    match (amount, target) {
        (Some(amount), None) => Ok(ReloadAmount::Fixed(amount)),
        (None, Some(target)) => Ok(ReloadAmount::Target(target)),
        (Some(_), Some(_)) => Err(ApiError::invalid(
            "target",
            "parameter_invalid",
            "Give amount or target, not both.",
        )),
        (None, None) => Err(ApiError::invalid(
            "amount",
            "parameter_missing",
            "Give amount or target.",
        )),
    }
}

/// Sets the org's auto-reload: when the available balance reaches the threshold, the saved
/// card is charged the amount (or up to the target), at most the monthly limit a month.
/// Enabling needs the consent and a card. Evaluated at once.
pub async fn set_auto_reload(
    state: &AppState,
    actor: &Actor,
    org_id: &str,
    set: SetAutoReload,
) -> Result<AutoReloadState, ApiError> {
    let org = org_for(state, actor, org_id, Action::ManageAutoReload).await?;
    let settings = set.settings;
    validate(&settings, &state.payment_limits())
        .map_err(|e| ApiError::invalid(e.field, e.code, e.message))?;
    let previous = state.store().auto_reload(&org.id).await?;
    let consent = consent(state, actor, set.consent, previous.as_ref())?;
    if let Some(method) = &set.payment_method {
        text("payment_method", method, 1, PAYMENT_METHOD_LEN_MAX)?;
        charges::save_card(state, &org.id, method).await?;
    }
    if settings.enabled
        && state
            .store()
            .payment_profile(&org.id)
            .await?
            .payment_method
            .is_none()
    {
        return Err(ApiError::invalid(
            "payment_method",
            "no_payment_method",
            "Auto-reload needs a card: give payment_method, or pay a checkout top-up first.",
        ));
    }
    let (consent_by, consent_at, consent_text_version) = consent;
    let reload = AutoReload {
        org_id: org.id.clone(),
        settings,
        consent_by,
        consent_at,
        consent_text_version,
        failures: 0,
        retry_at: None,
        last_failure: None,
        disabled_reason: None,
        updated_at: state.now(),
    };
    state.store().put_auto_reload(&reload).await?;
    state.wake_payments();
    let stored = state.store().auto_reload(&org.id).await?;
    with_profile(state, stored)
        .await?
        .ok_or_else(|| ApiError::internal("auto-reload settings vanished"))
}

/// The consent to record: a new one (checked against the current text; a member's is
/// recorded as the member's), else the one on record, else a 400.
fn consent(
    state: &AppState,
    actor: &Actor,
    given: Option<Consent>,
    previous: Option<&AutoReload>,
) -> Result<(String, creditgate_domain::Timestamp, String), ApiError> {
    match (given, previous) {
        (Some(consent), _) => {
            text(
                "consent.accepted_by",
                &consent.accepted_by,
                1,
                ACCEPTED_BY_LEN_MAX,
            )?;
            let current = &state.config().consent_text_version;
            if &consent.text_version != current {
                return Err(ApiError::invalid(
                    "consent.text_version",
                    "consent_text_outdated",
                    format!("The current consent text is version {current}."),
                ));
            }
            let accepted_by = match actor {
                Actor::Member { member, .. } => member.email.clone(),
                _ => consent.accepted_by,
            };
            Ok((accepted_by, state.now(), consent.text_version))
        }
        (None, Some(previous)) => Ok((
            previous.consent_by.clone(),
            previous.consent_at,
            previous.consent_text_version.clone(),
        )),
        (None, None) => Err(ApiError::invalid(
            "consent",
            "consent_missing",
            "Auto-reload needs the customer's consent: accepted_by and text_version.",
        )),
    }
}
