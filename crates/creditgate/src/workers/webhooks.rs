//! Outgoing webhooks: the notices' events, POSTed as signed JSON to the endpoints the operator
//! configured (an org's, or the operator's for every org).
//!
//! The notice worker calls [`fan_out`] for each due notice before it tries the email, so a
//! webhook never waits on email; each delivery's id is derived from the notice and the
//! endpoint, so a repeated fan-out (an email retry, a crash) makes nothing twice. [`run_once`]
//! sends the deliveries that are due, at most `webhook_timeout_ms` each: a 2xx answer marks
//! one sent; anything else is retried with the notice worker's back-off
//! ([`creditgate_domain::outbox::after_failure`], shared with the notices) and parked after `webhook_attempts_max` attempts, where the
//! operator's resend call can send it again. Delivery is at least once: a crash between the
//! answer and the mark, or a resend, delivers the same event (same `id`) again.
//!
//! The body is `{"id", "type", "created", "data": {"org_id", "available", "access_state",
//! "level", …}}`, `data` carrying what the event has: `amount`, `transfer_id`, `payment_id`,
//! `reason`, `retry_at` (unix seconds); `credits.expiring` carries the grant's `amount` still
//! unused, its `grant_id` and its `expires_at` (unix seconds); `spend_limit.reached` carries
//! the spend `limit` reached and when it `resets_at` (unix seconds). A member's notice
//! (`member.*`: a sign-in link, an invitation) is never sent to webhooks: it is for that
//! member alone, and its link signs in. The `creditgate-signature` header is `t=<unix s>,v1=<hex HMAC-SHA256(secret,
//! "<t>.<body>")>` (Stripe's scheme: the receiver recomputes it over the raw body and refuses
//! a stale `t`).

use std::time::Duration;

use creditgate_domain::access::AccessState;
use creditgate_domain::notice::NoticeKind;
use creditgate_domain::Timestamp;
use creditgate_store::api::{Notice, WebhookDelivery, WebhookEndpoint};
use creditgate_store::StoreError;
use futures_util::StreamExt;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::notices::Outcome;

use crate::state::AppState;
use creditgate_domain::outbox::after_failure;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "creditgate-signature";
/// The header carrying the event's id (the notice's id; the same on every delivery of it).
pub const EVENT_ID_HEADER: &str = "creditgate-event-id";
/// Deliveries in flight at once within one run.
const CONCURRENCY: usize = 16;
/// Longest `last_error` kept.
const ERROR_LEN_MAX: usize = 500;

/// The org's access state a notice of `kind` at threshold `level` leaves it in (`None`
/// for a receipt, which says nothing about access).
fn access_state(kind: NoticeKind, level: u32) -> Option<AccessState> {
    match kind {
        NoticeKind::AccessTurnedOff => Some(AccessState::Depleted),
        NoticeKind::BalanceLow => Some(AccessState::Low),
        NoticeKind::AccessRestored if level > 0 => Some(AccessState::Low),
        NoticeKind::AccessRestored => Some(AccessState::Active),
        NoticeKind::SpendLimitReached
        | NoticeKind::CreditsAdded
        | NoticeKind::AutoReloadCharged
        | NoticeKind::AutoReloadFailed
        | NoticeKind::AutoReloadDisabled
        | NoticeKind::PaymentActionRequired
        | NoticeKind::CreditsExpiring
        | NoticeKind::MemberSignIn
        | NoticeKind::MemberInvited
        | NoticeKind::RefundIssued => None,
    }
}

/// The JSON body of `notice`'s event: the same for every endpoint and every attempt.
pub fn payload(notice: &Notice) -> String {
    let kind = NoticeKind::parse(&notice.kind);
    let mut data = serde_json::json!({
        "org_id": notice.org_id,
        "available": notice.available.to_string(),
        "level": notice.level,
    });
    if let Some(state) = kind.and_then(|k| access_state(k, notice.level)) {
        data["access_state"] = state.as_str().into();
    }
    if kind == Some(NoticeKind::SpendLimitReached) {
        // The row keeps the limit in `amount` and when it resets in `retry_at`; the event
        // names them for what they are.
        if let Some(limit) = notice.amount {
            data["limit"] = limit.to_string().into();
        }
        if let Some(resets_at) = notice.retry_at {
            data["resets_at"] = resets_at.unix_ms().div_euclid(1000).into();
        }
        return event(notice, data);
    }
    if let Some(amount) = notice.amount {
        data["amount"] = amount.to_string().into();
    }
    if kind == Some(NoticeKind::CreditsExpiring) {
        // The row keeps the grant in `transfer_id` and its expiry in `retry_at`; the event
        // names them for what they are.
        if let Some(grant_id) = &notice.transfer_id {
            data["grant_id"] = grant_id.as_str().into();
        }
        if let Some(expires_at) = notice.retry_at {
            data["expires_at"] = expires_at.unix_ms().div_euclid(1000).into();
        }
        return event(notice, data);
    }
    if let Some(transfer_id) = &notice.transfer_id {
        data["transfer_id"] = transfer_id.as_str().into();
    }
    if let Some(payment_id) = &notice.payment_id {
        data["payment_id"] = payment_id.as_str().into();
    }
    if let Some(reason) = &notice.reason {
        data["reason"] = reason.as_str().into();
    }
    if let Some(retry_at) = notice.retry_at {
        data["retry_at"] = retry_at.unix_ms().div_euclid(1000).into();
    }
    event(notice, data)
}

