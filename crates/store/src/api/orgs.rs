//! Orgs: created with their credit account, changed under its lock.

use creditgate_domain::access::{self, Access, AccessPolicy, AccessState, Cause, Situation};
use creditgate_domain::ledger::AccountKind;
use creditgate_domain::rate::RateLimits;
use creditgate_domain::{Amount, Timestamp};

use super::access::{record_decision, stored_access};
use super::{decode_amounts, encode_amounts, NewOrg, Org, OrgPatch, OrgUpdate, Page};
use crate::codec::Columns;
use crate::sql::{values, Row, Tx};
use crate::{Store, StoreError};

pub(super) const ORG_COLUMNS: &str =
    "o.id, o.name, o.billing_emails, o.low_thresholds, o.suspended, \
     o.spend_limit_monthly, a.floor, o.access_state, o.access_level, o.access_changed_at, \
     o.created_at, o.updated_at, o.rate_requests_per_minute, o.rate_input_tokens_per_minute, \
     o.rate_output_tokens_per_minute";

const ORG_FROM: &str = "orgs o JOIN accounts a ON a.id = o.id";

pub(super) fn org_row(row: &Row) -> Result<Org, StoreError> {
    let state = row.text(7)?;
    Ok(Org {
        id: row.text(0)?,
        name: row.text(1)?,
        billing_emails: row
            .text(2)?
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect(),
        low_thresholds: decode_amounts(&row.text(3)?)?,
        suspended: row.int(4)? != 0,
        spend_limit_monthly: row.opt_amount(5)?,
        floor: row.opt_amount(6)?.unwrap_or(Amount::ZERO),
        rate_limits: rate_limits(row, 12)?,
        access: Access {
            state: AccessState::parse(&state)
                .ok_or_else(|| StoreError::Corrupt(format!("access state {state:?}")))?,
            level: u32::try_from(row.int(8)?)
                .map_err(|_| StoreError::Corrupt("access level".into()))?,
        },
        access_changed_at: row.time(9)?,
        created_at: row.time(10)?,
        updated_at: row.time(11)?,
    })
}

/// The three rate-limit columns from `first` on.
pub(super) fn rate_limits(row: &Row, first: usize) -> Result<RateLimits, StoreError> {
    let limit = |i: usize| -> Result<Option<u64>, StoreError> {
        row.opt_int(first + i)?
            .map(|v| u64::try_from(v).map_err(|_| StoreError::Corrupt("rate limit".into())))
            .transpose()
    };
    Ok(RateLimits {
        requests_per_minute: limit(0)?,
        input_tokens_per_minute: limit(1)?,
        output_tokens_per_minute: limit(2)?,
    })
}

/// The three rate limits as column values.
pub(super) fn rate_values(limits: &RateLimits) -> [Option<i64>; 3] {
    let value = |v: Option<u64>| v.map(|v| i64::try_from(v).unwrap_or(i64::MAX));
    [
        value(limits.requests_per_minute),
        value(limits.input_tokens_per_minute),
        value(limits.output_tokens_per_minute),
    ]
}

/// The org's available balance (posted − reserved), `None` when it has no account; with
/// `lock`, its account row is locked first (PostgreSQL `FOR UPDATE`), as the writer does.
pub(crate) async fn available(
    tx: &mut Tx<'_>,
    org_id: &str,
    lock: bool,
) -> Result<Option<Amount>, StoreError> {
    let lock = if lock { tx.for_update() } else { "" };
    let sql = format!("SELECT posted - reserved FROM accounts WHERE id = $1{lock}");
    tx.query(&sql, &values![org_id])
        .await?
        .first()
        .map(|row| row.amount(0))
        .transpose()
}

fn policy(org: &Org, cutoff_min: Amount) -> AccessPolicy {
    AccessPolicy {
        suspended: org.suspended,
        floor: org.floor,
        low_thresholds: org.low_thresholds.clone(),
        cutoff_min,
    }
}

