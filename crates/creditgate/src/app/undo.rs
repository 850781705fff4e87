//! Undoing an automatic charge from its receipt (issue 19's undo window). Every auto-reload
//! receipt email carries a link, `{public_url}/undo/{token}`, valid for `undo_window_ms`
//! after the charge's receipt (24 hours by default). The token names the payment and when
//! the link stops working, signed with HMAC-SHA256 under the key-hash secret (shared by
//! every node) over a message of its own kind, so it cannot be forged or stretched.
//!
//! Undoing turns auto-reload off first (so the refund cannot start another charge), then
//! refunds what is still unspent of that charge through [`super::refunds`], under an
//! idempotency key of its own: the link works once in effect, however many times it is
//! clicked, and never refunds more than the unspent part, whatever usage does meanwhile
//! (the ledger refuses more). The refund's receipt email, with its reason, is the
//! confirmation.

use creditgate_domain::payment::{PaymentKind, PaymentState};
use creditgate_domain::Timestamp;
use creditgate_store::api::{Payment, Refund, RefundState};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::error::ApiError;
use super::refunds::{self, NewRefund};
use super::Actor;
use crate::state::AppState;

/// The reason the refund of an undone charge records (and its receipt shows).
pub const UNDO_REASON: &str =
    "You undid this automatic charge from its receipt. Auto-reload is now turned off.";

/// The idempotency key of an undo's refund: one per payment and attempt, whoever clicks.
const UNDO_KEY: &str = "undo-from-receipt";

/// Attempts at refunding what is unspent when usage keeps spending it meanwhile: each
/// attempt that finds its amount spent before the ledger took it back refunds nothing, and
/// the next one asks for what is unspent then.
pub const UNDO_ATTEMPTS_MAX: u32 = 3;

/// Why an undo link does not work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// Not a link we made (malformed, or the signature does not match).
    #[error("This undo link is not valid.")]
    Invalid,
    /// It was ours, and its time is over.
    #[error("This undo link has expired.")]
    Expired,
}

/// The token of the undo link of `payment_id`, working until `expires_at`.
pub fn token(secret: &[u8], payment_id: &str, expires_at: Timestamp) -> String {
    let expires = expires_at.unix_ms();
    format!(
        "{payment_id}.{expires}.{}",
        signature(secret, payment_id, expires)
    )
}

/// The payment a token names, if it is ours and still working at `now`.
pub fn verify(secret: &[u8], token: &str, now: Timestamp) -> Result<String, LinkError> {
    let mut parts = token.splitn(3, '.');
    let (Some(payment_id), Some(expires), Some(signed)) =
        (parts.next(), parts.next(), parts.next())
    else {
        return Err(LinkError::Invalid);
    };
    let expires: i64 = expires.parse().map_err(|_| LinkError::Invalid)?;
    let expected = signature(secret, payment_id, expires);
    if !super::keys::constant_time_eq(expected.as_bytes(), signed.as_bytes()) {
        return Err(LinkError::Invalid);
    }
    if now.unix_ms() >= expires {
        return Err(LinkError::Expired);
    }
    Ok(payment_id.to_owned())
}

fn signature(secret: &[u8], payment_id: &str, expires: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(format!("creditgate undo link\n{payment_id}\n{expires}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The undo link of an auto-reload charge whose receipt was made at `receipt_at`, and when
/// it stops working.
pub fn link(state: &AppState, payment_id: &str, receipt_at: Timestamp) -> (String, Timestamp) {
    let window = i64::try_from(state.config().undo_window_ms).unwrap_or(i64::MAX);
    let expires_at = receipt_at.plus_ms(window);
    let token = token(state.key_hash_secret(), payment_id, expires_at);
    (format!("{}/undo/{token}", state.public_url()), expires_at)
}

/// The charge a working link undoes: an auto-reload that succeeded.
pub async fn charge(state: &AppState, token: &str) -> Result<Payment, ApiError> {
    let payment_id = verify(state.key_hash_secret(), token, state.now()).map_err(|e| match e {
        LinkError::Invalid => ApiError::not_found("undo_link_invalid", e.to_string()),
        LinkError::Expired => ApiError::conflict("undo_link_expired", e.to_string()),
    })?;
    let payment =
        state.store().payment(&payment_id).await?.ok_or_else(|| {
            ApiError::not_found("undo_link_invalid", LinkError::Invalid.to_string())
        })?;
    if payment.kind != PaymentKind::AutoReload || payment.state != PaymentState::Succeeded {
        return Err(ApiError::conflict(
            "payment_not_refundable",
            "Only a completed automatic charge can be undone.",
        ));
    }
    Ok(payment)
}

/// Undoes the charge a working link names: auto-reload off, then the unspent part refunded.
/// Answers the last refund made, or `None` when nothing of the charge is left unspent.
pub async fn undo(state: &AppState, token: &str) -> Result<(Payment, Option<Refund>), ApiError> {
    let payment = charge(state, token).await?;
    if let Some(mut reload) = state.store().auto_reload(&payment.org_id).await? {
        if reload.settings.enabled {
            reload.settings.enabled = false;
            reload.updated_at = state.now();
            state.store().put_auto_reload(&reload).await?;
        }
    }
    let mut last = None;
    for attempt in 1..=UNDO_ATTEMPTS_MAX {
        let new = NewRefund {
            amount: None,
            reason: Some(UNDO_REASON.to_owned()),
        };
        let key = format!("{UNDO_KEY}-{attempt}");
        let refund = match refunds::create(state, &Actor::Operator, &payment.id, new, &key).await {
            Ok(refund) => refund,
            // Nothing unspent is left to refund.
            Err(error) if error.code == "refund_exceeds_unspent" => break,
            Err(error) => return Err(error),
        };
        let spent_meanwhile = refund.state == RefundState::Failed
            && refund.failure_code.as_deref() == Some("refund_exceeds_unspent");
        last = Some(refund);
        if !spent_meanwhile {
            break;
        }
    }
    Ok((payment, last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_works_until_it_expires_and_cannot_be_forged() {
        let secret = b"secret";
        let until = Timestamp::from_unix_ms(1_000_000);
        let token = token(secret, "pay_1", until);
        let before = Timestamp::from_unix_ms(999_999);
        assert_eq!(verify(secret, &token, before), Ok("pay_1".to_owned()));
        assert_eq!(verify(secret, &token, until), Err(LinkError::Expired));
        assert_eq!(verify(b"other", &token, before), Err(LinkError::Invalid));
        let stretched = token.replace("1000000", "9000000");
        assert_eq!(verify(secret, &stretched, before), Err(LinkError::Invalid));
        let other = token.replacen("pay_1", "pay_2", 1);
        assert_eq!(verify(secret, &other, before), Err(LinkError::Invalid));
        assert_eq!(verify(secret, "pay_1", before), Err(LinkError::Invalid));
    }
}
