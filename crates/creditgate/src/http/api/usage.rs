//! Usage events in batches: each priced and recorded exactly once (its ledger id is derived
//! from the org and the event id), never dropped (recorded even below the floor, the excess
//! reported as overspend), with one result per event.

use axum::extract::State;
use axum::Json;
use creditgate_domain::ledger::{AccountId, AccountKind, Operation, Status, UsageRequest};
use creditgate_domain::pricing;
use creditgate_domain::{Amount, Timestamp};
use serde::Deserialize;
use utoipa::ToSchema;

use super::holds::UsageBody;
use super::path_id;
use crate::app::metering::price_at;
use crate::http::auth::Caller;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::json::{show, Body};
use crate::http::views::{nonzero, HoldTerms, UsageBatchView, UsageErrorView, UsageResultView};
use crate::metrics;
use crate::state::AppState;
use creditgate_domain::ids;

/// One metered call.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UsageEvent {
    /// The caller's id for the event (1 to 128 printable characters): a repeat is recorded once.
    #[schema(pattern = "^[!-~]{1,128}$")]
    pub id: String,
    /// The model called; it needs a price in force at `timestamp`.
    #[schema(pattern = "^[A-Za-z0-9._:@/-]{1,128}$")]
    pub model: String,
    /// What it used.
    pub usage: UsageBody,
    /// The key it was made with (default: the calling key).
    #[schema(pattern = "^key_[A-Za-z0-9]{1,64}$")]
    pub key_id: Option<String>,
    /// Unix seconds when it happened (default: now); its price is the one in force then.
    #[schema(minimum = 0, maximum = 9_223_372_036_854_775_i64)]
    pub timestamp: Option<i64>,
}

/// A batch of usage events.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordUsage {
    /// The org: required with the operator token (a 400 without it); a key records for its own.
    #[schema(pattern = "^org_[A-Za-z0-9]{1,64}$")]
    pub org_id: Option<String>,
    /// The events (1 to the configured maximum, 1000 by default).
    #[schema(min_items = 1, max_items = 1000)]
    pub events: Vec<UsageEvent>,
}

