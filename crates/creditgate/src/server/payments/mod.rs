//! Payments: the provider adapters (Stripe, the sandbox) and the steps that move a payment
//! from our row to a ledger credit.
//!
//! Every charge is a `payments` row first; the provider only sees it under that id (its
//! idempotency key and `metadata[payment_id]`). The row moves `created → charging` in its
//! own transaction *before* the provider is called, and its outcome is recorded in another
//! one after: no database transaction is held across a network call. A crash in between
//! leaves it `charging`, and [`run_once`] resumes it by asking the provider for the charge
//! made under that id before charging again. A success is credited through the ledger
//! writer under an id derived from the payment's (`txn_pay_…`), so however many times a
//! success is reported (our call's answer, webhooks, replays), the credit lands once.

pub mod sandbox;
pub mod stripe;

use std::sync::OnceLock;

use creditgate_domain::ledger::{
    AccountId, AccountKind, GrantTerms, Operation, Origin, Rejection, TransferRequest,
    GRANT_PRIORITY_DEFAULT,
};
use creditgate_domain::payment::{
    credit_transfer_id, to_cents, PaymentEvent, PaymentMethod, PaymentState,
};
use creditgate_domain::reload::{FailurePolicy, PaymentLimits, ReloadPolicy};
use creditgate_domain::{Amount, Timestamp};
use creditgate_store::api::{Advanced, Payment, PaymentDetails, ReloadBegun};
use creditgate_store::StoreError;

use super::AppState;
use crate::config::{Config, PaymentsProvider};

/// The payment provider the configuration names.
pub enum Provider {
    /// Stripe's test-card behaviours, in-process (the embedded default).
    Sandbox,
    /// Stripe (or localstripe).
    Stripe(stripe::Client),
}

impl Provider {
    /// From `payments` (`sandbox` or `stripe`) and the Stripe settings.
    pub fn from_config(config: &Config) -> Result<Provider, String> {
        match config.payments {
            PaymentsProvider::Sandbox => Ok(Provider::Sandbox),
            PaymentsProvider::Stripe => {
                if config.stripe_secret_key.is_empty() {
                    return Err("payments = stripe needs stripe_secret_key".into());
                }
                if config.stripe_webhook_secret.is_empty() {
                    return Err("payments = stripe needs stripe_webhook_secret".into());
                }
                Ok(Provider::Stripe(stripe::Client::new(
                    &config.stripe_api_base,
                    &config.stripe_secret_key,
                    config.provider_timeout_ms,
                )?))
            }
        }
    }

    /// `sandbox` or `stripe`, as stored on payments.
    pub fn name(&self) -> &'static str {
        match self {
            Provider::Sandbox => "sandbox",
            Provider::Stripe(_) => "stripe",
        }
    }
}

/// What a charge came to at the provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChargeOutcome {
    /// The money was taken.
    Succeeded {
        /// The provider's object.
        provider_ref: String,
    },
    /// The customer must confirm (3-D Secure).
    RequiresAction {
        /// The provider's object.
        provider_ref: String,
    },
    /// Not decided yet (the provider reports later, by webhook).
    Pending {
        /// The provider's object.
        provider_ref: String,
    },
    /// Refused.
    Declined {
        /// The provider's object, if one was made.
        provider_ref: Option<String>,
        /// A stable code (`card_declined`, `insufficient_funds`, …).
        code: String,
        /// For people.
        message: String,
    },
}

/// A succeeded payment as the provider records it (reconciliation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderPayment {
    /// The provider's object.
    pub provider_ref: String,
    /// Our payment, from its metadata.
    pub payment_id: Option<String>,
    /// In cents.
    pub amount_cents: i64,
}

/// Why a provider call gave no outcome.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The provider could not be reached, timed out or failed (5xx, 429): the outcome is
    /// unknown; the attempt is resumed later.
    #[error("the payment provider is unreachable: {0}")]
    Unreachable(String),
    /// A card was declined (HTTP 402).
    #[error("declined: {code}: {message}")]
    Declined {
        /// The code.
        code: String,
        /// For people.
        message: String,
        /// The PaymentIntent, if one was made.
        provider_ref: Option<String>,
    },
    /// The provider refused the request (4xx other than 402): retrying will not help.
    #[error("the payment provider refused the request ({status} {code}): {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The provider's code.
        code: String,
        /// The provider's message.
        message: String,
    },
    /// An answer we could not read.
    #[error("{0}")]
    Bug(String),
}

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

