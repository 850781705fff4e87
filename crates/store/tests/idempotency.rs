//! Every operation's id is its idempotency key: a repeat with the same fields answers `Exists`
//! with what was recorded the first time, in a later batch, after the store is reopened, and
//! within the same batch; a repeat with different fields is refused. Repeats change nothing.

mod support;

use creditgate_domain::ledger::*;
use creditgate_store::testing;
use support::*;

#[tokio::test]
async fn repeats_answer_the_first_result_across_batches_and_a_reopened_store() {
    for db in testing::all().await {
        let ledger = Ledger::open(&db).await;
        let org = ledger.org.clone();
        let bought = ledger
            .created(purchase("txn_buy", &org, money("20.00")))
            .await;
        let used = ledger.created(usage("txn_use", &org, money("2.00"))).await;
        let placed = ledger
            .created(place("hold_a", &org, money("5.00"), HOUR_MS))
            .await;
        let settled = ledger
            .created(settle("txn_settle", "hold_a", money("4.00")))
            .await;
        let balance = ledger.account(&org).await;
        let transfers = ledger.snapshot().await.transfers.len();

        // A later batch, at a later time: the stored results come back unchanged.
        ledger.clock.advance_ms(SECOND_MS);
        assert_repeats(&ledger, &org, [&bought, &used, &placed, &settled]).await;
        assert_eq!(ledger.account(&org).await, balance);
        assert_eq!(ledger.snapshot().await.transfers.len(), transfers);
        assert_invariants(&ledger.store).await;

        // The same, after the writer and the store are dropped and the database reopened.
        let Ledger { clock, .. } = ledger;
        let store = db.open().await.expect("the database reopens");
        let writer = start_writer(&store, clock.clone()).await;
        let ledger = Ledger {
            store,
            writer,
            clock,
            org: org.clone(),
        };
        ledger.clock.advance_ms(SECOND_MS);
        assert_repeats(&ledger, &org, [&bought, &used, &placed, &settled]).await;
        assert_eq!(ledger.account(&org).await, balance);
        assert_eq!(ledger.snapshot().await.transfers.len(), transfers);
        assert_invariants(&ledger.store).await;
    }
}

#[tokio::test]
async fn repeats_within_one_batch() {
    for db in testing::all().await {
        let ledger = Ledger::open(&db).await;
        let org = ledger.org.clone();
        let outcomes = ledger
            .writer
            .submit_many(vec![
                purchase("txn_buy", &org, money("20.00")),
                purchase("txn_buy", &org, money("20.00")),
                purchase("txn_buy", &org, money("21.00")),
                place("hold_a", &org, money("5.00"), HOUR_MS),
                place("hold_a", &org, money("5.00"), HOUR_MS),
                place("hold_a", &org, money("6.00"), HOUR_MS),
                settle("txn_settle", "hold_a", money("5.00")),
                settle("txn_settle", "hold_a", money("5.00")),
                settle("txn_settle", "hold_a", money("4.00")),
            ])
            .await
            .expect("the batch commits");
        let receipts = statuses(&outcomes);
        let (created, exists, different) = (
            Ok(Status::Created),
            Ok(Status::Exists),
            Err(Rejection::ExistsWithDifferentFields),
        );
        assert_eq!(
            receipts,
            [created, exists, different, created, exists, different, created, exists, different]
        );
        let first = |index: usize| outcomes[index].as_ref().expect("created");
        let repeat = |index: usize| outcomes[index].as_ref().expect("exists");
        assert_eq!(repeat(1).transfer, first(0).transfer);
        assert_eq!(repeat(4).hold, first(3).hold);
        assert_eq!(repeat(7).transfer, first(6).transfer);

        let account = ledger.account(&org).await;
        assert_eq!(
            (account.posted, account.reserved),
            (money("15.00"), money("0.00"))
        );
        let snapshot = ledger.snapshot().await;
        assert_eq!(
            snapshot.transfers.len(),
            2,
            "one purchase and one settlement"
        );
        assert_eq!(snapshot.holds.len(), 1);
        assert_invariants(&ledger.store).await;
    }
}

/// Repeats each of `first` (purchase, usage, placement, settlement, in that order) with the
/// same fields, expecting the first result, and with different fields, expecting a refusal.
async fn assert_repeats(ledger: &Ledger, org: &AccountId, first: [&Receipt; 4]) {
    let [bought, used, placed, settled] = first;
    let same = [
        purchase("txn_buy", org, money("20.00")),
        usage("txn_use", org, money("2.00")),
        place("hold_a", org, money("5.00"), HOUR_MS),
        settle("txn_settle", "hold_a", money("4.00")),
    ];
    for (operation, first) in same.into_iter().zip([bought, used, placed, settled]) {
        let receipt = ledger
            .submit(operation.clone())
            .await
            .unwrap_or_else(|rejection| panic!("{operation:?}: {rejection:?}"));
        assert_eq!(receipt.status, Status::Exists, "{operation:?}");
        assert_eq!(receipt.transfer, first.transfer, "{operation:?}");
        // The hold comes back as it is now (a placement repeated after the settlement sees it
        // settled); what was placed must not have changed.
        let placement = |hold: &Option<Hold>| {
            hold.as_ref()
                .map(|h| (h.id.clone(), h.amount, h.created_at, h.expires_at))
        };
        assert_eq!(
            placement(&receipt.hold),
            placement(&first.hold),
            "{operation:?}"
        );
    }
    let different = [
        purchase("txn_buy", org, money("20.01")),
        credit(
            "txn_buy",
            promotions(),
            org,
            money("20.00"),
            TransferKind::Grant,
            None,
        ),
        usage("txn_use", org, money("3.00")),
        // A transfer id already used by usage cannot name a purchase, and the other way round.
        purchase("txn_use", org, money("2.00")),
        usage("txn_buy", org, money("20.00")),
        place("hold_a", org, money("5.00"), 2 * HOUR_MS),
        place("hold_a", org, money("6.00"), HOUR_MS),
        settle("txn_settle", "hold_a", money("4.50")),
        void("txn_settle", "hold_a"),
    ];
    for operation in different {
        let outcome = ledger.submit(operation.clone()).await;
        assert_eq!(
            outcome,
            Err(Rejection::ExistsWithDifferentFields),
            "{operation:?}"
        );
    }
}
