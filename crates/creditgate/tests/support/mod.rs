//! Running `creditgate ledger-load` as a child process and checking what it acknowledged.
//!
//! The load prints `ack <operation id> <result code>` after each commit; these helpers read
//! those lines (complete lines only: a line cut by a kill is not an acknowledgement), and
//! check them against the ledger the processes left behind.

// Each test file compiles this module on its own and uses only part of it.
#![allow(dead_code)]

use std::collections::HashSet;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use creditgate_store::Store;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tokio::time::Instant;

/// Longest a load run that is meant to finish may take.
pub const RUN_DURATION_MAX: Duration = Duration::from_secs(120);
/// Longest a killed process may take to be reaped, and its pipe to be drained.
pub const KILL_WAIT_MAX: Duration = Duration::from_secs(10);

/// Result codes that mean the ledger recorded the operation.
pub const ACCEPTED: [&str; 2] = ["created", "exists"];

/// One `ledger-load` invocation.
#[derive(Clone, Debug)]
pub struct LoadRun {
    pub org: String,
    pub prefix: String,
    /// `debits`, `holds` or `race`.
    pub mode: &'static str,
    pub callers: usize,
    /// Rounds per caller.
    pub ops: u64,
    pub amount: &'static str,
}

impl LoadRun {
    /// Starts the load with stdout piped; it is killed if the handle is dropped (a failing test).
    pub fn spawn(&self, database_url: &str) -> Child {
        Command::new(env!("CARGO_BIN_EXE_creditgate"))
            .args(["ledger-load", "--database-url", database_url])
            .args([
                "--org",
                &self.org,
                "--prefix",
                &self.prefix,
                "--mode",
                self.mode,
            ])
            .args(["--callers", &self.callers.to_string()])
            .args(["--ops", &self.ops.to_string(), "--amount", self.amount])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the creditgate binary starts")
    }
}

/// One acknowledged operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    pub id: String,
    pub code: String,
}

impl Ack {
    pub fn accepted(&self) -> bool {
        ACCEPTED.contains(&self.code.as_str())
    }

    /// Holds are named `….hold` by the load; every other operation records a transfer.
    pub fn is_hold(&self) -> bool {
        self.id.ends_with(".hold")
    }
}

/// Parses one complete stdout line of the load.
pub fn parse_ack(line: &str) -> Ack {
    let parts: Vec<&str> = line.split(' ').collect();
    match parts.as_slice() {
        ["ack", id, code] if !id.is_empty() && !code.is_empty() => Ack {
            id: (*id).to_owned(),
            code: (*code).to_owned(),
        },
        _ => panic!("not an ack line: {line:?}"),
    }
}

/// Reads ack lines from a child's stdout, keeping a partly read line between calls.
pub struct AckReader {
    reader: BufReader<ChildStdout>,
    partial: Vec<u8>,
    pub acks: Vec<Ack>,
}

impl AckReader {
    pub fn new(child: &mut Child) -> AckReader {
        let stdout = child.stdout.take().expect("stdout is piped");
        AckReader {
            reader: BufReader::new(stdout),
            partial: Vec::new(),
            acks: Vec::new(),
        }
    }

    /// Reads complete lines until `deadline` or end of file; returns whether it reached the end.
    pub async fn read_until(&mut self, deadline: Instant) -> bool {
        loop {
            // `read_until` keeps what it read in `partial` when the timeout cancels it.
            let read =
                tokio::time::timeout_at(deadline, self.reader.read_until(b'\n', &mut self.partial));
            let Ok(read) = read.await else {
                return false;
            };
            read.expect("reading the load's stdout");
            if self.partial.last() != Some(&b'\n') {
                // End of file. A line left without its newline was cut off by a kill: the
                // load had not finished acknowledging it, so it does not count.
                return true;
            }
            let line = String::from_utf8(std::mem::take(&mut self.partial)).expect("utf-8 output");
            self.acks.push(parse_ack(line.trim_end_matches('\n')));
        }
    }
}

/// Runs the load to its end (bounded by [`RUN_DURATION_MAX`]); it must exit 0.
pub async fn run_to_end(database_url: &str, run: &LoadRun) -> Vec<Ack> {
    let mut child = run.spawn(database_url);
    let mut reader = AckReader::new(&mut child);
    let deadline = Instant::now() + RUN_DURATION_MAX;
    assert!(
        reader.read_until(deadline).await,
        "{run:?} did not finish in time"
    );
    let status = wait(&mut child, deadline).await;
    assert!(status.success(), "{run:?} failed: {status}");
    reader.acks
}

/// Waits for the child to exit, at most until `deadline`.
pub async fn wait(child: &mut Child, deadline: Instant) -> ExitStatus {
    tokio::time::timeout_at(deadline, child.wait())
        .await
        .expect("the load exits in time")
        .expect("waiting for the load")
}

/// Every accepted operation is in the ledger (holds in holds, the rest in transfers), and no
/// refused one is.
pub async fn assert_acks_recorded(store: &Store, acks: &[Ack]) {
    let snapshot = store.snapshot().await.expect("snapshot");
    let transfers: HashSet<&str> = snapshot.transfers.iter().map(|t| t.id.as_str()).collect();
    let holds: HashSet<&str> = snapshot.holds.iter().map(|h| h.id.as_str()).collect();
    for ack in acks {
        let recorded = if ack.is_hold() {
            holds.contains(ack.id.as_str())
        } else {
            transfers.contains(ack.id.as_str())
        };
        assert_eq!(
            recorded,
            ack.accepted(),
            "{ack:?} was acknowledged, but the ledger {} it",
            if recorded { "has" } else { "lacks" }
        );
    }
}

/// The ledger's invariants hold, and nothing was forced below a floor.
pub async fn assert_invariants(store: &Store) {
    let report = store
        .check_invariants()
        .await
        .expect("invariant check runs");
    assert!(
        report.is_ok(),
        "invariants violated: {:#?}",
        report.violations
    );
    assert!(report.overspend.is_zero(), "overspend {}", report.overspend);
}
