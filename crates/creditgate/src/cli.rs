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

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use reqwest::{Method, StatusCode, Url};
use serde_json::{Map, Value};

/// Where the CLI looks for the server unless told (`serve`'s default listen address).
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";
/// Longest a request may take, connecting included.
pub const REQUEST_TIMEOUT_MS: u64 = 10_000;
/// Longest connecting may take.
pub const CONNECT_TIMEOUT_MS: u64 = 5_000;
/// Most characters of a non-API error body echoed to stderr.
const BODY_ECHO_LEN_MAX: usize = 200;

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

/// `creditgate org …`
#[derive(Args, Debug)]
pub struct OrgArgs {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    command: OrgCommand,
}

#[derive(Subcommand, Debug)]
enum OrgCommand {
    /// Create an org (with its credit account); prints its id.
    Create {
        /// Its name.
        #[arg(long)]
        name: String,
        /// A billing contact (repeat for several).
        #[arg(long = "billing-email", value_name = "EMAIL")]
        billing_emails: Vec<String>,
        /// A low-balance threshold, e.g. 10.00 (repeat for several).
        #[arg(long = "low-threshold", value_name = "AMOUNT")]
        low_thresholds: Vec<String>,
        /// The lowest available balance it may reach: 0 (default) or negative (an overdraft).
        #[arg(long, value_name = "AMOUNT", allow_negative_numbers = true)]
        floor: Option<String>,
        /// Monthly spend cap.
        #[arg(long, value_name = "AMOUNT")]
        spend_limit_monthly: Option<String>,
    },
    /// List orgs, in id order, one page at a time.
    List {
        /// Orgs per page (1 to 100; the server's default is 20).
        #[arg(long)]
        limit: Option<u32>,
        /// The last id of the previous page.
        #[arg(long, value_name = "ORG_ID")]
        starting_after: Option<String>,
    },
    /// Show an org.
    Show {
        /// `org_…`
        org_id: String,
    },
    /// Suspend an org: its calls are refused until it is unsuspended.
    Suspend {
        /// `org_…`
        org_id: String,
    },
    /// Lift an org's suspension.
    Unsuspend {
        /// `org_…`
        org_id: String,
    },
}

/// `creditgate key …`
#[derive(Args, Debug)]
pub struct KeyArgs {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    command: KeyCommand,
}

#[derive(Subcommand, Debug)]
enum KeyCommand {
    /// Create an API key for an org; prints the secret, which is shown this once.
    Create {
        /// `org_…`
        org_id: String,
        /// A label.
        #[arg(long)]
        name: Option<String>,
        /// Monthly spend cap for calls made with this key.
        #[arg(long, value_name = "AMOUNT")]
        spend_limit_monthly: Option<String>,
    },
    /// List an org's keys, newest first (revoked ones included).
    List {
        /// `org_…`
        org_id: String,
    },
    /// Revoke a key: it authenticates nothing from the next request on.
    Revoke {
        /// `key_…`
        key_id: String,
    },
}

/// `creditgate credits …`
#[derive(Args, Debug)]
pub struct CreditsArgs {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    command: CreditsCommand,
}

/// Where granted credits come from.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum Origin {
    /// Paid for.
    Paid,
    /// Given away (spent first).
    Promotional,
}

impl Origin {
    fn as_str(self) -> &'static str {
        match self {
            Origin::Paid => "paid",
            Origin::Promotional => "promotional",
        }
    }
}

