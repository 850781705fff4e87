//! Several `serve` nodes on one PostgreSQL: each email is sent once. Three nodes run their
//! notice workers every few milliseconds against one database while 24 orgs are credited
//! (each credit writes a receipt notice); a real SMTP server (aiosmtpd) counts what arrives.
//! Before claims, every node read the same due notices and most receipts went out two or
//! three times. After the nodes stop, exactly one email per receipt has arrived, every
//! notice is sent with one attempt, and the ledger invariants hold.
//!
//! And nodes share the secrets they must: a key made through one node authenticates on
//! another; a node with another key-hash secret refuses to start.
//!
//! PostgreSQL only (SQLite is one node's database). Fails without PostgreSQL or aiosmtpd
//! when `CI` is set.

// smtp_support brings its own copy of python_tools.
#![allow(clippy::duplicate_mod)]

mod api_support;
mod smtp_support;

use std::time::Duration;

use api_support::helpers::create_org_with;
use api_support::{spawn_app_with, TestApp};
use creditgate::config::Config;
use creditgate::node::{Application, Parts};
use serde_json::json;
use smtp_support::Smtpd;
use tokio_util::sync::CancellationToken;

/// Orgs credited, each one receipt.
const ORGS: usize = 24;

fn ci() -> bool {
    std::env::var_os("CI").is_some()
}

/// A node's settings: the receipts' SMTP server, a notice worker every 5 ms.
fn node_config(config: &mut Config, smtp_port: u16, node: &str) {
    smtp_support::configure(config, smtp_port);
    config.notice_interval_ms = 5;
    config.node_id = node.to_owned();
}

/// A node's configuration on `app`'s database, with the test's shared secrets.
fn config_on(app: &TestApp, node: &str) -> Config {
    let data_dir = std::env::temp_dir().join(format!(
        "creditgate_node_{node}_{}_{}",
        std::process::id(),
        creditgate::ids::random_hex(6)
    ));
    Config {
        data_dir,
        database_url: app.database_url.clone(),
        listen: "127.0.0.1:0".into(),
        operator_token: api_support::OPERATOR_TOKEN.into(),
        key_hash_secret: "test-key-hash-secret".into(),
        ..Config::default()
    }
}

type Served = tokio::task::JoinHandle<std::io::Result<()>>;

/// Another node on `app`'s database, serving until `shutdown`.
async fn another_node(
    app: &TestApp,
    smtp_port: u16,
    node: &str,
    shutdown: CancellationToken,
) -> (Served, std::path::PathBuf) {
    let mut config = config_on(app, node);
    node_config(&mut config, smtp_port, node);
    let data_dir = config.data_dir.clone();
    let node_app = Application::build(config, Parts::default())
        .await
        .expect("another node starts");
    (tokio::spawn(node_app.run(shutdown)), data_dir)
}

fn other_key_hash_secret(config: &mut Config) {
    config.key_hash_secret = "another".into();
}

