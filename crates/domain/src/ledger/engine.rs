//! The ledger rules. [`apply`] is the only function that changes balances.
//!
//! Each operation is checked completely before anything changes (TigerBeetle's shape): one
//! early return per rule, in the precedence order documented on [`Rejection`], then a
//! straight-line execution that cannot fail.

use super::state::LedgerState;
use super::types::*;
use crate::money::Amount;
use crate::time::Timestamp;

/// Whether an accepted operation was new or a repeat of one already recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Created,
    /// The same id with the same fields was recorded before; nothing changed this time.
    Exists,
}

/// The answer to an accepted operation: what it recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    pub status: Status,
    /// The main transfer made (none for placing, voiding or expiring a hold).
    pub transfer: Option<Transfer>,
    /// The hold placed or closed.
    pub hold: Option<Hold>,
}

/// Why an operation was refused. Variants are listed in precedence order: when several
/// apply, the first one listed is reported. A refused operation changes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Rejection {
    #[error("id must not be empty")]
    IdMustNotBeEmpty,
    #[error("id is longer than {ID_LEN_MAX} bytes")]
    IdTooLong,
    #[error("id may hold only printable ASCII characters other than space and ':'")]
    IdInvalidCharacter,
    #[error("reference is longer than {REFERENCE_LEN_MAX} bytes")]
    ReferenceTooLong,
    #[error("reference may not hold control characters")]
    ReferenceInvalidCharacter,
    #[error("amount must be positive")]
    AmountMustBePositive,
    #[error("amount must not be negative")]
    AmountMustNotBeNegative,
    #[error("debit and credit accounts must be different")]
    AccountsMustBeDifferent,
    #[error("ttl must be positive")]
    TtlMustBePositive,
    #[error("ttl exceeds {HOLD_TTL_MS_MAX} ms")]
    TtlExceedsMax,
    #[error("grant priority exceeds {GRANT_PRIORITY_MAX}")]
    PriorityExceedsMax,
    #[error("transfers of this kind are made only by the ledger")]
    KindNotAllowed,
    #[error("the id was used before with different fields")]
    ExistsWithDifferentFields,
    #[error("account not found")]
    AccountNotFound,
    #[error("debit account not found")]
    DebitAccountNotFound,
    #[error("credit account not found")]
    CreditAccountNotFound,
    #[error("grant terms apply only to credits into an org account")]
    GrantTermsNotAllowed,
    #[error("hold not found")]
    HoldNotFound,
    #[error("hold is already settled, voided or expired")]
    HoldAlreadyClosed,
    #[error("hold has expired")]
    HoldExpired,
    #[error("hold has not expired yet")]
    HoldNotExpired,
    #[error("grant not found")]
    GrantNotFound,
    #[error("grant has no expiry or it is still in the future")]
    GrantNotExpired,
    #[error("amount would overflow a balance")]
    AmountOverflow,
    #[error("insufficient funds")]
    InsufficientFunds,
}

impl Rejection {
    /// The stable snake_case code of this result.
    pub fn code(self) -> &'static str {
        match self {
            Rejection::IdMustNotBeEmpty => "id_must_not_be_empty",
            Rejection::IdTooLong => "id_too_long",
            Rejection::IdInvalidCharacter => "id_invalid_character",
            Rejection::ReferenceTooLong => "reference_too_long",
            Rejection::ReferenceInvalidCharacter => "reference_invalid_character",
            Rejection::AmountMustBePositive => "amount_must_be_positive",
            Rejection::AmountMustNotBeNegative => "amount_must_not_be_negative",
            Rejection::AccountsMustBeDifferent => "accounts_must_be_different",
            Rejection::TtlMustBePositive => "ttl_must_be_positive",
            Rejection::TtlExceedsMax => "ttl_exceeds_max",
            Rejection::PriorityExceedsMax => "priority_exceeds_max",
            Rejection::KindNotAllowed => "kind_not_allowed",
            Rejection::ExistsWithDifferentFields => "exists_with_different_fields",
            Rejection::DebitAccountNotFound => "debit_account_not_found",
            Rejection::CreditAccountNotFound => "credit_account_not_found",
            Rejection::AccountNotFound => "account_not_found",
            Rejection::GrantTermsNotAllowed => "grant_terms_not_allowed",
            Rejection::HoldNotFound => "hold_not_found",
            Rejection::HoldAlreadyClosed => "hold_already_closed",
            Rejection::HoldExpired => "hold_expired",
            Rejection::HoldNotExpired => "hold_not_expired",
            Rejection::GrantNotFound => "grant_not_found",
            Rejection::GrantNotExpired => "grant_not_expired",
            Rejection::AmountOverflow => "amount_overflow",
            Rejection::InsufficientFunds => "insufficient_funds",
        }
    }
}

