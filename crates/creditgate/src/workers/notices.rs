//! The notice worker: delivers the outbox at least once.
//!
//! Each notice row was written in the transaction of the access transition that caused it,
//! so none is lost and none is made twice. [`run_once`] delivers what is due: it renders the
//! email (pure, `creditgate_domain::notice`), hands it to the [`Mailer`], and marks the row
//! sent; a failure is retried with exponential back-off and, after `notice_attempts_max`
//! attempts, parked where the operator API lists it and can retry it. A crash between the
//! send and the mark means one more send after restart; the email's Message-ID carries the
//! notice id, so receivers (and tests) can tell the copies apart.
//!
//! An org's notice goes to its billing contacts and to its owners and admins, each address
//! once. A member's notice (`member.*`: a sign-in link, an invitation) goes to that member
//! only, with the link made from the secret the row carries until it is sent; when the
//! member is gone or the secret was cleared, there is nothing to send and the row is marked
//! sent.

use creditgate_domain::ids;
use creditgate_domain::notice::{self, EmailContext, NoticeKind};
use creditgate_domain::outbox::after_failure;
use creditgate_domain::Timestamp;
use creditgate_store::api::{AutoReload, Notice};
use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::Message;

pub use crate::providers::mail::{MailError, Mailer};
use crate::state::AppState;

/// What one run did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Notices delivered.
    pub sent: usize,
    /// Attempts that failed and will be retried.
    pub retried: usize,
    /// Notices parked after their last attempt.
    pub parked: usize,
}

/// Longer than any claim's work by this much.
const CLAIM_MARGIN_MS: u64 = 60_000;

/// The end of a claim's lease and its token: a worker claims at most `batch` items, each
/// taking at most `timeout_ms`, so the lease outlasts the work done one at a time (a
/// shorter one could let another node take an item still being worked on); the token names
/// the node and is unique per claim.
pub fn claim_terms(
    state: &AppState,
    now: Timestamp,
    timeout_ms: u64,
    batch: usize,
) -> (Timestamp, String) {
    let work_ms = timeout_ms
        .saturating_mul(u64::try_from(batch).unwrap_or(u64::MAX))
        .saturating_add(CLAIM_MARGIN_MS);
    let lease_until = Timestamp::from_unix_ms(
        now.unix_ms()
            .saturating_add(i64::try_from(work_ms).unwrap_or(i64::MAX)),
    );
    let token = format!("{}:{}", state.node_id(), crate::ids::random_hex(8));
    (lease_until, token)
}

/// Delivers the notices due at `now` (at most `notice_batch_len_max`), each fanned out to
/// the webhook endpoints before its email is tried.
pub async fn run_once(
    state: &AppState,
    mailer: &Mailer,
    now: Timestamp,
) -> Result<Outcome, creditgate_store::StoreError> {
    let config = state.config();
    let mut outcome = Outcome::default();
    let batch = config.notice_batch_len_max.max(1);
    let (lease_until, token) = claim_terms(state, now, config.smtp_timeout_ms, batch);
    for notice in state
        .store()
        .claim_notices(now, lease_until, &token, batch)
        .await?
    {
        // Webhooks first, so they never wait on email; repeating it for a retried notice
        // makes no second delivery (the ids are derived).
        super::webhooks::fan_out(state, &notice, now).await?;
        // Each send within smtp_timeout_ms, so the claim's lease outlasts the batch.
        let send_ms = std::time::Duration::from_millis(config.smtp_timeout_ms.max(1));
        let sent = match tokio::time::timeout(send_ms, deliver(state, mailer, &notice)).await {
            Ok(sent) => sent,
            Err(_) => Err(MailError::Deliver("timed out".into())),
        };
        match sent {
            Ok(()) => {
                if !state.store().notice_sent(&notice.id, &token, now).await? {
                    tracing::warn!(notice = %notice.id, "sent after its claim passed on");
                }
                outcome.sent += 1;
            }
            Err(error) => {
                let permanent = matches!(error, MailError::Build(_));
                let failed =
                    after_failure(notice.attempts, config.notice_attempts_max, permanent, now);
                let (failures, parked) = (failed.failures, failed.parked);
                tracing::warn!(notice = %notice.id, %error, failures, parked, "notice not delivered");
                state
                    .store()
                    .notice_failed(
                        &notice.id,
                        &token,
                        &error.to_string(),
                        failed.retry_at,
                        parked,
                    )
                    .await?;
                if parked {
                    outcome.parked += 1;
                } else {
                    outcome.retried += 1;
                }
            }
        }
    }
    Ok(outcome)
}

