//! The metering proxy against a real upstream we did not write: fakellm (PyPI
//! `fakellm==0.3.5`), on both backends, both API styles, streamed and not.
//!
//! Setup: fakellm is installed once per test binary into `target/venv-fakellm` (reused when
//! its version matches; a file lock guards concurrent installs; `scripts/test.sh` installs it
//! too), and each test starts its own `fakellm serve` on a free loopback port with the rules
//! below, so its request counter (`GET /_fakellm/stats`) is the test's own. When `CI` is set, a
//! fakellm that cannot be installed or started fails the test; elsewhere the test is skipped
//! with a note. `CREDITGATE_FAKELLM=/path/to/fakellm` uses an existing executable.
//!
//! What fakellm 0.3.5 does (read from its source and checked by hand):
//! - `fakellm serve` refuses to start without a config file (`fakellm.yaml` in its working
//!   directory, or `--config`); rules match on message text, headers (`header.NAME`), model,
//!   turn; a rule's `respond.status` ≥ 400 answers an error body in the style's envelope.
//! - It accepts any model name and answers with a deterministic echo; usage: non-streamed,
//!   input = its token estimate of the messages (+ Anthropic `system`), output = of the answer;
//!   Anthropic streams report `message_start` usage `{input_tokens: 1, output_tokens: 1}` and
//!   `message_delta` `output_tokens = max(1, len(answer) / 4)`.
//! - OpenAI streams never carry a usage chunk, even when asked (`stream_options.include_usage`):
//!   through our proxy the usage of such a stream is unknown, and the documented rule charges
//!   the hold's amount (the worst case). The tests assert exactly that.
//! - Error rules are ignored for streamed requests (a stream is always a 200), so upstream
//!   429/500 are tested non-streamed. Its starter 429 trigger is the request header
//!   `x-test-scenario: rate_limit`, which our proxy (rightly) does not forward; the rules here
//!   trigger on message text instead.
//! - It ignores `max_tokens` (its answer is as long as its rule says); the long-answer tests
//!   ask for enough tokens that the hold covers it.
//! - No latency option and no header log: the timeout and "the caller's key never reaches the
//!   upstream" tests use small loopback listeners of our own.

mod api_support;
mod python_tools;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use api_support::{databases, spawn_app_with, As, TestApp, OPERATOR_TOKEN};
use creditgate::config::Config;
use python_tools::ci;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// ------------------------------------------------------------------------------------------
// fakellm: install, start, stop
// ------------------------------------------------------------------------------------------

const FAKELLM_VERSION: &str = "0.3.5";
/// Longest wait for a started fakellm to answer.
const FAKELLM_START_MAX: Duration = Duration::from_secs(60);
/// Ports tried before giving up (a free port can be taken between probing and binding).
const FAKELLM_START_TRIES: usize = 5;
/// Words of the long answer (streamed at 10 ms a word by fakellm: about 1.5 s).
const LONG_ANSWER_WORDS: usize = 150;

