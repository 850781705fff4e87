//! `creditgate demo`: everything on the embedded default in one process (SQLite in the data
//! directory, the built-in demo upstream for both proxy styles, the sandbox payment provider),
//! seeded with prices, an org with a little credit and a key, then either serving until Ctrl-C
//! with a list of things to try, or (`--tour`) running the story by itself and exiting.
//!
//! Seeding goes over HTTP to the service's own address with the operator token, like any
//! operator script, and is idempotent: prices are set only for models that have none; the
//! demo org and its key are kept in `<data dir>/demo.json` (mode 0600: it holds the key's
//! secret) and reused on restart while the org exists and the key is not revoked.
//!
//! The tour makes a new org ("Tour Org") with just enough credit for 28 calls, calls
//! the metering proxy with its key (Anthropic and OpenAI style in turn, every other pair
//! streamed) and prints the available balance falling, until a call is refused with 402; it
//! prints that refusal's body, then adds credits the way a customer does: a checkout top-up of
//! [`TOUR_TOP_UP`] (`POST /v1/orgs/{org_id}/top_ups`), paid on the sandbox's checkout page
//! (the stand-in for Stripe Checkout) with the test card `pm_card_visa`. It checks the payment
//! succeeded, prints the balance after, shows the next call succeeding with access active
//! again, and exits 0. Everything is bounded: at most [`TOUR_CALLS_MAX`] calls,
//! [`TOUR_TIME_MAX`] in all, [`REQUEST_TIMEOUT`] per request.
//!
//! `--tour` while a demo already serves `--listen` (say, in another terminal) drives that one
//! instead of starting a second, with the operator token from the same data directory (its
//! payment provider must be the sandbox).

use std::io::{IsTerminal as _, Write as _};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use creditgate::config::Config;
use creditgate::server::demo_upstream::REPLY_WORDS;
use creditgate::server::{Application, Parts};
use creditgate_domain::Amount;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// Where the demo listens unless told.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// The demo's own data directory (not `serve`'s `.creditgate`).
pub const DEFAULT_DATA_DIR: &str = ".creditgate-demo";
/// The file in the data directory that remembers the demo org and its key.
const STATE_FILE: &str = "demo.json";
/// Longest one HTTP request of the demo may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Most proxied calls the tour makes before giving up on being cut off.
pub const TOUR_CALLS_MAX: u32 = 10_000;
/// Longest the whole tour may take.
pub const TOUR_TIME_MAX: Duration = Duration::from_secs(300);
/// Longest the tour waits for a streamed call's settlement to show in the balance.
const SETTLE_WAIT_MAX: Duration = Duration::from_secs(2);

/// One model of the demo price book, per million tokens.
pub struct DemoPrice {
    /// The model name callers send.
    pub model: &'static str,
    /// Per million input tokens.
    pub input: &'static str,
    /// Per million output tokens.
    pub output: &'static str,
    /// Per million cache-write tokens.
    pub cache_write: &'static str,
    /// Per million cache-read tokens.
    pub cache_read: &'static str,
}

/// The demo price book: list prices of the kind the two providers charge.
pub const PRICES: [DemoPrice; 2] = [
    DemoPrice {
        model: "claude-demo",
        input: "3.00",
        output: "15.00",
        cache_write: "3.75",
        cache_read: "0.30",
    },
    DemoPrice {
        model: "gpt-demo",
        input: "2.50",
        output: "10.00",
        cache_write: "2.50",
        cache_read: "1.25",
    },
];

const DEMO_ORG_NAME: &str = "Demo Org";
const BILLING_EMAIL: &str = "demo@example.com";
const DEMO_LOW_THRESHOLD: &str = "0.50";
const DEMO_CREDIT: &str = "1.00";
const TOUR_ORG_NAME: &str = "Tour Org";
/// The tour org's credit. A tour call costs 0.000498 Anthropic-style and 0.000335
/// OpenAI-style (6 input and 32 output tokens at the demo prices: see the tests), so after 28
/// calls 0.000438 is left: less than the worst case of the 29th, an Anthropic-style call
/// (0.00072 with the proxy's input bound of 64 tokens at the 3.75 cache-write price), and no
/// earlier call's worst case (at most 0.00072) comes near what is left before it.
pub const TOUR_CREDIT: &str = "0.0121";
const TOUR_LOW_THRESHOLD: &str = "0.005";
/// The top-up the tour org pays for once it is cut off: whole cents, within the default
/// top-up limits (5.00 to 5000.00).
pub const TOUR_TOP_UP: &str = "5.00";
/// The sandbox test card the tour pays with (it always succeeds).
const TOUR_CARD: &str = "pm_card_visa";
/// The tour's prompt: 24 bytes, so 6 input tokens at the demo upstream.
pub const TOUR_PROMPT: &str = "What does creditgate do?";
const BAR_WIDTH: i64 = 30;

