//! The proxied calls a node had in flight when it stopped, settled at its next start
//! (operator).

use axum::extract::State;
use axum::Json;
use creditgate_store::api::ProxyRecovery;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ListQuery, Query};
use crate::http::auth::Caller;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::views::ListView;
use crate::state::AppState;

/// A proxied call found in flight at its node's start and charged at its hold.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecoveryView {
    /// The call's hold (`hold_…`).
    pub hold_id: String,
    /// Always `proxy_recovery`.
    pub object: &'static str,
    /// The org charged.
    pub org_id: String,
    /// What it was charged: the hold's amount (the call's worst case).
    pub amount: String,
    /// The node that had it in flight.
    pub node_id: String,
    /// When the call's hold was placed (unix seconds).
    pub placed_at: i64,
    /// When it was settled (unix seconds).
    pub recovered_at: i64,
}

impl From<&ProxyRecovery> for RecoveryView {
    fn from(r: &ProxyRecovery) -> RecoveryView {
        RecoveryView {
            hold_id: r.hold_id.clone(),
            object: "proxy_recovery",
            org_id: r.org_id.clone(),
            amount: r.amount.to_string(),
            node_id: r.node_id.clone(),
            placed_at: r.placed_at.unix_ms().div_euclid(1000),
            recovered_at: r.recovered_at.unix_ms().div_euclid(1000),
        }
    }
}

/// `?limit=` of the recoveries list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RecoveriesQuery {
    /// At most this many (1 to 100, default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

/// Proxied calls that were in flight when their node stopped, newest first: each was charged
/// its hold's amount at the node's next start.
#[utoipa::path(get, path = "/v1/proxy/recoveries", tag = "proxy", params(RecoveriesQuery),
    responses((status = 200, body = ListView<RecoveryView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_recoveries(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<RecoveriesQuery>,
) -> Result<Json<ListView<RecoveryView>>, ApiError> {
    caller.require_operator()?;
    let limit = ListQuery {
        limit: query.limit,
        starting_after: None,
    }
    .limit(&state)?;
    let items = state.store().proxy_recoveries(limit).await?;
    Ok(Json(ListView::new(
        items.iter().map(RecoveryView::from).collect(),
        false,
    )))
}