/// The answer of the `long_answer` rule.
fn long_answer() -> String {
    (1..=LONG_ANSWER_WORDS)
        .map(|i| format!("w{i:03}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Message texts that trigger fakellm rules.
const RATE_LIMIT: &str = "fakellm-scenario:rate-limit please";
const SERVER_ERROR: &str = "fakellm-scenario:server-error please";
const LONG: &str = "fakellm-scenario:long-answer please";

fn fakellm_config() -> String {
    format!(
        r#"version: 1
rules:
  - name: rate_limit
    when:
      messages_contain: "fakellm-scenario:rate-limit"
    respond:
      status: 429
      error: "Rate limit exceeded (mock)"
  - name: server_error
    when:
      messages_contain: "fakellm-scenario:server-error"
    respond:
      status: 500
      error: "Internal server error (mock)"
  - name: long_answer
    when:
      messages_contain: "fakellm-scenario:long-answer"
    respond:
      content: "{}"
"#,
        long_answer()
    )
}

fn fakellm_installed(bin: &Path) -> bool {
    Command::new(bin)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|out| {
            out.status.success()
                && String::from_utf8_lossy(&out.stdout)
                    .contains(&format!("version {FAKELLM_VERSION}"))
        })
}

/// Finds or installs fakellm into `target/venv-fakellm`; answers its executable.
fn install_fakellm() -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os("CREDITGATE_FAKELLM") {
        let bin = PathBuf::from(bin);
        return if fakellm_installed(&bin) {
            Ok(bin)
        } else {
            Err(format!(
                "CREDITGATE_FAKELLM={} is not fakellm {FAKELLM_VERSION}",
                bin.display()
            ))
        };
    }
    python_tools::venv_with(
        "fakellm",
        &format!("fakellm=={FAKELLM_VERSION}"),
        "fakellm",
        fakellm_installed,
    )
}

static FAKELLM_BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// A running `fakellm serve`, killed on drop.
struct FakeLlm {
    url: String,
    child: Child,
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
    /// `GET /_fakellm/stats`.
    async fn stats(&self) -> Value {
        self.client
            .get(format!("{}/_fakellm/stats", self.url))
            .send()
            .await
            .expect("fakellm answers")
            .json()
            .await
            .expect("fakellm stats are JSON")
    }

    /// Requests fakellm has answered on its API routes.
    async fn requests(&self) -> u64 {
        self.stats().await["total_requests"]
            .as_u64()
            .expect("total_requests")
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn start_fakellm(bin: &Path) -> Result<FakeLlm, String> {
    let dir = std::env::temp_dir().join(format!(
        "creditgate_fakellm_{}_{}",
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
    for _ in 0..FAKELLM_START_TRIES {
        let port = free_port().map_err(|e| e.to_string())?;
        let log_path = dir.join(format!("fakellm-{port}.log"));
        let log = File::create(&log_path).map_err(|e| e.to_string())?;
        let child = Command::new(bin)
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
            dir: dir.clone(),
            client: client.clone(),
        };
        let deadline = Instant::now() + FAKELLM_START_MAX;
        loop {
            if let Ok(Some(status)) = fake.child.try_wait() {
                last = format!(
                    "fakellm exited with {status}: {}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
                // Keep the directory for the next try.
                fake.dir = PathBuf::new();
                break;
            }
            let ready = client
                .get(format!("{}/_fakellm/stats", fake.url))
                .send()
                .await
                .ok()
                .filter(|r| r.status() == StatusCode::OK);
            if let Some(reply) = ready {
                if reply
                    .json::<Value>()
                    .await
                    .is_ok_and(|v| v["total_requests"].is_u64())
                {
                    return Ok(fake);
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "fakellm did not answer within {FAKELLM_START_MAX:?}: {}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Err(last)
}

/// A fresh fakellm for one test; `None` (skip) when it is unavailable outside CI.
async fn fakellm() -> Option<FakeLlm> {
    let bin = tokio::task::spawn_blocking(|| FAKELLM_BIN.get_or_init(install_fakellm).clone())
        .await
        .expect("the install task ends");
    let started = match bin {
        Ok(bin) => start_fakellm(&bin).await,
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

// ------------------------------------------------------------------------------------------
// Small loopback upstreams of our own
// ------------------------------------------------------------------------------------------

/// A TCP listener that accepts connections and never answers; aborted on drop.
struct Silent {
    url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn silent_upstream() -> Silent {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let task = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    Silent { url, task }
}

/// Reads one HTTP/1.1 request (head and `content-length` body) from `socket`.
async fn read_request(socket: &mut tokio::net::TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let length = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = buffer[head_end..].to_vec();
    while body.len() < length {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((head, body))
}

/// What the recording upstream answers: reported usage (7 in, 5 out).
const RECORDED_USAGE: (u64, u64) = (7, 5);

/// The requests an upstream received: (head, body).
type Recorded = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// An upstream that records every request (head and body) and answers a fixed, well-formed
/// non-streamed reply of the path's style.
struct Recorder {
    url: String,
    requests: Recorded,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn recording_upstream() -> Recorder {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let requests: Recorded = Arc::default();
    let seen = requests.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let Some((head, body)) = read_request(&mut socket).await else {
                    return;
                };
                let (input, output) = RECORDED_USAGE;
                let reply = if head.starts_with("POST /v1/messages ") {
                    json!({"id": "msg_rec", "type": "message", "role": "assistant",
                        "content": [{"type": "text", "text": "recorded"}], "model": "m",
                        "stop_reason": "end_turn", "stop_sequence": null,
                        "usage": {"input_tokens": input, "output_tokens": output}})
                } else {
                    json!({"id": "chatcmpl-rec", "object": "chat.completion", "created": 0,
                        "model": "m", "choices": [{"index": 0, "finish_reason": "stop",
                        "message": {"role": "assistant", "content": "recorded"}}],
                        "usage": {"prompt_tokens": input, "completion_tokens": output,
                        "total_tokens": input + output}})
                };
                seen.lock().expect("lock").push((head, body));
                let reply = reply.to_string();
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
                    reply.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    Recorder {
        url,
        requests,
        task,
    }
}

/// An upstream that answers 200 with a stream, sends its first event, then stalls forever.
async fn stalling_stream_upstream() -> Silent {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let task = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((mut socket, _)) = listener.accept().await {
            let Some((head, _)) = read_request(&mut socket).await else {
                continue;
            };
            let event = if head.starts_with("POST /v1/messages ") {
                "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_s\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"m\",\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n"
            } else {
                "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":0,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"},\"finish_reason\":null}]}\n\n"
            };
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{event}\r\n",
                event.len()
            );
            let _ = socket.write_all(answer.as_bytes()).await;
            open.push(socket);
        }
    });
    Silent { url, task }
}

// ------------------------------------------------------------------------------------------
// The two styles
// ------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Style {
    Anthropic,
    OpenAi,
}

const STYLES: [Style; 2] = [Style::Anthropic, Style::OpenAi];

/// Prices per million tokens (input, output) of both test models; fractional micro-units per
/// token, so the round-up of the line item is exercised.
const PRICE_INPUT: &str = "2.50";
const PRICE_OUTPUT: &str = "12.50";
/// The same in micro-units per million tokens.
const PRICE_MICROS: (i64, i64) = (2_500_000, 12_500_000);
/// `max_tokens` of every call.
const MAX_TOKENS: u64 = 64;

impl Style {
    fn path(self) -> &'static str {
        match self {
            Style::Anthropic => "/anthropic/v1/messages",
            Style::OpenAi => "/openai/v1/chat/completions",
        }
    }

    fn model(self) -> &'static str {
        match self {
            Style::Anthropic => "claude-fake-1",
            Style::OpenAi => "gpt-fake-1",
        }
    }

    /// A request of this style with the user's `text`.
    fn body(self, text: &str, stream: bool) -> Value {
        match self {
            Style::Anthropic => json!({
                "model": self.model(), "max_tokens": MAX_TOKENS, "stream": stream,
                "system": "You are a terse assistant.",
                "messages": [{"role": "user", "content": text}],
            }),
            Style::OpenAi => json!({
                "model": self.model(), "max_tokens": MAX_TOKENS, "stream": stream,
                "messages": [
                    {"role": "system", "content": "You are a terse assistant."},
                    {"role": "user", "content": text},
                ],
            }),
        }
    }

    /// The usage (input, output) a non-streamed answer reports, checking its shape.
    fn reported_usage(self, body: &Value) -> (u64, u64) {
        let count = |v: &Value| {
            v.as_u64()
                .unwrap_or_else(|| panic!("a token count in {body}"))
        };
        match self {
            Style::Anthropic => {
                assert_eq!(body["type"], "message", "{body}");
                assert_eq!(body["role"], "assistant", "{body}");
                assert_eq!(body["model"], self.model(), "{body}");
                assert_eq!(body["content"][0]["type"], "text", "{body}");
                assert!(body["content"][0]["text"]
                    .as_str()
                    .is_some_and(|t| !t.is_empty()));
                (
                    count(&body["usage"]["input_tokens"]),
                    count(&body["usage"]["output_tokens"]),
                )
            }
            Style::OpenAi => {
                assert_eq!(body["object"], "chat.completion", "{body}");
                assert_eq!(body["model"], self.model(), "{body}");
                assert_eq!(body["choices"][0]["message"]["role"], "assistant", "{body}");
                assert!(body["choices"][0]["message"]["content"]
                    .as_str()
                    .is_some_and(|t| !t.is_empty()));
                (
                    count(&body["usage"]["prompt_tokens"]),
                    count(&body["usage"]["completion_tokens"]),
                )
            }
        }
    }

    /// Checks `answer` is this style's error envelope with the error `kind` (Anthropic
    /// `error.type`) or `openai_kind` (OpenAI `error.type`) and, when given, `code`.
    fn assert_error(
        self,
        answer: &Answer,
        status: StatusCode,
        anthropic_kind: &str,
        openai_kind: &str,
        code: Option<&str>,
    ) {
        assert_eq!(answer.status, status, "{}", answer.text);
        assert!(
            answer.content_type().starts_with("application/json"),
            "{:?}",
            answer.headers
        );
        let body = answer.json();
        let error = &body["error"];
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
        match self {
            Style::Anthropic => {
                assert_eq!(body["type"], "error", "{body}");
                assert_eq!(error["type"], anthropic_kind, "{body}");
            }
            Style::OpenAi => {
                assert!(body.get("type").is_none(), "{body}");
                assert_eq!(error["type"], openai_kind, "{body}");
            }
        }
        if let Some(code) = code {
            assert_eq!(error["code"], code, "{body}");
        }
    }

    /// Checks the billing refusal (402) of this style.
    fn assert_billing_error(self, answer: &Answer) {
        self.assert_error(
            answer,
            StatusCode::PAYMENT_REQUIRED,
            "billing_error",
            "insufficient_quota",
            Some("credit_balance_exhausted"),
        );
    }
}

// ------------------------------------------------------------------------------------------
// Calls, money and ledger checks
// ------------------------------------------------------------------------------------------

/// A proxied answer: status, headers, and the body as text.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("a JSON body ({e}): {}", self.text))
    }

    fn content_type(&self) -> &str {
        self.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The balance headers: (available in micro-units, access state).
    fn balance_headers(&self) -> (i64, String) {
        let available = self
            .header("creditgate-balance-available")
            .unwrap_or_else(|| panic!("creditgate-balance-available in {:?}", self.headers));
        let state = self
            .header("creditgate-access-state")
            .unwrap_or_else(|| panic!("creditgate-access-state in {:?}", self.headers));
        assert!(
            ["active", "low", "depleted", "suspended"].contains(&state),
            "{state}"
        );
        (micros(available), state.to_owned())
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("a client")
}

/// Sends `body` to the style's proxy route with the caller's key as `x-api-key`.
async fn call(app: &TestApp, secret: &str, style: Style, body: &Value) -> Answer {
    call_as(&app.client, app, &As::Key(secret.to_owned()), style, body).await
}

async fn call_as(
    client: &reqwest::Client,
    app: &TestApp,
    who: &As,
    style: Style,
    body: &Value,
) -> Answer {
    let mut request = client
        .post(format!("{}{}", app.base, style.path()))
        .json(body);
    request = match who {
        As::Key(secret) => request.header("x-api-key", secret),
        As::Bearer(secret) => request.bearer_auth(secret),
        As::Operator => request.bearer_auth(OPERATOR_TOKEN),
        As::Nobody => request,
    };
    let response = request.send().await.expect("the proxy answers");
    Answer {
        status: response.status(),
        headers: response.headers().clone(),
        text: response.text().await.expect("a body"),
    }
}

/// A money string ("12.50", "0.000375", "-1.5") in micro-units.
fn micros(text: &str) -> i64 {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    assert!(fraction.len() <= 6, "{text}");
    let whole: i64 = whole.parse().unwrap_or_else(|_| panic!("money: {text}"));
    let fraction: i64 = format!("{fraction:0<6}")
        .parse()
        .unwrap_or_else(|_| panic!("money: {text}"));
    let value = whole * 1_000_000 + fraction;
    if negative {
        -value
    } else {
        value
    }
}

/// Micro-units as a money string with six decimals.
fn money(micros: i64) -> String {
    assert!(micros >= 0);
    format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

/// The price of `(input, output)` tokens at the test prices: one line item, rounded up once.
fn price_of((input, output): (u64, u64)) -> i64 {
    let scaled = i128::from(input) * i128::from(PRICE_MICROS.0)
        + i128::from(output) * i128::from(PRICE_MICROS.1);
    i64::try_from((scaled + 999_999) / 1_000_000).expect("a small cost")
}

/// Every transfer of the org, oldest first (all pages).
async fn transfers(app: &TestApp, org: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(id) => format!("/v1/orgs/{org}/transfers?limit=100&starting_after={id}"),
            None => format!("/v1/orgs/{org}/transfers?limit=100"),
        };
        let reply = app.get(&As::Operator, &path).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        let page = reply.body["data"].as_array().expect("data").clone();
        after = page
            .last()
            .map(|t| t["id"].as_str().expect("id").to_owned());
        all.extend(page);
        if reply.body["has_more"] != true {
            break;
        }
    }
    all
}

async fn usage_transfers(app: &TestApp, org: &str) -> Vec<Value> {
    transfers(app, org)
        .await
        .into_iter()
        .filter(|t| t["kind"] == "usage")
        .collect()
}

/// The one usage transfer of the org (waits for it, bounded), and its hold.
async fn the_usage_charge(app: &TestApp, org: &str) -> (Value, Value) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let usage = loop {
        let usage = usage_transfers(app, org).await;
        if !usage.is_empty() || Instant::now() > deadline {
            break usage;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(
        usage.len(),
        1,
        "one usage transfer on {}: {usage:#?}",
        app.backend
    );
    let transfer = usage[0].clone();
    assert_eq!(transfer["direction"], "debit", "{transfer}");
    assert_eq!(transfer["overspend"], "0.00", "{transfer}");
    let hold_id = transfer["hold_id"].as_str().expect("the hold it settled");
    let hold = app
        .get(&As::Operator, &format!("/v1/holds/{hold_id}"))
        .await;
    assert_eq!(hold.status, StatusCode::OK, "{}", hold.body);
    assert_eq!(hold.body["state"], "settled", "{}", hold.body);
    assert_eq!(
        hold.body["settled_amount"], transfer["amount"],
        "{}",
        hold.body
    );
    (transfer, hold.body)
}

/// Polls the org's balance until nothing is reserved (at most about 5 s); answers it.
async fn settled_balance(app: &TestApp, org: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let balance = app.balance(org).await.body;
        if balance["reserved"] == "0.00" {
            return balance;
        }
        assert!(
            Instant::now() < deadline,
            "a hold is still open after 5 s on {}: {balance}",
            app.backend
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Checks the org's ledger is untouched by a call: posted still `credit`, nothing
/// reserved, no usage transfer.
async fn assert_uncharged(app: &TestApp, org: &str, credit: &str) {
    let balance = settled_balance(app, org).await;
    assert_eq!(
        micros(balance["posted"].as_str().expect("posted")),
        micros(credit),
        "{balance}"
    );
    assert_eq!(balance["available"], balance["posted"], "{balance}");
    assert!(
        usage_transfers(app, org).await.is_empty(),
        "no usage charged"
    );
}

/// The app on `database` with both upstreams at `url` (and `configure` on top).
async fn app_with(
    database: creditgate_store::testing::TestDatabase,
    url: &str,
    configure: impl FnOnce(&mut Config),
) -> TestApp {
    let url = url.to_owned();
    spawn_app_with(database, move |config| {
        config.anthropic_upstream = url.clone().into();
        config.openai_upstream = url.into();
        config.anthropic_upstream_key = "sk-ant-upstream-provider-key".into();
        config.openai_upstream_key = "sk-openai-upstream-provider-key".into();
        configure(config);
    })
    .await
}

/// Prices both test models (once per app).
async fn set_prices(app: &TestApp) {
    for style in STYLES {
        app.set_price(style.model(), PRICE_INPUT, PRICE_OUTPUT)
            .await;
    }
}

/// A new org with `credit` (none when `None`) and a key; answers (org id, key secret).
async fn org_with(app: &TestApp, name: &str, credit: Option<&str>) -> (String, String) {
    let org = app.create_org(name).await;
    if let Some(credit) = credit {
        app.grant(&org, credit).await;
    }
    let (_, secret) = app.create_key(&org).await;
    (org, secret)
}

/// The events of a server-sent-events body: (event name, data as JSON or a string).
fn sse_events(text: &str) -> Vec<(Option<String>, Value)> {
    text.replace("\r\n", "\n")
        .split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut name = None;
            let mut data = Vec::new();
            for line in block.lines() {
                if let Some(value) = line.strip_prefix("event:") {
                    name = Some(value.trim().to_owned());
                } else if let Some(value) = line.strip_prefix("data:") {
                    data.push(value.strip_prefix(' ').unwrap_or(value));
                }
            }
            let data = data.join("\n");
            let value = serde_json::from_str(&data).unwrap_or(Value::String(data));
            (name, value)
        })
        .collect()
}

// ------------------------------------------------------------------------------------------
// The tests
// ------------------------------------------------------------------------------------------

/// Non-streamed, both styles: the answer passes through, and the charge is the price of the
/// usage the upstream reported in it, to the micro-unit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_streamed_calls_are_charged_the_reported_usage() {
    let Some(fake) = fakellm().await else { return };
    for database in databases().await {
        let app = app_with(database, &fake.url, |_| {}).await;
        set_prices(&app).await;
        for (i, style) in STYLES.into_iter().enumerate() {
            let (org, secret) = org_with(&app, "Acme", Some("10.00")).await;
            let text = format!(
                "Hello there! Please summarise the plot of a long novel in one line, call {i}."
            );
            let before = fake.requests().await;
            let answer = call(&app, &secret, style, &style.body(&text, false)).await;
            assert_eq!(answer.status, StatusCode::OK, "{style:?}: {}", answer.text);
            assert_eq!(fake.requests().await, before + 1, "one call upstream");
            assert!(answer.content_type().starts_with("application/json"));
            let reported = style.reported_usage(&answer.json());
            assert!(reported.0 > 0 && reported.1 > 0, "{reported:?}");
            let expected = price_of(reported);
            let (transfer, hold) = the_usage_charge(&app, &org).await;
            assert_eq!(
                micros(transfer["amount"].as_str().expect("amount")),
                expected,
                "{style:?} on {}: charged {transfer} for usage {reported:?}",
                app.backend
            );
            assert_eq!(hold["model"], style.model(), "{hold}");
            assert!(micros(hold["amount"].as_str().expect("amount")) >= expected);
            let balance = settled_balance(&app, &org).await;
            let posted = micros(balance["posted"].as_str().expect("posted"));
            assert_eq!(posted, 10_000_000 - expected, "{balance}");
            // Non-streamed: the headers are read after the settlement.
            let (available, state) = answer.balance_headers();
            assert_eq!(available, posted, "{:?}", answer.headers);
            assert_eq!(state, "active");
        }
        app.assert_invariants().await;
        app.stop().await;
    }
}

/// An Anthropic stream: the client receives the upstream's events, and the charge is the
/// price of the usage in them (`message_start` input, `message_delta` output).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_stream_is_charged_the_usage_in_its_events() {
    let Some(fake) = fakellm().await else { return };
    for database in databases().await {
        let app = app_with(database, &fake.url, |_| {}).await;
        set_prices(&app).await;
        let style = Style::Anthropic;
        let (org, secret) = org_with(&app, "Streamer", Some("10.00")).await;
        let body = style.body("Hello, stream me a short answer please.", true);
        let answer = call(&app, &secret, style, &body).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        assert!(
            answer.content_type().starts_with("text/event-stream"),
            "{:?}",
            answer.headers
        );
        let events = sse_events(&answer.text);
        let names: Vec<&str> = events
            .iter()
            .map(|(name, _)| name.as_deref().unwrap_or(""))
            .collect();
        assert_eq!(names.first(), Some(&"message_start"), "{names:?}");
        assert_eq!(names.last(), Some(&"message_stop"), "{names:?}");
        for name in [
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
        ] {
            assert!(names.contains(&name), "{name} in {names:?}");
        }
        for (name, data) in &events {
            assert_eq!(data["type"].as_str(), name.as_deref(), "{data}");
        }
        let text: String = events
            .iter()
            .filter_map(|(_, data)| data["delta"]["text"].as_str())
            .collect();
        assert!(
            text.starts_with("[mock response for claude-fake-1"),
            "{text}"
        );
        let start = &events[0].1["message"]["usage"];
        let delta = &events
            .iter()
            .rfind(|(name, _)| name.as_deref() == Some("message_delta"))
            .expect("message_delta")
            .1["usage"];
        let reported = (
            start["input_tokens"].as_u64().expect("input_tokens"),
            delta["output_tokens"].as_u64().expect("output_tokens"),
        );
        let expected = price_of(reported);
        // A stream's headers go out before its usage is known: they are as of the hold.
        let (available, state) = answer.balance_headers();
        assert_eq!(state, "active");
        let (transfer, hold) = the_usage_charge(&app, &org).await;
        assert_eq!(
            micros(transfer["amount"].as_str().expect("amount")),
            expected,
            "on {}: charged {transfer} for the streamed usage {reported:?}",
            app.backend
        );
        assert_eq!(
            available,
            10_000_000 - micros(hold["amount"].as_str().expect("amount"))
        );
        let balance = settled_balance(&app, &org).await;
        assert_eq!(
            micros(balance["posted"].as_str().expect("posted")),
            10_000_000 - expected,
            "{balance}"
        );
        assert_eq!(fake.stats().await["recent"][0]["stream"], true);
        app.assert_invariants().await;
        app.stop().await;
    }
}

/// fakellm's OpenAI streams carry no usage chunk, even though the proxy asks for one
/// (`stream_options.include_usage`): the usage is unknown, so the rule charges the hold's
/// amount (the worst case), whether or not the client asked for usage itself. The client
/// still gets every chunk and `[DONE]`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_stream_without_a_usage_chunk_is_charged_the_hold() {
    let Some(fake) = fakellm().await else { return };
    for database in databases().await {
        let app = app_with(database, &fake.url, |_| {}).await;
        set_prices(&app).await;
        let style = Style::OpenAi;
        for client_asks in [false, true] {
            let (org, secret) = org_with(&app, "Streamer", Some("10.00")).await;
            let mut body = style.body("Hello, stream me a short answer please.", true);
            if client_asks {
                body["stream_options"] = json!({ "include_usage": true });
            }
            let answer = call(&app, &secret, style, &body).await;
            assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
            assert!(answer.content_type().starts_with("text/event-stream"));
            let events = sse_events(&answer.text);
            assert_eq!(
                events.last().map(|(_, data)| data),
                Some(&json!("[DONE]")),
                "{}",
                answer.text
            );
            let chunks = &events[..events.len() - 1];
            assert!(chunks.len() >= 3, "{}", answer.text);
            for (_, chunk) in chunks {
                assert_eq!(chunk["object"], "chat.completion.chunk", "{chunk}");
                assert!(chunk["usage"].is_null(), "fakellm sent usage: {chunk}");
            }
            let text: String = chunks
                .iter()
                .filter_map(|(_, chunk)| chunk["choices"][0]["delta"]["content"].as_str())
                .collect();
            assert!(text.starts_with("[mock response for gpt-fake-1"), "{text}");
            assert_eq!(
                chunks.last().expect("a chunk").1["choices"][0]["finish_reason"],
                "stop"
            );
            let (available, _) = answer.balance_headers();
            let (transfer, hold) = the_usage_charge(&app, &org).await;
            let held = micros(hold["amount"].as_str().expect("amount"));
            assert_eq!(
                micros(transfer["amount"].as_str().expect("amount")),
                held,
                "usage unknown: the hold's amount is charged (client asked: {client_asks}, {})",
                app.backend
            );
            assert_eq!(available, 10_000_000 - held);
            // The hold is the worst case: at least `max_tokens` of output at its price.
            assert!(held >= price_of((0, MAX_TOKENS)), "{hold}");
            let balance = settled_balance(&app, &org).await;
            assert_eq!(
                micros(balance["posted"].as_str().expect("posted")),
                10_000_000 - held
            );
        }
        let metrics = app.get(&As::Nobody, "/metrics").await;
        let metrics = metrics.body.as_str().expect("metrics text");
        assert!(
            metrics.contains("creditgate_proxy_usage_unknown_total"),
            "the unknown usage is counted"
        );
        app.assert_invariants().await;
        app.stop().await;
    }
}

/// A depleted org (no credits) and an org whose credits do not cover the worst case get the
/// style's billing error (402), streamed or not, and nothing reaches the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_org_without_credits_gets_402_in_its_style_and_nothing_goes_upstream() {
    let Some(fake) = fakellm().await else { return };
    for database in databases().await {
        let app = app_with(database, &fake.url, |_| {}).await;
        set_prices(&app).await;
        let (empty, empty_secret) = org_with(&app, "Empty", None).await;
        let (poor, poor_secret) = org_with(&app, "Poor", Some("0.0001")).await;
        assert_eq!(app.balance(&empty).await.str("access_state"), "depleted");
        let before = fake.requests().await;
        for style in STYLES {
            for stream in [false, true] {
                for secret in [&empty_secret, &poor_secret] {
                    let body = style.body("Hello, anyone there?", stream);
                    let answer = call(&app, secret, style, &body).await;
                    style.assert_billing_error(&answer);
                    let error = &answer.json()["error"];
                    assert!(
                        error["billing_url"].as_str().is_some_and(|u| !u.is_empty()),
                        "{error}"
                    );
                }
            }
        }
        assert_eq!(
            fake.requests().await,
            before,
            "nothing reached the upstream"
        );
        assert_uncharged(&app, &empty, "0").await;
        assert_uncharged(&app, &poor, "0.0001").await;
        app.assert_invariants().await;
        app.stop().await;
    }
}

/// Upstream 429 and 500 pass through with their status and body, carry the balance
/// headers, and are not charged (the hold is voided).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_429_and_500_pass_through_uncharged() {
    let Some(fake) = fakellm().await else { return };
    for database in databases().await {
        let app = app_with(database, &fake.url, |_| {}).await;
        set_prices(&app).await;
        for style in STYLES {
            for (text, status, message) in [
                (
                    RATE_LIMIT,
                    StatusCode::TOO_MANY_REQUESTS,
                    "Rate limit exceeded (mock)",
                ),
                (
                    SERVER_ERROR,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal server error (mock)",
                ),
            ] {
                let (org, secret) = org_with(&app, "Unlucky", Some("10.00")).await;
                let before = fake.requests().await;
                let answer = call(&app, &secret, style, &style.body(text, false)).await;
                assert_eq!(answer.status, status, "{style:?}: {}", answer.text);
                assert_eq!(fake.requests().await, before + 1);
                assert!(answer.content_type().starts_with("application/json"));
                // fakellm's own error body, unchanged.
                let expected = match style {
                    Style::Anthropic => {
                        json!({"type": "error", "error": {"type": "mock_error", "message": message}})
                    }
                    Style::OpenAi => {
                        json!({"error": {"message": message, "type": "mock_error", "code": null}})
                    }
                };
                assert_eq!(answer.json(), expected);
                let (available, state) = answer.balance_headers();
                assert_eq!((available, state.as_str()), (10_000_000, "active"));
                assert_uncharged(&app, &org, "10.00").await;
            }
        }
        app.assert_invariants().await;
        app.stop().await;
    }
}

/// A model without a price is refused with 400 in the style's envelope, before anything
/// is held or forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_model_is_400_in_its_style() {
    let Some(fake) = fakellm().await else { return };
    for database in databases().await {
        let app = app_with(database, &fake.url, |_| {}).await;
        set_prices(&app).await;
        let (org, secret) = org_with(&app, "Curious", Some("10.00")).await;
        let before = fake.requests().await;
        for style in STYLES {
            for stream in [false, true] {
                let mut body = style.body("Hello", stream);
                body["model"] = json!("no-such-model-9000");
                let answer = call(&app, &secret, style, &body).await;
                style.assert_error(
                    &answer,
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "invalid_request_error",
                    Some("unknown_model"),
                );
                assert_eq!(answer.json()["error"]["param"], "model", "{}", answer.text);
            }
        }
        assert_eq!(
            fake.requests().await,
            before,
            "nothing reached the upstream"
        );
        assert_uncharged(&app, &org, "10.00").await;
        app.assert_invariants().await;
        app.stop().await;
    }
}

/// A body over `proxy_body_bytes_max` is refused with 413 in the style's envelope; a body under it
/// goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_413() {
    let Some(fake) = fakellm().await else { return };
    for database in databases().await {
        let app = app_with(database, &fake.url, |config| {
            config.proxy_body_bytes_max = 4096
        })
        .await;
        set_prices(&app).await;
        let (org, secret) = org_with(&app, "Verbose", Some("10.00")).await;
        let before = fake.requests().await;
        let long = "lorem ipsum ".repeat(700);
        for style in STYLES {
            let answer = call(&app, &secret, style, &style.body(&long, false)).await;
            style.assert_error(
                &answer,
                StatusCode::PAYLOAD_TOO_LARGE,
                "request_too_large",
                "invalid_request_error",
                Some("body_too_large"),
            );
        }
        assert_eq!(
            fake.requests().await,
            before,
            "nothing reached the upstream"
        );
        assert_uncharged(&app, &org, "10.00").await;
        for style in STYLES {
            let answer = call(&app, &secret, style, &style.body("Hello, short.", false)).await;
            assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        }
        app.assert_invariants().await;
        app.stop().await;
    }
}

/// A client that reads the first chunk of a stream and goes away leaves no open hold: the
/// proxy drains the upstream and settles at the usage it reports (Anthropic), or at the
/// hold's amount when it reports none (fakellm's OpenAI streams). The first chunk comes while
/// the upstream is still streaming (the stream is not buffered whole).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_leaving_mid_stream_leaves_no_open_hold() {
    let Some(fake) = fakellm().await else { return };
    for database in databases().await {
        let app = app_with(database, &fake.url, |_| {}).await;
        set_prices(&app).await;
        for style in STYLES {
            let (org, secret) = org_with(&app, "Impatient", Some("10.00")).await;
            let mut body = style.body(LONG, true);
            // fakellm ignores max_tokens: leave room for its long answer in the hold.
            body["max_tokens"] = json!(1024);
            let client = client();
            let mut response = client
                .post(format!("{}{}", app.base, style.path()))
                .header("x-api-key", &secret)
                .json(&body)
                .send()
                .await
                .expect("the proxy answers");
            assert_eq!(response.status(), StatusCode::OK);
            assert!(response
                .headers()
                .contains_key("creditgate-balance-available"));
            assert!(response.headers().contains_key("creditgate-access-state"));
            let first = response
                .chunk()
                .await
                .expect("the stream")
                .expect("a first chunk");
            let first = String::from_utf8_lossy(&first).into_owned();
            assert!(
                !first.contains("message_stop") && !first.contains("[DONE]"),
                "the first chunk is the whole stream: {first}"
            );
            match style {
                Style::Anthropic => assert!(first.contains("message_start"), "{first}"),
                Style::OpenAi => assert!(first.contains("chat.completion.chunk"), "{first}"),
            }
            drop(response);
            drop(client);
            settled_balance(&app, &org).await;
            let (transfer, hold) = the_usage_charge(&app, &org).await;
            let expected = match style {
                // What fakellm reports for it: message_start input 1, message_delta output
                // len(answer) / 4.
                Style::Anthropic => price_of((1, (long_answer().len() / 4) as u64)),
                Style::OpenAi => micros(hold["amount"].as_str().expect("amount")),
            };
            assert_eq!(
                micros(transfer["amount"].as_str().expect("amount")),
                expected,
                "{style:?} on {}: {transfer}",
                app.backend
            );
            let balance = settled_balance(&app, &org).await;
            assert_eq!(
                micros(balance["posted"].as_str().expect("posted")),
                10_000_000 - expected
            );
        }
        app.assert_invariants().await;
        app.stop().await;
    }
}

