//! An org's balance, why its calls are refused, and its ledger history.

use creditgate_domain::access::AccessState;
use creditgate_domain::ledger::{Account, AccountId, Transfer};
use creditgate_domain::member::Action;
use creditgate_domain::Timestamp;
use creditgate_store::api::{Org, Page};

use super::error::ApiError;
use super::{org_for, Actor};
use crate::state::AppState;

/// Why an org's metered calls are refused now, if they are: the code of their 402, and for a
/// spend limit, when it resets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallsRefused {
    /// `credit_balance_exhausted`, `org_suspended` or `spend_limit_reached`.
    pub code: &'static str,
    /// When a spend limit resets.
    pub resets_at: Option<Timestamp>,
}

/// An org with its credit account and why its calls are refused.
#[derive(Clone, Debug)]
pub struct Balance {
    /// The org, as of the read.
    pub org: Org,
    /// Its credit account.
    pub account: Account,
    /// Why its metered calls are refused, if they are.
    pub refused: Option<CallsRefused>,
}

/// The org's balance and access.
pub async fn balance(state: &AppState, actor: &Actor, org_id: &str) -> Result<Balance, ApiError> {
    let org = org_for(state, actor, org_id, Action::ViewBalance).await?;
    let account = state
        .store()
        .account(&AccountId::new(org.id.clone()))
        .await?
        .ok_or_else(|| ApiError::internal("org without account"))?;
    let refused = calls_refused(state, &org, state.now()).await?;
    Ok(Balance {
        org,
        account,
        refused,
    })
}

/// Why `org`'s metered calls are refused at `now`, if they are: suspended, turned off for
/// lack of credits (its stored access state), or its own monthly spend limit used up
/// (charged and held this month at the limit). A key's own limit refuses only that key's
/// calls, and is said in their 402.
pub async fn calls_refused(
    state: &AppState,
    org: &Org,
    now: Timestamp,
) -> Result<Option<CallsRefused>, ApiError> {
    let code = match org.access.state {
        AccessState::Suspended => Some("org_suspended"),
        AccessState::Depleted => Some("credit_balance_exhausted"),
        AccessState::Active | AccessState::Low => None,
    };
    if let Some(code) = code {
        return Ok(Some(CallsRefused {
            code,
            resets_at: None,
        }));
    }
    let Some(cap) = org.spend_limit_monthly else {
        return Ok(None);
    };
    let spend = state
        .store()
        .spend(&org.id, now.month_start(), None)
        .await?;
    let reached = creditgate_domain::spend::limit_reached(cap, spend.charged, spend.reserved);
    Ok(reached.then_some(CallsRefused {
        code: "spend_limit_reached",
        resets_at: Some(now.next_month_start()),
    }))
}

/// One page of an org's ledger history, newest first: at most `limit` transfers after the
/// transfer `starting_after` (its id; any id a stored transfer could have).
pub async fn transfers(
    state: &AppState,
    actor: &Actor,
    org_id: &str,
    limit: usize,
    starting_after: Option<&str>,
) -> Result<(Org, Page<Transfer>), ApiError> {
    let org = org_for(state, actor, org_id, Action::ViewHistory).await?;
    if let Some(after) = starting_after {
        if !creditgate_domain::ledger::is_storable_id(after) {
            return Err(ApiError::invalid(
                "starting_after",
                "invalid_id",
                "starting_after must be the id of a transfer",
            ));
        }
    }
    let page = state
        .store()
        .transfers(&org.id, limit, starting_after)
        .await?
        .ok_or_else(|| {
            ApiError::invalid(
                "starting_after",
                "parameter_invalid",
                "starting_after names no transfer of this org.",
            )
        })?;
    Ok((org, page))
}
