//! The workloads: [`ORG_COUNT`] funded org accounts, then one figure per kind of caller.
//!
//! Every debit moves [`DEBIT`] from an org to the usage-revenue operator account as a
//! `Transfer` of kind `Usage`. Callers spread over the orgs pick org `caller + seq × callers`,
//! so operations in flight at the same moment land on different orgs.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use creditgate_domain::ledger::{
    Account, AccountId, AccountKind, HoldId, Operation, Outcome, PlaceHoldRequest,
    SettleHoldRequest, Status, TransferId, TransferKind, TransferRequest,
};
use creditgate_domain::Amount;
use creditgate_store::{Clock, LedgerWriter, Store, SystemClock, WriteError, WriterConfig};
use tokio::task::JoinSet;

/// Org accounts created and funded before any figure.
pub const ORG_COUNT: usize = 10_000;
/// What each org buys up front: 1,000,000 units, enough for 10⁹ debits, and 10,000 of them
/// still fit in an `i64` on the payments-received side.
const FUNDING: Amount = Amount::from_micros(1_000_000_000_000);
/// One debit: 0.001 units.
const DEBIT: Amount = Amount::from_micros(1_000);
/// A hold reserves twice a debit and settles one debit, releasing the rest.
const HOLD: Amount = Amount::from_micros(2_000);
const HOLD_TTL_MS: i64 = 60_000;
/// Purchases per `submit_many` while funding the orgs.
const FUNDING_BATCH_LEN: usize = 1_000;

/// What one figure's callers do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Figure {
    /// `Store::naive_debit` per operation: one guarded UPDATE + INSERT per transaction.
    Naive,
    /// One debit per `submit`, callers spread over every org.
    Single,
    /// One debit per `submit`, every caller on the same org.
    Hot,
    /// `PlaceHold` then `SettleHold`, one `submit` each: one charge.
    HoldSettle,
    /// `--batch-len` debits per `submit_many`, spread over every org.
    Batched,
    /// `--batch-len` debits per `submit_many`, every one on the same org.
    BatchedHot,
}

impl Figure {
    /// The order figures run in. Batches go last: they add the most transfers, and every
    /// figure after them would pay for a larger table.
    pub const ALL: [Figure; 6] = [
        Figure::Naive,
        Figure::Single,
        Figure::Hot,
        Figure::HoldSettle,
        Figure::Batched,
        Figure::BatchedHot,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Figure::Naive => "naive",
            Figure::Single => "single",
            Figure::Hot => "hot",
            Figure::HoldSettle => "hold_settle",
            Figure::Batched => "batched",
            Figure::BatchedHot => "batched_hot",
        }
    }
}

/// How long each figure runs.
#[derive(Clone, Copy, Debug)]
pub enum Span {
    Duration(Duration),
    /// Operations (charges, for hold+settle) over all callers.
    Operations(u64),
}

/// The shape of every figure.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// Concurrent callers of every figure but the batched one.
    pub callers: usize,
    /// Concurrent callers of the batched figure: a few keep the writer's queue full, and
    /// each one more only adds operations to wait for after the deadline.
    pub batch_callers: usize,
    pub batch_len: usize,
    pub span: Span,
}

impl Plan {
    fn callers_of(&self, figure: Figure) -> usize {
        match figure {
            Figure::Batched | Figure::BatchedHot => self.batch_callers,
            _ => self.callers,
        }
    }
}

/// One figure's result.
#[derive(Clone, Debug, Default)]
pub struct Measured {
    /// Operations created and durable (charges, for hold+settle).
    pub acknowledged: u64,
    /// Refused by the engine (none expected: every org is funded).
    pub rejected: u64,
    /// Failed in the store (none expected).
    pub failed: u64,
    pub first_problem: Option<String>,
    /// From the first call to the last answer.
    pub elapsed: Duration,
    /// Writer batches committed during the figure, and the operations in them (zero for the
    /// naive baseline, which bypasses the writer).
    pub batches: u64,
    pub batched_operations: u64,
    /// Bytes this process handed to `write`/`pwrite` during the figure (`wchar` of
    /// `/proc/self/io`): SQLite's WAL frames and checkpoints. `None` where it is not readable.
    pub written_bytes: Option<u64>,
}

