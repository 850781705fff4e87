//! Idempotency: `Idempotency-Key` replays answer the first response byte for byte; the same
//! key on another request is a 409; keys are per caller; concurrent replays move money once;
//! settles, voids and usage events are idempotent by their own ids.

mod api_support;

use api_support::{databases, spawn_app, As, TestApp, OPERATOR_TOKEN};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const MODEL: &str = "model-a";

/// A response with its body exactly as sent.
#[derive(Debug)]
struct Raw {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
}

impl Raw {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("{e}: {}", self.text))
    }
    fn replayed(&self) -> bool {
        match self.headers.get("idempotent-replayed") {
            None => false,
            Some(v) if v == "true" => true,
            Some(v) => panic!("idempotent-replayed: {v:?}"),
        }
    }
    fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }
    fn str(&self, field: &str) -> String {
        self.json()[field]
            .as_str()
            .unwrap_or_else(|| panic!("{field} in {}", self.text))
            .to_owned()
    }
}

async fn post_raw(
    client: &reqwest::Client,
    base: &str,
    who: &As,
    path: &str,
    key: Option<&str>,
    body: &Value,
) -> Raw {
    let mut request = client.request(Method::POST, format!("{base}{path}"));
    request = match who {
        As::Operator => request.bearer_auth(OPERATOR_TOKEN),
        As::Key(secret) => request.header("x-api-key", secret),
        As::Bearer(secret) => request.bearer_auth(secret),
        As::Nobody => request,
    };
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request
        .json(body)
        .send()
        .await
        .expect("the service answers");
    Raw {
        status: response.status(),
        headers: response.headers().clone(),
        text: response.text().await.expect("a body"),
    }
}

async fn post(app: &TestApp, who: &As, path: &str, key: Option<&str>, body: &Value) -> Raw {
    post_raw(&app.client, &app.base, who, path, key, body).await
}

/// An org with `credits`, a key, and the model priced.
async fn org_with_key(app: &TestApp, name: &str, credits: &str) -> (String, As) {
    let org = app.create_org(name).await;
    app.grant(&org, credits).await;
    let (_, secret) = app.create_key(&org).await;
    (org, As::Key(secret))
}

/// The org's transfers, newest first (one page: these tests make few).
async fn transfers(app: &TestApp, org: &str) -> Vec<Value> {
    let reply = app
        .get(
            &As::Operator,
            &format!("/v1/orgs/{org}/transfers?limit=100"),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["has_more"], false);
    reply.body["data"].as_array().expect("data").clone()
}

fn of_kind<'a>(transfers: &'a [Value], kind: &str) -> Vec<&'a Value> {
    transfers.iter().filter(|t| t["kind"] == kind).collect()
}

/// (posted, reserved) as the operator sees them.
async fn money(app: &TestApp, org: &str) -> (String, String) {
    let balance = app.balance(org).await;
    (balance.str("posted"), balance.str("reserved"))
}

