//! Payments: top-ups, auto-reload settings, payment reads, and the provider's webhook.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use creditgate_domain::member::Action;
use creditgate_domain::payment::{PaymentMethod, PaymentState};
use creditgate_domain::reload::{ReloadAmount, ReloadSettings};
use creditgate_store::api::Payment;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::idempotency::Idempotent;
use super::{path_id, ListQuery, Path, Query};
use crate::app;
use crate::app::charges::{self, PaymentError};
use crate::app::payments::{reload_amount, AutoReloadState, Consent, SetAutoReload, TopUp};
use crate::http::auth::Caller;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::json::{self, show, Cents, Money};
use crate::http::views::ListView;
use crate::providers::{self, stripe, Provider, ProviderError};
use crate::state::AppState;

/// A top-up to make.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"amount": "25.00", "method": "checkout"}))]
pub struct CreateTopUp {
    /// Whole cents within the deployment's top-up limits (else 400; 5.00 to 5000.00 by default).
    #[schema(value_type = Cents)]
    pub amount: Money,
    /// `checkout` (default: answers a page to pay on) or `saved_card` (charges the org's
    /// saved card now; a 400 when it has none).
    #[serde(default)]
    #[schema(value_type = Option<TopUpMethod>)]
    pub method: Option<String>,
    /// Where a checkout returns to (default: the org's billing page).
    #[schema(max_length = 2000)]
    pub return_url: Option<String>,
}

/// How a top-up is paid (for the document; the handler parses the string).
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum TopUpMethod {
    /// A hosted payment page.
    Checkout,
    /// The org's saved card, off-session.
    SavedCard,
}

/// A payment.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentView {
    /// `pay_…`.
    pub id: String,
    /// Always `payment`.
    pub object: &'static str,
    /// The org credited.
    pub org_id: String,
    /// `top_up` or `auto_reload`.
    pub kind: String,
    /// `checkout` or `saved_card`.
    pub method: String,
    /// `created`, `charging`, `requires_action`, `succeeded` or `failed`.
    pub state: String,
    /// Decimal string.
    pub amount: String,
    /// Currency code.
    pub currency: String,
    /// `sandbox` or `stripe`.
    pub provider: String,
    /// Where the customer pays or confirms (while `requires_action`).
    pub action_url: Option<String>,
    /// Why it failed: a stable code (`card_declined`, `insufficient_funds`, …).
    pub failure_code: Option<String>,
    /// Why it failed, for people.
    pub failure_message: Option<String>,
    /// The ledger credit (`txn_pay_…`), once succeeded.
    pub transfer_id: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

impl From<&Payment> for PaymentView {
    fn from(payment: &Payment) -> PaymentView {
        PaymentView {
            id: payment.id.clone(),
            object: "payment",
            org_id: payment.org_id.clone(),
            kind: payment.kind.as_str().to_owned(),
            method: payment.method.as_str().to_owned(),
            state: payment.state.as_str().to_owned(),
            amount: show(payment.amount),
            currency: payment.currency.clone(),
            provider: payment.provider.clone(),
            action_url: payment
                .action_url
                .clone()
                .filter(|_| payment.state == PaymentState::RequiresAction),
            failure_code: payment.failure_code.clone(),
            failure_message: payment.failure_message.clone(),
            transfer_id: payment.transfer_id.clone(),
            created_at: payment.created_at.unix_ms().div_euclid(1000),
            updated_at: payment.updated_at.unix_ms().div_euclid(1000),
        }
    }
}

impl From<PaymentError> for ApiError {
    fn from(error: PaymentError) -> ApiError {
        match error {
            PaymentError::Provider(ProviderError::Unreachable(cause)) => {
                tracing::warn!(%cause, "the payment provider is unreachable");
                ApiError::upstream(
                    StatusCode::BAD_GATEWAY,
                    "payment_provider_unavailable",
                    "The payment provider could not be reached; try again.",
                )
            }
            PaymentError::Provider(ProviderError::Declined { message, .. }) => {
                ApiError::invalid("payment_method", "card_declined", message)
            }
            PaymentError::Provider(ProviderError::Refused { code, message, .. }) => {
                tracing::warn!(%code, %message, "the payment provider refused a request");
                ApiError::invalid(
                    "payment_method",
                    "payment_method_invalid",
                    format!("The payment provider refused: {message}"),
                )
            }
            PaymentError::Write(error) => error.into(),
            other => ApiError::internal(other),
        }
    }
}

