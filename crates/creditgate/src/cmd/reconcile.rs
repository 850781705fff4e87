//! `creditgate reconcile`: every succeeded payment at the provider beside its ledger credit,
//! for a period, and every difference: a payment without a credit, a credit without a
//! payment, an amount that differs. Then the same for refunds ([`refunds`]): our refunds,
//! the ledger's refund transfers and the provider's refunds.
//!
//! A payment near the period's edge may be credited just across it, so both sides are read
//! over the period widened by [`EDGE_SLACK_MS`] on each side, and only differences about
//! the period itself are reported.

use creditgate_domain::payment::to_cents;
use creditgate_domain::{Amount, Timestamp};
use creditgate_store::{Store, StoreConfig};

use creditgate::config::Config;
use creditgate::providers::{Provider, ProviderPayment};

pub mod refunds;

/// How far beyond the period both sides are read.
pub const EDGE_SLACK_MS: i64 = 24 * 60 * 60 * 1000;

/// A ledger credit from a payment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credit {
    /// `txn_pay_…`.
    pub transfer_id: String,
    /// The org credited.
    pub org_id: String,
    /// How much.
    pub amount: Amount,
}

/// One difference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Difference {
    /// The provider took money the ledger never credited.
    PaymentWithoutCredit {
        /// The provider's object.
        provider_ref: String,
        /// Our payment, if the provider's record names one.
        payment_id: Option<String>,
        /// In cents.
        amount_cents: i64,
    },
    /// The ledger credited a payment the provider has no success for.
    CreditWithoutPayment {
        /// The credit.
        transfer_id: String,
        /// How much.
        amount: Amount,
    },
    /// A difference about refunds.
    Refund(refunds::RefundDifference),
    /// Both exist with different amounts.
    AmountMismatch {
        /// Our payment.
        payment_id: String,
        /// The provider's amount, in cents.
        provider_cents: i64,
        /// The ledger's amount.
        credited: Amount,
    },
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Difference::PaymentWithoutCredit {
                provider_ref,
                payment_id,
                amount_cents,
            } => write!(
                f,
                "payment without credit: {provider_ref} ({}) {} cents",
                payment_id.as_deref().unwrap_or("no payment id"),
                amount_cents
            ),
            Difference::CreditWithoutPayment {
                transfer_id,
                amount,
            } => write!(f, "credit without payment: {transfer_id} {amount}"),
            Difference::Refund(difference) => write!(f, "{difference}"),
            Difference::AmountMismatch {
                payment_id,
                provider_cents,
                credited,
            } => write!(
                f,
                "amount mismatch: {payment_id}: provider {provider_cents} cents, credited {credited}"
            ),
        }
    }
}

/// The differences between the provider's succeeded payments and the ledger's credits
/// (pure). `in_period` says whether a provider payment or a credit belongs to the period
/// reported on (the inputs cover the widened period).
pub fn compare(
    provider: &[(ProviderPayment, bool)],
    credits: &[(Credit, bool)],
) -> Vec<Difference> {
    let mut differences = Vec::new();
    let credit_of = |payment_id: &str| {
        let id = creditgate_domain::payment::credit_transfer_id(payment_id);
        credits.iter().find(|(c, _)| c.transfer_id == id.as_str())
    };
    for (payment, in_period) in provider {
        let credit = payment.payment_id.as_deref().and_then(credit_of);
        match credit {
            None if *in_period => differences.push(Difference::PaymentWithoutCredit {
                provider_ref: payment.provider_ref.clone(),
                payment_id: payment.payment_id.clone(),
                amount_cents: payment.amount_cents,
            }),
            None => {}
            Some((credit, credit_in_period))
                if (*in_period || *credit_in_period)
                    && to_cents(credit.amount) != Some(payment.amount_cents) =>
            {
                differences.push(Difference::AmountMismatch {
                    payment_id: payment.payment_id.clone().unwrap_or_default(),
                    provider_cents: payment.amount_cents,
                    credited: credit.amount,
                });
            }
            Some(_) => {}
        }
    }
    for (credit, in_period) in credits {
        let paid = provider.iter().any(|(p, _)| {
            p.payment_id.as_deref().is_some_and(|id| {
                creditgate_domain::payment::credit_transfer_id(id).as_str() == credit.transfer_id
            })
        });
        if *in_period && !paid {
            differences.push(Difference::CreditWithoutPayment {
                transfer_id: credit.transfer_id.clone(),
                amount: credit.amount,
            });
        }
    }
    differences
}

/// What a run found.
#[derive(Debug)]
pub struct Report {
    /// Succeeded payments at the provider in the period.
    pub payments: usize,
    /// Ledger credits from payments in the period.
    pub credits: usize,
    /// The refunds side.
    pub refunds: refunds::RefundsReport,
    /// The differences.
    pub differences: Vec<Difference>,
}

