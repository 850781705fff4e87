//! Payments and auto-reload: the rows, and the transactions that move them.
//!
//! Nothing here talks to the provider or writes a balance: the server's payments worker
//! calls the provider between these transactions, and credits through the ledger writer.
//! Every decision is the pure core's (`creditgate_domain::payment::advance`,
//! `creditgate_domain::reload::{decide, after_failure}`), made with the rows read in the
//! transaction that writes its result.

use creditgate_domain::notice::NoticeKind;
use creditgate_domain::payment::{advance, PaymentEvent, PaymentKind, PaymentState};
use creditgate_domain::reload::{
    after_failure, decide, AfterFailure, Decision, FailurePolicy, ReloadAmount, ReloadPolicy,
    ReloadSettings, ReloadState, Skip,
};
use creditgate_domain::{Amount, Timestamp};

use super::Page;
use crate::codec::Columns;
use crate::sql::{values, Row, Tx, Value};
use crate::{Store, StoreError};

/// A charge at the payment provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payment {
    /// `pay_…`: also the provider's idempotency key.
    pub id: String,
    /// The org credited.
    pub org_id: String,
    /// Top-up or auto-reload.
    pub kind: PaymentKind,
    /// `checkout` (the customer pays on a hosted page) or `saved_card` (charged off-session).
    pub method: String,
    /// Where it is.
    pub state: PaymentState,
    /// How much.
    pub amount: Amount,
    /// The currency code.
    pub currency: String,
    /// `sandbox` or `stripe`.
    pub provider: String,
    /// The provider's object (PaymentIntent, Checkout Session, sandbox charge).
    pub provider_ref: Option<String>,
    /// Where the customer acts (checkout page, confirmation page).
    pub action_url: Option<String>,
    /// Where the customer returns after a checkout.
    pub return_url: Option<String>,
    /// Why it failed: a stable code.
    pub failure_code: Option<String>,
    /// Why it failed: for people.
    pub failure_message: Option<String>,
    /// The ledger credit, once succeeded.
    pub transfer_id: Option<String>,
    /// Written at.
    pub created_at: Timestamp,
    /// Last changed at.
    pub updated_at: Timestamp,
}

/// An org's customer at the provider and its saved card.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PaymentProfile {
    /// The provider's customer, if one was made.
    pub customer_id: Option<String>,
    /// The saved card.
    pub payment_method: Option<String>,
    /// How the card is shown ("visa •••• 4242").
    pub card_label: Option<String>,
}

/// An org's auto-reload settings and running state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AutoReload {
    /// The org.
    pub org_id: String,
    /// The settings.
    pub settings: ReloadSettings,
    /// Who agreed to the consent text.
    pub consent_by: String,
    /// When.
    pub consent_at: Timestamp,
    /// Which version of the text.
    pub consent_text_version: String,
    /// Consecutive failed charges.
    pub failures: u32,
    /// After a failure: not before this.
    pub retry_at: Option<Timestamp>,
    /// The last failure's message.
    pub last_failure: Option<String>,
    /// Why it turned itself off, if it did.
    pub disabled_reason: Option<String>,
    /// Last changed.
    pub updated_at: Timestamp,
}

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

/// What [`Store::begin_reload`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReloadBegun {
    /// A reload attempt was written (state `created`).
    Created(Box<Payment>),
    /// No reload now.
    Skipped(Skip),
    /// The org has no auto-reload settings.
    NotConfigured,
}

const PAYMENT_COLUMNS: &str = "id, org_id, kind, method, state, amount, currency, provider, \
     provider_ref, action_url, return_url, failure_code, failure_message, transfer_id, \
     created_at, updated_at";

const RELOAD_COLUMNS: &str = "org_id, enabled, threshold, amount, target, monthly_limit, \
     consent_by, consent_at, consent_text_version, failures, retry_at, last_failure, \
     disabled_reason, updated_at";

