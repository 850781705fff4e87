//! One way to run the API's SQL on either backend: a small pool of connections, statements
//! written once with `$1…$n` placeholders, values and rows of four kinds (integers and text,
//! each nullable), and transactions.
//!
//! The ledger's hot path (the batch writer) has its own tuned code per backend; everything
//! else (orgs, keys, prices, idempotency records, reads for the API) goes through here, so
//! that its SQL is written once. Integers are `INTEGER` on SQLite and `BIGINT` on PostgreSQL,
//! booleans are 0 / 1, so both drivers see the same types.
//!
//! SQLite calls run inline on the calling task: they are point queries of microseconds on a
//! connection the task owns for the moment, cheaper than a hop to the blocking pool. A write
//! transaction starts with `BEGIN IMMEDIATE` and may wait for the ledger writer's commit
//! (milliseconds, bounded by the busy timeout).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{Mutex, MutexGuard, OwnedMutexGuard};
use tokio_postgres::types::{ToSql, Type};

use crate::codec::Columns;
use crate::StoreError;

/// A parameter.
#[derive(Clone, Debug)]
pub enum Value {
    /// An integer.
    Int(i64),
    /// Text.
    Text(String),
    /// A nullable integer.
    OptInt(Option<i64>),
    /// Nullable text.
    OptText(Option<String>),
}

impl From<i64> for Value {
    fn from(value: i64) -> Value {
        Value::Int(value)
    }
}
impl From<&str> for Value {
    fn from(value: &str) -> Value {
        Value::Text(value.to_owned())
    }
}
impl From<String> for Value {
    fn from(value: String) -> Value {
        Value::Text(value)
    }
}
impl From<Option<i64>> for Value {
    fn from(value: Option<i64>) -> Value {
        Value::OptInt(value)
    }
}
impl From<Option<String>> for Value {
    fn from(value: Option<String>) -> Value {
        Value::OptText(value)
    }
}
impl From<bool> for Value {
    fn from(value: bool) -> Value {
        Value::Int(i64::from(value))
    }
}

/// Builds an array of [`Value`]s from expressions convertible into one.
macro_rules! values {
    ($($value:expr),* $(,)?) => { [$($crate::sql::Value::from($value)),*] };
}
pub(crate) use values;

/// A cell of a result row.
#[derive(Clone, Debug)]
enum Cell {
    Int(i64),
    Text(String),
    Null,
}

/// A result row of either backend.
#[derive(Clone, Debug)]
pub struct Row(Vec<Cell>);

impl Row {
    /// The row without its first `n` columns (to decode a join's second record).
    pub fn skip(&self, n: usize) -> Row {
        Row(self.0.iter().skip(n).cloned().collect())
    }
}

impl Columns for Row {
    fn text(&self, index: usize) -> Result<String, StoreError> {
        self.opt_text(index)?
            .ok_or_else(|| StoreError::Corrupt(format!("column {index} is null")))
    }
    fn opt_text(&self, index: usize) -> Result<Option<String>, StoreError> {
        match self.0.get(index) {
            Some(Cell::Text(text)) => Ok(Some(text.clone())),
            Some(Cell::Null) => Ok(None),
            _ => Err(StoreError::Corrupt(format!("column {index} is not text"))),
        }
    }
    fn int(&self, index: usize) -> Result<i64, StoreError> {
        self.opt_int(index)?
            .ok_or_else(|| StoreError::Corrupt(format!("column {index} is null")))
    }
    fn opt_int(&self, index: usize) -> Result<Option<i64>, StoreError> {
        match self.0.get(index) {
            Some(Cell::Int(value)) => Ok(Some(*value)),
            Some(Cell::Null) => Ok(None),
            _ => Err(StoreError::Corrupt(format!(
                "column {index} is not an integer"
            ))),
        }
    }
}

/// Connections for the API's queries.
#[derive(Clone)]
pub struct Db {
    pool: Arc<Pool>,
}

enum Pool {
    Sqlite(Vec<Mutex<rusqlite::Connection>>, AtomicUsize),
    Postgres(Vec<Arc<Mutex<PgConnection>>>, AtomicUsize, String),
}

struct PgConnection {
    client: tokio_postgres::Client,
    statements: std::collections::HashMap<String, tokio_postgres::Statement>,
    /// A transaction was begun and not finished, and its drop could not roll it back (no
    /// runtime to run the rollback on): roll it back before the connection is used again.
    in_transaction: bool,
}

/// Most statements one PostgreSQL connection keeps prepared.
const PG_STATEMENTS_MAX: usize = 256;

impl Db {
    pub(crate) fn sqlite(connections: Vec<rusqlite::Connection>) -> Db {
        let connections = connections.into_iter().map(Mutex::new).collect();
        Db {
            pool: Arc::new(Pool::Sqlite(connections, AtomicUsize::new(0))),
        }
    }

