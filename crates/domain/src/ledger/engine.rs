//! The ledger rules. [`apply`] is the only function that changes balances.
//!
//! Each operation is checked completely before anything changes (TigerBeetle's shape): one
//! early return per rule, in the precedence order documented on [`Rejection`], then a
//! straight-line execution that cannot fail.

use super::checks::*;
use super::execute::*;
use super::operation::*;
use super::result::{Outcome, Receipt, Rejection, Status};
use super::state::LedgerState;
use super::types::*;
use crate::money::Amount;
use crate::time::Timestamp;

/// Applies one operation to `state` at time `now`. The only place balances change.
pub fn apply(state: &mut LedgerState, operation: &Operation, now: Timestamp) -> Outcome {
    match operation {
        Operation::Transfer(request) => transfer(state, request, now),
        Operation::RecordUsage(request) => record_usage(state, request, now),
        Operation::PlaceHold(request) => place_hold(state, request, now),
        Operation::SettleHold(request) => settle_hold(state, request, now),
        Operation::VoidHold(request) => {
            close_hold(state, &request.hold_id, &request.id, now, Close::Void)
        }
        Operation::ExpireHold(request) => close_hold(
            state,
            &request.hold_id,
            &request.operation_id(),
            now,
            Close::Expire,
        ),
        Operation::ExpireGrant(request) => expire_grant(state, request, now),
        Operation::Refund(request) => refund(state, request, now),
    }
}

/// A posting outside holds (a refund, recorded usage), as its first checks see it.
struct Posting<'a> {
    id: &'a TransferId,
    kind: TransferKind,
    debit: &'a AccountId,
    credit: &'a AccountId,
    amount: Amount,
    reference: &'a str,
}

/// The checks a posting starts with: its fields, then its id. `Some(answer)` when the id was
/// used before (the same posting: `exists`; anything else: `ExistsWithDifferentFields`).
fn first_checks(state: &LedgerState, p: &Posting<'_>) -> Result<Option<Outcome>, Rejection> {
    check_id(p.id.as_str())?;
    check_reference(p.reference)?;
    check_positive(p.amount)?;
    check_different(p.debit, p.credit)?;
    if let Some(existing) = state.transfer(p.id) {
        let same = existing.kind == p.kind
            && existing.hold_id.is_none()
            && existing.debit_account_id == *p.debit
            && existing.credit_account_id == *p.credit
            && existing.amount == p.amount
            && existing.reference == p.reference;
        return Ok(Some(exists(existing, same)));
    }
    if state.closed_hold(p.id).is_some() {
        return Err(Rejection::ExistsWithDifferentFields);
    }
    Ok(None)
}

fn refund(state: &mut LedgerState, request: &RefundRequest, now: Timestamp) -> Outcome {
    let posting = Posting {
        id: &request.id,
        kind: TransferKind::Refund,
        debit: &request.debit_account_id,
        credit: &request.credit_account_id,
        amount: request.amount,
        reference: &request.reference,
    };
    if let Some(answer) = first_checks(state, &posting)? {
        return answer;
    }
    let (debit, credit) =
        find_accounts(state, &request.debit_account_id, &request.credit_account_id)?;
    if debit.kind != AccountKind::OrgCredit {
        return Err(Rejection::GrantNotFound);
    }
    check_credit(credit, request.amount)?;
    let unspent = state
        .grant(&request.debit_account_id, &request.grant_id)
        .map_or(Amount::ZERO, Grant::spendable);
    if request.amount > unspent {
        return Err(Rejection::RefundExceedsUnspent);
    }
    check_debit(debit, request.amount, Amount::ZERO, None)?;

    consume_grant(
        state,
        &request.debit_account_id,
        &request.grant_id,
        request.amount,
    );
    let movement = Movement {
        id: &request.id,
        debit: &request.debit_account_id,
        credit: &request.credit_account_id,
        amount: request.amount,
        kind: TransferKind::Refund,
        reference: &request.reference,
        hold_id: None,
    };
    // The grant was consumed above; nothing more is taken in consumption order.
    let transfer = post(
        state,
        movement,
        Amount::ZERO,
        GrantTerms::default(),
        Amount::ZERO,
        now,
    );
    Ok(created(Some(transfer), None))
}

