//! Refunds by the operator, end to end over HTTP (issue 19, item 1):
//! - against localstripe (its refunds by PaymentIntent), on both backends: credits bought
//!   with a test card through the Checkout top-up, part spent, part refunded (one refund at
//!   localstripe, the ledger's refund transfer, the balance, the receipt email), the same
//!   `Idempotency-Key` again (still one refund, one transfer), more than the unspent credits
//!   refused with `refund_exceeds_unspent` and nothing changed, then the whole remainder;
//!   A refund interrupted after localstripe made it (the row left `requesting`) is resumed by
//!   the payments worker: found at localstripe by its id, not asked for again, then in the
//!   ledger once. `creditgate reconcile` finds no difference, then reports a refund made
//!   outside creditgate;
//! - on the sandbox provider, on both backends: the same story with the sandbox's refunds
//!   table, bad input refused naming the field, operator only, reconcile clean; credits spent
//!   between the check and the ledger step (`failed`, the sandbox never asked); an
//!   auto-reload refunded like a purchase.
//!
//! Every test ends with the ledger invariants.

mod api_support;
#[path = "stripe_support/mod.rs"]
mod stripe_support;

use std::path::{Path, PathBuf};

use api_support::helpers::{available, eventually, spend};
use api_support::{databases, spawn_app_with, As, Reply, TestApp};
use creditgate::config::Config;
use creditgate_domain::{Amount, Timestamp};
use creditgate_store::api::{RefundCreated, RefundState};
use reqwest::StatusCode;
use serde_json::{json, Value};
use stripe_support::{localstripe, LocalStripe, HARNESS_USER_AGENT};

const WEBHOOK_SECRET: &str = "whsec_creditgate_test";
const RECEIPT: &str = "Receipt: $10.00 of Acme AI credits refunded";

fn fast(config: &mut Config) {
    config.payments_interval_ms = 20;
    config.notice_interval_ms = 20;
    config.product_name = "Acme AI".into();
}

async fn refund(app: &TestApp, payment: &str, key: &str, body: Value) -> Reply {
    app.post_idempotent(
        &As::Operator,
        &format!("/v1/payments/{payment}/refunds"),
        key,
        body,
    )
    .await
}

async fn refunds(app: &TestApp, payment: &str) -> Vec<Value> {
    let reply = app
        .get(&As::Operator, &format!("/v1/payments/{payment}/refunds"))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    reply.body["data"].as_array().cloned().unwrap_or_default()
}

/// The org's refund transfers, as (id, amount).
async fn refund_transfers(app: &TestApp, org: &str) -> Vec<(String, String)> {
    let reply = app
        .get(
            &As::Operator,
            &format!("/v1/orgs/{org}/transfers?limit=100"),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    reply.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["kind"] == "refund")
        .map(|t| (t.str_of("id"), t.str_of("amount")))
        .collect()
}

trait StrOf {
    fn str_of(&self, field: &str) -> String;
}

impl StrOf for Value {
    fn str_of(&self, field: &str) -> String {
        self[field].as_str().unwrap_or_default().to_owned()
    }
}

/// The `.eml` files the app wrote whose subject is `subject`.
fn emails_with(mail_dir: &Path, subject: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(mail_dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| std::fs::read_to_string(entry.ok()?.path()).ok())
        .filter(|text| {
            text.lines()
                .any(|line| line == format!("Subject: {subject}"))
        })
        .collect()
}