/// Add credits: open a checkout page, or charge the saved card. Needs an `Idempotency-Key`;
/// credits land only once the provider says the payment succeeded, exactly once.
#[utoipa::path(post, path = "/v1/orgs/{org_id}/top_ups", tag = "payments", params(("org_id" = String, Path, pattern = "^org_[A-Za-z0-9]{1,64}$"), ("Idempotency-Key" = String, Header, pattern = "^[!-~]{1,255}$")), request_body = CreateTopUp,
    responses((status = 201, body = PaymentView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 502, body = ErrorBody)))]
pub async fn create_top_up(
    State(state): State<AppState>,
    caller: Caller,
    Path(org_id): Path<String>,
    request: Idempotent<CreateTopUp>,
) -> Result<Response, ApiError> {
    app::org_for(&state, &caller, &org_id, Action::AddCredits).await?;
    let key = request.require_key()?.to_owned();
    if let Some(replay) = request.replay(&state, &caller).await? {
        return Ok(replay);
    }
    let body = &request.body;
    let method = match body.method.as_deref() {
        None => PaymentMethod::Checkout,
        Some(text) => PaymentMethod::parse(text).ok_or_else(|| {
            ApiError::invalid(
                "method",
                "parameter_invalid",
                "method must be checkout or saved_card.",
            )
        })?,
    };
    let top_up = TopUp {
        amount: body.amount.0,
        method,
        return_url: body.return_url.clone(),
    };
    let payment = app::payments::top_up(&state, &caller, &org_id, top_up, &key).await?;
    request
        .respond(
            &state,
            &caller,
            StatusCode::CREATED,
            &PaymentView::from(&payment),
        )
        .await
}

