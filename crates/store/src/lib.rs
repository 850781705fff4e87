//! The ledger store: the only crate that knows SQL.
//!
//! Two backends share one logical schema (`migrations/sqlite`, `migrations/postgres`):
//! SQLite (the embedded default, one process) and PostgreSQL (many processes). Balances
//! are written only by the [`LedgerWriter`], which collects operations from many callers,
//! decides them in memory with the pure engine inside one database transaction, writes the
//! [`ChangeSet`](creditgate_domain::ledger::ChangeSet) and commits (group commit). A caller
//! is answered only after that commit.
//!
//! Durability. SQLite runs in WAL mode with `synchronous=FULL` by default: every commit is
//! fsynced, so an acknowledged operation survives a process crash *and* a power loss.
//! `synchronous=NORMAL` (configurable) survives a process crash but may lose the last
//! commits on power loss. PostgreSQL uses the server's `synchronous_commit` (on by default).

#![warn(missing_docs)]

pub mod api;
mod batch;
mod codec;
pub mod expiry;
mod migrate;
mod postgres;
pub mod sql;
mod sqlite;
pub mod testing;

use std::sync::Arc;

use creditgate_domain::ledger::{Account, AccountId, AccountKind, InvariantReport, Snapshot};
use creditgate_domain::Timestamp;

pub use batch::{LedgerWriter, WriteError, WriterConfig};

/// Where the ledger lives.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// `sqlite:PATH` (or a bare path) or `postgres://…`.
    pub url: String,
    /// SQLite only: `FULL` (default, survives power loss) or `NORMAL`.
    pub sqlite_synchronous: Synchronous,
    /// SQLite only: how long a writer waits for the database lock.
    pub busy_timeout_ms: u64,
    /// Connections for the API's queries (the ledger writer has its own).
    pub pool_connections_max: usize,
    /// The least posted balance above an org's floor under which a call refused for lack of
    /// credits turns its access off (see `creditgate_domain::access`).
    pub access_cutoff_min: creditgate_domain::Amount,
}

impl StoreConfig {
    /// The defaults for `url`: `synchronous=FULL`, a 5 s busy timeout.
    pub fn new(url: impl Into<String>) -> StoreConfig {
        StoreConfig {
            url: url.into(),
            sqlite_synchronous: Synchronous::Full,
            busy_timeout_ms: 5_000,
            pool_connections_max: 4,
            access_cutoff_min: creditgate_domain::access::CUTOFF_MIN_DEFAULT,
        }
    }
}

/// SQLite's `synchronous` level in WAL mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Synchronous {
    /// fsync on every commit: survives power loss.
    Full,
    /// fsync at checkpoints: survives a process crash, may lose recent commits on power loss.
    Normal,
}

/// Why the store could not do what was asked. Messages may name internals: they are for
/// logs, never for API responses.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    /// An error from the SQLite driver.
    Sqlite(#[from] rusqlite::Error),
    #[error("postgres: {}", postgres_message(.0))]
    /// An error from the PostgreSQL driver or server.
    Postgres(#[from] tokio_postgres::Error),
    #[error("database url not understood: {0}")]
    /// The URL names neither a SQLite path nor a PostgreSQL server.
    BadUrl(String),
    #[error("stored data is corrupt: {0}")]
    /// A row holds a value the code cannot decode.
    Corrupt(String),
    #[error("the store's worker thread stopped")]
    /// A backend thread or blocking task stopped before answering.
    WorkerStopped,
}

/// The server's own message and SQLSTATE where there is one (the driver's `Display` says
/// only "db error").
fn postgres_message(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} ({}): {}", db.severity(), db.code().code(), db.message()),
        None => error.to_string(),
    }
}

/// The time, handed in so tests control it.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The real clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("the system clock is after 1970");
        Timestamp::from_unix_ms(i64::try_from(since_epoch.as_millis()).expect("ms fit in i64"))
    }
}

/// A handle on the ledger database: reads, account creation, and the writer.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Backend>,
    db: sql::Db,
    access_cutoff_min: creditgate_domain::Amount,
}

enum Backend {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PgStore),
}

impl Store {
    /// Opens (creating if needed) and migrates the database named by `config.url`, and makes
    /// sure the operator accounts exist.
    pub async fn open(config: &StoreConfig) -> Result<Store, StoreError> {
        let (backend, db) =
            if config.url.starts_with("postgres://") || config.url.starts_with("postgresql://") {
                let backend = Backend::Postgres(postgres::PgStore::open(&config.url).await?);
                let db = sql::Db::postgres(&config.url, config.pool_connections_max).await?;
                (backend, db)
            } else {
                let path = config
                    .url
                    .strip_prefix("sqlite://")
                    .or(config.url.strip_prefix("sqlite:"));
                let path = path.unwrap_or(&config.url);
                if path.is_empty() {
                    return Err(StoreError::BadUrl(config.url.clone()));
                }
                let backend = sqlite::SqliteStore::open(path, config).await?;
                let db = backend.api_pool(config.pool_connections_max)?;
                (Backend::Sqlite(backend), db)
            };
        let store = Store {
            inner: Arc::new(backend),
            db,
            access_cutoff_min: config.access_cutoff_min,
        };
        for kind in AccountKind::ALL {
            if let Some(id) = kind.operator_account_id() {
                store
                    .create_account(&Account::new(id, kind, None), Timestamp::default())
                    .await?;
            }
        }
        Ok(store)
    }

