//! Payments against localstripe, the Stripe-compatible peer we did not write (extended with
//! Checkout Sessions by `stripe_support/launcher.py`), on both backends: a Checkout top-up
//! completes, its signed webhook arrives and credits land once (duplicates, replays and
//! out-of-order events change nothing; bad signatures are refused); the saved card is charged
//! off-session; auto-reload charges a good card at the threshold and access never lapses; a
//! declining card backs off and then turns auto-reload off, and a new card turns it back on;
//! a 3-D Secure card ends in `requires_action` whose link leads to a Checkout that completes
//! the same payment; 256 concurrent debits crossing the threshold make one reload and one
//! PaymentIntent; every POST to Stripe carries an `Idempotency-Key` (a PaymentIntent's is its
//! payment id); and `creditgate reconcile` finds no difference after each test, then the
//! three kinds we plant.
//!
//! Each backend's run starts from an empty localstripe (`LocalStripe::reset`), so the
//! launcher's records and reconciliation see only that run.
//!
//! When `CI` is set, a failure to install or start localstripe fails the test; otherwise the
//! tests are skipped with a message.

mod api_support;
#[path = "stripe_support/mod.rs"]
mod stripe_support;

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use api_support::helpers::{available, eventually, spend, transitions};
use api_support::{databases, spawn_app_with, As, Reply, TestApp};
use creditgate_domain::{Amount, Timestamp};
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::Sha256;
use stripe_support::localstripe;
use stripe_support::{LocalStripe, HARNESS_USER_AGENT};

const WEBHOOK_SECRET: &str = "whsec_creditgate_test";

/// The service on Stripe (localstripe), with localstripe's webhooks pointed at it.
async fn spawn(stripe: &LocalStripe, database: creditgate_store::testing::TestDatabase) -> TestApp {
    spawn_with(stripe, database, true).await
}

/// The id the app's webhook is registered under at localstripe.
fn hook_id(app: &TestApp) -> String {
    format!("creditgate-{}", app.address.port())
}