fn pair(posted: &str, reserved: &str) -> (String, String) {
    (posted.to_owned(), reserved.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_answers_the_first_response_byte_for_byte() {
    for database in databases().await {
        let app = spawn_app(database).await;
        app.set_price(MODEL, "3.00", "15.00").await;
        let (org, key) = org_with_key(&app, "Acme", "100.00").await;
        let grants = format!("/v1/orgs/{org}/grants");
        let adjustments = format!("/v1/orgs/{org}/adjustments");
        let grant = json!({ "amount": "5.00", "origin": "promotional", "reference": "welcome" });
        let first = post(&app, &As::Operator, &grants, Some("g-1"), &grant).await;
        assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
        assert!(!first.replayed(), "a first answer is not a replay");
        assert_eq!(first.json()["balance_after"], "105.00");
        // Money moves in between: the replay is the recorded answer, not a recomputed one.
        app.grant(&org, "1.00").await;
        for _ in 0..3 {
            let replay = post(&app, &As::Operator, &grants, Some("g-1"), &grant).await;
            assert_eq!(
                replay.status,
                StatusCode::CREATED,
                "{}: {}",
                app.backend,
                replay.text
            );
            assert_eq!(replay.text, first.text, "{}: byte for byte", app.backend);
            assert!(replay.replayed(), "{}: {:?}", app.backend, replay.headers);
            assert_eq!(
                replay.headers.get("content-type").unwrap(),
                "application/json"
            );
        }
        let adjustment = json!({ "amount": "-2.50", "reason": "correction" });
        let first_adj = post(&app, &As::Operator, &adjustments, Some("a-1"), &adjustment).await;
        assert_eq!(first_adj.status, StatusCode::CREATED, "{}", first_adj.text);
        let replay_adj = post(&app, &As::Operator, &adjustments, Some("a-1"), &adjustment).await;
        assert_eq!(
            (replay_adj.status, &replay_adj.text, replay_adj.replayed()),
            (StatusCode::CREATED, &first_adj.text, true)
        );
        // A hold and its settlement, each with a key.
        let hold_body =
            json!({ "model": MODEL, "max_input_tokens": 1000, "max_output_tokens": 1000 });
        let hold = post(&app, &key, "/v1/holds", Some("h-1"), &hold_body).await;
        assert_eq!(hold.status, StatusCode::CREATED, "{}", hold.text);
        let hold_replay = post(&app, &key, "/v1/holds", Some("h-1"), &hold_body).await;
        assert_eq!(
            (
                hold_replay.status,
                &hold_replay.text,
                hold_replay.replayed()
            ),
            (StatusCode::CREATED, &hold.text, true)
        );
        let settle_path = format!("/v1/holds/{}/settle", hold.str("id"));
        let settle_body = json!({ "usage": { "input_tokens": 100, "output_tokens": 200 } });
        let settle = post(&app, &key, &settle_path, Some("s-1"), &settle_body).await;
        assert_eq!(settle.status, StatusCode::OK, "{}", settle.text);
        let settle_replay = post(&app, &key, &settle_path, Some("s-1"), &settle_body).await;
        assert_eq!(
            (
                settle_replay.status,
                &settle_replay.text,
                settle_replay.replayed()
            ),
            (StatusCode::OK, &settle.text, true)
        );
        // The hold's replay after it was settled still answers the placement as it was.
        let late = post(&app, &key, "/v1/holds", Some("h-1"), &hold_body).await;
        assert_eq!(
            (late.text.as_str(), late.replayed()),
            (hold.text.as_str(), true)
        );
        assert_eq!(late.json()["state"], "open");
        // Each request moved money once: 100 + 5 + 1 − 2.50 − 0.0033, nothing held.
        assert_eq!(
            money(&app, &org).await,
            pair("103.4967", "0.00"),
            "{}",
            app.backend
        );
        let all = transfers(&app, &org).await;
        assert_eq!(of_kind(&all, "grant").len(), 3, "{all:?}");
        assert_eq!(of_kind(&all, "adjustment").len(), 1, "{all:?}");
        assert_eq!(of_kind(&all, "usage").len(), 1, "{all:?}");
        app.assert_invariants().await;
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_key_on_another_request_is_409() {
    for database in databases().await {
        let app = spawn_app(database).await;
        let (org, key) = org_with_key(&app, "Acme", "100.00").await;
        let other = app.create_org("Other").await;
        let grants = format!("/v1/orgs/{org}/grants");
        let body = json!({ "amount": "5.00", "origin": "paid" });
        let first = post(&app, &As::Operator, &grants, Some("k"), &body).await;
        assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
        let conflicts = [
            (
                grants.clone(),
                json!({ "amount": "6.00", "origin": "paid" }),
            ),
            (
                grants.clone(),
                json!({ "amount": "5.00", "origin": "promotional" }),
            ),
            (
                grants.clone(),
                json!({ "amount": "5.00", "origin": "paid", "reference": "x" }),
            ),
            (format!("/v1/orgs/{other}/grants"), body.clone()),
            (
                format!("/v1/orgs/{org}/adjustments"),
                json!({ "amount": "5.00", "reason": "r" }),
            ),
            (
                "/v1/holds".to_owned(),
                json!({ "org_id": org, "amount": "5.00" }),
            ),
        ];
        for (path, other_body) in &conflicts {
            let reply = post(&app, &As::Operator, path, Some("k"), other_body).await;
            let context = format!("{}: POST {path} {other_body}", app.backend);
            assert_eq!(
                reply.status,
                StatusCode::CONFLICT,
                "{context}: {}",
                reply.text
            );
            let error = reply.json();
            assert_eq!(error["error"]["type"], "conflict_error", "{context}");
            assert_eq!(reply.code(), "idempotency_key_reused", "{context}");
            assert!(error["error"].get("param").is_none(), "{context}: {error}");
            assert!(
                error["request_id"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("req_")),
                "{context}"
            );
            assert!(!reply.replayed(), "{context}");
        }
        // The key still replays its own request.
        let replay = post(&app, &As::Operator, &grants, Some("k"), &body).await;
        assert_eq!(
            (replay.text.as_str(), replay.replayed()),
            (first.text.as_str(), true)
        );
        // Nothing moved but the first grant.
        assert_eq!(money(&app, &org).await, pair("105.00", "0.00"));
        assert_eq!(money(&app, &other).await, pair("0.00", "0.00"));
        assert_eq!(of_kind(&transfers(&app, &org).await, "grant").len(), 2);
        // A refused request records nothing: its key may then be used for a good one.
        let bad = post(
            &app,
            &As::Operator,
            &grants,
            Some("k2"),
            &json!({ "amount": "5.00", "origin": "gift" }),
        )
        .await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text);
        let good = post(
            &app,
            &As::Operator,
            &grants,
            Some("k2"),
            &json!({ "amount": "7.00", "origin": "paid" }),
        )
        .await;
        assert_eq!(good.status, StatusCode::CREATED, "{}", good.text);
        assert!(!good.replayed());
        // So does a 402: once there are credits, the same key places the hold.
        let big = json!({ "amount": "500.00" });
        let refused = post(&app, &key, "/v1/holds", Some("h-big"), &big).await;
        assert_eq!(
            refused.status,
            StatusCode::PAYMENT_REQUIRED,
            "{}",
            refused.text
        );
        app.grant(&org, "500.00").await;
        let placed = post(&app, &key, "/v1/holds", Some("h-big"), &big).await;
        assert_eq!(placed.status, StatusCode::CREATED, "{}", placed.text);
        assert!(!placed.replayed());
        assert_eq!(money(&app, &org).await, pair("612.00", "500.00"));
        app.assert_invariants().await;
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_per_caller() {
    for database in databases().await {
        let app = spawn_app(database).await;
        let (a, key_a) = org_with_key(&app, "A", "100.00").await;
        let (b, key_b) = org_with_key(&app, "B", "100.00").await;
        let body = json!({ "amount": "1.00" });
        let hold_a = post(&app, &key_a, "/v1/holds", Some("shared"), &body).await;
        assert_eq!(hold_a.status, StatusCode::CREATED, "{}", hold_a.text);
        // B sends the very same request with the very same key: B's own hold, not A's answer.
        let hold_b = post(&app, &key_b, "/v1/holds", Some("shared"), &body).await;
        assert_eq!(
            hold_b.status,
            StatusCode::CREATED,
            "{}: {}",
            app.backend,
            hold_b.text
        );
        assert!(
            !hold_b.replayed(),
            "{}: B got A's recorded answer",
            app.backend
        );
        assert_ne!(hold_b.str("id"), hold_a.str("id"));
        assert_eq!(hold_b.str("org_id"), b);
        assert!(!hold_b.text.contains(&a), "{}", hold_b.text);
        // The operator's "shared" is its own too: a grant, neither a 409 nor a replay.
        let grant = post(
            &app,
            &As::Operator,
            &format!("/v1/orgs/{a}/grants"),
            Some("shared"),
            &json!({ "amount": "2.00", "origin": "paid" }),
        )
        .await;
        assert_eq!(grant.status, StatusCode::CREATED, "{}", grant.text);
        assert!(!grant.replayed());
        // The operator placing a hold for A with a key A used: a new hold.
        let a_only = post(
            &app,
            &key_a,
            "/v1/holds",
            Some("a-only"),
            &json!({ "amount": "3.00" }),
        )
        .await;
        assert_eq!(a_only.status, StatusCode::CREATED, "{}", a_only.text);
        let op_hold = post(
            &app,
            &As::Operator,
            "/v1/holds",
            Some("a-only"),
            &json!({ "org_id": a, "amount": "3.00" }),
        )
        .await;
        assert_eq!(op_hold.status, StatusCode::CREATED, "{}", op_hold.text);
        assert!(!op_hold.replayed());
        assert_ne!(op_hold.str("id"), a_only.str("id"));
        // And each caller's replay is still its own.
        let replay_a = post(&app, &key_a, "/v1/holds", Some("shared"), &body).await;
        assert_eq!(
            (replay_a.text.as_str(), replay_a.replayed()),
            (hold_a.text.as_str(), true)
        );
        let replay_b = post(&app, &key_b, "/v1/holds", Some("shared"), &body).await;
        assert_eq!(
            (replay_b.text.as_str(), replay_b.replayed()),
            (hold_b.text.as_str(), true)
        );
        assert_eq!(
            money(&app, &a).await,
            pair("102.00", "7.00"),
            "{}",
            app.backend
        );
        assert_eq!(
            money(&app, &b).await,
            pair("100.00", "1.00"),
            "{}",
            app.backend
        );
        app.assert_invariants().await;
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_replayed_20_times_concurrently_moves_money_once() {
    for database in databases().await {
        let app = spawn_app(database).await;
        let org = app.create_org("Acme").await;
        let path = format!("/v1/orgs/{org}/grants");
        let body = json!({ "amount": "12.34", "origin": "paid" });
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let (client, base, path, body) = (
                app.client.clone(),
                app.base.clone(),
                path.clone(),
                body.clone(),
            );
            tasks.spawn(async move {
                post_raw(
                    &client,
                    &base,
                    &As::Operator,
                    &path,
                    Some("concurrent"),
                    &body,
                )
                .await
            });
        }
        let replies: Vec<Raw> = tasks.join_all().await;
        for reply in &replies {
            assert_eq!(
                reply.status,
                StatusCode::CREATED,
                "{}: {}",
                app.backend,
                reply.text
            );
            assert_eq!(
                reply.text, replies[0].text,
                "{}: every answer the same",
                app.backend
            );
        }
        // At least one answer is the first; racers that lost are replays or carry the same
        // body (a racer whose record equals the first one's, to the millisecond, cannot tell).
        let fresh = replies.iter().filter(|r| !r.replayed()).count();
        assert!(fresh >= 1, "{}: no first answer", app.backend);
        let all = transfers(&app, &org).await;
        assert_eq!(all.len(), 1, "{}: {all:?}", app.backend);
        assert_eq!(all[0]["id"], replies[0].json()["id"]);
        assert_eq!(money(&app, &org).await, pair("12.34", "0.00"));
        app.assert_invariants().await;
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_with_a_key_reserves_once() {
    for database in databases().await {
        let app = spawn_app(database).await;
        app.set_price(MODEL, "3.00", "15.00").await;
        let (org, key) = org_with_key(&app, "Acme", "10.00").await;
        let body = json!({ "model": MODEL, "max_input_tokens": 1000, "max_output_tokens": 1000 });
        let first = post(&app, &key, "/v1/holds", Some("hold-1"), &body).await;
        assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
        let again = post(&app, &key, "/v1/holds", Some("hold-1"), &body).await;
        assert_eq!(again.str("id"), first.str("id"));
        assert!(again.replayed());
        assert_eq!(money(&app, &org).await, pair("10.00", "0.018"));
        // Ten at once with a new key: one hold.
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..10 {
            let (client, base, key, body) = (
                app.client.clone(),
                app.base.clone(),
                key.clone(),
                body.clone(),
            );
            tasks.spawn(async move {
                post_raw(&client, &base, &key, "/v1/holds", Some("hold-2"), &body).await
            });
        }
        let replies = tasks.join_all().await;
        for reply in &replies {
            assert_eq!(
                reply.status,
                StatusCode::CREATED,
                "{}: {}",
                app.backend,
                reply.text
            );
            assert_eq!(reply.text, replies[0].text, "{}", app.backend);
        }
        assert!(replies.iter().any(|r| !r.replayed()), "{}", app.backend);
        assert_ne!(replies[0].str("id"), first.str("id"));
        assert_eq!(
            money(&app, &org).await,
            pair("10.00", "0.036"),
            "{}",
            app.backend
        );
        let snapshot = app.store.snapshot().await.expect("a snapshot");
        let open: Vec<_> = snapshot
            .holds
            .iter()
            .filter(|h| h.debit_account_id.as_str() == org)
            .collect();
        assert_eq!(open.len(), 2, "{}: {open:?}", app.backend);
        // Without a key, each request is its own hold.
        let plain_1 = post(&app, &key, "/v1/holds", None, &body).await;
        let plain_2 = post(&app, &key, "/v1/holds", None, &body).await;
        assert_ne!(plain_1.str("id"), plain_2.str("id"));
        assert_eq!(money(&app, &org).await, pair("10.00", "0.072"));
        app.assert_invariants().await;
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settle_and_void_are_idempotent_by_the_hold() {
    for database in databases().await {
        let app = spawn_app(database).await;
        app.set_price(MODEL, "3.00", "15.00").await;
        let (org, key) = org_with_key(&app, "Acme", "10.00").await;
        let place = |body: Value| {
            let (app, key) = (&app, key.clone());
            async move {
                let hold = post(app, &key, "/v1/holds", None, &body).await;
                assert_eq!(hold.status, StatusCode::CREATED, "{}", hold.text);
                hold.str("id")
            }
        };
        let hold =
            place(json!({ "model": MODEL, "max_input_tokens": 1000, "max_output_tokens": 1000 }))
                .await;
        let settle = format!("/v1/holds/{hold}/settle");
        let usage = json!({ "usage": { "input_tokens": 100, "output_tokens": 200 } });
        let first = post(&app, &key, &settle, None, &usage).await;
        assert_eq!(first.status, StatusCode::OK, "{}", first.text);
        let transfer = first.json()["transfer"]["id"].clone();
        assert!(transfer.as_str().is_some_and(|t| t.starts_with("txn_")));
        assert_eq!(first.json()["transfer"]["amount"], "0.0033");
        // The same settlement again: OK, the same transfer, charged once.
        for _ in 0..2 {
            let again = post(&app, &key, &settle, None, &usage).await;
            assert_eq!(
                again.status,
                StatusCode::OK,
                "{}: {}",
                app.backend,
                again.text
            );
            let again = again.json();
            assert_eq!(again["transfer"]["id"], transfer, "{}", app.backend);
            assert_eq!(again["hold"]["state"], "settled");
            assert_eq!(again["hold"]["settled_amount"], "0.0033");
        }
        assert_eq!(money(&app, &org).await, pair("9.9967", "0.00"));
        // Another amount for the same hold: a conflict, nothing charged.
        for other in [
            json!({ "amount": "0.01" }),
            json!({ "usage": { "input_tokens": 101, "output_tokens": 200 } }),
        ] {
            let reply = post(&app, &key, &settle, None, &other).await;
            assert_eq!(
                reply.status,
                StatusCode::CONFLICT,
                "{}: {other}: {}",
                app.backend,
                reply.text
            );
            assert_eq!(reply.code(), "idempotency_conflict", "{}", reply.text);
            assert_eq!(reply.json()["error"]["type"], "conflict_error");
        }
        // A void after the settle: the hold is closed.
        let void = post(
            &app,
            &key,
            &format!("/v1/holds/{hold}/void"),
            None,
            &json!({}),
        )
        .await;
        assert_eq!(void.status, StatusCode::CONFLICT, "{}", void.text);
        assert_eq!(void.code(), "hold_already_closed", "{}", void.text);
        assert_eq!(money(&app, &org).await, pair("9.9967", "0.00"));
        let usage_transfers = of_kind(&transfers(&app, &org).await, "usage").len();
        assert_eq!(usage_transfers, 1);
        // A void repeated is OK and releases once; a settle after it is a 409.
        let voided = place(json!({ "amount": "2.00" })).await;
        assert_eq!(money(&app, &org).await, pair("9.9967", "2.00"));
        let void_path = format!("/v1/holds/{voided}/void");
        let first_void = post(&app, &key, &void_path, None, &json!({})).await;
        assert_eq!(first_void.status, StatusCode::OK, "{}", first_void.text);
        assert_eq!(first_void.json()["hold"]["state"], "voided");
        let second_void = post(&app, &key, &void_path, None, &json!({})).await;
        assert_eq!(
            second_void.status,
            StatusCode::OK,
            "{}: {}",
            app.backend,
            second_void.text
        );
        assert_eq!(second_void.json()["hold"], first_void.json()["hold"]);
        let late_settle = post(
            &app,
            &key,
            &format!("/v1/holds/{voided}/settle"),
            None,
            &json!({ "amount": "1.00" }),
        )
        .await;
        assert_eq!(
            late_settle.status,
            StatusCode::CONFLICT,
            "{}",
            late_settle.text
        );
        assert_eq!(late_settle.code(), "hold_already_closed");
        assert_eq!(money(&app, &org).await, pair("9.9967", "0.00"));
        // Settle concurrently ten times: one charge, every answer the same transfer.
        let raced = place(json!({ "amount": "1.00" })).await;
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..10 {
            let (client, base, key) = (app.client.clone(), app.base.clone(), key.clone());
            let path = format!("/v1/holds/{raced}/settle");
            tasks.spawn(async move {
                post_raw(
                    &client,
                    &base,
                    &key,
                    &path,
                    None,
                    &json!({ "amount": "0.75" }),
                )
                .await
            });
        }
        let replies = tasks.join_all().await;
        let first_transfer = replies[0].json()["transfer"]["id"].clone();
        for reply in &replies {
            assert_eq!(
                reply.status,
                StatusCode::OK,
                "{}: {}",
                app.backend,
                reply.text
            );
            assert_eq!(reply.json()["transfer"]["id"], first_transfer);
        }
        assert_eq!(
            money(&app, &org).await,
            pair("9.2467", "0.00"),
            "{}",
            app.backend
        );
        assert_eq!(of_kind(&transfers(&app, &org).await, "usage").len(), 2);
        app.assert_invariants().await;
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_usage_event_is_charged_once_by_its_id() {
    for database in databases().await {
        let app = spawn_app(database).await;
        app.set_price(MODEL, "3.00", "15.00").await;
        let (org, key) = org_with_key(&app, "Acme", "10.00").await;
        let (other, other_key) = org_with_key(&app, "Other", "10.00").await;
        let event = json!({ "id": "evt-1", "model": MODEL, "usage": { "input_tokens": 1_000_000, "output_tokens": 0 } });
        let batch = json!({ "events": [event] });
        let first = post(&app, &key, "/v1/usage", None, &batch).await;
        assert_eq!(first.status, StatusCode::OK, "{}", first.text);
        let first = first.json();
        assert_eq!(first["data"][0]["status"], "created", "{first}");
        assert_eq!(first["data"][0]["amount"], "3.00");
        let transfer = first["data"][0]["transfer_id"].clone();
        let second = post(&app, &key, "/v1/usage", None, &batch).await;
        assert_eq!(second.status, StatusCode::OK, "{}", second.text);
        let second = second.json();
        assert_eq!(
            second["data"][0]["status"], "exists",
            "{}: {second}",
            app.backend
        );
        assert_eq!(second["data"][0]["transfer_id"], transfer);
        assert_eq!(second["data"][0]["amount"], "3.00");
        // In one batch with a new event: the old one exists, the new one is created.
        let mixed = json!({ "events": [
            event,
            { "id": "evt-2", "model": MODEL, "usage": { "input_tokens": 0, "output_tokens": 100_000 } },
        ] });
        let reply = post(&app, &key, "/v1/usage", None, &mixed).await.json();
        assert_eq!(
            (&reply["data"][0]["status"], &reply["data"][1]["status"]),
            (&json!("exists"), &json!("created")),
            "{reply}"
        );
        // Twice in the same batch: recorded once.
        let twice = json!({ "events": [
            { "id": "evt-3", "model": MODEL, "usage": { "input_tokens": 1000, "output_tokens": 0 } },
            { "id": "evt-3", "model": MODEL, "usage": { "input_tokens": 1000, "output_tokens": 0 } },
        ] });
        let reply = post(&app, &key, "/v1/usage", None, &twice).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        let reply = reply.json();
        assert_eq!(
            (&reply["data"][0]["status"], &reply["data"][1]["status"]),
            (&json!("created"), &json!("exists")),
            "{}: {reply}",
            app.backend
        );
        assert_eq!(
            reply["data"][0]["transfer_id"],
            reply["data"][1]["transfer_id"]
        );
        // The same id with other usage: rejected, not charged again.
        let changed = json!({ "events": [
            { "id": "evt-1", "model": MODEL, "usage": { "input_tokens": 2_000_000, "output_tokens": 0 } },
        ] });
        let reply = post(&app, &key, "/v1/usage", None, &changed).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        let reply = reply.json();
        assert_eq!(reply["data"][0]["status"], "rejected", "{reply}");
        assert_eq!(
            reply["data"][0]["error"]["code"], "exists_with_different_fields",
            "{reply}"
        );
        // 10 − 3.00 − 1.50 − 0.003, once each.
        assert_eq!(
            money(&app, &org).await,
            pair("5.497", "0.00"),
            "{}",
            app.backend
        );
        let usage = of_kind(&transfers(&app, &org).await, "usage").len();
        assert_eq!(usage, 3, "{}", app.backend);
        // Event ids are per org: another org's evt-1 is its own charge.
        let theirs = post(&app, &other_key, "/v1/usage", None, &batch)
            .await
            .json();
        assert_eq!(theirs["data"][0]["status"], "created", "{theirs}");
        assert_ne!(theirs["data"][0]["transfer_id"], transfer);
        assert_eq!(money(&app, &other).await, pair("7.00", "0.00"));
        // Concurrent repeats of one batch: charged once.
        let racing = json!({ "events": [
            { "id": "evt-race", "model": MODEL, "usage": { "input_tokens": 100_000, "output_tokens": 0 } },
        ] });
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..10 {
            let (client, base, key, body) = (
                app.client.clone(),
                app.base.clone(),
                key.clone(),
                racing.clone(),
            );
            tasks.spawn(
                async move { post_raw(&client, &base, &key, "/v1/usage", None, &body).await },
            );
        }
        let replies = tasks.join_all().await;
        let statuses: Vec<String> = replies
            .iter()
            .map(|r| {
                r.json()["data"][0]["status"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned()
            })
            .collect();
        assert_eq!(
            statuses.iter().filter(|s| *s == "created").count(),
            1,
            "{statuses:?}"
        );
        assert_eq!(
            statuses.iter().filter(|s| *s == "exists").count(),
            9,
            "{statuses:?}"
        );
        assert_eq!(
            money(&app, &org).await,
            pair("5.197", "0.00"),
            "{}",
            app.backend
        );
        app.assert_invariants().await;
        app.stop().await;
    }
}
