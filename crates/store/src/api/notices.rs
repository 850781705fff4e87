//! The notice outbox: rows written with the transition that caused them (see `access.rs`),
//! read and marked by the notice worker; and the one kind written on a schedule, credits
//! about to expire ([`Store::warn_expiring_grants`]).

use creditgate_domain::notice::NoticeKind;
use creditgate_domain::{Amount, Timestamp};

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

/// Grants of orgs that expire in `($1, $2]`, are not expired and still hold credits, with
/// no warning yet (a warning names its grant in `transfer_id`: a grant's id is the id of the
/// transfer that made it). The NOT EXISTS keeps warned grants from filling the batch.
const EXPIRING_GRANTS: &str = "SELECT g.id, g.account_id, g.amount - g.consumed - g.expired,
     g.expires_at, a.posted - a.reserved
     FROM grants g JOIN orgs o ON o.id = g.account_id JOIN accounts a ON a.id = g.account_id
     WHERE g.expired_at IS NULL AND g.expires_at IS NOT NULL
       AND g.expires_at > $1 AND g.expires_at <= $2
       AND g.amount - g.consumed - g.expired > 0
       AND NOT EXISTS (SELECT 1 FROM notices n WHERE n.org_id = g.account_id
                       AND n.kind = $4 AND n.transfer_id = g.id)
     ORDER BY g.expires_at, g.id LIMIT $3";

/// A warning's row: the grant's remaining credits in `amount`, its expiry in `retry_at`.
/// A process racing on the same grant writes the same id, and one insert does nothing.
const INSERT_WARNING: &str = "INSERT INTO notices (id, kind, org_id, available, level, state,
     attempts, next_attempt_at, last_error, created_at, sent_at, amount, transfer_id,
     payment_id, reason, retry_at, member_id, secret)
     VALUES ($1, $2, $3, $4, 0, 'pending', 0, $5, NULL, $5, NULL, $6, $7, NULL, NULL, $8, NULL, NULL)
     ON CONFLICT (id) DO NOTHING";

