//! Ledger reads for the API, and `Idempotency-Key` records.

use creditgate_domain::ledger::{Hold, Transfer};
use creditgate_domain::reference::HoldTerms;
use creditgate_domain::Timestamp;

use super::{IdempotencyRecord, Page};
use crate::codec::{self, Columns, HOLD_COLUMNS, TRANSFER_COLUMNS};
use crate::sql::values;
use crate::{Store, StoreError};

impl Store {
    /// The hold with id `id`.
    pub async fn hold(&self, id: &str) -> Result<Option<Hold>, StoreError> {
        let rows = self
            .db()
            .query(
                &format!("SELECT {HOLD_COLUMNS} FROM holds WHERE id = $1"),
                &values![id],
            )
            .await?;
        rows.first().map(codec::hold).transpose()
    }

    /// The transfer with id `id`.
    pub async fn transfer(&self, id: &str) -> Result<Option<Transfer>, StoreError> {
        let rows = self
            .db()
            .query(
                &format!("SELECT {TRANSFER_COLUMNS} FROM transfers WHERE id = $1"),
                &values![id],
            )
            .await?;
        rows.first().map(codec::transfer).transpose()
    }

    /// Transfers into or out of `account_id`, newest first, older than the transfer
    /// `starting_after` (if given), at most `limit`. `None` if `starting_after` names no
    /// transfer of this account.
    pub async fn transfers(
        &self,
        account_id: &str,
        limit: usize,
        starting_after: Option<&str>,
    ) -> Result<Option<Page<Transfer>>, StoreError> {
        let before_seq = match starting_after {
            None => i64::MAX,
            Some(id) => {
                let rows = self
                    .db()
                    .query(
                        "SELECT seq FROM transfers WHERE id = $1 AND (debit_account_id = $2 OR credit_account_id = $2)",
                        &values![id, account_id],
                    )
                    .await?;
                match rows.first() {
                    Some(row) => row.int(0)?,
                    None => return Ok(None),
                }
            }
        };
        let fetch = i64::try_from(limit).unwrap_or(i64::MAX - 1) + 1;
        // Two index range scans (debit side, credit side) merged: each uses its own index.
        let rows = self
            .db()
            .query(
                &format!(
                    "SELECT {TRANSFER_COLUMNS} FROM (
                       SELECT * FROM (SELECT * FROM transfers WHERE debit_account_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3) d
                       UNION ALL
                       SELECT * FROM (SELECT * FROM transfers WHERE credit_account_id = $1 AND debit_account_id <> $1 AND seq < $2 ORDER BY seq DESC LIMIT $3) c
                     ) t ORDER BY seq DESC LIMIT $3"
                ),
                &values![account_id, before_seq, fetch],
            )
            .await?;
        let mut items = rows
            .iter()
            .map(codec::transfer)
            .collect::<Result<Vec<_>, _>>()?;
        let has_more = items.len() > limit;
        items.truncate(limit);
        Ok(Some(Page { items, has_more }))
    }

    /// The record of `key` in `scope`.
    pub async fn idempotency_record(
        &self,
        scope: &str,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let rows = self
            .db()
            .query(
                "SELECT scope, key, request_hash, status, body, created_at FROM idempotency_keys
                 WHERE scope = $1 AND key = $2",
                &values![scope, key],
            )
            .await?;
        rows.first()
            .map(|row| {
                Ok(IdempotencyRecord {
                    scope: row.text(0)?,
                    key: row.text(1)?,
                    request_hash: row.text(2)?,
                    status: u16::try_from(row.int(3)?)
                        .map_err(|_| StoreError::Corrupt("status".into()))?,
                    body: row.text(4)?,
                    created_at: row.time(5)?,
                })
            })
            .transpose()
    }

    /// Records the first response to a key; if another request recorded one first, returns
    /// that one instead.
    pub async fn save_idempotency_record(
        &self,
        record: &IdempotencyRecord,
    ) -> Result<IdempotencyRecord, StoreError> {
        self.db()
            .execute(
                "INSERT INTO idempotency_keys (scope, key, request_hash, status, body, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (scope, key) DO NOTHING",
                &values![
                    record.scope.as_str(),
                    record.key.as_str(),
                    record.request_hash.as_str(),
                    i64::from(record.status),
                    record.body.as_str(),
                    record.created_at.unix_ms(),
                ],
            )
            .await?;
        Ok(self
            .idempotency_record(&record.scope, &record.key)
            .await?
            .unwrap_or_else(|| record.clone()))
    }

    /// Deletes idempotency records created before `before`; returns how many.
    pub async fn prune_idempotency_records(&self, before: Timestamp) -> Result<u64, StoreError> {
        self.db()
            .execute(
                "DELETE FROM idempotency_keys WHERE created_at < $1",
                &values![before.unix_ms()],
            )
            .await
    }
}

