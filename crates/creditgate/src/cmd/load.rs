//! `creditgate ledger-load`: a steady load on the ledger writer, for the crash and
//! multi-process tests.
//!
//! `--callers` tokio tasks share one writer and one org account. Every operation id starts
//! with `--prefix` (so runs against one database never collide) and ends with what the
//! operation is (`.hold` for a hold placement, a transfer otherwise), so a test can look each
//! id up in the right table. Ids are deterministic: a run repeated with the same prefix and
//! mode submits the same operations again, which the ledger answers with `exists`.
//!
//! The contract a test relies on: one stdout line `ack <operation id> <result code>` per
//! operation the writer answered, written and flushed right after the answer. The writer
//! answers only after its transaction committed, so every line a test has read names an
//! operation that is durable, even if this process is killed the next instant.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use creditgate_domain::ledger::{
    Account, AccountId, AccountKind, HoldId, Operation, Outcome, PlaceHoldRequest,
    SettleHoldRequest, Status, TransferId, TransferKind, TransferRequest,
};
use creditgate_domain::Amount;
use creditgate_store::{
    Clock, LedgerWriter, Store, StoreConfig, SystemClock, WriteError, WriterConfig,
};

/// Most concurrent callers.
pub const CALLERS_MAX: usize = 4_096;
/// Most attempts at one operation whose batch failed (the retry keeps the id, so it is safe).
pub const SUBMIT_ATTEMPTS_MAX: u32 = 5;
/// How long a hold placed by the load stays open unless settled.
pub const HOLD_TTL_MS: i64 = 10 * 60 * 1000;
/// The reference on every operation (fixed, so that a replay is `exists`, not a conflict).
const REFERENCE: &str = "ledger-load";

#[derive(clap::Args, Debug)]
pub struct LoadArgs {
    /// `sqlite:PATH` or `postgres://…`.
    #[arg(long)]
    database_url: String,
    /// The org account to load (created with floor 0 if missing).
    #[arg(long)]
    org: String,
    /// Start of every operation id this run makes.
    #[arg(long)]
    prefix: String,
    /// Concurrent callers (tokio tasks).
    #[arg(long, default_value_t = 32)]
    callers: usize,
    /// Rounds per caller: a purchase and a usage (`debits`), a hold, its settlement and a
    /// refill (`holds`), or one hold (`race`).
    #[arg(long, default_value_t = 1_000_000)]
    ops: u64,
    #[arg(long, value_enum, default_value_t = Mode::Debits)]
    mode: Mode,
    /// The amount of each purchase, usage or hold (a decimal string).
    #[arg(long, default_value = "1.00", value_parser = parse_amount)]
    amount: Amount,
}

/// What each caller does, round after round.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Purchase `amount` into the org, then a usage transfer of `amount` out of it.
    Debits,
    /// Place a hold of `amount`, settle it for half, and buy that half back.
    Holds,
    /// Only place holds of `amount`, never settling them: refusals are expected.
    Race,
}

pub async fn run(args: LoadArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=CALLERS_MAX).contains(&args.callers),
        "--callers must be between 1 and {CALLERS_MAX}"
    );
    anyhow::ensure!(args.amount.is_positive(), "--amount must be positive");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = Store::open(&StoreConfig::new(args.database_url.clone()))
        .await
        .context("opening the ledger")?;
    let org = AccountId::new(args.org.clone());
    let account = Account::new(org.clone(), AccountKind::OrgCredit, Some(Amount::ZERO));
    store.create_account(&account, clock.now()).await?;
    let writer = store.start_writer(WriterConfig::default(), clock).await?;

    let started = Instant::now();
    let load = Arc::new(Load {
        writer,
        org,
        prefix: args.prefix,
        amount: args.amount,
    });
    let mut callers = tokio::task::JoinSet::new();
    for caller in 0..args.callers {
        let load = load.clone();
        let (mode, rounds) = (args.mode, args.ops);
        callers.spawn(async move { load.caller(caller, mode, rounds).await });
    }
    let mut acks: u64 = 0;
    while let Some(joined) = callers.join_next().await {
        acks += joined.context("a caller panicked")??;
    }
    eprintln!(
        "ledger-load: {acks} operations acknowledged in {} ms",
        started.elapsed().as_millis()
    );
    Ok(())
}

fn parse_amount(text: &str) -> Result<Amount, String> {
    Amount::parse(text).map_err(|error| error.to_string())
}

/// What every caller shares.
struct Load {
    writer: LedgerWriter,
    org: AccountId,
    prefix: String,
    amount: Amount,
}

