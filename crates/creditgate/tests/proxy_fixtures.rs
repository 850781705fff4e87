//! The `anthropic` package's own recorded streams (its source distribution on PyPI, version
//! 2.10.0, ships them under `tests/lib/streaming/fixtures/`) replayed as the upstream of the
//! proxy, on both backends: each is passed through and charged the usage it reports (the
//! `message_start` usage with each `message_delta`'s fields laid over it, which is how the API
//! reports them; events of unknown types are ignored), or its hold when the usage is
//! incomplete. Server-tool requests (`web_search_requests`) are not priced yet.
//!
//! Setup: the source distribution is downloaded once with the SDK virtualenv's pip into
//! `target/sdist-anthropic` and the fixtures are read from it at test time (not copied into
//! the project). When `CI` is set a failure to get them fails the test; otherwise it is
//! skipped with a message.

#![allow(clippy::duplicate_mod)]

mod api_support;
mod sdk_support;
mod smtp_support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use api_support::{databases, spawn_app_with, As, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};

const VERSION: &str = "2.10.0";
/// Per million tokens: input, output, cache write, cache read.
const PRICES: (&str, &str, &str, &str) = ("3.00", "15.00", "3.75", "0.30");

/// The fixtures directory, downloading the source distribution if needed.
async fn fixtures() -> Option<PathBuf> {
    let python = sdk_support::sdk_python().await?;
    let target = python.ancestors().nth(3)?.to_path_buf();
    let dir = target.join("sdist-anthropic");
    let fixtures = dir.join(format!("anthropic-{VERSION}/tests/lib/streaming/fixtures"));
    if fixtures.join("basic_response.txt").is_file() {
        return Some(fixtures);
    }
    let script = format!(
        "import fcntl, os, subprocess, sys, tarfile\n\
         d = {dir:?}\n\
         os.makedirs(d, exist_ok=True)\n\
         with open(os.path.join(d, 'lock'), 'w') as lock:\n\
         \x20   fcntl.flock(lock, fcntl.LOCK_EX)\n\
         \x20   archive = os.path.join(d, 'anthropic-{VERSION}.tar.gz')\n\
         \x20   if not os.path.exists(archive):\n\
         \x20       subprocess.run([sys.executable, '-m', 'pip', 'download', '-q', '--disable-pip-version-check', '--no-deps', '--no-binary', ':all:', 'anthropic=={VERSION}', '-d', d], check=True)\n\
         \x20   with tarfile.open(archive) as t:\n\
         \x20       members = [m for m in t.getmembers() if '/tests/lib/streaming/fixtures/' in m.name and m.isfile()]\n\
         \x20       t.extractall(d, members=members)\n",
        dir = dir.display().to_string(),
    );
    let out = tokio::process::Command::new(&python)
        .arg("-c")
        .arg(script)
        .output()
        .await
        .ok()?;
    if fixtures.join("basic_response.txt").is_file() {
        return Some(fixtures);
    }
    let why = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!sdk_support_ci(), "the anthropic sdist's fixtures: {why}");
    eprintln!("skipping: the anthropic sdist's fixtures are not available: {why}");
    None
}

fn sdk_support_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// An upstream answering each request with the recording its `anthropic-beta` header names
/// (the one client header the proxy passes on), as a 200 event stream.
async fn replay(
    recordings: std::collections::HashMap<String, String>,
) -> (String, tokio::task::JoinHandle<()>) {
    let recordings = std::sync::Arc::new(recordings);
    let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
        let recordings = recordings.clone();
        async move {
            let name = headers
                .get("anthropic-beta")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let body = recordings.get(name).cloned().unwrap_or_default();
            ([("content-type", "text/event-stream")], body)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, task)
}

/// The usage a recorded stream reports: `message_start`'s, with each `message_delta`'s fields
/// laid over it; `None` without both events.
fn reported_usage(text: &str) -> Option<(u64, u64, u64, u64)> {
    let mut usage: Option<serde_json::Map<String, Value>> = None;
    let mut delta_seen = false;
    for line in text.lines() {
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        let Ok(event) = serde_json::from_str::<Value>(data) else {
            continue;
        };
        match event["type"].as_str() {
            Some("message_start") => {
                usage = event["message"]["usage"].as_object().cloned();
            }
            Some("message_delta") => {
                delta_seen = true;
                if let (Some(usage), Some(delta)) = (usage.as_mut(), event["usage"].as_object()) {
                    for (key, value) in delta {
                        usage.insert(key.clone(), value.clone());
                    }
                }
            }
            _ => {}
        }
    }
    let usage = usage.filter(|_| delta_seen)?;
    let n = |key: &str| usage.get(key).and_then(Value::as_u64).unwrap_or(0);
    Some((
        n("input_tokens"),
        n("output_tokens"),
        n("cache_creation_input_tokens"),
        n("cache_read_input_tokens"),
    ))
}