/// An upstream that accepts and never answers hits `upstream_timeout_ms`: 504 in the
/// style's envelope, promptly, with `x-should-retry: false`; the request was forwarded, so the
/// upstream may bill it, and the hold is charged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_upstream_times_out_with_504_and_the_hold_charged() {
    let silent = silent_upstream().await;
    for database in databases().await {
        let app = app_with(database, &silent.url, |config| {
            config.upstream_timeout_ms = 200;
        })
        .await;
        set_prices(&app).await;
        let (org, secret) = org_with(&app, "Waiting", Some("10.00")).await;
        for style in STYLES {
            for stream in [false, true] {
                let started = Instant::now();
                let answer = call(&app, &secret, style, &style.body("Hello?", stream)).await;
                let took = started.elapsed();
                style.assert_error(
                    &answer,
                    StatusCode::GATEWAY_TIMEOUT,
                    "api_error",
                    "api_error",
                    Some("upstream_timeout"),
                );
                assert!(
                    took >= Duration::from_millis(200) && took < Duration::from_secs(5),
                    "{took:?}"
                );
                assert_eq!(answer.header("x-should-retry"), Some("false"));
            }
        }
        settled_balance(&app, &org).await;
        let charges = usage_transfers(&app, &org).await;
        assert_eq!(charges.len(), 4, "{charges:#?}");
        for transfer in charges {
            let hold_id = transfer["hold_id"].as_str().expect("its hold");
            let hold = app
                .get(&As::Operator, &format!("/v1/holds/{hold_id}"))
                .await;
            assert_eq!(transfer["amount"], hold.body["amount"], "charged the hold");
        }
        app.assert_invariants().await;
        app.stop().await;
    }
}

