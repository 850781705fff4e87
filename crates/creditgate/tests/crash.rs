//! Crash test: `kill -9` the ledger writer's process mid-load, five times over, on both
//! backends. Every operation it acknowledged must be in the ledger afterwards, nothing it did
//! not finish may be half-written (the invariant checker), and the next process on the same
//! database must work, replaying acknowledged ids as `exists`.

#![cfg(unix)]

mod support;

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use creditgate_store::testing::{self, TestDatabase};
use rand::Rng;
use support::{Ack, AckReader, LoadRun, KILL_WAIT_MAX};
use tokio::time::Instant;

/// Kills per test, each against the same database with a new prefix.
const KILLS: usize = 5;
/// How long each run is read before it is killed, picked at random per run.
const RUN_MS_MIN: u64 = 100;
const RUN_MS_MAX: u64 = 400;
const ORG: &str = "acct_org_crash";
const SIGKILL: i32 = 9;
/// Longest wait for a load's first acknowledgement.
const START_WAIT_MAX: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keeps_every_acknowledged_operation_through_kill_9() {
    survives_kill_9(testing::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keeps_every_acknowledged_operation_through_kill_9() {
    let Some(database) = testing::postgres().await else {
        return;
    };
    survives_kill_9(database).await;
}

/// The load killed at run `kill`: debits and holds take turns.
fn killed_run(kill: usize) -> LoadRun {
    LoadRun {
        org: ORG.to_owned(),
        prefix: format!("crash{kill}"),
        mode: ["debits", "holds"][kill % 2],
        callers: 32,
        ops: 1_000_000,
        amount: "1.00",
    }
}

async fn survives_kill_9(database: TestDatabase) {
    let run_ms: Vec<u64> = {
        let mut rng = rand::thread_rng();
        (0..KILLS)
            .map(|_| rng.gen_range(RUN_MS_MIN..=RUN_MS_MAX))
            .collect()
    };
    eprintln!(
        "{:?}: run times before each kill (ms): {run_ms:?}",
        database.kind
    );
    let mut acks = Vec::new();
    for (kill, ms) in run_ms.iter().enumerate() {
        let run = killed_run(kill);
        let acked = run_then_kill(&database.url, &run, Duration::from_millis(*ms)).await;
        eprintln!(
            "{:?} {}: {} acks before kill -9",
            database.kind,
            run.prefix,
            acked.len()
        );
        // Every caller pays for its own holds and usage, so nothing is ever refused.
        assert!(acked.iter().all(|ack| ack.code == "created"), "{acked:?}");
        acks.extend(acked);
    }
    assert!(
        !acks.is_empty(),
        "no run got far enough to acknowledge anything"
    );
    let store = database
        .open()
        .await
        .expect("the store opens after the kills");
    support::assert_acks_recorded(&store, &acks).await;
    support::assert_invariants(&store).await;

    // Restart: replaying the first killed run's ids answers `exists` for all it had accepted…
    let replay = LoadRun {
        ops: 3,
        ..killed_run(0)
    };
    let replayed = support::run_to_end(&database.url, &replay).await;
    assert_replayed(&acks, &replayed);
    // …and a fresh run does all its work.
    let fresh = LoadRun {
        prefix: "after".to_owned(),
        callers: 8,
        ops: 5,
        ..killed_run(1)
    };
    let done = support::run_to_end(&database.url, &fresh).await;
    assert_eq!(
        done.len(),
        8 + 8 * 5 * 3,
        "fund + (hold, settle, refill) per round"
    );
    assert!(done.iter().all(|ack| ack.code == "created"), "{done:?}");
    support::assert_acks_recorded(&store, &acks).await;
    support::assert_acks_recorded(&store, &replayed).await;
    support::assert_acks_recorded(&store, &done).await;
    support::assert_invariants(&store).await;
}

/// Reads the load's acks for `run_for`, kills it with SIGKILL, and drains what it had
/// already written (each of those lines followed a commit, so they count as well).
async fn run_then_kill(database_url: &str, run: &LoadRun, run_for: Duration) -> Vec<Ack> {
    let mut child = run.spawn(database_url);
    let mut reader = AckReader::new(&mut child);
    // The kill falls `run_for` after the load's first acknowledgement, not after its spawn: a
    // process that starts slowly on a busy machine (connecting, migrating) is still killed
    // mid-load rather than before it did anything.
    let started = Instant::now() + START_WAIT_MAX;
    while reader.acks.is_empty() && Instant::now() < started {
        let ended = reader
            .read_until(Instant::now() + Duration::from_millis(20))
            .await;
        assert!(!ended, "{run:?} stopped before it was killed");
    }
    let ended = reader.read_until(Instant::now() + run_for).await;
    assert!(!ended, "{run:?} stopped before it was killed");
    child.start_kill().expect("kill -9 the load");
    let deadline = Instant::now() + KILL_WAIT_MAX;
    let status = support::wait(&mut child, deadline).await;
    assert_eq!(
        status.signal(),
        Some(SIGKILL),
        "{run:?} ended with {status}"
    );
    assert!(
        reader.read_until(deadline).await,
        "the killed load's pipe closes"
    );
    reader.acks
}

/// Every id accepted before the kill comes back `exists` when submitted again.
fn assert_replayed(before: &[Ack], replayed: &[Ack]) {
    let before: HashMap<&str, &str> = before
        .iter()
        .map(|ack| (ack.id.as_str(), ack.code.as_str()))
        .collect();
    let mut repeats = 0;
    for ack in replayed {
        if before.get(ack.id.as_str()) == Some(&"created") {
            assert_eq!(ack.code, "exists", "{} was created before the kill", ack.id);
            repeats += 1;
        }
    }
    eprintln!(
        "replay: {repeats} of {} ids were already recorded",
        replayed.len()
    );
}