/// The price of that usage in micro-units, rounded up once.
fn price(usage: (u64, u64, u64, u64)) -> i64 {
    let (input, output, write, read) = usage;
    // Prices per million tokens in micro-units: 3.00 → 3_000_000 per 1e6 tokens = 3 per token.
    let numerator = u128::from(input) * 3_000_000
        + u128::from(output) * 15_000_000
        + u128::from(write) * 3_750_000
        + u128::from(read) * 300_000;
    i64::try_from(numerator.div_ceil(1_000_000)).unwrap()
}

async fn usage_charges(app: &TestApp, org: &str) -> Vec<Value> {
    let reply = app
        .get(
            &As::Operator,
            &format!("/v1/orgs/{org}/transfers?limit=100"),
        )
        .await;
    reply.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter(|t| t["kind"] == "usage")
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdks_recorded_streams_are_charged_as_they_report() {
    let Some(dir) = fixtures().await else { return };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "the fixtures: {files:?}");
    let recordings: std::collections::HashMap<String, String> = files
        .iter()
        .map(|file| {
            let name = file.file_stem().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(file).unwrap())
        })
        .collect();
    let (url, _replay) = replay(recordings.clone()).await;
    for database in databases().await {
        let mut failures = Vec::new();
        let upstream = url.clone();
        let app = spawn_app_with(database, move |c| c.anthropic_upstream = upstream.into()).await;
        let (input, output, write, read) = PRICES;
        let set = app
            .request(
                &As::Operator,
                reqwest::Method::PUT,
                "/v1/prices/claude-fixture",
                Some(json!({"input": input, "output": output, "cache_write": write, "cache_read": read})),
                &[],
            )
            .await;
        assert!(set.status.is_success(), "{}", set.body);
        let mut names: Vec<&String> = recordings.keys().collect();
        names.sort();
        for name in names {
            let text = &recordings[name];
            // One org per recording, with the upstream pointed at its replay.
            let org = app.create_org(name).await;
            app.grant(&org, "10.00").await;
            let (_, secret) = app.create_key(&org).await;
            let answer = app
                .client
                .post(format!("{}/anthropic/v1/messages", app.base))
                .header("x-api-key", &secret)
                .header("anthropic-beta", name.as_str())
                .json(
                    &json!({"model": "claude-fixture", "max_tokens": 1024, "stream": true,
                    "messages": [{"role": "user", "content": "Replay."}]}),
                )
                .send()
                .await
                .unwrap();
            let status = answer.status();
            let passed = answer.text().await.unwrap_or_default();
            if status != StatusCode::OK || !passed.contains("message_start") {
                failures.push(format!("{name}: {status} {passed:.200}"));
                continue;
            }
            let started = Instant::now();
            let charges = loop {
                let charges = usage_charges(&app, &org).await;
                if !charges.is_empty() || started.elapsed() > Duration::from_secs(5) {
                    break charges;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            let Some(charge) = charges.first() else {
                failures.push(format!("{name}: not charged"));
                continue;
            };
            let charged = sdk_support::micros(charge["amount"].as_str().unwrap_or("0"));
            let expected = match reported_usage(text) {
                Some(usage) => price(usage),
                None => {
                    let hold = charge["hold_id"].as_str().unwrap_or("");
                    let hold = app.get(&As::Operator, &format!("/v1/holds/{hold}")).await;
                    sdk_support::micros(&hold.str("amount"))
                }
            };
            if charged != expected {
                failures.push(format!(
                    "{name}: charged {charged} µ, expected {expected} µ ({:?})",
                    reported_usage(text)
                ));
            }
        }
        assert!(
            failures.is_empty(),
            "on {}:\n{}",
            app.backend,
            failures.join("\n")
        );
        app.assert_invariants().await;
        app.stop().await;
    }
}
