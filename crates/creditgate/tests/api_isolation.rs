//! Tenant isolation, driven by the OpenAPI document: every documented route is called with
//! org A's key on org B's resources and must refuse (403/404) without changing B; routes that
//! are not org-scoped are listed explicitly. Also: no credentials, revoked keys, and org keys
//! on operator-only routes.

mod api_support;

use std::collections::BTreeSet;

use api_support::{databases, spawn_app, As, Reply, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const MODEL: &str = "model-a";

/// One org with credits, a key, an open hold and a transfer.
struct Tenant {
    org: String,
    key_id: String,
    secret: String,
    hold: String,
    transfer: String,
    payment: String,
    member: String,
}

impl Tenant {
    fn key(&self) -> As {
        As::Key(self.secret.clone())
    }
}

async fn tenant(app: &TestApp, name: &str) -> Tenant {
    let org = app.create_org(name).await;
    let transfer = app.grant(&org, "100.00").await.str("id");
    let (key_id, secret) = app.create_key(&org).await;
    let hold = app
        .post(
            &As::Key(secret.clone()),
            "/v1/holds",
            json!({ "amount": "1.00" }),
        )
        .await;
    assert_eq!(hold.status, StatusCode::CREATED, "{}", hold.body);
    let payment = app
        .post_idempotent(
            &As::Operator,
            &format!("/v1/orgs/{org}/top_ups"),
            &format!("topup-{org}"),
            json!({ "amount": "10.00" }),
        )
        .await;
    assert_eq!(payment.status, StatusCode::CREATED, "{}", payment.body);
    let member = app
        .post(
            &As::Operator,
            &format!("/v1/orgs/{org}/members"),
            json!({ "email": format!("dev@{}.example.com", org.to_lowercase()), "role": "developer", "invite": false }),
        )
        .await;
    assert_eq!(member.status, StatusCode::CREATED, "{}", member.body);
    Tenant {
        org,
        key_id,
        secret,
        hold: hold.str("id"),
        transfer,
        payment: payment.str("id"),
        member: member.str("id"),
    }
}

/// Who may call a route with an org's key on that org's own resources.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    /// Not org-scoped and unauthenticated: health, readiness, metrics, the document.
    Public,
    /// Not org-scoped, any authenticated caller: the price list.
    AnyCaller,
    /// The operator only: an org key gets 403 even on its own org.
    OperatorOnly,
    /// The org's own key may call it on its own resources.
    OwnOrg,
    /// Authenticated by the payment provider's signature, not by a caller: on the sandbox
    /// provider it does not exist (404) for anyone.
    ProviderSigned,
}

/// A documented route, with a plausible valid body for `target`'s resources.
struct Route {
    method: &'static str,
    path: &'static str,
    access: Access,
    body: fn(&Tenant) -> Option<Value>,
}

fn no_body(_: &Tenant) -> Option<Value> {
    None
}

