//! Refunds by the operator: money given back on a succeeded payment (a top-up or an
//! auto-reload), whole or in part, only from the credits it bought that are still unspent.
//!
//! The steps, each its own transaction, none held across the provider call:
//! 1. a `refunds` row (`created`), its id derived from the `Idempotency-Key`, written with
//!    the check against the unspent part of the payment's grant (`txn_<payment id>`) less
//!    the refunds under way (`store::create_refund`);
//! 2. `requesting`, then the ledger's refund transfer (`txn_<refund id>`, so exactly once),
//!    consuming that payment's grant only, before the provider is asked: credits spent since
//!    the check make the ledger refuse (`refund_exceeds_unspent`), the refund ends `failed`
//!    and no money goes back for them;
//! 3. the provider (Stripe `POST /v1/refunds` with the PaymentIntent, the amount in cents and
//!    an idempotency key derived from the refund id; the sandbox records it in its own
//!    table). A refund found `requesting` again (a crash, a timeout) is first looked for at
//!    the provider by its id, then asked for again under the same key. On success the row is
//!    `succeeded` with the receipt notice; a refusal gives the credits back (a grant,
//!    `txn_rev_<refund id>`) and the row is `failed`.
//!
//! [`run_once`] (the payments worker) resumes refunds left `created` or `requesting`.

use creditgate_domain::ids;
use creditgate_domain::ledger::{
    AccountId, AccountKind, GrantId, GrantTerms, Operation, Origin, RefundRequest, Rejection,
    TransferId, TransferKind, TransferRequest, GRANT_PRIORITY_DEFAULT,
};
use creditgate_domain::payment::{credit_transfer_id, is_whole_cents, to_cents, PaymentState};
use creditgate_domain::{Amount, Timestamp};
use creditgate_store::api::{Payment, Refund, RefundCreated, RefundState};

use super::error::ApiError;
use super::input::{path_id, text};
use super::Actor;
use crate::providers::{ms, sandbox, Provider, ProviderError, RefundOutcome};
use crate::state::AppState;

/// Longest reason.
pub const REASON_LEN_MAX: usize = 500;
/// Most refunds resumed in one run.
pub const RUN_LEN_MAX: usize = 100;

/// A refund to make.
#[derive(Clone, Debug, Default)]
pub struct NewRefund {
    /// Whole cents, positive; `None`: everything still unspent.
    pub amount: Option<Amount>,
    /// Why (shown in the receipt).
    pub reason: Option<String>,
}

/// Refunds (part of) payment `payment_id`: the operator only, idempotent by `key` (the
/// refund's id comes from it). Answers the refund as it stands after the provider call:
/// `succeeded`, `failed` (the provider refused), or `requesting` (the provider could not be
/// reached: the payments worker finishes it).
pub async fn create(
    state: &AppState,
    actor: &Actor,
    payment_id: &str,
    new: NewRefund,
    key: &str,
) -> Result<Refund, ApiError> {
    actor.require_operator()?;
    path_id("payment_id", "pay", payment_id)?;
    if let Some(amount) = new.amount {
        check_amount(amount)?;
    }
    if let Some(reason) = &new.reason {
        text("reason", reason, 1, REASON_LEN_MAX)?;
    }
    let id = ids::refund(&actor.idempotency_scope(), payment_id, key);
    let grant = credit_transfer_id(payment_id);
    let created = state
        .store()
        .create_refund(
            &id,
            payment_id,
            &grant,
            new.amount,
            new.reason.as_deref(),
            state.now(),
        )
        .await?;
    let refund = written(created, payment_id, &new)?;
    if !refund.state.is_open() {
        return Ok(refund);
    }
    match execute(state, &refund).await {
        Ok(done) => Ok(done),
        Err(error) => {
            tracing::warn!(%error, refund = %refund.id, "a refund step failed; the payments worker resumes it");
            Ok(state.store().refund(&refund.id).await?.unwrap_or(refund))
        }
    }
}

/// The refund `create_refund` wrote or found, or why none was written.
fn written(created: RefundCreated, payment_id: &str, new: &NewRefund) -> Result<Refund, ApiError> {
    match created {
        RefundCreated::Created(refund) => Ok(refund),
        RefundCreated::Exists(refund) => {
            let same = refund.payment_id == payment_id
                && new.amount.is_none_or(|amount| amount == refund.amount)
                && new.reason == refund.reason;
            if same {
                Ok(refund)
            } else {
                Err(ApiError::conflict(
                    "idempotency_key_reused",
                    "This idempotency key was used for another refund.",
                ))
            }
        }
        RefundCreated::PaymentNotFound => {
            Err(ApiError::not_found("payment_not_found", "No such payment."))
        }
        RefundCreated::NotRefundable(state) => Err(ApiError::conflict(
            "payment_not_refundable",
            format!(
                "Only a succeeded payment can be refunded; this one is {}.",
                state.as_str()
            ),
        )),
        RefundCreated::ExceedsUnspent { unspent } => Err(ApiError::conflict_param(
            "amount",
            "refund_exceeds_unspent",
            format!("The refund exceeds the payment's unspent credits ({unspent} left)."),
        )),
    }
}

