//! What every store test shares: a clock the test moves by hand, a fresh ledger (store,
//! writer, one org account) per backend, request builders written as data, and the
//! invariant check every test ends with.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use creditgate_domain::ledger::*;
use creditgate_domain::money::Sign;
use creditgate_domain::{Amount, Timestamp};
use creditgate_store::testing::TestDatabase;
use creditgate_store::{Clock, LedgerWriter, Store, WriterConfig};

/// Where every test clock starts (any fixed instant works; this one reads as 2023).
pub const START_MS: i64 = 1_700_000_000_000;
pub const SECOND_MS: i64 = 1_000;
pub const HOUR_MS: i64 = 60 * 60 * SECOND_MS;
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// The injected clock: time moves only when the test says so, so TTLs and grant expiries
/// are tested without sleeping.
#[derive(Debug)]
pub struct TestClock {
    now_ms: AtomicI64,
}

impl TestClock {
    pub fn new() -> Arc<TestClock> {
        Arc::new(TestClock {
            now_ms: AtomicI64::new(START_MS),
        })
    }

    pub fn advance_ms(&self, ms: i64) {
        self.now_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix_ms(self.now_ms.load(Ordering::SeqCst))
    }
}

/// A fresh ledger on one backend: its store, a writer on the test clock, and one org account
/// (floor 0) named `acct_org_a`.
pub struct Ledger {
    pub store: Store,
    pub writer: LedgerWriter,
    pub clock: Arc<TestClock>,
    pub org: AccountId,
}

