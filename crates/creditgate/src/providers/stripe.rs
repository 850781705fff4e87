//! A small Stripe client of our own: form-encoded calls, an `Idempotency-Key` on every POST
//! (derived from our own row ids), only the parameters we need (localstripe rejects unknown
//! ones), and lenient reading of the answers (only the fields we use, all optional).
//!
//! Errors are told apart by `code`, never by `type` (localstripe and Stripe disagree on
//! `type`). Our exactly-once guarantee never relies on Stripe's idempotency: a charge that
//! may have reached Stripe is looked up by its `metadata[payment_id]` before it is retried.

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::{de::DeserializeOwned, Deserialize};
use sha2::Sha256;

use super::{ChargeOutcome, ProviderError, ProviderPayment};

/// Most pages read when looking a payment up or listing a period (100 objects a page).
pub const LIST_PAGES_MAX: usize = 50;

/// The client.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    secret_key: String,
}

/// A PaymentIntent, as much of it as we read.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct PaymentIntent {
    /// `pi_…`.
    pub id: String,
    /// In cents.
    #[serde(default)]
    pub amount: i64,
    /// `succeeded`, `requires_action`, `requires_payment_method`, `processing`, …
    #[serde(default)]
    pub status: String,
    /// Our `payment_id`.
    #[serde(default)]
    pub metadata: std::collections::HashMap<String, String>,
    /// The card used.
    #[serde(default)]
    pub payment_method: Option<String>,
    /// Unix seconds.
    #[serde(default)]
    pub created: i64,
    /// Why the last attempt failed.
    #[serde(default)]
    pub last_payment_error: Option<StripeErrorDetail>,
}

/// Stripe's error detail (in error bodies and `last_payment_error`).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct StripeErrorDetail {
    /// `card_declined`, …
    #[serde(default)]
    pub code: Option<String>,
    /// `insufficient_funds`, …
    #[serde(default)]
    pub decline_code: Option<String>,
    /// For people.
    #[serde(default)]
    pub message: Option<String>,
    /// The PaymentIntent the error is about.
    #[serde(default)]
    pub payment_intent: Option<Box<PaymentIntent>>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: StripeErrorDetail,
}

#[derive(Deserialize)]
struct Created {
    id: String,
    #[serde(default)]
    url: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct List<T> {
    pub(super) data: Vec<T>,
    #[serde(default)]
    pub(super) has_more: bool,
}

/// A card PaymentMethod, as much as we read.
#[derive(Deserialize)]
struct PaymentMethod {
    id: String,
    #[serde(default)]
    card: Option<Card>,
}

#[derive(Deserialize)]
struct Card {
    #[serde(default)]
    brand: String,
    #[serde(default)]
    last4: String,
}

/// What a Checkout Session is opened with.
pub struct CheckoutParams<'a> {
    /// Our payment id (idempotency key and metadata).
    pub payment_id: &'a str,
    /// The customer, so the card is saved to it.
    pub customer: &'a str,
    /// In cents.
    pub amount_cents: i64,
    /// Lower-case ISO code.
    pub currency: &'a str,
    /// The line item's name.
    pub product_name: &'a str,
    /// Where the customer returns after paying.
    pub success_url: &'a str,
    /// Where the customer returns after giving up.
    pub cancel_url: &'a str,
}

