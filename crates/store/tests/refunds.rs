//! Refund rows on both backends: a refund is written only for a succeeded payment and only
//! within the unspent credits of its grant less the refunds under way; the same id answers
//! the first row; success writes one receipt notice however often it is reported; the ledger
//! refund takes only that grant's unspent credits (`refund_exceeds_unspent`).

mod support;

use creditgate_domain::ids;
use creditgate_domain::ledger::{AccountId, GrantId, Operation, RefundRequest, Rejection};
use creditgate_domain::payment::{PaymentKind, PaymentMethod, PaymentState};
use creditgate_domain::Amount;
use creditgate_store::api::{NewOrg, Payment, RefundCreated, RefundState};
use creditgate_store::testing;
use creditgate_store::Clock;
use support::*;

const ORG: &str = "org_refunds";

fn payment(id: &str, state: PaymentState, amount: Amount) -> Payment {
    let now = creditgate_domain::Timestamp::from_unix_ms(START_MS);
    Payment {
        id: id.into(),
        org_id: ORG.into(),
        kind: PaymentKind::TopUp,
        method: PaymentMethod::SavedCard,
        state,
        amount,
        currency: "USD".into(),
        provider: "sandbox".into(),
        provider_ref: Some(format!("ch_{id}")),
        action_url: None,
        return_url: None,
        failure_code: None,
        failure_message: None,
        transfer_id: None,
        created_at: now,
        updated_at: now,
    }
}

fn refund_operation(refund_id: &str, payment_id: &str, amount: Amount) -> Operation {
    Operation::Refund(RefundRequest {
        id: ids::refund_transfer(refund_id),
        debit_account_id: AccountId::new(ORG),
        credit_account_id: payments(),
        grant_id: GrantId::new(ids::payment_credit(payment_id).as_str()),
        amount,
        reference: refund_id.to_owned(),
    })
}

#[tokio::test]
async fn refunds_stay_within_the_unspent_credits_of_their_payment() {
    for db in testing::all().await {
        let clock = TestClock::new();
        let store = db.open().await.expect("opens");
        let now = clock.now();
        store
            .create_org(
                &NewOrg {
                    id: ORG.into(),
                    name: "Refund Co".into(),
                    billing_emails: vec!["billing@example.com".into()],
                    low_thresholds: vec![],
                    floor: Amount::ZERO,
                    spend_limit_monthly: None,
                    rate_limits: Default::default(),
                },
                now,
            )
            .await
            .expect("the org is created");
        let writer = start_writer(&store, clock.clone()).await;
        let org = AccountId::new(ORG);
        store
            .insert_payment(&payment("pay_a", PaymentState::Succeeded, money("10")))
            .await
            .unwrap();
        store
            .insert_payment(&payment("pay_b", PaymentState::Failed, money("10")))
            .await
            .unwrap();
        let credit = purchase(ids::payment_credit("pay_a").as_str(), &org, money("10"));
        writer.submit(credit).await.unwrap().expect("credited");
        let spend = usage("u1", &org, money("4"));
        writer.submit(spend).await.unwrap().expect("spent");
        let grant = ids::payment_credit("pay_a");

        // Refused: unknown or failed payments, more than the unspent 6, nothing at all.
        let ask = |id: &'static str, payment: &'static str, amount: Option<&str>| {
            let store = store.clone();
            let grant = ids::payment_credit(payment);
            let amount = amount.map(money);
            async move {
                store
                    .create_refund(id, payment, &grant, amount, Some("asked"), now)
                    .await
                    .expect("the transaction commits")
            }
        };
        assert_eq!(
            ask("rfd_x", "pay_none", None).await,
            RefundCreated::PaymentNotFound
        );
        assert_eq!(
            ask("rfd_x", "pay_b", None).await,
            RefundCreated::NotRefundable(PaymentState::Failed)
        );
        assert_eq!(
            ask("rfd_x", "pay_a", Some("6.000001")).await,
            RefundCreated::ExceedsUnspent {
                unspent: money("6")
            }
        );
        assert!(store.refund("rfd_x").await.unwrap().is_none());

        // 2.50 is under way: it counts against the unspent part before it is in the ledger.
        let RefundCreated::Created(first) = ask("rfd_1", "pay_a", Some("2.50")).await else {
            panic!("the refund is written");
        };
        assert_eq!(first.state, RefundState::Created);
        assert_eq!(first.org_id, ORG);
        assert_eq!(first.provider, "sandbox");
        assert_eq!(
            ask("rfd_1", "pay_a", Some("1")).await,
            RefundCreated::Exists(first.clone())
        );
        assert_eq!(
            ask("rfd_2", "pay_a", Some("3.500001")).await,
            RefundCreated::ExceedsUnspent {
                unspent: money("3.50")
            }
        );

        // The provider step: requesting, then succeeded once with one notice.
        let requesting = store
            .refund_requesting("rfd_1", now)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(requesting.state, RefundState::Requesting);
        assert_eq!(store.open_refunds(now, 10).await.unwrap(), [requesting]);
        let transfer = ids::refund_transfer("rfd_1");
        writer
            .submit(refund_operation("rfd_1", "pay_a", money("2.50")))
            .await
            .unwrap()
            .expect("refunded in the ledger");
        for _ in 0..2 {
            let done = store
                .refund_succeeded("rfd_1", "re_1", &transfer, now)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(done.state, RefundState::Succeeded);
            assert_eq!(done.transfer_id.as_deref(), Some(transfer.as_str()));
        }
        assert!(store.open_refunds(now, 10).await.unwrap().is_empty());
        let notices = store.notices(None, Some(ORG), 100).await.unwrap();
        let receipts: Vec<_> = notices
            .iter()
            .filter(|n| n.kind == "refund.issued")
            .collect();
        assert_eq!(receipts.len(), 1, "{notices:?}");
        assert_eq!(receipts[0].amount, Some(money("2.50")));

        // The whole remainder: 3.50. Then nothing is left.
        let RefundCreated::Created(rest) = ask("rfd_2", "pay_a", None).await else {
            panic!("the remainder is refundable");
        };
        assert_eq!(rest.amount, money("3.50"));
        // The ledger refuses more than the grant's unspent credits, whatever the row says.
        let too_much = refund_operation("rfd_2", "pay_a", money("3.500001"));
        assert_eq!(
            writer.submit(too_much).await.unwrap(),
            Err(Rejection::RefundExceedsUnspent)
        );
        writer
            .submit(refund_operation("rfd_2", "pay_a", money("3.50")))
            .await
            .unwrap()
            .expect("the rest");
        store
            .refund_succeeded("rfd_2", "re_2", &ids::refund_transfer("rfd_2"), now)
            .await
            .unwrap();
        // A late failure report changes nothing.
        let after = store
            .refund_failed("rfd_2", RefundState::Failed, "late", "late report", now)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(after.state, RefundState::Succeeded);
        assert_eq!(
            ask("rfd_3", "pay_a", None).await,
            RefundCreated::ExceedsUnspent {
                unspent: Amount::ZERO
            }
        );
        let listed = store.refunds_of_payment("pay_a").await.unwrap();
        let states: Vec<_> = listed.iter().map(|r| (r.id.as_str(), r.state)).collect();
        assert_eq!(
            states,
            [
                ("rfd_1", RefundState::Succeeded),
                ("rfd_2", RefundState::Succeeded)
            ]
        );
        let snapshot = store.snapshot().await.unwrap();
        assert_eq!(
            snapshot_grant_consumed(&snapshot, grant.as_str()),
            money("10")
        );
        assert_invariants(&store).await;

        // The sandbox records one refund per refund id.
        let a = store
            .sandbox_refund_once("re_sandbox_1", "rfd_1", "ch_pay_a", money("2.50"), now)
            .await
            .unwrap();
        let b = store
            .sandbox_refund_once("re_sandbox_2", "rfd_1", "ch_pay_a", money("2.50"), now)
            .await
            .unwrap();
        assert_eq!((a.as_str(), b.as_str()), ("re_sandbox_1", "re_sandbox_1"));
        assert_eq!(store.sandbox_refunds("ch_pay_a").await.unwrap().len(), 1);
    }
}