impl Store {
    /// Writes the notice of the first call of a period refused for a spend limit: one per org,
    /// limit (the org's, or key `key_id`'s) and calendar month, whatever the number of
    /// refusals or processes racing (the id names all three). The limit is in `amount`, when
    /// it resets in `retry_at`.
    pub async fn spend_limit_reached(
        &self,
        org_id: &str,
        key_id: Option<&str>,
        limit: Amount,
        resets_at: Timestamp,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let id = creditgate_domain::ids::spend_limit_notice(org_id, key_id, now.month_number());
        self.db()
            .execute(
                "INSERT INTO notices (id, kind, org_id, available, level, state, attempts,
                 next_attempt_at, last_error, created_at, sent_at, amount, transfer_id, payment_id,
                 reason, retry_at, member_id, secret)
                 VALUES ($1, $2, $3, 0, 0, 'pending', 0, $4, NULL, $4, NULL, $5, NULL, NULL, NULL,
                 $6, NULL, NULL) ON CONFLICT (id) DO NOTHING",
                &values![
                    id,
                    NoticeKind::SpendLimitReached.as_str(),
                    org_id,
                    now.unix_ms(),
                    limit.micros(),
                    resets_at.unix_ms()
                ],
            )
            .await?;
        Ok(())
    }

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

    /// Claims the pending notices due at `now`, oldest first, at most `limit`, for the
    /// claim `token` until `lease_until`: in one statement, so that workers on several nodes
    /// never claim the same notice (PostgreSQL skips rows another claim has locked; SQLite's
    /// writes are serial). The rows are picked in a materialized CTE: as a plain `IN
    /// (SELECT … LIMIT)` PostgreSQL may run the subquery more than once and claim more than
    /// `limit` (the store test caught it). A claimed notice is due again at `lease_until` unless it is
    /// marked sent or failed before; that is how a dead node's claims come back.
    pub async fn claim_notices(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        token: &str,
        limit: usize,
    ) -> Result<Vec<Notice>, StoreError> {
        let skip_locked = if self.db().is_postgres() {
            " FOR UPDATE SKIP LOCKED"
        } else {
            ""
        };
        let mut rows = self
            .db()
            .query(
                &format!(
                    "WITH picked AS MATERIALIZED (
                         SELECT id FROM notices WHERE state = 'pending' AND next_attempt_at <= $1
                         ORDER BY next_attempt_at, id LIMIT $4{skip_locked})
                     UPDATE notices SET next_attempt_at = $2, claimed_by = $3
                     WHERE id IN (SELECT id FROM picked)
                       AND state = 'pending' AND next_attempt_at <= $1
                     RETURNING {NOTICE_COLUMNS}"
                ),
                &values![
                    now.unix_ms(),
                    lease_until.unix_ms(),
                    token,
                    limit_i64(limit)
                ],
            )
            .await?
            .iter()
            .map(notice_row)
            .collect::<Result<Vec<Notice>, StoreError>>()?;
        rows.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(rows)
    }

    /// Marks a notice delivered, if it is still the claim `claim`'s (`""`: whoever's).
    /// Answers whether it was: a claim whose lease ran out may have passed the notice on.
    pub async fn notice_sent(
        &self,
        id: &str,
        claim: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let changed = self
            .db()
            .execute(
                "UPDATE notices SET state = 'sent', sent_at = $2, attempts = attempts + 1, last_error = NULL, secret = NULL
                 WHERE id = $1 AND state = 'pending' AND ($3 = '' OR claimed_by = $3)",
                &values![id, now.unix_ms(), claim],
            )
            .await?;
        Ok(changed == 1)
    }

    /// Records a failed attempt: retried at `next_attempt_at`, or parked.
    /// (If it is still the claim `claim`'s, as for [`Store::notice_sent`].)
    pub async fn notice_failed(
        &self,
        id: &str,
        claim: &str,
        error: &str,
        next_attempt_at: Timestamp,
        parked: bool,
    ) -> Result<bool, StoreError> {
        let state = if parked { "parked" } else { "pending" };
        let changed = self
            .db()
            .execute(
                "UPDATE notices SET state = $2, attempts = attempts + 1, last_error = $3, next_attempt_at = $4
                 WHERE id = $1 AND state = 'pending' AND ($5 = '' OR claimed_by = $5)",
                &values![id, state, error, next_attempt_at.unix_ms(), claim],
            )
            .await?;
        Ok(changed == 1)
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

    /// Writes a `credits.expiring` notice for each grant of an org that expires after `now`
    /// and at most `lead_ms` later, is not expired and still holds credits (remaining =
    /// amount − consumed − expired > 0), once per grant: at most `limit` grants, soonest
    /// first, in one transaction. The notice carries the remaining credits in `amount`, the
    /// grant's id in `transfer_id` and its expiry in `retry_at`. Answers how many it wrote.
    ///
    /// The grants are read before the transaction, which is opened only when there is
    /// something to write (on SQLite a write transaction takes the database's write lock);
    /// a grant read by two processes at once gets the same notice id from both, and the
    /// second insert does nothing.
    pub async fn warn_expiring_grants(
        &self,
        now: Timestamp,
        lead_ms: u64,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let lead_ms = i64::try_from(lead_ms).unwrap_or(i64::MAX);
        let until = now.unix_ms().saturating_add(lead_ms);
        let kind = NoticeKind::CreditsExpiring.as_str();
        let rows = self
            .db()
            .query(
                EXPIRING_GRANTS,
                &values![now.unix_ms(), until, limit_i64(limit), kind],
            )
            .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut tx = self.db().transaction().await?;
        let mut written = 0;
        for row in &rows {
            let grant_id = row.text(0)?;
            let org_id = row.text(1)?;
            written += tx
                .execute(
                    INSERT_WARNING,
                    &values![
                        creditgate_domain::ids::expiry_warning_notice(&grant_id),
                        kind,
                        org_id,
                        row.int(4)?,
                        now.unix_ms(),
                        row.int(2)?,
                        grant_id.as_str(),
                        row.int(3)?
                    ],
                )
                .await?;
        }
        tx.commit().await?;
        Ok(usize::try_from(written).unwrap_or(usize::MAX))
    }
}

#[cfg(test)]
mod tests {
    use creditgate_domain::Amount;

    use super::*;
    use crate::api::NewOrg;

    const NOW: Timestamp = Timestamp::from_unix_ms(1_790_000_000_000);
    const LEAD_MS: u64 = 7 * 86_400_000;
    const ORG: &str = "org_expiring";

    fn at(offset_ms: i64) -> Timestamp {
        Timestamp::from_unix_ms(NOW.unix_ms() + offset_ms)
    }

    /// A grant row as the ledger leaves it (written directly: only the selection is tested).
    struct Grant {
        id: &'static str,
        expires_at: Option<Timestamp>,
        amount: i64,
        consumed: i64,
        reserved: i64,
        expired: i64,
        expired_at: Option<Timestamp>,
    }

    const fn grant(id: &'static str, expires_in_ms: i64) -> Grant {
        Grant {
            id,
            expires_at: Some(Timestamp::from_unix_ms(1_790_000_000_000 + expires_in_ms)),
            amount: 10_000_000,
            consumed: 0,
            reserved: 0,
            expired: 0,
            expired_at: None,
        }
    }

