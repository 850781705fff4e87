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
//! again. At the cut-off and at the restore it prints the email the billing contacts got (its
//! subject and the `.eml` file it was written to). Then the rescue: the admin turns on
//! auto-reload with a test card (threshold 0.00), a batch job's usage takes most of the
//! credits, calls go on until one is refused, the card is charged at once and the call is
//! served again, with no "turned off" email. It exits 0. Everything is bounded: at most [`TOUR_CALLS_MAX`] calls,
//! [`TOUR_TIME_MAX`] in all, [`REQUEST_TIMEOUT`] per request.
//!
//! `--tour` while a demo already serves `--listen` (say, in another terminal) drives that one
//! instead of starting a second, with the operator token from the same data directory (its
//! payment provider must be the sandbox).

mod api;
mod print;
mod seed;
mod tour;

#[cfg(test)]
mod tests;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use creditgate::config::Config;
use creditgate::node::{Application, Parts};
use tokio_util::sync::CancellationToken;

use api::Api;
use print::{print_try, say};
use seed::seed;
use tour::tour;

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
    let consent_text_version = config.consent_text_version.clone();
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
            tour(
                &api,
                &billing_url,
                &data_dir.join("mail"),
                &consent_text_version,
            )
            .await
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
    config.payments = creditgate::config::PaymentsProvider::Sandbox;
    config.anthropic_upstream = creditgate::config::Upstream::Demo;
    config.openai_upstream = creditgate::config::Upstream::Demo;
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
    let mail_dir = config.data_dir.join("mail");
    let story = tour(&api, &billing_url, &mail_dir, &config.consent_text_version);
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