fn transfer(state: &mut LedgerState, request: &TransferRequest, now: Timestamp) -> Outcome {
    check_id(request.id.as_str())?;
    check_reference(&request.reference)?;
    check_positive(request.amount)?;
    check_different(&request.debit_account_id, &request.credit_account_id)?;
    if let Some(terms) = &request.grant {
        check_priority(terms.priority)?;
    }
    if request.kind == TransferKind::Expiry {
        return Err(Rejection::KindNotAllowed);
    }
    if let Some(existing) = state.transfer(&request.id) {
        // The store loads the grant a repeated transfer opened, so its terms can be compared.
        let terms = existing
            .grant_id
            .as_ref()
            .and_then(|g| state.grant(&existing.credit_account_id, g));
        let same_terms = terms.is_none_or(|grant| grant.terms == request.grant.unwrap_or_default());
        return exists(existing, same_transfer(existing, request) && same_terms);
    }
    if state.closed_hold(&request.id).is_some() {
        return Err(Rejection::ExistsWithDifferentFields);
    }
    let (debit, credit) =
        find_accounts(state, &request.debit_account_id, &request.credit_account_id)?;
    if request.grant.is_some() && credit.kind != AccountKind::OrgCredit {
        return Err(Rejection::GrantTermsNotAllowed);
    }
    check_credit(credit, request.amount)?;
    check_debit(debit, request.amount, Amount::ZERO, None)?;

    let terms = request.grant.unwrap_or_default();
    let movement = Movement {
        id: &request.id,
        debit: &request.debit_account_id,
        credit: &request.credit_account_id,
        amount: request.amount,
        kind: request.kind,
        reference: &request.reference,
        hold_id: None,
    };
    let transfer = post(state, movement, Amount::ZERO, terms, request.amount, now);
    Ok(created(Some(transfer), None))
}

fn record_usage(state: &mut LedgerState, request: &UsageRequest, now: Timestamp) -> Outcome {
    let posting = Posting {
        id: &request.id,
        kind: TransferKind::Usage,
        debit: &request.debit_account_id,
        credit: &request.credit_account_id,
        amount: request.amount,
        reference: &request.reference,
    };
    if let Some(answer) = first_checks(state, &posting)? {
        return answer;
    }
    let (debit, credit) =
        find_accounts(state, &request.debit_account_id, &request.credit_account_id)?;
    check_credit(credit, request.amount)?;
    let overspend = check_debit(debit, request.amount, Amount::ZERO, Some(request.amount))?;

    let movement = Movement {
        id: &request.id,
        debit: &request.debit_account_id,
        credit: &request.credit_account_id,
        amount: request.amount,
        kind: TransferKind::Usage,
        reference: &request.reference,
        hold_id: None,
    };
    let transfer = post(
        state,
        movement,
        overspend,
        GrantTerms::default(),
        request.amount,
        now,
    );
    Ok(created(Some(transfer), None))
}