#[derive(Subcommand, Debug)]
enum CreditsCommand {
    /// Add credits to an org.
    Grant {
        /// `org_…`
        org_id: String,
        /// How much, e.g. 25.00.
        #[arg(allow_negative_numbers = true)]
        amount: String,
        /// Where the credits come from.
        #[arg(long, value_enum, default_value_t = Origin::Paid)]
        origin: Origin,
        /// Unix seconds after which what is left expires.
        #[arg(long, value_name = "UNIX_S")]
        expires_at: Option<i64>,
        /// Lower is spent first among credits of the same kind (0 to 1000; server default 10).
        #[arg(long)]
        priority: Option<u32>,
        /// Free text recorded with the transfer.
        #[arg(long, value_name = "TEXT")]
        reference: Option<String>,
        /// Makes a retry safe: the same key never grants twice [default: a new random key,
        /// printed to stderr].
        #[arg(long, value_name = "KEY")]
        idempotency_key: Option<String>,
    },
    /// Correct an org's balance: a positive amount adds credits, a negative one removes them.
    Adjust {
        /// `org_…`
        org_id: String,
        /// Signed, e.g. -5.00.
        #[arg(allow_negative_numbers = true)]
        amount: String,
        /// Why.
        #[arg(long, value_name = "TEXT")]
        reason: String,
        /// Makes a retry safe: the same key never adjusts twice [default: a new random key,
        /// printed to stderr].
        #[arg(long, value_name = "KEY")]
        idempotency_key: Option<String>,
    },
}

/// `creditgate price …`
#[derive(Args, Debug)]
pub struct PriceArgs {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    command: PriceCommand,
}

#[derive(Subcommand, Debug)]
enum PriceCommand {
    /// Add a version of a model's prices, per million tokens.
    Set {
        /// The model, e.g. claude-sonnet-4 or vendor/model.
        model: String,
        /// Per million input tokens.
        #[arg(long, value_name = "AMOUNT")]
        input: String,
        /// Per million output tokens.
        #[arg(long, value_name = "AMOUNT")]
        output: String,
        /// Per million cache-write tokens [server default: the input price].
        #[arg(long, value_name = "AMOUNT")]
        cache_write: Option<String>,
        /// Per million cache-read tokens [server default: the input price].
        #[arg(long, value_name = "AMOUNT")]
        cache_read: Option<String>,
        /// Per call [server default: 0].
        #[arg(long, value_name = "AMOUNT")]
        request_fee: Option<String>,
        /// Output tokens a hold assumes when its request does not say [server default: 4096].
        #[arg(long, value_name = "N")]
        max_output_tokens: Option<u64>,
        /// Unix seconds from which it is in force [default: now].
        #[arg(long, value_name = "UNIX_S")]
        effective_at: Option<i64>,
    },
    /// List price versions, by model and time.
    List {
        /// Only this model's versions.
        #[arg(long)]
        model: Option<String>,
    },
}

/// `creditgate balance ORG_ID`
#[derive(Args, Debug)]
pub struct BalanceArgs {
    #[command(flatten)]
    connection: Connection,
    /// `org_…`
    org_id: String,
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
    finish(run_org(args).await)
}

/// Runs `creditgate key …`.
pub async fn key(args: KeyArgs) -> ExitCode {
    finish(run_key(args).await)
}

/// Runs `creditgate credits …`.
pub async fn credits(args: CreditsArgs) -> ExitCode {
    finish(run_credits(args).await)
}

/// Runs `creditgate price …`.
pub async fn price(args: PriceArgs) -> ExitCode {
    finish(run_price(args).await)
}

/// Runs `creditgate balance …`.
pub async fn balance(args: BalanceArgs) -> ExitCode {
    finish(run_balance(args).await)
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

/// Writes to stdout; a closed pipe (`| head`) is not an error worth a panic.
fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    if !text.ends_with('\n') {
        let _ = stdout.write_all(b"\n");
    }
    let _ = stdout.flush();
}

/// A successful answer: the body as received and parsed.
struct Answer {
    text: String,
    body: Value,
}

/// The operator API over HTTP.
struct Client {
    http: reqwest::Client,
    base: Url,
    token: String,
    json: bool,
}

