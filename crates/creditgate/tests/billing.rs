//! The billing page over HTTP, on both backends: a sign-in link works once and expires;
//! sessions rotate at sign-in and end at sign-out; forms and cookie-authenticated API writes
//! without the right CSRF token are refused; each role can do exactly what the role table
//! says, on the pages and on the API; a session of org A cannot see org B; an org keeps an
//! owner. The browser walk of the same story is `billing_browser.rs`.

mod api_support;

use std::collections::HashMap;

use api_support::{databases, spawn_app_with, As, TestApp};
use creditgate_domain::member::{allows, Action, Role};
use creditgate_domain::Timestamp;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// A browser without a browser: keeps cookies, never follows redirects.
struct Visitor {
    base: String,
    client: reqwest::Client,
    cookies: HashMap<String, String>,
}

struct Page {
    status: StatusCode,
    location: String,
    text: String,
}

impl Visitor {
    fn new(app: &TestApp) -> Visitor {
        Visitor {
            base: app.base.clone(),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: HashMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Page {
        let response = request
            .header("cookie", self.cookie_header())
            .send()
            .await
            .expect("answers");
        for value in response.headers().get_all("set-cookie") {
            let text = value.to_str().unwrap();
            let (pair, attributes) = text.split_once(';').unwrap_or((text, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || attributes.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        Page {
            status: response.status(),
            location: response
                .headers()
                .get("location")
                .map(|l| l.to_str().unwrap().to_owned())
                .unwrap_or_default(),
            text: response.text().await.unwrap_or_default(),
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        let request = self.client.get(format!("{}{path}", self.base));
        self.send(request).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let request = self.client.post(format!("{}{path}", self.base)).form(form);
        self.send(request).await
    }

    /// A JSON API call with the session cookie (and `csrf` in `x-csrf-token` when given).
    async fn api(
        &mut self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        csrf: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("idempotency-key", format!("k{}", rand::random::<u64>()));
        if let Some(body) = body {
            request = request.json(&body);
        }
        if let Some(token) = csrf {
            request = request.header("x-csrf-token", token);
        }
        let page = self.send(request).await;
        (
            page.status,
            serde_json::from_str(&page.text).unwrap_or(Value::Null),
        )
    }
}

/// The value of the first `name="csrf"` field of a page.
fn csrf_of(html: &str) -> String {
    let start = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[start..].split('"').next().unwrap().to_owned()
}

async fn spawn(database: creditgate_store::testing::TestDatabase) -> TestApp {
    spawn_app_with(database, |config| {
        // The notice worker stays asleep: the links are read from the outbox.
        config.notice_interval_ms = 3_600_000;
        config.sign_in_link_ttl_ms = 60_000;
    })
    .await
}

async fn add_member(app: &TestApp, org: &str, email: &str, role: &str) -> String {
    let reply = app
        .post(
            &As::Operator,
            &format!("/v1/orgs/{org}/members"),
            json!({"email": email, "role": role, "invite": false}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    reply.str("id")
}

/// The secret of the newest pending sign-in link email of `member_id`.
async fn link_secret(app: &TestApp, member_id: &str) -> String {
    let notices = app
        .store
        .due_notices(Timestamp::from_unix_ms(i64::MAX / 2), 1_000)
        .await
        .unwrap();
    notices
        .iter()
        .rev()
        .find(|n| n.member_id.as_deref() == Some(member_id) && n.kind == "member.sign_in")
        .and_then(|n| n.secret.clone())
        .expect("a pending sign-in email")
}

/// Asks for a sign-in link for `email` through the page, as `visitor`.
async fn ask_for_link(visitor: &mut Visitor, email: &str) -> Page {
    let form = visitor.get("/billing/sign-in").await;
    assert_eq!(form.status, StatusCode::OK);
    let csrf = csrf_of(&form.text);
    visitor
        .post("/billing/sign-in", &[("csrf", &csrf), ("email", email)])
        .await
}

/// Uses link `secret` as `visitor`: the page, then its button.
async fn use_link(visitor: &mut Visitor, secret: &str) -> Page {
    let page = visitor.get(&format!("/billing/auth/{secret}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    let csrf = csrf_of(&page.text);
    visitor
        .post(&format!("/billing/auth/{secret}"), &[("csrf", &csrf)])
        .await
}

/// A signed-in visitor for a new member of `org` with `role`, and the session's CSRF token.
async fn signed_in(app: &TestApp, org: &str, role: &str) -> (Visitor, String) {
    let email = format!("{role}-{}@example.com", rand::random::<u32>());
    let member = add_member(app, org, &email, role).await;
    let mut visitor = Visitor::new(app);
    let sent = ask_for_link(&mut visitor, &email).await;
    assert_eq!(sent.status, StatusCode::OK);
    let secret = link_secret(app, &member).await;
    let signed = use_link(&mut visitor, &secret).await;
    assert_eq!(signed.status, StatusCode::SEE_OTHER, "{}", signed.text);
    assert_eq!(signed.location, format!("/billing/{org}"));
    let overview = visitor.get(&format!("/billing/{org}")).await;
    assert_eq!(overview.status, StatusCode::OK, "{}", overview.text);
    let csrf = csrf_of(&overview.text);
    (visitor, csrf)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_link_works_once_and_expires_and_sessions_rotate_and_end() {
    for database in databases().await {
        let app = spawn(database).await;
        let org = app.create_org("Link Co").await;
        let member = add_member(&app, &org, "Ada@Example.com", "owner").await;

        // An unknown address gets the same answer and no email.
        let mut stranger = Visitor::new(&app);
        let unknown = ask_for_link(&mut stranger, "nobody@example.com").await;
        let mut visitor = Visitor::new(&app);
        let known = ask_for_link(&mut visitor, "ada@example.com").await;
        assert_eq!(unknown.status, known.status);
        assert!(known.text.contains("Check your email"));
        assert!(unknown.text.contains("Check your email"));

        // Without the form's CSRF token, no link is sent.
        let mut forger = Visitor::new(&app);
        let forged = forger
            .post("/billing/sign-in", &[("email", "ada@example.com")])
            .await;
        assert!(forged.text.contains("expired"), "{}", forged.text);

        let secret = link_secret(&app, &member).await;
        // The cookie is HttpOnly and SameSite, and the session id is new.
        let response = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .get(format!("{}/billing/auth/{secret}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "the page does not use the link"
        );
        let signed = use_link(&mut visitor, &secret).await;
        assert_eq!(signed.status, StatusCode::SEE_OTHER, "{}", signed.text);
        let first_session = visitor.cookies["cg_session"].clone();
        // Used once: a second use (even by the same browser) is refused.
        let mut again = Visitor::new(&app);
        let reused = use_link(&mut again, &secret).await;
        assert_eq!(reused.status, StatusCode::GONE);
        assert!(reused.text.contains("used already"));
        assert!(!again.cookies.contains_key("cg_session"));

        // Signing in again rotates the session: the old cookie no longer works.
        ask_for_link(&mut visitor, "ada@example.com").await;
        let second = link_secret(&app, &member).await;
        assert_ne!(second, secret);
        let signed = use_link(&mut visitor, &second).await;
        assert_eq!(signed.status, StatusCode::SEE_OTHER);
        let second_session = visitor.cookies["cg_session"].clone();
        assert_ne!(first_session, second_session);
        let mut old = Visitor::new(&app);
        old.cookies.insert("cg_session".into(), first_session);
        let page = old.get(&format!("/billing/{org}")).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER);
        assert!(page.location.starts_with("/billing/sign-in"));

        // Sign-out ends the session.
        let overview = visitor.get(&format!("/billing/{org}")).await;
        assert_eq!(overview.status, StatusCode::OK);
        let csrf = csrf_of(&overview.text);
        let out = visitor
            .post("/billing/sign-out", &[("csrf", "wrong")])
            .await;
        assert_eq!(out.status, StatusCode::FORBIDDEN);
        let out = visitor.post("/billing/sign-out", &[("csrf", &csrf)]).await;
        assert_eq!(out.status, StatusCode::SEE_OTHER);
        assert!(!visitor.cookies.contains_key("cg_session"));
        let mut replay = Visitor::new(&app);
        replay.cookies.insert("cg_session".into(), second_session);
        let page = replay.get(&format!("/billing/{org}")).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER);
        let (status, _) = replay
            .api(
                reqwest::Method::GET,
                &format!("/v1/orgs/{org}/balance"),
                None,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        app.assert_invariants().await;
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_link_is_refused() {
    for database in databases().await {
        let app = spawn_app_with(database, |config| {
            config.notice_interval_ms = 3_600_000;
            config.sign_in_link_ttl_ms = 1;
        })
        .await;
        let org = app.create_org("Expiry Co").await;
        let member = add_member(&app, &org, "late@example.com", "admin").await;
        let mut visitor = Visitor::new(&app);
        ask_for_link(&mut visitor, "late@example.com").await;
        let secret = link_secret(&app, &member).await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let page = use_link(&mut visitor, &secret).await;
        assert_eq!(page.status, StatusCode::GONE);
        assert!(page.text.contains("expired"), "{}", page.text);
        assert!(!visitor.cookies.contains_key("cg_session"));
        // A made-up link is not found.
        let page = use_link(&mut visitor, &"ab".repeat(32)).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND);
        app.assert_invariants().await;
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csrf_is_required_on_forms_and_session_writes() {
    for database in databases().await {
        let app = spawn(database).await;
        let org = app.create_org("Csrf Co").await;
        let (mut visitor, csrf) = signed_in(&app, &org, "owner").await;
        let keys = format!("/billing/{org}/keys");
        for token in ["", "0000", &"f".repeat(64)] {
            let page = visitor.post(&keys, &[("csrf", token), ("name", "x")]).await;
            assert_eq!(page.status, StatusCode::FORBIDDEN, "token {token:?}");
        }
        let page = visitor.post(&keys, &[("name", "x")]).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN);
        let listed = app
            .get(&As::Operator, &format!("/v1/orgs/{org}/keys"))
            .await;
        assert_eq!(listed.body["data"].as_array().unwrap().len(), 0);

        let page = visitor
            .post(&keys, &[("csrf", &csrf), ("name", "prod")])
            .await;
        assert_eq!(page.status, StatusCode::OK);
        let needle = "id=\"new-secret\">";
        let start = page.text.find(needle).expect("the secret is shown") + needle.len();
        let secret: String = page.text[start..]
            .chars()
            .take_while(|c| *c != '<')
            .collect();
        assert!(
            secret.starts_with("cg_live_") && secret.len() > 20,
            "{secret}"
        );
        let listed = app
            .get(&As::Operator, &format!("/v1/orgs/{org}/keys"))
            .await;
        assert_eq!(listed.body["data"].as_array().unwrap().len(), 1);
        let page = visitor.get(&keys).await;
        assert!(
            !page.text.contains(&secret),
            "the secret is shown once only"
        );
        // The org's and each key's rate limits are on the page, in words.
        assert!(page
            .text
            .contains("all keys together: <strong>none</strong>"));
        let patched = app
            .request(
                &As::Operator,
                Method::PATCH,
                &format!("/v1/orgs/{org}"),
                Some(json!({ "rate_limits": { "requests_per_minute": 600 } })),
                &[],
            )
            .await;
        assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
        let page = visitor.get(&keys).await;
        assert!(
            page.text.contains("<strong>600 requests a minute</strong>"),
            "{}",
            page.text
        );

        // The API with the session cookie: reads need no token, writes do.
        let path = format!("/v1/orgs/{org}/keys");
        let (status, _) = visitor.api(reqwest::Method::GET, &path, None, None).await;
        assert_eq!(status, StatusCode::OK);
        let (status, body) = visitor
            .api(
                reqwest::Method::POST,
                &path,
                Some(json!({"name": "a"})),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(body["error"]["code"], "csrf_failed");
        let (status, _) = visitor
            .api(
                reqwest::Method::POST,
                &path,
                Some(json!({"name": "a"})),
                Some("nope"),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, body) = visitor
            .api(
                reqwest::Method::POST,
                &path,
                Some(json!({"name": "a"})),
                Some(&csrf),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        app.assert_invariants().await;
        app.stop().await;
    }
}

/// What each action looks like on the API and on the pages.
struct Probe {
    action: Action,
    method: reqwest::Method,
    path: String,
    body: Option<Value>,
    page: Option<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_can_do_exactly_what_the_role_table_says() {
    for database in databases().await {
        let app = spawn(database).await;
        let org = app.create_org("Roles Co").await;
        app.grant(&org, "50.00").await;
        let b = |p: &str| format!("/billing/{org}{p}");
        let v = |p: &str| format!("/v1/orgs/{org}{p}");
        let probes = vec![
            Probe {
                action: Action::ViewBalance,
                method: reqwest::Method::GET,
                path: v("/balance"),
                body: None,
                page: Some(b("")),
            },
            Probe {
                action: Action::ViewUsage,
                method: reqwest::Method::GET,
                path: v("/balance"),
                body: None,
                page: Some(b("/usage")),
            },
            Probe {
                action: Action::ViewHistory,
                method: reqwest::Method::GET,
                path: v("/transfers"),
                body: None,
                page: Some(b("/history")),
            },
            Probe {
                action: Action::ViewPayments,
                method: reqwest::Method::GET,
                path: v("/payments"),
                body: None,
                page: Some(b("/auto-reload")),
            },
            Probe {
                action: Action::AddCredits,
                method: reqwest::Method::POST,
                path: v("/top_ups"),
                body: Some(json!({"amount": "10.00"})),
                page: Some(b("/credits")),
            },
            Probe {
                action: Action::ManageAutoReload,
                method: reqwest::Method::PUT,
                path: v("/auto_reload"),
                body: Some(
                    json!({"enabled": true, "threshold": "5.00", "amount": "10.00", "monthly_limit": "100.00",
                    "payment_method": "pm_card_visa", "consent": {"accepted_by": "x@example.com", "text_version": "2026-11"}}),
                ),
                page: None,
            },
            Probe {
                action: Action::ViewKeys,
                method: reqwest::Method::GET,
                path: v("/keys"),
                body: None,
                page: Some(b("/keys")),
            },
            Probe {
                action: Action::ManageKeys,
                method: reqwest::Method::POST,
                path: v("/keys"),
                body: Some(json!({"name": "k"})),
                page: None,
            },
            Probe {
                action: Action::ManageSettings,
                method: reqwest::Method::PATCH,
                path: v(""),
                body: Some(json!({"low_thresholds": ["5.00"]})),
                page: Some(b("/settings")),
            },
            Probe {
                action: Action::ViewMembers,
                method: reqwest::Method::GET,
                path: v("/members"),
                body: None,
                page: Some(b("/members")),
            },
            Probe {
                action: Action::ManageMembers,
                method: reqwest::Method::POST,
                path: v("/members"),
                body: Some(
                    json!({"email": "new@example.com", "role": "developer", "invite": false}),
                ),
                page: None,
            },
        ];
        for role in Role::ALL {
            let (mut visitor, csrf) = signed_in(&app, &org, role.as_str()).await;
            for probe in &probes {
                let allowed = allows(role, probe.action);
                let mut body = probe.body.clone();
                if probe.action == Action::ManageMembers {
                    body = Some(
                        json!({"email": format!("{}-new@example.com", role.as_str()), "role": "developer", "invite": false}),
                    );
                }
                let (status, reply) = visitor
                    .api(probe.method.clone(), &probe.path, body, Some(&csrf))
                    .await;
                if allowed {
                    assert!(
                        status.is_success(),
                        "{role:?} {:?}: {status} {reply}",
                        probe.action
                    );
                } else {
                    assert_eq!(
                        status,
                        StatusCode::FORBIDDEN,
                        "{role:?} {:?}: {reply}",
                        probe.action
                    );
                }
                if let Some(page) = &probe.page {
                    let answer = visitor.get(page).await;
                    let expected = if allowed {
                        StatusCode::OK
                    } else {
                        StatusCode::FORBIDDEN
                    };
                    assert_eq!(answer.status, expected, "{role:?} page {page}");
                }
            }
            // Nobody reaches the operator's or the metering routes with a session.
            for (method, path) in [
                (reqwest::Method::POST, v("/grants")),
                (reqwest::Method::GET, "/v1/orgs".to_owned()),
                (reqwest::Method::POST, "/v1/holds".to_owned()),
                (reqwest::Method::GET, "/v1/notices".to_owned()),
            ] {
                let (status, _) = visitor
                    .api(method, &path, Some(json!({"amount": "1.00"})), Some(&csrf))
                    .await;
                assert_eq!(status, StatusCode::FORBIDDEN, "{role:?} {path}");
            }
            // A member's settings change cannot touch the operator's fields.
            let (status, _) = visitor
                .api(
                    reqwest::Method::PATCH,
                    &v(""),
                    Some(json!({"suspended": false})),
                    Some(&csrf),
                )
                .await;
            assert_eq!(status, StatusCode::FORBIDDEN);
        }
        // The consent of a member is recorded as that member's.
        let reload = app.get(&As::Operator, &v("/auto_reload")).await;
        assert!(
            reload.body["consent"]["accepted_by"]
                .as_str()
                .unwrap()
                .ends_with("@example.com")
                && reload.body["consent"]["accepted_by"] != "x@example.com",
            "{:?}",
            reload.body
        );
        app.assert_invariants().await;
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_of_one_org_cannot_see_another_and_an_org_keeps_an_owner() {
    for database in databases().await {
        let app = spawn(database).await;
        let a = app.create_org("A Co").await;
        let b = app.create_org("B Co").await;
        app.grant(&b, "10.00").await;
        let (mut visitor, csrf) = signed_in(&app, &a, "owner").await;
        for page in [
            "",
            "/credits",
            "/usage",
            "/history",
            "/keys",
            "/settings",
            "/members",
        ] {
            let answer = visitor.get(&format!("/billing/{b}{page}")).await;
            assert_eq!(answer.status, StatusCode::NOT_FOUND, "{page}");
            assert!(!answer.text.contains("B Co"));
        }
        for path in ["/balance", "/transfers", "/keys", "/payments", "/members"] {
            let (status, _) = visitor
                .api(
                    reqwest::Method::GET,
                    &format!("/v1/orgs/{b}{path}"),
                    None,
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        }
        let (status, _) = visitor
            .api(
                reqwest::Method::POST,
                &format!("/v1/orgs/{b}/keys"),
                Some(json!({})),
                Some(&csrf),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let page = visitor
            .post(
                &format!("/billing/{b}/keys"),
                &[("csrf", &csrf), ("name", "x")],
            )
            .await;
        assert_eq!(page.status, StatusCode::NOT_FOUND);
        let b_keys = app.get(&As::Operator, &format!("/v1/orgs/{b}/keys")).await;
        assert_eq!(b_keys.body["data"].as_array().unwrap().len(), 0);

        // The only owner cannot be removed or demoted; an admin cannot touch owners.
        let members = app
            .get(&As::Operator, &format!("/v1/orgs/{a}/members"))
            .await;
        let owner = members.body["data"][0]["id"].as_str().unwrap().to_owned();
        let (status, body) = visitor
            .api(
                reqwest::Method::DELETE,
                &format!("/v1/orgs/{a}/members/{owner}"),
                None,
                Some(&csrf),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(body["error"]["code"], "last_owner");
        let operator = app
            .request(
                &As::Operator,
                reqwest::Method::PATCH,
                &format!("/v1/orgs/{a}/members/{owner}"),
                Some(json!({"role": "admin"})),
                &[],
            )
            .await;
        assert_eq!(operator.code(), "last_owner");
        let (mut admin, admin_csrf) = signed_in(&app, &a, "admin").await;
        let (status, body) = admin
            .api(
                reqwest::Method::PATCH,
                &format!("/v1/orgs/{a}/members/{owner}"),
                Some(json!({"role": "developer"})),
                Some(&admin_csrf),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(body["error"]["code"], "owners_only");
        // A removed member's session ends with it.
        let admin_id = app
            .get(&As::Operator, &format!("/v1/orgs/{a}/members"))
            .await
            .body["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["role"] == "admin")
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let (status, _) = visitor
            .api(
                reqwest::Method::DELETE,
                &format!("/v1/orgs/{a}/members/{admin_id}"),
                None,
                Some(&csrf),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let page = admin.get(&format!("/billing/{a}")).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER);
        app.assert_invariants().await;
        app.stop().await;
    }
}