/// The event around `data`.
fn event(notice: &Notice, data: serde_json::Value) -> String {
    serde_json::json!({
        "id": notice.id,
        "type": notice.kind,
        "created": notice.created_at.unix_ms().div_euclid(1000),
        "data": data,
    })
    .to_string()
}

/// The `creditgate-signature` value of `body` signed with `secret` at `t` (unix seconds).
pub fn signature(secret: &str, t: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body.as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Makes `notice`'s deliveries to every endpoint that receives it (idempotent); none for a
/// member's notice, which carries a sign-in link.
pub async fn fan_out(state: &AppState, notice: &Notice, now: Timestamp) -> Result<u64, StoreError> {
    if for_member(notice) {
        return Ok(0);
    }
    state.store().fan_out(notice, &payload(notice), now).await
}

/// Whether `notice` is for one member: its kind says so, or it names a member.
fn for_member(notice: &Notice) -> bool {
    NoticeKind::parse(&notice.kind).is_some_and(NoticeKind::is_for_member)
        || notice.member_id.is_some()
}

/// What one attempt came to.
enum Attempt {
    Sent(u16),
    Failed(Option<u16>, String),
}

async fn attempt(
    state: &AppState,
    delivery: &WebhookDelivery,
    endpoint: &WebhookEndpoint,
    now: Timestamp,
) -> Attempt {
    let t = now.unix_ms().div_euclid(1000);
    let request = state
        .http()
        .post(&endpoint.url)
        .timeout(Duration::from_millis(
            state.config().webhook_timeout_ms.max(1),
        ))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(
            SIGNATURE_HEADER,
            signature(&endpoint.secret, t, &delivery.payload),
        )
        .header(EVENT_ID_HEADER, &delivery.notice_id)
        .body(delivery.payload.clone());
    match request.send().await {
        Ok(response) if response.status().is_success() => Attempt::Sent(response.status().as_u16()),
        Ok(response) => {
            let status = response.status();
            Attempt::Failed(Some(status.as_u16()), format!("HTTP {status}"))
        }
        Err(error) => {
            let mut text = error.to_string();
            if let Some(source) = std::error::Error::source(&error) {
                text = format!("{text}: {source}");
            }
            Attempt::Failed(None, text.chars().take(ERROR_LEN_MAX).collect())
        }
    }
}

/// Sends the deliveries due at `now` (at most `notice_batch_len_max`, a few at a time).
pub async fn run_once(state: &AppState, now: Timestamp) -> Result<Outcome, StoreError> {
    let config = state.config();
    let batch = config.notice_batch_len_max.max(1);
    let (lease_until, token) =
        super::notices::claim_terms(state, now, config.webhook_timeout_ms, batch);
    let due = state
        .store()
        .claim_webhook_deliveries(now, lease_until, &token, batch)
        .await?;
    let token = token.as_str();
    let results: Vec<Result<Outcome, StoreError>> = futures_util::stream::iter(due)
        .map(|(delivery, endpoint)| async move {
            let mut outcome = Outcome::default();
            match attempt(state, &delivery, &endpoint, now).await {
                Attempt::Sent(status) => {
                    let store = state.store();
                    if !store.webhook_sent(&delivery.id, token, status, now).await? {
                        tracing::warn!(delivery = %delivery.id, "sent after its claim passed on");
                    }
                    outcome.sent += 1;
                }
                Attempt::Failed(status, error) => {
                    let failed =
                        after_failure(delivery.attempts, config.webhook_attempts_max, false, now);
                    let (failures, parked) = (failed.failures, failed.parked);
                    tracing::warn!(delivery = %delivery.id, %error, failures, parked, "webhook not delivered");
                    state
                        .store()
                        .webhook_failed(&delivery.id, token, status, &error, failed.retry_at, parked)
                        .await?;
                    if parked {
                        outcome.parked += 1;
                    } else {
                        outcome.retried += 1;
                    }
                }
            }
            Ok(outcome)
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let mut total = Outcome::default();
    for result in results {
        let outcome = result?;
        total.sent += outcome.sent;
        total.retried += outcome.retried;
        total.parked += outcome.parked;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_follow_the_documented_scheme() {
        // HMAC-SHA256("whsec_test", "1700000000.{}"), computed independently.
        let expected = {
            let mut mac = Hmac::<Sha256>::new_from_slice(b"whsec_test").unwrap();
            mac.update(b"1700000000.{}");
            hex::encode(mac.finalize().into_bytes())
        };
        assert_eq!(
            signature("whsec_test", 1_700_000_000, "{}"),
            format!("t=1700000000,v1={expected}")
        );
        assert_ne!(
            signature("whsec_test", 1_700_000_000, "{}"),
            signature("whsec_test", 1_700_000_001, "{}")
        );
    }

    fn notice(kind: NoticeKind) -> Notice {
        Notice {
            id: "ntc_1".into(),
            kind: kind.as_str().into(),
            org_id: "org_1".into(),
            available: "42".parse().unwrap(),
            level: 0,
            state: "pending".into(),
            attempts: 0,
            next_attempt_at: Timestamp::from_unix_ms(1_700_000_000_000),
            last_error: None,
            created_at: Timestamp::from_unix_ms(1_700_000_000_000),
            sent_at: None,
            amount: None,
            transfer_id: None,
            payment_id: None,
            reason: None,
            retry_at: None,
            member_id: None,
            secret: None,
        }
    }

    #[test]
    fn credits_expiring_names_the_grant_and_its_expiry() {
        let expiring = Notice {
            id: "ntc_exptxn1".into(),
            amount: Some("20".parse().unwrap()),
            transfer_id: Some("txn_1".into()),
            retry_at: Some(Timestamp::from_unix_ms(1_700_600_000_999)),
            ..notice(NoticeKind::CreditsExpiring)
        };
        let body: serde_json::Value = serde_json::from_str(&payload(&expiring)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "id": "ntc_exptxn1",
                "type": "credits.expiring",
                "created": 1_700_000_000,
                "data": {
                    "org_id": "org_1",
                    "available": "42.00",
                    "level": 0,
                    "amount": "20.00",
                    "grant_id": "txn_1",
                    "expires_at": 1_700_600_000,
                },
            })
        );
    }

    #[test]
    fn spend_limit_reached_names_the_limit_and_its_reset() {
        let limited = Notice {
            amount: Some("100".parse().unwrap()),
            retry_at: Some(Timestamp::from_unix_ms(1_701_388_800_000)),
            ..notice(NoticeKind::SpendLimitReached)
        };
        let body: serde_json::Value = serde_json::from_str(&payload(&limited)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "id": "ntc_1",
                "type": "spend_limit.reached",
                "created": 1_700_000_000,
                "data": {
                    "org_id": "org_1",
                    "available": "42.00",
                    "level": 0,
                    "limit": "100.00",
                    "resets_at": 1_701_388_800,
                },
            })
        );
        // Without a limit or a reset time, the event leaves them out.
        let bare: serde_json::Value =
            serde_json::from_str(&payload(&notice(NoticeKind::SpendLimitReached))).unwrap();
        assert_eq!(
            bare["data"],
            serde_json::json!({"org_id": "org_1", "available": "42.00", "level": 0})
        );
    }

    #[test]
    fn member_notices_are_not_for_webhooks() {
        for kind in NoticeKind::ALL {
            assert_eq!(for_member(&notice(kind)), kind.is_for_member(), "{kind:?}");
        }
        let named = Notice {
            member_id: Some("mem_1".into()),
            ..notice(NoticeKind::BalanceLow)
        };
        assert!(for_member(&named));
    }

    #[test]
    fn access_state_follows_the_kind() {
        assert_eq!(
            access_state(NoticeKind::AccessTurnedOff, 2),
            Some(AccessState::Depleted)
        );
        assert_eq!(
            access_state(NoticeKind::AccessRestored, 0),
            Some(AccessState::Active)
        );
        assert_eq!(
            access_state(NoticeKind::AccessRestored, 1),
            Some(AccessState::Low)
        );
        assert_eq!(
            access_state(NoticeKind::BalanceLow, 1),
            Some(AccessState::Low)
        );
        assert_eq!(access_state(NoticeKind::CreditsAdded, 0), None);
    }
}
