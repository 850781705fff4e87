//! Self-test of the Stripe test support (`stripe_support/`): localstripe (PyPI) started by its
//! launcher on 127.0.0.1, extended with Checkout Sessions whose completion emits a signed
//! `checkout.session.completed` through localstripe's own webhooks; and the off-session
//! PaymentIntent outcomes the server relies on (success, `card_declined`, `requires_action`).
//!
//! When `CI` is set, a failure to install or start localstripe fails the test; otherwise the
//! test is skipped with a message.

#[path = "stripe_support/mod.rs"]
mod stripe_support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use stripe_support::localstripe;
use stripe_support::LocalStripe;

const WEBHOOK_SECRET: &str = "whsec_localstripe_selftest";
/// The longest wait for a webhook (localstripe waits 1 s before sending).
const DELIVERY_MAX: Duration = Duration::from_secs(10);

// ----------------------------------------------------------------------------------------
// A webhook receiver
// ----------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct Delivery {
    signature: String,
    body: Vec<u8>,
}

impl Delivery {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON event")
    }
}

type Deliveries = Arc<Mutex<Vec<Delivery>>>;

async fn receive(
    State(deliveries): State<Deliveries>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    deliveries.lock().expect("the deliveries").push(Delivery {
        signature,
        body: body.to_vec(),
    });
    StatusCode::OK
}

/// Starts a receiver on 127.0.0.1:0; answers its URL and what it receives.
async fn receiver() -> (String, Deliveries) {
    let deliveries = Deliveries::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("the receiver binds");
    let address = listener.local_addr().expect("an address");
    let app = axum::Router::new()
        .fallback(receive)
        .with_state(deliveries.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{address}/stripe/webhook"), deliveries)
}

/// Stripe's scheme: `Stripe-Signature: t=T,v1=hex(HMAC-SHA256(secret, "T.body"))`; answers T.
fn verify(secret: &str, header: &str, body: &[u8]) -> Result<u64, String> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = Some(t),
            Some(("v1", v1)) => signatures.push(v1),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or_else(|| format!("no t= in {header:?}"))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected = hex::encode(mac.finalize().into_bytes());
    if !signatures.contains(&expected.as_str()) {
        return Err(format!("no matching v1 in {header:?}"));
    }
    timestamp
        .parse()
        .map_err(|e| format!("t={timestamp:?}: {e}"))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

// ----------------------------------------------------------------------------------------
// Helpers
// ----------------------------------------------------------------------------------------

fn str_of<'a>(body: &'a Value, field: &str) -> &'a str {
    body[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} in {body}"))
}

/// The Checkout Session params the server sends.
fn session_form<'a>(customer: &'a str, payment_id: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("mode", "payment"),
        ("customer", customer),
        ("success_url", "https://app.example/topup/success"),
        ("cancel_url", "https://app.example/topup/cancel"),
        ("client_reference_id", "acct_selftest"),
        ("metadata[payment_id]", payment_id),
        ("line_items[0][price_data][currency]", "usd"),
        ("line_items[0][price_data][unit_amount]", "2500"),
        (
            "line_items[0][price_data][product_data][name]",
            "Acme AI credits",
        ),
        ("line_items[0][quantity]", "1"),
        ("payment_intent_data[setup_future_usage]", "off_session"),
        ("payment_intent_data[metadata][payment_id]", payment_id),
    ]
}

/// Creates a card PaymentMethod, attaches it to `customer`, and tries an off-session
/// PaymentIntent with it.
async fn off_session(stripe: &LocalStripe, customer: &str, number: &str) -> (u16, Value) {
    let pm = stripe.card(number).await;
    let (status, attached) = stripe
        .post_form(
            &format!("/v1/payment_methods/{pm}/attach"),
            &[("customer", customer)],
        )
        .await;
    assert_eq!(status, 200, "attach {number}: {attached}");
    assert_eq!(attached["customer"], customer, "{attached}");
    stripe
        .post_form(
            "/v1/payment_intents",
            &[
                ("amount", "1500"),
                ("currency", "usd"),
                ("customer", customer),
                ("payment_method", &pm),
                ("confirm", "true"),
                ("off_session", "true"),
                ("metadata[payment_id]", "pay_offsession"),
            ],
        )
        .await
}

