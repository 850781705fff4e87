//! The named results of ledger operations.

use super::types::*;

/// Whether an accepted operation was new or a repeat of one already recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// A new operation: it was recorded now.
    Created,
    /// The same id with the same fields was recorded before; nothing changed this time.
    Exists,
}

/// The answer to an accepted operation: what it recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// Whether the operation was recorded now or before.
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
    /// An id is the empty string.
    IdMustNotBeEmpty,
    #[error("id is longer than {ID_LEN_MAX} bytes")]
    /// An id is longer than [`ID_LEN_MAX`] bytes.
    IdTooLong,
    #[error("id may hold only printable ASCII characters other than space and ':'")]
    /// An id holds a space, a control or non-ASCII byte, or the reserved `:`.
    IdInvalidCharacter,
    #[error("reference is longer than {REFERENCE_LEN_MAX} bytes")]
    /// The reference is longer than [`REFERENCE_LEN_MAX`] bytes.
    ReferenceTooLong,
    #[error("reference may not hold control characters")]
    /// The reference holds a control character.
    ReferenceInvalidCharacter,
    #[error("amount must be positive")]
    /// The amount is zero or negative where only a positive one makes sense.
    AmountMustBePositive,
    #[error("amount must not be negative")]
    /// The amount is negative (a settlement may be zero).
    AmountMustNotBeNegative,
    #[error("debit and credit accounts must be different")]
    /// The debit and the credit account are the same.
    AccountsMustBeDifferent,
    #[error("ttl must be positive")]
    /// A hold's TTL is zero or negative.
    TtlMustBePositive,
    #[error("ttl exceeds {HOLD_TTL_MS_MAX} ms")]
    /// A hold's TTL is longer than [`HOLD_TTL_MS_MAX`].
    TtlExceedsMax,
    #[error("grant priority exceeds {GRANT_PRIORITY_MAX}")]
    /// A grant's priority is above [`GRANT_PRIORITY_MAX`].
    PriorityExceedsMax,
    #[error("transfers of this kind are made only by the ledger")]
    /// The transfer kind is one only the ledger makes (expiry).
    KindNotAllowed,
    #[error("the id was used before with different fields")]
    /// The id was recorded before for a different request.
    ExistsWithDifferentFields,
    #[error("account not found")]
    /// The account a grant expiry names does not exist.
    AccountNotFound,
    #[error("debit account not found")]
    /// The debit account does not exist.
    DebitAccountNotFound,
    #[error("credit account not found")]
    /// The credit account does not exist.
    CreditAccountNotFound,
    #[error("grant terms apply only to credits into an org account")]
    /// Grant terms were given for a transfer that does not credit an org account.
    GrantTermsNotAllowed,
    #[error("hold not found")]
    /// No hold has this id.
    HoldNotFound,
    #[error("hold is already settled, voided or expired")]
    /// The hold was already settled, voided or expired by another operation.
    HoldAlreadyClosed,
    #[error("hold has expired")]
    /// The hold's TTL has passed: it can no longer be settled or voided, only expired.
    HoldExpired,
    #[error("hold has not expired yet")]
    /// The hold's TTL has not passed yet, so it cannot be expired.
    HoldNotExpired,
    #[error("grant not found")]
    /// No grant of this account has this id.
    GrantNotFound,
    #[error("grant has no expiry or it is still in the future")]
    /// The grant has no expiry, or its expiry is still in the future.
    GrantNotExpired,
    #[error("amount would overflow a balance")]
    /// A balance would leave the `i64` range.
    AmountOverflow,
    #[error("the refund exceeds the unspent credits of the payment")]
    /// A refund asks for more than its grant can still spend (consumed, reserved by open
    /// holds, expired or not loaded because nothing is left).
    RefundExceedsUnspent,
    #[error("insufficient funds")]
    /// The debit would take the available balance below the floor.
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
            Rejection::RefundExceedsUnspent => "refund_exceeds_unspent",
            Rejection::InsufficientFunds => "insufficient_funds",
        }
    }
}

/// The result of one operation.
pub type Outcome = Result<Receipt, Rejection>;
