//! The metering proxy.

pub mod formats;
