//! The PostgreSQL backend: many processes, one database.
//!
//! No process decides from a balance it read outside its batch transaction. Inside it, the
//! batch locks the holds it closes and then every account it touches with `SELECT … FOR
//! UPDATE`, each set in id order (so two processes cannot deadlock on each other), and only
//! then reads grants and earlier transfers. Everything the engine decides is therefore
//! decided on rows no other process can change until this transaction commits. A batch that
//! loses a race anyway (a deadlock, or the same new id committed by another process first)
//! is retried from scratch, at most `COMMIT_ATTEMPTS_MAX` times.

use creditgate_domain::ledger::{
    Account, AccountId, AccountKind, ChangeSet, Grant, GrantId, Hold, HoldId, LedgerState,
    Snapshot, Transfer, TransferId,
};
use creditgate_domain::{Amount, Timestamp};
use tokio::sync::Mutex;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls, Statement};

use crate::batch::{accounts_of_holds, BatchBackend, BatchKeys};
use crate::codec::{ACCOUNT_COLUMNS, GRANT_COLUMNS, HOLD_COLUMNS, TRANSFER_COLUMNS};
use crate::{codec, migrate, StoreError};

/// Most attempts at one batch when it loses a race with another process.
pub const COMMIT_ATTEMPTS_MAX: u32 = 5;

/// The PostgreSQL backend: the server URL and one reading connection.
pub struct PgStore {
    url: String,
    client: Mutex<Client>,
}

impl PgStore {
    /// Connects to `url` and migrates the database.
    pub async fn open(url: &str) -> Result<PgStore, StoreError> {
        let mut client = connect(url).await?;
        run_migrations(&mut client).await?;
        Ok(PgStore {
            url: url.to_owned(),
            client: Mutex::new(client),
        })
    }