impl Client {
    fn new(connection: &Connection) -> Result<Client, Failure> {
        let base = Url::parse(connection.url.trim())
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https") && url.has_host())
            .ok_or_else(|| {
                Failure::Refused(format!(
                    "error: --url {:?} is not an http(s) URL (CREDITGATE_URL)",
                    connection.url
                ))
            })?;
        let token = match connection.token.as_deref().map(str::trim) {
            Some(token) if !token.is_empty() => token.to_owned(),
            _ => token_from_data_dir()?,
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(REQUEST_TIMEOUT_MS))
            .connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
            .user_agent(concat!("creditgate-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Failure::Unavailable(format!("error: cannot set up HTTP: {e}")))?;
        Ok(Client {
            http,
            base,
            token,
            json: connection.json,
        })
    }

    /// `base` + the path `segments` (each percent-encoded: ids and models cannot escape
    /// their segment) + `query`.
    fn url(&self, segments: &[&str], query: &[(&str, String)]) -> Result<Url, Failure> {
        // The URL parser drops `.` and `..` segments; an empty one would change the route.
        if let Some(bad) = segments.iter().find(|s| matches!(**s, "" | "." | "..")) {
            return Err(Failure::Refused(format!(
                "error: invalid_id: {bad:?} is not an id or model name"
            )));
        }
        let mut url = self.base.clone();
        url.set_query(None);
        url.set_fragment(None);
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        if !query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (name, value) in query {
                pairs.append_pair(name, value);
            }
        }
        Ok(url)
    }

    async fn send(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<Value>,
        idempotency_key: Option<&str>,
    ) -> Result<Answer, Failure> {
        let url = self.url(segments, query)?;
        let mut request = self
            .http
            .request(method.clone(), url.clone())
            .bearer_auth(&self.token);
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let target = format!("{method} {}", url.path());
        let response = request
            .send()
            .await
            .map_err(|error| transport_failure(&self.base, &target, &error))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|error| transport_failure(&self.base, &target, &error))?;
        let parsed = serde_json::from_str::<Value>(&text);
        if status.is_success() {
            return match parsed {
                Ok(body) => Ok(Answer { text, body }),
                Err(_) => Err(Failure::Unavailable(format!(
                    "error: unexpected_response: {target} answered {status} without JSON; is {} a creditgate server?",
                    self.base
                ))),
            };
        }
        Err(api_failure(status, &text, parsed.ok().as_ref(), &self.base))
    }

    async fn get(&self, segments: &[&str], query: &[(&str, String)]) -> Result<Answer, Failure> {
        self.send(Method::GET, segments, query, None, None).await
    }
}

/// `serve` keeps a generated operator token in its data directory: a CLI started beside it
/// finds it there.
fn token_from_data_dir() -> Result<String, Failure> {
    let data_dir = std::env::var_os("CREDITGATE_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(".creditgate"));
    let path = data_dir.join("operator_token");
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => Ok(text.trim().to_owned()),
        _ => Err(Failure::Refused(format!(
            "error: no operator token: set CREDITGATE_OPERATOR_TOKEN or pass --token (none in {} either)",
            path.display()
        ))),
    }
}

fn transport_failure(base: &Url, target: &str, error: &reqwest::Error) -> Failure {
    // The top-level message repeats the URL; its sources say what happened.
    let mut cause = String::new();
    let mut source = std::error::Error::source(error).or(Some(error));
    while let Some(error) = source {
        let text = error.to_string();
        if !cause.contains(&text) {
            if !cause.is_empty() {
                cause.push_str(": ");
            }
            cause.push_str(&text);
        }
        source = error.source();
    }
    let what = if error.is_timeout() {
        format!("no answer within {REQUEST_TIMEOUT_MS} ms")
    } else if error.is_connect() {
        "cannot connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    Failure::Unavailable(format!(
        "error: unreachable: {target} at {base}: {what} ({cause})"
    ))
}

/// `error: <code>: <message>` from the API's error envelope (or what there is of it).
fn api_failure(status: StatusCode, text: &str, body: Option<&Value>, base: &Url) -> Failure {
    let error = body.and_then(|b| b.get("error")).filter(|e| e.is_object());
    let mut message = match error {
        Some(error) => {
            let code = error["code"].as_str().unwrap_or("unknown");
            let text = error["message"].as_str().unwrap_or("");
            let mut line = format!("error: {}: {}", clean(code), clean(text));
            if let Some(param) = error["param"].as_str() {
                let _ = write!(line, " (param: {})", clean(param));
            }
            if let Some(url) = error["billing_url"].as_str() {
                let _ = write!(line, "\nbilling: {}", clean(url));
            }
            line
        }
        None => {
            let echo: String = clean(text.trim()).chars().take(BODY_ECHO_LEN_MAX).collect();
            let reason = status.canonical_reason().unwrap_or("error");
            if echo.is_empty() {
                format!("error: http_{}: {reason} (from {base})", status.as_u16())
            } else {
                format!(
                    "error: http_{}: {reason}: {echo} (from {base})",
                    status.as_u16()
                )
            }
        }
    };
    if status.is_server_error() {
        if let Some(id) = body.and_then(|b| b["request_id"].as_str()) {
            let _ = write!(message, "\nrequest id: {}", clean(id));
        }
        Failure::Unavailable(message)
    } else {
        Failure::Refused(message)
    }
}

