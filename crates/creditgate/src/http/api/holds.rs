//! Holds (an org's key, or the operator with `org_id`): place → settle / void; expire on TTL.
//!
//! A hold placed by model reserves the worst case at the price version in force now and
//! records that version; its settlement prices the actual usage at the same version.

use axum::extract::State;

use super::Path;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use creditgate_domain::ledger::HoldId;
use creditgate_domain::pricing::{self, Usage};
use serde::Deserialize;
use utoipa::ToSchema;

use super::idempotency::Idempotent;
use super::{path_id, rejection};
use crate::app::metering::{hold_ttl_ms, metered_org, place, price_at, settle, void, NewHold};
use crate::app::rate_limit::Names;
use crate::http::auth::Caller;
use crate::http::error::{add_headers, ApiError, ErrorBody};
use crate::http::json::{Money, PositiveMoney};
use crate::http::views::{HoldClosedView, HoldTerms, HoldView, TransferView};
use crate::state::AppState;
use creditgate_domain::ids;
use creditgate_domain::rate::Ask;

/// A hold to place: an `amount`, or a `model` with the most tokens the call may use.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"amount": "0.50", "ttl_s": 60}))]
pub struct PlaceHold {
    /// The org (operator token only; a key acts for its own org).
    pub org_id: Option<String>,
    /// Reserve exactly this much.
    pub amount: Option<Money>,
    /// Or reserve the worst case of a call to this model.
    pub model: Option<String>,
    /// Most input tokens (with `model`).
    #[schema(maximum = 1_000_000_000_000_u64)]
    pub max_input_tokens: Option<u64>,
    /// Most output tokens (with `model`; default: the price's `max_output_tokens`).
    #[schema(maximum = 1_000_000_000_000_u64)]
    pub max_output_tokens: Option<u64>,
    /// Most web searches the provider may run for the call (with `model`; default 0).
    #[schema(maximum = 1_000_000_u64)]
    pub max_web_search_requests: Option<u64>,
    /// Most web fetches the provider may run for the call (with `model`; default 0).
    #[schema(maximum = 1_000_000_u64)]
    pub max_web_fetch_requests: Option<u64>,
    /// Seconds until it expires (1 to 86400; default from the configuration).
    #[schema(minimum = 1, maximum = 86400)]
    pub ttl_s: Option<u64>,
}

/// [`PlaceHold`] as the document shows it: exactly one of its two forms (the handler reads
/// the flat struct and answers 400 to a mix, or to neither).
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum PlaceHoldForms {
    /// Reserve an amount.
    Amount(PlaceHoldByAmount),
    /// Reserve the worst case of a call to a model.
    Model(PlaceHoldByModel),
}

/// A hold of a fixed amount (for the document).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct PlaceHoldByAmount {
    /// The org: required with the operator token (a 400 without it); a key acts for its own org.
    #[schema(pattern = "^org_[A-Za-z0-9]{1,64}$")]
    pub org_id: Option<String>,
    /// Reserve exactly this much (positive).
    #[schema(value_type = PositiveMoney)]
    pub amount: Money,
    /// Seconds until it expires (1 to 86400; default from the configuration).
    #[schema(minimum = 1, maximum = 86400)]
    pub ttl_s: Option<u64>,
}

/// A hold of a call's worst case (for the document).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct PlaceHoldByModel {
    /// The org: required with the operator token (a 400 without it); a key acts for its own org.
    #[schema(pattern = "^org_[A-Za-z0-9]{1,64}$")]
    pub org_id: Option<String>,
    /// The model; it needs a price in force (else a 404).
    #[schema(pattern = "^[A-Za-z0-9._:@/-]{1,128}$")]
    pub model: String,
    /// Most input tokens.
    #[schema(maximum = 1_000_000_000_000_u64)]
    pub max_input_tokens: u64,
    /// Most output tokens (default: the price's `max_output_tokens`).
    #[schema(maximum = 1_000_000_000_000_u64)]
    pub max_output_tokens: Option<u64>,
    /// Most web searches the provider may run for the call (default 0).
    #[schema(maximum = 1_000_000_u64)]
    pub max_web_search_requests: Option<u64>,
    /// Most web fetches the provider may run for the call (default 0).
    #[schema(maximum = 1_000_000_u64)]
    pub max_web_fetch_requests: Option<u64>,
    /// Seconds until it expires (1 to 86400; default from the configuration).
    #[schema(minimum = 1, maximum = 86400)]
    pub ttl_s: Option<u64>,
}

