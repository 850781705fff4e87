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
                rate_limits: Default::default(),
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
        method: creditgate_domain::payment::PaymentMethod::SavedCard,
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

/// An org (0 available, so at or below any threshold) with these auto-reload settings.
async fn org_with_settings(store: &Store, id: &str, settings: ReloadSettings) {
    org_with_reload(store, id).await;
    let mut reload = store
        .auto_reload(id)
        .await
        .expect("read")
        .expect("settings");
    reload.settings = settings;
    store.put_auto_reload(&reload).await.expect("written");
}

fn fixed_20_limit(monthly_limit: &str) -> ReloadSettings {
    ReloadSettings {
        enabled: true,
        threshold: usd("10"),
        amount: ReloadAmount::Fixed(usd("20")),
        monthly_limit: usd(monthly_limit),
    }
}

/// Decides for `org` at `at` under `policy`; answers what was begun.
async fn begin_at(
    store: &Store,
    org: &str,
    payment_id: &str,
    policy: &ReloadPolicy,
    at: Timestamp,
) -> ReloadBegun {
    store
        .begin_reload(org, payment_id, "USD", "sandbox", policy, at)
        .await
        .expect("the decision is written")
}

/// Moves a begun attempt through `charging` to `event` (succeeded or failed) at `at`.
async fn finish(store: &Store, payment_id: &str, event: PaymentEvent, at: Timestamp) {
    let moved = store
        .advance_payment(
            payment_id,
            PaymentEvent::Charge,
            &PaymentDetails::default(),
            &failures(),
            at,
        )
        .await
        .expect("charging");
    assert!(
        matches!(moved, Advanced::Moved(ref p) if p.state == PaymentState::Charging),
        "{moved:?}"
    );
    let details = PaymentDetails {
        failure_code: Some("card_declined".into()),
        failure_message: Some("Your card was declined.".into()),
        ..PaymentDetails::default()
    };
    let failures = FailurePolicy {
        failures_max: 100,
        ..failures()
    };
    let moved = store
        .advance_payment(payment_id, event, &details, &failures, at)
        .await
        .expect("the outcome");
    assert!(matches!(moved, Advanced::Moved(_)), "{moved:?}");
}

/// Charges (and succeeds) a reload at `at`; it must be made, of `amount`.
async fn reload_succeeds(store: &Store, org: &str, payment_id: &str, amount: &str, at: Timestamp) {
    match begin_at(store, org, payment_id, &policy(), at).await {
        ReloadBegun::Created(payment) => assert_eq!(payment.amount, usd(amount), "{payment:?}"),
        other => panic!("{payment_id} at {at:?}: {other:?}"),
    }
    finish(store, payment_id, PaymentEvent::Succeeded, at).await;
}

/// The first instant of the month after `at`'s (UTC).
fn next_month(at: Timestamp) -> Timestamp {
    at.month_start().plus_ms(32 * 24 * 3_600_000).month_start()
}

#[tokio::test]
async fn succeeded_reloads_reach_the_monthly_limit_until_the_next_month() {
    let month_end = next_month(NOW);
    assert!(month_end > NOW.plus_ms(10_000));
    for db in testing::all().await {
        let store = db.open().await.expect("opens");
        // 100.00 a month in reloads of 20.00: five of them, then the limit is reached.
        org_with_settings(&store, "org_limit", fixed_20_limit("100")).await;
        for n in 0..5 {
            let at = NOW.plus_ms(n * 1_000);
            reload_succeeds(&store, "org_limit", &format!("pay_limit{n}"), "20", at).await;
        }
        let full = begin_at(
            &store,
            "org_limit",
            "pay_limit5",
            &policy(),
            NOW.plus_ms(5_000),
        )
        .await;
        assert_eq!(
            full,
            ReloadBegun::Skipped(Skip::MonthlyLimitReached),
            "{}",
            db.url
        );
        // Nothing to look again at: the limit ends with the month, not at a retry time.
        let reload = store.auto_reload("org_limit").await.unwrap().unwrap();
        assert_eq!(reload.retry_at, None);
        assert!(store.due_reloads(month_end, 10).await.unwrap().is_empty());
        // The month's last millisecond still counts them; the next month's first does not.
        let last = begin_at(
            &store,
            "org_limit",
            "pay_limit5",
            &policy(),
            month_end.plus_ms(-1),
        )
        .await;
        assert_eq!(last, ReloadBegun::Skipped(Skip::MonthlyLimitReached));
        reload_succeeds(&store, "org_limit", "pay_limit6", "20", month_end).await;

        // What is left of the limit is charged if it is at least the smallest top-up:
        // 90.00 leaves 10.00 after four reloads of 20.00, then nothing.
        org_with_settings(&store, "org_left", fixed_20_limit("90")).await;
        for n in 0..4 {
            let at = NOW.plus_ms(n * 1_000);
            reload_succeeds(&store, "org_left", &format!("pay_left{n}"), "20", at).await;
        }
        reload_succeeds(&store, "org_left", "pay_left4", "10", NOW.plus_ms(4_000)).await;
        let full = begin_at(
            &store,
            "org_left",
            "pay_left5",
            &policy(),
            NOW.plus_ms(5_000),
        )
        .await;
        assert_eq!(full, ReloadBegun::Skipped(Skip::MonthlyLimitReached));
        let report = store.check_invariants().await.expect("a snapshot");
        assert!(report.is_ok(), "{:?}", report.violations);
    }
}

