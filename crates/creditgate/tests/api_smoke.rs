//! The story in one test per backend: org, price, credits, key, hold, settle, usage, balance.

mod api_support;

use api_support::{databases, spawn_app, As};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_settle_and_usage_move_the_balance() {
    for database in databases().await {
        let app = spawn_app(database).await;
        let org = app.create_org("Acme").await;
        app.set_price("model-a", "3.00", "15.00").await;
        app.grant(&org, "10.00").await;
        let (_, secret) = app.create_key(&org).await;
        let key = As::Key(secret);
        let hold = app
            .post(
                &key,
                "/v1/holds",
                json!({ "model": "model-a", "max_input_tokens": 1000, "max_output_tokens": 1000 }),
            )
            .await;
        assert_eq!(hold.status, StatusCode::CREATED, "{}", hold.body);
        assert_eq!(hold.str("amount"), "0.018");
        let balance = app.balance(&org).await;
        assert_eq!(
            (balance.str("reserved"), balance.str("available")),
            ("0.018".into(), "9.982".into())
        );
        let settled = app
            .post(
                &key,
                &format!("/v1/holds/{}/settle", hold.str("id")),
                json!({ "usage": { "input_tokens": 100, "output_tokens": 200 } }),
            )
            .await;
        assert_eq!(settled.status, StatusCode::OK, "{}", settled.body);
        assert_eq!(settled.body["transfer"]["amount"], "0.0033");
        let usage = app.post(&key, "/v1/usage", json!({ "events": [{ "id": "e1", "model": "model-a", "usage": { "input_tokens": 1_000_000, "output_tokens": 0 } }] })).await;
        assert_eq!(usage.body["data"][0]["status"], "created", "{}", usage.body);
        let balance = app.balance(&org).await;
        assert_eq!(
            (
                balance.str("posted"),
                balance.str("reserved"),
                balance.str("access_state")
            ),
            ("6.9967".into(), "0.00".into(), "active".into())
        );
        app.assert_invariants().await;
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_holds_and_batches() {
    let app = spawn_app(creditgate_store::testing::sqlite()).await;
    let org = app.create_org("Metrics").await;
    // Below the cut-off level (1.00), so the refusal below turns access off.
    app.grant(&org, "0.90").await;
    let (_, secret) = app.create_key(&org).await;
    let key = As::Key(secret);
    assert_eq!(
        app.post(&key, "/v1/holds", json!({ "amount": "0.60" }))
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(
        app.post(&key, "/v1/holds", json!({ "amount": "0.60" }))
            .await
            .status,
        StatusCode::PAYMENT_REQUIRED
    );
    let reply = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
    let text = reply.text().await.unwrap();
    for needle in [
        "creditgate_http_requests_total{route=\"/v1/holds\",method=\"POST\",status=\"201\"}",
        "creditgate_http_request_duration_seconds_bucket{route=\"/v1/holds\",method=\"POST\",le=",
        "creditgate_holds_placed_total",
        "creditgate_holds_refused_total{code=\"credit_balance_exhausted\"}",
        "creditgate_ledger_batch_operations_bucket{le=\"1\"}",
        "creditgate_ledger_commit_seconds_count",
    ] {
        assert!(
            text.contains(needle),
            "{needle} missing from /metrics:\n{text}"
        );
    }
    let health = app.get(&As::Nobody, "/healthz").await;
    assert_eq!(
        (health.status, health.body["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    let ready = app.get(&As::Nobody, "/readyz").await;
    assert_eq!(ready.status, StatusCode::OK);
    app.assert_invariants().await;
    app.stop().await;
}
