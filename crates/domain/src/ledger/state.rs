//! The slice of ledger state an operation (or a batch of them) works on, and the record of
//! what changed. The store loads a `LedgerState` inside its transaction, the engine
//! mutates it, and the store writes back exactly [`LedgerState::take_changes`].

use std::collections::{BTreeSet, HashMap};

use super::invariants::Snapshot;
use super::types::{Account, AccountId, Grant, GrantId, Hold, HoldId, Transfer, TransferId};

/// Accounts, their open grants, holds and already-recorded transfers, as loaded for a batch.
#[derive(Clone, Debug, Default)]
pub struct LedgerState {
    accounts: HashMap<AccountId, Account>,
    /// Each org account's grants that still hold credits, in consumption order.
    grants: HashMap<AccountId, Vec<Grant>>,
    holds: HashMap<HoldId, Hold>,
    /// Transfers already recorded under ids the batch uses (for idempotency).
    transfers: HashMap<TransferId, Transfer>,
    /// Which hold each known closing operation id closed (voids and zero settlements record
    /// no transfer, so their ids are known only from here).
    closers: HashMap<TransferId, HoldId>,
    changes: Dirty,
}

#[derive(Clone, Debug, Default)]
struct Dirty {
    transfers: Vec<Transfer>,
    holds_created: BTreeSet<HoldId>,
    holds: BTreeSet<HoldId>,
    grants: BTreeSet<(AccountId, GrantId)>,
    accounts: BTreeSet<AccountId>,
}

/// Everything an applied batch changed, ready to be written in one transaction.
/// Accounts, grants and holds are listed in id order (the store's lock order).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChangeSet {
    /// New transfers, in the order they were made.
    pub transfers: Vec<Transfer>,
    /// Holds placed by this batch (plain inserts: an id committed meanwhile by another
    /// process makes the insert fail and the batch retry, never overwrite).
    pub holds_created: Vec<Hold>,
    /// Loaded holds this batch changed.
    pub holds: Vec<Hold>,
    /// Grants created or changed (upsert).
    pub grants: Vec<Grant>,
    /// Accounts whose balances changed.
    pub accounts: Vec<Account>,
    /// Holds the batch refused for lack of credits, first refusal per account first (filled
    /// in by the writer from the outcomes; they change no balance, but the org's access).
    pub refusals: Vec<Refusal>,
}

/// A hold refused for lack of credits ([`super::Rejection::InsufficientFunds`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The account, as the batch left it.
    pub account: Account,
    /// The refused hold's amount (the call's worst case).
    pub amount: crate::money::Amount,
    /// The refused hold's id.
    pub hold_id: HoldId,
    /// The refused hold's reference (what the call was).
    pub reference: String,
}

impl ChangeSet {
    /// True when the batch changed nothing (nothing to write).
    pub fn is_empty(&self) -> bool {
        self.transfers.is_empty()
            && self.holds_created.is_empty()
            && self.holds.is_empty()
            && self.grants.is_empty()
            && self.accounts.is_empty()
    }
}

impl LedgerState {
    /// An empty state, to be filled with the rows a batch loads.
    pub fn new() -> LedgerState {
        LedgerState::default()
    }

    /// Adds a loaded account (replacing any earlier copy).
    pub fn insert_account(&mut self, account: Account) {
        self.accounts.insert(account.id.clone(), account);
    }

    /// Adds a loaded grant, keeping its account's grants in consumption order.
    pub fn insert_grant(&mut self, grant: Grant) {
        let grants = self.grants.entry(grant.account_id.clone()).or_default();
        grants.retain(|existing| existing.id != grant.id);
        let at = grants.partition_point(|g| g.consumption_key() < grant.consumption_key());
        grants.insert(at, grant);
    }

    /// Adds a loaded hold, and remembers the operation id that closed it, if any.
    pub fn insert_hold(&mut self, hold: Hold) {
        if let Some(closed_by) = &hold.closed_by {
            self.closers.insert(closed_by.clone(), hold.id.clone());
        }
        self.holds.insert(hold.id.clone(), hold);
    }

    /// Records that operation `id` closed `hold_id` (loaded without the hold itself).
    pub fn insert_closer(&mut self, id: TransferId, hold_id: HoldId) {
        self.closers.insert(id, hold_id);
    }

    /// The hold an operation id closed, if it closed one.
    pub fn closed_hold(&self, id: &TransferId) -> Option<&HoldId> {
        self.closers.get(id)
    }

    /// Adds a transfer already recorded under an id the batch uses (for idempotency).
    pub fn insert_transfer(&mut self, transfer: Transfer) {
        self.transfers.insert(transfer.id.clone(), transfer);
    }

    /// A loaded account.
    pub fn account(&self, id: &AccountId) -> Option<&Account> {
        self.accounts.get(id)
    }

