//! Payments' rows: written (a top-up), read, listed, queued for the worker, and moved on
//! a provider's event, with the transition and the notices that follow, in one transaction.

use creditgate_domain::notice::NoticeKind;
use creditgate_domain::payment::{advance, PaymentEvent, PaymentKind, PaymentMethod, PaymentState};
use creditgate_domain::reload::FailurePolicy;
use creditgate_domain::Timestamp;

use super::reload::reload_failed;
use super::{insert_payment, notice, opt, payment_row, Payment, PAYMENT_COLUMNS};
use crate::api::Page;
use crate::sql::{values, Tx};
use crate::{Store, StoreError};

/// What the provider said, with what to record beside the state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PaymentDetails {
    /// The provider's object.
    pub provider_ref: Option<String>,
    /// Where the customer acts.
    pub action_url: Option<String>,
    /// A failure's code.
    pub failure_code: Option<String>,
    /// A failure's message.
    pub failure_message: Option<String>,
    /// The ledger credit of a success.
    pub transfer_id: Option<String>,
}

/// What [`Store::advance_payment`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Advanced {
    /// The payment moved; here it is after.
    Moved(Box<Payment>),
    /// The event did not apply (duplicate or out of order); here it is, unchanged.
    Unchanged(Box<Payment>),
    /// No such payment.
    NotFound,
}

/// Writes a payment's transition and, for the notices the payments issue adds, its outbox
/// row, in `tx`.
async fn record(
    tx: &mut Tx<'_>,
    before: &Payment,
    after: &Payment,
    now: Timestamp,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO payment_transitions (payment_id, from_state, to_state, code, at)
         VALUES ($1, $2, $3, $4, $5)",
        &values![
            after.id.as_str(),
            before.state.as_str(),
            after.state.as_str(),
            opt(after.failure_code.as_deref()),
            now.unix_ms()
        ],
    )
    .await?;
    Ok(())
}

impl Store {
    /// Writes a new payment (a top-up) in state `created`, unless one with its id exists
    /// (two requests with the same `Idempotency-Key` make one payment).
    pub async fn insert_payment(&self, payment: &Payment) -> Result<(), StoreError> {
        let mut tx = self.db().transaction().await?;
        insert_payment(&mut tx, payment, " ON CONFLICT (id) DO NOTHING").await?;
        tx.commit().await
    }

    /// A payment.
    pub async fn payment(&self, id: &str) -> Result<Option<Payment>, StoreError> {
        let rows = self
            .db()
            .query(
                &format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE id = $1"),
                &values![id],
            )
            .await?;
        rows.first().map(payment_row).transpose()
    }

    /// An org's payments, newest first, cursor-paginated by id.
    pub async fn payments(
        &self,
        org_id: &str,
        limit: usize,
        starting_after: Option<&str>,
    ) -> Result<Option<Page<Payment>>, StoreError> {
        let fetch = i64::try_from(limit).unwrap_or(i64::MAX - 1) + 1;
        let rows = match starting_after {
            None => {
                self.db()
                    .query(
                        &format!(
                            "SELECT {PAYMENT_COLUMNS} FROM payments WHERE org_id = $1
                             ORDER BY created_at DESC, id DESC LIMIT $2"
                        ),
                        &values![org_id, fetch],
                    )
                    .await?
            }
            Some(after) => {
                let Some(cursor) = self.payment(after).await?.filter(|p| p.org_id == org_id) else {
                    return Ok(None);
                };
                self.db()
                    .query(
                        &format!(
                            "SELECT {PAYMENT_COLUMNS} FROM payments WHERE org_id = $1
                             AND (created_at < $2 OR (created_at = $2 AND id < $3))
                             ORDER BY created_at DESC, id DESC LIMIT $4"
                        ),
                        &values![org_id, cursor.created_at.unix_ms(), after, fetch],
                    )
                    .await?
            }
        };
        let mut items = rows
            .iter()
            .map(payment_row)
            .collect::<Result<Vec<_>, _>>()?;
        let has_more = items.len() > limit;
        items.truncate(limit);
        Ok(Some(Page { items, has_more }))
    }

