//! Metering: the price in force, placing a hold (suspension, the access state, spend limits,
//! then the ledger's funds check), settling and voiding it. Shared by `POST /v1/holds`,
//! `POST /v1/usage` and the metering proxy.

use creditgate_domain::access::AccessState;
use creditgate_domain::ledger::{
    AccountId, AccountKind, Hold, HoldId, Operation, Outcome, PlaceHoldRequest, Rejection,
    SettleHoldRequest, VoidHoldRequest,
};
use creditgate_domain::pricing::{is_valid_model, version_at, PriceVersion};
use creditgate_domain::rate::Ask;
use creditgate_domain::{Amount, Timestamp};
use creditgate_store::api::Org;

use super::error::ApiError;
use super::error::Headers;
use super::input::rejection;
use super::rate_limit::{refused, standing_headers, Names};
use super::Actor;
use crate::limiter::Scope;
use crate::metrics;
use crate::state::AppState;
use creditgate_domain::ids;
use creditgate_domain::reference::HoldTerms;

/// The version of `model` in force at `at`, or a 400 naming `param`.
pub async fn price_at(
    state: &AppState,
    model: &str,
    at: Timestamp,
    param: &str,
) -> Result<PriceVersion, ApiError> {
    if !is_valid_model(model) {
        return Err(ApiError::invalid(
            param,
            "unknown_model",
            format!("Unknown model {model:?}."),
        ));
    }
    let versions = state.store().price_versions(model).await?;
    version_at(&versions, at).cloned().ok_or_else(|| {
        ApiError::invalid(
            param,
            "unknown_model",
            format!("Unknown model {model:?}: it has no price."),
        )
    })
}

/// What a call counts against: its org's rate limits and, made with a key, the key's.
/// Unlimited scopes are left out, so a call with no limits allocates and locks nothing.
pub fn rate_scopes(actor: &Actor, org: &Org) -> Vec<Scope> {
    let key = match actor {
        Actor::Key { key, .. } => Some((&key.id, key.rate_limits)),
        Actor::Operator | Actor::Member { .. } => None,
    };
    [Some((&org.id, org.rate_limits)), key]
        .into_iter()
        .flatten()
        .filter(|(_, limits)| !limits.is_unlimited())
        .map(|(id, limits)| Scope {
            id: id.clone(),
            limits,
        })
        .collect()
}

/// Gives back what an admitted call did not use: its tokens when its hold was refused, the
/// tokens below its estimate and its most when it settles.
pub fn give_back(state: &AppState, scopes: &[Scope], unused: Ask) {
    state.rate_limiter().give_back(scopes, unused, state.now());
}

/// The org a metering call acts for: the key's or member's own, or `org_id` for the operator.
pub async fn metered_org(state: &AppState, actor: &Actor, org_id: &str) -> Result<Org, ApiError> {
    match actor {
        Actor::Key { org, .. } | Actor::Member { org, .. } => Ok(org.clone()),
        Actor::Operator => state
            .store()
            .org(org_id)
            .await?
            .ok_or_else(|| ApiError::not_found("org_not_found", "No such org.")),
    }
}

/// A hold's time to live from `ttl_s` (the configured default when absent): 1 s up to
/// `HOLD_TTL_MS_MAX`, else a 400 naming `ttl_s`.
pub fn hold_ttl_ms(state: &AppState, ttl_s: Option<u64>) -> Result<i64, ApiError> {
    let ttl_s = ttl_s.unwrap_or(state.config().hold_ttl_s_default);
    let ttl_ms = i64::try_from(ttl_s.saturating_mul(1000)).unwrap_or(i64::MAX);
    if ttl_s == 0 || ttl_ms > creditgate_domain::ledger::HOLD_TTL_MS_MAX {
        return Err(ApiError::invalid(
            "ttl_s",
            "parameter_invalid",
            format!(
                "ttl_s must be 1 to {}.",
                creditgate_domain::ledger::HOLD_TTL_MS_MAX / 1000
            ),
        ));
    }
    Ok(ttl_ms)
}

