//! Charges: the steps that move a payment from our row to a ledger credit, over the payment
//! provider's adapter ([`crate::providers`]).
//!
//! Every charge is a `payments` row first; the provider only sees it under that id (its
//! idempotency key and `metadata[payment_id]`). The row moves `created → charging` in its
//! own transaction *before* the provider is called, and its outcome is recorded in another
//! one after: no database transaction is held across a network call. A crash in between
//! leaves it `charging`, and [`run_once`] resumes it by asking the provider for the charge
//! made under that id before charging again. A success is credited through the ledger
//! writer under an id derived from the payment's (`txn_pay_…`), so however many times a
//! success is reported (our call's answer, webhooks, replays), the credit lands once.

use std::sync::OnceLock;

use creditgate_domain::ledger::{
    AccountId, AccountKind, GrantTerms, Operation, Origin, Rejection, TransferRequest,
    GRANT_PRIORITY_DEFAULT,
};
use creditgate_domain::payment::{
    credit_transfer_id, to_cents, PaymentEvent, PaymentMethod, PaymentState,
};
use creditgate_domain::reload::ReloadPolicy;
use creditgate_domain::Timestamp;
use creditgate_store::api::{Advanced, Payment, PaymentDetails, ReloadBegun};
use creditgate_store::StoreError;

use crate::providers::{
    failure_policy, ms, sandbox, stripe, ChargeOutcome, Provider, ProviderError,
};
use crate::state::AppState;

/// Why a payment step failed.
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    /// The provider.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// The database.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The ledger writer.
    #[error(transparent)]
    Write(#[from] creditgate_store::WriteError),
    /// The ledger refused the credit (it should never).
    #[error("the ledger refused the credit of {payment_id}: {rejection:?}")]
    Credit {
        /// The payment.
        payment_id: String,
        /// Why.
        rejection: Rejection,
    },
    /// The payment vanished between two steps.
    #[error("payment {0} not found")]
    NotFound(String),
}

/// The timing of auto-reloads.
pub fn reload_policy(state: &AppState) -> ReloadPolicy {
    ReloadPolicy {
        cooldown_ms: ms(state.config().reload_cooldown_ms),
        limits: state.payment_limits(),
    }
}

/// The org's customer at the provider (made on first need; the sandbox has none).
pub async fn ensure_customer(
    state: &AppState,
    org_id: &str,
) -> Result<Option<String>, PaymentError> {
    let Provider::Stripe(client) = state.provider() else {
        return Ok(None);
    };
    if let Some(customer) = state.store().payment_profile(org_id).await?.customer_id {
        return Ok(Some(customer));
    }
    let org = state
        .store()
        .org(org_id)
        .await?
        .ok_or_else(|| PaymentError::NotFound(org_id.to_owned()))?;
    let created = client
        .create_customer(
            org_id,
            &org.name,
            org.billing_emails.first().map(String::as_str),
        )
        .await?;
    Ok(Some(
        state
            .store()
            .set_payment_customer(org_id, &created, state.now())
            .await?,
    ))
}

/// Saves `payment_method` as the org's card (Stripe: attached to its customer); answers
/// the saved id and its label.
pub async fn save_card(
    state: &AppState,
    org_id: &str,
    payment_method: &str,
) -> Result<(String, String), PaymentError> {
    let (id, label) = match state.provider() {
        Provider::Sandbox => {
            let (label, _) =
                sandbox::card(payment_method).ok_or_else(|| ProviderError::Refused {
                    status: 400,
                    code: "payment_method_unknown".into(),
                    message: format!(
                        "The sandbox takes Stripe's test cards ({}).",
                        sandbox::TEST_CARDS.map(|c| c.0).join(", ")
                    ),
                })?;
            (payment_method.to_owned(), label.to_owned())
        }
        Provider::Stripe(client) => {
            let customer = ensure_customer(state, org_id)
                .await?
                .ok_or_else(|| PaymentError::NotFound(org_id.to_owned()))?;
            client.attach(payment_method, &customer).await?
        }
    };
    state
        .store()
        .set_payment_method(org_id, &id, &label, state.now())
        .await?;
    Ok((id, label))
}