/// An org's payments, newest first.
#[utoipa::path(get, path = "/v1/orgs/{org_id}/payments", tag = "payments", params(("org_id" = String, Path, pattern = "^org_[A-Za-z0-9]{1,64}$"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "Items per page (1 to 100, default 20)."),
        ("starting_after" = Option<String>, Query, pattern = "^pay_[A-Za-z0-9]{1,64}$", description = "The id of the last payment of the previous page: one of this org's (else a 400).")),
    responses((status = 200, body = ListView<PaymentView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_payments(
    State(state): State<AppState>,
    caller: Caller,
    Path(org_id): Path<String>,
    Query(query): Query<ListQuery>,
) -> Result<Json<ListView<PaymentView>>, ApiError> {
    let org = app::org_for(&state, &caller, &org_id, Action::ViewPayments).await?;
    let limit = query.limit(&state)?;
    if let Some(after) = &query.starting_after {
        path_id("starting_after", "pay", after)?;
    }
    let page = state
        .store()
        .payments(&org.id, limit, query.starting_after.as_deref())
        .await?
        .ok_or_else(|| {
            ApiError::invalid(
                "starting_after",
                "parameter_invalid",
                "starting_after names no payment of this org.",
            )
        })?;
    Ok(Json(ListView::new(
        page.items.iter().map(PaymentView::from).collect(),
        page.has_more,
    )))
}

/// A payment.
#[utoipa::path(get, path = "/v1/payments/{payment_id}", tag = "payments", params(("payment_id" = String, Path, pattern = "^pay_[A-Za-z0-9]{1,64}$")),
    responses((status = 200, body = PaymentView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_payment(
    State(state): State<AppState>,
    caller: Caller,
    Path(payment_id): Path<String>,
) -> Result<Json<PaymentView>, ApiError> {
    path_id("payment_id", "pay", &payment_id)?;
    let not_found = || ApiError::not_found("payment_not_found", "No such payment.");
    let payment = state
        .store()
        .payment(&payment_id)
        .await?
        .ok_or_else(not_found)?;
    caller
        .require_org(&payment.org_id)
        .map_err(|_| not_found())?;
    crate::app::authorize(&caller, Action::ViewPayments)?;
    Ok(Json(PaymentView::from(&payment)))
}

/// Auto-reload settings to apply.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"enabled": true, "threshold": "10.00", "amount": "25.00", "monthly_limit": "200.00", "payment_method": "pm_card_visa", "consent": {"accepted_by": "ada@example.com", "text_version": "2026-11"}}))]
pub struct PutAutoReload {
    /// Whether the saved card is charged automatically.
    pub enabled: bool,
    /// A reload is made when the available balance reaches this (at or below).
    pub threshold: Money,
    /// A fixed amount per reload (give this or `target`).
    pub amount: Option<Money>,
    /// Reload up to this balance (give this or `amount`).
    pub target: Option<Money>,
    /// Most charged by auto-reload in one calendar month (UTC).
    pub monthly_limit: Money,
    /// A card to save and charge (a provider payment-method id; default: the saved card).
    #[schema(max_length = 255)]
    pub payment_method: Option<String>,
    /// Who agreed to the consent text, and which version (needed to enable).
    pub consent: Option<ConsentInput>,
}

/// [`PutAutoReload`] as the document shows it: `amount` or `target`, exactly one (the handler
/// reads the flat struct and answers 400 to both or neither).
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum PutAutoReloadForms {
    /// A fixed amount per reload.
    Amount(AutoReloadByAmount),
    /// Up to a target balance.
    Target(AutoReloadByTarget),
}

/// Auto-reload of a fixed amount (for the document).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct AutoReloadByAmount {
    /// Whether the saved card is charged automatically.
    pub enabled: bool,
    /// A reload is made when the available balance reaches this (at or below).
    pub threshold: Money,
    /// A fixed amount per reload, in whole cents within the top-up limits.
    #[schema(value_type = Cents)]
    pub amount: Money,
    /// Most charged by auto-reload in one calendar month (UTC).
    pub monthly_limit: Money,
    /// A card to save and charge (a provider payment-method id; default: the saved card).
    #[schema(max_length = 255)]
    pub payment_method: Option<String>,
    /// Who agreed to the consent text, and which version (needed to enable).
    pub consent: Option<ConsentInput>,
}

/// Auto-reload up to a target balance (for the document).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct AutoReloadByTarget {
    /// Whether the saved card is charged automatically.
    pub enabled: bool,
    /// A reload is made when the available balance reaches this (at or below).
    pub threshold: Money,
    /// Reload up to this balance (above `threshold`).
    pub target: Money,
    /// Most charged by auto-reload in one calendar month (UTC).
    pub monthly_limit: Money,
    /// A card to save and charge (a provider payment-method id; default: the saved card).
    #[schema(max_length = 255)]
    pub payment_method: Option<String>,
    /// Who agreed to the consent text, and which version (needed to enable).
    pub consent: Option<ConsentInput>,
}

/// Agreement to the auto-reload consent text.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentInput {
    /// Who agreed (an email or a name, 1 to 200 characters).
    #[schema(min_length = 1, max_length = 200)]
    pub accepted_by: String,
    /// The version of the text shown (must be the current one).
    #[schema(max_length = 64)]
    pub text_version: String,
}

/// An org's auto-reload settings and state.
#[derive(Debug, Serialize, ToSchema)]
pub struct AutoReloadView {
    /// Always `auto_reload`.
    pub object: &'static str,
    /// The org.
    pub org_id: String,
    /// Whether it is on.
    pub enabled: bool,
    /// Decimal string.
    pub threshold: String,
    /// A fixed amount per reload, or null.
    pub amount: Option<String>,
    /// A balance to reload up to, or null.
    pub target: Option<String>,
    /// Decimal string.
    pub monthly_limit: String,
    /// The saved card, if any.
    pub payment_method: Option<CardView>,
    /// The consent record.
    pub consent: ConsentView,
    /// Consecutive failed charges.
    pub failures: u32,
    /// After a failure: the next try (unix seconds).
    pub retry_at: Option<i64>,
    /// The last failure's message.
    pub last_failure: Option<String>,
    /// Why it turned itself off (`too_many_failures`), if it did.
    pub disabled_reason: Option<String>,
}

/// A saved card.
#[derive(Debug, Serialize, ToSchema)]
pub struct CardView {
    /// The provider's payment-method id.
    pub id: String,
    /// "visa •••• 4242".
    pub label: String,
}

/// Who agreed, when, to which text.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsentView {
    /// Who.
    pub accepted_by: String,
    /// Unix seconds.
    pub accepted_at: i64,
    /// The text's version.
    pub text_version: String,
}