    /// The least posted balance above an org's floor under which a refused call turns its
    /// access off ([`StoreConfig::access_cutoff_min`]).
    pub fn access_cutoff_min(&self) -> creditgate_domain::Amount {
        self.access_cutoff_min
    }

    /// The connections for the API's queries.
    pub(crate) fn db(&self) -> &sql::Db {
        &self.db
    }

    /// The backend's name: `sqlite` or `postgres`.
    pub fn backend_name(&self) -> &'static str {
        match &*self.inner {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Creates an account with zero balances; does nothing if it exists.
    pub async fn create_account(
        &self,
        account: &Account,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        match &*self.inner {
            Backend::Sqlite(store) => store.create_account(account, now).await,
            Backend::Postgres(store) => store.create_account(account, now).await,
        }
    }

    /// An account with its balances, or `None` if it does not exist. (Through the API's
    /// connection pool: it is on the hot path of every proxied call.)
    pub async fn account(&self, id: &AccountId) -> Result<Option<Account>, StoreError> {
        let rows = self
            .db
            .query(
                &format!(
                    "SELECT {} FROM accounts WHERE id = $1",
                    codec::ACCOUNT_COLUMNS
                ),
                &[sql::Value::Text(id.as_str().to_owned())],
            )
            .await?;
        rows.first().map(codec::account).transpose()
    }

    /// Every account, grant, hold and transfer (for the invariant checker; not for hot paths).
    pub async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        match &*self.inner {
            Backend::Sqlite(store) => store.snapshot().await,
            Backend::Postgres(store) => store.snapshot().await,
        }
    }

    /// Loads everything and checks the ledger invariants, and one of the store's own: each
    /// grant's `open` flag (what the writer loads an org's grants by) says whether it has
    /// credits left.
    pub async fn check_invariants(&self) -> Result<InvariantReport, StoreError> {
        let mut report = creditgate_domain::ledger::check_invariants(&self.snapshot().await?);
        let flagged = self
            .db
            .query(
                "SELECT id FROM grants WHERE open <> (amount - consumed - expired > 0) ORDER BY id",
                &[],
            )
            .await?;
        for row in &flagged {
            report.violations.push(format!(
                "grant {}: its open flag disagrees with its remaining credits",
                crate::codec::Columns::text(row, 0)?
            ));
        }
        Ok(report)
    }

    /// Open holds whose TTL has passed at `now`, oldest first, at most `limit`.
    pub async fn due_holds(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<creditgate_domain::ledger::HoldId>, StoreError> {
        match &*self.inner {
            Backend::Sqlite(store) => store.due_holds(now, limit).await,
            Backend::Postgres(store) => store.due_holds(now, limit).await,
        }
    }

    /// Grants past their expiry that have not been expired yet, at most `limit`.
    pub async fn due_grants(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<(AccountId, creditgate_domain::ledger::GrantId)>, StoreError> {
        match &*self.inner {
            Backend::Sqlite(store) => store.due_grants(now, limit).await,
            Backend::Postgres(store) => store.due_grants(now, limit).await,
        }
    }

    /// Starts the one writer of balances for this process.
    pub async fn start_writer(
        &self,
        config: WriterConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<LedgerWriter, StoreError> {
        match &*self.inner {
            Backend::Sqlite(store) => {
                let backend = store
                    .batch_backend()?
                    .with_cutoff_min(self.access_cutoff_min);
                Ok(batch::start(backend, config, clock))
            }
            Backend::Postgres(store) => {
                let backend = store
                    .batch_backend()
                    .await?
                    .with_cutoff_min(self.access_cutoff_min);
                Ok(batch::start(backend, config, clock))
            }
        }
    }

    /// Refreshes the query planner's statistics (`ANALYZE`): after a bulk load, before it is
    /// measured or served.
    pub async fn analyze(&self) -> Result<(), StoreError> {
        match &*self.inner {
            Backend::Sqlite(store) => store.analyze().await,
            Backend::Postgres(store) => store.analyze().await,
        }
    }

    /// A naive baseline for benchmarks: one guarded UPDATE + INSERT per transaction, no
    /// batching. Returns whether the debit was applied (false: insufficient funds).
    pub async fn naive_debit(
        &self,
        account: &AccountId,
        revenue: &AccountId,
        transfer_id: &str,
        amount: i64,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        match &*self.inner {
            Backend::Sqlite(store) => {
                store
                    .naive_debit(account, revenue, transfer_id, amount, now)
                    .await
            }
            Backend::Postgres(store) => {
                store
                    .naive_debit(account, revenue, transfer_id, amount, now)
                    .await
            }
        }
    }
}
