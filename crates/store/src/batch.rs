//! The one writer of balances: group commit.
//!
//! Callers hand operations to a [`LedgerWriter`]; one loop per process takes whatever has
//! queued up (at most `batch_len_max` operations, waiting at most `batch_wait_us` for more),
//! and hands the batch to its backend, which, inside one transaction, loads the rows the
//! batch touches (locking them on PostgreSQL), runs the pure engine over every operation in
//! order, writes the change set and commits. Only then are the callers answered. A rejected
//! operation changes nothing, so it never fails its batch-mates; a database error fails the
//! whole batch, and nothing of it is committed.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use creditgate_domain::ledger::{
    apply, AccountId, ChangeSet, LedgerState, Operation, Outcome, Refusal, Rejection,
};
use creditgate_domain::Timestamp;
use tokio::sync::{mpsc, oneshot};

use crate::{Clock, StoreError};

mod keys;

pub(crate) use keys::BatchKeys;

/// Bounds of the writer.
#[derive(Clone, Debug)]
pub struct WriterConfig {
    /// Most operations committed in one transaction.
    pub batch_len_max: usize,
    /// Longest the writer waits for more operations once it has one (0: take what is queued).
    pub batch_wait_us: u64,
    /// Most submissions waiting for the writer; beyond it callers get [`WriteError::Overloaded`].
    pub queue_len_max: usize,
    /// Most operations in one `submit_many` call.
    pub submit_len_max: usize,
}

impl Default for WriterConfig {
    fn default() -> WriterConfig {
        WriterConfig {
            batch_len_max: 4_096,
            batch_wait_us: 0,
            queue_len_max: 65_536,
            submit_len_max: 10_000,
        }
    }
}

/// Why an operation got no outcome.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("the ledger writer's queue is full")]
    /// The queue already holds [`WriterConfig::queue_len_max`] submissions; try again later.
    Overloaded,
    #[error("too many operations in one submission")]
    /// One submission holds more than [`WriterConfig::submit_len_max`] operations.
    TooManyOperations,
    #[error("the ledger writer has stopped")]
    /// The writer loop has shut down; nothing submitted now will be written.
    Stopped,
    /// The batch was rolled back — or, if the connection was lost during COMMIT, its outcome
    /// is unknown. Either way, submitting the same operations (same ids) again is safe.
    #[error("the batch failed; submitting the same ids again is safe: {0}")]
    Store(Arc<StoreError>),
}

struct Submission {
    operations: Vec<Operation>,
    reply: oneshot::Sender<Result<Vec<Outcome>, WriteError>>,
}

/// The handle callers use to change balances. Cheap to clone.
#[derive(Clone)]
pub struct LedgerWriter {
    queue: mpsc::Sender<Submission>,
    submit_len_max: usize,
    stats: Arc<WriterStats>,
}

/// Counters a benchmark or `/metrics` can read.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Batches committed since the writer started.
    pub batches: std::sync::atomic::AtomicU64,
    /// Operations decided in those batches, rejected ones included.
    pub operations: std::sync::atomic::AtomicU64,
    /// Batches by size: one counter per bound of [`BATCH_LEN_BUCKETS`], plus one for larger.
    pub batch_len_counts: [std::sync::atomic::AtomicU64; BATCH_LEN_BUCKETS.len() + 1],
    /// Commits by latency: one counter per bound of [`COMMIT_US_BUCKETS`], plus one for slower.
    pub commit_us_counts: [std::sync::atomic::AtomicU64; COMMIT_US_BUCKETS.len() + 1],
    /// Sum of all commit latencies.
    pub commit_us_sum: std::sync::atomic::AtomicU64,
}

/// Upper bounds of the batch-size histogram.
pub const BATCH_LEN_BUCKETS: [u64; 8] = [1, 2, 4, 16, 64, 256, 1024, 4096];
/// Upper bounds of the commit-latency histogram, in microseconds.
pub const COMMIT_US_BUCKETS: [u64; 10] = [
    100, 250, 500, 1_000, 2_000, 5_000, 10_000, 25_000, 100_000, 1_000_000,
];

impl WriterStats {
    fn record(&self, operations: usize, commit_us: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let len = operations as u64;
        self.batches.fetch_add(1, Relaxed);
        self.operations.fetch_add(len, Relaxed);
        let bucket = BATCH_LEN_BUCKETS
            .iter()
            .position(|&b| len <= b)
            .unwrap_or(BATCH_LEN_BUCKETS.len());
        self.batch_len_counts[bucket].fetch_add(1, Relaxed);
        let bucket = COMMIT_US_BUCKETS
            .iter()
            .position(|&b| commit_us <= b)
            .unwrap_or(COMMIT_US_BUCKETS.len());
        self.commit_us_counts[bucket].fetch_add(1, Relaxed);
        self.commit_us_sum.fetch_add(commit_us, Relaxed);
    }

