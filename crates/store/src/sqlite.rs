//! The SQLite backend: the embedded default.
//!
//! WAL mode; every write transaction starts with `BEGIN IMMEDIATE` (a deferred transaction
//! that later upgrades to a write fails with SQLITE_BUSY even with a busy timeout). One
//! process writes: the writer owns its own connection on a dedicated thread; reads use a
//! separate connection behind a mutex, run on tokio's blocking pool.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use creditgate_domain::ledger::{
    Account, AccountId, AccountKind, ChangeSet, Grant, GrantId, Hold, HoldId, LedgerState,
    Snapshot, Transfer, TransferId,
};
use creditgate_domain::{Amount, Timestamp};
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};

use crate::batch::{accounts_of_holds, BatchBackend, BatchKeys};
use crate::codec::{ACCOUNT_COLUMNS, GRANT_COLUMNS, HOLD_COLUMNS, TRANSFER_COLUMNS};
use crate::{codec, migrate, StoreConfig, StoreError, Synchronous};

pub struct SqliteStore {
    path: PathBuf,
    config: StoreConfig,
    reader: Arc<Mutex<Connection>>,
}

impl SqliteStore {
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

    pub fn batch_backend(&self) -> Result<SqliteBatch, StoreError> {
        Ok(SqliteBatch {
            connection: connect_writer(&self.path, &self.config)?,
            checkpointer: Checkpointer::start(connect(&self.path, &self.config)?),
            busy_timeout_ms: self.config.busy_timeout_ms,
        })
    }

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

    pub async fn account(&self, id: &AccountId) -> Result<Option<Account>, StoreError> {
        let id = id.clone();
        self.read(move |connection| load_account(connection, &id))
            .await
    }

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

/// The writer's page cache. Every batch reads the accounts, grants and index pages it
/// touches; SQLite's default 2 MiB cache is far smaller than a ledger, so most batches would
/// read their pages from the OS again.
const WRITER_CACHE_SIZE_KIB: i64 = 262_144;
/// The database file is mapped up to this size, so pages not in the cache are read without
/// a system call (pages still in the WAL are read from it as usual).
const WRITER_MMAP_SIZE_BYTES: i64 = 268_435_456;

/// The writer's connection: [`connect`], plus a page cache sized for the ledger, and no
/// checkpoints inside its commits (the [`Checkpointer`] does them).
fn connect_writer(path: &Path, config: &StoreConfig) -> Result<Connection, StoreError> {
    let connection = connect(path, config)?;
    connection.pragma_update(None, "wal_autocheckpoint", 0)?;
    connection.pragma_update(None, "cache_size", -WRITER_CACHE_SIZE_KIB)?;
    connection.pragma_update(None, "mmap_size", WRITER_MMAP_SIZE_BYTES)?;
    connection.pragma_update(None, "temp_store", "MEMORY")?;
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

/// The writer's side: its own connection, used only on the writer thread.
pub struct SqliteBatch {
    connection: Connection,
    checkpointer: Checkpointer,
    busy_timeout_ms: u64,
}

/// Pause between two background checkpoints.
const CHECKPOINT_INTERVAL_MS: u64 = 50;
/// WAL frames past which the writer restarts the WAL itself, between two batches. A busy
/// writer never leaves the background checkpointer a moment when the whole WAL is copied,
/// which is when SQLite starts the WAL over; without this the WAL would grow forever.
const WAL_FRAMES_MAX: u64 = 32_768;

/// Copies committed WAL frames into the database file on a thread of its own, so that the
/// writer's commits only append to the WAL. Checkpoints are `PASSIVE`: they never wait for
/// the writer nor block it. Crash safety does not depend on them (a commit is durable once
/// its WAL frames are synced); they only bound the WAL. Stops when dropped.
struct Checkpointer {
    /// Dropping it wakes the thread and ends it.
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Frames in the WAL as of the last checkpoint.
    wal_frames: Arc<std::sync::atomic::AtomicU64>,
}

impl Checkpointer {
    fn start(connection: Connection) -> Checkpointer {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let wal_frames = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let frames = wal_frames.clone();
        let interval = std::time::Duration::from_millis(CHECKPOINT_INTERVAL_MS);
        let thread = std::thread::Builder::new()
            .name("ledger-checkpoint".into())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(interval)
                {
                    match checkpoint(&connection, "PASSIVE") {
                        Ok(done) => {
                            frames.store(done.wal_frames, std::sync::atomic::Ordering::Relaxed)
                        }
                        Err(error) => tracing::warn!(%error, "background WAL checkpoint failed"),
                    }
                }
            })
            .expect("the checkpoint thread starts");
        Checkpointer {
            stop: Some(stop),
            thread: Some(thread),
            wal_frames,
        }
    }

