//! Receipts and access-transition notices share the notices table. Transfer ids without
//! letters (`1`, `2`, … — possible for a caller of the ledger itself, never for the API,
//! whose ids are `txn_…`) must not take the ids of transition notices (`ntc_<seq>`), or the
//! batch that records the transition fails, on both backends.

mod support;

use creditgate_domain::ledger::*;
use creditgate_domain::Amount;
use creditgate_store::api::NewOrg;
use creditgate_store::testing;
use support::*;

#[tokio::test]
async fn receipts_for_digit_ids_leave_the_transition_notices_their_ids() {
    for db in testing::all().await {
        let ledger = Ledger::open(&db).await;
        ledger
            .store
            .create_org(
                &NewOrg {
                    id: "org_digits".into(),
                    name: "Digits Co".into(),
                    billing_emails: vec!["billing@example.com".into()],
                    low_thresholds: vec![],
                    floor: Amount::ZERO,
                    spend_limit_monthly: None,
                    rate_limits: Default::default(),
                },
                ledger.now(),
            )
            .await
            .expect("the org is created");
        let org = AccountId::new("org_digits");
        for id in ["1", "2", "3", "4", "5"] {
            ledger.created(purchase(id, &org, money("1.00"))).await;
        }
        // Draining the org records a transition and its turned-off notice, `ntc_<seq>`,
        // with a seq among the digits above.
        ledger
            .created(usage("txn_drain", &org, money("5.00")))
            .await;
        assert_eq!(ledger.account(&org).await.available(), Amount::ZERO);

        let notices = ledger
            .store
            .notices(None, Some("org_digits"), 100)
            .await
            .expect("the notices read");
        let mut kinds: Vec<&str> = notices.iter().map(|n| n.kind.as_str()).collect();
        kinds.sort();
        assert_eq!(
            kinds,
            [
                "access.turned_off",
                "credits.added",
                "credits.added",
                "credits.added",
                "credits.added",
                "credits.added"
            ],
            "{notices:?}"
        );
        let receipts: Vec<&str> = notices
            .iter()
            .filter(|n| n.kind == "credits.added")
            .map(|n| n.id.as_str())
            .collect();
        assert!(
            receipts.iter().all(|id| id.starts_with("ntc_t")),
            "{receipts:?}"
        );
        assert_invariants(&ledger.store).await;
    }
}
