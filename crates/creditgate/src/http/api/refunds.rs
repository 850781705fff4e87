//! Refunds by the operator: `POST /v1/payments/{payment_id}/refunds` (with an
//! `Idempotency-Key`) and `GET` of the same path. Thin adapters over [`crate::app::refunds`].

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use creditgate_store::api::Refund;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::idempotency::Idempotent;
use super::Path;
use crate::app;
use crate::app::refunds::NewRefund;
use crate::http::auth::Caller;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::json::{show, Cents, Money};
use crate::http::views::ListView;
use crate::state::AppState;

/// A refund to make.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"amount": "12.50", "reason": "bought twice by mistake"}))]
pub struct CreateRefund {
    /// Whole cents, more than zero, at most the payment's unspent credits (else 409
    /// `refund_exceeds_unspent`); default: everything still unspent.
    #[serde(default)]
    #[schema(value_type = Option<Cents>)]
    pub amount: Option<Money>,
    /// Why, shown in the receipt email (1 to 500 characters, no control characters).
    #[serde(default)]
    #[schema(min_length = 1, max_length = 500, pattern = "^[^\\x00-\\x1f\\x7f]*$")]
    pub reason: Option<String>,
}

/// A refund.
#[derive(Debug, Serialize, ToSchema)]
pub struct RefundView {
    /// `rfd_…`.
    pub id: String,
    /// The refunded payment.
    pub payment_id: String,
    /// The payment's org.
    pub org_id: String,
    /// `created`, `requesting` (the provider is asked; the payments worker finishes it),
    /// `succeeded` (money back, credits taken back) or `failed` (the provider refused).
    pub state: String,
    /// How much goes back.
    #[schema(value_type = String)]
    pub amount: String,
    /// Why.
    pub reason: Option<String>,
    /// `sandbox` or `stripe`.
    pub provider: String,
    /// The provider's refund (`re_…`).
    pub provider_ref: Option<String>,
    /// Why the provider refused: a stable code.
    pub failure_code: Option<String>,
    /// Why the provider refused: for people.
    pub failure_message: Option<String>,
    /// The ledger's refund transfer, once succeeded.
    pub transfer_id: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

impl From<&Refund> for RefundView {
    fn from(refund: &Refund) -> RefundView {
        RefundView {
            id: refund.id.clone(),
            payment_id: refund.payment_id.clone(),
            org_id: refund.org_id.clone(),
            state: refund.state.as_str().to_owned(),
            amount: show(refund.amount),
            reason: refund.reason.clone(),
            provider: refund.provider.clone(),
            provider_ref: refund.provider_ref.clone(),
            failure_code: refund.failure_code.clone(),
            failure_message: refund.failure_message.clone(),
            transfer_id: refund.transfer_id.clone(),
            created_at: refund.created_at.unix_ms().div_euclid(1000),
            updated_at: refund.updated_at.unix_ms().div_euclid(1000),
        }
    }
}

/// Refund a succeeded payment (a top-up or an auto-reload), whole or in part, from the
/// credits it bought that are still unspent (the operator only; needs an `Idempotency-Key`).
/// The provider gives the money back first; then the credits leave the org's balance,
/// exactly once, and a receipt is emailed.
#[utoipa::path(post, path = "/v1/payments/{payment_id}/refunds", tag = "payments", params(("payment_id" = String, Path, pattern = "^pay_[A-Za-z0-9]{1,64}$"), ("Idempotency-Key" = String, Header, pattern = "^[!-~]{1,255}$")), request_body = CreateRefund,
    responses((status = 201, body = RefundView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_refund(
    State(state): State<AppState>,
    caller: Caller,
    Path(payment_id): Path<String>,
    request: Idempotent<CreateRefund>,
) -> Result<Response, ApiError> {
    caller.require_operator()?;
    let key = request.require_key()?.to_owned();
    if let Some(replay) = request.replay(&state, &caller).await? {
        return Ok(replay);
    }
    let new = NewRefund {
        amount: request.body.amount.map(|amount| amount.0),
        reason: request.body.reason.clone(),
    };
    let refund = app::refunds::create(&state, &caller, &payment_id, new, &key).await?;
    request
        .respond(
            &state,
            &caller,
            StatusCode::CREATED,
            &RefundView::from(&refund),
        )
        .await
}

/// A payment's refunds, oldest first (the operator only).
#[utoipa::path(get, path = "/v1/payments/{payment_id}/refunds", tag = "payments", params(("payment_id" = String, Path, pattern = "^pay_[A-Za-z0-9]{1,64}$")),
    responses((status = 200, body = ListView<RefundView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_refunds(
    State(state): State<AppState>,
    caller: Caller,
    Path(payment_id): Path<String>,
) -> Result<Json<ListView<RefundView>>, ApiError> {
    let refunds = app::refunds::list(&state, &caller, &payment_id).await?;
    let data = refunds.iter().map(RefundView::from).collect();
    Ok(Json(ListView::new(data, false)))
}
