//! `creditgate bench proxy`: what the metering proxy adds to a call, and how many calls per
//! second it meters, against a fast upstream stub called directly in the same run.
//!
//! One process holds everything: an upstream stub (axum on a loopback port, answering
//! `POST /v1/messages` with a fixed Anthropic-style body with usage, without parsing the
//! request), the creditgate service (SQLite in a temp dir, `synchronous=FULL` unless told,
//! `anthropic_upstream` = the stub), seeded over its HTTP API with the operator token (a price
//! for the stub's model, an org with plenty of credit, a key), and the load client.
//!
//! The client is a minimal HTTP/1.1 client over keep-alive TCP connections (one request in
//! flight per connection, the next sent when the answer is whole), so that as little as
//! possible of the shared cores goes to it. Each figure runs for `--duration-s` (and at most
//! `--requests-max` requests), after an unmeasured warm-up of both paths:
//! 1. latency direct: `--latency-connections` (1) closed-loop connections to the stub;
//! 2. latency proxied: the same through `POST /anthropic/v1/messages`;
//! 3. throughput direct: `--connections` (64) closed-loop connections to the stub;
//! 4. throughput proxied: the same through the proxy.
//!
//! Overhead is proxied − direct at p50 and p99 (nearest-rank percentiles over every answer's
//! time, `Instant` from the request's first byte written to the answer's last byte read).
//! At the end the ledger invariants are checked, no hold may be left open, and the org must
//! have been charged exactly (proxied 200 answers) × (the price of the stub's usage); every
//! answer must be a 200. Times are whole nanoseconds and ratios hundredths: the workspace
//! denies float arithmetic.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use axum::http::header;
use creditgate::config::Config;
use creditgate::node::{AppState, Application, Parts};
use creditgate_domain::ledger::AccountId;
use creditgate_domain::pricing::{self, TokenPrices, Usage};
use creditgate_domain::Amount;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::report::group;
use super::TempDir;

/// The stub's model, priced for the run.
const MODEL: &str = "claude-bench";
/// Per million input tokens.
const PRICE_INPUT: &str = "3.00";
/// Per million output tokens.
const PRICE_OUTPUT: &str = "15.00";
/// The usage in [`STUB_BODY`].
const STUB_INPUT_TOKENS: u64 = 12;
const STUB_OUTPUT_TOKENS: u64 = 8;
/// What the stub answers to every call.
const STUB_BODY: &str = concat!(
    r#"{"id":"msg_bench","type":"message","role":"assistant","model":"claude-bench","#,
    r#""content":[{"type":"text","text":"Hello from the stub."}],"stop_reason":"end_turn","#,
    r#""stop_sequence":null,"usage":{"input_tokens":12,"output_tokens":8}}"#
);
/// What the client sends, to the stub and to the proxy alike.
const REQUEST_BODY: &str = r#"{"model":"claude-bench","max_tokens":16,"messages":[{"role":"user","content":"Hello, stub."}]}"#;
/// The org's credit: far more than any run spends.
const CREDIT: &str = "1000000.00";

/// Targets (issue 4): p50 overhead under 0.3 ms, ≥ 5,000 requests/s through the proxy.
const TARGET_OVERHEAD_P50_NS: i64 = 300_000;
const TARGET_PROXIED_PER_S: u64 = 5_000;

/// Longest one request may take before it counts as failed (and its connection is dropped).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause before opening a connection again after a failure.
const RETRY_PAUSE: Duration = Duration::from_millis(10);
/// Largest response head and body the client accepts.
const HEAD_BYTES_MAX: usize = 64 * 1024;
const BODY_BYTES_MAX: usize = 1 << 20;
/// Latencies kept per connection are preallocated up to this many.
const LATENCIES_PREALLOCATED_MAX: u64 = 1 << 20;

/// `creditgate bench proxy`
#[derive(clap::Args, Debug)]
pub(super) struct ProxyArgs {
    /// Seconds each figure runs.
    #[arg(long, default_value_t = 10)]
    duration_s: u64,
    /// Seconds of unmeasured warm-up on each path before the figures (0: none).
    #[arg(long, default_value_t = 1)]
    warmup_s: u64,
    /// Closed-loop connections of the latency figures.
    #[arg(long, default_value_t = 1)]
    latency_connections: usize,
    /// Closed-loop keep-alive connections of the throughput figures.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// At most this many requests per figure (the duration usually ends it first).
    #[arg(long, default_value_t = 10_000_000)]
    requests_max: u64,
    /// SQLite durability: FULL (the default; survives power loss) or NORMAL (for comparison).
    #[arg(long, default_value = "FULL")]
    synchronous: String,
    /// Print one JSON line instead of the table.
    #[arg(long)]
    json: bool,
}