/// Token counts of one call.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UsageBody {
    /// Plain input tokens.
    #[schema(maximum = 1_000_000_000_000_u64)]
    pub input_tokens: u64,
    /// Output tokens.
    #[schema(maximum = 1_000_000_000_000_u64)]
    pub output_tokens: u64,
    /// Tokens written to the prompt cache (the 5-minute cache, or one not named).
    #[serde(default)]
    #[schema(maximum = 1_000_000_000_000_u64)]
    pub cache_write_tokens: u64,
    /// Tokens written to the 1-hour prompt cache.
    #[serde(default)]
    #[schema(maximum = 1_000_000_000_000_u64)]
    pub cache_write_1h_tokens: u64,
    /// Tokens read from the prompt cache.
    #[serde(default)]
    #[schema(maximum = 1_000_000_000_000_u64)]
    pub cache_read_tokens: u64,
    /// Web searches the provider ran.
    #[serde(default)]
    #[schema(maximum = 1_000_000_u64)]
    pub web_search_requests: u64,
    /// Web fetches the provider ran.
    #[serde(default)]
    #[schema(maximum = 1_000_000_u64)]
    pub web_fetch_requests: u64,
}

impl UsageBody {
    /// As the pricing sees it.
    pub fn usage(&self) -> Usage {
        Usage {
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            cache_write_tokens: self.cache_write_tokens,
            cache_write_1h_tokens: self.cache_write_1h_tokens,
            cache_read_tokens: self.cache_read_tokens,
            web_search_requests: self.web_search_requests,
            web_fetch_requests: self.web_fetch_requests,
        }
    }

    /// A 400 naming the first count out of range.
    pub fn check(&self, prefix: &str) -> Result<(), ApiError> {
        for (name, value) in [
            ("input_tokens", self.input_tokens),
            ("output_tokens", self.output_tokens),
            ("cache_write_tokens", self.cache_write_tokens),
            ("cache_write_1h_tokens", self.cache_write_1h_tokens),
            ("cache_read_tokens", self.cache_read_tokens),
        ] {
            tokens(&format!("{prefix}{name}"), Some(value))?;
        }
        for (name, value) in [
            ("web_search_requests", self.web_search_requests),
            ("web_fetch_requests", self.web_fetch_requests),
        ] {
            tool_requests(&format!("{prefix}{name}"), Some(value))?;
        }
        Ok(())
    }
}

/// Settle a hold for what the call used: `usage` (priced at the hold's price version) or an
/// `amount`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"amount": "0.25"}))]
pub struct SettleHold {
    /// What the call used.
    pub usage: Option<UsageBody>,
    /// Or the cost itself.
    pub amount: Option<Money>,
}

/// [`SettleHold`] as the document shows it: `usage` or `amount`, exactly one (the handler
/// reads the flat struct and answers 400 to both or neither).
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum SettleHoldForms {
    /// Settle for the usage.
    Usage(SettleByUsage),
    /// Settle for an amount.
    Amount(SettleByAmount),
}

/// Settle for what the call used (for the document).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct SettleByUsage {
    /// What the call used, at the hold's price version (a hold placed by amount: a 400).
    pub usage: UsageBody,
}

/// Settle for the cost itself (for the document).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct SettleByAmount {
    /// The cost.
    pub amount: Money,
}

/// Nothing.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VoidHold {}

/// `value`, or a 400 naming `param` when it is above `max`.
fn at_most(param: &str, value: Option<u64>, max: u64) -> Result<Option<u64>, ApiError> {
    match value {
        Some(v) if v > max => Err(ApiError::invalid(
            param,
            "parameter_invalid",
            format!("{param} must be at most {max}."),
        )),
        other => Ok(other),
    }
}

/// A token count, at most [`pricing::TOKENS_MAX`].
fn tokens(param: &str, value: Option<u64>) -> Result<Option<u64>, ApiError> {
    at_most(param, value, pricing::TOKENS_MAX)
}

/// A server-tool request count, at most [`pricing::TOOL_REQUESTS_MAX`].
fn tool_requests(param: &str, value: Option<u64>) -> Result<Option<u64>, ApiError> {
    at_most(param, value, pricing::TOOL_REQUESTS_MAX)
}

/// Reserve credits for a call. 402 when the org cannot cover it or is suspended.
#[utoipa::path(post, path = "/v1/holds", tag = "metering", params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$")), request_body = PlaceHoldForms,
    responses((status = 201, body = HoldView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 402, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 429, body = ErrorBody, description = "A rate limit of the org or the key: nothing held; retry-after says when")))]