    pub(crate) async fn postgres(url: &str, len: usize) -> Result<Db, StoreError> {
        let mut connections = Vec::with_capacity(len);
        for _ in 0..len.max(1) {
            connections.push(Arc::new(Mutex::new(PgConnection::connect(url).await?)));
        }
        Ok(Db {
            pool: Arc::new(Pool::Postgres(
                connections,
                AtomicUsize::new(0),
                url.to_owned(),
            )),
        })
    }

    /// Whether this is PostgreSQL (for the few statements that differ).
    pub fn is_postgres(&self) -> bool {
        matches!(&*self.pool, Pool::Postgres(..))
    }

    /// Runs one statement outside a transaction and returns its rows.
    pub async fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError> {
        let mut connection = self.connection().await?;
        connection.query(sql, params).await
    }

    /// Runs one statement outside a transaction; returns the rows it changed.
    pub async fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, StoreError> {
        let mut connection = self.connection().await?;
        connection.execute(sql, params).await
    }

    /// Begins a write transaction (`BEGIN IMMEDIATE` on SQLite).
    pub async fn transaction(&self) -> Result<Tx<'_>, StoreError> {
        let mut connection = self.connection().await?;
        match &mut connection {
            Connection::Sqlite(c) => {
                c.execute_batch("BEGIN IMMEDIATE")?;
            }
            Connection::Postgres(c) => {
                c.client.batch_execute("BEGIN").await?;
                c.in_transaction = true;
            }
        }
        Ok(Tx {
            connection: Some(connection),
            finished: false,
        })
    }

    async fn connection(&self) -> Result<Connection<'_>, StoreError> {
        match &*self.pool {
            Pool::Sqlite(connections, next) => {
                Ok(Connection::Sqlite(pick(connections, next).await))
            }
            Pool::Postgres(connections, next, url) => {
                let mut connection = pick_owned(connections, next).await;
                if connection.client.is_closed() {
                    *connection = PgConnection::connect(url).await?;
                }
                if connection.in_transaction {
                    connection.client.batch_execute("ROLLBACK").await?;
                    connection.in_transaction = false;
                }
                Ok(Connection::Postgres(connection))
            }
        }
    }
}

/// A free connection if there is one, else the next in turn.
async fn pick<'a, T>(connections: &'a [Mutex<T>], next: &AtomicUsize) -> MutexGuard<'a, T> {
    let start = next.fetch_add(1, Ordering::Relaxed);
    for offset in 0..connections.len() {
        let index = (start + offset) % connections.len();
        if let Ok(guard) = connections[index].try_lock() {
            return guard;
        }
    }
    connections[start % connections.len()].lock().await
}

/// [`pick`] for connections a dropped transaction may hand to a task of its own.
async fn pick_owned<T>(connections: &[Arc<Mutex<T>>], next: &AtomicUsize) -> OwnedMutexGuard<T> {
    let start = next.fetch_add(1, Ordering::Relaxed);
    for offset in 0..connections.len() {
        let index = (start + offset) % connections.len();
        if let Ok(guard) = connections[index].clone().try_lock_owned() {
            return guard;
        }
    }
    connections[start % connections.len()]
        .clone()
        .lock_owned()
        .await
}

enum Connection<'a> {
    Sqlite(MutexGuard<'a, rusqlite::Connection>),
    /// Owned, so that a dropped transaction can roll back on a task of its own while still
    /// holding the connection (see `Drop for Tx`).
    Postgres(OwnedMutexGuard<PgConnection>),
}

impl Connection<'_> {
    async fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError> {
        match self {
            Connection::Sqlite(c) => sqlite_query(c, sql, params),
            Connection::Postgres(c) => c.query(sql, params).await,
        }
    }

    async fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, StoreError> {
        match self {
            Connection::Sqlite(c) => {
                let mut statement = c.prepare_cached(&sqlite_placeholders(sql))?;
                let changed = statement.execute(rusqlite::params_from_iter(params.iter()))?;
                Ok(changed as u64)
            }
            Connection::Postgres(c) => {
                let statement = c.statement(sql).await?;
                let params = pg_params(params);
                Ok(c.client.execute(&statement, &params).await?)
            }
        }
    }
}

/// A write transaction; rolled back when dropped without [`Tx::commit`] (an early return,
/// an error, a cancelled task), at once, so that no row lock outlives it.
pub struct Tx<'a> {
    /// Always `Some` until the drop hands a PostgreSQL connection to its rollback task.
    connection: Option<Connection<'a>>,
    finished: bool,
}

