//! The SQLite writer: the batch backend on its own connection and thread, and the
//! background checkpointer that keeps the writer's commits to appending WAL frames.

use std::path::Path;
use std::sync::Arc;

use creditgate_domain::ledger::{AccountKind, ChangeSet, GrantId, HoldId, LedgerState, TransferId};
use creditgate_domain::{Amount, Timestamp};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::cache::RowCache;
use super::{connect, grant_row, hold_row, load_account, transfer_row};
use crate::batch::{accounts_of_holds, BatchBackend, BatchKeys};
use crate::codec::{GRANT_COLUMNS, HOLD_COLUMNS, TRANSFER_COLUMNS};
use crate::{codec, StoreConfig, StoreError};

/// The writer's side: its own connection, used only on the writer thread.
pub struct SqliteBatch {
    connection: Connection,
    checkpointer: Checkpointer,
    busy_timeout_ms: u64,
    /// Accounts and open grants as last committed (see [`RowCache`]).
    cache: RowCache,
    /// See [`crate::StoreConfig::access_cutoff_min`].
    cutoff_min: Amount,
}

/// The writer's page cache. Every batch reads the accounts, grants and index pages it
/// touches; SQLite's default 2 MiB cache is far smaller than a ledger, so most batches would
/// read their pages from the OS again.
const WRITER_CACHE_SIZE_KIB: i64 = 262_144;
/// The database file is mapped up to this size, so pages not in the cache are read without
/// a system call (pages still in the WAL are read from it as usual).
const WRITER_MMAP_SIZE_BYTES: i64 = 268_435_456;

/// The writer's connection: [`connect`], plus a page cache sized for the ledger, no
/// checkpoints inside its commits (the [`Checkpointer`] does them), and no foreign-key checks.
///
/// Foreign keys are off on this connection only: every row it writes names accounts, holds
/// and grants the batch loaded (the engine answers `account_not_found` and the like
/// otherwise), and rows of those tables are never deleted, so the checks (two index lookups
/// per transfer) could never fail. Every other connection keeps them on.
fn connect_writer(path: &Path, config: &StoreConfig) -> Result<Connection, StoreError> {
    let connection = connect(path, config)?;
    connection.pragma_update(None, "foreign_keys", "OFF")?;
    connection.pragma_update(None, "wal_autocheckpoint", 0)?;
    connection.pragma_update(None, "cache_size", -WRITER_CACHE_SIZE_KIB)?;
    connection.pragma_update(None, "mmap_size", WRITER_MMAP_SIZE_BYTES)?;
    connection.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(connection)
}

impl SqliteBatch {
    /// Opens the writer's connection on `path` with the writer's pragmas.
    pub fn open(path: &Path, config: &StoreConfig) -> Result<SqliteBatch, StoreError> {
        Ok(SqliteBatch {
            connection: connect_writer(path, config)?,
            checkpointer: Checkpointer::start(connect(path, config)?),
            busy_timeout_ms: config.busy_timeout_ms,
            cache: RowCache::default(),
            cutoff_min: creditgate_domain::access::CUTOFF_MIN_DEFAULT,
        })
    }

    /// The same writer deciding access with `cutoff_min`.
    pub fn with_cutoff_min(mut self, cutoff_min: Amount) -> SqliteBatch {
        self.cutoff_min = cutoff_min;
        self
    }
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

/// How a batch learns which of its transfer ids are taken already.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Repeats {
    /// Assume no new transfer's id is ([`BatchKeys::new_transfers`]): the transfers' unique
    /// index refuses the INSERT of one that is, and the ids of the operations the engine
    /// refused are looked up after deciding ([`refused_repeat`]); either way the batch is
    /// rolled back and decided again with [`Repeats::LookedUp`]. Repeats are retries, rare on
    /// the hot path, so this saves one index lookup per debit.
    Assumed,
    /// Look every transfer id up before deciding.
    LookedUp,
}

/// Whether `error` is a UNIQUE constraint refusing a row.
fn is_unique_violation(error: &rusqlite::Error) -> bool {
    matches!(
        error,
        rusqlite::Error::SqliteFailure(failure, _)
            if failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
    )
}

/// How one attempt at a batch ended.
enum Attempt {
    Committed,
    /// Decided with [`Repeats::Assumed`], an operation was refused whose id is taken already:
    /// a repeat, whose answer is `exists` (or `exists_with_different_fields`), not that
    /// refusal. Rolled back; nothing was written.
    RefusedRepeat,
}

impl SqliteBatch {
    fn try_commit(
        &mut self,
        keys: &BatchKeys,
        now: Timestamp,
        decide: &mut (dyn FnMut(&mut LedgerState) -> ChangeSet + Send),
        repeats: Repeats,
    ) -> Result<Attempt, StoreError> {
        let cache = &mut self.cache;
        let cutoff_min = self.cutoff_min;
        let committed = (|| {
            let tx = self
                .connection
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut state = load(&tx, keys, repeats, cache)?;
            let changes = decide(&mut state);
            if repeats == Repeats::Assumed && refused_repeat(&tx, keys, &changes)? {
                return Ok(None);
            }
            write(&tx, &changes)?;
            crate::api::sync_after_batch::sqlite(&tx, &changes, cutoff_min, now)?;
            tx.commit()?;
            Ok(Some(changes))
        })();
        match committed {
            Ok(Some(changes)) => {
                cache.committed(&changes);
                Ok(Attempt::Committed)
            }
            Ok(None) => Ok(Attempt::RefusedRepeat),
            Err(error) => {
                cache.clear();
                Err(error)
            }
        }
    }
}

