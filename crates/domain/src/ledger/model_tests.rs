//! Model-based test of the ledger: random operation sequences go through both [`apply`] on a
//! [`LedgerState`] holding the whole ledger and a plain reference model written below, and
//! after every step the result code, every balance, grant and hold, and the invariants must
//! agree.
//!
//! The model is deliberately naive so that it is easy to believe: `i128` balances, vectors
//! and linear scans, the consumption order spelled out as a sort key, and every operation
//! tried on a copy that is kept only if nothing left the `i64` range (`amount_overflow`) and
//! no refused floor was crossed (`insufficient_funds`). Every accepted operation id is
//! remembered with what it did, so a repeat is `exists` only when all its fields match.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use proptest::prelude::*;

use super::*;
use crate::money::Amount;
use crate::time::Timestamp;

type Verdict = Result<Status, Rejection>;

const START_MS: i64 = 1_000_000;
/// Org accounts and their floors: one that may not go below zero, one with an overdraft.
const ORGS: [(&str, i64); 3] = [("acct_org_a", 0), ("acct_org_b", -25), ("acct_org_c", 0)];
const OPERATORS: [AccountKind; 5] = [
    AccountKind::UsageRevenue,
    AccountKind::PaymentsReceived,
    AccountKind::PromotionalGrants,
    AccountKind::ExpiredCredits,
    AccountKind::Adjustments,
];
// Indexes into `account_id`: orgs 0..3, then the operators in `OPERATORS` order.
const USAGE_REVENUE: u8 = 3;
const PAYMENTS_RECEIVED: u8 = 4;
const PROMOTIONAL_GRANTS: u8 = 5;
const EXPIRED_CREDITS: u8 = 6;
const ADJUSTMENTS: u8 = 7;
const MISSING: u8 = 8;

fn account_id(index: u8) -> AccountId {
    let index = usize::from(index);
    if index < ORGS.len() {
        return AccountId::new(ORGS[index].0);
    }
    match OPERATORS.get(index - ORGS.len()) {
        Some(kind) => kind.operator_account_id().expect("operator kind"),
        None => AccountId::new("acct_org_missing"),
    }
}

fn ledger_accounts() -> Vec<Account> {
    let orgs = ORGS.iter().map(|(id, floor)| {
        Account::new(
            AccountId::new(*id),
            AccountKind::OrgCredit,
            Some(Amount::from_micros(*floor)),
        )
    });
    let operators = OPERATORS.iter().map(|kind| {
        let id = kind.operator_account_id().expect("operator kind");
        Account::new(id, *kind, None)
    });
    orgs.chain(operators).collect()
}

fn code(verdict: &Verdict) -> &'static str {
    match verdict {
        Ok(Status::Created) => "created",
        Ok(Status::Exists) => "exists",
        Err(rejection) => rejection.code(),
    }
}

fn micros(amount: Amount) -> i128 {
    i128::from(amount.micros())
}

fn fits(value: i128) -> bool {
    i64::try_from(value).is_ok()
}

// --- the reference model -------------------------------------------------------------------

#[derive(Clone, Debug)]
struct Model {
    accounts: Vec<ModelAccount>,
    grants: Vec<ModelGrant>,
    holds: Vec<ModelHold>,
    /// Every accepted operation id and what it did (one namespace for all transfer ids).
    records: BTreeMap<String, Record>,
}

#[derive(Clone, Debug)]
struct ModelAccount {
    id: AccountId,
    org: bool,
    floor: Option<i128>,
    posted: i128,
    reserved: i128,
    unbacked: i128,
    overspend: i128,
}

impl ModelAccount {
    fn available(&self) -> i128 {
        self.posted - self.reserved
    }
}

#[derive(Clone, Debug)]
struct ModelGrant {
    id: String,
    account: AccountId,
    terms: GrantTerms,
    created_at: i64,
    amount: i128,
    consumed: i128,
    reserved: i128,
    expired: i128,
    is_expired: bool,
}

impl ModelGrant {
    fn spendable(&self) -> i128 {
        if self.is_expired {
            return 0;
        }
        self.amount - self.consumed - self.expired - self.reserved
    }

