//! Payments and auto-reload: the rows, and the transactions that move them.
//!
//! Nothing here talks to the provider or writes a balance: the server's payments worker
//! calls the provider between these transactions, and credits through the ledger writer.
//! Every decision is the pure core's (`creditgate_domain::payment::advance`,
//! `creditgate_domain::reload::{decide, after_failure}`), made with the rows read in the
//! transaction that writes its result.
//!
//! The module splits by responsibility: `rows.rs` writes, reads and advances payments;
//! `reload.rs` keeps the auto-reload settings, due marks and the reload decision;
//! `provider.rs` keeps what belongs to the provider's side (the customer and saved card,
//! handled webhook events, the sandbox's charges); `reconcile.rs` reads for reconciliation.
//! Here: the payment row and the helpers more than one of them writes with.

mod provider;
mod reconcile;
mod reload;
mod rows;

use creditgate_domain::notice::NoticeKind;
use creditgate_domain::payment::{PaymentKind, PaymentMethod, PaymentState};
use creditgate_domain::{Amount, Timestamp};

use crate::codec::Columns;
use crate::sql::{values, Row, Tx, Value};
use crate::StoreError;

pub use provider::{PaymentProfile, SandboxCharge};
pub use reload::{AutoReload, ReloadBegun, ACTION_WAIT_MS};
pub use rows::{Advanced, PaymentDetails};

/// A charge at the payment provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payment {
    /// `pay_…`: also the provider's idempotency key.
    pub id: String,
    /// The org credited.
    pub org_id: String,
    /// Top-up or auto-reload.
    pub kind: PaymentKind,
    /// How it is paid.
    pub method: PaymentMethod,
    /// Where it is.
    pub state: PaymentState,
    /// How much.
    pub amount: Amount,
    /// The currency code.
    pub currency: String,
    /// `sandbox` or `stripe`.
    pub provider: String,
    /// The provider's object (PaymentIntent, Checkout Session, sandbox charge).
    pub provider_ref: Option<String>,
    /// Where the customer acts (checkout page, confirmation page).
    pub action_url: Option<String>,
    /// Where the customer returns after a checkout.
    pub return_url: Option<String>,
    /// Why it failed: a stable code.
    pub failure_code: Option<String>,
    /// Why it failed: for people.
    pub failure_message: Option<String>,
    /// The ledger credit, once succeeded.
    pub transfer_id: Option<String>,
    /// Written at.
    pub created_at: Timestamp,
    /// Last changed at.
    pub updated_at: Timestamp,
}

const PAYMENT_COLUMNS: &str = "id, org_id, kind, method, state, amount, currency, provider, \
     provider_ref, action_url, return_url, failure_code, failure_message, transfer_id, \
     created_at, updated_at";

fn corrupt(what: &str, text: &str) -> StoreError {
    StoreError::Corrupt(format!("{what} {text:?}"))
}

fn payment_row(row: &Row) -> Result<Payment, StoreError> {
    let kind = row.text(2)?;
    let method = row.text(3)?;
    let state = row.text(4)?;
    Ok(Payment {
        id: row.text(0)?,
        org_id: row.text(1)?,
        kind: PaymentKind::parse(&kind).ok_or_else(|| corrupt("payment kind", &kind))?,
        method: PaymentMethod::parse(&method).ok_or_else(|| corrupt("payment method", &method))?,
        state: PaymentState::parse(&state).ok_or_else(|| corrupt("payment state", &state))?,
        amount: row.amount(5)?,
        currency: row.text(6)?,
        provider: row.text(7)?,
        provider_ref: row.opt_text(8)?,
        action_url: row.opt_text(9)?,
        return_url: row.opt_text(10)?,
        failure_code: row.opt_text(11)?,
        failure_message: row.opt_text(12)?,
        transfer_id: row.opt_text(13)?,
        created_at: row.time(14)?,
        updated_at: row.time(15)?,
    })
}

fn opt(text: Option<&str>) -> Value {
    Value::from(text.map(str::to_owned))
}

/// Writes a payment notice to the outbox (id from the payment and the kind: made once).
async fn notice(
    tx: &mut Tx<'_>,
    kind: NoticeKind,
    payment: &Payment,
    reason: Option<&str>,
    retry_at: Option<Timestamp>,
    now: Timestamp,
) -> Result<(), StoreError> {
    let available = super::orgs::available(tx, &payment.org_id, false)
        .await?
        .map_or(0, Amount::micros);

    tx.execute(
        "INSERT INTO notices (id, kind, org_id, available, level, state, attempts,
         next_attempt_at, last_error, created_at, sent_at, amount, transfer_id, payment_id,
         reason, retry_at)
         VALUES ($1, $2, $3, $4, 0, 'pending', 0, $5, NULL, $5, NULL, $6, NULL, $7, $8, $9)
         ON CONFLICT (id) DO NOTHING",
        &values![
            creditgate_domain::ids::payment_notice(&payment.id, kind.as_str()),
            kind.as_str(),
            payment.org_id.as_str(),
            available,
            now.unix_ms(),
            payment.amount.micros(),
            payment.id.as_str(),
            opt(reason),
            retry_at.map(Timestamp::unix_ms)
        ],
    )
    .await?;
    Ok(())
}

async fn insert_payment(
    tx: &mut Tx<'_>,
    payment: &Payment,
    on_conflict: &str,
) -> Result<(), StoreError> {
    tx.execute(
        &format!(
            "INSERT INTO payments ({PAYMENT_COLUMNS}) VALUES
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16){on_conflict}"
        ),
        &values![
            payment.id.as_str(),
            payment.org_id.as_str(),
            payment.kind.as_str(),
            payment.method.as_str(),
            payment.state.as_str(),
            payment.amount.micros(),
            payment.currency.as_str(),
            payment.provider.as_str(),
            payment.provider_ref.clone(),
            payment.action_url.clone(),
            payment.return_url.clone(),
            payment.failure_code.clone(),
            payment.failure_message.clone(),
            payment.transfer_id.clone(),
            payment.created_at.unix_ms(),
            payment.updated_at.unix_ms()
        ],
    )
    .await?;
    Ok(())
}
