//! The checks every operation runs before it changes anything, each answering a named
//! [`Rejection`], and the small constructors of its answers.

use super::result::{Outcome, Receipt, Rejection, Status};
use super::state::LedgerState;
use super::types::*;
use crate::money::Amount;

pub(super) fn check_id(id: &str) -> Result<(), Rejection> {
    if id.is_empty() {
        return Err(Rejection::IdMustNotBeEmpty);
    }
    if id.len() > ID_LEN_MAX {
        return Err(Rejection::IdTooLong);
    }
    if !is_valid_id_text(id) {
        return Err(Rejection::IdInvalidCharacter);
    }
    Ok(())
}

/// Whether `id` is made of the characters a client id may use: printable ASCII other than
/// space (ids end up in logs, URLs and stored lists) and other than `:`, which only the ids
/// the ledger derives itself carry (`hold_1:expiry`), so a client id never collides with one.
pub fn is_valid_id_text(id: &str) -> bool {
    id.bytes()
        .all(|b| b.is_ascii_graphic() && b != ID_DERIVED_SEPARATOR)
}

/// Whether some stored ledger row could have `id`: a client id or one the ledger derives
/// from it (`hold_1:expiry`), so printable ASCII, `:` included, of at most twice
/// [`ID_LEN_MAX`]. An id failing this is never looked up.
pub fn is_storable_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 2 * ID_LEN_MAX && id.bytes().all(|b| b.is_ascii_graphic())
}

pub(super) fn check_reference(reference: &str) -> Result<(), Rejection> {
    if reference.len() > REFERENCE_LEN_MAX {
        return Err(Rejection::ReferenceTooLong);
    }
    if reference.chars().any(char::is_control) {
        return Err(Rejection::ReferenceInvalidCharacter);
    }
    Ok(())
}

pub(super) fn check_positive(amount: Amount) -> Result<(), Rejection> {
    if !amount.is_positive() {
        return Err(Rejection::AmountMustBePositive);
    }
    Ok(())
}

pub(super) fn check_different(debit: &AccountId, credit: &AccountId) -> Result<(), Rejection> {
    if debit == credit {
        return Err(Rejection::AccountsMustBeDifferent);
    }
    Ok(())
}

pub(super) fn check_priority(priority: u32) -> Result<(), Rejection> {
    if priority > GRANT_PRIORITY_MAX {
        return Err(Rejection::PriorityExceedsMax);
    }
    Ok(())
}

/// A closing operation's id must not already name a transfer or the closing of another hold.
pub(super) fn check_closer_unused(
    state: &LedgerState,
    id: &TransferId,
    hold_id: &HoldId,
) -> Result<(), Rejection> {
    let transfer_elsewhere = state
        .transfer(id)
        .is_some_and(|t| t.hold_id.as_ref() != Some(hold_id));
    let closed_elsewhere = state
        .closed_hold(id)
        .is_some_and(|closed| closed != hold_id);
    if transfer_elsewhere || closed_elsewhere {
        return Err(Rejection::ExistsWithDifferentFields);
    }
    Ok(())
}

pub(super) fn find_accounts<'a>(
    state: &'a LedgerState,
    debit: &AccountId,
    credit: &AccountId,
) -> Result<(&'a Account, &'a Account), Rejection> {
    let debit = state
        .account(debit)
        .ok_or(Rejection::DebitAccountNotFound)?;
    let credit = state
        .account(credit)
        .ok_or(Rejection::CreditAccountNotFound)?;
    Ok((debit, credit))
}

pub(super) fn exists(existing: &Transfer, same: bool) -> Outcome {
    if !same {
        return Err(Rejection::ExistsWithDifferentFields);
    }
    Ok(Receipt {
        status: Status::Exists,
        transfer: Some(existing.clone()),
        hold: None,
    })
}

pub(super) fn same_transfer(existing: &Transfer, request: &TransferRequest) -> bool {
    existing.hold_id.is_none()
        && existing.debit_account_id == request.debit_account_id
        && existing.credit_account_id == request.credit_account_id
        && existing.amount == request.amount
        && existing.kind == request.kind
        && existing.reference == request.reference
}

/// Checks that `amount` can leave `debit` while `released` of its reservation comes back,
/// with every resulting figure in range, and answers the part that lands below the floor.
/// A plain debit (`forced` is `None`) below the floor is refused; a forced one (usage that
/// already happened) is recorded, at most `forced` of it counting as overspend.
pub(super) fn check_debit(
    debit: &Account,
    amount: Amount,
    released: Amount,
    forced: Option<Amount>,
) -> Result<Amount, Rejection> {
    check_debit_covered(debit, amount, released, Amount::ZERO, forced)
}

/// [`check_debit`] where `covered` of the amount is already reserved on grants (a settling
/// hold's allocations), so it cannot become unbacked.
pub(super) fn check_debit_covered(
    debit: &Account,
    amount: Amount,
    released: Amount,
    covered: Amount,
    forced: Option<Amount>,
) -> Result<Amount, Rejection> {
    let wide = |amount: Amount| i128::from(amount.micros());
    let posted_after = wide(debit.posted) - wide(amount);
    let reserved_after = wide(debit.reserved) - wide(released);
    let available_after = posted_after - reserved_after;
    let fits = |value: i128| i64::try_from(value).is_ok();
    if ![posted_after, reserved_after, available_after]
        .into_iter()
        .all(fits)
    {
        return Err(Rejection::AmountOverflow);
    }
    let below = debit
        .floor
        .map_or(0, |floor| wide(floor) - available_after)
        .max(0);
    let overspend = match forced {
        None if below > 0 => return Err(Rejection::InsufficientFunds),
        None => 0,
        Some(forced) => below.min(wide(forced)),
    };
    // Consumption beyond the grants becomes unbacked: at most the whole amount.
    let unbacked_growth = (wide(amount) - wide(covered)).max(0);
    if !fits(wide(debit.unbacked) + unbacked_growth) || !fits(wide(debit.overspend) + overspend) {
        return Err(Rejection::AmountOverflow);
    }
    Ok(Amount::from_micros(
        i64::try_from(overspend).expect("overspend ≤ forced"),
    ))
}

/// Checks that `amount` can arrive in `credit` without overflowing it.
pub(super) fn check_credit(credit: &Account, amount: Amount) -> Result<(), Rejection> {
    credit
        .posted
        .checked_add(amount)
        .ok_or(Rejection::AmountOverflow)?;
    Ok(())
}

/// Closing a hold expires whatever it releases on grants that expired meanwhile: at most its
/// allocations on those grants, which the expired-credits account must be able to take.
pub(super) fn check_expiring_on_close(state: &LedgerState, hold: &Hold) -> Result<(), Rejection> {
    let mut expiring = Amount::ZERO;
    for allocation in &hold.allocations {
        let grant = state.grant(&hold.debit_account_id, &allocation.grant_id);
        if grant.is_some_and(|grant| grant.expired_at.is_some()) {
            expiring = expiring
                .checked_add(allocation.amount)
                .ok_or(Rejection::AmountOverflow)?;
        }
    }
    if expiring.is_zero() {
        return Ok(());
    }
    let expired_id = AccountKind::ExpiredCredits
        .operator_account_id()
        .expect("operator account");
    let expired_account = state
        .account(&expired_id)
        .ok_or(Rejection::CreditAccountNotFound)?;
    check_credit(expired_account, expiring)
}

pub(super) fn created(transfer: Option<Transfer>, hold: Option<Hold>) -> Receipt {
    Receipt {
        status: Status::Created,
        transfer,
        hold,
    }
}
