//! Webhook endpoints and their delivery log (operator): create, list, disable an endpoint;
//! list an endpoint's deliveries; resend one.
//!
//! An endpoint's signing secret is shown in the create response only (like an API key's):
//! lost, the endpoint is replaced (create a new one, disable the old).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use creditgate_domain::notice::NoticeKind;
use creditgate_store::api::{WebhookDelivery, WebhookEndpoint};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{path_id, Path, Query};
use crate::http::auth::Caller;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::json::Body;
use crate::http::views::ListView;
use crate::state::AppState;

/// Longest endpoint URL.
pub const URL_LEN_MAX: usize = 2048;
/// Prefix of every endpoint's signing secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// A new webhook endpoint.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"url": "https://example.com/hooks/creditgate", "org_id": "org_01hxyz", "events": ["access.turned_off", "access.restored"]}))]
pub struct CreateWebhookEndpoint {
    /// Where events are POSTed: an absolute http or https URL with a host (at most 2048
    /// characters, no spaces or control characters), which the WHATWG URL rules must also
    /// accept (a numeric last label is an IPv4 address, say; else a 400).
    #[schema(
        max_length = 2048,
        pattern = r"^https?://([^\s\x00-\x1F\x7F-\x9F/?#@]*@)?[^\s\x00-\x1F\x7F-\x9F/?#@]+([/?#][^\s\x00-\x1F\x7F-\x9F]*)?$"
    )]
    pub url: String,
    /// The org whose events it receives; absent: the operator's endpoint, every org's events.
    #[schema(pattern = "^org_[A-Za-z0-9]{1,64}$")]
    pub org_id: Option<String>,
    /// The events it receives, or `["*"]` (the default) for all.
    #[schema(value_type = Option<Vec<WebhookEventName>>, min_items = 1)]
    pub events: Option<Vec<String>>,
}

/// An event an endpoint may receive (for the document; the handler parses the string).
#[derive(ToSchema)]
#[allow(dead_code)]
pub enum WebhookEventName {
    /// An org's access was turned off.
    #[schema(rename = "access.turned_off")]
    AccessTurnedOff,
    /// An org's access came back.
    #[schema(rename = "access.restored")]
    AccessRestored,
    /// An org's balance crossed a low threshold.
    #[schema(rename = "balance.low")]
    BalanceLow,
    /// Every event.
    #[schema(rename = "*")]
    All,
}

/// A webhook endpoint (without its secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookEndpointView {
    /// `whk_…`.
    pub id: String,
    /// Always `webhook_endpoint`.
    pub object: &'static str,
    /// The org whose events it receives; null: the operator's, every org's events.
    pub org_id: Option<String>,
    /// Where events are POSTed.
    pub url: String,
    /// The events it receives, or `["*"]`.
    pub events: Vec<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds, once disabled: nothing is delivered to it from then on.
    pub disabled_at: Option<i64>,
}

impl From<&WebhookEndpoint> for WebhookEndpointView {
    fn from(e: &WebhookEndpoint) -> WebhookEndpointView {
        WebhookEndpointView {
            id: e.id.clone(),
            object: "webhook_endpoint",
            org_id: e.org_id.clone(),
            url: e.url.clone(),
            events: e.events.clone(),
            created_at: e.created_at.unix_ms().div_euclid(1000),
            disabled_at: e.disabled_at.map(|t| t.unix_ms().div_euclid(1000)),
        }
    }
}

/// A new endpoint with its signing secret (shown in this response only).
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookEndpointCreatedView {
    /// The endpoint.
    #[serde(flatten)]
    pub endpoint: WebhookEndpointView,
    /// `whsec_…`: the key of each body's HMAC-SHA256 signature (`creditgate-signature:
    /// t=<unix s>,v1=<hex HMAC(secret, "<t>.<body>")>`).
    pub secret: String,
}

