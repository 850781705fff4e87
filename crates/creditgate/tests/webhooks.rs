//! Outgoing webhooks end to end, on both backends: a receiver inside the test (axum on
//! 127.0.0.1:0) verifies every signature (HMAC-SHA256 over "<t>.<body>", compared in constant
//! time, `t` within 300 s) and records the events. The billing story reaches an org's endpoint
//! and the operator's exactly once each; a failing endpoint is retried with back-off, and
//! parked after `webhook_attempts_max`; the delivery log shows it; a resend delivers the same
//! event again; org keys get 403.

mod api_support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use api_support::helpers::*;
use api_support::{databases, spawn_app_with, As, TestApp};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxumStatus, Uri};
use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::Sha256;

/// The longest wait for anything to be delivered.
const DELIVERY_MAX: Duration = Duration::from_secs(10);
/// How long "nothing more arrives" is watched for (many runs of a 20 ms worker).
const QUIET: Duration = Duration::from_millis(300);
/// Oldest signature timestamp the receiver accepts.
const TOLERANCE_S: i64 = 300;

// ----------------------------------------------------------------------------------------
// The receiver
// ----------------------------------------------------------------------------------------

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Received {
    /// The URL path: which endpoint it was sent to.
    path: String,
    /// Whether the signature verified.
    verified: Result<(), String>,
    /// The `creditgate-event-id` header.
    event_id: String,
    content_type: String,
    body: Value,
    /// What the receiver answered.
    answered: u16,
}

#[derive(Default)]
struct ReceiverState {
    /// The signing secret of each path.
    secrets: HashMap<String, String>,
    /// Requests to answer 500 before answering 200, per path.
    failures_left: HashMap<String, usize>,
    received: Vec<Received>,
}

#[derive(Clone)]
struct Receiver {
    base: String,
    state: Arc<Mutex<ReceiverState>>,
}

