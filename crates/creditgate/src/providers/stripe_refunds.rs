//! Refunds at Stripe: made by PaymentIntent and amount, keyed by our refund id, found again
//! by its `metadata[refund_id]` (localstripe ignores idempotency keys).

use serde::Deserialize;

use super::stripe::{path_part, Client, List, LIST_PAGES_MAX};
use super::ProviderError;

/// A Refund, as much of it as we read.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct StripeRefund {
    /// `re_…`.
    pub id: String,
    /// In cents.
    #[serde(default)]
    pub amount: i64,
    /// `succeeded`, `pending`, `failed`, `canceled`, …
    #[serde(default)]
    pub status: String,
    /// The refunded PaymentIntent.
    #[serde(default)]
    pub payment_intent: Option<String>,
    /// Our `refund_id`.
    #[serde(default)]
    pub metadata: std::collections::HashMap<String, String>,
}

impl Client {
    /// Refunds `amount_cents` of PaymentIntent `intent` for our refund `refund_id` (the
    /// idempotency key is derived from it, and it goes in `metadata[refund_id]`, by which
    /// [`Client::find_refund`] finds it again: localstripe ignores idempotency keys).
    pub async fn refund(
        &self,
        intent: &str,
        refund_id: &str,
        amount_cents: i64,
    ) -> Result<StripeRefund, ProviderError> {
        let form = [
            ("payment_intent", intent.to_owned()),
            ("amount", amount_cents.to_string()),
            ("metadata[refund_id]", refund_id.to_owned()),
        ];
        let key = creditgate_domain::ids::refund_provider_key(refund_id);
        self.post("/v1/refunds", &key, &form).await
    }

    /// The refund made at Stripe for our refund `refund_id` of PaymentIntent `intent`, if
    /// one reached it (the first [`LIST_PAGES_MAX`] pages of the intent's refunds).
    pub async fn find_refund(
        &self,
        intent: &str,
        refund_id: &str,
    ) -> Result<Option<StripeRefund>, ProviderError> {
        let refunds = self.refunds_of(intent).await?;
        Ok(refunds
            .into_iter()
            .find(|r| r.metadata.get("refund_id").map(String::as_str) == Some(refund_id)))
    }

    /// The refunds of PaymentIntent `intent`, newest first (at most [`LIST_PAGES_MAX`] pages).
    pub async fn refunds_of(&self, intent: &str) -> Result<Vec<StripeRefund>, ProviderError> {
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        let intent = path_part(intent);
        for _ in 0..LIST_PAGES_MAX {
            let path = match &after {
                None => format!("/v1/refunds?payment_intent={intent}&limit=100"),
                Some(id) => {
                    format!("/v1/refunds?payment_intent={intent}&limit=100&starting_after={id}")
                }
            };
            let page: List<StripeRefund> = self.get(&path).await?;
            after = page.data.last().map(|r| r.id.clone());
            seen.extend(page.data);
            if !page.has_more || after.is_none() {
                break;
            }
        }
        Ok(seen)
    }
}