impl Client {
    /// A client for `base` (`https://api.stripe.com`, or localstripe in tests).
    pub fn new(base: &str, secret_key: &str, timeout_ms: u64) -> Result<Client, String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(timeout_ms.max(1)))
            .build()
            .map_err(|e| format!("the Stripe client: {e}"))?;
        Ok(Client {
            http,
            base: base.trim_end_matches('/').to_owned(),
            secret_key: secret_key.to_owned(),
        })
    }

    pub(super) async fn post<T: for<'de> Deserialize<'de>>(
        &self,
        path: &str,
        idempotency_key: &str,
        form: &[(&str, String)],
    ) -> Result<T, ProviderError> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.secret_key)
            .header("Idempotency-Key", idempotency_key)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(form).map_err(|e| ProviderError::Bug(e.to_string()))?)
            .send()
            .await
            .map_err(|e| ProviderError::Unreachable(e.to_string()))?;
        read(response).await
    }

    pub(super) async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ProviderError> {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.secret_key)
            .send()
            .await
            .map_err(|e| ProviderError::Unreachable(e.to_string()))?;
        read(response).await
    }

    /// Creates the org's customer.
    pub async fn create_customer(
        &self,
        org_id: &str,
        name: &str,
        email: Option<&str>,
    ) -> Result<String, ProviderError> {
        let mut form = vec![
            ("name", name.to_owned()),
            ("metadata[org_id]", org_id.to_owned()),
        ];
        if let Some(email) = email {
            form.push(("email", email.to_owned()));
        }
        let created: Created = self
            .post("/v1/customers", &format!("customer-{org_id}"), &form)
            .await?;
        Ok(created.id)
    }

    /// Attaches a card to the customer; answers its id (a test id such as `pm_card_visa`
    /// becomes a real one) and its label.
    pub async fn attach(
        &self,
        payment_method: &str,
        customer: &str,
    ) -> Result<(String, String), ProviderError> {
        let attached: PaymentMethod = self
            .post(
                &format!("/v1/payment_methods/{}/attach", path_part(payment_method)),
                &format!("attach-{customer}-{payment_method}"),
                &[("customer", customer.to_owned())],
            )
            .await?;
        let label = card_label(attached.card.as_ref());
        Ok((attached.id, label))
    }

    /// The label of a saved card.
    pub async fn card_label(&self, payment_method: &str) -> Result<String, ProviderError> {
        let method: PaymentMethod = self
            .get(&format!(
                "/v1/payment_methods/{}",
                path_part(payment_method)
            ))
            .await?;
        Ok(card_label(method.card.as_ref()))
    }

    /// Charges the saved card off-session (`confirm=true`, `off_session=true`).
    pub async fn charge(
        &self,
        payment_id: &str,
        customer: Option<&str>,
        payment_method: &str,
        amount_cents: i64,
        currency: &str,
    ) -> Result<ChargeOutcome, ProviderError> {
        let mut form = vec![
            ("amount", amount_cents.to_string()),
            ("currency", currency.to_ascii_lowercase()),
            ("payment_method", payment_method.to_owned()),
            ("confirm", "true".to_owned()),
            ("off_session", "true".to_owned()),
            ("metadata[payment_id]", payment_id.to_owned()),
        ];
        if let Some(customer) = customer {
            form.push(("customer", customer.to_owned()));
        }
        match self
            .post::<PaymentIntent>("/v1/payment_intents", payment_id, &form)
            .await
        {
            Ok(intent) => Ok(outcome_of(&intent)),
            Err(ProviderError::Declined {
                code,
                message,
                provider_ref,
            }) => Ok(ChargeOutcome::Declined {
                provider_ref,
                code,
                message,
            }),
            Err(other) => Err(other),
        }
    }

    /// Cancels a PaymentIntent (before a confirmation is moved to Checkout).
    pub async fn cancel(&self, intent: &str) -> Result<(), ProviderError> {
        let _: PaymentIntent = self
            .post(
                &format!("/v1/payment_intents/{}/cancel", path_part(intent)),
                &format!("cancel-{intent}"),
                &[],
            )
            .await?;
        Ok(())
    }

    /// A PaymentIntent.
    pub async fn payment_intent(&self, id: &str) -> Result<PaymentIntent, ProviderError> {
        self.get(&format!("/v1/payment_intents/{}", path_part(id)))
            .await
    }

    /// Opens a Checkout Session that also saves the card for off-session use.
    pub async fn open_checkout(
        &self,
        params: &CheckoutParams<'_>,
    ) -> Result<(String, String), ProviderError> {
        let form = vec![
            ("mode", "payment".to_owned()),
            ("customer", params.customer.to_owned()),
            ("client_reference_id", params.payment_id.to_owned()),
            ("metadata[payment_id]", params.payment_id.to_owned()),
            (
                "line_items[0][price_data][currency]",
                params.currency.to_ascii_lowercase(),
            ),
            (
                "line_items[0][price_data][unit_amount]",
                params.amount_cents.to_string(),
            ),
            (
                "line_items[0][price_data][product_data][name]",
                params.product_name.to_owned(),
            ),
            ("line_items[0][quantity]", "1".to_owned()),
            (
                "payment_intent_data[setup_future_usage]",
                "off_session".to_owned(),
            ),
            (
                "payment_intent_data[metadata][payment_id]",
                params.payment_id.to_owned(),
            ),
            ("success_url", params.success_url.to_owned()),
            ("cancel_url", params.cancel_url.to_owned()),
        ];
        let created: Created = self
            .post(
                "/v1/checkout/sessions",
                &format!("checkout-{}", params.payment_id),
                &form,
            )
            .await?;
        let url = created
            .url
            .ok_or_else(|| ProviderError::Bug("a Checkout Session without url".into()))?;
        Ok((created.id, url))
    }

    /// Every PaymentIntent, newest first as Stripe lists them, at most
    /// [`LIST_PAGES_MAX`] pages; `stop` ends the walk early (a match, or past the period).
    async fn walk(
        &self,
        mut stop: impl FnMut(&PaymentIntent) -> bool,
    ) -> Result<Vec<PaymentIntent>, ProviderError> {
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..LIST_PAGES_MAX {
            let path = match &after {
                None => "/v1/payment_intents?limit=100".to_owned(),
                Some(id) => format!("/v1/payment_intents?limit=100&starting_after={id}"),
            };
            let page: List<PaymentIntent> = self.get(&path).await?;
            after = page.data.last().map(|i| i.id.clone());
            for intent in page.data {
                let done = stop(&intent);
                seen.push(intent);
                if done {
                    return Ok(seen);
                }
            }
            if !page.has_more || after.is_none() {
                break;
            }
        }
        Ok(seen)
    }

    /// The PaymentIntent made for `payment_id`, if one reached Stripe.
    pub async fn find(&self, payment_id: &str) -> Result<Option<PaymentIntent>, ProviderError> {
        let is_it = |i: &PaymentIntent| {
            i.metadata.get("payment_id").map(String::as_str) == Some(payment_id)
        };
        let seen = self.walk(is_it).await?;
        Ok(seen.into_iter().find(|i| is_it(i)))
    }

    /// Succeeded PaymentIntents created in `[from_s, to_s)` (unix seconds).
    pub async fn succeeded_between(
        &self,
        from_s: i64,
        to_s: i64,
    ) -> Result<Vec<ProviderPayment>, ProviderError> {
        let seen = self.walk(|_| false).await?;
        Ok(seen
            .into_iter()
            .filter(|i| i.status == "succeeded" && i.created >= from_s && i.created < to_s)
            .map(|i| ProviderPayment {
                provider_ref: i.id.clone(),
                payment_id: i.metadata.get("payment_id").cloned(),
                amount_cents: i.amount,
            })
            .collect())
    }
}