/// Checks a `creditgate-signature` header against `body`, as a receiver should.
fn verify(secret: &str, header: &str, body: &[u8]) -> Result<(), String> {
    let mut t = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = value.parse::<i64>().ok(),
            Some(("v1", value)) => signatures.push(value.to_owned()),
            _ => {}
        }
    }
    let t = t.ok_or_else(|| format!("no t in {header:?}"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64;
    if (now - t).abs() > TOLERANCE_S {
        return Err(format!("t={t} is {}s from now", now - t));
    }
    for signature in signatures {
        let Ok(bytes) = hex::decode(&signature) else {
            continue;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key");
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        // `verify_slice` compares in constant time.
        if mac.verify_slice(&bytes).is_ok() {
            return Ok(());
        }
    }
    Err(format!("no valid v1 in {header:?}"))
}

async fn receive(
    State(state): State<Arc<Mutex<ReceiverState>>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> AxumStatus {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let path = uri.path().to_owned();
    let mut state = state.lock().expect("the receiver state");
    let verified = match state.secrets.get(&path) {
        Some(secret) => verify(secret, &header("creditgate-signature"), &body),
        None => Err(format!("no secret for {path}")),
    };
    // Planned failures are for access events; receipts (one per grant, whose timing
    // depends on the worker) are always accepted.
    let receipt =
        serde_json::from_slice::<Value>(&body).is_ok_and(|v| v["type"] == "credits.added");
    let answered = match state.failures_left.get_mut(&path) {
        Some(left) if *left > 0 && !receipt => {
            *left -= 1;
            500
        }
        _ if verified.is_err() => 400,
        _ => 200,
    };
    state.received.push(Received {
        path,
        verified,
        event_id: header("creditgate-event-id"),
        content_type: header("content-type"),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        answered,
    });
    AxumStatus::from_u16(answered).expect("a status")
}

impl Receiver {
    async fn start() -> Receiver {
        let state = Arc::new(Mutex::new(ReceiverState::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the receiver binds");
        let address = listener.local_addr().expect("an address");
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(state.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            base: format!("http://{address}"),
            state,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn set_secret(&self, path: &str, secret: &str) {
        let mut state = self.state.lock().expect("the receiver state");
        state.secrets.insert(path.to_owned(), secret.to_owned());
    }

    fn fail_next(&self, path: &str, count: usize) {
        let mut state = self.state.lock().expect("the receiver state");
        state.failures_left.insert(path.to_owned(), count);
    }

    /// Every access event sent to `path` so far, in arrival order. Receipts
    /// (`credits.added`, one per grant) are checked by `receipts`.
    fn received(&self, path: &str) -> Vec<Received> {
        self.all_received(path)
            .into_iter()
            .filter(|r| r.body["type"] != "credits.added")
            .collect()
    }

    /// The receipts (`credits.added`) sent to `path`.
    fn receipts(&self, path: &str) -> Vec<Received> {
        self.all_received(path)
            .into_iter()
            .filter(|r| r.body["type"] == "credits.added")
            .collect()
    }

    fn all_received(&self, path: &str) -> Vec<Received> {
        let state = self.state.lock().expect("the receiver state");
        state
            .received
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// The requests to `path` answered 200.
    fn delivered(&self, path: &str) -> Vec<Received> {
        self.received(path)
            .into_iter()
            .filter(|r| r.answered == 200)
            .collect()
    }

    /// Waits (≤ 10 s) until `path` got `count` requests answered 200, then watches a while
    /// that no more come; answers them.
    async fn expect_delivered(&self, path: &str, count: usize) -> Vec<Received> {
        let deadline = Instant::now() + DELIVERY_MAX;
        while self.delivered(path).len() < count {
            assert!(
                Instant::now() < deadline,
                "{count} deliveries to {path} expected: {:#?}",
                self.received(path)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(QUIET).await;
        let delivered = self.delivered(path);
        assert_eq!(
            delivered.len(),
            count,
            "exactly {count} deliveries to {path}: {delivered:#?}"
        );
        delivered
    }
}

// ----------------------------------------------------------------------------------------
// The service
// ----------------------------------------------------------------------------------------

async fn spawn(database: creditgate_store::testing::TestDatabase, attempts_max: u32) -> TestApp {
    spawn_app_with(database, move |c| {
        c.notice_interval_ms = 20;
        c.webhook_timeout_ms = 2_000;
        c.webhook_attempts_max = attempts_max;
    })
    .await
}

/// Creates an endpoint (operator) for `receiver`'s `path` and tells the receiver its secret;
/// answers the endpoint's body.
async fn endpoint(app: &TestApp, receiver: &Receiver, path: &str, extra: Value) -> Value {
    let mut body = json!({ "url": receiver.url(path) });
    for (field, value) in extra.as_object().expect("an object") {
        body[field] = value.clone();
    }
    let reply = app.post(&As::Operator, "/v1/webhook_endpoints", body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let secret = reply.str("secret");
    assert!(secret.starts_with("whsec_"), "{}", reply.body);
    receiver.set_secret(path, &secret);
    reply.body
}

/// An endpoint's delivery log (operator), newest first.
async fn log(app: &TestApp, endpoint_id: &str) -> Vec<Value> {
    let reply = app
        .get(
            &As::Operator,
            &format!("/v1/webhook_endpoints/{endpoint_id}/deliveries?limit=100"),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    // The access events' log: receipts (`credits.added`) are checked on their own.
    reply.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter(|d| d["event"] != "credits.added")
        .cloned()
        .collect()
}

/// Uses `amount` of the org's credits: a hold settled for all of it.
async fn spend(app: &TestApp, key: &As, amount: &str) {
    let hold = hold_ok(app, key, amount).await;
    settle_amount(app, key, &hold, amount).await;
}

/// An org with a 0.50 low-balance threshold, 1.00 of credits and a key.
async fn funded_org(app: &TestApp, name: &str) -> (String, As) {
    let org = create_org_with(app, name, json!({ "low_thresholds": ["0.50"] })).await;
    let org_id = org["id"].as_str().expect("id").to_owned();
    app.grant(&org_id, "1.00").await;
    let (_, secret) = app.create_key(&org_id).await;
    (org_id, As::Key(secret))
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
}

/// Checks a delivered request: signature, headers, and the documented body.
fn check_event(r: &Received, kind: &str, org_id: &str, available: &str, state: &str, level: u64) {
    assert_eq!(r.verified, Ok(()), "{r:#?}");
    assert_eq!(r.content_type, "application/json", "{r:#?}");
    let id = r.body["id"].as_str().expect("an id");
    assert!(id.starts_with("ntc_"), "{r:#?}");
    assert_eq!(r.event_id, id, "{r:#?}");
    assert_eq!(r.body["type"], kind, "{r:#?}");
    let created = r.body["created"].as_i64().expect("created");
    assert!((now_s() - created).abs() < 60, "{r:#?}");
    assert_eq!(
        r.body["data"],
        json!({ "org_id": org_id, "available": available, "access_state": state, "level": level }),
        "{r:#?}"
    );
}

// ----------------------------------------------------------------------------------------
// Tests
// ----------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_billing_story_reaches_the_org_and_the_operator_once_each_signed() {
    for database in databases().await {
        let app = spawn(database, 8).await;
        let receiver = Receiver::start().await;
        let (org_id, key) = funded_org(&app, "Globex").await;
        let (other_id, other_key) = funded_org(&app, "Initech").await;
        let org_endpoint = endpoint(&app, &receiver, "/org", json!({ "org_id": org_id })).await;
        assert_eq!(org_endpoint["events"], json!(["*"]));
        assert_eq!(org_endpoint["org_id"], org_id.as_str());
        let operator_endpoint = endpoint(&app, &receiver, "/operator", json!({})).await;
        assert_eq!(operator_endpoint["org_id"], Value::Null);
        // The other org's endpoint takes only "turned off" events: it gets none of Globex's
        // events, and none of its own low-balance ones.
        endpoint(
            &app,
            &receiver,
            "/other",
            json!({ "org_id": other_id, "events": ["access.turned_off"] }),
        )
        .await;

        // Low, then depleted, then restored: each step waited for, so the order is known.
        spend(&app, &key, "0.60").await;
        let got = receiver.expect_delivered("/org", 1).await;
        check_event(&got[0], "balance.low", &org_id, "0.40", "low", 1);
        spend(&app, &key, "0.40").await;
        let got = receiver.expect_delivered("/org", 2).await;
        check_event(&got[1], "access.turned_off", &org_id, "0.00", "depleted", 1);
        app.grant(&org_id, "1.00").await;
        let org_got = receiver.expect_delivered("/org", 3).await;
        check_event(&org_got[2], "access.restored", &org_id, "1.00", "active", 0);

        // The operator's endpoint saw the same three events, byte for byte the same bodies.
        let operator_got = receiver.expect_delivered("/operator", 3).await;
        for (a, b) in org_got.iter().zip(&operator_got) {
            assert_eq!(b.verified, Ok(()), "{b:#?}");
            assert_eq!(a.body, b.body);
            assert_eq!(a.event_id, b.event_id);
        }

        // Another org's low balance reaches the operator only.
        spend(&app, &other_key, "0.60").await;
        let operator_got = receiver.expect_delivered("/operator", 4).await;
        check_event(&operator_got[3], "balance.low", &other_id, "0.40", "low", 1);
        receiver.expect_delivered("/org", 3).await;
        assert!(receiver.received("/other").is_empty());
        // Every request anywhere was signed correctly and answered 200 (no retries).
        let all = receiver.state.lock().unwrap().received.clone();
        let all: Vec<Received> = all.into_iter().collect();
        assert!(
            all.iter().all(|r| r.verified.is_ok() && r.answered == 200),
            "{all:#?}"
        );

        // The delivery log: newest first, each sent on its first attempt.
        let entries: Vec<Value> = log(&app, org_endpoint["id"].as_str().unwrap())
            .await
            .into_iter()
            .filter(|d| d["event"] != "credits.added")
            .collect();
        let kinds: Vec<&str> = entries
            .iter()
            .map(|d| d["event"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            ["access.restored", "access.turned_off", "balance.low"],
            "{entries:#?}"
        );
        for (entry, received) in entries.iter().rev().zip(&org_got) {
            assert_eq!(entry["state"], "sent", "{entry}");
            assert_eq!(entry["attempts"], 1, "{entry}");
            assert_eq!(entry["last_status"], 200, "{entry}");
            assert_eq!(entry["last_error"], Value::Null, "{entry}");
            assert_eq!(entry["event_id"], received.body["id"], "{entry}");
            let id = entry["id"].as_str().unwrap();
            assert!(id.starts_with("wdl_ntc_"), "{entry}");
            let payload: Value =
                serde_json::from_str(entry["payload"].as_str().unwrap()).expect("JSON");
            assert_eq!(payload, received.body);
        }
        // The endpoint list shows all three, without secrets.
        let list = app.get(&As::Operator, "/v1/webhook_endpoints").await;
        assert_eq!(list.status, StatusCode::OK, "{}", list.body);
        let items = list.body["data"].as_array().unwrap();
        assert_eq!(items.len(), 3, "{}", list.body);
        assert!(items.iter().all(|e| e.get("secret").is_none()));

        // Receipts: the grant after the endpoint was created has one (the setup grant's
        // may come too, depending on when the worker fanned it out), each once, signed,
        // with the amount and the ledger transfer.
        let receipts = receiver.receipts("/org");
        assert!(!receipts.is_empty(), "no receipt");
        let ids: std::collections::HashSet<&str> =
            receipts.iter().map(|r| r.event_id.as_str()).collect();
        assert_eq!(
            ids.len(),
            receipts.len(),
            "each receipt once: {receipts:#?}"
        );
        for receipt in &receipts {
            assert_eq!(receipt.verified, Ok(()));
            assert_eq!(receipt.body["data"]["amount"], "1.00", "{receipt:#?}");
            assert!(
                receipt.body["data"]["transfer_id"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("txn_")),
                "{receipt:#?}"
            );
        }
        app.assert_invariants().await;
        app.stop().await;
    }
}

/// A failing endpoint is retried with back-off (1 s, 2 s) until it answers 200; meanwhile
/// the email fails too (SMTP on a closed port) and is retried, which re-runs the fan-out:
/// the derived ids keep it to one delivery per endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_endpoint_is_retried_until_it_answers_and_email_failures_do_not_matter() {
    for database in databases().await {
        let closed_port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let app = spawn_app_with(database, move |c| {
            c.notice_interval_ms = 20;
            c.webhook_timeout_ms = 2_000;
            c.mail = creditgate::config::MailTransport::Smtp;
            c.smtp_host = "127.0.0.1".into();
            c.smtp_port = closed_port;
            c.smtp_tls = creditgate::config::SmtpTls::None;
            c.smtp_timeout_ms = 500;
        })
        .await;
        let receiver = Receiver::start().await;
        let (org_id, key) = funded_org(&app, "Globex").await;
        let org_endpoint = endpoint(&app, &receiver, "/org", json!({ "org_id": org_id })).await;
        endpoint(&app, &receiver, "/operator", json!({})).await;
        receiver.fail_next("/org", 2);

        spend(&app, &key, "0.60").await;
        // The operator's endpoint gets it at once, though the email is failing.
        let got = receiver.expect_delivered("/operator", 1).await;
        check_event(&got[0], "balance.low", &org_id, "0.40", "low", 1);
        // The org's endpoint: two 500s, then delivered (after ~1 s + 2 s of back-off).
        let got = receiver.expect_delivered("/org", 1).await;
        check_event(&got[0], "balance.low", &org_id, "0.40", "low", 1);
        let attempts = receiver.received("/org");
        assert_eq!(
            attempts.iter().map(|r| r.answered).collect::<Vec<_>>(),
            [500, 500, 200],
            "{attempts:#?}"
        );
        assert!(attempts
            .iter()
            .all(|r| r.verified.is_ok() && r.body == got[0].body));

        // The email did fail and was retried meanwhile: the fan-out ran again, no new delivery.
        let notices = app
            .get(&As::Operator, &format!("/v1/notices?org_id={org_id}"))
            .await;
        let notice = &notices.body["data"][0];
        assert_eq!(notice["state"], "pending", "{notice}");
        assert!(notice["attempts"].as_u64().unwrap() >= 2, "{notice}");
        receiver.expect_delivered("/operator", 1).await;
        assert_eq!(receiver.received("/operator").len(), 1);

        let entries = log(&app, org_endpoint["id"].as_str().unwrap()).await;
        assert_eq!(entries.len(), 1, "{entries:#?}");
        assert_eq!(
            (
                &entries[0]["state"],
                &entries[0]["attempts"],
                &entries[0]["last_status"]
            ),
            (&json!("sent"), &json!(3), &json!(200)),
            "{entries:#?}"
        );

        app.assert_invariants().await;
        app.stop().await;
    }
}

/// After `webhook_attempts_max` failures a delivery is parked; the log says why; the resend
/// call delivers it, and resending a sent one delivers the same event again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_delivery_is_logged_and_resent_and_a_sent_one_can_be_resent() {
    for database in databases().await {
        let app = spawn(database, 2).await;
        let receiver = Receiver::start().await;
        let (org_id, key) = funded_org(&app, "Globex").await;
        let org_endpoint = endpoint(&app, &receiver, "/org", json!({ "org_id": org_id })).await;
        let endpoint_id = org_endpoint["id"].as_str().unwrap().to_owned();
        receiver.fail_next("/org", 2);

        spend(&app, &key, "0.60").await;
        let deadline = Instant::now() + DELIVERY_MAX;
        let parked = loop {
            let entries = log(&app, &endpoint_id).await;
            if entries.first().is_some_and(|d| d["state"] == "parked") {
                break entries[0].clone();
            }
            assert!(Instant::now() < deadline, "never parked: {entries:#?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(parked["attempts"], 2, "{parked}");
        assert_eq!(parked["last_status"], 500, "{parked}");
        assert!(
            parked["last_error"].as_str().unwrap().contains("500"),
            "{parked}"
        );
        tokio::time::sleep(QUIET).await;
        assert_eq!(receiver.received("/org").len(), 2, "nothing after parking");

        // Resend the parked one: delivered.
        let delivery_id = parked["id"].as_str().unwrap().to_owned();
        let resend = format!("/v1/webhook_deliveries/{delivery_id}/resend");
        let reply = app.post(&As::Operator, &resend, json!({})).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert_eq!(
            (reply.str("state"), &reply.body["attempts"]),
            ("pending".into(), &json!(0))
        );
        let got = receiver.expect_delivered("/org", 1).await;
        check_event(&got[0], "balance.low", &org_id, "0.40", "low", 1);
        let entry = &log(&app, &endpoint_id).await[0];
        assert_eq!(
            (&entry["state"], &entry["attempts"], &entry["last_status"]),
            (&json!("sent"), &json!(1), &json!(200)),
            "{entry}"
        );

        // Resend the sent one: the receiver sees the same event (same id) a second time.
        let reply = app.post(&As::Operator, &resend, json!({})).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        let got = receiver.expect_delivered("/org", 2).await;
        assert_eq!(got[0].body, got[1].body);
        assert_eq!(got[0].event_id, got[1].event_id);
        assert_eq!(got[1].verified, Ok(()));

        // Unknown and malformed delivery ids.
        let reply = app
            .post(
                &As::Operator,
                "/v1/webhook_deliveries/wdl_ntc_9_9/resend",
                json!({}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.body);
        assert_eq!(reply.code(), "webhook_delivery_not_found");
        let reply = app
            .post(
                &As::Operator,
                "/v1/webhook_deliveries/wdl_x/resend",
                json!({}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
        assert_eq!(reply.body["error"]["param"], "delivery_id");

        // Disabled: nothing more is delivered, and its deliveries cannot be resent.
        let reply = app
            .request(
                &As::Operator,
                Method::DELETE,
                &format!("/v1/webhook_endpoints/{endpoint_id}"),
                None,
                &[],
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert!(reply.body["disabled_at"].is_i64(), "{}", reply.body);
        let reply = app.post(&As::Operator, &resend, json!({})).await;
        assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.body);
        spend(&app, &key, "0.40").await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(receiver.delivered("/org").len(), 2);
        assert_eq!(log(&app, &endpoint_id).await.len(), 1);

        app.assert_invariants().await;
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_400_naming_the_field_and_org_keys_get_403() {
    for database in databases().await {
        let app = spawn(database, 8).await;
        let (org_id, key) = funded_org(&app, "Globex").await;
        let cases = [
            (json!({}), "url"),
            (json!({ "url": "ftp://example.com/x" }), "url"),
            (json!({ "url": "not a url" }), "url"),
            (
                json!({ "url": format!("https://e.com/{}", "a".repeat(2048)) }),
                "url",
            ),
            (json!({ "url": "https://e.com", "events": [] }), "events"),
            (
                json!({ "url": "https://e.com", "events": ["nope"] }),
                "events[0]",
            ),
            (
                json!({ "url": "https://e.com", "events": ["*", "balance.low"] }),
                "events",
            ),
            (
                json!({ "url": "https://e.com", "org_id": "nope" }),
                "org_id",
            ),
            (
                json!({ "url": "https://e.com", "secret": "mine" }),
                "secret",
            ),
        ];
        for (body, param) in cases {
            let reply = app
                .post(&As::Operator, "/v1/webhook_endpoints", body.clone())
                .await;
            assert_eq!(
                reply.status,
                StatusCode::BAD_REQUEST,
                "{body}: {}",
                reply.body
            );
            assert_eq!(
                reply.body["error"]["param"], param,
                "{body}: {}",
                reply.body
            );
        }
        let reply = app
            .post(
                &As::Operator,
                "/v1/webhook_endpoints",
                json!({ "url": "https://e.com", "org_id": "org_doesnotexist" }),
            )
            .await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.body);
        for path in [
            "/v1/webhook_endpoints/nope",
            "/v1/webhook_endpoints/nope/deliveries",
        ] {
            let method = if path.ends_with("deliveries") {
                Method::GET
            } else {
                Method::DELETE
            };
            let reply = app.request(&As::Operator, method, path, None, &[]).await;
            assert_eq!(
                reply.status,
                StatusCode::BAD_REQUEST,
                "{path}: {}",
                reply.body
            );
            assert_eq!(reply.body["error"]["param"], "endpoint_id");
        }
        let reply = app
            .get(
                &As::Operator,
                "/v1/webhook_endpoints/whk_missing/deliveries",
            )
            .await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.body);
        assert_eq!(reply.code(), "webhook_endpoint_not_found");

        // An org's key, even for its own org: 403 on every route, nothing created.
        let endpoint = app
            .post(
                &As::Operator,
                "/v1/webhook_endpoints",
                json!({ "url": "https://e.com/hook", "org_id": org_id, "events": ["balance.low"] }),
            )
            .await;
        assert_eq!(endpoint.status, StatusCode::CREATED, "{}", endpoint.body);
        assert_eq!(endpoint.body["events"], json!(["balance.low"]));
        let endpoint_id = endpoint.str("id");
        let calls = [
            (
                Method::POST,
                "/v1/webhook_endpoints".to_owned(),
                Some(json!({ "url": "https://evil.example/x", "org_id": org_id })),
            ),
            (Method::GET, "/v1/webhook_endpoints".to_owned(), None),
            (
                Method::DELETE,
                format!("/v1/webhook_endpoints/{endpoint_id}"),
                None,
            ),
            (
                Method::GET,
                format!("/v1/webhook_endpoints/{endpoint_id}/deliveries"),
                None,
            ),
            (
                Method::POST,
                "/v1/webhook_deliveries/wdl_ntc_1_1/resend".to_owned(),
                Some(json!({})),
            ),
        ];
        for (method, path, body) in calls {
            let reply = app.request(&key, method.clone(), &path, body, &[]).await;
            assert_eq!(
                reply.status,
                StatusCode::FORBIDDEN,
                "{method} {path}: {}",
                reply.body
            );
            assert_eq!(reply.code(), "forbidden");
        }
        let list = app.get(&As::Operator, "/v1/webhook_endpoints").await;
        let items = list.body["data"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{}", list.body);
        assert_eq!(items[0]["disabled_at"], Value::Null);

        app.assert_invariants().await;
        app.stop().await;
    }
}