/// Every route the service documents. A route in the document without an entry here fails
/// the test, so a new route cannot escape it.
fn routes() -> Vec<Route> {
    use Access::*;
    let route = |method, path, access, body: fn(&Tenant) -> Option<Value>| Route {
        method,
        path,
        access,
        body,
    };
    vec![
        route("post", "/v1/orgs", OperatorOnly, |_| {
            Some(json!({ "name": "Intruder Inc", "billing_emails": ["x@example.com"] }))
        }),
        route("get", "/v1/orgs", OperatorOnly, no_body),
        route("get", "/v1/orgs/{org_id}", OwnOrg, no_body),
        route("patch", "/v1/orgs/{org_id}", OperatorOnly, |_| {
            Some(json!({ "name": "Hijacked", "suspended": true, "floor": "-50.00" }))
        }),
        route(
            "get",
            "/v1/orgs/{org_id}/access_transitions",
            OwnOrg,
            no_body,
        ),
        route("post", "/v1/orgs/{org_id}/keys", OperatorOnly, |_| {
            Some(json!({ "name": "intruder" }))
        }),
        route("get", "/v1/orgs/{org_id}/keys", OperatorOnly, no_body),
        route("delete", "/v1/keys/{key_id}", OperatorOnly, no_body),
        route("post", "/v1/orgs/{org_id}/grants", OperatorOnly, |_| {
            Some(json!({ "amount": "5.00", "origin": "paid" }))
        }),
        route(
            "post",
            "/v1/orgs/{org_id}/adjustments",
            OperatorOnly,
            |_| Some(json!({ "amount": "-5.00", "reason": "moved elsewhere" })),
        ),
        route("get", "/v1/orgs/{org_id}/balance", OwnOrg, no_body),
        route("get", "/v1/orgs/{org_id}/transfers", OwnOrg, no_body),
        route("put", "/v1/prices/{model}", OperatorOnly, |_| {
            Some(json!({ "input": "0.01", "output": "0.01" }))
        }),
        route("get", "/v1/prices", AnyCaller, no_body),
        route("post", "/v1/holds", OwnOrg, |t| {
            Some(json!({ "org_id": t.org, "amount": "1.00" }))
        }),
        route("get", "/v1/holds/{hold_id}", OwnOrg, no_body),
        route("post", "/v1/holds/{hold_id}/settle", OwnOrg, |_| {
            Some(json!({ "amount": "0.50" }))
        }),
        route("post", "/v1/holds/{hold_id}/void", OwnOrg, |_| {
            Some(json!({}))
        }),
        route("post", "/v1/usage", OwnOrg, |t| {
            Some(json!({
                "org_id": t.org,
                "events": [{
                    "id": format!("evt-{}", rand::random::<u64>()),
                    "model": MODEL,
                    "usage": { "input_tokens": 1000, "output_tokens": 1000 }
                }]
            }))
        }),
        // The proxy acts only for the calling key's own org: there is no tenant id to aim at
        // another org, so a key's call succeeds and charges its own org (B stays unchanged).
        route("post", "/anthropic/v1/messages", AnyCaller, |_| {
            Some(
                json!({ "model": MODEL, "max_tokens": 16, "messages": [{ "role": "user", "content": "hi" }] }),
            )
        }),
        route("post", "/openai/v1/chat/completions", AnyCaller, |_| {
            Some(
                json!({ "model": MODEL, "max_tokens": 16, "messages": [{ "role": "user", "content": "hi" }] }),
            )
        }),
        // The proxy's other endpoints act for the calling key's org the same way; the free
        // ones (models, token counts) pass through to the demo upstream.
        route("post", "/openai/v1/responses", AnyCaller, |_| {
            Some(json!({ "model": MODEL, "max_output_tokens": 16, "input": "hi" }))
        }),
        route("post", "/openai/v1/embeddings", AnyCaller, |_| {
            Some(json!({ "model": MODEL, "input": "hi" }))
        }),
        route(
            "post",
            "/anthropic/v1/messages/count_tokens",
            AnyCaller,
            |_| Some(json!({ "model": MODEL, "messages": [{ "role": "user", "content": "hi" }] })),
        ),
        route("get", "/anthropic/v1/models", AnyCaller, no_body),
        route("get", "/anthropic/v1/models/{model}", AnyCaller, no_body),
        route("get", "/openai/v1/models", AnyCaller, no_body),
        route("get", "/openai/v1/models/{model}", AnyCaller, no_body),
        route("get", "/v1/proxy/recoveries", OperatorOnly, no_body),
        route("get", "/v1/notices", OperatorOnly, no_body),
        route(
            "post",
            "/v1/notices/{notice_id}/retry",
            OperatorOnly,
            no_body,
        ),
        route("post", "/v1/webhook_endpoints", OperatorOnly, |t| {
            Some(json!({ "url": "https://example.com/hooks", "org_id": t.org, "events": ["*"] }))
        }),
        route("get", "/v1/webhook_endpoints", OperatorOnly, no_body),
        route(
            "delete",
            "/v1/webhook_endpoints/{endpoint_id}",
            OperatorOnly,
            no_body,
        ),
        route(
            "get",
            "/v1/webhook_endpoints/{endpoint_id}/deliveries",
            OperatorOnly,
            no_body,
        ),
        route(
            "post",
            "/v1/webhook_deliveries/{delivery_id}/resend",
            OperatorOnly,
            no_body,
        ),
        route("post", "/v1/orgs/{org_id}/top_ups", OperatorOnly, |_| {
            Some(json!({ "amount": "10.00" }))
        }),
        route("get", "/v1/orgs/{org_id}/payments", OwnOrg, no_body),
        route("get", "/v1/payments/{payment_id}", OwnOrg, no_body),
        route(
            "post",
            "/v1/payments/{payment_id}/refunds",
            OperatorOnly,
            |_| Some(json!({ "amount": "1.00" })),
        ),
        route(
            "get",
            "/v1/payments/{payment_id}/refunds",
            OperatorOnly,
            no_body,
        ),
        route(
            "get",
            "/v1/orgs/{org_id}/auto_reload",
            OperatorOnly,
            no_body,
        ),
        route("put", "/v1/orgs/{org_id}/auto_reload", OperatorOnly, |_| {
            Some(json!({
                "enabled": true, "threshold": "5.00", "amount": "10.00", "monthly_limit": "50.00",
                "payment_method": "pm_card_visa",
                "consent": { "accepted_by": "intruder@example.com", "text_version": "2026-11" }
            }))
        }),
        route("post", "/v1/orgs/{org_id}/members", OperatorOnly, |t| {
            Some(
                json!({ "email": format!("new@{}.example.com", t.org.to_lowercase()), "role": "billing", "invite": false }),
            )
        }),
        route("get", "/v1/orgs/{org_id}/members", OperatorOnly, no_body),
        route(
            "patch",
            "/v1/orgs/{org_id}/members/{member_id}",
            OperatorOnly,
            |_| Some(json!({ "role": "billing" })),
        ),
        route(
            "delete",
            "/v1/orgs/{org_id}/members/{member_id}",
            OperatorOnly,
            no_body,
        ),
        route("post", "/v1/webhooks/stripe", ProviderSigned, |_| {
            Some(
                json!({ "id": "evt_1", "type": "payment_intent.succeeded", "data": { "object": {} } }),
            )
        }),
        route("get", "/healthz", Public, no_body),
        route("get", "/readyz", Public, no_body),
        route("get", "/metrics", Public, no_body),
        route("get", "/openapi.json", Public, no_body),
    ]
}