/// Where the customer confirms a payment the bank wants authenticated.
pub fn confirmation_url(state: &AppState, payment_id: &str) -> String {
    format!("{}/pay/{payment_id}", state.public_url())
}

/// Opens the hosted page a checkout top-up is paid on; the payment waits there
/// (`requires_action`, the page's address as its `action_url`).
pub async fn open_checkout(state: &AppState, payment: &Payment) -> Result<Payment, PaymentError> {
    let (provider_ref, url) = match state.provider() {
        Provider::Sandbox => (
            None,
            format!("{}/sandbox/checkout/{}", state.public_url(), payment.id),
        ),
        Provider::Stripe(client) => {
            let customer = ensure_customer(state, &payment.org_id)
                .await?
                .ok_or_else(|| PaymentError::NotFound(payment.org_id.clone()))?;
            let return_url = payment
                .return_url
                .clone()
                .unwrap_or_else(|| state.billing_url(&payment.org_id));
            let (session, url) = client
                .open_checkout(&stripe::CheckoutParams {
                    payment_id: &payment.id,
                    customer: &customer,
                    amount_cents: cents(payment)?,
                    currency: &payment.currency,
                    product_name: &format!("{} credits", state.config().product_name),
                    success_url: &with_payment(&return_url, &payment.id),
                    cancel_url: &return_url,
                })
                .await?;
            (Some(session), url)
        }
    };
    if payment.state == PaymentState::RequiresAction {
        return state
            .store()
            .set_payment_action(&payment.id, provider_ref.as_deref(), &url, state.now())
            .await?
            .ok_or_else(|| PaymentError::NotFound(payment.id.clone()));
    }
    advance(
        state,
        payment,
        PaymentEvent::ActionRequired,
        PaymentDetails {
            provider_ref,
            action_url: Some(url),
            ..PaymentDetails::default()
        },
    )
    .await
}

fn with_payment(url: &str, payment_id: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}payment={payment_id}")
}

fn cents(payment: &Payment) -> Result<i64, PaymentError> {
    to_cents(payment.amount).ok_or_else(|| {
        PaymentError::Provider(ProviderError::Bug(format!(
            "{} is not whole cents",
            payment.id
        )))
    })
}

async fn advance(
    state: &AppState,
    payment: &Payment,
    event: PaymentEvent,
    details: PaymentDetails,
) -> Result<Payment, PaymentError> {
    Ok(advance_moved(state, payment, event, details).await?.0)
}

/// [`advance`], also telling whether this call moved the payment (only one of two racing
/// callers does).
async fn advance_moved(
    state: &AppState,
    payment: &Payment,
    event: PaymentEvent,
    details: PaymentDetails,
) -> Result<(Payment, bool), PaymentError> {
    let policy = failure_policy(state.config());
    match state
        .store()
        .advance_payment(&payment.id, event, &details, &policy, state.now())
        .await?
    {
        Advanced::Moved(after) => Ok((*after, true)),
        Advanced::Unchanged(after) => Ok((*after, false)),
        Advanced::NotFound => Err(PaymentError::NotFound(payment.id.clone())),
    }
}