fn corrupt(what: &str, text: &str) -> StoreError {
    StoreError::Corrupt(format!("{what} {text:?}"))
}

fn payment_row(row: &Row) -> Result<Payment, StoreError> {
    let kind = row.text(2)?;
    let state = row.text(4)?;
    Ok(Payment {
        id: row.text(0)?,
        org_id: row.text(1)?,
        kind: PaymentKind::parse(&kind).ok_or_else(|| corrupt("payment kind", &kind))?,
        method: row.text(3)?,
        state: PaymentState::parse(&state).ok_or_else(|| corrupt("payment state", &state))?,
        amount: row.amount(5)?,
        currency: row.text(6)?,
        provider: row.text(7)?,
        provider_ref: row.opt_text(8)?,
        action_url: row.opt_text(9)?,
        return_url: row.opt_text(10)?,
        failure_code: row.opt_text(11)?,
        failure_message: row.opt_text(12)?,
        transfer_id: row.opt_text(13)?,
        created_at: row.time(14)?,
        updated_at: row.time(15)?,
    })
}

fn reload_row(row: &Row) -> Result<AutoReload, StoreError> {
    let amount = match (row.opt_amount(3)?, row.opt_amount(4)?) {
        (Some(fixed), None) => ReloadAmount::Fixed(fixed),
        (None, Some(target)) => ReloadAmount::Target(target),
        _ => return Err(StoreError::Corrupt("auto-reload amount and target".into())),
    };
    Ok(AutoReload {
        org_id: row.text(0)?,
        settings: ReloadSettings {
            enabled: row.int(1)? != 0,
            threshold: row.amount(2)?,
            amount,
            monthly_limit: row.amount(5)?,
        },
        consent_by: row.text(6)?,
        consent_at: row.time(7)?,
        consent_text_version: row.text(8)?,
        failures: u32::try_from(row.int(9)?).map_err(|_| corrupt("failures", ""))?,
        retry_at: row.opt_time(10)?,
        last_failure: row.opt_text(11)?,
        disabled_reason: row.opt_text(12)?,
        updated_at: row.time(13)?,
    })
}

fn opt(text: Option<&str>) -> Value {
    Value::from(text.map(str::to_owned))
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

/// Writes a payment notice to the outbox (id from the payment and the kind: made once).
async fn notice(
    tx: &mut Tx<'_>,
    kind: NoticeKind,
    payment: &Payment,
    reason: Option<&str>,
    retry_at: Option<Timestamp>,
    now: Timestamp,
) -> Result<(), StoreError> {
    let available = tx
        .query(
            "SELECT posted - reserved FROM accounts WHERE id = $1",
            &values![payment.org_id.as_str()],
        )
        .await?
        .first()
        .map(|row| row.int(0))
        .transpose()?
        .unwrap_or(0);
    let suffix: String = format!("{}{}", payment.id, kind.as_str())
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(80)
        .collect();
    tx.execute(
        "INSERT INTO notices (id, kind, org_id, available, level, state, attempts,
         next_attempt_at, last_error, created_at, sent_at, amount, transfer_id, payment_id,
         reason, retry_at)
         VALUES ($1, $2, $3, $4, 0, 'pending', 0, $5, NULL, $5, NULL, $6, NULL, $7, $8, $9)
         ON CONFLICT (id) DO NOTHING",
        &values![
            format!("ntc_{suffix}"),
            kind.as_str(),
            payment.org_id.as_str(),
            available,
            now.unix_ms(),
            payment.amount.micros(),
            payment.id.as_str(),
            opt(reason),
            retry_at.map(Timestamp::unix_ms)
        ],
    )
    .await?;
    Ok(())
}