/// Every (method, path) of the served document.
async fn documented(app: &TestApp) -> BTreeSet<(String, String)> {
    let doc = app.get(&As::Nobody, "/openapi.json").await;
    assert_eq!(doc.status, StatusCode::OK, "{}", doc.body);
    let paths = doc.body["paths"]
        .as_object()
        .expect("the document has paths");
    let mut out = BTreeSet::new();
    for (path, item) in paths {
        for method in item.as_object().expect("a path item").keys() {
            if matches!(
                method.as_str(),
                "get" | "put" | "post" | "delete" | "patch" | "head" | "options" | "trace"
            ) {
                out.insert((method.clone(), path.clone()));
            }
        }
    }
    assert!(out.len() >= 20, "the document lists the routes: {out:?}");
    out
}

/// The table's routes in document order; fails on a documented route the table lacks, and on
/// a table row the document lacks (a stale row).
async fn table_for_document(app: &TestApp) -> Vec<Route> {
    let documented = documented(app).await;
    let table = routes();
    let known: BTreeSet<(String, String)> = table
        .iter()
        .map(|r| (r.method.to_owned(), r.path.to_owned()))
        .collect();
    let missing: Vec<_> = documented.difference(&known).collect();
    assert!(
        missing.is_empty(),
        "documented routes without an entry in the isolation table: {missing:?}"
    );
    let stale: Vec<_> = known.difference(&documented).collect();
    assert!(
        stale.is_empty(),
        "table rows not in the document: {stale:?}"
    );
    table
}

fn substitute(path: &str, target: &Tenant, hold: &str, key_id: &str) -> String {
    let out = path
        .replace("{org_id}", &target.org)
        .replace("{key_id}", key_id)
        .replace("{hold_id}", hold)
        .replace("{model}", MODEL)
        .replace("{model_id}", MODEL)
        .replace("{notice_id}", "ntc_1")
        .replace("{endpoint_id}", "whk_1")
        .replace("{delivery_id}", "wdl_ntc_1_1")
        .replace("{payment_id}", &target.payment)
        .replace("{member_id}", &target.member);
    assert!(!out.contains('{'), "unsubstituted parameter in {out}");
    out
}

async fn call(app: &TestApp, who: &As, route: &Route, path: &str, body: Option<Value>) -> Reply {
    let method = Method::from_bytes(route.method.to_ascii_uppercase().as_bytes()).unwrap();
    let key = format!("iso-{}", rand::random::<u64>());
    let headers: &[(&str, &str)] = if route.method == "post" {
        &[("Idempotency-Key", key.as_str())]
    } else {
        &[]
    };
    app.request(who, method, path, body, headers).await
}

