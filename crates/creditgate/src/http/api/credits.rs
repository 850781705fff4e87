//! Credits (operator): grants and adjustments; balance and transfers (operator or the org).

use axum::extract::State;

use super::Path;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use creditgate_domain::ledger::{
    AccountId, AccountKind, GrantTerms, Operation, Origin, TransferKind, TransferRequest,
    GRANT_PRIORITY_DEFAULT, GRANT_PRIORITY_MAX,
};
use creditgate_domain::{Amount, Timestamp};
use serde::Deserialize;
use utoipa::ToSchema;

use super::idempotency::Idempotent;
use super::{org_for, rejection, text, ListQuery, Query};
use crate::app;
use crate::http::auth::Caller;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::json::{Money, NonZeroMoney, PositiveMoney, SignedMoney};
use crate::http::views::{BalanceView, ListView, TransferView};
use crate::state::AppState;
use creditgate_domain::ids;

/// Credits to add.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"amount": "25.00", "origin": "paid"}))]
pub struct CreateGrant {
    /// How much (positive).
    #[schema(value_type = PositiveMoney)]
    pub amount: Money,
    /// `paid` or `promotional` (promotional credits are spent first).
    #[schema(value_type = GrantOrigin)]
    pub origin: String,
    /// Unix seconds after which what is left expires: a time in the future (a past one is a
    /// 400), at most the largest second whose milliseconds fit in 64 bits.
    #[schema(minimum = 1, maximum = 9_223_372_036_854_775_i64)]
    pub expires_at: Option<i64>,
    /// Lower is spent first among credits of the same kind (0 to 1000, default 10).
    #[schema(maximum = 1000)]
    pub priority: Option<u32>,
    /// Free text (up to 200 characters, no control characters).
    #[serde(default)]
    #[schema(max_length = 200, pattern = r"^[^\x00-\x1F\x7F-\x9F]*$")]
    pub reference: String,
}

/// Where granted credits come from (for the document; the handler parses the string).
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum GrantOrigin {
    /// Paid for.
    Paid,
    /// Given away; spent first.
    Promotional,
}

/// A signed correction.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"amount": "-1.50", "reason": "refund of a failed call"}))]
pub struct CreateAdjustment {
    /// Positive adds credits, negative removes them (not zero). Removing more than the org's
    /// available balance is a 400 `insufficient_funds`.
    #[schema(value_type = NonZeroMoney)]
    pub amount: SignedMoney,
    /// Why (1 to 200 characters, no control characters).
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1F\x7F-\x9F]*$"
    )]
    pub reason: String,
}

async fn submit_transfer(
    state: &AppState,
    request: TransferRequest,
    param: &str,
) -> Result<TransferView, ApiError> {
    let org_id = if request.credit_account_id.as_str().starts_with("org_") {
        request.credit_account_id.clone()
    } else {
        request.debit_account_id.clone()
    };
    let outcome = state.writer().submit(Operation::Transfer(request)).await?;
    match outcome {
        Ok(receipt) => {
            let transfer = receipt
                .transfer
                .ok_or_else(|| ApiError::internal("transfer receipt without transfer"))?;
            Ok(TransferView::new(&transfer, org_id.as_str()))
        }
        Err(creditgate_domain::ledger::Rejection::InsufficientFunds) => Err(ApiError::invalid(
            param,
            "insufficient_funds",
            "The org's available balance cannot cover this.",
        )),
        Err(other) => Err(rejection(other, param)),
    }
}

