//! The operator CLI: `creditgate org|key|credits|price|balance …`, a thin client of the
//! operator API (`/v1`, `Authorization: Bearer <operator token>`).
//!
//! Output: readable aligned tables, or with `--json` the API's JSON response exactly as
//! received. Money is shown as the API's decimal strings, never re-computed.
//!
//! Exit codes: 0 success; 1 refused (an API 4xx, or a local check before anything is sent:
//! no token, a malformed `--url`); 2 the server could not be reached, timed out, failed (5xx)
//! or answered something that is not the API (clap's own usage errors are 2 as well).
//! Failures print `error: <code>: <message>` (and the field at fault) to stderr.
//!
//! Layout: this file holds the shared connection flags, the entry points `main` calls and
//! how a failure becomes an exit code; one file per command group (`org`, `key`, `credits`,
//! `price`, `balance`) holds its clap arguments, its requests and its views; `client` the
//! HTTP client and how answers become failures; `view` the printing (tables, fields, cells).

mod balance;
mod client;
mod credits;
mod key;
mod org;
mod price;
mod rate;
mod view;

#[cfg(test)]
mod tests;

use std::io::Write as _;
use std::process::ExitCode;

use clap::Args;

pub use balance::BalanceArgs;
pub use credits::CreditsArgs;
pub use key::KeyArgs;
pub use org::OrgArgs;
pub use price::PriceArgs;

/// Where the CLI looks for the server unless told (`serve`'s default listen address).
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";
/// Longest a request may take, connecting included.
pub const REQUEST_TIMEOUT_MS: u64 = 10_000;
/// Longest connecting may take.
pub const CONNECT_TIMEOUT_MS: u64 = 5_000;

/// How to reach the API; accepted before or after the subcommand.
#[derive(Args, Clone, Debug)]
#[command(next_help_heading = "Connection")]
pub struct Connection {
    /// The creditgate server's base URL.
    #[arg(long, env = "CREDITGATE_URL", default_value = DEFAULT_URL, global = true)]
    pub url: String,
    /// The operator token [default: the token `serve` generated in CREDITGATE_DATA_DIR]. Prefer
    /// the environment variable: arguments are visible to other local users.
    #[arg(
        long,
        env = "CREDITGATE_OPERATOR_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub token: Option<String>,
    /// Print the API's JSON response as received instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// Why a command failed, already worded for stderr.
#[derive(Debug)]
enum Failure {
    /// The API refused (4xx) or a local check failed: exit 1.
    Refused(String),
    /// Unreachable, timed out, 5xx or not the API: exit 2.
    Unavailable(String),
}

impl Failure {
    fn exit_code(&self) -> u8 {
        match self {
            Failure::Refused(_) => 1,
            Failure::Unavailable(_) => 2,
        }
    }

    fn message(&self) -> &str {
        match self {
            Failure::Refused(m) | Failure::Unavailable(m) => m,
        }
    }
}

/// Runs `creditgate org …`.
pub async fn org(args: OrgArgs) -> ExitCode {
    finish(org::run_org(args).await)
}

/// Runs `creditgate key …`.
pub async fn key(args: KeyArgs) -> ExitCode {
    finish(key::run_key(args).await)
}

/// Runs `creditgate credits …`.
pub async fn credits(args: CreditsArgs) -> ExitCode {
    finish(credits::run_credits(args).await)
}

/// Runs `creditgate price …`.
pub async fn price(args: PriceArgs) -> ExitCode {
    finish(price::run_price(args).await)
}

/// Runs `creditgate balance …`.
pub async fn balance(args: BalanceArgs) -> ExitCode {
    finish(balance::run_balance(args).await)
}

fn finish(result: Result<(), Failure>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            let mut stderr = std::io::stderr().lock();
            let _ = writeln!(stderr, "{}", failure.message());
            ExitCode::from(failure.exit_code())
        }
    }
}
