//! The payments store on both backends: at most one auto-reload in flight per org is enforced
//! by the database (racing decisions make one attempt; a second in-flight row is refused);
//! the writer marks an org due in the batch that takes it to the threshold; payment advances
//! follow the pure state machine (late or duplicate reports change nothing) and write the
//! back-off, the turning off and their notices once; provider events are deduplicated.

use creditgate_domain::notice::NoticeKind;
use creditgate_domain::payment::{PaymentEvent, PaymentKind, PaymentState};
use creditgate_domain::reload::{
    FailurePolicy, PaymentLimits, ReloadAmount, ReloadPolicy, ReloadSettings, Skip,
};
use creditgate_domain::{Amount, Timestamp};
use creditgate_store::api::{Advanced, AutoReload, NewOrg, Payment, PaymentDetails, ReloadBegun};
use creditgate_store::testing;
use creditgate_store::Store;

const NOW: Timestamp = Timestamp::from_unix_ms(1_790_000_000_000);

fn usd(text: &str) -> Amount {
    Amount::parse(text).expect("an amount")
}

fn policy() -> ReloadPolicy {
    ReloadPolicy {
        cooldown_ms: 0,
        limits: PaymentLimits {
            amount_min: usd("5"),
            amount_max: usd("500"),
        },
    }
}

fn failures() -> FailurePolicy {
    FailurePolicy {
        backoff_ms: 1_000,
        backoff_ms_max: 10_000,
        failures_max: 2,
    }
}

async fn org_with_reload(store: &Store, id: &str) {
    let created = store
        .create_org(
            &NewOrg {
                id: id.into(),
                name: "Reload Co".into(),
                billing_emails: vec!["billing@example.com".into()],
                low_thresholds: vec![],
                floor: Amount::ZERO,
                spend_limit_monthly: None,
            },
            NOW,
        )
        .await
        .expect("the org is created");
    assert!(created);
    store
        .put_auto_reload(&AutoReload {
            org_id: id.into(),
            settings: ReloadSettings {
                enabled: true,
                threshold: usd("10"),
                amount: ReloadAmount::Fixed(usd("20")),
                monthly_limit: usd("100"),
            },
            consent_by: "ada@example.com".into(),
            consent_at: NOW,
            consent_text_version: "2026-11".into(),
            failures: 0,
            retry_at: None,
            last_failure: None,
            disabled_reason: None,
            updated_at: NOW,
        })
        .await
        .expect("settings are written");
}

fn reload_payment(id: &str, org: &str) -> Payment {
    Payment {
        id: id.into(),
        org_id: org.into(),
        kind: PaymentKind::AutoReload,
        method: "saved_card".into(),
        state: PaymentState::Created,
        amount: usd("20"),
        currency: "USD".into(),
        provider: "sandbox".into(),
        provider_ref: None,
        action_url: None,
        return_url: None,
        failure_code: None,
        failure_message: None,
        transfer_id: None,
        created_at: NOW,
        updated_at: NOW,
    }
}

#[tokio::test]
async fn one_reload_in_flight_per_org_is_enforced_by_the_database() {
    for db in testing::all().await {
        let store = db.open().await.expect("opens");
        org_with_reload(&store, "org_race").await;
        // A fresh org has 0 available: at or below the threshold, and due (settings are new).
        assert_eq!(store.due_reloads(NOW, 10).await.unwrap(), ["org_race"]);
        // Eight decisions racing: exactly one attempt is made.
        let mut tasks = Vec::new();
        for n in 0..8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .begin_reload(
                        "org_race",
                        &format!("pay_race{n}"),
                        "USD",
                        "sandbox",
                        &policy(),
                        NOW,
                    )
                    .await
            }));
        }
        let mut created = 0;
        for task in tasks {
            match task.await.expect("the task ends") {
                Ok(ReloadBegun::Created(payment)) => {
                    created += 1;
                    assert_eq!(payment.amount, usd("20"));
                }
                Ok(ReloadBegun::Skipped(skip)) => assert_eq!(skip, Skip::InFlight),
                Ok(other) => panic!("{other:?}"),
                // A loser of the race may also be refused by the unique index itself.
                Err(error) => assert!(
                    error.to_string().to_lowercase().contains("unique"),
                    "{error}"
                ),
            }
        }
        assert_eq!(created, 1, "{}", db.url);
        assert!(store.due_reloads(NOW, 10).await.unwrap().is_empty());
        // A second in-flight reload row is refused by the database.
        // insert_payment ignores an id conflict only; the partial unique index still holds.
        let second = store
            .insert_payment(&reload_payment("pay_second", "org_race"))
            .await;
        assert!(
            second.is_err(),
            "a second reload in flight was stored ({})",
            db.url
        );
    }
}

