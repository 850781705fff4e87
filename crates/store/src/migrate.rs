//! Schema migrations: one folder per backend, applied in order, each exactly once.

/// (version, SQL) for SQLite, in order.
pub const SQLITE: &[(i64, &str)] = &[
    (1, include_str!("../migrations/sqlite/0001_ledger.sql")),
    (2, include_str!("../migrations/sqlite/0002_api.sql")),
    (3, include_str!("../migrations/sqlite/0003_notices.sql")),
    (4, include_str!("../migrations/sqlite/0004_webhooks.sql")),
    (5, include_str!("../migrations/sqlite/0005_receipts.sql")),
    (6, include_str!("../migrations/sqlite/0006_payments.sql")),
    (7, include_str!("../migrations/sqlite/0007_members.sql")),
    (8, include_str!("../migrations/sqlite/0008_access.sql")),
    (9, include_str!("../migrations/sqlite/0009_proxy.sql")),
    (10, include_str!("../migrations/sqlite/0010_prices.sql")),
    (11, include_str!("../migrations/sqlite/0011_claims.sql")),
    (12, include_str!("../migrations/sqlite/0012_settings.sql")),
    (
        13,
        include_str!("../migrations/sqlite/0013_rate_limits.sql"),
    ),
    (14, include_str!("../migrations/sqlite/0014_refunds.sql")),
];

/// (version, SQL) for PostgreSQL, in order.
pub const POSTGRES: &[(i64, &str)] = &[
    (1, include_str!("../migrations/postgres/0001_ledger.sql")),
    (2, include_str!("../migrations/postgres/0002_api.sql")),
    (3, include_str!("../migrations/postgres/0003_notices.sql")),
    (4, include_str!("../migrations/postgres/0004_webhooks.sql")),
    (5, include_str!("../migrations/postgres/0005_receipts.sql")),
    (6, include_str!("../migrations/postgres/0006_payments.sql")),
    (7, include_str!("../migrations/postgres/0007_members.sql")),
    (8, include_str!("../migrations/postgres/0008_access.sql")),
    (9, include_str!("../migrations/postgres/0009_proxy.sql")),
    (10, include_str!("../migrations/postgres/0010_prices.sql")),
    (11, include_str!("../migrations/postgres/0011_claims.sql")),
    (12, include_str!("../migrations/postgres/0012_settings.sql")),
    (
        13,
        include_str!("../migrations/postgres/0013_rate_limits.sql"),
    ),
    (14, include_str!("../migrations/postgres/0014_refunds.sql")),
];

/// Creates the bookkeeping table; same statement on both backends.
pub const CREATE_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)";