/// A stream whose upstream stalls after its first event is cut at `upstream_timeout_ms`:
/// the client gets what came, and with the usage incomplete the hold's amount is charged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stream_is_cut_at_the_timeout_and_charged_the_hold() {
    let stalling = stalling_stream_upstream().await;
    for database in databases().await {
        let app = app_with(database, &stalling.url, |config| {
            config.upstream_timeout_ms = 300;
        })
        .await;
        set_prices(&app).await;
        for style in STYLES {
            let (org, secret) = org_with(&app, "Stalled", Some("10.00")).await;
            let started = Instant::now();
            let answer = call(&app, &secret, style, &style.body("Hello?", true)).await;
            assert!(started.elapsed() < Duration::from_secs(5));
            assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
            let events = sse_events(&answer.text);
            assert_eq!(events.len(), 1, "{}", answer.text);
            let (transfer, hold) = the_usage_charge(&app, &org).await;
            assert_eq!(
                transfer["amount"], hold["amount"],
                "{style:?} on {}",
                app.backend
            );
            settled_balance(&app, &org).await;
        }
        app.assert_invariants().await;
        app.stop().await;
    }
}

/// The caller's creditgate key (as `x-api-key` or `Authorization: Bearer`) never reaches the
/// upstream; the provider's key does, in the style's header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callers_key_never_reaches_the_upstream() {
    let recorder = recording_upstream().await;
    for database in databases().await {
        recorder.requests.lock().expect("lock").clear();
        let app = app_with(database, &recorder.url, |_| {}).await;
        set_prices(&app).await;
        let (org, secret) = org_with(&app, "Secretive", Some("10.00")).await;
        for style in STYLES {
            for who in [As::Key(secret.clone()), As::Bearer(secret.clone())] {
                let answer =
                    call_as(&app.client, &app, &who, style, &style.body("Hello", false)).await;
                assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
            }
        }
        let requests = recorder.requests.lock().expect("lock").clone();
        assert_eq!(requests.len(), 4);
        for (head, body) in &requests {
            let body = String::from_utf8_lossy(body);
            assert!(
                !head.contains(&secret) && !body.contains(&secret),
                "the caller's key went upstream:\n{head}{body}"
            );
            let lower = head.to_ascii_lowercase();
            if head.starts_with("POST /v1/messages ") {
                assert!(
                    lower.contains("\r\nx-api-key: sk-ant-upstream-provider-key\r\n"),
                    "{head}"
                );
                assert!(!lower.contains("\r\nauthorization:"), "{head}");
                assert!(lower.contains("\r\nanthropic-version: "), "{head}");
            } else {
                assert!(head.starts_with("POST /v1/chat/completions "), "{head}");
                assert!(
                    lower.contains("\r\nauthorization: bearer sk-openai-upstream-provider-key\r\n"),
                    "{head}"
                );
                assert!(!lower.contains("\r\nx-api-key:"), "{head}");
            }
        }
        let usage = usage_transfers(&app, &org).await;
        assert_eq!(usage.len(), 4);
        for transfer in &usage {
            assert_eq!(
                micros(transfer["amount"].as_str().expect("amount")),
                price_of(RECORDED_USAGE)
            );
        }
        app.assert_invariants().await;
        app.stop().await;
    }
}

