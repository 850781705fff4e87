//! Payments against localstripe, the Stripe-compatible peer we did not write (extended with
//! Checkout Sessions by `stripe_support/launcher.py`), on both backends: a Checkout top-up
//! completes, its signed webhook arrives and credits land once (duplicates, replays and
//! out-of-order events change nothing; bad signatures are refused); the saved card is charged
//! off-session; auto-reload charges a good card at the threshold and access never lapses; a
//! declining card backs off and then turns auto-reload off; a 3-D Secure card ends in
//! `requires_action` whose link leads to a Checkout that completes the same payment; and
//! `creditgate reconcile` finds no difference, then the one we make.
//!
//! When `CI` is set, a failure to install or start localstripe fails the test; otherwise the
//! tests are skipped with a message.

mod api_helpers;
mod api_support;
#[path = "stripe_support/mod.rs"]
mod stripe_support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use api_helpers::{available, eventually, spend, transitions};
use api_support::{databases, spawn_app_with, As, Reply, TestApp};
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::Sha256;
use stripe_support::LocalStripe;

const WEBHOOK_SECRET: &str = "whsec_creditgate_test";

async fn localstripe() -> Option<LocalStripe> {
    match tokio::task::spawn_blocking(LocalStripe::start)
        .await
        .expect("the start task ends")
    {
        Ok(stripe) => Some(stripe),
        Err(error) if stripe_support::ci() => panic!("localstripe is required in CI: {error}"),
        Err(error) => {
            eprintln!("skipping: localstripe is unavailable (set CI to make this fail): {error}");
            None
        }
    }
}

/// The service on Stripe (localstripe), with localstripe's webhooks pointed at it.
async fn spawn(stripe: &LocalStripe, database: creditgate_store::testing::TestDatabase) -> TestApp {
    let (base, key) = (stripe.base_url().to_owned(), stripe.secret_key().to_owned());
    let app = spawn_app_with(database, move |config| {
        config.payments = "stripe".into();
        config.stripe_api_base = base;
        config.stripe_secret_key = key;
        config.stripe_webhook_secret = WEBHOOK_SECRET.into();
        config.payments_interval_ms = 20;
        config.notice_interval_ms = 3_600_000;
        config.reload_cooldown_ms = 0;
        config.reload_backoff_ms = 150;
        config.reload_failures_max = 2;
    })
    .await;
    let hook = format!("creditgate-{}", app.address.port());
    stripe
        .register_webhook(
            &hook,
            &format!("{}/v1/webhooks/stripe", app.base),
            WEBHOOK_SECRET,
            None,
        )
        .await
        .expect("the webhook registers");
    app
}

async fn payment(app: &TestApp, id: &str) -> Value {
    app.get(&As::Operator, &format!("/v1/payments/{id}"))
        .await
        .body
}

fn now_s() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

