//! Payments and auto-reload on the sandbox provider, end to end over HTTP, on both backends:
//! checkout top-ups (credits land once, however often the page is submitted), saved-card
//! top-ups, bad input refused with nothing changed, auto-reload charging when the balance
//! reaches the threshold (access never lapses, one reload per need), a declining card backing
//! off and then turning auto-reload off, a card that needs authentication ending in
//! `requires_action` with a working confirmation link, an interrupted charge resumed without
//! a second charge, and `creditgate reconcile`. Every test ends with the ledger invariants.

mod api_support;

use std::time::Duration;

use api_support::helpers::{available, eventually, spend, transitions};
use api_support::{databases, spawn_app_with, As, Reply, TestApp};
use creditgate::config::Config;
use reqwest::StatusCode;
use serde_json::{json, Value};

fn fast(config: &mut Config) {
    config.payments_interval_ms = 20;
    config.notice_interval_ms = 3_600_000;
    config.reload_cooldown_ms = 0;
    config.reload_backoff_ms = 150;
    config.reload_failures_max = 2;
    config.top_up_min = "5.00".into();
    config.top_up_max = "500.00".into();
}

async fn top_up(app: &TestApp, org: &str, key: &str, body: Value) -> Reply {
    app.post_idempotent(&As::Operator, &format!("/v1/orgs/{org}/top_ups"), key, body)
        .await
}

async fn payments(app: &TestApp, org: &str) -> Vec<Value> {
    let reply = app
        .get(&As::Operator, &format!("/v1/orgs/{org}/payments?limit=100"))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    reply.body["data"].as_array().cloned().unwrap_or_default()
}

async fn notice_kinds(app: &TestApp, org: &str) -> Vec<String> {
    let reply = app
        .get(
            &As::Operator,
            &format!("/v1/notices?org_id={org}&limit=100"),
        )
        .await;
    let mut kinds: Vec<String> = reply.body["data"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|n| n["kind"].as_str().unwrap_or("").to_owned())
        .collect();
    kinds.reverse();
    kinds
}

fn page_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client")
}

async fn submit_card(url: &str, card: &str) -> (StatusCode, String, Option<String>) {
    let response = page_client()
        .post(url)
        .form(&[("payment_method", card)])
        .send()
        .await
        .expect("the page answers");
    let status = response.status();
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (status, response.text().await.unwrap_or_default(), location)
}

async fn put_reload(app: &TestApp, org: &str, body: Value) -> Reply {
    app.request(
        &As::Operator,
        reqwest::Method::PUT,
        &format!("/v1/orgs/{org}/auto_reload"),
        Some(body),
        &[],
    )
    .await
}

fn reload_body(card: &str) -> Value {
    json!({
        "enabled": true,
        "threshold": "10.00",
        "amount": "20.00",
        "monthly_limit": "100.00",
        "payment_method": card,
        "consent": {"accepted_by": "ada@example.com", "text_version": "2026-11"}
    })
}

