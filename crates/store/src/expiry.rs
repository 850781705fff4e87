//! The expiry worker: closes holds whose TTL has passed and expires due grants.
//!
//! One step, [`run_once`], does a bounded amount of work at a given time, so tests call it
//! directly instead of sleeping; the serving loop (a later issue) calls it on a timer. It
//! writes through the [`LedgerWriter`] like every other balance change. Both
//! operations carry ids derived from the hold or grant, so two workers (or two processes)
//! racing on the same item record it once.

use crate::{LedgerWriter, Store, StoreError, WriteError};
use creditgate_domain::ledger::{
    ExpireGrantRequest, ExpireHoldRequest, Operation, Rejection, Status,
};
use creditgate_domain::Timestamp;

/// Most holds or grants handled in one step.
pub const EXPIRY_BATCH_LEN_MAX: usize = 1_000;

/// What one step did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Holds closed as expired.
    pub holds_expired: usize,
    /// Grants whose remainder was expired.
    pub grants_expired: usize,
}

#[derive(Debug, thiserror::Error)]
/// Why a step of the expiry worker failed; the next step retries what is still due.
pub enum ExpiryError {
    #[error(transparent)]
    /// Reading what is due failed.
    Store(#[from] StoreError),
    #[error(transparent)]
    /// Writing the expiries failed.
    Write(#[from] WriteError),
}

/// Expires what is due at `now`: at most [`EXPIRY_BATCH_LEN_MAX`] holds and as many grants.
pub async fn run_once(
    store: &Store,
    writer: &LedgerWriter,
    now: Timestamp,
) -> Result<Outcome, ExpiryError> {
    let holds = store.due_holds(now, EXPIRY_BATCH_LEN_MAX).await?;
    let operations = holds
        .into_iter()
        .map(|hold_id| Operation::ExpireHold(ExpireHoldRequest { hold_id }))
        .collect();
    let holds_expired = count_created(writer.submit_many(operations).await?);
    let grants = store.due_grants(now, EXPIRY_BATCH_LEN_MAX).await?;
    let operations = grants
        .into_iter()
        .map(|(account_id, grant_id)| {
            Operation::ExpireGrant(ExpireGrantRequest {
                account_id,
                grant_id,
            })
        })
        .collect();
    let grants_expired = count_created(writer.submit_many(operations).await?);
    Ok(Outcome {
        holds_expired,
        grants_expired,
    })
}

fn count_created(outcomes: Vec<Result<creditgate_domain::ledger::Receipt, Rejection>>) -> usize {
    outcomes
        .iter()
        .filter(|outcome| matches!(outcome, Ok(receipt) if receipt.status == Status::Created))
        .count()
}
