//! The ledger's invariants, checked over a complete snapshot (every account, grant, hold and
//! transfer). The store loads the snapshot; tests call the store's checker after every test.

use std::collections::HashMap;

use super::types::{
    Account, AccountId, AccountKind, Grant, Hold, HoldState, Transfer, TransferKind,
};
use crate::money::Amount;

/// Everything the ledger holds.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Every account, operator accounts included.
    pub accounts: Vec<Account>,
    /// Every grant, open, used up or expired.
    pub grants: Vec<Grant>,
    /// Every hold, open or closed.
    pub holds: Vec<Hold>,
    /// Every transfer ever posted.
    pub transfers: Vec<Transfer>,
}

/// What the checker found. `violations` must be empty; `overspend` is reported, not an error.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InvariantReport {
    /// One line per broken invariant, naming the rows involved.
    pub violations: Vec<String>,
    /// Total usage recorded below floors, over all accounts.
    pub overspend: Amount,
}

impl InvariantReport {
    /// True when no invariant is broken (overspend alone does not count).
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Checks: postings sum to zero; each balance equals the sum of its postings; reserved equals
/// the open holds; no available balance below its floor beyond recorded overspend; every hold
/// closed at most once; every grant's consumed + remaining + expired equals its amount, with
/// its reservations and expiries matching the holds and expiry transfers; and each org's
/// posted balance equals its grants' remaining minus its unbacked overdraft.
pub fn check(snapshot: &Snapshot) -> InvariantReport {
    let mut report = InvariantReport::default();
    let mut sums: HashMap<&AccountId, i128> = HashMap::new();
    let mut total: i128 = 0;
    let mut closers: HashMap<&str, usize> = HashMap::new();
    let mut grant_expired: HashMap<&str, i128> = HashMap::new();
    for transfer in &snapshot.transfers {
        let amount = i128::from(transfer.amount.micros());
        if amount <= 0 {
            report
                .violations
                .push(format!("transfer {} has non-positive amount", transfer.id));
        }
        *sums.entry(&transfer.debit_account_id).or_default() -= amount;
        *sums.entry(&transfer.credit_account_id).or_default() += amount;
        if let Some(hold_id) = &transfer.hold_id {
            *closers.entry(hold_id.as_str()).or_default() += 1;
        }
        if transfer.kind == TransferKind::Expiry {
            let grant = transfer.grant_id.as_ref().map_or("", |id| id.as_str());
            *grant_expired.entry(grant).or_default() += amount;
        }
    }
    let mut posted_total: i128 = 0;
    for account in &snapshot.accounts {
        posted_total += i128::from(account.posted.micros());
        let sum = sums.get(&account.id).copied().unwrap_or(0);
        total += sum;
        if sum != i128::from(account.posted.micros()) {
            report.violations.push(format!(
                "account {}: posted {} but its postings sum to {sum} micros",
                account.id, account.posted
            ));
        }
        check_account(snapshot, account, &mut report);
    }
    if total != 0 || posted_total != 0 {
        report.violations.push(format!(
            "postings sum to {total} micros and balances to {posted_total}, not zero"
        ));
    }
    for hold in &snapshot.holds {
        let closed = closers.get(hold.id.as_str()).copied().unwrap_or(0);
        let open = hold.state == HoldState::Open;
        if closed > 1
            || (open && (closed > 0 || hold.closed_by.is_some()))
            || (!open && hold.closed_by.is_none())
        {
            report.violations.push(format!(
                "hold {} closed more than once or inconsistently",
                hold.id
            ));
        }
    }
    for grant in &snapshot.grants {
        check_grant(snapshot, grant, &grant_expired, &mut report);
    }
    report
}

fn check_account(snapshot: &Snapshot, account: &Account, report: &mut InvariantReport) {
    let open_holds: i128 = snapshot
        .holds
        .iter()
        .filter(|hold| hold.debit_account_id == account.id && hold.state == HoldState::Open)
        .map(|hold| i128::from(hold.amount.micros()))
        .sum();
    if open_holds != i128::from(account.reserved.micros()) {
        report.violations.push(format!(
            "account {}: reserved {} but open holds sum to {open_holds} micros",
            account.id, account.reserved
        ));
    }
    report.overspend = report
        .overspend
        .checked_add(account.overspend)
        .unwrap_or(Amount::MAX);
    if let Some(floor) = account.floor {
        let available = i128::from(account.posted.micros()) - i128::from(account.reserved.micros());
        let below = i128::from(floor.micros()) - available;
        if below > i128::from(account.overspend.micros()) {
            report.violations.push(format!(
                "account {}: available {available} micros is below floor {floor} beyond recorded overspend {}",
                account.id, account.overspend
            ));
        }
    }
    if account.kind != AccountKind::OrgCredit {
        return;
    }
    let grants: Vec<&Grant> = snapshot
        .grants
        .iter()
        .filter(|g| g.account_id == account.id)
        .collect();
    let remaining: i128 = grants
        .iter()
        .map(|g| {
            i128::from(g.amount.micros())
                - i128::from(g.consumed.micros())
                - i128::from(g.expired.micros())
        })
        .sum();
    if remaining - i128::from(account.unbacked.micros()) != i128::from(account.posted.micros()) {
        report.violations.push(format!(
            "account {}: grants remaining {remaining} − unbacked {} ≠ posted {}",
            account.id, account.unbacked, account.posted
        ));
    }
}

fn check_grant(
    snapshot: &Snapshot,
    grant: &Grant,
    grant_expired: &HashMap<&str, i128>,
    report: &mut InvariantReport,
) {
    let parts = [grant.consumed, grant.reserved, grant.expired];
    let consistent = parts.iter().all(|part| !part.is_negative())
        && grant
            .amount
            .checked_sub(grant.consumed)
            .and_then(|a| a.checked_sub(grant.expired))
            .is_some_and(|remaining| !remaining.is_negative() && grant.reserved <= remaining);
    if !consistent {
        report.violations.push(format!(
            "grant {}: consumed + remaining + expired ≠ amount",
            grant.id
        ));
    }
    let reserved: i128 = snapshot
        .holds
        .iter()
        .filter(|hold| hold.state == HoldState::Open)
        .flat_map(|hold| hold.allocations.iter())
        .filter(|allocation| allocation.grant_id == grant.id)
        .map(|allocation| i128::from(allocation.amount.micros()))
        .sum();
    if reserved != i128::from(grant.reserved.micros()) {
        report.violations.push(format!(
            "grant {}: reserved ≠ its open holds' allocations",
            grant.id
        ));
    }
    let expired = grant_expired.get(grant.id.as_str()).copied().unwrap_or(0);
    if expired != i128::from(grant.expired.micros()) {
        report.violations.push(format!(
            "grant {}: expired ≠ its expiry transfers",
            grant.id
        ));
    }
}