    /// The reading connection, reconnected first if the server closed it.
    async fn client(&self) -> Result<tokio::sync::MutexGuard<'_, Client>, StoreError> {
        let mut client = self.client.lock().await;
        if client.is_closed() {
            *client = connect(&self.url).await?;
        }
        Ok(client)
    }

    /// Opens the writer's own connection and prepares its statements (see [`PgBatch`]).
    pub async fn batch_backend(&self) -> Result<PgBatch, StoreError> {
        let client = connect(&self.url).await?;
        let statements = Statements::prepare(&client).await?;
        Ok(PgBatch {
            url: self.url.clone(),
            client,
            statements,
            cutoff_min: creditgate_domain::access::CUTOFF_MIN_DEFAULT,
        })
    }

    /// See [`crate::Store::create_account`].
    pub async fn create_account(
        &self,
        account: &Account,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO accounts (id, kind, floor, posted, reserved, unbacked, overspend, created_at)
                 VALUES ($1, $2, $3, 0, 0, 0, 0, $4) ON CONFLICT (id) DO NOTHING",
                &[&account.id.as_str(), &account.kind.as_str(), &account.floor.map(Amount::micros), &now.unix_ms()],
            )
            .await?;
        Ok(())
    }

    /// See [`crate::Store::snapshot`].
    pub async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let mut client = self.client().await?;
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .start()
            .await?;
        let accounts = tx
            .query(
                &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY id"),
                &[],
            )
            .await?;
        let grants = tx
            .query(
                &format!("SELECT {GRANT_COLUMNS} FROM grants ORDER BY id"),
                &[],
            )
            .await?;
        let holds = tx
            .query(
                &format!("SELECT {HOLD_COLUMNS} FROM holds ORDER BY id"),
                &[],
            )
            .await?;
        let transfers = tx
            .query(
                &format!("SELECT {TRANSFER_COLUMNS} FROM transfers ORDER BY seq"),
                &[],
            )
            .await?;
        tx.commit().await?;
        Ok(Snapshot {
            accounts: accounts
                .iter()
                .map(codec::account)
                .collect::<Result<_, _>>()?,
            grants: grants.iter().map(codec::grant).collect::<Result<_, _>>()?,
            holds: holds.iter().map(codec::hold).collect::<Result<_, _>>()?,
            transfers: transfers
                .iter()
                .map(codec::transfer)
                .collect::<Result<_, _>>()?,
        })
    }

    /// See [`crate::Store::due_holds`].
    pub async fn due_holds(&self, now: Timestamp, limit: usize) -> Result<Vec<HoldId>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id FROM holds WHERE state = 'open' AND expires_at <= $1 ORDER BY expires_at LIMIT $2",
                &[&now.unix_ms(), &limit_i64(limit)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| HoldId::new(row.get::<_, String>(0)))
            .collect())
    }

    /// See [`crate::Store::due_grants`].
    pub async fn due_grants(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<(AccountId, GrantId)>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT account_id, id FROM grants WHERE expired_at IS NULL AND expires_at IS NOT NULL
                 AND expires_at <= $1 ORDER BY expires_at LIMIT $2",
                &[&now.unix_ms(), &limit_i64(limit)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| {
                (
                    AccountId::new(row.get::<_, String>(0)),
                    GrantId::new(row.get::<_, String>(1)),
                )
            })
            .collect())
    }

    /// See [`crate::Store::analyze`].
    pub async fn analyze(&self) -> Result<(), StoreError> {
        Ok(self.client().await?.batch_execute("ANALYZE").await?)
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
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let changed = tx
            .execute(
                "UPDATE accounts SET posted = posted - $2 WHERE id = $1
                 AND posted - reserved - $2 >= COALESCE(floor, posted - reserved - $2)",
                &[&account.as_str(), &amount],
            )
            .await?;
        if changed == 1 {
            tx.execute(
                "UPDATE accounts SET posted = posted + $2 WHERE id = $1",
                &[&revenue.as_str(), &amount],
            )
            .await?;
            tx.execute(
                "INSERT INTO naive_transfers (id, account_id, amount, created_at) VALUES ($1, $2, $3, $4)",
                &[&transfer_id, &account.as_str(), &amount, &now.unix_ms()],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(changed == 1)
    }
}

fn limit_i64(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

pub(crate) async fn connect(url: &str) -> Result<Client, StoreError> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "postgres connection ended");
        }
    });
    Ok(client)
}

async fn run_migrations(client: &mut Client) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    // One migrating process at a time; the others wait here and then find nothing to do.
    tx.execute("SELECT pg_advisory_xact_lock(7346223901)", &[])
        .await?;
    tx.batch_execute(migrate::CREATE_TABLE).await?;
    for (version, sql) in migrate::POSTGRES {
        let applied = tx
            .query_opt(
                "SELECT version FROM schema_migrations WHERE version = $1",
                &[version],
            )
            .await?;
        if applied.is_none() {
            tx.batch_execute(sql).await?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, 0)",
                &[version],
            )
            .await?;
        }
    }
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS naive_transfers (id TEXT PRIMARY KEY, account_id TEXT NOT NULL,
         amount BIGINT NOT NULL, created_at BIGINT NOT NULL)",
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The writer's side: its own connection and its prepared statements (one round trip each).
pub struct PgBatch {
    url: String,
    client: Client,
    statements: Statements,
    /// See [`crate::StoreConfig::access_cutoff_min`].
    cutoff_min: creditgate_domain::Amount,
}

impl PgBatch {
    /// The same writer deciding access with `cutoff_min`.
    pub fn with_cutoff_min(mut self, cutoff_min: creditgate_domain::Amount) -> PgBatch {
        self.cutoff_min = cutoff_min;
        self
    }
}

struct Statements {
    holds: Statement,
    accounts: Statement,
    open_grants: Statement,
    grants: Statement,
    transfers: Statement,
    closers: Statement,
    insert_transfers: Statement,
    insert_holds: Statement,
    update_holds: Statement,
    upsert_grants: Statement,
    update_accounts: Statement,
}

