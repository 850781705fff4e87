//! Derived ids: every id that must come out the same when its cause repeats (a retry with the
//! same `Idempotency-Key`, a usage event sent twice, a settlement after a crash, a notice
//! written by two processes), each made here, in one place, from its cause.
//!
//! Two shapes: hashed (`<prefix>_` and 32 hex digits of SHA-256 over the length-prefixed
//! parts, so `["ab", "c"]` and `["a", "bc"]` differ) for ledger and payment ids; and readable
//! (`ntc_…`, `wdl_…`: the cause's letters and digits) for notices and webhook deliveries,
//! whose ids the operator reads.

use sha2::{Digest, Sha256};

use crate::ledger::{HoldId, TransferId};

/// An id derived from `parts`: the same parts always give the same id, different parts
/// (even `["ab", "c"]` and `["a", "bc"]`) different ones.
pub fn derived(prefix: &str, parts: &[&str]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part.as_bytes());
    }
    let digest = hash.finalize();
    format!("{prefix}_{}", &hex::encode(digest)[..32])
}

/// The grant made by `scope` (who called: see the API's idempotency scope) under key `key`.
pub fn grant_transfer(scope: &str, key: &str) -> TransferId {
    TransferId::new(derived("txn", &[scope, "grant", key]))
}

/// The adjustment made by `scope` under key `key`.
pub fn adjustment_transfer(scope: &str, key: &str) -> TransferId {
    TransferId::new(derived("txn", &[scope, "adjustment", key]))
}

/// The charge of usage event `event_id` of org `org_id`.
pub fn usage_transfer(org_id: &str, event_id: &str) -> TransferId {
    TransferId::new(derived("txn", &[org_id, "usage", event_id]))
}

/// The hold placed by `scope` under key `key`.
pub fn hold(scope: &str, key: &str) -> HoldId {
    HoldId::new(derived("hold", &[scope, key]))
}

/// The settlement of hold `hold_id`.
pub fn settlement(hold_id: &HoldId) -> TransferId {
    TransferId::new(derived("txn", &["settle", hold_id.as_str()]))
}

/// The void of hold `hold_id`.
pub fn void(hold_id: &HoldId) -> TransferId {
    TransferId::new(derived("txn", &["void", hold_id.as_str()]))
}

/// The usage recorded for hold `hold_id` after it closed (expired) before its settlement.
pub fn late_usage(hold_id: &HoldId) -> TransferId {
    TransferId::new(derived("txn", &["late", hold_id.as_str()]))
}

/// The top-up payment `scope` asked for under key `key`.
pub fn top_up_payment(scope: &str, key: &str) -> String {
    derived("pay", &[scope, "top_up", key])
}

/// The one ledger transfer a succeeded payment produces.
pub fn payment_credit(payment_id: &str) -> TransferId {
    TransferId::new(format!("txn_{payment_id}"))
}

/// The payment whose credit transfer is `transfer_id` (the inverse of [`payment_credit`]).
pub fn payment_of_credit(transfer_id: &str) -> Option<&str> {
    transfer_id
        .strip_prefix("txn_")
        .filter(|rest| rest.starts_with("pay_"))
}

/// The refund the operator (`scope`) asked for under key `key` of payment `payment_id`.
pub fn refund(scope: &str, payment_id: &str, key: &str) -> String {
    derived("rfd", &[scope, "refund", payment_id, key])
}

/// The one ledger transfer a refund produces, once the provider gave the money back.
pub fn refund_transfer(refund_id: &str) -> TransferId {
    TransferId::new(format!("txn_{refund_id}"))
}

/// The transfer that gives a refund's credits back when the provider refused it.
pub fn refund_reversal(refund_id: &str) -> TransferId {
    TransferId::new(format!("txn_rev_{refund_id}"))
}

/// The idempotency key the payment provider gets for refund `refund_id`.
pub fn refund_provider_key(refund_id: &str) -> String {
    format!("refund-{refund_id}")
}

/// The receipt notice of refund `refund_id`.
pub fn refund_notice(refund_id: &str) -> String {
    format!("ntc_refund_{}", letters_and_digits(refund_id, 48))
}

