//! The operator CLI, black-box: the real binary runs `creditgate serve` (SQLite in a fresh
//! data directory, any free port), then CLI commands run against it and their output and exit
//! codes are checked. The server is killed when the test ends, failing or not.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_creditgate");
const TOKEN: &str = "op_cli_test_token";
/// Longest the server may take to report its address.
const START_WAIT_MAX: Duration = Duration::from_secs(60);
/// What `serve` prints to stderr once it listens.
const LISTENING: &str = "creditgate listening on http://";

/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "creditgate_cli_{label}_{}_{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&path).expect("temp dir");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process started without the caller's `CREDITGATE_*` and proxy settings.
fn command(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command.args(args).stdin(Stdio::null());
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CREDITGATE_") || name.to_ascii_lowercase().ends_with("_proxy") {
            command.env_remove(&*name);
        }
    }
    command
}

/// `creditgate serve`, killed on drop (also when a test panics).
struct Server {
    child: Child,
    base: String,
    // Dropped after the child is killed (fields drop after `Drop::drop`).
    _data_dir: TempDir,
}

impl Server {
    fn start() -> Server {
        let data_dir = TempDir::new("serve");
        let mut child = command(&["serve"])
            .env("CREDITGATE_DATA_DIR", &data_dir.0)
            .env("CREDITGATE_LISTEN", "127.0.0.1:0")
            .env("CREDITGATE_OPERATOR_TOKEN", TOKEN)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("creditgate serve starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let (lines, received) = mpsc::channel();
        // Reads stderr to the end, so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = lines.send(line);
            }
        });
        let mut server = Server {
            child,
            base: String::new(),
            _data_dir: data_dir,
        };
        let mut seen = Vec::new();
        loop {
            match received.recv_timeout(START_WAIT_MAX) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(LISTENING) {
                        let address = rest.split_whitespace().next().expect("an address");
                        server.base = format!("http://{address}");
                        return server;
                    }
                    seen.push(line);
                }
                Err(_) => panic!(
                    "creditgate serve did not report its address; stderr:\n{}",
                    seen.join("\n")
                ),
            }
        }
    }

    /// Runs the CLI against this server with the operator token.
    fn cli(&self, args: &[&str]) -> Run {
        self.cli_env(args, &[("CREDITGATE_OPERATOR_TOKEN", TOKEN)])
    }

    /// Runs the CLI against this server with `env` (and `CREDITGATE_URL`).
    fn cli_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut command = command(args);
        command.env("CREDITGATE_URL", &self.base);
        for (name, value) in env {
            command.env(name, value);
        }
        Run::of(command, args)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A finished CLI run.
#[derive(Debug)]
struct Run {
    args: String,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn of(mut command: Command, args: &[&str]) -> Run {
        let output = command.output().expect("the CLI runs");
        Run {
            args: args.join(" "),
            code: output.status.code(),
            stdout: String::from_utf8(output.stdout).expect("utf-8 stdout"),
            stderr: String::from_utf8(output.stderr).expect("utf-8 stderr"),
        }
    }

    /// Asserts success.
    fn ok(self) -> Run {
        assert_eq!(self.code, Some(0), "`{}` failed: {self:#?}", self.args);
        self
    }

    /// Asserts failure with `code`.
    fn fails(self, code: i32) -> Run {
        assert_eq!(self.code, Some(code), "`{}`: {self:#?}", self.args);
        assert!(
            self.stderr.lines().any(|l| l.starts_with("error: ")),
            "`{}` stderr: {}",
            self.args,
            self.stderr
        );
        self
    }

    /// Stdout as one JSON document.
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("`{}` printed no JSON ({e}): {}", self.args, self.stdout))
    }

    /// The value of a `label  value` line of a detail view.
    fn field(&self, label: &str) -> String {
        self.stdout
            .lines()
            .find_map(|line| {
                let rest = line.strip_prefix(label)?;
                rest.starts_with("  ").then(|| rest.trim().to_owned())
            })
            .unwrap_or_else(|| panic!("no {label:?} in `{}`:\n{}", self.args, self.stdout))
    }
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
}