/// What the run is told to do.
struct Plan {
    span: Duration,
    warmup: Duration,
    latency_connections: usize,
    connections: usize,
    requests_max: u64,
    synchronous: String,
}

impl Plan {
    fn new(args: &ProxyArgs) -> anyhow::Result<Plan> {
        if args.duration_s == 0 || args.requests_max == 0 {
            bail!("--duration-s and --requests-max must be at least 1");
        }
        if args.latency_connections == 0 || args.connections == 0 {
            bail!("--latency-connections and --connections must be at least 1");
        }
        if args.connections > 4_096 || args.latency_connections > 4_096 {
            bail!("at most 4,096 connections");
        }
        let synchronous = args.synchronous.to_ascii_uppercase();
        if synchronous != "FULL" && synchronous != "NORMAL" {
            bail!("--synchronous must be FULL or NORMAL");
        }
        Ok(Plan {
            span: Duration::from_secs(args.duration_s),
            warmup: Duration::from_secs(args.warmup_s),
            latency_connections: args.latency_connections,
            connections: args.connections,
            requests_max: args.requests_max,
            synchronous,
        })
    }
}

/// Runs `creditgate bench proxy`.
pub(super) async fn run(args: ProxyArgs) -> anyhow::Result<()> {
    let plan = Plan::new(&args)?;
    let load_before = load_average();
    let stub = Stub::start().await?;
    let dir = TempDir::create()?;
    let operator_token = format!("op_bench_{}", creditgate::ids::random_hex(16));
    let config = Config {
        data_dir: dir.path.clone(),
        database_url: String::new(),
        listen: "127.0.0.1:0".into(),
        operator_token: operator_token.clone(),
        sqlite_synchronous: plan.synchronous.clone(),
        anthropic_upstream: format!("http://{}", stub.address).into(),
        openai_upstream: format!("http://{}", stub.address).into(),
        ..Config::default()
    };
    let app = Application::build(config, Parts::default())
        .await
        .context("starting creditgate")?;
    let state = app.state().clone();
    let proxy_address = app.address();
    eprintln!(
        "proxy bench: creditgate on {proxy_address} (SQLite synchronous={} in {}), upstream stub on {}",
        plan.synchronous,
        dir.path.display(),
        stub.address
    );
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(app.run(shutdown.clone()));
    let outcome = measure_all(&plan, &state, proxy_address, stub.address, &operator_token)
        .await
        .map(|mut summary| {
            summary.load_before = load_before;
            summary
        });
    shutdown.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(10), server).await;
    stub.stop();
    let summary = outcome?;
    match stopped {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(error))) => eprintln!("warning: creditgate stopped with {error}"),
        Ok(Err(error)) => eprintln!("warning: the server task failed: {error}"),
        Err(_) => eprintln!("warning: creditgate did not stop within 10 s"),
    }
    drop(dir);
    if args.json {
        println!("{}", summary.json());
    } else {
        print!("{}", summary.table());
    }
    let problems = summary.problems();
    if !problems.is_empty() {
        bail!("{}", problems.join("; "));
    }
    Ok(())
}

/// Seeds, warms up, measures the four figures and checks the ledger.
async fn measure_all(
    plan: &Plan,
    state: &AppState,
    proxy_address: SocketAddr,
    stub_address: SocketAddr,
    operator_token: &str,
) -> anyhow::Result<Summary> {
    let seeded = seed(&format!("http://{proxy_address}"), operator_token).await?;
    let direct = Endpoint::new(stub_address, "/v1/messages", &seeded.key);
    let proxied = Endpoint::new(proxy_address, "/anthropic/v1/messages", &seeded.key);
    sanity_check(&direct).await.context("the stub, directly")?;
    sanity_check(&proxied).await.context("the proxy")?;
    let mut proxied_ok = 1;
    let mut extra = Tally::default();
    if !plan.warmup.is_zero() {
        for (endpoint, name) in [(&direct, "direct"), (&proxied, "proxied")] {
            let warm = measure(endpoint, plan.connections, plan.warmup, plan.requests_max).await;
            eprintln!(
                "warm-up {name:<8} {:>9}/s over {} connections",
                group(warm.per_second()),
                plan.connections
            );
            if name == "proxied" {
                proxied_ok += warm.ok;
            }
            extra.add(&warm);
        }
    }
    let mut figures = Vec::new();
    for (figure, endpoint, connections) in [
        ("latency direct", &direct, plan.latency_connections),
        ("latency proxied", &proxied, plan.latency_connections),
        ("throughput direct", &direct, plan.connections),
        ("throughput proxied", &proxied, plan.connections),
    ] {
        let measured = measure(endpoint, connections, plan.span, plan.requests_max).await;
        eprintln!(
            "{figure:<19} {:>9}/s  p50 {} ms  p99 {} ms  ({} answers in {} ms, {} non-200, {} failed)",
            group(measured.per_second()),
            ms(measured.percentile_ns(500)),
            ms(measured.percentile_ns(990)),
            group(measured.ok),
            measured.elapsed.as_millis(),
            measured.non_200,
            measured.failed,
        );
        if endpoint.address == proxy_address {
            proxied_ok += measured.ok;
        }
        figures.push(measured);
    }
    let [latency_direct, latency_proxied, throughput_direct, throughput_proxied] =
        <[Measured; 4]>::try_from(figures).map_err(|_| anyhow::anyhow!("four figures"))?;
    let ledger = check_ledger(state, &seeded.org_id, proxied_ok).await?;
    Ok(Summary {
        cores: std::thread::available_parallelism().map_or(0, usize::from),
        span: plan.span,
        warmup: plan.warmup,
        latency_connections: plan.latency_connections,
        connections: plan.connections,
        synchronous: plan.synchronous.clone(),
        latency_direct,
        latency_proxied,
        throughput_direct,
        throughput_proxied,
        warmup_tally: extra,
        ledger,
        load_before: None,
    })
}