impl Measured {
    pub fn per_second(&self) -> u64 {
        let elapsed_us = u64::try_from(self.elapsed.as_micros()).unwrap_or(u64::MAX);
        self.acknowledged.saturating_mul(1_000_000) / elapsed_us.max(1)
    }

    /// Average operations per writer batch, in tenths.
    pub fn batch_len_tenths(&self) -> u64 {
        self.batched_operations.saturating_mul(10) / self.batches.max(1)
    }

    /// Bytes written per acknowledged operation (per charge, for hold+settle).
    pub fn written_per_operation(&self) -> Option<u64> {
        Some(self.written_bytes? / self.acknowledged.max(1))
    }
}

/// `wchar` of `/proc/self/io`: bytes this process has passed to write calls so far.
fn written_bytes() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    io.lines()
        .find_map(|line| line.strip_prefix("wchar:"))
        .and_then(|value| value.trim().parse().ok())
}

/// A store with its writer and funded orgs, ready to measure.
pub struct Bench {
    shared: Arc<Shared>,
}

struct Shared {
    store: Store,
    writer: LedgerWriter,
    clock: Arc<dyn Clock>,
    orgs: Vec<AccountId>,
    revenue: AccountId,
}

impl Bench {
    /// Starts the writer, creates [`ORG_COUNT`] org accounts and funds each with one purchase.
    pub async fn prepare(store: Store) -> anyhow::Result<Bench> {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let writer = store
            .start_writer(WriterConfig::default(), clock.clone())
            .await?;
        let mut orgs = Vec::with_capacity(ORG_COUNT);
        for index in 0..ORG_COUNT {
            let id = AccountId::new(format!("acct_org_bench_{index:05}"));
            let account = Account::new(id.clone(), AccountKind::OrgCredit, Some(Amount::ZERO));
            store.create_account(&account, clock.now()).await?;
            orgs.push(id);
        }
        fund(&writer, &orgs).await?;
        // Fresh tables have no statistics; give the planner some, as a live database has.
        store.analyze().await?;
        let revenue = AccountKind::UsageRevenue
            .operator_account_id()
            .expect("usage revenue is an operator account");
        Ok(Bench {
            shared: Arc::new(Shared {
                store,
                writer,
                clock,
                orgs,
                revenue,
            }),
        })
    }

    /// Runs one figure with the plan's callers for it, all at once.
    pub async fn measure(&self, figure: Figure, plan: &Plan) -> Measured {
        let (batches_before, operations_before) = self.shared.writer.stats();
        let written_before = written_bytes();
        let started = Instant::now();
        let budget = Arc::new(Budget::new(plan.span, started));
        let mut callers = JoinSet::new();
        let count = plan.callers_of(figure);
        for index in 0..count {
            let caller = Caller {
                index,
                callers: count,
                batch_len: plan.batch_len,
                budget: budget.clone(),
                shared: self.shared.clone(),
            };
            callers.spawn(caller.run(figure));
        }
        let mut tally = Tally::default();
        while let Some(done) = callers.join_next().await {
            tally.merge(done.expect("a bench caller does not panic"));
        }
        let elapsed = started.elapsed();
        let written = written_bytes()
            .zip(written_before)
            .map(|(after, before)| after.saturating_sub(before));
        let (batches_after, operations_after) = self.shared.writer.stats();
        Measured {
            acknowledged: tally.acknowledged,
            rejected: tally.rejected,
            failed: tally.failed,
            first_problem: tally.first_problem,
            elapsed,
            batches: batches_after - batches_before,
            batched_operations: operations_after - operations_before,
            written_bytes: written,
        }
    }
}