/// The top-up limits of the configuration (checked at start).
pub fn limits(config: &Config) -> Result<PaymentLimits, String> {
    let parse = |name: &str, text: &str| {
        Amount::parse(text)
            .ok()
            .filter(|a| a.is_positive() && creditgate_domain::payment::is_whole_cents(*a))
            .ok_or_else(|| format!("{name} {text:?}: a positive amount in whole cents"))
    };
    let limits = PaymentLimits {
        amount_min: parse("top_up_min", &config.top_up_min)?,
        amount_max: parse("top_up_max", &config.top_up_max)?,
    };
    if limits.amount_min > limits.amount_max {
        return Err("top_up_min is above top_up_max".into());
    }
    Ok(limits)
}

fn ms(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The back-off of declined auto-reloads.
pub fn failure_policy(config: &Config) -> FailurePolicy {
    FailurePolicy {
        backoff_ms: ms(config.reload_backoff_ms).max(1),
        backoff_ms_max: ms(config.reload_backoff_ms_max).max(1),
        failures_max: config.reload_failures_max.max(1),
    }
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// The configuration the `CREDITGATE_*` variables `vars` make.
    fn config(vars: &[(&str, &str)]) -> Config {
        let vars = vars
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()));
        Config::from_table(toml::Table::new(), vars, Path::new("<env>")).expect("a config")
    }

    fn refused(config: &Config) -> String {
        match Provider::from_config(config) {
            Ok(provider) => panic!("{} was accepted", provider.name()),
            Err(error) => error,
        }
    }

    const STRIPE: [(&str, &str); 4] = [
        ("CREDITGATE_PAYMENTS", "stripe"),
        ("CREDITGATE_STRIPE_SECRET_KEY", "sk_test_unit"),
        ("CREDITGATE_STRIPE_WEBHOOK_SECRET", "whsec_unit"),
        ("CREDITGATE_STRIPE_API_BASE", "http://127.0.0.1:9"),
    ];

    #[test]
    fn the_provider_is_the_one_the_environment_names() {
        let sandbox = Provider::from_config(&config(&[])).expect("the default");
        assert!(matches!(sandbox, Provider::Sandbox));
        assert_eq!(sandbox.name(), "sandbox");
        let named = Provider::from_config(&config(&[("CREDITGATE_PAYMENTS", "sandbox")]));
        assert!(matches!(named, Ok(Provider::Sandbox)));
        // The sandbox needs no Stripe settings, and ignores them.
        let mut with_keys = config(&STRIPE);
        with_keys.payments = PaymentsProvider::Sandbox;
        assert!(matches!(
            Provider::from_config(&with_keys),
            Ok(Provider::Sandbox)
        ));
        let stripe = Provider::from_config(&config(&STRIPE)).expect("stripe");
        assert!(matches!(stripe, Provider::Stripe(_)));
        assert_eq!(stripe.name(), "stripe");
    }

    #[test]
    fn an_unknown_provider_or_a_missing_stripe_secret_is_refused() {
        for unknown in ["paypal", "", "Stripe", " stripe"] {
            let mut vars = STRIPE.to_vec();
            vars[0].1 = unknown;
            let vars = vars.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned()));
            let error = Config::from_table(toml::Table::new(), vars, Path::new("<env>"))
                .expect_err("an unknown provider is refused at load")
                .to_string();
            assert!(
                error.contains("in `payments`") && error.contains("expected `sandbox` or `stripe`"),
                "{unknown:?}: {error}"
            );
        }
        let without = |name: &str| {
            let vars: Vec<(&str, &str)> = STRIPE.iter().copied().filter(|v| v.0 != name).collect();
            refused(&config(&vars))
        };
        let error = without("CREDITGATE_STRIPE_SECRET_KEY");
        assert!(error.contains("stripe_secret_key"), "{error}");
        let error = without("CREDITGATE_STRIPE_WEBHOOK_SECRET");
        assert!(error.contains("stripe_webhook_secret"), "{error}");
        // Set but empty is missing too.
        let mut vars = STRIPE.to_vec();
        vars[1].1 = "";
        let error = refused(&config(&vars));
        assert!(error.contains("stripe_secret_key"), "{error}");
    }
}
