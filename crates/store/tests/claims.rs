//! Claimed work on both backends: two claims racing for the same due notices take disjoint
//! sets that together are all of them; a claimed notice is not claimed again before its
//! lease ends, and is after (a dead node's work comes back); a sent one never.

mod support;

use creditgate_domain::ledger::*;
use creditgate_domain::Amount;
use creditgate_store::api::{NewOrg, WebhookEndpoint};
use creditgate_store::testing;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_are_disjoint_and_leases_come_back() {
    for db in testing::all().await {
        let ledger = Ledger::open(&db).await;
        let now = ledger.now();
        ledger
            .store
            .create_org(
                &NewOrg {
                    id: "org_claims".into(),
                    name: "Claims Co".into(),
                    billing_emails: vec!["billing@claims.example".into()],
                    low_thresholds: vec![],
                    floor: Amount::ZERO,
                    spend_limit_monthly: None,
                    rate_limits: Default::default(),
                },
                now,
            )
            .await
            .expect("the org is created");
        let org = AccountId::new("org_claims");
        // Twelve purchases: twelve receipts, due now.
        for i in 0..12 {
            let amount = Amount::from_micros(1_000_000 + 10_007 * i);
            ledger
                .created(purchase(&format!("txn_claim{i}"), &org, amount))
                .await;
        }
        let due = ledger.store.due_notices(now, 100).await.unwrap();
        assert_eq!(due.len(), 12, "{}", db.url);

        let lease = now.plus_ms(60_000);
        let (a, b) = tokio::join!(
            ledger.store.claim_notices(now, lease, "node-a:1", 7),
            ledger.store.claim_notices(now, lease, "node-b:1", 7)
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        let mut ids: Vec<&str> = a.iter().chain(&b).map(|n| n.id.as_str()).collect();
        ids.sort_unstable();
        let taken = ids.len();
        ids.dedup();
        assert_eq!(taken, ids.len(), "no notice claimed twice");
        assert_eq!(taken, 12, "7 + 5 between them");
        assert!(a.len() <= 7 && b.len() <= 7);

        // Claimed: not due again until the lease ends.
        let again = ledger
            .store
            .claim_notices(now.plus_ms(59_999), lease, "c:1", 100);
        assert!(again.await.unwrap().is_empty());
        // One is sent; the others' node "died": after the lease they come back, once.
        assert!(ledger
            .store
            .notice_sent(&a[0].id, "node-a:1", now)
            .await
            .unwrap());
        // Another claim cannot mark it: it is node a's.
        assert!(!ledger
            .store
            .notice_sent(&a[1].id, "node-b:1", now)
            .await
            .unwrap());
        let back = ledger
            .store
            .claim_notices(lease, lease.plus_ms(60_000), "c:2", 100)
            .await
            .unwrap();
        assert_eq!(back.len(), 11);
        assert!(back.iter().all(|n| n.id != a[0].id));

        // Webhook deliveries: the same rule.
        ledger
            .store
            .create_webhook_endpoint(&WebhookEndpoint {
                id: "whk_claims".into(),
                org_id: None,
                url: "http://127.0.0.1:9/hook".into(),
                secret: "whsec_claims".into(),
                events: vec!["*".into()],
                created_at: now,
                disabled_at: None,
            })
            .await
            .unwrap();
        for notice in &due {
            ledger.store.fan_out(notice, "{}", now).await.unwrap();
        }
        let (a, b) = tokio::join!(
            ledger
                .store
                .claim_webhook_deliveries(now, lease, "node-a:2", 8),
            ledger
                .store
                .claim_webhook_deliveries(now, lease, "node-b:2", 8)
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        let mut ids: Vec<&str> = a.iter().chain(&b).map(|(d, _)| d.id.as_str()).collect();
        ids.sort_unstable();
        let taken = ids.len();
        ids.dedup();
        assert_eq!((taken, ids.len()), (12, 12), "disjoint, all of them");
        assert!(a.len() <= 8 && b.len() <= 8);
        assert!(a.iter().all(|(_, e)| e.id == "whk_claims"));
        let again = ledger
            .store
            .claim_webhook_deliveries(now.plus_ms(1), lease, "c:3", 100)
            .await
            .unwrap();
        assert!(again.is_empty());
    }
}