    /// Priority, promotional before paid, soonest expiry (none last), oldest, id.
    fn order(&self) -> (u32, bool, bool, i64, i64, String) {
        let expires = self.terms.expires_at.map(Timestamp::unix_ms);
        (
            self.terms.priority,
            self.terms.origin == Origin::Paid,
            expires.is_none(),
            expires.unwrap_or(0),
            self.created_at,
            self.id.clone(),
        )
    }
}

#[derive(Clone, Debug)]
struct ModelHold {
    id: HoldId,
    debit: AccountId,
    credit: AccountId,
    amount: i128,
    reference: String,
    ttl_ms: i64,
    expires_at: i64,
    state: HoldState,
    /// (grant id, amount) reserved on each grant, in consumption order.
    allocations: Vec<(String, i128)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Record {
    Posted {
        debit: AccountId,
        credit: AccountId,
        amount: i128,
        kind: TransferKind,
        reference: String,
        /// The terms of the grant it opened (default when the credit side is not an org).
        terms: GrantTerms,
    },
    Settle {
        hold: HoldId,
        amount: i128,
    },
    Void {
        hold: HoldId,
    },
    ExpireHold {
        hold: HoldId,
    },
    ExpireGrant {
        account: AccountId,
        grant: String,
    },
}

fn is_org(id: &AccountId) -> bool {
    ORGS.iter().any(|(org, _)| id.as_str() == *org)
}

impl Model {
    fn new(accounts: &[Account]) -> Model {
        let accounts = accounts
            .iter()
            .map(|account| ModelAccount {
                id: account.id.clone(),
                org: account.kind == AccountKind::OrgCredit,
                floor: account.floor.map(micros),
                posted: 0,
                reserved: 0,
                unbacked: 0,
                overspend: 0,
            })
            .collect();
        Model {
            accounts,
            grants: Vec::new(),
            holds: Vec::new(),
            records: BTreeMap::new(),
        }
    }

    /// Tries `operation` on a copy and keeps the copy only if it was created.
    fn apply(&mut self, operation: &Operation, now: i64) -> Verdict {
        let mut next = self.clone();
        let verdict = match operation {
            Operation::Transfer(request) => next.transfer(request, now),
            Operation::RecordUsage(request) => next.record_usage(request, now),
            Operation::PlaceHold(request) => next.place_hold(request, now),
            Operation::SettleHold(request) => next.settle_hold(request, now),
            Operation::VoidHold(request) => next.void_hold(request, now),
            Operation::ExpireHold(request) => next.expire_hold(request, now),
            Operation::ExpireGrant(request) => next.expire_grant(request, now),
        };
        if verdict == Ok(Status::Created) {
            *self = next;
        }
        verdict
    }

    fn transfer(&mut self, request: &TransferRequest, now: i64) -> Verdict {
        let amount = micros(request.amount);
        if amount <= 0 {
            return Err(Rejection::AmountMustBePositive);
        }
        if request.debit_account_id == request.credit_account_id {
            return Err(Rejection::AccountsMustBeDifferent);
        }
        if request
            .grant
            .is_some_and(|terms| terms.priority > GRANT_PRIORITY_MAX)
        {
            return Err(Rejection::PriorityExceedsMax);
        }
        if request.kind == TransferKind::Expiry {
            return Err(Rejection::KindNotAllowed);
        }
        let terms = match is_org(&request.credit_account_id) {
            true => request.grant.unwrap_or_default(),
            false => GrantTerms::default(),
        };
        let record = Record::Posted {
            debit: request.debit_account_id.clone(),
            credit: request.credit_account_id.clone(),
            amount,
            kind: request.kind,
            reference: request.reference.clone(),
            terms,
        };
        self.repeat(request.id.as_str(), &record)?;
        let (debit, credit) =
            self.find_pair(&request.debit_account_id, &request.credit_account_id)?;
        if request.grant.is_some() && !self.accounts[credit].org {
            return Err(Rejection::GrantTermsNotAllowed);
        }
        self.consume(debit, amount);
        self.charge(debit, amount, 0);
        self.credit(credit, amount, request.id.as_str(), terms, now);
        self.check_range()?;
        if self.below_floor(debit) {
            return Err(Rejection::InsufficientFunds);
        }
        self.created(request.id.as_str(), record)
    }