/// One event's delivery to one endpoint, as the delivery log shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookDeliveryView {
    /// `wdl_<notice id>_<endpoint id suffix>`.
    pub id: String,
    /// Always `webhook_delivery`.
    pub object: &'static str,
    /// The endpoint.
    pub endpoint_id: String,
    /// The event's id (the notice's, `ntc_…`): the same on every delivery and resend of it.
    pub event_id: String,
    /// The event name.
    pub event: String,
    /// `pending`, `sent` or `parked`.
    pub state: String,
    /// Attempts since it was made or last resent.
    pub attempts: u32,
    /// The HTTP status of the last attempt, if the endpoint answered.
    pub last_status: Option<u16>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// Unix seconds: when the next attempt is due (pending ones).
    pub next_attempt_at: i64,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds, once delivered.
    pub sent_at: Option<i64>,
    /// The JSON body sent.
    pub payload: String,
}

impl From<&WebhookDelivery> for WebhookDeliveryView {
    fn from(d: &WebhookDelivery) -> WebhookDeliveryView {
        WebhookDeliveryView {
            id: d.id.clone(),
            object: "webhook_delivery",
            endpoint_id: d.endpoint_id.clone(),
            event_id: d.notice_id.clone(),
            event: d.event.clone(),
            state: d.state.clone(),
            attempts: d.attempts,
            last_status: d.last_status,
            last_error: d.last_error.clone(),
            next_attempt_at: d.next_attempt_at.unix_ms().div_euclid(1000),
            created_at: d.created_at.unix_ms().div_euclid(1000),
            sent_at: d.sent_at.map(|t| t.unix_ms().div_euclid(1000)),
            payload: d.payload.clone(),
        }
    }
}

/// `?limit=` of the delivery log.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    /// At most this many (1 to 100, default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

/// Checks an endpoint URL: http or https, a host, at most [`URL_LEN_MAX`] characters.
fn valid_url(url: &str) -> Result<(), ApiError> {
    let refuse = |message: &str| Err(ApiError::invalid("url", "parameter_invalid", message));
    if url.is_empty() || url.len() > URL_LEN_MAX {
        return refuse("url must be 1 to 2048 characters.");
    }
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return refuse("url may not contain spaces or control characters.");
    }
    match reqwest::Url::parse(url) {
        Ok(parsed)
            if matches!(parsed.scheme(), "http" | "https")
                && parsed.host_str().is_some_and(|h| !h.is_empty()) =>
        {
            Ok(())
        }
        _ => refuse("url must be an absolute http or https URL."),
    }
}

/// The events as stored: known names, deduplicated in the order given, or `["*"]`.
fn valid_events(events: Option<Vec<String>>) -> Result<Vec<String>, ApiError> {
    let Some(events) = events else {
        return Ok(vec!["*".to_owned()]);
    };
    if events.is_empty() {
        return Err(ApiError::invalid(
            "events",
            "parameter_invalid",
            "events may not be empty: list event names, or [\"*\"] for all.",
        ));
    }
    if events.iter().any(|e| e == "*") {
        if events.len() > 1 {
            return Err(ApiError::invalid(
                "events",
                "parameter_invalid",
                "\"*\" stands alone: it means every event.",
            ));
        }
        return Ok(events);
    }
    let mut out: Vec<String> = Vec::new();
    for (index, event) in events.into_iter().enumerate() {
        // Member notices carry sign-in secrets: they are emailed, never sent to webhooks.
        if NoticeKind::parse(&event).is_none_or(NoticeKind::is_for_member) {
            let known: Vec<&str> = NoticeKind::ALL
                .iter()
                .filter(|k| !k.is_for_member())
                .map(|k| k.as_str())
                .collect();
            return Err(ApiError::invalid(
                format!("events[{index}]"),
                "parameter_invalid",
                format!("Unknown event; known events: {}.", known.join(", ")),
            ));
        }
        if !out.contains(&event) {
            out.push(event);
        }
    }
    Ok(out)
}