impl Store {
    /// An org's customer and saved card.
    pub async fn payment_profile(&self, org_id: &str) -> Result<PaymentProfile, StoreError> {
        let rows = self
            .db()
            .query(
                "SELECT customer_id, payment_method, card_label FROM payment_profiles WHERE org_id = $1",
                &values![org_id],
            )
            .await?;
        let Some(row) = rows.first() else {
            return Ok(PaymentProfile::default());
        };
        Ok(PaymentProfile {
            customer_id: row.opt_text(0)?,
            payment_method: row.opt_text(1)?,
            card_label: row.opt_text(2)?,
        })
    }

    /// Records an org's customer at the provider (kept if one is already recorded); answers
    /// the one recorded.
    pub async fn set_payment_customer(
        &self,
        org_id: &str,
        customer_id: &str,
        now: Timestamp,
    ) -> Result<String, StoreError> {
        let mut tx = self.db().transaction().await?;
        tx.execute(
            "INSERT INTO payment_profiles (org_id, customer_id, payment_method, card_label, updated_at)
             VALUES ($1, $2, NULL, NULL, $3)
             ON CONFLICT (org_id) DO UPDATE SET customer_id = COALESCE(payment_profiles.customer_id, excluded.customer_id)",
            &values![org_id, customer_id, now.unix_ms()],
        )
        .await?;
        let rows = tx
            .query(
                "SELECT customer_id FROM payment_profiles WHERE org_id = $1",
                &values![org_id],
            )
            .await?;
        tx.commit().await?;
        rows.first()
            .map(|row| row.text(0))
            .transpose()?
            .ok_or_else(|| StoreError::Corrupt("payment profile vanished".into()))
    }

    /// Saves an org's card (the one auto-reload and saved-card top-ups charge).
    pub async fn set_payment_method(
        &self,
        org_id: &str,
        payment_method: &str,
        card_label: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.db()
            .execute(
                "INSERT INTO payment_profiles (org_id, customer_id, payment_method, card_label, updated_at)
                 VALUES ($1, NULL, $2, $3, $4)
                 ON CONFLICT (org_id) DO UPDATE SET payment_method = excluded.payment_method,
                 card_label = excluded.card_label, updated_at = excluded.updated_at",
                &values![org_id, payment_method, card_label, now.unix_ms()],
            )
            .await?;
        Ok(())
    }

    /// An org's auto-reload settings, if it has any.
    pub async fn auto_reload(&self, org_id: &str) -> Result<Option<AutoReload>, StoreError> {
        let rows = self
            .db()
            .query(
                &format!("SELECT {RELOAD_COLUMNS} FROM auto_reloads WHERE org_id = $1"),
                &values![org_id],
            )
            .await?;
        rows.first().map(reload_row).transpose()
    }