/// Concurrent proxied calls per race.
const RACERS: usize = 256;
/// Worst cases the racing org's credits cover (plus half of one).
const FITS: i64 = 20;

/// 256 concurrent non-streamed calls on an org's last credits, through fakellm: nothing is
/// overspent, every call is charged (200) or refused (402 in the style's envelope), and at
/// least the calls whose worst case fits succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_calls_on_the_last_credits_never_overspend() {
    let Some(fake) = fakellm().await else { return };
    for database in databases().await {
        let app = app_with(database, &fake.url, |_| {}).await;
        set_prices(&app).await;
        let style = Style::Anthropic;
        let body = style.body("Hello, racing for the last credits!", false);
        // A first call learns this request's worst case (the hold) and its cost.
        let (probe, probe_secret) = org_with(&app, "Probe", Some("10.00")).await;
        let answer = call(&app, &probe_secret, style, &body).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        let cost = price_of(style.reported_usage(&answer.json()));
        let (transfer, hold) = the_usage_charge(&app, &probe).await;
        assert_eq!(micros(transfer["amount"].as_str().expect("amount")), cost);
        let held = micros(hold["amount"].as_str().expect("amount"));
        assert!(held > cost, "worst case {held}, cost {cost}");
        let credit = FITS * held + held / 2;
        let (org, secret) = org_with(&app, "Racing", Some(&money(credit))).await;
        let before = fake.requests().await;
        let client = client();
        let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
        let url = format!("{}{}", app.base, style.path());
        let mut tasks = Vec::new();
        for _ in 0..RACERS {
            let (client, barrier) = (client.clone(), barrier.clone());
            let (url, secret, body) = (url.clone(), secret.clone(), body.clone());
            tasks.push(tokio::spawn(async move {
                let request = client.post(url).header("x-api-key", secret).json(&body);
                barrier.wait().await;
                let response = request.send().await.expect("the proxy answers");
                Answer {
                    status: response.status(),
                    headers: response.headers().clone(),
                    text: response.text().await.expect("a body"),
                }
            }));
        }
        let mut charged = 0i64;
        let mut succeeded = 0i64;
        for task in tasks {
            let answer = task.await.expect("the racer ends");
            match answer.status {
                StatusCode::OK => {
                    succeeded += 1;
                    charged += price_of(style.reported_usage(&answer.json()));
                    answer.balance_headers();
                }
                _ => style.assert_billing_error(&answer),
            }
        }
        assert!(succeeded >= 1);
        assert!(
            succeeded >= FITS.min(RACERS as i64),
            "only {succeeded} calls succeeded on {} though {FITS} worst cases fit",
            app.backend
        );
        assert!(charged <= credit, "charged {charged} of {credit}");
        let balance = settled_balance(&app, &org).await;
        assert_eq!(balance["overspend"], "0.00", "{balance}");
        assert_eq!(
            micros(balance["posted"].as_str().expect("posted")),
            credit - charged,
            "{balance}"
        );
        let usage = usage_transfers(&app, &org).await;
        assert_eq!(usage.len() as i64, succeeded);
        let recorded: i64 = usage
            .iter()
            .map(|t| micros(t["amount"].as_str().expect("amount")))
            .sum();
        assert_eq!(recorded, charged);
        assert_eq!(
            fake.requests().await,
            before + succeeded as u64,
            "only the calls that were held went upstream"
        );
        eprintln!(
            "race on {}: {succeeded} of {RACERS} calls succeeded ({FITS} worst cases fit), charged {charged} of {credit} micro-units",
            app.backend
        );
        app.assert_invariants().await;
        app.stop().await;
    }
}