/// One call must come back 200 with usage before anything is measured.
async fn sanity_check(endpoint: &Endpoint) -> anyhow::Result<()> {
    let mut connection = Connection::open(endpoint.address).await?;
    let answer = tokio::time::timeout(CALL_TIMEOUT, connection.call(&endpoint.request))
        .await
        .context("timed out")??;
    let body = String::from_utf8_lossy(connection.body());
    if answer.status != 200 || !body.contains("\"usage\"") {
        bail!("HTTP {}: {}", answer.status, body.trim());
    }
    Ok(())
}

/// The org and key the proxied calls are made with.
struct Seeded {
    org_id: String,
    key: String,
}

/// A price for [`MODEL`], an org with [`CREDIT`] and a key, through the operator API.
async fn seed(base: &str, operator_token: &str) -> anyhow::Result<Seeded> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .context("setting up HTTP")?;
    let call = |method: reqwest::Method, path: String, body: Value| {
        let mut request = http
            .request(method.clone(), format!("{base}{path}"))
            .bearer_auth(operator_token)
            .json(&body);
        if path.ends_with("/grants") {
            request = request.header("idempotency-key", format!("bench-{path}"));
        }
        async move {
            let response = request
                .send()
                .await
                .with_context(|| format!("{method} {path}"))?;
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            if !status.is_success() {
                bail!("{method} {path}: {status} {}", text.trim());
            }
            serde_json::from_str::<Value>(&text).with_context(|| format!("{method} {path}"))
        }
    };
    call(
        reqwest::Method::PUT,
        format!("/v1/prices/{MODEL}"),
        json!({"input": PRICE_INPUT, "output": PRICE_OUTPUT, "max_output_tokens": 16}),
    )
    .await?;
    let org = call(
        reqwest::Method::POST,
        "/v1/orgs".into(),
        json!({"name": "Proxy Bench Org"}),
    )
    .await?;
    let org_id = org["id"]
        .as_str()
        .context("POST /v1/orgs: no id")?
        .to_owned();
    call(
        reqwest::Method::POST,
        format!("/v1/orgs/{org_id}/grants"),
        json!({"amount": CREDIT, "origin": "promotional", "reference": "proxy bench"}),
    )
    .await?;
    let key = call(
        reqwest::Method::POST,
        format!("/v1/orgs/{org_id}/keys"),
        json!({"name": "proxy bench"}),
    )
    .await?;
    let key = key["secret"]
        .as_str()
        .context("POST /v1/orgs/…/keys: no secret")?
        .to_owned();
    Ok(Seeded { org_id, key })
}

/// The upstream stub: a fixed body, as fast as axum answers.
struct Stub {
    address: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Stub {
    async fn start() -> anyhow::Result<Stub> {
        use axum::serve::ListenerExt as _;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the upstream stub")?;
        let address = listener.local_addr()?;
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let router = axum::Router::new().route("/v1/messages", axum::routing::post(stub_messages));
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, router).await {
                eprintln!("the upstream stub stopped: {error}");
            }
        });
        Ok(Stub { address, task })
    }

    fn stop(self) {
        self.task.abort();
    }
}

/// Reads the request (so the connection stays reusable) and answers [`STUB_BODY`].
async fn stub_messages(_body: axum::body::Bytes) -> impl axum::response::IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], STUB_BODY)
}

/// Where a figure's requests go, and the request, whole.
struct Endpoint {
    address: SocketAddr,
    request: Arc<[u8]>,
}

