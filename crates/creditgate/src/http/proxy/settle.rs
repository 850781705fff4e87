//! Holding and settling proxied calls: the hold (after the rate limits), the settlement at
//! the usage's price, at the hold when the usage is unknown, after the hold closed, and the
//! calls a stopped node left in flight.

use creditgate_domain::ledger::{Hold, Operation, Rejection, UsageRequest};
use creditgate_domain::pricing::{self, Usage};
use creditgate_domain::rate::Ask;

use super::endpoints::Endpoint;
use super::{formats, names, rate_ask, Call};
use crate::app::metering::NewHold;
use crate::app::metering::{self as holds};
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::views::HoldTerms;
use crate::metrics;
use crate::state::AppState;
use creditgate_domain::ledger::{HoldId, HOLD_TTL_MS_MAX};
use creditgate_domain::pricing::PriceVersion;
use creditgate_store::api::Org;

/// Settles the call at `usage`'s price, or at the hold's amount when the usage is unknown.
pub(super) async fn settle(state: &AppState, call: &Call, usage: Option<Usage>) {
    let charge = pricing::charge(&call.price.prices, usage.as_ref(), call.hold.amount);
    if let pricing::Charge::Unknown(_) = charge {
        metrics::proxy_usage_unknown();
    }
    let amount = charge.amount();
    if let Some(usage) = &usage {
        // What it took of its rate limits beyond what it used comes back.
        let unused = Ask {
            input_tokens: call.ask.input_tokens.saturating_sub(usage.input_total()),
            output_tokens: call.ask.output_tokens.saturating_sub(usage.output_tokens),
        };
        holds::give_back(state, &call.scopes, unused);
    }
    match holds::settle(state, &call.hold, amount).await {
        Ok(Ok(_)) => {}
        Ok(Err(Rejection::HoldExpired | Rejection::HoldAlreadyClosed)) => {
            usage_after_hold_closed(state, &call.hold, amount).await;
        }
        Ok(Err(rejection)) => {
            tracing::error!(code = rejection.code(), hold = %call.hold.id.as_str(), "proxy settlement refused")
        }
        Err(error) => {
            tracing::error!(?error.code, hold = %call.hold.id.as_str(), "proxy settlement failed; the hold expires at its TTL")
        }
    }
}

/// The usage of a call whose hold closed before its settlement (it expired, or a caller voided
/// it): usage that happened is recorded all the same, as a usage transfer under an id derived
/// from the hold (so once), even below the floor (reported as overspend).
pub(super) async fn usage_after_hold_closed(
    state: &AppState,
    hold: &Hold,
    amount: creditgate_domain::Amount,
) {
    metrics::proxy_usage_after_hold_closed();
    tracing::warn!(hold = %hold.id.as_str(), %amount, "hold closed before its call settled; recording the usage");
    let operation = Operation::RecordUsage(UsageRequest {
        id: creditgate_domain::ids::late_usage(&hold.id),
        debit_account_id: hold.debit_account_id.clone(),
        credit_account_id: hold.credit_account_id.clone(),
        amount,
        reference: hold.reference.clone(),
    });
    match state.writer().submit(operation).await {
        Ok(Ok(receipt)) => {
            if let Some(transfer) = &receipt.transfer {
                metrics::overspend(transfer.overspend.micros());
            }
        }
        Ok(Err(rejection)) => {
            tracing::error!(code = rejection.code(), hold = %hold.id.as_str(), "recording a closed hold's usage refused")
        }
        Err(error) => {
            tracing::error!(%error, hold = %hold.id.as_str(), "recording a closed hold's usage failed")
        }
    }
}

/// Most in-flight calls settled per batch at start.
pub(super) const RECOVERED_PER_BATCH_MAX: usize = 1_000;

