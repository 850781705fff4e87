//! localstripe (PyPI `localstripe==1.15.10`), a Stripe-compatible fake we did not write, for
//! black-box tests, extended with Checkout Sessions by `launcher.py` beside this file.
//!
//! Use from an integration test with `#[path = "stripe_support/mod.rs"] mod stripe_support;`
//! (or `mod stripe_support;`). localstripe is installed once into `target/venv-localstripe`
//! (`python_tools::venv_with`, shared with `scripts/test.sh`); each [`LocalStripe`] is its own
//! process on 127.0.0.1 with an empty store in its own temp dir, killed on drop.
//!
//! The launcher adds `POST /v1/checkout/sessions`, `GET /v1/checkout/sessions[/{id}]`,
//! `POST /v1/checkout/sessions/{id}/expire` and the test-only
//! `POST /_test/checkout/sessions/{id}/complete` (see [`LocalStripe::complete_checkout`]).
//! localstripe ignores `Idempotency-Key`; the launcher records every API request with its
//! key ([`LocalStripe::requests`]) and every webhook delivery with its answer
//! ([`LocalStripe::deliveries`]). This module's own requests carry the user agent
//! [`HARNESS_USER_AGENT`], so a test can tell them from the server's.

// Each test file compiles this module on its own and uses only part of it.
#![allow(dead_code)]

#[path = "../python_tools/mod.rs"]
mod python_tools;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

pub use python_tools::ci;

/// The localstripe release the launcher is written against.
pub const LOCALSTRIPE_VERSION: &str = "1.15.10";
/// The longest wait for the launcher to listen.
const START_MAX: Duration = Duration::from_secs(30);
/// The API key of every instance (localstripe accepts any `sk_…`).
const SECRET_KEY: &str = "sk_test_creditgate";
/// The `User-Agent` of this module's requests (the server under test sends another).
pub const HARNESS_USER_AGENT: &str = "creditgate-test-harness";

/// A running localstripe with Checkout Sessions, killed on drop.
pub struct LocalStripe {
    child: Option<Child>,
    dir: PathBuf,
    log: PathBuf,
    base_url: String,
    secret_key: String,
    http: reqwest::Client,
}

