//! Crash tests of an auto-reload attempt against localstripe, on both backends: the real
//! `creditgate serve` (payments = stripe) charges an org's good saved card when its balance
//! falls below the threshold, and is stopped at one step of the attempt and killed with
//! SIGKILL there:
//! - the attempt written (`created`), before it is `charging` (failpoint);
//! - `charging`, before the provider is called (failpoint);
//! - during the call, the request held by a proxy: the provider never saw it;
//! - during the call, the answer held by a proxy: the provider charged, we never heard;
//! - after the provider answered success, before anything of it is recorded (failpoint);
//! - after the ledger credit, before the payment is marked `succeeded` (failpoint).
//!
//! Each test checks that the kill really happened at its step (the payment's state, the
//! PaymentIntents at localstripe and the credits in the ledger at that moment), restarts the
//! server on the same database, and checks that the attempt ends with exactly one
//! PaymentIntent at localstripe, exactly one ledger credit, the payment `succeeded` and the
//! ledger invariants holding. A charge that may have reached Stripe must be looked up by its
//! metadata (`stripe::Client::find`), never charged again: every server talks to localstripe
//! through a logging proxy, so the tests also check which calls the restarted one made.
//!
//! Failpoints: `CREDITGATE_FAILPOINT` (see `server::payments::failpoint`). No webhooks are
//! registered at localstripe, so only the server's own resume path can finish the attempt.
//! When `CI` is set, a missing localstripe or PostgreSQL fails the test; otherwise those parts
//! are skipped with a message.

#![cfg(unix)]

#[path = "stripe_support/mod.rs"]
mod stripe_support;

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use creditgate_domain::ledger::{AccountId, TransferKind};
use creditgate_domain::payment::PaymentState;
use creditgate_domain::Amount;
use creditgate_store::api::Payment;
use creditgate_store::testing::{self, TestDatabase};
use creditgate_store::Store;
use serde_json::{json, Value};
use stripe_support::localstripe;
use stripe_support::LocalStripe;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;

const OPERATOR_TOKEN: &str = "crash-operator-token";
const WEBHOOK_SECRET: &str = "whsec_creditgate_crash";
const LISTENING: &str = "creditgate listening on ";
const SIGKILL: i32 = 9;
/// Longest wait for a server to listen, a step to be reached, or an attempt to end.
const WAIT_MAX: Duration = Duration::from_secs(30);
/// A charge left `charging` this long is resumed (short, so the restart resumes it soon).
const CHARGING_RESUME_MS: u64 = 300;
/// After the attempt ended, how long the restarted server keeps running before the final
/// checks (a late second charge or credit would show by then: many worker runs).
const SETTLE: Duration = Duration::from_millis(1_000);
const PAYMENT_INTENTS: &str = "/v1/payment_intents";

