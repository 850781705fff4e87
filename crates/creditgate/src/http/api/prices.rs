//! The price book (operator writes; anyone authenticated reads).

use axum::extract::State;

use super::Path;
use axum::http::StatusCode;
use axum::Json;
use creditgate_domain::pricing::{
    is_valid_model, LongInput, PriceVersion, TokenPrices, TokenRates, TOKENS_MAX,
};
use creditgate_domain::{Amount, Timestamp};
use serde::Deserialize;
use utoipa::ToSchema;

use super::Query;
use crate::http::auth::Caller;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::json::{Body, Money};
use crate::http::views::{ListView, PriceView};
use crate::state::AppState;

/// Output tokens a hold assumes when neither the request nor the price says.
pub const MAX_OUTPUT_TOKENS_DEFAULT: u64 = 4_096;

/// A new version of a model's prices, per million tokens.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"input": "3.00", "output": "15.00", "cache_write": "3.75",
    "cache_write_1h": "6.00", "cache_read": "0.30", "web_search_request": "0.01",
    "long_input": {"above_input_tokens": 200000, "input": "6.00", "output": "22.50",
        "cache_write": "7.50", "cache_write_1h": "12.00", "cache_read": "0.60"}}))]
pub struct SetPrice {
    /// Per million input tokens.
    pub input: Money,
    /// Per million output tokens.
    pub output: Money,
    /// Per million tokens written to the 5-minute prompt cache (default: the input price).
    pub cache_write: Option<Money>,
    /// Per million tokens written to the 1-hour prompt cache (default: `cache_write`).
    pub cache_write_1h: Option<Money>,
    /// Per million cache-read tokens (default: the input price).
    pub cache_read: Option<Money>,
    /// Per call (default 0).
    pub request_fee: Option<Money>,
    /// Per web search the provider runs for a call (default 0).
    pub web_search_request: Option<Money>,
    /// Per web fetch the provider runs for a call (default 0).
    pub web_fetch_request: Option<Money>,
    /// Other rates for every token of a call whose input (cache included) is above
    /// `above_input_tokens` (default: none).
    pub long_input: Option<SetLongInput>,
    /// Output tokens a hold assumes when its request does not say (default 4096).
    #[schema(minimum = 1, maximum = 1_000_000_000_000_u64)]
    pub max_output_tokens: Option<u64>,
    /// Unix seconds from which it is in force (default: now); at most the largest second whose
    /// milliseconds fit in 64 bits.
    #[schema(minimum = 0, maximum = 9_223_372_036_854_775_i64)]
    pub effective_at: Option<i64>,
}

/// Token rates for calls with a large input, per million tokens.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetLongInput {
    /// A call whose input tokens (plain, cache writes and reads) are above this is priced at
    /// these rates, all its tokens.
    #[schema(minimum = 1, maximum = 1_000_000_000_000_u64)]
    pub above_input_tokens: u64,
    /// Per million input tokens.
    pub input: Money,
    /// Per million output tokens.
    pub output: Money,
    /// Per million 5-minute cache writes (default: this `input`).
    pub cache_write: Option<Money>,
    /// Per million 1-hour cache writes (default: this `cache_write`).
    pub cache_write_1h: Option<Money>,
    /// Per million cache reads (default: this `input`).
    pub cache_read: Option<Money>,
}

/// The long-input rates given, checked.
fn long_input(given: Option<SetLongInput>) -> Result<Option<LongInput>, ApiError> {
    Ok(match given {
        None => None,
        Some(long) if long.above_input_tokens == 0 || long.above_input_tokens > TOKENS_MAX => {
            return Err(ApiError::invalid(
                "long_input.above_input_tokens",
                "parameter_invalid",
                format!("long_input.above_input_tokens must be 1 to {TOKENS_MAX}."),
            ))
        }
        Some(long) => Some(LongInput {
            above_input_tokens: long.above_input_tokens,
            rates: rates(
                long.input,
                long.output,
                long.cache_write,
                long.cache_write_1h,
                long.cache_read,
            ),
        }),
    })
}

