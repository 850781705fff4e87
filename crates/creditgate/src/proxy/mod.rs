//! The metering proxy.

pub mod endpoints;
pub mod formats;
