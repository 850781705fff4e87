//! `creditgate bench ledger`: how many operations per second the ledger writer makes durable,
//! against a naive baseline, on SQLite (`synchronous=FULL`) and optionally PostgreSQL.
//! `creditgate bench proxy` ([`proxy`]): the metering proxy's overhead and requests per second
//! against a fast upstream stub called directly.
//!
//! Every figure is `--callers` concurrent callers (tokio tasks) doing one kind of operation
//! until a deadline (or a fixed count); its rate is the operations acknowledged divided by the
//! time until the last caller was answered, so operations still in flight at the deadline are
//! waited for and counted. All figures of one backend run on one fresh database, in a fixed
//! order ([`Figure::ALL`]), and the ledger invariants are checked over everything at the end.
//!
//! Rates are whole operations per second and ratios are hundredths: the workspace denies float
//! arithmetic, and a benchmark needs no more precision than that.

mod proxy;
mod report;
mod workload;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use creditgate_store::{testing, Store, StoreConfig, Synchronous};

use report::{BackendReport, Invariants, Summary};
use workload::{Bench, Figure, Plan, Span};

/// `creditgate bench …`
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    target: Target,
}

#[derive(clap::Subcommand, Debug)]
enum Target {
    /// Durable single debits, batches, hold+settle, one hot org and a naive baseline.
    Ledger(LedgerArgs),
    /// The metering proxy against a fast upstream stub: p50/p99 overhead over calling the stub
    /// directly, and requests per second through it (client, proxy and stub in one process).
    Proxy(proxy::ProxyArgs),
}

#[derive(clap::Args, Debug)]
struct LedgerArgs {
    /// Seconds each figure runs.
    #[arg(long, default_value_t = 3)]
    duration_s: u64,
    /// Run each figure for this many operations (charges, for hold+settle) instead.
    #[arg(long)]
    operations: Option<u64>,
    /// Concurrent callers (tokio tasks) in each figure.
    #[arg(long, default_value_t = 256)]
    callers: usize,
    /// Concurrent callers in the batched figure.
    #[arg(long, default_value_t = 16)]
    batch_callers: usize,
    /// Debits per `submit_many` call in the batched figure.
    #[arg(long, default_value_t = 1_000)]
    batch_len: usize,
    /// PostgreSQL admin URL: a fresh database is created on that server for the run.
    #[arg(long, env = "CREDITGATE_BENCH_DATABASE_URL")]
    postgres_url: Option<String>,
    /// Measure SQLite only, even when a PostgreSQL URL is given.
    #[arg(long)]
    skip_postgres: bool,
    /// Print one JSON line instead of the table.
    #[arg(long)]
    json: bool,
}

/// Runs the benchmark named by `args`.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.target {
        Target::Ledger(args) => ledger(args).await,
        Target::Proxy(args) => proxy::run(args).await,
    }
}

async fn ledger(args: LedgerArgs) -> anyhow::Result<()> {
    let plan = plan(&args)?;
    let mut backends = vec![sqlite(&plan).await?];
    match &args.postgres_url {
        Some(admin_url) if !args.skip_postgres => backends.push(postgres(&plan, admin_url).await?),
        _ => eprintln!("postgres: skipped (no --postgres-url, or --skip-postgres)"),
    }
    let summary = Summary { plan, backends };
    if args.json {
        println!("{}", summary.json());
    } else {
        print!("{}", summary.table());
    }
    for backend in &summary.backends {
        if !backend.invariants.violations.is_empty() {
            anyhow::bail!("{}: the ledger invariants are violated", backend.name);
        }
        if backend.problems() > 0 {
            anyhow::bail!("{}: some operations were refused or failed", backend.name);
        }
    }
    Ok(())
}

fn plan(args: &LedgerArgs) -> anyhow::Result<Plan> {
    if args.callers == 0 || args.batch_callers == 0 || args.batch_len == 0 {
        anyhow::bail!("--callers, --batch-callers and --batch-len must be at least 1");
    }
    let span = match args.operations {
        Some(0) => anyhow::bail!("--operations must be at least 1"),
        Some(count) => Span::Operations(count),
        None if args.duration_s == 0 => anyhow::bail!("--duration-s must be at least 1"),
        None => Span::Duration(Duration::from_secs(args.duration_s)),
    };
    Ok(Plan {
        callers: args.callers,
        batch_callers: args.batch_callers,
        batch_len: args.batch_len,
        span,
    })
}