pub async fn place_hold(
    State(state): State<AppState>,
    caller: Caller,
    request: Idempotent<PlaceHold>,
) -> Result<Response, ApiError> {
    let body = &request.body;
    if let Some(org_id) = &body.org_id {
        path_id("org_id", "org", org_id)?;
    }
    let org_id = caller.metering_org(body.org_id.as_deref())?;
    if let Some(replay) = request.replay(&state, &caller).await? {
        return Ok(replay);
    }
    let ttl_ms = hold_ttl_ms(&state, body.ttl_s)?;
    let max_input_tokens = tokens("max_input_tokens", body.max_input_tokens)?;
    let max_output_tokens = tokens("max_output_tokens", body.max_output_tokens)?;
    let max_web_search_requests =
        tool_requests("max_web_search_requests", body.max_web_search_requests)?;
    let max_web_fetch_requests =
        tool_requests("max_web_fetch_requests", body.max_web_fetch_requests)?;
    let now = state.now();
    let mut terms = HoldTerms {
        key_id: caller.key_id().map(str::to_owned),
        ..HoldTerms::default()
    };
    let mut ask = Ask::default();
    let amount = match (&body.amount, &body.model) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "amount",
                "parameter_invalid",
                "Give amount or model, not both.",
            ))
        }
        (None, None) => {
            return Err(ApiError::invalid(
                "amount",
                "parameter_missing",
                "Give amount, or model with max_input_tokens.",
            ))
        }
        (Some(amount), None) => {
            if max_input_tokens.is_some()
                || max_output_tokens.is_some()
                || max_web_search_requests.is_some()
                || max_web_fetch_requests.is_some()
            {
                return Err(ApiError::invalid(
                    "max_input_tokens",
                    "parameter_invalid",
                    "Token limits go with model, not amount.",
                ));
            }
            amount.0
        }
        (None, Some(model)) => {
            let price = price_at(&state, model, now, "model").await?;
            let input = max_input_tokens.ok_or_else(|| {
                ApiError::invalid(
                    "max_input_tokens",
                    "parameter_missing",
                    "max_input_tokens is required with model.",
                )
            })?;
            let output = max_output_tokens.unwrap_or(price.max_output_tokens);
            ask = Ask {
                input_tokens: input,
                output_tokens: output,
            };
            terms.model = Some(model.clone());
            terms.price_id = Some(price.id.clone());
            let bound = pricing::UsageBound {
                input_tokens: input,
                output_tokens: output,
                web_search_requests: max_web_search_requests.unwrap_or(0),
                web_fetch_requests: max_web_fetch_requests.unwrap_or(0),
            };
            pricing::worst_case(&price.prices, &bound).map_err(|e| {
                ApiError::invalid("max_input_tokens", "amount_overflow", e.to_string())
            })?
        }
    };
    if !amount.is_positive() {
        return Err(ApiError::invalid(
            "amount",
            "amount_must_be_positive",
            "amount must be positive.",
        ));
    }
    let org = metered_org(&state, &caller, &org_id).await?;
    let hold_id = match &request.key {
        Some(key) => ids::hold(&caller.idempotency_scope(), key).to_string(),
        None => {
            // The request's id rides in the reference, so a refusal that turns access off
            // names it; not behind an Idempotency-Key, whose retries must repeat the
            // reference exactly.
            terms.request_id = crate::http::error::current_request_id();
            state.new_id("hold")
        }
    };
    let hold = NewHold {
        id: HoldId::new(hold_id),
        amount,
        terms: &terms,
        ttl_ms,
        ask,
    };
    let placed = place(&state, &caller, &org, hold, Names::OpenAi, now).await?;
    let view = HoldView::from(&placed.hold);
    let mut answer = request
        .respond(&state, &caller, StatusCode::CREATED, &view)
        .await?;
    add_headers(&mut answer, Some(&placed.rate_headers));
    Ok(answer)
}

/// The hold, if it exists and the caller may see it (else 404, for every tenant alike).
async fn hold_for(
    state: &AppState,
    caller: &Caller,
    hold_id: &str,
) -> Result<creditgate_domain::ledger::Hold, ApiError> {
    path_id("hold_id", "hold", hold_id)?;
    let hold = state
        .store()
        .hold(hold_id)
        .await?
        .ok_or_else(|| ApiError::not_found("hold_not_found", "No such hold."))?;
    caller
        .require_org(hold.debit_account_id.as_str())
        .map_err(|_| ApiError::not_found("hold_not_found", "No such hold."))?;
    Ok(hold)
}