impl Store {
    /// Creates an org and its credit account (zero balances) in one transaction. Returns
    /// `false` if the id is taken.
    pub async fn create_org(&self, org: &NewOrg, now: Timestamp) -> Result<bool, StoreError> {
        let mut tx = self.db().transaction().await?;
        let created = tx
            .execute(
                "INSERT INTO accounts (id, kind, floor, posted, reserved, unbacked, overspend, created_at)
                 VALUES ($1, $2, $3, 0, 0, 0, 0, $4) ON CONFLICT (id) DO NOTHING",
                &values![org.id.as_str(), AccountKind::OrgCredit.as_str(), Some(org.floor.micros()), now.unix_ms()],
            )
            .await?;
        if created == 0 {
            return Ok(false);
        }
        let policy = AccessPolicy {
            suspended: false,
            floor: org.floor,
            low_thresholds: org.low_thresholds.clone(),
            cutoff_min: self.access_cutoff_min(),
        };
        let mut decision = access::decide(&Situation {
            stored: access::OrgAccess::INITIAL,
            policy: &policy,
            posted: Amount::ZERO,
            available: Amount::ZERO,
            refused: None,
            credited: false,
            cause: Cause::Created,
            reload: None,
        });
        let access = decision.stored.access;
        // Every org's history starts with its creation, whatever it derived.
        decision.transition.get_or_insert(access::Transition {
            from: Access::INITIAL,
            to: access,
            cause: Cause::Created,
            available: Amount::ZERO,
            refused_amount: None,
        });
        let rate = rate_values(&org.rate_limits);
        tx.execute(
            "INSERT INTO orgs (id, name, billing_emails, low_thresholds, suspended, spend_limit_monthly,
             access_state, access_level, access_changed_at, created_at, updated_at,
             rate_requests_per_minute, rate_input_tokens_per_minute, rate_output_tokens_per_minute)
             VALUES ($1, $2, $3, $4, 0, $5, $6, $7, $8, $8, $8, $9, $10, $11)",
            &values![
                org.id.as_str(),
                org.name.as_str(),
                org.billing_emails.join("\n"),
                encode_amounts(&org.low_thresholds),
                org.spend_limit_monthly.map(Amount::micros),
                access.state.as_str(),
                i64::from(access.level),
                now.unix_ms(),
                rate[0],
                rate[1],
                rate[2],
            ],
        )
        .await?;
        record_decision(&mut tx, &org.id, &decision, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The org with id `id`.
    pub async fn org(&self, id: &str) -> Result<Option<Org>, StoreError> {
        let rows = self
            .db()
            .query(
                &format!("SELECT {ORG_COLUMNS} FROM {ORG_FROM} WHERE o.id = $1"),
                &values![id],
            )
            .await?;
        rows.first().map(org_row).transpose()
    }

    /// An org's recorded access state and available balance, in one read (the proxy's
    /// headers, on every call's path).
    pub async fn access_now(&self, id: &str) -> Result<Option<(AccessState, Amount)>, StoreError> {
        let rows = self
            .db()
            .query(
                "SELECT o.access_state, a.posted - a.reserved FROM orgs o
                 JOIN accounts a ON a.id = o.id WHERE o.id = $1",
                &values![id],
            )
            .await?;
        rows.first()
            .map(|row| {
                let state = row.text(0)?;
                let state = AccessState::parse(&state)
                    .ok_or_else(|| StoreError::Corrupt(format!("access state {state:?}")))?;
                Ok((state, row.amount(1)?))
            })
            .transpose()
    }

    /// Orgs in id order, after `starting_after`, at most `limit`.
    pub async fn orgs(
        &self,
        limit: usize,
        starting_after: Option<&str>,
    ) -> Result<Page<Org>, StoreError> {
        let fetch = i64::try_from(limit).unwrap_or(i64::MAX - 1) + 1;
        let rows = self
            .db()
            .query(
                &format!(
                    "SELECT {ORG_COLUMNS} FROM {ORG_FROM} WHERE o.id > $1 ORDER BY o.id LIMIT $2"
                ),
                &values![starting_after.unwrap_or(""), fetch],
            )
            .await?;
        let mut items = rows.iter().map(org_row).collect::<Result<Vec<_>, _>>()?;
        let has_more = items.len() > limit;
        items.truncate(limit);
        Ok(Page { items, has_more })
    }

    /// Applies `patch` to org `id` under its account's lock, re-derives its access and
    /// records the transition if it changed.
    pub async fn update_org(
        &self,
        id: &str,
        patch: &OrgPatch,
        now: Timestamp,
    ) -> Result<OrgUpdate, StoreError> {
        let mut tx = self.db().transaction().await?;
        let lock = format!(
            "SELECT posted, reserved FROM accounts WHERE id = $1{}",
            tx.for_update()
        );
        let Some((posted, reserved)) = tx
            .query(&lock, &values![id])
            .await?
            .first()
            .map(|r| Ok::<_, StoreError>((r.amount(0)?, r.amount(1)?)))
            .transpose()?
        else {
            return Ok(OrgUpdate::NotFound);
        };
        let available = posted
            .checked_sub(reserved)
            .ok_or_else(|| StoreError::Corrupt("available balance out of range".into()))?;
        let rows = tx
            .query(
                &format!("SELECT {ORG_COLUMNS} FROM {ORG_FROM} WHERE o.id = $1"),
                &values![id],
            )
            .await?;
        let Some(before) = rows.first().map(org_row).transpose()? else {
            return Ok(OrgUpdate::NotFound);
        };
        let after = patched(&before, patch, now);
        // The floor bounds every available balance (the ledger's invariant): it may not be
        // raised past what the org has now.
        if after.floor > before.floor && after.floor > available {
            return Ok(OrgUpdate::FloorAboveAvailable { available });
        }
        let cause = match (before.suspended, after.suspended) {
            (false, true) => Cause::Suspended,
            (true, false) => Cause::Unsuspended,
            _ => Cause::Settings,
        };
        let mut after = after;
        let stored = stored_access(&mut tx, id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("org {id} has no access row")))?;
        let decision = access::decide(&Situation {
            stored,
            policy: &policy(&after, self.access_cutoff_min()),
            posted,
            available,
            refused: None,
            credited: false,
            cause,
            reload: None,
        });
        after.access = decision.stored.access;
        if decision.transition.is_some() {
            after.access_changed_at = now;
        }
        write_org(&mut tx, &after).await?;
        record_decision(&mut tx, id, &decision, now).await?;
        tx.commit().await?;
        Ok(OrgUpdate::Updated(after))
    }
}

