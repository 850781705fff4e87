//! The keys of the rows a batch loads, collected from its operations before anything is
//! read (moved out of `batch.rs`, unchanged but for the refunds' keys).

use std::collections::BTreeSet;

use creditgate_domain::ledger::{
    is_storable_id, AccountId, AccountKind, GrantId, HoldId, Operation, TransferId,
};

/// The rows one batch needs, each set in id order (the lock order).
#[derive(Debug, Default)]
pub(crate) struct BatchKeys {
    /// Accounts the operations debit or credit.
    pub accounts: BTreeSet<AccountId>,
    /// Holds to close, and holds to place (for idempotency).
    pub holds: BTreeSet<HoldId>,
    /// Ids settlements, voids and expiries would record transfers under (for idempotency).
    pub transfers: BTreeSet<TransferId>,
    /// Ids of plain transfers and usage records (for idempotency). Unlike the ids above, no
    /// loaded row points at them, so a backend may leave them to the transfers' unique index:
    /// an INSERT refused there means a repeat, and the batch is decided again with them
    /// loaded.
    pub new_transfers: BTreeSet<TransferId>,
    /// Grants named by grant expiries (loaded even when nothing is left in them).
    pub grants: BTreeSet<GrantId>,
    /// Ids that may already have closed a hold (voids and zero settlements record no transfer),
    /// so that no other operation reuses them.
    pub closers: BTreeSet<TransferId>,
}

impl BatchKeys {
    /// Collects the keys of every operation. Accounts of holds that are only named by id are
    /// added by the backend once it has loaded those holds.
    pub fn of(operations: &[&Operation]) -> BatchKeys {
        let mut keys = BatchKeys::default();
        let expired = AccountKind::ExpiredCredits
            .operator_account_id()
            .expect("operator account");
        for operation in operations {
            match operation {
                Operation::Transfer(request) => {
                    keys.accounts.insert(request.debit_account_id.clone());
                    keys.accounts.insert(request.credit_account_id.clone());
                    keys.new_transfers.insert(request.id.clone());
                    keys.closers.insert(request.id.clone());
                }
                Operation::RecordUsage(request) => {
                    keys.accounts.insert(request.debit_account_id.clone());
                    keys.accounts.insert(request.credit_account_id.clone());
                    keys.new_transfers.insert(request.id.clone());
                    keys.closers.insert(request.id.clone());
                }
                Operation::PlaceHold(request) => {
                    keys.accounts.insert(request.debit_account_id.clone());
                    keys.accounts.insert(request.credit_account_id.clone());
                    keys.holds.insert(request.id.clone());
                }
                Operation::SettleHold(request) => {
                    keys.holds.insert(request.hold_id.clone());
                    keys.transfers.insert(request.id.clone());
                    keys.closers.insert(request.id.clone());
                    keys.accounts.insert(expired.clone());
                }
                Operation::VoidHold(request) => {
                    keys.holds.insert(request.hold_id.clone());
                    keys.transfers.insert(request.id.clone());
                    keys.closers.insert(request.id.clone());
                    keys.accounts.insert(expired.clone());
                }
                Operation::ExpireHold(request) => {
                    keys.holds.insert(request.hold_id.clone());
                    keys.transfers.insert(request.operation_id());
                    keys.accounts.insert(expired.clone());
                }
                Operation::Refund(request) => {
                    keys.accounts.insert(request.debit_account_id.clone());
                    keys.accounts.insert(request.credit_account_id.clone());
                    keys.grants.insert(request.grant_id.clone());
                    keys.new_transfers.insert(request.id.clone());
                    keys.closers.insert(request.id.clone());
                }
                Operation::ExpireGrant(request) => {
                    keys.accounts.insert(request.account_id.clone());
                    keys.accounts.insert(expired.clone());
                    keys.grants.insert(request.grant_id.clone());
                    keys.transfers.insert(request.operation_id());
                }
            }
        }
        keys.retain_loadable();
        keys
    }

    /// Every transfer id the batch uses.
    pub fn all_transfers(&self) -> impl Iterator<Item = &TransferId> {
        self.transfers.iter().chain(&self.new_transfers)
    }

    /// Drops keys no row can have (the engine refuses their operations anyway), so that no
    /// caller's malformed id (a NUL byte, say) reaches a query and fails its batch-mates.
    fn retain_loadable(&mut self) {
        self.accounts.retain(|id| is_storable_id(id.as_str()));
        self.holds.retain(|id| is_storable_id(id.as_str()));
        self.transfers.retain(|id| is_storable_id(id.as_str()));
        self.new_transfers.retain(|id| is_storable_id(id.as_str()));
        self.grants.retain(|id| is_storable_id(id.as_str()));
        self.closers.retain(|id| is_storable_id(id.as_str()));
    }
}