fn snapshot_grant_consumed(snapshot: &creditgate_domain::ledger::Snapshot, id: &str) -> Amount {
    grant(snapshot, id).consumed
}

#[tokio::test]
async fn racing_refunds_of_one_payment_never_pass_its_unspent_credits() {
    for db in testing::all().await {
        let clock = TestClock::new();
        let store = db.open().await.expect("opens");
        let now = clock.now();
        store
            .create_org(
                &NewOrg {
                    id: ORG.into(),
                    name: "Race Co".into(),
                    billing_emails: vec![],
                    low_thresholds: vec![],
                    floor: Amount::ZERO,
                    spend_limit_monthly: None,
                    rate_limits: Default::default(),
                },
                now,
            )
            .await
            .expect("the org is created");
        let writer = start_writer(&store, clock.clone()).await;
        store
            .insert_payment(&payment("pay_r", PaymentState::Succeeded, money("20")))
            .await
            .unwrap();
        let credit = purchase(
            ids::payment_credit("pay_r").as_str(),
            &AccountId::new(ORG),
            money("20"),
        );
        writer.submit(credit).await.unwrap().expect("credited");
        // Eight refunds of 5 race for 20: the payment row's lock (PostgreSQL) or the write
        // transaction (SQLite) lets exactly four through.
        let mut tasks = Vec::new();
        for n in 0..8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let grant = ids::payment_credit("pay_r");
                store
                    .create_refund(
                        &format!("rfd_race{n}"),
                        "pay_r",
                        &grant,
                        Some(money("5")),
                        None,
                        now,
                    )
                    .await
                    .expect("the transaction commits")
            }));
        }
        let mut created = 0;
        for task in tasks {
            match task.await.unwrap() {
                RefundCreated::Created(_) => created += 1,
                RefundCreated::ExceedsUnspent { unspent } => assert_eq!(unspent, Amount::ZERO),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(created, 4, "{}", db.url);
        assert_eq!(store.refunds_of_payment("pay_r").await.unwrap().len(), 4);
        assert_invariants(&store).await;
    }
}
