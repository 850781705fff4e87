//! Refunds by the operator: the rows, and the transactions that move them.
//!
//! A refund is a row of ours before the provider hears of it (`created`, with the unspent
//! check made in the same transaction, under the payment row's lock), `requesting` before
//! the provider call (so an interrupted call is found again and retried under the same
//! idempotency key), then `succeeded` with the ledger's refund transfer and the receipt
//! notice in one transaction, or `failed` when the provider refuses. Nothing here talks to
//! the provider or writes a balance: the ledger transfer goes through the writer.

use creditgate_domain::ledger::TransferId;
use creditgate_domain::notice::NoticeKind;
use creditgate_domain::payment::PaymentState;
use creditgate_domain::{Amount, Timestamp};

use crate::codec::Columns;
use crate::sql::{values, Row, Tx, Value};
use crate::{Store, StoreError};

/// Where a refund is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RefundState {
    /// Written, checked against the unspent credits; the provider has not been asked.
    Created,
    /// The provider is being asked (or was, and its answer was lost).
    Requesting,
    /// The provider gave the money back and the ledger's refund transfer landed.
    Succeeded,
    /// The provider refused.
    Failed,
    /// The provider gave the money back, but the ledger refused to take the credits back
    /// (they were spent between the check and the ledger step): reconcile reports it, and an
    /// operator adjustment settles it. Not retried.
    LedgerRefused,
}

impl RefundState {
    /// Every state.
    pub const ALL: [RefundState; 5] = [
        RefundState::Created,
        RefundState::Requesting,
        RefundState::Succeeded,
        RefundState::Failed,
        RefundState::LedgerRefused,
    ];

    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            RefundState::Created => "created",
            RefundState::Requesting => "requesting",
            RefundState::Succeeded => "succeeded",
            RefundState::Failed => "failed",
            RefundState::LedgerRefused => "ledger_refused",
        }
    }

    /// The state named `text`.
    pub fn parse(text: &str) -> Option<RefundState> {
        RefundState::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether the refund still counts against the payment's unspent credits without being
    /// in the ledger yet.
    pub fn is_open(self) -> bool {
        matches!(self, RefundState::Created | RefundState::Requesting)
    }
}

/// Money given back on a payment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refund {
    /// `rfd_…`: derived from the `Idempotency-Key`; the provider's key is derived from it.
    pub id: String,
    /// The refunded payment.
    pub payment_id: String,
    /// The payment's org.
    pub org_id: String,
    /// Where it is.
    pub state: RefundState,
    /// How much goes back.
    pub amount: Amount,
    /// Why, as the operator said.
    pub reason: Option<String>,
    /// `sandbox` or `stripe` (the payment's provider).
    pub provider: String,
    /// The provider's refund object.
    pub provider_ref: Option<String>,
    /// Why the provider refused: a stable code.
    pub failure_code: Option<String>,
    /// Why the provider refused: for people.
    pub failure_message: Option<String>,
    /// The ledger's refund transfer, once succeeded.
    pub transfer_id: Option<String>,
    /// Written at.
    pub created_at: Timestamp,
    /// Last changed at.
    pub updated_at: Timestamp,
}

/// What asking for a refund did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefundCreated {
    /// Written now.
    Created(Refund),
    /// A refund with this id was written before (the same `Idempotency-Key`).
    Exists(Refund),
    /// No such payment.
    PaymentNotFound,
    /// The payment has not succeeded, so nothing can be given back.
    NotRefundable(PaymentState),
    /// More than the payment's unspent credits (less the refunds still under way).
    ExceedsUnspent {
        /// What could still be refunded.
        unspent: Amount,
    },
}

const REFUND_COLUMNS: &str = "id, payment_id, org_id, state, amount, reason, provider, \
     provider_ref, failure_code, failure_message, transfer_id, created_at, updated_at";

fn refund_row(row: &Row) -> Result<Refund, StoreError> {
    let state = row.text(3)?;
    Ok(Refund {
        id: row.text(0)?,
        payment_id: row.text(1)?,
        org_id: row.text(2)?,
        state: RefundState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("refund state {state:?}")))?,
        amount: row.amount(4)?,
        reason: row.opt_text(5)?,
        provider: row.text(6)?,
        provider_ref: row.opt_text(7)?,
        failure_code: row.opt_text(8)?,
        failure_message: row.opt_text(9)?,
        transfer_id: row.opt_text(10)?,
        created_at: row.time(11)?,
        updated_at: row.time(12)?,
    })
}