    /// Payments in `states` last changed at or before `before`, oldest first, at most
    /// `limit` (the worker's queue: `created` to charge, stale `charging` to resume).
    pub async fn payments_in(
        &self,
        states: &[PaymentState],
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<Payment>, StoreError> {
        let names: Vec<String> = states.iter().map(|s| format!("'{}'", s.as_str())).collect();
        let rows = self
            .db()
            .query(
                &format!(
                    "SELECT {PAYMENT_COLUMNS} FROM payments WHERE state IN ({}) AND updated_at <= $1
                     ORDER BY updated_at, id LIMIT $2",
                    names.join(", ")
                ),
                &values![before.unix_ms(), i64::try_from(limit).unwrap_or(i64::MAX)],
            )
            .await?;
        rows.iter().map(payment_row).collect()
    }

    /// Moves a payment on `event` (the pure `payment::advance`) and records what follows,
    /// in one transaction: the transition; for an auto-reload, its failure count, back-off
    /// or turning off, and success reset; the notices (auto-reload failed or turned off,
    /// payment needs confirmation). An event that does not apply changes nothing.
    pub async fn advance_payment(
        &self,
        id: &str,
        event: PaymentEvent,
        details: &PaymentDetails,
        failures: &FailurePolicy,
        now: Timestamp,
    ) -> Result<Advanced, StoreError> {
        let mut tx = self.db().transaction().await?;
        let select = format!(
            "SELECT {PAYMENT_COLUMNS} FROM payments WHERE id = $1{}",
            tx.for_update()
        );
        let Some(before) = tx
            .query(&select, &values![id])
            .await?
            .first()
            .map(payment_row)
            .transpose()?
        else {
            return Ok(Advanced::NotFound);
        };
        let Some(state) = advance(before.state, event) else {
            return Ok(Advanced::Unchanged(Box::new(before)));
        };
        let mut after = before.clone();
        after.state = state;
        after.updated_at = now;
        let keep = |new: &Option<String>, old: &Option<String>| new.clone().or_else(|| old.clone());
        after.provider_ref = keep(&details.provider_ref, &before.provider_ref);
        after.action_url = keep(&details.action_url, &before.action_url);
        after.transfer_id = keep(&details.transfer_id, &before.transfer_id);
        if state == PaymentState::Failed {
            after.failure_code = details.failure_code.clone();
            after.failure_message = details.failure_message.clone();
        }
        tx.execute(
            "UPDATE payments SET state = $2, provider_ref = $3, action_url = $4,
             failure_code = $5, failure_message = $6, transfer_id = $7, updated_at = $8
             WHERE id = $1",
            &values![
                after.id.as_str(),
                after.state.as_str(),
                after.provider_ref.clone(),
                after.action_url.clone(),
                after.failure_code.clone(),
                after.failure_message.clone(),
                after.transfer_id.clone(),
                now.unix_ms()
            ],
        )
        .await?;
        record(&mut tx, &before, &after, now).await?;
        let off_session = after.method == PaymentMethod::SavedCard;
        match (state, after.kind) {
            (PaymentState::Failed, PaymentKind::AutoReload) => {
                reload_failed(&mut tx, &after, failures, now).await?;
            }
            (PaymentState::Succeeded, PaymentKind::AutoReload) => {
                tx.execute(
                    "UPDATE auto_reloads SET failures = 0, retry_at = NULL, last_failure = NULL
                     WHERE org_id = $1",
                    &values![after.org_id.as_str()],
                )
                .await?;
            }
            (PaymentState::RequiresAction, _) if off_session => {
                if after.kind == PaymentKind::AutoReload {
                    crate::api::access::tell_turned_off_after_reload(
                        &mut tx,
                        &after.org_id,
                        "Your bank asks you to confirm the auto-reload payment before your card is charged.",
                        now,
                    )
                    .await?;
                }
                notice(
                    &mut tx,
                    NoticeKind::PaymentActionRequired,
                    &after,
                    None,
                    None,
                    now,
                )
                .await?;
            }
            _ => {}
        }
        tx.commit().await?;
        Ok(Advanced::Moved(Box::new(after)))
    }

    /// Points a payment waiting for the customer at a new page (a confirmation moved to a
    /// checkout); its state does not change. Answers it after.
    pub async fn set_payment_action(
        &self,
        id: &str,
        provider_ref: Option<&str>,
        action_url: &str,
        now: Timestamp,
    ) -> Result<Option<Payment>, StoreError> {
        self.db()
            .execute(
                "UPDATE payments SET provider_ref = COALESCE($2, provider_ref), action_url = $3,
                 updated_at = $4 WHERE id = $1 AND state = 'requires_action'",
                &values![id, opt(provider_ref), action_url, now.unix_ms()],
            )
            .await?;
        self.payment(id).await
    }
}
