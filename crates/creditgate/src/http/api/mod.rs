//! The handlers, one module per resource.

pub mod credits;
pub mod holds;
pub mod idempotency;
pub mod keys;
pub mod members;
pub mod notices;
pub mod orgs;
pub mod payments;
pub mod prices;
pub mod recoveries;
pub mod refunds;
pub mod system;
pub mod usage;
pub mod webhooks;

use serde::{Deserialize, Deserializer};

use super::error::ApiError;
pub use super::extract::{Path, Query};
pub use crate::app::input::{path_id, rejection, text};
pub use crate::app::visible_org as org_for;
use crate::state::AppState;

/// `?limit=&starting_after=` of list routes.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Items per page (1 to 100, default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// The id of the last item of the previous page (a transfer's id may be any printable
    /// ASCII the ledger accepts, e.g. `txn_pay_…`; other lists' ids are `prefix_alphanumerics`).
    #[param(pattern = "^[!-~]{1,256}$")]
    pub starting_after: Option<String>,
}

impl ListQuery {
    fn limit(&self, state: &AppState) -> Result<usize, ApiError> {
        let max = state.config().page_len_max.max(1);
        match self.limit {
            None => Ok(20.min(max)),
            Some(limit) if limit >= 1 && (limit as usize) <= max => Ok(limit as usize),
            Some(_) => Err(ApiError::invalid(
                "limit",
                "parameter_invalid",
                format!("limit must be between 1 and {max}."),
            )),
        }
    }
}

/// Double option: absent → `None`, `null` → `Some(None)`.
pub fn double_option<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}
