//! `creditgate`: the binary. `anyhow` lives here and nowhere else.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;

use cmd::{bench, cli, demo, load, reconcile};

use creditgate::config::Config;
use creditgate::node::{Application, Parts};

/// Prepaid usage credits for API providers.
#[derive(Parser)]
#[command(name = "creditgate", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API, the metering proxy and the workers (expiry, notices, webhooks) until interrupted.
    Serve {
        /// A TOML configuration file; `CREDITGATE_*` variables override it.
        #[arg(long, env = "CREDITGATE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Everything in one process on the embedded default (SQLite, the demo upstream), seeded
    /// with prices, an org with a little credit and a key; prints what to try and serves until
    /// interrupted. `--tour` runs the story by itself (credits run out, 402, credits added,
    /// access back) and exits.
    Demo(demo::DemoArgs),
    /// Measure the ledger (`bench ledger`) or the metering proxy (`bench proxy`).
    Bench(bench::BenchArgs),
    /// Create or upgrade the database schema, then exit.
    Migrate {
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Drive the ledger writer with a steady load and print each acknowledged operation id
    /// (used by the crash and multi-process tests).
    #[command(hide = true)]
    LedgerLoad(load::LoadArgs),
    /// Organizations: create, list, show, suspend, unsuspend (operator API).
    Org(cli::OrgArgs),
    /// API keys: create (shows the secret once), list, revoke (operator API).
    Key(cli::KeyArgs),
    /// Credits: grant, adjust (operator API).
    Credits(cli::CreditsArgs),
    /// The price book: set a model's prices, list them (operator API).
    Price(cli::PriceArgs),
    /// An org's balance and access state (operator API).
    Balance(cli::BalanceArgs),
    /// Every succeeded payment at the provider beside its ledger credit for a period; lists
    /// each difference (payment without credit, credit without payment, amount mismatch) and
    /// exits 1 if there is any.
    Reconcile {
        /// A TOML configuration file; `CREDITGATE_*` variables override it.
        #[arg(long, env = "CREDITGATE_CONFIG")]
        config: Option<PathBuf>,
        /// The period's start: `YYYY-MM-DD` (UTC) or unix seconds.
        #[arg(long)]
        from: String,
        /// The period's end (excluded): `YYYY-MM-DD` (UTC) or unix seconds.
        #[arg(long)]
        to: String,
    },
}

/// Where the ledger lives: `CREDITGATE_DATABASE_URL`, else SQLite in `CREDITGATE_DATA_DIR`.
#[derive(clap::Args, Clone, Debug)]
pub struct DatabaseArgs {
    /// `sqlite:PATH` or `postgres://…`; overrides the data directory.
    #[arg(long, env = "CREDITGATE_DATABASE_URL")]
    pub database_url: Option<String>,
    /// The embedded default's home (SQLite file `creditgate.db` inside it).
    #[arg(long, env = "CREDITGATE_DATA_DIR", default_value = ".creditgate")]
    pub data_dir: PathBuf,
}

impl DatabaseArgs {
    pub fn url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite:{}", self.data_dir.join("creditgate.db").display()),
        }
    }
}

fn main() -> anyhow::Result<ExitCode> {
    // Structured logs on stderr: `CREDITGATE_LOG` filters (default warn),
    // `CREDITGATE_LOG_FORMAT=json` writes one JSON object per line (request id, route, status…).
    let filter = tracing_subscriber::EnvFilter::try_from_env("CREDITGATE_LOG")
        .unwrap_or_else(|_| "warn".into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("CREDITGATE_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        logs.json().init();
    } else {
        logs.init();
    }
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let done = |result: anyhow::Result<()>| result.map(|()| ExitCode::SUCCESS);
        match cli.command {
            Command::Serve { config } => done(serve(config).await),
            Command::Demo(args) => done(demo::run(args).await),
            Command::Bench(args) => done(bench::run(args).await),
            Command::Migrate { database } => {
                let store = creditgate_store::Store::open(&creditgate_store::StoreConfig::new(
                    database.url(),
                ))
                .await?;
                println!("migrated {} database", store.backend_name());
                Ok(ExitCode::SUCCESS)
            }
            Command::LedgerLoad(args) => done(load::run(args).await),
            Command::Org(args) => Ok(cli::org(args).await),
            Command::Key(args) => Ok(cli::key(args).await),
            Command::Credits(args) => Ok(cli::credits(args).await),
            Command::Price(args) => Ok(cli::price(args).await),
            Command::Balance(args) => Ok(cli::balance(args).await),
            Command::Reconcile { config, from, to } => reconcile(config, &from, &to).await,
        }
    })
}

async fn reconcile(config: Option<PathBuf>, from: &str, to: &str) -> anyhow::Result<ExitCode> {
    let config = Config::load(config.as_deref())?;
    let edge = |name: &str, text: &str| {
        reconcile::parse_edge(text)
            .ok_or_else(|| anyhow::anyhow!("--{name} {text:?}: YYYY-MM-DD or unix seconds"))
    };
    let (from, to) = (edge("from", from)?, edge("to", to)?);
    anyhow::ensure!(from < to, "--from must be before --to");
    let report = reconcile::run(&config, from, to).await?;
    println!(
        "{} succeeded payments at {}, {} ledger credits from payments",
        report.payments, config.payments, report.credits
    );
    println!(
        "{} refunds, {} ledger refund transfers, {} refunds at {}",
        report.refunds.refunds,
        report.refunds.transfers,
        report.refunds.at_provider,
        config.payments
    );
    for difference in &report.differences {
        println!("DIFFERENCE {difference}");
    }
    if report.differences.is_empty() {
        println!("reconciled: no differences");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{} differences", report.differences.len());
        Ok(ExitCode::FAILURE)
    }
}

async fn serve(config: Option<PathBuf>) -> anyhow::Result<()> {
    let config = Config::load(config.as_deref())?;
    let data_dir = config.data_dir.clone();
    let app = Application::build(config, Parts::default()).await?;
    eprintln!(
        "creditgate listening on http://{} (operator token in {} unless configured)",
        app.address(),
        data_dir.join("operator_token").display()
    );
    let shutdown = tokio_util::sync::CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        let interrupt = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut terminate =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler installs");
            tokio::select! {
                _ = interrupt => {}
                _ = terminate.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = interrupt.await;
        signal.cancel();
    });
    app.run(shutdown).await?;
    Ok(())
}