    fn record_usage(&mut self, request: &UsageRequest, now: i64) -> Verdict {
        let amount = micros(request.amount);
        if amount <= 0 {
            return Err(Rejection::AmountMustBePositive);
        }
        if request.debit_account_id == request.credit_account_id {
            return Err(Rejection::AccountsMustBeDifferent);
        }
        let record = Record::Posted {
            debit: request.debit_account_id.clone(),
            credit: request.credit_account_id.clone(),
            amount,
            kind: TransferKind::Usage,
            reference: request.reference.clone(),
            terms: GrantTerms::default(),
        };
        self.repeat(request.id.as_str(), &record)?;
        let (debit, credit) =
            self.find_pair(&request.debit_account_id, &request.credit_account_id)?;
        self.consume(debit, amount);
        self.charge(debit, amount, amount);
        let terms = GrantTerms::default();
        self.credit(credit, amount, request.id.as_str(), terms, now);
        self.check_range()?;
        self.created(request.id.as_str(), record)
    }

    fn place_hold(&mut self, request: &PlaceHoldRequest, now: i64) -> Verdict {
        let amount = micros(request.amount);
        if amount <= 0 {
            return Err(Rejection::AmountMustBePositive);
        }
        if request.debit_account_id == request.credit_account_id {
            return Err(Rejection::AccountsMustBeDifferent);
        }
        if request.ttl_ms <= 0 {
            return Err(Rejection::TtlMustBePositive);
        }
        if request.ttl_ms > HOLD_TTL_MS_MAX {
            return Err(Rejection::TtlExceedsMax);
        }
        if let Some(hold) = self.hold(&request.id) {
            let same = hold.debit == request.debit_account_id
                && hold.credit == request.credit_account_id
                && hold.amount == amount
                && hold.reference == request.reference
                && hold.ttl_ms == request.ttl_ms;
            return match same {
                true => Ok(Status::Exists),
                false => Err(Rejection::ExistsWithDifferentFields),
            };
        }
        let (debit, credit) =
            self.find_pair(&request.debit_account_id, &request.credit_account_id)?;
        // Documented rule: the credit side must be able to take the whole hold at settlement.
        if !fits(self.accounts[credit].posted + amount) {
            return Err(Rejection::AmountOverflow);
        }
        let allocations = self.allocate(debit, amount);
        self.accounts[debit].reserved += amount;
        self.check_range()?;
        if self.below_floor(debit) {
            return Err(Rejection::InsufficientFunds);
        }
        self.holds.push(ModelHold {
            id: request.id.clone(),
            debit: request.debit_account_id.clone(),
            credit: request.credit_account_id.clone(),
            amount,
            reference: request.reference.clone(),
            ttl_ms: request.ttl_ms,
            expires_at: now + request.ttl_ms,
            state: HoldState::Open,
            allocations,
        });
        Ok(Status::Created)
    }

    fn settle_hold(&mut self, request: &SettleHoldRequest, now: i64) -> Verdict {
        let amount = micros(request.amount);
        if amount < 0 {
            return Err(Rejection::AmountMustNotBeNegative);
        }
        let record = Record::Settle {
            hold: request.hold_id.clone(),
            amount,
        };
        self.repeat(request.id.as_str(), &record)?;
        let hold = self.open_hold(&request.hold_id, now, Close::Charge)?;
        let (debit, credit) = self.find_pair(&hold.debit, &hold.credit)?;
        let (rest, leftovers) = self.release(&hold, amount);
        // Charging more than was held is usage that already happened: that part is forced.
        self.consume(debit, rest);
        self.charge(debit, amount, (amount - hold.amount).max(0));
        if amount > 0 {
            self.credit(
                credit,
                amount,
                request.id.as_str(),
                GrantTerms::default(),
                now,
            );
        }
        for leftover in leftovers {
            self.expire_credits(debit, leftover);
        }
        self.close(&hold.id, HoldState::Settled);
        self.check_range()?;
        self.created(request.id.as_str(), record)
    }