/// `creditgate demo`
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Address and port to listen on (port 0: any free port).
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub listen: String,
    /// Where the demo keeps its SQLite database, secrets and the demo key (created if missing).
    #[arg(long, default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// Run the story by itself: call until the credits run out, show the 402, pay for a
    /// top-up on the sandbox checkout, show access restored, then exit.
    #[arg(long)]
    pub tour: bool,
}

/// Runs `creditgate demo`.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let config = demo_config(&args)?;
    let data_dir = config.data_dir.clone();
    if args.tour {
        if let Some(base) = running_demo(&config.listen).await {
            return tour_of_running(&base, &config).await;
        }
    }
    let app = Application::build(config, Parts::default())
        .await
        .context("starting the demo")?;
    let state = app.state().clone();
    let base = format!("http://{}", reachable(app.address()));
    let api = Api::new(&base, state.operator_token())?;
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(app.run(shutdown.clone()));
    let billing_url = |org_id: &str| state.billing_url(org_id);
    let story = async {
        let demo = seed(&api, &data_dir).await?;
        if args.tour {
            say(&format!(
                "creditgate demo: serving on {base} (data in {}; sandbox payments).",
                data_dir.display()
            ));
            tour(&api, &billing_url).await
        } else {
            print_try(&api, &data_dir, &demo, &billing_url).await?;
            shutdown_signal().await;
            say("\nStopping.");
            Ok(())
        }
    };
    let result = tokio::select! {
        result = story => result,
        () = shutdown_signal(), if args.tour => Err(anyhow!("interrupted")),
    };
    shutdown.cancel();
    server
        .await
        .context("the server task failed")?
        .context("serving")?;
    result
}

/// The configuration: `CREDITGATE_*` as for `serve` (operator token, public URL, product
/// name…), but always the embedded default: SQLite in `--data-dir`, the demo upstream, the
/// sandbox payment provider (Stripe's test cards, no network).
fn demo_config(args: &DemoArgs) -> anyhow::Result<Config> {
    let mut config = Config::load(None)?;
    config.data_dir = args.data_dir.clone();
    config.listen = args.listen.clone();
    config.database_url = String::new();
    config.payments = "sandbox".into();
    config.anthropic_upstream = "demo".into();
    config.openai_upstream = "demo".into();
    config.anthropic_upstream_key = String::new();
    config.openai_upstream_key = String::new();
    Ok(config)
}

/// An address a client can connect to (a wildcard listen address means this host).
fn reachable(address: SocketAddr) -> SocketAddr {
    match address {
        SocketAddr::V4(v4) if v4.ip().is_unspecified() => {
            SocketAddr::from((Ipv4Addr::LOCALHOST, v4.port()))
        }
        SocketAddr::V6(v6) if v6.ip().is_unspecified() => {
            SocketAddr::from((Ipv6Addr::LOCALHOST, v6.port()))
        }
        other => other,
    }
}

/// `http://listen` when a creditgate already answers there (port 0 never does).
async fn running_demo(listen: &str) -> Option<String> {
    let address: SocketAddr = listen.parse().ok()?;
    if address.port() == 0 {
        return None;
    }
    let base = format!("http://{}", reachable(address));
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()
        .ok()?;
    let response = http.get(format!("{base}/healthz")).send().await.ok()?;
    response.status().is_success().then_some(base)
}

/// The tour against a demo already serving at `base`.
async fn tour_of_running(base: &str, config: &Config) -> anyhow::Result<()> {
    let token = if config.operator_token.is_empty() {
        let path = config.data_dir.join("operator_token");
        std::fs::read_to_string(&path)
            .with_context(|| {
                format!(
                    "a creditgate answers on {base}, but its operator token is not in {}: \
                     pass the demo's --data-dir, or stop it first",
                    path.display()
                )
            })?
            .trim()
            .to_owned()
    } else {
        config.operator_token.clone()
    };
    say(&format!(
        "creditgate demo: using the demo already serving on {base}."
    ));
    let api = Api::new(base, &token)?;
    seed(&api, &config.data_dir).await?;
    let public = if config.public_url.is_empty() {
        base.to_owned()
    } else {
        config.public_url.trim_end_matches('/').to_owned()
    };
    let billing_url = |org_id: &str| format!("{public}/billing/{org_id}");
    let story = tour(&api, &billing_url);
    tokio::select! {
        result = story => result,
        () = shutdown_signal() => Err(anyhow!("interrupted")),
    }
}

/// Ctrl-C, or SIGTERM on Unix.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

/// Writes a line to stdout, flushed (a closed pipe is not worth a panic).
fn say(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

/// An HTTP answer, read whole.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }
}

