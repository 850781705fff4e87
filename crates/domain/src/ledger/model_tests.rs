//! Model-based test of the ledger: random operation sequences go through both [`apply`] on a
//! [`LedgerState`] holding the whole ledger and a plain reference model written below, and
//! after every step the result code, every balance, grant and hold, and the invariants must
//! agree.
//!
//! The model is deliberately naive so that it is easy to believe: `i128` balances, vectors
//! and linear scans, the consumption order spelled out as a sort key, and every operation
//! tried on a copy that is kept only if nothing left the `i64` range (`amount_overflow`) and
//! no refused floor was crossed (`insufficient_funds`).
//!
//! The rules it states, each in one place:
//! - One id namespace for transfers, usage, settles, voids and expiries: a repeat is `exists`
//!   only when every field matches (grant terms included), else `exists_with_different_fields`.
//! - A forced debit (usage, the part of a settle above its hold, an expiry) records as
//!   overspend the part of it that lands below the floor.
//! - Unbacked usage never sits beside spendable credits: new grants and the credits a closing
//!   hold frees repay it (freed credits of expired grants first, as they would expire).
//!
//! Regressions it found are kept as fixed scenarios at the end, written as data.

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
const ORG_A: u8 = 0;
const ORG_B: u8 = 1;
const ORG_C: u8 = 2;
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

