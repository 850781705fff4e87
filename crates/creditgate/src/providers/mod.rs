//! The payment providers' adapters (Stripe, the sandbox): what a charge, a checkout and a
//! saved card look like to us, whoever the provider. The steps that use them (charge, credit,
//! resume) are the application layer's ([`crate::app::charges`]); the mail transport is
//! [`mail`].

pub mod mail;
pub mod sandbox;
pub mod stripe;
pub mod stripe_refunds;

use creditgate_domain::reload::{FailurePolicy, PaymentLimits};
use creditgate_domain::Amount;

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

/// What a refund came to at the provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefundOutcome {
    /// The money went back (or is on its way: Stripe's `pending` is as good as done for us,
    /// it is not undone by the customer).
    Succeeded {
        /// The provider's refund object.
        provider_ref: String,
    },
    /// Refused: nothing went back.
    Refused {
        /// A stable code.
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

pub(crate) fn ms(value: u64) -> i64 {
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
