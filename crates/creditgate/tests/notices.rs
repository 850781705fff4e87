//! Notices end to end, on both backends: the emails of the billing story delivered to a real
//! SMTP server (aiosmtpd), exactly one "access turned off" email per depletion under a race of
//! 256 holds, delivery after a crash between the commit and the send, an SMTP server that is
//! down for a while, the operator's retry of a parked notice, the warning of credits about
//! to expire, and who the emails go to (billing contacts, owners and admins; a member's
//! sign-in link to that member only).
//!
//! Setup: aiosmtpd (PyPI) is installed once into `target/venv-aiosmtpd` (reused when present;
//! `scripts/test.sh` installs it the same way, both holding `target/venv-aiosmtpd.lock`) and
//! started per test with its Maildir handler; the test reads the delivered mail with Python's
//! `mailbox.Maildir` and `email` packages. When `CI` is set, a failure to install or start it
//! fails the test; otherwise the SMTP tests are skipped with a message.

mod api_support;
mod smtp_support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use api_support::helpers::*;
use api_support::{databases, spawn_app_with, As, TempDir, TestApp, OPERATOR_TOKEN};
use creditgate::config::Config;
use creditgate::node::{Application, Parts};
use creditgate_domain::member::Role;
use creditgate_domain::Timestamp;
use creditgate_store::api::{Added, Member as StoreMember, NewLink};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use smtp_support::{Mail, Smtpd, DELIVERY_MAX, QUIET};
use tokio_util::sync::CancellationToken;

const LOW_SUBJECT: &str = "Your Acme AI credit balance is low";
const OFF_SUBJECT: &str = "[action needed] Your Acme AI API access is turned off";
const BACK_SUBJECT: &str = "Your Acme AI API access is back on";

// ----------------------------------------------------------------------------------------
// The service
// ----------------------------------------------------------------------------------------

/// The org's access notices (operator), newest first; `state` filters when given.
/// Receipts (`credits.added`) are left out, as `Smtpd::mails` leaves their emails out.
async fn notices(app: &TestApp, org_id: &str, state: Option<&str>) -> Vec<Value> {
    all_notices(app, org_id, state)
        .await
        .into_iter()
        .filter(|n| n["kind"] != "credits.added")
        .collect()
}

/// Every notice of the org, receipts included.
async fn all_notices(app: &TestApp, org_id: &str, state: Option<&str>) -> Vec<Value> {
    let mut path = format!("/v1/notices?org_id={org_id}&limit=100");
    if let Some(state) = state {
        path.push_str(&format!("&state={state}"));
    }
    let reply = app.get(&As::Operator, &path).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["data"].as_array().expect("data").clone()
}