#[tokio::test]
async fn failed_reloads_do_not_count_against_the_monthly_limit() {
    for db in testing::all().await {
        let store = db.open().await.expect("opens");
        org_with_settings(&store, "org_failed", fixed_20_limit("100")).await;
        for n in 0..4 {
            let at = NOW.plus_ms(n * 1_000);
            reload_succeeds(&store, "org_failed", &format!("pay_ok{n}"), "20", at).await;
        }
        // A declined attempt of 20.00 (80.00 succeeded so far), retried after its back-off.
        let at = NOW.plus_ms(4_000);
        let begun = begin_at(&store, "org_failed", "pay_declined", &policy(), at).await;
        assert!(matches!(begun, ReloadBegun::Created(_)), "{begun:?}");
        finish(&store, "pay_declined", PaymentEvent::Failed, at).await;
        let reload = store.auto_reload("org_failed").await.unwrap().unwrap();
        assert_eq!(reload.failures, 1);
        assert!(reload.settings.enabled);
        let retry_at = reload.retry_at.expect("a retry time");
        assert_eq!(
            store.due_reloads(retry_at, 10).await.unwrap(),
            ["org_failed"]
        );
        // The retry is charged in full: the declined 20.00 took nothing of the limit.
        reload_succeeds(&store, "org_failed", "pay_retry", "20", retry_at).await;
        // 100.00 succeeded now: the limit is reached.
        let full = begin_at(
            &store,
            "org_failed",
            "pay_after",
            &policy(),
            retry_at.plus_ms(1_000),
        )
        .await;
        assert_eq!(
            full,
            ReloadBegun::Skipped(Skip::MonthlyLimitReached),
            "{}",
            db.url
        );
    }
}

#[tokio::test]
async fn a_recent_attempt_cools_down_until_a_retry_time_the_due_query_picks_up() {
    let cooling = ReloadPolicy {
        cooldown_ms: 60_000,
        ..policy()
    };
    for db in testing::all().await {
        let store = db.open().await.expect("opens");
        org_with_settings(&store, "org_cool", fixed_20_limit("100")).await;
        let begun = begin_at(&store, "org_cool", "pay_cool1", &cooling, NOW).await;
        assert!(matches!(begun, ReloadBegun::Created(_)), "{begun:?}");
        finish(
            &store,
            "pay_cool1",
            PaymentEvent::Succeeded,
            NOW.plus_ms(500),
        )
        .await;
        // The balance is still at the threshold a second later: too soon after the attempt.
        let until = NOW.plus_ms(60_000);
        let soon = begin_at(
            &store,
            "org_cool",
            "pay_cool2",
            &cooling,
            NOW.plus_ms(1_000),
        )
        .await;
        assert_eq!(
            soon,
            ReloadBegun::Skipped(Skip::CoolingDown { until }),
            "{}",
            db.url
        );
        let reload = store.auto_reload("org_cool").await.unwrap().unwrap();
        assert_eq!(reload.retry_at, Some(until));
        // Not due before the cooldown ends (the decision cleared the due mark)…
        assert!(store
            .due_reloads(until.plus_ms(-1), 10)
            .await
            .unwrap()
            .is_empty());
        // …due from its end, without any new balance change, and then charged.
        assert_eq!(store.due_reloads(until, 10).await.unwrap(), ["org_cool"]);
        let later = begin_at(&store, "org_cool", "pay_cool2", &cooling, until).await;
        assert!(
            matches!(later, ReloadBegun::Created(ref p) if p.amount == usd("20")),
            "{later:?}"
        );
        // Once made, the retry time is spent: nothing due until something else happens.
        let reload = store.auto_reload("org_cool").await.unwrap().unwrap();
        assert_eq!(reload.retry_at, None);
        assert!(store
            .due_reloads(until.plus_ms(3_600_000), 10)
            .await
            .unwrap()
            .is_empty());
    }
}