    fn void_hold(&mut self, request: &VoidHoldRequest, now: i64) -> Verdict {
        let record = Record::Void {
            hold: request.hold_id.clone(),
        };
        self.repeat(request.id.as_str(), &record)?;
        let hold = self.open_hold(&request.hold_id, now, Close::Void)?;
        self.release_unused(&hold);
        self.close(&hold.id, HoldState::Voided);
        self.check_range()?;
        self.created(request.id.as_str(), record)
    }

    fn expire_hold(&mut self, request: &ExpireHoldRequest, now: i64) -> Verdict {
        let id = format!("{}:expiry", request.hold_id);
        let record = Record::ExpireHold {
            hold: request.hold_id.clone(),
        };
        self.repeat(&id, &record)?;
        let hold = self.open_hold(&request.hold_id, now, Close::Expire)?;
        self.release_unused(&hold);
        self.close(&hold.id, HoldState::Expired);
        self.check_range()?;
        self.created(&id, record)
    }

    fn expire_grant(&mut self, request: &ExpireGrantRequest, now: i64) -> Verdict {
        let id = format!("{}:expiry", request.grant_id);
        let record = Record::ExpireGrant {
            account: request.account_id.clone(),
            grant: request.grant_id.as_str().to_owned(),
        };
        self.repeat(&id, &record)?;
        let account = self
            .find(&request.account_id)
            .ok_or(Rejection::AccountNotFound)?;
        let grant = self
            .grants
            .iter()
            .position(|g| g.account == request.account_id && g.id == request.grant_id.as_str())
            .ok_or(Rejection::GrantNotFound)?;
        let due = self.grants[grant]
            .terms
            .expires_at
            .is_some_and(|at| now >= at.unix_ms());
        if !due {
            return Err(Rejection::GrantNotExpired);
        }
        let expiring = self.grants[grant].spendable();
        self.grants[grant].is_expired = true;
        self.grants[grant].expired += expiring;
        self.expire_credits(account, expiring);
        self.check_range()?;
        self.created(&id, record)
    }

    // --- helpers of the model

    fn repeat(&self, id: &str, record: &Record) -> Result<(), Verdict> {
        match self.records.get(id) {
            None => Ok(()),
            Some(stored) if stored == record => Err(Ok(Status::Exists)),
            Some(_) => Err(Err(Rejection::ExistsWithDifferentFields)),
        }
    }

    fn created(&mut self, id: &str, record: Record) -> Verdict {
        self.records.insert(id.to_owned(), record);
        Ok(Status::Created)
    }

    fn find(&self, id: &AccountId) -> Option<usize> {
        self.accounts.iter().position(|account| &account.id == id)
    }

    fn find_pair(
        &self,
        debit: &AccountId,
        credit: &AccountId,
    ) -> Result<(usize, usize), Rejection> {
        let debit = self.find(debit).ok_or(Rejection::DebitAccountNotFound)?;
        let credit = self.find(credit).ok_or(Rejection::CreditAccountNotFound)?;
        Ok((debit, credit))
    }

    fn hold(&self, id: &HoldId) -> Option<&ModelHold> {
        self.holds.iter().find(|hold| &hold.id == id)
    }

    fn open_hold(&self, id: &HoldId, now: i64, close: Close) -> Result<ModelHold, Rejection> {
        let hold = self.hold(id).ok_or(Rejection::HoldNotFound)?;
        if hold.state != HoldState::Open {
            return Err(Rejection::HoldAlreadyClosed);
        }
        let expired = now >= hold.expires_at;
        match close {
            Close::Charge | Close::Void if expired => Err(Rejection::HoldExpired),
            Close::Expire if !expired => Err(Rejection::HoldNotExpired),
            _ => Ok(hold.clone()),
        }
    }

    fn close(&mut self, id: &HoldId, state: HoldState) {
        let hold = self.holds.iter_mut().find(|hold| &hold.id == id);
        hold.expect("hold checked open").state = state;
    }

    fn below_floor(&self, account: usize) -> bool {
        let account = &self.accounts[account];
        account
            .floor
            .is_some_and(|floor| account.available() < floor)
    }

    /// Every stored figure must still be an `i64`.
    fn check_range(&self) -> Result<(), Rejection> {
        let in_range = self.accounts.iter().all(|account| {
            [
                account.posted,
                account.reserved,
                account.available(),
                account.unbacked,
                account.overspend,
            ]
            .into_iter()
            .all(fits)
        });
        match in_range {
            true => Ok(()),
            false => Err(Rejection::AmountOverflow),
        }
    }