/// Who a request is from.
#[derive(Clone, Copy)]
enum As<'a> {
    /// The operator token.
    Operator,
    /// An org's key as `x-api-key`.
    ApiKey(&'a str),
    /// An org's key as `Authorization: Bearer`.
    Bearer(&'a str),
}

/// The service over HTTP.
struct Api {
    http: reqwest::Client,
    base: String,
    operator: String,
}

impl Api {
    fn new(base: &str, operator: &str) -> anyhow::Result<Api> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("creditgate-demo/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("setting up HTTP")?;
        Ok(Api {
            http,
            base: base.trim_end_matches('/').to_owned(),
            operator: operator.to_owned(),
        })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        from: As<'_>,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<Reply> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        request = match from {
            As::Operator => request.bearer_auth(&self.operator),
            As::ApiKey(key) => request.header("x-api-key", key),
            As::Bearer(key) => request.bearer_auth(key),
        };
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response
            .text()
            .await
            .with_context(|| format!("{method} {path}: reading the answer"))?;
        Ok(Reply {
            status,
            headers,
            text,
        })
    }

    /// An operator call that must succeed; its JSON answer.
    async fn operator(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        idempotency_key: Option<&str>,
    ) -> anyhow::Result<Value> {
        let headers: Vec<(&str, &str)> = idempotency_key
            .map(|key| ("idempotency-key", key))
            .into_iter()
            .collect();
        let reply = self
            .send(method.clone(), path, As::Operator, body, &headers)
            .await?;
        if !reply.status.is_success() {
            bail!("{method} {path}: {} {}", reply.status, reply.text.trim());
        }
        Ok(reply.json())
    }

    /// Pays on the sandbox's checkout page at `path` (a form post, as the page's own form
    /// does) with the test card `card`.
    async fn pay_on_checkout(&self, path: &str, card: &str) -> anyhow::Result<Reply> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .form(&[("payment_method", card)])
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response
            .text()
            .await
            .with_context(|| format!("POST {path}: reading the answer"))?;
        Ok(Reply {
            status,
            headers,
            text,
        })
    }

    /// An org's balance, read with its key.
    async fn balance(&self, org: &DemoOrg) -> anyhow::Result<Balance> {
        let path = format!("/v1/orgs/{}/balance", org.org_id);
        let reply = self
            .send(Method::GET, &path, As::ApiKey(&org.key), None, &[])
            .await?;
        if !reply.status.is_success() {
            bail!("GET {path}: {} {}", reply.status, reply.text.trim());
        }
        let body = reply.json();
        let field = |name: &str| -> anyhow::Result<Amount> {
            body[name]
                .as_str()
                .and_then(|text| Amount::from_str(text).ok())
                .ok_or_else(|| anyhow!("GET {path}: no {name} in {}", reply.text.trim()))
        };
        Ok(Balance {
            available: field("available")?,
            reserved: field("reserved")?,
            access_state: body["access_state"].as_str().unwrap_or("?").to_owned(),
            currency: body["currency"].as_str().unwrap_or_default().to_owned(),
        })
    }
}

/// An org's balance as the tour shows it.
struct Balance {
    available: Amount,
    reserved: Amount,
    access_state: String,
    /// Empty when read from a proxied answer's headers.
    currency: String,
}

/// The demo org and its key, as kept in `demo.json`.
#[derive(Clone, Debug, Deserialize, Serialize)]
struct DemoOrg {
    org_id: String,
    key_id: String,
    key: String,
}

/// Prices, then the demo org and its key: made once, reused afterwards.
async fn seed(api: &Api, data_dir: &Path) -> anyhow::Result<DemoOrg> {
    for price in &PRICES {
        let listed = api
            .operator(
                Method::GET,
                &format!("/v1/prices?model={}", price.model),
                None,
                None,
            )
            .await?;
        if listed["data"]
            .as_array()
            .is_some_and(|data| !data.is_empty())
        {
            continue;
        }
        let body = json!({
            "input": price.input,
            "output": price.output,
            "cache_write": price.cache_write,
            "cache_read": price.cache_read,
        });
        api.operator(
            Method::PUT,
            &format!("/v1/prices/{}", price.model),
            Some(&body),
            None,
        )
        .await?;
    }
    let state_path = data_dir.join(STATE_FILE);
    if let Some(saved) = load_state(&state_path)? {
        if let Some(reused) = reuse(api, &state_path, saved).await? {
            return Ok(reused);
        }
    }
    let demo = new_org(
        api,
        DEMO_ORG_NAME,
        DEMO_LOW_THRESHOLD,
        DEMO_CREDIT,
        "demo-seed",
    )
    .await?;
    save_state(&state_path, &demo)?;
    Ok(demo)
}