#[tokio::test]
async fn a_checkout_top_up_credits_once() {
    for database in databases().await {
        let app = spawn_app_with(database, fast).await;
        let org = app.create_org("Checkout Co").await;
        let body = json!({"amount": "25.00", "return_url": "https://example.com/billing"});
        let reply = top_up(&app, &org, "t1", body.clone()).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
        assert_eq!(reply.body["state"], "requires_action");
        assert_eq!(reply.body["kind"], "top_up");
        assert_eq!(reply.body["amount"], "25.00");
        let url = reply.str("action_url");
        assert!(url.contains("/sandbox/checkout/pay_"), "{url}");
        assert_eq!(
            available(&app, &org).await,
            "0.00",
            "no credit before payment"
        );

        // Replaying the request answers the first response; another body is a 409.
        let replay = top_up(&app, &org, "t1", body).await;
        assert_eq!(replay.body["id"], reply.body["id"]);
        let other = top_up(&app, &org, "t1", json!({"amount": "30.00"})).await;
        assert_eq!(other.status, StatusCode::CONFLICT);

        // The page shows the amount; a declined card leaves it open.
        let page = page_client().get(&url).send().await.expect("page");
        assert_eq!(page.status(), StatusCode::OK);
        assert!(page.text().await.unwrap().contains("$25.00"));
        let (status, text, _) = submit_card(&url, "pm_card_visa_chargeDeclined").await;
        assert_eq!(status, StatusCode::OK);
        assert!(text.contains("Your card was declined."), "{text}");
        assert_eq!(available(&app, &org).await, "0.00");

        // A good card pays; the customer is sent back; credits land.
        let (status, _, location) = submit_card(&url, "pm_card_visa").await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        let id = reply.str("id");
        assert_eq!(
            location.as_deref(),
            Some(format!("https://example.com/billing?payment={id}").as_str())
        );
        assert_eq!(available(&app, &org).await, "25.00");
        // Submitting again (a double click, a back button) credits nothing more.
        let (status, text, _) = submit_card(&url, "pm_card_visa").await;
        assert_eq!(status, StatusCode::OK);
        assert!(text.contains("Payment received"));
        assert_eq!(available(&app, &org).await, "25.00");

        let payment = app.get(&As::Operator, &format!("/v1/payments/{id}")).await;
        assert_eq!(payment.body["state"], "succeeded");
        assert_eq!(payment.body["transfer_id"], format!("txn_{id}"));
        assert_eq!(payment.body["action_url"], Value::Null);
        let transfers = app
            .get(&As::Operator, &format!("/v1/orgs/{org}/transfers"))
            .await;
        let kinds: Vec<&str> = transfers.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["purchase"]);
        assert!(notice_kinds(&app, &org)
            .await
            .contains(&"credits.added".to_owned()));

        // The card is saved: a saved-card top-up charges it at once.
        let saved = top_up(
            &app,
            &org,
            "t2",
            json!({"amount": "10.00", "method": "saved_card"}),
        )
        .await;
        assert_eq!(saved.status, StatusCode::CREATED, "{:?}", saved.body);
        assert_eq!(saved.body["state"], "succeeded");
        assert_eq!(available(&app, &org).await, "35.00");

        // The history pages past a payment's credit (`txn_pay_…`) like past any transfer.
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let cursor = after
                .as_ref()
                .map(|id| format!("&starting_after={id}"))
                .unwrap_or_default();
            let page = app
                .get(
                    &As::Operator,
                    &format!("/v1/orgs/{org}/transfers?limit=1{cursor}"),
                )
                .await;
            assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
            let Some(last) = page.body["data"].as_array().unwrap().last() else {
                break;
            };
            let id = last["id"].as_str().unwrap().to_owned();
            assert!(id.starts_with("txn_pay_"), "{id}");
            seen.push(id.clone());
            after = Some(id);
            assert!(seen.len() <= 2, "the pages repeat: {seen:?}");
        }
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_ne!(seen[0], seen[1]);
        app.assert_invariants().await;
        app.stop().await;
    }
}

