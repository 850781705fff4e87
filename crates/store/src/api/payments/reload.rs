//! Auto-reload: an org's settings and due marks, the decision under the account's lock
//! (the pure `reload::decide`) that writes the attempt, and what a failed attempt does
//! (the pure `reload::after_failure`).

use creditgate_domain::access::AccessState;
use creditgate_domain::notice::NoticeKind;
use creditgate_domain::payment::{PaymentKind, PaymentMethod, PaymentState};
use creditgate_domain::reload::{
    after_failure, decide, AfterFailure, Decision, FailurePolicy, ReloadAmount, ReloadPolicy,
    ReloadSettings, ReloadState, Skip,
};
use creditgate_domain::Timestamp;

use super::{corrupt, insert_payment, notice, opt, Payment};
use crate::api::access::tell_turned_off_after_reload;
use crate::codec::Columns;
use crate::sql::{values, Row, Tx};
use crate::{Store, StoreError};

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

/// How long a reload waiting for the customer's confirmation blocks the next one.
pub const ACTION_WAIT_MS: i64 = 24 * 60 * 60 * 1000;

const RELOAD_COLUMNS: &str = "org_id, enabled, threshold, amount, target, monthly_limit, \
     consent_by, consent_at, consent_text_version, failures, retry_at, last_failure, \
     disabled_reason, updated_at";

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

impl Store {
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
                 AND (due <> 0 OR (retry_at IS NOT NULL AND retry_at <= $1))
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
        let available = super::super::orgs::available(&mut tx, org_id, true).await?;
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
        let refused = crate::api::access::stored_access(&mut tx, org_id)
            .await?
            .is_some_and(|stored| stored.access.state == AccessState::Depleted && stored.cut_off);
        let state = ReloadState {
            refused,
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
            Decision::Skip(skip) => {
                // A refused org that this skip leaves off is told now, with why.
                if let Some(reason) = skip.refused_reason().filter(|_| refused) {
                    tell_turned_off_after_reload(&mut tx, org_id, reason, now).await?;
                }
                ReloadBegun::Skipped(skip)
            }
            Decision::Charge(amount) => {
                let payment = Payment {
                    id: payment_id.to_owned(),
                    org_id: org_id.to_owned(),
                    kind: PaymentKind::AutoReload,
                    method: PaymentMethod::SavedCard,
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
}

/// A failed auto-reload: one more consecutive failure, then a retry time or auto-reload
/// turned off (the pure `reload::after_failure`), and the notice saying which.
pub(super) async fn reload_failed(
    tx: &mut Tx<'_>,
    payment: &Payment,
    policy: &FailurePolicy,
    now: Timestamp,
) -> Result<(), StoreError> {
    // A refused org that this failure leaves off is told now, with why (the account is
    // locked before the settings row, in the order `begin_reload` takes them).
    tell_turned_off_after_reload(
        tx,
        &payment.org_id,
        payment
            .failure_message
            .as_deref()
            .unwrap_or("Auto-reload could not charge your card."),
        now,
    )
    .await?;
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