/// A payment's refunds, oldest first (the operator only).
pub async fn list(
    state: &AppState,
    actor: &Actor,
    payment_id: &str,
) -> Result<Vec<Refund>, ApiError> {
    actor.require_operator()?;
    path_id("payment_id", "pay", payment_id)?;
    if state.store().payment(payment_id).await?.is_none() {
        return Err(ApiError::not_found("payment_not_found", "No such payment."));
    }
    Ok(state.store().refunds_of_payment(payment_id).await?)
}

/// Why a refund step stopped (it is resumed later).
#[derive(Debug, thiserror::Error)]
pub enum RefundError {
    /// The provider could not be reached or answered what we could not read.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// The database.
    #[error(transparent)]
    Store(#[from] creditgate_store::StoreError),
    /// The ledger writer.
    #[error(transparent)]
    Write(#[from] creditgate_store::WriteError),
    /// The ledger refused the refund transfer after the provider gave the money back (the
    /// credits were spent meanwhile): reconcile reports it.
    #[error("the ledger refused refund {refund_id}: {rejection:?}")]
    Ledger {
        /// The refund.
        refund_id: String,
        /// Why.
        rejection: creditgate_domain::ledger::Rejection,
    },
    /// The refund or its payment vanished.
    #[error("refund {0} or its payment not found")]
    NotFound(String),
}

/// Takes an open refund through the ledger and the provider: `requesting`; the ledger's
/// refund transfer first, which takes the credits back from that payment's grant (so usage
/// cannot spend them while the provider is asked, and a refund is never more than what is
/// unspent: if they were spent meanwhile, the ledger refuses and the provider is never
/// asked, `failed`); then the provider (looked for first when it was already
/// `requesting`), and `succeeded`. When the provider refuses, the credits are given back to
/// the org (a grant under an id derived from the refund's) and the refund is `failed`.
pub async fn execute(state: &AppState, refund: &Refund) -> Result<Refund, RefundError> {
    let store = state.store();
    let was_requesting = refund.state == RefundState::Requesting;
    let refund = store
        .refund_requesting(&refund.id, state.now())
        .await?
        .ok_or_else(|| RefundError::NotFound(refund.id.clone()))?;
    if !refund.state.is_open() {
        return Ok(refund);
    }
    let payment = store
        .payment(&refund.payment_id)
        .await?
        .ok_or_else(|| RefundError::NotFound(refund.payment_id.clone()))?;
    let transfer_id = ids::refund_transfer(&refund.id);
    if let Err(rejection) = take_back(state, &refund, &transfer_id).await? {
        tracing::warn!(refund = %refund.id, ?rejection, "the credits to refund were spent; nothing asked of the provider");
        return fail(
            state,
            &refund,
            rejection.code(),
            "The credits of this payment were used before they could be taken back: nothing was refunded.",
        )
        .await;
    }
    let provider_ref = match ask_provider(state, &refund, &payment, was_requesting).await? {
        RefundOutcome::Succeeded { provider_ref } => provider_ref,
        RefundOutcome::Refused { code, message } => {
            tracing::warn!(refund = %refund.id, %code, %message, "the provider refused a refund; its credits go back");
            give_back(state, &refund).await?;
            return fail(state, &refund, &code, &message).await;
        }
    };
    store.refund_provider_ref(&refund.id, &provider_ref).await?;
    metrics::counter!("creditgate_refunds_total").increment(1);
    store
        .refund_succeeded(&refund.id, &provider_ref, &transfer_id, state.now())
        .await?
        .ok_or_else(|| RefundError::NotFound(refund.id.clone()))
}

/// The ledger's refund transfer: the refund's credits out of that payment's grant (once,
/// under `transfer_id`; a repeat finds it).
async fn take_back(
    state: &AppState,
    refund: &Refund,
    transfer_id: &TransferId,
) -> Result<Result<(), Rejection>, RefundError> {
    let request = RefundRequest {
        id: transfer_id.clone(),
        debit_account_id: AccountId::new(refund.org_id.clone()),
        credit_account_id: AccountKind::PaymentsReceived
            .operator_account_id()
            .expect("an operator account"),
        grant_id: GrantId::new(credit_transfer_id(&refund.payment_id).as_str()),
        amount: refund.amount,
        reference: refund.id.clone(),
    };
    Ok(state
        .writer()
        .submit(Operation::Refund(request))
        .await?
        .map(|_| ()))
}

/// Gives a refused refund's credits back to the org, once (a paid grant under an id derived
/// from the refund's).
async fn give_back(state: &AppState, refund: &Refund) -> Result<(), RefundError> {
    let request = TransferRequest {
        id: ids::refund_reversal(&refund.id),
        debit_account_id: AccountKind::PaymentsReceived
            .operator_account_id()
            .expect("an operator account"),
        credit_account_id: AccountId::new(refund.org_id.clone()),
        amount: refund.amount,
        kind: TransferKind::Adjustment,
        reference: refund.id.clone(),
        grant: Some(GrantTerms {
            origin: Origin::Paid,
            priority: GRANT_PRIORITY_DEFAULT,
            expires_at: None,
        }),
    };
    if let Err(rejection) = state.writer().submit(Operation::Transfer(request)).await? {
        return Err(RefundError::Ledger {
            refund_id: refund.id.clone(),
            rejection,
        });
    }
    Ok(())
}

/// Marks the refund `failed` with why.
async fn fail(
    state: &AppState,
    refund: &Refund,
    code: &str,
    message: &str,
) -> Result<Refund, RefundError> {
    state
        .store()
        .refund_failed(&refund.id, RefundState::Failed, code, message, state.now())
        .await?
        .ok_or_else(|| RefundError::NotFound(refund.id.clone()))
}

/// Asks the payment's provider to give `refund` back; when the refund was already asked for
/// (`again`), first looks for it there (localstripe ignores idempotency keys).
async fn ask_provider(
    state: &AppState,
    refund: &Refund,
    payment: &Payment,
    again: bool,
) -> Result<RefundOutcome, RefundError> {
    if payment.state != PaymentState::Succeeded {
        return Ok(RefundOutcome::Refused {
            code: "payment_not_refundable".into(),
            message: format!("The payment is {}, not succeeded.", payment.state.as_str()),
        });
    }
    if refund.provider != state.provider().name() {
        return Ok(RefundOutcome::Refused {
            code: "provider_not_configured".into(),
            message: format!(
                "The payment was made with {}, not the configured provider.",
                refund.provider
            ),
        });
    }
    let client = match state.provider() {
        Provider::Sandbox => return Ok(sandbox::refund(state, refund).await?),
        Provider::Stripe(client) => client,
    };
    let Some(intent) = payment
        .provider_ref
        .as_deref()
        .filter(|r| r.starts_with("pi_"))
    else {
        return Ok(RefundOutcome::Refused {
            code: "payment_not_refundable".into(),
            message: "The payment has no PaymentIntent at Stripe.".into(),
        });
    };
    let found = if again {
        client.find_refund(intent, &refund.id).await?
    } else {
        None
    };
    let cents = to_cents(refund.amount)
        .ok_or_else(|| ProviderError::Bug(format!("{} is not whole cents", refund.id)))?;
    let answer = match found {
        Some(found) => Ok(found),
        None => client.refund(intent, &refund.id, cents).await,
    };
    Ok(match answer {
        Ok(stripe_refund) if matches!(stripe_refund.status.as_str(), "failed" | "canceled") => {
            RefundOutcome::Refused {
                code: format!("refund_{}", stripe_refund.status),
                message: format!(
                    "Stripe's refund {} {}.",
                    stripe_refund.id, stripe_refund.status
                ),
            }
        }
        Ok(stripe_refund) => RefundOutcome::Succeeded {
            provider_ref: stripe_refund.id,
        },
        Err(ProviderError::Refused { code, message, .. })
        | Err(ProviderError::Declined { code, message, .. }) => {
            RefundOutcome::Refused { code, message }
        }
        Err(other) => return Err(other.into()),
    })
}

/// What one run of the refund step did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunReport {
    /// Refunds taken up again.
    pub resumed: usize,
    /// Steps that failed (retried on a later run).
    pub errors: usize,
}

/// Resumes the refunds left `created` or `requesting` longer than `charging_resume_ms`
/// (a crash or a timeout between the row, the provider and the ledger).
pub async fn run_once(state: &AppState, now: Timestamp) -> Result<RunReport, RefundError> {
    let mut report = RunReport::default();
    let before = now.plus_ms(-ms(state.config().charging_resume_ms));
    for refund in state.store().open_refunds(before, RUN_LEN_MAX).await? {
        report.resumed += 1;
        if let Err(error) = execute(state, &refund).await {
            report.errors += 1;
            tracing::warn!(%error, refund = %refund.id, "resuming a refund failed; resumed later");
        }
    }
    Ok(report)
}

fn check_amount(amount: Amount) -> Result<(), ApiError> {
    if !amount.is_positive() {
        return Err(ApiError::invalid(
            "amount",
            "amount_must_be_positive",
            "amount must be positive.",
        ));
    }
    if !is_whole_cents(amount) {
        return Err(ApiError::invalid(
            "amount",
            "amount_not_whole_cents",
            "amount must be a whole number of cents.",
        ));
    }
    Ok(())
}