/// Every line of a table starts its columns at the header's offsets.
fn assert_aligned(table: &str, columns: &[&str]) {
    let mut lines = table.lines();
    let header = lines.next().expect("a header");
    let offsets: Vec<usize> = columns
        .iter()
        .map(|c| header.find(c).unwrap_or_else(|| panic!("{c} in {header}")))
        .collect();
    for line in lines.filter(|l| !l.starts_with("More follow")) {
        for (column, &offset) in columns.iter().zip(&offsets).skip(1) {
            let before = line.chars().nth(offset - 1);
            assert_eq!(before, Some(' '), "column {column} misaligned in\n{table}");
        }
    }
}

#[test]
fn operator_commands_drive_the_api() {
    let server = Server::start();

    // Orgs.
    let created = server
        .cli(&[
            "org",
            "create",
            "--name",
            "Acme Corp",
            "--billing-email",
            "billing@acme.test",
            "--billing-email",
            "cfo@acme.test",
            "--low-threshold",
            "10",
            "--low-threshold",
            "2.50",
            "--spend-limit-monthly",
            "500",
        ])
        .ok();
    let org = created.field("id");
    assert!(org.starts_with("org_"), "{}", created.stdout);
    assert!(created.stdout.starts_with(&format!("Created org {org}.")));
    assert_eq!(created.field("name"), "Acme Corp");
    assert_eq!(
        created.field("billing emails"),
        "billing@acme.test, cfo@acme.test"
    );
    assert_eq!(created.field("low thresholds"), "10.00, 2.50");
    assert_eq!(created.field("spend limit monthly"), "500.00");
    assert_eq!(created.field("rate limits"), "none");
    let limited = server
        .cli(&[
            "org",
            "rate-limits",
            &org,
            "--requests-per-minute",
            "600",
            "--output-tokens-per-minute",
            "90000",
        ])
        .ok();
    assert_eq!(
        limited.stdout.trim(),
        format!("Org {org} rate limits: 600 requests, 90000 output tokens a minute.")
    );
    let zero = server
        .cli(&["org", "rate-limits", &org, "--requests-per-minute", "0"])
        .fails(1);
    assert!(
        zero.stderr.contains("rate_limits.requests_per_minute"),
        "{}",
        zero.stderr
    );

    let beta = server
        .cli(&["org", "create", "--name", "Beta", "--floor", "-5", "--json"])
        .ok()
        .json();
    assert_eq!(beta["object"], "org");
    assert_eq!(beta["floor"], "-5.00");
    let beta = beta["id"].as_str().expect("an id").to_owned();

    let list = server.cli(&["org", "list"]).ok();
    assert!(list.stdout.starts_with("ID "), "{}", list.stdout);
    assert!(list.stdout.contains(&org) && list.stdout.contains(&beta));
    assert!(list.stdout.contains("Acme Corp"));
    assert_aligned(&list.stdout, &["ID", "NAME", "ACCESS", "FLOOR", "CREATED"]);

    let first = server.cli(&["org", "list", "--limit", "1"]).ok();
    let more = first
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("More follow: creditgate org list --starting-after "))
        .unwrap_or_else(|| panic!("a next page hint in {}", first.stdout))
        .to_owned();
    let second = server
        .cli(&[
            "org",
            "list",
            "--limit",
            "1",
            "--starting-after",
            &more,
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(second["object"], "list");
    assert_eq!(second["data"].as_array().map(Vec::len), Some(1));
    assert_ne!(second["data"][0]["id"].as_str(), Some(more.as_str()));

    // Credits: a generated idempotency key is announced; a given one makes retries safe.
    let grant = server
        .cli(&["credits", "grant", &org, "25.00", "--reference", "welcome"])
        .ok();
    assert!(
        grant.stderr.contains("idempotency key: cli_"),
        "{}",
        grant.stderr
    );
    assert!(grant
        .stdout
        .starts_with(&format!("Granted 25.00 to {org}.")));
    assert_eq!(grant.field("kind"), "grant");
    assert_eq!(grant.field("balance after"), "25.00");
    assert_eq!(grant.field("reference"), "welcome");
    let balance = server.cli(&["balance", &org]).ok();
    assert_eq!(balance.field("available"), "25.00");
    assert_eq!(balance.field("posted"), "25.00");

    let args = [
        "credits",
        "grant",
        &org,
        "10",
        "--idempotency-key",
        "cli-test-grant-1",
        "--json",
    ];
    let once = server.cli(&args).ok();
    let twice = server.cli(&args).ok();
    assert!(!once.stderr.contains("idempotency key:"), "{}", once.stderr);
    assert_eq!(once.json()["object"], "transfer");
    assert_eq!(once.json()["id"], twice.json()["id"]);
    assert_eq!(once.json()["amount"], "10.00");

    let adjusted = server
        .cli(&[
            "credits",
            "adjust",
            &org,
            "-5",
            "--reason",
            "double charge",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(adjusted["kind"], "adjustment");
    assert_eq!(adjusted["direction"], "debit");
    assert_eq!(adjusted["balance_after"], "30.00");
    let adjusted = server
        .cli(&["credits", "adjust", &org, "1", "--reason", "goodwill"])
        .ok();
    assert!(
        adjusted
            .stdout
            .starts_with(&format!("Adjusted {org} by +1.00.")),
        "{}",
        adjusted.stdout
    );
    assert_eq!(adjusted.field("balance after"), "31.00");
    assert_eq!(adjusted.field("reference"), "goodwill");

    let expires = (now_s() + 3600).to_string();
    server
        .cli(&[
            "credits",
            "grant",
            &org,
            "1.5",
            "--origin",
            "promotional",
            "--expires-at",
            &expires,
        ])
        .ok();
    let balance = server.cli(&["balance", &org, "--json"]).ok().json();
    assert_eq!(balance["object"], "balance");
    assert_eq!(balance["org_id"], org.as_str());
    assert_eq!(balance["available"], "32.50");
    assert_eq!(balance["reserved"], "0.00");
    assert_eq!(balance["currency"], "USD");

    // Keys: the secret is shown once and works; a revoked key does not.
    let key = server
        .cli(&[
            "key",
            "create",
            &org,
            "--name",
            "ci",
            "--spend-limit-monthly",
            "50",
            "--requests-per-minute",
            "120",
        ])
        .ok();
    let key_id = key.field("id");
    assert_eq!(key.field("rate limits"), "120 requests a minute");
    assert!(key_id.starts_with("key_"));
    assert!(
        key.stdout
            .contains("Secret (shown only this once; store it now):"),
        "{}",
        key.stdout
    );
    let secret = key
        .stdout
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("cg_live_"))
        .unwrap_or_else(|| panic!("a secret in {}", key.stdout))
        .to_owned();
    assert!(secret.starts_with(&key.field("prefix")));
    let seen = server
        .cli_env(
            &["balance", &org, "--json"],
            &[("CREDITGATE_OPERATOR_TOKEN", &secret)],
        )
        .ok()
        .json();
    assert_eq!(seen["available"], "32.50");

    let keys = server.cli(&["key", "list", &org]).ok();
    assert!(keys.stdout.contains(&key_id) && keys.stdout.contains("active"));
    assert!(
        !keys.stdout.contains(&secret),
        "lists never show the secret"
    );
    assert_aligned(
        &keys.stdout,
        &["ID", "NAME", "PREFIX", "SPEND LIMIT", "STATUS"],
    );
    let revoked = server.cli(&["key", "revoke", &key_id]).ok();
    assert!(
        revoked.stdout.starts_with(&format!("Revoked key {key_id}")),
        "{}",
        revoked.stdout
    );
    let keys = server.cli(&["key", "list", &org, "--json"]).ok().json();
    assert!(keys["data"][0]["revoked_at"].is_i64(), "{keys}");
    assert!(keys["data"][0].get("secret").is_none());
    let refused = server
        .cli_env(
            &["balance", &org],
            &[("CREDITGATE_OPERATOR_TOKEN", &secret)],
        )
        .fails(1);
    assert!(
        refused.stderr.contains("invalid_api_key"),
        "{}",
        refused.stderr
    );

    // Prices, including a model name with a slash.
    let price = server
        .cli(&[
            "price",
            "set",
            "vendor/model-1",
            "--input",
            "3",
            "--output",
            "15",
            "--cache-read",
            "0.30",
            "--request-fee",
            "0.001",
            "--max-output-tokens",
            "8192",
        ])
        .ok();
    assert_eq!(price.field("model"), "vendor/model-1");
    assert_eq!(price.field("input"), "3.00");
    assert_eq!(price.field("cache write"), "3.00");
    assert_eq!(price.field("cache read"), "0.30");
    assert_eq!(price.field("request fee"), "0.001");
    assert_eq!(price.field("cache write 1h"), "3.00");
    assert_eq!(price.field("long input"), "none");
    // Sonnet's book: both cache lifetimes, web search per request, long-input rates.
    let sonnet = server
        .cli(&[
            "price",
            "set",
            "claude-sonnet-4-5",
            "--input",
            "3",
            "--output",
            "15",
            "--cache-write",
            "3.75",
            "--cache-write-1h",
            "6",
            "--cache-read",
            "0.30",
            "--web-search-request",
            "0.01",
            "--long-above-input-tokens",
            "200000",
            "--long-input",
            "6",
            "--long-output",
            "22.50",
        ])
        .ok();
    assert_eq!(sonnet.field("cache write 1h"), "6.00");
    assert_eq!(sonnet.field("web search"), "0.01");
    assert_eq!(sonnet.field("web fetch"), "0.00");
    assert_eq!(
        sonnet.field("long input"),
        "above 200000 tokens: input 6.00, output 22.50, cache write 6.00, cache write 1h 6.00, \
         cache read 6.00"
    );
    let missing = server
        .cli(&[
            "price",
            "set",
            "m2",
            "--input",
            "1",
            "--output",
            "1",
            "--long-input",
            "2",
        ])
        .fails(1);
    assert!(missing.stderr.contains("long_input"), "{}", missing.stderr);
    server
        .cli(&[
            "price",
            "set",
            "small",
            "--input",
            "0.25",
            "--output",
            "1.25",
            "--effective-at",
            "1700000000",
        ])
        .ok();
    let prices = server.cli(&["price", "list"]).ok();
    assert!(prices.stdout.contains("vendor/model-1") && prices.stdout.contains("small"));
    assert!(
        prices.stdout.contains("2023-11-14 22:13:20 UTC"),
        "{}",
        prices.stdout
    );
    assert_aligned(
        &prices.stdout,
        &["MODEL", "INPUT/M", "OUTPUT/M", "EFFECTIVE", "ID"],
    );
    let one = server
        .cli(&["price", "list", "--model", "vendor/model-1", "--json"])
        .ok()
        .json();
    let data = one["data"].as_array().expect("a list");
    assert_eq!(data.len(), 1, "{one}");
    assert_eq!(data[0]["output"], "15.00");
    assert_eq!(data[0]["max_output_tokens"], 8192);

    // Suspension.
    let suspended = server.cli(&["org", "suspend", &org]).ok();
    assert_eq!(
        suspended.stdout.trim(),
        format!("Org {org} suspended (access state: suspended).")
    );
    let shown = server.cli(&["org", "show", &org]).ok();
    assert_eq!(shown.field("suspended"), "yes");
    assert_eq!(shown.field("access state"), "suspended");
    let shown = server.cli(&["org", "show", &org, "--json"]).ok().json();
    assert_eq!(shown["suspended"], true);
    assert_eq!(shown["access_state"], "suspended");
    let lifted = server
        .cli(&["org", "--json", "unsuspend", &org])
        .ok()
        .json();
    assert_eq!(lifted["suspended"], false);
    assert_ne!(lifted["access_state"], "suspended");
}

#[test]
fn failures_name_the_code_and_set_the_exit_code() {
    let server = Server::start();
    let org = server
        .cli(&["org", "create", "--name", "Errors", "--json"])
        .ok()
        .json()["id"]
        .as_str()
        .expect("an id")
        .to_owned();

    // API refusals: exit 1, `error: <code>: <message> (param: …)` on stderr, nothing on stdout.
    let negative = server.cli(&["credits", "grant", &org, "-1"]).fails(1);
    assert!(
        negative.stderr.contains("error: parameter_invalid: ")
            && negative.stderr.contains("(param: amount)"),
        "{}",
        negative.stderr
    );
    assert!(negative.stdout.is_empty());
    let zero = server.cli(&["credits", "grant", &org, "0"]).fails(1);
    assert!(
        zero.stderr
            .contains("error: amount_must_be_positive: amount must be positive. (param: amount)"),
        "{}",
        zero.stderr
    );
    let json = server
        .cli(&["credits", "grant", &org, "0", "--json"])
        .fails(1);
    assert!(json.stdout.is_empty() && json.stderr.contains("amount_must_be_positive"));
    let missing = server.cli(&["org", "show", "org_doesnotexist"]).fails(1);
    assert!(
        missing.stderr.contains("error: org_not_found: "),
        "{}",
        missing.stderr
    );
    let malformed = server.cli(&["balance", "nope"]).fails(1);
    assert!(
        malformed.stderr.contains("error: invalid_id: "),
        "{}",
        malformed.stderr
    );
    let dots = server.cli(&["org", "show", ".."]).fails(1);
    assert!(dots.stderr.contains("invalid_id"), "{}", dots.stderr);

    // The same idempotency key with another request is a conflict, and moves nothing.
    let key = ["--idempotency-key", "cli-test-conflict"];
    server
        .cli(&["credits", "grant", &org, "3", key[0], key[1]])
        .ok();
    let conflict = server
        .cli(&["credits", "grant", &org, "4", key[0], key[1]])
        .fails(1);
    assert!(
        conflict.stderr.contains("idempotency_key_reused"),
        "{}",
        conflict.stderr
    );
    let balance = server.cli(&["balance", &org, "--json"]).ok().json();
    assert_eq!(balance["available"], "3.00");

    // A wrong token.
    let wrong = server
        .cli_env(
            &["org", "list"],
            &[("CREDITGATE_OPERATOR_TOKEN", "op_wrong")],
        )
        .fails(1);
    assert!(
        wrong.stderr.contains("error: invalid_api_key: "),
        "{}",
        wrong.stderr
    );
    let wrong = server
        .cli(&["org", "list", "--token", "op_wrong_flag"])
        .fails(1);
    assert!(wrong.stderr.contains("invalid_api_key"), "{}", wrong.stderr);

    // No token at all, then the token `serve` keeps in its data directory.
    let empty = TempDir::new("empty");
    let none = server
        .cli_env(
            &["org", "list"],
            &[("CREDITGATE_DATA_DIR", &empty.0.to_string_lossy())],
        )
        .fails(1);
    assert!(none.stderr.contains("no operator token"), "{}", none.stderr);
    std::fs::write(empty.0.join("operator_token"), format!("{TOKEN}\n")).expect("write");
    let found = server
        .cli_env(
            &["org", "show", &org],
            &[("CREDITGATE_DATA_DIR", &empty.0.to_string_lossy())],
        )
        .ok();
    assert_eq!(found.field("id"), org);

    // Unreachable: exit 2.
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        listener.local_addr().expect("an address").port()
    };
    let url = format!("http://127.0.0.1:{port}");
    let down = server.cli(&["balance", &org, "--url", &url]).fails(2);
    assert!(
        down.stderr.contains("error: unreachable: "),
        "{}",
        down.stderr
    );
    let bad_url = server
        .cli(&["balance", &org, "--url", "not a url"])
        .fails(1);
    assert!(bad_url.stderr.contains("--url"), "{}", bad_url.stderr);
}

#[test]
fn refunds_go_to_the_payment_and_name_the_refusal() {
    let server = Server::start();
    // No such payment: 404 from the refunds route, exit 1.
    let missing = server
        .cli(&["credits", "refund", "pay_doesnotexist", "--amount", "1.00"])
        .fails(1);
    assert!(
        missing.stderr.contains("error: payment_not_found: "),
        "{}",
        missing.stderr
    );
    // The key was announced before the request, so a lost answer can be retried.
    assert!(
        missing
            .stderr
            .contains("(to retry safely: creditgate credits refund … --idempotency-key cli_"),
        "{}",
        missing.stderr
    );
    // Bad input is refused before anything is read, naming the field.
    let fraction = server
        .cli(&[
            "credits",
            "refund",
            "pay_doesnotexist",
            "--amount",
            "0.001",
            "--reason",
            "test",
        ])
        .fails(1);
    assert!(
        fraction.stderr.contains("(param: amount)"),
        "{}",
        fraction.stderr
    );
    let malformed = server.cli(&["credits", "refund", "nope"]).fails(1);
    assert!(
        malformed.stderr.contains("error: invalid_id: "),
        "{}",
        malformed.stderr
    );
}