/// The result of one operation.
pub type Outcome = Result<Receipt, Rejection>;

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
    }
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
    check_id(request.id.as_str())?;
    check_reference(&request.reference)?;
    check_positive(request.amount)?;
    check_different(&request.debit_account_id, &request.credit_account_id)?;
    if let Some(existing) = state.transfer(&request.id) {
        let same = existing.kind == TransferKind::Usage
            && existing.hold_id.is_none()
            && existing.debit_account_id == request.debit_account_id
            && existing.credit_account_id == request.credit_account_id
            && existing.amount == request.amount
            && existing.reference == request.reference;
        return exists(existing, same);
    }
    if state.closed_hold(&request.id).is_some() {
        return Err(Rejection::ExistsWithDifferentFields);
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

    let grant = state
        .grants_mut(&request.account_id)
        .iter_mut()
        .find(|grant| grant.id == request.grant_id)
        .expect("grant found above");
    grant.expired_at = Some(now);
    grant.expired = grant
        .expired
        .checked_add(expiring)
        .expect("expired stays within amount");
    state.touch_grant(&request.account_id, &request.grant_id);
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

// --- checks -------------------------------------------------------------------------------

fn check_id(id: &str) -> Result<(), Rejection> {
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

fn check_reference(reference: &str) -> Result<(), Rejection> {
    if reference.len() > REFERENCE_LEN_MAX {
        return Err(Rejection::ReferenceTooLong);
    }
    if reference.chars().any(char::is_control) {
        return Err(Rejection::ReferenceInvalidCharacter);
    }
    Ok(())
}

fn check_positive(amount: Amount) -> Result<(), Rejection> {
    if !amount.is_positive() {
        return Err(Rejection::AmountMustBePositive);
    }
    Ok(())
}

fn check_different(debit: &AccountId, credit: &AccountId) -> Result<(), Rejection> {
    if debit == credit {
        return Err(Rejection::AccountsMustBeDifferent);
    }
    Ok(())
}

fn check_priority(priority: u32) -> Result<(), Rejection> {
    if priority > GRANT_PRIORITY_MAX {
        return Err(Rejection::PriorityExceedsMax);
    }
    Ok(())
}

/// A closing operation's id must not already name a transfer or the closing of another hold.
fn check_closer_unused(
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

fn find_accounts<'a>(
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

fn exists(existing: &Transfer, same: bool) -> Outcome {
    if !same {
        return Err(Rejection::ExistsWithDifferentFields);
    }
    Ok(Receipt {
        status: Status::Exists,
        transfer: Some(existing.clone()),
        hold: None,
    })
}

fn same_transfer(existing: &Transfer, request: &TransferRequest) -> bool {
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
fn check_debit(
    debit: &Account,
    amount: Amount,
    released: Amount,
    forced: Option<Amount>,
) -> Result<Amount, Rejection> {
    check_debit_covered(debit, amount, released, Amount::ZERO, forced)
}

/// [`check_debit`] where `covered` of the amount is already reserved on grants (a settling
/// hold's allocations), so it cannot become unbacked.
fn check_debit_covered(
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
fn check_credit(credit: &Account, amount: Amount) -> Result<(), Rejection> {
    credit
        .posted
        .checked_add(amount)
        .ok_or(Rejection::AmountOverflow)?;
    Ok(())
}

/// Closing a hold expires whatever it releases on grants that expired meanwhile: at most its
/// allocations on those grants, which the expired-credits account must be able to take.
fn check_expiring_on_close(state: &LedgerState, hold: &Hold) -> Result<(), Rejection> {
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

fn created(transfer: Option<Transfer>, hold: Option<Hold>) -> Receipt {
    Receipt {
        status: Status::Created,
        transfer,
        hold,
    }
}

// --- execution (cannot fail: everything was checked) ---------------------------------------

struct Movement<'a> {
    id: &'a TransferId,
    debit: &'a AccountId,
    credit: &'a AccountId,
    amount: Amount,
    kind: TransferKind,
    reference: &'a str,
    hold_id: Option<&'a HoldId>,
}

/// Posts a transfer: moves balances, consumes `consumed` of the debit org's grants (less than
/// the amount when a hold's allocations already covered part), opens a grant on a credited
/// org, and records the transfer.
fn post(
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
fn consume(state: &mut LedgerState, account_id: &AccountId, amount: Amount) {
    let mut left = amount;
    let mut touched = Vec::new();
    for grant in state.grants_mut(account_id) {
        if left.is_zero() {
            break;
        }
        let take = grant.spendable().min(left);
        if take.is_positive() {
            grant.consumed = grant.consumed.checked_add(take).expect("within amount");
            left = left.checked_sub(take).expect("take ≤ left");
            touched.push(grant.id.clone());
        }
    }
    for grant_id in touched {
        state.touch_grant(account_id, &grant_id);
    }
    if left.is_positive() {
        let account = state.account_mut(account_id);
        account.unbacked = account
            .unbacked
            .checked_add(left)
            .expect("bounded by debits");
    }
}

/// Reserves `amount` on the account's spendable grants in consumption order.
fn allocate(
    state: &mut LedgerState,
    account_id: &AccountId,
    amount: Amount,
) -> (Vec<Allocation>, Amount) {
    let mut left = amount;
    let mut allocations = Vec::new();
    for grant in state.grants_mut(account_id) {
        if left.is_zero() {
            break;
        }
        let take = grant.spendable().min(left);
        if take.is_positive() {
            grant.reserved = grant.reserved.checked_add(take).expect("within remaining");
            left = left.checked_sub(take).expect("take ≤ left");
            allocations.push(Allocation {
                grant_id: grant.id.clone(),
                amount: take,
            });
        }
    }
    for allocation in &allocations {
        state.touch_grant(account_id, &allocation.grant_id);
    }
    (allocations, left)
}

/// Opens a grant for credits flowing into an org; any unbacked overdraft is repaid first.
fn open_grant(
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
fn release(state: &mut LedgerState, hold: &Hold, used: Amount) -> (Amount, Vec<(GrantId, Amount)>) {
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
        let grant = state
            .grants_mut(account_id)
            .iter_mut()
            .find(|grant| grant.id == allocation.grant_id)
            .expect("a hold's grants stay loaded while it is open");
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
        state.touch_grant(account_id, &allocation.grant_id);
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
fn repay_unbacked(state: &mut LedgerState, account_id: &AccountId) {
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
fn expire_released(
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
fn post_expiry(
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

fn finish_hold(
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