impl Load {
    /// Runs `rounds` rounds; returns how many operations were acknowledged.
    async fn caller(&self, caller: usize, mode: Mode, rounds: u64) -> anyhow::Result<u64> {
        let mut acks = 0;
        if mode == Mode::Holds {
            // Working capital for this caller's first hold; each round buys back what it spent.
            let id = self.id(caller, "fund", "purchase");
            self.submit(self.purchase(id, self.amount)).await?;
            acks += 1;
        }
        for round in 0..rounds {
            let round_id = round.to_string();
            acks += match mode {
                Mode::Debits => self.debit_round(caller, &round_id).await?,
                Mode::Holds => self.hold_round(caller, &round_id).await?,
                Mode::Race => {
                    let hold = self.place_hold(caller, &round_id);
                    self.submit(Operation::PlaceHold(hold)).await?;
                    1
                }
            };
        }
        Ok(acks)
    }

    async fn debit_round(&self, caller: usize, round: &str) -> anyhow::Result<u64> {
        let purchase = self.purchase(self.id(caller, round, "purchase"), self.amount);
        self.submit(purchase).await?;
        let usage = Operation::Transfer(TransferRequest {
            id: TransferId::new(self.id(caller, round, "usage")),
            debit_account_id: self.org.clone(),
            credit_account_id: operator(AccountKind::UsageRevenue),
            amount: self.amount,
            kind: TransferKind::Usage,
            reference: REFERENCE.to_owned(),
            grant: None,
        });
        self.submit(usage).await?;
        Ok(2)
    }

    async fn hold_round(&self, caller: usize, round: &str) -> anyhow::Result<u64> {
        let hold = self.place_hold(caller, round);
        let hold_id = hold.id.clone();
        if !self.submit(Operation::PlaceHold(hold)).await? {
            return Ok(1);
        }
        let part = Amount::from_micros((self.amount.micros() / 2).max(1));
        let settle = Operation::SettleHold(SettleHoldRequest {
            id: TransferId::new(self.id(caller, round, "settle")),
            hold_id,
            amount: part,
        });
        if !self.submit(settle).await? {
            return Ok(2);
        }
        let refill = self.purchase(self.id(caller, round, "refill"), part);
        self.submit(refill).await?;
        Ok(3)
    }

    fn place_hold(&self, caller: usize, round: &str) -> PlaceHoldRequest {
        PlaceHoldRequest {
            id: HoldId::new(self.id(caller, round, "hold")),
            debit_account_id: self.org.clone(),
            credit_account_id: operator(AccountKind::UsageRevenue),
            amount: self.amount,
            reference: REFERENCE.to_owned(),
            ttl_ms: HOLD_TTL_MS,
        }
    }

    fn purchase(&self, id: String, amount: Amount) -> Operation {
        Operation::Transfer(TransferRequest {
            id: TransferId::new(id),
            debit_account_id: operator(AccountKind::PaymentsReceived),
            credit_account_id: self.org.clone(),
            amount,
            kind: TransferKind::Purchase,
            reference: REFERENCE.to_owned(),
            grant: None,
        })
    }

    fn id(&self, caller: usize, round: &str, what: &str) -> String {
        format!("{}.{caller}.{round}.{what}", self.prefix)
    }

    /// Submits one operation, retrying a failed batch with the same id, and acknowledges the
    /// outcome on stdout. Returns whether the ledger accepted it (created or exists).
    async fn submit(&self, operation: Operation) -> anyhow::Result<bool> {
        let id = operation_id(&operation);
        let mut attempt = 1;
        loop {
            match self.writer.submit(operation.clone()).await {
                Ok(outcome) => {
                    acknowledge(&id, &outcome)?;
                    return Ok(outcome.is_ok());
                }
                Err(error) if attempt < SUBMIT_ATTEMPTS_MAX && retryable(&error) => {
                    tracing::warn!(%error, %id, attempt, "ledger-load: retrying");
                    tokio::time::sleep(Duration::from_millis(10 << attempt)).await;
                    attempt += 1;
                }
                Err(error) => return Err(error).with_context(|| format!("submitting {id}")),
            }
        }
    }
}

fn retryable(error: &WriteError) -> bool {
    matches!(error, WriteError::Overloaded | WriteError::Store(_))
}

/// Writes `ack <id> <code>` and flushes it before the caller goes on.
fn acknowledge(id: &str, outcome: &Outcome) -> std::io::Result<()> {
    let code = match outcome {
        Ok(receipt) if receipt.status == Status::Created => "created",
        Ok(_) => "exists",
        Err(rejection) => rejection.code(),
    };
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "ack {id} {code}")?;
    stdout.flush()
}

fn operation_id(operation: &Operation) -> String {
    match operation {
        Operation::PlaceHold(request) => request.id.to_string(),
        Operation::Transfer(request) => request.id.to_string(),
        Operation::SettleHold(request) => request.id.to_string(),
        other => unreachable!("ledger-load does not submit {other:?}"),
    }
}

fn operator(kind: AccountKind) -> AccountId {
    kind.operator_account_id()
        .expect("only operator kinds are passed here")
}
