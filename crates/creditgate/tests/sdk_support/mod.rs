//! The official Python SDKs (PyPI `anthropic` and `openai`, pinned) as a customer's code
//! calling the metering proxy, for the black-box tests of what a customer sees when credits
//! run out (`tests/sdk_cutoff.rs`).
//!
//! - [`Customer`]: one Python process per test running `sdk_calls.py` (beside this file) with
//!   the venv's python; it imports the SDKs once, then runs one [`Phase`] of [`Call`]s per
//!   request (sequential, or on many threads with a client each) and answers an [`Outcome`] per
//!   call: status, exception class, the error envelope's type and code, the
//!   `creditgate-access-state` and `creditgate-balance-available` headers, the usage the SDK
//!   parsed, and the HTTP attempts the SDK made (what shows that a 402 is not retried).
//! - [`FakeLlm`]: fakellm (PyPI `fakellm==0.3.5`, the venv `proxy_fakellm.rs` uses) as a real
//!   upstream whose request counter shows what reached it.
//! - [`Checks`]: expectations recorded rather than panicking at the first, so that one run
//!   reports every expectation that does not hold (the test fails at its end with the list).
//! - Small helpers: prices, money in micro-units, the org's ledger and notices, emails
//!   awaited with a deadline.
//!
//! Install: the SDKs go into `target/venv-sdk` (one installer at a time under
//! `target/venv-sdk.lock`; `scripts/test.sh` installs them the same way). When `CI` is set a
//! failure to install or start them fails the test; otherwise the test is skipped with a
//! message.

// Each test file compiles this module on its own and uses only part of it.
#![allow(dead_code)]

// `smtp_support` loads it too (privately): one copy each, as `tests/*` modules do.
#[allow(clippy::duplicate_mod)]
#[path = "../python_tools/mod.rs"]
mod python_tools;

use std::collections::BTreeMap;
use std::fmt::{Debug, Display};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use python_tools::ci;
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::api_support::{As, TestApp};
use crate::smtp_support::{Mail, Smtpd, QUIET};

/// The SDK releases used.
pub const ANTHROPIC_VERSION: &str = "2.10.0";
pub const OPENAI_VERSION: &str = "3.51.0";
/// The fakellm release used (the one `proxy_fakellm.rs` uses).
pub const FAKELLM_VERSION: &str = "0.3.5";
/// Longest wait for the SDKs to import.
const READY_MAX: Duration = Duration::from_secs(90);
/// Longest a phase may take.
const PHASE_MAX: Duration = Duration::from_secs(180);
/// Longest wait for an email, a payment or a state the test expects.
pub const WAIT_MAX: Duration = Duration::from_secs(8);

// ----------------------------------------------------------------------------------------
// The SDKs
// ----------------------------------------------------------------------------------------