    /// Prometheus exposition text of the writer's histograms.
    pub fn text(&self) -> String {
        use std::fmt::Write;
        use std::sync::atomic::Ordering::Relaxed;
        let mut out = String::new();
        let mut histogram = |name: &str,
                             help: &str,
                             bounds: &[u64],
                             counts: &[std::sync::atomic::AtomicU64],
                             sum: String,
                             scale: &dyn Fn(u64) -> String| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
            let mut cumulative = 0;
            for (bound, count) in bounds.iter().zip(counts) {
                cumulative += count.load(Relaxed);
                let _ = writeln!(
                    out,
                    "{name}_bucket{{le=\"{}\"}} {cumulative}",
                    scale(*bound)
                );
            }
            cumulative += counts[bounds.len()].load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}\n{name}_sum {sum}\n{name}_count {cumulative}");
        };
        histogram(
            "creditgate_ledger_batch_operations",
            "Operations per ledger batch.",
            &BATCH_LEN_BUCKETS,
            &self.batch_len_counts,
            self.operations.load(Relaxed).to_string(),
            &|b| b.to_string(),
        );
        histogram(
            "creditgate_ledger_commit_seconds",
            "Time to decide and commit one ledger batch.",
            &COMMIT_US_BUCKETS,
            &self.commit_us_counts,
            micros_as_seconds(self.commit_us_sum.load(Relaxed)),
            &|b| micros_as_seconds(b),
        );
        out
    }
}

/// `1500` → `"0.001500"`, without floating point.
fn micros_as_seconds(micros: u64) -> String {
    format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

impl LedgerWriter {
    /// Applies one operation; answers after it is durable.
    pub async fn submit(&self, operation: Operation) -> Result<Outcome, WriteError> {
        let mut outcomes = self.submit_many(vec![operation]).await?;
        Ok(outcomes.pop().expect("one outcome per operation"))
    }

    /// Applies several operations, in order, in one batch; one outcome each.
    pub async fn submit_many(
        &self,
        operations: Vec<Operation>,
    ) -> Result<Vec<Outcome>, WriteError> {
        if operations.is_empty() {
            return Ok(Vec::new());
        }
        if operations.len() > self.submit_len_max {
            return Err(WriteError::TooManyOperations);
        }
        let (reply, answer) = oneshot::channel();
        self.queue
            .try_send(Submission { operations, reply })
            .map_err(|error| match error {
                mpsc::error::TrySendError::Full(_) => WriteError::Overloaded,
                mpsc::error::TrySendError::Closed(_) => WriteError::Stopped,
            })?;
        answer.await.map_err(|_| WriteError::Stopped)?
    }

    /// Whether the writer loop has stopped (nothing submitted now would be written).
    pub fn is_stopped(&self) -> bool {
        self.queue.is_closed()
    }

    /// The writer's histograms in Prometheus' text format.
    pub fn stats_text(&self) -> String {
        self.stats.text()
    }

    /// (batches committed, operations committed) so far; counted before callers are answered.
    pub fn stats(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.stats.batches.load(Relaxed),
            self.stats.operations.load(Relaxed),
        )
    }
}

/// What a backend does with one batch, inside one transaction.
pub(crate) trait BatchBackend: Send + 'static {
    /// Loads what `keys` names into a [`LedgerState`] (locking account rows where the backend
    /// shares the database), runs `decide`, writes its change set and commits.
    fn commit(
        &mut self,
        keys: &BatchKeys,
        now: Timestamp,
        decide: &mut (dyn FnMut(&mut LedgerState) -> ChangeSet + Send),
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + Send;

    /// Whether the loop should run on a dedicated thread (blocking I/O) or as a task.
    fn blocking() -> bool;

    /// Housekeeping between batches, after the last one's callers were answered.
    fn after_answer(&mut self) -> impl std::future::Future<Output = ()> + Send {
        async {}
    }
}

pub(crate) fn start<B: BatchBackend>(
    backend: B,
    config: WriterConfig,
    clock: Arc<dyn Clock>,
) -> LedgerWriter {
    let (queue, receiver) = mpsc::channel(config.queue_len_max.max(1));
    let stats = Arc::new(WriterStats::default());
    let writer = LedgerWriter {
        queue,
        submit_len_max: config.submit_len_max,
        stats: stats.clone(),
    };
    let run = run(backend, receiver, config, clock, stats);
    if B::blocking() {
        std::thread::Builder::new()
            .name("ledger-writer".into())
            .spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                    .expect("a current-thread runtime builds")
                    .block_on(run);
            })
            .expect("the writer thread starts");
    } else {
        tokio::spawn(run);
    }
    writer
}