/// A JSON object of the fields that are present.
fn object(fields: Vec<(&str, Option<Value>)>) -> Value {
    let map: Map<String, Value> = fields
        .into_iter()
        .filter_map(|(name, value)| value.map(|v| (name.to_owned(), v)))
        .collect();
    Value::Object(map)
}

/// A fresh idempotency key, announced on stderr before anything is sent so that a request
/// whose answer is lost can be retried without moving money twice.
fn idempotency_key(given: Option<String>, command: &str) -> String {
    if let Some(key) = given {
        return key;
    }
    let key = format!("cli_{}", hex::encode(rand::random::<[u8; 16]>()));
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(
        stderr,
        "idempotency key: {key} (to retry safely: creditgate credits {command} … --idempotency-key {key})"
    );
    key
}

async fn run_org(args: OrgArgs) -> Result<(), Failure> {
    let client = Client::new(&args.connection)?;
    let (answer, view) = match args.command {
        OrgCommand::Create {
            name,
            billing_emails,
            low_thresholds,
            floor,
            spend_limit_monthly,
        } => {
            let body = object(vec![
                ("name", Some(name.into())),
                (
                    "billing_emails",
                    (!billing_emails.is_empty()).then(|| billing_emails.into()),
                ),
                (
                    "low_thresholds",
                    (!low_thresholds.is_empty()).then(|| low_thresholds.into()),
                ),
                ("floor", floor.map(Value::from)),
                ("spend_limit_monthly", spend_limit_monthly.map(Value::from)),
            ]);
            let answer = client
                .send(Method::POST, &["v1", "orgs"], &[], Some(body), None)
                .await?;
            let view = format!(
                "Created org {}.\n{}",
                text(&answer.body["id"]),
                org_view(&answer.body)
            );
            (answer, view)
        }
        OrgCommand::List {
            limit,
            starting_after,
        } => {
            let mut query = Vec::new();
            if let Some(limit) = limit {
                query.push(("limit", limit.to_string()));
            }
            if let Some(after) = starting_after {
                query.push(("starting_after", after));
            }
            let answer = client.get(&["v1", "orgs"], &query).await?;
            let view = org_list_view(&answer.body);
            (answer, view)
        }
        OrgCommand::Show { org_id } => {
            let answer = client.get(&["v1", "orgs", &org_id], &[]).await?;
            let view = org_view(&answer.body);
            (answer, view)
        }
        OrgCommand::Suspend { org_id } => set_suspended(&client, &org_id, true).await?,
        OrgCommand::Unsuspend { org_id } => set_suspended(&client, &org_id, false).await?,
    };
    show(&client, &answer, &view);
    Ok(())
}

/// `PATCH /v1/orgs/{org_id}` with `suspended`.
async fn set_suspended(
    client: &Client,
    org_id: &str,
    suspend: bool,
) -> Result<(Answer, String), Failure> {
    let body = serde_json::json!({ "suspended": suspend });
    let answer = client
        .send(
            Method::PATCH,
            &["v1", "orgs", org_id],
            &[],
            Some(body),
            None,
        )
        .await?;
    let view = format!(
        "Org {} {} (access state: {}).",
        text(&answer.body["id"]),
        if suspend { "suspended" } else { "unsuspended" },
        text(&answer.body["access_state"])
    );
    Ok((answer, view))
}

