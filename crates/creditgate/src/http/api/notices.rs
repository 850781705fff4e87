//! The notice outbox (operator): list notices (parked ones especially) and retry one.

use axum::extract::State;
use axum::Json;
use creditgate_store::api::Notice;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{path_id, Path, Query};
use crate::http::auth::Caller;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::json::show;
use crate::http::views::ListView;
use crate::state::AppState;

/// A notice: an email (and later a webhook) caused by an access change.
#[derive(Debug, Serialize, ToSchema)]
pub struct NoticeView {
    /// `ntc_…`; the email's Message-ID carries it.
    pub id: String,
    /// Always `notice`.
    pub object: &'static str,
    /// `access.turned_off`, `access.restored`, `balance.low`.
    pub kind: String,
    /// The org it is about.
    pub org_id: String,
    /// The org's available balance when it was caused.
    pub available: String,
    /// `pending`, `sent` or `parked`.
    pub state: String,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds, once delivered.
    pub sent_at: Option<i64>,
}

impl From<&Notice> for NoticeView {
    fn from(n: &Notice) -> NoticeView {
        NoticeView {
            id: n.id.clone(),
            object: "notice",
            kind: n.kind.clone(),
            org_id: n.org_id.clone(),
            available: show(n.available),
            state: n.state.clone(),
            attempts: n.attempts,
            last_error: n.last_error.clone(),
            created_at: n.created_at.unix_ms().div_euclid(1000),
            sent_at: n.sent_at.map(|t| t.unix_ms().div_euclid(1000)),
        }
    }
}

/// `?state=&org_id=&limit=` of the notice list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct NoticesQuery {
    /// `pending`, `sent` or `parked`.
    #[param(pattern = "^(pending|sent|parked)$")]
    pub state: Option<String>,
    /// Only this org's notices.
    #[param(pattern = "^org_[A-Za-z0-9]{1,64}$")]
    pub org_id: Option<String>,
    /// At most this many (1 to 100, default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

/// List notices, newest first.
#[utoipa::path(get, path = "/v1/notices", tag = "notices", params(NoticesQuery),
    responses((status = 200, body = ListView<NoticeView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_notices(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<NoticesQuery>,
) -> Result<Json<ListView<NoticeView>>, ApiError> {
    caller.require_operator()?;
    if let Some(s) = &query.state {
        if !["pending", "sent", "parked"].contains(&s.as_str()) {
            return Err(ApiError::invalid(
                "state",
                "parameter_invalid",
                "state must be pending, sent or parked.",
            ));
        }
    }
    if let Some(org_id) = &query.org_id {
        path_id("org_id", "org", org_id)?;
    }
    let limit = super::ListQuery {
        limit: query.limit,
        starting_after: None,
    }
    .limit(&state)?;
    let notices = state
        .store()
        .notices(query.state.as_deref(), query.org_id.as_deref(), limit)
        .await?;
    Ok(Json(ListView::new(
        notices.iter().map(NoticeView::from).collect(),
        false,
    )))
}

/// Put a parked notice back in the queue (its attempts start over).
#[utoipa::path(post, path = "/v1/notices/{notice_id}/retry", tag = "notices", params(("notice_id" = String, Path, pattern = "^ntc_[A-Za-z0-9]{1,64}$")),
    responses((status = 200, body = NoticeView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn retry_notice(
    State(state): State<AppState>,
    caller: Caller,
    Path(notice_id): Path<String>,
) -> Result<Json<NoticeView>, ApiError> {
    caller.require_operator()?;
    path_id("notice_id", "ntc", &notice_id)?;
    let notice = state
        .store()
        .retry_notice(&notice_id, state.now())
        .await?
        .ok_or_else(|| ApiError::not_found("notice_not_found", "No such notice."))?;
    if notice.state == "sent" {
        return Err(ApiError::conflict(
            "notice_already_sent",
            "This notice was delivered already.",
        ));
    }
    Ok(Json(NoticeView::from(&notice)))
}