impl Endpoint {
    fn new(address: SocketAddr, path: &str, key: &str) -> Endpoint {
        let request = format!(
            "POST {path} HTTP/1.1\r\nhost: {address}\r\nx-api-key: {key}\r\n\
             anthropic-version: 2023-06-01\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n{REQUEST_BODY}",
            REQUEST_BODY.len()
        );
        Endpoint {
            address,
            request: Arc::from(request.into_bytes()),
        }
    }
}

/// One figure's answers.
#[derive(Default)]
struct Measured {
    /// 200 answers.
    ok: u64,
    /// Answers of any other status.
    non_200: u64,
    /// Requests without an answer: I/O errors, timeouts, malformed answers.
    failed: u64,
    /// Nanoseconds per 200 answer; sorted once the figure is done.
    latencies_ns: Vec<u64>,
    /// From the start until the last connection was done.
    elapsed: Duration,
    /// The first non-200 answer or failure, for the report.
    first_problem: Option<String>,
}

impl Measured {
    fn problem(&mut self, what: String) {
        self.first_problem.get_or_insert(what);
    }

    fn fail(&mut self, what: String) {
        self.failed += 1;
        self.problem(what);
    }

    fn merge(&mut self, other: Measured) {
        self.ok += other.ok;
        self.non_200 += other.non_200;
        self.failed += other.failed;
        self.latencies_ns.extend(other.latencies_ns);
        if let Some(problem) = other.first_problem {
            self.problem(problem);
        }
    }

    /// 200 answers per second.
    fn per_second(&self) -> u64 {
        let micros = self.elapsed.as_micros().max(1);
        u64::try_from(u128::from(self.ok) * 1_000_000 / micros).unwrap_or(u64::MAX)
    }

    /// The nearest-rank percentile, `per_mille` of 1,000, of the sorted latencies (0 if none).
    fn percentile_ns(&self, per_mille: u64) -> u64 {
        percentile(&self.latencies_ns, per_mille)
    }
}

fn percentile(sorted: &[u64], per_mille: u64) -> u64 {
    let Some(last) = sorted.len().checked_sub(1) else {
        return 0;
    };
    let n = u64::try_from(sorted.len()).unwrap_or(u64::MAX);
    let rank = n.saturating_mul(per_mille).div_ceil(1_000).max(1);
    let index = usize::try_from(rank - 1).unwrap_or(last).min(last);
    sorted[index]
}

/// Non-200 answers and failures outside the four figures (the warm-up).
#[derive(Default)]
struct Tally {
    non_200: u64,
    failed: u64,
    first_problem: Option<String>,
}

impl Tally {
    fn add(&mut self, measured: &Measured) {
        self.non_200 += measured.non_200;
        self.failed += measured.failed;
        if self.first_problem.is_none() {
            self.first_problem.clone_from(&measured.first_problem);
        }
    }
}

/// `connections` closed-loop connections to `endpoint` for `span` (and at most
/// `requests_max` requests in all).
async fn measure(
    endpoint: &Endpoint,
    connections: usize,
    span: Duration,
    requests_max: u64,
) -> Measured {
    let mut measured = Measured::default();
    let count = u64::try_from(connections).unwrap_or(u64::MAX).max(1);
    let per_connection = requests_max.div_ceil(count).max(1);
    let mut opened = Vec::with_capacity(connections);
    for _ in 0..connections {
        match Connection::open(endpoint.address).await {
            Ok(connection) => opened.push(Some(connection)),
            Err(error) => {
                measured.fail(format!("connecting: {error}"));
                opened.push(None);
            }
        }
    }
    let started = Instant::now();
    let deadline = started + span;
    let tasks: Vec<_> = opened
        .into_iter()
        .map(|connection| {
            tokio::spawn(drive(
                connection,
                endpoint.address,
                endpoint.request.clone(),
                deadline,
                per_connection,
            ))
        })
        .collect();
    for task in tasks {
        match task.await {
            Ok(done) => measured.merge(done),
            Err(error) => measured.fail(format!("a client task failed: {error}")),
        }
    }
    measured.elapsed = started.elapsed();
    measured.latencies_ns.sort_unstable();
    measured
}