    /// Writes an org's auto-reload settings (a change resets the failure count) and marks it
    /// due, so the payments worker evaluates it at once.
    pub async fn put_auto_reload(&self, reload: &AutoReload) -> Result<(), StoreError> {
        let (amount, target) = match reload.settings.amount {
            ReloadAmount::Fixed(amount) => (Some(amount.micros()), None),
            ReloadAmount::Target(target) => (None, Some(target.micros())),
        };
        let settings = &reload.settings;
        self.db()
            .execute(
                "INSERT INTO auto_reloads (org_id, enabled, threshold, amount, target, monthly_limit,
                 consent_by, consent_at, consent_text_version, failures, retry_at, last_failure,
                 disabled_reason, due, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, NULL, NULL, NULL, $2, $10)
                 ON CONFLICT (org_id) DO UPDATE SET enabled = excluded.enabled,
                 threshold = excluded.threshold, amount = excluded.amount, target = excluded.target,
                 monthly_limit = excluded.monthly_limit, consent_by = excluded.consent_by,
                 consent_at = excluded.consent_at, consent_text_version = excluded.consent_text_version,
                 failures = 0, retry_at = NULL, disabled_reason = NULL, due = excluded.due,
                 updated_at = excluded.updated_at",
                &values![
                    reload.org_id.as_str(),
                    settings.enabled,
                    settings.threshold.micros(),
                    amount,
                    target,
                    settings.monthly_limit.micros(),
                    reload.consent_by.as_str(),
                    reload.consent_at.unix_ms(),
                    reload.consent_text_version.as_str(),
                    reload.updated_at.unix_ms()
                ],
            )
            .await?;
        Ok(())
    }

    /// Orgs with auto-reload on that the writer marked due for a decision, or whose retry
    /// time (after a failure or a cooldown) has come, at most `limit`.
    pub async fn due_reloads(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let rows = self
            .db()
            .query(
                "SELECT org_id FROM auto_reloads WHERE enabled = 1
                 AND (due = 1 OR (retry_at IS NOT NULL AND retry_at <= $1))
                 ORDER BY org_id LIMIT $2",
                &values![now.unix_ms(), i64::try_from(limit).unwrap_or(i64::MAX)],
            )
            .await?;
        rows.iter().map(|row| row.text(0)).collect()
    }

    /// Decides, under the org's account lock, whether to reload now (the pure
    /// `reload::decide`), writes the attempt (`created`) if so, and clears the due mark.
    /// The account is locked first, as the ledger writer does, so the balance read is the
    /// latest and a batch that lowers it afterwards marks the org due again.
    pub async fn begin_reload(
        &self,
        org_id: &str,
        payment_id: &str,
        currency: &str,
        provider: &str,
        policy: &ReloadPolicy,
        now: Timestamp,
    ) -> Result<ReloadBegun, StoreError> {
        let mut tx = self.db().transaction().await?;
        let lock = format!(
            "SELECT posted - reserved FROM accounts WHERE id = $1{}",
            tx.for_update()
        );
        let available = tx
            .query(&lock, &values![org_id])
            .await?
            .first()
            .map(|row| row.amount(0))
            .transpose()?;
        let select = format!(
            "SELECT {RELOAD_COLUMNS} FROM auto_reloads WHERE org_id = $1{}",
            tx.for_update()
        );
        let reload = tx
            .query(&select, &values![org_id])
            .await?
            .first()
            .map(reload_row)
            .transpose()?;
        let (Some(available), Some(reload)) = (available, reload) else {
            return Ok(ReloadBegun::NotConfigured);
        };
        let since = now.month_start().unix_ms();
        let rows = tx
            .query(
                // SUM of BIGINT is NUMERIC on PostgreSQL: cast back.
                "SELECT
                   CAST(COALESCE(SUM(CASE WHEN state IN ('created', 'charging')
                     OR (state = 'requires_action' AND created_at >= $3) THEN 1 ELSE 0 END), 0) AS BIGINT),
                   CAST(COALESCE(SUM(CASE WHEN created_at >= $2 AND state IN ('created', 'charging',
                     'requires_action', 'succeeded') THEN amount ELSE 0 END), 0) AS BIGINT),
                   MAX(created_at)
                 FROM payments WHERE org_id = $1 AND kind = 'auto_reload'",
                &values![org_id, since, now.plus_ms(-ACTION_WAIT_MS).unix_ms()],
            )
            .await?;
        let row = rows
            .first()
            .ok_or_else(|| StoreError::Corrupt("no aggregate row".into()))?;
        let state = ReloadState {
            available,
            in_flight: row.int(0)? > 0,
            charged_this_month: row.amount(1)?,
            last_attempt_at: row.opt_time(2)?,
            retry_at: reload.retry_at,
        };
        let decision = decide(&reload.settings, &state, policy, now);
        // When to look again without a new balance change: at the end of a cooldown or a
        // back-off; never once a reload is made or not wanted.
        let retry_at = match decision {
            Decision::Skip(Skip::CoolingDown { until } | Skip::BackingOff { until }) => {
                Some(until.unix_ms())
            }
            Decision::Skip(Skip::InFlight) => reload.retry_at.map(Timestamp::unix_ms),
            _ => None,
        };
        tx.execute(
            "UPDATE auto_reloads SET due = 0, retry_at = $2 WHERE org_id = $1",
            &values![org_id, retry_at],
        )
        .await?;
        let begun = match decision {
            Decision::Skip(skip) => ReloadBegun::Skipped(skip),
            Decision::Charge(amount) => {
                let payment = Payment {
                    id: payment_id.to_owned(),
                    org_id: org_id.to_owned(),
                    kind: PaymentKind::AutoReload,
                    method: "saved_card".to_owned(),
                    state: PaymentState::Created,
                    amount,
                    currency: currency.to_owned(),
                    provider: provider.to_owned(),
                    provider_ref: None,
                    action_url: None,
                    return_url: None,
                    failure_code: None,
                    failure_message: None,
                    transfer_id: None,
                    created_at: now,
                    updated_at: now,
                };
                // No ON CONFLICT: a second reload in flight violates the unique index, and
                // the whole decision rolls back.
                insert_payment(&mut tx, &payment, "").await?;
                ReloadBegun::Created(Box::new(payment))
            }
        };
        tx.commit().await?;
        Ok(begun)
    }

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
        let off_session = after.method == "saved_card";
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

    /// Marks a provider event handled; answers whether it is new (a repeat answers `false`).
    pub async fn record_provider_event(
        &self,
        id: &str,
        kind: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let inserted = self
            .db()
            .execute(
                "INSERT INTO provider_events (id, type, received_at) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO NOTHING",
                &values![id, kind, now.unix_ms()],
            )
            .await?;
        Ok(inserted == 1)
    }

    /// Forgets a provider event (its handling failed; the provider's retry handles it anew).
    pub async fn forget_provider_event(&self, id: &str) -> Result<(), StoreError> {
        self.db()
            .execute("DELETE FROM provider_events WHERE id = $1", &values![id])
            .await?;
        Ok(())
    }

    /// The sandbox's charge of a payment, if it made one: (id, status, amount).
    pub async fn sandbox_charge(
        &self,
        payment_id: &str,
    ) -> Result<Option<SandboxCharge>, StoreError> {
        let rows = self
            .db()
            .query(
                "SELECT id, payment_id, amount, status, payment_method, created_at
                 FROM sandbox_charges WHERE payment_id = $1",
                &values![payment_id],
            )
            .await?;
        rows.first().map(sandbox_row).transpose()
    }

    /// Records the sandbox's charge of a payment once; answers the one recorded (a repeat
    /// answers the first: the sandbox's idempotency).
    pub async fn sandbox_charge_once(
        &self,
        charge: &SandboxCharge,
    ) -> Result<SandboxCharge, StoreError> {
        self.db()
            .execute(
                "INSERT INTO sandbox_charges (id, payment_id, amount, status, payment_method, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (payment_id) DO NOTHING",
                &values![
                    charge.id.as_str(),
                    charge.payment_id.as_str(),
                    charge.amount.micros(),
                    charge.status.as_str(),
                    charge.payment_method.as_str(),
                    charge.created_at.unix_ms()
                ],
            )
            .await?;
        self.sandbox_charge(&charge.payment_id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("sandbox charge vanished".into()))
    }

    /// Changes a sandbox charge's status (a confirmed authentication).
    pub async fn set_sandbox_charge_status(
        &self,
        payment_id: &str,
        status: &str,
    ) -> Result<(), StoreError> {
        self.db()
            .execute(
                "UPDATE sandbox_charges SET status = $2 WHERE payment_id = $1",
                &values![payment_id, status],
            )
            .await?;
        Ok(())
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
        let rows = self
            .db()
            .query(
                "SELECT id, credit_account_id, amount FROM transfers
                 WHERE kind IN ('purchase', 'auto_reload') AND created_at >= $1 AND created_at < $2
                 ORDER BY seq",
                &values![from.unix_ms(), to.unix_ms()],
            )
            .await?;
        rows.iter()
            .map(|row| Ok((row.text(0)?, row.text(1)?, row.amount(2)?)))
            .collect()
    }
}

