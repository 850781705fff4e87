//! The refunds side of `creditgate reconcile`: our refunds rows, the ledger's refund
//! transfers (`txn_<refund id>`) and the provider's refunds (the sandbox's table, or Stripe's
//! refunds of the period's PaymentIntents, matched by `metadata[refund_id]`), and every
//! difference between them.

use creditgate_domain::ids::refund_transfer;
use creditgate_domain::payment::to_cents;
use creditgate_domain::{Amount, Timestamp};
use creditgate_store::api::{Refund, RefundState};
use creditgate_store::Store;

use creditgate::providers::{Provider, ProviderPayment};

/// The refunds side of a run: how many of each were in the period, and the differences.
#[derive(Debug, Default)]
pub struct RefundsReport {
    /// Our refunds made in the period.
    pub refunds: usize,
    /// Ledger refund transfers in the period.
    pub transfers: usize,
    /// Refunds at the provider in the period.
    pub at_provider: usize,
    /// The differences.
    pub differences: Vec<RefundDifference>,
}

/// Reads the three sides over `wide` (the widened period) and compares them for
/// `[from, to)`. `payments` are the provider's succeeded payments (Stripe's refunds are
/// listed per PaymentIntent), with whether each is in the period.
pub async fn run(
    store: &Store,
    provider: &Provider,
    payments: &[(ProviderPayment, bool)],
    (from, to): (Timestamp, Timestamp),
    (wide_from, wide_to): (Timestamp, Timestamp),
) -> anyhow::Result<RefundsReport> {
    let within = |at: Timestamp| at >= from && at < to;
    let rows = store.refunds_between(wide_from, wide_to).await?;
    let at_provider = provider_refunds(
        store,
        provider,
        payments,
        &rows,
        within,
        (wide_from, wide_to),
    )
    .await?;
    let ledger = ledger_refunds(store, &rows, within, (wide_from, wide_to)).await?;
    let ours: Vec<(Refund, bool)> = rows
        .iter()
        .map(|r| (r.clone(), within(r.created_at)))
        .collect();
    let count = |inside: &mut dyn Iterator<Item = bool>| inside.filter(|i| *i).count();
    Ok(RefundsReport {
        refunds: count(&mut ours.iter().map(|(_, i)| *i)),
        transfers: count(&mut ledger.iter().map(|(_, i)| *i)),
        at_provider: count(&mut at_provider.iter().map(|(_, i)| *i)),
        differences: compare(&ours, &ledger, &at_provider),
    })
}

/// A refund as the provider records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderRefund {
    /// The provider's object (`re_…`).
    pub provider_ref: String,
    /// Our refund, if the provider's record names one.
    pub refund_id: Option<String>,
    /// In cents.
    pub amount_cents: i64,
}

/// A ledger refund transfer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefundTransfer {
    /// `txn_rfd_…`.
    pub transfer_id: String,
    /// How much.
    pub amount: Amount,
}

/// One difference about refunds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefundDifference {
    /// The provider gave money back that the ledger never took back from the org (a crash
    /// not resumed yet, or credits spent before the ledger step).
    ProviderRefundWithoutTransfer {
        /// The provider's refund.
        provider_ref: String,
        /// Ours.
        refund_id: String,
        /// In cents.
        amount_cents: i64,
    },
    /// A refund at the provider that creditgate did not make (its dashboard, say).
    ProviderRefundNotOurs {
        /// The provider's refund.
        provider_ref: String,
        /// In cents.
        amount_cents: i64,
    },
    /// The ledger took credits back for a refund the provider has no record of.
    TransferWithoutProviderRefund {
        /// The ledger transfer.
        transfer_id: String,
        /// How much.
        amount: Amount,
    },
    /// A refund marked succeeded without its ledger transfer.
    SucceededWithoutTransfer {
        /// Ours.
        refund_id: String,
        /// How much.
        amount: Amount,
    },
    /// The provider's amount and the ledger's differ.
    AmountMismatch {
        /// Ours.
        refund_id: String,
        /// The provider's amount, in cents.
        provider_cents: i64,
        /// The ledger's.
        transferred: Amount,
    },
}

impl std::fmt::Display for RefundDifference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RefundDifference::ProviderRefundWithoutTransfer {
                provider_ref,
                refund_id,
                amount_cents,
            } => write!(
                f,
                "refund without ledger transfer: {provider_ref} ({refund_id}) {amount_cents} cents"
            ),
            RefundDifference::ProviderRefundNotOurs {
                provider_ref,
                amount_cents,
            } => write!(
                f,
                "refund made outside creditgate: {provider_ref} {amount_cents} cents"
            ),
            RefundDifference::TransferWithoutProviderRefund {
                transfer_id,
                amount,
            } => write!(
                f,
                "refund transfer without provider refund: {transfer_id} {amount}"
            ),
            RefundDifference::SucceededWithoutTransfer { refund_id, amount } => write!(
                f,
                "refund succeeded without ledger transfer: {refund_id} {amount}"
            ),
            RefundDifference::AmountMismatch {
                refund_id,
                provider_cents,
                transferred,
            } => write!(
                f,
                "refund amount mismatch: {refund_id}: provider {provider_cents} cents, ledger {transferred}"
            ),
        }
    }
}