/// One connection's loop: a request, its whole answer, the next, until `deadline` or
/// `count_max` requests. A failed request drops the connection; the next opens another.
async fn drive(
    mut connection: Option<Connection>,
    address: SocketAddr,
    request: Arc<[u8]>,
    deadline: Instant,
    count_max: u64,
) -> Measured {
    let mut measured = Measured::default();
    let preallocated = usize::try_from(count_max.min(LATENCIES_PREALLOCATED_MAX)).unwrap_or(0);
    measured.latencies_ns.reserve(preallocated);
    let mut body_checked = false;
    for _ in 0..count_max {
        if Instant::now() >= deadline {
            break;
        }
        let open = match &mut connection {
            Some(open) => open,
            None => match Connection::open(address).await {
                Ok(opened) => connection.insert(opened),
                Err(error) => {
                    measured.fail(format!("connecting: {error}"));
                    tokio::time::sleep(RETRY_PAUSE).await;
                    continue;
                }
            },
        };
        let started = Instant::now();
        let answer = tokio::time::timeout(CALL_TIMEOUT, open.call(&request)).await;
        let elapsed = started.elapsed();
        match answer {
            Ok(Ok(answer)) => {
                if answer.status == 200 {
                    if !body_checked && !contains(open.body(), b"\"usage\"") {
                        measured.fail(format!(
                            "a 200 answer without usage: {}",
                            String::from_utf8_lossy(open.body())
                        ));
                    } else {
                        measured.ok += 1;
                        measured
                            .latencies_ns
                            .push(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX));
                    }
                    body_checked = true;
                } else {
                    measured.non_200 += 1;
                    measured.problem(format!(
                        "HTTP {}: {}",
                        answer.status,
                        String::from_utf8_lossy(open.body()).trim()
                    ));
                }
                if answer.close {
                    connection = None;
                }
            }
            Ok(Err(error)) => {
                measured.fail(format!("request: {error}"));
                connection = None;
            }
            Err(_) => {
                measured.fail(format!("no answer within {CALL_TIMEOUT:?}"));
                connection = None;
            }
        }
    }
    measured
}

/// A keep-alive HTTP/1.1 connection, one request at a time; answers need a `content-length`
/// (every answer of the stub and of creditgate's non-streamed routes has one).
struct Connection {
    stream: TcpStream,
    buffer: Vec<u8>,
    /// Bytes of `buffer` belonging to the last answer, dropped before the next request.
    consumed: usize,
    /// The last answer's body within `buffer`.
    body: std::ops::Range<usize>,
}

/// A status line and what the head says about the connection.
struct Answer {
    status: u16,
    close: bool,
}

impl Connection {
    async fn open(address: SocketAddr) -> std::io::Result<Connection> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
            })??;
        stream.set_nodelay(true)?;
        Ok(Connection {
            stream,
            buffer: Vec::with_capacity(8 * 1024),
            consumed: 0,
            body: 0..0,
        })
    }

    /// The last answer's body.
    fn body(&self) -> &[u8] {
        &self.buffer[self.body.clone()]
    }

    async fn call(&mut self, request: &[u8]) -> std::io::Result<Answer> {
        self.buffer.drain(..self.consumed);
        self.consumed = 0;
        self.body = 0..0;
        if !self.buffer.is_empty() {
            return Err(invalid("bytes arrived before the request was sent"));
        }
        self.stream.write_all(request).await?;
        let head_end = loop {
            if let Some(at) = find(&self.buffer, b"\r\n\r\n") {
                break at + 4;
            }
            if self.buffer.len() > HEAD_BYTES_MAX {
                return Err(invalid("the response head is too long"));
            }
            self.fill().await?;
        };
        let (answer, length) = parse_head(&self.buffer[..head_end])?;
        let length = length.ok_or_else(|| invalid("an answer without content-length"))?;
        if length > BODY_BYTES_MAX {
            return Err(invalid("the response body is too long"));
        }
        while self.buffer.len() < head_end + length {
            self.fill().await?;
        }
        self.body = head_end..head_end + length;
        self.consumed = head_end + length;
        Ok(answer)
    }

    async fn fill(&mut self) -> std::io::Result<()> {
        self.buffer.reserve(8 * 1024);
        match self.stream.read_buf(&mut self.buffer).await? {
            0 => Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            )),
            _ => Ok(()),
        }
    }
}

/// The status, `connection: close`, and the content length of a response head.
fn parse_head(head: &[u8]) -> std::io::Result<(Answer, Option<usize>)> {
    let text = std::str::from_utf8(head).map_err(|_| invalid("a response head not in UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut words = status_line.split(' ');
    let version = words.next().unwrap_or_default();
    let status = words
        .next()
        .and_then(|code| code.parse::<u16>().ok())
        .filter(|_| version.starts_with("HTTP/1."))
        .ok_or_else(|| invalid("a malformed status line"))?;
    let mut close = version == "HTTP/1.0";
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| invalid("a malformed content-length"))?,
            );
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    Ok((Answer { status, close }, length))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    find(haystack, needle).is_some()
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned())
}

/// What the ledger looks like after the run.
struct Ledger {
    violations: Vec<String>,
    /// The org's reserved amount (open holds): must be zero.
    reserved: Amount,
    /// What the org was charged: the credit minus its posted balance.
    charged: Amount,
    /// Proxied 200 answers × the price of the stub's usage.
    expected: Amount,
    /// Proxied 200 answers, warm-up and sanity check included.
    calls: u64,
    per_call: Amount,
}

