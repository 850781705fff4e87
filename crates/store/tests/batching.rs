//! Group commit: operations from many callers share a transaction, and a refused operation
//! never fails its batch-mates.

mod support;

use std::sync::Arc;

use creditgate_domain::ledger::*;
use creditgate_domain::Amount;
use creditgate_store::{testing, LedgerWriter};
use support::*;
use tokio::sync::Barrier;

#[tokio::test]
async fn a_refused_operation_does_not_fail_its_batch_mates() {
    for db in testing::all().await {
        let ledger = Ledger::open(&db).await;
        let org = ledger.org.clone();
        ledger
            .created(purchase("txn_buy", &org, money("10.00")))
            .await;
        let missing = AccountId::new("acct_org_missing");
        let snapshot_before = ledger.snapshot().await;

        let outcomes = ledger
            .writer
            .submit_many(vec![
                place("hold_good_1", &org, money("3.00"), HOUR_MS),
                place("hold_too_big", &org, money("7.01"), HOUR_MS),
                usage("txn_good_2", &org, money("2.00")),
                expire_grant(missing.clone(), GrantId::new("txn_nothing")),
                purchase("txn_good_3", &org, money("5.00")),
            ])
            .await
            .expect("the batch commits");
        let results = statuses(&outcomes);
        assert_eq!(
            results,
            [
                Ok(Status::Created),
                Err(Rejection::InsufficientFunds),
                Ok(Status::Created),
                Err(Rejection::AccountNotFound),
                Ok(Status::Created),
            ]
        );

        let account = ledger.account(&org).await;
        assert_eq!(
            (account.posted, account.reserved, account.available()),
            (money("13.00"), money("3.00"), money("10.00"))
        );
        assert_eq!(ledger.store.account(&missing).await.unwrap(), None);
        let snapshot = ledger.snapshot().await;
        let holds: Vec<_> = snapshot.holds.iter().map(|hold| hold.id.as_str()).collect();
        assert_eq!(holds, ["hold_good_1"]);
        let new_transfers: Vec<_> = snapshot.transfers[snapshot_before.transfers.len()..]
            .iter()
            .map(|transfer| transfer.id.as_str())
            .collect();
        assert_eq!(new_transfers, ["txn_good_2", "txn_good_3"]);
        assert!(!snapshot
            .grants
            .iter()
            .any(|grant| grant.id.as_str() == "txn_nothing"));
        assert_invariants(&ledger.store).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_submissions_share_batches() {
    const CALLERS: usize = 256;
    for db in testing::all().await {
        let ledger = Ledger::open(&db).await;
        let org = ledger.org.clone();
        ledger
            .created(purchase("txn_buy", &org, money("1000.00")))
            .await;
        // A writer of their own, so its counters start at zero.
        let writer = start_writer(&ledger.store, ledger.clock.clone()).await;

        let start = Arc::new(Barrier::new(CALLERS));
        let tasks: Vec<_> = (0..CALLERS)
            .map(|caller| {
                let writer = writer.clone();
                let start = start.clone();
                let operation = usage(&format!("txn_use_{caller}"), &org, money("1.00"));
                tokio::spawn(async move {
                    start.wait().await;
                    writer.submit(operation).await
                })
            })
            .collect();
        for task in tasks {
            let receipt = task
                .await
                .expect("the caller finishes")
                .expect("the batch commits")
                .expect("usage is recorded");
            assert_eq!(receipt.status, Status::Created);
        }

        let (batches, operations) = settled_stats(&writer, CALLERS as u64).await;
        assert_eq!(operations, CALLERS as u64);
        assert!(
            batches < operations,
            "{}: {batches} batches for {operations} operations",
            ledger.store.backend_name()
        );
        eprintln!(
            "{}: {CALLERS} concurrent submissions in {batches} batches",
            ledger.store.backend_name()
        );
        let account = ledger.account(&org).await;
        assert_eq!(account.posted, money("744.00"));
        let report = assert_invariants(&ledger.store).await;
        assert_eq!(report.overspend, Amount::ZERO);
    }
}

/// The writer's counters once they show `operations`: it counts a batch just after answering
/// its callers, so the last batch may not be counted yet when the last caller returns.
async fn settled_stats(writer: &LedgerWriter, operations: u64) -> (u64, u64) {
    for _ in 0..100_000 {
        let stats = writer.stats();
        if stats.1 >= operations {
            return stats;
        }
        tokio::task::yield_now().await;
    }
    writer.stats()
}