#[tokio::test]
async fn bad_top_ups_and_settings_are_refused_and_change_nothing() {
    for database in databases().await {
        let app = spawn_app_with(database, fast).await;
        let org = app.create_org("Strict Co").await;
        let cases = [
            (json!({"amount": "4.99"}), "amount", "amount_out_of_range"),
            (json!({"amount": "500.01"}), "amount", "amount_out_of_range"),
            (
                json!({"amount": "10.005"}),
                "amount",
                "amount_not_whole_cents",
            ),
            (
                json!({"amount": "10.00", "method": "cash"}),
                "method",
                "parameter_invalid",
            ),
            (
                json!({"amount": "10.00", "method": "saved_card"}),
                "method",
                "no_payment_method",
            ),
            (
                json!({"amount": "10.00", "return_url": "ftp://x"}),
                "return_url",
                "parameter_invalid",
            ),
        ];
        for (index, (body, param, code)) in cases.into_iter().enumerate() {
            let reply = top_up(&app, &org, &format!("bad{index}"), body.clone()).await;
            assert_eq!(
                reply.status,
                StatusCode::BAD_REQUEST,
                "{body}: {:?}",
                reply.body
            );
            assert_eq!(reply.body["error"]["param"], param, "{body}");
            assert_eq!(reply.code(), code, "{body}");
        }
        let missing_key = app
            .post(
                &As::Operator,
                &format!("/v1/orgs/{org}/top_ups"),
                json!({"amount": "10.00"}),
            )
            .await;
        assert_eq!(missing_key.status, StatusCode::BAD_REQUEST);
        assert_eq!(missing_key.body["error"]["param"], "Idempotency-Key");

        let consent = json!({"accepted_by": "ada@example.com", "text_version": "2026-11"});
        let settings = [
            (
                json!({"enabled": true, "threshold": "10.00", "target": "10.00", "monthly_limit": "100.00", "consent": consent}),
                "target",
                "target_not_above_threshold",
            ),
            (
                json!({"enabled": true, "threshold": "10.00", "amount": "20.00", "monthly_limit": "19.99", "consent": consent}),
                "monthly_limit",
                "monthly_limit_below_one_reload",
            ),
            (
                json!({"enabled": true, "threshold": "10.00", "amount": "2.00", "monthly_limit": "100.00", "consent": consent}),
                "amount",
                "amount_out_of_range",
            ),
            (
                json!({"enabled": true, "threshold": "10.00", "amount": "20.00", "target": "50.00", "monthly_limit": "100.00", "consent": consent}),
                "target",
                "parameter_invalid",
            ),
            (
                json!({"enabled": true, "threshold": "10.00", "amount": "20.00", "monthly_limit": "100.00"}),
                "consent",
                "consent_missing",
            ),
            (
                json!({"enabled": true, "threshold": "10.00", "amount": "20.00", "monthly_limit": "100.00", "consent": {"accepted_by": "ada", "text_version": "2020-01"}}),
                "consent.text_version",
                "consent_text_outdated",
            ),
            (
                json!({"enabled": true, "threshold": "10.00", "amount": "20.00", "monthly_limit": "100.00", "consent": consent}),
                "payment_method",
                "no_payment_method",
            ),
            (
                json!({"enabled": true, "threshold": "10.00", "amount": "20.00", "monthly_limit": "100.00", "consent": consent, "payment_method": "pm_card_mastercard"}),
                "payment_method",
                "payment_method_invalid",
            ),
        ];
        for (body, param, code) in settings {
            let reply = put_reload(&app, &org, body.clone()).await;
            assert_eq!(
                reply.status,
                StatusCode::BAD_REQUEST,
                "{body}: {:?}",
                reply.body
            );
            assert_eq!(reply.body["error"]["param"], param, "{body}");
            assert_eq!(reply.code(), code, "{body}");
        }
        let none = app
            .get(&As::Operator, &format!("/v1/orgs/{org}/auto_reload"))
            .await;
        assert_eq!(none.status, StatusCode::NOT_FOUND);
        assert!(payments(&app, &org).await.is_empty());
        assert_eq!(available(&app, &org).await, "0.00");
        app.assert_invariants().await;
        app.stop().await;
    }
}