async fn fund(writer: &LedgerWriter, orgs: &[AccountId]) -> anyhow::Result<()> {
    let payments = AccountKind::PaymentsReceived
        .operator_account_id()
        .expect("payments received is an operator account");
    for chunk in orgs.chunks(FUNDING_BATCH_LEN) {
        let purchases = chunk
            .iter()
            .map(|org| {
                Operation::Transfer(TransferRequest {
                    id: TransferId::new(format!("txn_purchase_{org}")),
                    debit_account_id: payments.clone(),
                    credit_account_id: org.clone(),
                    amount: FUNDING,
                    kind: TransferKind::Purchase,
                    reference: String::new(),
                    grant: None,
                })
            })
            .collect();
        for (org, outcome) in chunk.iter().zip(writer.submit_many(purchases).await?) {
            if !matches!(&outcome, Ok(receipt) if receipt.status == Status::Created) {
                anyhow::bail!("funding {org} was not created: {outcome:?}");
            }
        }
    }
    Ok(())
}

/// When callers stop: each claims work before doing it.
enum Budget {
    Until(Instant),
    Count { claimed: AtomicU64, total: u64 },
}

impl Budget {
    fn new(span: Span, started: Instant) -> Budget {
        match span {
            Span::Duration(duration) => Budget::Until(started + duration),
            Span::Operations(total) => Budget::Count {
                claimed: AtomicU64::new(0),
                total,
            },
        }
    }

    /// How many of `wanted` operations the caller may still do (0: stop).
    fn claim(&self, wanted: u64) -> u64 {
        match self {
            Budget::Until(deadline) if Instant::now() < *deadline => wanted,
            Budget::Until(_) => 0,
            Budget::Count { claimed, total } => {
                let before = claimed.fetch_add(wanted, Relaxed);
                total.saturating_sub(before).min(wanted)
            }
        }
    }
}

/// What one caller saw.
#[derive(Debug, Default)]
struct Tally {
    acknowledged: u64,
    rejected: u64,
    failed: u64,
    first_problem: Option<String>,
}

impl Tally {
    /// Counts a writer answer; true when the operation was created.
    fn answer(&mut self, answer: Result<Outcome, WriteError>) -> bool {
        match answer {
            Ok(Ok(receipt)) if receipt.status == Status::Created => return true,
            Ok(Ok(receipt)) => self.reject(format!("not new: {receipt:?}")),
            Ok(Err(rejection)) => self.reject(rejection.to_string()),
            Err(error) => self.fail(1, error.to_string()),
        }
        false
    }

    fn reject(&mut self, problem: String) {
        self.rejected += 1;
        self.first_problem.get_or_insert(problem);
    }

    fn fail(&mut self, operations: u64, problem: String) {
        self.failed += operations;
        self.first_problem.get_or_insert(problem);
    }

    fn merge(&mut self, other: Tally) {
        self.acknowledged += other.acknowledged;
        self.rejected += other.rejected;
        self.failed += other.failed;
        if self.first_problem.is_none() {
            self.first_problem = other.first_problem;
        }
    }
}

/// One concurrent caller of one figure.
struct Caller {
    index: usize,
    /// Callers in this figure.
    callers: usize,
    batch_len: usize,
    budget: Arc<Budget>,
    shared: Arc<Shared>,
}

impl Caller {
    async fn run(self, figure: Figure) -> Tally {
        let mut tally = Tally::default();
        let wanted = match figure {
            Figure::Batched | Figure::BatchedHot => self.batch_len as u64,
            _ => 1,
        };
        let mut seq = 0;
        loop {
            let granted = self.budget.claim(wanted);
            if granted == 0 {
                return tally;
            }
            match figure {
                Figure::Naive => self.naive(seq, &mut tally).await,
                Figure::Single => self.single(figure, self.org(seq), seq, &mut tally).await,
                Figure::Hot => {
                    self.single(figure, &self.shared.orgs[0], seq, &mut tally)
                        .await
                }
                Figure::HoldSettle => self.hold_settle(seq, &mut tally).await,
                Figure::Batched => self.batched(figure, seq, granted, &mut tally).await,
                Figure::BatchedHot => self.batched(figure, seq, granted, &mut tally).await,
            }
            seq += granted;
        }
    }

