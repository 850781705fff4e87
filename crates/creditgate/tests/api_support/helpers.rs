//! Helpers shared by the API tests beyond the basics of `api_support` (which they do
//! not change): orgs with settings, PATCH, holds, usage, access transitions, and the checks
//! of the billing error envelope.

// Each test file compiles this module on its own and uses only part of it.
#![allow(dead_code)]

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::{As, Reply, TestApp};

/// Creates an org (operator) with extra fields (`low_thresholds`, `floor`,
/// `spend_limit_monthly`) and answers its body.
pub async fn create_org_with(app: &TestApp, name: &str, extra: Value) -> Value {
    let mut body = json!({ "name": name, "billing_emails": ["billing@example.com"] });
    for (field, value) in extra.as_object().expect("extra is an object") {
        body[field] = value.clone();
    }
    let reply = app.post(&As::Operator, "/v1/orgs", body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.body
}

/// `PATCH /v1/orgs/{org_id}` as the operator; answers the reply (not checked).
pub async fn patch_org(app: &TestApp, org_id: &str, body: Value) -> Reply {
    app.request(
        &As::Operator,
        Method::PATCH,
        &format!("/v1/orgs/{org_id}"),
        Some(body),
        &[],
    )
    .await
}

/// Creates a key with a body of our choosing (operator); answers (key id, secret).
pub async fn create_key_with(app: &TestApp, org_id: &str, body: Value) -> (String, String) {
    let reply = app
        .post(&As::Operator, &format!("/v1/orgs/{org_id}/keys"), body)
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    (reply.str("id"), reply.str("secret"))
}

/// `POST /v1/holds` of `amount` as `who`.
pub async fn hold_amount(app: &TestApp, who: &As, amount: &str) -> Reply {
    app.post(who, "/v1/holds", json!({ "amount": amount }))
        .await
}

/// `POST /v1/holds` by model as `who`.
pub async fn hold_model(app: &TestApp, who: &As, model: &str, input: u64, output: u64) -> Reply {
    app.post(
        who,
        "/v1/holds",
        json!({ "model": model, "max_input_tokens": input, "max_output_tokens": output }),
    )
    .await
}

/// Places a hold that must succeed; answers its id.
pub async fn hold_ok(app: &TestApp, who: &As, amount: &str) -> String {
    let reply = hold_amount(app, who, amount).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(reply.str("amount"), amount, "{}", reply.body);
    assert_eq!(reply.str("state"), "open", "{}", reply.body);
    reply.str("id")
}

/// Settles a hold for `amount`; must succeed. Answers the reply.
pub async fn settle_amount(app: &TestApp, who: &As, hold_id: &str, amount: &str) -> Reply {
    let reply = app
        .post(
            who,
            &format!("/v1/holds/{hold_id}/settle"),
            json!({ "amount": amount }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["hold"]["state"], "settled", "{}", reply.body);
    reply
}

/// Records one usage event as `who`; answers its per-event result.
pub async fn usage_event(
    app: &TestApp,
    who: &As,
    id: &str,
    model: &str,
    input_tokens: u64,
    output_tokens: u64,
) -> Value {
    let reply = app
        .post(
            who,
            "/v1/usage",
            json!({ "events": [{ "id": id, "model": model,
                "usage": { "input_tokens": input_tokens, "output_tokens": output_tokens } }] }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let data = reply.body["data"].as_array().expect("data");
    assert_eq!(data.len(), 1, "{}", reply.body);
    data[0].clone()
}

/// The org's access transitions, oldest first (all of them: at most 100 in these tests).
pub async fn transitions(app: &TestApp, org_id: &str) -> Vec<Value> {
    let reply = app
        .get(
            &As::Operator,
            &format!("/v1/orgs/{org_id}/access_transitions?limit=100"),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["has_more"], false, "{}", reply.body);
    let items = reply.body["data"].as_array().expect("data").clone();
    let seqs: Vec<i64> = items
        .iter()
        .map(|t| t["seq"].as_i64().expect("seq"))
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "transitions oldest first: {seqs:?}"
    );
    items
}

/// A transition as (from_state, from_level, to_state, to_level, cause, available).
pub type Step = (String, u64, String, u64, String, String);

/// The transitions in the comparable form of [`Step`].
pub fn steps(items: &[Value]) -> Vec<Step> {
    items
        .iter()
        .map(|t| {
            (
                t["from_state"].as_str().expect("from_state").to_owned(),
                t["from_level"].as_u64().expect("from_level"),
                t["to_state"].as_str().expect("to_state").to_owned(),
                t["to_level"].as_u64().expect("to_level"),
                t["cause"].as_str().expect("cause").to_owned(),
                t["available"].as_str().expect("available").to_owned(),
            )
        })
        .collect()
}

/// A [`Step`] from literals.
pub fn step(
    from: &str,
    from_level: u64,
    to: &str,
    to_level: u64,
    cause: &str,
    available: &str,
) -> Step {
    (
        from.to_owned(),
        from_level,
        to.to_owned(),
        to_level,
        cause.to_owned(),
        available.to_owned(),
    )
}

/// Checks a 402 billing error with `code`: the documented envelope, a billing URL naming the
/// org, and the request id in the body and the header.
pub fn assert_billing_error(reply: &Reply, code: &str, org_id: &str) {
    assert_eq!(reply.status, StatusCode::PAYMENT_REQUIRED, "{}", reply.body);
    let error = &reply.body["error"];
    assert_eq!(error["type"], "billing_error", "{}", reply.body);
    assert_eq!(error["code"], code, "{}", reply.body);
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        reply.body
    );
    let billing_url = error["billing_url"].as_str().unwrap_or("");
    assert!(
        billing_url.starts_with("http") && billing_url.contains(org_id),
        "billing_url naming {org_id}: {}",
        reply.body
    );
    let request_id = reply.body["request_id"].as_str().unwrap_or("");
    assert!(request_id.starts_with("req_"), "{}", reply.body);
    assert_eq!(
        reply
            .headers
            .get("request-id")
            .and_then(|v| v.to_str().ok()),
        Some(request_id),
        "the request-id header matches the body"
    );
}

/// The balance as (posted, reserved, available, overspend, access_state).
pub async fn balance_view(app: &TestApp, org_id: &str) -> (String, String, String, String, String) {
    let b = app.balance(org_id).await;
    (
        b.str("posted"),
        b.str("reserved"),
        b.str("available"),
        b.str("overspend"),
        b.str("access_state"),
    )
}

/// `(posted, reserved, available, overspend, access_state)` from literals.
pub fn bal(
    posted: &str,
    reserved: &str,
    available: &str,
    overspend: &str,
    state: &str,
) -> (String, String, String, String, String) {
    (
        posted.to_owned(),
        reserved.to_owned(),
        available.to_owned(),
        overspend.to_owned(),
        state.to_owned(),
    )
}

/// The longest wait for a worker or a webhook (localstripe waits 1 s before it sends).
pub const WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(15);

/// Polls `check` until it answers `Some`, at most [`WAIT_MAX`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = std::time::Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(started.elapsed() < WAIT_MAX, "timed out waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The org's available balance.
pub async fn available(app: &TestApp, org: &str) -> String {
    app.balance(org).await.str("available")
}

/// Takes `amount` from the org (an operator adjustment, standing in for usage).
pub async fn spend(app: &TestApp, org: &str, amount: &str) {
    let reply = app
        .post_idempotent(
            &As::Operator,
            &format!("/v1/orgs/{org}/adjustments"),
            &format!("spend-{}", rand::random::<u64>()),
            json!({"amount": format!("-{amount}"), "reason": "usage stand-in"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
}
