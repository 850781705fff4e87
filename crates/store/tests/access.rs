//! The writer's after-batch access decision on both backends: a hold refused below the
//! cut-off level turns the org off in the batch that refused it (transition `refused` with
//! the refused amount and hold, one "turned off" notice); one refused above it changes
//! nothing; with auto-reload on, the refusal marks the org due (whatever its threshold) and
//! no notice is written until the reload's outcome; credits at the level turn access back on.

mod support;

use creditgate_domain::access::AccessState;
use creditgate_domain::ledger::Rejection;
use creditgate_domain::reload::{ReloadAmount, ReloadSettings};
use creditgate_store::api::{AutoReload, NewOrg};
use creditgate_store::Clock as _;
use creditgate_store::{testing, Store};
use support::*;

async fn org(store: &Store, id: &str, thresholds: &[&str]) {
    let created = store
        .create_org(
            &NewOrg {
                id: id.into(),
                name: "Access Co".into(),
                billing_emails: vec!["billing@example.com".into()],
                low_thresholds: thresholds.iter().map(|t| money(t)).collect(),
                floor: money("0"),
                spend_limit_monthly: None,
                rate_limits: Default::default(),
            },
            creditgate_domain::Timestamp::from_unix_ms(START_MS),
        )
        .await
        .expect("the org is created");
    assert!(created);
}

async fn notice_kinds(store: &Store, org: &str) -> Vec<String> {
    let mut kinds: Vec<String> = store
        .notices(None, Some(org), 100)
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.kind)
        .filter(|kind| kind != "credits.added")
        .collect();
    kinds.sort();
    kinds
}

#[tokio::test]
async fn a_refusal_below_the_cutoff_turns_access_off_in_its_batch() {
    for db in testing::all().await {
        let clock = TestClock::new();
        let store = db.open().await.unwrap();
        let writer = start_writer(&store, clock.clone()).await;
        org(&store, "org_cut", &["2.50"]).await;
        let id = creditgate_domain::ledger::AccountId::new("org_cut");
        assert!(writer
            .submit(purchase("txn_buy", &id, money("3.10")))
            .await
            .unwrap()
            .is_ok());
        // Above the level (posted 3.10 ≥ 2.50): refused alone, nothing recorded.
        let oversized = writer
            .submit(place("hold_big", &id, money("4.00"), 60_000))
            .await;
        assert_eq!(oversized.unwrap(), Err(Rejection::InsufficientFunds));
        let org = store.org("org_cut").await.unwrap().unwrap();
        assert_eq!(org.access.state, AccessState::Active, "{}", db.url);
        // Usage below the level, then a refusal: off, in that batch.
        assert!(writer
            .submit(usage("txn_use", &id, money("0.71")))
            .await
            .unwrap()
            .is_ok());
        let refused = writer
            .submit(place("hold_no", &id, money("2.50"), 60_000))
            .await;
        assert_eq!(refused.unwrap(), Err(Rejection::InsufficientFunds));
        let org = store.org("org_cut").await.unwrap().unwrap();
        assert_eq!(org.access.state, AccessState::Depleted, "{}", db.url);
        let transitions = store.access_transitions("org_cut", 0, 100).await.unwrap();
        let last = transitions.last().unwrap();
        assert_eq!(last.cause, "refused");
        assert_eq!(last.refused_amount, Some(money("2.50")));
        assert_eq!(last.refused_hold_id.as_deref(), Some("hold_no"));
        assert_eq!(
            notice_kinds(&store, "org_cut").await,
            ["access.turned_off", "balance.low"],
            "{}",
            db.url
        );
        // A second refusal tells nothing more; credits at the level turn access back on.
        let again = writer
            .submit(place("hold_no2", &id, money("2.50"), 60_000))
            .await;
        assert_eq!(again.unwrap(), Err(Rejection::InsufficientFunds));
        assert!(writer
            .submit(purchase("txn_more", &id, money("0.11")))
            .await
            .unwrap()
            .is_ok());
        assert_eq!(
            store.org("org_cut").await.unwrap().unwrap().access.state,
            AccessState::Active
        );
        assert_eq!(
            notice_kinds(&store, "org_cut").await,
            ["access.restored", "access.turned_off", "balance.low"],
            "{}",
            db.url
        );
        assert_invariants(&store).await;
    }
}

#[tokio::test]
async fn with_auto_reload_a_refusal_marks_it_due_and_tells_nobody_yet() {
    for db in testing::all().await {
        let clock = TestClock::new();
        let store = db.open().await.unwrap();
        let writer = start_writer(&store, clock.clone()).await;
        org(&store, "org_rel", &[]).await;
        store
            .put_auto_reload(&AutoReload {
                org_id: "org_rel".into(),
                settings: ReloadSettings {
                    enabled: true,
                    threshold: money("0"),
                    amount: ReloadAmount::Fixed(money("20")),
                    monthly_limit: money("100"),
                },
                consent_by: "ada@example.com".into(),
                consent_at: clock.now(),
                consent_text_version: "2026-11".into(),
                failures: 0,
                retry_at: None,
                last_failure: None,
                disabled_reason: None,
                updated_at: clock.now(),
            })
            .await
            .unwrap();
        let id = creditgate_domain::ledger::AccountId::new("org_rel");
        assert!(writer
            .submit(purchase("txn_buy", &id, money("0.83")))
            .await
            .unwrap()
            .is_ok());
        // Settings mark it due once; the decision clears the mark (nothing to reload yet).
        let skipped = store
            .begin_reload(
                "org_rel",
                "pay_x",
                "USD",
                "sandbox",
                &reload_policy(),
                clock.now(),
            )
            .await
            .unwrap();
        assert!(
            format!("{skipped:?}").contains("AboveThreshold"),
            "{skipped:?}"
        );
        assert!(store.due_reloads(clock.now(), 10).await.unwrap().is_empty());
        let refused = writer
            .submit(place("hold_no", &id, money("0.90"), 60_000))
            .await;
        assert_eq!(refused.unwrap(), Err(Rejection::InsufficientFunds));
        assert_eq!(
            store.org("org_rel").await.unwrap().unwrap().access.state,
            AccessState::Depleted
        );
        assert_eq!(
            store.due_reloads(clock.now(), 10).await.unwrap(),
            ["org_rel"],
            "marked due though above its threshold of 0, on {}",
            db.url
        );
        assert!(
            notice_kinds(&store, "org_rel").await.is_empty(),
            "{}",
            db.url
        );
        // The reload the refusal asks for is made, not skipped for the threshold.
        let begun = store
            .begin_reload(
                "org_rel",
                "pay_y",
                "USD",
                "sandbox",
                &reload_policy(),
                clock.now(),
            )
            .await
            .unwrap();
        assert!(format!("{begun:?}").starts_with("Created"), "{begun:?}");
        assert_invariants(&store).await;
    }
}

fn reload_policy() -> creditgate_domain::reload::ReloadPolicy {
    creditgate_domain::reload::ReloadPolicy {
        cooldown_ms: 0,
        limits: creditgate_domain::reload::PaymentLimits {
            amount_min: money("5"),
            amount_max: money("500"),
        },
    }
}