/// Who an email goes to, and what only a member's email carries.
struct Audience {
    /// The addresses, deduplicated.
    to: Vec<String>,
    /// A member notice: the sign-in link built from its secret.
    link: Option<String>,
    /// A member notice: the member's role as people read it.
    role: Option<&'static str>,
}

async fn deliver(state: &AppState, mailer: &Mailer, notice: &Notice) -> Result<(), MailError> {
    let kind = NoticeKind::parse(&notice.kind)
        .ok_or_else(|| MailError::Build(format!("unknown kind {}", notice.kind)))?;
    let org = state
        .store()
        .org(&notice.org_id)
        .await
        .map_err(|e| MailError::Deliver(e.to_string()))?
        .ok_or_else(|| MailError::Build(format!("org {} is gone", notice.org_id)))?;
    let audience = if kind.is_for_member() {
        member_audience(state, notice).await?
    } else {
        org_audience(state, &org).await?
    };
    let Some(audience) = audience else {
        // Nobody to tell, or nothing to tell them: recorded as sent (an org's webhook, when
        // configured, still carries it).
        return Ok(());
    };
    let auto_reload = state
        .store()
        .auto_reload(&org.id)
        .await
        .map_err(|e| MailError::Deliver(e.to_string()))?;
    let auto_reload_enabled = auto_reload
        .as_ref()
        .is_some_and(|reload| reload.settings.enabled);
    let failure_reason = notice.reason.as_deref().or_else(|| {
        // A turned-off notice written before auto-reload's charge failed carries no reason;
        // the reload's last failure is current (a success or a change of settings clears it).
        auto_reload
            .as_ref()
            .filter(|_| kind == NoticeKind::AccessTurnedOff && auto_reload_enabled)
            .and_then(|reload| reload.last_failure.as_deref())
    });
    let time_of = |meaning: RowTime| notice.retry_at.filter(|_| row_time(kind) == meaning);
    let action_url = notice
        .payment_id
        .as_deref()
        .map(|id| crate::app::charges::confirmation_url(state, id));
    let (undo_url, undo_until) = undo_link(state, notice, kind).unzip();
    let context = EmailContext {
        product_name: &state.config().product_name,
        org_name: &org.name,
        org_id: &org.id,
        public_url: state.public_url(),
        available: notice.available,
        currency: &state.config().currency,
        amount: notice.amount,
        receipt_id: notice.transfer_id.as_deref().filter(|_| has_receipt(kind)),
        threshold: threshold(&org, auto_reload.as_ref(), notice, kind),
        failure_reason,
        next_attempt_at: time_of(RowTime::NextAttempt),
        action_url: action_url.as_deref(),
        link: audience.link.as_deref().or(undo_url.as_deref()),
        member_role: audience.role,
        expires_at: time_of(RowTime::Expiry).or(undo_until),
        resets_at: time_of(RowTime::Reset),
        auto_reload_enabled,
    };
    let message = message(state, notice, notice::render(kind, &context), &audience.to)?;
    mailer.send(&notice.id, message).await
}

/// An auto-reload receipt's link that undoes the charge, and when it stops working.
fn undo_link(
    state: &AppState,
    notice: &Notice,
    kind: NoticeKind,
) -> Option<(String, creditgate_domain::Timestamp)> {
    let payment_id = notice
        .payment_id
        .as_deref()
        .or_else(|| {
            notice
                .transfer_id
                .as_deref()
                .and_then(ids::payment_of_credit)
        })
        .filter(|_| kind == NoticeKind::AutoReloadCharged)?;
    Some(crate::app::undo::link(state, payment_id, notice.created_at))
}

/// An org's notice goes to its billing contacts and its owners and admins, each address
/// once (compared without case), billing contacts first; `None` when there is nobody.
async fn org_audience(
    state: &AppState,
    org: &creditgate_store::api::Org,
) -> Result<Option<Audience>, MailError> {
    let admins = state
        .store()
        .admin_emails(&org.id)
        .await
        .map_err(|e| MailError::Deliver(e.to_string()))?;
    let to = recipients(&org.billing_emails, &admins);
    Ok((!to.is_empty()).then_some(Audience {
        to,
        link: None,
        role: None,
    }))
}