/// Record a batch of usage events: one result per event, in order.
#[utoipa::path(post, path = "/v1/usage", tag = "metering", request_body = RecordUsage,
    responses((status = 200, body = UsageBatchView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn record_usage(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<RecordUsage>,
) -> Result<Json<UsageBatchView>, ApiError> {
    if let Some(org_id) = &body.org_id {
        path_id("org_id", "org", org_id)?;
    }
    let org_id = caller.metering_org(body.org_id.as_deref())?;
    let max = state.config().usage_events_max;
    if body.events.is_empty() || body.events.len() > max {
        return Err(ApiError::invalid(
            "events",
            "parameter_invalid",
            format!("events must hold 1 to {max} events."),
        ));
    }
    if matches!(caller, Caller::Operator) && state.store().org(&org_id).await?.is_none() {
        return Err(ApiError::not_found("org_not_found", "No such org."));
    }
    let now = state.now();
    let mut results: Vec<Option<UsageResultView>> = Vec::with_capacity(body.events.len());
    let mut operations = Vec::new();
    let mut positions = Vec::new();
    for (index, event) in body.events.iter().enumerate() {
        match usage_operation(&state, &caller, &org_id, event, index, now).await? {
            Ok(operation) => {
                positions.push(index);
                operations.push(operation);
                results.push(None);
            }
            Err(error) => results.push(Some(error)),
        }
    }
    let outcomes = state.writer().submit_many(operations).await?;
    for (index, outcome) in positions.into_iter().zip(outcomes) {
        let id = body.events[index].id.clone();
        results[index] = Some(match outcome {
            Ok(receipt) => {
                let transfer = receipt.transfer;
                if receipt.status == Status::Created {
                    metrics::overspend(transfer.as_ref().map_or(0, |t| t.overspend.micros()));
                }
                UsageResultView {
                    id,
                    status: if receipt.status == Status::Created {
                        "created"
                    } else {
                        "exists"
                    }
                    .into(),
                    amount: Some(
                        transfer
                            .as_ref()
                            .map_or_else(|| show(Amount::ZERO), |t| show(t.amount)),
                    ),
                    overspend: transfer.as_ref().and_then(|t| nonzero(t.overspend)),
                    transfer_id: transfer.map(|t| t.id.as_str().to_owned()),
                    error: None,
                }
            }
            Err(rejection) => rejected(id, rejection.code(), rejection.to_string(), None),
        });
    }
    Ok(Json(UsageBatchView {
        object: "list",
        data: results
            .into_iter()
            .map(|r| r.expect("every event has a result"))
            .collect(),
    }))
}

fn rejected(id: String, code: &str, message: String, param: Option<String>) -> UsageResultView {
    UsageResultView {
        id,
        status: "rejected".into(),
        transfer_id: None,
        amount: None,
        overspend: None,
        error: Some(UsageErrorView {
            code: code.into(),
            message,
            param,
        }),
    }
}

/// The ledger operation of one event, or its rejection (which fails only this event).
async fn usage_operation(
    state: &AppState,
    caller: &Caller,
    org_id: &str,
    event: &UsageEvent,
    index: usize,
    now: Timestamp,
) -> Result<Result<Operation, UsageResultView>, ApiError> {
    let param = |field: &str| format!("events[{index}].{field}");
    let reject = |code: &str, field: &str, message: String| {
        Ok(Err(rejected(
            event.id.clone(),
            code,
            message,
            Some(param(field)),
        )))
    };
    let id_ok = !event.id.is_empty()
        && event.id.len() <= 128
        && event.id.bytes().all(|b| b.is_ascii_graphic());
    if !id_ok {
        return reject(
            "parameter_invalid",
            "id",
            "id must be 1 to 128 printable characters.".into(),
        );
    }
    let key_id = match (&event.key_id, caller) {
        (None, caller) => caller.key_id().map(str::to_owned),
        (Some(key_id), Caller::Key { key, .. }) if *key_id == key.id => Some(key_id.clone()),
        (Some(key_id), _) => {
            if !crate::ids::is_valid("key", key_id) {
                return reject(
                    "parameter_invalid",
                    "key_id",
                    "key_id must look like key_….".into(),
                );
            }
            match state.store().key(key_id).await? {
                Some(key) if key.org_id == org_id => Some(key.id),
                _ => return reject("key_not_found", "key_id", "No such key in this org.".into()),
            }
        }
    };
    let at = match event.timestamp {
        None => now,
        Some(seconds) => match seconds.checked_mul(1000).filter(|ms| *ms >= 0) {
            Some(ms) => Timestamp::from_unix_ms(ms),
            None => {
                return reject(
                    "parameter_invalid",
                    "timestamp",
                    "timestamp must be unix seconds.".into(),
                )
            }
        },
    };
    let price = match price_at(state, &event.model, at, "model").await {
        Ok(price) => price,
        Err(error) => return reject(error.code, "model", error.message),
    };
    let usage = event.usage.usage();
    let amount = match pricing::cost(&price.prices, &usage) {
        Ok(amount) => amount,
        Err(error) => return reject("parameter_invalid", "usage", error.to_string()),
    };
    let terms = HoldTerms {
        model: Some(event.model.clone()),
        price_id: Some(price.id),
        key_id,
        request_id: None,
        node_id: None,
    };
    Ok(Ok(Operation::RecordUsage(UsageRequest {
        id: ids::usage_transfer(org_id, &event.id),
        debit_account_id: AccountId::new(org_id.to_owned()),
        credit_account_id: AccountKind::UsageRevenue
            .operator_account_id()
            .expect("operator account"),
        amount,
        reference: terms.encode(),
    })))
}
