//! The pure core of creditgate.
//!
//! Everything here is a function of its inputs: no I/O, no async, no clock, no randomness.
//! Callers pass the time ([`time::Timestamp`]) and the ids; the core answers with a
//! decision. The store and the server (the imperative shell) do the reading and writing.

#![warn(missing_docs)]

pub mod access;
pub mod ids;
pub mod ledger;
pub mod member;
pub mod money;
pub mod notice;
pub mod outbox;
pub mod payment;
pub mod pricing;
pub mod rate;
pub mod reference;
pub mod reload;
pub mod spend;
pub mod time;

pub use money::{Amount, ParseAmountError};
pub use time::Timestamp;