/// What a PaymentIntent's status means for our payment.
pub fn outcome_of(intent: &PaymentIntent) -> ChargeOutcome {
    match intent.status.as_str() {
        "succeeded" => ChargeOutcome::Succeeded {
            provider_ref: intent.id.clone(),
        },
        "requires_action" | "requires_confirmation" => ChargeOutcome::RequiresAction {
            provider_ref: intent.id.clone(),
        },
        "processing" => ChargeOutcome::Pending {
            provider_ref: intent.id.clone(),
        },
        _ => {
            let error = intent.last_payment_error.clone().unwrap_or_default();
            ChargeOutcome::Declined {
                provider_ref: Some(intent.id.clone()),
                code: error
                    .decline_code
                    .or(error.code)
                    .unwrap_or_else(|| "payment_failed".into()),
                message: error
                    .message
                    .unwrap_or_else(|| "The payment failed.".into()),
            }
        }
    }
}

fn card_label(card: Option<&Card>) -> String {
    match card {
        Some(card) if !card.last4.is_empty() => format!("{} •••• {}", card.brand, card.last4),
        _ => "card".to_owned(),
    }
}

/// Ids go into paths; anything but id characters is refused by percent-encoding it.
pub(super) fn path_part(id: &str) -> String {
    form_urlencoded::byte_serialize(id.as_bytes()).collect()
}

async fn read<T: for<'de> Deserialize<'de>>(
    response: reqwest::Response,
) -> Result<T, ProviderError> {
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| ProviderError::Unreachable(e.to_string()))?;
    if status.is_success() {
        return serde_json::from_slice(&body)
            .map_err(|e| ProviderError::Bug(format!("reading Stripe's answer: {e}")));
    }
    let detail = serde_json::from_slice::<ErrorBody>(&body)
        .map(|b| b.error)
        .unwrap_or_default();
    let code = detail
        .decline_code
        .clone()
        .or(detail.code.clone())
        .unwrap_or_else(|| format!("http_{}", status.as_u16()));
    let message = detail
        .message
        .clone()
        .unwrap_or_else(|| format!("Stripe answered {status}"));
    if status.as_u16() == 402 {
        return Err(ProviderError::Declined {
            code,
            message,
            provider_ref: detail.payment_intent.map(|i| i.id),
        });
    }
    if status.is_server_error() || status.as_u16() == 429 {
        return Err(ProviderError::Unreachable(format!("{status}: {message}")));
    }
    Err(ProviderError::Refused {
        status: status.as_u16(),
        code,
        message,
    })
}