fn sign(t: i64, body: &str, secret: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

async fn post_event(app: &TestApp, body: &str, signature: &str) -> Reply {
    let response = app
        .client
        .post(format!("{}/v1/webhooks/stripe", app.base))
        .header("content-type", "application/json")
        .header("stripe-signature", signature)
        .body(body.to_owned())
        .send()
        .await
        .expect("answers");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(Value::Null);
    Reply {
        status,
        body,
        headers,
    }
}

async fn put_reload(app: &TestApp, org: &str, card: &str) -> Reply {
    app.request(
        &As::Operator,
        reqwest::Method::PUT,
        &format!("/v1/orgs/{org}/auto_reload"),
        Some(json!({
            "enabled": true, "threshold": "10.00", "amount": "20.00", "monthly_limit": "100.00",
            "payment_method": card,
            "consent": {"accepted_by": "ada@example.com", "text_version": "2026-11"}
        })),
        &[],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkout_top_up_completes_by_webhook_and_credits_once() {
    let Some(stripe) = localstripe().await else {
        return;
    };
    for database in databases().await {
        let app = spawn(&stripe, database).await;
        let org = app.create_org("Stripe Co").await;
        let reply = app
            .post_idempotent(
                &As::Operator,
                &format!("/v1/orgs/{org}/top_ups"),
                "s1",
                json!({"amount": "25.00", "return_url": "https://example.com/billing"}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
        assert_eq!(reply.body["state"], "requires_action");
        assert_eq!(reply.body["provider"], "stripe");
        let url = reply.str("action_url");
        assert!(url.starts_with(stripe.base_url()), "{url}");
        let session = url.rsplit('/').next().unwrap().to_owned();
        assert!(session.starts_with("cs_test_"), "{session}");
        let id = reply.str("id");
        let (status, object) = stripe
            .get(&format!("/v1/checkout/sessions/{session}"))
            .await;
        assert_eq!(status, 200, "{object}");
        assert_eq!(object["amount_total"], 2_500);
        assert_eq!(object["metadata"]["payment_id"], id.as_str());
        assert_eq!(available(&app, &org).await, "0.00");

        let (status, completed) = stripe.complete_checkout(&session, "pm_card_visa").await;
        assert_eq!(status, 200, "{completed}");
        // The credit lands first, then the payment is marked succeeded (a crash between the
        // two credits again, idempotently): wait for both.
        let paid = eventually("the checkout's credit", || async {
            let paid = payment(&app, &id).await;
            (available(&app, &org).await == "25.00" && paid["state"] == "succeeded").then_some(paid)
        })
        .await;
        assert_eq!(paid["state"], "succeeded");
        assert_eq!(paid["transfer_id"], format!("txn_{id}"));

        // The checkout saved the card: a saved-card top-up is charged off-session at once,
        // and the payment_intent.succeeded that follows credits nothing more.
        let saved = eventually("the saved card", || async {
            let reply = app
                .post_idempotent(
                    &As::Operator,
                    &format!("/v1/orgs/{org}/top_ups"),
                    &format!("s2-{}", rand::random::<u32>()),
                    json!({"amount": "10.00", "method": "saved_card"}),
                )
                .await;
            (reply.status == StatusCode::CREATED).then_some(reply)
        })
        .await;
        assert_eq!(saved.body["state"], "succeeded", "{:?}", saved.body);
        assert_eq!(available(&app, &org).await, "35.00");
        tokio::time::sleep(Duration::from_millis(1_800)).await;
        assert_eq!(available(&app, &org).await, "35.00");

        // Replays and forgeries: a duplicate event id changes nothing, a success reported
        // again under a new event id changes nothing, a failure after the success changes
        // nothing, a bad or stale signature is refused.
        let intent = paid["id"].as_str().unwrap().to_owned();
        let event = |event_id: &str, kind: &str| {
            json!({
                "id": event_id, "type": kind, "object": "event",
                "data": {"object": {"id": "pi_replayed", "object": "payment_intent", "amount": 2_500,
                    "status": if kind.ends_with("succeeded") { "succeeded" } else { "requires_payment_method" },
                    "metadata": {"payment_id": intent}}}
            })
            .to_string()
        };
        let body = event("evt_replay_1", "payment_intent.succeeded");
        let first = post_event(&app, &body, &sign(now_s(), &body, WEBHOOK_SECRET)).await;
        assert_eq!(first.status, StatusCode::OK, "{:?}", first.body);
        assert_eq!(first.body["duplicate"], false);
        let again = post_event(&app, &body, &sign(now_s(), &body, WEBHOOK_SECRET)).await;
        assert_eq!(again.body["duplicate"], true);
        let failed = event("evt_replay_2", "payment_intent.payment_failed");
        let reply = post_event(&app, &failed, &sign(now_s(), &failed, WEBHOOK_SECRET)).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(payment(&app, &id).await["state"], "succeeded");
        let forged = post_event(&app, &body, &sign(now_s(), &body, "whsec_wrong")).await;
        assert_eq!(forged.status, StatusCode::BAD_REQUEST);
        assert_eq!(forged.body["error"]["param"], "Stripe-Signature");
        let stale = post_event(&app, &body, &sign(now_s() - 301, &body, WEBHOOK_SECRET)).await;
        assert_eq!(stale.status, StatusCode::BAD_REQUEST);
        let unsigned = post_event(&app, &body, "").await;
        assert_eq!(unsigned.status, StatusCode::BAD_REQUEST);
        assert_eq!(available(&app, &org).await, "35.00");
        app.assert_invariants().await;
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_reload_on_stripe_charges_declines_and_confirms() {
    let Some(stripe) = localstripe().await else {
        return;
    };
    for database in databases().await {
        // Each backend's run starts from an empty localstripe, so reconciliation sees only
        // this run's payments.
        let reset = reqwest::Client::new()
            .delete(format!("{}/_config/data", stripe.base_url()))
            .bearer_auth(stripe.secret_key())
            .send()
            .await
            .expect("localstripe answers");
        assert!(reset.status().is_success(), "{}", reset.status());
        let url = database.url.clone();
        let app = spawn(&stripe, database).await;

        // A good card: reloads at the threshold; access never lapses.
        let good = app.create_org("Good Card Co").await;
        app.grant(&good, "15.00").await;
        let card = stripe.card("4242424242424242").await;
        let reply = put_reload(&app, &good, &card).await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        assert_eq!(reply.body["payment_method"]["label"], "visa •••• 4242");
        spend(&app, &good, "6.00").await;
        eventually("the reload", || async {
            (available(&app, &good).await == "29.00").then_some(())
        })
        .await;
        let states: Vec<String> = transitions(&app, &good)
            .await
            .iter()
            .skip(1)
            .map(|t| t["to_state"].as_str().unwrap_or("").to_owned())
            .collect();
        assert!(!states.contains(&"depleted".to_owned()), "{states:?}");
        // The payment_intent.succeeded webhook that follows credits nothing more.
        tokio::time::sleep(Duration::from_millis(1_800)).await;
        assert_eq!(available(&app, &good).await, "29.00");

        // A card that declines: back-off, then auto-reload turns itself off.
        let declined = app.create_org("Declined Card Co").await;
        app.grant(&declined, "12.00").await;
        let card = stripe.card("4000000000000341").await;
        let reply = put_reload(&app, &declined, &card).await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        spend(&app, &declined, "5.00").await;
        let off = eventually("auto-reload turned off", || async {
            let reload = app
                .get(&As::Operator, &format!("/v1/orgs/{declined}/auto_reload"))
                .await;
            (reload.body["enabled"] == false).then_some(reload.body)
        })
        .await;
        assert_eq!(off["failures"], 2);
        assert_eq!(off["disabled_reason"], "too_many_failures");
        assert_eq!(available(&app, &declined).await, "7.00");

        // A card that needs 3-D Secure: requires_action, and its link leads to a Checkout
        // for the same payment, whose completion credits it.
        let secure = app.create_org("Secure Card Co").await;
        app.grant(&secure, "12.00").await;
        let card = stripe.card("4000002760003184").await;
        let reply = put_reload(&app, &secure, &card).await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        spend(&app, &secure, "5.00").await;
        let waiting = eventually("requires_action", || async {
            let list = app
                .get(&As::Operator, &format!("/v1/orgs/{secure}/payments"))
                .await;
            list.body["data"]
                .as_array()
                .and_then(|d| d.first().cloned())
                .filter(|p| p["state"] == "requires_action")
        })
        .await;
        let id = waiting["id"].as_str().unwrap().to_owned();
        let link = waiting["action_url"].as_str().unwrap().to_owned();
        assert_eq!(link, format!("{}/pay/{id}", app.base));
        let redirect = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .get(&link)
            .send()
            .await
            .unwrap();
        assert_eq!(redirect.status(), StatusCode::SEE_OTHER);
        let checkout = redirect.headers()["location"].to_str().unwrap().to_owned();
        let session = checkout.rsplit('/').next().unwrap().to_owned();
        assert!(session.starts_with("cs_test_"), "{checkout}");
        let (status, completed) = stripe.complete_checkout(&session, &card).await;
        assert_eq!(status, 200, "{completed}");
        let confirmed = eventually("the confirmed reload", || async {
            let paid = payment(&app, &id).await;
            (available(&app, &secure).await == "27.00" && paid["state"] == "succeeded")
                .then_some(paid)
        })
        .await;
        assert_eq!(confirmed["state"], "succeeded");

        // Reconciliation: every payment of this run at localstripe has its credit.
        let today = now_s() - 3_600;
        let run = |from: i64| {
            let url = url.clone();
            let stripe_base = stripe.base_url().to_owned();
            let key = stripe.secret_key().to_owned();
            move || {
                std::process::Command::new(env!("CARGO_BIN_EXE_creditgate"))
                    .args([
                        "reconcile",
                        "--from",
                        &from.to_string(),
                        "--to",
                        &(now_s() + 3_600).to_string(),
                    ])
                    .env("CREDITGATE_DATABASE_URL", &url)
                    .env("CREDITGATE_PAYMENTS", "stripe")
                    .env("CREDITGATE_STRIPE_API_BASE", &stripe_base)
                    .env("CREDITGATE_STRIPE_SECRET_KEY", &key)
                    .env("CREDITGATE_STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET)
                    .output()
                    .expect("reconcile runs")
            }
        };
        let clean = tokio::task::spawn_blocking(run(today)).await.unwrap();
        let text = String::from_utf8_lossy(&clean.stdout).to_string();
        assert_eq!(
            clean.status.code(),
            Some(0),
            "{text}{}",
            String::from_utf8_lossy(&clean.stderr)
        );
        assert!(text.contains("reconciled: no differences"), "{text}");
        assert!(
            text.starts_with("2 succeeded payments at stripe, 2 ledger credits"),
            "{text}"
        );
        // A payment at the provider that never reached the ledger is reported.
        let (status, ghost) = stripe
            .post_form(
                "/v1/payment_intents",
                &[
                    ("amount", "1234"),
                    ("currency", "usd"),
                    ("payment_method", "pm_card_visa"),
                    ("confirm", "true"),
                    ("metadata[payment_id]", "pay_ghost"),
                ],
            )
            .await;
        assert_eq!(status, 200, "{ghost}");
        let found = tokio::task::spawn_blocking(run(today)).await.unwrap();
        let text = String::from_utf8_lossy(&found.stdout).to_string();
        assert_eq!(found.status.code(), Some(1), "{text}");
        assert!(
            text.lines()
                .any(|l| l.contains("payment without credit") && l.contains("pay_ghost")),
            "{text}"
        );
        app.assert_invariants().await;
        app.stop().await;
    }
}
