//! Reconciliation reads: succeeded payments, the sandbox's succeeded charges and refunds,
//! and the ledger's payment credits and refund transfers in a time window, for `creditgate
//! reconcile` to set beside the provider's own list.

use creditgate_domain::{Amount, Timestamp};

use super::provider::{sandbox_row, SandboxCharge};
use super::{payment_row, Payment, PAYMENT_COLUMNS};
use crate::codec::Columns;
use crate::sql::values;
use crate::{Store, StoreError};

impl Store {
    /// Succeeded payments last changed in `[from, to)` (reconciliation).
    pub async fn payments_succeeded_between(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<Payment>, StoreError> {
        let rows = self
            .db()
            .query(
                &format!(
                    "SELECT {PAYMENT_COLUMNS} FROM payments WHERE state = 'succeeded'
                     AND updated_at >= $1 AND updated_at < $2 ORDER BY updated_at, id"
                ),
                &values![from.unix_ms(), to.unix_ms()],
            )
            .await?;
        rows.iter().map(payment_row).collect()
    }

    /// The sandbox's succeeded charges made in `[from, to)`.
    pub async fn sandbox_charges_between(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<SandboxCharge>, StoreError> {
        let rows = self
            .db()
            .query(
                "SELECT id, payment_id, amount, status, payment_method, created_at
                 FROM sandbox_charges WHERE status = 'succeeded' AND created_at >= $1 AND created_at < $2
                 ORDER BY created_at, id",
                &values![from.unix_ms(), to.unix_ms()],
            )
            .await?;
        rows.iter().map(sandbox_row).collect()
    }

    /// Ledger credits from payments (purchases and auto-reloads) made in `[from, to)`:
    /// (transfer id, org, amount).
    pub async fn payment_credits_between(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<(String, String, Amount)>, StoreError> {
        self.triples_between(
            "SELECT id, credit_account_id, amount FROM transfers
             WHERE kind IN ('purchase', 'auto_reload') AND created_at >= $1 AND created_at < $2
             ORDER BY seq",
            from,
            to,
        )
        .await
    }

    /// Ledger refund transfers made in `[from, to)`: (transfer id, org, amount).
    pub async fn refund_transfers_between(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<(String, String, Amount)>, StoreError> {
        self.triples_between(
            "SELECT id, debit_account_id, amount FROM transfers
             WHERE kind = 'refund' AND created_at >= $1 AND created_at < $2
             ORDER BY seq",
            from,
            to,
        )
        .await
    }

    /// The sandbox's refunds made in `[from, to)`: (its id, our refund id, amount).
    pub async fn sandbox_refunds_between(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<(String, String, Amount)>, StoreError> {
        self.triples_between(
            "SELECT id, refund_id, amount FROM sandbox_refunds
             WHERE created_at >= $1 AND created_at < $2 ORDER BY created_at, id",
            from,
            to,
        )
        .await
    }

    /// The rows of `sql` (two texts and an amount, created in `[$1, $2)`) for `[from, to)`.
    async fn triples_between(
        &self,
        sql: &str,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<(String, String, Amount)>, StoreError> {
        let rows = self
            .db()
            .query(sql, &values![from.unix_ms(), to.unix_ms()])
            .await?;
        rows.iter()
            .map(|row| Ok((row.text(0)?, row.text(1)?, row.amount(2)?)))
            .collect()
    }
}