/// Reads both sides for `[from, to)` and compares them.
pub async fn run(config: &Config, from: Timestamp, to: Timestamp) -> anyhow::Result<Report> {
    let store = Store::open(&StoreConfig::new(config.database_url())).await?;
    let provider = Provider::from_config(config).map_err(anyhow::Error::msg)?;
    let (wide_from, wide_to) = (from.plus_ms(-EDGE_SLACK_MS), to.plus_ms(EDGE_SLACK_MS));
    let at_provider = provider_payments(&store, &provider, (wide_from, wide_to), from).await?;
    let within = |at: Timestamp| at >= from && at < to;
    let provider_payments: Vec<(ProviderPayment, bool)> = at_provider
        .into_iter()
        .map(|(payment, at)| (payment, within(at)))
        .collect();
    let mut credits = Vec::new();
    for (transfer_id, org_id, amount) in store.payment_credits_between(wide_from, wide_to).await? {
        let payment_id = transfer_id.trim_start_matches("txn_");
        let at = store
            .payment(payment_id)
            .await?
            .map(|p| p.created_at)
            .unwrap_or(from);
        credits.push((
            Credit {
                transfer_id,
                org_id,
                amount,
            },
            within(at),
        ));
    }
    let mut differences = compare(&provider_payments, &credits);
    let refunds = refunds::run(
        &store,
        &provider,
        &provider_payments,
        (from, to),
        (wide_from, wide_to),
    )
    .await?;
    differences.extend(refunds.differences.iter().cloned().map(Difference::Refund));
    Ok(Report {
        payments: provider_payments
            .iter()
            .filter(|(_, inside)| *inside)
            .count(),
        credits: credits.iter().filter(|(_, inside)| *inside).count(),
        refunds,
        differences,
    })
}

/// The provider's succeeded payments over `[wide_from, wide_to)`, each with when our
/// payment was made (`from` when it names none of ours).
async fn provider_payments(
    store: &Store,
    provider: &Provider,
    (wide_from, wide_to): (Timestamp, Timestamp),
    from: Timestamp,
) -> anyhow::Result<Vec<(ProviderPayment, Timestamp)>> {
    Ok(match provider {
        Provider::Sandbox => store
            .sandbox_charges_between(wide_from, wide_to)
            .await?
            .into_iter()
            .map(|charge| {
                let payment = ProviderPayment {
                    provider_ref: charge.id,
                    payment_id: Some(charge.payment_id),
                    amount_cents: to_cents(charge.amount).unwrap_or(-1),
                };
                (payment, charge.created_at)
            })
            .collect(),
        Provider::Stripe(client) => {
            let seconds = |t: Timestamp| t.unix_ms().div_euclid(1000);
            // Stripe's records carry seconds; the period's edges are compared in seconds.
            let listed = client
                .succeeded_between(seconds(wide_from), seconds(wide_to))
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let mut with_times = Vec::new();
            for payment in listed {
                let at = match payment.payment_id.as_deref() {
                    Some(id) => store.payment(id).await?.map(|p| p.created_at),
                    None => None,
                };
                with_times.push((payment, at.unwrap_or(from)));
            }
            with_times
        }
    })
}

/// A period edge: unix seconds, or a `YYYY-MM-DD` date (midnight UTC).
pub fn parse_edge(text: &str) -> Option<Timestamp> {
    if let Ok(seconds) = text.parse::<i64>() {
        return seconds.checked_mul(1000).map(Timestamp::from_unix_ms);
    }
    let mut parts = text.splitn(3, '-');
    let year: i64 = parts.next()?.parse().ok()?;
    let month: i64 = parts.next()?.parse().ok()?;
    let day: i64 = parts.next()?.parse().ok()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || !(1970..=9999).contains(&year) {
        return None;
    }
    let days = creditgate_domain::time::days_from_civil(year, month, day);
    Some(Timestamp::from_unix_ms(days * 86_400_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paid(payment_id: &str, cents: i64, in_period: bool) -> (ProviderPayment, bool) {
        (
            ProviderPayment {
                provider_ref: format!("pi_{payment_id}"),
                payment_id: Some(payment_id.to_owned()),
                amount_cents: cents,
            },
            in_period,
        )
    }

    fn credit(payment_id: &str, micros: i64, in_period: bool) -> (Credit, bool) {
        (
            Credit {
                transfer_id: format!("txn_{payment_id}"),
                org_id: "org_1".into(),
                amount: Amount::from_micros(micros),
            },
            in_period,
        )
    }

    #[test]
    fn compare_table() {
        // Matched: nothing to report.
        assert_eq!(
            compare(
                &[paid("pay_1", 2_000, true)],
                &[credit("pay_1", 20_000_000, true)]
            ),
            vec![]
        );
        // Matched across the period's edge: nothing either.
        assert_eq!(
            compare(
                &[paid("pay_1", 2_000, true)],
                &[credit("pay_1", 20_000_000, false)]
            ),
            vec![]
        );
        let differences = compare(
            &[
                paid("pay_1", 2_000, true),
                paid("pay_2", 1_000, true),
                paid("pay_4", 1_000, false),
            ],
            &[
                credit("pay_2", 10_010_000, true),
                credit("pay_3", 5_000_000, true),
                credit("pay_5", 5_000_000, false),
            ],
        );
        assert_eq!(
            differences,
            vec![
                Difference::PaymentWithoutCredit {
                    provider_ref: "pi_pay_1".into(),
                    payment_id: Some("pay_1".into()),
                    amount_cents: 2_000
                },
                Difference::AmountMismatch {
                    payment_id: "pay_2".into(),
                    provider_cents: 1_000,
                    credited: Amount::from_micros(10_010_000)
                },
                Difference::CreditWithoutPayment {
                    transfer_id: "txn_pay_3".into(),
                    amount: Amount::from_micros(5_000_000)
                },
            ]
        );
    }

    #[test]
    fn edges() {
        assert_eq!(parse_edge("0"), Some(Timestamp::from_unix_ms(0)));
        assert_eq!(parse_edge("1970-01-01"), Some(Timestamp::from_unix_ms(0)));
        assert_eq!(
            parse_edge("2026-11-01"),
            Some(Timestamp::from_unix_ms(1_793_491_200_000))
        );
        assert_eq!(
            parse_edge("2024-03-01"),
            Some(Timestamp::from_unix_ms(1_709_251_200_000))
        );
        assert_eq!(parse_edge("2026-13-01"), None);
        assert_eq!(parse_edge("yesterday"), None);
    }
}
