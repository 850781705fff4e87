//! Outgoing webhooks: endpoints (an org's, or the operator's for every org) and their
//! deliveries. The notice worker fans each due notice out to the matching endpoints (one
//! delivery each, with an id derived from both, so repeating the fan-out adds nothing); the
//! webhook worker sends what is due and marks it like the notice outbox.

use creditgate_domain::Timestamp;

use super::{Notice, WebhookDelivery, WebhookEndpoint};
use crate::codec::Columns;
use crate::sql::{values, Row};
use crate::{Store, StoreError};

const ENDPOINT_COLUMNS: &str = "id, org_id, url, secret, events, created_at, disabled_at";
const ENDPOINT_COLUMNS_E: &str =
    "e.id, e.org_id, e.url, e.secret, e.events, e.created_at, e.disabled_at";
const DELIVERY_COLUMNS: &str = "id, endpoint_id, notice_id, event, payload, state, attempts, \
     next_attempt_at, last_status, last_error, created_at, sent_at";
const DELIVERY_COLUMNS_D: &str = "d.id, d.endpoint_id, d.notice_id, d.event, d.payload, \
     d.state, d.attempts, d.next_attempt_at, d.last_status, d.last_error, d.created_at, d.sent_at";
const DELIVERY_COLUMNS_LEN: usize = 12;

fn endpoint_row(row: &Row) -> Result<WebhookEndpoint, StoreError> {
    Ok(WebhookEndpoint {
        id: row.text(0)?,
        org_id: row.opt_text(1)?,
        url: row.text(2)?,
        secret: row.text(3)?,
        events: row
            .text(4)?
            .split(',')
            .filter(|e| !e.is_empty())
            .map(str::to_owned)
            .collect(),
        created_at: row.time(5)?,
        disabled_at: row.opt_time(6)?,
    })
}

fn delivery_row(row: &Row) -> Result<WebhookDelivery, StoreError> {
    let small = |index: usize, name: &str| {
        u32::try_from(row.int(index)?).map_err(|_| StoreError::Corrupt(name.into()))
    };
    Ok(WebhookDelivery {
        id: row.text(0)?,
        endpoint_id: row.text(1)?,
        notice_id: row.text(2)?,
        event: row.text(3)?,
        payload: row.text(4)?,
        state: row.text(5)?,
        attempts: small(6, "attempts")?,
        next_attempt_at: row.time(7)?,
        last_status: row
            .opt_int(8)?
            .map(|s| u16::try_from(s).map_err(|_| StoreError::Corrupt("last_status".into())))
            .transpose()?,
        last_error: row.opt_text(9)?,
        created_at: row.time(10)?,
        sent_at: row.opt_time(11)?,
    })
}

/// A row of `DELIVERY_COLUMNS_D` then `ENDPOINT_COLUMNS_E`.
fn delivery_with_endpoint(row: &Row) -> Result<(WebhookDelivery, WebhookEndpoint), StoreError> {
    Ok((
        delivery_row(row)?,
        endpoint_row(&row.skip(DELIVERY_COLUMNS_LEN))?,
    ))
}

