//! The notice outbox: rows written with the transition that caused them (see `access.rs`),
//! read and marked by the notice worker.

use creditgate_domain::Timestamp;

use super::Notice;
use crate::codec::Columns;
use crate::sql::{values, Row};
use crate::{Store, StoreError};

const NOTICE_COLUMNS: &str = "id, kind, org_id, available, level, state, attempts, \
     next_attempt_at, last_error, created_at, sent_at, amount, transfer_id, payment_id, reason, retry_at, member_id, secret";

fn notice_row(row: &Row) -> Result<Notice, StoreError> {
    Ok(Notice {
        id: row.text(0)?,
        kind: row.text(1)?,
        org_id: row.text(2)?,
        available: row.amount(3)?,
        level: u32::try_from(row.int(4)?).map_err(|_| StoreError::Corrupt("level".into()))?,
        state: row.text(5)?,
        attempts: u32::try_from(row.int(6)?).map_err(|_| StoreError::Corrupt("attempts".into()))?,
        next_attempt_at: row.time(7)?,
        last_error: row.opt_text(8)?,
        created_at: row.time(9)?,
        sent_at: row.opt_time(10)?,
        amount: row.opt_amount(11)?,
        transfer_id: row.opt_text(12)?,
        payment_id: row.opt_text(13)?,
        reason: row.opt_text(14)?,
        retry_at: row.opt_time(15)?,
        member_id: row.opt_text(16)?,
        secret: row.opt_text(17)?,
    })
}

fn limit_i64(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

impl Store {
    /// Pending notices due at `now`, oldest first, at most `limit`.
    pub async fn due_notices(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Notice>, StoreError> {
        let rows = self
            .db()
            .query(
                &format!(
                    "SELECT {NOTICE_COLUMNS} FROM notices WHERE state = 'pending' AND next_attempt_at <= $1
                     ORDER BY next_attempt_at, id LIMIT $2"
                ),
                &values![now.unix_ms(), limit_i64(limit)],
            )
            .await?;
        rows.iter().map(notice_row).collect()
    }

    /// Marks a notice delivered.
    pub async fn notice_sent(&self, id: &str, now: Timestamp) -> Result<(), StoreError> {
        self.db()
            .execute(
                "UPDATE notices SET state = 'sent', sent_at = $2, attempts = attempts + 1, last_error = NULL, secret = NULL
                 WHERE id = $1 AND state = 'pending'",
                &values![id, now.unix_ms()],
            )
            .await?;
        Ok(())
    }

    /// Records a failed attempt: retried at `next_attempt_at`, or parked.
    pub async fn notice_failed(
        &self,
        id: &str,
        error: &str,
        next_attempt_at: Timestamp,
        parked: bool,
    ) -> Result<(), StoreError> {
        let state = if parked { "parked" } else { "pending" };
        self.db()
            .execute(
                "UPDATE notices SET state = $2, attempts = attempts + 1, last_error = $3, next_attempt_at = $4
                 WHERE id = $1 AND state = 'pending'",
                &values![id, state, error, next_attempt_at.unix_ms()],
            )
            .await?;
        Ok(())
    }

    /// Notices, newest first, filtered by state and org when given.
    pub async fn notices(
        &self,
        state: Option<&str>,
        org_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Notice>, StoreError> {
        let rows = self
            .db()
            .query(
                &format!(
                    "SELECT {NOTICE_COLUMNS} FROM notices WHERE ($1 = '' OR state = $1) AND ($2 = '' OR org_id = $2)
                     ORDER BY created_at DESC, id DESC LIMIT $3"
                ),
                &values![state.unwrap_or(""), org_id.unwrap_or(""), limit_i64(limit)],
            )
            .await?;
        rows.iter().map(notice_row).collect()
    }

    /// The notice with id `id`.
    pub async fn notice(&self, id: &str) -> Result<Option<Notice>, StoreError> {
        let rows = self
            .db()
            .query(
                &format!("SELECT {NOTICE_COLUMNS} FROM notices WHERE id = $1"),
                &values![id],
            )
            .await?;
        rows.first().map(notice_row).transpose()
    }

    /// Puts a parked notice back in the queue, due at `now`, with its attempts reset.
    pub async fn retry_notice(
        &self,
        id: &str,
        now: Timestamp,
    ) -> Result<Option<Notice>, StoreError> {
        self.db()
            .execute(
                "UPDATE notices SET state = 'pending', attempts = 0, next_attempt_at = $2 WHERE id = $1 AND state = 'parked'",
                &values![id, now.unix_ms()],
            )
            .await?;
        self.notice(id).await
    }
}