fn localstripe_installed(python: &Path) -> bool {
    Command::new(python)
        .args([
            "-c",
            &format!(
                "import sys, localstripe, localstripe.server; \
                 sys.exit(localstripe.__version__ != '{LOCALSTRIPE_VERSION}')"
            ),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// The venv's python with localstripe, installed at most once per test binary.
fn python() -> Result<PathBuf, String> {
    PYTHON
        .get_or_init(|| {
            python_tools::venv_with(
                "localstripe",
                &format!("localstripe=={LOCALSTRIPE_VERSION}"),
                "python",
                localstripe_installed,
            )
        })
        .clone()
}

/// The last lines of a log file.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

impl Drop for LocalStripe {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "localstripe log ({}), last lines:\n{}",
                self.log.display(),
                tail(&self.log)
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// localstripe started, or `None` (the caller skips) when it is unavailable outside CI; in
/// CI (`CI` set) a missing localstripe fails the test.
pub async fn localstripe() -> Option<LocalStripe> {
    let started = tokio::task::spawn_blocking(LocalStripe::start)
        .await
        .expect("the start task ends");
    match started {
        Ok(stripe) => Some(stripe),
        Err(error) if ci() => panic!("localstripe is required when CI is set: {error}"),
        Err(error) => {
            eprintln!("skipping: localstripe is unavailable (set CI to make this fail): {error}");
            None
        }
    }
}

impl LocalStripe {
    /// Installs localstripe into target/venv-localstripe once (python_tools::venv_with), starts
    /// the launcher on a free 127.0.0.1 port, waits until it answers (≤ 30 s), and answers it.
    /// Err(String) with the log tail on failure.
    ///
    /// Blocks the calling thread (install and start-up).
    pub fn start() -> Result<LocalStripe, String> {
        let python = python()?;
        let dir = std::env::temp_dir().join(format!(
            "creditgate_localstripe_{}_{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let log = dir.join("localstripe.log");
        let log_file = File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let launcher =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/stripe_support/launcher.py");
        let mut stripe = LocalStripe {
            child: None,
            dir: dir.clone(),
            log: log.clone(),
            base_url: String::new(),
            secret_key: SECRET_KEY.to_owned(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .user_agent(HARNESS_USER_AGENT)
                .build()
                .map_err(|e| format!("HTTP client: {e}"))?,
        };
        let stderr = log_file
            .try_clone()
            .map_err(|e| format!("{}: {e}", log.display()))?;
        // Port 0: the launcher binds a free port itself and reports it (no race for a port).
        let child = Command::new(&python)
            .arg("-u")
            .arg(&launcher)
            .args(["--port", "0", "--data-dir"])
            .arg(dir.join("data"))
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("{} {}: {e}", python.display(), launcher.display()))?;
        stripe.child = Some(child);

        let deadline = Instant::now() + START_MAX;
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(url) = text
                .lines()
                .find_map(|line| line.strip_prefix("ready "))
                .map(str::trim)
            {
                stripe.base_url = url.to_owned();
                return Ok(stripe);
            }
            if let Some(Ok(Some(status))) = stripe.child.as_mut().map(Child::try_wait) {
                return Err(format!(
                    "the localstripe launcher exited with {status}:\n{}",
                    tail(&log)
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the localstripe launcher did not listen within {START_MAX:?}:\n{}",
                    tail(&log)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The secret API key (`sk_test_…`) the server must send.
    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }

    /// The launcher's log (requests, webhook deliveries, tracebacks).
    pub fn log(&self) -> String {
        tail(&self.log)
    }

    /// POST /_config/webhooks/{id} with url, secret and the event list (None = all events).
    /// Events are signed with `secret` and sent 1 s after they happen, once, without retries.
    pub async fn register_webhook(
        &self,
        id: &str,
        url: &str,
        secret: &str,
        events: Option<&[&str]>,
    ) -> Result<(), String> {
        let mut form = vec![("url", url), ("secret", secret)];
        for event in events.unwrap_or_default() {
            form.push(("events[]", *event));
        }
        let (status, body) = self
            .send(
                self.http
                    .post(format!("{}/_config/webhooks/{id}", self.base_url))
                    .form(&form),
            )
            .await;
        if status == 200 {
            Ok(())
        } else {
            Err(format!("register webhook {id}: HTTP {status}: {body}"))
        }
    }

    /// GET with the secret key; answers (status, json).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(
            self.http
                .get(format!("{}{path}", self.base_url))
                .bearer_auth(&self.secret_key),
        )
        .await
    }

    /// POST form-encoded with the secret key; answers (status, json).
    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
        self.send(
            self.http
                .post(format!("{}{path}", self.base_url))
                .bearer_auth(&self.secret_key)
                .form(form),
        )
        .await
    }

    /// Completes a Checkout Session with a payment method (the test-only route): attaches the
    /// method to the session's customer, if any, then creates and confirms a PaymentIntent
    /// (3-D Secure cards pass their challenge) and emits `checkout.session.completed`.
    /// Answers the session (200), or 402 with localstripe's error body (session left open).
    pub async fn complete_checkout(&self, session_id: &str, payment_method: &str) -> (u16, Value) {
        self.post_form(
            &format!("/_test/checkout/sessions/{session_id}/complete"),
            &[("payment_method", payment_method)],
        )
        .await
    }

    /// Creates a card PaymentMethod from a raw test card number (4242424242424242,
    /// 4000000000000341 declines on charge, 4000002760003184 needs 3-D Secure) and answers its id.
    pub async fn card(&self, number: &str) -> String {
        let (status, body) = self
            .post_form(
                "/v1/payment_methods",
                &[
                    ("type", "card"),
                    ("card[number]", number),
                    ("card[exp_month]", "12"),
                    ("card[exp_year]", "2034"),
                    ("card[cvc]", "123"),
                ],
            )
            .await;
        match body["id"].as_str() {
            Some(id) if status == 200 => id.to_owned(),
            _ => panic!("card {number}: HTTP {status}: {body}"),
        }
    }

    /// Empties localstripe's store (`DELETE /_config/data`) and the launcher's records of
    /// requests and deliveries; registered webhooks stay.
    pub async fn reset(&self) {
        for path in ["/_config/data", "/_test/requests"] {
            let (status, body) = self
                .send(
                    self.http
                        .delete(format!("{}{path}", self.base_url))
                        .bearer_auth(&self.secret_key),
                )
                .await;
            assert_eq!(status, 200, "DELETE {path}: {body}");
        }
    }

    /// Every request to `/v1/*` since the last [`reset`](Self::reset), oldest first: `method`,
    /// `path`, `query`, `idempotency_key` (null if absent), `user_agent`, `payment_id` (the
    /// form's `metadata[payment_id]`), the answer's `status` and object `id`.
    pub async fn requests(&self) -> Vec<Value> {
        self.records("/_test/requests").await
    }

    /// Every webhook delivery attempt since the last [`reset`](Self::reset), oldest first:
    /// `webhook` (the id it was registered under), `event`, `type`, `object` (the event's
    /// object id), `payment_id` (its metadata's), `status` (null if unreachable), `error`.
    pub async fn deliveries(&self) -> Vec<Value> {
        self.records("/_test/webhooks").await
    }

    async fn records(&self, path: &str) -> Vec<Value> {
        let (status, body) = self.get(path).await;
        match body {
            Value::Array(items) if status == 200 => items,
            other => panic!("GET {path}: HTTP {status}: {other}"),
        }
    }

    /// Every PaymentIntent in the store, in localstripe's order (all pages).
    pub async fn payment_intents(&self) -> Vec<Value> {
        let mut all = Vec::new();
        loop {
            let path = match all.last().and_then(|i: &Value| i["id"].as_str()) {
                None => "/v1/payment_intents?limit=100".to_owned(),
                Some(id) => format!("/v1/payment_intents?limit=100&starting_after={id}"),
            };
            let (status, page) = self.get(&path).await;
            assert_eq!(status, 200, "GET {path}: {page}");
            let items = page["data"].as_array().cloned().unwrap_or_default();
            let more = page["has_more"] == true && !items.is_empty();
            all.extend(items);
            if !more {
                return all;
            }
        }
    }

    /// The events localstripe made of `kind` (`payment_intent.succeeded`, …), at most 100.
    pub async fn events(&self, kind: &str) -> Vec<Value> {
        let path = format!("/v1/events?limit=100&type={kind}");
        let (status, page) = self.get(&path).await;
        assert_eq!(status, 200, "GET {path}: {page}");
        page["data"].as_array().cloned().unwrap_or_default()
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => panic!("localstripe request failed: {error}\n{}", self.log()),
        };
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let body = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, body)
    }
}