/// Settles the calls this node had in flight when it last stopped (kill -9, a crash, a
/// shutdown past `proxy_drain_ms_max`): its open proxy holds placed before this start. The
/// rule: each is charged its hold's amount (the call's worst case), since the upstream may
/// have served and billed it; counted in `creditgate_proxy_calls_recovered_total`, logged,
/// and listed for the operator (`GET /v1/proxy/recoveries`). Other nodes' calls are theirs.
pub async fn recover_calls(state: &AppState) {
    let marker = HoldTerms::node_marker(state.node_id());
    let mut recovered = 0_u64;
    loop {
        let holds = match state
            .store()
            .open_holds_marked(&marker, state.started_at(), RECOVERED_PER_BATCH_MAX)
            .await
        {
            Ok(holds) => holds,
            Err(error) => {
                tracing::error!(%error, "could not read the calls in flight at the last stop");
                return;
            }
        };
        if holds.is_empty() {
            break;
        }
        let count = holds.len();
        for hold in holds {
            let settled = holds::settle(state, &hold, hold.amount).await;
            let closed = match &settled {
                Ok(Ok(_)) => true,
                Ok(Err(Rejection::HoldExpired)) => {
                    // Past its TTL: the expiry releases it; its usage is recorded instead.
                    usage_after_hold_closed(state, &hold, hold.amount).await;
                    true
                }
                _ => false,
            };
            if !closed {
                tracing::error!(hold = %hold.id.as_str(), ?settled, "could not settle a call in flight at the last stop");
                return;
            }
            tracing::warn!(hold = %hold.id.as_str(), org = %hold.debit_account_id.as_str(), amount = %hold.amount, "proxied call in flight at the last stop: charged at its hold");
            if let Err(error) = state
                .store()
                .record_proxy_recovery(&hold, state.node_id(), state.now())
                .await
            {
                tracing::error!(%error, hold = %hold.id.as_str(), "could not list a recovered call");
            }
            recovered += 1;
        }
        if count < RECOVERED_PER_BATCH_MAX {
            break;
        }
    }
    if recovered > 0 {
        metrics::proxy_calls_recovered(recovered);
    }
}

pub(super) async fn void(state: &AppState, call: &Call) {
    holds::give_back(state, &call.scopes, call.ask);
    match holds::void(state, &call.hold).await {
        Ok(Ok(_)) => {}
        Ok(Err(rejection)) => {
            tracing::error!(code = rejection.code(), hold = %call.hold.id.as_str(), "proxy void refused")
        }
        Err(error) => {
            tracing::error!(?error.code, hold = %call.hold.id.as_str(), "proxy void failed; the hold expires at its TTL")
        }
    }
}

/// Holds the call's worst case (after its rate limits), for the whole call and its settlement.
#[allow(clippy::too_many_arguments)]
pub(super) async fn hold_call(
    state: &AppState,
    endpoint: Endpoint,
    caller: &Caller,
    org: Org,
    facts: &formats::RequestFacts,
    price: PriceVersion,
    amount: creditgate_domain::Amount,
    terms: &HoldTerms,
) -> Result<Call, ApiError> {
    let ask = rate_ask(facts, &price);
    let new = NewHold {
        id: HoldId::new(state.new_id("hold")),
        amount,
        terms,
        ttl_ms: hold_ttl_ms(state.config().proxy_call_ms_max),
        ask,
    };
    let names = names(endpoint.style());
    let placed = holds::place(state, caller, &org, new, names, state.now()).await?;
    Ok(Call {
        endpoint,
        org,
        hold: placed.hold,
        price,
        scopes: placed.scopes,
        ask,
        rate_headers: placed.rate_headers,
    })
}

/// A proxied call's hold TTL: its whole-call limit and a minute for the settlement, so the
/// hold never expires while its call runs.
pub(super) fn hold_ttl_ms(proxy_call_ms_max: u64) -> i64 {
    i64::try_from(proxy_call_ms_max.saturating_add(HOLD_SETTLE_SLACK_MS))
        .unwrap_or(HOLD_TTL_MS_MAX)
        .clamp(1, HOLD_TTL_MS_MAX)
}

/// What a proxied call's hold outlives its call by: time to settle.
const HOLD_SETTLE_SLACK_MS: u64 = 60_000;