async fn run_key(args: KeyArgs) -> Result<(), Failure> {
    let client = Client::new(&args.connection)?;
    let (answer, view) = match args.command {
        KeyCommand::Create {
            org_id,
            name,
            spend_limit_monthly,
        } => {
            let body = object(vec![
                ("name", name.map(Value::from)),
                ("spend_limit_monthly", spend_limit_monthly.map(Value::from)),
            ]);
            let answer = client
                .send(
                    Method::POST,
                    &["v1", "orgs", &org_id, "keys"],
                    &[],
                    Some(body),
                    None,
                )
                .await?;
            let view = format!(
                "Created key {}.\n{}\nSecret (shown only this once; store it now):\n  {}",
                text(&answer.body["id"]),
                key_view(&answer.body),
                text(&answer.body["secret"])
            );
            (answer, view)
        }
        KeyCommand::List { org_id } => {
            let answer = client.get(&["v1", "orgs", &org_id, "keys"], &[]).await?;
            let view = key_list_view(&answer.body);
            (answer, view)
        }
        KeyCommand::Revoke { key_id } => {
            let answer = client
                .send(Method::DELETE, &["v1", "keys", &key_id], &[], None, None)
                .await?;
            let view = format!(
                "Revoked key {} of org {}.",
                text(&answer.body["id"]),
                text(&answer.body["org_id"])
            );
            (answer, view)
        }
    };
    show(&client, &answer, &view);
    Ok(())
}

async fn run_credits(args: CreditsArgs) -> Result<(), Failure> {
    let client = Client::new(&args.connection)?;
    let (answer, view) = match args.command {
        CreditsCommand::Grant {
            org_id,
            amount,
            origin,
            expires_at,
            priority,
            reference,
            idempotency_key: key,
        } => {
            let key = idempotency_key(key, "grant");
            let body = object(vec![
                ("amount", Some(amount.into())),
                ("origin", Some(origin.as_str().into())),
                ("expires_at", expires_at.map(Value::from)),
                ("priority", priority.map(Value::from)),
                ("reference", reference.map(Value::from)),
            ]);
            let answer = client
                .send(
                    Method::POST,
                    &["v1", "orgs", &org_id, "grants"],
                    &[],
                    Some(body),
                    Some(&key),
                )
                .await?;
            let view = format!(
                "Granted {} to {}.\n{}",
                text(&answer.body["amount"]),
                text(&answer.body["credit_account"]),
                transfer_view(&answer.body)
            );
            (answer, view)
        }
        CreditsCommand::Adjust {
            org_id,
            amount,
            reason,
            idempotency_key: key,
        } => {
            let key = idempotency_key(key, "adjust");
            let body = serde_json::json!({ "amount": amount, "reason": reason });
            let answer = client
                .send(
                    Method::POST,
                    &["v1", "orgs", &org_id, "adjustments"],
                    &[],
                    Some(body),
                    Some(&key),
                )
                .await?;
            let view = format!(
                "Adjusted {org_id} by {}{}.\n{}",
                if answer.body["direction"] == "debit" {
                    "-"
                } else {
                    "+"
                },
                text(&answer.body["amount"]),
                transfer_view(&answer.body)
            );
            (answer, view)
        }
    };
    show(&client, &answer, &view);
    Ok(())
}

async fn run_price(args: PriceArgs) -> Result<(), Failure> {
    let client = Client::new(&args.connection)?;
    let (answer, view) = match args.command {
        PriceCommand::Set {
            model,
            input,
            output,
            cache_write,
            cache_read,
            request_fee,
            max_output_tokens,
            effective_at,
        } => {
            let body = object(vec![
                ("input", Some(input.into())),
                ("output", Some(output.into())),
                ("cache_write", cache_write.map(Value::from)),
                ("cache_read", cache_read.map(Value::from)),
                ("request_fee", request_fee.map(Value::from)),
                ("max_output_tokens", max_output_tokens.map(Value::from)),
                ("effective_at", effective_at.map(Value::from)),
            ]);
            let answer = client
                .send(
                    Method::PUT,
                    &["v1", "prices", &model],
                    &[],
                    Some(body),
                    None,
                )
                .await?;
            let view = format!(
                "Set the price of {} (per million tokens).\n{}",
                text(&answer.body["model"]),
                price_view(&answer.body)
            );
            (answer, view)
        }
        PriceCommand::List { model } => {
            let query: Vec<(&str, String)> = model.map(|m| ("model", m)).into_iter().collect();
            let answer = client.get(&["v1", "prices"], &query).await?;
            let view = price_list_view(&answer.body);
            (answer, view)
        }
    };
    show(&client, &answer, &view);
    Ok(())
}