    /// The account's grant indexes in consumption order.
    fn grants_in_order(&self, account: usize) -> Vec<usize> {
        let id = &self.accounts[account].id;
        let mut order: Vec<usize> = (0..self.grants.len())
            .filter(|&index| &self.grants[index].account == id)
            .collect();
        order.sort_by_key(|&index| self.grants[index].order());
        order
    }

    /// Takes `amount` from an org's spendable grants in order; the rest is unbacked.
    fn consume(&mut self, account: usize, amount: i128) {
        if !self.accounts[account].org {
            return;
        }
        let mut left = amount;
        for index in self.grants_in_order(account) {
            let take = self.grants[index].spendable().min(left);
            self.grants[index].consumed += take;
            left -= take;
        }
        self.accounts[account].unbacked += left;
    }

    /// Reserves `amount` on an org's spendable grants in order.
    fn allocate(&mut self, account: usize, amount: i128) -> Vec<(String, i128)> {
        let mut left = amount;
        let mut allocations = Vec::new();
        for index in self.grants_in_order(account) {
            let take = self.grants[index].spendable().min(left);
            if take > 0 {
                self.grants[index].reserved += take;
                left -= take;
                allocations.push((self.grants[index].id.clone(), take));
            }
        }
        allocations
    }

    /// Lowers `posted` by `amount`, of which the last `forced` may go below the floor: the
    /// part of it that does is overspend.
    fn charge(&mut self, account: usize, amount: i128, forced: i128) {
        let account = &mut self.accounts[account];
        account.posted -= amount;
        if let Some(floor) = account.floor {
            account.overspend += (floor - account.available()).clamp(0, forced);
        }
    }

    /// Raises `posted`; credits into an org open a grant, which first repays the unbacked part.
    fn credit(&mut self, account: usize, amount: i128, id: &str, terms: GrantTerms, now: i64) {
        let account = &mut self.accounts[account];
        account.posted += amount;
        if !account.org {
            return;
        }
        let repaid = account.unbacked.min(amount);
        account.unbacked -= repaid;
        self.grants.push(ModelGrant {
            id: id.to_owned(),
            account: account.id.clone(),
            terms,
            created_at: now,
            amount,
            consumed: repaid,
            reserved: 0,
            expired: 0,
            is_expired: false,
        });
    }

    /// Moves `amount` of an org's credits to the expired-credits account (forced).
    fn expire_credits(&mut self, account: usize, amount: i128) {
        self.charge(account, amount, amount);
        let expired = self
            .find(&account_id(EXPIRED_CREDITS))
            .expect("expired credits account");
        self.accounts[expired].posted += amount;
    }

    /// Ends a hold's reservation without charging anything.
    fn release_unused(&mut self, hold: &ModelHold) {
        let account = self.find(&hold.debit).expect("hold account exists");
        let (_, leftovers) = self.release(hold, 0);
        for leftover in leftovers {
            self.expire_credits(account, leftover);
        }
    }

    /// Ends a hold's reservation: `used` of it is consumed from its allocations in order.
    /// Returns the part of `used` the allocations did not cover, and the released amounts that
    /// sat on grants which expired meanwhile (already counted as expired on the grant; the
    /// caller moves them out after any charge).
    fn release(&mut self, hold: &ModelHold, used: i128) -> (i128, Vec<i128>) {
        let account = self.find(&hold.debit).expect("hold account exists");
        let mut left = used;
        let mut leftovers = Vec::new();
        for (grant_id, reserved) in &hold.allocations {
            let use_here = left.min(*reserved);
            left -= use_here;
            let grant = self
                .grants
                .iter_mut()
                .find(|grant| &grant.id == grant_id && grant.account == hold.debit)
                .expect("allocated grant exists");
            grant.reserved -= reserved;
            grant.consumed += use_here;
            let released = reserved - use_here;
            if grant.is_expired && released > 0 {
                grant.expired += released;
                leftovers.push(released);
            }
        }
        self.accounts[account].reserved -= hold.amount;
        (left, leftovers)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Close {
    Charge,
    Void,
    Expire,
}
