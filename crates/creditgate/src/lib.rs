//! creditgate's shell: configuration, the HTTP service and the operator CLI. The pure rules
//! live in `creditgate-domain`, SQL in `creditgate-store`; `anyhow` only in `main.rs`.

pub mod app;
pub mod config;
pub mod proxy;
pub mod server;
pub mod workers;