/// The saved org with a live key (a new one if the saved key was revoked), or `None` when
/// the org is gone (a fresh database under an old `demo.json`).
async fn reuse(api: &Api, state_path: &Path, saved: DemoOrg) -> anyhow::Result<Option<DemoOrg>> {
    let org_path = format!("/v1/orgs/{}", saved.org_id);
    let reply = api
        .send(Method::GET, &org_path, As::Operator, None, &[])
        .await?;
    if reply.status == StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if !reply.status.is_success() {
        bail!("GET {org_path}: {} {}", reply.status, reply.text.trim());
    }
    let keys = api
        .operator(Method::GET, &format!("{org_path}/keys"), None, None)
        .await?;
    let live = keys["data"].as_array().is_some_and(|keys| {
        keys.iter()
            .any(|key| key["id"] == saved.key_id.as_str() && key["revoked_at"].is_null())
    });
    if live {
        return Ok(Some(saved));
    }
    let (key_id, key) = new_key(api, &saved.org_id, "demo").await?;
    let renewed = DemoOrg {
        org_id: saved.org_id,
        key_id,
        key,
    };
    save_state(state_path, &renewed)?;
    Ok(Some(renewed))
}

/// A new org with its billing contact, one low-balance threshold, `credit` (promotional) and
/// a key.
async fn new_org(
    api: &Api,
    name: &str,
    low_threshold: &str,
    credit: &str,
    purpose: &str,
) -> anyhow::Result<DemoOrg> {
    let org = api
        .operator(
            Method::POST,
            "/v1/orgs",
            Some(&json!({
                "name": name,
                "billing_emails": [BILLING_EMAIL],
                "low_thresholds": [low_threshold],
            })),
            None,
        )
        .await?;
    let org_id = org["id"]
        .as_str()
        .ok_or_else(|| anyhow!("POST /v1/orgs: no id in {org}"))?
        .to_owned();
    api.operator(
        Method::POST,
        &format!("/v1/orgs/{org_id}/grants"),
        Some(&json!({
            "amount": credit,
            "origin": "promotional",
            "reference": format!("{purpose}: starting credit"),
        })),
        Some(&format!("{purpose}-{org_id}")),
    )
    .await?;
    // Its owner, who signs in to the billing page with an emailed link.
    api.operator(
        Method::POST,
        &format!("/v1/orgs/{org_id}/members"),
        Some(&json!({"email": BILLING_EMAIL, "name": "Demo owner", "role": "owner", "invite": false})),
        None,
    )
    .await?;
    let (key_id, key) = new_key(api, &org_id, purpose).await?;
    Ok(DemoOrg {
        org_id,
        key_id,
        key,
    })
}

/// A new key of `org_id`: its id and secret.
async fn new_key(api: &Api, org_id: &str, name: &str) -> anyhow::Result<(String, String)> {
    let created = api
        .operator(
            Method::POST,
            &format!("/v1/orgs/{org_id}/keys"),
            Some(&json!({ "name": name })),
            None,
        )
        .await?;
    let id = created["id"].as_str();
    let secret = created["secret"].as_str();
    match (id, secret) {
        (Some(id), Some(secret)) => Ok((id.to_owned(), secret.to_owned())),
        _ => bail!("POST /v1/orgs/{org_id}/keys: no key in {created}"),
    }
}

fn load_state(path: &Path) -> anyhow::Result<Option<DemoOrg>> {
    match std::fs::read_to_string(path) {
        Ok(text) => match serde_json::from_str(&text) {
            Ok(saved) => Ok(Some(saved)),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "unreadable; seeding a new demo org");
                Ok(None)
            }
        },
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes `demo.json` readable by its owner only (it holds a key's secret).
fn save_state(path: &Path, demo: &DemoOrg) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(demo)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        options.mode(0o600);
        // An existing file keeps its mode on open: narrow it first.
        if path.exists() {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("restricting {}", path.display()))?;
        }
    }
    options
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .with_context(|| format!("writing {}", path.display()))
}

