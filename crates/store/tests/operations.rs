//! Every operation kind through the writer, end to end, on both backends: balances read back
//! from the store, transfers, holds and grants from its snapshot.

mod support;

use creditgate_domain::ledger::*;
use creditgate_domain::Amount;
use creditgate_store::testing;
use support::*;

#[tokio::test]
async fn purchase_keeps_its_grant_terms_and_promotional_credits_are_consumed_first() {
    for db in testing::all().await {
        let ledger = Ledger::open(&db).await;
        let org = ledger.org.clone();
        let t0 = ledger.now();
        // Same priority, and the paid grant is older and expires sooner: only its origin puts
        // the promotional grant first.
        let paid_terms = GrantTerms {
            origin: Origin::Paid,
            priority: GRANT_PRIORITY_DEFAULT,
            expires_at: Some(t0.plus_ms(7 * DAY_MS)),
        };
        let paid = ledger
            .created(credit(
                "txn_paid",
                payments(),
                &org,
                money("50.00"),
                TransferKind::Purchase,
                Some(paid_terms),
            ))
            .await;
        let paid = paid.transfer.expect("a purchase records a transfer");
        assert_eq!(paid.kind, TransferKind::Purchase);
        assert_eq!(paid.grant_id, Some(GrantId::new("txn_paid")));
        assert_eq!(paid.credit_balance_after, money("50.00"));
        assert_eq!(paid.debit_balance_after, money("-50.00"));
        ledger.clock.advance_ms(SECOND_MS);
        let promo_expiry = t0.plus_ms(30 * DAY_MS);
        ledger
            .created(promotional(
                "txn_promo",
                &org,
                money("10.00"),
                Some(promo_expiry),
            ))
            .await;

        let used = ledger.created(usage("txn_use", &org, money("15.00"))).await;
        assert_eq!(
            used.transfer
                .expect("usage is a transfer")
                .debit_balance_after,
            money("45.00")
        );

        let account = ledger.account(&org).await;
        assert_eq!(account.posted, money("45.00"));
        assert_eq!(account.available(), money("45.00"));
        assert_eq!(ledger.account(&revenue()).await.posted, money("15.00"));
        assert_eq!(ledger.account(&payments()).await.posted, money("-50.00"));
        assert_eq!(ledger.account(&promotions()).await.posted, money("-10.00"));
        let snapshot = ledger.snapshot().await;
        let promo = grant(&snapshot, "txn_promo");
        assert_eq!(promo.terms.origin, Origin::Promotional);
        assert_eq!(promo.terms.expires_at, Some(promo_expiry));
        assert_eq!(promo.consumed, money("10.00"));
        let paid = grant(&snapshot, "txn_paid");
        assert_eq!(paid.terms, paid_terms);
        assert_eq!(paid.created_at, t0);
        assert_eq!(paid.consumed, money("5.00"));
        assert_eq!(paid.remaining(), money("45.00"));
        let report = assert_invariants(&ledger.store).await;
        assert_eq!(report.overspend, Amount::ZERO);
    }
}

#[tokio::test]
async fn holds_settle_for_less_settle_for_more_with_overspend_and_void() {
    for db in testing::all().await {
        let ledger = Ledger::open(&db).await;
        let org = ledger.org.clone();
        ledger
            .created(purchase("txn_buy", &org, money("50.00")))
            .await;

        // Place 20, settle 12: 12 charged, 8 released.
        let placed = ledger
            .created(place("hold_a", &org, money("20.00"), 60 * SECOND_MS))
            .await;
        let placed = placed.hold.expect("a placement returns its hold");
        assert_eq!(placed.state, HoldState::Open);
        assert_eq!(placed.expires_at, ledger.now().plus_ms(60 * SECOND_MS));
        let account = ledger.account(&org).await;
        assert_eq!(
            (account.posted, account.reserved, account.available()),
            (money("50.00"), money("20.00"), money("30.00"))
        );
        let settled = ledger
            .created(settle("txn_settle_a", "hold_a", money("12.00")))
            .await;
        let charge = settled.transfer.expect("a settlement records a transfer");
        assert_eq!(charge.amount, money("12.00"));
        assert_eq!(charge.kind, TransferKind::Usage);
        assert_eq!(charge.hold_id, Some(HoldId::new("hold_a")));
        let account = ledger.account(&org).await;
        assert_eq!(
            (account.posted, account.reserved),
            (money("38.00"), Amount::ZERO)
        );

        // Place 5, void: nothing charged.
        ledger
            .created(place("hold_b", &org, money("5.00"), 60 * SECOND_MS))
            .await;
        let voided = ledger.created(void("txn_void_b", "hold_b")).await;
        assert_eq!(voided.transfer, None);
        assert_eq!(
            voided.hold.expect("the closed hold").state,
            HoldState::Voided
        );
        ledger
            .rejected(
                settle("txn_late", "hold_b", money("1.00")),
                Rejection::HoldAlreadyClosed,
            )
            .await;
        let account = ledger.account(&org).await;
        assert_eq!(
            (account.posted, account.reserved),
            (money("38.00"), Amount::ZERO)
        );

        // Place 10, settle 50: usage that already happened is recorded, 12 of it below the floor.
        ledger
            .created(place("hold_c", &org, money("10.00"), 60 * SECOND_MS))
            .await;
        let settled = ledger
            .created(settle("txn_settle_c", "hold_c", money("50.00")))
            .await;
        let charge = settled.transfer.expect("a settlement records a transfer");
        assert_eq!(charge.amount, money("50.00"));
        assert_eq!(charge.overspend, money("12.00"));
        let account = ledger.account(&org).await;
        assert_eq!(account.posted, money("-12.00"));
        assert_eq!(account.reserved, Amount::ZERO);
        assert_eq!(account.overspend, money("12.00"));
        assert_eq!(account.unbacked, money("12.00"));
        assert_eq!(ledger.account(&revenue()).await.posted, money("62.00"));

        let snapshot = ledger.snapshot().await;
        let states: Vec<_> = ["hold_a", "hold_b", "hold_c"]
            .iter()
            .map(|id| {
                let hold = hold(&snapshot, id);
                (hold.state, hold.settled_amount, hold.closed_by.clone())
            })
            .collect();
        assert_eq!(
            states,
            [
                (
                    HoldState::Settled,
                    Some(money("12.00")),
                    Some(TransferId::new("txn_settle_a"))
                ),
                (HoldState::Voided, None, Some(TransferId::new("txn_void_b"))),
                (
                    HoldState::Settled,
                    Some(money("50.00")),
                    Some(TransferId::new("txn_settle_c"))
                ),
            ]
        );
        assert_eq!(grant(&snapshot, "txn_buy").consumed, money("50.00"));
        let report = assert_invariants(&ledger.store).await;
        assert_eq!(report.overspend, money("12.00"));
    }
}