/// The balance headers are on every answer of the proxy routes to an authenticated org, the
/// refusals included: the 402 of a depleted org says `depleted`, and a 504 (after a hold was
/// placed and voided) says what is available.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_gateway_errors_carry_the_balance_headers() {
    let silent = silent_upstream().await;
    for database in databases().await {
        let app = app_with(database, &silent.url, |config| {
            config.upstream_timeout_ms = 200;
        })
        .await;
        set_prices(&app).await;
        let (_, empty_secret) = org_with(&app, "Empty", None).await;
        let (org, secret) = org_with(&app, "Waiting", Some("10.00")).await;
        for style in STYLES {
            let refused = call(&app, &empty_secret, style, &style.body("Hello", false)).await;
            style.assert_billing_error(&refused);
            assert_eq!(
                refused.balance_headers(),
                (0, "depleted".to_owned()),
                "{style:?} 402 on {}",
                app.backend
            );
            let before = micros(&app.balance(&org).await.str("available"));
            let timed_out = call(&app, &secret, style, &style.body("Hello?", false)).await;
            assert_eq!(timed_out.status, StatusCode::GATEWAY_TIMEOUT);
            // Forwarded, so charged its hold: the headers say what is left after that.
            let (available, state) = timed_out.balance_headers();
            assert!(available < before, "{style:?} 504 on {}", app.backend);
            assert_eq!(
                available,
                micros(&app.balance(&org).await.str("available")),
                "{style:?} 504 on {}",
                app.backend
            );
            assert_eq!(state, "active");
        }
        app.assert_invariants().await;
        app.stop().await;
    }
}