fn sdks_installed(python: &Path) -> bool {
    std::process::Command::new(python)
        .args([
            "-c",
            &format!(
                "import sys, anthropic, openai; sys.exit((anthropic.__version__, \
                 openai.__version__) != ('{ANTHROPIC_VERSION}', '{OPENAI_VERSION}'))"
            ),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn install_sdks() -> Result<PathBuf, String> {
    python_tools::venv_with_all(
        "sdk",
        &[
            &format!("anthropic=={ANTHROPIC_VERSION}"),
            &format!("openai=={OPENAI_VERSION}"),
        ],
        "python",
        sdks_installed,
    )
}

static SDK_PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// The venv's python with both SDKs; `None` (skip) when unavailable outside CI.
pub async fn sdk_python() -> Option<PathBuf> {
    let python = tokio::task::spawn_blocking(|| SDK_PYTHON.get_or_init(install_sdks).clone())
        .await
        .expect("the install task ends");
    match python {
        Ok(python) => Some(python),
        Err(error) if ci() => panic!("the Python SDKs are required when CI is set: {error}"),
        Err(error) => {
            eprintln!(
                "skipping: the Python SDKs are unavailable (set CI to make this fail): {error}"
            );
            None
        }
    }
}

/// Which SDK makes a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Sdk {
    /// `anthropic.Anthropic(base_url=URL + "/anthropic")`, `messages.create`.
    Anthropic,
    /// `openai.OpenAI(base_url=URL + "/openai/v1")`, `chat.completions.create`.
    Openai,
}

/// Which SDK method a call makes (see `sdk_calls.py`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `messages.create` / `chat.completions.create`.
    Default,
    /// OpenAI `responses.create` (`prompt` the input, `system` the instructions,
    /// `max_tokens` the `max_output_tokens`).
    Responses,
    /// OpenAI `embeddings.create` (`prompt` the input, unless `extra` gives one).
    Embeddings,
    /// Anthropic `messages.count_tokens`.
    CountTokens,
    /// `models.list()`.
    Models,
    /// `models.retrieve(model)`.
    Model,
    /// An endpoint the proxy does not serve (Anthropic `messages.batches.list()`, OpenAI
    /// `batches.list()`).
    Unknown,
}

/// One call a customer's code makes.
#[derive(Clone, Debug, Serialize)]
pub struct Call {
    pub sdk: Sdk,
    pub model: String,
    pub prompt: String,
    /// Anthropic `system`, or an OpenAI system message.
    pub system: Option<String>,
    /// Anthropic `max_tokens`, OpenAI `max_completion_tokens`.
    pub max_tokens: u64,
    pub stream: bool,
    pub extra_headers: BTreeMap<String, String>,
    pub endpoint: Endpoint,
    /// More keyword arguments of the SDK method (an endpoint's other than `Default`).
    pub extra: Option<Value>,
}

impl Call {
    pub fn new(sdk: Sdk, model: &str, prompt: &str, max_tokens: u64) -> Call {
        Call {
            sdk,
            model: model.to_owned(),
            prompt: prompt.to_owned(),
            system: None,
            max_tokens,
            stream: false,
            extra_headers: BTreeMap::new(),
            endpoint: Endpoint::Default,
            extra: None,
        }
    }

    /// A call of `endpoint` with `sdk`.
    pub fn to(endpoint: Endpoint, sdk: Sdk, model: &str, prompt: &str, max_tokens: u64) -> Call {
        Call {
            endpoint,
            ..Call::new(sdk, model, prompt, max_tokens)
        }
    }

    /// More keyword arguments for the SDK method.
    pub fn extra(mut self, extra: Value) -> Call {
        self.extra = Some(extra);
        self
    }

    pub fn anthropic(model: &str, prompt: &str, max_tokens: u64) -> Call {
        Call::new(Sdk::Anthropic, model, prompt, max_tokens)
    }

    pub fn openai(model: &str, prompt: &str, max_tokens: u64) -> Call {
        Call::new(Sdk::Openai, model, prompt, max_tokens)
    }

    pub fn system(mut self, system: &str) -> Call {
        self.system = Some(system.to_owned());
        self
    }

    pub fn streamed(mut self) -> Call {
        self.stream = true;
        self
    }

    /// The most input tokens the proxy holds for (its documented bound for plain text: 32
    /// for the request, 8 per message, one per byte of text).
    pub fn input_tokens_max(&self) -> u64 {
        let messages = if self.system.is_some() && self.sdk == Sdk::Openai {
            2
        } else {
            1
        };
        let bytes = self.prompt.len() + self.system.as_ref().map_or(0, String::len);
        32 + 8 * messages + u64::try_from(bytes).expect("small")
    }

    /// The worst case the proxy holds for this call at `price`.
    pub fn worst_case(&self, price: &Price) -> i64 {
        price.cost(self.input_tokens_max(), self.max_tokens)
    }
}

/// What the customer's code does in one go.
#[derive(Clone, Debug, Serialize)]
pub struct Phase {
    pub base_url: String,
    pub api_key: String,
    pub max_retries: u32,
    /// Threads, each with its own SDK clients.
    pub concurrency: usize,
    /// A thread stops once one of its calls is refused with this code.
    pub stop_on_code: Option<String>,
    pub calls: Vec<Call>,
}

impl Phase {
    /// Sequential calls with `max_retries = 2`.
    pub fn new(app: &TestApp, api_key: &str, calls: Vec<Call>) -> Phase {
        Phase {
            base_url: app.base.clone(),
            api_key: api_key.to_owned(),
            max_retries: 2,
            concurrency: 1,
            stop_on_code: None,
            calls,
        }
    }

    pub fn concurrent(mut self, threads: usize) -> Phase {
        self.concurrency = threads;
        self
    }

    pub fn stop_on(mut self, code: &str) -> Phase {
        self.stop_on_code = Some(code.to_owned());
        self
    }
}

/// What the customer's code saw of one call.
#[derive(Clone, Debug, Deserialize)]
pub struct Outcome {
    /// The call's index in its phase.
    pub index: usize,
    /// The SDK returned a response.
    pub ok: bool,
    pub status: Option<u16>,
    /// The exception raised, as `module.Class` (`anthropic.PaymentRequiredError`).
    pub exception: Option<String>,
    /// Anthropic: the envelope's top-level `type` ("error").
    pub body_type: Option<String>,
    /// The error object's `type` and `code` (Anthropic `error.*`, OpenAI `error.*`).
    pub error_type: Option<String>,
    pub error_code: Option<String>,
    pub billing_url: Option<String>,
    pub message: Option<String>,
    /// `creditgate-access-state`.
    pub access_state: Option<String>,
    /// `creditgate-balance-available`.
    pub balance_available: Option<String>,
    /// HTTP requests the SDK sent for this call (1 + its retries).
    pub attempts: u32,
    pub retries_taken: Option<u32>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub text: Option<String>,
    /// Responses: `usage.input_tokens_details.cached_tokens`.
    pub cached_tokens: Option<u64>,
    /// Responses: `usage.output_tokens_details.reasoning_tokens`.
    pub reasoning_tokens: Option<u64>,
    /// Responses: the response's `status`.
    pub response_status: Option<String>,
    /// Models: the ids listed or retrieved.
    pub ids: Option<Vec<String>>,
    /// Embeddings: the vectors and the components of the first.
    pub vectors: Option<u64>,
    pub dimensions: Option<u64>,
    /// Anthropic: `usage.cache_creation` (of `message_start` when streamed).
    #[serde(default)]
    pub cache_write_5m_tokens: Option<u64>,
    #[serde(default)]
    pub cache_write_1h_tokens: Option<u64>,
    /// Anthropic: `usage.server_tool_use` (of `message_delta` when streamed).
    #[serde(default)]
    pub web_search_requests: Option<u64>,
    #[serde(default)]
    pub web_fetch_requests: Option<u64>,
    /// The answer's rate-limit headers (`retry-after*`, `*ratelimit*`), names lowercased.
    #[serde(default)]
    pub rate_headers: BTreeMap<String, String>,
    /// How long the SDK call took, retries and their waits included.
    #[serde(default)]
    pub elapsed_ms: Option<u64>,
}

impl Outcome {
    /// The balance header in micro-units.
    pub fn available_micros(&self) -> Option<i64> {
        self.balance_available.as_deref().map(micros)
    }

    /// A one-line summary for messages.
    pub fn brief(&self) -> String {
        format!(
            "#{} status {:?} {:?} {:?}/{:?} state {:?} available {:?} attempts {}",
            self.index,
            self.status,
            self.exception,
            self.error_type,
            self.error_code,
            self.access_state,
            self.balance_available,
            self.attempts
        )
    }
}

/// The customer's code: one Python process with both SDKs, killed on drop.
pub struct Customer {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    log: PathBuf,
    ready: bool,
}

impl Customer {
    /// Starts the process (the SDKs import while the test sets up); `None` to skip.
    pub async fn start() -> Option<Customer> {
        let python = sdk_python().await?;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk_support/sdk_calls.py");
        let log = std::env::temp_dir().join(format!(
            "creditgate_sdk_{}_{}.log",
            std::process::id(),
            rand::random::<u64>()
        ));
        let stderr = File::create(&log).expect("the SDK log");
        let mut child = tokio::process::Command::new(python)
            .arg("-u")
            .arg(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .expect("python starts");
        let stdin = child.stdin.take().expect("stdin");
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Some(Customer {
            child,
            stdin,
            lines,
            log,
            ready: false,
        })
    }

    async fn line(&mut self, wait: Duration, what: &str) -> Value {
        let line = tokio::time::timeout(wait, self.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("{what}: no answer within {wait:?}; {}", self.stderr()))
            .expect("reading the SDK process")
            .unwrap_or_else(|| panic!("{what}: the SDK process ended; {}", self.stderr()));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{what}: {e}: {line}"))
    }

    fn stderr(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        format!(
            "stderr: {}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    }

    /// Runs `phase`; answers one outcome per call made, in call order.
    pub async fn run(&mut self, phase: &Phase) -> Vec<Outcome> {
        if !self.ready {
            let ready = self.line(READY_MAX, "the SDKs' import").await;
            assert_eq!(ready["ready"], true, "{ready}");
            assert_eq!(ready["anthropic"], ANTHROPIC_VERSION, "{ready}");
            assert_eq!(ready["openai"], OPENAI_VERSION, "{ready}");
            self.ready = true;
        }
        let mut request = serde_json::to_string(phase).expect("a phase serializes");
        request.push('\n');
        self.stdin
            .write_all(request.as_bytes())
            .await
            .expect("the SDK process reads");
        self.stdin.flush().await.expect("the SDK process reads");
        let answer = self.line(PHASE_MAX, "a phase").await;
        assert!(
            answer["error"].is_null(),
            "the SDK script failed: {}",
            answer["error"].as_str().unwrap_or_default()
        );
        serde_json::from_value(answer["results"].clone()).expect("outcomes")
    }
}

impl Drop for Customer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_file(&self.log);
    }
}

// ----------------------------------------------------------------------------------------
// Soft expectations
// ----------------------------------------------------------------------------------------

/// Expectations of one test: each is recorded (and printed when it fails); [`Checks::finish`]
/// fails the test listing every one that did not hold.
#[derive(Default)]
pub struct Checks {
    scope: String,
    held: usize,
    failed: Vec<String>,
}

impl Checks {
    pub fn new() -> Checks {
        Checks::default()
    }

    /// Names what the following expectations are about (the backend).
    pub fn scope(&mut self, scope: &str) {
        scope.clone_into(&mut self.scope);
    }

    /// Expects `ok`; answers it.
    pub fn that(&mut self, ok: bool, what: impl Display) -> bool {
        if ok {
            self.held += 1;
        } else {
            let line = format!("[{}] {what}", self.scope);
            eprintln!("expectation failed: {line}");
            self.failed.push(line);
        }
        ok
    }

    /// Expects `got == want`; answers whether it is.
    pub fn eq<T: PartialEq + Debug>(&mut self, what: impl Display, got: T, want: T) -> bool {
        let ok = got == want;
        self.that(ok, format_args!("{what}: got {got:?}, want {want:?}"))
    }

    /// Fails the test when an expectation did not hold.
    pub fn finish(self) {
        assert!(
            self.failed.is_empty(),
            "{} of {} expectations failed:\n{}",
            self.failed.len(),
            self.failed.len() + self.held,
            self.failed.join("\n")
        );
    }
}

/// Expects `outcome` to be a 402 refusal with `code`, as its SDK raises it: Anthropic
/// `anthropic.PaymentRequiredError` with `{"type": "error", "error": {"type":
/// "billing_error", ...}}`, OpenAI `openai.APIStatusError` with `type: insufficient_quota`;
/// the billing URL names the org; made once (not retried); `state` is the access-state
/// header it carries.
pub fn expect_refused(
    checks: &mut Checks,
    what: &str,
    sdk: Sdk,
    outcome: &Outcome,
    code: &str,
    state: &str,
    org_id: &str,
) {
    let brief = outcome.brief();
    checks.eq(
        format!("{what}: status ({brief})"),
        outcome.status,
        Some(402),
    );
    checks.eq(
        format!("{what}: error code ({brief})"),
        outcome.error_code.as_deref(),
        Some(code),
    );
    // `state` may name alternatives (`a|b`): a header read as of the answer, when a rescue
    // (an auto-reload) may land between the refusal and the answer.
    let header = outcome.access_state.as_deref().unwrap_or("");
    checks.eq(
        format!("{what}: creditgate-access-state in {state} ({brief})"),
        state.split('|').any(|s| s == header),
        true,
    );
    let (exception, error_type) = match sdk {
        Sdk::Anthropic => ("anthropic.PaymentRequiredError", "billing_error"),
        Sdk::Openai => ("openai.APIStatusError", "insufficient_quota"),
    };
    checks.eq(
        format!("{what}: exception"),
        outcome.exception.as_deref(),
        Some(exception),
    );
    checks.eq(
        format!("{what}: error type"),
        outcome.error_type.as_deref(),
        Some(error_type),
    );
    if sdk == Sdk::Anthropic {
        checks.eq(
            format!("{what}: envelope type"),
            outcome.body_type.as_deref(),
            Some("error"),
        );
    }
    checks.that(
        outcome
            .billing_url
            .as_deref()
            .is_some_and(|url| url.contains(org_id)),
        format_args!(
            "{what}: billing_url names {org_id}: {:?}",
            outcome.billing_url
        ),
    );
    checks.eq(
        format!("{what}: HTTP attempts (a 402 is not retried)"),
        outcome.attempts,
        1,
    );
}

/// Expects `outcome` to be a success made in one attempt.
pub fn expect_ok(checks: &mut Checks, what: &str, outcome: &Outcome) -> bool {
    let ok = checks.that(
        outcome.ok && outcome.status == Some(200),
        format_args!("{what}: succeeds ({})", outcome.brief()),
    );
    checks.eq(format!("{what}: HTTP attempts"), outcome.attempts, 1) && ok
}

// ----------------------------------------------------------------------------------------
// Money, prices, the org
// ----------------------------------------------------------------------------------------

/// A decimal string ("3.471901", "-0.50") in micro-units.
pub fn micros(text: &str) -> i64 {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    assert!(fraction.len() <= 6, "{text}: more than 6 decimals");
    let whole: i64 = whole.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
    let fraction: i64 = format!("{fraction:0<6}")
        .parse()
        .unwrap_or_else(|e| panic!("{text}: {e}"));
    let value = whole * 1_000_000 + fraction;
    if negative {
        -value
    } else {
        value
    }
}

/// Micro-units as a decimal string with six places.
pub fn money(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let value = micros.unsigned_abs();
    format!("{sign}{}.{:06}", value / 1_000_000, value % 1_000_000)
}

/// A model's prices: per million tokens as the operator enters them, and per token in
/// micro-units (what the expected charges are computed from).
#[derive(Clone, Copy, Debug)]
pub struct Price {
    pub model: &'static str,
    pub input: &'static str,
    pub output: &'static str,
    pub request_fee: Option<&'static str>,
}

impl Price {
    /// The charge for `input` and `output` tokens, by the product's rule: the tokens' cost
    /// (micro-units per million tokens × tokens) rounded up to a micro-unit once, plus the
    /// request fee.
    pub fn cost(&self, input: u64, output: u64) -> i64 {
        let scaled = i128::from(input) * i128::from(micros(self.input))
            + i128::from(output) * i128::from(micros(self.output));
        let tokens = (scaled + 999_999) / 1_000_000;
        i64::try_from(tokens).expect("in range") + self.request_fee.map_or(0, micros)
    }

    /// The charge for what `outcome` reports it used.
    pub fn cost_of(&self, outcome: &Outcome) -> i64 {
        self.cost(
            outcome.input_tokens.expect("input tokens"),
            outcome.output_tokens.expect("output tokens"),
        )
    }

    /// `PUT /v1/prices/{model}` (operator).
    pub async fn put(&self, app: &TestApp) {
        let mut body = json!({ "input": self.input, "output": self.output });
        if let Some(fee) = self.request_fee {
            body["request_fee"] = json!(fee);
        }
        let reply = app
            .request(
                &As::Operator,
                Method::PUT,
                &format!("/v1/prices/{}", self.model),
                Some(body),
                &[],
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    }
}

/// The org's balance as the operator reads it.
pub async fn balance(app: &TestApp, org_id: &str) -> Value {
    let reply = app
        .get(&As::Operator, &format!("/v1/orgs/{org_id}/balance"))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body
}

/// A new org with `credits` granted and a key: (its id, the key's secret).
pub async fn org_with_key(app: &TestApp, name: &str, credits: &str) -> (String, String) {
    let org_id = app.create_org(name).await;
    app.grant(&org_id, credits).await;
    let (_, key) = app.create_key(&org_id).await;
    (org_id, key)
}

/// The amounts of the org's usage transfers, sorted.
pub async fn usage_amounts(app: &TestApp, org_id: &str) -> Vec<i64> {
    let mut amounts: Vec<i64> = transfers(app, org_id)
        .await
        .iter()
        .filter(|t| t["kind"] == "usage")
        .map(|t| micros(t["amount"].as_str().expect("amount")))
        .collect();
    amounts.sort_unstable();
    amounts
}

/// Every transfer of the org, newest first.
pub async fn transfers(app: &TestApp, org_id: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut after = String::new();
    loop {
        let reply = app
            .get(
                &As::Operator,
                &format!("/v1/orgs/{org_id}/transfers?limit=100{after}"),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        let page = reply.body["data"].as_array().expect("data").clone();
        let Some(last) = page.last() else { break };
        after = format!("&starting_after={}", last["id"].as_str().expect("id"));
        all.extend(page);
        if reply.body["has_more"] != true {
            break;
        }
    }
    all
}

/// Waits until the org has no open hold: a streamed call is settled just after its last
/// event reached the client, so right after a phase one may still be open. Answers whether
/// it got there within [`WAIT_MAX`].
pub async fn holds_settled(app: &TestApp, org_id: &str) -> bool {
    within(|| async {
        let reserved = balance(app, org_id).await["reserved"].as_str().map(micros);
        (reserved == Some(0)).then_some(())
    })
    .await
    .is_some()
}

/// How many usage transfers (settled calls) the org has.
pub async fn usage_charges(app: &TestApp, org_id: &str) -> usize {
    transfers(app, org_id)
        .await
        .iter()
        .filter(|t| t["kind"] == "usage")
        .count()
}

/// The kinds of the org's notices, oldest first.
pub async fn notice_kinds(app: &TestApp, org_id: &str) -> Vec<String> {
    let reply = app
        .get(
            &As::Operator,
            &format!("/v1/notices?org_id={org_id}&limit=100"),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let mut kinds: Vec<String> = reply.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|n| n["kind"].as_str().unwrap_or_default().to_owned())
        .collect();
    kinds.reverse();
    kinds
}

/// The org's payments.
pub async fn payments(app: &TestApp, org_id: &str) -> Vec<Value> {
    let reply = app
        .get(
            &As::Operator,
            &format!("/v1/orgs/{org_id}/payments?limit=100"),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["data"].as_array().cloned().unwrap_or_default()
}

/// Grants `amount` of paid credits with an Idempotency-Key, and replays the same request
/// (a retried POST): both answer the same grant. Answers the grant.
pub async fn top_up(app: &TestApp, org_id: &str, amount: &str) -> Value {
    let key = format!("top-up-{}", rand::random::<u64>());
    let path = format!("/v1/orgs/{org_id}/grants");
    let body = json!({ "amount": amount, "origin": "paid" });
    let first = app
        .post_idempotent(&As::Operator, &path, &key, body.clone())
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    let replay = app.post_idempotent(&As::Operator, &path, &key, body).await;
    assert_eq!(replay.body["id"], first.body["id"], "{}", replay.body);
    first.body
}

/// Polls `check` until it answers `Some`, at most [`WAIT_MAX`]; `None` when it never did.
pub async fn within<T, F, Fut>(mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The emails received once `done` accepts them (or [`WAIT_MAX`] passed), after watching a
/// while ([`QUIET`]) for more. Receipts are left out, as [`Smtpd::mails`] does.
pub async fn mails_once(smtpd: &Smtpd, done: impl Fn(&[Mail]) -> bool) -> Vec<Mail> {
    let deadline = Instant::now() + WAIT_MAX;
    while !done(&smtpd.mails()) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(QUIET).await;
    smtpd.mails()
}

/// How many of `mails` have `subject`.
pub fn count(mails: &[Mail], subject: &str) -> usize {
    mails.iter().filter(|m| m.subject == subject).count()
}

/// The subjects of `mails`.
pub fn subjects(mails: &[Mail]) -> Vec<String> {
    mails.iter().map(|m| m.subject.clone()).collect()
}

// ----------------------------------------------------------------------------------------
// fakellm
// ----------------------------------------------------------------------------------------

/// A prompt containing this is answered with [`ESSAY`] (a long, costly answer).
pub const ESSAY_TRIGGER: &str = "fakellm-scenario:essay";
/// A prompt containing this is answered 429 (a retryable error: the SDKs retry it).
pub const RATE_LIMIT_TRIGGER: &str = "fakellm-scenario:rate-limit";

/// The essay fakellm answers: about 12,000 characters (fakellm counts `len / 4` tokens).
pub fn essay() -> String {
    let sentence =
        "Double-entry ledgers record every movement of credit twice, once on each side. ";
    sentence.repeat(12_000 / sentence.len())
}

fn fakellm_config() -> String {
    format!(
        r#"version: 1
rules:
  - name: rate_limit
    when:
      messages_contain: "{RATE_LIMIT_TRIGGER}"
    respond:
      status: 429
      error: "Rate limit exceeded (mock)"
  - name: essay
    when:
      messages_contain: "{ESSAY_TRIGGER}"
    respond:
      content: "{}"
"#,
        essay().trim_end()
    )
}

fn fakellm_installed(bin: &Path) -> bool {
    std::process::Command::new(bin)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|out| {
            out.status.success()
                && String::from_utf8_lossy(&out.stdout)
                    .contains(&format!("version {FAKELLM_VERSION}"))
        })
}

static FAKELLM_BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// A running `fakellm serve` on a free loopback port, killed on drop.
pub struct FakeLlm {
    pub url: String,
    child: std::process::Child,
    dir: PathBuf,
    client: reqwest::Client,
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl FakeLlm {
    /// A fresh fakellm; `None` (skip) when unavailable outside CI.
    pub async fn start() -> Option<FakeLlm> {
        let bin = tokio::task::spawn_blocking(|| {
            FAKELLM_BIN
                .get_or_init(|| {
                    python_tools::venv_with(
                        "fakellm",
                        &format!("fakellm=={FAKELLM_VERSION}"),
                        "fakellm",
                        fakellm_installed,
                    )
                })
                .clone()
        })
        .await
        .expect("the install task ends");
        let started = match bin {
            Ok(bin) => FakeLlm::spawn(&bin).await,
            Err(error) => Err(error),
        };
        match started {
            Ok(fake) => Some(fake),
            Err(error) if ci() => panic!("fakellm is required when CI is set: {error}"),
            Err(error) => {
                eprintln!("skipping: fakellm is unavailable (set CI to make this fail): {error}");
                None
            }
        }
    }

    async fn spawn(bin: &Path) -> Result<FakeLlm, String> {
        let dir = std::env::temp_dir().join(format!(
            "creditgate_sdk_fakellm_{}_{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let config = dir.join("fakellm.yaml");
        std::fs::write(&config, fakellm_config()).map_err(|e| e.to_string())?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| e.to_string())?;
        let mut last = String::new();
        // A free port can be taken between probing and binding: a few tries.
        for _ in 0..5 {
            let port = crate::smtp_support::free_port();
            let log_path = dir.join(format!("fakellm-{port}.log"));
            let log = File::create(&log_path).map_err(|e| e.to_string())?;
            let child = std::process::Command::new(bin)
                .args(["serve", "--host", "127.0.0.1", "--port", &port.to_string()])
                .arg("--config")
                .arg(&config)
                .current_dir(&dir)
                .stdin(Stdio::null())
                .stdout(log.try_clone().map_err(|e| e.to_string())?)
                .stderr(log)
                .spawn()
                .map_err(|e| format!("{}: {e}", bin.display()))?;
            let mut fake = FakeLlm {
                url: format!("http://127.0.0.1:{port}"),
                child,
                dir: PathBuf::new(),
                client: client.clone(),
            };
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if let Ok(Some(status)) = fake.child.try_wait() {
                    last = format!(
                        "fakellm exited with {status}: {}",
                        std::fs::read_to_string(&log_path).unwrap_or_default()
                    );
                    break;
                }
                if fake.stats().await.is_some() {
                    fake.dir = dir;
                    return Ok(fake);
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "fakellm did not answer: {}",
                        std::fs::read_to_string(&log_path).unwrap_or_default()
                    ));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        Err(last)
    }

    async fn stats(&self) -> Option<Value> {
        let reply = self
            .client
            .get(format!("{}/_fakellm/stats", self.url))
            .send()
            .await
            .ok()?;
        let stats: Value = reply.json().await.ok()?;
        stats["total_requests"].is_u64().then_some(stats)
    }

    /// Requests fakellm has answered on its API routes.
    pub async fn requests(&self) -> u64 {
        self.stats().await.expect("fakellm answers")["total_requests"]
            .as_u64()
            .expect("total_requests")
    }
}
