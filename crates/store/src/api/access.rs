//! Access transitions: derived and recorded in the transaction that moves the balance (the
//! writer's batch) or the setting (an org update), so none is missed or recorded twice.

use creditgate_domain::access::{self, Access, AccessPolicy, AccessState, Cause, Transition};
use creditgate_domain::ledger::{Account, AccountKind, ChangeSet, Transfer};
use creditgate_domain::notice::NoticeKind;
use creditgate_domain::{Amount, Timestamp};

use super::decode_amounts;
use crate::codec::Columns;
use crate::sql::{values, Row, Tx};
use crate::{Store, StoreError};

/// A recorded change of an org's access.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessTransitionRecord {
    /// Order of recording.
    pub seq: i64,
    /// The org.
    pub org_id: String,
    /// Before.
    pub from: Access,
    /// After.
    pub to: Access,
    /// Why (`balance`, `suspended`, `unsuspended`, `settings`, `created`).
    pub cause: String,
    /// The available balance after the change.
    pub available: Amount,
    /// When.
    pub at: Timestamp,
}

const INSERT_TRANSITION: &str = "INSERT INTO access_transitions (org_id, from_state, to_state, \
     from_level, to_level, cause, available, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING seq";
/// A receipt's outbox row: the amount and the transfer; made once per transfer.
const INSERT_RECEIPT: &str = "INSERT INTO notices (id, kind, org_id, available, level, state, \
     attempts, next_attempt_at, last_error, created_at, sent_at, amount, transfer_id) \
     VALUES ($1, $2, $3, $4, 0, 'pending', 0, $5, NULL, $5, NULL, $6, $7) ON CONFLICT (id) DO NOTHING";

/// Whether an org was ever told its access was turned off.
const TURNED_OFF_BEFORE: &str =
    "SELECT COUNT(*) FROM notices WHERE org_id = $1 AND kind = 'access.turned_off'";
const RESTORED: &str = "access.restored";

/// The outbox row of a transition's notice (see [`notice_of`]).
const INSERT_NOTICE: &str = "INSERT INTO notices (id, kind, org_id, available, level, state, \
     attempts, next_attempt_at, last_error, created_at, sent_at) \
     VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, NULL, $6, NULL)";

/// The notice a recorded transition causes: its id (from the transition's sequence number,
/// so it is made once) and kind.
///
/// "Access restored" needs access to have been turned off before: a new org starts depleted,
/// and its first credits restore nothing. The callers check that with [`TURNED_OFF_BEFORE`].
fn notice_of(seq: i64, transition: &Transition) -> Option<(String, &'static str)> {
    creditgate_domain::notice::for_transition(transition)
        .map(|kind| (format!("ntc_{seq}"), kind.as_str()))
}

/// A receipt's notice id from its transfer id's letters and digits (`suffix`). A suffix of
/// digits alone takes a `t`: `ntc_<digits>` is a transition's notice (`ntc_<seq>`, inserted
/// without `ON CONFLICT`), and a receipt there would fail every batch that reached that seq.
/// The service's own transfer ids (`txn_…`) never need it.
fn receipt_id(suffix: &str) -> String {
    if suffix.bytes().all(|b| b.is_ascii_digit()) {
        format!("ntc_t{suffix}")
    } else {
        format!("ntc_{suffix}")
    }
}

fn notice_values(
    id: &str,
    kind: &str,
    org_id: &str,
    transition: &Transition,
    now: Timestamp,
) -> Vec<crate::sql::Value> {
    values![
        id,
        kind,
        org_id,
        transition.available.micros(),
        i64::from(transition.to.level),
        now.unix_ms(),
    ]
    .to_vec()
}
const UPDATE_ACCESS: &str =
    "UPDATE orgs SET access_state = $2, access_level = $3, access_changed_at = $4 WHERE id = $1";
const SELECT_ACCESS: &str =
    "SELECT o.low_thresholds, o.suspended, o.access_state, o.access_level, \
     r.threshold, r.due FROM orgs o LEFT JOIN auto_reloads r ON r.org_id = o.id AND r.enabled = 1 \
     WHERE o.id = $1";
/// Marks an org due for an auto-reload decision (see `payments.rs`).
const MARK_RELOAD_DUE: &str = "UPDATE auto_reloads SET due = 1 WHERE org_id = $1";

/// Whether a batch that left an org at `available` calls for an auto-reload decision: auto-reload
/// is on, the balance is at or below its threshold, and the org is not marked already.
fn reload_due(available: Amount, threshold: Option<i64>, due: Option<i64>) -> bool {
    matches!((threshold, due), (Some(threshold), Some(0)) if available.micros() <= threshold)
}

pub(crate) async fn record_transition(
    tx: &mut Tx<'_>,
    org_id: &str,
    transition: &Transition,
    now: Timestamp,
) -> Result<(), StoreError> {
    let rows = tx
        .query(
            INSERT_TRANSITION,
            &transition_values(org_id, transition, now),
        )
        .await?;
    let seq = rows
        .first()
        .ok_or_else(|| StoreError::Corrupt("no seq returned".into()))?
        .int(0)?;
    if let Some((id, kind)) = notice_of(seq, transition) {
        tx.execute(
            INSERT_NOTICE,
            &notice_values(&id, kind, org_id, transition, now),
        )
        .await?;
    }
    Ok(())
}