async fn sqlite(plan: &Plan) -> anyhow::Result<BackendReport> {
    let dir = TempDir::create()?;
    let config = |name: &str| StoreConfig {
        url: format!("sqlite:{}", dir.path.join(name).display()),
        sqlite_synchronous: Synchronous::Full,
        busy_timeout_ms: 5_000,
        pool_connections_max: 1,
        ..StoreConfig::new("")
    };
    let ledger = Store::open(&config("ledger.db")).await?;
    let baseline = Store::open(&config("baseline.db")).await?;
    eprintln!("sqlite: {} (synchronous=FULL)", dir.path.display());
    measure_backend(ledger, baseline, plan).await
}

async fn postgres(plan: &Plan, admin_url: &str) -> anyhow::Result<BackendReport> {
    let ledger_url = testing::create_postgres_database(admin_url, "cg_bench").await?;
    let baseline_url = testing::create_postgres_database(admin_url, "cg_bench").await?;
    eprintln!("postgres: databases {ledger_url} and {baseline_url} (dropped afterwards)");
    let report = async {
        let ledger = Store::open(&StoreConfig::new(ledger_url.clone())).await?;
        let baseline = Store::open(&StoreConfig::new(baseline_url.clone())).await?;
        measure_backend(ledger, baseline, plan).await
    }
    .await;
    for url in [&ledger_url, &baseline_url] {
        testing::drop_postgres_database(admin_url, url)
            .await
            .with_context(|| format!("dropping {url}"))?;
    }
    report
}

/// Sets up the orgs, measures every figure, then checks the invariants over everything the
/// ledger figures wrote. The naive baseline runs on a database of its own: it changes balances
/// without recording transfers, which the invariants rightly refuse.
async fn measure_backend(
    ledger: Store,
    baseline: Store,
    plan: &Plan,
) -> anyhow::Result<BackendReport> {
    let name = ledger.backend_name();
    let started = Instant::now();
    let bench = Bench::prepare(ledger.clone()).await?;
    let setup = started.elapsed();
    eprintln!(
        "{name}: {} orgs created and funded in {} ms",
        workload::ORG_COUNT,
        setup.as_millis()
    );
    let baseline = Bench::prepare(baseline).await?;
    let mut figures = Vec::new();
    for figure in Figure::ALL {
        let on = if figure == Figure::Naive {
            &baseline
        } else {
            &bench
        };
        let measured = on.measure(figure, plan).await;
        progress(name, figure, &measured);
        figures.push((figure, measured));
    }
    drop((bench, baseline));
    let invariants = check_invariants(&ledger).await?;
    eprintln!(
        "{name}: invariants {} ({} transfers; load {} ms, check {} ms)",
        if invariants.violations.is_empty() {
            "OK"
        } else {
            "VIOLATED"
        },
        invariants.transfers,
        invariants.load.as_millis(),
        invariants.check.as_millis(),
    );
    Ok(BackendReport {
        name,
        setup,
        figures,
        invariants,
    })
}

fn progress(backend: &str, figure: Figure, measured: &workload::Measured) {
    let batches = match measured.batches {
        0 => String::new(),
        _ => format!(
            ", avg batch {}",
            report::tenths(measured.batch_len_tenths())
        ),
    };
    eprintln!(
        "{backend}: {:<12} {:>9}/s  ({} in {} ms{batches})",
        figure.name(),
        report::group(measured.per_second()),
        measured.acknowledged,
        measured.elapsed.as_millis(),
    );
}

/// `store.check_invariants()`, in its two steps, timed (the snapshot holds every transfer of
/// the run, so both steps are worth knowing).
async fn check_invariants(store: &Store) -> anyhow::Result<Invariants> {
    let started = Instant::now();
    let snapshot = store.snapshot().await?;
    let load = started.elapsed();
    let started = Instant::now();
    let report = creditgate_domain::ledger::check_invariants(&snapshot);
    Ok(Invariants {
        violations: report.violations,
        transfers: snapshot.transfers.len(),
        load,
        check: started.elapsed(),
    })
}

/// A directory under the system temp dir, removed (with the database in it) on drop.
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn create() -> anyhow::Result<TempDir> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.subsec_nanos());
        let path =
            std::env::temp_dir().join(format!("creditgate_bench_{}_{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(TempDir { path })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.path) {
            eprintln!("warning: could not remove {}: {error}", self.path.display());
        }
    }
}
