//! Payments: the state machine every charge at the payment provider follows.
//!
//! A payment is a row of ours first (`pay_…`), and the provider only ever sees it under that
//! id (its idempotency key and metadata), so an attempt interrupted at any step resumes
//! without a second charge. What the provider reports moves the row along [`advance`]; a
//! report that does not fit the current state (a late `payment_failed` after a success, a
//! duplicate) changes nothing. One succeeded payment produces exactly one credit: the
//! ledger transfer's id is derived from the payment's id ([`credit_transfer_id`]).

use crate::money::Amount;

/// Where a payment is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PaymentState {
    /// Written, not yet sent to the provider.
    Created,
    /// Sent to the provider; the answer is not recorded yet (a crash here is resumed).
    Charging,
    /// The customer must act: complete a checkout, or confirm the charge (3-D Secure).
    RequiresAction,
    /// The provider took the money; the credit is in the ledger.
    Succeeded,
    /// The provider refused the charge (declined, insufficient funds, authentication failed).
    Failed,
}

impl PaymentState {
    /// Every state.
    pub const ALL: [PaymentState; 5] = [
        PaymentState::Created,
        PaymentState::Charging,
        PaymentState::RequiresAction,
        PaymentState::Succeeded,
        PaymentState::Failed,
    ];

    /// The stable snake_case name, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentState::Created => "created",
            PaymentState::Charging => "charging",
            PaymentState::RequiresAction => "requires_action",
            PaymentState::Succeeded => "succeeded",
            PaymentState::Failed => "failed",
        }
    }

    /// The state named `text`.
    pub fn parse(text: &str) -> Option<PaymentState> {
        PaymentState::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether the payment may still produce money (and so blocks another auto-reload).
    pub fn is_open(self) -> bool {
        matches!(
            self,
            PaymentState::Created | PaymentState::Charging | PaymentState::RequiresAction
        )
    }
}

/// How a payment is paid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PaymentMethod {
    /// A hosted payment page the customer pays on.
    Checkout,
    /// The org's saved card, charged off-session (top-ups by choice, auto-reloads always).
    SavedCard,
}

impl PaymentMethod {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentMethod::Checkout => "checkout",
            PaymentMethod::SavedCard => "saved_card",
        }
    }

    /// The method named `text`.
    pub fn parse(text: &str) -> Option<PaymentMethod> {
        [PaymentMethod::Checkout, PaymentMethod::SavedCard]
            .into_iter()
            .find(|m| m.as_str() == text)
    }
}

/// What a payment is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PaymentKind {
    /// A top-up the customer asked for (checkout or the saved card).
    TopUp,
    /// An automatic charge of the saved card (auto-reload).
    AutoReload,
}

impl PaymentKind {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentKind::TopUp => "top_up",
            PaymentKind::AutoReload => "auto_reload",
        }
    }

    /// The kind named `text`.
    pub fn parse(text: &str) -> Option<PaymentKind> {
        [PaymentKind::TopUp, PaymentKind::AutoReload]
            .into_iter()
            .find(|k| k.as_str() == text)
    }

    /// The ledger transfer kind of the credit a succeeded payment of this kind produces.
    pub fn transfer_kind(self) -> crate::ledger::TransferKind {
        match self {
            PaymentKind::TopUp => crate::ledger::TransferKind::Purchase,
            PaymentKind::AutoReload => crate::ledger::TransferKind::AutoReload,
        }
    }
}

/// Something the provider (or our own call to it) reported about a payment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaymentEvent {
    /// We are about to call the provider.
    Charge,
    /// The customer must act (checkout opened, or authentication asked for).
    ActionRequired,
    /// The money was taken.
    Succeeded,
    /// The charge was refused.
    Failed,
}

/// The state a payment in `from` moves to on `event`, or `None` when the event does not
/// apply (a duplicate, or one that arrived out of order): the caller then changes nothing.
///
/// A success is accepted from every state but itself, a failed one included: money the
/// provider reports taken is always credited (a customer may complete a failed payment's
/// authentication later). A failure never undoes a success.
pub fn advance(from: PaymentState, event: PaymentEvent) -> Option<PaymentState> {
    use PaymentEvent as E;
    use PaymentState as S;
    match (from, event) {
        (S::Created, E::Charge) => Some(S::Charging),
        (S::Created | S::Charging, E::ActionRequired) => Some(S::RequiresAction),
        (S::Created | S::Charging | S::RequiresAction | S::Failed, E::Succeeded) => {
            Some(S::Succeeded)
        }
        (S::Created | S::Charging | S::RequiresAction, E::Failed) => Some(S::Failed),
        _ => None,
    }
}

