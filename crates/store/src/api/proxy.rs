//! The proxy's records: the calls a node had in flight when it stopped, found and settled at
//! its next start.

use creditgate_domain::ledger::Hold;
use creditgate_domain::{Amount, Timestamp};

use crate::codec::{self, Columns, HOLD_COLUMNS};
use crate::sql::values;
use crate::{Store, StoreError};

/// A proxied call found in flight at a node's start, and settled at its hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyRecovery {
    /// The call's hold.
    pub hold_id: String,
    /// The org charged.
    pub org_id: String,
    /// What it was charged (the hold's amount).
    pub amount: Amount,
    /// The node that had it in flight.
    pub node_id: String,
    /// When the call's hold was placed.
    pub placed_at: Timestamp,
    /// When it was settled at the node's start.
    pub recovered_at: Timestamp,
}

impl Store {
    /// Open holds whose reference names `marker` (a proxy node's `n=…` field; letters and
    /// digits only, so no `LIKE` wildcard), placed before `before`, oldest first, at most
    /// `limit`.
    pub async fn open_holds_marked(
        &self,
        marker: &str,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<Hold>, StoreError> {
        if !marker
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'=')
        {
            return Ok(Vec::new());
        }
        let rows = self
            .db()
            .query(
                &format!(
                    "SELECT {HOLD_COLUMNS} FROM holds WHERE state = 'open' AND reference LIKE $1
                     AND created_at < $2 ORDER BY created_at, id LIMIT $3"
                ),
                &values![
                    format!("%{marker}%"),
                    before.unix_ms(),
                    i64::try_from(limit).unwrap_or(i64::MAX)
                ],
            )
            .await?;
        rows.iter().map(codec::hold).collect()
    }

    /// Records that `hold`, in flight on `node_id` when it stopped, was settled at its amount.
    /// Once per hold.
    pub async fn record_proxy_recovery(
        &self,
        hold: &Hold,
        node_id: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.db()
            .execute(
                "INSERT INTO proxy_recoveries (hold_id, org_id, amount, node_id, placed_at, recovered_at)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (hold_id) DO NOTHING",
                &values![
                    hold.id.as_str(),
                    hold.debit_account_id.as_str(),
                    hold.amount.micros(),
                    node_id,
                    hold.created_at.unix_ms(),
                    now.unix_ms()
                ],
            )
            .await?;
        Ok(())
    }

    /// The recovered calls, newest first, at most `limit`.
    pub async fn proxy_recoveries(&self, limit: usize) -> Result<Vec<ProxyRecovery>, StoreError> {
        let rows = self
            .db()
            .query(
                "SELECT hold_id, org_id, amount, node_id, placed_at, recovered_at
                 FROM proxy_recoveries ORDER BY recovered_at DESC, hold_id DESC LIMIT $1",
                &values![i64::try_from(limit).unwrap_or(i64::MAX)],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(ProxyRecovery {
                    hold_id: row.text(0)?,
                    org_id: row.text(1)?,
                    amount: row.amount(2)?,
                    node_id: row.text(3)?,
                    placed_at: row.time(4)?,
                    recovered_at: row.time(5)?,
                })
            })
            .collect()
    }
}