/// The checks every provider shares, once 25.00 was bought by payment `payment` and 5.00
/// spent: part refunded, replayed, too much refused, the remainder refunded. Answers the two
/// refunds' ids.
async fn refund_story(app: &TestApp, org: &str, payment: &str, mail_dir: &Path) -> [String; 2] {
    let body = json!({"amount": "10.00", "reason": "bought twice by mistake"});
    let first = refund(app, payment, "r1", body.clone()).await;
    assert_eq!(first.status, StatusCode::CREATED, "{:?}", first.body);
    assert_eq!(first.body["state"], "succeeded", "{:?}", first.body);
    assert_eq!(first.body["amount"], "10.00");
    assert_eq!(first.body["payment_id"], payment);
    let refund_id = first.str("id");
    assert!(refund_id.starts_with("rfd_"), "{refund_id}");
    let transfer = format!("txn_{refund_id}");
    assert_eq!(first.body["transfer_id"], transfer.as_str());
    assert_eq!(available(app, org).await, "10.00");
    assert_eq!(
        refund_transfers(app, org).await,
        [(transfer.clone(), "10.00".to_owned())]
    );

    // The same key again: the first answer, nothing more; another body with it: a 409.
    let again = refund(app, payment, "r1", body).await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.body, first.body);
    let other = refund(app, payment, "r1", json!({"amount": "1.00"})).await;
    assert_eq!(other.status, StatusCode::CONFLICT, "{:?}", other.body);
    assert_eq!(refund_transfers(app, org).await.len(), 1);

    // More than the 10.00 still unspent: refused, naming the amount; nothing changed.
    let too_much = refund(app, payment, "r2", json!({"amount": "10.01"})).await;
    assert_eq!(too_much.status, StatusCode::CONFLICT, "{:?}", too_much.body);
    assert_eq!(too_much.code(), "refund_exceeds_unspent");
    assert_eq!(too_much.body["error"]["param"], "amount");
    assert_eq!(available(app, org).await, "10.00");
    assert_eq!(refunds(app, payment).await.len(), 1);
    assert_eq!(refund_transfers(app, org).await.len(), 1);

    // Bad amounts: a 400 naming the field, nothing written.
    for bad in ["0", "0.001", "-1.00", "abc"] {
        let reply = refund(app, payment, "r3", json!({ "amount": bad })).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{bad}: {:?}",
            reply.body
        );
        assert_eq!(reply.body["error"]["param"], "amount", "{bad}");
    }
    assert_eq!(refunds(app, payment).await.len(), 1);

    // The receipt: one email, with the amount, the reason and the refund transfer.
    let mails = eventually("the refund receipt", || async {
        let mails = emails_with(mail_dir, RECEIPT);
        (!mails.is_empty()).then_some(mails)
    })
    .await;
    assert_eq!(mails.len(), 1);
    assert!(
        mails[0].contains("Reason: bought twice by mistake"),
        "{}",
        mails[0]
    );
    assert!(mails[0].contains(&transfer), "{}", mails[0]);

    // No amount: the whole unspent remainder.
    let rest = refund(app, payment, "r4", json!({})).await;
    assert_eq!(rest.status, StatusCode::CREATED, "{:?}", rest.body);
    assert_eq!(rest.body["state"], "succeeded");
    assert_eq!(rest.body["amount"], "10.00");
    assert_eq!(available(app, org).await, "0.00");
    let nothing = refund(app, payment, "r5", json!({})).await;
    assert_eq!(nothing.code(), "refund_exceeds_unspent");
    let listed: Vec<String> = refunds(app, payment)
        .await
        .iter()
        .map(|r| r.str_of("state"))
        .collect();
    assert_eq!(listed, ["succeeded", "succeeded"]);
    assert_eq!(refund_transfers(app, org).await.len(), 2);
    [refund_id, rest.str("id")]
}