/// The error envelope: type, code, message, request_id (also in the header).
fn assert_envelope(reply: &Reply, status: StatusCode, kind: &str, code: &str, context: &str) {
    assert_eq!(reply.status, status, "{context}: {}", reply.body);
    assert_eq!(
        reply.body["error"]["type"], kind,
        "{context}: {}",
        reply.body
    );
    assert_eq!(reply.code(), code, "{context}: {}", reply.body);
    assert!(
        reply.body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{context}: {}",
        reply.body
    );
    let request_id = reply.body["request_id"].as_str().unwrap_or("");
    assert!(request_id.starts_with("req_"), "{context}: {}", reply.body);
    assert_eq!(
        reply
            .headers
            .get("request-id")
            .and_then(|v| v.to_str().ok()),
        Some(request_id),
        "{context}"
    );
}

/// What the operator sees of a tenant (and the whole ledger's view of it).
async fn observe(app: &TestApp, target: &Tenant) -> Vec<Value> {
    let mut seen = Vec::new();
    for path in [
        format!("/v1/orgs/{}", target.org),
        format!("/v1/orgs/{}/balance", target.org),
        format!("/v1/orgs/{}/transfers?limit=100", target.org),
        format!("/v1/orgs/{}/keys", target.org),
        format!("/v1/orgs/{}/access_transitions?limit=100", target.org),
        format!("/v1/holds/{}", target.hold),
        "/v1/orgs?limit=100".to_owned(),
        "/v1/prices".to_owned(),
    ] {
        let reply = app.get(&As::Operator, &path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.body);
        seen.push(reply.body);
    }
    let snapshot = app.store.snapshot().await.expect("a snapshot");
    let mut holds: Vec<String> = snapshot
        .holds
        .iter()
        .filter(|h| h.debit_account_id.as_str() == target.org)
        .map(|h| format!("{h:?}"))
        .collect();
    holds.sort();
    let mut transfers: Vec<String> = snapshot
        .transfers
        .iter()
        .filter(|t| {
            t.debit_account_id.as_str() == target.org || t.credit_account_id.as_str() == target.org
        })
        .map(|t| format!("{t:?}"))
        .collect();
    transfers.sort();
    let account = snapshot
        .accounts
        .iter()
        .find(|a| a.id.as_str() == target.org)
        .map(|a| format!("{a:?}"));
    seen.push(json!({ "holds": holds, "transfers": transfers, "account": account }));
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_org_key_gets_nothing_of_another_org_on_any_documented_route() {
    for database in databases().await {
        let app = spawn_app(database).await;
        app.set_price(MODEL, "3.00", "15.00").await;
        let a = tenant(&app, "Org A").await;
        let b = tenant(&app, "Org B").await;
        let table = table_for_document(&app).await;
        let before = observe(&app, &b).await;
        let balance_before = app.balance(&b.org).await.body;
        for who in [a.key(), As::Bearer(a.secret.clone())] {
            for route in &table {
                let path = substitute(route.path, &b, &b.hold, &b.key_id);
                let context = format!(
                    "{} {} {path} as A's key ({who:?})",
                    app.backend, route.method
                );
                let reply = call(&app, &who, route, &path, (route.body)(&b)).await;
                match route.access {
                    Access::ProviderSigned => {
                        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{context}")
                    }
                    Access::Public | Access::AnyCaller => assert!(
                        reply.status.is_success(),
                        "{context}: a public route answers: {} {}",
                        reply.status,
                        reply.body
                    ),
                    Access::OperatorOnly | Access::OwnOrg => {
                        assert!(
                            reply.status == StatusCode::FORBIDDEN
                                || reply.status == StatusCode::NOT_FOUND,
                            "{context}: expected 403 or 404, got {} {}",
                            reply.status,
                            reply.body
                        );
                        let (kind, code) = if reply.status == StatusCode::FORBIDDEN {
                            ("permission_error", "forbidden")
                        } else if route.path.contains("{hold_id}") {
                            ("not_found_error", "hold_not_found")
                        } else if route.path.contains("{key_id}") {
                            ("not_found_error", "key_not_found")
                        } else if route.path.contains("{payment_id}") {
                            ("not_found_error", "payment_not_found")
                        } else {
                            ("not_found_error", "org_not_found")
                        };
                        assert_envelope(&reply, reply.status, kind, code, &context);
                        // Nothing of B leaks into the refusal.
                        let text = reply.body.to_string();
                        for secret in [&b.secret, &b.hold, &b.transfer] {
                            assert!(!text.contains(secret.as_str()), "{context}: {text}");
                        }
                    }
                }
            }
        }
        let after = observe(&app, &b).await;
        assert_eq!(before, after, "{}: org B changed", app.backend);
        assert_eq!(balance_before, app.balance(&b.org).await.body);
        let balance = app.balance(&b.org).await;
        assert_eq!(
            (balance.str("posted"), balance.str("reserved")),
            ("100.00".into(), "1.00".into()),
            "{}",
            app.backend
        );
        // B's key still works and still sees its own hold open.
        let hold = app.get(&b.key(), &format!("/v1/holds/{}", b.hold)).await;
        assert_eq!(hold.status, StatusCode::OK, "{}", hold.body);
        assert_eq!(hold.str("state"), "open");
        app.assert_invariants().await;
        app.stop().await;
    }
}

/// The control for the test above: the same table, A's key on A's own resources, is answered
/// 2xx on every route an org key may use and 403 on the operator's — so the refusals above
/// come from isolation, not from a bad body or a missing route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_table_on_the_keys_own_org_succeeds_except_operator_routes() {
    for database in databases().await {
        let app = spawn_app(database).await;
        app.set_price(MODEL, "3.00", "15.00").await;
        let a = tenant(&app, "Org A").await;
        let table = table_for_document(&app).await;
        for route in &table {
            // A fresh hold per route, so settle and void each close their own.
            let hold = app
                .post(&a.key(), "/v1/holds", json!({ "amount": "1.00" }))
                .await;
            assert_eq!(hold.status, StatusCode::CREATED, "{}", hold.body);
            let path = substitute(route.path, &a, &hold.str("id"), &a.key_id);
            let context = format!("{} {} {path} as A's own key", app.backend, route.method);
            let reply = call(&app, &a.key(), route, &path, (route.body)(&a)).await;
            match route.access {
                Access::ProviderSigned => {
                    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{context}")
                }
                Access::Public | Access::AnyCaller | Access::OwnOrg => assert!(
                    reply.status.is_success(),
                    "{context}: {} {}",
                    reply.status,
                    reply.body
                ),
                Access::OperatorOnly => {
                    assert_envelope(
                        &reply,
                        StatusCode::FORBIDDEN,
                        "permission_error",
                        "forbidden",
                        &context,
                    );
                }
            }
            if route.path == "/v1/usage" {
                assert_eq!(reply.body["data"][0]["status"], "created", "{context}");
            }
        }
        // The operator's routes did nothing: A's key still authenticates, A is not suspended.
        let org = app.get(&a.key(), &format!("/v1/orgs/{}", a.org)).await;
        assert_eq!(org.status, StatusCode::OK, "{}", org.body);
        assert_eq!(
            (org.str("name"), &org.body["suspended"]),
            ("Org A".into(), &json!(false))
        );
        app.assert_invariants().await;
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metering_with_another_orgs_id_in_the_body_is_refused() {
    for database in databases().await {
        let app = spawn_app(database).await;
        app.set_price(MODEL, "3.00", "15.00").await;
        let a = tenant(&app, "Org A").await;
        let b = tenant(&app, "Org B").await;
        let before = observe(&app, &b).await;
        let a_before = app.balance(&a.org).await.body;
        for who in [a.key(), As::Bearer(a.secret.clone())] {
            let bodies = [
                ("/v1/holds", json!({ "org_id": b.org, "amount": "1.00" })),
                (
                    "/v1/holds",
                    json!({ "org_id": b.org, "model": MODEL, "max_input_tokens": 10 }),
                ),
                (
                    "/v1/usage",
                    json!({ "org_id": b.org, "events": [{ "id": "x1", "model": MODEL, "usage": { "input_tokens": 10, "output_tokens": 10 } }] }),
                ),
            ];
            for (path, body) in bodies {
                let context = format!("{} POST {path} {body}", app.backend);
                let reply = app
                    .post_idempotent(&who, path, &format!("k-{}", rand::random::<u64>()), body)
                    .await;
                assert_envelope(
                    &reply,
                    StatusCode::NOT_FOUND,
                    "not_found_error",
                    "org_not_found",
                    &context,
                );
            }
        }
        // A usage event naming B's key is rejected as no key of A's.
        let reply = app
            .post(
                &a.key(),
                "/v1/usage",
                json!({ "events": [{ "id": "x2", "model": MODEL, "key_id": b.key_id, "usage": { "input_tokens": 10, "output_tokens": 10 } }] }),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert_eq!(
            reply.body["data"][0]["status"], "rejected",
            "{}",
            reply.body
        );
        assert_eq!(reply.body["data"][0]["error"]["code"], "key_not_found");
        assert_eq!(reply.body["data"][0]["error"]["param"], "events[0].key_id");
        // Paging A's own transfers from one of B's is refused, not answered with B's history.
        let reply = app
            .get(
                &a.key(),
                &format!("/v1/orgs/{}/transfers?starting_after={}", a.org, b.transfer),
            )
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
        assert_eq!(
            (reply.code(), &reply.body["error"]["param"]),
            ("parameter_invalid", &json!("starting_after"))
        );
        assert!(!reply.body.to_string().contains(&b.org), "{}", reply.body);
        // An org id that does not exist at all is answered the same way as B's.
        let reply = app
            .post(
                &a.key(),
                "/v1/holds",
                json!({ "org_id": "org_doesnotexist", "amount": "1.00" }),
            )
            .await;
        assert_envelope(
            &reply,
            StatusCode::NOT_FOUND,
            "not_found_error",
            "org_not_found",
            "unknown org",
        );
        assert_eq!(
            before,
            observe(&app, &b).await,
            "{}: B changed",
            app.backend
        );
        assert_eq!(a_before, app.balance(&a.org).await.body, "A changed");
        app.assert_invariants().await;
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_or_bad_credentials_are_401_on_every_non_public_route() {
    for database in databases().await {
        let app = spawn_app(database).await;
        app.set_price(MODEL, "3.00", "15.00").await;
        let a = tenant(&app, "Org A").await;
        let table = table_for_document(&app).await;
        let before = observe(&app, &a).await;
        let bad = [
            As::Nobody,
            As::Key("cg_live_0000000000000000000000000000000000000000000000000000".into()),
            As::Bearer("not-a-key".into()),
            As::Bearer("".into()),
            As::Key("x".repeat(1000)),
        ];
        for who in &bad {
            for route in &table {
                let path = substitute(route.path, &a, &a.hold, &a.key_id);
                let context = format!("{} {} {path} as {who:?}", app.backend, route.method);
                let reply = call(&app, who, route, &path, (route.body)(&a)).await;
                if route.access == Access::Public {
                    assert!(reply.status.is_success(), "{context}: {}", reply.status);
                    continue;
                }
                if route.access == Access::ProviderSigned {
                    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{context}");
                    continue;
                }
                assert_envelope(
                    &reply,
                    StatusCode::UNAUTHORIZED,
                    "authentication_error",
                    "invalid_api_key",
                    &context,
                );
            }
        }
        // A near miss of the operator token is not the operator.
        let near_miss = format!("{}x", api_support::OPERATOR_TOKEN);
        let reply = app.get(&As::Bearer(near_miss), "/v1/orgs").await;
        assert_envelope(
            &reply,
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "invalid_api_key",
            "near-miss operator token",
        );
        assert_eq!(
            before,
            observe(&app, &a).await,
            "{}: A changed",
            app.backend
        );
        app.assert_invariants().await;
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_is_refused_from_the_next_request() {
    for database in databases().await {
        let app = spawn_app(database).await;
        let a = tenant(&app, "Org A").await;
        let (other_id, other_secret) = app.create_key(&a.org).await;
        let balance_path = format!("/v1/orgs/{}/balance", a.org);
        for who in [a.key(), As::Bearer(a.secret.clone())] {
            let ok = app.get(&who, &balance_path).await;
            assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
        }
        let revoked = app
            .request(
                &As::Operator,
                Method::DELETE,
                &format!("/v1/keys/{}", a.key_id),
                None,
                &[],
            )
            .await;
        assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.body);
        assert_eq!(revoked.str("id"), a.key_id);
        assert!(revoked.body.get("secret").is_none(), "{}", revoked.body);
        for who in [a.key(), As::Bearer(a.secret.clone())] {
            let reply = app.get(&who, &balance_path).await;
            assert_envelope(
                &reply,
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "invalid_api_key",
                "revoked key",
            );
            let hold = app
                .post(&who, "/v1/holds", json!({ "amount": "1.00" }))
                .await;
            assert_envelope(
                &hold,
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "invalid_api_key",
                "revoked key places a hold",
            );
            let settle = app
                .post(
                    &who,
                    &format!("/v1/holds/{}/settle", a.hold),
                    json!({ "amount": "0.10" }),
                )
                .await;
            assert_eq!(settle.status, StatusCode::UNAUTHORIZED, "{}", settle.body);
        }
        // The org's other key is unaffected, and the hold the revoked key placed is still open.
        let other = As::Key(other_secret);
        let ok = app.get(&other, &balance_path).await;
        assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
        assert_eq!(ok.str("reserved"), "1.00");
        let hold = app.get(&other, &format!("/v1/holds/{}", a.hold)).await;
        assert_eq!(hold.str("state"), "open", "{}", hold.body);
        // The list still shows both keys, without secrets.
        let keys = app
            .get(&As::Operator, &format!("/v1/orgs/{}/keys", a.org))
            .await;
        let listed: Vec<&Value> = keys.body["data"].as_array().unwrap().iter().collect();
        assert!(listed.iter().any(|k| k["id"] == a.key_id.as_str()));
        assert!(listed.iter().any(|k| k["id"] == other_id.as_str()));
        assert!(listed.iter().all(|k| k.get("secret").is_none()));
        let reply = app.get(&a.key(), &balance_path).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        app.assert_invariants().await;
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_org_key_on_operator_routes_is_403() {
    for database in databases().await {
        let app = spawn_app(database).await;
        app.set_price(MODEL, "3.00", "15.00").await;
        let a = tenant(&app, "Org A").await;
        let before = observe(&app, &a).await;
        let own = |p: &str| format!("/v1/orgs/{}/{p}", a.org);
        let calls: Vec<(Method, String, Option<Value>)> = vec![
            (
                Method::POST,
                "/v1/orgs".into(),
                Some(json!({ "name": "Mine now" })),
            ),
            (Method::GET, "/v1/orgs".into(), None),
            (
                Method::PUT,
                "/v1/prices/x".into(),
                Some(json!({ "input": "0.00", "output": "0.00" })),
            ),
            (
                Method::PUT,
                format!("/v1/prices/{MODEL}"),
                Some(json!({ "input": "0.00", "output": "0.00" })),
            ),
            (
                Method::POST,
                own("grants"),
                Some(json!({ "amount": "1000.00", "origin": "promotional" })),
            ),
            (
                Method::POST,
                own("adjustments"),
                Some(json!({ "amount": "1000.00", "reason": "free money" })),
            ),
            (Method::POST, own("keys"), Some(json!({ "name": "more" }))),
            (Method::GET, own("keys"), None),
            (
                Method::PATCH,
                format!("/v1/orgs/{}", a.org),
                Some(json!({ "floor": "-1000.00" })),
            ),
            (Method::DELETE, format!("/v1/keys/{}", a.key_id), None),
        ];
        for who in [a.key(), As::Bearer(a.secret.clone())] {
            for (method, path, body) in &calls {
                let context = format!("{} {method} {path}", app.backend);
                let key = format!("op-{}", rand::random::<u64>());
                let reply = app
                    .request(
                        &who,
                        method.clone(),
                        path,
                        body.clone(),
                        &[("Idempotency-Key", &key)],
                    )
                    .await;
                assert_envelope(
                    &reply,
                    StatusCode::FORBIDDEN,
                    "permission_error",
                    "forbidden",
                    &context,
                );
            }
        }
        assert_eq!(
            before,
            observe(&app, &a).await,
            "{}: A changed",
            app.backend
        );
        let prices = app.get(&As::Operator, "/v1/prices").await;
        assert_eq!(
            prices.body["data"].as_array().unwrap().len(),
            1,
            "{}",
            prices.body
        );
        app.assert_invariants().await;
        app.stop().await;
    }
}
