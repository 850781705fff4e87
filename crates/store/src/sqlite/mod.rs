//! The SQLite backend: the embedded default.
//!
//! WAL mode; every write transaction starts with `BEGIN IMMEDIATE` (a deferred transaction
//! that later upgrades to a write fails with SQLITE_BUSY even with a busy timeout). One
//! process writes: the writer owns its own connection on a dedicated thread; reads use a
//! separate connection behind a mutex, run on tokio's blocking pool.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use creditgate_domain::ledger::{
    Account, AccountId, Grant, GrantId, Hold, HoldId, Snapshot, Transfer,
};
use creditgate_domain::{Amount, Timestamp};
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};

use crate::codec::{ACCOUNT_COLUMNS, GRANT_COLUMNS, HOLD_COLUMNS, TRANSFER_COLUMNS};
use crate::{codec, migrate, StoreConfig, StoreError, Synchronous};

mod cache;
mod writer;

pub use writer::SqliteBatch;

/// The SQLite backend: the database path, its settings and one reading connection.
pub struct SqliteStore {
    path: PathBuf,
    config: StoreConfig,
    reader: Arc<Mutex<Connection>>,
}

impl SqliteStore {
    /// Creates the file's directory if needed, opens the database and migrates it.
    pub async fn open(path: &str, config: &StoreConfig) -> Result<SqliteStore, StoreError> {
        let path = PathBuf::from(path);
        let config = config.clone();
        let (path, config, reader) = blocking(move || {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .map_err(|e| StoreError::BadUrl(format!("{}: {e}", parent.display())))?;
            }
            let mut connection = connect(&path, &config)?;
            run_migrations(&mut connection)?;
            Ok((path, config, connection))
        })
        .await?;
        Ok(SqliteStore {
            path,
            config,
            reader: Arc::new(Mutex::new(reader)),
        })
    }

    /// `len` connections for the API's queries.
    pub fn api_pool(&self, len: usize) -> Result<crate::sql::Db, StoreError> {
        let connections = (0..len.max(1))
            .map(|_| connect(&self.path, &self.config))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(crate::sql::Db::sqlite(connections))
    }

    /// Opens the writer's own connection (see [`SqliteBatch`]).
    pub fn batch_backend(&self) -> Result<SqliteBatch, StoreError> {
        SqliteBatch::open(&self.path, &self.config)
    }

    /// See [`crate::Store::create_account`].
    pub async fn create_account(
        &self,
        account: &Account,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let account = account.clone();
        self.read(move |connection| {
            let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "INSERT INTO accounts (id, kind, floor, posted, reserved, unbacked, overspend, created_at)
                 VALUES (?1, ?2, ?3, 0, 0, 0, 0, ?4) ON CONFLICT (id) DO NOTHING",
                params![account.id.as_str(), account.kind.as_str(), account.floor.map(Amount::micros), now.unix_ms()],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// See [`crate::Store::snapshot`].
    pub async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        self.read(|connection| {
            let tx = connection.transaction()?;
            let snapshot = Snapshot {
                accounts: collect(
                    &tx,
                    &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY id"),
                    account_row,
                )?,
                grants: collect(
                    &tx,
                    &format!("SELECT {GRANT_COLUMNS} FROM grants ORDER BY id"),
                    grant_row,
                )?,
                holds: collect(
                    &tx,
                    &format!("SELECT {HOLD_COLUMNS} FROM holds ORDER BY id"),
                    hold_row,
                )?,
                transfers: collect(
                    &tx,
                    &format!("SELECT {TRANSFER_COLUMNS} FROM transfers ORDER BY seq"),
                    transfer_row,
                )?,
            };
            tx.commit()?;
            Ok(snapshot)
        })
        .await
    }

    /// See [`crate::Store::due_holds`].
    pub async fn due_holds(&self, now: Timestamp, limit: usize) -> Result<Vec<HoldId>, StoreError> {
        self.read(move |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT id FROM holds WHERE state = 'open' AND expires_at <= ?1 ORDER BY expires_at LIMIT ?2",
            )?;
            let rows = statement.query_map(params![now.unix_ms(), limit_i64(limit)], |row| {
                Ok(HoldId::new(row.get::<_, String>(0)?))
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// See [`crate::Store::due_grants`].
    pub async fn due_grants(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<(AccountId, GrantId)>, StoreError> {
        self.read(move |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT account_id, id FROM grants WHERE expired_at IS NULL AND expires_at IS NOT NULL
                 AND expires_at <= ?1 ORDER BY expires_at LIMIT ?2",
            )?;
            let rows = statement.query_map(params![now.unix_ms(), limit_i64(limit)], |row| {
                Ok((AccountId::new(row.get::<_, String>(0)?), GrantId::new(row.get::<_, String>(1)?)))
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// See [`crate::Store::analyze`].
    pub async fn analyze(&self) -> Result<(), StoreError> {
        self.read(|connection| Ok(connection.execute_batch("ANALYZE")?))
            .await
    }

    /// See [`crate::Store::naive_debit`] (benchmark baseline only).
    pub async fn naive_debit(
        &self,
        account: &AccountId,
        revenue: &AccountId,
        transfer_id: &str,
        amount: i64,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let (account, revenue, transfer_id) =
            (account.clone(), revenue.clone(), transfer_id.to_owned());
        self.read(move |connection| {
            let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let changed = tx.prepare_cached(
                "UPDATE accounts SET posted = posted - ?2 WHERE id = ?1 AND posted - reserved - ?2 >= COALESCE(floor, posted - reserved - ?2)",
            )?
            .execute(params![account.as_str(), amount])?;
            if changed == 1 {
                tx.prepare_cached("UPDATE accounts SET posted = posted + ?2 WHERE id = ?1")?
                    .execute(params![revenue.as_str(), amount])?;
                tx.prepare_cached(
                    "INSERT INTO naive_transfers (id, account_id, amount, created_at) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![transfer_id, account.as_str(), amount, now.unix_ms()])?;
            }
            tx.commit()?;
            Ok(changed == 1)
        })
        .await
    }

    async fn read<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let reader = self.reader.clone();
        blocking(move || {
            let mut connection = reader
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            work(&mut connection)
        })
        .await
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|_| StoreError::WorkerStopped)?
}

fn limit_i64(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// Pause between attempts to switch a new file to WAL while another process holds it.
const WAL_SWITCH_RETRY_MS: u64 = 10;

/// Sets `journal_mode=WAL`. Switching a new file rewrites its header, which needs a lock
/// upgrade for which SQLite never calls the busy handler: when two processes open a new file
/// at once, one gets SQLITE_BUSY at once. So retry, within the busy timeout.
fn switch_to_wal(connection: &Connection, busy_timeout_ms: u64) -> Result<(), StoreError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(busy_timeout_ms);
    loop {
        let mode = connection
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0));
        match mode {
            Ok(mode) if mode.eq_ignore_ascii_case("wal") => return Ok(()),
            Ok(mode) => {
                return Err(StoreError::Corrupt(format!(
                    "journal_mode is {mode}, not wal"
                )))
            }
            Err(rusqlite::Error::SqliteFailure(error, _))
                if error.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(WAL_SWITCH_RETRY_MS));
            }
            Err(error) => return Err(error.into()),
        }
    }
}

fn connect(path: &Path, config: &StoreConfig) -> Result<Connection, StoreError> {
    let connection = Connection::open(path)?;
    connection.busy_timeout(std::time::Duration::from_millis(config.busy_timeout_ms))?;
    switch_to_wal(&connection, config.busy_timeout_ms)?;
    let synchronous = match config.sqlite_synchronous {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
    };
    connection.pragma_update(None, "synchronous", synchronous)?;
    connection.pragma_update(None, "foreign_keys", "ON")?;
    connection.set_prepared_statement_cache_capacity(64);
    Ok(connection)
}

fn run_migrations(connection: &mut Connection) -> Result<(), StoreError> {
    let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute(migrate::CREATE_TABLE, [])?;
    for (version, sql) in migrate::SQLITE {
        let applied: Option<i64> = tx
            .query_row(
                "SELECT version FROM schema_migrations WHERE version = ?1",
                [version],
                |row| row.get(0),
            )
            .optional()?;
        if applied.is_none() {
            tx.execute_batch(sql)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, 0)",
                [version],
            )?;
        }
    }
    // The benchmark's naive baseline keeps its rows apart from the real ledger.
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS naive_transfers (id TEXT PRIMARY KEY, account_id TEXT NOT NULL,
         amount INTEGER NOT NULL, created_at INTEGER NOT NULL)",
    )?;
    tx.commit()?;
    Ok(())
}

fn load_account(connection: &Connection, id: &AccountId) -> Result<Option<Account>, StoreError> {
    let mut statement = connection.prepare_cached(&format!(
        "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ?1"
    ))?;
    statement
        .query_row([id.as_str()], account_row)
        .optional()?
        .transpose()
}

fn collect<T>(
    connection: &Connection,
    sql: &str,
    row: fn(&Row<'_>) -> rusqlite::Result<Result<T, StoreError>>,
) -> Result<Vec<T>, StoreError> {
    let mut statement = connection.prepare(sql)?;
    let rows = statement.query_map([], row)?;
    rows.map(|item| item?).collect()
}

// Row readers in the shape `query_map` wants; the decoding itself is shared (codec).
fn account_row(row: &Row<'_>) -> rusqlite::Result<Result<Account, StoreError>> {
    Ok(codec::account(row))
}

fn grant_row(row: &Row<'_>) -> rusqlite::Result<Result<Grant, StoreError>> {
    Ok(codec::grant(row))
}

fn hold_row(row: &Row<'_>) -> rusqlite::Result<Result<Hold, StoreError>> {
    Ok(codec::hold(row))
}

fn transfer_row(row: &Row<'_>) -> rusqlite::Result<Result<Transfer, StoreError>> {
    Ok(codec::transfer(row))
}