fn limit_i64(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// The id of `notice`'s delivery to `endpoint_id` (see `creditgate_domain::ids`).
pub fn delivery_id(notice_id: &str, endpoint_id: &str) -> String {
    creditgate_domain::ids::webhook_delivery(notice_id, endpoint_id)
}

impl Store {
    /// Records a new endpoint.
    pub async fn create_webhook_endpoint(
        &self,
        endpoint: &WebhookEndpoint,
    ) -> Result<(), StoreError> {
        self.db()
            .execute(
                &format!(
                    "INSERT INTO webhook_endpoints ({ENDPOINT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, NULL)"
                ),
                &values![
                    endpoint.id.as_str(),
                    endpoint.org_id.clone(),
                    endpoint.url.as_str(),
                    endpoint.secret.as_str(),
                    endpoint.events.join(","),
                    endpoint.created_at.unix_ms(),
                ],
            )
            .await?;
        Ok(())
    }

    /// Every endpoint, newest first, disabled ones included.
    pub async fn webhook_endpoints(&self) -> Result<Vec<WebhookEndpoint>, StoreError> {
        let rows = self
            .db()
            .query(
                &format!(
                    "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints ORDER BY created_at DESC, id DESC"
                ),
                &[],
            )
            .await?;
        rows.iter().map(endpoint_row).collect()
    }

    /// The endpoint with id `id`, disabled or not.
    pub async fn webhook_endpoint(&self, id: &str) -> Result<Option<WebhookEndpoint>, StoreError> {
        let rows = self
            .db()
            .query(
                &format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1"),
                &values![id],
            )
            .await?;
        rows.first().map(endpoint_row).transpose()
    }

    /// Disables an endpoint (once: a second call keeps the first time) and parks its pending
    /// deliveries. `None` if there is no such endpoint.
    pub async fn disable_webhook_endpoint(
        &self,
        id: &str,
        now: Timestamp,
    ) -> Result<Option<WebhookEndpoint>, StoreError> {
        let mut tx = self.db().transaction().await?;
        tx.execute(
            "UPDATE webhook_endpoints SET disabled_at = $2 WHERE id = $1 AND disabled_at IS NULL",
            &values![id, now.unix_ms()],
        )
        .await?;
        tx.execute(
            "UPDATE webhook_deliveries SET state = 'parked', last_error = 'endpoint disabled'
             WHERE endpoint_id = $1 AND state = 'pending'",
            &values![id],
        )
        .await?;
        tx.commit().await?;
        self.webhook_endpoint(id).await
    }

    /// Makes `notice`'s deliveries: one per enabled endpoint of its org (and of the operator)
    /// that receives its kind, carrying `payload`, due at `now`. Each id is derived from the
    /// notice and the endpoint, so calling this again for the same notice adds nothing.
    /// Answers how many were made.
    pub async fn fan_out(
        &self,
        notice: &Notice,
        payload: &str,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let rows = self
            .db()
            .query(
                &format!(
                    "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints
                     WHERE disabled_at IS NULL AND (org_id IS NULL OR org_id = $1) ORDER BY id"
                ),
                &values![notice.org_id.as_str()],
            )
            .await?;
        let mut made = 0;
        for endpoint in rows.iter().map(endpoint_row) {
            let endpoint = endpoint?;
            if !endpoint.receives(&notice.kind) {
                continue;
            }
            made += self
                .db()
                .execute(
                    &format!(
                        "INSERT INTO webhook_deliveries ({DELIVERY_COLUMNS})
                         VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, NULL, NULL, $6, NULL)
                         ON CONFLICT (id) DO NOTHING"
                    ),
                    &values![
                        delivery_id(&notice.id, &endpoint.id),
                        endpoint.id.as_str(),
                        notice.id.as_str(),
                        notice.kind.as_str(),
                        payload,
                        now.unix_ms(),
                    ],
                )
                .await?;
        }
        Ok(made)
    }

    /// Pending deliveries due at `now` to enabled endpoints, oldest first, at most `limit`,
    /// each with its endpoint.
    pub async fn due_webhook_deliveries(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<(WebhookDelivery, WebhookEndpoint)>, StoreError> {
        let rows = self
            .db()
            .query(
                &format!(
                    "SELECT {DELIVERY_COLUMNS_D}, {ENDPOINT_COLUMNS_E}
                     FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
                     WHERE d.state = 'pending' AND d.next_attempt_at <= $1 AND e.disabled_at IS NULL
                     ORDER BY d.next_attempt_at, d.id LIMIT $2"
                ),
                &values![now.unix_ms(), limit_i64(limit)],
            )
            .await?;
        rows.iter().map(delivery_with_endpoint).collect()
    }

    /// Claims the pending deliveries due at `now` to enabled endpoints, oldest first, at
    /// most `limit`, each with its endpoint, for the claim `token` until `lease_until` (see
    /// [`Store::claim_notices`]: the same rule).
    pub async fn claim_webhook_deliveries(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        token: &str,
        limit: usize,
    ) -> Result<Vec<(WebhookDelivery, WebhookEndpoint)>, StoreError> {
        let skip_locked = if self.db().is_postgres() {
            " FOR UPDATE OF d SKIP LOCKED"
        } else {
            ""
        };
        self.db()
            .execute(
                &format!(
                    "WITH picked AS MATERIALIZED (
                         SELECT d.id FROM webhook_deliveries d
                         JOIN webhook_endpoints e ON e.id = d.endpoint_id
                         WHERE d.state = 'pending' AND d.next_attempt_at <= $1
                           AND e.disabled_at IS NULL
                         ORDER BY d.next_attempt_at, d.id LIMIT $4{skip_locked})
                     UPDATE webhook_deliveries SET next_attempt_at = $2, claimed_by = $3
                     WHERE id IN (SELECT id FROM picked)
                       AND state = 'pending' AND next_attempt_at <= $1"
                ),
                &values![
                    now.unix_ms(),
                    lease_until.unix_ms(),
                    token,
                    limit_i64(limit)
                ],
            )
            .await?;
        let rows = self
            .db()
            .query(
                &format!(
                    "SELECT {DELIVERY_COLUMNS_D}, {ENDPOINT_COLUMNS_E}
                     FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
                     WHERE d.claimed_by = $1 AND d.state = 'pending' AND d.next_attempt_at = $2
                     ORDER BY d.created_at, d.id"
                ),
                &values![token, lease_until.unix_ms()],
            )
            .await?;
        rows.iter().map(delivery_with_endpoint).collect()
    }

    /// Marks a delivery sent: the endpoint answered `status` (2xx).
    pub async fn webhook_sent(
        &self,
        id: &str,
        claim: &str,
        status: u16,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let changed = self
            .db()
            .execute(
                "UPDATE webhook_deliveries SET state = 'sent', sent_at = $2, attempts = attempts + 1,
                 last_status = $3, last_error = NULL
                 WHERE id = $1 AND state = 'pending' AND ($4 = '' OR claimed_by = $4)",
                &values![id, now.unix_ms(), i64::from(status), claim],
            )
            .await?;
        Ok(changed == 1)
    }

    /// Records a failed attempt (`status` if the endpoint answered): retried at
    /// `next_attempt_at`, or parked.
    /// (If it is still the claim `claim`'s, as for [`Store::notice_sent`].)
    pub async fn webhook_failed(
        &self,
        id: &str,
        claim: &str,
        status: Option<u16>,
        error: &str,
        next_attempt_at: Timestamp,
        parked: bool,
    ) -> Result<bool, StoreError> {
        let state = if parked { "parked" } else { "pending" };
        let changed = self
            .db()
            .execute(
                "UPDATE webhook_deliveries SET state = $2, attempts = attempts + 1, last_status = $3,
                 last_error = $4, next_attempt_at = $5
                 WHERE id = $1 AND state = 'pending' AND ($6 = '' OR claimed_by = $6)",
                &values![
                    id,
                    state,
                    status.map(i64::from),
                    error,
                    next_attempt_at.unix_ms(),
                    claim
                ],
            )
            .await?;
        Ok(changed == 1)
    }

    /// An endpoint's deliveries (its delivery log), newest first, at most `limit`.
    pub async fn webhook_deliveries(
        &self,
        endpoint_id: &str,
        limit: usize,
    ) -> Result<Vec<WebhookDelivery>, StoreError> {
        let rows = self
            .db()
            .query(
                &format!(
                    "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE endpoint_id = $1
                     ORDER BY created_at DESC, id DESC LIMIT $2"
                ),
                &values![endpoint_id, limit_i64(limit)],
            )
            .await?;
        rows.iter().map(delivery_row).collect()
    }

    /// The delivery with id `id`.
    pub async fn webhook_delivery(&self, id: &str) -> Result<Option<WebhookDelivery>, StoreError> {
        let rows = self
            .db()
            .query(
                &format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = $1"),
                &values![id],
            )
            .await?;
        rows.first().map(delivery_row).transpose()
    }

    /// Sends a delivery again, whatever its state (sent, parked or pending): pending, due at
    /// `now`, attempts reset. The body is the same, so the receiver sees the same event id
    /// again. `None` if there is no such delivery.
    pub async fn resend_webhook(
        &self,
        id: &str,
        now: Timestamp,
    ) -> Result<Option<WebhookDelivery>, StoreError> {
        self.db()
            .execute(
                "UPDATE webhook_deliveries SET state = 'pending', attempts = 0, next_attempt_at = $2,
                 sent_at = NULL WHERE id = $1",
                &values![id, now.unix_ms()],
            )
            .await?;
        self.webhook_delivery(id).await
    }
}
