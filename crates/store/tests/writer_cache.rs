//! The SQLite writer keeps the accounts and open grants of earlier batches in memory (its row
//! cache), and assumes a new transfer's id is free until the unique index says otherwise.
//! These tests change those rows from outside the writer, between two of its batches, and
//! check that the next batch decides on what is in the database: an org's floor lowered by an
//! org update, and debits by a second writer on the same database (a second process). They
//! run on both backends; PostgreSQL has no cache, and must answer the same.

mod support;

use creditgate_domain::ledger::*;
use creditgate_domain::Amount;
use creditgate_store::api::{NewOrg, OrgPatch};
use creditgate_store::testing;
use support::*;

async fn org(ledger: &Ledger, id: &str) -> AccountId {
    ledger
        .store
        .create_org(
            &NewOrg {
                id: id.into(),
                name: "Cache Co".into(),
                billing_emails: vec![],
                low_thresholds: vec![],
                floor: Amount::ZERO,
                spend_limit_monthly: None,
                rate_limits: Default::default(),
            },
            ledger.now(),
        )
        .await
        .expect("the org is created");
    AccountId::new(id)
}

#[tokio::test]
async fn a_floor_lowered_by_an_org_update_counts_in_the_next_batch() {
    for db in testing::all().await {
        let ledger = Ledger::open(&db).await;
        let org = org(&ledger, "org_cache").await;
        ledger
            .created(purchase("txn_buy", &org, money("10.00")))
            .await;
        ledger.created(usage("txn_use", &org, money("4.00"))).await;
        // 6.00 left, floor 0: a 10.00 hold does not fit.
        ledger
            .rejected(
                place("hold_big", &org, money("10.00"), HOUR_MS),
                Rejection::InsufficientFunds,
            )
            .await;
        ledger
            .store
            .update_org(
                org.as_str(),
                &OrgPatch {
                    floor: Some(money("-5.00")),
                    ..OrgPatch::default()
                },
                ledger.now(),
            )
            .await
            .expect("the floor is lowered");
        // Floor -5: now it does (6 - 10 = -4).
        let placed = ledger
            .created(place("hold_big", &org, money("10.00"), HOUR_MS))
            .await;
        assert_eq!(placed.hold.map(|h| h.amount), Some(money("10.00")));
        assert_eq!(ledger.account(&org).await.available(), money("-4.00"));
        assert_invariants(&ledger.store).await;
    }
}

#[tokio::test]
async fn a_second_writer_on_the_same_database_is_seen_by_the_first() {
    for db in testing::all().await {
        let ledger = Ledger::open(&db).await;
        let org = ledger.org.clone();
        ledger
            .created(purchase("txn_buy", &org, money("10.00")))
            .await;
        let first = ledger.created(usage("txn_a1", &org, money("1.00"))).await;
        assert_eq!(
            first.transfer.map(|t| t.debit_balance_after),
            Some(money("9.00"))
        );

        let other_store = db.open().await.expect("the database opens again");
        let other = start_writer(&other_store, ledger.clock.clone()).await;
        let theirs = other
            .submit(usage("txn_b1", &org, money("2.00")))
            .await
            .expect("the batch commits")
            .expect("the debit is made");
        assert_eq!(
            theirs.transfer.map(|t| t.debit_balance_after),
            Some(money("7.00"))
        );

        // The first writer's next batch starts from 7.00, not from the 9.00 it wrote.
        let next = ledger.created(usage("txn_a2", &org, money("1.00"))).await;
        assert_eq!(
            next.transfer.map(|t| t.debit_balance_after),
            Some(money("6.00"))
        );
        // An id the other writer took is a repeat here too, and changes nothing.
        let repeat = ledger
            .submit(usage("txn_b1", &org, money("2.00")))
            .await
            .expect("the repeat is answered");
        assert_eq!(repeat.status, Status::Exists);
        ledger
            .rejected(
                usage("txn_b1", &org, money("3.00")),
                Rejection::ExistsWithDifferentFields,
            )
            .await;
        ledger
            .rejected(
                place("hold_all", &org, money("6.01"), HOUR_MS),
                Rejection::InsufficientFunds,
            )
            .await;
        assert_eq!(ledger.account(&org).await.available(), money("6.00"));
        drop(other);
        assert_invariants(&ledger.store).await;
    }
}

/// A plain transfer out of an org, as an operator's negative adjustment makes.
fn debit(id: &str, org: &AccountId, amount: Amount) -> Operation {
    Operation::Transfer(TransferRequest {
        id: TransferId::new(id),
        debit_account_id: org.clone(),
        credit_account_id: revenue(),
        amount,
        kind: TransferKind::Adjustment,
        reference: format!("ref {id}"),
        grant: None,
    })
}

/// A repeat whose first run drained the org would fail the funds check if it were decided
/// as new; it must answer `exists` (and a changed repeat `exists_with_different_fields`),
/// in a later batch and in the same batch as other work, and change nothing.
#[tokio::test]
async fn a_repeat_that_no_longer_fits_is_exists_not_a_refusal() {
    for db in testing::all().await {
        let ledger = Ledger::open(&db).await;
        let org = ledger.org.clone();
        ledger
            .created(purchase("txn_buy", &org, money("5.00")))
            .await;
        let first = ledger.created(debit("txn_out", &org, money("5.00"))).await;

        let repeat = ledger
            .submit(debit("txn_out", &org, money("5.00")))
            .await
            .expect("the repeat is answered");
        assert_eq!(repeat.status, Status::Exists);
        assert_eq!(repeat.transfer, first.transfer);
        ledger
            .rejected(
                debit("txn_out", &org, money("4.00")),
                Rejection::ExistsWithDifferentFields,
            )
            .await;

        // In one batch with a new purchase and a new debit that does not fit.
        let outcomes = ledger
            .writer
            .submit_many(vec![
                purchase("txn_buy_2", &org, money("1.00")),
                debit("txn_out", &org, money("5.00")),
                debit("txn_too_much", &org, money("2.00")),
            ])
            .await
            .expect("the batch commits");
        assert_eq!(
            statuses(&outcomes),
            [
                Ok(Status::Created),
                Ok(Status::Exists),
                Err(Rejection::InsufficientFunds)
            ]
        );
        assert_eq!(ledger.account(&org).await.available(), money("1.00"));
        assert_eq!(ledger.snapshot().await.transfers.len(), 3);
        assert_invariants(&ledger.store).await;
    }
}