/// Charges the org's saved card for `payment` off-session and records the outcome. A
/// payment already `charging` (an interrupted attempt) is first looked up at the provider.
pub async fn charge(state: &AppState, payment: &Payment) -> Result<Payment, PaymentError> {
    if payment.state == PaymentState::Charging {
        if let Some(outcome) = find(state, payment).await? {
            return apply(state, payment, outcome).await;
        }
    }
    let profile = state.store().payment_profile(&payment.org_id).await?;
    let Some(card) = profile.payment_method else {
        let outcome = ChargeOutcome::Declined {
            provider_ref: None,
            code: "no_payment_method".into(),
            message: "No card is saved for this organization.".into(),
        };
        return apply(state, payment, outcome).await;
    };
    let payment = match payment.state {
        // Only the caller that moves it to `charging` charges (a request and the worker
        // may race for a fresh top-up).
        PaymentState::Created => {
            failpoint("payments.before_charging", &payment.id).await;
            let (moved, won) = advance_moved(
                state,
                payment,
                PaymentEvent::Charge,
                PaymentDetails::default(),
            )
            .await?;
            if !won {
                return Ok(moved);
            }
            moved
        }
        PaymentState::Charging => payment.clone(),
        _ => return Ok(payment.clone()),
    };
    failpoint("payments.before_call", &payment.id).await;
    let outcome = match state.provider() {
        Provider::Sandbox => sandbox::charge(state, &payment, &card, false).await,
        Provider::Stripe(client) => {
            client
                .charge(
                    &payment.id,
                    profile.customer_id.as_deref(),
                    &card,
                    cents(&payment)?,
                    &payment.currency,
                )
                .await
        }
    };
    failpoint("payments.after_provider", &payment.id).await;
    match outcome {
        Ok(outcome) => apply(state, &payment, outcome).await,
        Err(ProviderError::Refused { code, message, .. }) => {
            let outcome = ChargeOutcome::Declined {
                provider_ref: None,
                code,
                message,
            };
            apply(state, &payment, outcome).await
        }
        Err(other) => Err(other.into()),
    }
}

/// Test-only crash points of a charge. `CREDITGATE_FAILPOINT=<name>` (read once, by the first
/// charge step) makes the step that reaches `<name>` print `creditgate failpoint <name>
/// reached (<payment id>)` on stderr and then wait forever, so that a crash test can `kill -9`
/// the process exactly there (`tests/payments_crash.rs`). The names:
/// - `payments.before_charging`: the attempt is written (`created`), not yet `charging`;
/// - `payments.before_call`: `charging`, the provider not called yet;
/// - `payments.after_provider`: the provider answered, nothing of it recorded yet;
/// - `payments.after_credit`: the ledger credited, the payment not yet marked `succeeded`.
///
/// Unset (always, outside those tests) it costs a read of an initialised `OnceLock`. Never
/// set it in production: the payments worker would stop at that step for good.
async fn failpoint(name: &str, payment_id: &str) {
    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    let armed = ARMED.get_or_init(|| {
        std::env::var("CREDITGATE_FAILPOINT")
            .ok()
            .filter(|name| !name.is_empty())
    });
    if armed.as_deref() == Some(name) {
        eprintln!("creditgate failpoint {name} reached ({payment_id}): waiting to be killed");
        std::future::pending::<()>().await;
    }
}

/// The provider's record of the charge made for `payment`, if any.
async fn find(state: &AppState, payment: &Payment) -> Result<Option<ChargeOutcome>, PaymentError> {
    Ok(match state.provider() {
        Provider::Sandbox => sandbox::find(state, payment).await?,
        Provider::Stripe(client) => client
            .find(&payment.id)
            .await?
            .map(|intent| stripe::outcome_of(&intent)),
    })
}

/// Records what the provider said about `payment`: credits a success, waits for the
/// customer on `requires_action`, records a decline (back-off or turning auto-reload off).
pub async fn apply(
    state: &AppState,
    payment: &Payment,
    outcome: ChargeOutcome,
) -> Result<Payment, PaymentError> {
    match outcome {
        ChargeOutcome::Succeeded { provider_ref } => credit(state, payment, &provider_ref).await,
        ChargeOutcome::Pending { .. } => Ok(payment.clone()),
        ChargeOutcome::RequiresAction { provider_ref } => {
            advance(
                state,
                payment,
                PaymentEvent::ActionRequired,
                PaymentDetails {
                    provider_ref: Some(provider_ref),
                    action_url: Some(confirmation_url(state, &payment.id)),
                    ..PaymentDetails::default()
                },
            )
            .await
        }
        ChargeOutcome::Declined {
            provider_ref,
            code,
            message,
        } => {
            advance(
                state,
                payment,
                PaymentEvent::Failed,
                PaymentDetails {
                    provider_ref,
                    failure_code: Some(code),
                    failure_message: Some(message),
                    ..PaymentDetails::default()
                },
            )
            .await
        }
    }
}

