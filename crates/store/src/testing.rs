//! Fresh databases for tests, on both backends.
//!
//! PostgreSQL comes from `CREDITGATE_TEST_DATABASE_URL` (an admin URL; `scripts/test.sh`
//! starts a throwaway cluster and sets it). Each test gets a database of its own. Without the
//! variable, PostgreSQL tests are skipped with a notice — unless `CI` is set, where they fail.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{Store, StoreConfig, StoreError};

/// Which database a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A SQLite file in a temporary directory.
    Sqlite,
    /// A database of its own on the server named by `CREDITGATE_TEST_DATABASE_URL`.
    Postgres,
}

/// A fresh, migrated database; the SQLite file is removed on drop.
pub struct TestDatabase {
    /// The backend the database is on.
    pub kind: Kind,
    /// The URL to open it with ([`crate::StoreConfig::new`]).
    pub url: String,
    dir: Option<PathBuf>,
    /// PostgreSQL only: the server's admin URL, to drop the database with.
    admin_url: Option<String>,
}

impl Drop for TestDatabase {
    /// Removes the SQLite directory, or drops the PostgreSQL database (on a thread of its own:
    /// `Drop` cannot await, and the test's runtime may be single-threaded).
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        if let Some(admin_url) = self.admin_url.take() {
            let url = self.url.clone();
            let dropped = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime
                    .block_on(drop_postgres_database(&admin_url, &url))
                    .map_err(std::io::Error::other)
            })
            .join();
            if !matches!(dropped, Ok(Ok(()))) {
                eprintln!("note: could not drop test database {}", self.url);
            }
        }
    }
}

impl TestDatabase {
    /// Opens a store on this database (each call opens another handle on the same data).
    pub async fn open(&self) -> Result<Store, StoreError> {
        Store::open(&StoreConfig::new(self.url.clone())).await
    }
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        nanos % 1_000_000_000
    )
}

/// A fresh SQLite database in a new temporary directory.
pub fn sqlite() -> TestDatabase {
    let dir = std::env::temp_dir().join(unique("creditgate_test"));
    std::fs::create_dir_all(&dir).expect("the temp dir is writable");
    let url = format!("sqlite:{}", dir.join("ledger.db").display());
    TestDatabase {
        admin_url: None,
        kind: Kind::Sqlite,
        url,
        dir: Some(dir),
    }
}

/// A fresh PostgreSQL database, or `None` when no server is configured (outside CI only).
pub async fn postgres() -> Option<TestDatabase> {
    let Ok(admin_url) = std::env::var("CREDITGATE_TEST_DATABASE_URL") else {
        if std::env::var_os("CI").is_some() {
            panic!("CI is set but CREDITGATE_TEST_DATABASE_URL is not: PostgreSQL tests must run");
        }
        eprintln!("note: CREDITGATE_TEST_DATABASE_URL is not set; skipping the PostgreSQL half of this test");
        return None;
    };
    let url = create_postgres_database(&admin_url, "cg")
        .await
        .unwrap_or_else(|error| panic!("cannot create a test database at {admin_url}: {error}"));
    Some(TestDatabase {
        kind: Kind::Postgres,
        url,
        dir: None,
        admin_url: Some(admin_url),
    })
}

/// Creates a fresh, empty database named `PREFIX_…` on the server of `admin_url`; answers
/// its URL. (Tests and the benchmark; the schema comes when a `Store` opens it.)
pub async fn create_postgres_database(admin_url: &str, prefix: &str) -> Result<String, StoreError> {
    let name = unique(prefix);
    let (client, connection) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await?;
    Ok(replace_database(admin_url, &name))
}

/// Drops a database made by [`create_postgres_database`] (its sessions are ended first).
pub async fn drop_postgres_database(admin_url: &str, url: &str) -> Result<(), StoreError> {
    let name = url
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .split('?')
        .next()
        .unwrap_or_default();
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(StoreError::BadUrl(url.to_owned()));
    }
    let (client, connection) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await?;
    Ok(())
}

/// Every backend available: SQLite always, PostgreSQL when configured (always in CI).
pub async fn all() -> Vec<TestDatabase> {
    let mut databases = vec![sqlite()];
    databases.extend(postgres().await);
    databases
}

/// `postgres://u@h:p/old?x` → `postgres://u@h:p/new?x`.
fn replace_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_end..]
        .find('/')
        .map_or(base.len(), |i| authority_end + i);
    let mut out = format!("{}/{name}", &base[..path_start]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn replaces_the_database_name() {
        assert_eq!(
            super::replace_database("postgres://u@h:1/postgres", "x"),
            "postgres://u@h:1/x"
        );
        assert_eq!(
            super::replace_database("postgres://u@h:1", "x"),
            "postgres://u@h:1/x"
        );
        assert_eq!(
            super::replace_database("postgres://u@h:1/p?sslmode=disable", "x"),
            "postgres://u@h:1/x?sslmode=disable"
        );
    }
}