/// The rates `input`, `output` and the optional cache rates stand for (see [`SetPrice`]).
fn rates(
    input: Money,
    output: Money,
    cache_write: Option<Money>,
    cache_write_1h: Option<Money>,
    cache_read: Option<Money>,
) -> TokenRates {
    let cache_write = cache_write.map_or(input.0, |m| m.0);
    TokenRates {
        input: input.0,
        output: output.0,
        cache_write,
        cache_write_1h: cache_write_1h.map_or(cache_write, |m| m.0),
        cache_read: cache_read.map_or(input.0, |m| m.0),
    }
}

/// Add a version of a model's prices. Holds placed before it takes effect settle at the
/// version they were placed under.
#[utoipa::path(put, path = "/v1/prices/{model}", tag = "prices", params(("model" = String, Path, pattern = "^[A-Za-z0-9._:@/-]{1,128}$")), request_body = SetPrice,
    responses((status = 201, body = PriceView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn set_price(
    State(state): State<AppState>,
    caller: Caller,
    Path(model): Path<String>,
    Body(body): Body<SetPrice>,
) -> Result<(StatusCode, Json<PriceView>), ApiError> {
    caller.require_operator()?;
    if !is_valid_model(&model) {
        return Err(ApiError::invalid(
            "model",
            "parameter_invalid",
            "model must be 1 to 128 letters, digits or -._/:@.",
        ));
    }
    let max_output_tokens = body.max_output_tokens.unwrap_or(MAX_OUTPUT_TOKENS_DEFAULT);
    if max_output_tokens == 0 || max_output_tokens > TOKENS_MAX {
        return Err(ApiError::invalid(
            "max_output_tokens",
            "parameter_invalid",
            format!("max_output_tokens must be 1 to {TOKENS_MAX}."),
        ));
    }
    let now = state.now();
    let effective_at = match body.effective_at {
        None => now,
        Some(seconds) => {
            Timestamp::from_unix_ms(seconds.checked_mul(1000).filter(|ms| *ms >= 0).ok_or_else(
                || {
                    ApiError::invalid(
                        "effective_at",
                        "parameter_invalid",
                        "effective_at must be unix seconds.",
                    )
                },
            )?)
        }
    };
    let long_input = long_input(body.long_input)?;
    let base = rates(
        body.input,
        body.output,
        body.cache_write,
        body.cache_write_1h,
        body.cache_read,
    );
    let fee = |money: Option<Money>| money.map_or(Amount::ZERO, |m| m.0);
    let price = PriceVersion {
        id: state.new_id("price"),
        model,
        effective_at,
        prices: TokenPrices {
            input: base.input,
            output: base.output,
            cache_write: base.cache_write,
            cache_write_1h: base.cache_write_1h,
            cache_read: base.cache_read,
            request_fee: fee(body.request_fee),
            web_search_request: fee(body.web_search_request),
            web_fetch_request: fee(body.web_fetch_request),
            long_input,
        },
        max_output_tokens,
        created_at: now,
    };
    state.store().insert_price(&price).await?;
    Ok((StatusCode::CREATED, Json(PriceView::from(&price))))
}

/// `?model=` of the price list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PricesQuery {
    /// Only this model's versions.
    #[param(pattern = "^[A-Za-z0-9._:@/-]{1,128}$")]
    pub model: Option<String>,
}

/// Every price version, by model and time.
#[utoipa::path(get, path = "/v1/prices", tag = "prices", params(PricesQuery),
    responses((status = 200, body = ListView<PriceView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list_prices(
    State(state): State<AppState>,
    _caller: Caller,
    Query(query): Query<PricesQuery>,
) -> Result<Json<ListView<PriceView>>, ApiError> {
    let prices = match &query.model {
        Some(model) if !is_valid_model(model) => {
            return Err(ApiError::invalid(
                "model",
                "parameter_invalid",
                "model must be 1 to 128 letters, digits or -._/:@.",
            ))
        }
        Some(model) => state.store().price_versions(model).await?,
        None => state.store().prices().await?,
    };
    Ok(Json(ListView::new(
        prices.iter().map(PriceView::from).collect(),
        false,
    )))
}