/// The provider's refunds over the widened period, each with whether it is in the period
/// (by our row's time, or its payment's for a refund not ours).
async fn provider_refunds(
    store: &Store,
    provider: &Provider,
    payments: &[(ProviderPayment, bool)],
    rows: &[Refund],
    within: impl Fn(Timestamp) -> bool,
    (wide_from, wide_to): (Timestamp, Timestamp),
) -> anyhow::Result<Vec<(ProviderRefund, bool)>> {
    let in_period_of = |refund_id: &str| {
        rows.iter()
            .find(|r| r.id == refund_id)
            .map(|r| within(r.created_at))
    };
    let mut at_provider = Vec::new();
    match provider {
        Provider::Sandbox => {
            for (id, refund_id, amount) in store.sandbox_refunds_between(wide_from, wide_to).await?
            {
                let in_period = match in_period_of(&refund_id) {
                    Some(inside) => inside,
                    None => store
                        .refund(&refund_id)
                        .await?
                        .is_some_and(|r| within(r.created_at)),
                };
                let refund = ProviderRefund {
                    provider_ref: id,
                    refund_id: Some(refund_id),
                    amount_cents: to_cents(amount).unwrap_or(-1),
                };
                at_provider.push((refund, in_period));
            }
        }
        Provider::Stripe(client) => {
            at_provider = stripe_refunds(client, store, payments, rows, in_period_of).await?;
        }
    }
    Ok(at_provider)
}

/// Stripe's refunds of the period's PaymentIntents and of the payments our refunds name (a
/// payment older than the period may be refunded in it), matched to ours by
/// `metadata[refund_id]`; one not ours counts in the period when its payment does.
async fn stripe_refunds(
    client: &creditgate::providers::stripe::Client,
    store: &Store,
    payments: &[(ProviderPayment, bool)],
    rows: &[Refund],
    in_period_of: impl Fn(&str) -> Option<bool>,
) -> anyhow::Result<Vec<(ProviderRefund, bool)>> {
    let mut intents: Vec<(String, bool)> = payments
        .iter()
        .map(|(payment, inside)| (payment.provider_ref.clone(), *inside))
        .collect();
    for row in rows {
        let payment = store.payment(&row.payment_id).await?;
        if let Some(intent) = payment.and_then(|p| p.provider_ref) {
            if !intents.iter().any(|(known, _)| *known == intent) {
                intents.push((intent, false));
            }
        }
    }
    let mut at_provider = Vec::new();
    for (intent, payment_in_period) in intents {
        let listed = client
            .refunds_of(&intent)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        for listed in listed {
            let refund_id = listed.metadata.get("refund_id").cloned();
            let in_period = refund_id
                .as_deref()
                .and_then(&in_period_of)
                .unwrap_or(payment_in_period);
            let refund = ProviderRefund {
                provider_ref: listed.id,
                refund_id,
                amount_cents: listed.amount,
            };
            at_provider.push((refund, in_period));
        }
    }
    Ok(at_provider)
}

/// The ledger's refund transfers over the widened period, each with whether it is in the
/// period (by its refund's time).
async fn ledger_refunds(
    store: &Store,
    rows: &[Refund],
    within: impl Fn(Timestamp) -> bool,
    (wide_from, wide_to): (Timestamp, Timestamp),
) -> anyhow::Result<Vec<(RefundTransfer, bool)>> {
    let in_period_of = |refund_id: &str| {
        rows.iter()
            .find(|r| r.id == refund_id)
            .map(|r| within(r.created_at))
    };
    let mut ledger = Vec::new();
    for (transfer_id, _org, amount) in store.refund_transfers_between(wide_from, wide_to).await? {
        let refund_id = transfer_id.trim_start_matches("txn_");
        let in_period = match in_period_of(refund_id) {
            Some(inside) => inside,
            None => store
                .refund(refund_id)
                .await?
                .is_none_or(|r| within(r.created_at)),
        };
        ledger.push((
            RefundTransfer {
                transfer_id,
                amount,
            },
            in_period,
        ));
    }
    Ok(ledger)
}