// ----------------------------------------------------------------------------------------
// The test
// ----------------------------------------------------------------------------------------

#[tokio::test]
async fn localstripe_with_checkout_sessions() {
    let Some(stripe) = localstripe().await else {
        return;
    };
    assert!(
        stripe.base_url().starts_with("http://127.0.0.1:"),
        "{}",
        stripe.base_url()
    );
    assert!(stripe.secret_key().starts_with("sk_test_"));

    // The API key is required, also on the Checkout routes.
    let unauthorized = reqwest::Client::new()
        .post(format!("{}/v1/checkout/sessions", stripe.base_url()))
        .form(&[("mode", "payment")])
        .send()
        .await
        .expect("localstripe answers");
    assert_eq!(unauthorized.status().as_u16(), 401);

    // A customer.
    let (status, customer) = stripe
        .post_form("/v1/customers", &[("email", "owner@example.com")])
        .await;
    assert_eq!(status, 200, "{customer}");
    let customer = str_of(&customer, "id").to_owned();
    assert!(customer.starts_with("cus_"), "{customer}");

    // A Checkout Session, as the server creates it.
    let (status, session) = stripe
        .post_form(
            "/v1/checkout/sessions",
            &session_form(&customer, "pay_test1"),
        )
        .await;
    assert_eq!(status, 200, "{session}");
    let session_id = str_of(&session, "id").to_owned();
    assert!(session_id.starts_with("cs_test_"), "{session}");
    assert_eq!(session["object"], "checkout.session");
    assert_eq!(session["status"], "open");
    assert_eq!(session["payment_status"], "unpaid");
    assert_eq!(session["mode"], "payment");
    assert_eq!(session["amount_total"], 2500);
    assert_eq!(session["currency"], "usd");
    assert_eq!(session["customer"], customer.as_str());
    assert_eq!(session["client_reference_id"], "acct_selftest");
    assert_eq!(session["metadata"]["payment_id"], "pay_test1");
    assert_eq!(session["success_url"], "https://app.example/topup/success");
    assert_eq!(session["cancel_url"], "https://app.example/topup/cancel");
    assert!(session["payment_intent"].is_null(), "{session}");
    let url = str_of(&session, "url");
    assert_eq!(
        url,
        format!("{}/_test/checkout/{session_id}", stripe.base_url())
    );
    let page = reqwest::get(url).await.expect("the checkout page");
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().await.unwrap_or_default().contains(&session_id));

    let (status, fetched) = stripe
        .get(&format!("/v1/checkout/sessions/{session_id}"))
        .await;
    assert_eq!(status, 200, "{fetched}");
    assert_eq!(fetched, session);
    let (status, missing) = stripe.get("/v1/checkout/sessions/cs_test_missing").await;
    assert_eq!(status, 404, "{missing}");

    // Unknown or invalid params are rejected, like localstripe's own routes.
    let mut unknown = session_form(&customer, "pay_x");
    unknown.push(("line_items[0][price_data][tax_behavior]", "exclusive"));
    let (status, error) = stripe.post_form("/v1/checkout/sessions", &unknown).await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(
        error["error"]["param"],
        "line_items[0][price_data][tax_behavior]"
    );
    let mut subscription = session_form(&customer, "pay_x");
    subscription[0] = ("mode", "subscription");
    let (status, error) = stripe
        .post_form("/v1/checkout/sessions", &subscription)
        .await;
    assert_eq!(status, 400, "{error}");

    // Completing it delivers a signed checkout.session.completed.
    let (receiver_url, deliveries) = receiver().await;
    stripe
        .register_webhook(
            "selftest",
            &receiver_url,
            WEBHOOK_SECRET,
            Some(&["checkout.session.completed"]),
        )
        .await
        .expect("the webhook registers");
    let (status, completed) = stripe.complete_checkout(&session_id, "pm_card_visa").await;
    assert_eq!(status, 200, "{completed}");
    assert_eq!(completed["id"], session_id.as_str());
    assert_eq!(completed["status"], "complete");
    assert_eq!(completed["payment_status"], "paid");
    let payment_intent = str_of(&completed, "payment_intent").to_owned();
    assert!(payment_intent.starts_with("pi_"), "{completed}");
    let (status, again) = stripe.complete_checkout(&session_id, "pm_card_visa").await;
    assert_eq!(
        status, 400,
        "a completed session cannot be paid twice: {again}"
    );

    let deadline = Instant::now() + DELIVERY_MAX;
    let delivery = loop {
        let found = deliveries
            .lock()
            .expect("the deliveries")
            .iter()
            .find(|d| d.json()["type"] == "checkout.session.completed")
            .cloned();
        if let Some(delivery) = found {
            break delivery;
        }
        assert!(
            Instant::now() < deadline,
            "no checkout.session.completed within {DELIVERY_MAX:?}\n{}",
            stripe.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let signed_at = verify(WEBHOOK_SECRET, &delivery.signature, &delivery.body)
        .unwrap_or_else(|e| panic!("the signature verifies: {e}"));
    assert!(now().abs_diff(signed_at) < 300, "t={signed_at}");
    assert!(
        verify("whsec_wrong", &delivery.signature, &delivery.body).is_err(),
        "another secret must not verify"
    );
    let event = delivery.json();
    assert!(str_of(&event, "id").starts_with("evt_"), "{event}");
    let object = &event["data"]["object"];
    assert_eq!(object["id"], session_id.as_str(), "{event}");
    assert_eq!(object["metadata"]["payment_id"], "pay_test1", "{event}");
    assert_eq!(object["payment_status"], "paid", "{event}");
    assert_eq!(object["status"], "complete", "{event}");
    assert_eq!(object["payment_intent"], payment_intent.as_str(), "{event}");
    assert_eq!(object["amount_total"], 2500, "{event}");

    // The PaymentIntent it names succeeded, for the session's customer and amount.
    let (status, intent) = stripe
        .get(&format!("/v1/payment_intents/{payment_intent}"))
        .await;
    assert_eq!(status, 200, "{intent}");
    assert_eq!(intent["status"], "succeeded", "{intent}");
    assert_eq!(intent["amount"], 2500);
    assert_eq!(intent["currency"], "usd");
    assert_eq!(intent["customer"], customer.as_str());
    assert_eq!(intent["metadata"]["payment_id"], "pay_test1", "{intent}");
    // The card was saved on the customer (setup_future_usage=off_session).
    let saved = str_of(&intent, "payment_method").to_owned();
    let (status, method) = stripe.get(&format!("/v1/payment_methods/{saved}")).await;
    assert_eq!(status, 200, "{method}");
    assert_eq!(method["customer"], customer.as_str(), "{method}");

    // Only the subscribed event type is delivered.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for delivery in deliveries.lock().expect("the deliveries").iter() {
        assert_eq!(delivery.json()["type"], "checkout.session.completed");
    }

    // A declining card leaves a session open.
    let (status, declining_session) = stripe
        .post_form(
            "/v1/checkout/sessions",
            &session_form(&customer, "pay_test2"),
        )
        .await;
    assert_eq!(status, 200, "{declining_session}");
    let declining_id = str_of(&declining_session, "id").to_owned();
    let declining = stripe.card("4000000000000341").await;
    let (status, error) = stripe.complete_checkout(&declining_id, &declining).await;
    assert_eq!(status, 402, "{error}");
    assert_eq!(error["error"]["code"], "card_declined", "{error}");
    let (_, still_open) = stripe
        .get(&format!("/v1/checkout/sessions/{declining_id}"))
        .await;
    assert_eq!(still_open["status"], "open", "{still_open}");
    assert_eq!(still_open["payment_status"], "unpaid", "{still_open}");
    assert!(still_open["payment_intent"].is_null(), "{still_open}");

    // Off-session PaymentIntents: a card that declines on charge, then one needing 3-D Secure.
    let (status, declined) = off_session(&stripe, &customer, "4000000000000341").await;
    assert_eq!(status, 402, "{declined}");
    assert_eq!(declined["error"]["code"], "card_declined", "{declined}");
    let (status, action) = off_session(&stripe, &customer, "4000002760003184").await;
    assert_eq!(status, 200, "{action}");
    assert_eq!(action["status"], "requires_action", "{action}");
    let (status, ok) = off_session(&stripe, &customer, "4242424242424242").await;
    assert_eq!(status, 200, "{ok}");
    assert_eq!(ok["status"], "succeeded", "{ok}");
    assert_eq!(ok["metadata"]["payment_id"], "pay_offsession", "{ok}");
}