fn place_hold(state: &mut LedgerState, request: &PlaceHoldRequest, now: Timestamp) -> Outcome {
    check_id(request.id.as_str())?;
    check_reference(&request.reference)?;
    check_positive(request.amount)?;
    check_different(&request.debit_account_id, &request.credit_account_id)?;
    if request.ttl_ms <= 0 {
        return Err(Rejection::TtlMustBePositive);
    }
    if request.ttl_ms > HOLD_TTL_MS_MAX {
        return Err(Rejection::TtlExceedsMax);
    }
    if let Some(existing) = state.hold(&request.id) {
        let same = existing.debit_account_id == request.debit_account_id
            && existing.credit_account_id == request.credit_account_id
            && existing.amount == request.amount
            && existing.reference == request.reference
            && existing.ttl_ms == request.ttl_ms;
        if !same {
            return Err(Rejection::ExistsWithDifferentFields);
        }
        return Ok(Receipt {
            status: Status::Exists,
            transfer: None,
            hold: Some(existing.clone()),
        });
    }
    let (debit, credit) =
        find_accounts(state, &request.debit_account_id, &request.credit_account_id)?;
    // The credit side moves only at settlement, but it must be able to take the full hold then.
    credit
        .posted
        .checked_add(request.amount)
        .ok_or(Rejection::AmountOverflow)?;
    let reserved_after = debit
        .reserved
        .checked_add(request.amount)
        .ok_or(Rejection::AmountOverflow)?;
    let available_after = debit
        .posted
        .checked_sub(reserved_after)
        .ok_or(Rejection::AmountOverflow)?;
    if debit.floor.is_some_and(|floor| available_after < floor) {
        return Err(Rejection::InsufficientFunds);
    }

    let (allocations, unbacked) = allocate(state, &request.debit_account_id, request.amount);
    state.account_mut(&request.debit_account_id).reserved = reserved_after;
    let hold = Hold {
        id: request.id.clone(),
        debit_account_id: request.debit_account_id.clone(),
        credit_account_id: request.credit_account_id.clone(),
        amount: request.amount,
        reference: request.reference.clone(),
        ttl_ms: request.ttl_ms,
        expires_at: now.plus_ms(request.ttl_ms),
        state: HoldState::Open,
        allocations,
        unbacked,
        closed_by: None,
        settled_amount: None,
        created_at: now,
        closed_at: None,
    };
    state.create_hold(hold.clone());
    Ok(created(None, Some(hold)))
}