/// A member's notice goes to that member only, with the link made from its secret; `None`
/// when the member is gone or the secret was cleared (the link was withdrawn with the
/// member): there is nothing to send.
async fn member_audience(state: &AppState, notice: &Notice) -> Result<Option<Audience>, MailError> {
    let (Some(member_id), Some(secret)) = (&notice.member_id, &notice.secret) else {
        return Ok(None);
    };
    let member = state
        .store()
        .member(&notice.org_id, member_id)
        .await
        .map_err(|e| MailError::Deliver(e.to_string()))?;
    Ok(member.map(|member| Audience {
        to: vec![member.email],
        link: Some(format!("{}/billing/auth/{secret}", state.public_url())),
        role: Some(member.role.label()),
    }))
}

/// `first` then `second`, each address once: the first spelling of an address that
/// appears twice (compared without case) is kept, in its place.
fn recipients(first: &[String], second: &[String]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    first
        .iter()
        .chain(second)
        .filter(|address| seen.insert(address.trim().to_lowercase()))
        .cloned()
        .collect()
}

/// What a notice row's `retry_at` is the time of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RowTime {
    /// When a failed charge is tried again.
    NextAttempt,
    /// When a spend limit resets.
    Reset,
    /// When something expires: a sign-in link, an invitation, a grant's credits.
    Expiry,
}

/// What the `retry_at` of a notice of `kind` is the time of.
fn row_time(kind: NoticeKind) -> RowTime {
    match kind {
        NoticeKind::AutoReloadFailed => RowTime::NextAttempt,
        NoticeKind::SpendLimitReached => RowTime::Reset,
        _ => RowTime::Expiry,
    }
}

/// Whether the notice's transfer is a receipt number the email shows (a credits-expiring
/// notice names its grant there instead; a refund's receipt is its refund transfer).
fn has_receipt(kind: NoticeKind) -> bool {
    matches!(
        kind,
        NoticeKind::CreditsAdded | NoticeKind::AutoReloadCharged | NoticeKind::RefundIssued
    )
}

/// The threshold the email names: the low-balance threshold crossed, or the auto-reload
/// threshold reached (from the org's auto-reload settings, `auto_reload`).
fn threshold(
    org: &creditgate_store::api::Org,
    auto_reload: Option<&AutoReload>,
    notice: &Notice,
    kind: NoticeKind,
) -> Option<creditgate_domain::Amount> {
    match kind {
        // Thresholds are kept highest first, so the one crossed to reach level n is the n-th.
        NoticeKind::BalanceLow => usize::try_from(notice.level)
            .ok()
            .and_then(|level| level.checked_sub(1))
            .and_then(|index| org.low_thresholds.get(index))
            .copied(),
        NoticeKind::AutoReloadCharged => auto_reload.map(|reload| reload.settings.threshold),
        _ => None,
    }
}

/// The email as a message to `to`, its Message-ID carrying the notice's id.
fn message(
    state: &AppState,
    notice: &Notice,
    email: notice::Email,
    to: &[String],
) -> Result<Message, MailError> {
    let from: Mailbox = state
        .config()
        .mail_from
        .parse()
        .map_err(|e| MailError::Build(format!("mail_from: {e}")))?;
    let mut builder = Message::builder()
        .from(from)
        .subject(email.subject)
        .message_id(Some(format!("<{}@creditgate>", notice.id)));
    for address in to {
        let mailbox: Mailbox = address
            .parse()
            .map_err(|e| MailError::Build(format!("{address}: {e}")))?;
        builder = builder.to(mailbox);
    }
    builder
        .multipart(
            MultiPart::alternative()
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(email.text),
                )
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(email.html),
                ),
        )
        .map_err(|e| MailError::Build(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addresses(list: &[&str]) -> Vec<String> {
        list.iter().map(|a| (*a).to_owned()).collect()
    }

    #[test]
    fn recipients_are_deduplicated_without_case_in_a_stable_order() {
        // (billing contacts, owners and admins) → recipients
        let table: &[(&[&str], &[&str], &[&str])] = &[
            (&[], &[], &[]),
            (&["a@x.com"], &[], &["a@x.com"]),
            (&[], &["o@x.com"], &["o@x.com"]),
            (
                &["b@x.com", "a@x.com"],
                &["o@x.com", "a@x.com"],
                &["b@x.com", "a@x.com", "o@x.com"],
            ),
            (
                &["Billing@X.com"],
                &["billing@x.com", "admin@x.com"],
                &["Billing@X.com", "admin@x.com"],
            ),
            (&["a@x.com", "A@x.com"], &[], &["a@x.com"]),
        ];
        for (billing, admins, expected) in table {
            assert_eq!(
                recipients(&addresses(billing), &addresses(admins)),
                addresses(expected),
                "{billing:?} + {admins:?}"
            );
        }
    }
}