/// Where the first server is stopped.
#[derive(Clone, Copy, Debug)]
enum Stop {
    /// `CREDITGATE_FAILPOINT` names the step.
    Failpoint(&'static str),
    /// The proxy holds the `POST /v1/payment_intents`: localstripe never sees it.
    HoldRequest,
    /// The proxy forwards it and holds localstripe's answer: charged, never answered.
    HoldAnswer,
}

/// What the store and localstripe show right after the kill.
#[derive(Clone, Copy, Debug)]
struct AtKill {
    state: PaymentState,
    /// PaymentIntents made for the payment.
    intents: usize,
    /// Ledger credits of the payment.
    credits: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_the_attempt_is_written_before_it_is_charging() {
    let at_kill = AtKill {
        state: PaymentState::Created,
        intents: 0,
        credits: 0,
    };
    crash_at(Stop::Failpoint("payments.before_charging"), at_kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_before_the_provider_is_called() {
    let at_kill = AtKill {
        state: PaymentState::Charging,
        intents: 0,
        credits: 0,
    };
    crash_at(Stop::Failpoint("payments.before_call"), at_kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_the_charge_request_is_on_its_way() {
    let at_kill = AtKill {
        state: PaymentState::Charging,
        intents: 0,
        credits: 0,
    };
    crash_at(Stop::HoldRequest, at_kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_the_provider_charged_before_its_answer_arrived() {
    let at_kill = AtKill {
        state: PaymentState::Charging,
        intents: 1,
        credits: 0,
    };
    crash_at(Stop::HoldAnswer, at_kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_the_provider_succeeded_before_the_credit() {
    let at_kill = AtKill {
        state: PaymentState::Charging,
        intents: 1,
        credits: 0,
    };
    crash_at(Stop::Failpoint("payments.after_provider"), at_kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_the_credit_before_the_payment_is_marked_succeeded() {
    let at_kill = AtKill {
        state: PaymentState::Charging,
        intents: 1,
        credits: 1,
    };
    crash_at(Stop::Failpoint("payments.after_credit"), at_kill).await;
}

async fn crash_at(stop: Stop, at_kill: AtKill) {
    let Some(stripe) = localstripe().await else {
        return;
    };
    let mut databases = vec![testing::sqlite()];
    databases.extend(testing::postgres().await);
    for database in databases {
        let started = std::time::Instant::now();
        crash_once(&stripe, &database, stop, at_kill).await;
        eprintln!(
            "{:?} {stop:?}: killed, restarted and checked in {:?}",
            database.kind,
            started.elapsed()
        );
    }
}

async fn crash_once(stripe: &LocalStripe, database: &TestDatabase, stop: Stop, at_kill: AtKill) {
    let data_dir = TempDir::new();
    let hold = match stop {
        Stop::Failpoint(_) => Hold::Nothing,
        Stop::HoldRequest => Hold::Request,
        Stop::HoldAnswer => Hold::Answer,
    };
    let (first_proxy, mut held) = Proxy::start(stripe.base_url(), hold).await;
    let failpoint = match stop {
        Stop::Failpoint(name) => Some(name),
        _ => None,
    };
    let mut first = Server::start(database, &data_dir, &first_proxy, stripe, failpoint).await;

    // An org at 15.00 with auto-reload (below 10.00 add 20.00) on a good saved card; 6.00 of
    // usage takes it to 9.00, and the worker makes the attempt.
    let org = first.create_org().await;
    first.grant(&org, "15.00").await;
    let card = stripe.card("4242424242424242").await;
    first.put_reload(&org, &card).await;
    first.spend(&org, "6.00").await;

    let deadline = Instant::now() + WAIT_MAX;
    match stop {
        Stop::Failpoint(name) => {
            let line = first
                .wait_for_line(&format!("creditgate failpoint {name} reached"), deadline)
                .await;
            eprintln!("{line}");
        }
        Stop::HoldRequest | Stop::HoldAnswer => {
            let what = tokio::time::timeout_at(deadline, held.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "the charge never reached the proxy; stderr:\n{}",
                        first.stderr()
                    )
                })
                .expect("the proxy is running");
            eprintln!("proxy: {what}");
        }
    }
    first.kill_9().await;
    let charged_first: &[&str] = match stop {
        Stop::HoldRequest => &["(request held)"],
        Stop::HoldAnswer => &["(answer held)"],
        Stop::Failpoint(_) if at_kill.intents > 0 => &[""],
        Stop::Failpoint(_) => &[],
    };
    first_proxy.assert_charges(charged_first);

    // The kill happened at the step: the payment's state, the provider's and the ledger's
    // records are those of that step.
    let store = database
        .open()
        .await
        .expect("the store opens after the kill");
    let payment = only_payment(&store, &org).await;
    assert_eq!(payment.state, at_kill.state, "at the kill: {payment:?}");
    let intents = intents_of(stripe, &payment.id).await;
    assert_eq!(intents.len(), at_kill.intents, "at the kill: {intents:#?}");
    // What the provider made, it made successfully: the step is after its success.
    assert!(
        intents.iter().all(|i| i["status"] == "succeeded"),
        "at the kill: {intents:#?}"
    );
    let credits = credits_of(&store, &org).await;
    assert_eq!(credits.len(), at_kill.credits, "at the kill: {credits:?}");
    drop(store);

    // Restart on the same database, without a failpoint, through a proxy that only logs.
    let (second_proxy, _) = Proxy::start(stripe.base_url(), Hold::Nothing).await;
    let mut second = Server::start(database, &data_dir, &second_proxy, stripe, None).await;
    let store = database.open().await.expect("the store opens");
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        let now = store
            .payment(&payment.id)
            .await
            .expect("read")
            .expect("the payment");
        if now.state == PaymentState::Succeeded {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the attempt was not finished after the restart: {now:?}\nstderr:\n{}\nlocalstripe:\n{}",
            second.stderr(),
            stripe.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(SETTLE).await;
    second.stop().await;

    // Exactly one PaymentIntent and one credit; the payment succeeded, pointing at both.
    let payment = only_payment(&store, &org).await;
    assert_eq!(payment.state, PaymentState::Succeeded, "{payment:?}");
    let intents = intents_of(stripe, &payment.id).await;
    assert_eq!(
        intents.len(),
        1,
        "PaymentIntents of {}: {intents:#?}",
        payment.id
    );
    let intent = &intents[0];
    assert_eq!(intent["status"], "succeeded", "{intent}");
    assert_eq!(intent["amount"], 2_000, "{intent}");
    assert_eq!(payment.provider_ref.as_deref(), intent["id"].as_str());
    let customer = store
        .payment_profile(&org)
        .await
        .expect("read")
        .customer_id
        .expect("the org's customer");
    let of_customer = intents_of_customer(stripe, &customer).await;
    assert_eq!(of_customer, 1, "PaymentIntents of the org's customer");
    let credits = credits_of(&store, &org).await;
    assert_eq!(credits.len(), 1, "{credits:?}");
    let (transfer_id, amount) = &credits[0];
    assert_eq!(*transfer_id, format!("txn_{}", payment.id));
    assert_eq!(*amount, usd("20.00"));
    assert_eq!(payment.transfer_id.as_ref(), Some(transfer_id));
    let account = store
        .account(&AccountId::new(org.clone()))
        .await
        .expect("read")
        .expect("the org's account");
    assert_eq!(account.available(), usd("29.00"), "15.00 - 6.00 + 20.00");
    let report = store.check_invariants().await.expect("the check runs");
    assert!(report.is_ok(), "invariants: {:#?}", report.violations);
    assert!(report.overspend.is_zero(), "overspend {}", report.overspend);

    // How the restarted server finished it: a charge that may have reached the provider is
    // looked up there (`find`: the PaymentIntents list) and never sent again; one that had
    // not is looked up first if it was `charging`, then charged once.
    let looked_up = second_proxy.gets_of(PAYMENT_INTENTS);
    let charging = at_kill.state == PaymentState::Charging;
    assert_eq!(
        looked_up > 0,
        charging,
        "lookups of the charge after the restart: {:?}",
        second_proxy.log()
    );
    second_proxy.assert_charges(if at_kill.intents == 0 { &[""] } else { &[] });
}

fn usd(text: &str) -> Amount {
    Amount::parse(text).expect("an amount")
}

/// The org's only payment.
async fn only_payment(store: &Store, org: &str) -> Payment {
    let page = store
        .payments(org, 10, None)
        .await
        .expect("read")
        .expect("the org's payments");
    assert_eq!(page.items.len(), 1, "payments of {org}: {:#?}", page.items);
    page.items.into_iter().next().expect("one")
}

/// The ledger's auto-reload credits into `org`: (transfer id, amount).
async fn credits_of(store: &Store, org: &str) -> Vec<(String, Amount)> {
    let snapshot = store.snapshot().await.expect("snapshot");
    snapshot
        .transfers
        .iter()
        .filter(|t| t.credit_account_id.as_str() == org && t.kind == TransferKind::AutoReload)
        .map(|t| (t.id.as_str().to_owned(), t.amount))
        .collect()
}

/// Every PaymentIntent at localstripe (all pages).
async fn all_intents(stripe: &LocalStripe) -> Vec<Value> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            None => format!("{PAYMENT_INTENTS}?limit=100"),
            Some(id) => format!("{PAYMENT_INTENTS}?limit=100&starting_after={id}"),
        };
        let (status, page) = stripe.get(&path).await;
        assert_eq!(status, 200, "{page}");
        let data = page["data"].as_array().expect("a list").clone();
        after = data
            .last()
            .and_then(|i| i["id"].as_str())
            .map(str::to_owned);
        all.extend(data);
        if page["has_more"] != true || after.is_none() {
            return all;
        }
    }
}

/// The PaymentIntents made for our payment (its `metadata[payment_id]`).
async fn intents_of(stripe: &LocalStripe, payment_id: &str) -> Vec<Value> {
    all_intents(stripe)
        .await
        .into_iter()
        .filter(|i| i["metadata"]["payment_id"] == payment_id)
        .collect()
}

async fn intents_of_customer(stripe: &LocalStripe, customer: &str) -> usize {
    all_intents(stripe)
        .await
        .iter()
        .filter(|i| i["customer"] == customer)
        .count()
}

/// A temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "creditgate_payments_crash_{}_{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).expect("the temp dir is writable");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `creditgate serve` on Stripe, its stderr collected; killed on drop.
struct Server {
    child: Child,
    base: String,
    http: reqwest::Client,
    lines: mpsc::UnboundedReceiver<String>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Server {
    async fn start(
        database: &TestDatabase,
        data_dir: &TempDir,
        proxy: &Proxy,
        stripe: &LocalStripe,
        failpoint: Option<&str>,
    ) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_creditgate"));
        command.arg("serve");
        // Nothing of the caller's configuration (CREDITGATE_*, proxies) reaches the server.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("CREDITGATE_") || name.to_ascii_lowercase().ends_with("_proxy") {
                command.env_remove(&*name);
            }
        }
        command
            .env("CREDITGATE_DATA_DIR", &data_dir.0)
            .env("CREDITGATE_DATABASE_URL", &database.url)
            .env("CREDITGATE_LISTEN", "127.0.0.1:0")
            .env("CREDITGATE_OPERATOR_TOKEN", OPERATOR_TOKEN)
            .env("CREDITGATE_KEY_HASH_SECRET", "crash-key-hash-secret")
            .env("CREDITGATE_PAYMENTS", "stripe")
            .env("CREDITGATE_STRIPE_API_BASE", &proxy.base)
            .env("CREDITGATE_STRIPE_SECRET_KEY", stripe.secret_key())
            .env("CREDITGATE_STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET)
            .env("CREDITGATE_PAYMENTS_INTERVAL_MS", "20")
            .env(
                "CREDITGATE_CHARGING_RESUME_MS",
                CHARGING_RESUME_MS.to_string(),
            )
            .env("CREDITGATE_RELOAD_COOLDOWN_MS", "0")
            .env("CREDITGATE_NOTICE_INTERVAL_MS", "3600000")
            .env("CREDITGATE_LOG", "warn,creditgate=info");
        if let Some(name) = failpoint {
            command.env("CREDITGATE_FAILPOINT", name);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("creditgate serve starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let (send, lines) = mpsc::unbounded_channel();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let keep = Arc::clone(&seen);
        // Reads stderr to its end, so the server never blocks on a full pipe.
        tokio::spawn(async move {
            let mut reader = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                keep.lock().expect("lines").push(line.clone());
                let _ = send.send(line);
            }
        });
        let mut server = Server {
            child,
            base: String::new(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("an HTTP client"),
            lines,
            seen,
        };
        let line = server
            .wait_for_line(LISTENING, Instant::now() + WAIT_MAX)
            .await;
        let rest = &line[line.find(LISTENING).expect("the prefix") + LISTENING.len()..];
        server.base = rest
            .split_whitespace()
            .next()
            .expect("an address")
            .to_owned();
        server
    }

    fn stderr(&self) -> String {
        self.seen.lock().expect("lines").join("\n")
    }

    /// The first stderr line from now on containing `needle`.
    async fn wait_for_line(&mut self, needle: &str, deadline: Instant) -> String {
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) if line.contains(needle) => return line,
                Ok(Some(_)) => {}
                Ok(None) => panic!(
                    "creditgate serve ended before {needle:?}: {:?}; stderr:\n{}",
                    self.child.try_wait(),
                    self.stderr()
                ),
                Err(_) => panic!("no {needle:?} in time; stderr:\n{}", self.stderr()),
            }
        }
    }

    /// SIGKILL; it must die of it (not have ended some other way first).
    async fn kill_9(&mut self) {
        self.stop().await;
    }

    async fn stop(&mut self) {
        assert!(
            matches!(self.child.try_wait(), Ok(None)),
            "the server ended before it was killed; stderr:\n{}",
            self.stderr()
        );
        self.child.start_kill().expect("kill -9");
        let status = tokio::time::timeout(WAIT_MAX, self.child.wait())
            .await
            .expect("the killed server is reaped in time")
            .expect("wait");
        assert_eq!(status.signal(), Some(SIGKILL), "ended with {status}");
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let response = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(OPERATOR_TOKEN)
            .header(
                "Idempotency-Key",
                format!("crash-{}", rand::random::<u64>()),
            )
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{method} {path}: {status} {body}");
        body
    }

    async fn create_org(&self) -> String {
        let body = json!({"name": "Crash Co", "billing_emails": ["billing@example.com"]});
        let org = self.send(reqwest::Method::POST, "/v1/orgs", body).await;
        org["id"].as_str().expect("an id").to_owned()
    }

    async fn grant(&self, org: &str, amount: &str) {
        let body = json!({"amount": amount, "origin": "paid"});
        self.send(
            reqwest::Method::POST,
            &format!("/v1/orgs/{org}/grants"),
            body,
        )
        .await;
    }

    /// Takes `amount` (an operator adjustment, standing in for usage).
    async fn spend(&self, org: &str, amount: &str) {
        let body = json!({"amount": format!("-{amount}"), "reason": "usage stand-in"});
        self.send(
            reqwest::Method::POST,
            &format!("/v1/orgs/{org}/adjustments"),
            body,
        )
        .await;
    }

    async fn put_reload(&self, org: &str, card: &str) {
        let body = json!({
            "enabled": true, "threshold": "10.00", "amount": "20.00", "monthly_limit": "100.00",
            "payment_method": card,
            "consent": {"accepted_by": "ada@example.com", "text_version": "2026-11"}
        });
        let reload = self
            .send(
                reqwest::Method::PUT,
                &format!("/v1/orgs/{org}/auto_reload"),
                body,
            )
            .await;
        assert_eq!(reload["enabled"], true, "{reload}");
    }
}

/// What the proxy holds back of the first `POST /v1/payment_intents`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hold {
    Nothing,
    /// Never forwarded.
    Request,
    /// Forwarded; its answer never returned.
    Answer,
}

struct ProxyState {
    upstream: String,
    hold: Hold,
    http: reqwest::Client,
    /// `METHOD /path?query`, and for held calls ` (held)`.
    log: Mutex<Vec<String>>,
    held: mpsc::UnboundedSender<String>,
}

/// An HTTP proxy in front of localstripe that logs every call and may hold back a charge.
struct Proxy {
    base: String,
    state: Arc<ProxyState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    /// The proxy and a channel told what it held back.
    async fn start(upstream: &str, hold: Hold) -> (Proxy, mpsc::UnboundedReceiver<String>) {
        let (held, told) = mpsc::unbounded_channel();
        let state = Arc::new(ProxyState {
            upstream: upstream.trim_end_matches('/').to_owned(),
            hold,
            http: reqwest::Client::new(),
            log: Mutex::new(Vec::new()),
            held,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the proxy binds");
        let base = format!("http://{}", listener.local_addr().expect("an address"));
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(Arc::clone(&state));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (Proxy { base, state, task }, told)
    }

    fn log(&self) -> Vec<String> {
        self.state.log.lock().expect("log").clone()
    }

    /// GETs of `path` (with any query).
    fn gets_of(&self, path: &str) -> usize {
        self.log()
            .iter()
            .filter(|line| {
                line.strip_prefix("GET ")
                    .is_some_and(|rest| rest == path || rest.starts_with(&format!("{path}?")))
            })
            .count()
    }

    /// The `POST /v1/payment_intents` calls made through the proxy, by what followed each
    /// (`""`: answered, `"(request held)"`, `"(answer held)"`).
    fn assert_charges(&self, expected: &[&str]) {
        let log = self.log();
        let charges: Vec<&str> = log
            .iter()
            .filter_map(|line| line.strip_prefix(&format!("POST {PAYMENT_INTENTS}")))
            .map(str::trim)
            .collect();
        assert_eq!(charges, expected, "charges through the proxy: {log:?}");
    }
}

async fn forward(
    State(proxy): State<Arc<ProxyState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let target = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned());
    let charge = method == Method::POST && uri.path() == PAYMENT_INTENTS;
    let held = {
        let mut log = proxy.log.lock().expect("log");
        // Only the first charge is held; the server makes no other.
        let first = !log
            .iter()
            .any(|l| l.starts_with("POST /v1/payment_intents"));
        let held = if charge && first {
            proxy.hold
        } else {
            Hold::Nothing
        };
        log.push(match held {
            Hold::Nothing => format!("{method} {target}"),
            Hold::Request => format!("{method} {target} (request held)"),
            Hold::Answer => format!("{method} {target} (answer held)"),
        });
        held
    };
    if held == Hold::Request {
        let _ = proxy
            .held
            .send(format!("held the request {method} {target}"));
        return std::future::pending().await;
    }
    let mut request = proxy
        .http
        .request(method.clone(), format!("{}{target}", proxy.upstream))
        .body(body);
    for name in ["authorization", "content-type", "idempotency-key"] {
        if let Some(value) = headers.get(name) {
            request = request.header(name, value.clone());
        }
    }
    let response = match request.send().await {
        Ok(response) => response,
        Err(error) => {
            return (StatusCode::BAD_GATEWAY, format!("proxy: {error}")).into_response();
        }
    };
    let status = StatusCode::from_u16(response.status().as_u16()).expect("a status");
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.as_bytes().to_vec());
    let text = response.bytes().await.unwrap_or_default();
    if held == Hold::Answer {
        let answer: Value = serde_json::from_slice(&text).unwrap_or(Value::Null);
        let _ = proxy.held.send(format!(
            "held localstripe's answer {status}: {} {}",
            answer["id"], answer["status"]
        ));
        return std::future::pending().await;
    }
    let mut answer = (status, text).into_response();
    if let Some(value) = content_type {
        answer
            .headers_mut()
            .insert("content-type", value.try_into().expect("a header value"));
    }
    answer
}