fn auto_reload_view(current: &AutoReloadState) -> AutoReloadView {
    let (reload, profile) = (&current.reload, &current.profile);
    let (amount, target) = match reload.settings.amount {
        ReloadAmount::Fixed(amount) => (Some(show(amount)), None),
        ReloadAmount::Target(target) => (None, Some(show(target))),
    };
    AutoReloadView {
        object: "auto_reload",
        org_id: reload.org_id.clone(),
        enabled: reload.settings.enabled,
        threshold: show(reload.settings.threshold),
        amount,
        target,
        monthly_limit: show(reload.settings.monthly_limit),
        payment_method: profile.payment_method.clone().map(|id| CardView {
            id,
            label: profile.card_label.clone().unwrap_or_else(|| "card".into()),
        }),
        consent: ConsentView {
            accepted_by: reload.consent_by.clone(),
            accepted_at: reload.consent_at.unix_ms().div_euclid(1000),
            text_version: reload.consent_text_version.clone(),
        },
        failures: reload.failures,
        retry_at: reload.retry_at.map(|t| t.unix_ms().div_euclid(1000)),
        last_failure: reload.last_failure.clone(),
        disabled_reason: reload.disabled_reason.clone(),
    }
}

/// An org's auto-reload settings.
#[utoipa::path(get, path = "/v1/orgs/{org_id}/auto_reload", tag = "payments", params(("org_id" = String, Path, pattern = "^org_[A-Za-z0-9]{1,64}$")),
    responses((status = 200, body = AutoReloadView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_auto_reload(
    State(state): State<AppState>,
    caller: Caller,
    Path(org_id): Path<String>,
) -> Result<Json<AutoReloadView>, ApiError> {
    let current = app::payments::auto_reload(&state, &caller, &org_id)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(
                "auto_reload_not_found",
                "Auto-reload was never set up for this org.",
            )
        })?;
    Ok(Json(auto_reload_view(&current)))
}

/// Set an org's auto-reload: when the available balance reaches `threshold`, charge the
/// saved card `amount` (or up to `target`), at most `monthly_limit` a month. Enabling needs
/// the consent record and a card (else 400, as are a target not above threshold or a
/// monthly_limit below one reload). Evaluated at once.
#[utoipa::path(put, path = "/v1/orgs/{org_id}/auto_reload", tag = "payments", params(("org_id" = String, Path, pattern = "^org_[A-Za-z0-9]{1,64}$")), request_body = PutAutoReloadForms,
    responses((status = 200, body = AutoReloadView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 502, body = ErrorBody)))]
pub async fn put_auto_reload(
    State(state): State<AppState>,
    caller: Caller,
    Path(org_id): Path<String>,
    json::Body(body): json::Body<PutAutoReload>,
) -> Result<Json<AutoReloadView>, ApiError> {
    app::org_for(&state, &caller, &org_id, Action::ManageAutoReload).await?;
    let set = SetAutoReload {
        settings: ReloadSettings {
            enabled: body.enabled,
            threshold: body.threshold.0,
            amount: reload_amount(body.amount.map(|m| m.0), body.target.map(|m| m.0))?,
            monthly_limit: body.monthly_limit.0,
        },
        payment_method: body.payment_method,
        consent: body.consent.map(|c| Consent {
            accepted_by: c.accepted_by,
            text_version: c.text_version,
        }),
    };
    let current = app::payments::set_auto_reload(&state, &caller, &org_id, set).await?;
    Ok(Json(auto_reload_view(&current)))
}

/// The envelope of a Stripe event, as much as we read.
#[derive(Debug, Deserialize)]
struct StripeEvent {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    data: StripeEventData,
}

#[derive(Debug, Deserialize)]
struct StripeEventData {
    object: serde_json::Value,
}

/// What the webhook answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookReceived {
    /// Always true.
    pub received: bool,
    /// True when the event was handled before (nothing was done again).
    pub duplicate: bool,
}