/// What an org (or one of its keys) has spent on usage since a time, and holds still open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Spend {
    /// Usage charged since the time.
    pub charged: creditgate_domain::Amount,
    /// Open holds.
    pub reserved: creditgate_domain::Amount,
}

/// `text` as a `LIKE` pattern that matches it literally (with `ESCAPE '\'`).
pub(crate) fn like_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl Store {
    /// Usage charged to `org_id` since `since` and its open holds; only those made with
    /// `key_id` when given (a usage charge and a hold record their key in the reference's
    /// last field, `k=…`).
    pub async fn spend(
        &self,
        org_id: &str,
        since: Timestamp,
        key_id: Option<&str>,
    ) -> Result<Spend, StoreError> {
        // `_` and `%` in an id are literal here, not wildcards.
        let pattern = key_id.map_or_else(
            || "%".to_owned(),
            |key| format!("%{}", like_literal(&HoldTerms::key_suffix(key))),
        );
        let charged = self
            .db()
            .query(
                "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM transfers
                 WHERE debit_account_id = $1 AND kind = 'usage' AND created_at >= $2 AND reference LIKE $3 ESCAPE '\\'",
                &values![org_id, since.unix_ms(), pattern.as_str()],
            )
            .await?;
        let reserved = self
            .db()
            .query(
                "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM holds
                 WHERE debit_account_id = $1 AND state = 'open' AND reference LIKE $2 ESCAPE '\\'",
                &values![org_id, pattern.as_str()],
            )
            .await?;
        let first = |rows: &[crate::sql::Row]| -> Result<creditgate_domain::Amount, StoreError> {
            rows.first()
                .map(|row| row.amount(0))
                .unwrap_or(Ok(creditgate_domain::Amount::ZERO))
        };
        Ok(Spend {
            charged: first(&charged)?,
            reserved: first(&reserved)?,
        })
    }
}

/// Usage charged to an org on one UTC day under one reference (`m=…;p=…;k=…`: model, price
/// version, key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageGroup {
    /// Days since 1970-01-01 (UTC).
    pub day: i64,
    /// The usage transfers' reference.
    pub reference: String,
    /// Their sum.
    pub amount: creditgate_domain::Amount,
    /// How many.
    pub calls: u64,
}

impl Store {
    /// Usage charged to `org_id` in `[from, to)`, summed by UTC day and reference, at most
    /// `limit` groups (by day, then reference).
    pub async fn usage_by_day(
        &self,
        org_id: &str,
        from: Timestamp,
        to: Timestamp,
        limit: usize,
    ) -> Result<Vec<UsageGroup>, StoreError> {
        let rows = self
            .db()
            .query(
                "SELECT created_at / 86400000 AS day, reference, CAST(SUM(amount) AS BIGINT), COUNT(*) FROM transfers
                 WHERE debit_account_id = $1 AND kind = 'usage' AND created_at >= $2 AND created_at < $3
                 GROUP BY created_at / 86400000, reference ORDER BY 1, 2 LIMIT $4",
                &values![
                    org_id,
                    from.unix_ms(),
                    to.unix_ms(),
                    i64::try_from(limit).unwrap_or(i64::MAX)
                ],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(UsageGroup {
                    day: row.int(0)?,
                    reference: row.text(1)?,
                    amount: row.amount(2)?,
                    calls: u64::try_from(row.int(3)?).unwrap_or(0),
                })
            })
            .collect()
    }
}