fn transition_values(
    org_id: &str,
    transition: &Transition,
    now: Timestamp,
) -> Vec<crate::sql::Value> {
    values![
        org_id,
        transition.from.state.as_str(),
        transition.to.state.as_str(),
        i64::from(transition.from.level),
        i64::from(transition.to.level),
        transition.cause.as_str(),
        transition.available.micros(),
        now.unix_ms(),
    ]
    .to_vec()
}

/// An org's stored access and the policy it is derived under (the floor is the account's).
fn access_row(
    account: &Account,
    thresholds: &str,
    suspended: i64,
    state: &str,
    level: i64,
) -> Result<(Access, AccessPolicy), StoreError> {
    let previous = Access {
        state: AccessState::parse(state)
            .ok_or_else(|| StoreError::Corrupt(format!("access state {state:?}")))?,
        level: u32::try_from(level).map_err(|_| StoreError::Corrupt("access level".into()))?,
    };
    let policy = AccessPolicy {
        suspended: suspended != 0,
        floor: account.floor.unwrap_or(Amount::ZERO),
        low_thresholds: decode_amounts(thresholds)?,
    };
    Ok((previous, policy))
}

/// The org accounts whose access may have moved in a batch.
fn org_accounts(accounts: &[Account]) -> impl Iterator<Item = &Account> {
    accounts
        .iter()
        .filter(|account| account.kind == AccountKind::OrgCredit)
}

/// Derives the access of every org account a batch changed and records the changes, inside
/// the batch's transaction. Accounts without an org row (ledger-only tests and benchmarks)
/// are left alone.
pub(crate) mod sync_after_batch {
    use super::*;
    use crate::sql::sqlite_placeholders as placeholders;