impl Statements {
    async fn prepare(client: &Client) -> Result<Statements, StoreError> {
        // Every statement finds rows by key. Their generic plans are made once, from the tables'
        // sizes then: made while `holds` was empty, the holds lookup became a sequential scan
        // and stayed one as the table grew (hold+settle six times slower than a debit in the
        // benchmark) until an ANALYZE. Index lookups are always right here.
        client.batch_execute("SET enable_seqscan = off").await?;
        Ok(Statements {
            holds: client
                .prepare(&format!("SELECT {HOLD_COLUMNS} FROM holds WHERE id = ANY($1) ORDER BY id FOR UPDATE"))
                .await?,
            accounts: client
                .prepare(&format!(
                    "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ANY($1) ORDER BY id FOR UPDATE"
                ))
                .await?,
            open_grants: client
                .prepare(&format!("SELECT {GRANT_COLUMNS} FROM grants WHERE account_id = ANY($1) AND open"))
                .await?,
            grants: client.prepare(&format!("SELECT {GRANT_COLUMNS} FROM grants WHERE id = ANY($1)")).await?,
            transfers: client
                .prepare(&format!("SELECT {TRANSFER_COLUMNS} FROM transfers WHERE id = ANY($1)"))
                .await?,
            closers: client
                .prepare("SELECT closed_by, id FROM holds WHERE closed_by = ANY($1) \
                     AND (settled_amount IS NULL OR settled_amount = 0)")
                .await?,
            insert_transfers: client.prepare(INSERT_TRANSFERS).await?,
            insert_holds: client.prepare(INSERT_HOLDS).await?,
            update_holds: client.prepare(UPDATE_HOLDS).await?,
            upsert_grants: client.prepare(UPSERT_GRANTS).await?,
            update_accounts: client.prepare(UPDATE_ACCOUNTS).await?,
        })
    }
}