impl Store {
    /// Writes a refund of `payment_id` in state `created`, in one transaction with the check
    /// that the payment succeeded and that its grant (`grant_id`, the payment's credit) still
    /// has `amount` unspent beside the refunds under way; `amount` `None` asks for all of it.
    /// A refund with the same id answers the first one.
    pub async fn create_refund(
        &self,
        id: &str,
        payment_id: &str,
        grant_id: &TransferId,
        amount: Option<Amount>,
        reason: Option<&str>,
        now: Timestamp,
    ) -> Result<RefundCreated, StoreError> {
        let mut tx = self.db().transaction().await?;
        if let Some(existing) = select_refund(&mut tx, id).await? {
            return Ok(RefundCreated::Exists(existing));
        }
        let select = format!(
            "SELECT org_id, state, provider FROM payments WHERE id = $1{}",
            tx.for_update()
        );
        let Some(payment) = tx.query(&select, &values![payment_id]).await?.pop() else {
            return Ok(RefundCreated::PaymentNotFound);
        };
        let state = payment.text(1)?;
        let state = PaymentState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("payment state {state:?}")))?;
        if state != PaymentState::Succeeded {
            return Ok(RefundCreated::NotRefundable(state));
        }
        let unspent = unspent(&mut tx, payment_id, grant_id).await?;
        let amount = amount.unwrap_or(unspent);
        if !amount.is_positive() || amount > unspent {
            return Ok(RefundCreated::ExceedsUnspent { unspent });
        }
        let refund = Refund {
            id: id.to_owned(),
            payment_id: payment_id.to_owned(),
            org_id: payment.text(0)?,
            state: RefundState::Created,
            amount,
            reason: reason.map(str::to_owned),
            provider: payment.text(2)?,
            provider_ref: None,
            failure_code: None,
            failure_message: None,
            transfer_id: None,
            created_at: now,
            updated_at: now,
        };
        tx.execute(
            &format!(
                "INSERT INTO refunds ({REFUND_COLUMNS}) VALUES
                 ($1, $2, $3, $4, $5, $6, $7, NULL, NULL, NULL, NULL, $8, $8)"
            ),
            &values![
                refund.id.as_str(),
                refund.payment_id.as_str(),
                refund.org_id.as_str(),
                refund.state.as_str(),
                refund.amount.micros(),
                refund.reason.clone(),
                refund.provider.as_str(),
                now.unix_ms()
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(RefundCreated::Created(refund))
    }

    /// A refund.
    pub async fn refund(&self, id: &str) -> Result<Option<Refund>, StoreError> {
        let rows = self
            .db()
            .query(
                &format!("SELECT {REFUND_COLUMNS} FROM refunds WHERE id = $1"),
                &values![id],
            )
            .await?;
        rows.first().map(refund_row).transpose()
    }

    /// A payment's refunds, oldest first.
    pub async fn refunds_of_payment(&self, payment_id: &str) -> Result<Vec<Refund>, StoreError> {
        let rows = self
            .db()
            .query(
                &format!(
                    "SELECT {REFUND_COLUMNS} FROM refunds WHERE payment_id = $1
                     ORDER BY created_at, id"
                ),
                &values![payment_id],
            )
            .await?;
        rows.iter().map(refund_row).collect()
    }

    /// Refunds created in `[from, to)`, oldest first (reconciliation).
    pub async fn refunds_between(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<Refund>, StoreError> {
        let rows = self
            .db()
            .query(
                &format!(
                    "SELECT {REFUND_COLUMNS} FROM refunds WHERE created_at >= $1 AND created_at < $2
                     ORDER BY created_at, id"
                ),
                &values![from.unix_ms(), to.unix_ms()],
            )
            .await?;
        rows.iter().map(refund_row).collect()
    }

    /// Refunds still under way (`created` or `requesting`) last changed at or before
    /// `before`, oldest first, at most `limit`: the payments worker resumes them.
    pub async fn open_refunds(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<Refund>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .db()
            .query(
                &format!(
                    "SELECT {REFUND_COLUMNS} FROM refunds
                     WHERE state IN ('created', 'requesting') AND updated_at <= $1
                     ORDER BY updated_at, id LIMIT $2"
                ),
                &values![before.unix_ms(), limit],
            )
            .await?;
        rows.iter().map(refund_row).collect()
    }

    /// Moves an open refund to `requesting` (before the provider call); answers it as
    /// stored, moved or not.
    pub async fn refund_requesting(
        &self,
        id: &str,
        now: Timestamp,
    ) -> Result<Option<Refund>, StoreError> {
        self.db()
            .execute(
                "UPDATE refunds SET state = 'requesting', updated_at = $2
                 WHERE id = $1 AND state IN ('created', 'requesting')",
                &values![id, now.unix_ms()],
            )
            .await?;
        self.refund(id).await
    }

    /// Marks an open refund failed (the provider refused) or, with `state`
    /// [`RefundState::LedgerRefused`], refused by the ledger after the provider's refund;
    /// answers it as stored.
    pub async fn refund_failed(
        &self,
        id: &str,
        state: RefundState,
        code: &str,
        message: &str,
        now: Timestamp,
    ) -> Result<Option<Refund>, StoreError> {
        self.db()
            .execute(
                "UPDATE refunds SET state = $2, failure_code = $3, failure_message = $4,
                 updated_at = $5 WHERE id = $1 AND state IN ('created', 'requesting')",
                &values![id, state.as_str(), code, message, now.unix_ms()],
            )
            .await?;
        self.refund(id).await
    }

    /// Records the provider's refund on an open refund (so a retry of the ledger step knows
    /// it), without moving it on.
    pub async fn refund_provider_ref(
        &self,
        id: &str,
        provider_ref: &str,
    ) -> Result<(), StoreError> {
        self.db()
            .execute(
                "UPDATE refunds SET provider_ref = $2 WHERE id = $1",
                &values![id, provider_ref],
            )
            .await?;
        Ok(())
    }

    /// Marks a refund succeeded once its ledger transfer landed, with the receipt notice, in
    /// one transaction; a repeat changes nothing and writes no second notice.
    pub async fn refund_succeeded(
        &self,
        id: &str,
        provider_ref: &str,
        transfer_id: &TransferId,
        now: Timestamp,
    ) -> Result<Option<Refund>, StoreError> {
        let mut tx = self.db().transaction().await?;
        let changed = tx
            .execute(
                "UPDATE refunds SET state = 'succeeded', provider_ref = $2, transfer_id = $3,
                 updated_at = $4 WHERE id = $1 AND state IN ('created', 'requesting')",
                &values![id, provider_ref, transfer_id.as_str(), now.unix_ms()],
            )
            .await?;
        let refund = select_refund(&mut tx, id).await?;
        if let (1, Some(refund)) = (changed, &refund) {
            receipt_notice(&mut tx, refund, now).await?;
        }
        tx.commit().await?;
        Ok(refund)
    }

    /// Records the sandbox provider's refund once per refund id; answers the one recorded
    /// (`re_sandbox_…`).
    pub async fn sandbox_refund_once(
        &self,
        provider_id: &str,
        refund_id: &str,
        charge_id: &str,
        amount: Amount,
        now: Timestamp,
    ) -> Result<String, StoreError> {
        self.db()
            .execute(
                "INSERT INTO sandbox_refunds (id, refund_id, charge_id, amount, created_at)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (refund_id) DO NOTHING",
                &values![
                    provider_id,
                    refund_id,
                    charge_id,
                    amount.micros(),
                    now.unix_ms()
                ],
            )
            .await?;
        let rows = self
            .db()
            .query(
                "SELECT id FROM sandbox_refunds WHERE refund_id = $1",
                &values![refund_id],
            )
            .await?;
        rows.first()
            .map(|row| row.text(0))
            .transpose()?
            .ok_or_else(|| StoreError::Corrupt("sandbox refund vanished".into()))
    }

    /// The sandbox's refunds of a charge, as (id, amount), oldest first.
    pub async fn sandbox_refunds(
        &self,
        charge_id: &str,
    ) -> Result<Vec<(String, Amount)>, StoreError> {
        let rows = self
            .db()
            .query(
                "SELECT id, amount FROM sandbox_refunds WHERE charge_id = $1
                 ORDER BY created_at, id",
                &values![charge_id],
            )
            .await?;
        rows.iter()
            .map(|row| Ok((row.text(0)?, row.amount(1)?)))
            .collect()
    }
}

async fn select_refund(tx: &mut Tx<'_>, id: &str) -> Result<Option<Refund>, StoreError> {
    let rows = tx
        .query(
            &format!("SELECT {REFUND_COLUMNS} FROM refunds WHERE id = $1"),
            &values![id],
        )
        .await?;
    rows.first().map(refund_row).transpose()
}

/// What the payment's grant can still give back: its spendable credits (not consumed,
/// reserved or expired) less the refunds under way, which are not in the ledger yet.
async fn unspent(
    tx: &mut Tx<'_>,
    payment_id: &str,
    grant_id: &TransferId,
) -> Result<Amount, StoreError> {
    let spendable = tx
        .query(
            "SELECT amount - consumed - expired - reserved FROM grants
             WHERE id = $1 AND expired_at IS NULL",
            &values![grant_id.as_str()],
        )
        .await?
        .first()
        .map(|row| row.int(0))
        .transpose()?
        .unwrap_or(0);
    let under_way = tx
        .query(
            "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM refunds
             WHERE payment_id = $1 AND state IN ('created', 'requesting')",
            &values![payment_id],
        )
        .await?
        .first()
        .map(|row| row.int(0))
        .transpose()?
        .unwrap_or(0);
    Ok(Amount::from_micros(
        spendable.saturating_sub(under_way).max(0),
    ))
}

async fn receipt_notice(
    tx: &mut Tx<'_>,
    refund: &Refund,
    now: Timestamp,
) -> Result<(), StoreError> {
    let available = super::orgs::available(tx, &refund.org_id, false)
        .await?
        .map_or(0, Amount::micros);
    tx.execute(
        "INSERT INTO notices (id, kind, org_id, available, level, state, attempts,
         next_attempt_at, last_error, created_at, sent_at, amount, transfer_id, payment_id,
         reason, retry_at)
         VALUES ($1, $2, $3, $4, 0, 'pending', 0, $5, NULL, $5, NULL, $6, $7, $8, $9, NULL)
         ON CONFLICT (id) DO NOTHING",
        &values![
            creditgate_domain::ids::refund_notice(&refund.id),
            NoticeKind::RefundIssued.as_str(),
            refund.org_id.as_str(),
            available,
            now.unix_ms(),
            refund.amount.micros(),
            refund.transfer_id.clone(),
            refund.payment_id.as_str(),
            Value::from(refund.reason.clone())
        ],
    )
    .await?;
    Ok(())
}