/// Get a hold.
#[utoipa::path(get, path = "/v1/holds/{hold_id}", tag = "metering", params(("hold_id" = String, Path, pattern = "^hold_[A-Za-z0-9]{1,64}$")),
    responses((status = 200, body = HoldView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_hold(
    State(state): State<AppState>,
    caller: Caller,
    Path(hold_id): Path<String>,
) -> Result<Json<HoldView>, ApiError> {
    Ok(Json(HoldView::from(
        &hold_for(&state, &caller, &hold_id).await?,
    )))
}

async fn closed(
    state: &AppState,
    receipt: creditgate_domain::ledger::Receipt,
    hold_id: &str,
) -> Result<HoldClosedView, ApiError> {
    let hold = match receipt.hold {
        Some(hold) => hold,
        None => state
            .store()
            .hold(hold_id)
            .await?
            .ok_or_else(|| ApiError::internal("closed hold not found"))?,
    };
    let org_id = hold.debit_account_id.as_str().to_owned();
    Ok(HoldClosedView {
        hold: HoldView::from(&hold),
        transfer: receipt
            .transfer
            .as_ref()
            .map(|t| TransferView::new(t, &org_id)),
    })
}

/// Settle a hold for the call's actual usage or cost (more than the hold is charged too:
/// usage that happened is always recorded).
#[utoipa::path(post, path = "/v1/holds/{hold_id}/settle", tag = "metering", params(("hold_id" = String, Path, pattern = "^hold_[A-Za-z0-9]{1,64}$"), ("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$")), request_body = SettleHoldForms,
    responses((status = 200, body = HoldClosedView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn settle_hold(
    State(state): State<AppState>,
    caller: Caller,
    Path(hold_id): Path<String>,
    request: Idempotent<SettleHold>,
) -> Result<Response, ApiError> {
    let hold = hold_for(&state, &caller, &hold_id).await?;
    if let Some(replay) = request.replay(&state, &caller).await? {
        return Ok(replay);
    }
    let amount = match (&request.body.usage, &request.body.amount) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "amount",
                "parameter_invalid",
                "Give usage or amount, not both.",
            ))
        }
        (None, None) => {
            return Err(ApiError::invalid(
                "usage",
                "parameter_missing",
                "Give usage or amount.",
            ))
        }
        (None, Some(amount)) => amount.0,
        (Some(usage), None) => {
            let terms = HoldTerms::decode(&hold.reference);
            let price_id = terms.price_id.ok_or_else(|| {
                ApiError::invalid(
                    "usage",
                    "parameter_invalid",
                    "This hold was placed by amount: settle it with amount.",
                )
            })?;
            let price = state
                .store()
                .price_version(&price_id)
                .await?
                .ok_or_else(|| ApiError::internal(format!("price {price_id} of a hold is gone")))?;
            usage.check("usage.")?;
            pricing::cost(&price.prices, &usage.usage())
                .map_err(|e| ApiError::invalid("usage", "amount_overflow", e.to_string()))?
        }
    };
    match settle(&state, &hold, amount).await? {
        Ok(receipt) => {
            let view = closed(&state, receipt, &hold_id).await?;
            request
                .respond(&state, &caller, StatusCode::OK, &view)
                .await
        }
        Err(other) => Err(rejection(other, "amount")),
    }
}

/// Release a hold without charging.
#[utoipa::path(post, path = "/v1/holds/{hold_id}/void", tag = "metering", params(("hold_id" = String, Path, pattern = "^hold_[A-Za-z0-9]{1,64}$")), request_body(content = Option<VoidHold>),
    responses((status = 200, body = HoldClosedView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn void_hold(
    State(state): State<AppState>,
    caller: Caller,
    Path(hold_id): Path<String>,
    request: Idempotent<Option<VoidHold>>,
) -> Result<Response, ApiError> {
    let hold = hold_for(&state, &caller, &hold_id).await?;
    if let Some(replay) = request.replay(&state, &caller).await? {
        return Ok(replay);
    }
    match void(&state, &hold).await? {
        Ok(receipt) => {
            let view = closed(&state, receipt, &hold_id).await?;
            request
                .respond(&state, &caller, StatusCode::OK, &view)
                .await
        }
        Err(other) => Err(rejection(other, "hold_id")),
    }
}
