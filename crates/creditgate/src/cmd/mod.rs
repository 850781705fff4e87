//! The binary's own commands, apart from the library: the operator CLI, the demo, the
//! benchmarks and load generator, and reconcile. `anyhow` is used here and in `main.rs` only.

pub mod bench;
pub mod cli;
pub mod demo;
pub mod load;
pub mod reconcile;
