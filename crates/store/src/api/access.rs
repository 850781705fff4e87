//! Access transitions: derived and recorded in the transaction that moves the balance (the
//! writer's batch) or the setting (an org update), so none is missed or recorded twice.

use creditgate_domain::access::{
    self, Access, AccessPolicy, AccessState, Cause, Decision, OrgAccess, ReloadDue, ReloadMark,
    Situation,
};
use creditgate_domain::ledger::{Account, AccountKind, ChangeSet, Transfer};
use creditgate_domain::notice::NoticeKind;
use creditgate_domain::{Amount, Timestamp};

use super::decode_amounts;
use crate::codec::Columns;
use crate::sql::{values, Row, Tx, Value};
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
    /// Why (`balance`, `refused`, `suspended`, `unsuspended`, `settings`, `created`).
    pub cause: String,
    /// The available balance after the change.
    pub available: Amount,
    /// When.
    pub at: Timestamp,
    /// `refused`: the worst case of the refused call.
    pub refused_amount: Option<Amount>,
    /// `refused`: the refused call's hold id.
    pub refused_hold_id: Option<String>,
    /// `refused`: the refused call's hold reference (what the call was).
    pub refused_reference: Option<String>,
}

const INSERT_TRANSITION: &str = "INSERT INTO access_transitions (org_id, from_state, to_state, \
     from_level, to_level, cause, available, at, refused_amount, refused_hold_id, refused_reference) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";
/// A receipt's outbox row: the amount and the transfer; made once per transfer.
const INSERT_RECEIPT: &str = "INSERT INTO notices (id, kind, org_id, available, level, state, \
     attempts, next_attempt_at, last_error, created_at, sent_at, amount, transfer_id) \
     VALUES ($1, $2, $3, $4, 0, 'pending', 0, $5, NULL, $5, NULL, $6, $7) ON CONFLICT (id) DO NOTHING";
/// The outbox row of an access notice. Its id comes from the org's latest transition:
/// `ntc_<seq>` for the notice of that transition (inserted right after it, under the org's
/// account lock), `ntc_<seq>_off` for a "turned off" told later (after an auto-reload that did
/// not restore access), so each is made once.
const INSERT_NOTICE: &str = "INSERT INTO notices (id, kind, org_id, available, level, state, \
     attempts, next_attempt_at, last_error, created_at, sent_at, reason) \
     SELECT 'ntc_' || CAST(MAX(seq) AS TEXT) || CAST($1 AS TEXT), $2, $3, $4, $5, 'pending', 0, $6, NULL, $6, NULL, $7 \
     FROM access_transitions WHERE org_id = $3 ON CONFLICT (id) DO NOTHING";
const UPDATE_ACCESS: &str = "UPDATE orgs SET access_state = $2, access_level = $3, \
     access_cut_off = $4, access_off_told = $5, access_changed_at = COALESCE($6, access_changed_at) \
     WHERE id = $1";
/// Marks an org's auto-reload due for a decision (see `payments/reload.rs`), with why.
const MARK_RELOAD_DUE: &str = "UPDATE auto_reloads SET due = $2 WHERE org_id = $1";

/// The columns an org's access is decided from, in the order [`OrgAccessRow::decode`] reads.
const ACCESS_COLUMNS: &str = "o.id, o.low_thresholds, o.suspended, o.access_state, \
     o.access_level, o.access_cut_off, o.access_off_told, r.threshold, r.due";
const ACCESS_FROM: &str = "orgs o LEFT JOIN auto_reloads r ON r.org_id = o.id AND r.enabled = 1";

/// What an org's access is decided from, besides its balances.
struct OrgAccessRow {
    id: String,
    stored: OrgAccess,
    low_thresholds: Vec<Amount>,
    suspended: bool,
    reload: Option<ReloadMark>,
}

impl OrgAccessRow {
    fn decode(row: &impl Columns) -> Result<OrgAccessRow, StoreError> {
        let state = row.text(3)?;
        let access = Access {
            state: AccessState::parse(&state)
                .ok_or_else(|| StoreError::Corrupt(format!("access state {state:?}")))?,
            level: u32::try_from(row.int(4)?)
                .map_err(|_| StoreError::Corrupt("access level".into()))?,
        };
        let reload = match (row.opt_amount(7)?, row.opt_int(8)?) {
            (Some(threshold), Some(due)) => Some(ReloadMark {
                threshold,
                due: ReloadDue::from_int(due),
            }),
            _ => None,
        };
        Ok(OrgAccessRow {
            id: row.text(0)?,
            stored: OrgAccess {
                access,
                cut_off: row.int(5)? != 0,
                off_told: row.int(6)? != 0,
            },
            low_thresholds: decode_amounts(&row.text(1)?)?,
            suspended: row.int(2)? != 0,
            reload,
        })
    }

    fn policy(&self, floor: Amount, cutoff_min: Amount) -> AccessPolicy {
        AccessPolicy {
            suspended: self.suspended,
            floor,
            low_thresholds: self.low_thresholds.clone(),
            cutoff_min,
        }
    }
}