/// Waits (≤ 10 s) until the org's notices satisfy `done`; answers them.
async fn wait_notices(app: &TestApp, org_id: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + DELIVERY_MAX;
    loop {
        let items = notices(app, org_id, None).await;
        if done(&items) {
            return items;
        }
        assert!(
            Instant::now() < deadline,
            "notices never got there: {items:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Uses `amount` of the org's credits: a hold settled for all of it.
async fn spend(app: &TestApp, key: &As, amount: &str) {
    let hold = hold_ok(app, key, amount).await;
    settle_amount(app, key, &hold, amount).await;
}

fn subjects(mails: &[Mail]) -> Vec<&str> {
    mails.iter().map(|m| m.subject.as_str()).collect()
}

/// The one email with `message_id` carrying notice `id`.
fn mail_of<'a>(mails: &'a [Mail], notice: &Value) -> &'a Mail {
    let id = notice["id"].as_str().expect("notice id");
    let found: Vec<&Mail> = mails.iter().filter(|m| m.message_id.contains(id)).collect();
    assert_eq!(found.len(), 1, "one email for {id}: {:#?}", subjects(mails));
    found[0]
}

// ----------------------------------------------------------------------------------------
// 1. The billing story against a real SMTP server
// ----------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_billing_story_sends_the_right_emails_over_smtp() {
    for database in databases().await {
        let Some(smtpd) = Smtpd::started().await else {
            return;
        };
        let port = smtpd.port;
        let app = spawn_app_with(database, |c| smtp_support::configure(c, port)).await;
        let org = create_org_with(
            &app,
            "Globex Research",
            json!({ "billing_emails": ["a@x.com", "b@x.com"], "low_thresholds": ["0.50"] }),
        )
        .await;
        let org_id = org["id"].as_str().expect("id").to_owned();
        app.grant(&org_id, "1.00").await;
        let (_, secret) = app.create_key(&org_id).await;
        let key = As::Key(secret);
        // What the first grant to a new org sends is checked on its own (see
        // `a_first_grant_to_a_new_org_sends_no_email`); the story starts after it.
        let before = wait_notices(&app, &org_id, |items| {
            items.iter().all(|n| n["state"] == "sent")
        })
        .await;
        tokio::time::sleep(QUIET).await;
        smtpd.ignore_delivered();
        let before: HashSet<String> = before
            .iter()
            .map(|n| n["id"].as_str().expect("id").to_owned())
            .collect();

        // Below the threshold: one low-balance email to both contacts.
        spend(&app, &key, "0.60").await;
        let mails = smtpd.expect_mails(1).await;
        let low = &mails[0];
        assert_eq!(low.subject, LOW_SUBJECT);
        assert_eq!(low.to, ["a@x.com", "b@x.com"], "{low:#?}");
        assert!(low.rcpt_to.contains("a@x.com") && low.rcpt_to.contains("b@x.com"));
        assert!(low.text.contains("below $0.50"), "{}", low.text);
        assert!(
            low.text.contains("Available balance: $0.40"),
            "{}",
            low.text
        );
        let billing_url = format!("https://billing.example.com/billing/{org_id}");
        assert!(low.text.contains(&billing_url), "{}", low.text);

        // Down to zero: one "turned off" email.
        spend(&app, &key, "0.40").await;
        let mails = smtpd.expect_mails(2).await;
        let items = notices(&app, &org_id, None).await;
        let off_notice = items
            .iter()
            .find(|n| n["kind"] == "access.turned_off")
            .expect("a turned-off notice");
        let off = mail_of(&mails, off_notice);
        assert_eq!(off.subject, OFF_SUBJECT);
        assert_eq!(off.to, ["a@x.com", "b@x.com"], "{off:#?}");
        let text = off.text.replace('\n', " ");
        assert!(
            text.contains("Globex Research is out of usage credits"),
            "{}",
            off.text
        );
        assert!(text.contains("API access is turned off"), "{}", off.text);
        assert!(
            off.text.contains(&format!("\n{billing_url}\n")),
            "{}",
            off.text
        );
        assert!(
            text.contains("auto-reload")
                && text.contains(
                    "Credits are added automatically when your balance reaches a minimum you choose."
                ),
            "{}",
            off.text
        );
        assert!(
            off.text.contains("https://billing.example.com/help"),
            "{}",
            off.text
        );
        assert!(off.html.contains(&billing_url), "{}", off.html);
        assert!(off.html.contains("Globex Research"), "{}", off.html);

        // Refused while depleted: no further email.
        for _ in 0..5 {
            let reply = hold_amount(&app, &key, "0.01").await;
            assert_eq!(reply.status, StatusCode::PAYMENT_REQUIRED, "{}", reply.body);
        }
        smtpd.expect_mails(2).await;

        // Credits land: one "back on" email.
        app.grant(&org_id, "1.00").await;
        let mails = smtpd.expect_mails(3).await;
        let back: Vec<&Mail> = mails.iter().filter(|m| m.subject == BACK_SUBJECT).collect();
        assert_eq!(back.len(), 1, "{:#?}", subjects(&mails));
        assert!(back[0].text.contains("Globex Research has new credits"));
        assert!(back[0].text.contains(&billing_url));

        // Crossing the threshold again (re-armed by the rise): a second low email.
        spend(&app, &key, "0.60").await;
        let mails = smtpd.expect_mails(4).await;
        // Rising above it without depleting, and crossing once more: a third.
        app.grant(&org_id, "0.20").await;
        smtpd.expect_mails(4).await;
        spend(&app, &key, "0.20").await;
        let mails_after = smtpd.expect_mails(5).await;
        assert_eq!(mails.len(), 4);
        let lows = mails_after
            .iter()
            .filter(|m| m.subject == LOW_SUBJECT)
            .count();
        assert_eq!(lows, 3, "{:#?}", subjects(&mails_after));
        assert_eq!(
            mails_after
                .iter()
                .filter(|m| m.subject == OFF_SUBJECT)
                .count(),
            1
        );

        // Every notice is sent, and each email's Message-ID carries its notice's id.
        let items: Vec<Value> = notices(&app, &org_id, None)
            .await
            .into_iter()
            .filter(|n| !before.contains(n["id"].as_str().expect("id")))
            .collect();
        assert_eq!(items.len(), 5, "{items:#?}");
        let mut kinds: Vec<&str> = items.iter().map(|n| n["kind"].as_str().unwrap()).collect();
        kinds.reverse();
        assert_eq!(
            kinds,
            [
                "balance.low",
                "access.turned_off",
                "access.restored",
                "balance.low",
                "balance.low"
            ],
            "{items:#?}"
        );
        for notice in &items {
            assert_eq!(notice["state"], "sent", "{notice}");
            assert!(
                notice["id"].as_str().unwrap().starts_with("ntc_"),
                "{notice}"
            );
            mail_of(&mails_after, notice);
        }
        let ids: HashSet<&str> = mails_after.iter().map(|m| m.message_id.as_str()).collect();
        assert_eq!(ids.len(), 5, "distinct Message-IDs");

        app.assert_invariants().await;
        app.stop().await;
    }
}

