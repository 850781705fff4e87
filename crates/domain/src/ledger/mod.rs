//! The credit ledger's rules: accounts, transfers, holds and grants.
//!
//! Shape (TigerBeetle's): every operation carries a client-chosen id; [`apply`] checks it
//! completely, in a fixed precedence order, and returns one named result — `Created`,
//! `Exists` (same id, same fields: the first result again) or a [`Rejection`] — before
//! changing anything. The state it works on ([`LedgerState`]) is whatever the store loaded
//! for a batch; the changes come back as a [`ChangeSet`] to write in one transaction.
//!
//! Grants: every credit into an org account opens a grant (a lot). Debits consume grants in
//! [`Grant::consumption_key`] order: priority, promotional before paid, soonest expiry,
//! oldest. Holds reserve on grants the same way, so a grant that expires while a hold is
//! open keeps the reserved part until the hold closes, and whatever the hold then releases
//! expires at once. Consumption beyond all grants (possible only with a floor below zero,
//! or with usage that already happened) is `unbacked` and is repaid by the next credits.

mod checks;
mod engine;
mod execute;
mod invariants;
mod operation;
mod result;
mod state;
mod types;

pub use checks::{is_storable_id, is_valid_id_text};
pub use engine::apply;
pub use invariants::{check as check_invariants, InvariantReport, Snapshot};
pub use operation::*;
pub use result::{Outcome, Receipt, Rejection, Status};
pub use state::{ChangeSet, LedgerState, Refusal};
pub use types::*;

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;