    async fn insert(store: &Store, grant: &Grant) {
        store
            .db()
            .execute(
                "INSERT INTO grants (id, account_id, origin, priority, expires_at, amount, consumed,
                 reserved, expired, expired_at, created_at, open)
                 VALUES ($1, $2, 'promotional', 100, $3, $4, $5, $6, $7, $8, $9, TRUE)",
                &values![
                    grant.id,
                    ORG,
                    grant.expires_at.map(Timestamp::unix_ms),
                    grant.amount,
                    grant.consumed,
                    grant.reserved,
                    grant.expired,
                    grant.expired_at.map(Timestamp::unix_ms),
                    NOW.unix_ms()
                ],
            )
            .await
            .expect("the grant is written");
    }

    #[tokio::test]
    async fn expiring_grants_are_warned_about_once_each() {
        let lead = i64::try_from(LEAD_MS).unwrap();
        // (grant, warned with this amount)
        let table: [(Grant, Option<i64>); 9] = [
            (grant("txn_soon", 3_600_000), Some(10_000_000)),
            (grant("txn_at_lead", lead), Some(10_000_000)),
            (grant("txn_past_lead", lead + 1), None),
            // Due now: the expiry step expires it; too late to warn.
            (grant("txn_due", 0), None),
            (
                Grant {
                    consumed: 2_500_000,
                    expired: 500_000,
                    ..grant("txn_partly_used", 60_000)
                },
                Some(7_000_000),
            ),
            (
                Grant {
                    consumed: 10_000_000,
                    ..grant("txn_used_up", 60_000)
                },
                None,
            ),
            // Reserved credits are not consumed yet: they count.
            (
                Grant {
                    reserved: 10_000_000,
                    ..grant("txn_reserved", 60_000)
                },
                Some(10_000_000),
            ),
            (
                Grant {
                    expired_at: Some(NOW),
                    ..grant("txn_expired", 60_000)
                },
                None,
            ),
            (
                Grant {
                    expires_at: None,
                    ..grant("txn_forever", 0)
                },
                None,
            ),
        ];
        for database in crate::testing::all().await {
            let store = database.open().await.expect("the database opens");
            let org = NewOrg {
                id: ORG.into(),
                name: "Expiring".into(),
                billing_emails: vec!["a@x.com".into()],
                low_thresholds: vec![],
                floor: Amount::ZERO,
                spend_limit_monthly: None,
                rate_limits: Default::default(),
            };
            assert!(store.create_org(&org, at(-1)).await.unwrap());
            store
                .db()
                .execute(
                    "UPDATE accounts SET posted = 42000000, reserved = 2000000 WHERE id = $1",
                    &values![ORG],
                )
                .await
                .unwrap();
            for (grant, _) in &table {
                insert(&store, grant).await;
            }
            let expected: Vec<(&str, i64)> = table
                .iter()
                .filter_map(|(grant, warned)| warned.map(|amount| (grant.id, amount)))
                .collect();

            // A batch of one takes the soonest; the next step the rest; then nothing.
            assert_eq!(
                store.warn_expiring_grants(NOW, LEAD_MS, 1).await.unwrap(),
                1
            );
            let rest = expected.len() - 1;
            assert_eq!(
                store.warn_expiring_grants(NOW, LEAD_MS, 100).await.unwrap(),
                rest
            );
            assert_eq!(
                store.warn_expiring_grants(NOW, LEAD_MS, 100).await.unwrap(),
                0
            );
            // A millisecond later, the grant just past the lead time is inside it.
            let later = store.warn_expiring_grants(at(1), LEAD_MS, 100).await;
            assert_eq!(later.unwrap(), 1);

            let notices = store.notices(None, Some(ORG), 100).await.unwrap();
            let mut warned: Vec<(String, i64)> = notices
                .iter()
                .filter(|n| n.kind == "credits.expiring")
                .map(|n| {
                    (
                        n.transfer_id.clone().expect("the grant"),
                        n.amount.expect("the amount").micros(),
                    )
                })
                .collect();
            warned.sort();
            let mut expected_sorted: Vec<(String, i64)> = expected
                .iter()
                .chain(&[("txn_past_lead", 10_000_000)])
                .map(|(id, amount)| ((*id).to_owned(), *amount))
                .collect();
            expected_sorted.sort();
            assert_eq!(warned, expected_sorted, "{}", database.url);

            let soon = store
                .notice("ntc_exptxnsoon")
                .await
                .unwrap()
                .expect("by id");
            assert_eq!(soon.kind, "credits.expiring");
            assert_eq!(soon.state, "pending");
            assert_eq!(soon.next_attempt_at, NOW);
            assert_eq!(soon.available.micros(), 40_000_000);
            assert_eq!(soon.retry_at, Some(at(3_600_000)));
            assert_eq!(soon.transfer_id.as_deref(), Some("txn_soon"));
            assert_eq!((soon.member_id, soon.secret), (None, None));
            // No lead time: nothing to warn of.
            assert_eq!(store.warn_expiring_grants(NOW, 0, 100).await.unwrap(), 0);
        }
    }
}