    /// Called by the writer between batches: restarts the WAL once it is past its bound. It
    /// never waits for a reader (the bound is retried after the next batch), and never fails
    /// the batch it follows, which is committed already.
    fn bound_wal(&self, writer: &Connection, busy_timeout_ms: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        if self.wal_frames.load(Relaxed) < WAL_FRAMES_MAX {
            return;
        }
        let restarted = writer
            .busy_timeout(std::time::Duration::ZERO)
            .map_err(StoreError::from)
            .and_then(|()| checkpoint(writer, "RESTART"));
        let restored = writer
            .busy_timeout(std::time::Duration::from_millis(busy_timeout_ms))
            .map_err(StoreError::from);
        match (restarted, restored) {
            (Ok(Checkpoint { busy: false, .. }), Ok(())) => self.wal_frames.store(0, Relaxed),
            (Ok(_), Ok(())) => {}
            (Err(error), _) | (_, Err(error)) => {
                tracing::warn!(%error, "restarting the WAL failed");
            }
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What `PRAGMA wal_checkpoint` answered.
struct Checkpoint {
    /// It could not finish (another checkpoint running, or readers in the way); the next
    /// one catches up.
    busy: bool,
    /// Frames in the WAL.
    wal_frames: u64,
}

fn checkpoint(connection: &Connection, mode: &str) -> Result<Checkpoint, StoreError> {
    let (busy, log): (i64, i64) =
        connection.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?;
    Ok(Checkpoint {
        busy: busy != 0,
        wal_frames: u64::try_from(log).unwrap_or(0),
    })
}

impl BatchBackend for SqliteBatch {
    async fn commit(
        &mut self,
        keys: &BatchKeys,
        decide: &mut (dyn FnMut(&mut LedgerState) -> ChangeSet + Send),
    ) -> Result<(), StoreError> {
        let tx = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut state = load(&tx, keys)?;
        let changes = decide(&mut state);
        write(&tx, &changes)?;
        tx.commit()?;
        self.checkpointer
            .bound_wal(&self.connection, self.busy_timeout_ms);
        Ok(())
    }

    fn blocking() -> bool {
        true
    }
}

fn load(tx: &rusqlite::Transaction<'_>, keys: &BatchKeys) -> Result<LedgerState, StoreError> {
    let mut state = LedgerState::new();
    {
        let mut statement =
            tx.prepare_cached(&format!("SELECT {HOLD_COLUMNS} FROM holds WHERE id = ?1"))?;
        for id in &keys.holds {
            if let Some(hold) = statement.query_row([id.as_str()], hold_row).optional()? {
                state.insert_hold(hold?);
            }
        }
    }
    let mut accounts = accounts_of_holds(state.holds());
    accounts.extend(keys.accounts.iter().cloned());
    let mut org_accounts = Vec::new();
    for id in &accounts {
        if let Some(account) = load_account(tx, id)? {
            if account.kind == AccountKind::OrgCredit {
                org_accounts.push(account.id.clone());
            }
            state.insert_account(account);
        }
    }
    {
        let mut statement = tx.prepare_cached(&format!(
            "SELECT {GRANT_COLUMNS} FROM grants WHERE account_id = ?1 AND open = 1"
        ))?;
        for id in &org_accounts {
            for grant in statement.query_map([id.as_str()], grant_row)? {
                state.insert_grant(grant??);
            }
        }
        let mut statement =
            tx.prepare_cached(&format!("SELECT {GRANT_COLUMNS} FROM grants WHERE id = ?1"))?;
        for id in &keys.grants {
            if let Some(grant) = statement.query_row([id.as_str()], grant_row).optional()? {
                state.insert_grant(grant?);
            }
        }
    }
    let mut statement = tx.prepare_cached(&format!(
        "SELECT {TRANSFER_COLUMNS} FROM transfers WHERE id = ?1"
    ))?;
    let mut repeated_grants = Vec::new();
    for id in &keys.transfers {
        if let Some(transfer) = statement
            .query_row([id.as_str()], transfer_row)
            .optional()?
        {
            let transfer = transfer?;
            repeated_grants.extend(transfer.grant_id.clone());
            state.insert_transfer(transfer);
        }
    }
    // A repeated transfer is compared with the terms of the grant it opened.
    let mut statement =
        tx.prepare_cached(&format!("SELECT {GRANT_COLUMNS} FROM grants WHERE id = ?1"))?;
    for id in &repeated_grants {
        if let Some(grant) = statement.query_row([id.as_str()], grant_row).optional()? {
            state.insert_grant(grant?);
        }
    }
    let mut statement = tx.prepare_cached(
        "SELECT id FROM holds WHERE closed_by = ?1 AND (settled_amount IS NULL OR settled_amount = 0)",
    )?;
    for id in &keys.closers {
        let hold_id = statement
            .query_row([id.as_str()], |row| row.get::<_, String>(0))
            .optional()?;
        if let Some(hold_id) = hold_id {
            state.insert_closer(id.clone(), HoldId::new(hold_id));
        }
    }
    Ok(state)
}

fn write(tx: &rusqlite::Transaction<'_>, changes: &ChangeSet) -> Result<(), StoreError> {
    let mut statement = tx.prepare_cached(
        "INSERT INTO transfers (id, debit_account_id, credit_account_id, amount, kind, reference, hold_id,
         grant_id, debit_balance_after, credit_balance_after, overspend, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?;
    for t in &changes.transfers {
        statement.execute(params![
            t.id.as_str(),
            t.debit_account_id.as_str(),
            t.credit_account_id.as_str(),
            t.amount.micros(),
            t.kind.as_str(),
            t.reference,
            t.hold_id.as_ref().map(HoldId::as_str),
            t.grant_id.as_ref().map(GrantId::as_str),
            t.debit_balance_after.micros(),
            t.credit_balance_after.micros(),
            t.overspend.micros(),
            t.created_at.unix_ms(),
        ])?;
    }
    let mut statement = tx.prepare_cached(
        "INSERT INTO holds (id, debit_account_id, credit_account_id, amount, reference, ttl_ms, expires_at, state,
         allocations, unbacked, closed_by, settled_amount, created_at, closed_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )?;
    for h in &changes.holds_created {
        statement.execute(params![
            h.id.as_str(),
            h.debit_account_id.as_str(),
            h.credit_account_id.as_str(),
            h.amount.micros(),
            h.reference,
            h.ttl_ms,
            h.expires_at.unix_ms(),
            h.state.as_str(),
            codec::encode_allocations(&h.allocations),
            h.unbacked.micros(),
            h.closed_by.as_ref().map(TransferId::as_str),
            h.settled_amount.map(Amount::micros),
            h.created_at.unix_ms(),
            h.closed_at.map(Timestamp::unix_ms),
        ])?;
    }
    let mut statement = tx.prepare_cached(
        "UPDATE holds SET state = ?2, closed_by = ?3, settled_amount = ?4, closed_at = ?5 WHERE id = ?1",
    )?;
    for h in &changes.holds {
        statement.execute(params![
            h.id.as_str(),
            h.state.as_str(),
            h.closed_by.as_ref().map(TransferId::as_str),
            h.settled_amount.map(Amount::micros),
            h.closed_at.map(Timestamp::unix_ms),
        ])?;
    }
    let mut statement = tx.prepare_cached(
        "INSERT INTO grants (id, account_id, origin, priority, expires_at, amount, consumed, reserved, expired,
         expired_at, created_at, open) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
         ON CONFLICT (id) DO UPDATE SET consumed = excluded.consumed, reserved = excluded.reserved,
         expired = excluded.expired, expired_at = excluded.expired_at, open = excluded.open",
    )?;
    for g in &changes.grants {
        statement.execute(params![
            g.id.as_str(),
            g.account_id.as_str(),
            g.terms.origin.as_str(),
            i64::from(g.terms.priority),
            g.terms.expires_at.map(Timestamp::unix_ms),
            g.amount.micros(),
            g.consumed.micros(),
            g.reserved.micros(),
            g.expired.micros(),
            g.expired_at.map(Timestamp::unix_ms),
            g.created_at.unix_ms(),
            g.remaining().is_positive(),
        ])?;
    }
    let mut statement = tx.prepare_cached(
        "UPDATE accounts SET posted = ?2, reserved = ?3, unbacked = ?4, overspend = ?5 WHERE id = ?1",
    )?;
    for a in &changes.accounts {
        statement.execute(params![
            a.id.as_str(),
            a.posted.micros(),
            a.reserved.micros(),
            a.unbacked.micros(),
            a.overspend.micros()
        ])?;
    }
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
