//! Access over HTTP, on both backends: low-balance levels, suspension, key revocation, spend
//! limits, price versions on holds, hold expiry, the overdraft floor (granted and taken
//! back), operator settings, transfer pages and usage overspend. Each test checks the
//! recorded access transitions where access moves, and ends with the ledger invariants.

mod api_support;

use std::collections::HashSet;
use std::time::Duration;

use api_support::helpers::*;
use api_support::{databases, spawn_app, spawn_app_with, As, Setup};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_balance_thresholds_are_crossed_one_level_at_a_time() {
    for database in databases().await {
        let app = spawn_app(database).await;
        // 1.00 per million tokens: a million input tokens cost 1.00.
        app.set_price("tier-model", "1.00", "1.00").await;
        let org = create_org_with(&app, "Tiers", json!({ "low_thresholds": ["5", "1"] })).await;
        assert_eq!(org["low_thresholds"], json!(["5.00", "1.00"]), "{org}");
        assert_eq!(org["access_state"], "depleted", "{org}");
        let org = org["id"].as_str().expect("id").to_owned();
        let (_, secret) = app.create_key(&org).await;
        let key = As::Key(secret);
        let state = |b: (String, String, String, String, String)| (b.2, b.4);

        app.grant(&org, "10").await;
        assert_eq!(
            state(balance_view(&app, &org).await),
            ("10.00".into(), "active".into())
        );
        let used = usage_event(&app, &key, "t1", "tier-model", 6_000_000, 0).await;
        assert_eq!(
            (&used["status"], &used["amount"]),
            (&json!("created"), &json!("6.00"))
        );
        assert_eq!(
            state(balance_view(&app, &org).await),
            ("4.00".into(), "low".into())
        );
        // Still below 5 and above 1: no new crossing.
        usage_event(&app, &key, "t2", "tier-model", 500_000, 0).await;
        usage_event(&app, &key, "t3", "tier-model", 3_000_000, 0).await;
        assert_eq!(
            state(balance_view(&app, &org).await),
            ("0.50".into(), "low".into())
        );
        usage_event(&app, &key, "t4", "tier-model", 500_000, 0).await;
        assert_eq!(
            state(balance_view(&app, &org).await),
            ("0.00".into(), "depleted".into())
        );
        assert_billing_error(
            &hold_amount(&app, &key, "0.01").await,
            "credit_balance_exhausted",
            &org,
        );
        app.grant(&org, "6.00").await;
        assert_eq!(
            state(balance_view(&app, &org).await),
            ("6.00".into(), "active".into())
        );
        // Thresholds read the posted balance: a hold moves the available balance only, so
        // placing and voiding one crosses nothing (no "low" and back for a call in flight).
        let hold = hold_ok(&app, &key, "2.00").await;
        assert_eq!(
            state(balance_view(&app, &org).await),
            ("4.00".into(), "active".into())
        );
        let voided = app
            .post(&key, &format!("/v1/holds/{hold}/void"), json!({}))
            .await;
        assert_eq!(voided.status, StatusCode::OK, "{}", voided.body);
        assert_eq!(
            state(balance_view(&app, &org).await),
            ("6.00".into(), "active".into())
        );

        assert_eq!(
            steps(&transitions(&app, &org).await),
            vec![
                step("depleted", 0, "depleted", 2, "created", "0.00"),
                step("depleted", 2, "active", 0, "balance", "10.00"),
                step("active", 0, "low", 1, "balance", "4.00"),
                step("low", 1, "low", 2, "balance", "0.50"),
                step("low", 2, "depleted", 2, "balance", "0.00"),
                step("depleted", 2, "active", 0, "balance", "6.00"),
            ],
            "on {}",
            app.backend
        );
        app.assert_invariants().await;
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_org_is_refused_holds_but_its_usage_is_recorded() {
    let setup = Setup::default()
        .price("sus-model", "1.00", "1.00")
        .org("Suspended")
        .grant("10.00");
    setup
        .run(async |s| {
            let (app, org, key) = (&s.app, &s.org, &s.key);
            let open = hold_ok(app, key, "1.00").await;

            let patched = patch_org(app, org, json!({ "suspended": true })).await;
            assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
            assert_eq!(patched.body["suspended"], true, "{}", patched.body);
            assert_eq!(
                patched.body["access_state"], "suspended",
                "{}",
                patched.body
            );
            assert_eq!(app.balance(org).await.str("access_state"), "suspended");

            assert_billing_error(&hold_amount(app, key, "0.01").await, "org_suspended", org);
            let by_operator = app
                .post(
                    &As::Operator,
                    "/v1/holds",
                    json!({ "org_id": org, "amount": "0.01" }),
                )
                .await;
            assert_billing_error(&by_operator, "org_suspended", org);

            // Usage that happened is recorded, never dropped; so is a hold's settlement.
            let used = usage_event(app, key, "s1", "sus-model", 1_000_000, 0).await;
            assert_eq!(
                (&used["status"], &used["amount"]),
                (&json!("created"), &json!("1.00")),
                "{used}"
            );
            let again = usage_event(app, key, "s1", "sus-model", 1_000_000, 0).await;
            assert_eq!(again["status"], "exists", "{again}");
            settle_amount(app, key, &open, "0.50").await;
            assert_eq!(
                balance_view(app, org).await,
                bal("8.50", "0.00", "8.50", "0.00", "suspended")
            );

            let patched = patch_org(app, org, json!({ "suspended": false })).await;
            assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
            assert_eq!(patched.body["access_state"], "active", "{}", patched.body);
            hold_ok(app, key, "1.00").await;
            assert_eq!(
                balance_view(app, org).await,
                bal("8.50", "1.00", "7.50", "0.00", "active")
            );

            assert_eq!(
                steps(&transitions(app, org).await),
                vec![
                    step("depleted", 0, "depleted", 0, "created", "0.00"),
                    step("depleted", 0, "active", 0, "balance", "10.00"),
                    step("active", 0, "suspended", 0, "suspended", "9.00"),
                    step("suspended", 0, "active", 0, "unsuspended", "8.50"),
                ],
                "on {}",
                app.backend
            );
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_is_refused_from_the_next_request() {
    let setup = Setup::default().org("Revoker").grant("1.00");
    setup
        .run(async |s| {
            let (app, org) = (&s.app, &s.org);
            let (revoked_id, revoked) = (s.key_id.clone(), s.secret.clone());
            let (_, kept) = app.create_key(org).await;
            let balance_path = format!("/v1/orgs/{org}/balance");
            let before = app.get(&As::Key(revoked.clone()), &balance_path).await;
            assert_eq!(before.status, StatusCode::OK, "{}", before.body);
            hold_ok(app, &As::Key(revoked.clone()), "0.10").await;

            let deleted = app
                .request(
                    &As::Operator,
                    Method::DELETE,
                    &format!("/v1/keys/{revoked_id}"),
                    None,
                    &[],
                )
                .await;
            assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.body);
            assert_eq!(deleted.str("id"), revoked_id);
            assert!(deleted.body["revoked_at"].is_i64(), "{}", deleted.body);

            for who in [As::Key(revoked.clone()), As::Bearer(revoked.clone())] {
                let refused = app.get(&who, &balance_path).await;
                assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.body);
                assert_eq!(refused.body["error"]["type"], "authentication_error");
                assert_eq!(refused.code(), "invalid_api_key");
                assert!(refused.body["request_id"].is_string(), "{}", refused.body);
            }
            let refused = hold_amount(app, &As::Key(revoked.clone()), "0.10").await;
            assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.body);
            // The org's other key still works.
            let other = app.get(&As::Key(kept.clone()), &balance_path).await;
            assert_eq!(other.status, StatusCode::OK, "{}", other.body);
            hold_ok(app, &As::Key(kept), "0.10").await;
            assert_eq!(
                balance_view(app, org).await,
                bal("1.00", "0.20", "0.80", "0.00", "active")
            );
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monthly_spend_limits_of_the_org_and_of_a_key_refuse_holds() {
    for database in databases().await {
        let app = spawn_app(database).await;
        app.set_price("cap-model", "1.00", "1.00").await;

        // The org's cap: charged + held + the new hold may reach 1.00, not pass it.
        let capped =
            create_org_with(&app, "Capped", json!({ "spend_limit_monthly": "1.00" })).await;
        assert_eq!(capped["spend_limit_monthly"], "1.00", "{capped}");
        let capped = capped["id"].as_str().expect("id").to_owned();
        app.grant(&capped, "10.00").await;
        let (_, secret) = app.create_key(&capped).await;
        let key = As::Key(secret);
        let first = hold_ok(&app, &key, "0.40").await;
        hold_ok(&app, &key, "0.40").await;
        assert_billing_error(
            &hold_amount(&app, &key, "0.40").await,
            "spend_limit_reached",
            &capped,
        );
        hold_ok(&app, &key, "0.20").await;
        assert_billing_error(
            &hold_amount(&app, &key, "0.000001").await,
            "spend_limit_reached",
            &capped,
        );
        // The operator placing a hold for the org meets the same cap.
        let by_operator = app
            .post(
                &As::Operator,
                "/v1/holds",
                json!({ "org_id": capped, "amount": "0.01" }),
            )
            .await;
        assert_billing_error(&by_operator, "spend_limit_reached", &capped);
        // A hold settled for less frees the difference; what it charged still counts.
        settle_amount(&app, &key, &first, "0.10").await;
        hold_ok(&app, &key, "0.30").await;
        assert_billing_error(
            &hold_amount(&app, &key, "0.01").await,
            "spend_limit_reached",
            &capped,
        );
        // Credits were never the limit.
        assert_eq!(
            balance_view(&app, &capped).await,
            bal("9.90", "0.90", "9.00", "0.00", "active")
        );

        // A key's cap: that key is refused past 0.50, the org's other key is not.
        let org = app.create_org("Key caps").await;
        app.grant(&org, "10.00").await;
        let (limited_id, limited) = create_key_with(
            &app,
            &org,
            json!({ "name": "limited", "spend_limit_monthly": "0.50" }),
        )
        .await;
        let (_, free) = app.create_key(&org).await;
        let (limited, free) = (As::Key(limited), As::Key(free));
        hold_ok(&app, &limited, "0.30").await;
        let refused = hold_amount(&app, &limited, "0.30").await;
        assert_billing_error(&refused, "spend_limit_reached", &org);
        let small = hold_ok(&app, &limited, "0.20").await;
        assert_billing_error(
            &hold_amount(&app, &limited, "0.01").await,
            "spend_limit_reached",
            &org,
        );
        for _ in 0..3 {
            hold_ok(&app, &free, "0.30").await;
        }
        // Usage recorded with the limited key counts against its cap.
        let voided = app
            .post(&limited, &format!("/v1/holds/{small}/void"), json!({}))
            .await;
        assert_eq!(voided.status, StatusCode::OK, "{}", voided.body);
        let used = usage_event(&app, &limited, "k1", "cap-model", 100_000, 0).await;
        assert_eq!(used["amount"], "0.10", "{used}");
        hold_ok(&app, &limited, "0.10").await;
        assert_billing_error(
            &hold_amount(&app, &limited, "0.01").await,
            "spend_limit_reached",
            &org,
        );
        hold_ok(&app, &free, "0.30").await;
        let keys = app
            .get(&As::Operator, &format!("/v1/orgs/{org}/keys"))
            .await;
        let listed = keys.body["data"]
            .as_array()
            .expect("data")
            .iter()
            .find(|k| k["id"] == limited_id.as_str())
            .cloned()
            .expect("the limited key is listed");
        assert_eq!(listed["spend_limit_monthly"], "0.50", "{listed}");
        assert_eq!(
            balance_view(&app, &org).await,
            bal("9.90", "1.60", "8.30", "0.00", "active")
        );
        app.assert_invariants().await;
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_settles_at_the_price_version_it_was_placed_under() {
    for database in databases().await {
        let app = spawn_app(database).await;
        let v1 = app.set_price("pv-model", "1.00", "2.00").await.str("id");
        let org = app.create_org("Versions").await;
        app.grant(&org, "10.00").await;
        let (_, secret) = app.create_key(&org).await;
        let key = As::Key(secret);

        // 1,000 in at 1.00 + 1,000 out at 2.00 per million.
        let old = hold_model(&app, &key, "pv-model", 1000, 1000).await;
        assert_eq!(old.status, StatusCode::CREATED, "{}", old.body);
        assert_eq!(
            (old.str("amount"), old.str("price_id")),
            ("0.003".into(), v1.clone())
        );

        // v2, in force from now: ten times dearer.
        let v2 = app.set_price("pv-model", "10.00", "20.00").await.str("id");
        assert_ne!(v1, v2);
        let versions = app.get(&As::Operator, "/v1/prices?model=pv-model").await;
        assert_eq!(
            versions.body["data"].as_array().map(Vec::len),
            Some(2),
            "{}",
            versions.body
        );

        // 500 in + 500 out at v1: 0.0005 + 0.001 (at v2 it would be 0.015).
        let settled = app
            .post(
                &key,
                &format!("/v1/holds/{}/settle", old.str("id")),
                json!({ "usage": { "input_tokens": 500, "output_tokens": 500 } }),
            )
            .await;
        assert_eq!(settled.status, StatusCode::OK, "{}", settled.body);
        assert_eq!(
            settled.body["transfer"]["amount"], "0.0015",
            "{}",
            settled.body
        );
        assert_eq!(
            settled.body["hold"]["settled_amount"], "0.0015",
            "{}",
            settled.body
        );
        assert_eq!(
            settled.body["hold"]["price_id"],
            v1.as_str(),
            "{}",
            settled.body
        );

        // A new hold is placed and settled at v2.
        let new = hold_model(&app, &key, "pv-model", 1000, 1000).await;
        assert_eq!(new.status, StatusCode::CREATED, "{}", new.body);
        assert_eq!(
            (new.str("amount"), new.str("price_id")),
            ("0.03".into(), v2)
        );
        let settled = app
            .post(
                &key,
                &format!("/v1/holds/{}/settle", new.str("id")),
                json!({ "usage": { "input_tokens": 500, "output_tokens": 500 } }),
            )
            .await;
        assert_eq!(settled.status, StatusCode::OK, "{}", settled.body);
        assert_eq!(
            settled.body["transfer"]["amount"], "0.015",
            "{}",
            settled.body
        );
        assert_eq!(
            balance_view(&app, &org).await,
            bal("9.9835", "0.00", "9.9835", "0.00", "active")
        );
        app.assert_invariants().await;
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_past_its_ttl_expires_and_its_credits_come_back() {
    for database in databases().await {
        let app = spawn_app_with(database, |config| config.expiry_interval_ms = 50).await;
        let org = app.create_org("Expiry").await;
        app.grant(&org, "5.00").await;
        let (_, secret) = app.create_key(&org).await;
        let key = As::Key(secret);
        let short = app
            .post(&key, "/v1/holds", json!({ "amount": "1.00", "ttl_s": 1 }))
            .await;
        assert_eq!(short.status, StatusCode::CREATED, "{}", short.body);
        let short_id = short.str("id");
        let expires_at = short.body["expires_at"].as_i64().expect("expires_at");
        let created_at = short.body["created_at"].as_i64().expect("created_at");
        assert!(
            (1..=2).contains(&(expires_at - created_at)),
            "{}",
            short.body
        );
        let long = hold_ok(&app, &key, "1.00").await;
        assert_eq!(
            balance_view(&app, &org).await,
            bal("5.00", "2.00", "3.00", "0.00", "active")
        );
        // Another org whose short hold takes all its credits: still on (a call in flight
        // turns nothing off), and its credits come back when the hold expires.
        let drained = app.create_org("Drained").await;
        app.grant(&drained, "1.00").await;
        let all = app
            .post(
                &As::Operator,
                "/v1/holds",
                json!({ "org_id": drained, "amount": "1.00", "ttl_s": 1 }),
            )
            .await;
        assert_eq!(all.status, StatusCode::CREATED, "{}", all.body);
        assert_eq!(app.balance(&drained).await.str("access_state"), "active");
        let all_id = all.str("id");

        // The one real wait: the TTL (1 s) plus a few expiry steps, bounded at ~5 s.
        let mut state = String::new();
        for _ in 0..50 {
            let hold = app.get(&key, &format!("/v1/holds/{short_id}")).await;
            assert_eq!(hold.status, StatusCode::OK, "{}", hold.body);
            state = hold.str("state");
            if state != "open" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            state, "expired",
            "the hold expired within ~5 s on {}",
            app.backend
        );
        assert_eq!(
            balance_view(&app, &org).await,
            bal("5.00", "1.00", "4.00", "0.00", "active")
        );
        let long_hold = app.get(&key, &format!("/v1/holds/{long}")).await;
        assert_eq!(long_hold.str("state"), "open", "{}", long_hold.body);
        let mut drained_hold = String::new();
        for _ in 0..20 {
            drained_hold = app
                .get(&As::Operator, &format!("/v1/holds/{all_id}"))
                .await
                .str("state");
            if drained_hold != "open" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(drained_hold, "expired", "the drained org's hold expired");
        assert_eq!(
            balance_view(&app, &drained).await,
            bal("1.00", "0.00", "1.00", "0.00", "active")
        );
        assert_eq!(
            steps(&transitions(&app, &drained).await),
            vec![
                step("depleted", 0, "depleted", 0, "created", "0.00"),
                step("depleted", 0, "active", 0, "balance", "1.00"),
            ]
        );

        // An expired hold can be neither settled nor voided.
        for action in ["settle", "void"] {
            let body = if action == "settle" {
                json!({ "amount": "1.00" })
            } else {
                json!({})
            };
            let late = app
                .post(&key, &format!("/v1/holds/{short_id}/{action}"), body)
                .await;
            assert_eq!(late.status, StatusCode::CONFLICT, "{action}: {}", late.body);
            assert!(
                ["hold_expired", "hold_already_closed"].contains(&late.code()),
                "{action}: {}",
                late.body
            );
        }
        assert_eq!(
            balance_view(&app, &org).await,
            bal("5.00", "1.00", "4.00", "0.00", "active")
        );
        app.assert_invariants().await;
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overdraft_floor_lets_holds_reach_it_and_no_further() {
    for database in databases().await {
        let app = spawn_app(database).await;
        let org = app.create_org("Overdraft").await;
        app.grant(&org, "1.00").await;
        let (_, secret) = app.create_key(&org).await;
        let key = As::Key(secret);
        // At its cut-off level (1.00): one call larger than the balance is refused alone.
        assert_billing_error(
            &hold_amount(&app, &key, "1.50").await,
            "request_exceeds_balance",
            &org,
        );

        let patched = patch_org(&app, &org, json!({ "floor": "-1.00" })).await;
        assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
        assert_eq!(patched.body["floor"], "-1.00", "{}", patched.body);
        assert_eq!(app.balance(&org).await.str("floor"), "-1.00");
        let mut holds = Vec::new();
        for _ in 0..4 {
            holds.push(hold_ok(&app, &key, "0.50").await);
        }
        // Every credit held by calls in flight: still on (posted 1.00 is above the cut-off
        // level, floor + 1.00), and a further call is refused alone.
        assert_eq!(
            balance_view(&app, &org).await,
            bal("1.00", "2.00", "-1.00", "0.00", "active")
        );
        assert_billing_error(
            &hold_amount(&app, &key, "0.000001").await,
            "request_exceeds_balance",
            &org,
        );
        for hold in &holds {
            settle_amount(&app, &key, hold, "0.50").await;
        }
        // Within the floor: an overdraft, not an overspend.
        assert_eq!(
            balance_view(&app, &org).await,
            bal("-1.00", "0.00", "-1.00", "0.00", "depleted")
        );
        app.grant(&org, "2.00").await;
        assert_eq!(
            balance_view(&app, &org).await,
            bal("1.00", "0.00", "1.00", "0.00", "active")
        );
        hold_ok(&app, &key, "1.50").await;
        assert_eq!(
            steps(&transitions(&app, &org).await),
            vec![
                step("depleted", 0, "depleted", 0, "created", "0.00"),
                step("depleted", 0, "active", 0, "balance", "1.00"),
                step("active", 0, "depleted", 0, "balance", "-1.00"),
                step("depleted", 0, "active", 0, "balance", "1.00"),
            ],
            "on {}",
            app.backend
        );

        // An org without credits turns active when it is given an overdraft.
        let empty = app.create_org("Empty").await;
        let patched = patch_org(&app, &empty, json!({ "floor": "-1.00" })).await;
        assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
        assert_eq!(patched.body["access_state"], "active", "{}", patched.body);
        let by_operator = app
            .post(
                &As::Operator,
                "/v1/holds",
                json!({ "org_id": empty, "amount": "1.00" }),
            )
            .await;
        assert_eq!(
            by_operator.status,
            StatusCode::CREATED,
            "{}",
            by_operator.body
        );
        // Its overdraft held by a call in flight: still on until the call settles.
        assert_eq!(app.balance(&empty).await.str("access_state"), "active");
        assert_eq!(
            steps(&transitions(&app, &empty).await),
            vec![
                step("depleted", 0, "depleted", 0, "created", "0.00"),
                step("depleted", 0, "active", 0, "settings", "0.00"),
            ]
        );
        app.assert_invariants().await;
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_page_newest_first_without_gaps_or_repeats() {
    for database in databases().await {
        let app = spawn_app(database).await;
        let org = app.create_org("Pages").await;
        let mut created = Vec::new();
        for _ in 0..25 {
            created.push(app.grant(&org, "1.00").await.str("id"));
        }
        let newest_first: Vec<String> = created.iter().rev().cloned().collect();

        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        for (expected_len, expected_more) in [(10, true), (10, true), (5, false)] {
            let path = match &after {
                None => format!("/v1/orgs/{org}/transfers?limit=10"),
                Some(id) => format!("/v1/orgs/{org}/transfers?limit=10&starting_after={id}"),
            };
            let page = app.get(&As::Operator, &path).await;
            assert_eq!(page.status, StatusCode::OK, "{}", page.body);
            let items = page.body["data"].as_array().expect("data");
            assert_eq!(items.len(), expected_len, "{}", page.body);
            assert_eq!(page.body["has_more"], expected_more, "{}", page.body);
            for item in items {
                // The n-th newest grant left the balance at 25 − n.
                let n = seen.len();
                assert_eq!(item["balance_after"], format!("{}.00", 25 - n), "{item}");
                assert_eq!(
                    (&item["kind"], &item["direction"]),
                    (&json!("grant"), &json!("credit"))
                );
                seen.push(item["id"].as_str().expect("id").to_owned());
            }
            after = seen.last().cloned();
        }
        assert_eq!(seen, newest_first, "newest first, every transfer once");
        assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 25);
        let past_the_end = app
            .get(
                &As::Operator,
                &format!(
                    "/v1/orgs/{org}/transfers?limit=10&starting_after={}",
                    seen[24]
                ),
            )
            .await;
        assert_eq!(past_the_end.status, StatusCode::OK, "{}", past_the_end.body);
        assert_eq!(past_the_end.body["data"], json!([]));
        assert_eq!(past_the_end.body["has_more"], false);
        assert_eq!(app.balance(&org).await.str("posted"), "25.00");
        app.assert_invariants().await;
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_beyond_the_balance_is_recorded_as_overspend() {
    for database in databases().await {
        let app = spawn_app(database).await;
        app.set_price("big-model", "1.00", "1.00").await;
        let org = app.create_org("Overspender").await;
        app.grant(&org, "1.00").await;
        let (_, secret) = app.create_key(&org).await;
        let key = As::Key(secret);

        // 3,000,000 tokens at 1.00 per million: 3.00 against 1.00 of credits.
        let used = usage_event(&app, &key, "o1", "big-model", 3_000_000, 0).await;
        assert_eq!(used["status"], "created", "{used}");
        assert_eq!(used["amount"], "3.00", "{used}");
        assert_eq!(used["overspend"], "2.00", "{used}");
        let transfer_id = used["transfer_id"]
            .as_str()
            .expect("transfer_id")
            .to_owned();
        assert_eq!(
            balance_view(&app, &org).await,
            bal("-2.00", "0.00", "-2.00", "2.00", "depleted")
        );
        let history = app
            .get(&As::Operator, &format!("/v1/orgs/{org}/transfers?limit=1"))
            .await;
        let last = &history.body["data"][0];
        assert_eq!(last["id"], transfer_id.as_str(), "{last}");
        assert_eq!(
            (
                &last["kind"],
                &last["amount"],
                &last["balance_after"],
                &last["overspend"]
            ),
            (
                &json!("usage"),
                &json!("3.00"),
                &json!("-2.00"),
                &json!("2.00")
            ),
            "{last}"
        );
        // Recorded once: the same event again changes nothing.
        let again = usage_event(&app, &key, "o1", "big-model", 3_000_000, 0).await;
        assert_eq!(again["status"], "exists", "{again}");
        assert_eq!(again["transfer_id"], transfer_id.as_str(), "{again}");
        assert_billing_error(
            &hold_amount(&app, &key, "0.01").await,
            "credit_balance_exhausted",
            &org,
        );
        assert_eq!(
            balance_view(&app, &org).await,
            bal("-2.00", "0.00", "-2.00", "2.00", "depleted")
        );

        // New credits pay the debt first; the overspend stays on record.
        app.grant(&org, "5.00").await;
        assert_eq!(
            balance_view(&app, &org).await,
            bal("3.00", "0.00", "3.00", "2.00", "active")
        );
        assert_eq!(
            steps(&transitions(&app, &org).await),
            vec![
                step("depleted", 0, "depleted", 0, "created", "0.00"),
                step("depleted", 0, "active", 0, "balance", "1.00"),
                step("active", 0, "depleted", 0, "balance", "-2.00"),
                step("depleted", 0, "active", 0, "balance", "3.00"),
            ],
            "on {}",
            app.backend
        );
        app.assert_invariants().await;
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raising_the_floor_over_an_overdraft_keeps_the_ledger_invariants() {
    for database in databases().await {
        let app = spawn_app(database).await;
        let org = create_org_with(&app, "Overdrawn", json!({ "floor": "-1.00" })).await;
        let org = org["id"].as_str().expect("id").to_owned();
        let (_, secret) = app.create_key(&org).await;
        let key = As::Key(secret);
        let hold = hold_ok(&app, &key, "1.00").await;
        settle_amount(&app, &key, &hold, "1.00").await;
        assert_eq!(
            balance_view(&app, &org).await,
            bal("-1.00", "0.00", "-1.00", "0.00", "depleted")
        );
        app.assert_invariants().await;

        // The operator takes the overdraft back while the org is using it. Either the API
        // refuses (the floor stays) or it accepts and the org is depleted; either way the
        // ledger must still satisfy its invariants ("no available balance below its floor
        // beyond recorded overspend").
        let patched = patch_org(&app, &org, json!({ "floor": "0" })).await;
        let balance = app.balance(&org).await;
        if patched.status.is_success() {
            assert_eq!(patched.body["floor"], "0.00", "{}", patched.body);
            assert_eq!(balance.str("access_state"), "depleted", "{}", balance.body);
        } else {
            assert!(patched.status.is_client_error(), "{}", patched.body);
            assert_eq!(balance.str("floor"), "-1.00", "{}", balance.body);
        }
        assert_billing_error(
            &hold_amount(&app, &key, "0.01").await,
            "credit_balance_exhausted",
            &org,
        );
        app.assert_invariants().await;
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_settings_re_derive_access_with_their_cause() {
    for database in databases().await {
        let app = spawn_app(database).await;
        app.set_price("set-model", "1.00", "1.00").await;
        let org = app.create_org("Settings").await;
        app.grant(&org, "4.00").await;
        let (_, secret) = app.create_key(&org).await;
        let key = As::Key(secret);

        // A new threshold above the balance: low at once, by the operator's change.
        let patched = patch_org(&app, &org, json!({ "low_thresholds": ["5"] })).await;
        assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
        assert_eq!(patched.body["access_state"], "low", "{}", patched.body);
        // Suspended wins over low; usage while suspended moves no state.
        let patched = patch_org(&app, &org, json!({ "suspended": true })).await;
        assert_eq!(
            patched.body["access_state"], "suspended",
            "{}",
            patched.body
        );
        let used = usage_event(&app, &key, "u1", "set-model", 4_000_000, 0).await;
        assert_eq!(used["status"], "created", "{used}");
        assert_eq!(app.balance(&org).await.str("access_state"), "suspended");
        // Lifting the suspension of an org without credits leaves it depleted.
        let patched = patch_org(&app, &org, json!({ "suspended": false })).await;
        assert_eq!(patched.body["access_state"], "depleted", "{}", patched.body);
        assert_billing_error(
            &hold_amount(&app, &key, "0.01").await,
            "credit_balance_exhausted",
            &org,
        );
        // Removing the thresholds changes the level, not the state.
        let patched = patch_org(&app, &org, json!({ "low_thresholds": [] })).await;
        assert_eq!(patched.body["access_state"], "depleted", "{}", patched.body);
        app.grant(&org, "1.00").await;
        assert_eq!(app.balance(&org).await.str("access_state"), "active");

        assert_eq!(
            steps(&transitions(&app, &org).await),
            vec![
                step("depleted", 0, "depleted", 0, "created", "0.00"),
                step("depleted", 0, "active", 0, "balance", "4.00"),
                step("active", 0, "low", 1, "settings", "4.00"),
                step("low", 1, "suspended", 1, "suspended", "4.00"),
                step("suspended", 1, "depleted", 1, "unsuspended", "0.00"),
                step("depleted", 1, "depleted", 0, "settings", "0.00"),
                step("depleted", 0, "active", 0, "balance", "1.00"),
            ],
            "on {}",
            app.backend
        );
        app.assert_invariants().await;
        app.stop().await;
    }
}