/// The writer loop: ends when every [`LedgerWriter`] handle is dropped and the queue is empty.
async fn run<B: BatchBackend>(
    mut backend: B,
    mut receiver: mpsc::Receiver<Submission>,
    config: WriterConfig,
    clock: Arc<dyn Clock>,
    stats: Arc<WriterStats>,
) {
    while let Some(first) = receiver.recv().await {
        let batch = collect(first, &mut receiver, &config).await;
        let now = clock.now();
        match commit(&mut backend, &batch, now, &stats).await {
            Ok(outcomes) => answer(batch, outcomes),
            Err(error) if batch.len() > 1 => {
                // What the database refused may be one submission's doing: commit each one
                // alone, so that it fails only itself.
                tracing::warn!(%error, submissions = batch.len(), "ledger batch failed; committing its submissions one by one");
                for submission in batch {
                    let alone = std::slice::from_ref(&submission);
                    match commit(&mut backend, alone, now, &stats).await {
                        Ok(outcomes) => answer(vec![submission], outcomes),
                        Err(error) => fail(vec![submission], error),
                    }
                }
            }
            Err(error) => fail(batch, error),
        }
        backend.after_answer().await;
    }
}

/// Decides and commits the operations of `batch`, in order, in one transaction.
async fn commit<B: BatchBackend>(
    backend: &mut B,
    batch: &[Submission],
    now: Timestamp,
    stats: &WriterStats,
) -> Result<Vec<Outcome>, StoreError> {
    let operations: Vec<&Operation> = batch.iter().flat_map(|s| s.operations.iter()).collect();
    let keys = BatchKeys::of(&operations);
    let mut outcomes = Vec::with_capacity(operations.len());
    let mut decide = |state: &mut LedgerState| {
        outcomes.clear();
        outcomes.extend(
            operations
                .iter()
                .map(|operation| apply(state, operation, now)),
        );
        let mut changes = state.take_changes();
        changes.refusals = refusals(state, &operations, &outcomes);
        changes
    };
    let started = Instant::now();
    backend.commit(&keys, now, &mut decide).await?;
    let commit_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    stats.record(operations.len(), commit_us);
    Ok(outcomes)
}

/// The holds a decided batch refused for lack of credits, the first per account only (the
/// one that turns its access off), with the account as the batch left it.
fn refusals(state: &LedgerState, operations: &[&Operation], outcomes: &[Outcome]) -> Vec<Refusal> {
    let mut refusals: Vec<Refusal> = Vec::new();
    for (operation, outcome) in operations.iter().zip(outcomes) {
        let (Operation::PlaceHold(request), Err(Rejection::InsufficientFunds)) =
            (operation, outcome)
        else {
            continue;
        };
        if refusals
            .iter()
            .any(|r| r.account.id == request.debit_account_id)
        {
            continue;
        }
        let Some(account) = state.account(&request.debit_account_id) else {
            continue;
        };
        refusals.push(Refusal {
            account: account.clone(),
            amount: request.amount,
            hold_id: request.id.clone(),
            reference: request.reference.clone(),
        });
    }
    refusals
}

async fn collect(
    first: Submission,
    receiver: &mut mpsc::Receiver<Submission>,
    config: &WriterConfig,
) -> Vec<Submission> {
    let mut len = first.operations.len();
    let mut batch = vec![first];
    let deadline = Instant::now() + Duration::from_micros(config.batch_wait_us);
    while len < config.batch_len_max {
        let next = match receiver.try_recv() {
            Ok(next) => next,
            Err(_) if config.batch_wait_us == 0 => break,
            Err(_) => match tokio::time::timeout_at(deadline.into(), receiver.recv()).await {
                Ok(Some(next)) => next,
                _ => break,
            },
        };
        len += next.operations.len();
        batch.push(next);
    }
    batch
}

fn answer(batch: Vec<Submission>, outcomes: Vec<Outcome>) {
    let mut outcomes = outcomes.into_iter();
    for submission in batch {
        let mine = outcomes
            .by_ref()
            .take(submission.operations.len())
            .collect();
        let _ = submission.reply.send(Ok(mine));
    }
}

fn fail(batch: Vec<Submission>, error: StoreError) {
    tracing::error!(%error, "ledger batch failed");
    let error = Arc::new(error);
    for submission in batch {
        let _ = submission.reply.send(Err(WriteError::Store(error.clone())));
    }
}

/// The accounts of loaded holds, which the batch keys could not know before loading them.
pub(crate) fn accounts_of_holds<'a>(
    holds: impl Iterator<Item = &'a creditgate_domain::ledger::Hold>,
) -> BTreeSet<AccountId> {
    holds
        .flat_map(|hold| {
            [
                hold.debit_account_id.clone(),
                hold.credit_account_id.clone(),
            ]
        })
        .collect()
}