#[tokio::test]
async fn auto_reload_charges_at_the_threshold_and_access_never_lapses() {
    for database in databases().await {
        let app = spawn_app_with(database, fast).await;
        let org = app.create_org("Reload Co").await;
        app.grant(&org, "15.00").await;
        let reply = put_reload(&app, &org, reload_body("pm_card_visa")).await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        assert_eq!(reply.body["enabled"], true);
        assert_eq!(reply.body["payment_method"]["label"], "visa •••• 4242");
        assert_eq!(reply.body["consent"]["accepted_by"], "ada@example.com");
        assert_eq!(reply.body["consent"]["text_version"], "2026-11");
        // Above the threshold: nothing is charged.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(payments(&app, &org).await.is_empty());

        // Down to 9: one reload of 20.
        spend(&app, &org, "6.00").await;
        eventually("the reload", || async {
            (available(&app, &org).await == "29.00").then_some(())
        })
        .await;
        // Down to exactly the threshold (10): another one.
        spend(&app, &org, "19.00").await;
        eventually("the second reload", || async {
            (available(&app, &org).await == "30.00").then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let made = payments(&app, &org).await;
        assert_eq!(made.len(), 2, "one reload per need: {made:?}");
        for payment in &made {
            assert_eq!(payment["kind"], "auto_reload");
            assert_eq!(payment["state"], "succeeded");
            assert_eq!(payment["amount"], "20.00");
        }
        // Access never lapsed: no transition into `depleted` after the first credits.
        let states: Vec<String> = transitions(&app, &org)
            .await
            .iter()
            .skip(1)
            .map(|t| t["to_state"].as_str().unwrap_or("").to_owned())
            .collect();
        assert!(!states.contains(&"depleted".to_owned()), "{states:?}");
        let kinds = notice_kinds(&app, &org).await;
        assert_eq!(
            kinds.iter().filter(|k| *k == "auto_reload.charged").count(),
            2,
            "{kinds:?}"
        );
        app.assert_invariants().await;
        app.stop().await;
    }
}

#[tokio::test]
async fn many_decreases_below_the_threshold_make_one_reload() {
    for database in databases().await {
        let app = spawn_app_with(database, fast).await;
        let org = app.create_org("Busy Co").await;
        app.grant(&org, "12.00").await;
        let reply = put_reload(&app, &org, reload_body("pm_card_visa")).await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        // 32 concurrent decreases of 0.25 each take it from 12 to 4, crossing 10.
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let (base, org) = (app.base.clone(), org.clone());
            tasks.push(tokio::spawn(async move {
                reqwest::Client::new()
                    .post(format!("{base}/v1/orgs/{org}/adjustments"))
                    .bearer_auth(api_support::OPERATOR_TOKEN)
                    .header("Idempotency-Key", format!("k{}", rand::random::<u64>()))
                    .json(&json!({"amount": "-0.25", "reason": "usage"}))
                    .send()
                    .await
                    .expect("answers")
                    .status()
            }));
        }
        for task in tasks {
            assert_eq!(task.await.unwrap(), StatusCode::CREATED);
        }
        eventually("the reload", || async {
            (available(&app, &org).await == "24.00").then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(payments(&app, &org).await.len(), 1);
        assert_eq!(available(&app, &org).await, "24.00");
        app.assert_invariants().await;
        app.stop().await;
    }
}

#[tokio::test]
async fn a_declining_card_backs_off_then_auto_reload_turns_off() {
    for database in databases().await {
        let app = spawn_app_with(database, fast).await;
        let org = app.create_org("Declined Co").await;
        app.grant(&org, "12.00").await;
        let reply = put_reload(
            &app,
            &org,
            reload_body("pm_card_chargeDeclinedInsufficientFunds"),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        spend(&app, &org, "5.00").await;
        let first = eventually("the first failure", || async {
            let reload = app
                .get(&As::Operator, &format!("/v1/orgs/{org}/auto_reload"))
                .await;
            (reload.body["failures"] == 1).then_some(reload.body)
        })
        .await;
        assert_eq!(first["enabled"], true);
        assert!(first["retry_at"].is_i64(), "{first}");
        assert_eq!(first["last_failure"], "Your card has insufficient funds.");
        // After the back-off, the second failure (reload_failures_max = 2) turns it off.
        let second = eventually("auto-reload turned off", || async {
            let reload = app
                .get(&As::Operator, &format!("/v1/orgs/{org}/auto_reload"))
                .await;
            (reload.body["enabled"] == false).then_some(reload.body)
        })
        .await;
        assert_eq!(second["failures"], 2);
        assert_eq!(second["disabled_reason"], "too_many_failures");
        let made = payments(&app, &org).await;
        assert_eq!(made.len(), 2, "{made:?}");
        for payment in &made {
            assert_eq!(payment["state"], "failed");
            assert_eq!(payment["failure_code"], "insufficient_funds");
        }
        assert_eq!(
            available(&app, &org).await,
            "7.00",
            "no credit from a decline"
        );
        let kinds = notice_kinds(&app, &org).await;
        assert_eq!(
            kinds
                .iter()
                .filter(|k| k.starts_with("auto_reload"))
                .cloned()
                .collect::<Vec<_>>(),
            ["auto_reload.failed", "auto_reload.disabled"]
        );
        // Off means off: more spending charges nothing.
        spend(&app, &org, "5.00").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(payments(&app, &org).await.len(), 2);
        // Turning it back on with a good card reloads at once (it is below the threshold).
        let reply = put_reload(&app, &org, reload_body("pm_card_visa")).await;
        assert_eq!(reply.body["failures"], 0);
        eventually("the reload after re-enabling", || async {
            (available(&app, &org).await == "22.00").then_some(())
        })
        .await;
        app.assert_invariants().await;
        app.stop().await;
    }
}

#[tokio::test]
async fn a_card_needing_authentication_waits_for_the_confirmation_link() {
    for database in databases().await {
        let app = spawn_app_with(database, fast).await;
        let org = app.create_org("Secure Co").await;
        app.grant(&org, "12.00").await;
        let reply = put_reload(&app, &org, reload_body("pm_card_authenticationRequired")).await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        spend(&app, &org, "5.00").await;
        let payment = eventually("requires_action", || async {
            payments(&app, &org)
                .await
                .into_iter()
                .find(|p| p["state"] == "requires_action")
        })
        .await;
        let url = payment["action_url"].as_str().expect("a link").to_owned();
        let id = payment["id"].as_str().unwrap().to_owned();
        assert_eq!(url, format!("{}/pay/{id}", app.base));
        assert!(notice_kinds(&app, &org)
            .await
            .contains(&"payment.action_required".to_owned()));
        // While it waits, no second reload is made.
        spend(&app, &org, "1.00").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(payments(&app, &org).await.len(), 1);
        assert_eq!(available(&app, &org).await, "6.00");
        let page = page_client().get(&url).send().await.unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        assert!(page.text().await.unwrap().contains("Confirm $20.00"));
        let confirmed = page_client().post(&url).send().await.unwrap();
        assert_eq!(confirmed.status(), StatusCode::OK);
        assert_eq!(available(&app, &org).await, "26.00");
        let after = app.get(&As::Operator, &format!("/v1/payments/{id}")).await;
        assert_eq!(after.body["state"], "succeeded");
        // The link now says it is paid; confirming again credits nothing.
        let again = page_client().post(&url).send().await.unwrap();
        assert!(again.text().await.unwrap().contains("Payment received"));
        assert_eq!(available(&app, &org).await, "26.00");
        app.assert_invariants().await;
        app.stop().await;
    }
}

#[tokio::test]
async fn an_interrupted_charge_is_resumed_without_a_second_charge() {
    use creditgate_domain::payment::{PaymentEvent, PaymentKind, PaymentState};
    use creditgate_domain::reload::FailurePolicy;
    use creditgate_store::api::{Payment, PaymentDetails, SandboxCharge};
    for database in databases().await {
        let app = spawn_app_with(database, |config| {
            fast(config);
            config.charging_resume_ms = 0;
        })
        .await;
        let org = app.create_org("Crash Co").await;
        let now = creditgate_domain::Timestamp::from_unix_ms(
            i64::try_from(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis(),
            )
            .unwrap(),
        );
        app.store
            .set_payment_method(&org, "pm_card_visa", "visa •••• 4242", now)
            .await
            .unwrap();
        // Two payments left `charging` by a crash: one before the provider was called, one
        // after the provider charged but before the outcome was recorded.
        let policy = FailurePolicy {
            backoff_ms: 1,
            backoff_ms_max: 1,
            failures_max: 3,
        };
        for (id, charged) in [("pay_crashbefore", false), ("pay_crashafter", true)] {
            let payment = Payment {
                id: id.into(),
                org_id: org.clone(),
                kind: PaymentKind::TopUp,
                method: creditgate_domain::payment::PaymentMethod::SavedCard,
                state: PaymentState::Created,
                amount: creditgate_domain::Amount::parse("7.00").unwrap(),
                currency: "USD".into(),
                provider: "sandbox".into(),
                provider_ref: None,
                action_url: None,
                return_url: None,
                failure_code: None,
                failure_message: None,
                transfer_id: None,
                created_at: now,
                updated_at: now,
            };
            app.store.insert_payment(&payment).await.unwrap();
            app.store
                .advance_payment(
                    id,
                    PaymentEvent::Charge,
                    &PaymentDetails::default(),
                    &policy,
                    now,
                )
                .await
                .unwrap();
            if charged {
                app.store
                    .sandbox_charge_once(&SandboxCharge {
                        id: "ch_sandbox_crashafter".into(),
                        payment_id: id.into(),
                        amount: payment.amount,
                        status: "succeeded".into(),
                        payment_method: "pm_card_visa".into(),
                        created_at: now,
                    })
                    .await
                    .unwrap();
            }
        }
        eventually("both resumed", || async {
            (available(&app, &org).await == "14.00").then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(available(&app, &org).await, "14.00", "each credited once");
        for id in ["pay_crashbefore", "pay_crashafter"] {
            let payment = app.store.payment(id).await.unwrap().unwrap();
            assert_eq!(payment.state, PaymentState::Succeeded);
            let charge = app.store.sandbox_charge(id).await.unwrap().unwrap();
            assert_eq!(charge.status, "succeeded");
        }
        // The charge made before the crash is the one recorded: not charged again.
        let after = app
            .store
            .sandbox_charge("pay_crashafter")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(after.id, "ch_sandbox_crashafter");
        app.assert_invariants().await;
        app.stop().await;
    }
}
