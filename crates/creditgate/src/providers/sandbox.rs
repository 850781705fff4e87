//! The sandbox provider (the embedded default): Stripe's test-card behaviours without a
//! network. Its charges are kept in its own table (`sandbox_charges`, one per payment: its
//! idempotency), which is what reconciliation reads for it; its refunds likewise
//! (`sandbox_refunds`, one per refund id).

use creditgate_store::api::{Payment, Refund, SandboxCharge};

use super::{ChargeOutcome, ProviderError, RefundOutcome};
use crate::state::AppState;

/// What charging a test card does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// The charge succeeds.
    Succeeds,
    /// The card is declined with this code and message.
    Declines(&'static str, &'static str),
    /// The bank asks for authentication (3-D Secure).
    RequiresAuthentication,
}

/// Stripe's test payment-method ids the sandbox accepts as saved cards, with their label
/// and behaviour.
pub const TEST_CARDS: [(&str, &str, Behaviour); 5] = [
    ("pm_card_visa", "visa •••• 4242", Behaviour::Succeeds),
    (
        "pm_card_visa_chargeDeclined",
        "visa •••• 0002",
        Behaviour::Declines("card_declined", "Your card was declined."),
    ),
    (
        "pm_card_chargeDeclinedInsufficientFunds",
        "visa •••• 9995",
        Behaviour::Declines("insufficient_funds", "Your card has insufficient funds."),
    ),
    (
        "pm_card_chargeCustomerFail",
        "visa •••• 0341",
        Behaviour::Declines("card_declined", "Your card was declined."),
    ),
    (
        "pm_card_authenticationRequired",
        "visa •••• 3184",
        Behaviour::RequiresAuthentication,
    ),
];

/// The label and behaviour of a test card, or `None` for an id the sandbox does not know.
pub fn card(payment_method: &str) -> Option<(&'static str, Behaviour)> {
    TEST_CARDS
        .iter()
        .find(|(id, _, _)| *id == payment_method)
        .map(|(_, label, behaviour)| (*label, *behaviour))
}

/// Charges `payment` to a test card, once: a repeat answers the first charge's outcome.
/// `on_session` (a checkout page, a confirmation page) counts the authentication as done.
pub async fn charge(
    state: &AppState,
    payment: &Payment,
    payment_method: &str,
    on_session: bool,
) -> Result<ChargeOutcome, ProviderError> {
    let (_, behaviour) = card(payment_method).ok_or_else(|| ProviderError::Refused {
        status: 400,
        code: "payment_method_unknown".into(),
        message: format!("The sandbox does not know the card {payment_method}."),
    })?;
    let status = match behaviour {
        Behaviour::Succeeds => "succeeded",
        Behaviour::RequiresAuthentication if on_session => "succeeded",
        Behaviour::RequiresAuthentication => "requires_action",
        Behaviour::Declines(..) => "failed",
    };
    let charge = SandboxCharge {
        id: format!("ch_sandbox_{}", payment.id.trim_start_matches("pay_")),
        payment_id: payment.id.clone(),
        amount: payment.amount,
        status: status.to_owned(),
        payment_method: payment_method.to_owned(),
        created_at: state.now(),
    };
    let store = state.store();
    let mut recorded = store
        .sandbox_charge_once(&charge)
        .await
        .map_err(|e| ProviderError::Unreachable(e.to_string()))?;
    // A checkout retried after a decline (another card) or a confirmed authentication
    // replaces an unsuccessful charge; a success is never replaced.
    if recorded.status != "succeeded" && recorded.payment_method != payment_method
        || (recorded.status == "requires_action" && on_session)
    {
        store
            .set_sandbox_charge_status(&payment.id, status)
            .await
            .map_err(|e| ProviderError::Unreachable(e.to_string()))?;
        recorded.status = status.to_owned();
    }
    Ok(outcome(&recorded, behaviour))
}

/// The outcome a recorded charge stands for.
fn outcome(charge: &SandboxCharge, behaviour: Behaviour) -> ChargeOutcome {
    match charge.status.as_str() {
        "succeeded" => ChargeOutcome::Succeeded {
            provider_ref: charge.id.clone(),
        },
        "requires_action" => ChargeOutcome::RequiresAction {
            provider_ref: charge.id.clone(),
        },
        _ => {
            let (code, message) = match behaviour {
                Behaviour::Declines(code, message) => (code, message),
                _ => ("card_declined", "Your card was declined."),
            };
            ChargeOutcome::Declined {
                provider_ref: Some(charge.id.clone()),
                code: code.to_owned(),
                message: message.to_owned(),
            }
        }
    }
}

/// The sandbox's charge of a payment, if it made one (resuming an interrupted attempt).
pub async fn find(
    state: &AppState,
    payment: &Payment,
) -> Result<Option<ChargeOutcome>, ProviderError> {
    let recorded = state
        .store()
        .sandbox_charge(&payment.id)
        .await
        .map_err(|e| ProviderError::Unreachable(e.to_string()))?;
    Ok(recorded.map(|charge| {
        let behaviour =
            card(&charge.payment_method)
                .map(|(_, b)| b)
                .unwrap_or(Behaviour::Declines(
                    "card_declined",
                    "Your card was declined.",
                ));
        outcome(&charge, behaviour)
    }))
}

/// Refunds `refund` of its payment's sandbox charge, once per refund id: a repeat answers
/// the first refund. A payment without a succeeded sandbox charge is refused.
pub async fn refund(state: &AppState, refund: &Refund) -> Result<RefundOutcome, ProviderError> {
    let store = state.store();
    let unreachable = |e: creditgate_store::StoreError| ProviderError::Unreachable(e.to_string());
    let charge = store
        .sandbox_charge(&refund.payment_id)
        .await
        .map_err(unreachable)?
        .filter(|charge| charge.status == "succeeded");
    let Some(charge) = charge else {
        return Ok(RefundOutcome::Refused {
            code: "charge_not_refundable".into(),
            message: "The sandbox has no succeeded charge for this payment.".into(),
        });
    };
    let id = format!("re_sandbox_{}", refund.id.trim_start_matches("rfd_"));
    // Like Stripe, never more than the charge: the other refunds' total and this one.
    let others = store
        .sandbox_refunds(&charge.id)
        .await
        .map_err(unreachable)?
        .into_iter()
        .filter(|(other, _)| *other != id)
        .try_fold(refund.amount, |total, (_, amount)| {
            total.checked_add(amount)
        });
    if others.is_none_or(|total| total > charge.amount) {
        return Ok(RefundOutcome::Refused {
            code: "amount_too_large".into(),
            message: "The refunds would exceed the charge.".into(),
        });
    }
    let provider_ref = store
        .sandbox_refund_once(&id, &refund.id, &charge.id, refund.amount, state.now())
        .await
        .map_err(unreachable)?;
    Ok(RefundOutcome::Succeeded { provider_ref })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_cards() {
        assert_eq!(card("pm_card_visa").map(|c| c.1), Some(Behaviour::Succeeds));
        assert!(matches!(
            card("pm_card_chargeDeclinedInsufficientFunds").map(|c| c.1),
            Some(Behaviour::Declines("insufficient_funds", _))
        ));
        assert!(matches!(
            card("pm_card_visa_chargeDeclined").map(|c| c.1),
            Some(Behaviour::Declines("card_declined", _))
        ));
        assert_eq!(
            card("pm_card_authenticationRequired").map(|c| c.1),
            Some(Behaviour::RequiresAuthentication)
        );
        assert_eq!(card("pm_card_mastercard"), None);
    }
}