impl Ledger {
    pub async fn open(db: &TestDatabase) -> Ledger {
        let clock = TestClock::new();
        let store = db.open().await.expect("the test database opens");
        let org = create_org(&store, "acct_org_a").await;
        let writer = start_writer(&store, clock.clone()).await;
        Ledger {
            store,
            writer,
            clock,
            org,
        }
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Submits one operation; the batch itself must commit.
    pub async fn submit(&self, operation: Operation) -> Outcome {
        self.writer
            .submit(operation)
            .await
            .expect("the batch commits")
    }

    /// Submits one operation that must be newly created.
    pub async fn created(&self, operation: Operation) -> Receipt {
        let receipt = self
            .submit(operation.clone())
            .await
            .unwrap_or_else(|rejection| panic!("{operation:?} was rejected: {rejection:?}"));
        assert_eq!(receipt.status, Status::Created, "{operation:?}");
        receipt
    }

    /// Submits one operation that must be refused with `expected`.
    pub async fn rejected(&self, operation: Operation, expected: Rejection) {
        let outcome = self.submit(operation.clone()).await;
        assert_eq!(outcome, Err(expected), "{operation:?}");
    }

    pub async fn account(&self, id: &AccountId) -> Account {
        account(&self.store, id).await
    }

    pub async fn snapshot(&self) -> Snapshot {
        self.store.snapshot().await.expect("the snapshot loads")
    }
}

pub async fn start_writer(store: &Store, clock: Arc<TestClock>) -> LedgerWriter {
    store
        .start_writer(WriterConfig::default(), clock)
        .await
        .expect("the writer starts")
}

/// Creates an org credit account with floor 0.
pub async fn create_org(store: &Store, id: &str) -> AccountId {
    let id = AccountId::new(id);
    let account = Account::new(id.clone(), AccountKind::OrgCredit, Some(Amount::ZERO));
    store
        .create_account(&account, Timestamp::from_unix_ms(START_MS))
        .await
        .expect("the account is created");
    id
}

pub async fn account(store: &Store, id: &AccountId) -> Account {
    store
        .account(id)
        .await
        .expect("the account reads")
        .unwrap_or_else(|| panic!("account {id} exists"))
}

/// The check every test ends with. Returns the report so a test can look at its overspend.
pub async fn assert_invariants(store: &Store) -> InvariantReport {
    let report = store.check_invariants().await.expect("the snapshot loads");
    assert!(
        report.is_ok(),
        "ledger invariants violated on {}: {:#?}",
        store.backend_name(),
        report.violations
    );
    report
}

/// `"12.50"` → 12.50 units (`"-12.50"` for operator accounts that fund orgs).
pub fn money(text: &str) -> Amount {
    Amount::parse_with(text, Sign::Signed).expect("a valid amount literal")
}

pub fn operator(kind: AccountKind) -> AccountId {
    kind.operator_account_id().expect("an operator kind")
}

pub fn payments() -> AccountId {
    operator(AccountKind::PaymentsReceived)
}

pub fn promotions() -> AccountId {
    operator(AccountKind::PromotionalGrants)
}

pub fn revenue() -> AccountId {
    operator(AccountKind::UsageRevenue)
}

pub fn expired_credits() -> AccountId {
    operator(AccountKind::ExpiredCredits)
}

// --- operations as data ---------------------------------------------------------------------

/// A purchase into `org` with default grant terms (paid, no expiry).
pub fn purchase(id: &str, org: &AccountId, amount: Amount) -> Operation {
    credit(id, payments(), org, amount, TransferKind::Purchase, None)
}

/// Credits `org` from `source` with the given grant terms.
pub fn credit(
    id: &str,
    source: AccountId,
    org: &AccountId,
    amount: Amount,
    kind: TransferKind,
    grant: Option<GrantTerms>,
) -> Operation {
    Operation::Transfer(TransferRequest {
        id: TransferId::new(id),
        debit_account_id: source,
        credit_account_id: org.clone(),
        amount,
        kind,
        reference: format!("ref {id}"),
        grant,
    })
}

/// A promotional grant into `org`, at default priority.
pub fn promotional(
    id: &str,
    org: &AccountId,
    amount: Amount,
    expires_at: Option<Timestamp>,
) -> Operation {
    let terms = GrantTerms {
        origin: Origin::Promotional,
        priority: GRANT_PRIORITY_DEFAULT,
        expires_at,
    };
    credit(
        id,
        promotions(),
        org,
        amount,
        TransferKind::Grant,
        Some(terms),
    )
}

pub fn usage(id: &str, org: &AccountId, amount: Amount) -> Operation {
    Operation::RecordUsage(UsageRequest {
        id: TransferId::new(id),
        debit_account_id: org.clone(),
        credit_account_id: revenue(),
        amount,
        reference: format!("ref {id}"),
    })
}

pub fn place(id: &str, org: &AccountId, amount: Amount, ttl_ms: i64) -> Operation {
    Operation::PlaceHold(PlaceHoldRequest {
        id: HoldId::new(id),
        debit_account_id: org.clone(),
        credit_account_id: revenue(),
        amount,
        reference: format!("ref {id}"),
        ttl_ms,
    })
}

pub fn settle(id: &str, hold_id: &str, amount: Amount) -> Operation {
    Operation::SettleHold(SettleHoldRequest {
        id: TransferId::new(id),
        hold_id: HoldId::new(hold_id),
        amount,
    })
}

pub fn void(id: &str, hold_id: &str) -> Operation {
    Operation::VoidHold(VoidHoldRequest {
        id: TransferId::new(id),
        hold_id: HoldId::new(hold_id),
    })
}

pub fn expire_hold(hold_id: HoldId) -> Operation {
    Operation::ExpireHold(ExpireHoldRequest { hold_id })
}

pub fn expire_grant(account_id: AccountId, grant_id: GrantId) -> Operation {
    Operation::ExpireGrant(ExpireGrantRequest {
        account_id,
        grant_id,
    })
}

/// Each outcome's status, or its rejection.
pub fn statuses(outcomes: &[Outcome]) -> Vec<Result<Status, Rejection>> {
    outcomes
        .iter()
        .map(|outcome| {
            outcome
                .as_ref()
                .map(|receipt| receipt.status)
                .map_err(|r| *r)
        })
        .collect()
}

// --- reading a snapshot ---------------------------------------------------------------------

pub fn grant<'a>(snapshot: &'a Snapshot, id: &str) -> &'a Grant {
    snapshot
        .grants
        .iter()
        .find(|grant| grant.id.as_str() == id)
        .unwrap_or_else(|| panic!("grant {id} is stored"))
}

pub fn hold<'a>(snapshot: &'a Snapshot, id: &str) -> &'a Hold {
    snapshot
        .holds
        .iter()
        .find(|hold| hold.id.as_str() == id)
        .unwrap_or_else(|| panic!("hold {id} is stored"))
}

pub fn transfer<'a>(snapshot: &'a Snapshot, id: &str) -> &'a Transfer {
    find_transfer(snapshot, id).unwrap_or_else(|| panic!("transfer {id} is stored"))
}

pub fn find_transfer<'a>(snapshot: &'a Snapshot, id: &str) -> Option<&'a Transfer> {
    snapshot
        .transfers
        .iter()
        .find(|transfer| transfer.id.as_str() == id)
}