/// How long a reload waiting for the customer's confirmation blocks the next one.
pub const ACTION_WAIT_MS: i64 = 24 * 60 * 60 * 1000;

/// The sandbox provider's record of a charge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxCharge {
    /// `ch_sandbox_…`.
    pub id: String,
    /// The payment it charges.
    pub payment_id: String,
    /// How much.
    pub amount: Amount,
    /// `succeeded`, `failed` or `requires_action`.
    pub status: String,
    /// The test card.
    pub payment_method: String,
    /// When.
    pub created_at: Timestamp,
}

fn sandbox_row(row: &Row) -> Result<SandboxCharge, StoreError> {
    Ok(SandboxCharge {
        id: row.text(0)?,
        payment_id: row.text(1)?,
        amount: row.amount(2)?,
        status: row.text(3)?,
        payment_method: row.text(4)?,
        created_at: row.time(5)?,
    })
}

async fn insert_payment(
    tx: &mut Tx<'_>,
    payment: &Payment,
    on_conflict: &str,
) -> Result<(), StoreError> {
    tx.execute(
        &format!(
            "INSERT INTO payments ({PAYMENT_COLUMNS}) VALUES
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16){on_conflict}"
        ),
        &values![
            payment.id.as_str(),
            payment.org_id.as_str(),
            payment.kind.as_str(),
            payment.method.as_str(),
            payment.state.as_str(),
            payment.amount.micros(),
            payment.currency.as_str(),
            payment.provider.as_str(),
            payment.provider_ref.clone(),
            payment.action_url.clone(),
            payment.return_url.clone(),
            payment.failure_code.clone(),
            payment.failure_message.clone(),
            payment.transfer_id.clone(),
            payment.created_at.unix_ms(),
            payment.updated_at.unix_ms()
        ],
    )
    .await?;
    Ok(())
}