#[tokio::test]
async fn holds_expire_once_their_ttl_has_passed() {
    for db in testing::all().await {
        let ledger = Ledger::open(&db).await;
        let org = ledger.org.clone();
        ledger
            .created(purchase("txn_buy", &org, money("10.00")))
            .await;
        ledger
            .created(place("hold_x", &org, money("4.00"), SECOND_MS))
            .await;
        ledger
            .created(place("hold_y", &org, money("3.00"), 5 * SECOND_MS))
            .await;
        let hold_x = HoldId::new("hold_x");

        ledger.clock.advance_ms(SECOND_MS - 1);
        assert!(ledger
            .store
            .due_holds(ledger.now(), 10)
            .await
            .unwrap()
            .is_empty());
        ledger
            .rejected(expire_hold(hold_x.clone()), Rejection::HoldNotExpired)
            .await;

        ledger.clock.advance_ms(1);
        let due = ledger.store.due_holds(ledger.now(), 10).await.unwrap();
        assert_eq!(due, std::slice::from_ref(&hold_x));
        // Past its TTL a hold can no longer be settled or voided, only expired.
        ledger
            .rejected(
                settle("txn_late", "hold_x", money("1.00")),
                Rejection::HoldExpired,
            )
            .await;
        ledger
            .rejected(void("txn_void_x", "hold_x"), Rejection::HoldExpired)
            .await;
        let expired = ledger.created(expire_hold(hold_x.clone())).await;
        let expired = expired.hold.expect("the closed hold");
        assert_eq!(expired.state, HoldState::Expired);
        assert_eq!(expired.closed_by, Some(TransferId::new("hold_x:expiry")));
        assert_eq!(expired.closed_at, Some(ledger.now()));
        let again = ledger.submit(expire_hold(hold_x)).await.unwrap();
        assert_eq!(again.status, Status::Exists);
        assert!(ledger
            .store
            .due_holds(ledger.now(), 10)
            .await
            .unwrap()
            .is_empty());
        let account = ledger.account(&org).await;
        assert_eq!(
            (account.posted, account.reserved),
            (money("10.00"), money("3.00"))
        );

        // Two more, both due later: `limit` bounds the answer, oldest expiry first.
        ledger
            .created(place("hold_p", &org, money("1.00"), 100))
            .await;
        ledger
            .created(place("hold_q", &org, money("1.00"), 200))
            .await;
        ledger.clock.advance_ms(5 * SECOND_MS);
        let first = ledger.store.due_holds(ledger.now(), 1).await.unwrap();
        assert_eq!(first, [HoldId::new("hold_p")]);
        let due = ledger.store.due_holds(ledger.now(), 10).await.unwrap();
        assert_eq!(due.len(), 3);
        let operations = due.into_iter().map(expire_hold).collect();
        let outcomes = ledger.writer.submit_many(operations).await.unwrap();
        assert!(outcomes
            .iter()
            .all(|outcome| matches!(outcome, Ok(receipt) if receipt.status == Status::Created)));
        let account = ledger.account(&org).await;
        assert_eq!(
            (account.posted, account.reserved),
            (money("10.00"), Amount::ZERO)
        );
        assert_eq!(ledger.account(&revenue()).await.posted, Amount::ZERO);
        assert_invariants(&ledger.store).await;
    }
}

