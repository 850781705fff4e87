//! Races on one org's last credits: many concurrent callers, each asking more than its fair
//! share, through one writer or two (two `Store::open` + `start_writer` on one database, as
//! two processes would). Whatever the interleaving, the created holds never exceed what was
//! available, nothing is overspent, every caller gets exactly one answer, and a refusal
//! happens only when the caller really asked for more than was left.

mod support;

use std::sync::Arc;

use creditgate_domain::ledger::*;
use creditgate_domain::Amount;
use creditgate_store::testing::{self, TestDatabase};
use creditgate_store::{LedgerWriter, Store};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use support::*;
use tokio::sync::Barrier;

const FUNDED: &str = "100.00";
const CALLER_COUNTS: [usize; 3] = [16, 64, 256];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_writer_never_overspends_the_last_credits() {
    for callers in CALLER_COUNTS {
        for db in testing::all().await {
            race(&db, callers, 1).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_never_overspend_the_last_credits() {
    for callers in CALLER_COUNTS {
        for db in testing::all().await {
            race(&db, callers, 2).await;
        }
    }
}

/// Regression test: two writers (two processes) placing the same new hold id at the same
/// time must reserve it once — one `Created`, one `Exists` — not twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_placing_the_same_hold_id_reserve_it_once() {
    const ROUNDS: usize = 32;
    for db in testing::all().await {
        let (stores, writers, org) = open_writers(&db, 2).await;
        writers[0]
            .submit(purchase("txn_fund", &org, money(FUNDED)))
            .await
            .expect("the batch commits")
            .expect("the purchase is recorded");
        let mut doubled = Vec::new();
        for round in 0..ROUNDS {
            let operation = place(&format!("hold_{round}"), &org, money("1.00"), HOUR_MS);
            let (first, second) = tokio::join!(
                writers[0].submit(operation.clone()),
                writers[1].submit(operation)
            );
            let mut statuses = [first, second].map(|outcome| {
                outcome
                    .expect("the batch commits")
                    .unwrap_or_else(|rejection| panic!("hold_{round}: {rejection:?}"))
                    .status
            });
            statuses.sort_by_key(|status| *status == Status::Exists);
            if statuses != [Status::Created, Status::Exists] {
                doubled.push(round);
            }
        }
        let backend = stores[0].backend_name();
        let account = account(&stores[0], &org).await;
        assert_eq!(
            (doubled.len(), account.reserved),
            (0, money("32.00")),
            "{backend}: hold ids created by both writers in rounds {doubled:?}"
        );
        assert_invariants(&stores[0]).await;
    }
}

/// One race: `callers` tasks each try to hold more than `FUNDED / callers` of one org's
/// credits, spread over `writer_count` writers; then every created hold is settled in full.
async fn race(db: &TestDatabase, callers: usize, writer_count: usize) {
    let (stores, writers, org) = open_writers(db, writer_count).await;
    let store = &stores[0];
    let label = format!(
        "{} with {callers} callers, {writer_count} writer(s)",
        store.backend_name()
    );
    writers[0]
        .submit(purchase("txn_fund", &org, money(FUNDED)))
        .await
        .expect("the batch commits")
        .expect("the purchase is recorded");

    let amounts = greedy_amounts(callers, (callers * 10 + writer_count) as u64);
    let placements = amounts
        .iter()
        .enumerate()
        .map(|(caller, &amount)| place(&format!("hold_{caller}"), &org, amount, HOUR_MS))
        .collect();
    let outcomes = run_concurrently(&writers, placements).await;
    let mut held = Vec::new();
    let mut refused = Vec::new();
    for (caller, outcome) in outcomes.into_iter().enumerate() {
        match outcome {
            Ok(receipt) if receipt.status == Status::Created => held.push(caller),
            Err(Rejection::InsufficientFunds) => refused.push(caller),
            other => panic!("{label}: caller {caller} got {other:?}"),
        }
    }
    assert_eq!(held.len() + refused.len(), callers, "{label}");
    let held_total = total(held.iter().map(|&caller| amounts[caller]));
    let funded = money(FUNDED);
    assert!(
        held_total <= funded,
        "{label}: held {held_total} of {funded}"
    );
    assert!(!held.is_empty(), "{label}: nobody got a hold");
    eprintln!(
        "{label}: {} holds for {held_total}, {} refused",
        held.len(),
        refused.len()
    );

    let account = account(store, &org).await;
    let left = funded.checked_sub(held_total).expect("held ≤ funded");
    assert_eq!(
        (account.posted, account.reserved, account.available()),
        (funded, held_total, left),
        "{label}"
    );
    assert!(!account.available().is_negative(), "{label}");
    assert_eq!(account.overspend, Amount::ZERO, "{label}");
    // Only placements ran, so what was left only shrank: every refused caller asked for more
    // than what is left now.
    for &caller in &refused {
        assert!(
            amounts[caller] > left,
            "{label}: caller {caller} asked {} and was refused with {left} left",
            amounts[caller]
        );
    }
    let report = assert_invariants(store).await;
    assert_eq!(report.overspend, Amount::ZERO, "{label}");

    settle_all(&writers, &held, &amounts, &label).await;
    let account = support::account(store, &org).await;
    assert_eq!(
        (account.posted, account.reserved, account.overspend),
        (left, Amount::ZERO, Amount::ZERO),
        "{label}"
    );
    assert_eq!(support::account(store, &revenue()).await.posted, held_total);
    let report = assert_invariants(store).await;
    assert_eq!(report.overspend, Amount::ZERO, "{label}");
}

/// Settles every created hold for its full amount, concurrently, over all writers.
async fn settle_all(writers: &[LedgerWriter], held: &[usize], amounts: &[Amount], label: &str) {
    let settlements = held
        .iter()
        .map(|&caller| {
            settle(
                &format!("txn_settle_{caller}"),
                &format!("hold_{caller}"),
                amounts[caller],
            )
        })
        .collect();
    for outcome in run_concurrently(writers, settlements).await {
        let receipt = outcome.unwrap_or_else(|rejection| panic!("{label}: {rejection:?}"));
        assert_eq!(receipt.status, Status::Created, "{label}");
        assert_eq!(
            receipt.transfer.expect("a settlement transfer").overspend,
            Amount::ZERO,
            "{label}"
        );
    }
}

/// Opens `count` stores on `db`, each with its own writer on one shared clock, and an org.
async fn open_writers(
    db: &TestDatabase,
    count: usize,
) -> (Vec<Store>, Vec<LedgerWriter>, AccountId) {
    let clock = TestClock::new();
    let mut stores = Vec::new();
    let mut writers = Vec::new();
    for _ in 0..count {
        let store = db.open().await.expect("the test database opens");
        writers.push(start_writer(&store, clock.clone()).await);
        stores.push(store);
    }
    let org = create_org(&stores[0], "acct_org_race").await;
    (stores, writers, org)
}

/// Each caller asks 1.5× to 4.5× its fair share, with odd micros so no two sums tie.
fn greedy_amounts(callers: usize, seed: u64) -> Vec<Amount> {
    let mut rng = StdRng::seed_from_u64(seed);
    let fair = money(FUNDED).micros() / callers as i64;
    (0..callers)
        .map(|_| {
            let percent = rng.gen_range(150..=450);
            Amount::from_micros(fair * percent / 100 + rng.gen_range(1..1_000))
        })
        .collect()
}

/// Submits every operation from its own task, all released at once, spread over the writers;
/// returns the outcomes in the operations' order.
async fn run_concurrently(writers: &[LedgerWriter], operations: Vec<Operation>) -> Vec<Outcome> {
    let start = Arc::new(Barrier::new(operations.len()));
    let tasks: Vec<_> = operations
        .into_iter()
        .enumerate()
        .map(|(index, operation)| spawn_submit(&writers[index % writers.len()], operation, &start))
        .collect();
    let mut outcomes = Vec::with_capacity(tasks.len());
    for task in tasks {
        outcomes.push(task.await.expect("the caller finishes"));
    }
    outcomes
}

fn spawn_submit(
    writer: &LedgerWriter,
    operation: Operation,
    start: &Arc<Barrier>,
) -> tokio::task::JoinHandle<Outcome> {
    let writer = writer.clone();
    let start = start.clone();
    tokio::spawn(async move {
        start.wait().await;
        writer.submit(operation).await.expect("the batch commits")
    })
}

fn total(amounts: impl Iterator<Item = Amount>) -> Amount {
    amounts.fold(Amount::ZERO, |sum, amount| {
        sum.checked_add(amount).expect("test amounts are small")
    })
}