/// Stripe's signed events (`Stripe-Signature`): payments succeeded or failed, checkouts
/// completed. Deduplicated by event id; reordering is harmless (a payment never moves
/// back from `succeeded`).
#[utoipa::path(post, path = "/v1/webhooks/stripe", tag = "payments", security(()),
    responses((status = 200, body = WebhookReceived), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn stripe_webhook(
    State(state): State<AppState>,
    request: axum::extract::Request,
) -> Result<Json<WebhookReceived>, ApiError> {
    let headers: HeaderMap = request.headers().clone();
    let body: Bytes = json::read(request, &state).await?;
    let Provider::Stripe(client) = state.provider() else {
        return Err(ApiError::not_found(
            "route_not_found",
            "Stripe is not the payment provider here.",
        ));
    };
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let now_s = state.now().unix_ms().div_euclid(1000);
    let tolerance_s = i64::try_from(state.config().stripe_webhook_tolerance_s).unwrap_or(300);
    stripe::verify_signature(
        signature,
        &body,
        &state.config().stripe_webhook_secret,
        now_s,
        tolerance_s,
    )
    .map_err(|e| ApiError::invalid("Stripe-Signature", "signature_invalid", e.to_string()))?;
    let event: StripeEvent = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request("event_invalid", format!("The event could not be read: {e}"))
    })?;
    let store = state.store();
    if !store
        .record_provider_event(&event.id, &event.kind, state.now())
        .await?
    {
        return Ok(Json(WebhookReceived {
            received: true,
            duplicate: true,
        }));
    }
    if let Err(error) = handle_stripe_event(&state, client, &event).await {
        // Forget it, so Stripe's retry of this event is handled anew.
        store.forget_provider_event(&event.id).await?;
        return Err(error.into());
    }
    Ok(Json(WebhookReceived {
        received: true,
        duplicate: false,
    }))
}

async fn handle_stripe_event(
    state: &AppState,
    client: &stripe::Client,
    event: &StripeEvent,
) -> Result<(), PaymentError> {
    let object = &event.data.object;
    let payment_id = object
        .pointer("/metadata/payment_id")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    let Some(payment) = (if payment_id.is_empty() {
        None
    } else {
        state.store().payment(payment_id).await?
    }) else {
        tracing::info!(event = %event.id, kind = %event.kind, "a Stripe event about no payment of ours; ignored");
        return Ok(());
    };
    let text = |pointer: &str| {
        object
            .pointer(pointer)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    let cents = object
        .pointer("/amount")
        .or_else(|| object.pointer("/amount_total"))
        .and_then(|v| v.as_i64());
    let amount_matches = cents == creditgate_domain::payment::to_cents(payment.amount);
    match event.kind.as_str() {
        "payment_intent.succeeded" | "checkout.session.completed" => {
            if event.kind == "checkout.session.completed"
                && text("/payment_status").as_deref() != Some("paid")
            {
                return Ok(());
            }
            if !amount_matches {
                tracing::error!(payment = %payment.id, ?cents, "a Stripe payment's amount differs from ours; not credited (see reconcile)");
                return Ok(());
            }
            let intent = if event.kind == "checkout.session.completed" {
                text("/payment_intent")
            } else {
                text("/id")
            };
            let provider_ref = intent
                .clone()
                .unwrap_or_else(|| text("/id").unwrap_or_default());
            charges::credit(state, &payment, &provider_ref).await?;
            if event.kind == "checkout.session.completed" {
                save_checkout_card(state, client, &payment.org_id, intent.as_deref()).await;
            }
        }
        "payment_intent.payment_failed" if payment.method == PaymentMethod::SavedCard => {
            let intent: stripe::PaymentIntent = serde_json::from_value(object.clone())
                .map_err(|e| ProviderError::Bug(e.to_string()))?;
            let outcome = stripe::outcome_of(&intent);
            if matches!(outcome, providers::ChargeOutcome::Declined { .. }) {
                charges::apply(state, &payment, outcome).await?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// A checkout saved the card for off-session use: it becomes the org's card. A failure
/// here is logged, never fatal (the payment is credited already).
async fn save_checkout_card(
    state: &AppState,
    client: &stripe::Client,
    org_id: &str,
    intent: Option<&str>,
) {
    let Some(intent) = intent else { return };
    let saved = async {
        let intent = client.payment_intent(intent).await?;
        let Some(method) = intent.payment_method else {
            return Ok::<(), PaymentError>(());
        };
        let label = client
            .card_label(&method)
            .await
            .unwrap_or_else(|_| "card".into());
        state
            .store()
            .set_payment_method(org_id, &method, &label, state.now())
            .await?;
        Ok(())
    };
    if let Err(error) = saved.await {
        tracing::warn!(%error, org = %org_id, "saving the checkout's card failed");
    }
}