/// One statement of an after-batch plan: SQL written once (`$n` placeholders) and its values.
pub(crate) type Statement = (&'static str, Vec<Value>);

/// The statements that write one decision about an org: its stored access, the transition,
/// its notice and the auto-reload mark. `refusal` names the refused call behind a
/// [`Cause::Refused`] transition.
fn decision_statements(
    org_id: &str,
    decision: &Decision,
    refusal: Option<(&str, &str)>,
    now: Timestamp,
    out: &mut Vec<Statement>,
) {
    let changed_at = decision.transition.map(|_| now.unix_ms());
    out.push((
        UPDATE_ACCESS,
        values![
            org_id,
            decision.stored.access.state.as_str(),
            i64::from(decision.stored.access.level),
            decision.stored.cut_off,
            decision.stored.off_told,
            changed_at,
        ]
        .to_vec(),
    ));
    if let Some(transition) = &decision.transition {
        let refusal = refusal.filter(|_| transition.cause == Cause::Refused);
        out.push((
            INSERT_TRANSITION,
            values![
                org_id,
                transition.from.state.as_str(),
                transition.to.state.as_str(),
                i64::from(transition.from.level),
                i64::from(transition.to.level),
                transition.cause.as_str(),
                transition.available.micros(),
                now.unix_ms(),
                transition.refused_amount.map(Amount::micros),
                refusal.map(|(hold, _)| hold.to_owned()),
                refusal.map(|(_, reference)| reference.to_owned()),
            ]
            .to_vec(),
        ));
    }
    if let Some(kind) = decision.notice {
        let (available, level) = decision
            .transition
            .map_or((None, decision.stored.access.level), |t| {
                (Some(t.available), t.to.level)
            });
        let suffix = if decision.transition.is_some() {
            ""
        } else {
            "_off"
        };
        out.push(notice_statement(
            suffix,
            kind,
            org_id,
            available.unwrap_or(Amount::ZERO),
            level,
            None,
            now,
        ));
    }
    if let Some(due) = decision.reload_due {
        out.push((MARK_RELOAD_DUE, values![org_id, due.as_int()].to_vec()));
    }
}

fn notice_statement(
    suffix: &str,
    kind: NoticeKind,
    org_id: &str,
    available: Amount,
    level: u32,
    reason: Option<&str>,
    now: Timestamp,
) -> Statement {
    (
        INSERT_NOTICE,
        values![
            suffix,
            kind.as_str(),
            org_id,
            available.micros(),
            i64::from(level),
            now.unix_ms(),
            reason.map(str::to_owned),
        ]
        .to_vec(),
    )
}

/// Records a decision made outside the writer (an org's creation or update), in the
/// caller's transaction, which holds the org's account lock.
pub(crate) async fn record_decision(
    tx: &mut Tx<'_>,
    org_id: &str,
    decision: &Decision,
    now: Timestamp,
) -> Result<(), StoreError> {
    let mut statements = Vec::new();
    decision_statements(org_id, decision, None, now, &mut statements);
    for (sql, params) in statements {
        tx.execute(sql, &params).await?;
    }
    Ok(())
}

/// An org's stored access (the caller holds its account lock).
pub(crate) async fn stored_access(
    tx: &mut Tx<'_>,
    org_id: &str,
) -> Result<Option<OrgAccess>, StoreError> {
    let rows = tx
        .query(
            &format!("SELECT {ACCESS_COLUMNS} FROM {ACCESS_FROM} WHERE o.id = $1"),
            &values![org_id],
        )
        .await?;
    Ok(rows
        .first()
        .map(OrgAccessRow::decode)
        .transpose()?
        .map(|row| row.stored))
}

/// Tells a refused org that its access is turned off because its auto-reload did not restore
/// it (`reason` says why), unless it was told already or is no longer off (the pure
/// `access::tell_after_reload`). Takes the org's account lock first, as the writer does, so
/// it decides from the access the last batch left.
pub(crate) async fn tell_turned_off_after_reload(
    tx: &mut Tx<'_>,
    org_id: &str,
    reason: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    let Some(available) = super::orgs::available(tx, org_id, true).await? else {
        return Ok(());
    };
    let Some(stored) = stored_access(tx, org_id).await? else {
        return Ok(());
    };
    if !access::tell_after_reload(&stored) {
        return Ok(());
    }
    let (sql, params) = notice_statement(
        "_off",
        NoticeKind::AccessTurnedOff,
        org_id,
        available,
        stored.access.level,
        Some(reason),
        now,
    );
    tx.execute(sql, &params).await?;
    tx.execute(
        "UPDATE orgs SET access_off_told = 1 WHERE id = $1",
        &values![org_id],
    )
    .await?;
    Ok(())
}

/// The org accounts whose access a batch may move: those it changed, and those it refused a
/// call (as the batch left them), each once.
fn org_accounts(changes: &ChangeSet) -> Vec<&Account> {
    let mut accounts: Vec<&Account> = changes
        .accounts
        .iter()
        .filter(|account| account.kind == AccountKind::OrgCredit)
        .collect();
    for refusal in &changes.refusals {
        if !accounts.iter().any(|a| a.id == refusal.account.id) {
            accounts.push(&refusal.account);
        }
    }
    accounts
}

/// The statements that record what a batch did to its orgs' access (the pure
/// `access::decide` for each org with a row; accounts without one, in ledger-only tests and
/// benchmarks, are left alone) and the receipts of its credits.
fn after_batch_plan(
    changes: &ChangeSet,
    accounts: &[&Account],
    rows: Vec<OrgAccessRow>,
    cutoff_min: Amount,
    now: Timestamp,
) -> Vec<Statement> {
    let mut out = Vec::new();
    let mut with_rows = Vec::new();
    for row in rows {
        let Some(account) = accounts.iter().find(|a| a.id.as_str() == row.id) else {
            continue;
        };
        with_rows.push(*account);
        let floor = account.floor.unwrap_or(Amount::ZERO);
        let policy = row.policy(floor, cutoff_min);
        let refusal = changes.refusals.iter().find(|r| r.account.id == account.id);
        let situation = Situation {
            stored: row.stored,
            policy: &policy,
            posted: account.posted,
            available: account.available(),
            refused: refusal.map(|r| r.amount),
            credited: changes
                .transfers
                .iter()
                .any(|t| t.credit_account_id == account.id),
            cause: Cause::Balance,
            reload: row.reload,
        };
        let decision = access::decide(&situation);
        if decision.stored == row.stored && decision.reload_due.is_none() {
            continue;
        }
        decision_statements(
            &row.id,
            &decision,
            refusal.map(|r| (r.hold_id.as_str(), r.reference.as_str())),
            now,
            &mut out,
        );
    }
    for (id, kind, org, transfer, available) in receipts(changes, &with_rows) {
        out.push((
            INSERT_RECEIPT,
            values![
                id,
                kind.as_str(),
                org,
                available,
                now.unix_ms(),
                transfer.amount.micros(),
                transfer.id.as_str()
            ]
            .to_vec(),
        ));
    }
    out
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
                creditgate_domain::ids::receipt_notice(t.id.as_str()),
                kind,
                org.id.as_str(),
                t,
                org.available().micros(),
            ))
        })
        .collect()
}