/// A hold to place: its id, amount, terms and time to live, and what its call asks of the
/// rate limits.
pub struct NewHold<'a> {
    /// Its id.
    pub id: HoldId,
    /// The worst case of the call.
    pub amount: Amount,
    /// What its reference records.
    pub terms: &'a HoldTerms,
    /// How long it lives unsettled.
    pub ttl_ms: i64,
    /// Its tokens, for the rate limits.
    pub ask: Ask,
}

/// A placed hold, with the rate-limit scopes its call counts against and where they stand.
pub struct Placed {
    /// The hold.
    pub hold: Hold,
    /// The scopes (to give back what the call does not use).
    pub scopes: Vec<Scope>,
    /// Where each limit stands, as headers for the answer.
    pub rate_headers: Headers,
}

/// Places a hold on `org` for `actor`: refused with 402 when the org is suspended, past a
/// spend limit, or cannot cover it (the ledger decides that last one), and with 429 (in
/// `names`' headers) past a rate limit of the org or the actor's key, checked before the
/// ledger so a refused call holds nothing. Answers the hold and the rate-limit scopes it
/// counts against (to give back what the call does not use), with where its limits stand
/// in `names`' headers. Shared by `POST /v1/holds` and the proxy.
pub async fn place(
    state: &AppState,
    actor: &Actor,
    org: &Org,
    hold: NewHold<'_>,
    names: Names,
    now: Timestamp,
) -> Result<Placed, ApiError> {
    if org.suspended {
        metrics::hold_refused("org_suspended");
        return Err(ApiError::billing(
            "org_suspended",
            "This organization's API access is suspended. Contact support.",
            state.billing_url(&org.id),
        ));
    }
    if org.access.state == AccessState::Depleted {
        // Turned off (by an earlier refusal or the floor): refused until credits bring the
        // org back to its cut-off level, even where this one call would fit.
        return Err(exhausted(state, &org.id));
    }
    check_spend_limits(state, actor, org, hold.amount, now).await?;
    let scopes = rate_scopes(actor, org);
    let standings = match state.rate_limiter().admit(&scopes, hold.ask, now) {
        Ok(standings) => standings,
        Err(limited) => {
            metrics::hold_refused("rate_limit_exceeded");
            return Err(refused(&limited, names, now));
        }
    };
    let ask = hold.ask;
    let placed = submit_hold(state, org, hold).await;
    if placed.is_err() {
        give_back(state, &scopes, ask);
    }
    placed.map(|hold| Placed {
        hold,
        scopes,
        rate_headers: standing_headers(&standings, names, now),
    })
}

async fn submit_hold(state: &AppState, org: &Org, hold: NewHold<'_>) -> Result<Hold, ApiError> {
    let amount = hold.amount;
    let operation = Operation::PlaceHold(PlaceHoldRequest {
        id: hold.id,
        debit_account_id: AccountId::new(org.id.clone()),
        credit_account_id: AccountKind::UsageRevenue
            .operator_account_id()
            .expect("operator account"),
        amount,
        reference: hold.terms.encode(),
        ttl_ms: hold.ttl_ms,
    });
    match state.writer().submit(operation).await? {
        Ok(receipt) => {
            metrics::hold_placed();
            receipt
                .hold
                .ok_or_else(|| ApiError::internal("hold receipt without hold"))
        }
        Err(Rejection::InsufficientFunds) => Err(refused_for_funds(state, org, amount).await),
        Err(other) => {
            metrics::hold_refused(other.code());
            Err(rejection(other, "amount"))
        }
    }
}

