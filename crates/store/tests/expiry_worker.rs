//! The expiry worker's step: what is due at a given time is expired once, by any number of
//! steps (or workers), and nothing that is not due is touched.

mod support;

use creditgate_domain::ledger::*;
use creditgate_domain::Amount;
use creditgate_store::expiry::{self, Outcome as Step};
use creditgate_store::testing;
use support::*;

#[tokio::test]
async fn run_once_expires_due_holds_and_grants_once() {
    for db in testing::all().await {
        let ledger = Ledger::open(&db).await;
        let org = ledger.org.clone();
        let in_an_hour = ledger.now().plus_ms(HOUR_MS);
        ledger
            .created(promotional(
                "txn_promo",
                &org,
                money("5.00"),
                Some(in_an_hour),
            ))
            .await;
        ledger
            .created(purchase("txn_paid", &org, money("10.00")))
            .await;
        ledger
            .created(place("hold_short", &org, money("2.00"), SECOND_MS))
            .await;
        ledger
            .created(place("hold_long", &org, money("1.00"), 2 * HOUR_MS))
            .await;

        let nothing = expiry::run_once(&ledger.store, &ledger.writer, ledger.now())
            .await
            .unwrap();
        assert_eq!(nothing, Step::default(), "nothing is due yet");

        ledger.clock.advance_ms(SECOND_MS);
        let step = expiry::run_once(&ledger.store, &ledger.writer, ledger.now())
            .await
            .unwrap();
        assert_eq!(
            step,
            Step {
                holds_expired: 1,
                grants_expired: 0
            }
        );

        ledger.clock.advance_ms(HOUR_MS);
        let step = expiry::run_once(&ledger.store, &ledger.writer, ledger.now())
            .await
            .unwrap();
        assert_eq!(
            step,
            Step {
                holds_expired: 0,
                grants_expired: 1
            }
        );
        // A second worker (or a repeated step) finds nothing left to do.
        let again = expiry::run_once(&ledger.store, &ledger.writer, ledger.now())
            .await
            .unwrap();
        assert_eq!(again, Step::default());

        // hold_long reserved 1.00 of the promotional grant, which stays until it closes;
        // the other 4.00 expired.
        let account = ledger.account(&org).await;
        assert_eq!(account.posted, money("11.00"));
        assert_eq!(account.reserved, money("1.00"));
        assert_eq!(
            ledger.account(&expired_credits()).await.posted,
            money("4.00")
        );
        let snapshot = ledger.snapshot().await;
        assert_eq!(hold(&snapshot, "hold_short").state, HoldState::Expired);
        assert_eq!(hold(&snapshot, "hold_long").state, HoldState::Open);
        assert_eq!(grant(&snapshot, "txn_promo").expired, money("4.00"));

        // Closing hold_long later expires what it releases of the expired grant.
        ledger.created(void("txn_void_long", "hold_long")).await;
        assert_eq!(
            ledger.account(&expired_credits()).await.posted,
            money("5.00")
        );
        assert_eq!(ledger.account(&org).await.available(), money("10.00"));
        assert_eq!(ledger.account(&org).await.overspend, Amount::ZERO);
        assert_invariants(&ledger.store).await;
    }
}