impl BatchBackend for PgBatch {
    async fn commit(
        &mut self,
        keys: &BatchKeys,
        now: Timestamp,
        decide: &mut (dyn FnMut(&mut LedgerState) -> ChangeSet + Send),
    ) -> Result<(), StoreError> {
        if self.client.is_closed() {
            // The server restarted or ended this session: start a new one.
            tracing::warn!("ledger writer's PostgreSQL connection closed; reconnecting");
            self.client = connect(&self.url).await?;
            self.statements = Statements::prepare(&self.client).await?;
        }
        let mut attempt = 1;
        loop {
            match self.try_commit(keys, now, decide).await {
                Err(StoreError::Postgres(error))
                    if attempt < COMMIT_ATTEMPTS_MAX && retryable(&error) =>
                {
                    tracing::debug!(%error, attempt, "ledger batch lost a race; retrying");
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    fn blocking() -> bool {
        false
    }
}

fn retryable(error: &tokio_postgres::Error) -> bool {
    matches!(
        error.code(),
        Some(code) if *code == SqlState::T_R_DEADLOCK_DETECTED
            || *code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::UNIQUE_VIOLATION
    )
}

impl PgBatch {
    async fn try_commit(
        &mut self,
        keys: &BatchKeys,
        now: Timestamp,
        decide: &mut (dyn FnMut(&mut LedgerState) -> ChangeSet + Send),
    ) -> Result<(), StoreError> {
        let tx = self.client.transaction().await?;
        let mut state = load(&tx, &self.statements, keys).await?;
        let changes = decide(&mut state);
        write(&tx, &self.statements, &changes).await?;
        crate::api::sync_after_batch::postgres(&tx, &changes, self.cutoff_min, now).await?;
        tx.commit().await?;
        Ok(())
    }
}

async fn load(
    tx: &tokio_postgres::Transaction<'_>,
    statements: &Statements,
    keys: &BatchKeys,
) -> Result<LedgerState, StoreError> {
    let mut state = LedgerState::new();
    if !keys.holds.is_empty() {
        let hold_ids: Vec<&str> = keys.holds.iter().map(HoldId::as_str).collect();
        for row in tx.query(&statements.holds, &[&hold_ids]).await? {
            state.insert_hold(codec::hold(&row)?);
        }
    }
    let mut account_ids = accounts_of_holds(state.holds());
    account_ids.extend(keys.accounts.iter().cloned());
    let account_ids: Vec<&str> = account_ids.iter().map(AccountId::as_str).collect();
    let mut org_accounts = Vec::new();
    for row in tx.query(&statements.accounts, &[&account_ids]).await? {
        let account = codec::account(&row)?;
        if account.kind == AccountKind::OrgCredit {
            org_accounts.push(account.id.as_str().to_owned());
        }
        state.insert_account(account);
    }
    if !org_accounts.is_empty() {
        for row in tx.query(&statements.open_grants, &[&org_accounts]).await? {
            state.insert_grant(codec::grant(&row)?);
        }
    }
    if !keys.grants.is_empty() {
        let grant_ids: Vec<&str> = keys.grants.iter().map(GrantId::as_str).collect();
        for row in tx.query(&statements.grants, &[&grant_ids]).await? {
            state.insert_grant(codec::grant(&row)?);
        }
    }
    let transfer_ids: Vec<&str> = keys.all_transfers().map(TransferId::as_str).collect();
    if !transfer_ids.is_empty() {
        let mut repeated_grants: Vec<String> = Vec::new();
        for row in tx.query(&statements.transfers, &[&transfer_ids]).await? {
            let transfer = codec::transfer(&row)?;
            repeated_grants.extend(transfer.grant_id.as_ref().map(|id| id.as_str().to_owned()));
            state.insert_transfer(transfer);
        }
        // A repeated transfer is compared with the terms of the grant it opened.
        if !repeated_grants.is_empty() {
            for row in tx.query(&statements.grants, &[&repeated_grants]).await? {
                state.insert_grant(codec::grant(&row)?);
            }
        }
    }
    if !keys.closers.is_empty() {
        let closer_ids: Vec<&str> = keys.closers.iter().map(TransferId::as_str).collect();
        for row in tx.query(&statements.closers, &[&closer_ids]).await? {
            let (closer, hold_id): (String, String) = (row.get(0), row.get(1));
            state.insert_closer(TransferId::new(closer), HoldId::new(hold_id));
        }
    }
    Ok(state)
}

/// Writes a change set with one statement per table (arrays unnested server-side).
async fn write(
    tx: &tokio_postgres::Transaction<'_>,
    statements: &Statements,
    changes: &ChangeSet,
) -> Result<(), StoreError> {
    if !changes.transfers.is_empty() {
        write_transfers(tx, statements, &changes.transfers).await?;
    }
    if !changes.holds_created.is_empty() {
        write_holds(tx, statements, &changes.holds_created, true).await?;
    }
    if !changes.holds.is_empty() {
        write_holds(tx, statements, &changes.holds, false).await?;
    }
    if !changes.grants.is_empty() {
        write_grants(tx, statements, &changes.grants).await?;
    }
    if !changes.accounts.is_empty() {
        let ids: Vec<&str> = changes.accounts.iter().map(|a| a.id.as_str()).collect();
        let posted: Vec<i64> = changes.accounts.iter().map(|a| a.posted.micros()).collect();
        let reserved: Vec<i64> = changes
            .accounts
            .iter()
            .map(|a| a.reserved.micros())
            .collect();
        let unbacked: Vec<i64> = changes
            .accounts
            .iter()
            .map(|a| a.unbacked.micros())
            .collect();
        let overspend: Vec<i64> = changes
            .accounts
            .iter()
            .map(|a| a.overspend.micros())
            .collect();
        tx.execute(
            &statements.update_accounts,
            &[&ids, &posted, &reserved, &unbacked, &overspend],
        )
        .await?;
    }
    Ok(())
}

async fn write_transfers(
    tx: &tokio_postgres::Transaction<'_>,
    statements: &Statements,
    transfers: &[Transfer],
) -> Result<(), StoreError> {
    let ids: Vec<&str> = transfers.iter().map(|t| t.id.as_str()).collect();
    let debits: Vec<&str> = transfers
        .iter()
        .map(|t| t.debit_account_id.as_str())
        .collect();
    let credits: Vec<&str> = transfers
        .iter()
        .map(|t| t.credit_account_id.as_str())
        .collect();
    let amounts: Vec<i64> = transfers.iter().map(|t| t.amount.micros()).collect();
    let kinds: Vec<&str> = transfers.iter().map(|t| t.kind.as_str()).collect();
    let references: Vec<&str> = transfers.iter().map(|t| t.reference.as_str()).collect();
    let holds: Vec<Option<&str>> = transfers
        .iter()
        .map(|t| t.hold_id.as_ref().map(HoldId::as_str))
        .collect();
    let grants: Vec<Option<&str>> = transfers
        .iter()
        .map(|t| t.grant_id.as_ref().map(GrantId::as_str))
        .collect();
    let debit_after: Vec<i64> = transfers
        .iter()
        .map(|t| t.debit_balance_after.micros())
        .collect();
    let credit_after: Vec<i64> = transfers
        .iter()
        .map(|t| t.credit_balance_after.micros())
        .collect();
    let overspend: Vec<i64> = transfers.iter().map(|t| t.overspend.micros()).collect();
    let created: Vec<i64> = transfers.iter().map(|t| t.created_at.unix_ms()).collect();
    tx.execute(
        &statements.insert_transfers,
        &[
            &ids,
            &debits,
            &credits,
            &amounts,
            &kinds,
            &references,
            &holds,
            &grants,
            &debit_after,
            &credit_after,
            &overspend,
            &created,
        ],
    )
    .await?;
    Ok(())
}

async fn write_holds(
    tx: &tokio_postgres::Transaction<'_>,
    statements: &Statements,
    holds: &[Hold],
    new: bool,
) -> Result<(), StoreError> {
    let ids: Vec<&str> = holds.iter().map(|h| h.id.as_str()).collect();
    let debits: Vec<&str> = holds.iter().map(|h| h.debit_account_id.as_str()).collect();
    let credits: Vec<&str> = holds.iter().map(|h| h.credit_account_id.as_str()).collect();
    let amounts: Vec<i64> = holds.iter().map(|h| h.amount.micros()).collect();
    let references: Vec<&str> = holds.iter().map(|h| h.reference.as_str()).collect();
    let ttls: Vec<i64> = holds.iter().map(|h| h.ttl_ms).collect();
    let expires: Vec<i64> = holds.iter().map(|h| h.expires_at.unix_ms()).collect();
    let states: Vec<&str> = holds.iter().map(|h| h.state.as_str()).collect();
    let allocations: Vec<String> = holds
        .iter()
        .map(|h| codec::encode_allocations(&h.allocations))
        .collect();
    let unbacked: Vec<i64> = holds.iter().map(|h| h.unbacked.micros()).collect();
    let closed_by: Vec<Option<&str>> = holds
        .iter()
        .map(|h| h.closed_by.as_ref().map(TransferId::as_str))
        .collect();
    let settled: Vec<Option<i64>> = holds
        .iter()
        .map(|h| h.settled_amount.map(Amount::micros))
        .collect();
    let created: Vec<i64> = holds.iter().map(|h| h.created_at.unix_ms()).collect();
    let closed_at: Vec<Option<i64>> = holds
        .iter()
        .map(|h| h.closed_at.map(Timestamp::unix_ms))
        .collect();
    tx.execute(
        if new {
            &statements.insert_holds
        } else {
            &statements.update_holds
        },
        &[
            &ids,
            &debits,
            &credits,
            &amounts,
            &references,
            &ttls,
            &expires,
            &states,
            &allocations,
            &unbacked,
            &closed_by,
            &settled,
            &created,
            &closed_at,
        ],
    )
    .await?;
    Ok(())
}

async fn write_grants(
    tx: &tokio_postgres::Transaction<'_>,
    statements: &Statements,
    grants: &[Grant],
) -> Result<(), StoreError> {
    let ids: Vec<&str> = grants.iter().map(|g| g.id.as_str()).collect();
    let accounts: Vec<&str> = grants.iter().map(|g| g.account_id.as_str()).collect();
    let origins: Vec<&str> = grants.iter().map(|g| g.terms.origin.as_str()).collect();
    let priorities: Vec<i64> = grants.iter().map(|g| i64::from(g.terms.priority)).collect();
    let expires: Vec<Option<i64>> = grants
        .iter()
        .map(|g| g.terms.expires_at.map(Timestamp::unix_ms))
        .collect();
    let amounts: Vec<i64> = grants.iter().map(|g| g.amount.micros()).collect();
    let consumed: Vec<i64> = grants.iter().map(|g| g.consumed.micros()).collect();
    let reserved: Vec<i64> = grants.iter().map(|g| g.reserved.micros()).collect();
    let expired: Vec<i64> = grants.iter().map(|g| g.expired.micros()).collect();
    let expired_at: Vec<Option<i64>> = grants
        .iter()
        .map(|g| g.expired_at.map(Timestamp::unix_ms))
        .collect();
    let created: Vec<i64> = grants.iter().map(|g| g.created_at.unix_ms()).collect();
    let open: Vec<bool> = grants.iter().map(|g| g.remaining().is_positive()).collect();
    tx.execute(
        &statements.upsert_grants,
        &[
            &ids,
            &accounts,
            &origins,
            &priorities,
            &expires,
            &amounts,
            &consumed,
            &reserved,
            &expired,
            &expired_at,
            &created,
            &open,
        ],
    )
    .await?;
    Ok(())
}

const INSERT_TRANSFERS: &str = "INSERT INTO transfers (id, debit_account_id, credit_account_id, amount, kind, reference, hold_id, grant_id,
         debit_balance_after, credit_balance_after, overspend, created_at)
         SELECT id, d, c, a, k, r, h, g, da, ca, o, t
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[],
         $8::text[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[]) WITH ORDINALITY
         AS u(id, d, c, a, k, r, h, g, da, ca, o, t, n) ORDER BY n";

/// New holds: a plain insert, so a hold id committed meanwhile by another process fails the
/// batch (and it retries, finding the hold) instead of overwriting it.
const INSERT_HOLDS: &str = "INSERT INTO holds (id, debit_account_id, credit_account_id, amount, reference, ttl_ms,
         expires_at, state, allocations, unbacked, closed_by, settled_amount, created_at, closed_at)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::bigint[],
         $7::bigint[], $8::text[], $9::text[], $10::bigint[], $11::text[], $12::bigint[], $13::bigint[],
         $14::bigint[])";

/// Loaded (and locked) holds: only what closing changes. Same parameters as INSERT_HOLDS.
const UPDATE_HOLDS: &str = "UPDATE holds AS h SET state = u.state, closed_by = u.closed_by,
         settled_amount = u.settled_amount, closed_at = u.closed_at
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::bigint[],
         $7::bigint[], $8::text[], $9::text[], $10::bigint[], $11::text[], $12::bigint[], $13::bigint[],
         $14::bigint[]) AS u(id, d, c, a, r, t, e, state, al, ub, closed_by, settled_amount, ca, closed_at)
         WHERE h.id = u.id";

const UPSERT_GRANTS: &str = "INSERT INTO grants (id, account_id, origin, priority, expires_at, amount, consumed, reserved, expired,
         expired_at, created_at, open)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[],
         $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bool[])
         ON CONFLICT (id) DO UPDATE SET consumed = excluded.consumed, reserved = excluded.reserved,
         expired = excluded.expired, expired_at = excluded.expired_at, open = excluded.open";

const UPDATE_ACCOUNTS: &str =
    "UPDATE accounts AS a SET posted = u.posted, reserved = u.reserved, unbacked = u.unbacked,
             overspend = u.overspend
             FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[])
               AS u(id, posted, reserved, unbacked, overspend)
             WHERE a.id = u.id";