/// The refunds localstripe holds for PaymentIntent `intent`, as (our refund id, cents).
async fn stripe_refunds(stripe: &LocalStripe, intent: &str) -> Vec<(String, i64)> {
    let (status, list) = stripe
        .get(&format!("/v1/refunds?payment_intent={intent}&limit=100"))
        .await;
    assert_eq!(status, 200, "{list}");
    let mut found: Vec<(String, i64)> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["metadata"]["refund_id"].as_str().unwrap_or("").to_owned(),
                r["amount"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    found.sort();
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refunds_at_localstripe_take_back_only_unspent_credits_once() {
    let Some(stripe) = localstripe().await else {
        return;
    };
    for database in databases().await {
        stripe.reset().await;
        let from = now_s() - 3_600;
        let mut mail_dir = PathBuf::new();
        let (base, key) = (stripe.base_url().to_owned(), stripe.secret_key().to_owned());
        let app = spawn_app_with(database, |config| {
            fast(config);
            config.payments = creditgate::config::PaymentsProvider::Stripe;
            config.stripe_api_base = base;
            config.stripe_secret_key = key;
            config.stripe_webhook_secret = WEBHOOK_SECRET.into();
            mail_dir = config.data_dir.join("mail");
        })
        .await;
        stripe
            .register_webhook(
                &format!("creditgate-{}", app.address.port()),
                &format!("{}/v1/webhooks/stripe", app.base),
                WEBHOOK_SECRET,
                None,
            )
            .await
            .expect("the webhook registers");
        let org = app.create_org("Refund Co").await;

        // 25.00 bought with a test card through the Checkout top-up.
        let reply = app
            .post_idempotent(
                &As::Operator,
                &format!("/v1/orgs/{org}/top_ups"),
                "buy",
                json!({"amount": "25.00", "return_url": "https://example.com/billing"}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
        let payment = reply.str("id");
        let session = reply
            .str("action_url")
            .rsplit('/')
            .next()
            .unwrap()
            .to_owned();
        let (status, completed) = stripe.complete_checkout(&session, "pm_card_visa").await;
        assert_eq!(status, 200, "{completed}");
        let paid = eventually("the checkout's credit", || async {
            let paid = app
                .get(&As::Operator, &format!("/v1/payments/{payment}"))
                .await
                .body;
            (paid["state"] == "succeeded").then_some(paid)
        })
        .await;
        let intent = app
            .store
            .payment(&payment)
            .await
            .unwrap()
            .unwrap()
            .provider_ref
            .expect("the PaymentIntent");
        assert!(intent.starts_with("pi_"), "{intent} {paid}");
        spend(&app, &org, "5.00").await;
        assert_eq!(available(&app, &org).await, "20.00");

        let [first, rest] = refund_story(&app, &org, &payment, &mail_dir).await;
        // localstripe holds exactly the two refunds, each under its id, in cents.
        let mut expected = vec![(first.clone(), 1_000), (rest, 1_000)];
        expected.sort();
        assert_eq!(stripe_refunds(&stripe, &intent).await, expected);
        // Each was asked for once, keyed by its refund id.
        let posts: Vec<Value> = stripe
            .requests()
            .await
            .into_iter()
            .filter(|r| r["method"] == "POST" && r["path"] == "/v1/refunds")
            .collect();
        assert_eq!(posts.len(), 2, "{posts:?}");
        assert!(posts
            .iter()
            .any(|p| p["idempotency_key"] == format!("refund-{first}").as_str()));
        let (code, text) = reconcile(&app.database_url, Some(&stripe), from).await;
        assert_eq!(code, Some(0), "{text}");
        assert!(
            text.contains("2 refunds, 2 ledger refund transfers, 2 refunds at stripe"),
            "{text}"
        );

        resumed_after_a_crash(&app, &stripe, &org).await;
        let (code, text) = reconcile(&app.database_url, Some(&stripe), from).await;
        assert_eq!(code, Some(0), "{text}");
        assert!(
            text.contains("3 refunds, 3 ledger refund transfers, 3 refunds at stripe"),
            "{text}"
        );
        // A refund made at Stripe, not by creditgate, is reported.
        let (status, made) = stripe
            .post_form(
                "/v1/refunds",
                &[("payment_intent", intent.as_str()), ("amount", "1")],
            )
            .await;
        assert_eq!(status, 200, "{made}");
        let (code, text) = reconcile(&app.database_url, Some(&stripe), from).await;
        assert_eq!(code, Some(1), "{text}");
        assert!(
            text.contains(&format!(
                "DIFFERENCE refund made outside creditgate: {} 1 cents",
                made["id"].as_str().unwrap()
            )),
            "{text}"
        );
        app.assert_invariants().await;
        app.stop().await;
    }
}

/// A refund whose provider call went through before a crash: localstripe has it (under its
/// refund id), our row is left `requesting` since long enough for the payments worker, which
/// finds it at localstripe, asks for nothing more, and lands the ledger transfer once.
async fn resumed_after_a_crash(app: &TestApp, stripe: &LocalStripe, org: &str) {
    let bought = app
        .post_idempotent(
            &As::Operator,
            &format!("/v1/orgs/{org}/top_ups"),
            "buy-again",
            json!({"amount": "10.00", "method": "saved_card"}),
        )
        .await;
    assert_eq!(bought.body["state"], "succeeded", "{:?}", bought.body);
    let payment = bought.str("id");
    let stored = app.store.payment(&payment).await.unwrap().unwrap();
    let intent = stored.provider_ref.expect("the PaymentIntent");
    let refund_id = "rfd_crashedbeforetheledger";
    let (status, made) = stripe
        .post_form(
            "/v1/refunds",
            &[
                ("payment_intent", intent.as_str()),
                ("amount", "400"),
                ("metadata[refund_id]", refund_id),
            ],
        )
        .await;
    assert_eq!(status, 200, "{made}");
    let posts_before = refund_posts(stripe).await;
    let long_ago = Timestamp::from_unix_ms(now_s() * 1000 - 3_600_000);
    let grant = creditgate_domain::payment::credit_transfer_id(&payment);
    // Written now (too fresh for the worker), then moved to `requesting` as of long ago:
    // the state a crash after the provider call leaves.
    let now = Timestamp::from_unix_ms(now_s() * 1000);
    let written = app
        .store
        .create_refund(
            refund_id,
            &payment,
            &grant,
            Some(Amount::from_micros(4_000_000)),
            None,
            now,
        )
        .await
        .unwrap();
    assert!(matches!(written, RefundCreated::Created(_)), "{written:?}");
    app.store
        .refund_requesting(refund_id, long_ago)
        .await
        .unwrap();
    let done = eventually("the interrupted refund resumed", || async {
        let refunds = refunds(app, &payment).await;
        (refunds.first()?["state"] == "succeeded").then(|| refunds[0].clone())
    })
    .await;
    assert_eq!(done["provider_ref"], made["id"]);
    assert_eq!(done["transfer_id"], format!("txn_{refund_id}").as_str());
    assert_eq!(refund_posts(stripe).await, posts_before, "asked for again");
    assert_eq!(
        stripe_refunds(stripe, &intent).await,
        [(refund_id.to_owned(), 400)]
    );
    assert_eq!(available(app, org).await, "6.00");
}

async fn refund_posts(stripe: &LocalStripe) -> usize {
    stripe
        .requests()
        .await
        .into_iter()
        .filter(|r| r["method"] == "POST" && r["path"] == "/v1/refunds")
        .filter(|r| r["user_agent"] != HARNESS_USER_AGENT)
        .count()
}

fn now_s() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    i64::try_from(now.unwrap().as_secs()).unwrap()
}

/// `creditgate reconcile` from `from` to an hour from now (unix seconds) on `database_url`,
/// with localstripe or the sandbox: (exit code, stdout).
async fn reconcile(
    database_url: &str,
    stripe: Option<&LocalStripe>,
    from: i64,
) -> (Option<i32>, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_creditgate"));
    command
        .args(["reconcile", "--from", &from.to_string()])
        .args(["--to", &(now_s() + 3_600).to_string()])
        .env("CREDITGATE_DATABASE_URL", database_url);
    if let Some(stripe) = stripe {
        command
            .env("CREDITGATE_PAYMENTS", "stripe")
            .env("CREDITGATE_STRIPE_API_BASE", stripe.base_url())
            .env("CREDITGATE_STRIPE_SECRET_KEY", stripe.secret_key())
            .env("CREDITGATE_STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET);
    }
    let output = tokio::task::spawn_blocking(move || command.output().expect("reconcile runs"))
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

async fn submit_card(url: &str, card: &str) -> StatusCode {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client");
    let response = client
        .post(url)
        .form(&[("payment_method", card)])
        .send()
        .await
        .expect("the page answers");
    response.status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refunds_on_the_sandbox_take_back_only_unspent_credits_once() {
    for database in databases().await {
        let mut mail_dir = PathBuf::new();
        let app = spawn_app_with(database, |config| {
            fast(config);
            mail_dir = config.data_dir.join("mail");
        })
        .await;
        let org = app.create_org("Sandbox Refund Co").await;
        let reply = app
            .post_idempotent(
                &As::Operator,
                &format!("/v1/orgs/{org}/top_ups"),
                "buy",
                json!({"amount": "25.00"}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
        let payment = reply.str("id");
        let paid = submit_card(&reply.str("action_url"), "pm_card_visa").await;
        assert!(paid.is_success(), "{paid}");
        assert_eq!(available(&app, &org).await, "25.00");
        spend(&app, &org, "5.00").await;

        // Only the operator refunds; an unknown payment is a 404.
        let key = app.create_key(&org).await.1;
        let by_key = app
            .post_idempotent(
                &As::Key(key),
                &format!("/v1/payments/{payment}/refunds"),
                "k1",
                json!({}),
            )
            .await;
        assert_eq!(by_key.status, StatusCode::FORBIDDEN, "{:?}", by_key.body);
        let unknown = refund(&app, "pay_unknown", "u1", json!({})).await;
        assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{:?}", unknown.body);
        assert_eq!(unknown.code(), "payment_not_found");
        let keyless = app
            .post(
                &As::Operator,
                &format!("/v1/payments/{payment}/refunds"),
                json!({}),
            )
            .await;
        assert_eq!(
            keyless.status,
            StatusCode::BAD_REQUEST,
            "{:?}",
            keyless.body
        );

        let [first, rest] = refund_story(&app, &org, &payment, &mail_dir).await;
        let charge = app
            .store
            .payment(&payment)
            .await
            .unwrap()
            .unwrap()
            .provider_ref
            .expect("the sandbox charge");
        let mut recorded = app.store.sandbox_refunds(&charge).await.unwrap();
        recorded.sort();
        let ids: Vec<&str> = recorded.iter().map(|(id, _)| id.as_str()).collect();
        let mut expected = [
            format!("re_sandbox_{}", first.trim_start_matches("rfd_")),
            format!("re_sandbox_{}", rest.trim_start_matches("rfd_")),
        ];
        expected.sort();
        assert_eq!(ids, expected);
        let (code, text) = reconcile(&app.database_url, None, now_s() - 3_600).await;
        assert_eq!(code, Some(0), "{text}");
        assert!(
            text.contains("2 refunds, 2 ledger refund transfers, 2 refunds at sandbox"),
            "{text}"
        );

        // The credits spent between the check and the ledger step (here: after the row, before
        // the worker resumes it): the ledger takes them back before the provider is asked, so
        // it refuses, the sandbox is never asked (no money goes back for spent credits), the
        // refund ends `failed`, the balance is untouched, and reconcile is clean.
        let bought = app
            .post_idempotent(
                &As::Operator,
                &format!("/v1/orgs/{org}/top_ups"),
                "buy-again",
                json!({"amount": "10.00", "method": "saved_card"}),
            )
            .await;
        assert_eq!(bought.body["state"], "succeeded", "{:?}", bought.body);
        let second = bought.str("id");
        let now = Timestamp::from_unix_ms(now_s() * 1000);
        let grant = creditgate_domain::payment::credit_transfer_id(&second);
        let written = app
            .store
            .create_refund("rfd_raced", &second, &grant, None, None, now)
            .await
            .unwrap();
        assert!(matches!(written, RefundCreated::Created(_)), "{written:?}");
        spend(&app, &org, "10.00").await;
        let long_ago = Timestamp::from_unix_ms(now_s() * 1000 - 3_600_000);
        app.store
            .refund_requesting("rfd_raced", long_ago)
            .await
            .unwrap();
        let raced = eventually("the raced refund", || async {
            let refund = app.store.refund("rfd_raced").await.unwrap()?;
            (refund.state == RefundState::Failed).then_some(refund)
        })
        .await;
        assert_eq!(
            raced.failure_code.as_deref(),
            Some("refund_exceeds_unspent")
        );
        assert_eq!(available(&app, &org).await, "0.00");
        assert_eq!(refund_transfers(&app, &org).await.len(), 2);
        assert_eq!(raced.provider_ref, None, "the provider was never asked");
        let (code, text) = reconcile(&app.database_url, None, now_s() - 3_600).await;
        assert_eq!(code, Some(0), "{text}");
        app.assert_invariants().await;
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auto_reload_is_refunded_like_a_purchase() {
    for database in databases().await {
        let app = spawn_app_with(database, |config| {
            fast(config);
            config.reload_cooldown_ms = 0;
        })
        .await;
        let org = app.create_org("Reload Refund Co").await;
        // A new org is at its threshold: auto-reload charges the sandbox card at once.
        let reply = app
            .request(
                &As::Operator,
                reqwest::Method::PUT,
                &format!("/v1/orgs/{org}/auto_reload"),
                Some(json!({
                    "enabled": true, "threshold": "5.00", "amount": "20.00",
                    "monthly_limit": "100.00", "payment_method": "pm_card_visa",
                    "consent": {"accepted_by": "ada@example.com", "text_version": "2026-11"}
                })),
                &[],
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        let reload = eventually("the auto-reload", || async {
            let payments = app
                .get(&As::Operator, &format!("/v1/orgs/{org}/payments"))
                .await
                .body;
            let paid = payments["data"].as_array()?.first()?.clone();
            (paid["state"] == "succeeded").then_some(paid)
        })
        .await;
        assert_eq!(reload["kind"], "auto_reload");
        assert_eq!(available(&app, &org).await, "20.00");
        let payment = reload.str_of("id");
        let refunded = refund(&app, &payment, "r1", json!({"amount": "5.00"})).await;
        assert_eq!(refunded.status, StatusCode::CREATED, "{:?}", refunded.body);
        assert_eq!(refunded.body["state"], "succeeded");
        assert_eq!(available(&app, &org).await, "15.00");
        let too_much = refund(&app, &payment, "r2", json!({"amount": "15.01"})).await;
        assert_eq!(too_much.code(), "refund_exceeds_unspent");
        assert_eq!(refund_transfers(&app, &org).await.len(), 1);
        app.assert_invariants().await;
        app.stop().await;
    }
}
