//! The cut-off as calls live it, over HTTP on both backends: a call refused for lack of
//! credits below the cut-off level turns access off (recorded with the refused amount and
//! request id) and refuses every later call; one oversized call above it is refused alone;
//! credits below the level leave access off, credits at it turn it back on with one notice;
//! holds settled for less never send a second "low"; a new org whose floor is lowered is
//! never told "back on"; the first spend-limit refusal of a month tells the org once. The
//! balance API, the 402 and the recorded transitions agree at every step. Each test ends
//! with the ledger invariants.

mod api_support;

use api_support::helpers::*;
use api_support::{databases, spawn_app, As, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// The org's notices' kinds, oldest first, receipts left out.
async fn notice_kinds(app: &TestApp, org_id: &str) -> Vec<String> {
    let reply = app
        .get(
            &As::Operator,
            &format!("/v1/notices?org_id={org_id}&limit=100"),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let mut items: Vec<Value> = reply.body["data"].as_array().expect("data").clone();
    items.sort_by_key(|n| {
        (
            n["created_at"].as_i64(),
            n["id"].as_str().map(str::to_owned),
        )
    });
    items
        .iter()
        .map(|n| n["kind"].as_str().unwrap_or("").to_owned())
        .filter(|kind| kind != "credits.added")
        .collect()
}

/// (access_state, calls_refused) from the balance API.
async fn refusing(app: &TestApp, org_id: &str) -> (String, Value) {
    let balance = app.balance(org_id).await;
    (
        balance.str("access_state"),
        balance.body["calls_refused"].clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_below_the_cutoff_turns_access_off_until_credits_reach_it() {
    for database in databases().await {
        let app = spawn_app(database).await;
        app.set_price("cut-model", "3.00", "15.00").await;
        let org = create_org_with(
            &app,
            "Cutoff",
            json!({ "low_thresholds": ["2.50"], "billing_emails": ["ops@cutoff.test"] }),
        )
        .await;
        let org = org["id"].as_str().expect("id").to_owned();
        app.grant(&org, "3.471901").await;
        let (_, secret) = app.create_key(&org).await;
        let key = As::Key(secret);

        // Above the cut-off level (2.50): one oversized call is refused alone, naming its
        // worst case and what is available, and turns nothing off.
        let oversized = hold_amount(&app, &key, "4.20").await;
        assert_billing_error(&oversized, "request_exceeds_balance", &org);
        let message = oversized.body["error"]["message"].as_str().unwrap_or("");
        assert!(
            message.contains("4.20") && message.contains("3.471901"),
            "{message}"
        );
        assert_eq!(refusing(&app, &org).await, ("active".into(), Value::Null));

        // Usage takes posted below the threshold: "low", still on.
        let used = usage_event(&app, &key, "u1", "cut-model", 91_337, 48_113).await;
        assert_eq!(used["status"], "created", "{used}");
        assert_eq!(refusing(&app, &org).await, ("low".into(), Value::Null));

        // Now a refusal turns access off, in the batch that refused the call.
        let refused = hold_amount(&app, &key, "2.75").await;
        assert_billing_error(&refused, "credit_balance_exhausted", &org);
        assert_eq!(
            refusing(&app, &org).await,
            ("depleted".into(), json!("credit_balance_exhausted"))
        );
        let items = transitions(&app, &org).await;
        let last = items.last().expect("a transition");
        assert_eq!(
            (&last["to_state"], &last["cause"], &last["refused_amount"]),
            (&json!("depleted"), &json!("refused"), &json!("2.75")),
            "{last}"
        );
        assert_eq!(
            last["refused_request_id"], refused.body["request_id"],
            "the transition names the refused request: {last}"
        );
        // Every later call is refused, even one the credits would cover.
        assert_billing_error(
            &hold_amount(&app, &key, "0.013").await,
            "credit_balance_exhausted",
            &org,
        );

        // Credits below the cut-off level leave it off; at it, access is back.
        app.grant(&org, "0.01").await;
        assert_eq!(refusing(&app, &org).await.0, "depleted");
        assert_billing_error(
            &hold_amount(&app, &key, "0.013").await,
            "credit_balance_exhausted",
            &org,
        );
        app.grant(&org, "0.17").await;
        assert_eq!(refusing(&app, &org).await, ("active".into(), Value::Null));
        hold_ok(&app, &key, "0.013").await;

        assert_eq!(
            notice_kinds(&app, &org).await,
            ["balance.low", "access.turned_off", "access.restored"],
            "on {}",
            app.backend
        );
        app.assert_invariants().await;
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_settled_for_less_near_a_threshold_send_one_low_notice() {
    for database in databases().await {
        let app = spawn_app(database).await;
        let org = create_org_with(&app, "Near", json!({ "low_thresholds": ["5.00"] })).await;
        let org = org["id"].as_str().expect("id").to_owned();
        app.grant(&org, "5.23").await;
        let (_, secret) = app.create_key(&org).await;
        let key = As::Key(secret);
        // Each call holds 1.10 (available dips below 5.00) and settles for a few cents.
        for settle in ["0.031", "0.047", "0.029", "0.052"] {
            let hold = hold_ok(&app, &key, "1.10").await;
            settle_amount(&app, &key, &hold, settle).await;
        }
        assert_eq!(app.balance(&org).await.str("posted"), "5.071");
        assert!(notice_kinds(&app, &org).await.is_empty());
        // Posted crosses 5.00 once: one "low"; more calls near it add none.
        for settle in ["0.083", "0.019", "0.044", "0.007", "0.061"] {
            let hold = hold_ok(&app, &key, "1.10").await;
            settle_amount(&app, &key, &hold, settle).await;
        }
        assert_eq!(app.balance(&org).await.str("access_state"), "low");
        assert_eq!(
            notice_kinds(&app, &org).await,
            ["balance.low"],
            "on {}",
            app.backend
        );
        app.assert_invariants().await;
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_org_whose_floor_is_lowered_is_not_told_it_is_back_on() {
    for database in databases().await {
        let app = spawn_app(database).await;
        let org = app.create_org("Fresh").await;
        assert_eq!(app.balance(&org).await.str("access_state"), "depleted");
        let patched = patch_org(&app, &org, json!({ "floor": "-5.00" })).await;
        assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
        assert_eq!(patched.body["access_state"], "active", "{}", patched.body);
        assert!(
            notice_kinds(&app, &org).await.is_empty(),
            "never turned off, so never told it is back on"
        );
        app.assert_invariants().await;
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_spend_limit_refusal_of_a_month_tells_the_org_once() {
    for database in databases().await {
        let app = spawn_app(database).await;
        let org = create_org_with(
            &app,
            "Capped",
            json!({ "spend_limit_monthly": "1.25", "billing_emails": ["cap@capped.test"] }),
        )
        .await;
        let org = org["id"].as_str().expect("id").to_owned();
        app.grant(&org, "20.00").await;
        let (_, secret) = app.create_key(&org).await;
        let key = As::Key(secret);
        let first = hold_ok(&app, &key, "0.71").await;
        settle_amount(&app, &key, &first, "0.64").await;
        for _ in 0..3 {
            let refused = hold_amount(&app, &key, "0.62").await;
            assert_billing_error(&refused, "spend_limit_reached", &org);
            let message = refused.body["error"]["message"].as_str().unwrap_or("");
            assert!(
                message.contains("1.25") && message.contains("resets on"),
                "{message}"
            );
        }
        // Not used up yet (0.64 of 1.25): calls are still accepted.
        assert_eq!(refusing(&app, &org).await, ("active".into(), Value::Null));
        hold_ok(&app, &key, "0.61").await;
        let balance = app.balance(&org).await;
        assert_eq!(
            balance.body["calls_refused"], "spend_limit_reached",
            "{}",
            balance.body
        );
        assert!(
            balance.body["spend_limit_resets_at"].as_i64().is_some(),
            "{}",
            balance.body
        );
        assert_eq!(
            notice_kinds(&app, &org).await,
            ["spend_limit.reached"],
            "one notice for the month, on {}",
            app.backend
        );
        app.assert_invariants().await;
        app.stop().await;
    }
}