/// Whether `id` looks like a delivery id: `wdl_ntc_<…>_<…>`.
fn valid_delivery_id(id: &str) -> bool {
    let Some(rest) = id.strip_prefix("wdl_ntc_") else {
        return false;
    };
    let mut parts = rest.split('_');
    let ok = |p: Option<&str>| {
        p.is_some_and(|p| {
            !p.is_empty() && p.len() <= 64 && p.bytes().all(|b| b.is_ascii_alphanumeric())
        })
    };
    ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
}

async fn endpoint(state: &AppState, endpoint_id: &str) -> Result<WebhookEndpoint, ApiError> {
    path_id("endpoint_id", "whk", endpoint_id)?;
    state
        .store()
        .webhook_endpoint(endpoint_id)
        .await?
        .ok_or_else(|| {
            ApiError::not_found("webhook_endpoint_not_found", "No such webhook endpoint.")
        })
}

/// Create a webhook endpoint: an org's (its events) or the operator's (no `org_id`: every
/// org's events). The signing secret is shown in this response only.
#[utoipa::path(post, path = "/v1/webhook_endpoints", tag = "webhooks", request_body = CreateWebhookEndpoint,
    responses((status = 201, body = WebhookEndpointCreatedView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create_webhook_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<CreateWebhookEndpoint>,
) -> Result<(StatusCode, Json<WebhookEndpointCreatedView>), ApiError> {
    caller.require_operator()?;
    valid_url(&body.url)?;
    let events = valid_events(body.events)?;
    if let Some(org_id) = &body.org_id {
        path_id("org_id", "org", org_id)?;
        if state.store().org(org_id).await?.is_none() {
            return Err(ApiError::not_found("org_not_found", "No such org."));
        }
    }
    let secret = format!("{SECRET_PREFIX}{}", crate::ids::random_hex(24));
    let endpoint = WebhookEndpoint {
        id: state.new_id("whk"),
        org_id: body.org_id,
        url: body.url,
        secret: secret.clone(),
        events,
        created_at: state.now(),
        disabled_at: None,
    };
    state.store().create_webhook_endpoint(&endpoint).await?;
    Ok((
        StatusCode::CREATED,
        Json(WebhookEndpointCreatedView {
            endpoint: WebhookEndpointView::from(&endpoint),
            secret,
        }),
    ))
}

/// List webhook endpoints, newest first (disabled ones included; no secrets).
#[utoipa::path(get, path = "/v1/webhook_endpoints", tag = "webhooks",
    responses((status = 200, body = ListView<WebhookEndpointView>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_webhook_endpoints(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<ListView<WebhookEndpointView>>, ApiError> {
    caller.require_operator()?;
    let endpoints = state.store().webhook_endpoints().await?;
    Ok(Json(ListView::new(
        endpoints.iter().map(WebhookEndpointView::from).collect(),
        false,
    )))
}

/// Disable a webhook endpoint: nothing more is delivered to it, and its pending deliveries
/// are parked.
#[utoipa::path(delete, path = "/v1/webhook_endpoints/{endpoint_id}", tag = "webhooks", params(("endpoint_id" = String, Path, pattern = "^whk_[A-Za-z0-9]{1,64}$")),
    responses((status = 200, body = WebhookEndpointView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn disable_webhook_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    Path(endpoint_id): Path<String>,
) -> Result<Json<WebhookEndpointView>, ApiError> {
    caller.require_operator()?;
    endpoint(&state, &endpoint_id).await?;
    let endpoint = state
        .store()
        .disable_webhook_endpoint(&endpoint_id, state.now())
        .await?
        .ok_or_else(|| {
            ApiError::not_found("webhook_endpoint_not_found", "No such webhook endpoint.")
        })?;
    Ok(Json(WebhookEndpointView::from(&endpoint)))
}

/// An endpoint's delivery log, newest first: each event's state, attempts, last status and
/// error, and the body sent.
#[utoipa::path(get, path = "/v1/webhook_endpoints/{endpoint_id}/deliveries", tag = "webhooks", params(("endpoint_id" = String, Path, pattern = "^whk_[A-Za-z0-9]{1,64}$"), DeliveriesQuery),
    responses((status = 200, body = ListView<WebhookDeliveryView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_webhook_deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Path(endpoint_id): Path<String>,
    Query(query): Query<DeliveriesQuery>,
) -> Result<Json<ListView<WebhookDeliveryView>>, ApiError> {
    caller.require_operator()?;
    let limit = super::ListQuery {
        limit: query.limit,
        starting_after: None,
    }
    .limit(&state)?;
    let endpoint = endpoint(&state, &endpoint_id).await?;
    let deliveries = state
        .store()
        .webhook_deliveries(&endpoint.id, limit)
        .await?;
    Ok(Json(ListView::new(
        deliveries.iter().map(WebhookDeliveryView::from).collect(),
        false,
    )))
}

/// Send a delivery again (sent or parked; a pending one is hurried): due now, attempts start
/// over. The body is unchanged, so the receiver sees the same event id again.
#[utoipa::path(post, path = "/v1/webhook_deliveries/{delivery_id}/resend", tag = "webhooks", params(("delivery_id" = String, Path, pattern = "^wdl_ntc_[A-Za-z0-9]{1,64}_[A-Za-z0-9]{1,64}$")),
    responses((status = 200, body = WebhookDeliveryView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn resend_webhook_delivery(
    State(state): State<AppState>,
    caller: Caller,
    Path(delivery_id): Path<String>,
) -> Result<Json<WebhookDeliveryView>, ApiError> {
    caller.require_operator()?;
    if !valid_delivery_id(&delivery_id) {
        return Err(ApiError::invalid(
            "delivery_id",
            "invalid_id",
            "delivery_id must look like wdl_ntc_…_….",
        ));
    }
    let not_found =
        || ApiError::not_found("webhook_delivery_not_found", "No such webhook delivery.");
    let delivery = state
        .store()
        .webhook_delivery(&delivery_id)
        .await?
        .ok_or_else(not_found)?;
    let endpoint = endpoint(&state, &delivery.endpoint_id).await?;
    if endpoint.disabled_at.is_some() {
        return Err(ApiError::conflict(
            "webhook_endpoint_disabled",
            "The delivery's endpoint is disabled.",
        ));
    }
    let delivery = state
        .store()
        .resend_webhook(&delivery_id, state.now())
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(WebhookDeliveryView::from(&delivery)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs() {
        assert!(valid_url("https://example.com/hook").is_ok());
        assert!(valid_url("http://127.0.0.1:9/x?y=1").is_ok());
        for bad in [
            "",
            "ftp://example.com",
            "example.com",
            "https://",
            "http://a b",
        ] {
            assert_eq!(
                valid_url(bad).unwrap_err().param.as_deref(),
                Some("url"),
                "{bad}"
            );
        }
        assert!(valid_url(&format!("https://e.com/{}", "a".repeat(URL_LEN_MAX))).is_err());
        assert_eq!(valid_events(None).unwrap(), ["*"]);
        assert_eq!(
            valid_events(Some(vec!["balance.low".into(), "balance.low".into()])).unwrap(),
            ["balance.low"]
        );
        assert!(valid_events(Some(vec![])).is_err());
        assert!(valid_events(Some(vec!["*".into(), "balance.low".into()])).is_err());
        assert_eq!(
            valid_events(Some(vec!["balance.low".into(), "nope".into()]))
                .unwrap_err()
                .param
                .as_deref(),
            Some("events[1]")
        );
        assert!(valid_delivery_id("wdl_ntc_1_1"));
        assert!(valid_delivery_id("wdl_ntc_42_01hxyzabc"));
        for bad in [
            "wdl_ntc_1",
            "wdl_ntc_1_",
            "wdl_ntc_1_2_3",
            "wdl_x_1_2",
            "ntc_1",
        ] {
            assert!(!valid_delivery_id(bad), "{bad}");
        }
    }
}