/// The differences between our refunds, the ledger's refund transfers and the provider's
/// refunds (pure). Each input covers the widened period; `in_period` marks what belongs to
/// the period reported on.
pub fn compare(
    ours: &[(Refund, bool)],
    ledger: &[(RefundTransfer, bool)],
    provider: &[(ProviderRefund, bool)],
) -> Vec<RefundDifference> {
    let mut differences = Vec::new();
    let transfer_of = |refund_id: &str| {
        ledger
            .iter()
            .find(|(t, _)| t.transfer_id == refund_transfer(refund_id).as_str())
    };
    for (refund, in_period) in provider {
        let Some(refund_id) = refund.refund_id.as_deref() else {
            if *in_period {
                differences.push(RefundDifference::ProviderRefundNotOurs {
                    provider_ref: refund.provider_ref.clone(),
                    amount_cents: refund.amount_cents,
                });
            }
            continue;
        };
        match transfer_of(refund_id) {
            None if *in_period => {
                differences.push(RefundDifference::ProviderRefundWithoutTransfer {
                    provider_ref: refund.provider_ref.clone(),
                    refund_id: refund_id.to_owned(),
                    amount_cents: refund.amount_cents,
                })
            }
            Some((transfer, transfer_in_period))
                if (*in_period || *transfer_in_period)
                    && to_cents(transfer.amount) != Some(refund.amount_cents) =>
            {
                differences.push(RefundDifference::AmountMismatch {
                    refund_id: refund_id.to_owned(),
                    provider_cents: refund.amount_cents,
                    transferred: transfer.amount,
                })
            }
            _ => {}
        }
    }
    for (transfer, in_period) in ledger {
        let at_provider = provider.iter().any(|(p, _)| {
            p.refund_id
                .as_deref()
                .is_some_and(|id| refund_transfer(id).as_str() == transfer.transfer_id)
        });
        if *in_period && !at_provider {
            differences.push(RefundDifference::TransferWithoutProviderRefund {
                transfer_id: transfer.transfer_id.clone(),
                amount: transfer.amount,
            });
        }
    }
    for (refund, in_period) in ours {
        if *in_period && refund.state == RefundState::Succeeded && transfer_of(&refund.id).is_none()
        {
            differences.push(RefundDifference::SucceededWithoutTransfer {
                refund_id: refund.id.clone(),
                amount: refund.amount,
            });
        }
    }
    differences
}

#[cfg(test)]
mod tests {
    use creditgate_domain::Timestamp;

    use super::*;

    fn ours(id: &str, state: RefundState, micros: i64) -> (Refund, bool) {
        let at = Timestamp::from_unix_ms(0);
        let refund = Refund {
            id: id.into(),
            payment_id: "pay_1".into(),
            org_id: "org_1".into(),
            state,
            amount: Amount::from_micros(micros),
            reason: None,
            provider: "stripe".into(),
            provider_ref: None,
            failure_code: None,
            failure_message: None,
            transfer_id: None,
            created_at: at,
            updated_at: at,
        };
        (refund, true)
    }

    fn moved(refund_id: &str, micros: i64, in_period: bool) -> (RefundTransfer, bool) {
        let transfer = RefundTransfer {
            transfer_id: refund_transfer(refund_id).as_str().to_owned(),
            amount: Amount::from_micros(micros),
        };
        (transfer, in_period)
    }

    fn at_provider(refund_id: Option<&str>, cents: i64) -> (ProviderRefund, bool) {
        let refund = ProviderRefund {
            provider_ref: format!("re_{}", refund_id.unwrap_or("dashboard")),
            refund_id: refund_id.map(str::to_owned),
            amount_cents: cents,
        };
        (refund, true)
    }

    #[test]
    fn compare_table() {
        // Matched, and matched across the period's edge: nothing to report.
        let matched = compare(
            &[ours("rfd_1", RefundState::Succeeded, 10_000_000)],
            &[moved("rfd_1", 10_000_000, false)],
            &[at_provider(Some("rfd_1"), 1_000)],
        );
        assert_eq!(matched, vec![]);
        let differences = compare(
            &[
                ours("rfd_2", RefundState::Requesting, 5_000_000),
                ours("rfd_4", RefundState::Succeeded, 1_000_000),
            ],
            &[
                moved("rfd_3", 2_000_000, true),
                moved("rfd_5", 3_000_000, true),
            ],
            &[
                at_provider(Some("rfd_2"), 500),
                at_provider(None, 700),
                at_provider(Some("rfd_5"), 301),
            ],
        );
        assert_eq!(
            differences,
            vec![
                RefundDifference::ProviderRefundWithoutTransfer {
                    provider_ref: "re_rfd_2".into(),
                    refund_id: "rfd_2".into(),
                    amount_cents: 500
                },
                RefundDifference::ProviderRefundNotOurs {
                    provider_ref: "re_dashboard".into(),
                    amount_cents: 700
                },
                RefundDifference::AmountMismatch {
                    refund_id: "rfd_5".into(),
                    provider_cents: 301,
                    transferred: Amount::from_micros(3_000_000)
                },
                RefundDifference::TransferWithoutProviderRefund {
                    transfer_id: "txn_rfd_3".into(),
                    amount: Amount::from_micros(2_000_000)
                },
                RefundDifference::SucceededWithoutTransfer {
                    refund_id: "rfd_4".into(),
                    amount: Amount::from_micros(1_000_000)
                },
            ]
        );
    }
}