async fn run_balance(args: BalanceArgs) -> Result<(), Failure> {
    let client = Client::new(&args.connection)?;
    let answer = client
        .get(&["v1", "orgs", &args.org_id, "balance"], &[])
        .await?;
    let view = balance_view(&answer.body);
    show(&client, &answer, &view);
    Ok(())
}

/// The raw JSON with `--json`, else the readable view.
fn show(client: &Client, answer: &Answer, view: &str) {
    if client.json {
        out(&answer.text);
    } else {
        out(view);
    }
}

// ---- views -------------------------------------------------------------------------------

/// Control characters replaced, so a value cannot steer the terminal.
fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// A JSON value as a cell: strings as they are, null as `-`, lists comma-separated.
fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) if s.is_empty() => "-".to_owned(),
        Value::String(s) => clean(s),
        Value::Bool(true) => "yes".to_owned(),
        Value::Bool(false) => "no".to_owned(),
        Value::Number(n) => n.to_string(),
        Value::Array(items) if items.is_empty() => "-".to_owned(),
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(", "),
        Value::Object(_) => clean(&value.to_string()),
    }
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS UTC`.
fn time(value: &Value) -> String {
    match value.as_i64() {
        Some(seconds) => utc(seconds),
        None => text(value),
    }
}

fn utc(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let second_of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = creditgate_domain::time::civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60
    )
}

/// Column alignment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Align {
    Left,
    Right,
}

/// A table of columns padded to their widest cell, two spaces apart.
struct Table {
    columns: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(columns: &[(&'static str, Align)]) -> Table {
        Table {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.columns.len());
        self.rows.push(cells);
    }

    fn render(&self) -> String {
        let header: Vec<String> = self.columns.iter().map(|(h, _)| (*h).to_owned()).collect();
        let aligns: Vec<Align> = self.columns.iter().map(|(_, a)| *a).collect();
        render_rows(std::iter::once(&header).chain(&self.rows), &aligns)
    }
}

/// Label/value pairs, one per line, values aligned.
fn fields(pairs: &[(&str, String)]) -> String {
    let rows: Vec<Vec<String>> = pairs
        .iter()
        .map(|(label, value)| vec![(*label).to_owned(), value.clone()])
        .collect();
    render_rows(rows.iter(), &[Align::Left, Align::Left])
}

fn render_rows<'a>(
    rows: impl Iterator<Item = &'a Vec<String>> + Clone,
    aligns: &[Align],
) -> String {
    let mut widths = vec![0usize; aligns.len()];
    for row in rows.clone() {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut rendered = String::new();
    for row in rows {
        let mut line = String::new();
        for (index, cell) in row.iter().enumerate() {
            if index > 0 {
                line.push_str("  ");
            }
            let pad = widths[index].saturating_sub(cell.chars().count());
            let last = index + 1 == row.len();
            match aligns[index] {
                Align::Right => {
                    line.extend(std::iter::repeat_n(' ', pad));
                    line.push_str(cell);
                }
                Align::Left => {
                    line.push_str(cell);
                    if !last {
                        line.extend(std::iter::repeat_n(' ', pad));
                    }
                }
            }
        }
        rendered.push_str(line.trim_end());
        rendered.push('\n');
    }
    rendered
}

fn items(list: &Value) -> &[Value] {
    list["data"].as_array().map(Vec::as_slice).unwrap_or(&[])
}

fn org_view(org: &Value) -> String {
    fields(&[
        ("id", text(&org["id"])),
        ("name", text(&org["name"])),
        ("access state", text(&org["access_state"])),
        ("suspended", text(&org["suspended"])),
        ("floor", text(&org["floor"])),
        ("low thresholds", text(&org["low_thresholds"])),
        ("spend limit monthly", text(&org["spend_limit_monthly"])),
        ("billing emails", text(&org["billing_emails"])),
        ("created", time(&org["created_at"])),
    ])
}

fn org_list_view(list: &Value) -> String {
    let orgs = items(list);
    if orgs.is_empty() {
        return "No orgs.".to_owned();
    }
    let mut table = Table::new(&[
        ("ID", Align::Left),
        ("NAME", Align::Left),
        ("ACCESS", Align::Left),
        ("FLOOR", Align::Right),
        ("SPEND LIMIT", Align::Right),
        ("CREATED", Align::Left),
    ]);
    for org in orgs {
        table.row(vec![
            text(&org["id"]),
            text(&org["name"]),
            text(&org["access_state"]),
            text(&org["floor"]),
            text(&org["spend_limit_monthly"]),
            time(&org["created_at"]),
        ]);
    }
    let mut view = table.render();
    if list["has_more"].as_bool() == Some(true) {
        if let Some(last) = orgs.last() {
            let _ = write!(
                view,
                "More follow: creditgate org list --starting-after {}",
                text(&last["id"])
            );
        }
    }
    view
}

fn key_status(key: &Value) -> String {
    match key["revoked_at"].as_i64() {
        Some(_) => format!("revoked {}", time(&key["revoked_at"])),
        None => "active".to_owned(),
    }
}

fn key_view(key: &Value) -> String {
    fields(&[
        ("id", text(&key["id"])),
        ("org", text(&key["org_id"])),
        ("name", text(&key["name"])),
        ("prefix", text(&key["prefix"])),
        ("spend limit monthly", text(&key["spend_limit_monthly"])),
        ("status", key_status(key)),
        ("created", time(&key["created_at"])),
    ])
}

fn key_list_view(list: &Value) -> String {
    let keys = items(list);
    if keys.is_empty() {
        return "No keys.".to_owned();
    }
    let mut table = Table::new(&[
        ("ID", Align::Left),
        ("NAME", Align::Left),
        ("PREFIX", Align::Left),
        ("SPEND LIMIT", Align::Right),
        ("CREATED", Align::Left),
        ("STATUS", Align::Left),
    ]);
    for key in keys {
        table.row(vec![
            text(&key["id"]),
            text(&key["name"]),
            text(&key["prefix"]),
            text(&key["spend_limit_monthly"]),
            time(&key["created_at"]),
            key_status(key),
        ]);
    }
    table.render()
}

fn transfer_view(transfer: &Value) -> String {
    fields(&[
        ("transfer", text(&transfer["id"])),
        ("kind", text(&transfer["kind"])),
        ("amount", text(&transfer["amount"])),
        ("direction", text(&transfer["direction"])),
        ("balance after", text(&transfer["balance_after"])),
        ("reference", text(&transfer["reference"])),
        ("created", time(&transfer["created_at"])),
    ])
}

fn price_view(price: &Value) -> String {
    fields(&[
        ("id", text(&price["id"])),
        ("model", text(&price["model"])),
        ("input", text(&price["input"])),
        ("output", text(&price["output"])),
        ("cache write", text(&price["cache_write"])),
        ("cache read", text(&price["cache_read"])),
        ("request fee", text(&price["request_fee"])),
        ("max output tokens", text(&price["max_output_tokens"])),
        ("effective", time(&price["effective_at"])),
    ])
}

fn price_list_view(list: &Value) -> String {
    let prices = items(list);
    if prices.is_empty() {
        return "No prices.".to_owned();
    }
    let mut table = Table::new(&[
        ("MODEL", Align::Left),
        ("INPUT/M", Align::Right),
        ("OUTPUT/M", Align::Right),
        ("CACHE WRITE/M", Align::Right),
        ("CACHE READ/M", Align::Right),
        ("REQUEST FEE", Align::Right),
        ("MAX OUTPUT", Align::Right),
        ("EFFECTIVE", Align::Left),
        ("ID", Align::Left),
    ]);
    for price in prices {
        table.row(vec![
            text(&price["model"]),
            text(&price["input"]),
            text(&price["output"]),
            text(&price["cache_write"]),
            text(&price["cache_read"]),
            text(&price["request_fee"]),
            text(&price["max_output_tokens"]),
            time(&price["effective_at"]),
            text(&price["id"]),
        ]);
    }
    table.render()
}

fn balance_view(balance: &Value) -> String {
    fields(&[
        ("org", text(&balance["org_id"])),
        ("available", text(&balance["available"])),
        ("posted", text(&balance["posted"])),
        ("reserved", text(&balance["reserved"])),
        ("floor", text(&balance["floor"])),
        ("overspend", text(&balance["overspend"])),
        ("access state", text(&balance["access_state"])),
        ("currency", text(&balance["currency"])),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn utc_renders_calendar_time() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_764_000_000), "2025-11-24 16:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(-1), "1969-12-31 23:59:59 UTC");
    }

    #[test]
    fn tables_align_columns() {
        let mut table = Table::new(&[("ID", Align::Left), ("AMOUNT", Align::Right)]);
        table.row(vec!["org_a".into(), "5.00".into()]);
        table.row(vec!["org_bbbbbb".into(), "1250.50".into()]);
        assert_eq!(
            table.render(),
            "ID           AMOUNT\norg_a          5.00\norg_bbbbbb  1250.50\n"
        );
    }

    #[test]
    fn cells_show_json_values() {
        assert_eq!(text(&json!(null)), "-");
        assert_eq!(text(&json!(["a", "b"])), "a, b");
        assert_eq!(text(&json!([])), "-");
        assert_eq!(text(&json!(true)), "yes");
        assert_eq!(text(&json!("a\u{1b}[2Jb")), "a?[2Jb");
    }

    #[test]
    fn api_errors_name_code_and_param() {
        let base = Url::parse("http://127.0.0.1:1").unwrap();
        let body = json!({"error": {"type": "invalid_request_error", "code": "parameter_invalid",
            "message": "bad", "param": "amount"}, "request_id": "req_1"});
        let failure = api_failure(StatusCode::BAD_REQUEST, "", Some(&body), &base);
        assert_eq!(failure.exit_code(), 1);
        assert_eq!(
            failure.message(),
            "error: parameter_invalid: bad (param: amount)"
        );
        let body = json!({"error": {"type": "api_error", "code": "internal_error",
            "message": "An internal error occurred."}, "request_id": "req_2"});
        let failure = api_failure(StatusCode::INTERNAL_SERVER_ERROR, "", Some(&body), &base);
        assert_eq!(failure.exit_code(), 2);
        assert!(failure.message().contains("request id: req_2"));
        let failure = api_failure(StatusCode::BAD_GATEWAY, "<html>", None, &base);
        assert_eq!(failure.exit_code(), 2);
        assert!(failure
            .message()
            .starts_with("error: http_502: Bad Gateway"));
    }

    #[test]
    fn paths_are_encoded_per_segment() {
        let connection = Connection {
            url: "http://127.0.0.1:8080/base/".into(),
            token: Some("t".into()),
            json: false,
        };
        let client = Client::new(&connection).unwrap();
        let url = |segments: &[&str], query: &[(&str, String)]| {
            client.url(segments, query).map(|u| u.to_string())
        };
        assert_eq!(
            url(
                &["v1", "prices", "vendor/model"],
                &[("model", "a b".into())]
            )
            .unwrap(),
            "http://127.0.0.1:8080/base/v1/prices/vendor%2Fmodel?model=a+b"
        );
        assert_eq!(
            url(&["v1", "orgs", "../keys"], &[]).unwrap(),
            "http://127.0.0.1:8080/base/v1/orgs/..%2Fkeys"
        );
        assert_eq!(
            url(&["v1", "orgs", "a?b#c"], &[]).unwrap(),
            "http://127.0.0.1:8080/base/v1/orgs/a%3Fb%23c"
        );
        assert!(url(&["v1", "orgs", ".."], &[]).is_err());
        assert!(url(&["v1", "orgs", ""], &[]).is_err());
    }
}