impl Ledger {
    fn ok(&self) -> bool {
        self.violations.is_empty() && self.reserved.is_zero() && self.charged == self.expected
    }
}

async fn check_ledger(state: &AppState, org_id: &str, calls: u64) -> anyhow::Result<Ledger> {
    let started = Instant::now();
    let report = state.store().check_invariants().await?;
    let account = state
        .store()
        .account(&AccountId::new(org_id.to_owned()))
        .await?
        .context("the bench org's account is gone")?;
    let amount = |text: &str| Amount::parse(text).map_err(|e| anyhow::anyhow!("{text}: {e:?}"));
    let prices = TokenPrices {
        input: amount(PRICE_INPUT)?,
        output: amount(PRICE_OUTPUT)?,
        cache_write: amount(PRICE_INPUT)?,
        cache_read: amount(PRICE_INPUT)?,
        ..TokenPrices::default()
    };
    let usage = Usage {
        input_tokens: STUB_INPUT_TOKENS,
        output_tokens: STUB_OUTPUT_TOKENS,
        ..Usage::default()
    };
    let per_call = pricing::cost(&prices, &usage).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let expected = i64::try_from(calls)
        .ok()
        .and_then(|calls| per_call.checked_mul(calls))
        .context("the expected charge overflows")?;
    let charged = amount(CREDIT)?
        .checked_sub(account.posted)
        .context("the charge overflows")?;
    eprintln!(
        "ledger: invariants {} ({} violations), reserved {}, charged {} for {} proxied calls ({} ms)",
        if report.is_ok() { "OK" } else { "VIOLATED" },
        report.violations.len(),
        account.reserved,
        charged,
        group(calls),
        started.elapsed().as_millis()
    );
    Ok(Ledger {
        violations: report.violations,
        reserved: account.reserved,
        charged,
        expected,
        calls,
        per_call,
    })
}

/// Everything the run measured.
struct Summary {
    cores: usize,
    span: Duration,
    warmup: Duration,
    latency_connections: usize,
    connections: usize,
    synchronous: String,
    latency_direct: Measured,
    latency_proxied: Measured,
    throughput_direct: Measured,
    throughput_proxied: Measured,
    warmup_tally: Tally,
    ledger: Ledger,
    /// `/proc/loadavg` before the run: other processes on the same cores skew every figure.
    load_before: Option<String>,
}

impl Summary {
    fn figures(&self) -> [&Measured; 4] {
        [
            &self.latency_direct,
            &self.latency_proxied,
            &self.throughput_direct,
            &self.throughput_proxied,
        ]
    }

    fn non_200(&self) -> u64 {
        self.figures().iter().map(|m| m.non_200).sum::<u64>() + self.warmup_tally.non_200
    }

    fn failed(&self) -> u64 {
        self.figures().iter().map(|m| m.failed).sum::<u64>() + self.warmup_tally.failed
    }

    /// Proxied − direct latency at `per_mille`, in nanoseconds.
    fn overhead_ns(&self, per_mille: u64) -> i64 {
        signed(self.latency_proxied.percentile_ns(per_mille))
            - signed(self.latency_direct.percentile_ns(per_mille))
    }

    /// Proxied over direct requests per second, in hundredths.
    fn throughput_ratio(&self) -> u64 {
        let direct = self.throughput_direct.per_second().max(1);
        self.throughput_proxied.per_second().saturating_mul(100) / direct
    }

    fn overhead_met(&self) -> bool {
        self.overhead_ns(500) < TARGET_OVERHEAD_P50_NS
    }

    fn throughput_met(&self) -> bool {
        self.throughput_proxied.per_second() >= TARGET_PROXIED_PER_S
    }