/// A failed auto-reload: one more consecutive failure, then a retry time or auto-reload
/// turned off (the pure `reload::after_failure`), and the notice saying which.
async fn reload_failed(
    tx: &mut Tx<'_>,
    payment: &Payment,
    policy: &FailurePolicy,
    now: Timestamp,
) -> Result<(), StoreError> {
    let select = format!(
        "SELECT failures FROM auto_reloads WHERE org_id = $1{}",
        tx.for_update()
    );
    let Some(failures) = tx
        .query(&select, &values![payment.org_id.as_str()])
        .await?
        .first()
        .map(|row| row.int(0))
        .transpose()?
    else {
        // No settings row: nothing to back off (the caller's transaction goes on).
        return Ok(());
    };
    let failures = u32::try_from(failures.saturating_add(1)).unwrap_or(u32::MAX);
    let reason = payment.failure_message.as_deref();
    match after_failure(failures, policy, now) {
        AfterFailure::RetryAt(at) => {
            tx.execute(
                "UPDATE auto_reloads SET failures = $2, retry_at = $3, last_failure = $4
                 WHERE org_id = $1",
                &values![
                    payment.org_id.as_str(),
                    i64::from(failures),
                    at.unix_ms(),
                    opt(reason)
                ],
            )
            .await?;
            notice(
                tx,
                NoticeKind::AutoReloadFailed,
                payment,
                reason,
                Some(at),
                now,
            )
            .await
        }
        AfterFailure::Disable => {
            tx.execute(
                "UPDATE auto_reloads SET failures = $2, retry_at = NULL, last_failure = $3,
                 enabled = 0, disabled_reason = 'too_many_failures' WHERE org_id = $1",
                &values![payment.org_id.as_str(), i64::from(failures), opt(reason)],
            )
            .await?;
            notice(
                tx,
                NoticeKind::AutoReloadDisabled,
                payment,
                reason,
                None,
                now,
            )
            .await
        }
    }
}