/// Derives the access of every org a batch changed or refused and records the changes,
/// inside the batch's transaction: each backend loads the rows and runs the statements of
/// the one plan ([`after_batch_plan`]).
pub(crate) mod sync_after_batch {
    use super::*;
    use crate::sql::sqlite_placeholders as placeholders;

    /// On the SQLite writer's transaction.
    pub(crate) fn sqlite(
        tx: &rusqlite::Transaction<'_>,
        changes: &ChangeSet,
        cutoff_min: Amount,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let accounts = org_accounts(changes);
        if accounts.is_empty() {
            return Ok(());
        }
        let mut select = tx.prepare_cached(&placeholders(&format!(
            "SELECT {ACCESS_COLUMNS} FROM {ACCESS_FROM} WHERE o.id = $1"
        )))?;
        let mut rows = Vec::new();
        for account in &accounts {
            let mut found = select.query([account.id.as_str()])?;
            if let Some(row) = found.next()? {
                rows.push(OrgAccessRow::decode(row)?);
            }
        }
        for (sql, params) in after_batch_plan(changes, &accounts, rows, cutoff_min, now) {
            tx.prepare_cached(&placeholders(sql))?
                .execute(rusqlite::params_from_iter(params.iter()))?;
        }
        Ok(())
    }

    /// On the PostgreSQL writer's transaction (the accounts are locked by the batch).
    pub(crate) async fn postgres(
        tx: &tokio_postgres::Transaction<'_>,
        changes: &ChangeSet,
        cutoff_min: Amount,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let accounts = org_accounts(changes);
        if accounts.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = accounts.iter().map(|a| a.id.as_str()).collect();
        let rows = tx
            .query(
                &format!("SELECT {ACCESS_COLUMNS} FROM {ACCESS_FROM} WHERE o.id = ANY($1)"),
                &[&ids],
            )
            .await?
            .iter()
            .map(OrgAccessRow::decode)
            .collect::<Result<Vec<_>, _>>()?;
        for (sql, params) in after_batch_plan(changes, &accounts, rows, cutoff_min, now) {
            tx.execute(sql, &crate::sql::pg_params(&params)).await?;
        }
        Ok(())
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
        refused_amount: row.opt_amount(9)?,
        refused_hold_id: row.opt_text(10)?,
        refused_reference: row.opt_text(11)?,
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
                "SELECT seq, org_id, from_state, to_state, from_level, to_level, cause, available, at,
                 refused_amount, refused_hold_id, refused_reference FROM access_transitions WHERE org_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                &values![org_id, after_seq, i64::try_from(limit).unwrap_or(i64::MAX)],
            )
            .await?;
        rows.iter().map(transition_row).collect()
    }
}