    /// On the SQLite writer's transaction.
    pub(crate) fn sqlite(
        tx: &rusqlite::Transaction<'_>,
        changes: &ChangeSet,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        use rusqlite::OptionalExtension;
        let accounts = &changes.accounts;
        let mut orgs = Vec::new();
        let mut select = tx.prepare_cached(&placeholders(SELECT_ACCESS))?;
        for account in org_accounts(accounts) {
            let row = select
                .query_row([account.id.as_str()], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, i64>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, i64>(3)?,
                        row.get::<_, Option<i64>>(4)?,
                        row.get::<_, Option<i64>>(5)?,
                    ))
                })
                .optional()?;
            let Some((thresholds, suspended, state, level, reload_threshold, due)) = row else {
                continue;
            };
            orgs.push(account);
            let (previous, policy) = access_row(account, &thresholds, suspended, &state, level)?;
            let available = account.available();
            if reload_due(available, reload_threshold, due) {
                let mut mark = tx.prepare_cached(&placeholders(MARK_RELOAD_DUE))?;
                mark.execute([account.id.as_str()])?;
            }
            let Some(transition) = access::transition(previous, available, &policy, Cause::Balance)
            else {
                continue;
            };
            let mut update = tx.prepare_cached(&placeholders(UPDATE_ACCESS))?;
            update.execute(rusqlite::params![
                account.id.as_str(),
                transition.to.state.as_str(),
                i64::from(transition.to.level),
                now.unix_ms()
            ])?;
            let mut insert = tx.prepare_cached(&placeholders(INSERT_TRANSITION))?;
            let seq: i64 = insert.query_row(
                rusqlite::params_from_iter(
                    transition_values(account.id.as_str(), &transition, now).iter(),
                ),
                |row| row.get(0),
            )?;
            let notice = notice_of(seq, &transition).filter(|(_, kind)| {
                *kind != RESTORED
                    || tx
                        .prepare_cached(&placeholders(TURNED_OFF_BEFORE))
                        .and_then(|mut s| {
                            s.query_row([account.id.as_str()], |row| row.get::<_, i64>(0))
                        })
                        .map_or(true, |count| count > 0)
            });
            if let Some((id, kind)) = notice {
                let mut notice = tx.prepare_cached(&placeholders(INSERT_NOTICE))?;
                notice.execute(rusqlite::params_from_iter(
                    notice_values(&id, kind, account.id.as_str(), &transition, now).iter(),
                ))?;
            }
        }
        let mut insert = tx.prepare_cached(&placeholders(INSERT_RECEIPT))?;
        for (id, kind, org, transfer, available) in receipts(changes, &orgs) {
            insert.execute(rusqlite::params![
                id,
                kind.as_str(),
                org,
                available,
                now.unix_ms(),
                transfer.amount.micros(),
                transfer.id.as_str()
            ])?;
        }
        Ok(())
    }

    /// On the PostgreSQL writer's transaction (the accounts are locked by the batch).
    pub(crate) async fn postgres(
        tx: &tokio_postgres::Transaction<'_>,
        changes: &ChangeSet,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let orgs: Vec<&Account> = org_accounts(&changes.accounts).collect();
        if orgs.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = orgs.iter().map(|a| a.id.as_str()).collect();
        let rows = tx
            .query(
                "SELECT o.id, o.low_thresholds, o.suspended, o.access_state, o.access_level,
                 r.threshold, r.due FROM orgs o
                 LEFT JOIN auto_reloads r ON r.org_id = o.id AND r.enabled = 1
                 WHERE o.id = ANY($1)",
                &[&ids],
            )
            .await?;
        let mut with_rows = Vec::new();
        for row in rows {
            let id: String = row.try_get(0)?;
            let Some(account) = orgs.iter().find(|a| a.id.as_str() == id) else {
                continue;
            };
            with_rows.push(*account);
            let (previous, policy) = access_row(
                account,
                &row.try_get::<_, String>(1)?,
                row.try_get(2)?,
                &row.try_get::<_, String>(3)?,
                row.try_get(4)?,
            )?;
            if reload_due(account.available(), row.try_get(5)?, row.try_get(6)?) {
                tx.execute(MARK_RELOAD_DUE, &[&id]).await?;
            }
            let Some(transition) =
                access::transition(previous, account.available(), &policy, Cause::Balance)
            else {
                continue;
            };
            tx.execute(
                UPDATE_ACCESS,
                &[
                    &id,
                    &transition.to.state.as_str(),
                    &i64::from(transition.to.level),
                    &now.unix_ms(),
                ],
            )
            .await?;
            let seq: i64 = tx
                .query_one(
                    INSERT_TRANSITION,
                    &[
                        &id,
                        &transition.from.state.as_str(),
                        &transition.to.state.as_str(),
                        &i64::from(transition.from.level),
                        &i64::from(transition.to.level),
                        &transition.cause.as_str(),
                        &transition.available.micros(),
                        &now.unix_ms(),
                    ],
                )
                .await?
                .try_get(0)?;
            let told = match notice_of(seq, &transition) {
                Some((_, kind)) if kind == RESTORED => {
                    tx.query_one(TURNED_OFF_BEFORE, &[&id])
                        .await?
                        .try_get::<_, i64>(0)?
                        > 0
                }
                _ => true,
            };
            if let Some((notice_id, kind)) = notice_of(seq, &transition).filter(|_| told) {
                tx.execute(
                    INSERT_NOTICE,
                    &[
                        &notice_id,
                        &kind,
                        &id,
                        &transition.available.micros(),
                        &i64::from(transition.to.level),
                        &now.unix_ms(),
                    ],
                )
                .await?;
            }
        }
        for (id, kind, org, transfer, available) in receipts(changes, &with_rows) {
            tx.execute(
                INSERT_RECEIPT,
                &[
                    &id,
                    &kind.as_str(),
                    &org,
                    &available,
                    &now.unix_ms(),
                    &transfer.amount.micros(),
                    &transfer.id.as_str(),
                ],
            )
            .await?;
        }
        Ok(())
    }

    /// The receipts a batch calls for: one per grant or purchase into an org with an org
    /// row, with an id derived from the transfer (so a retried batch makes it once):
    /// (notice id, kind, org id, transfer, the org's available balance after the batch).
    fn receipts<'a>(
        changes: &'a ChangeSet,
        orgs: &[&'a Account],
    ) -> Vec<(String, NoticeKind, &'a str, &'a Transfer, i64)> {
        changes
            .transfers
            .iter()
            .filter_map(|t| {
                let kind = creditgate_domain::notice::for_credit(t.kind)?;
                let org = orgs.iter().find(|a| a.id == t.credit_account_id)?;
                Some((
                    receipt_id(&crate::api::letters_and_digits(t.id.as_str(), 60)),
                    kind,
                    org.id.as_str(),
                    t,
                    org.available().micros(),
                ))
            })
            .collect()
    }
}

fn transition_row(row: &Row) -> Result<AccessTransitionRecord, StoreError> {
    let state = |index: usize| -> Result<AccessState, StoreError> {
        let text = row.text(index)?;
        AccessState::parse(&text).ok_or_else(|| StoreError::Corrupt(format!("state {text:?}")))
    };
    let level = |index: usize| -> Result<u32, StoreError> {
        u32::try_from(row.int(index)?).map_err(|_| StoreError::Corrupt("level".into()))
    };
    Ok(AccessTransitionRecord {
        seq: row.int(0)?,
        org_id: row.text(1)?,
        from: Access {
            state: state(2)?,
            level: level(4)?,
        },
        to: Access {
            state: state(3)?,
            level: level(5)?,
        },
        cause: row.text(6)?,
        available: row.amount(7)?,
        at: row.time(8)?,
    })
}

impl Store {
    /// An org's access transitions after `after_seq`, oldest first, at most `limit`.
    pub async fn access_transitions(
        &self,
        org_id: &str,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<AccessTransitionRecord>, StoreError> {
        let rows = self
            .db()
            .query(
                "SELECT seq, org_id, from_state, to_state, from_level, to_level, cause, available, at
                 FROM access_transitions WHERE org_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                &values![org_id, after_seq, i64::try_from(limit).unwrap_or(i64::MAX)],
            )
            .await?;
        rows.iter().map(transition_row).collect()
    }
}
