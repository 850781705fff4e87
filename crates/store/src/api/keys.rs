//! API keys: stored as a keyed hash of the secret, found by that hash on every request.

use creditgate_domain::{Amount, Timestamp};

use super::orgs::{org_row, rate_limits, rate_values, ORG_COLUMNS};
use super::{ApiKey, Org};
use crate::codec::Columns;
use crate::sql::{values, Row};
use crate::{Store, StoreError};

const KEY_COLUMNS: &str = "id, org_id, name, prefix, spend_limit_monthly, created_at, revoked_at, \
     rate_requests_per_minute, rate_input_tokens_per_minute, rate_output_tokens_per_minute";
const KEY_COLUMNS_K: &str =
    "k.id, k.org_id, k.name, k.prefix, k.spend_limit_monthly, k.created_at, k.revoked_at, \
     k.rate_requests_per_minute, k.rate_input_tokens_per_minute, k.rate_output_tokens_per_minute";
const KEY_COLUMNS_LEN: usize = 10;

fn key_row(row: &Row) -> Result<ApiKey, StoreError> {
    Ok(ApiKey {
        id: row.text(0)?,
        org_id: row.text(1)?,
        name: row.text(2)?,
        prefix: row.text(3)?,
        spend_limit_monthly: row.opt_amount(4)?,
        created_at: row.time(5)?,
        revoked_at: row.opt_time(6)?,
        rate_limits: rate_limits(row, 7)?,
    })
}

impl Store {
    /// Records a new key under the hash of its secret.
    pub async fn create_key(&self, key: &ApiKey, secret_hash: &str) -> Result<(), StoreError> {
        let rate = rate_values(&key.rate_limits);
        self.db()
            .execute(
                "INSERT INTO api_keys (id, org_id, name, prefix, secret_hash, spend_limit_monthly, created_at, revoked_at,
                 rate_requests_per_minute, rate_input_tokens_per_minute, rate_output_tokens_per_minute)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, $8, $9, $10)",
                &values![
                    key.id.as_str(),
                    key.org_id.as_str(),
                    key.name.as_str(),
                    key.prefix.as_str(),
                    secret_hash,
                    key.spend_limit_monthly.map(Amount::micros),
                    key.created_at.unix_ms(),
                    rate[0],
                    rate[1],
                    rate[2],
                ],
            )
            .await?;
        Ok(())
    }

    /// The unrevoked key whose secret hashes to `secret_hash`, with its org: one query per
    /// request, so a revocation or suspension counts from the next request on.
    pub async fn key_by_secret_hash(
        &self,
        secret_hash: &str,
    ) -> Result<Option<(ApiKey, Org)>, StoreError> {
        // One query: the key and its org (with the account's floor).
        let rows = self
            .db()
            .query(
                &format!(
                    "SELECT {KEY_COLUMNS_K}, {ORG_COLUMNS} FROM api_keys k JOIN orgs o ON o.id = k.org_id JOIN accounts a ON a.id = o.id
                     WHERE k.secret_hash = $1 AND k.revoked_at IS NULL"
                ),
                &values![secret_hash],
            )
            .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        Ok(Some((key_row(row)?, org_row(&row.skip(KEY_COLUMNS_LEN))?)))
    }

    /// The key with id `id`, revoked or not.
    pub async fn key(&self, id: &str) -> Result<Option<ApiKey>, StoreError> {
        let rows = self
            .db()
            .query(
                &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1"),
                &values![id],
            )
            .await?;
        rows.first().map(key_row).transpose()
    }

    /// An org's keys, newest first, revoked ones included.
    pub async fn keys(&self, org_id: &str) -> Result<Vec<ApiKey>, StoreError> {
        let rows = self
            .db()
            .query(
                &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE org_id = $1 ORDER BY created_at DESC, id DESC"),
                &values![org_id],
            )
            .await?;
        rows.iter().map(key_row).collect()
    }

    /// Revokes a key (once: a second call keeps the first time). `None` if there is no
    /// such key.
    pub async fn revoke_key(&self, id: &str, now: Timestamp) -> Result<Option<ApiKey>, StoreError> {
        self.db()
            .execute(
                "UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
                &values![id, now.unix_ms()],
            )
            .await?;
        self.key(id).await
    }
}