fn settle_hold(state: &mut LedgerState, request: &SettleHoldRequest, now: Timestamp) -> Outcome {
    check_id(request.id.as_str())?;
    if request.amount.is_negative() {
        return Err(Rejection::AmountMustNotBeNegative);
    }
    check_closer_unused(state, &request.id, &request.hold_id)?;
    let hold = state
        .hold(&request.hold_id)
        .ok_or(Rejection::HoldNotFound)?;
    if hold.closed_by.as_ref() == Some(&request.id) {
        let same = hold.state == HoldState::Settled && hold.settled_amount == Some(request.amount);
        if !same {
            return Err(Rejection::ExistsWithDifferentFields);
        }
        let transfer = state.transfer(&request.id).cloned();
        return Ok(Receipt {
            status: Status::Exists,
            transfer,
            hold: Some(hold.clone()),
        });
    }
    if hold.state != HoldState::Open {
        return Err(Rejection::HoldAlreadyClosed);
    }
    if now >= hold.expires_at {
        return Err(Rejection::HoldExpired);
    }
    let (debit, credit) = find_accounts(state, &hold.debit_account_id, &hold.credit_account_id)?;
    check_credit(credit, request.amount)?;
    // Charging more than was held is usage that already happened: recorded, maybe as overspend.
    let excess = request
        .amount
        .checked_sub(hold.amount)
        .ok_or(Rejection::AmountOverflow)?
        .max_zero();
    let covered = hold
        .amount
        .checked_sub(hold.unbacked)
        .expect("unbacked ≤ hold");
    let overspend = check_debit_covered(debit, request.amount, hold.amount, covered, Some(excess))?;
    check_expiring_on_close(state, hold)?;

    let hold = hold.clone();
    let (rest, leftover) = release(state, &hold, request.amount);
    let transfer = request.amount.is_positive().then(|| {
        let movement = Movement {
            id: &request.id,
            debit: &hold.debit_account_id,
            credit: &hold.credit_account_id,
            amount: request.amount,
            kind: TransferKind::Usage,
            reference: &hold.reference,
            hold_id: Some(&hold.id),
        };
        post(state, movement, overspend, GrantTerms::default(), rest, now)
    });
    expire_released(state, &hold, &request.id, leftover, now);
    let closed = finish_hold(
        state,
        &hold.id,
        &request.id,
        HoldState::Settled,
        Some(request.amount),
        now,
    );
    Ok(created(transfer, Some(closed)))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Close {
    Void,
    Expire,
}

fn close_hold(
    state: &mut LedgerState,
    hold_id: &HoldId,
    id: &TransferId,
    now: Timestamp,
    close: Close,
) -> Outcome {
    match close {
        Close::Void => check_id(id.as_str())?,
        // An expiry's id is derived from the hold's: only the hold id's own length counts.
        Close::Expire => check_id(hold_id.as_str())?,
    }
    let target = match close {
        Close::Void => HoldState::Voided,
        Close::Expire => HoldState::Expired,
    };
    check_closer_unused(state, id, hold_id)?;
    let hold = state.hold(hold_id).ok_or(Rejection::HoldNotFound)?;
    if hold.closed_by.as_ref() == Some(id) {
        if hold.state != target {
            return Err(Rejection::ExistsWithDifferentFields);
        }
        return Ok(Receipt {
            status: Status::Exists,
            transfer: None,
            hold: Some(hold.clone()),
        });
    }
    if hold.state != HoldState::Open {
        return Err(Rejection::HoldAlreadyClosed);
    }
    match close {
        Close::Void if now >= hold.expires_at => return Err(Rejection::HoldExpired),
        Close::Expire if now < hold.expires_at => return Err(Rejection::HoldNotExpired),
        _ => {}
    }
    find_accounts(state, &hold.debit_account_id, &hold.credit_account_id)?;
    check_expiring_on_close(state, hold)?;

    let hold = hold.clone();
    let (_, leftover) = release(state, &hold, Amount::ZERO);
    expire_released(state, &hold, id, leftover, now);
    let closed = finish_hold(state, &hold.id, id, target, None, now);
    Ok(created(None, Some(closed)))
}

fn expire_grant(state: &mut LedgerState, request: &ExpireGrantRequest, now: Timestamp) -> Outcome {
    // The id is derived from the grant's, so only the grant id's own length is checked.
    check_id(request.grant_id.as_str())?;
    let id = request.operation_id();
    if let Some(existing) = state.transfer(&id) {
        let same = existing.kind == TransferKind::Expiry
            && existing.debit_account_id == request.account_id
            && existing.grant_id.as_ref() == Some(&request.grant_id);
        return exists(existing, same);
    }
    // Once a grant has expired, its expiry id is taken: asking again for another account is a
    // different request, whether or not the expiry moved any credits.
    let elsewhere = state
        .any_grant(&request.grant_id)
        .is_some_and(|g| g.account_id != request.account_id && g.expired_at.is_some());
    if elsewhere || state.closed_hold(&id).is_some() {
        return Err(Rejection::ExistsWithDifferentFields);
    }
    let account = state
        .account(&request.account_id)
        .ok_or(Rejection::AccountNotFound)?;
    let expired_id = AccountKind::ExpiredCredits
        .operator_account_id()
        .expect("operator account");
    let expired_account = state
        .account(&expired_id)
        .ok_or(Rejection::CreditAccountNotFound)?;
    let grant = state
        .grant(&request.account_id, &request.grant_id)
        .ok_or(Rejection::GrantNotFound)?;
    if grant.expired_at.is_some() {
        // Expired earlier with nothing left to move: the expiry happened, once.
        return Ok(Receipt {
            status: Status::Exists,
            transfer: None,
            hold: None,
        });
    }
    if grant
        .terms
        .expires_at
        .is_none_or(|expires_at| now < expires_at)
    {
        return Err(Rejection::GrantNotExpired);
    }
    let expiring = grant.spendable();
    check_credit(expired_account, expiring)?;
    // Expiry moves credits nobody reserved, so it takes the account below its floor only
    // when it already overspent; that part is recorded like usage overspend.
    let shortfall = check_debit(account, expiring, Amount::ZERO, Some(expiring))?;

    let grant = state.grant_mut(&request.account_id, &request.grant_id);
    grant.expired_at = Some(now);
    grant.expired = grant
        .expired
        .checked_add(expiring)
        .expect("expired stays within amount");
    if expiring.is_zero() {
        return Ok(created(None, None));
    }
    let transfer = post_expiry(
        state,
        &request.account_id,
        &request.grant_id,
        id,
        expiring,
        shortfall,
        now,
    );
    Ok(created(Some(transfer), None))
}
