//! The SQLite writer's row cache: the accounts and open grants its batches loaded, kept as
//! committed, so that the next batch on the same orgs reads them from memory instead of the
//! database.
//!
//! It is exact, not a guess: the writer is the only writer of balances and grants, and every
//! other write to the database (an org's floor, another process's writer, the naive
//! benchmark) is caught by `PRAGMA data_version`, which changes when any other connection
//! commits. Each batch reads it inside its own write transaction, so after its `BEGIN
//! IMMEDIATE` no other commit can come in between; on a change the whole cache is dropped.
//! It is updated only after a commit succeeded, from the rows that commit wrote, and dropped
//! after any failure.

use std::collections::HashMap;

use creditgate_domain::ledger::{Account, AccountId, ChangeSet, Grant};

/// Most accounts kept; past it the cache starts over (each entry is a few hundred bytes).
pub(super) const CACHED_ACCOUNTS_MAX: usize = 100_000;

#[derive(Debug, Default)]
pub(super) struct RowCache {
    /// `PRAGMA data_version` when the cached rows were read or written.
    data_version: Option<i64>,
    accounts: HashMap<AccountId, Account>,
    /// Each org account's grants with credits left (`open = 1`), in no particular order;
    /// present only for accounts whose open grants were all loaded.
    open_grants: HashMap<AccountId, Vec<Grant>>,
}

impl RowCache {
    /// Keeps the cache if no other connection committed since it was filled; drops it
    /// otherwise. `data_version` is read inside the batch's write transaction.
    pub(super) fn validate(&mut self, data_version: i64) {
        if self.data_version != Some(data_version) || self.accounts.len() > CACHED_ACCOUNTS_MAX {
            self.clear();
            self.data_version = Some(data_version);
        }
    }

    /// Forgets everything (after a failed batch, or another connection's commit).
    pub(super) fn clear(&mut self) {
        self.data_version = None;
        self.accounts.clear();
        self.open_grants.clear();
    }

    pub(super) fn account(&self, id: &AccountId) -> Option<&Account> {
        self.accounts.get(id)
    }

    pub(super) fn open_grants(&self, id: &AccountId) -> Option<&[Grant]> {
        self.open_grants.get(id).map(Vec::as_slice)
    }

    /// Remembers an account as loaded from the database.
    pub(super) fn loaded_account(&mut self, account: &Account) {
        self.accounts.insert(account.id.clone(), account.clone());
    }

    /// Remembers all of an account's open grants as loaded from the database.
    pub(super) fn loaded_open_grants(&mut self, id: &AccountId, grants: Vec<Grant>) {
        self.open_grants.insert(id.clone(), grants);
    }

    /// Applies what a committed batch wrote.
    pub(super) fn committed(&mut self, changes: &ChangeSet) {
        if self.data_version.is_none() {
            return;
        }
        for account in &changes.accounts {
            self.accounts.insert(account.id.clone(), account.clone());
        }
        for grant in &changes.grants {
            if let Some(open) = self.open_grants.get_mut(&grant.account_id) {
                open.retain(|cached| cached.id != grant.id);
                if grant.remaining().is_positive() {
                    open.push(grant.clone());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use creditgate_domain::ledger::{AccountKind, GrantId, GrantTerms, Origin};
    use creditgate_domain::{Amount, Timestamp};

    fn account(id: &str, posted: i64) -> Account {
        let mut account = Account::new(
            AccountId::new(id),
            AccountKind::OrgCredit,
            Some(Amount::ZERO),
        );
        account.posted = Amount::from_micros(posted);
        account
    }

    fn grant(id: &str, account: &str, amount: i64, consumed: i64) -> Grant {
        Grant {
            id: GrantId::new(id),
            account_id: AccountId::new(account),
            terms: GrantTerms {
                origin: Origin::Paid,
                priority: 0,
                expires_at: None,
            },
            amount: Amount::from_micros(amount),
            consumed: Amount::from_micros(consumed),
            reserved: Amount::ZERO,
            expired: Amount::ZERO,
            expired_at: None,
            created_at: Timestamp::from_unix_ms(0),
        }
    }

    #[test]
    fn another_connections_commit_drops_everything() {
        let mut cache = RowCache::default();
        cache.validate(1);
        cache.loaded_account(&account("a", 5));
        cache.loaded_open_grants(&AccountId::new("a"), vec![grant("g", "a", 5, 0)]);
        cache.validate(1);
        assert!(cache.account(&AccountId::new("a")).is_some());
        cache.validate(2);
        assert!(cache.account(&AccountId::new("a")).is_none());
        assert!(cache.open_grants(&AccountId::new("a")).is_none());
    }

    #[test]
    fn a_commit_updates_accounts_and_open_grants() {
        let a = AccountId::new("a");
        let mut cache = RowCache::default();
        cache.validate(7);
        cache.loaded_account(&account("a", 10));
        cache.loaded_open_grants(&a, vec![grant("g1", "a", 5, 0), grant("g2", "a", 5, 0)]);
        cache.committed(&ChangeSet {
            accounts: vec![account("a", 4)],
            grants: vec![
                grant("g1", "a", 5, 5),
                grant("g2", "a", 5, 1),
                grant("g3", "a", 3, 0),
                grant("other", "b", 3, 0),
            ],
            ..ChangeSet::default()
        });
        assert_eq!(cache.account(&a).unwrap().posted, Amount::from_micros(4));
        let mut open: Vec<(String, i64)> = cache
            .open_grants(&a)
            .unwrap()
            .iter()
            .map(|g| (g.id.as_str().to_owned(), g.consumed.micros()))
            .collect();
        open.sort();
        assert_eq!(open, [("g2".to_owned(), 1), ("g3".to_owned(), 0)]);
        // An account whose grants were never all loaded gets no partial list.
        assert!(cache.open_grants(&AccountId::new("b")).is_none());
    }

    #[test]
    fn a_failed_batch_leaves_nothing_to_trust() {
        let mut cache = RowCache::default();
        cache.validate(3);
        cache.loaded_account(&account("a", 10));
        cache.clear();
        cache.committed(&ChangeSet {
            accounts: vec![account("a", 4)],
            ..ChangeSet::default()
        });
        assert!(cache.account(&AccountId::new("a")).is_none());
        cache.validate(3);
        assert!(cache.account(&AccountId::new("a")).is_none());
    }
}
