//! creditgate's shell: configuration, the application layer, the HTTP transports, the
//! background workers and the provider adapters. The pure rules live in `creditgate-domain`,
//! SQL in `creditgate-store`; the binary's own commands (`cmd/`) are the only users of
//! `anyhow`.

pub mod app;
pub mod config;
pub mod demo_upstream;
pub mod http;
pub mod ids;
pub mod limiter;
pub(crate) mod metrics;
pub mod node;
pub mod providers;
pub mod state;
pub mod workers;