/// Credits a succeeded payment to its org (once: the transfer's id is the payment's) and
/// marks it succeeded.
pub async fn credit(
    state: &AppState,
    payment: &Payment,
    provider_ref: &str,
) -> Result<Payment, PaymentError> {
    let transfer_id = credit_transfer_id(&payment.id);
    let request = TransferRequest {
        id: transfer_id.clone(),
        debit_account_id: AccountKind::PaymentsReceived
            .operator_account_id()
            .expect("an operator account"),
        credit_account_id: AccountId::new(payment.org_id.clone()),
        amount: payment.amount,
        kind: payment.kind.transfer_kind(),
        reference: payment.id.clone(),
        grant: Some(GrantTerms {
            origin: Origin::Paid,
            priority: GRANT_PRIORITY_DEFAULT,
            expires_at: None,
        }),
    };
    if let Err(rejection) = state.writer().submit(Operation::Transfer(request)).await? {
        return Err(PaymentError::Credit {
            payment_id: payment.id.clone(),
            rejection,
        });
    }
    failpoint("payments.after_credit", &payment.id).await;
    metrics::counter!("creditgate_payments_credited_total", "kind" => payment.kind.as_str())
        .increment(1);
    advance(
        state,
        payment,
        PaymentEvent::Succeeded,
        PaymentDetails {
            provider_ref: Some(provider_ref.to_owned()),
            transfer_id: Some(transfer_id.as_str().to_owned()),
            ..PaymentDetails::default()
        },
    )
    .await
}

/// What one run of the payments worker did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunReport {
    /// Auto-reload decisions made.
    pub decided: usize,
    /// Charges sent (new or resumed).
    pub charged: usize,
    /// Steps that failed (retried on a later run).
    pub errors: usize,
}

/// Most orgs decided and payments charged in one run.
pub const RUN_LEN_MAX: usize = 100;

/// One run of the payments worker: decides the auto-reloads the ledger writer marked due
/// (and those whose retry time came), charges the attempts it made, and resumes charges
/// left `charging` longer than `charging_resume_ms` (a crash, a timeout).
pub async fn run_once(state: &AppState, now: Timestamp) -> Result<RunReport, PaymentError> {
    let mut report = RunReport::default();
    let store = state.store();
    let policy = reload_policy(state);
    for org_id in store.due_reloads(now, RUN_LEN_MAX).await? {
        report.decided += 1;
        let id = state.new_id("pay");
        let begun = store
            .begin_reload(
                &org_id,
                &id,
                &state.config().currency,
                state.provider().name(),
                &policy,
                now,
            )
            .await?;
        if let ReloadBegun::Created(payment) = begun {
            tracing::info!(org = %org_id, payment = %payment.id, amount = %payment.amount, "auto-reload begun");
            report.charged += 1;
            if let Err(error) = charge(state, &payment).await {
                report.errors += 1;
                tracing::warn!(%error, payment = %payment.id, "auto-reload charge failed; resumed later");
            }
        }
    }
    let resume_before = now.plus_ms(-ms(state.config().charging_resume_ms));
    let stale = store
        .payments_in(&[PaymentState::Charging], resume_before, RUN_LEN_MAX)
        .await?;
    // A top-up's request charges its own payment; one left `created` (the request died)
    // is charged here once it is as old as a stale charge.
    let fresh = store
        .payments_in(&[PaymentState::Created], resume_before, RUN_LEN_MAX)
        .await?
        .into_iter()
        .filter(|p| p.method == PaymentMethod::SavedCard);
    for payment in stale.into_iter().chain(fresh) {
        report.charged += 1;
        if let Err(error) = charge(state, &payment).await {
            report.errors += 1;
            tracing::warn!(%error, payment = %payment.id, "resuming a charge failed; resumed later");
        }
    }
    Ok(report)
}