/// The first grant to a new org: it never had access, so nothing is "back on" (see
/// `notice::for_transition`); the grant's receipt is the one email.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_grant_sends_its_receipt_and_nothing_else() {
    let mut wrong = Vec::new();
    for database in databases().await {
        let Some(smtpd) = Smtpd::started().await else {
            return;
        };
        let port = smtpd.port;
        let app = spawn_app_with(database, |c| smtp_support::configure(c, port)).await;
        let org_id = create_org_with(
            &app,
            "Umbrella",
            json!({ "billing_emails": ["a@x.com"], "low_thresholds": ["0.50"] }),
        )
        .await["id"]
            .as_str()
            .expect("id")
            .to_owned();
        let grant = app.grant(&org_id, "1.00").await;
        let deadline = Instant::now() + DELIVERY_MAX;
        while smtpd.receipts().is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Give the 20 ms worker many runs to send anything else it would.
        tokio::time::sleep(QUIET).await;
        let items = all_notices(&app, &org_id, None).await;
        let kinds: Vec<&str> = items.iter().filter_map(|n| n["kind"].as_str()).collect();
        let receipts = smtpd.receipts();
        let access = smtpd.mails();
        let receipt_ok = receipts.len() == 1
            && receipts[0].subject == "Receipt: $1.00 of Acme AI credits added"
            && receipts[0]
                .text
                .contains(&format!("Receipt number: {}", grant.str("id")));
        if kinds != ["credits.added"] || !access.is_empty() || !receipt_ok {
            wrong.push(format!(
                "{}: notices {kinds:?}, access emails {:#?}, receipts {:#?}",
                app.backend,
                subjects(&access),
                subjects(&receipts)
            ));
        }
        app.assert_invariants().await;
        app.stop().await;
    }
    assert!(wrong.is_empty(), "a first grant caused {wrong:#?}");
}

