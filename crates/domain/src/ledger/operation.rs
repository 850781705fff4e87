//! The operations the ledger applies: one request type per kind (the others are in
//! `types.rs`), the enum of them all, and the ids derived for those the ledger records
//! under an id of its own.

use super::types::*;
use crate::money::Amount;

/// Give back credits a payment bought: move `amount` from the org account to the
/// operator's account, taken only from the unspent part of the payment's grant. Refused with
/// [`crate::ledger::Rejection::RefundExceedsUnspent`] if that grant cannot spend it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefundRequest {
    /// Client-chosen id of the refund transfer (idempotency key).
    pub id: TransferId,
    /// The org account the credits leave.
    pub debit_account_id: AccountId,
    /// The operator account the money goes back to (payments received).
    pub credit_account_id: AccountId,
    /// The grant the refunded credits are taken from (the payment's credit).
    pub grant_id: GrantId,
    /// How much to give back, in micro-units; positive.
    pub amount: Amount,
    /// Free text from the caller (at most [`REFERENCE_LEN_MAX`] bytes).
    pub reference: String,
}

/// Every balance-changing operation. All go through [`crate::ledger::apply`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Move money between two accounts.
    Transfer(TransferRequest),
    /// Record usage that already happened.
    RecordUsage(UsageRequest),
    /// Reserve credits for an in-flight request.
    PlaceHold(PlaceHoldRequest),
    /// Charge a hold and release the rest.
    SettleHold(SettleHoldRequest),
    /// Release a hold without charging.
    VoidHold(VoidHoldRequest),
    /// Close a hold whose TTL has passed (expiry worker only).
    ExpireHold(ExpireHoldRequest),
    /// Expire a due grant's remainder (expiry worker only).
    ExpireGrant(ExpireGrantRequest),
    /// Give back unspent credits of one grant (a refunded payment).
    Refund(RefundRequest),
}

impl ExpireHoldRequest {
    /// The id under which a hold's expiry is recorded: one per hold, so it happens once.
    pub fn operation_id(&self) -> TransferId {
        TransferId::new(format!("{}:expiry", self.hold_id))
    }
}

impl ExpireGrantRequest {
    /// The id of the expiry transfer of a grant: one per grant, so it happens once.
    pub fn operation_id(&self) -> TransferId {
        TransferId::new(format!("{}:expiry", self.grant_id))
    }
}