/// Why a webhook's signature was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `Stripe-Signature` header, or one without `t=` or `v1=`.
    #[error("the Stripe-Signature header is missing or malformed")]
    Malformed,
    /// The signed timestamp is further from now than the tolerance.
    #[error("the signature's timestamp is outside the tolerance")]
    Stale,
    /// No `v1` signature matches.
    #[error("no signature matches")]
    Mismatch,
}

/// Verifies a `Stripe-Signature` header (`t=…,v1=…[,v1=…]`): HMAC-SHA256 with `secret` over
/// `"{t}.{body}"`, any `v1` may match (secrets being rolled), compared in constant time,
/// and `t` within `tolerance_s` of `now_s`.
pub fn verify_signature(
    header: &str,
    body: &[u8],
    secret: &str,
    now_s: i64,
    tolerance_s: i64,
) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        let Some((key, value)) = part.trim().split_once('=') else {
            continue;
        };
        match key {
            "t" => timestamp = value.parse::<i64>().ok(),
            "v1" => signatures.push(value),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if now_s.abs_diff(timestamp) > tolerance_s.unsigned_abs() {
        return Err(SignatureError::Stale);
    }
    for signature in signatures {
        let Ok(expected) = hex::decode(signature) else {
            continue;
        };
        let mut mac =
            Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        // `verify_slice` compares in constant time.
        if mac.verify_slice(&expected).is_ok() {
            return Ok(());
        }
    }
    Err(SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &str, t: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    #[test]
    fn signatures() {
        let body = br#"{"id":"evt_1"}"#;
        let good = sign("whsec_a", 1_000, body);
        let other = sign("whsec_b", 1_000, body);
        let cases: Vec<(String, i64, Result<(), SignatureError>)> = vec![
            (format!("t=1000,v1={good}"), 1_000, Ok(())),
            (format!("t=1000,v1={other},v1={good}"), 1_000, Ok(())),
            (format!("t=1000, v1={good}, v0=abc"), 1_300, Ok(())),
            (
                format!("t=1000,v1={good}"),
                1_301,
                Err(SignatureError::Stale),
            ),
            (format!("t=1000,v1={good}"), 699, Err(SignatureError::Stale)),
            (
                format!("t=1000,v1={other}"),
                1_000,
                Err(SignatureError::Mismatch),
            ),
            (
                format!("t=1001,v1={good}"),
                1_000,
                Err(SignatureError::Mismatch),
            ),
            (
                "t=1000,v1=zz".to_owned(),
                1_000,
                Err(SignatureError::Mismatch),
            ),
            (format!("v1={good}"), 1_000, Err(SignatureError::Malformed)),
            ("t=1000".to_owned(), 1_000, Err(SignatureError::Malformed)),
            (String::new(), 1_000, Err(SignatureError::Malformed)),
        ];
        for (header, now, expected) in cases {
            assert_eq!(
                verify_signature(&header, body, "whsec_a", now, 300),
                expected,
                "{header} at {now}"
            );
        }
        // The body is signed: a changed body fails.
        assert_eq!(
            verify_signature(&format!("t=1000,v1={good}"), b"{}", "whsec_a", 1_000, 300),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn outcomes() {
        let intent = |status: &str| PaymentIntent {
            id: "pi_1".into(),
            status: status.into(),
            ..PaymentIntent::default()
        };
        assert!(matches!(
            outcome_of(&intent("succeeded")),
            ChargeOutcome::Succeeded { .. }
        ));
        assert!(matches!(
            outcome_of(&intent("requires_action")),
            ChargeOutcome::RequiresAction { .. }
        ));
        assert!(matches!(
            outcome_of(&intent("processing")),
            ChargeOutcome::Pending { .. }
        ));
        let mut failed = intent("requires_payment_method");
        failed.last_payment_error = Some(StripeErrorDetail {
            code: Some("card_declined".into()),
            decline_code: Some("insufficient_funds".into()),
            message: Some("Your card has insufficient funds.".into()),
            payment_intent: None,
        });
        match outcome_of(&failed) {
            ChargeOutcome::Declined { code, message, .. } => {
                assert_eq!(code, "insufficient_funds");
                assert_eq!(message, "Your card has insufficient funds.");
            }
            other => panic!("{other:?}"),
        }
    }
}