/// Ids are 1 to `ID_LEN_MAX` bytes, references at most `REFERENCE_LEN_MAX`.
fn check_text(id: &str, reference: &str) -> Result<(), Rejection> {
    if id.is_empty() {
        return Err(Rejection::IdMustNotBeEmpty);
    }
    if id.len() > ID_LEN_MAX {
        return Err(Rejection::IdTooLong);
    }
    if reference.len() > REFERENCE_LEN_MAX {
        return Err(Rejection::ReferenceTooLong);
    }
    Ok(())
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
            // Refunds are covered by the table tests (tests.rs); the generator makes none.
            Operation::Refund(_) => unreachable!("the model does not generate refunds"),
        };
        if verdict == Ok(Status::Created) {
            *self = next;
        }
        verdict
    }

    fn transfer(&mut self, request: &TransferRequest, now: i64) -> Verdict {
        check_text(request.id.as_str(), &request.reference)?;
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
        if let Some(verdict) = self.repeat(request.id.as_str(), &record) {
            return verdict;
        }
        let (debit, credit) =
            self.find_pair(&request.debit_account_id, &request.credit_account_id)?;
        if request.grant.is_some() && !self.accounts[credit].org {
            return Err(Rejection::GrantTermsNotAllowed);
        }
        self.consume(debit, amount);
        self.charge(debit, amount, 0);
        self.credit(credit, amount, request.id.as_str(), terms, now);
        self.check_balances()?;
        if self.below_floor(debit) {
            return Err(Rejection::InsufficientFunds);
        }
        self.check_range()?;
        self.created(request.id.as_str(), record)
    }

    fn record_usage(&mut self, request: &UsageRequest, now: i64) -> Verdict {
        check_text(request.id.as_str(), &request.reference)?;
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
        if let Some(verdict) = self.repeat(request.id.as_str(), &record) {
            return verdict;
        }
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
        check_text(request.id.as_str(), &request.reference)?;
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
        check_text(request.id.as_str(), "")?;
        let amount = micros(request.amount);
        if amount < 0 {
            return Err(Rejection::AmountMustNotBeNegative);
        }
        let record = Record::Settle {
            hold: request.hold_id.clone(),
            amount,
        };
        if let Some(verdict) = self.repeat(request.id.as_str(), &record) {
            return verdict;
        }
        let hold = self.open_hold(&request.hold_id, now, Close::Charge)?;
        let (debit, credit) = self.find_pair(&hold.debit, &hold.credit)?;
        let (rest, leftovers) = self.release(&hold, amount);
        // Charging more than was held is usage that already happened: that part is forced.
        self.consume(debit, rest);
        let excess = (amount - hold.amount).max(0);
        self.charge(debit, amount, excess);
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
        check_text(request.id.as_str(), "")?;
        let record = Record::Void {
            hold: request.hold_id.clone(),
        };
        if let Some(verdict) = self.repeat(request.id.as_str(), &record) {
            return verdict;
        }
        let hold = self.open_hold(&request.hold_id, now, Close::Void)?;
        self.release_unused(&hold);
        self.close(&hold.id, HoldState::Voided);
        self.check_range()?;
        self.created(request.id.as_str(), record)
    }

    fn expire_hold(&mut self, request: &ExpireHoldRequest, now: i64) -> Verdict {
        // The expiry's id is derived from the hold's: only the hold id is the client's.
        check_text(request.hold_id.as_str(), "")?;
        let id = format!("{}:expiry", request.hold_id);
        let record = Record::ExpireHold {
            hold: request.hold_id.clone(),
        };
        if let Some(verdict) = self.repeat(&id, &record) {
            return verdict;
        }
        let hold = self.open_hold(&request.hold_id, now, Close::Expire)?;
        self.release_unused(&hold);
        self.close(&hold.id, HoldState::Expired);
        self.check_range()?;
        self.created(&id, record)
    }

    fn expire_grant(&mut self, request: &ExpireGrantRequest, now: i64) -> Verdict {
        check_text(request.grant_id.as_str(), "")?;
        let id = format!("{}:expiry", request.grant_id);
        let record = Record::ExpireGrant {
            account: request.account_id.clone(),
            grant: request.grant_id.as_str().to_owned(),
        };
        if let Some(verdict) = self.repeat(&id, &record) {
            return verdict;
        }
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

    /// The verdict on a repeat of an id already used, if it was.
    fn repeat(&self, id: &str, record: &Record) -> Option<Verdict> {
        let stored = self.records.get(id)?;
        match stored == record {
            true => Some(Ok(Status::Exists)),
            false => Some(Err(Rejection::ExistsWithDifferentFields)),
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
        self.check_balances()?;
        self.check_unbacked()
    }

    /// Every balance must still be an `i64`.
    fn check_balances(&self) -> Result<(), Rejection> {
        let in_range = self.accounts.iter().all(|account| {
            [
                account.posted,
                account.reserved,
                account.available(),
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

    /// Unbacked is internal: checked after the floor, which refuses most of what would overflow it.
    fn check_unbacked(&self) -> Result<(), Rejection> {
        match self.accounts.iter().all(|account| fits(account.unbacked)) {
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
        let taken = self.take(account, amount);
        self.accounts[account].unbacked += amount - taken;
    }

    /// Consumes up to `amount` from the account's spendable grants in order; returns how much.
    fn take(&mut self, account: usize, amount: i128) -> i128 {
        let mut left = amount;
        for index in self.grants_in_order(account) {
            let take = self.grants[index].spendable().min(left);
            self.grants[index].consumed += take;
            left -= take;
        }
        amount - left
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
            let mut released = reserved - use_here;
            if grant.is_expired && released > 0 {
                // Credits about to expire first pay for usage that went unbacked meanwhile.
                let unbacked = &mut self.accounts[account].unbacked;
                let repaid = released.min(*unbacked);
                *unbacked -= repaid;
                grant.consumed += repaid;
                released -= repaid;
                grant.expired += released;
                if released > 0 {
                    leftovers.push(released);
                }
            }
        }
        self.accounts[account].reserved -= hold.amount;
        // Unbacked usage never coexists with spendable credits: the freed ones repay it.
        let unbacked = self.accounts[account].unbacked;
        let repaid = self.take(account, unbacked);
        self.accounts[account].unbacked -= repaid;
        (left, leftovers)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Close {
    Charge,
    Void,
    Expire,
}

// --- the harness: engine and model side by side ------------------------------------------

struct Harness {
    state: LedgerState,
    model: Model,
    now: i64,
    /// Every operation applied so far, with its time, for repeats and failure reports.
    history: Vec<(i64, Operation)>,
}

impl Harness {
    fn new() -> Harness {
        let accounts = ledger_accounts();
        let mut state = LedgerState::new();
        for account in &accounts {
            state.insert_account(account.clone());
        }
        Harness {
            state,
            model: Model::new(&accounts),
            now: START_MS,
            history: Vec::new(),
        }
    }

    fn advance(&mut self, ms: i64) {
        self.now += ms;
    }

    /// Applies `operation` to both sides: the result code they agree on, or every
    /// disagreement found.
    fn apply(&mut self, operation: Operation) -> Result<&'static str, String> {
        let expected = self.model.apply(&operation, self.now);
        let now = Timestamp::from_unix_ms(self.now);
        let got = catch_unwind(AssertUnwindSafe(|| {
            apply(&mut self.state, &operation, now).map(|receipt| receipt.status)
        }));
        self.history.push((self.now, operation));
        let got = match got {
            Ok(got) => got,
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|text| (*text).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                return Err(format!("engine panicked: {message}\n{}", self.script()));
            }
        };
        let mut problems = Vec::new();
        if code(&got) != code(&expected) {
            problems.push(format!(
                "result: engine {}, model {}",
                code(&got),
                code(&expected)
            ));
        }
        self.compare(&mut problems);
        problems.extend(check_invariants(&self.state.snapshot()).violations);
        if problems.is_empty() {
            return Ok(code(&got));
        }
        Err(format!("{}\n{}", problems.join("\n"), self.script()))
    }

    fn compare(&self, problems: &mut Vec<String>) {
        for account in &self.model.accounts {
            let engine = self.state.account(&account.id).expect("accounts are fixed");
            let [posted, reserved, overspend, unbacked] = [
                engine.posted,
                engine.reserved,
                engine.overspend,
                engine.unbacked,
            ]
            .map(micros);
            // Not `available()`: it panics when the engine let the difference leave `i64`.
            let got = [posted, reserved, posted - reserved, overspend, unbacked];
            let want = [
                account.posted,
                account.reserved,
                account.available(),
                account.overspend,
                account.unbacked,
            ];
            if got != want {
                problems.push(format!(
                    "{} [posted, reserved, available, overspend, unbacked]: engine {got:?}, model {want:?}",
                    account.id
                ));
            }
        }
        for grant in &self.model.grants {
            let want = (grant.amount, grant.consumed, grant.reserved, grant.expired);
            let found = self.state.grant(&grant.account, &GrantId::new(&grant.id));
            let got = found.map(|g| {
                (
                    micros(g.amount),
                    micros(g.consumed),
                    micros(g.reserved),
                    micros(g.expired),
                )
            });
            if got != Some(want) || found.map(|g| g.expired_at.is_some()) != Some(grant.is_expired)
            {
                problems.push(format!(
                    "grant {} [amount, consumed, reserved, expired]: engine {got:?}, model {want:?}, model expired {}",
                    grant.id, grant.is_expired
                ));
            }
        }
        let grant_count: usize = ORGS
            .iter()
            .map(|(id, _)| self.state.grants(&AccountId::new(*id)).len())
            .sum();
        if grant_count != self.model.grants.len() {
            problems.push(format!(
                "grants: engine has {grant_count}, model {}",
                self.model.grants.len()
            ));
        }
        for hold in &self.model.holds {
            let want = (hold.state, hold.amount, hold.expires_at);
            let got = self
                .state
                .hold(&hold.id)
                .map(|h| (h.state, micros(h.amount), h.expires_at.unix_ms()));
            if got != Some(want) {
                problems.push(format!("hold {}: engine {got:?}, model {want:?}", hold.id));
            }
        }
        if self.state.holds().count() != self.model.holds.len() {
            problems.push("holds: engine and model hold different sets".to_owned());
        }
    }

    /// The operations so far, one a line, for a failure report.
    fn script(&self) -> String {
        let lines: Vec<String> = self
            .history
            .iter()
            .map(|(at, operation)| format!("  @{} {}", at - START_MS, describe(operation)))
            .collect();
        format!("operations (time from start, ms):\n{}", lines.join("\n"))
    }

    /// Turns a generated step into an operation, looking at the model for hold amounts and
    /// grant accounts so that settles and expiries hit real targets.
    fn resolve(&self, step: &Step) -> Option<Operation> {
        let operation = match step {
            Step::Advance(_) => return None,
            Step::Purchase {
                id,
                source,
                org,
                amount,
                terms,
            } => Operation::Transfer(TransferRequest {
                id: transfer_id(*id),
                debit_account_id: account_id(*source),
                credit_account_id: account_id(*org),
                amount: Amount::from_micros(*amount),
                kind: TransferKind::Purchase,
                reference: String::new(),
                grant: terms.map(|(promotional, priority, expires_in)| GrantTerms {
                    origin: if promotional {
                        Origin::Promotional
                    } else {
                        Origin::Paid
                    },
                    priority,
                    expires_at: expires_in.map(|ms| Timestamp::from_unix_ms(self.now + ms)),
                }),
            }),
            Step::Spend {
                id,
                org,
                sink,
                amount,
                kind,
            } => Operation::Transfer(TransferRequest {
                id: transfer_id(*id),
                debit_account_id: account_id(*org),
                credit_account_id: account_id(*sink),
                amount: Amount::from_micros(*amount),
                kind: *kind,
                reference: String::new(),
                grant: None,
            }),
            Step::Usage {
                id,
                debit,
                credit,
                amount,
            } => Operation::RecordUsage(UsageRequest {
                id: transfer_id(*id),
                debit_account_id: account_id(*debit),
                credit_account_id: account_id(*credit),
                amount: Amount::from_micros(*amount),
                reference: String::new(),
            }),
            Step::Place {
                hold,
                debit,
                credit,
                amount,
                ttl_ms,
            } => Operation::PlaceHold(PlaceHoldRequest {
                id: hold_id(*hold),
                debit_account_id: account_id(*debit),
                credit_account_id: account_id(*credit),
                amount: Amount::from_micros(*amount),
                reference: String::new(),
                ttl_ms: *ttl_ms,
            }),
            Step::Settle { id, hold, amount } => {
                let hold = self.pick_hold(*hold);
                let held = self.model.hold(&hold).map_or(5, |h| h.amount);
                let held = i64::try_from(held).expect("hold amounts are i64");
                let amount = match amount {
                    SettleAmount::Less(less) => (held - less).max(0),
                    SettleAmount::Equal => held,
                    SettleAmount::More(more) => held.saturating_add(*more),
                    SettleAmount::Zero => 0,
                    SettleAmount::Negative => -1,
                    SettleAmount::Huge => i64::MAX,
                };
                Operation::SettleHold(SettleHoldRequest {
                    id: transfer_id(*id),
                    hold_id: hold,
                    amount: Amount::from_micros(amount),
                })
            }
            Step::Void { id, hold } => Operation::VoidHold(VoidHoldRequest {
                id: transfer_id(*id),
                hold_id: self.pick_hold(*hold),
            }),
            Step::ExpireHold { hold } => Operation::ExpireHold(ExpireHoldRequest {
                hold_id: self.pick_hold(*hold),
            }),
            Step::ExpireGrant { grant, account } => {
                let grant_id = match self.model.grants.len() {
                    0 => transfer_id(*grant),
                    _ if *grant >= 10 => transfer_id(*grant),
                    count => TransferId::new(&self.model.grants[usize::from(*grant) % count].id),
                };
                let owner = self
                    .model
                    .grants
                    .iter()
                    .find(|g| g.id == grant_id.as_str())
                    .map(|g| g.account.clone());
                Operation::ExpireGrant(ExpireGrantRequest {
                    account_id: match (owner, account) {
                        (Some(owner), None) => owner,
                        (_, Some(account)) => account_id(*account),
                        (None, None) => account_id(0),
                    },
                    grant_id: GrantId::new(grant_id.as_str()),
                })
            }
            Step::Repeat { back, change } => {
                let (_, earlier) = self.history.get(
                    self.history
                        .len()
                        .checked_sub(1 + back % self.history.len().max(1))?,
                )?;
                match change {
                    None => earlier.clone(),
                    Some(change) => changed(earlier, *change),
                }
            }
        };
        Some(operation)
    }
}

impl Harness {
    /// Mostly a hold that exists (`index` < 5), else a pool id that may not.
    fn pick_hold(&self, index: u8) -> HoldId {
        match self.model.holds.len() {
            count if count > 0 && index < 5 => {
                self.model.holds[usize::from(index) % count].id.clone()
            }
            _ => hold_id(index),
        }
    }
}

fn transfer_id(index: u8) -> TransferId {
    TransferId::new(format!("t{index}"))
}

fn hold_id(index: u8) -> HoldId {
    HoldId::new(format!("h{index}"))
}

/// `operation` with one field changed (`change` picks which).
fn changed(operation: &Operation, change: u8) -> Operation {
    let bump = |amount: Amount| Amount::from_micros(amount.micros().saturating_add(1));
    let other_org = |id: &AccountId| {
        let next = ORGS
            .iter()
            .position(|(org, _)| id.as_str() == *org)
            .map_or(0, |i| i + 1);
        AccountId::new(ORGS[next % ORGS.len()].0)
    };
    let mut operation = operation.clone();
    if change >= 240 {
        return malformed(operation, change);
    }
    match &mut operation {
        Operation::Transfer(request) => match change % 5 {
            0 => request.amount = bump(request.amount),
            1 => request.reference.push('x'),
            2 => request.credit_account_id = other_org(&request.credit_account_id),
            3 => request.kind = TransferKind::Adjustment,
            _ => {
                let mut terms = request.grant.unwrap_or_default();
                match change % 3 {
                    0 => terms.priority += 1,
                    1 => terms.origin = Origin::Promotional,
                    _ => terms.expires_at = Some(Timestamp::from_unix_ms(START_MS)),
                }
                request.grant = Some(terms);
            }
        },
        Operation::RecordUsage(request) => match change % 3 {
            0 => request.amount = bump(request.amount),
            1 => request.reference.push('x'),
            _ => request.debit_account_id = other_org(&request.debit_account_id),
        },
        Operation::PlaceHold(request) => match change % 4 {
            0 => request.amount = bump(request.amount),
            1 => request.reference.push('x'),
            2 => request.ttl_ms += 1,
            _ => request.debit_account_id = other_org(&request.debit_account_id),
        },
        Operation::SettleHold(request) => match change % 2 {
            0 => request.amount = bump(request.amount),
            _ => request.hold_id = HoldId::new(format!("{}x", request.hold_id)),
        },
        Operation::VoidHold(request) => {
            request.hold_id = HoldId::new(format!("{}x", request.hold_id));
        }
        Operation::ExpireHold(request) => {
            request.hold_id = HoldId::new(format!("{}x", request.hold_id));
        }
        Operation::ExpireGrant(request) => request.account_id = other_org(&request.account_id),
        Operation::Refund(request) => request.amount = bump(request.amount),
    }
    operation
}

/// `operation` with an id that is empty, one byte too long or exactly as long as allowed, or
/// with a reference one byte too long.
fn malformed(mut operation: Operation, change: u8) -> Operation {
    let text = match change % 4 {
        0 => String::new(),
        1 => "x".repeat(ID_LEN_MAX + 1),
        2 => "y".repeat(ID_LEN_MAX),
        _ => "r".repeat(REFERENCE_LEN_MAX + 1),
    };
    let reference = change % 4 == 3;
    match &mut operation {
        Operation::Transfer(request) if reference => request.reference = text,
        Operation::Transfer(request) => request.id = TransferId::new(text),
        Operation::RecordUsage(request) if reference => request.reference = text,
        Operation::RecordUsage(request) => request.id = TransferId::new(text),
        Operation::PlaceHold(request) if reference => request.reference = text,
        Operation::PlaceHold(request) => request.id = HoldId::new(text),
        Operation::SettleHold(request) => request.id = TransferId::new(text),
        Operation::VoidHold(request) => request.id = TransferId::new(text),
        Operation::ExpireHold(request) => request.hold_id = HoldId::new(text),
        Operation::ExpireGrant(request) => request.grant_id = GrantId::new(text),
        Operation::Refund(request) if reference => request.reference = text,
        Operation::Refund(request) => request.id = TransferId::new(text),
    }
    operation
}

fn describe(operation: &Operation) -> String {
    match operation {
        Operation::Transfer(r) => format!(
            "transfer {} {} -> {} {} {} ref={:?} grant={:?}",
            r.id,
            r.debit_account_id,
            r.credit_account_id,
            r.amount.micros(),
            r.kind.as_str(),
            r.reference,
            r.grant
        ),
        Operation::RecordUsage(r) => format!(
            "usage {} {} -> {} {} ref={:?}",
            r.id,
            r.debit_account_id,
            r.credit_account_id,
            r.amount.micros(),
            r.reference
        ),
        Operation::PlaceHold(r) => format!(
            "place {} {} -> {} {} ttl={} ref={:?}",
            r.id,
            r.debit_account_id,
            r.credit_account_id,
            r.amount.micros(),
            r.ttl_ms,
            r.reference
        ),
        Operation::SettleHold(r) => format!("settle {} {} {}", r.id, r.hold_id, r.amount.micros()),
        Operation::VoidHold(r) => format!("void {} {}", r.id, r.hold_id),
        Operation::ExpireHold(r) => format!("expire_hold {}", r.hold_id),
        Operation::ExpireGrant(r) => format!("expire_grant {} {}", r.account_id, r.grant_id),
        Operation::Refund(r) => format!(
            "refund {} {} grant={} {}",
            r.id,
            r.debit_account_id,
            r.grant_id,
            r.amount.micros()
        ),
    }
}

// --- generated sequences --------------------------------------------------------------------

/// One generated step. Targets are small indexes so that ids collide often; a settle's
/// amount is relative to the hold's, resolved when the step runs.
#[derive(Clone, Debug)]
enum Step {
    Advance(i64),
    Purchase {
        id: u8,
        source: u8,
        org: u8,
        amount: i64,
        /// (promotional, priority, expires in ms from now)
        terms: Option<(bool, u32, Option<i64>)>,
    },
    Spend {
        id: u8,
        org: u8,
        sink: u8,
        amount: i64,
        kind: TransferKind,
    },
    Usage {
        id: u8,
        debit: u8,
        credit: u8,
        amount: i64,
    },
    Place {
        hold: u8,
        debit: u8,
        credit: u8,
        amount: i64,
        ttl_ms: i64,
    },
    Settle {
        id: u8,
        hold: u8,
        amount: SettleAmount,
    },
    Void {
        id: u8,
        hold: u8,
    },
    ExpireHold {
        hold: u8,
    },
    ExpireGrant {
        grant: u8,
        /// `None`: the grant's own account.
        account: Option<u8>,
    },
    Repeat {
        back: usize,
        change: Option<u8>,
    },
}

#[derive(Clone, Copy, Debug)]
enum SettleAmount {
    Less(i64),
    Equal,
    More(i64),
    Zero,
    Negative,
    Huge,
}

fn amount() -> impl Strategy<Value = i64> {
    prop_oneof![
        16 => 1..=30i64,
        1 => Just(0i64),
        1 => -5..0i64,
        1 => (i64::MAX - 2)..=i64::MAX,
        1 => Just(i64::MAX / 2 + 1),
    ]
}

fn org() -> impl Strategy<Value = u8> {
    prop_oneof![3 => Just(ORG_A), 3 => Just(ORG_B), 1 => Just(ORG_C)]
}

/// Who pays for credits: mostly the operator sources, sometimes another org or nobody.
fn source() -> impl Strategy<Value = u8> {
    prop_oneof![
        4 => Just(PAYMENTS_RECEIVED),
        3 => Just(PROMOTIONAL_GRANTS),
        1 => Just(ADJUSTMENTS),
        1 => Just(USAGE_REVENUE),
        1 => org(),
        1 => Just(MISSING),
    ]
}

/// Where spent credits go.
fn sink() -> impl Strategy<Value = u8> {
    prop_oneof![
        6 => Just(USAGE_REVENUE),
        1 => Just(ADJUSTMENTS),
        1 => Just(EXPIRED_CREDITS),
        1 => org(),
        1 => Just(MISSING),
    ]
}

/// Who is charged for usage or holds: mostly orgs.
fn payer() -> impl Strategy<Value = u8> {
    prop_oneof![8 => org(), 1 => Just(PAYMENTS_RECEIVED), 1 => Just(MISSING)]
}

fn terms() -> impl Strategy<Value = (bool, u32, Option<i64>)> {
    let priority = prop_oneof![
        4 => Just(GRANT_PRIORITY_DEFAULT),
        2 => Just(5u32),
        1 => Just(0u32),
        1 => Just(GRANT_PRIORITY_MAX),
        1 => Just(GRANT_PRIORITY_MAX + 1),
    ];
    let expires_in = prop::option::weighted(0.6, prop_oneof![1 => -50..=0i64, 6 => 1..4_000i64]);
    (any::<bool>(), priority, expires_in)
}

fn ttl_ms() -> impl Strategy<Value = i64> {
    prop_oneof![
        12 => 1..3_000i64,
        1 => Just(0i64),
        1 => Just(HOLD_TTL_MS_MAX),
        1 => Just(HOLD_TTL_MS_MAX + 1),
    ]
}

fn settle_amount() -> impl Strategy<Value = SettleAmount> {
    prop_oneof![
        3 => (1..10i64).prop_map(SettleAmount::Less),
        3 => Just(SettleAmount::Equal),
        3 => (1..15i64).prop_map(SettleAmount::More),
        1 => Just(SettleAmount::Zero),
        1 => Just(SettleAmount::Negative),
        1 => Just(SettleAmount::Huge),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    let id = || 0..12u8;
    let target = || 0..7u8;
    let advance = prop_oneof![Just(0i64), 1..500i64, 500..3_000i64].prop_map(Step::Advance);
    let purchase = (
        id(),
        source(),
        credited(),
        amount(),
        prop::option::weighted(0.8, terms()),
    )
        .prop_map(|(id, source, org, amount, terms)| Step::Purchase {
            id,
            source,
            org,
            amount,
            terms,
        });
    let spend =
        (id(), org(), sink(), amount(), spend_kind()).prop_map(|(id, org, sink, amount, kind)| {
            Step::Spend {
                id,
                org,
                sink,
                amount,
                kind,
            }
        });
    let usage =
        (id(), payer(), usage_credit(), amount()).prop_map(|(id, debit, credit, amount)| {
            Step::Usage {
                id,
                debit,
                credit,
                amount,
            }
        });
    let place = (0..6u8, payer(), usage_credit(), amount(), ttl_ms()).prop_map(
        |(hold, debit, credit, amount, ttl_ms)| Step::Place {
            hold,
            debit,
            credit,
            amount,
            ttl_ms,
        },
    );
    let settle = (id(), target(), settle_amount()).prop_map(|(id, hold, amount)| Step::Settle {
        id,
        hold,
        amount,
    });
    let void = (id(), target()).prop_map(|(id, hold)| Step::Void { id, hold });
    let expire_hold = target().prop_map(|hold| Step::ExpireHold { hold });
    let other_account = prop_oneof![org(), Just(MISSING)];
    let expire_grant = (id(), prop::option::weighted(0.1, other_account))
        .prop_map(|(grant, account)| Step::ExpireGrant { grant, account });
    let repeat = (any::<usize>(), prop::option::weighted(0.5, any::<u8>()))
        .prop_map(|(back, change)| Step::Repeat { back, change });
    prop_oneof![
        3 => advance,
        4 => purchase,
        2 => spend,
        2 => usage,
        3 => place,
        3 => settle,
        1 => void,
        2 => expire_hold,
        2 => expire_grant,
        2 => repeat,
    ]
}

fn spend_kind() -> impl Strategy<Value = TransferKind> {
    prop_oneof![
        4 => Just(TransferKind::Usage),
        1 => Just(TransferKind::Refund),
        1 => Just(TransferKind::Expiry),
    ]
}

fn usage_credit() -> impl Strategy<Value = u8> {
    prop_oneof![8 => Just(USAGE_REVENUE), 1 => org(), 1 => Just(MISSING)]
}

/// Who receives purchased credits: an org, now and then an operator (grant terms refused).
fn credited() -> impl Strategy<Value = u8> {
    prop_oneof![12 => org(), 1 => Just(ADJUSTMENTS)]
}

fn run(steps: &[Step]) -> Result<(), String> {
    let mut harness = Harness::new();
    for step in steps {
        if let Step::Advance(ms) = step {
            harness.advance(*ms);
            continue;
        }
        if let Some(operation) = harness.resolve(step) {
            harness.apply(operation)?;
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        // Failures are kept as named regression tests below, not in a file beside the crate.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn engine_matches_reference_model(steps in prop::collection::vec(step(), 1..60)) {
        run(&steps).map_err(TestCaseError::fail)?;
    }
}

// --- fixed scenarios: regressions found by the model, written as data ----------------------

/// One line of a scenario: wait `ms`, apply the operation, expect this result code (engine
/// and model must also agree on it, and on every balance, and the invariants must hold).
type Line = (i64, Operation, &'static str);

fn scenario(lines: Vec<Line>) -> Harness {
    let mut harness = Harness::new();
    for (ms, operation, want) in lines {
        harness.advance(ms);
        let got = harness
            .apply(operation)
            .unwrap_or_else(|problem| panic!("{problem}"));
        assert_eq!(got, want, "{}", harness.script());
    }
    harness
}

fn purchase(id: &str, source: u8, org: u8, micros: i64, expires_at_ms: Option<i64>) -> Operation {
    Operation::Transfer(TransferRequest {
        id: TransferId::new(id),
        debit_account_id: account_id(source),
        credit_account_id: account_id(org),
        amount: Amount::from_micros(micros),
        kind: TransferKind::Purchase,
        reference: String::new(),
        grant: Some(GrantTerms {
            expires_at: expires_at_ms.map(|ms| Timestamp::from_unix_ms(START_MS + ms)),
            ..GrantTerms::default()
        }),
    })
}

fn spend(id: &str, org: u8, micros: i64) -> Operation {
    Operation::Transfer(TransferRequest {
        id: TransferId::new(id),
        debit_account_id: account_id(org),
        credit_account_id: account_id(USAGE_REVENUE),
        amount: Amount::from_micros(micros),
        kind: TransferKind::Usage,
        reference: String::new(),
        grant: None,
    })
}

fn usage(id: &str, debit: u8, credit: u8, micros: i64) -> Operation {
    Operation::RecordUsage(UsageRequest {
        id: TransferId::new(id),
        debit_account_id: account_id(debit),
        credit_account_id: account_id(credit),
        amount: Amount::from_micros(micros),
        reference: String::new(),
    })
}

fn place(hold: &str, debit: u8, micros: i64, ttl_ms: i64) -> Operation {
    Operation::PlaceHold(PlaceHoldRequest {
        id: HoldId::new(hold),
        debit_account_id: account_id(debit),
        credit_account_id: account_id(USAGE_REVENUE),
        amount: Amount::from_micros(micros),
        reference: String::new(),
        ttl_ms,
    })
}

fn settle(id: &str, hold: &str, micros: i64) -> Operation {
    Operation::SettleHold(SettleHoldRequest {
        id: TransferId::new(id),
        hold_id: HoldId::new(hold),
        amount: Amount::from_micros(micros),
    })
}

fn void(id: &str, hold: &str) -> Operation {
    Operation::VoidHold(VoidHoldRequest {
        id: TransferId::new(id),
        hold_id: HoldId::new(hold),
    })
}

fn expire_hold(hold: &str) -> Operation {
    Operation::ExpireHold(ExpireHoldRequest {
        hold_id: HoldId::new(hold),
    })
}

fn expire_grant(account: u8, grant: &str) -> Operation {
    Operation::ExpireGrant(ExpireGrantRequest {
        account_id: account_id(account),
        grant_id: GrantId::new(grant),
    })
}

const MAX: i64 = i64::MAX;

#[test]
fn settle_above_hold_records_the_excess_below_the_floor_as_overspend() {
    let harness = scenario(vec![
        (
            0,
            purchase("t1", PAYMENTS_RECEIVED, ORG_A, 10, None),
            "created",
        ),
        (0, place("h1", ORG_A, 10, 1_000), "created"),
        (0, settle("t2", "h1", 15), "created"),
    ]);
    let org = harness.state.account(&account_id(ORG_A)).expect("org");
    assert_eq!((org.posted.micros(), org.overspend.micros()), (-5, 5));
}

#[test]
fn repeated_purchase_with_other_grant_terms_is_a_different_transfer() {
    scenario(vec![
        (
            0,
            purchase("t1", PAYMENTS_RECEIVED, ORG_A, 10, None),
            "created",
        ),
        (
            0,
            purchase("t1", PAYMENTS_RECEIVED, ORG_A, 10, None),
            "exists",
        ),
        (
            0,
            purchase("t1", PAYMENTS_RECEIVED, ORG_A, 10, Some(5)),
            "exists_with_different_fields",
        ),
    ]);
}

#[test]
fn void_and_zero_settle_ids_are_not_reused_by_transfers_or_usage() {
    scenario(vec![
        (
            0,
            purchase("t1", PAYMENTS_RECEIVED, ORG_A, 10, None),
            "created",
        ),
        (0, place("h1", ORG_A, 1, 1_000), "created"),
        (0, void("t2", "h1"), "created"),
        (
            0,
            purchase("t2", PAYMENTS_RECEIVED, ORG_A, 1, None),
            "exists_with_different_fields",
        ),
        (
            0,
            usage("t2", ORG_A, USAGE_REVENUE, 1),
            "exists_with_different_fields",
        ),
        (0, place("h2", ORG_A, 1, 1_000), "created"),
        (0, settle("t3", "h2", 0), "created"),
        (0, spend("t3", ORG_A, 1), "exists_with_different_fields"),
    ]);
}

#[test]
fn grant_expiry_repeat_for_another_account_is_different_even_when_nothing_expired() {
    scenario(vec![
        (
            0,
            purchase("t1", PAYMENTS_RECEIVED, ORG_A, 5, Some(0)),
            "created",
        ),
        (0, spend("t2", ORG_A, 5), "created"),
        (0, expire_grant(ORG_A, "t1"), "created"),
        (0, expire_grant(ORG_A, "t1"), "exists"),
        (0, expire_grant(ORG_B, "t1"), "exists_with_different_fields"),
    ]);
}

#[test]
fn usage_after_a_repaid_overdraft_overflows_overspend_without_panicking() {
    scenario(vec![
        (0, usage("t1", ORG_A, USAGE_REVENUE, MAX - 1), "created"),
        (
            0,
            purchase("t2", PAYMENTS_RECEIVED, ORG_A, 1, None),
            "created",
        ),
        // Overspend would be MAX + 1: refused, not a panic in `post`.
        (0, usage("t3", ORG_A, ADJUSTMENTS, 2), "amount_overflow"),
    ]);
}

#[test]
fn usage_down_to_i64_min_overflows_unbacked_without_panicking() {
    scenario(vec![
        (0, spend("t1", ORG_B, 3), "created"),
        // posted reaches i64::MIN, but unbacked would be MAX + 1: refused, not a panic in `consume`.
        (0, usage("t2", ORG_B, ORG_C, MAX - 2), "amount_overflow"),
    ]);
}

#[test]
fn usage_on_a_floorless_account_with_a_hold_keeps_available_in_range() {
    scenario(vec![
        (0, place("h1", PAYMENTS_RECEIVED, MAX - 2, 1_000), "created"),
        // available would be -MAX - 2: refused, or `Account::available` panics later.
        (
            0,
            usage("t1", PAYMENTS_RECEIVED, USAGE_REVENUE, 4),
            "amount_overflow",
        ),
    ]);
}

#[test]
fn usage_from_a_rich_account_with_an_overdraft_floor_is_not_an_overflow() {
    scenario(vec![
        (
            0,
            purchase("t1", PAYMENTS_RECEIVED, ORG_B, MAX - 2, None),
            "created",
        ),
        // No balance leaves i64; only the intermediate `floor - after` in the engine did.
        (0, usage("t2", ORG_B, USAGE_REVENUE, 1), "created"),
    ]);
}

#[test]
fn hold_release_into_full_expired_credits_is_an_overflow_not_a_panic() {
    scenario(vec![
        (
            0,
            purchase("t1", PAYMENTS_RECEIVED, ORG_A, MAX, Some(0)),
            "created",
        ),
        (0, place("h1", ORG_A, 5, 1), "created"),
        (0, expire_grant(ORG_A, "t1"), "created"),
        (
            0,
            purchase("t2", PROMOTIONAL_GRANTS, ORG_B, 5, Some(0)),
            "created",
        ),
        (0, expire_grant(ORG_B, "t2"), "created"),
        // expired credits hold MAX; the 5 released on expired t1 cannot expire into it.
        (1, expire_hold("h1"), "amount_overflow"),
    ]);
}