/// Whether an operation the batch refused under [`Repeats::Assumed`] has an id that is taken
/// already. An operation whose id is taken makes no transfer when the engine refuses it
/// (insufficient funds, say), so the unique index never sees the repeat; these few ids are
/// looked up instead. The created ones are left to the index.
fn refused_repeat(
    tx: &rusqlite::Transaction<'_>,
    keys: &BatchKeys,
    changes: &ChangeSet,
) -> Result<bool, StoreError> {
    let created: std::collections::HashSet<&TransferId> =
        changes.transfers.iter().map(|t| &t.id).collect();
    let mut statement = tx.prepare_cached("SELECT 1 FROM transfers WHERE id = ?1")?;
    for id in keys.new_transfers.iter().filter(|id| !created.contains(id)) {
        if statement.exists([id.as_str()])? {
            return Ok(true);
        }
    }
    Ok(false)
}

impl BatchBackend for SqliteBatch {
    async fn commit(
        &mut self,
        keys: &BatchKeys,
        now: Timestamp,
        decide: &mut (dyn FnMut(&mut LedgerState) -> ChangeSet + Send),
    ) -> Result<(), StoreError> {
        let again = match self.try_commit(keys, now, decide, Repeats::Assumed) {
            Ok(Attempt::Committed) => false,
            Ok(Attempt::RefusedRepeat) => true,
            Err(StoreError::Sqlite(error)) if is_unique_violation(&error) => true,
            Err(error) => return Err(error),
        };
        if again {
            // Some transfer id of the batch was taken already: a repeat. Nothing was
            // committed; decide again with every transfer id looked up.
            self.try_commit(keys, now, decide, Repeats::LookedUp)?;
        }
        Ok(())
    }

    async fn after_answer(&mut self) {
        // Restarting a long WAL copies it into the database file: done after the callers of
        // the last batch were answered, so none of them waits for it.
        self.checkpointer
            .bound_wal(&self.connection, self.busy_timeout_ms);
    }

    fn blocking() -> bool {
        true
    }
}

fn load(
    tx: &rusqlite::Transaction<'_>,
    keys: &BatchKeys,
    repeats: Repeats,
    cache: &mut RowCache,
) -> Result<LedgerState, StoreError> {
    cache.validate(
        tx.prepare_cached("PRAGMA data_version")?
            .query_row([], |row| row.get(0))?,
    );
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
        let account = match cache.account(id) {
            Some(account) => Some(account.clone()),
            None => load_account(tx, id)?.inspect(|account| cache.loaded_account(account)),
        };
        if let Some(account) = account {
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
            if let Some(grants) = cache.open_grants(id) {
                for grant in grants {
                    state.insert_grant(grant.clone());
                }
                continue;
            }
            let grants = statement
                .query_map([id.as_str()], grant_row)?
                .map(|grant| grant?)
                .collect::<Result<Vec<_>, _>>()?;
            for grant in &grants {
                state.insert_grant(grant.clone());
            }
            cache.loaded_open_grants(id, grants);
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
    let transfers = match repeats {
        Repeats::Assumed => None,
        Repeats::LookedUp => Some(&keys.new_transfers),
    };
    for id in keys.transfers.iter().chain(transfers.into_iter().flatten()) {
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

/// A grant's row, new or changed; the SET list is what a change may touch.
macro_rules! upsert_grant {
    ($set:literal) => {
        concat!(
            "INSERT INTO grants (id, account_id, origin, priority, expires_at, amount, consumed, reserved, expired,
             expired_at, created_at, open) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
             ON CONFLICT (id) DO UPDATE SET consumed = excluded.consumed, reserved = excluded.reserved",
            $set
        )
    };
}
const UPSERT_GRANT_BALANCES: &str = upsert_grant!("");
const UPSERT_GRANT: &str = upsert_grant!(
    ", expired = excluded.expired, expired_at = excluded.expired_at, open = excluded.open"
);

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
    // A grant still open and not expired was so before (consumption only grows, expiry happens
    // once), so only its balances change: leaving `open` and `expired_at` out of the SET list
    // spares SQLite rewriting the entries of the two partial indexes that name them, a random
    // page per debit.
    let mut balances_only = tx.prepare_cached(UPSERT_GRANT_BALANCES)?;
    let mut whole = tx.prepare_cached(UPSERT_GRANT)?;
    for g in &changes.grants {
        let open = g.remaining().is_positive();
        let statement = if open && g.expired_at.is_none() {
            &mut balances_only
        } else {
            &mut whole
        };
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
            open,
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
