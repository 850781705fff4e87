//! The proxy owns its calls' lifetime, on both backends: a call slower than the API's
//! `request_timeout_ms` is answered and charged; a stream longer than the default hold TTL is
//! charged its usage (its hold lives as long as the call's own limit); a call creditgate gives
//! up on after forwarding is charged its hold and answered with `x-should-retry: false`, which
//! the official SDK obeys (one request upstream); a call past `proxy_call_ms_max` is cut and
//! charged its hold; a hold closed under a running call still gets its usage recorded; SIGTERM
//! with a stream in flight lets it finish and settle; kill -9 mid-stream leaves a hold that
//! the next start of the same node settles at its amount and lists for the operator. Each test
//! ends with the ledger invariants.

#![cfg(unix)]
// sdk_support and smtp_support each bring their own copy of python_tools.
#![allow(clippy::duplicate_mod)]

mod api_support;
mod sdk_support;
mod smtp_support;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use api_support::{databases, spawn_app_with, As, TestApp, OPERATOR_TOKEN};
use creditgate_store::testing::TestDatabase;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt;

/// The Anthropic-style call every test makes, streamed or not, with demo-upstream hooks.
async fn call(
    client: &reqwest::Client,
    base: &str,
    secret: &str,
    stream: bool,
    hooks: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = client
        .post(format!("{base}/anthropic/v1/messages"))
        .header("x-api-key", secret)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({
            "model": "claude-demo",
            "max_tokens": 64,
            "stream": stream,
            "messages": [{"role": "user", "content": "How long is a piece of string?"}],
        }));
    for (name, value) in hooks {
        request = request.header(*name, *value);
    }
    request.send().await.expect("the proxy answers")
}

/// Prices the demo model and makes an org with 10.00 and a key: (org, secret).
async fn org(app: &TestApp) -> (String, String) {
    app.set_price("claude-demo", "3.00", "15.00").await;
    let org = app.create_org("Lifetime").await;
    app.grant(&org, "10.00").await;
    let (_, secret) = app.create_key(&org).await;
    (org, secret)
}

