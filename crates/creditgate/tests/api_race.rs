//! Races over HTTP, on both backends. An org with credits for exactly 100 holds gets 256
//! concurrent hold requests (by amount, and by model): exactly 100 are placed, the other 156
//! get the billing error (`request_exceeds_balance`: its posted balance, 1.00, is at its
//! cut-off level, so credits held by calls in flight turn nothing off), nothing is
//! overspent; settled to zero, the org is turned off once, and credits bring access back. Also: concurrent retries of one `Idempotency-Key` place one hold, and
//! concurrent settles and voids of one hold close it once.

mod api_support;

use std::collections::HashSet;
use std::sync::Arc;

use api_support::helpers::*;
use api_support::{databases, spawn_app, As, Reply, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Concurrent requests per race.
const RACERS: usize = 256;
/// Holds the credits cover.
const FITS: usize = 100;

/// One racing request: its path, JSON body and extra headers.
type Racer = (String, Value, Vec<(&'static str, String)>);

/// Sends every `(path, body, headers)` as `POST` at once (tasks on one shared client, released
/// together by a barrier) with the org's key `secret`; answers the replies in order.
async fn race_posts(app: &TestApp, secret: &str, requests: Vec<Racer>) -> Vec<Reply> {
    let barrier = Arc::new(tokio::sync::Barrier::new(requests.len()));
    let mut tasks = Vec::new();
    for (path, body, headers) in requests {
        let client = app.client.clone();
        let url = format!("{}{path}", app.base);
        let (secret, barrier) = (secret.to_owned(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            let mut request = client.post(url).header("x-api-key", secret).json(&body);
            for (name, value) in headers {
                request = request.header(name, value);
            }
            barrier.wait().await;
            let response = request.send().await.expect("the service answers");
            let status = response.status();
            let headers = response.headers().clone();
            let body: Value = response.json().await.expect("a JSON body");
            Reply {
                status,
                body,
                headers,
            }
        }));
    }
    let mut replies = Vec::new();
    for task in tasks {
        replies.push(task.await.expect("the racer ends"));
    }
    replies
}

/// Sends `RACERS` copies of `POST /v1/holds` with `body` at once with the org's key.
async fn race_holds(app: &TestApp, secret: &str, body: Value) -> Vec<Reply> {
    let requests = (0..RACERS)
        .map(|_| ("/v1/holds".to_owned(), body.clone(), Vec::new()))
        .collect();
    race_posts(app, secret, requests).await
}

/// Checks the race's outcome: exactly `FITS` holds of `amount` placed (distinct ids), every
/// other request refused with the billing envelope. Answers the placed holds' ids.
fn check_race(replies: &[Reply], org_id: &str, amount: &str, code: &str) -> Vec<String> {
    let mut placed = Vec::new();
    let mut refused = 0;
    for reply in replies {
        match reply.status {
            StatusCode::CREATED => {
                assert_eq!(reply.str("amount"), amount, "{}", reply.body);
                assert_eq!(reply.str("state"), "open", "{}", reply.body);
                assert_eq!(reply.str("org_id"), org_id, "{}", reply.body);
                placed.push(reply.str("id"));
            }
            StatusCode::PAYMENT_REQUIRED => {
                assert_billing_error(reply, code, org_id);
                refused += 1;
            }
            other => panic!("unexpected {other}: {}", reply.body),
        }
    }
    assert_eq!(placed.len(), FITS, "holds placed");
    assert_eq!(refused, RACERS - FITS, "holds refused");
    let distinct: HashSet<&String> = placed.iter().collect();
    assert_eq!(distinct.len(), FITS, "every placed hold has its own id");
    placed
}

/// Settles every hold at once, each with the body `settle_body(index)` gives.
async fn settle_all(
    app: &TestApp,
    secret: &str,
    holds: &[String],
    settle_body: fn(usize) -> Value,
) {
    let requests = holds
        .iter()
        .enumerate()
        .map(|(index, hold_id)| {
            (
                format!("/v1/holds/{hold_id}/settle"),
                settle_body(index),
                Vec::new(),
            )
        })
        .collect();
    for reply in race_posts(app, secret, requests).await {
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert_eq!(reply.body["hold"]["state"], "settled", "{}", reply.body);
    }
}

/// The depletion caused by the race, exactly once, and later a way out of it.
fn assert_depleted_once_then_restored(items: &[Value]) {
    let depletions: Vec<&Value> = items
        .iter()
        .filter(|t| t["to_state"] == "depleted" && t["cause"] == "balance")
        .collect();
    assert_eq!(depletions.len(), 1, "one depletion: {items:#?}");
    let depletion = depletions[0];
    assert_eq!(depletion["from_state"], "active", "{depletion}");
    assert_eq!(depletion["available"], "0.00", "{depletion}");
    let restored = items.iter().any(|t| {
        t["seq"].as_i64() > depletion["seq"].as_i64()
            && t["from_state"] == "depleted"
            && t["to_state"] == "active"
            && t["cause"] == "balance"
    });
    assert!(restored, "a later transition out of depleted: {items:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_holds_by_amount_place_exactly_what_the_credits_cover() {
    for database in databases().await {
        let app = spawn_app(database).await;
        let org = app.create_org("Racer").await;
        app.grant(&org, "1.00").await;
        let (_, secret) = app.create_key(&org).await;
        let key = As::Key(secret.clone());
        assert_eq!(app.balance(&org).await.str("access_state"), "active");

        let replies = race_holds(&app, &secret, json!({ "amount": "0.01" })).await;
        let holds = check_race(&replies, &org, "0.01", "request_exceeds_balance");
        assert_eq!(
            balance_view(&app, &org).await,
            bal("1.00", "1.00", "0.00", "0.00", "active"),
            "on {}",
            app.backend
        );
        // The next request is refused too, the smallest one included.
        assert_billing_error(
            &hold_amount(&app, &key, "0.01").await,
            "request_exceeds_balance",
            &org,
        );
        assert_billing_error(
            &hold_amount(&app, &key, "0.000001").await,
            "request_exceeds_balance",
            &org,
        );

        // Every hold settled for what it held: all credits used, still depleted.
        settle_all(&app, &secret, &holds, |_| json!({ "amount": "0.01" })).await;
        assert_eq!(
            balance_view(&app, &org).await,
            bal("0.00", "0.00", "0.00", "0.00", "depleted")
        );
        assert_billing_error(
            &hold_amount(&app, &key, "0.01").await,
            "credit_balance_exhausted",
            &org,
        );

        // Credits below the cut-off level (1.00) leave it off; at it, the very next hold is
        // placed.
        app.grant(&org, "0.50").await;
        assert_billing_error(
            &hold_amount(&app, &key, "0.01").await,
            "credit_balance_exhausted",
            &org,
        );
        app.grant(&org, "0.73").await;
        hold_ok(&app, &key, "0.01").await;
        assert_eq!(
            balance_view(&app, &org).await,
            bal("1.23", "0.01", "1.22", "0.00", "active")
        );

        let items = transitions(&app, &org).await;
        assert_depleted_once_then_restored(&items);
        assert_eq!(
            steps(&items),
            vec![
                step("depleted", 0, "depleted", 0, "created", "0.00"),
                step("depleted", 0, "active", 0, "balance", "1.00"),
                step("active", 0, "depleted", 0, "balance", "0.00"),
                step("depleted", 0, "active", 0, "balance", "1.23"),
            ],
            "on {}",
            app.backend
        );
        app.assert_invariants().await;
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_holds_by_model_place_exactly_what_the_credits_cover() {
    for database in databases().await {
        let app = spawn_app(database).await;
        let org = app.create_org("Model racer").await;
        // 1,000 + 1,000 tokens at 5.00 per million: 0.01 per hold, so 1.00 covers 100.
        app.set_price("race-model", "5.00", "5.00").await;
        app.grant(&org, "1.00").await;
        let (_, secret) = app.create_key(&org).await;
        let key = As::Key(secret.clone());

        let body =
            json!({ "model": "race-model", "max_input_tokens": 1000, "max_output_tokens": 1000 });
        let replies = race_holds(&app, &secret, body).await;
        let holds = check_race(&replies, &org, "0.01", "request_exceeds_balance");
        for reply in replies.iter().filter(|r| r.status == StatusCode::CREATED) {
            assert_eq!(reply.str("model"), "race-model", "{}", reply.body);
            assert!(
                reply.str("price_id").starts_with("price_"),
                "{}",
                reply.body
            );
        }
        assert_eq!(
            balance_view(&app, &org).await,
            bal("1.00", "1.00", "0.00", "0.00", "active"),
            "on {}",
            app.backend
        );
        assert_billing_error(
            &hold_model(&app, &key, "race-model", 1, 1).await,
            "request_exceeds_balance",
            &org,
        );

        // Half used their worst case (0.01), half less (200 + 300 tokens: 0.0025): the
        // released credits serve the next calls.
        settle_all(&app, &secret, &holds, |index| {
            if index % 2 == 0 {
                json!({ "usage": { "input_tokens": 1000, "output_tokens": 1000 } })
            } else {
                json!({ "usage": { "input_tokens": 200, "output_tokens": 300 } })
            }
        })
        .await;
        assert_eq!(
            balance_view(&app, &org).await,
            bal("0.375", "0.00", "0.375", "0.00", "active")
        );

        // More credits; the very next hold is placed.
        app.grant(&org, "1.00").await;
        let next = hold_model(&app, &key, "race-model", 1000, 1000).await;
        assert_eq!(next.status, StatusCode::CREATED, "{}", next.body);
        assert_eq!(
            balance_view(&app, &org).await,
            bal("1.375", "0.01", "1.365", "0.00", "active")
        );

        // Nothing was turned off: every refusal was of credits held by calls in flight.
        assert_eq!(
            steps(&transitions(&app, &org).await),
            vec![
                step("depleted", 0, "depleted", 0, "created", "0.00"),
                step("depleted", 0, "active", 0, "balance", "1.00"),
            ],
            "on {}",
            app.backend
        );
        app.assert_invariants().await;
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_retries_of_one_idempotency_key_place_one_hold() {
    for database in databases().await {
        let app = spawn_app(database).await;
        let org = app.create_org("Retrier").await;
        app.grant(&org, "1.00").await;
        let (_, secret) = app.create_key(&org).await;

        let requests = (0..64)
            .map(|_| {
                (
                    "/v1/holds".to_owned(),
                    json!({ "amount": "0.30" }),
                    vec![("Idempotency-Key", "retry-1".to_owned())],
                )
            })
            .collect();
        let replies = race_posts(&app, &secret, requests).await;
        let mut ids = HashSet::new();
        for reply in &replies {
            match reply.status {
                StatusCode::CREATED => {
                    assert_eq!(reply.str("amount"), "0.30", "{}", reply.body);
                    ids.insert(reply.str("id"));
                }
                // A retry racing the first request may be told so; it changes nothing.
                StatusCode::CONFLICT => {}
                other => panic!("unexpected {other}: {}", reply.body),
            }
        }
        assert_eq!(ids.len(), 1, "one hold for one key: {ids:?}");
        assert_eq!(
            balance_view(&app, &org).await,
            bal("1.00", "0.30", "0.70", "0.00", "active"),
            "on {}",
            app.backend
        );
        // A later retry replays the same hold.
        let replay = app
            .post_idempotent(
                &As::Key(secret.clone()),
                "/v1/holds",
                "retry-1",
                json!({ "amount": "0.30" }),
            )
            .await;
        assert_eq!(replay.status, StatusCode::CREATED, "{}", replay.body);
        assert!(ids.contains(&replay.str("id")), "{}", replay.body);
        app.assert_invariants().await;
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_settles_and_voids_of_one_hold_close_it_once() {
    for database in databases().await {
        let app = spawn_app(database).await;
        let org = app.create_org("Closer").await;
        app.grant(&org, "2.00").await;
        let (_, secret) = app.create_key(&org).await;
        let key = As::Key(secret.clone());

        // The same settlement 32 times at once: charged once.
        let hold = hold_ok(&app, &key, "1.00").await;
        let requests = (0..32)
            .map(|_| {
                (
                    format!("/v1/holds/{hold}/settle"),
                    json!({ "amount": "0.40" }),
                    Vec::new(),
                )
            })
            .collect();
        let mut transfers = HashSet::new();
        for reply in race_posts(&app, &secret, requests).await {
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
            assert_eq!(
                reply.body["hold"]["settled_amount"], "0.40",
                "{}",
                reply.body
            );
            transfers.insert(
                reply.body["transfer"]["id"]
                    .as_str()
                    .expect("transfer")
                    .to_owned(),
            );
        }
        assert_eq!(transfers.len(), 1, "one charge: {transfers:?}");
        assert_eq!(
            balance_view(&app, &org).await,
            bal("1.60", "0.00", "1.60", "0.00", "active"),
            "on {}",
            app.backend
        );

        // Settles and voids of one hold at once: one kind wins, the rest are refused.
        let hold = hold_ok(&app, &key, "1.00").await;
        let requests = (0..32)
            .map(|i| {
                let action = if i % 2 == 0 { "settle" } else { "void" };
                let body = if i % 2 == 0 {
                    json!({ "amount": "0.25" })
                } else {
                    json!({})
                };
                (format!("/v1/holds/{hold}/{action}"), body, Vec::new())
            })
            .collect();
        let replies = race_posts(&app, &secret, requests).await;
        let mut outcomes = HashSet::new();
        for reply in &replies {
            match reply.status {
                StatusCode::OK => {
                    outcomes.insert(
                        reply.body["hold"]["state"]
                            .as_str()
                            .expect("state")
                            .to_owned(),
                    );
                }
                StatusCode::CONFLICT => {
                    assert_eq!(reply.code(), "hold_already_closed", "{}", reply.body)
                }
                other => panic!("unexpected {other}: {}", reply.body),
            }
        }
        assert_eq!(outcomes.len(), 1, "one way of closing: {outcomes:?}");
        let posted = if outcomes.contains("settled") {
            "1.35"
        } else {
            "1.60"
        };
        assert_eq!(
            balance_view(&app, &org).await,
            bal(posted, "0.00", posted, "0.00", "active"),
            "on {}",
            app.backend
        );
        let closed = app.get(&key, &format!("/v1/holds/{hold}")).await;
        assert!(outcomes.contains(&closed.str("state")), "{}", closed.body);
        app.assert_invariants().await;
        app.stop().await;
    }
}