/// Add credits to an org. Needs an `Idempotency-Key`.
#[utoipa::path(post, path = "/v1/orgs/{org_id}/grants", tag = "credits", params(("org_id" = String, Path, pattern = "^org_[A-Za-z0-9]{1,64}$"), ("Idempotency-Key" = String, Header, pattern = "^[!-~]{1,255}$")), request_body = CreateGrant,
    responses((status = 201, body = TransferView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_grant(
    State(state): State<AppState>,
    caller: Caller,
    Path(org_id): Path<String>,
    request: Idempotent<CreateGrant>,
) -> Result<Response, ApiError> {
    let org = org_for(&state, &caller, &org_id).await?;
    caller.require_operator()?;
    let key = request.require_key()?.to_owned();
    if let Some(replay) = request.replay(&state, &caller).await? {
        return Ok(replay);
    }
    let body = &request.body;
    if !body.amount.0.is_positive() {
        return Err(ApiError::invalid(
            "amount",
            "amount_must_be_positive",
            "amount must be positive.",
        ));
    }
    let origin = Origin::parse(&body.origin).ok_or_else(|| {
        ApiError::invalid(
            "origin",
            "parameter_invalid",
            "origin must be paid or promotional.",
        )
    })?;
    let priority = body.priority.unwrap_or(GRANT_PRIORITY_DEFAULT);
    if priority > GRANT_PRIORITY_MAX {
        return Err(ApiError::invalid(
            "priority",
            "parameter_invalid",
            format!("priority must be at most {GRANT_PRIORITY_MAX}."),
        ));
    }
    let expires_at = match body.expires_at {
        None => None,
        Some(seconds) => {
            let at = seconds
                .checked_mul(1000)
                .filter(|ms| *ms > state.now().unix_ms());
            Some(Timestamp::from_unix_ms(at.ok_or_else(|| {
                ApiError::invalid(
                    "expires_at",
                    "parameter_invalid",
                    "expires_at must be a future time in unix seconds.",
                )
            })?))
        }
    };
    text("reference", &body.reference, 0, 200)?;
    let source = match origin {
        Origin::Paid => AccountKind::PaymentsReceived,
        Origin::Promotional => AccountKind::PromotionalGrants,
    };
    let request_ledger = TransferRequest {
        id: ids::grant_transfer(&caller.idempotency_scope(), &key),
        debit_account_id: source.operator_account_id().expect("operator account"),
        credit_account_id: AccountId::new(org.id),
        amount: body.amount.0,
        kind: TransferKind::Grant,
        reference: body.reference.clone(),
        grant: Some(GrantTerms {
            origin,
            priority,
            expires_at,
        }),
    };
    let view = submit_transfer(&state, request_ledger, "amount").await?;
    request
        .respond(&state, &caller, StatusCode::CREATED, &view)
        .await
}

/// Correct an org's balance up or down, with a reason. Needs an `Idempotency-Key`.
#[utoipa::path(post, path = "/v1/orgs/{org_id}/adjustments", tag = "credits", params(("org_id" = String, Path, pattern = "^org_[A-Za-z0-9]{1,64}$"), ("Idempotency-Key" = String, Header, pattern = "^[!-~]{1,255}$")), request_body = CreateAdjustment,
    responses((status = 201, body = TransferView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_adjustment(
    State(state): State<AppState>,
    caller: Caller,
    Path(org_id): Path<String>,
    request: Idempotent<CreateAdjustment>,
) -> Result<Response, ApiError> {
    let org = org_for(&state, &caller, &org_id).await?;
    caller.require_operator()?;
    let key = request.require_key()?.to_owned();
    if let Some(replay) = request.replay(&state, &caller).await? {
        return Ok(replay);
    }
    let body = &request.body;
    text("reason", &body.reason, 1, 200)?;
    let amount = body.amount.0;
    if amount == Amount::ZERO {
        return Err(ApiError::invalid(
            "amount",
            "amount_must_not_be_zero",
            "amount must not be zero.",
        ));
    }
    let adjustments = AccountKind::Adjustments
        .operator_account_id()
        .expect("operator account");
    let org_account = AccountId::new(org.id);
    let id = ids::adjustment_transfer(&caller.idempotency_scope(), &key);
    let request_ledger = if amount.is_positive() {
        TransferRequest {
            id,
            debit_account_id: adjustments,
            credit_account_id: org_account,
            amount,
            kind: TransferKind::Adjustment,
            reference: body.reason.clone(),
            grant: Some(GrantTerms {
                origin: Origin::Paid,
                priority: GRANT_PRIORITY_DEFAULT,
                expires_at: None,
            }),
        }
    } else {
        let magnitude = Amount::ZERO.checked_sub(amount).ok_or_else(|| {
            ApiError::invalid("amount", "amount_overflow", "amount is too large.")
        })?;
        TransferRequest {
            id,
            debit_account_id: org_account,
            credit_account_id: adjustments,
            amount: magnitude,
            kind: TransferKind::Adjustment,
            reference: body.reason.clone(),
            grant: None,
        }
    };
    let view = submit_transfer(&state, request_ledger, "amount").await?;
    request
        .respond(&state, &caller, StatusCode::CREATED, &view)
        .await
}

/// An org's balance and access state.
#[utoipa::path(get, path = "/v1/orgs/{org_id}/balance", tag = "credits", params(("org_id" = String, Path, pattern = "^org_[A-Za-z0-9]{1,64}$")),
    responses((status = 200, body = BalanceView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_balance(
    State(state): State<AppState>,
    caller: Caller,
    Path(org_id): Path<String>,
) -> Result<Json<BalanceView>, ApiError> {
    let b = app::balance::balance(&state, &caller, &org_id).await?;
    Ok(Json(BalanceView::new(
        &b.org,
        &b.account,
        &state.config().currency,
        b.refused,
    )))
}

/// An org's ledger history, newest first.
#[utoipa::path(get, path = "/v1/orgs/{org_id}/transfers", tag = "credits", params(("org_id" = String, Path, pattern = "^org_[A-Za-z0-9]{1,64}$"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "Items per page (1 to 100, default 20)."),
        ("starting_after" = Option<String>, Query, pattern = "^[!-~]{1,256}$", description = "The id of the last transfer of the previous page: one of this org's (else a 400).")),
    responses((status = 200, body = ListView<TransferView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_transfers(
    State(state): State<AppState>,
    caller: Caller,
    Path(org_id): Path<String>,
    Query(query): Query<ListQuery>,
) -> Result<Json<ListView<TransferView>>, ApiError> {
    let limit = query.limit(&state)?;
    let after = query.starting_after.as_deref();
    let (org, page) = app::balance::transfers(&state, &caller, &org_id, limit, after).await?;
    Ok(Json(ListView::new(
        page.items
            .iter()
            .map(|t| TransferView::new(t, &org.id))
            .collect(),
        page.has_more,
    )))
}
