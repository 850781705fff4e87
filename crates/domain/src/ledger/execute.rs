//! Carrying out an operation that passed its checks: straight-line code that cannot fail
//! (every `expect` here states a fact the checks established).

use super::state::LedgerState;
use super::types::*;
use crate::money::Amount;
use crate::time::Timestamp;

pub(super) struct Movement<'a> {
    pub(super) id: &'a TransferId,
    pub(super) debit: &'a AccountId,
    pub(super) credit: &'a AccountId,
    pub(super) amount: Amount,
    pub(super) kind: TransferKind,
    pub(super) reference: &'a str,
    pub(super) hold_id: Option<&'a HoldId>,
}

/// Posts a transfer: moves balances, consumes `consumed` of the debit org's grants (less than
/// the amount when a hold's allocations already covered part), opens a grant on a credited
/// org, and records the transfer.
pub(super) fn post(
    state: &mut LedgerState,
    movement: Movement<'_>,
    overspend: Amount,
    terms: GrantTerms,
    consumed: Amount,
    now: Timestamp,
) -> Transfer {
    let amount = movement.amount;
    let debit_kind = state.account(movement.debit).expect("checked").kind;
    if debit_kind == AccountKind::OrgCredit {
        consume(state, movement.debit, consumed);
    }
    let debit = state.account_mut(movement.debit);
    debit.posted = debit.posted.checked_sub(amount).expect("checked");
    debit.overspend = debit
        .overspend
        .checked_add(overspend)
        .expect("overspend is bounded by debits");
    let debit_balance_after = debit.posted;

    let credit_kind = state.account(movement.credit).expect("checked").kind;
    let grant_id = (credit_kind == AccountKind::OrgCredit).then(|| {
        let grant_id = GrantId::new(movement.id.as_str());
        open_grant(state, movement.credit, grant_id.clone(), amount, terms, now);
        grant_id
    });
    let credit = state.account_mut(movement.credit);
    credit.posted = credit.posted.checked_add(amount).expect("checked");
    let transfer = Transfer {
        id: movement.id.clone(),
        debit_account_id: movement.debit.clone(),
        credit_account_id: movement.credit.clone(),
        amount,
        kind: movement.kind,
        reference: movement.reference.to_owned(),
        hold_id: movement.hold_id.cloned(),
        grant_id,
        debit_balance_after,
        credit_balance_after: credit.posted,
        overspend,
        created_at: now,
    };
    state.record_transfer(transfer.clone());
    transfer
}

/// Takes `amount` from the account's spendable grants in consumption order; what they cannot
/// cover becomes unbacked (an overdraft, repaid by the next credits).
pub(super) fn consume(state: &mut LedgerState, account_id: &AccountId, amount: Amount) {
    let (_, left) = take_spendable(state, account_id, amount, |grant, take| {
        grant.consumed = grant.consumed.checked_add(take).expect("within amount");
    });
    if left.is_positive() {
        let account = state.account_mut(account_id);
        account.unbacked = account
            .unbacked
            .checked_add(left)
            .expect("bounded by debits");
    }
}

/// Takes `amount` from one grant (a refund of the payment that opened it); the checks
/// established that it can spend that much.
pub(super) fn consume_grant(
    state: &mut LedgerState,
    account_id: &AccountId,
    grant_id: &GrantId,
    amount: Amount,
) {
    let grant = state.grant_mut(account_id, grant_id);
    grant.consumed = grant
        .consumed
        .checked_add(amount)
        .expect("within spendable");
}

/// Reserves `amount` on the account's spendable grants in consumption order; answers where
/// it sits and the part no grant could cover.
pub(super) fn allocate(
    state: &mut LedgerState,
    account_id: &AccountId,
    amount: Amount,
) -> (Vec<Allocation>, Amount) {
    take_spendable(state, account_id, amount, |grant, take| {
        grant.reserved = grant.reserved.checked_add(take).expect("within remaining");
    })
}

/// Walks the account's grants in consumption order, handing `take` each one's share of
/// `amount` (at most what it can spend), and marks the grants it changed. Answers the shares
/// and what is left over.
fn take_spendable(
    state: &mut LedgerState,
    account_id: &AccountId,
    amount: Amount,
    take: impl Fn(&mut Grant, Amount),
) -> (Vec<Allocation>, Amount) {
    let mut left = amount;
    let mut shares = Vec::new();
    for grant in state.grants_mut(account_id) {
        if left.is_zero() {
            break;
        }
        let share = grant.spendable().min(left);
        if share.is_positive() {
            take(grant, share);
            left = left.checked_sub(share).expect("share ≤ left");
            shares.push(Allocation {
                grant_id: grant.id.clone(),
                amount: share,
            });
        }
    }
    for share in &shares {
        state.touch_grant(account_id, &share.grant_id);
    }
    (shares, left)
}

/// Opens a grant for credits flowing into an org; any unbacked overdraft is repaid first.
pub(super) fn open_grant(
    state: &mut LedgerState,
    account_id: &AccountId,
    grant_id: GrantId,
    amount: Amount,
    terms: GrantTerms,
    now: Timestamp,
) {
    let account = state.account_mut(account_id);
    let repaid = account.unbacked.min(amount);
    account.unbacked = account
        .unbacked
        .checked_sub(repaid)
        .expect("repaid ≤ unbacked");
    state.create_grant(Grant {
        id: grant_id,
        account_id: account_id.clone(),
        terms,
        amount,
        consumed: repaid,
        reserved: Amount::ZERO,
        expired: Amount::ZERO,
        expired_at: None,
        created_at: now,
    });
}