impl<'a> Tx<'a> {
    fn connection(&mut self) -> &mut Connection<'a> {
        self.connection
            .as_mut()
            .expect("a live transaction has its connection")
    }

    /// Runs one statement in the transaction and returns its rows.
    pub async fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError> {
        self.connection().query(sql, params).await
    }

    /// Runs one statement in the transaction; returns the rows it changed.
    pub async fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, StoreError> {
        self.connection().execute(sql, params).await
    }

    /// `" FOR UPDATE"` on PostgreSQL (SQLite's write transaction locks the whole database).
    pub fn for_update(&self) -> &'static str {
        match self.connection {
            Some(Connection::Postgres(_)) => " FOR UPDATE",
            _ => "",
        }
    }

    /// Commits.
    pub async fn commit(mut self) -> Result<(), StoreError> {
        self.finished = true;
        match self.connection() {
            Connection::Sqlite(c) => Ok(c.execute_batch("COMMIT")?),
            Connection::Postgres(c) => {
                c.client.batch_execute("COMMIT").await?;
                c.in_transaction = false;
                Ok(())
            }
        }
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        match self.connection.take() {
            Some(Connection::Sqlite(c)) if !c.is_autocommit() => {
                let _ = c.execute_batch("ROLLBACK");
            }
            // A drop cannot await: the rollback runs on a task of its own, which holds the
            // connection until it is done, so its row locks are released at once and nobody
            // else uses the connection meanwhile. Without a runtime, `in_transaction` stays
            // set and the next user of the connection rolls back first.
            Some(Connection::Postgres(mut c)) => {
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(async move {
                        if c.client.batch_execute("ROLLBACK").await.is_ok() {
                            c.in_transaction = false;
                        }
                    });
                }
            }
            Some(Connection::Sqlite(_)) | None => {}
        }
    }
}

impl PgConnection {
    async fn connect(url: &str) -> Result<PgConnection, StoreError> {
        Ok(PgConnection {
            client: crate::postgres::connect(url).await?,
            statements: std::collections::HashMap::new(),
            in_transaction: false,
        })
    }

    async fn statement(&mut self, sql: &str) -> Result<tokio_postgres::Statement, StoreError> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql).await?;
        if self.statements.len() >= PG_STATEMENTS_MAX {
            self.statements.clear();
        }
        self.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    async fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError> {
        let statement = self.statement(sql).await?;
        let rows = self.client.query(&statement, &pg_params(params)).await?;
        rows.iter().map(pg_row).collect()
    }
}

pub(crate) fn pg_params(params: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|value| -> &(dyn ToSql + Sync) {
            match value {
                Value::Int(v) => v,
                Value::Text(v) => v,
                Value::OptInt(v) => v,
                Value::OptText(v) => v,
            }
        })
        .collect()
}

fn pg_row(row: &tokio_postgres::Row) -> Result<Row, StoreError> {
    let mut cells = Vec::with_capacity(row.len());
    for (index, column) in row.columns().iter().enumerate() {
        let cell = match *column.type_() {
            Type::INT8 => row.try_get::<_, Option<i64>>(index)?.map(Cell::Int),
            Type::INT4 => row
                .try_get::<_, Option<i32>>(index)?
                .map(|v| Cell::Int(v.into())),
            Type::BOOL => row
                .try_get::<_, Option<bool>>(index)?
                .map(|v| Cell::Int(v.into())),
            _ => row.try_get::<_, Option<String>>(index)?.map(Cell::Text),
        };
        cells.push(cell.unwrap_or(Cell::Null));
    }
    Ok(Row(cells))
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            Value::Int(v) => rusqlite::ToSql::to_sql(v),
            Value::Text(v) => rusqlite::ToSql::to_sql(v),
            Value::OptInt(v) => rusqlite::ToSql::to_sql(v),
            Value::OptText(v) => rusqlite::ToSql::to_sql(v),
        }
    }
}

fn sqlite_query(
    connection: &rusqlite::Connection,
    sql: &str,
    params: &[Value],
) -> Result<Vec<Row>, StoreError> {
    use rusqlite::types::ValueRef;
    let mut statement = connection.prepare_cached(&sqlite_placeholders(sql))?;
    let width = statement.column_count();
    let mut rows = statement.query(rusqlite::params_from_iter(params.iter()))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let mut cells = Vec::with_capacity(width);
        for index in 0..width {
            cells.push(match row.get_ref(index)? {
                ValueRef::Null => Cell::Null,
                ValueRef::Integer(v) => Cell::Int(v),
                ValueRef::Text(v) => Cell::Text(String::from_utf8_lossy(v).into_owned()),
                ValueRef::Real(_) | ValueRef::Blob(_) => {
                    return Err(StoreError::Corrupt(format!(
                        "column {index} is neither integer nor text"
                    )))
                }
            });
        }
        out.push(Row(cells));
    }
    Ok(out)
}

/// `$1` → `?1`: the statements are written in PostgreSQL's style.
pub(crate) fn sqlite_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders() {
        assert_eq!(
            super::sqlite_placeholders("SELECT a FROM t WHERE b = $1 AND c = $12"),
            "SELECT a FROM t WHERE b = ?1 AND c = ?12"
        );
    }
}