/// `text`'s ASCII letters and digits, the first `len_max` of them: the part of a notice id
/// derived from another id, so that the same cause always gives the same notice. Notice
/// ids are `ntc_` and letters and digits.
pub fn letters_and_digits(text: &str, len_max: usize) -> String {
    text.chars()
        .filter(char::is_ascii_alphanumeric)
        .take(len_max)
        .collect()
}

/// The expiry warning of grant `grant_id`: `ntc_exp` and the grant id's letters and digits,
/// so a grant is warned about once. The service's grant ids (`txn_` and 32 hex digits) keep
/// apart this way, as they do in the receipts' ids made the same way.
pub fn expiry_warning_notice(grant_id: &str) -> String {
    format!("ntc_exp{}", letters_and_digits(grant_id, 57))
}

/// The notice of the first call refused for a spend limit: one per org, limit (the org's,
/// or key `key_id`'s) and calendar month (`month_number`).
pub fn spend_limit_notice(org_id: &str, key_id: Option<&str>, month_number: i64) -> String {
    let whose = key_id.map_or_else(|| "org".to_owned(), |key| letters_and_digits(key, 40));
    format!(
        "ntc_spend{}{whose}{month_number}",
        letters_and_digits(org_id, 40)
    )
}

/// A credit's receipt notice, from its transfer id's letters and digits. A suffix of digits
/// alone takes a `t`: `ntc_<digits>` is a transition's notice (`ntc_<seq>`), and a receipt
/// there would take that transition's notice id. The service's own transfer ids (`txn_…`)
/// never need it.
pub fn receipt_notice(transfer_id: &str) -> String {
    let suffix = letters_and_digits(transfer_id, 60);
    if suffix.bytes().all(|b| b.is_ascii_digit()) {
        format!("ntc_t{suffix}")
    } else {
        format!("ntc_{suffix}")
    }
}

/// The notice of kind `kind` (its stable name) about payment `payment_id`: one per payment
/// and kind.
pub fn payment_notice(payment_id: &str, kind: &str) -> String {
    format!(
        "ntc_{}",
        letters_and_digits(&format!("{payment_id}{kind}"), 80)
    )
}

/// The delivery of notice `notice_id` to webhook endpoint `endpoint_id`:
/// `wdl_<notice id>_<endpoint id suffix>`.
pub fn webhook_delivery(notice_id: &str, endpoint_id: &str) -> String {
    let suffix = endpoint_id.strip_prefix("whk_").unwrap_or(endpoint_id);
    format!("wdl_{notice_id}_{suffix}")
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_payment_credit_names_its_payment() {
        let id = payment_credit("pay_01abc");
        assert_eq!(payment_of_credit(id.as_str()), Some("pay_01abc"));
        assert_eq!(payment_of_credit("txn_grant_1"), None);
    }

    use super::*;

    #[test]
    fn hashed_ids_are_stable_and_length_prefixed() {
        assert_eq!(derived("txn", &["a", "b"]), derived("txn", &["a", "b"]));
        assert_ne!(derived("txn", &["ab", "c"]), derived("txn", &["a", "bc"]));
        assert_eq!(derived("txn", &["x"]).len(), "txn_".len() + 32);
        // Each cause its own id.
        let hold = HoldId::new("hold_1".to_owned());
        let ids = [settlement(&hold), void(&hold), late_usage(&hold)];
        assert!(ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2]);
        assert_ne!(
            grant_transfer("operator", "k"),
            adjustment_transfer("operator", "k")
        );
        assert_eq!(payment_credit("pay_1").as_str(), "txn_pay_1");
    }

    #[test]
    fn readable_ids() {
        assert_eq!(expiry_warning_notice("txn_0a1b"), "ntc_exptxn0a1b");
        assert_eq!(expiry_warning_notice("a-b:c"), "ntc_expabc");
        assert_eq!(
            expiry_warning_notice(&"x".repeat(100)).len(),
            "ntc_".len() + 60
        );
        assert_eq!(receipt_notice("123"), "ntc_t123");
        assert_eq!(receipt_notice("txn_9"), "ntc_txn9");
        assert_eq!(
            spend_limit_notice("org_a", None, 675),
            "ntc_spendorgaorg675"
        );
        assert_eq!(
            spend_limit_notice("org_a", Some("key_b"), 675),
            "ntc_spendorgakeyb675"
        );
        assert_eq!(webhook_delivery("ntc_1", "whk_2"), "wdl_ntc_1_2");
    }
}