/// Undoes a hold's reservation, consuming up to `used` of it from its grant allocations (in
/// order). Returns the part of `used` the allocations did not cover (to be consumed like any
/// debit) and the released parts that sat on grants which expired while the hold was open.
pub(super) fn release(
    state: &mut LedgerState,
    hold: &Hold,
    used: Amount,
) -> (Amount, Vec<(GrantId, Amount)>) {
    let account_id = &hold.debit_account_id;
    let mut unbacked = state.account(account_id).expect("checked").unbacked;
    let mut used_left = used;
    let mut leftover = Vec::new();
    for allocation in &hold.allocations {
        let use_here = used_left.min(allocation.amount);
        used_left = used_left.checked_sub(use_here).expect("use ≤ left");
        let mut released = allocation
            .amount
            .checked_sub(use_here)
            .expect("use ≤ allocation");
        // A hold's grants stay loaded while it is open (reserved > 0 keeps them open).
        let grant = state.grant_mut(account_id, &allocation.grant_id);
        grant.reserved = grant
            .reserved
            .checked_sub(allocation.amount)
            .expect("reserved ≥ allocation");
        grant.consumed = grant.consumed.checked_add(use_here).expect("within amount");
        if grant.expired_at.is_some() && released.is_positive() {
            // Usage that went unbacked while these credits were reserved is paid from them
            // before they expire: a unit of credit is either used or expired, never both.
            let repaid = unbacked.min(released);
            grant.consumed = grant.consumed.checked_add(repaid).expect("within amount");
            unbacked = unbacked.checked_sub(repaid).expect("repaid ≤ unbacked");
            released = released.checked_sub(repaid).expect("repaid ≤ released");
            grant.expired = grant.expired.checked_add(released).expect("within amount");
            if released.is_positive() {
                leftover.push((allocation.grant_id.clone(), released));
            }
        }
    }
    let account = state.account_mut(account_id);
    account.reserved = account
        .reserved
        .checked_sub(hold.amount)
        .expect("reserved ≥ hold");
    account.unbacked = unbacked;
    repay_unbacked(state, account_id);
    (used_left, leftover)
}

/// Pays an account's unbacked overdraft from its spendable grants, as far as they reach.
pub(super) fn repay_unbacked(state: &mut LedgerState, account_id: &AccountId) {
    let unbacked = state.account(account_id).expect("checked").unbacked;
    if unbacked.is_zero() {
        return;
    }
    let spendable = state
        .grants(account_id)
        .iter()
        .try_fold(Amount::ZERO, |sum, grant| {
            sum.checked_add(grant.spendable())
        })
        .expect("grants sum within the account's range");
    let repaid = unbacked.min(spendable);
    if repaid.is_positive() {
        consume(state, account_id, repaid);
        let account = state.account_mut(account_id);
        account.unbacked = account
            .unbacked
            .checked_sub(repaid)
            .expect("repaid ≤ unbacked");
    }
}

/// Expires what a closing hold released on grants that expired while it was open.
pub(super) fn expire_released(
    state: &mut LedgerState,
    hold: &Hold,
    closing_id: &TransferId,
    leftover: Vec<(GrantId, Amount)>,
    now: Timestamp,
) {
    for (grant_id, amount) in leftover {
        let id = TransferId::new(format!("{closing_id}:expiry:{grant_id}"));
        // Released and expired together: the available balance does not move, so no overspend.
        let shortfall = Amount::ZERO;
        post_expiry(
            state,
            &hold.debit_account_id,
            &grant_id,
            id,
            amount,
            shortfall,
            now,
        );
    }
}

/// Records an expiry transfer; the grant's `expired` was already increased by the caller.
pub(super) fn post_expiry(
    state: &mut LedgerState,
    account_id: &AccountId,
    grant_id: &GrantId,
    id: TransferId,
    amount: Amount,
    shortfall: Amount,
    now: Timestamp,
) -> Transfer {
    let expired_id = AccountKind::ExpiredCredits
        .operator_account_id()
        .expect("operator account");
    let account = state.account_mut(account_id);
    account.posted = account.posted.checked_sub(amount).expect("checked");
    account.overspend = account.overspend.checked_add(shortfall).expect("bounded");
    let debit_balance_after = account.posted;
    let expired = state.account_mut(&expired_id);
    expired.posted = expired.posted.checked_add(amount).expect("checked");
    let transfer = Transfer {
        id,
        debit_account_id: account_id.clone(),
        credit_account_id: expired_id,
        amount,
        kind: TransferKind::Expiry,
        reference: String::new(),
        hold_id: None,
        grant_id: Some(grant_id.clone()),
        debit_balance_after,
        credit_balance_after: expired.posted,
        overspend: shortfall,
        created_at: now,
    };
    state.record_transfer(transfer.clone());
    transfer
}

pub(super) fn finish_hold(
    state: &mut LedgerState,
    hold_id: &HoldId,
    closing_id: &TransferId,
    target: HoldState,
    settled_amount: Option<Amount>,
    now: Timestamp,
) -> Hold {
    state.insert_closer(closing_id.clone(), hold_id.clone());
    let hold = state.hold_mut(hold_id);
    hold.state = target;
    hold.closed_by = Some(closing_id.clone());
    hold.settled_amount = settled_amount;
    hold.closed_at = Some(now);
    hold.clone()
}