/// Nodes share the secret keys depend on: a key made through one node authenticates on
/// another, and a node with another key-hash secret refuses to start, saying so; the
/// operator token stays each node's own (so it can be changed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_share_their_secrets_or_refuse_to_start() {
    let Some(database) = creditgate_store::testing::postgres().await else {
        assert!(!ci(), "PostgreSQL is required when CI is set");
        eprintln!("skipping: no PostgreSQL (set CREDITGATE_TEST_DATABASE_URL)");
        return;
    };
    let app = api_support::spawn_app(database).await;
    let org = create_org_with(&app, "Umbrella", json!({})).await;
    let org_id = org["id"].as_str().expect("id").to_owned();
    app.grant(&org_id, "12.34").await;
    let (_, key) = app.create_key(&org_id).await;

    let config = config_on(&app, "node2");
    let data_dir = config.data_dir.clone();
    let node = Application::build(config, Parts::default())
        .await
        .expect("a node with the same secrets starts");
    let address = node.address();
    let shutdown = CancellationToken::new();
    let served = tokio::spawn(node.run(shutdown.clone()));
    let balance = reqwest::Client::new()
        .get(format!("http://{address}/v1/orgs/{org_id}/balance"))
        .header("x-api-key", &key)
        .send()
        .await
        .expect("node 2 answers");
    assert_eq!(
        balance.status(),
        200,
        "the key made on node 1 works on node 2"
    );
    let body: serde_json::Value = balance.json().await.unwrap();
    assert_eq!(body["available"], "12.34");
    shutdown.cancel();
    served.await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(data_dir);

    let mut config = config_on(&app, "node3");
    other_key_hash_secret(&mut config);
    let data_dir = config.data_dir.clone();
    let error = match Application::build(config, Parts::default()).await {
        Ok(_) => panic!("a node with another key_hash_secret started"),
        Err(error) => error.to_string(),
    };
    assert!(
        error.contains("key_hash_secret differs") && error.contains("give every node the same"),
        "{error}"
    );
    let _ = std::fs::remove_dir_all(data_dir);
    // The operator token is each node's to set (and to change).
    let mut config = config_on(&app, "node4");
    config.operator_token = "op_another".into();
    let data_dir = config.data_dir.clone();
    drop(
        Application::build(config, Parts::default())
            .await
            .expect("another operator token is a node's own business"),
    );
    let _ = std::fs::remove_dir_all(data_dir);
    app.assert_invariants().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_send_each_receipt_once() {
    let Some(database) = creditgate_store::testing::postgres().await else {
        assert!(!ci(), "PostgreSQL is required when CI is set");
        eprintln!("skipping: no PostgreSQL (set CREDITGATE_TEST_DATABASE_URL)");
        return;
    };
    let Some(smtpd) = Smtpd::started().await else {
        assert!(!ci(), "aiosmtpd is required when CI is set");
        eprintln!("skipping: aiosmtpd is unavailable");
        return;
    };
    let port = smtpd.port;
    let app = spawn_app_with(database, move |c| node_config(c, port, "node1")).await;
    let shutdown = CancellationToken::new();
    let mut nodes = Vec::new();
    for node in ["node2", "node3"] {
        nodes.push(another_node(&app, port, node, shutdown.clone()).await);
    }

    // 24 orgs, each credited once (amounts varied): 24 receipt notices, due at once, while
    // three workers poll.
    let mut orgs = Vec::new();
    for i in 0..ORGS {
        let email = format!("billing{i}@initech{i}.example");
        let org = create_org_with(
            &app,
            &format!("Initech {i}"),
            json!({ "billing_emails": [email] }),
        )
        .await;
        let org_id = org["id"].as_str().expect("id").to_owned();
        let cents = 1_000 + 137 * i as i64;
        app.grant(&org_id, &format!("{}.{:02}", cents / 100, cents % 100))
            .await;
        orgs.push(org_id);
    }

    // Every receipt arrives; then the nodes stop (their workers finish what they claimed).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while smtpd.receipts().len() < ORGS {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {ORGS} receipts arrived",
            smtpd.receipts().len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    for (served, data_dir) in nodes {
        served
            .await
            .expect("a node's task")
            .expect("a node stops cleanly");
        let _ = std::fs::remove_dir_all(data_dir);
    }
    let app = app.stopped().await;

    let receipts = smtpd.receipts();
    let mut ids: Vec<&str> = receipts.iter().map(|m| m.message_id.as_str()).collect();
    ids.sort_unstable();
    let sent = ids.len();
    ids.dedup();
    assert_eq!(
        (sent, ids.len()),
        (ORGS, ORGS),
        "each receipt once: {sent} emails for {} notices",
        ids.len()
    );
    let recipients: std::collections::BTreeSet<&str> =
        receipts.iter().map(|m| m.rcpt_to.as_str()).collect();
    assert_eq!(recipients.len(), ORGS, "one receipt per org");
    for org_id in &orgs {
        let notices = app.store.notices(None, Some(org_id), 10).await.unwrap();
        assert!(
            notices.iter().all(|n| n.state == "sent" && n.attempts == 1),
            "{org_id}: {notices:?}"
        );
    }
    app.assert_invariants().await;
}