/// What `creditgate demo` prints once it serves.
async fn print_try(
    api: &Api,
    data_dir: &Path,
    demo: &DemoOrg,
    billing_url: &dyn Fn(&str) -> String,
) -> anyhow::Result<()> {
    let base = &api.base;
    let balance = api.balance(demo).await?;
    let currency = &balance.currency;
    let key = &demo.key;
    let org = &demo.org_id;
    let dir = data_dir.display();
    // The operator token for a shell: from its file in the data directory, or from the
    // environment when it came from there.
    let token_file = data_dir.join("operator_token");
    let token = match std::fs::read_to_string(&token_file) {
        Ok(saved) if saved.trim() == api.operator => format!("$(cat {})", token_file.display()),
        _ => "$CREDITGATE_OPERATOR_TOKEN".to_owned(),
    };
    let top_up_key = format!("demo-top-up-{:08x}", rand::random::<u32>());
    let prices: Vec<String> = PRICES
        .iter()
        .map(|p| format!("{} {} in / {} out", p.model, p.input, p.output))
        .collect();
    let lines = [
        format!("creditgate demo: serving on {base} (SQLite, secrets and the demo key in {dir}; demo upstream for both proxy styles; sandbox payments)."),
        String::new(),
        format!("  org      {DEMO_ORG_NAME} ({org}), billing contact {BILLING_EMAIL}, low-balance alert at {DEMO_LOW_THRESHOLD}"),
        format!("  balance  {} {currency} available, access {}", balance.available, balance.access_state),
        format!("  API key  {key}  (kept in {dir}/{STATE_FILE}, reused on restart)"),
        format!("  prices   per million tokens: {}", prices.join("; ")),
        String::new(),
        "Try:".to_owned(),
        format!("  # An Anthropic-style call through the metering proxy (an SDK's base URL: {base}/anthropic)"),
        format!("  curl -s {base}/anthropic/v1/messages -H 'x-api-key: {key}' -H 'anthropic-version: 2023-06-01' -H 'content-type: application/json' -d '{{\"model\":\"claude-demo\",\"max_tokens\":64,\"messages\":[{{\"role\":\"user\",\"content\":\"Hello\"}}]}}'"),
        format!("  # An OpenAI-style call, streamed (an SDK's base URL: {base}/openai/v1)"),
        format!("  curl -sN {base}/openai/v1/chat/completions -H 'Authorization: Bearer {key}' -H 'content-type: application/json' -d '{{\"model\":\"gpt-demo\",\"max_tokens\":64,\"stream\":true,\"messages\":[{{\"role\":\"user\",\"content\":\"Hello\"}}]}}'"),
        "  # The balance and access state (each proxied answer carries them too: creditgate-balance-available, creditgate-access-state)".to_owned(),
        format!("  curl -s {base}/v1/orgs/{org}/balance -H 'x-api-key: {key}'"),
        "  # The story by itself: calls until the credits run out, the 402, a top-up paid on the sandbox checkout, access back".to_owned(),
        format!("  creditgate demo --tour --listen {} --data-dir {dir}", base.trim_start_matches("http://")),
        "  # Add credits as a customer does: a checkout top-up (a new Idempotency-Key for each top-up; a replay answers the same payment)".to_owned(),
        format!("  curl -s {base}/v1/orgs/{org}/top_ups -H \"Authorization: Bearer {token}\" -H 'Idempotency-Key: {top_up_key}' -H 'content-type: application/json' -d '{{\"amount\":\"25.00\"}}'"),
        "  # then open its action_url and pay with a test card (pm_card_visa succeeds, pm_card_visa_chargeDeclined is declined; in production the page is Stripe Checkout)".to_owned(),
        "  # The operator's way: grant credits directly (the CLI reads the token from the data directory)".to_owned(),
        format!("  CREDITGATE_DATA_DIR={dir} creditgate credits grant {org} 5.00 --url {base}"),
        String::new(),
        format!("Billing page: {}", billing_url(org)),
        format!("  sign in as {BILLING_EMAIL}: the sign-in link is emailed to {dir}/mail/ (open the newest .eml there)"),
        String::new(),
        "Serving until Ctrl-C.".to_owned(),
    ];
    say(&lines.join("\n"));
    Ok(())
}

/// The two proxy styles the tour alternates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Style {
    Anthropic,
    OpenAi,
}

impl Style {
    fn name(self) -> &'static str {
        match self {
            Style::Anthropic => "anthropic",
            Style::OpenAi => "openai",
        }
    }

    fn model(self) -> &'static str {
        match self {
            Style::Anthropic => PRICES[0].model,
            Style::OpenAi => PRICES[1].model,
        }
    }
}

/// How call `n` (from 1) of the tour is made: styles alternate, every other pair streams.
fn call_kind(n: u32) -> (Style, bool) {
    let style = if n % 2 == 1 {
        Style::Anthropic
    } else {
        Style::OpenAi
    };
    (style, (n - 1) % 4 >= 2)
}

/// What one proxied call came to.
enum Outcome {
    /// Answered and charged: the balance after it.
    Served(Balance),
    /// Refused for credits: the status and the body as received.
    Refused(StatusCode, String),
}

/// The body of a tour call: the same short question in either style, capped at the demo
/// upstream's whole reply (so the hold's output part is what the call really uses).
fn tour_request(style: Style, stream: bool) -> Value {
    json!({
        "model": style.model(),
        "max_tokens": REPLY_WORDS,
        "messages": [{"role": "user", "content": TOUR_PROMPT}],
        "stream": stream,
    })
}