/// The service on Stripe (localstripe); localstripe's webhooks reach it only if `hooked`
/// (otherwise the test delivers every event itself).
async fn spawn_with(
    stripe: &LocalStripe,
    database: creditgate_store::testing::TestDatabase,
    hooked: bool,
) -> TestApp {
    let (base, key) = (stripe.base_url().to_owned(), stripe.secret_key().to_owned());
    let app = spawn_app_with(database, move |config| {
        config.payments = creditgate::config::PaymentsProvider::Stripe;
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
    if hooked {
        stripe
            .register_webhook(
                &hook_id(&app),
                &format!("{}/v1/webhooks/stripe", app.base),
                WEBHOOK_SECRET,
                None,
            )
            .await
            .expect("the webhook registers");
    }
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

/// Now in unix seconds, taken early in a second (waiting for the next one if less than
/// 700 ms are left), so a request sent at once reaches the server within the same second: a
/// timestamp 301 s ahead of it is then exactly 301 s ahead of the server's clock.
async fn early_in_a_second() -> i64 {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_millis();
    if ms > 300 {
        tokio::time::sleep(std::time::Duration::from_millis(u64::from(1_005 - ms))).await;
    }
    now_s()
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

/// `POST /v1/webhooks/stripe` without a `Stripe-Signature` header.
async fn post_unsigned(app: &TestApp, body: &str) -> Reply {
    let response = app
        .client
        .post(format!("{}/v1/webhooks/stripe", app.base))
        .header("content-type", "application/json")
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

/// A refused signature: 400 `signature_invalid` about `Stripe-Signature`.
fn assert_signature_refused(reply: &Reply, what: &str) {
    assert_eq!(
        reply.status,
        StatusCode::BAD_REQUEST,
        "{what}: {:?}",
        reply.body
    );
    assert_eq!(
        reply.code(),
        "signature_invalid",
        "{what}: {:?}",
        reply.body
    );
    assert_eq!(
        reply.body["error"]["param"], "Stripe-Signature",
        "{what}: {:?}",
        reply.body
    );
}

async fn payments(app: &TestApp, org: &str) -> Vec<Value> {
    let reply = app
        .get(&As::Operator, &format!("/v1/orgs/{org}/payments?limit=100"))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.body["has_more"], false, "{:?}", reply.body);
    reply.body["data"].as_array().cloned().unwrap_or_default()
}

/// The org's whole ledger history, newest first, as (id, kind, amount), read from the
/// database in one go (the race test makes hundreds; paging through the API past payment
/// credits is tested in `payments.rs`).
async fn all_transfers(app: &TestApp, org: &str) -> Vec<(String, String, Amount)> {
    let page = app
        .store
        .transfers(org, 10_000, None)
        .await
        .expect("the transfers read")
        .expect("the org's account");
    assert!(!page.has_more);
    page.items
        .iter()
        .map(|t| {
            (
                t.id.as_str().to_owned(),
                t.kind.as_str().to_owned(),
                t.amount,
            )
        })
        .collect()
}

/// The delivery of localstripe's `kind` event about `object` to the app (waited for);
/// checks the app answered it 200.
async fn delivered(stripe: &LocalStripe, app: &TestApp, kind: &str, object: &str) -> Value {
    let hook = hook_id(app);
    let delivery =
        eventually(&format!("{kind} about {object} delivered"), || async {
            stripe.deliveries().await.into_iter().find(|d| {
                d["webhook"] == hook.as_str() && d["type"] == kind && d["object"] == object
            })
        })
        .await;
    assert_eq!(delivery["status"], 200, "{delivery}");
    delivery
}

/// The server's requests to Stripe's API since the last reset (not the harness's own).
async fn server_requests(stripe: &LocalStripe) -> Vec<Value> {
    stripe
        .requests()
        .await
        .into_iter()
        .filter(|r| r["user_agent"] != HARNESS_USER_AGENT)
        .collect()
}

/// Every POST the server made to Stripe's API carried an `Idempotency-Key` (1 to 255
/// characters, Stripe's limit), and every PaymentIntent it created was keyed by the payment
/// id it carries in its metadata; answers those POSTs.
async fn assert_keyed_posts(stripe: &LocalStripe) -> Vec<Value> {
    let posts: Vec<Value> = server_requests(stripe)
        .await
        .into_iter()
        .filter(|r| r["method"] == "POST")
        .collect();
    for post in &posts {
        let key = post["idempotency_key"].as_str().unwrap_or("");
        assert!(
            !key.is_empty() && key.len() <= 255,
            "a POST to Stripe without a usable Idempotency-Key: {post}"
        );
        if post["path"] == "/v1/payment_intents" {
            assert!(key.starts_with("pay_"), "{post}");
            assert_eq!(post["payment_id"], key, "{post}");
        }
    }
    posts
}

/// The paths of the server's POSTs, ids replaced by `{id}`, each once.
fn post_paths(posts: &[Value]) -> Vec<String> {
    let mut paths: Vec<String> = posts
        .iter()
        .map(|p| {
            p["path"]
                .as_str()
                .unwrap_or("")
                .split('/')
                .map(|part| {
                    let id = ["pm_", "pi_", "cus_", "cs_"]
                        .iter()
                        .any(|prefix| part.starts_with(prefix));
                    if id {
                        "{id}"
                    } else {
                        part
                    }
                })
                .collect::<Vec<_>>()
                .join("/")
        })
        .collect();
    paths.sort();
    paths.dedup();
    paths
}

/// The one PaymentIntent the server created for `payment_id` (exactly one POST keyed by it,
/// answered 200), as localstripe has it now; it is the payment's `provider_ref`.
async fn intent_of(stripe: &LocalStripe, app: &TestApp, payment_id: &str) -> Value {
    let posts = assert_keyed_posts(stripe).await;
    let made: Vec<&Value> = posts
        .iter()
        .filter(|p| p["path"] == "/v1/payment_intents" && p["idempotency_key"] == payment_id)
        .collect();
    assert_eq!(
        made.len(),
        1,
        "PaymentIntents created for {payment_id}: {made:?}"
    );
    assert_eq!(made[0]["status"], 200, "{}", made[0]);
    let intent_id = made[0]["id"].as_str().expect("a PaymentIntent answered");
    let stored = app
        .store
        .payment(payment_id)
        .await
        .expect("the payment reads")
        .expect("the payment exists");
    assert_eq!(stored.provider_ref.as_deref(), Some(intent_id));
    let (status, intent) = stripe
        .get(&format!("/v1/payment_intents/{intent_id}"))
        .await;
    assert_eq!(status, 200, "{intent}");
    assert_eq!(intent["metadata"]["payment_id"], payment_id, "{intent}");
    intent
}

/// `creditgate reconcile` from `from` to an hour from now (unix seconds), on the app's
/// database and localstripe: (exit code, stdout).
async fn reconcile(stripe: &LocalStripe, database_url: &str, from: i64) -> (Option<i32>, String) {
    let url = database_url.to_owned();
    let stripe_base = stripe.base_url().to_owned();
    let key = stripe.secret_key().to_owned();
    let output = tokio::task::spawn_blocking(move || {
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
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "reconcile failed: {text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text)
}

/// Reconciliation finds `payments` succeeded payments, as many credits, and no difference.
async fn assert_reconciled(stripe: &LocalStripe, database_url: &str, from: i64, payments: usize) {
    let (code, text) = reconcile(stripe, database_url, from).await;
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("reconciled: no differences"), "{text}");
    assert!(
        text.starts_with(&format!(
            "{payments} succeeded payments at stripe, {payments} ledger credits"
        )),
        "{text}"
    );
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
        stripe.reset().await;
        let (database_url, from) = (database.url.clone(), now_s() - 3_600);
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
        let charged = intent_of(&stripe, &app, saved.body["id"].as_str().unwrap()).await;
        assert_eq!(charged["status"], "succeeded", "{charged}");
        assert_eq!(charged["amount"], 1_000, "{charged}");
        let checkout_intent = eventually("the checkout's PaymentIntent", || async {
            let (_, session) = stripe
                .get(&format!("/v1/checkout/sessions/{session}"))
                .await;
            session["payment_intent"].as_str().map(str::to_owned)
        })
        .await;
        // The card the checkout saved is the one charged.
        let (_, paid_at_checkout) = stripe
            .get(&format!("/v1/payment_intents/{checkout_intent}"))
            .await;
        assert_eq!(
            charged["payment_method"], paid_at_checkout["payment_method"],
            "{charged}"
        );
        delivered(&stripe, &app, "checkout.session.completed", &session).await;
        delivered(&stripe, &app, "payment_intent.succeeded", &checkout_intent).await;
        delivered(
            &stripe,
            &app,
            "payment_intent.succeeded",
            charged["id"].as_str().unwrap(),
        )
        .await;
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

        // Every call to Stripe was keyed; the checkout and the saved-card charge are both
        // at localstripe, beside their credits.
        let posts = assert_keyed_posts(&stripe).await;
        assert_eq!(
            post_paths(&posts),
            [
                "/v1/checkout/sessions",
                "/v1/customers",
                "/v1/payment_intents"
            ],
            "{posts:?}"
        );
        assert_reconciled(&stripe, &database_url, from, 2).await;
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
        stripe.reset().await;
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
        let reloads = payments(&app, &good).await;
        assert_eq!(reloads.len(), 1, "{reloads:?}");
        let good_reload = reloads[0]["id"].as_str().unwrap().to_owned();
        let intent = intent_of(&stripe, &app, &good_reload).await;
        assert_eq!(intent["status"], "succeeded", "{intent}");
        assert_eq!(intent["payment_method"], card.as_str(), "{intent}");
        // (The payment_intent.succeeded webhook that follows is checked below.)
        let good_intent = intent["id"].as_str().unwrap().to_owned();

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
        let failed = payments(&app, &declined).await;
        assert_eq!(failed.len(), 2, "{failed:?}");
        assert!(failed.iter().all(|p| p["state"] == "failed"), "{failed:?}");

        // The customer saves a good card and turns auto-reload back on: the balance is
        // below the threshold already, so it reloads at once, with the new card.
        let new_card = stripe.card("4242424242424242").await;
        assert_ne!(new_card, card);
        let reply = put_reload(&app, &declined, &new_card).await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        assert_eq!(reply.body["enabled"], true, "{:?}", reply.body);
        assert_eq!(reply.body["failures"], 0, "{:?}", reply.body);
        assert_eq!(
            reply.body["disabled_reason"],
            Value::Null,
            "{:?}",
            reply.body
        );
        assert_eq!(reply.body["payment_method"]["id"], new_card.as_str());
        assert_eq!(reply.body["payment_method"]["label"], "visa •••• 4242");
        let renewed = eventually("the reload with the new card", || async {
            let list = payments(&app, &declined).await;
            let done = list.iter().find(|p| p["state"] == "succeeded").cloned();
            (available(&app, &declined).await == "27.00")
                .then_some(done)
                .flatten()
        })
        .await;
        let renewed_id = renewed["id"].as_str().unwrap().to_owned();
        let intent = intent_of(&stripe, &app, &renewed_id).await;
        assert_eq!(intent["status"], "succeeded", "{intent}");
        assert_eq!(intent["amount"], 2_000, "{intent}");
        assert_eq!(intent["payment_method"], new_card.as_str(), "{intent}");
        let customer = app
            .store
            .payment_profile(&declined)
            .await
            .unwrap()
            .customer_id
            .expect("a customer");
        assert_eq!(intent["customer"], customer.as_str(), "{intent}");
        // The declined attempts were made with the old card (localstripe's 402 does not
        // name the PaymentIntent: they are found by their metadata).
        let intents = stripe.payment_intents().await;
        for attempt in &failed {
            let made: Vec<&Value> = intents
                .iter()
                .filter(|i| i["metadata"]["payment_id"] == attempt["id"])
                .collect();
            assert_eq!(made.len(), 1, "{attempt}: {made:?}");
            assert_eq!(made[0]["payment_method"], card.as_str(), "{}", made[0]);
            assert_eq!(made[0]["status"], "requires_payment_method", "{}", made[0]);
        }
        let renewed_intent = intent["id"].as_str().unwrap().to_owned();

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

        // The payment_intent.succeeded webhooks that followed the two reloads credited
        // nothing more.
        for intent in [&good_intent, &renewed_intent] {
            delivered(&stripe, &app, "payment_intent.succeeded", intent).await;
        }
        assert_eq!(available(&app, &good).await, "29.00");
        assert_eq!(payments(&app, &good).await.len(), 1);
        assert_eq!(available(&app, &declined).await, "27.00");
        assert_eq!(payments(&app, &declined).await.len(), 3);

        // Reconciliation: every payment of this run at localstripe has its credit (the good
        // card's reload, the new card's and the confirmed one).
        let today = now_s() - 3_600;
        let posts = assert_keyed_posts(&stripe).await;
        assert_eq!(
            post_paths(&posts),
            [
                "/v1/checkout/sessions",
                "/v1/customers",
                "/v1/payment_intents",
                "/v1/payment_intents/{id}/cancel",
                "/v1/payment_methods/{id}/attach"
            ],
            "{posts:?}"
        );
        assert_reconciled(&stripe, &url, today, 3).await;

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
        // A credit whose payment the provider never took: a checkout left open at
        // localstripe, credited by a correctly signed event about a PaymentIntent that does
        // not exist there.
        let reply = app
            .post_idempotent(
                &As::Operator,
                &format!("/v1/orgs/{good}/top_ups"),
                "planted-credit",
                json!({"amount": "15.00", "return_url": "https://example.com/billing"}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
        let unpaid = reply.str("id");
        let body = json!({
            "id": "evt_planted_credit", "type": "payment_intent.succeeded", "object": "event",
            "data": {"object": {"id": "pi_never_made", "object": "payment_intent",
                "amount": 1_500, "status": "succeeded", "metadata": {"payment_id": unpaid}}}
        })
        .to_string();
        let reply = post_event(&app, &body, &sign(now_s(), &body, WEBHOOK_SECRET)).await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        assert_eq!(payment(&app, &unpaid).await["state"], "succeeded");
        assert_eq!(available(&app, &good).await, "44.00");
        // A success at the provider for an existing payment with another amount (credited
        // 20.00, charged 19.99 here): its webhook credits nothing.
        let (status, other) = stripe
            .post_form(
                "/v1/payment_intents",
                &[
                    ("amount", "1999"),
                    ("currency", "usd"),
                    ("payment_method", "pm_card_visa"),
                    ("confirm", "true"),
                    ("metadata[payment_id]", &good_reload),
                ],
            )
            .await;
        assert_eq!(status, 200, "{other}");
        assert_eq!(other["status"], "succeeded", "{other}");
        delivered(
            &stripe,
            &app,
            "payment_intent.succeeded",
            other["id"].as_str().unwrap(),
        )
        .await;
        assert_eq!(available(&app, &good).await, "44.00");
        assert_eq!(payment(&app, &good_reload).await["state"], "succeeded");

        let (code, text) = reconcile(&stripe, &url, today).await;
        assert_eq!(code, Some(1), "{text}");
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("DIFFERENCE"))
            .collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines
                .iter()
                .any(|l| l.contains("payment without credit") && l.contains("pay_ghost")),
            "{text}"
        );
        assert!(
            lines.iter().any(|l| l.contains("credit without payment")
                && l.contains(&format!("txn_{unpaid}"))
                && l.contains("15.00")),
            "{text}"
        );
        assert!(
            lines.iter().any(|l| l.contains("amount mismatch")
                && l.contains(&good_reload)
                && l.contains("provider 1999 cents")
                && l.contains("20.00")),
            "{text}"
        );
        assert!(text.contains("3 differences"), "{text}");
        app.assert_invariants().await;
        app.stop().await;
    }
}

/// A Checkout top-up of `amount` paid at localstripe (no webhook reaches the app): answers
/// (payment id, localstripe's `payment_intent.succeeded` event, its
/// `checkout.session.completed` event), the events exactly as localstripe made them.
async fn paid_checkout(
    stripe: &LocalStripe,
    app: &TestApp,
    org: &str,
    amount: &str,
) -> (String, Value, Value) {
    let reply = app
        .post_idempotent(
            &As::Operator,
            &format!("/v1/orgs/{org}/top_ups"),
            &format!("checkout-{}", rand::random::<u64>()),
            json!({"amount": amount, "return_url": "https://example.com/billing"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    let id = reply.str("id");
    let session = reply
        .str("action_url")
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let (status, completed) = stripe.complete_checkout(&session, "pm_card_visa").await;
    assert_eq!(status, 200, "{completed}");
    let intent = completed["payment_intent"].as_str().unwrap().to_owned();
    let find = |events: Vec<Value>, object: &str| {
        events
            .into_iter()
            .find(|e| e["data"]["object"]["id"] == object)
            .unwrap_or_else(|| panic!("localstripe's event about {object}"))
    };
    let succeeded = find(stripe.events("payment_intent.succeeded").await, &intent);
    let checkout = find(stripe.events("checkout.session.completed").await, &session);
    for event in [&succeeded, &checkout] {
        assert_eq!(
            event["data"]["object"]["metadata"]["payment_id"],
            id.as_str()
        );
    }
    (id, succeeded, checkout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_over_http_are_verified_deduplicated_and_reordered() {
    let Some(stripe) = localstripe().await else {
        return;
    };
    for database in databases().await {
        stripe.reset().await;
        let (url, from) = (database.url.clone(), now_s() - 3_600);
        // No webhook of localstripe's reaches this app: the test delivers its events.
        let app = spawn_with(&stripe, database, false).await;
        let org = app.create_org("Webhook Co").await;

        // Payment A: its payment_intent.succeeded, then its checkout.session.completed.
        let (a, a_intent, a_checkout) = paid_checkout(&stripe, &app, &org, "25.00").await;
        let body = a_intent.to_string();
        let t = early_in_a_second().await;
        let future = post_event(&app, &body, &sign(t + 301, &body, WEBHOOK_SECRET)).await;
        assert_signature_refused(&future, "a timestamp 301 s ahead");
        let mut tampered: Value = a_intent.clone();
        tampered["data"]["object"]["amount"] = json!(250_000);
        let reply = post_event(
            &app,
            &tampered.to_string(),
            &sign(now_s(), &body, WEBHOOK_SECRET),
        )
        .await;
        assert_signature_refused(&reply, "a tampered body");
        let reply = post_unsigned(&app, &body).await;
        assert_signature_refused(&reply, "no Stripe-Signature header");
        let t = now_s();
        let wrong = sign(t, &body, "whsec_rolled_out");
        let right = sign(t, &body, WEBHOOK_SECRET);
        let reply = post_event(&app, &body, &wrong).await;
        assert_signature_refused(&reply, "only a wrong v1");
        assert_eq!(available(&app, &org).await, "0.00");
        assert_eq!(payment(&app, &a).await["state"], "requires_action");
        // Two v1 values (a secret being rolled): the wrong one first, then the right one.
        // The refusals above did not mark the event as seen.
        let v1 = |signed: &str| signed.split_once(",v1=").unwrap().1.to_owned();
        let both = format!("t={t},v1={},v1={}", v1(&wrong), v1(&right));
        let reply = post_event(&app, &body, &both).await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        assert_eq!(reply.body["duplicate"], false);
        assert_eq!(available(&app, &org).await, "25.00");
        let paid = payment(&app, &a).await;
        assert_eq!(paid["state"], "succeeded", "{paid}");
        assert_eq!(paid["transfer_id"], format!("txn_{a}"));
        // The checkout's completion, after: no second credit, and it still saves the card.
        let body = a_checkout.to_string();
        let reply = post_event(&app, &body, &sign(now_s(), &body, WEBHOOK_SECRET)).await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        assert_eq!(reply.body["duplicate"], false);
        assert_eq!(available(&app, &org).await, "25.00");
        let (_, intent) = stripe
            .get(&format!(
                "/v1/payment_intents/{}",
                a_intent["data"]["object"]["id"].as_str().unwrap()
            ))
            .await;
        let profile = app.store.payment_profile(&org).await.unwrap();
        assert_eq!(
            profile.payment_method.as_deref(),
            intent["payment_method"].as_str(),
            "{intent}"
        );
        // Both delivered again (Stripe retries): duplicates, nothing more.
        for event in [&a_intent, &a_checkout] {
            let body = event.to_string();
            let reply = post_event(&app, &body, &sign(now_s(), &body, WEBHOOK_SECRET)).await;
            assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
            assert_eq!(reply.body["duplicate"], true, "{:?}", reply.body);
        }
        assert_eq!(available(&app, &org).await, "25.00");

        // Payment B: the other order.
        let (b, b_intent, b_checkout) = paid_checkout(&stripe, &app, &org, "10.00").await;
        for (event, after) in [(&b_checkout, "35.00"), (&b_intent, "35.00")] {
            let body = event.to_string();
            let reply = post_event(&app, &body, &sign(now_s(), &body, WEBHOOK_SECRET)).await;
            assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
            assert_eq!(reply.body["duplicate"], false, "{:?}", reply.body);
            assert_eq!(available(&app, &org).await, after);
            assert_eq!(payment(&app, &b).await["state"], "succeeded");
        }

        // Payment C: both events, each delivered four times, all at once.
        let (c, c_intent, c_checkout) = paid_checkout(&stripe, &app, &org, "12.00").await;
        let mut deliveries = Vec::new();
        for event in [&c_intent, &c_checkout, &c_intent, &c_checkout]
            .into_iter()
            .cycle()
            .take(8)
        {
            let (base, client, body) = (app.base.clone(), app.client.clone(), event.to_string());
            let id = event["id"].as_str().unwrap().to_owned();
            deliveries.push(tokio::spawn(async move {
                let response = client
                    .post(format!("{base}/v1/webhooks/stripe"))
                    .header("content-type", "application/json")
                    .header("stripe-signature", sign(now_s(), &body, WEBHOOK_SECRET))
                    .body(body)
                    .send()
                    .await
                    .expect("answers");
                let status = response.status();
                (
                    id,
                    status,
                    response.json::<Value>().await.unwrap_or(Value::Null),
                )
            }));
        }
        let mut handled: BTreeMap<String, usize> = BTreeMap::new();
        for delivery in deliveries {
            let (id, status, body) = delivery.await.unwrap();
            assert_eq!(status, StatusCode::OK, "{body}");
            if body["duplicate"] == false {
                *handled.entry(id).or_default() += 1;
            }
        }
        assert_eq!(
            handled.values().copied().collect::<Vec<_>>(),
            [1, 1],
            "each event handled once: {handled:?}"
        );
        assert_eq!(available(&app, &org).await, "47.00");
        assert_eq!(payment(&app, &c).await["state"], "succeeded");
        let credits: Vec<String> = all_transfers(&app, &org)
            .await
            .into_iter()
            .filter(|(_, kind, _)| kind == "purchase")
            .map(|(id, _, _)| id)
            .collect();
        let mut expected = vec![format!("txn_{a}"), format!("txn_{b}"), format!("txn_{c}")];
        expected.sort();
        let mut credits_sorted = credits.clone();
        credits_sorted.sort();
        assert_eq!(credits_sorted, expected, "one credit each: {credits:?}");

        let posts = assert_keyed_posts(&stripe).await;
        assert_eq!(
            post_paths(&posts),
            ["/v1/checkout/sessions", "/v1/customers"],
            "{posts:?}"
        );
        assert_reconciled(&stripe, &url, from, 3).await;
        app.assert_invariants().await;
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_debits_across_the_threshold_make_one_reload_and_one_payment_intent() {
    let Some(stripe) = localstripe().await else {
        return;
    };
    for database in databases().await {
        stripe.reset().await;
        let (url, from) = (database.url.clone(), now_s() - 3_600);
        let app = spawn(&stripe, database).await;
        let org = app.create_org("Busy Stripe Co").await;
        let (_, secret) = app.create_key(&org).await;
        app.grant(&org, "10.50").await;
        let card = stripe.card("4242424242424242").await;
        let reply = put_reload(&app, &org, &card).await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        let before = transitions(&app, &org).await.len();

        // 256 debits of 0.01 at once (a hold, then its settlement), through the metering
        // API: 10.50 crosses 10.00 after about 50 of them, and the rest keep debiting while
        // the reload is decided and charged.
        let debits: Vec<_> = (0..256)
            .map(|_| {
                let (client, base, secret) = (app.client.clone(), app.base.clone(), secret.clone());
                tokio::spawn(async move {
                    let hold = client
                        .post(format!("{base}/v1/holds"))
                        .header("x-api-key", &secret)
                        .json(&json!({"amount": "0.01"}))
                        .send()
                        .await
                        .expect("answers");
                    let status = hold.status();
                    let body: Value = hold.json().await.unwrap_or(Value::Null);
                    if status != StatusCode::CREATED {
                        return ("hold", status, body);
                    }
                    let settle = client
                        .post(format!(
                            "{base}/v1/holds/{}/settle",
                            body["id"].as_str().unwrap()
                        ))
                        .header("x-api-key", &secret)
                        .json(&json!({"amount": "0.01"}))
                        .send()
                        .await
                        .expect("answers");
                    let status = settle.status();
                    ("settle", status, settle.json().await.unwrap_or(Value::Null))
                })
            })
            .collect();
        for debit in debits {
            let (step, status, body) = debit.await.unwrap();
            assert_eq!(status, StatusCode::OK, "a {step} was refused: {body}");
        }

        // The reload lands: 10.50 − 2.56 + 20.00.
        let reload = eventually("the reload", || async {
            let list = payments(&app, &org).await;
            let done = list.iter().find(|p| p["state"] == "succeeded").cloned();
            (available(&app, &org).await == "27.94")
                .then_some(done)
                .flatten()
        })
        .await;
        let reload_id = reload["id"].as_str().unwrap().to_owned();
        assert_eq!(reload["kind"], "auto_reload");
        assert_eq!(reload["amount"], "20.00");
        let intent = intent_of(&stripe, &app, &reload_id).await;
        assert_eq!(intent["status"], "succeeded", "{intent}");
        assert_eq!(intent["amount"], 2_000, "{intent}");
        // Settled: the webhook that follows is handled, and no decision is pending (with the
        // balance above the threshold and no more debits, no other reload can start).
        delivered(
            &stripe,
            &app,
            "payment_intent.succeeded",
            intent["id"].as_str().unwrap(),
        )
        .await;
        eventually("no reload decision pending", || async {
            let now = Timestamp::from_unix_ms(now_s() * 1_000 + 60_000);
            let due = app.store.due_reloads(now, 100).await.unwrap();
            (!due.contains(&org)).then_some(())
        })
        .await;

        // One attempt, one PaymentIntent at the provider (one created by the server, none
        // other there), one credit; access never lapsed.
        let attempts = payments(&app, &org).await;
        assert_eq!(attempts.len(), 1, "{attempts:?}");
        let intents = stripe.payment_intents().await;
        assert_eq!(intents.len(), 1, "{intents:?}");
        assert_eq!(intents[0]["id"], intent["id"]);
        let customer = app
            .store
            .payment_profile(&org)
            .await
            .unwrap()
            .customer_id
            .expect("a customer");
        assert_eq!(intents[0]["customer"], customer.as_str());
        let posts = assert_keyed_posts(&stripe).await;
        let created = posts
            .iter()
            .filter(|p| p["path"] == "/v1/payment_intents")
            .count();
        assert_eq!(created, 1, "{posts:?}");
        assert_eq!(
            post_paths(&posts),
            [
                "/v1/customers",
                "/v1/payment_intents",
                "/v1/payment_methods/{id}/attach"
            ],
            "{posts:?}"
        );
        let transfers = all_transfers(&app, &org).await;
        let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, kind, _) in &transfers {
            *kinds.entry(kind.as_str()).or_default() += 1;
        }
        assert_eq!(kinds.get("auto_reload"), Some(&1), "{kinds:?}");
        assert_eq!(kinds.get("usage"), Some(&256), "{kinds:?}");
        let credit = transfers
            .iter()
            .find(|(_, kind, _)| kind == "auto_reload")
            .unwrap();
        assert_eq!(credit.0, format!("txn_{reload_id}"));
        assert_eq!(credit.2, Amount::from_micros(20_000_000));
        let states: Vec<String> = transitions(&app, &org)
            .await
            .iter()
            .skip(before)
            .map(|t| t["to_state"].as_str().unwrap_or("").to_owned())
            .collect();
        assert!(!states.contains(&"depleted".to_owned()), "{states:?}");
        assert_eq!(available(&app, &org).await, "27.94");

        assert_reconciled(&stripe, &url, from, 1).await;
        app.assert_invariants().await;
        app.stop().await;
    }
}