// ----------------------------------------------------------------------------------------
// 2. One "turned off" notice per depletion under a race
// ----------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_holds_to_zero_cause_exactly_one_turned_off_email() {
    const RACERS: usize = 256;
    for database in databases().await {
        let data_dir = std::env::temp_dir().join(format!(
            "creditgate_notices_{}_{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let _cleanup = TempDir(data_dir.clone());
        let dir = data_dir.clone();
        let app = spawn_app_with(database, move |c| {
            c.data_dir = dir;
            c.mail = creditgate::config::MailTransport::Files;
            c.product_name = "Acme AI".into();
            c.public_url = "https://billing.example.com".into();
            c.notice_interval_ms = 20;
        })
        .await;
        let org_id = app.create_org("Racer").await;
        // Below the cut-off level (1.00): the first refused racer turns access off.
        app.grant(&org_id, "0.80").await;
        let (_, secret) = app.create_key(&org_id).await;

        let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
        let mut tasks = Vec::new();
        for _ in 0..RACERS {
            let client = app.client.clone();
            let url = format!("{}/v1/holds", app.base);
            let (secret, barrier) = (secret.clone(), barrier.clone());
            tasks.push(tokio::spawn(async move {
                let request = client
                    .post(url)
                    .header("x-api-key", secret)
                    .json(&json!({ "amount": "0.01" }));
                barrier.wait().await;
                request.send().await.expect("the service answers").status()
            }));
        }
        let mut placed = 0;
        for task in tasks {
            match task.await.expect("the racer ends") {
                StatusCode::CREATED => placed += 1,
                StatusCode::PAYMENT_REQUIRED => {}
                other => panic!("unexpected {other}"),
            }
        }
        assert_eq!(placed, 80, "holds placed");

        let sent = wait_notices(&app, &org_id, |items| {
            !items.is_empty() && items.iter().all(|n| n["state"] == "sent")
        })
        .await;
        // More refused holds while depleted change nothing.
        for _ in 0..3 {
            let reply = hold_amount(&app, &As::Key(secret.clone()), "0.01").await;
            assert_eq!(reply.status, StatusCode::PAYMENT_REQUIRED, "{}", reply.body);
        }
        tokio::time::sleep(QUIET).await;
        let items = notices(&app, &org_id, None).await;
        assert_eq!(items.len(), sent.len(), "{items:#?}");
        let off: Vec<&Value> = items
            .iter()
            .filter(|n| n["kind"] == "access.turned_off")
            .collect();
        assert_eq!(off.len(), 1, "one turned-off notice: {items:#?}");
        assert_eq!(off[0]["available"], "0.00", "{}", off[0]);
        let sent_off = notices(&app, &org_id, Some("sent")).await;
        assert_eq!(
            sent_off
                .iter()
                .filter(|n| n["kind"] == "access.turned_off")
                .count(),
            1,
            "{sent_off:#?}"
        );

        let mut files = 0;
        for entry in std::fs::read_dir(data_dir.join("mail")).expect("the mail directory") {
            let path = entry.expect("an entry").path();
            if path.extension().is_some_and(|e| e == "eml") {
                let text = std::fs::read_to_string(&path).expect("an email");
                if text.contains(&format!("Subject: {OFF_SUBJECT}")) {
                    files += 1;
                }
            }
        }
        assert_eq!(files, 1, "one turned-off email file");

        app.assert_invariants().await;
        app.stop().await;
    }
}

// ----------------------------------------------------------------------------------------
// 3. A crash between the commit and the send
// ----------------------------------------------------------------------------------------

/// A request to a bare `Application` as the operator (or with an org key).
async fn call(
    client: &reqwest::Client,
    base: &str,
    key: Option<&str>,
    method: Method,
    path: &str,
    body: Value,
) -> (StatusCode, Value) {
    let mut request = client
        .request(method, format!("{base}{path}"))
        .header("Idempotency-Key", format!("k-{}", rand::random::<u64>()))
        .json(&body);
    request = match key {
        Some(secret) => request.header("x-api-key", secret),
        None => request.bearer_auth(OPERATOR_TOKEN),
    };
    let response = request.send().await.expect("the service answers");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_committed_before_a_crash_is_delivered_after_the_restart_once() {
    for database in databases().await {
        let Some(smtpd) = Smtpd::started().await else {
            return;
        };
        let port = smtpd.port;
        let data_dir = std::env::temp_dir().join(format!(
            "creditgate_notices_{}_{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let _cleanup = TempDir(data_dir.clone());

        // The first life: the worker never gets to run.
        let mut config = Config {
            data_dir: data_dir.clone(),
            database_url: database.url.clone(),
            listen: "127.0.0.1:0".into(),
            operator_token: OPERATOR_TOKEN.into(),
            key_hash_secret: "test-key-hash-secret".into(),
            expiry_interval_ms: 50,
            ..Config::default()
        };
        smtp_support::configure(&mut config, port);
        config.notice_interval_ms = 3_600_000;
        let first = Application::build(config, Parts::default())
            .await
            .expect("the service starts");
        let base = format!("http://{}", first.address());
        let shutdown = CancellationToken::new();
        let served = tokio::spawn(first.run(shutdown.clone()));
        let client = reqwest::Client::new();
        let (status, org) = call(
            &client,
            &base,
            None,
            Method::POST,
            "/v1/orgs",
            json!({ "name": "Initech", "billing_emails": ["a@x.com"] }),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{org}");
        let org_id = org["id"].as_str().expect("id").to_owned();
        let (status, body) = call(
            &client,
            &base,
            None,
            Method::POST,
            &format!("/v1/orgs/{org_id}/grants"),
            json!({ "amount": "0.80", "origin": "paid" }),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (status, key) = call(
            &client,
            &base,
            None,
            Method::POST,
            &format!("/v1/orgs/{org_id}/keys"),
            json!({ "name": "k" }),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{key}");
        let secret = key["secret"].as_str().expect("secret").to_owned();
        let (status, hold) = call(
            &client,
            &base,
            Some(&secret),
            Method::POST,
            "/v1/holds",
            json!({ "amount": "0.80" }),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{hold}");
        // The next call is refused for lack of credits: that turns access off.
        let (status, refused) = call(
            &client,
            &base,
            Some(&secret),
            Method::POST,
            "/v1/holds",
            json!({ "amount": "0.05" }),
        )
        .await;
        assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{refused}");
        let (status, list) = call(
            &client,
            &base,
            None,
            Method::GET,
            &format!("/v1/notices?org_id={org_id}"),
            Value::Null,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{list}");
        // Every notice committed so far is pending (access notices; the grant's receipt is
        // pending too, and left out here as `Smtpd::mails` leaves its email out).
        let pending: Vec<Value> = list["data"]
            .as_array()
            .expect("data")
            .iter()
            .filter(|n| n["kind"] != "credits.added")
            .cloned()
            .collect();
        assert!(!pending.is_empty(), "{list}");
        for notice in &pending {
            assert_eq!(notice["state"], "pending", "{list}");
            assert_eq!(notice["attempts"], 0, "{list}");
        }
        let off: Vec<&Value> = pending
            .iter()
            .filter(|n| n["kind"] == "access.turned_off")
            .collect();
        assert_eq!(off.len(), 1, "{list}");
        let off_id = off[0]["id"].as_str().expect("id").to_owned();
        shutdown.cancel();
        served
            .await
            .expect("the server task ends")
            .expect("the server stops");
        assert!(smtpd.mails().is_empty(), "nothing sent before the crash");

        // The second life: the worker delivers it, once.
        let dir = data_dir.clone();
        let app = spawn_app_with(database, move |c| {
            smtp_support::configure(c, port);
            c.data_dir = dir;
        })
        .await;
        let mails = smtpd.expect_mails(pending.len()).await;
        let items = wait_notices(&app, &org_id, |items| {
            items.iter().all(|n| n["state"] == "sent")
        })
        .await;
        assert_eq!(items.len(), pending.len(), "{items:#?}");
        for notice in &items {
            // Delivered on the first attempt after the restart, one email per notice.
            assert_eq!(notice["attempts"], 1, "{notice}");
            mail_of(&mails, notice);
        }
        let off = mails
            .iter()
            .find(|m| m.message_id.contains(&off_id))
            .expect("the turned-off email");
        assert_eq!(off.subject, OFF_SUBJECT);
        assert_eq!(off.to, ["a@x.com"]);
        assert_eq!(smtpd.expect_mails(pending.len()).await.len(), mails.len());

        app.assert_invariants().await;
        app.stop().await;
    }
}

// ----------------------------------------------------------------------------------------
// 4. The SMTP server down for a while
// ----------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_wait_while_smtp_is_down_and_go_out_when_it_is_back() {
    for database in databases().await {
        let Some(mut smtpd) = Smtpd::new().await else {
            return;
        };
        let port = smtpd.port;
        let app = spawn_app_with(database, |c| {
            smtp_support::configure(c, port);
            c.notice_attempts_max = 50;
        })
        .await;
        let org_id = create_org_with(
            &app,
            "Hooli",
            json!({ "billing_emails": ["a@x.com"], "low_thresholds": ["0.50"] }),
        )
        .await["id"]
            .as_str()
            .expect("id")
            .to_owned();
        app.grant(&org_id, "1.00").await;
        let (_, secret) = app.create_key(&org_id).await;
        let key = As::Key(secret);
        spend(&app, &key, "0.60").await;
        spend(&app, &key, "0.40").await;

        // Both notices fail and wait, pending, with the reason.
        let items = wait_notices(&app, &org_id, |items| {
            ["balance.low", "access.turned_off"]
                .iter()
                .all(|kind| items.iter().any(|n| n["kind"] == *kind))
                && items
                    .iter()
                    .all(|n| n["attempts"].as_u64() > Some(0) && n["last_error"].is_string())
        })
        .await;
        for notice in &items {
            assert_eq!(notice["state"], "pending", "{notice}");
        }

        // Back up: the back-off brings both (1 s, 2 s, … after the failures so far).
        smtpd.start().await;
        // Every notice goes out once (the first grant's too, while
        // `a_first_grant_to_a_new_org_sends_no_email` fails).
        let mails = smtpd.expect_mails(items.len()).await;
        for subject in [OFF_SUBJECT, LOW_SUBJECT] {
            let count = mails.iter().filter(|m| m.subject == subject).count();
            assert_eq!(count, 1, "{subject}: {:#?}", subjects(&mails));
        }
        let sent = wait_notices(&app, &org_id, |items| {
            items.iter().all(|n| n["state"] == "sent")
        })
        .await;
        assert_eq!(sent.len(), items.len(), "none lost, none added: {sent:#?}");
        for notice in &sent {
            mail_of(&mails, notice);
        }

        app.assert_invariants().await;
        app.stop().await;
    }
}

// ----------------------------------------------------------------------------------------
// 5. Parked notices and the operator's retry
// ----------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_notice_is_retried_by_the_operator() {
    for database in databases().await {
        let Some(mut smtpd) = Smtpd::new().await else {
            return;
        };
        let port = smtpd.port;
        let app = spawn_app_with(database, |c| {
            smtp_support::configure(c, port);
            c.notice_attempts_max = 1;
        })
        .await;
        let org_id = app.create_org("Pied Piper").await;
        app.grant(&org_id, "0.60").await;
        let (_, secret) = app.create_key(&org_id).await;
        let key = As::Key(secret.clone());
        hold_ok(&app, &key, "0.60").await;
        let refused = hold_amount(&app, &key, "0.05").await;
        assert_eq!(
            refused.status,
            StatusCode::PAYMENT_REQUIRED,
            "{}",
            refused.body
        );

        // One failed attempt parks it.
        let off_of = |items: &[Value]| {
            items
                .iter()
                .find(|n| n["kind"] == "access.turned_off")
                .cloned()
        };
        let items = wait_notices(&app, &org_id, |items| {
            off_of(items).is_some_and(|n| n["state"] == "parked")
        })
        .await;
        let parked = &off_of(&items).expect("the turned-off notice");
        assert_eq!(parked["kind"], "access.turned_off", "{parked}");
        assert_eq!(parked["attempts"], 1, "{parked}");
        assert!(parked["last_error"].is_string(), "{parked}");
        let id = parked["id"].as_str().expect("id").to_owned();
        let listed = app
            .get(&As::Operator, "/v1/notices?state=parked&limit=100")
            .await;
        assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
        assert!(
            listed.body["data"]
                .as_array()
                .expect("data")
                .iter()
                .any(|n| n["id"] == id.as_str()),
            "{}",
            listed.body
        );
        // Parked stays parked: the worker leaves it alone.
        tokio::time::sleep(QUIET).await;
        let again = off_of(&notices(&app, &org_id, None).await).expect("the notice");
        assert_eq!(again["state"], "parked", "{again}");
        assert_eq!(again["attempts"], 1, "{again}");

        // Org keys may not list or retry.
        let retry_path = format!("/v1/notices/{id}/retry");
        let reply = app.post(&key, &retry_path, json!({})).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
        let reply = app.get(&key, "/v1/notices").await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
        // Unknown notice.
        let reply = app
            .post(
                &As::Operator,
                "/v1/notices/ntc_nosuchnotice/retry",
                json!({}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.body);

        // The server is back; the operator retries; it goes out once.
        smtpd.start().await;
        let reply = app.post(&As::Operator, &retry_path, json!({})).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert_eq!(reply.body["id"], id.as_str(), "{}", reply.body);
        assert_eq!(reply.body["state"], "pending", "{}", reply.body);
        let mails = smtpd.expect_mails(1).await;
        assert_eq!(mails[0].subject, OFF_SUBJECT);
        assert!(mails[0].message_id.contains(&id), "{:?}", mails[0]);
        wait_notices(&app, &org_id, |items| {
            off_of(items).is_some_and(|n| n["state"] == "sent")
        })
        .await;

        // A sent notice cannot be retried.
        let reply = app.post(&As::Operator, &retry_path, json!({})).await;
        assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.body);
        assert_eq!(reply.code(), "notice_already_sent", "{}", reply.body);
        smtpd.expect_mails(1).await;

        app.assert_invariants().await;
        app.stop().await;
    }
}

// ----------------------------------------------------------------------------------------
// 6. Credits about to expire, and who the emails go to
// ----------------------------------------------------------------------------------------

/// Now, in unix milliseconds (the service runs on the system clock).
fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970");
    i64::try_from(since.as_millis()).expect("in range")
}

/// Grants `amount` of `origin` credits expiring at `expires_at_s` (unix seconds) when given
/// (operator); answers the grant's id.
async fn grant_expiring(
    app: &TestApp,
    org_id: &str,
    amount: &str,
    origin: &str,
    expires_at_s: Option<i64>,
) -> String {
    let key = format!("grant-{}", rand::random::<u64>());
    let reply = app
        .post_idempotent(
            &As::Operator,
            &format!("/v1/orgs/{org_id}/grants"),
            &key,
            json!({ "amount": amount, "origin": origin, "expires_at": expires_at_s }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.str("id")
}

/// A member of `org_id` added by the operator straight into the store.
async fn add_member(app: &TestApp, org_id: &str, email: &str, role: Role) -> StoreMember {
    let now = Timestamp::from_unix_ms(now_ms());
    let member = StoreMember {
        id: format!("mem_{}", rand::random::<u64>()),
        org_id: org_id.to_owned(),
        email: email.to_owned(),
        name: String::new(),
        role,
        invited_by: "operator".into(),
        created_at: now,
        updated_at: now,
        last_sign_in_at: None,
    };
    let added = app
        .store
        .add_member(&member, None, None, now)
        .await
        .expect("the member is added");
    assert!(matches!(added, Added::Added(_)), "{added:?}");
    member
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_expiring_within_the_lead_time_is_warned_about_once() {
    const DAY_S: i64 = 86_400;
    for database in databases().await {
        let Some(smtpd) = Smtpd::started().await else {
            return;
        };
        let port = smtpd.port;
        // The expiry worker (which writes the warnings) runs every 50 ms.
        let app = spawn_app_with(database, |c| smtp_support::configure(c, port)).await;
        let org_id = app.create_org("Soylent").await;
        let now_s = now_ms() / 1000;
        // Beyond the 7-day lead time, or without an expiry: not warned (yet). Inside it:
        // warned, with the balance of all three (it is made last).
        grant_expiring(&app, &org_id, "5.00", "paid", Some(now_s + 30 * DAY_S)).await;
        grant_expiring(&app, &org_id, "1.00", "paid", None).await;
        let soon_s = now_s + 2 * DAY_S;
        let soon = grant_expiring(&app, &org_id, "20.00", "promotional", Some(soon_s)).await;

        let mails = smtpd.expect_mails(1).await;
        let mail = &mails[0];
        let expires = creditgate_domain::notice::format_utc(Timestamp::from_unix_ms(soon_s * 1000));
        let day = &expires[.."2026-11-24".len()];
        assert_eq!(
            mail.subject,
            format!("$20.00 of your Acme AI credits expire on {day}")
        );
        assert_eq!(mail.to, ["billing@example.com"], "{mail:#?}");
        let lines: Vec<&str> = mail.text.lines().collect();
        assert!(lines.contains(&"Credits expiring: $20.00"), "{}", mail.text);
        assert!(
            lines.contains(&format!("Expires: {expires}").as_str()),
            "{}",
            mail.text
        );
        assert!(
            lines.contains(&"Available balance: $26.00"),
            "{}",
            mail.text
        );
        let billing_url = format!("https://billing.example.com/billing/{org_id}");
        assert!(lines.contains(&billing_url.as_str()), "{}", mail.text);
        assert!(mail.html.contains(&billing_url), "{}", mail.html);

        // Many more runs of both workers (`expect_mails` watched a while): still one, sent.
        smtpd.expect_mails(1).await;
        let warnings: Vec<Value> = notices(&app, &org_id, None)
            .await
            .into_iter()
            .filter(|n| n["kind"] == "credits.expiring")
            .collect();
        assert_eq!(warnings.len(), 1, "{warnings:#?}");
        assert_eq!(warnings[0]["state"], "sent", "{}", warnings[0]);
        let id = warnings[0]["id"].as_str().expect("id");
        mail_of(&mails, &warnings[0]);
        let stored = app
            .store
            .notice(id)
            .await
            .expect("the notice loads")
            .expect("the notice");
        assert_eq!(stored.amount, Some("20.00".parse().expect("an amount")));
        assert_eq!(stored.transfer_id.as_deref(), Some(soon.as_str()));
        assert_eq!(
            stored.retry_at,
            Some(Timestamp::from_unix_ms(soon_s * 1000))
        );

        app.assert_invariants().await;
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn org_emails_go_to_billing_contacts_owners_and_admins_not_developers() {
    for database in databases().await {
        let Some(smtpd) = Smtpd::started().await else {
            return;
        };
        let port = smtpd.port;
        let app = spawn_app_with(database, |c| smtp_support::configure(c, port)).await;
        let org_id = create_org_with(
            &app,
            "Tyrell",
            json!({ "billing_emails": ["Billing@Tyrell.example"] }),
        )
        .await["id"]
            .as_str()
            .expect("id")
            .to_owned();
        add_member(&app, &org_id, "owner@tyrell.example", Role::Owner).await;
        // The same address as the billing contact, but for its case: one copy.
        add_member(&app, &org_id, "billing@tyrell.example", Role::Admin).await;
        add_member(&app, &org_id, "dev@tyrell.example", Role::Developer).await;
        app.grant(&org_id, "1.00").await;
        let (_, secret) = app.create_key(&org_id).await;
        spend(&app, &As::Key(secret), "1.00").await;

        let mails = smtpd.expect_mails(1).await;
        let off = &mails[0];
        assert_eq!(off.subject, OFF_SUBJECT);
        assert_eq!(
            off.to,
            ["Billing@Tyrell.example", "owner@tyrell.example"],
            "{off:#?}"
        );
        assert!(!off.rcpt_to.contains("dev@"), "{off:#?}");
        // The receipt went to the same people.
        let receipts = smtpd.receipts();
        assert_eq!(receipts.len(), 1, "{:#?}", subjects(&receipts));
        assert_eq!(receipts[0].to, off.to);

        app.assert_invariants().await;
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_link_goes_to_its_member_only() {
    for database in databases().await {
        let Some(smtpd) = Smtpd::started().await else {
            return;
        };
        let port = smtpd.port;
        let app = spawn_app_with(database, |c| smtp_support::configure(c, port)).await;
        let org_id = app.create_org("Cyberdyne").await;
        let developer = add_member(&app, &org_id, "dev@cyberdyne.example", Role::Developer).await;
        let expires_at = Timestamp::from_unix_ms(now_ms() + 15 * 60_000);
        let notice_id = format!("ntc_signin{}", rand::random::<u32>());
        let secret = format!("sgn{}", rand::random::<u64>());
        let link = NewLink {
            token_hash: format!("hash_{secret}"),
            secret: secret.clone(),
            expires_at,
            notice_id: notice_id.clone(),
            notice_kind: "member.sign_in",
        };
        app.store
            .create_sign_in_link(&developer, &link, Timestamp::from_unix_ms(now_ms()))
            .await
            .expect("the link is written");

        let mails = smtpd.expect_mails(1).await;
        let mail = &mails[0];
        assert_eq!(mail.subject, "Your sign-in link for Acme AI billing");
        assert_eq!(mail.to, ["dev@cyberdyne.example"], "{mail:#?}");
        assert!(!mail.rcpt_to.contains("billing@example.com"), "{mail:#?}");
        assert!(mail.message_id.contains(&notice_id), "{mail:#?}");
        let url = format!("https://billing.example.com/billing/auth/{secret}");
        assert!(mail.text.lines().any(|l| l == url), "{}", mail.text);
        let until = creditgate_domain::notice::format_utc(expires_at);
        assert!(
            mail.text
                .replace('\n', " ")
                .contains(&format!("The link works once, until {until}.")),
            "{}",
            mail.text
        );
        assert!(mail.html.contains(&url), "{}", mail.html);
        // Sent: the secret is gone from the outbox.
        let deadline = Instant::now() + DELIVERY_MAX;
        let stored = loop {
            let stored = app
                .store
                .notice(&notice_id)
                .await
                .expect("the notice loads")
                .expect("the notice");
            if stored.state == "sent" || Instant::now() >= deadline {
                break stored;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(stored.state, "sent", "{stored:?}");
        assert_eq!(stored.secret, None, "{stored:?}");

        app.assert_invariants().await;
        app.stop().await;
    }
}