/// A promotional grant of 10 with two open holds on 9 of it expires: 1 goes at once, and the
/// rest goes as each hold closes (settled for 2: 4 expire; voided: its 3 expire).
#[tokio::test]
async fn grant_expiry_expires_the_reserved_part_when_its_hold_closes() {
    for db in testing::all().await {
        let ledger = Ledger::open(&db).await;
        let org = ledger.org.clone();
        let expires_at = ledger.now().plus_ms(SECOND_MS);
        ledger
            .created(promotional(
                "txn_promo",
                &org,
                money("10.00"),
                Some(expires_at),
            ))
            .await;
        ledger
            .created(purchase("txn_buy", &org, money("50.00")))
            .await;
        for (id, amount) in [("hold_a", "6.00"), ("hold_b", "3.00")] {
            let placed = ledger
                .created(place(id, &org, money(amount), HOUR_MS))
                .await;
            let allocations = placed.hold.expect("the placed hold").allocations;
            assert_eq!(
                allocations,
                [Allocation {
                    grant_id: GrantId::new("txn_promo"),
                    amount: money(amount)
                }]
            );
        }
        let promo = GrantId::new("txn_promo");
        ledger
            .rejected(
                expire_grant(org.clone(), promo.clone()),
                Rejection::GrantNotExpired,
            )
            .await;
        assert!(ledger
            .store
            .due_grants(ledger.now(), 10)
            .await
            .unwrap()
            .is_empty());

        ledger.clock.advance_ms(SECOND_MS);
        let due = ledger.store.due_grants(ledger.now(), 10).await.unwrap();
        assert_eq!(due, [(org.clone(), promo.clone())]);
        let expired = ledger
            .created(expire_grant(org.clone(), promo.clone()))
            .await;
        let expired = expired.transfer.expect("the unreserved part moves");
        assert_eq!(expired.amount, money("1.00"));
        assert_eq!(expired.kind, TransferKind::Expiry);
        assert_eq!(expired.credit_account_id, expired_credits());
        assert!(ledger
            .store
            .due_grants(ledger.now(), 10)
            .await
            .unwrap()
            .is_empty());
        let again = ledger
            .submit(expire_grant(org.clone(), promo.clone()))
            .await
            .unwrap();
        assert_eq!(again.status, Status::Exists);
        let account = ledger.account(&org).await;
        assert_eq!(
            (account.posted, account.reserved),
            (money("59.00"), money("9.00"))
        );

        ledger
            .created(settle("txn_settle_a", "hold_a", money("2.00")))
            .await;
        ledger.created(void("txn_void_b", "hold_b")).await;

        let snapshot = ledger.snapshot().await;
        let promo = grant(&snapshot, "txn_promo");
        assert_eq!(
            (promo.consumed, promo.reserved, promo.expired),
            (money("2.00"), Amount::ZERO, money("8.00"))
        );
        assert_eq!(promo.expired_at, Some(ledger.now()));
        let released = [
            ("txn_settle_a:expiry:txn_promo", "4.00"),
            ("txn_void_b:expiry:txn_promo", "3.00"),
        ];
        for (id, amount) in released {
            let transfer = transfer(&snapshot, id);
            assert_eq!(
                (transfer.kind, transfer.amount),
                (TransferKind::Expiry, money(amount))
            );
        }
        // The paid grant was never touched.
        assert_eq!(grant(&snapshot, "txn_buy").remaining(), money("50.00"));
        let account = ledger.account(&org).await;
        assert_eq!(
            (account.posted, account.reserved),
            (money("50.00"), Amount::ZERO)
        );
        assert_eq!(
            ledger.account(&expired_credits()).await.posted,
            money("8.00")
        );
        assert_eq!(ledger.account(&revenue()).await.posted, money("2.00"));
        let report = assert_invariants(&ledger.store).await;
        assert_eq!(report.overspend, Amount::ZERO);
    }
}

/// Regression test: a grant's id is its transfer's client-chosen id, and holds store their
/// allocations as `"micros grant_id"` lines. An id with a line break must still let the hold
/// on it close, without failing its batch-mates or stopping the writer.
#[tokio::test]
async fn ids_with_line_breaks_are_refused_before_they_reach_a_stored_list() {
    // Regression: a grant id with a line break broke the stored list of a hold's allocations
    // and then the writer. Ids are now printable ASCII only.
    for id in [
        "txn_line\nbreak",
        "txn_trailing_line_break\n",
        "txn with space",
        "txn_é",
    ] {
        for db in testing::all().await {
            let ledger = Ledger::open(&db).await;
            let org = ledger.org.clone();
            ledger
                .rejected(
                    purchase(id, &org, money("10.00")),
                    Rejection::IdInvalidCharacter,
                )
                .await;
            let account = ledger.account(&org).await;
            assert_eq!(
                (account.posted, account.reserved),
                (Amount::ZERO, Amount::ZERO)
            );
            assert_invariants(&ledger.store).await;
        }
    }
}