#[tokio::test]
async fn advances_follow_the_state_machine_and_write_their_notices_once() {
    for db in testing::all().await {
        let store = db.open().await.expect("opens");
        org_with_reload(&store, "org_adv").await;
        let begun = store
            .begin_reload("org_adv", "pay_adv1", "USD", "sandbox", &policy(), NOW)
            .await
            .unwrap();
        assert!(matches!(begun, ReloadBegun::Created(_)));
        let charge = |id: &'static str, event| {
            let store = store.clone();
            async move {
                store
                    .advance_payment(id, event, &PaymentDetails::default(), &failures(), NOW)
                    .await
                    .unwrap()
            }
        };
        assert!(
            matches!(charge("pay_adv1", PaymentEvent::Charge).await, Advanced::Moved(p) if p.state == PaymentState::Charging)
        );
        // A repeated Charge changes nothing.
        assert!(matches!(
            charge("pay_adv1", PaymentEvent::Charge).await,
            Advanced::Unchanged(_)
        ));
        let declined = PaymentDetails {
            failure_code: Some("card_declined".into()),
            failure_message: Some("Your card was declined.".into()),
            ..PaymentDetails::default()
        };
        let moved = store
            .advance_payment(
                "pay_adv1",
                PaymentEvent::Failed,
                &declined,
                &failures(),
                NOW,
            )
            .await
            .unwrap();
        assert!(matches!(moved, Advanced::Moved(ref p) if p.state == PaymentState::Failed));
        let reload = store.auto_reload("org_adv").await.unwrap().unwrap();
        assert_eq!(reload.failures, 1);
        assert_eq!(reload.retry_at, Some(NOW.plus_ms(1_000)));
        assert!(reload.settings.enabled);
        // The same failure reported again (a webhook after our own answer) changes nothing.
        let again = store
            .advance_payment(
                "pay_adv1",
                PaymentEvent::Failed,
                &declined,
                &failures(),
                NOW,
            )
            .await
            .unwrap();
        assert!(matches!(again, Advanced::Unchanged(_)));
        assert_eq!(
            store
                .auto_reload("org_adv")
                .await
                .unwrap()
                .unwrap()
                .failures,
            1
        );
        // Backing off: not before the retry time; then a second attempt, which fails too.
        let early = store
            .begin_reload(
                "org_adv",
                "pay_adv2",
                "USD",
                "sandbox",
                &policy(),
                NOW.plus_ms(999),
            )
            .await
            .unwrap();
        assert_eq!(
            early,
            ReloadBegun::Skipped(Skip::BackingOff {
                until: NOW.plus_ms(1_000)
            })
        );
        let later = NOW.plus_ms(1_000);
        let begun = store
            .begin_reload("org_adv", "pay_adv2", "USD", "sandbox", &policy(), later)
            .await
            .unwrap();
        assert!(matches!(begun, ReloadBegun::Created(_)), "{begun:?}");
        store
            .advance_payment(
                "pay_adv2",
                PaymentEvent::Failed,
                &declined,
                &failures(),
                later,
            )
            .await
            .unwrap();
        let reload = store.auto_reload("org_adv").await.unwrap().unwrap();
        assert!(!reload.settings.enabled, "turned off after failures_max");
        assert_eq!(reload.disabled_reason.as_deref(), Some("too_many_failures"));
        let notices = store.due_notices(later.plus_ms(1), 100).await.unwrap();
        let kinds: Vec<&str> = notices.iter().map(|n| n.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                NoticeKind::AutoReloadFailed.as_str(),
                NoticeKind::AutoReloadDisabled.as_str()
            ],
            "{}",
            db.url
        );
        assert_eq!(
            notices[0].reason.as_deref(),
            Some("Your card was declined.")
        );
        assert_eq!(notices[0].retry_at, Some(NOW.plus_ms(1_000)));
        assert_eq!(notices[1].payment_id.as_deref(), Some("pay_adv2"));
        // A success reported after a failure is accepted (the money was taken); a failure
        // after a success is not.
        let paid = store
            .advance_payment(
                "pay_adv2",
                PaymentEvent::Succeeded,
                &PaymentDetails::default(),
                &failures(),
                later,
            )
            .await
            .unwrap();
        assert!(matches!(paid, Advanced::Moved(ref p) if p.state == PaymentState::Succeeded));
        let late = store
            .advance_payment(
                "pay_adv2",
                PaymentEvent::Failed,
                &declined,
                &failures(),
                later,
            )
            .await
            .unwrap();
        assert!(matches!(late, Advanced::Unchanged(ref p) if p.state == PaymentState::Succeeded));
        // Provider events are handled once.
        assert!(store
            .record_provider_event("evt_1", "payment_intent.succeeded", NOW)
            .await
            .unwrap());
        assert!(!store
            .record_provider_event("evt_1", "payment_intent.succeeded", NOW)
            .await
            .unwrap());
        let report = store.check_invariants().await.expect("a snapshot");
        assert!(report.is_ok(), "{:?}", report.violations);
    }
}