    /// What makes the run fail (missed targets do not: they are reported).
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.non_200() > 0 {
            problems.push(format!("{} answers were not 200", self.non_200()));
        }
        if self.failed() > 0 {
            problems.push(format!("{} requests failed", self.failed()));
        }
        if !self.ledger.violations.is_empty() {
            problems.push("the ledger invariants are violated".to_owned());
        }
        if !self.ledger.reserved.is_zero() {
            problems.push(format!("{} is still reserved", self.ledger.reserved));
        }
        if self.ledger.charged != self.ledger.expected {
            problems.push(format!(
                "charged {}, expected {}",
                self.ledger.charged, self.ledger.expected
            ));
        }
        problems
    }

    fn first_problem(&self) -> Option<&str> {
        self.figures()
            .iter()
            .find_map(|m| m.first_problem.as_deref())
            .or(self.warmup_tally.first_problem.as_deref())
    }

    fn table(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let pass = |met: bool| if met { "PASS" } else { "MISS" };
        let _ = writeln!(
            out,
            "\ncreditgate bench proxy: {} s per figure after {} s of warm-up; latency: {} closed-loop \
             connection(s); throughput: {} keep-alive connections",
            self.span.as_secs(),
            self.warmup.as_secs(),
            self.latency_connections,
            self.connections,
        );
        let _ = writeln!(
            out,
            "One process on {} cores: the load client, creditgate (SQLite synchronous={}) and the \
             upstream stub share them, so the client's and the stub's work is counted against the proxy.",
            self.cores, self.synchronous,
        );
        if let Some(load) = &self.load_before {
            let _ = writeln!(
                out,
                "Load average before the run: {load} (1.0 is about one core busy with other work)."
            );
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<30}{:>11}{:>11}{:>11}  target",
            "", "direct", "proxied", "overhead"
        );
        let rows = [
            (
                "latency p50 (ms)",
                &self.latency_direct,
                &self.latency_proxied,
                500,
                Some(format!(
                    "< {}  {}",
                    ms_signed(TARGET_OVERHEAD_P50_NS),
                    pass(self.overhead_met())
                )),
            ),
            (
                "latency p99 (ms)",
                &self.latency_direct,
                &self.latency_proxied,
                990,
                None,
            ),
        ];
        for (label, direct, proxied, per_mille, target) in rows {
            let row = format!(
                "{label:<30}{:>11}{:>11}{:>11}  {}",
                ms(direct.percentile_ns(per_mille)),
                ms(proxied.percentile_ns(per_mille)),
                ms_signed(self.overhead_ns(per_mille)),
                target.unwrap_or_default(),
            );
            let _ = writeln!(out, "{}", row.trim_end());
        }
        let _ = writeln!(
            out,
            "{:<30}{:>11}{:>11}",
            "latency figure: answers",
            group(self.latency_direct.ok),
            group(self.latency_proxied.ok),
        );
        let _ = writeln!(
            out,
            "{:<30}{:>11}{:>11}{:>11}  ≥ {}  {}",
            "throughput (requests/s)",
            group(self.throughput_direct.per_second()),
            group(self.throughput_proxied.per_second()),
            "",
            group(TARGET_PROXIED_PER_S),
            pass(self.throughput_met()),
        );
        for (label, per_mille) in [("throughput p50 (ms)", 500), ("throughput p99 (ms)", 990)] {
            let _ = writeln!(
                out,
                "{label:<30}{:>11}{:>11}",
                ms(self.throughput_direct.percentile_ns(per_mille)),
                ms(self.throughput_proxied.percentile_ns(per_mille)),
            );
        }
        let _ = writeln!(
            out,
            "{:<30}{:>21}×",
            "proxied / direct requests/s",
            hundredths(self.throughput_ratio()),
        );
        let _ = writeln!(
            out,
            "{:<30}{:>22}{:>11}  = 0      {}",
            "non-200 answers",
            self.non_200(),
            "",
            pass(self.non_200() == 0),
        );
        let _ = writeln!(
            out,
            "{:<30}{:>22}{:>11}  = 0      {}",
            "failed requests",
            self.failed(),
            "",
            pass(self.failed() == 0),
        );
        let ledger = &self.ledger;
        let _ = writeln!(
            out,
            "{:<30}{:>22}",
            "ledger invariants",
            match ledger.violations.len() {
                0 => "OK".to_owned(),
                count => format!("{count} violated"),
            },
        );
        let _ = writeln!(
            out,
            "{:<30}{:>22}",
            "reserved at the end",
            ledger.reserved.to_string()
        );
        let _ = writeln!(
            out,
            "{:<30}{:>22}  ({} calls × {}{})",
            "charged",
            ledger.charged.to_string(),
            group(ledger.calls),
            ledger.per_call,
            if ledger.charged == ledger.expected {
                ", exact"
            } else {
                ", MISMATCH"
            },
        );
        let verdict = match (self.overhead_met(), self.throughput_met()) {
            (true, true) => "both targets met".to_owned(),
            (overhead, throughput) => {
                let mut misses = Vec::new();
                if !overhead {
                    misses.push("p50 overhead");
                }
                if !throughput {
                    misses.push("requests/s through the proxy");
                }
                format!("misses: {}", misses.join("; "))
            }
        };
        let _ = writeln!(out, "\n{verdict}");
        if let Some(problem) = self.first_problem() {
            let _ = writeln!(out, "first problem: {problem}");
        }
        for violation in ledger.violations.iter().take(10) {
            let _ = writeln!(out, "violation: {violation}");
        }
        out
    }

    fn json(&self) -> String {
        let figure = |m: &Measured| {
            json!({
                "answers": m.ok,
                "per_s": m.per_second(),
                "p50_us": m.percentile_ns(500) / 1_000,
                "p99_us": m.percentile_ns(990) / 1_000,
                "max_us": m.latencies_ns.last().copied().unwrap_or(0) / 1_000,
                "elapsed_ms": u64::try_from(m.elapsed.as_millis()).unwrap_or(u64::MAX),
                "non_200": m.non_200,
                "failed": m.failed,
            })
        };
        let mark = |met: bool| if met { "pass" } else { "miss" };
        json!({
            "bench": "proxy",
            "cores": self.cores,
            "loadavg_before": self.load_before,
            "shared_cores": "client, proxy and upstream stub in one process",
            "sqlite_synchronous": self.synchronous,
            "duration_s": self.span.as_secs(),
            "warmup_s": self.warmup.as_secs(),
            "latency_connections": self.latency_connections,
            "connections": self.connections,
            "latency": {
                "direct": figure(&self.latency_direct),
                "proxied": figure(&self.latency_proxied),
                "overhead_p50_us": self.overhead_ns(500) / 1_000,
                "overhead_p99_us": self.overhead_ns(990) / 1_000,
            },
            "throughput": {
                "direct": figure(&self.throughput_direct),
                "proxied": figure(&self.throughput_proxied),
                "proxied_over_direct": hundredths(self.throughput_ratio()),
            },
            "targets": {
                "overhead_p50_us_below": TARGET_OVERHEAD_P50_NS / 1_000,
                "overhead_p50": mark(self.overhead_met()),
                "proxied_per_s_at_least": TARGET_PROXIED_PER_S,
                "proxied_per_s": mark(self.throughput_met()),
            },
            "non_200": self.non_200(),
            "failed": self.failed(),
            "first_problem": self.first_problem(),
            "invariants_ok": self.ledger.violations.is_empty(),
            "violations": self.ledger.violations.iter().take(10).collect::<Vec<_>>(),
            "reserved": self.ledger.reserved.to_string(),
            "charged": self.ledger.charged.to_string(),
            "charged_expected": self.ledger.expected.to_string(),
            "ledger_ok": self.ledger.ok(),
        })
        .to_string()
    }
}