/// One proxied call with the org's key.
async fn proxied_call(
    api: &Api,
    org: &DemoOrg,
    style: Style,
    stream: bool,
) -> anyhow::Result<Outcome> {
    let body = tour_request(style, stream);
    let (path, from, headers) = match style {
        Style::Anthropic => (
            "/anthropic/v1/messages",
            As::ApiKey(&org.key),
            vec![("anthropic-version", "2023-06-01")],
        ),
        Style::OpenAi => (
            "/openai/v1/chat/completions",
            As::Bearer(&org.key),
            Vec::new(),
        ),
    };
    let reply = api
        .send(Method::POST, path, from, Some(&body), &headers)
        .await?;
    if reply.status == StatusCode::PAYMENT_REQUIRED {
        return Ok(Outcome::Refused(reply.status, reply.text));
    }
    if reply.status != StatusCode::OK {
        bail!("POST {path}: {} {}", reply.status, reply.text.trim());
    }
    if stream {
        let end = match style {
            Style::Anthropic => "event: message_stop",
            Style::OpenAi => "data: [DONE]",
        };
        if !reply.text.contains(end) {
            bail!("POST {path}: the stream ended without {end:?}");
        }
        // The stream's settlement follows its last event: wait for the hold to close.
        let started = Instant::now();
        loop {
            let balance = api.balance(org).await?;
            if balance.reserved.is_zero() || started.elapsed() > SETTLE_WAIT_MAX {
                return Ok(Outcome::Served(balance));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    if reply.json().get("usage").is_none() {
        bail!("POST {path}: no usage in {}", reply.text.trim());
    }
    // The proxy's headers, read after the settlement; the balance route otherwise.
    let header = |name: &str| {
        reply
            .headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    match (
        header("creditgate-balance-available").and_then(|text| Amount::from_str(&text).ok()),
        header("creditgate-access-state"),
    ) {
        (Some(available), Some(access_state)) => Ok(Outcome::Served(Balance {
            available,
            reserved: Amount::ZERO,
            access_state,
            currency: String::new(),
        })),
        _ => Ok(Outcome::Served(api.balance(org).await?)),
    }
}

/// `[#######.......]`: `available` of `full`.
fn bar(available: Amount, full: Amount) -> String {
    let full_micros = full.micros().max(1);
    let filled = (i128::from(available.micros().clamp(0, full_micros)) * i128::from(BAR_WIDTH)
        / i128::from(full_micros))
    .clamp(0, i128::from(BAR_WIDTH));
    let filled = usize::try_from(filled).unwrap_or(0);
    let width = usize::try_from(BAR_WIDTH).unwrap_or(0);
    format!("[{}{}]", "#".repeat(filled), ".".repeat(width - filled))
}

/// `available` as a whole percentage of `full`.
fn percent(available: Amount, full: Amount) -> i128 {
    i128::from(available.micros().max(0)) * 100 / i128::from(full.micros().max(1))
}

/// `percent` for a column: `96%`, or `>100%` once credits were added.
fn percent_text(available: Amount, full: Amount) -> String {
    if available > full {
        ">100%".to_owned()
    } else {
        format!("{}%", percent(available, full))
    }
}

fn call_line(
    n: u32,
    style: Style,
    stream: bool,
    status: &str,
    balance: &Balance,
    full: Amount,
) -> String {
    let mode = if stream { "stream" } else { "" };
    format!(
        "call {n:>3}  {:<9} {:<6} {status}  {}  {:>9} available {:>5}  {}",
        style.name(),
        mode,
        bar(balance.available, full),
        balance.available.to_string(),
        percent_text(balance.available, full),
        balance.access_state,
    )
}

/// The story: a new org calls until cut off, is refused, gets credits, and is served again.
async fn tour(api: &Api, billing_url: &dyn Fn(&str) -> String) -> anyhow::Result<()> {
    let started = Instant::now();
    let full = Amount::from_str(TOUR_CREDIT).expect("a valid amount");
    let org = new_org(api, TOUR_ORG_NAME, TOUR_LOW_THRESHOLD, TOUR_CREDIT, "tour").await?;
    let currency = api.balance(&org).await?.currency;
    say(&format!(
        "\nThe tour: a new org, {TOUR_ORG_NAME} ({}), starts with {full} {currency} of credit (a \
         low-balance alert at {TOUR_LOW_THRESHOLD}) and calls the metering proxy with its key, Anthropic- and \
         OpenAI-style in turn ({} and {}, every other pair streamed). Each call holds its worst \
         case, then pays for the usage the upstream reports.\n",
        org.org_id,
        Style::Anthropic.model(),
        Style::OpenAi.model(),
    ));
    let on_terminal = std::io::stdout().is_terminal();
    let mut previous = full;
    let mut spent = Amount::ZERO;
    let mut refused = None;
    for n in 1..=TOUR_CALLS_MAX {
        if started.elapsed() > TOUR_TIME_MAX {
            bail!("the tour took longer than {TOUR_TIME_MAX:?} without being cut off");
        }
        let (style, stream) = call_kind(n);
        match proxied_call(api, &org, style, stream).await? {
            Outcome::Served(balance) => {
                spent = spent
                    .checked_add(
                        previous
                            .checked_sub(balance.available)
                            .unwrap_or(Amount::ZERO),
                    )
                    .unwrap_or(spent);
                previous = balance.available;
                say(&call_line(n, style, stream, "200", &balance, full));
                if on_terminal {
                    // Slow enough to watch; a pipe (a test, a log) gets it at full speed.
                    tokio::time::sleep(Duration::from_millis(60)).await;
                }
            }
            Outcome::Refused(status, body) => {
                refused = Some((n, style, status, body));
                break;
            }
        }
    }
    let Some((cut_at, style, status, body)) = refused else {
        bail!("{TOUR_CALLS_MAX} calls and still not cut off");
    };
    let balance = api.balance(&org).await?;
    say(&format!(
        "\ncall {cut_at:>3}  {:<9} refused: HTTP {} {} (available {}, less than the call's worst \
         case; access {}). The body as received, in the {} style's own error envelope:\n{}",
        style.name(),
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        balance.available,
        balance.access_state,
        style.name(),
        body.trim(),
    ));
    say(&format!(
        "\n{} calls were served for {spent} {currency} in all. Now the org's admin adds credits, as on \
         its billing page ({}): a {TOUR_TOP_UP} {currency} checkout top-up, paid with a test card on the \
         sandbox's checkout page (in production this page is Stripe Checkout).",
        cut_at - 1,
        billing_url(&org.org_id),
    ));
    let paid = checkout_top_up(api, &org).await?;
    let balance = api.balance(&org).await?;
    say(&format!(
        "  balance after: {} {currency} available, access {}",
        balance.available, balance.access_state,
    ));
    let n = cut_at;
    let (style, stream) = call_kind(n);
    let Outcome::Served(balance) = proxied_call(api, &org, style, stream).await? else {
        bail!("call {n} was refused again after the payment {paid}");
    };
    say(&format!(
        "\n{}",
        call_line(n, style, stream, "200", &balance, full)
    ));
    let now = api.balance(&org).await?;
    if now.access_state != "active" {
        bail!(
            "after the payment {paid} the access state is {}, not active",
            now.access_state
        );
    }
    say(&format!(
        "\nCall {n} was served again right after the payment: access active again, {} available. \
         Tour done in {:.1?}.",
        now.available,
        started.elapsed(),
    ));
    Ok(())
}

/// A [`TOUR_TOP_UP`] checkout top-up of `org`, paid on the sandbox's checkout page with
/// [`TOUR_CARD`], then read back as succeeded: the payment's id.
async fn checkout_top_up(api: &Api, org: &DemoOrg) -> anyhow::Result<String> {
    let path = format!("/v1/orgs/{}/top_ups", org.org_id);
    let payment = api
        .operator(
            Method::POST,
            &path,
            Some(&json!({"amount": TOUR_TOP_UP, "method": "checkout"})),
            Some(&format!("tour-top-up-{}", org.org_id)),
        )
        .await?;
    let text = |name: &str| payment[name].as_str().unwrap_or_default().to_owned();
    let (payment_id, provider, action_url) = (text("id"), text("provider"), text("action_url"));
    if provider != "sandbox" {
        bail!(
            "POST {path}: the payment provider is {provider:?}; the tour pays on the sandbox's \
             checkout page (payments = \"sandbox\")"
        );
    }
    // The page lives on this service; its address in `action_url` starts with the public URL.
    let page = format!("/sandbox/checkout/{payment_id}");
    if payment_id.is_empty() || text("state") != "requires_action" || !action_url.ends_with(&page) {
        bail!("POST {path}: not a checkout waiting to be paid: {payment}");
    }
    say(&format!(
        "  POST {path} {{\"amount\":\"{TOUR_TOP_UP}\"}} -> {payment_id}, requires_action"
    ));
    say(&format!("  checkout page: {action_url}"));
    let paid = api.pay_on_checkout(&page, TOUR_CARD).await?;
    if paid.status != StatusCode::OK || !paid.text.contains("Payment received") {
        bail!(
            "POST {page} with {TOUR_CARD}: {} {}",
            paid.status,
            paid.text.trim()
        );
    }
    let read = api
        .operator(
            Method::GET,
            &format!("/v1/payments/{payment_id}"),
            None,
            None,
        )
        .await?;
    let state = read["state"].as_str().unwrap_or("?");
    let transfer = read["transfer_id"].as_str().unwrap_or("?");
    if state != "succeeded" {
        bail!("GET /v1/payments/{payment_id}: {state}, not succeeded: {read}");
    }
    say(&format!(
        "  paid with test card {TOUR_CARD} -> payment {state}, credited as {transfer}"
    ));
    Ok(payment_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use creditgate::proxy::formats;
    use creditgate::server::demo_upstream::{
        anthropic_input_tokens, openai_input_tokens, output_tokens,
    };
    use creditgate_domain::pricing::{cost, worst_case, TokenPrices, Usage};

    fn prices(price: &DemoPrice) -> TokenPrices {
        let amount = |text: &str| Amount::parse(text).unwrap();
        TokenPrices {
            input: amount(price.input),
            output: amount(price.output),
            cache_write: amount(price.cache_write),
            cache_read: amount(price.cache_read),
            request_fee: Amount::ZERO,
        }
    }

    /// The tour replayed on paper: each call is refused when the available balance cannot
    /// cover the proxy's worst case, else charged the demo upstream's usage.
    #[test]
    fn tour_credit_is_cut_off_after_20_to_40_calls() {
        let mut available = Amount::parse(TOUR_CREDIT).unwrap();
        let mut refused = None;
        for n in 1..=100 {
            let (style, stream) = call_kind(n);
            let (format, price, input_tokens) = match style {
                Style::Anthropic => (
                    formats::Style::Anthropic,
                    prices(&PRICES[0]),
                    anthropic_input_tokens(&tour_request(style, stream)),
                ),
                Style::OpenAi => (
                    formats::Style::OpenAi,
                    prices(&PRICES[1]),
                    openai_input_tokens(&tour_request(style, stream)),
                ),
            };
            let facts = formats::request_facts(format, &tour_request(style, stream)).unwrap();
            let worst = worst_case(
                &price,
                facts.input_tokens_max,
                facts.output_tokens_max(4096),
            )
            .unwrap();
            if available < worst {
                refused = Some((n, style));
                break;
            }
            let usage = Usage {
                input_tokens,
                output_tokens: output_tokens(REPLY_WORDS),
                ..Usage::default()
            };
            let charged = cost(&price, &usage).unwrap();
            assert_eq!(
                charged.micros(),
                match style {
                    Style::Anthropic => 498,
                    Style::OpenAi => 335,
                }
            );
            available = available.checked_sub(charged).unwrap();
        }
        let (n, style) = refused.expect("cut off");
        assert!((21..=41).contains(&n), "cut off at call {n}");
        assert_eq!((n, style), (29, Style::Anthropic));
    }

    /// The tour's top-up passes the default top-up limits (whole cents, 5.00 to 5000.00) and
    /// restores access for more than the call that was refused.
    #[test]
    fn tour_top_up_is_within_the_default_limits() {
        let top_up = Amount::parse(TOUR_TOP_UP).unwrap();
        let config = Config::default();
        assert!(creditgate_domain::payment::is_whole_cents(top_up));
        assert!(top_up >= Amount::parse(&config.top_up_min).unwrap());
        assert!(top_up <= Amount::parse(&config.top_up_max).unwrap());
        assert!(top_up > Amount::parse(TOUR_CREDIT).unwrap());
        assert_eq!(config.payments, "sandbox");
    }

    #[test]
    fn calls_alternate_styles_and_stream_every_other_pair() {
        let kinds: Vec<(Style, bool)> = (1..=5).map(call_kind).collect();
        assert_eq!(
            kinds,
            [
                (Style::Anthropic, false),
                (Style::OpenAi, false),
                (Style::Anthropic, true),
                (Style::OpenAi, true),
                (Style::Anthropic, false),
            ]
        );
    }

    #[test]
    fn bar_and_percent() {
        let full = Amount::from_micros(1_000);
        assert_eq!(bar(full, full), format!("[{}]", "#".repeat(30)));
        assert_eq!(
            bar(Amount::from_micros(500), full),
            format!("[{}{}]", "#".repeat(15), ".".repeat(15))
        );
        assert_eq!(
            bar(Amount::from_micros(-5), full),
            format!("[{}]", ".".repeat(30))
        );
        assert_eq!(
            bar(Amount::from_micros(5_000), full),
            format!("[{}]", "#".repeat(30))
        );
        assert_eq!(percent(Amount::from_micros(499), full), 49);
        assert_eq!(percent_text(Amount::from_micros(499), full), "49%");
        assert_eq!(percent_text(Amount::from_micros(1_001), full), ">100%");
    }

    #[test]
    fn state_file_is_private_and_round_trips() {
        let dir =
            std::env::temp_dir().join(format!("creditgate_demo_state_{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(STATE_FILE);
        assert!(load_state(&path).unwrap().is_none());
        let demo = DemoOrg {
            org_id: "org_a".into(),
            key_id: "key_b".into(),
            key: "cg_live_c".into(),
        };
        save_state(&path, &demo).unwrap();
        save_state(&path, &demo).unwrap();
        let loaded = load_state(&path).unwrap().unwrap();
        assert_eq!(loaded.key, "cg_live_c");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