fn patched(org: &Org, patch: &OrgPatch, now: Timestamp) -> Org {
    let mut org = org.clone();
    if let Some(name) = &patch.name {
        org.name = name.clone();
    }
    if let Some(emails) = &patch.billing_emails {
        org.billing_emails = emails.clone();
    }
    if let Some(thresholds) = &patch.low_thresholds {
        org.low_thresholds = thresholds.clone();
    }
    if let Some(floor) = patch.floor {
        org.floor = floor;
    }
    if let Some(suspended) = patch.suspended {
        org.suspended = suspended;
    }
    if let Some(limit) = patch.spend_limit_monthly {
        org.spend_limit_monthly = limit;
    }
    if let Some(limits) = patch.rate_limits {
        org.rate_limits = limits;
    }
    org.updated_at = now;
    org
}

async fn write_org(tx: &mut Tx<'_>, org: &Org) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE accounts SET floor = $2 WHERE id = $1",
        &values![org.id.as_str(), Some(org.floor.micros())],
    )
    .await?;
    let rate = rate_values(&org.rate_limits);
    tx.execute(
        "UPDATE orgs SET name = $2, billing_emails = $3, low_thresholds = $4, suspended = $5,
         spend_limit_monthly = $6, access_state = $7, access_level = $8, access_changed_at = $9,
         updated_at = $10, rate_requests_per_minute = $11, rate_input_tokens_per_minute = $12,
         rate_output_tokens_per_minute = $13 WHERE id = $1",
        &values![
            org.id.as_str(),
            org.name.as_str(),
            org.billing_emails.join("\n"),
            encode_amounts(&org.low_thresholds),
            org.suspended,
            org.spend_limit_monthly.map(Amount::micros),
            org.access.state.as_str(),
            i64::from(org.access.level),
            org.access_changed_at.unix_ms(),
            org.updated_at.unix_ms(),
            rate[0],
            rate[1],
            rate[2],
        ],
    )
    .await?;
    Ok(())
}