/// The org's usage charges (newest first): (amount, hold id).
async fn usage_charges(app: &TestApp, org: &str) -> Vec<(String, Option<String>)> {
    let reply = app
        .get(
            &As::Operator,
            &format!("/v1/orgs/{org}/transfers?limit=100"),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter(|t| t["kind"] == "usage")
        .map(|t| {
            (
                t["amount"].as_str().unwrap_or("").to_owned(),
                t["hold_id"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

/// Waits (≤ 10 s) until the org has `count` usage charges and no credits held.
async fn settled(app: &TestApp, org: &str, count: usize) -> Vec<(String, Option<String>)> {
    let started = Instant::now();
    loop {
        let charges = usage_charges(app, org).await;
        let reserved = app.balance(org).await.str("reserved");
        if charges.len() >= count && reserved == "0.00" {
            return charges;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "not settled: {charges:?}, reserved {reserved}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What a fast call of the same shape is charged (the demo upstream's usage is fixed).
async fn reference_charge(app: &TestApp, org: &str, secret: &str, stream: bool) -> String {
    let before = usage_charges(app, org).await.len();
    let answer = call(&app.client, &app.base, secret, stream, &[]).await;
    assert_eq!(answer.status(), StatusCode::OK);
    let _ = answer.bytes().await;
    settled(app, org, before + 1).await[0].0.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_slower_than_the_api_timeout_is_answered_and_charged() {
    for database in databases().await {
        let app = spawn_app_with(database, |c| c.request_timeout_ms = 300).await;
        let (org, secret) = org(&app).await;
        let plain = reference_charge(&app, &org, &secret, false).await;
        let streamed = reference_charge(&app, &org, &secret, true).await;
        let started = Instant::now();
        let slow = call(
            &app.client,
            &app.base,
            &secret,
            false,
            &[("x-demo-delay-ms", "700")],
        )
        .await;
        assert_eq!(slow.status(), StatusCode::OK, "past request_timeout_ms");
        let body: Value = slow.json().await.expect("a JSON body");
        assert!(started.elapsed() >= Duration::from_millis(700));
        assert!(body["usage"]["output_tokens"].as_u64().is_some(), "{body}");
        let slow_stream = call(
            &app.client,
            &app.base,
            &secret,
            true,
            &[("x-demo-event-delay-ms", "40")],
        )
        .await;
        assert_eq!(slow_stream.status(), StatusCode::OK);
        let text = slow_stream.text().await.expect("the stream");
        assert!(text.contains("message_stop"), "{text}");
        let charges = settled(&app, &org, 4).await;
        assert_eq!(
            charges[1].0, plain,
            "the slow call is charged as a fast one"
        );
        assert_eq!(charges[0].0, streamed, "the slow stream too");
        app.assert_invariants().await;
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_longer_than_the_default_hold_ttl_is_charged_its_usage() {
    for database in databases().await {
        let app = spawn_app_with(database, |c| {
            c.hold_ttl_s_default = 1;
            c.expiry_interval_ms = 20;
        })
        .await;
        let (org, secret) = org(&app).await;
        let streamed = reference_charge(&app, &org, &secret, true).await;
        let started = Instant::now();
        let long = call(
            &app.client,
            &app.base,
            &secret,
            true,
            &[("x-demo-event-delay-ms", "60")],
        )
        .await;
        let text = long.text().await.expect("the stream");
        assert!(
            started.elapsed() > Duration::from_millis(1_300),
            "longer than the 1 s default TTL: {:?}",
            started.elapsed()
        );
        assert!(text.contains("message_stop"));
        let charges = settled(&app, &org, 2).await;
        assert_eq!(
            charges[0].0, streamed,
            "charged its usage, on {}",
            app.backend
        );
        let hold = charges[0].1.clone().expect("a hold");
        let hold = app.get(&As::Operator, &format!("/v1/holds/{hold}")).await;
        assert_eq!(hold.str("state"), "settled", "{}", hold.body);
        let ttl =
            hold.body["expires_at"].as_i64().unwrap() - hold.body["created_at"].as_i64().unwrap();
        assert!(
            ttl >= 600,
            "the hold lives as long as the call may: {ttl} s"
        );
        app.assert_invariants().await;
        app.stop().await;
    }
}

/// An upstream that accepts connections, reads nothing and never answers; counts them.
struct Silent {
    url: String,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn silent_upstream() -> Silent {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    let task = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            open.push(socket);
        }
    });
    Silent {
        url,
        accepted,
        task,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn giving_up_after_forwarding_charges_the_hold_and_the_sdk_does_not_retry() {
    let silent = silent_upstream().await;
    for database in databases().await {
        let url = silent.url.clone();
        let app = spawn_app_with(database, move |c| {
            c.openai_upstream = url.clone().into();
            c.anthropic_upstream = url.into();
            c.upstream_timeout_ms = 300;
        })
        .await;
        app.set_price("gpt-demo", "2.50", "10.00").await;
        let (org, secret) = org(&app).await;
        let answer = call(&app.client, &app.base, &secret, false, &[]).await;
        assert_eq!(answer.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(
            answer
                .headers()
                .get("x-should-retry")
                .and_then(|v| v.to_str().ok()),
            Some("false")
        );
        let charges = settled(&app, &org, 1).await;
        let hold = charges[0].1.clone().expect("a hold");
        let hold = app.get(&As::Operator, &format!("/v1/holds/{hold}")).await;
        assert_eq!(
            charges[0].0,
            hold.str("amount"),
            "charged the hold: the upstream may bill it"
        );
        // The official SDK, with retries on, sends it once.
        if let Some(python) = sdk_support::sdk_python().await {
            let before = silent.accepted.load(std::sync::atomic::Ordering::SeqCst);
            let script = format!(
                "import openai\n\
                 c = openai.OpenAI(base_url={base:?} + '/openai/v1', api_key={secret:?}, max_retries=2, timeout=20)\n\
                 try:\n    c.chat.completions.create(model='gpt-demo', max_tokens=16, messages=[{{'role': 'user', 'content': 'hi'}}])\n    print('answered')\n\
                 except openai.APIStatusError as e:\n    print(e.status_code)\n",
                base = app.base,
            );
            let out = tokio::process::Command::new(&python)
                .arg("-c")
                .arg(script)
                .output()
                .await
                .expect("python runs");
            assert_eq!(
                String::from_utf8_lossy(&out.stdout).trim(),
                "504",
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let after = silent.accepted.load(std::sync::atomic::Ordering::SeqCst);
            assert_eq!(after - before, 1, "one request upstream, no retry");
            settled(&app, &org, 2).await;
        }
        app.assert_invariants().await;
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_past_its_limit_is_cut_and_charged_its_hold() {
    for database in databases().await {
        let app = spawn_app_with(database, |c| c.proxy_call_ms_max = 600).await;
        let (org, secret) = org(&app).await;
        let started = Instant::now();
        let cut = call(
            &app.client,
            &app.base,
            &secret,
            true,
            &[("x-demo-event-delay-ms", "150")],
        )
        .await;
        let text = cut.text().await.expect("what came");
        assert!(started.elapsed() < Duration::from_secs(3));
        assert!(!text.contains("message_stop"), "cut before its end");
        let late = call(
            &app.client,
            &app.base,
            &secret,
            false,
            &[("x-demo-delay-ms", "900")],
        )
        .await;
        assert_eq!(late.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(
            late.headers()
                .get("x-should-retry")
                .and_then(|v| v.to_str().ok()),
            Some("false")
        );
        let charges = settled(&app, &org, 2).await;
        for (amount, hold) in charges {
            let hold = app
                .get(&As::Operator, &format!("/v1/holds/{}", hold.unwrap()))
                .await;
            assert_eq!(amount, hold.str("amount"), "charged the hold");
        }
        app.assert_invariants().await;
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_closed_under_a_running_call_still_gets_its_usage_recorded() {
    for database in databases().await {
        let app = spawn_app_with(database, |_| {}).await;
        let (org, secret) = org(&app).await;
        let streamed = reference_charge(&app, &org, &secret, true).await;
        let (client, base, key) = (app.client.clone(), app.base.clone(), secret.clone());
        let running = tokio::spawn(async move {
            call(
                &client,
                &base,
                &key,
                true,
                &[("x-demo-event-delay-ms", "30")],
            )
            .await
            .text()
            .await
        });
        // Someone voids the call's hold while it streams.
        let hold = in_flight(&app.store).await;
        let voided = app
            .post(
                &As::Operator,
                &format!("/v1/holds/{}/void", hold.id.as_str()),
                json!({}),
            )
            .await;
        assert_eq!(voided.status, StatusCode::OK, "{}", voided.body);
        let text = running.await.unwrap().expect("the stream");
        assert!(text.contains("message_stop"));
        let charges = settled(&app, &org, 2).await;
        assert_eq!(charges[0].0, streamed, "its usage, recorded all the same");
        assert_eq!(
            charges[0].1, None,
            "as a usage event, its hold being closed"
        );
        app.assert_invariants().await;
        app.stop().await;
    }
}

// ----------------------------------------------------------------------------------------
// The binary: SIGTERM and kill -9 with a call in flight
// ----------------------------------------------------------------------------------------

/// `creditgate serve` on `database` with `data_dir` (its node id lives there).
struct Server {
    child: tokio::process::Child,
    base: String,
}

impl Server {
    async fn start(database: &TestDatabase, data_dir: &PathBuf) -> Server {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_creditgate"));
        command.arg("serve");
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("CREDITGATE_") || name.to_ascii_lowercase().ends_with("_proxy") {
                command.env_remove(&*name);
            }
        }
        let mut child = command
            .env("CREDITGATE_DATA_DIR", data_dir)
            .env("CREDITGATE_DATABASE_URL", &database.url)
            .env("CREDITGATE_LISTEN", "127.0.0.1:0")
            .env("CREDITGATE_OPERATOR_TOKEN", OPERATOR_TOKEN)
            .env("CREDITGATE_KEY_HASH_SECRET", "lifetime-key-hash-secret")
            .env("CREDITGATE_NOTICE_INTERVAL_MS", "3600000")
            .env("CREDITGATE_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("creditgate serve starts");
        let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let deadline = Instant::now() + Duration::from_secs(30);
        let base = loop {
            let line = tokio::time::timeout_at(deadline.into(), lines.next_line())
                .await
                .expect("the server says where it listens")
                .unwrap()
                .expect("a line");
            if let Some(rest) = line.split("creditgate listening on ").nth(1) {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
        };
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Server { child, base }
    }

    fn signal(&self, signal: i32) {
        let pid = self.child.id().expect("running");
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("kill runs");
        assert!(status.success());
    }
}

/// Sets up prices, an org with 10.00 and a key on a running server: (org, secret).
async fn seed(client: &reqwest::Client, base: &str) -> (String, String) {
    let post = |path: &str, body: Value| {
        client
            .post(format!("{base}{path}"))
            .bearer_auth(OPERATOR_TOKEN)
            .header("Idempotency-Key", format!("k{}", rand::random::<u64>()))
            .json(&body)
            .send()
    };
    let price = client
        .put(format!("{base}/v1/prices/claude-demo"))
        .bearer_auth(OPERATOR_TOKEN)
        .json(&json!({"input": "3.00", "output": "15.00"}))
        .send()
        .await
        .unwrap();
    assert!(price.status().is_success());
    let org: Value = post("/v1/orgs", json!({"name": "Crashed"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let org = org["id"].as_str().unwrap().to_owned();
    let grant = post(
        &format!("/v1/orgs/{org}/grants"),
        json!({"amount": "10.00", "origin": "paid"}),
    )
    .await
    .unwrap();
    assert!(grant.status().is_success());
    let key: Value = post(&format!("/v1/orgs/{org}/keys"), json!({}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (org, key["secret"].as_str().unwrap().to_owned())
}

fn data_dir(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "creditgate_lifetime_{label}_{}_{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Waits until one of the node's proxy holds is open: the call is in flight.
async fn in_flight(store: &creditgate_store::Store) -> creditgate_domain::ledger::Hold {
    let started = Instant::now();
    loop {
        let open = store
            .open_holds_marked(
                "n=",
                creditgate_domain::Timestamp::from_unix_ms(i64::MAX),
                10,
            )
            .await
            .unwrap();
        if let Some(hold) = open.into_iter().next() {
            return hold;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no call in flight"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_is_settled_at_the_next_start_and_listed() {
    for database in databases().await {
        let dir = data_dir("kill");
        let store = database.open().await.unwrap();
        let server = Server::start(&database, &dir).await;
        let client = reqwest::Client::new();
        let (org, secret) = seed(&client, &server.base).await;
        let (c, base, key) = (client.clone(), server.base.clone(), secret.clone());
        let running = tokio::spawn(async move {
            let answer = call(&c, &base, &key, true, &[("x-demo-event-delay-ms", "100")]).await;
            answer.text().await
        });
        let hold = in_flight(&store).await;
        server.signal(9);
        let _ = running.await;
        drop(server);
        let again = Server::start(&database, &dir).await;
        let reply: Value = client
            .get(format!("{}/v1/proxy/recoveries", again.base))
            .bearer_auth(OPERATOR_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let listed = reply["data"].as_array().expect("data");
        assert_eq!(listed.len(), 1, "{reply}");
        assert_eq!(listed[0]["hold_id"], hold.id.as_str(), "{reply}");
        assert_eq!(listed[0]["org_id"], org.as_str(), "{reply}");
        let settled = store.hold(hold.id.as_str()).await.unwrap().unwrap();
        assert_eq!(
            settled.settled_amount,
            Some(hold.amount),
            "charged at its hold (kill -9 on {})",
            database.url
        );
        let report = store.check_invariants().await.unwrap();
        assert!(report.is_ok(), "{report:?}");
        drop(again);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_stream_in_flight_finish_and_settle() {
    for database in databases().await {
        let dir = data_dir("term");
        let store = database.open().await.unwrap();
        let mut server = Server::start(&database, &dir).await;
        let client = reqwest::Client::new();
        let (_, secret) = seed(&client, &server.base).await;
        let (c, base, key) = (client.clone(), server.base.clone(), secret.clone());
        let running = tokio::spawn(async move {
            let answer = call(&c, &base, &key, true, &[("x-demo-event-delay-ms", "30")]).await;
            answer.text().await
        });
        let hold = in_flight(&store).await;
        server.signal(15);
        let text = running.await.unwrap().expect("the whole stream");
        assert!(text.contains("message_stop"), "finished after SIGTERM");
        let status = tokio::time::timeout(Duration::from_secs(30), server.child.wait())
            .await
            .expect("the server stops")
            .unwrap();
        assert!(status.success(), "{status:?}");
        let settled = store.hold(hold.id.as_str()).await.unwrap().unwrap();
        assert_eq!(
            settled.state,
            creditgate_domain::ledger::HoldState::Settled,
            "{settled:?}"
        );
        assert!(
            settled.settled_amount.unwrap() < hold.amount,
            "charged its usage, not its hold"
        );
        let report = store.check_invariants().await.unwrap();
        assert!(report.is_ok(), "{report:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// A 1 MB image (base64 in the body, 1.3 MB) with a balance of 0.20: its worst case is bounded
/// by the per-image allowance, not its bytes, so the official SDK's call is answered and
/// charged the usage the upstream reports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_image_whose_cost_fits_a_small_balance_is_answered() {
    for database in databases().await {
        let app = spawn_app_with(database, |_| {}).await;
        app.set_price("claude-demo", "3.00", "15.00").await;
        let org = app.create_org("Pictures").await;
        app.grant(&org, "0.20").await;
        let (_, secret) = app.create_key(&org).await;
        let Some(python) = sdk_support::sdk_python().await else {
            app.stop().await;
            return;
        };
        let script = format!(
            "import anthropic, base64, os\n\
             data = base64.b64encode(os.urandom(1_000_000)).decode()\n\
             c = anthropic.Anthropic(base_url={base:?} + '/anthropic', api_key={secret:?}, max_retries=0)\n\
             m = c.messages.create(model='claude-demo', max_tokens=256, messages=[{{'role': 'user', 'content': [\n\
               {{'type': 'image', 'source': {{'type': 'base64', 'media_type': 'image/png', 'data': data}}}},\n\
               {{'type': 'text', 'text': 'What is in this picture?'}}]}}])\n\
             print(len(data), m.usage.input_tokens, m.usage.output_tokens)\n",
            base = app.base,
        );
        let out = tokio::process::Command::new(&python)
            .arg("-c")
            .arg(script)
            .output()
            .await
            .expect("python runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let fields: Vec<u64> = stdout
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        assert_eq!(
            fields.len(),
            3,
            "answered: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(fields[0] > 1_300_000, "a 1.3 MB body");
        let charges = settled(&app, &org, 1).await;
        let expected = (fields[1] * 3 + fields[2] * 15) as i64; // micro-units, per million tokens
        assert_eq!(
            sdk_support::micros(&charges[0].0),
            expected,
            "charged its usage on {}",
            app.backend
        );
        app.assert_invariants().await;
        app.stop().await;
    }
}
