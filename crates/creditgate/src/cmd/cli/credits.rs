//! `creditgate credits grant|adjust|refund`: the money-moving commands, each sent with an
//! idempotency key.

use std::io::Write as _;

use clap::{Args, Subcommand, ValueEnum};
use reqwest::Method;
use serde_json::Value;

use super::client::{object, Client};
use super::view::{fields, show, text, time};
use super::{Connection, Failure};

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
    /// Refund a payment (a top-up or an auto-reload) from its unspent credits: the card is
    /// refunded, then the credits leave the org's balance.
    Refund(RefundArgs),
}

/// `creditgate credits refund …`
#[derive(Args, Debug)]
struct RefundArgs {
    /// `pay_…`
    payment_id: String,
    /// How much, in whole cents, e.g. 12.50 [default: everything still unspent].
    #[arg(long)]
    amount: Option<String>,
    /// Why (shown in the receipt email).
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
    /// Makes a retry safe: the same key never refunds twice [default: a new random key,
    /// printed to stderr].
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
}

pub(super) async fn run_credits(args: CreditsArgs) -> Result<(), Failure> {
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
        } => adjust(&client, &org_id, amount, reason, key).await?,
        CreditsCommand::Refund(refund_args) => refund(&client, refund_args).await?,
    };
    show(&client, &answer, &view);
    Ok(())
}

async fn adjust(
    client: &Client,
    org_id: &str,
    amount: String,
    reason: String,
    key: Option<String>,
) -> Result<(super::client::Answer, String), Failure> {
    let key = idempotency_key(key, "adjust");
    let body = serde_json::json!({ "amount": amount, "reason": reason });
    let answer = client
        .send(
            Method::POST,
            &["v1", "orgs", org_id, "adjustments"],
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
    Ok((answer, view))
}

async fn refund(
    client: &Client,
    args: RefundArgs,
) -> Result<(super::client::Answer, String), Failure> {
    let payment_id = args.payment_id.as_str();
    let key = idempotency_key(args.idempotency_key, "refund");
    let body = object(vec![
        ("amount", args.amount.map(Value::from)),
        ("reason", args.reason.map(Value::from)),
    ]);
    let answer = client
        .send(
            Method::POST,
            &["v1", "payments", payment_id, "refunds"],
            &[],
            Some(body),
            Some(&key),
        )
        .await?;
    let view = format!(
        "Refund of {} on {payment_id}: {}.\n{}",
        text(&answer.body["amount"]),
        text(&answer.body["state"]),
        refund_view(&answer.body)
    );
    Ok((answer, view))
}

fn refund_view(refund: &Value) -> String {
    fields(&[
        ("refund", text(&refund["id"])),
        ("payment", text(&refund["payment_id"])),
        ("org", text(&refund["org_id"])),
        ("state", text(&refund["state"])),
        ("amount", text(&refund["amount"])),
        ("reason", text(&refund["reason"])),
        ("provider refund", text(&refund["provider_ref"])),
        ("failure", text(&refund["failure_message"])),
        ("transfer", text(&refund["transfer_id"])),
        ("created", time(&refund["created_at"])),
    ])
}

/// A fresh idempotency key, announced on stderr before anything is sent so that a request
/// whose answer is lost can be retried without moving money twice.
fn idempotency_key(given: Option<String>, command: &str) -> String {
    if let Some(key) = given {
        return key;
    }
    let key = format!("cli_{}", creditgate::ids::random_hex(16));
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(
        stderr,
        "idempotency key: {key} (to retry safely: creditgate credits {command} … --idempotency-key {key})"
    );
    key
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