/// The 402 of a hold the ledger refused for lack of credits. The batch that refused it has
/// recorded what that did to the org's access, so the org is read again: turned off
/// (`credit_balance_exhausted`), or still on, when only this call's worst case is more than
/// what is available (`request_exceeds_balance`, naming both).
async fn refused_for_funds(state: &AppState, org: &Org, amount: Amount) -> ApiError {
    let now_org = state.store().org(&org.id).await.ok().flatten();
    let account = state
        .store()
        .account(&AccountId::new(org.id.clone()))
        .await
        .ok()
        .flatten();
    match (now_org, account) {
        // Still on, and this call is more than what is available: refused alone. (Credits
        // that landed since the refusal, an auto-reload say, leave it `exhausted`: what
        // turned the call away was the org being off.)
        (Some(now_org), Some(account))
            if now_org.access.state != AccessState::Depleted && amount > account.available() =>
        {
            metrics::hold_refused("request_exceeds_balance");
            ApiError::billing(
                "request_exceeds_balance",
                format!(
                    "This request may cost up to {} {currency} (its worst case), more than the {} {currency} your organization has available. Lower max_tokens or the input, or add credits on the Billing page.",
                    amount,
                    account.available(),
                    currency = state.config().currency,
                ),
                state.billing_url(&org.id),
            )
        }
        _ => exhausted(state, &org.id),
    }
}

/// The 402 of an org whose API access is turned off for lack of credits.
fn exhausted(state: &AppState, org_id: &str) -> ApiError {
    metrics::hold_refused("credit_balance_exhausted");
    ApiError::billing(
        "credit_balance_exhausted",
        "Your organization is out of usage credits, so its API access is turned off. Add credits on the Billing page to turn it back on.",
        state.billing_url(org_id),
    )
}

/// Settles `hold` for `amount` under the id derived from the hold (so a repeat is `exists`).
pub async fn settle(state: &AppState, hold: &Hold, amount: Amount) -> Result<Outcome, ApiError> {
    let operation = Operation::SettleHold(SettleHoldRequest {
        id: ids::settlement(&hold.id),
        hold_id: hold.id.clone(),
        amount,
    });
    let outcome = state.writer().submit(operation).await?;
    if let Ok(receipt) = &outcome {
        if let Some(transfer) = &receipt.transfer {
            metrics::overspend(transfer.overspend.micros());
        }
    }
    Ok(outcome)
}

/// Voids `hold` under the id derived from the hold.
pub async fn void(state: &AppState, hold: &Hold) -> Result<Outcome, ApiError> {
    let operation = Operation::VoidHold(VoidHoldRequest {
        id: ids::void(&hold.id),
        hold_id: hold.id.clone(),
    });
    Ok(state.writer().submit(operation).await?)
}

/// Refuses a hold of `amount` that would take the org's or the key's usage this calendar
/// month (UTC; charged plus still held) past its cap. The check reads before the hold is
/// placed, so concurrent holds can together pass a cap by at most what they reserve; the
/// credit balance itself is never overspent (that check is the ledger's).
pub async fn check_spend_limits(
    state: &AppState,
    actor: &Actor,
    org: &Org,
    amount: Amount,
    now: Timestamp,
) -> Result<(), ApiError> {
    let since = now.month_start();
    let mut caps = Vec::new();
    if let Some(cap) = org.spend_limit_monthly {
        caps.push((cap, None, "the organization's"));
    }
    if let Actor::Key { key, .. } = actor {
        if let Some(cap) = key.spend_limit_monthly {
            caps.push((cap, Some(key.id.as_str()), "this API key's"));
        }
    }
    for (cap, key_id, whose) in caps {
        let spend = state.store().spend(&org.id, since, key_id).await?;
        if creditgate_domain::spend::hold_passes_limit(cap, spend.charged, spend.reserved, amount) {
            metrics::hold_refused("spend_limit_reached");
            let resets_at = now.next_month_start();
            // The first refusal of the period tells the org (email and webhook), once.
            state
                .store()
                .spend_limit_reached(&org.id, key_id, cap, resets_at, now)
                .await?;
            let (year, month, day) = creditgate_domain::time::civil_from_days(
                resets_at.unix_ms().div_euclid(86_400_000),
            );
            return Err(ApiError::billing(
                "spend_limit_reached",
                format!(
                    "This call would pass {whose} monthly spend limit of {cap} {currency}. It resets on {year:04}-{month:02}-{day:02} 00:00 UTC.",
                    currency = state.config().currency
                ),
                state.billing_url(&org.id),
            ));
        }
    }
    Ok(())
}