/// The id of the one ledger transfer a succeeded payment produces.
pub fn credit_transfer_id(payment_id: &str) -> crate::ledger::TransferId {
    crate::ids::payment_credit(payment_id)
}

/// Micro-units in one cent: card payments are charged in whole cents.
pub const CENT_MICROS: i64 = 10_000;

/// Whether `amount` is a whole number of cents.
pub fn is_whole_cents(amount: Amount) -> bool {
    amount.micros() % CENT_MICROS == 0
}

/// `amount` in cents (the provider's minor unit), when it is whole cents.
pub fn to_cents(amount: Amount) -> Option<i64> {
    is_whole_cents(amount).then_some(amount.micros() / CENT_MICROS)
}

/// The amount of `cents`, when it fits.
pub fn from_cents(cents: i64) -> Option<Amount> {
    cents.checked_mul(CENT_MICROS).map(Amount::from_micros)
}

/// `amount` rounded up to a whole cent (`None` on overflow).
pub fn round_up_to_cent(amount: Amount) -> Option<Amount> {
    let rest = amount.micros().rem_euclid(CENT_MICROS);
    if rest == 0 {
        return Some(amount);
    }
    amount
        .micros()
        .checked_add(CENT_MICROS - rest)
        .map(Amount::from_micros)
}

#[cfg(test)]
mod tests {
    use super::*;
    use PaymentEvent as E;
    use PaymentState as S;

    #[test]
    fn names_round_trip() {
        for state in PaymentState::ALL {
            assert_eq!(PaymentState::parse(state.as_str()), Some(state));
        }
        for kind in [PaymentKind::TopUp, PaymentKind::AutoReload] {
            assert_eq!(PaymentKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(PaymentState::parse("Succeeded"), None);
    }

    #[test]
    fn advance_table() {
        // (from, event, to): every pair of the table, written out.
        let table = [
            (S::Created, E::Charge, Some(S::Charging)),
            (S::Created, E::ActionRequired, Some(S::RequiresAction)),
            (S::Created, E::Succeeded, Some(S::Succeeded)),
            (S::Created, E::Failed, Some(S::Failed)),
            (S::Charging, E::Charge, None),
            (S::Charging, E::ActionRequired, Some(S::RequiresAction)),
            (S::Charging, E::Succeeded, Some(S::Succeeded)),
            (S::Charging, E::Failed, Some(S::Failed)),
            (S::RequiresAction, E::Charge, None),
            (S::RequiresAction, E::ActionRequired, None),
            (S::RequiresAction, E::Succeeded, Some(S::Succeeded)),
            (S::RequiresAction, E::Failed, Some(S::Failed)),
            (S::Succeeded, E::Charge, None),
            (S::Succeeded, E::ActionRequired, None),
            (S::Succeeded, E::Succeeded, None),
            (S::Succeeded, E::Failed, None),
            (S::Failed, E::Charge, None),
            (S::Failed, E::ActionRequired, None),
            (S::Failed, E::Succeeded, Some(S::Succeeded)),
            (S::Failed, E::Failed, None),
        ];
        for (from, event, to) in table {
            assert_eq!(advance(from, event), to, "{from:?} on {event:?}");
        }
    }

    #[test]
    fn open_states_block_a_reload() {
        let open: Vec<_> = PaymentState::ALL
            .into_iter()
            .filter(|s| s.is_open())
            .collect();
        assert_eq!(open, [S::Created, S::Charging, S::RequiresAction]);
    }

    #[test]
    fn cents() {
        let amount = |m| Amount::from_micros(m);
        assert_eq!(to_cents(amount(12_340_000)), Some(1_234));
        assert_eq!(to_cents(amount(12_345_001)), None);
        assert_eq!(from_cents(1_234), Some(amount(12_340_000)));
        assert_eq!(from_cents(i64::MAX), None);
        assert_eq!(round_up_to_cent(amount(1)), Some(amount(10_000)));
        assert_eq!(round_up_to_cent(amount(10_000)), Some(amount(10_000)));
        assert_eq!(round_up_to_cent(amount(10_001)), Some(amount(20_000)));
        assert_eq!(round_up_to_cent(amount(0)), Some(amount(0)));
        assert_eq!(round_up_to_cent(amount(-5_000)), Some(amount(0)));
        assert_eq!(round_up_to_cent(Amount::MAX), None);
        assert_eq!(credit_transfer_id("pay_1").as_str(), "txn_pay_1");
    }
}