    /// Every loaded account, in no particular order.
    pub fn accounts(&self) -> impl Iterator<Item = &Account> {
        self.accounts.values()
    }

    /// A loaded hold, open or closed.
    pub fn hold(&self, id: &HoldId) -> Option<&Hold> {
        self.holds.get(id)
    }

    /// Every loaded hold, in no particular order.
    pub fn holds(&self) -> impl Iterator<Item = &Hold> {
        self.holds.values()
    }

    /// A loaded transfer recorded earlier under this id.
    pub fn transfer(&self, id: &TransferId) -> Option<&Transfer> {
        self.transfers.get(id)
    }

    /// The account's grants that still hold credits, in consumption order.
    pub fn grants(&self, account_id: &AccountId) -> &[Grant] {
        self.grants.get(account_id).map_or(&[], Vec::as_slice)
    }

    /// A loaded grant, whatever its account.
    pub fn any_grant(&self, grant_id: &GrantId) -> Option<&Grant> {
        self.grants
            .values()
            .flatten()
            .find(|grant| &grant.id == grant_id)
    }

    /// One of the account's loaded grants that still hold credits.
    pub fn grant(&self, account_id: &AccountId, grant_id: &GrantId) -> Option<&Grant> {
        self.grants(account_id)
            .iter()
            .find(|grant| &grant.id == grant_id)
    }

    /// Everything loaded, as a snapshot for the invariant checker (complete only when the
    /// state holds the whole ledger, as in tests and the reference model).
    pub fn snapshot(&self) -> Snapshot {
        let mut snapshot = Snapshot {
            accounts: self.accounts.values().cloned().collect(),
            grants: self.grants.values().flatten().cloned().collect(),
            holds: self.holds.values().cloned().collect(),
            transfers: self.transfers.values().cloned().collect(),
        };
        snapshot.accounts.sort_by(|a, b| a.id.cmp(&b.id));
        snapshot
    }

    /// Hands over what changed since the last call, leaving the state as it now is.
    pub fn take_changes(&mut self) -> ChangeSet {
        let dirty = std::mem::take(&mut self.changes);
        ChangeSet {
            transfers: dirty.transfers,
            holds_created: dirty
                .holds_created
                .iter()
                .map(|id| self.holds[id].clone())
                .collect(),
            holds: dirty
                .holds
                .iter()
                .filter(|id| !dirty.holds_created.contains(*id))
                .map(|id| self.holds[id].clone())
                .collect(),
            grants: dirty
                .grants
                .iter()
                .map(|(account_id, grant_id)| {
                    self.grant(account_id, grant_id)
                        .expect("a dirty grant stays loaded")
                        .clone()
                })
                .collect(),
            accounts: dirty
                .accounts
                .iter()
                .map(|id| self.accounts[id].clone())
                .collect(),
            refusals: Vec::new(),
        }
    }

    pub(super) fn account_mut(&mut self, id: &AccountId) -> &mut Account {
        self.changes.accounts.insert(id.clone());
        self.accounts
            .get_mut(id)
            .expect("the engine checked the account exists")
    }

    pub(super) fn hold_mut(&mut self, id: &HoldId) -> &mut Hold {
        self.changes.holds.insert(id.clone());
        self.holds
            .get_mut(id)
            .expect("the engine checked the hold exists")
    }

    pub(super) fn create_hold(&mut self, hold: Hold) {
        self.changes.holds_created.insert(hold.id.clone());
        self.insert_hold(hold);
    }

    pub(super) fn create_grant(&mut self, grant: Grant) {
        self.changes
            .grants
            .insert((grant.account_id.clone(), grant.id.clone()));
        self.insert_grant(grant);
    }

    /// The account's grants, mutable; the caller marks the ones it changes with `touch_grant`.
    pub(super) fn grants_mut(&mut self, account_id: &AccountId) -> &mut [Grant] {
        self.grants
            .get_mut(account_id)
            .map_or(&mut [], Vec::as_mut_slice)
    }

    /// One loaded grant, mutable, marked as changed. Panics if it is not loaded: callers
    /// found it during their checks.
    pub(super) fn grant_mut(&mut self, account_id: &AccountId, grant_id: &GrantId) -> &mut Grant {
        self.touch_grant(account_id, grant_id);
        self.grants_mut(account_id)
            .iter_mut()
            .find(|grant| &grant.id == grant_id)
            .expect("the engine checked the grant is loaded")
    }

    pub(super) fn touch_grant(&mut self, account_id: &AccountId, grant_id: &GrantId) {
        self.changes
            .grants
            .insert((account_id.clone(), grant_id.clone()));
    }

    pub(super) fn record_transfer(&mut self, transfer: Transfer) {
        self.transfers.insert(transfer.id.clone(), transfer.clone());
        self.changes.transfers.push(transfer);
    }
}