/// The 1, 5 and 15 minute load averages, where the system says (Linux).
fn load_average() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let fields: Vec<&str> = text.split_whitespace().take(3).collect();
    (fields.len() == 3).then(|| fields.join(" "))
}

fn signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Nanoseconds as milliseconds with three decimals: `123_456` → `"0.123"`.
fn ms(ns: u64) -> String {
    let us = ns / 1_000;
    format!("{}.{:03}", us / 1_000, us % 1_000)
}

/// [`ms`] with a sign.
fn ms_signed(ns: i64) -> String {
    let text = ms(ns.unsigned_abs());
    if ns < 0 {
        format!("-{text}")
    } else {
        text
    }
}

/// `871` → `"8.71"`.
fn hundredths(value: u64) -> String {
    format!("{}.{:02}", value / 100, value % 100)
}

#[cfg(test)]
mod tests {
    use super::*;
    use creditgate::http::proxy::formats::{self, Style};

    #[test]
    fn the_stub_body_reports_the_usage_the_ledger_check_expects() {
        let usage = formats::usage_from_body(Style::Anthropic, STUB_BODY.as_bytes()).unwrap();
        assert_eq!(usage.input_tokens, STUB_INPUT_TOKENS);
        assert_eq!(usage.output_tokens, STUB_OUTPUT_TOKENS);
        let request: Value = serde_json::from_str(REQUEST_BODY).unwrap();
        let facts = formats::request_facts(Style::Anthropic, &request).unwrap();
        assert_eq!(facts.model, MODEL);
        assert!(!facts.stream);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let sorted: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&sorted, 500), 50);
        assert_eq!(percentile(&sorted, 990), 99);
        assert_eq!(percentile(&sorted, 1_000), 100);
        assert_eq!(percentile(&[7], 990), 7);
        assert_eq!(percentile(&[], 500), 0);
    }

    #[test]
    fn heads_are_parsed() {
        let (answer, length) =
            parse_head(b"HTTP/1.1 402 Payment Required\r\nContent-Length: 12\r\n\r\n").unwrap();
        assert_eq!(
            (answer.status, answer.close, length),
            (402, false, Some(12))
        );
        let (answer, length) = parse_head(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n").unwrap();
        assert_eq!((answer.status, answer.close, length), (200, true, None));
        assert!(parse_head(b"garbage\r\n\r\n").is_err());
    }

    #[test]
    fn times_are_formatted() {
        assert_eq!(ms(123_456), "0.123");
        assert_eq!(ms(12_345_678), "12.345");
        assert_eq!(ms_signed(-250_000), "-0.250");
        assert_eq!(hundredths(7), "0.07");
    }
}
