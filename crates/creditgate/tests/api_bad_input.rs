//! Bad input, table-driven: each row is sent as is and must be refused with the exact status,
//! `error.code` and `error.param`, a request id, and no change anywhere (ledger, orgs, keys,
//! prices). Per-event refusals of a usage batch are checked on their own: 200, the bad events
//! rejected with their param, the good ones recorded.

mod api_support;

use api_support::{databases, spawn_app, As, Reply, TestApp, OPERATOR_TOKEN};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const MODEL: &str = "model-a";

/// What a row sends as its body.
#[derive(Clone, Debug)]
enum Payload {
    None,
    Json(Value),
    /// Raw bytes with a content type.
    Raw(&'static str, Vec<u8>),
}

/// One bad request and the refusal it must get.
struct Row {
    who: As,
    method: Method,
    path: String,
    payload: Payload,
    headers: Vec<(String, String)>,
    status: StatusCode,
    code: &'static str,
    param: Option<String>,
}

impl Row {
    fn new(who: &As, method: Method, path: impl Into<String>, payload: Payload) -> Row {
        Row {
            who: who.clone(),
            method,
            path: path.into(),
            payload,
            headers: Vec::new(),
            status: StatusCode::BAD_REQUEST,
            code: "",
            param: None,
        }
    }
    /// Expects a 400 with `code` naming `param`.
    fn invalid(self, code: &'static str, param: &str) -> Row {
        self.expect(StatusCode::BAD_REQUEST, code, Some(param))
    }
    fn expect(mut self, status: StatusCode, code: &'static str, param: Option<&str>) -> Row {
        self.status = status;
        self.code = code;
        self.param = param.map(str::to_owned);
        self
    }
    fn header(mut self, name: &str, value: impl Into<String>) -> Row {
        self.headers.push((name.to_owned(), value.into()));
        self
    }
    /// With a fresh `Idempotency-Key`, so the row's refusal is not a replay of another's.
    fn keyed(self) -> Row {
        let key = format!("bad-{}", rand::random::<u64>());
        self.header("Idempotency-Key", key)
    }
    fn describe(&self) -> String {
        let payload = match &self.payload {
            Payload::None => "-".to_owned(),
            Payload::Json(v) => {
                let text = v.to_string();
                text.chars().take(160).collect()
            }
            Payload::Raw(ct, bytes) => format!(
                "{ct} {:?} ({} bytes)",
                String::from_utf8_lossy(&bytes[..bytes.len().min(60)]),
                bytes.len()
            ),
        };
        format!("{} {} {payload}", self.method, self.path)
    }
}

fn json_body(value: Value) -> Payload {
    Payload::Json(value)
}

/// Sends anything, raw bodies included.
async fn send(
    app: &TestApp,
    who: &As,
    method: Method,
    path: &str,
    payload: &Payload,
    headers: &[(String, String)],
) -> Reply {
    let mut request = app.client.request(method, format!("{}{path}", app.base));
    request = match who {
        As::Operator => request.bearer_auth(OPERATOR_TOKEN),
        As::Key(secret) => request.header("x-api-key", secret),
        As::Bearer(secret) => request.bearer_auth(secret),
        As::Nobody => request,
    };
    for (name, value) in headers {
        request = request.header(name, value);
    }
    request = match payload {
        Payload::None => request,
        Payload::Json(value) => request.json(value),
        Payload::Raw(content_type, bytes) => request
            .header("content-type", *content_type)
            .body(bytes.clone()),
    };
    let response = request.send().await.expect("the service answers");
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.expect("a body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Reply {
        status,
        body,
        headers,
    }
}

/// Everything a refused request must leave as it was: the whole ledger (accounts with their
/// balances, grants, holds, transfers), the orgs, the org's keys and the price book.
async fn state(app: &TestApp, org: &str) -> Vec<String> {
    let snapshot = app.store.snapshot().await.expect("a snapshot");
    let mut out = Vec::new();
    let mut section = |name: &str, mut rows: Vec<String>| {
        rows.sort();
        out.push(format!("{name}: {}", rows.len()));
        out.extend(rows);
    };
    section(
        "accounts",
        snapshot.accounts.iter().map(|a| format!("{a:?}")).collect(),
    );
    section(
        "grants",
        snapshot.grants.iter().map(|g| format!("{g:?}")).collect(),
    );
    section(
        "holds",
        snapshot.holds.iter().map(|h| format!("{h:?}")).collect(),
    );
    section(
        "transfers",
        snapshot
            .transfers
            .iter()
            .map(|t| format!("{t:?}"))
            .collect(),
    );
    for path in [
        "/v1/orgs?limit=100".to_owned(),
        format!("/v1/orgs/{org}/keys"),
        "/v1/prices".to_owned(),
    ] {
        let reply = app.get(&As::Operator, &path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.body);
        out.push(format!("{path}: {}", reply.body));
    }
    out
}

/// Why `reply` is not the refusal `row` expects, if it is not.
fn refusal_mismatch(reply: &Reply, row: &Row) -> Option<String> {
    let kind = match row.status.as_u16() {
        400 | 413 => "invalid_request_error",
        402 => "billing_error",
        404 => "not_found_error",
        other => panic!("no error family for {other}"),
    };
    let request_id = reply.body["request_id"].as_str().unwrap_or("");
    let header_id = reply
        .headers
        .get("request-id")
        .and_then(|v| v.to_str().ok());
    let message_ok = reply.body["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty());
    let got = (
        reply.status,
        reply.body["error"]["type"].as_str(),
        reply.code(),
        reply.body["error"]["param"].as_str(),
    );
    let want = (row.status, Some(kind), row.code, row.param.as_deref());
    if got != want {
        return Some(format!("expected {want:?}, got {got:?}: {}", reply.body));
    }
    if !message_ok || !request_id.starts_with("req_") || header_id != Some(request_id) {
        return Some(format!(
            "no message or request id (header {header_id:?}): {}",
            reply.body
        ));
    }
    None
}

/// The fixture: org A with 100.00, a key, a price, an open hold by model and one by amount.
struct Fixture {
    org: String,
    key: As,
    model_hold: String,
    amount_hold: String,
}

async fn fixture(app: &TestApp) -> Fixture {
    app.set_price(MODEL, "3.00", "15.00").await;
    let org = app.create_org("Acme").await;
    app.grant(&org, "100.00").await;
    let (_, secret) = app.create_key(&org).await;
    let key = As::Key(secret);
    let model_hold = app
        .post(
            &key,
            "/v1/holds",
            json!({ "model": MODEL, "max_input_tokens": 1000, "max_output_tokens": 1000 }),
        )
        .await;
    assert_eq!(
        model_hold.status,
        StatusCode::CREATED,
        "{}",
        model_hold.body
    );
    let amount_hold = app
        .post(&key, "/v1/holds", json!({ "amount": "2.00" }))
        .await;
    assert_eq!(
        amount_hold.status,
        StatusCode::CREATED,
        "{}",
        amount_hold.body
    );
    Fixture {
        org,
        key,
        model_hold: model_hold.str("id"),
        amount_hold: amount_hold.str("id"),
    }
}

fn rows(f: &Fixture) -> Vec<Row> {
    let op = As::Operator;
    let key = &f.key;
    let grants = format!("/v1/orgs/{}/grants", f.org);
    let adjustments = format!("/v1/orgs/{}/adjustments", f.org);
    let grant = |amount: Value| {
        Row::new(
            &op,
            Method::POST,
            grants.clone(),
            json_body(json!({ "amount": amount, "origin": "paid" })),
        )
        .keyed()
    };
    let grant_body =
        |body: Value| Row::new(&op, Method::POST, grants.clone(), json_body(body)).keyed();
    let grant_raw = |content_type: &'static str, bytes: &[u8]| {
        Row::new(
            &op,
            Method::POST,
            grants.clone(),
            Payload::Raw(content_type, bytes.to_vec()),
        )
        .keyed()
    };
    let adjust =
        |body: Value| Row::new(&op, Method::POST, adjustments.clone(), json_body(body)).keyed();
    let create_org = |body: Value| Row::new(&op, Method::POST, "/v1/orgs", json_body(body));
    let patch_org = |body: Value| {
        Row::new(
            &op,
            Method::PATCH,
            format!("/v1/orgs/{}", f.org),
            json_body(body),
        )
    };
    let hold = |body: Value| Row::new(key, Method::POST, "/v1/holds", json_body(body));
    let settle = |hold: &str, body: Value| {
        Row::new(
            key,
            Method::POST,
            format!("/v1/holds/{hold}/settle"),
            json_body(body),
        )
    };
    let usage = |body: Value| Row::new(key, Method::POST, "/v1/usage", json_body(body));
    let get = |who: &As, path: String| Row::new(who, Method::GET, path, Payload::None);
    let transfers = |query: &str| get(&op, format!("/v1/orgs/{}/transfers?{query}", f.org));
    let price = |model: &str, body: Value| {
        Row::new(
            &op,
            Method::PUT,
            format!("/v1/prices/{model}"),
            json_body(body),
        )
    };
    let event = |usage: Value| json!({ "id": "e1", "model": MODEL, "usage": usage });
    let huge = |field: &str| {
        let mut text = format!("{{\"{field}\": \"");
        text.push_str(&"a".repeat((1 << 20) + 1024));
        text.push_str("\"}");
        text.into_bytes()
    };
    let many_events: Vec<Value> = (0..1001)
        .map(|i| {
            json!({ "id": format!("e{i}"), "model": MODEL, "usage": { "input_tokens": 1, "output_tokens": 1 } })
        })
        .collect();

    vec![
        // Grants: money as decimal strings only.
        grant(json!("-5")).invalid("parameter_invalid", "amount"),
        grant(json!("99999999999999999999")).invalid("parameter_invalid", "amount"),
        grant(json!("1.0000001")).invalid("parameter_invalid", "amount"),
        grant(json!("1e3")).invalid("parameter_invalid", "amount"),
        grant(json!(5)).invalid("parameter_invalid", "amount"),
        grant(json!(5.5)).invalid("parameter_invalid", "amount"),
        grant(json!("")).invalid("parameter_invalid", "amount"),
        grant(json!(" 5")).invalid("parameter_invalid", "amount"),
        grant(json!("5 ")).invalid("parameter_invalid", "amount"),
        grant(json!("+5")).invalid("parameter_invalid", "amount"),
        grant(json!("5.")).invalid("parameter_invalid", "amount"),
        grant(json!(".5")).invalid("parameter_invalid", "amount"),
        grant(json!("1,000")).invalid("parameter_invalid", "amount"),
        grant(json!("0x10")).invalid("parameter_invalid", "amount"),
        grant(json!(null)).invalid("parameter_invalid", "amount"),
        grant(json!("0")).invalid("amount_must_be_positive", "amount"),
        grant(json!("0.000000")).invalid("amount_must_be_positive", "amount"),
        grant_body(json!({ "origin": "paid" })).invalid("parameter_missing", "amount"),
        grant_body(json!({ "amount": "5" })).invalid("parameter_missing", "origin"),
        grant_body(json!({ "amount": "5", "origin": "paid", "currency": "usd" }))
            .invalid("parameter_unknown", "currency"),
        grant_body(json!({ "amount": "5", "origin": "gift" })).invalid("parameter_invalid", "origin"),
        grant_body(json!({ "amount": "5", "origin": "paid", "priority": 1001 }))
            .invalid("parameter_invalid", "priority"),
        grant_body(json!({ "amount": "5", "origin": "paid", "priority": -1 }))
            .invalid("parameter_invalid", "priority"),
        grant_body(json!({ "amount": "5", "origin": "paid", "expires_at": 1 }))
            .invalid("parameter_invalid", "expires_at"),
        grant_body(json!({ "amount": "5", "origin": "paid", "expires_at": i64::MAX }))
            .invalid("parameter_invalid", "expires_at"),
        grant_body(json!({ "amount": "5", "origin": "paid", "reference": "r".repeat(201) }))
            .invalid("parameter_invalid", "reference"),
        grant_body(json!({ "amount": "5", "origin": "paid", "reference": "bell\u{7}" }))
            .invalid("parameter_invalid", "reference"),
        // The Idempotency-Key.
        Row::new(
            &op,
            Method::POST,
            grants.clone(),
            json_body(json!({ "amount": "5", "origin": "paid" })),
        )
        .invalid("parameter_missing", "Idempotency-Key"),
        Row::new(
            &op,
            Method::POST,
            grants.clone(),
            json_body(json!({ "amount": "5", "origin": "paid" })),
        )
        .header("Idempotency-Key", "a b")
        .invalid("parameter_invalid", "Idempotency-Key"),
        Row::new(
            &op,
            Method::POST,
            grants.clone(),
            json_body(json!({ "amount": "5", "origin": "paid" })),
        )
        .header("Idempotency-Key", "k".repeat(256))
        .invalid("parameter_invalid", "Idempotency-Key"),
        // The body itself.
        grant_raw("application/json", br#"{"amount": "5","#)
            .expect(StatusCode::BAD_REQUEST, "invalid_json", None),
        grant_raw("application/json", br#"{"amount": "5", "origin": "paid"} x"#)
            .expect(StatusCode::BAD_REQUEST, "invalid_json", None),
        grant_raw("application/json", b"\xff\xfe")
            .expect(StatusCode::BAD_REQUEST, "invalid_json", None),
        grant_raw("application/json", b"").invalid("parameter_missing", "amount"),
        grant_raw("text/plain", br#"{"amount": "5", "origin": "paid"}"#)
            .expect(StatusCode::BAD_REQUEST, "invalid_content_type", None),
        grant_raw("application/json", &huge("reference"))
            .expect(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", None),
        // Ids in paths.
        Row::new(
            &op,
            Method::POST,
            "/v1/orgs/not-an-id/grants",
            json_body(json!({ "amount": "5", "origin": "paid" })),
        )
        .keyed()
        .invalid("invalid_id", "org_id"),
        Row::new(
            &op,
            Method::POST,
            "/v1/orgs/org_doesnotexist/grants",
            json_body(json!({ "amount": "5", "origin": "paid" })),
        )
        .keyed()
        .expect(StatusCode::NOT_FOUND, "org_not_found", None),
        // Adjustments.
        adjust(json!({ "amount": "0", "reason": "none" })).invalid("amount_must_not_be_zero", "amount"),
        adjust(json!({ "amount": "-0.00", "reason": "none" }))
            .invalid("amount_must_not_be_zero", "amount"),
        adjust(json!({ "amount": "5", "reason": "" })).invalid("parameter_invalid", "reason"),
        adjust(json!({ "amount": "5" })).invalid("parameter_missing", "reason"),
        adjust(json!({ "amount": "-99999999999999999999", "reason": "x" }))
            .invalid("parameter_invalid", "amount"),
        adjust(json!({ "amount": "-1000.00", "reason": "too much" }))
            .invalid("insufficient_funds", "amount"),
        Row::new(
            &op,
            Method::POST,
            adjustments.clone(),
            json_body(json!({ "amount": "5", "reason": "no key" })),
        )
        .invalid("parameter_missing", "Idempotency-Key"),
        // Orgs.
        create_org(json!({ "name": "Acme", "floor": "5" })).invalid("parameter_invalid", "floor"),
        create_org(json!({ "name": "Acme", "floor": "0.000001" })).invalid("parameter_invalid", "floor"),
        create_org(json!({ "name": "Acme", "billing_emails": ["ok@example.com", "not-an-email"] }))
            .invalid("parameter_invalid", "billing_emails[1]"),
        create_org(json!({ "name": "Acme", "billing_emails": ["a b@example.com"] }))
            .invalid("parameter_invalid", "billing_emails[0]"),
        create_org(json!({ "name": "Acme", "billing_emails": ["@example.com"] }))
            .invalid("parameter_invalid", "billing_emails[0]"),
        create_org(json!({ "name": "Acme", "billing_emails": ["a@localhost"] }))
            .invalid("parameter_invalid", "billing_emails[0]"),
        create_org(json!({ "name": "Acme", "billing_emails": "a@example.com" }))
            .invalid("parameter_invalid", "billing_emails"),
        create_org(json!({
            "name": "Acme",
            "billing_emails": (0..11).map(|i| format!("b{i}@example.com")).collect::<Vec<_>>()
        }))
        .invalid("parameter_invalid", "billing_emails"),
        create_org(json!({ "name": "" })).invalid("parameter_invalid", "name"),
        create_org(json!({ "name": "n".repeat(201) })).invalid("parameter_invalid", "name"),
        create_org(json!({ "name": "tab\there" })).invalid("parameter_invalid", "name"),
        create_org(json!({ "billing_emails": [] })).invalid("parameter_missing", "name"),
        create_org(json!({ "name": "Acme", "low_thresholds": ["0"] }))
            .invalid("parameter_invalid", "low_thresholds[0]"),
        create_org(json!({ "name": "Acme", "low_thresholds": ["5", "-1"] }))
            .invalid("parameter_invalid", "low_thresholds[1]"),
        create_org(json!({ "name": "Acme", "spend_limit_monthly": 10 }))
            .invalid("parameter_invalid", "spend_limit_monthly"),
        create_org(json!({ "name": "Acme", "id": "org_mine" })).invalid("parameter_unknown", "id"),
        Row::new(
            &op,
            Method::POST,
            "/v1/orgs",
            Payload::Raw("application/json", huge("name")),
        )
        .expect(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", None),
        patch_org(json!({ "floor": "1" })).invalid("parameter_invalid", "floor"),
        patch_org(json!({ "billing_emails": ["nope"] })).invalid("parameter_invalid", "billing_emails[0]"),
        patch_org(json!({ "suspended": "yes" })).invalid("parameter_invalid", "suspended"),
        patch_org(json!({ "name": "" })).invalid("parameter_invalid", "name"),
        patch_org(json!({ "low_thresholds": ["-1"] })).invalid("parameter_invalid", "low_thresholds[0]"),
        patch_org(json!({ "posted": "1000" })).invalid("parameter_unknown", "posted"),
        Row::new(
            &op,
            Method::PATCH,
            "/v1/orgs/not-an-id",
            json_body(json!({ "name": "x" })),
        )
        .invalid("invalid_id", "org_id"),
        Row::new(
            &op,
            Method::PATCH,
            "/v1/orgs/org_doesnotexist",
            json_body(json!({ "name": "x" })),
        )
        .expect(StatusCode::NOT_FOUND, "org_not_found", None),
        get(&op, "/v1/orgs/org_doesnotexist".into()).expect(StatusCode::NOT_FOUND, "org_not_found", None),
        // Keys.
        Row::new(
            &op,
            Method::POST,
            format!("/v1/orgs/{}/keys", f.org),
            json_body(json!({ "name": "k".repeat(101) })),
        )
        .invalid("parameter_invalid", "name"),
        Row::new(
            &op,
            Method::POST,
            format!("/v1/orgs/{}/keys", f.org),
            json_body(json!({ "spend_limit_monthly": "-1" })),
        )
        .invalid("parameter_invalid", "spend_limit_monthly"),
        Row::new(
            &op,
            Method::POST,
            "/v1/orgs/not-an-id/keys",
            json_body(json!({ "name": "k" })),
        )
        .invalid("invalid_id", "org_id"),
        Row::new(&op, Method::DELETE, "/v1/keys/xyz", Payload::None).invalid("invalid_id", "key_id"),
        Row::new(&op, Method::DELETE, "/v1/keys/key_doesnotexist", Payload::None)
            .expect(StatusCode::NOT_FOUND, "key_not_found", None),
        // Prices.
        price("model-b", json!({ "input": "-1", "output": "1" })).invalid("parameter_invalid", "input"),
        price("model-b", json!({ "input": "1" })).invalid("parameter_missing", "output"),
        price("model-b", json!({ "input": "1", "output": "1", "max_output_tokens": 0 }))
            .invalid("parameter_invalid", "max_output_tokens"),
        price("model-b", json!({ "input": "1", "output": "1", "effective_at": -1 }))
            .invalid("parameter_invalid", "effective_at"),
        price("bad%20model", json!({ "input": "1", "output": "1" })).invalid("parameter_invalid", "model"),
        price("model-b", json!({ "input": "1", "output": "1", "cache_write_1h": "-1" }))
            .invalid("parameter_invalid", "cache_write_1h"),
        price("model-b", json!({ "input": "1", "output": "1", "web_search_request": 0.01 }))
            .invalid("parameter_invalid", "web_search_request"),
        price("model-b", json!({ "input": "1", "output": "1",
            "long_input": { "above_input_tokens": 0, "input": "2", "output": "2" } }))
            .invalid("parameter_invalid", "long_input.above_input_tokens"),
        price("model-b", json!({ "input": "1", "output": "1", "long_input": { "input": "2", "output": "2" } }))
            .invalid("parameter_missing", "long_input.above_input_tokens"),
        hold(json!({ "model": MODEL, "max_input_tokens": 10, "max_web_search_requests": 1_000_001 }))
            .invalid("parameter_invalid", "max_web_search_requests"),
        get(&op, "/v1/prices?model=bad%20model".into()).invalid("parameter_invalid", "model"),
        // Holds.
        hold(json!({ "model": "no-such-model", "max_input_tokens": 10 })).invalid("unknown_model", "model"),
        hold(json!({ "model": "bad model!", "max_input_tokens": 10 })).invalid("unknown_model", "model"),
        hold(json!({ "model": MODEL, "max_input_tokens": "a" })).invalid("parameter_invalid", "max_input_tokens"),
        hold(json!({ "model": MODEL, "max_input_tokens": -1 })).invalid("parameter_invalid", "max_input_tokens"),
        hold(json!({ "model": MODEL, "max_input_tokens": 1.5 })).invalid("parameter_invalid", "max_input_tokens"),
        hold(json!({ "model": MODEL, "max_input_tokens": 1_000_000_000_001_u64 }))
            .invalid("parameter_invalid", "max_input_tokens"),
        hold(json!({ "model": MODEL, "max_input_tokens": 10, "max_output_tokens": 1_000_000_000_001_u64 }))
            .invalid("parameter_invalid", "max_output_tokens"),
        hold(json!({ "model": MODEL })).invalid("parameter_missing", "max_input_tokens"),
        hold(json!({ "amount": "1.00", "ttl_s": 0 })).invalid("parameter_invalid", "ttl_s"),
        hold(json!({ "amount": "1.00", "ttl_s": 100000 })).invalid("parameter_invalid", "ttl_s"),
        hold(json!({ "amount": "1.00", "ttl_s": 86401 })).invalid("parameter_invalid", "ttl_s"),
        hold(json!({ "amount": "1.00", "ttl_s": -1 })).invalid("parameter_invalid", "ttl_s"),
        hold(json!({ "amount": "1.00", "ttl_s": u64::MAX })).invalid("parameter_invalid", "ttl_s"),
        hold(json!({ "amount": "1.00", "model": MODEL, "max_input_tokens": 10 }))
            .invalid("parameter_invalid", "amount"),
        hold(json!({})).invalid("parameter_missing", "amount"),
        hold(json!({ "amount": "1.00", "max_input_tokens": 10 })).invalid("parameter_invalid", "max_input_tokens"),
        hold(json!({ "amount": "0" })).invalid("amount_must_be_positive", "amount"),
        hold(json!({ "amount": "-1" })).invalid("parameter_invalid", "amount"),
        hold(json!({ "amount": 1 })).invalid("parameter_invalid", "amount"),
        hold(json!({ "amount": "1.00", "colour": "red" })).invalid("parameter_unknown", "colour"),
        // More than the org has, while it is well above its cut-off level: refused alone.
        hold(json!({ "amount": "1000.00" })).expect(
            StatusCode::PAYMENT_REQUIRED,
            "request_exceeds_balance",
            None,
        ),
        hold(json!({ "org_id": "not-an-id", "amount": "1.00" })).invalid("invalid_id", "org_id"),
        Row::new(&op, Method::POST, "/v1/holds", json_body(json!({ "amount": "1.00" })))
            .invalid("parameter_missing", "org_id"),
        Row::new(
            &op,
            Method::POST,
            "/v1/holds",
            json_body(json!({ "org_id": "org_doesnotexist", "amount": "1.00" })),
        )
        .expect(StatusCode::NOT_FOUND, "org_not_found", None),
        hold(json!({ "amount": "1.00" }))
            .header("Idempotency-Key", "")
            .invalid("parameter_invalid", "Idempotency-Key"),
        Row::new(
            key,
            Method::POST,
            "/v1/holds",
            Payload::Raw("application/json", huge("model")),
        )
        .expect(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", None),
        // Settle, void, get.
        settle("xyz", json!({ "amount": "1.00" })).invalid("invalid_id", "hold_id"),
        settle("hold_doesnotexist", json!({ "amount": "1.00" }))
            .expect(StatusCode::NOT_FOUND, "hold_not_found", None),
        settle(&f.model_hold, json!({})).invalid("parameter_missing", "usage"),
        settle(
            &f.model_hold,
            json!({ "amount": "1.00", "usage": { "input_tokens": 1, "output_tokens": 1 } }),
        )
        .invalid("parameter_invalid", "amount"),
        settle(
            &f.amount_hold,
            json!({ "usage": { "input_tokens": 1, "output_tokens": 1 } }),
        )
        .invalid("parameter_invalid", "usage"),
        settle(
            &f.model_hold,
            json!({ "usage": { "input_tokens": -1, "output_tokens": 1 } }),
        )
        .invalid("parameter_invalid", "usage.input_tokens"),
        settle(&f.model_hold, json!({ "usage": { "input_tokens": 1 } }))
            .invalid("parameter_missing", "usage.output_tokens"),
        settle(
            &f.model_hold,
            json!({ "usage": { "input_tokens": 1_000_000_000_001_u64, "output_tokens": 1 } }),
        )
        .invalid("parameter_invalid", "usage.input_tokens"),
        settle(
            &f.model_hold,
            json!({ "usage": { "input_tokens": 1, "output_tokens": 1, "reasoning_tokens": 1 } }),
        )
        .invalid("parameter_unknown", "usage.reasoning_tokens"),
        settle(&f.model_hold, json!({ "amount": "-1" })).invalid("parameter_invalid", "amount"),
        settle(&f.model_hold, json!({ "amount": "1.0000001" })).invalid("parameter_invalid", "amount"),
        Row::new(key, Method::POST, "/v1/holds/xyz/void", Payload::None).invalid("invalid_id", "hold_id"),
        Row::new(
            key,
            Method::POST,
            format!("/v1/holds/{}/void", f.model_hold),
            json_body(json!({ "reason": "x" })),
        )
        .invalid("parameter_unknown", "reason"),
        get(key, "/v1/holds/xyz".into()).invalid("invalid_id", "hold_id"),
        get(key, "/v1/holds/hold_doesnotexist".into()).expect(StatusCode::NOT_FOUND, "hold_not_found", None),
        // Usage batches (refusals of the whole batch).
        usage(json!({ "events": [] })).invalid("parameter_invalid", "events"),
        usage(json!({})).invalid("parameter_missing", "events"),
        usage(json!({ "events": "e1" })).invalid("parameter_invalid", "events"),
        usage(json!({ "events": many_events })).invalid("parameter_invalid", "events"),
        usage(json!({ "events": [{ "id": "e1", "model": MODEL }] })).invalid("parameter_missing", "events[0].usage"),
        usage(json!({ "events": [event(json!({ "input_tokens": "a", "output_tokens": 1 }))] }))
            .invalid("parameter_invalid", "events[0].usage.input_tokens"),
        usage(json!({ "events": [event(json!({ "input_tokens": 1, "output_tokens": 1 })), event(json!({ "input_tokens": 1 }))] }))
            .invalid("parameter_missing", "events[1].usage.output_tokens"),
        usage(json!({ "events": [{ "id": "e1", "model": MODEL, "usage": { "input_tokens": 1, "output_tokens": 1 }, "cost": "1" }] }))
            .invalid("parameter_unknown", "events[0].cost"),
        usage(json!({ "org_id": "nope", "events": [event(json!({ "input_tokens": 1, "output_tokens": 1 }))] }))
            .invalid("invalid_id", "org_id"),
        Row::new(
            &op,
            Method::POST,
            "/v1/usage",
            json_body(json!({ "events": [event(json!({ "input_tokens": 1, "output_tokens": 1 }))] })),
        )
        .invalid("parameter_missing", "org_id"),
        Row::new(
            &op,
            Method::POST,
            "/v1/usage",
            json_body(json!({ "org_id": "org_doesnotexist", "events": [event(json!({ "input_tokens": 1, "output_tokens": 1 }))] })),
        )
        .expect(StatusCode::NOT_FOUND, "org_not_found", None),
        Row::new(key, Method::POST, "/v1/usage", Payload::Raw("application/json", huge("events")))
            .expect(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", None),
        Row::new(key, Method::POST, "/v1/usage", Payload::Raw("text/plain", b"{}".to_vec()))
            .expect(StatusCode::BAD_REQUEST, "invalid_content_type", None),
        Row::new(key, Method::POST, "/v1/usage", Payload::Raw("application/json", b"{\"events\": [".to_vec()))
            .expect(StatusCode::BAD_REQUEST, "invalid_json", None),
        // Paths and queries of reads.
        get(&op, "/v1/orgs/not-an-id/balance".into()).invalid("invalid_id", "org_id"),
        get(key, "/v1/orgs/not-an-id/balance".into()).invalid("invalid_id", "org_id"),
        get(&op, "/v1/orgs/org_a-b/transfers".into()).invalid("invalid_id", "org_id"),
        get(&op, "/v1/orgs/key_abc".into()).invalid("invalid_id", "org_id"),
        get(&op, format!("/v1/orgs/org_{}", "a".repeat(65))).invalid("invalid_id", "org_id"),
        transfers("bogus=1").invalid("parameter_invalid", "bogus"),
        transfers("limit=1&limit=2").invalid("parameter_invalid", "query"),
        get(&op, "/v1/prices?bogus=1".into()).invalid("parameter_invalid", "bogus"),
        grant_raw("application/json", b"\"5\"").expect(StatusCode::BAD_REQUEST, "invalid_body", None),
        grant_raw("application/json", b"null").expect(StatusCode::BAD_REQUEST, "invalid_body", None),
        grant_raw("application/json", br#"{"amount":"5","amount":"6","origin":"paid"}"#)
            .expect(StatusCode::BAD_REQUEST, "invalid_body", None),
        transfers("limit=0").invalid("parameter_invalid", "limit"),
        transfers("limit=abc").invalid("parameter_invalid", "limit"),
        transfers("limit=101").invalid("parameter_invalid", "limit"),
        transfers("limit=4294967296").invalid("parameter_invalid", "limit"),
        transfers("limit=-1").invalid("parameter_invalid", "limit"),
        transfers("limit=").invalid("parameter_invalid", "limit"),
        transfers("starting_after=a%20b").invalid("invalid_id", "starting_after"),
        transfers("starting_after=xyz").invalid("parameter_invalid", "starting_after"),
        transfers("starting_after=txn_doesnotexist").invalid("parameter_invalid", "starting_after"),
        get(&op, "/v1/orgs?limit=0".into()).invalid("parameter_invalid", "limit"),
        get(&op, "/v1/orgs?limit=abc".into()).invalid("parameter_invalid", "limit"),
        get(&op, "/v1/orgs?starting_after=key_x".into()).invalid("invalid_id", "starting_after"),
        get(&op, format!("/v1/orgs/{}/access_transitions?after=abc", f.org)).invalid("parameter_invalid", "after"),
        get(&op, format!("/v1/orgs/{}/access_transitions?limit=0", f.org)).invalid("parameter_invalid", "limit"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_is_refused_exactly_and_changes_nothing() {
    for database in databases().await {
        let app = spawn_app(database).await;
        let f = fixture(&app).await;
        let table = rows(&f);
        assert!(table.len() > 100, "{} rows", table.len());
        let mut before = state(&app, &f.org).await;
        let mut failures = Vec::new();
        for row in &table {
            let context = format!("{}: {}", app.backend, row.describe());
            let reply = send(
                &app,
                &row.who,
                row.method.clone(),
                &row.path,
                &row.payload,
                &row.headers,
            )
            .await;
            if let Some(mismatch) = refusal_mismatch(&reply, row) {
                failures.push(format!("{context}\n    {mismatch}"));
            }
            let after = state(&app, &f.org).await;
            assert_eq!(before, after, "{context}: the refusal changed something");
            before = after;
        }
        assert!(
            failures.is_empty(),
            "{} of {} rows answered otherwise:\n{}",
            failures.len(),
            table.len(),
            failures.join("\n")
        );
        // The fixture is intact: both holds open, the balance as granted.
        let balance = app.balance(&f.org).await;
        assert_eq!(
            (balance.str("posted"), balance.str("reserved")),
            ("100.00".into(), "2.018".into()),
            "{}",
            app.backend
        );
        for hold in [&f.model_hold, &f.amount_hold] {
            let reply = app.get(&f.key, &format!("/v1/holds/{hold}")).await;
            assert_eq!(reply.str("state"), "open", "{}", reply.body);
        }
        app.assert_invariants().await;
        app.stop().await;
    }
}

/// A batch with bad events: 200, the bad ones rejected naming `events[i].field`, the good ones
/// recorded and charged, nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_usage_events_are_rejected_one_by_one() {
    for database in databases().await {
        let app = spawn_app(database).await;
        let f = fixture(&app).await;
        let before = app.store.snapshot().await.expect("a snapshot");
        let ok = json!({ "input_tokens": 1_000_000, "output_tokens": 0 });
        let reply = app
            .post(
                &f.key,
                "/v1/usage",
                json!({ "events": [
                    { "id": "bad-model", "model": "no-such-model", "usage": ok },
                    { "id": "good-1", "model": MODEL, "usage": ok },
                    { "id": "", "model": MODEL, "usage": ok },
                    { "id": "has space", "model": MODEL, "usage": ok },
                    { "id": "bad-key", "model": MODEL, "usage": ok, "key_id": "key_doesnotexist" },
                    { "id": "bad-key-id", "model": MODEL, "usage": ok, "key_id": "nope" },
                    { "id": "bad-time", "model": MODEL, "usage": ok, "timestamp": -1 },
                    { "id": "before-price", "model": MODEL, "usage": ok, "timestamp": 1 },
                    { "id": "bad-model-2", "model": "bad model!", "usage": ok },
                    { "id": "good-2", "model": MODEL, "usage": { "input_tokens": 0, "output_tokens": 1_000_000 } },
                ] }),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{}: {}",
            app.backend,
            reply.body
        );
        let data = reply.body["data"].as_array().expect("data");
        assert_eq!(data.len(), 10, "{}", reply.body);
        let expected_rejections = [
            (0, "unknown_model", "events[0].model"),
            (2, "parameter_invalid", "events[2].id"),
            (3, "parameter_invalid", "events[3].id"),
            (4, "key_not_found", "events[4].key_id"),
            (5, "parameter_invalid", "events[5].key_id"),
            (6, "parameter_invalid", "events[6].timestamp"),
            (7, "unknown_model", "events[7].model"),
            (8, "unknown_model", "events[8].model"),
        ];
        for (index, code, param) in expected_rejections {
            let result = &data[index];
            assert_eq!(result["status"], "rejected", "{}: {result}", app.backend);
            assert_eq!(result["error"]["code"], code, "{}: {result}", app.backend);
            assert_eq!(result["error"]["param"], param, "{}: {result}", app.backend);
            assert!(result["transfer_id"].is_null(), "{result}");
        }
        assert_eq!(data[0]["id"], "bad-model");
        for (index, id, amount) in [(1, "good-1", "3.00"), (9, "good-2", "15.00")] {
            let result = &data[index];
            assert_eq!(
                (&result["id"], &result["status"], &result["amount"]),
                (&json!(id), &json!("created"), &json!(amount)),
                "{}: {result}",
                app.backend
            );
            assert!(result["transfer_id"]
                .as_str()
                .is_some_and(|t| t.starts_with("txn_")));
        }
        let after = app.store.snapshot().await.expect("a snapshot");
        assert_eq!(
            after.transfers.len(),
            before.transfers.len() + 2,
            "only the good events"
        );
        let balance = app.balance(&f.org).await;
        assert_eq!(balance.str("posted"), "82.00", "{}", balance.body);
        // The rejected ids were not used up: sent again with a good model they are recorded.
        let retry = app
            .post(
                &f.key,
                "/v1/usage",
                json!({ "events": [{ "id": "bad-model", "model": MODEL, "usage": ok }] }),
            )
            .await;
        assert_eq!(retry.body["data"][0]["status"], "created", "{}", retry.body);
        app.assert_invariants().await;
        app.stop().await;
    }
}

/// A request body is a JSON object: an array is not read positionally as the fields in
/// declaration order. (Serde's derived structs accept sequences, so without a guard
/// `["5.00", "paid", null, null]` is a grant of 5.00.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_array_is_not_a_request_body() {
    let mut failures = Vec::new();
    for database in databases().await {
        let app = spawn_app(database).await;
        let f = fixture(&app).await;
        let grants = format!("/v1/orgs/{}/grants", f.org);
        let cases: Vec<(As, &str, Value)> = vec![
            (As::Operator, grants.as_str(), json!([1])),
            (
                As::Operator,
                grants.as_str(),
                json!(["5.00", "paid", null, null]),
            ),
            (As::Operator, "/v1/orgs", json!(["Array Inc"])),
            (
                f.key.clone(),
                "/v1/holds",
                json!([null, "1.00", null, null, null, null]),
            ),
        ];
        for (who, path, body) in cases {
            let before = state(&app, &f.org).await;
            let reply = app
                .post_idempotent(
                    &who,
                    path,
                    &format!("arr-{}", rand::random::<u64>()),
                    body.clone(),
                )
                .await;
            let row = Row::new(&who, Method::POST, path, json_body(body.clone())).expect(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                None,
            );
            if let Some(mismatch) = refusal_mismatch(&reply, &row) {
                failures.push(format!("{}: POST {path} {body}: {mismatch}", app.backend));
            }
            if before != state(&app, &f.org).await {
                failures.push(format!(
                    "{}: POST {path} {body} changed the ledger",
                    app.backend
                ));
            }
        }
        app.assert_invariants().await;
        app.stop().await;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Refusals made before a handler runs (no route, wrong method, a path segment that is not
/// UTF-8) use the same error envelope as every other error, with a request id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_outside_the_handlers_use_the_envelope() {
    let mut failures = Vec::new();
    for database in databases().await {
        let app = spawn_app(database).await;
        let f = fixture(&app).await;
        let before = state(&app, &f.org).await;
        let op = As::Operator;
        // A path id that does not decode is a malformed id like any other.
        let exact = [
            Row::new(&op, Method::GET, "/v1/orgs/%FF/balance", Payload::None)
                .invalid("invalid_id", "org_id"),
            Row::new(&f.key, Method::POST, "/v1/holds/%FF/void", Payload::None)
                .invalid("invalid_id", "hold_id"),
            Row::new(&op, Method::DELETE, "/v1/keys/%C3%28", Payload::None)
                .invalid("invalid_id", "key_id"),
        ];
        for row in &exact {
            let reply = send(
                &app,
                &row.who,
                row.method.clone(),
                &row.path,
                &row.payload,
                &row.headers,
            )
            .await;
            if let Some(mismatch) = refusal_mismatch(&reply, row) {
                failures.push(format!("{}: {}: {mismatch}", app.backend, row.describe()));
            }
        }
        // No such route, or not with this method: the envelope, whatever its code.
        for (method, path, status, kind) in [
            (
                Method::GET,
                "/v1/nope",
                StatusCode::NOT_FOUND,
                "not_found_error",
            ),
            (
                Method::GET,
                "/v1/orgs/x/y/z",
                StatusCode::NOT_FOUND,
                "not_found_error",
            ),
            (
                Method::DELETE,
                "/v1/orgs",
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_request_error",
            ),
        ] {
            let reply = send(&app, &op, method.clone(), path, &Payload::None, &[]).await;
            let request_id = reply.body["request_id"].as_str().unwrap_or("");
            let ok = reply.status == status
                && reply.body["error"]["type"] == kind
                && !reply.code().is_empty()
                && request_id.starts_with("req_");
            if !ok {
                failures.push(format!(
                    "{}: {method} {path}: expected {status} with a {kind} envelope, got {} {:?} {}",
                    app.backend,
                    reply.status,
                    reply.headers.get("content-type"),
                    reply.body
                ));
            }
        }
        assert_eq!(before, state(&app, &f.org).await, "{}", app.backend);
        app.assert_invariants().await;
        app.stop().await;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