    async fn naive(&self, seq: u64, tally: &mut Tally) {
        let shared = &self.shared;
        let id = self.id("naive", seq);
        let now = shared.clock.now();
        let debited = shared
            .store
            .naive_debit(self.org(seq), &shared.revenue, &id, DEBIT.micros(), now)
            .await;
        match debited {
            Ok(true) => tally.acknowledged += 1,
            Ok(false) => tally.reject("naive debit refused: insufficient funds".to_owned()),
            Err(error) => tally.fail(1, error.to_string()),
        }
    }

    async fn single(&self, figure: Figure, org: &AccountId, seq: u64, tally: &mut Tally) {
        let debit = self.debit(self.id(figure.name(), seq), org);
        if tally.answer(self.shared.writer.submit(debit).await) {
            tally.acknowledged += 1;
        }
    }

    async fn hold_settle(&self, seq: u64, tally: &mut Tally) {
        let hold_id = HoldId::new(self.id("hold", seq));
        let place = Operation::PlaceHold(PlaceHoldRequest {
            id: hold_id.clone(),
            debit_account_id: self.org(seq).clone(),
            credit_account_id: self.shared.revenue.clone(),
            amount: HOLD,
            reference: String::new(),
            ttl_ms: HOLD_TTL_MS,
        });
        if !tally.answer(self.shared.writer.submit(place).await) {
            return;
        }
        let settle = Operation::SettleHold(SettleHoldRequest {
            id: TransferId::new(self.id("settle", seq)),
            hold_id,
            amount: DEBIT,
        });
        if tally.answer(self.shared.writer.submit(settle).await) {
            tally.acknowledged += 1;
        }
    }

    async fn batched(&self, figure: Figure, first_seq: u64, len: u64, tally: &mut Tally) {
        let org = |seq| match figure {
            Figure::BatchedHot => &self.shared.orgs[0],
            _ => self.org(seq),
        };
        let debits = (first_seq..first_seq + len)
            .map(|seq| self.debit(self.id(figure.name(), seq), org(seq)))
            .collect();
        match self.shared.writer.submit_many(debits).await {
            Ok(outcomes) => {
                for outcome in outcomes {
                    if tally.answer(Ok(outcome)) {
                        tally.acknowledged += 1;
                    }
                }
            }
            Err(error) => tally.fail(len, error.to_string()),
        }
    }

    fn debit(&self, id: String, org: &AccountId) -> Operation {
        Operation::Transfer(TransferRequest {
            id: TransferId::new(id),
            debit_account_id: org.clone(),
            credit_account_id: self.shared.revenue.clone(),
            amount: DEBIT,
            kind: TransferKind::Usage,
            reference: String::new(),
            grant: None,
        })
    }

    /// The org of this caller's `seq`-th operation: callers in step use different orgs.
    fn org(&self, seq: u64) -> &AccountId {
        let orgs = &self.shared.orgs;
        let at = (self.index as u64 + seq * self.callers as u64) % orgs.len() as u64;
        &orgs[at as usize]
    }

    /// Ids grow with time (sequence first, then caller), as ULID- or timestamp-prefixed
    /// client ids do: new index entries land at the end of the id index, not all over it.
    fn id(&self, kind: &str, seq: u64) -> String {
        format!("bench_{kind}_{seq:012}_{:04}", self.index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_budget_grants_exactly_its_total() {
        let budget = Budget::new(Span::Operations(2_500), Instant::now());
        let granted: Vec<u64> = (0..4).map(|_| budget.claim(1_000)).collect();
        assert_eq!(granted, [1_000, 1_000, 500, 0]);
    }

    #[test]
    fn a_duration_budget_stops_at_its_deadline() {
        let budget = Budget::new(Span::Duration(Duration::ZERO), Instant::now());
        assert_eq!(budget.claim(1), 0);
    }
}
