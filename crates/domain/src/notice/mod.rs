//! Notices: which access transitions and payments cause one, and the emails they are sent as.
//!
//! A notice is caused by a change of access (decided with its transition by
//! [`crate::access::decide`]), a credit into an org ([`crate::ledger::TransferKind`]) or a
//! payment event (an auto-reload charge that failed, an auto-reload turned off, a payment
//! waiting for confirmation), and is written to the outbox in the same transaction as its
//! cause. This module decides which notice a credit causes ([`for_credit`]; the payments shell
//! names the kind of a payment event itself) and renders every email ([`render`]). Both are pure: the shell passes
//! everything the email says in an [`EmailContext`].
//!
//! Three more kinds have causes of their own:
//! * A member's sign-in link or invitation ([`NoticeKind::MemberSignIn`],
//!   [`NoticeKind::MemberInvited`]) is written with the link, and carries the link's secret
//!   until it is sent. It goes to that member's address only: never to the org's billing
//!   contacts, never to webhooks ([`NoticeKind::is_for_member`]), since whoever reads it can
//!   sign in.
//! * Credits about to expire ([`NoticeKind::CreditsExpiring`]) are found by the expiry
//!   worker: each step writes one notice for every grant of an org that expires within the
//!   lead time (`credits_expiring_lead_ms`, 7 days by default), is not expired yet and still
//!   holds unused credits. Its id is derived from the grant's, so each grant is warned about
//!   once, however many steps or processes see it; a grant made with less than the lead time
//!   left is warned about at the next step.
//! * A spend limit reached ([`NoticeKind::SpendLimitReached`]) is caused by an API request
//!   refused because it would go over a spend limit (the org's monthly limit, or one of its
//!   API keys'), not by the balance. Its row carries the limit (`amount`) and when the
//!   limit resets (`retry_at`); the email names both ([`EmailContext::amount`],
//!   [`EmailContext::resets_at`]), and so does the webhook event (`limit`, `resets_at`).
//!
//! The other notices go to the org's billing contacts and to its owners and admins (the
//! shell gathers the addresses).
//!
//! Every email has a subject, a plain-text part (wrapped at [`TEXT_WIDTH`] columns, each link
//! on a line of its own) and an HTML part (one self-contained, inline-styled document, no
//! external resources; a `maud` template, so every interpolated value is escaped by default).

mod balance_emails;
mod email;
mod layout;
mod member_emails;
mod payment_emails;

#[cfg(test)]
mod email_tests;
#[cfg(test)]
mod escaping_tests;
#[cfg(test)]
mod snapshot_tests;
#[cfg(test)]
mod tests;

pub use email::{render, Email, EmailContext};
pub use layout::{format_money, format_utc};

use crate::ledger::TransferKind;

/// Columns the plain-text part is wrapped at (a link longer than that stays whole).
pub const TEXT_WIDTH: usize = 72;

/// What a notice is about (its stable name is also the webhook event name).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NoticeKind {
    /// The org ran out of credits: calls are refused.
    AccessTurnedOff,
    /// Credits landed after the org ran out: calls are accepted again.
    AccessRestored,
    /// The balance crossed a low-balance threshold downward.
    BalanceLow,
    /// A spend limit (the org's, or one of its API keys') was reached: API requests it covers
    /// are refused until it resets, whatever the balance.
    SpendLimitReached,
    /// Credits were added (a grant or a purchase): the receipt.
    CreditsAdded,
    /// Auto-reload charged the saved card and added credits: the receipt.
    AutoReloadCharged,
    /// An auto-reload charge of the saved card failed; it may be tried again.
    AutoReloadFailed,
    /// Auto-reload was turned off after repeated failed charges.
    AutoReloadDisabled,
    /// A payment waits for the card holder to confirm it (the bank asked to authenticate it,
    /// e.g. with 3-D Secure); its credits are added once it is confirmed.
    PaymentActionRequired,
    /// Credits of a grant expire soon, and some are still unused.
    CreditsExpiring,
    /// A member asked for a sign-in link to the Billing page (for that member only).
    MemberSignIn,
    /// A member was added to an org, with a link to sign in (for that member only).
    MemberInvited,
    /// The operator refunded (part of) a payment: its unspent credits were taken back and
    /// the money returned to the card. The receipt.
    RefundIssued,
}

impl NoticeKind {
    /// Every kind.
    pub const ALL: [NoticeKind; 13] = [
        NoticeKind::AccessTurnedOff,
        NoticeKind::AccessRestored,
        NoticeKind::BalanceLow,
        NoticeKind::SpendLimitReached,
        NoticeKind::CreditsAdded,
        NoticeKind::AutoReloadCharged,
        NoticeKind::AutoReloadFailed,
        NoticeKind::AutoReloadDisabled,
        NoticeKind::PaymentActionRequired,
        NoticeKind::CreditsExpiring,
        NoticeKind::MemberSignIn,
        NoticeKind::MemberInvited,
        NoticeKind::RefundIssued,
    ];

    /// The kind's stable name: the webhook event name and the outbox's kind column.
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::AccessTurnedOff => "access.turned_off",
            NoticeKind::AccessRestored => "access.restored",
            NoticeKind::BalanceLow => "balance.low",
            NoticeKind::SpendLimitReached => "spend_limit.reached",
            NoticeKind::CreditsAdded => "credits.added",
            NoticeKind::AutoReloadCharged => "auto_reload.charged",
            NoticeKind::AutoReloadFailed => "auto_reload.failed",
            NoticeKind::AutoReloadDisabled => "auto_reload.disabled",
            NoticeKind::PaymentActionRequired => "payment.action_required",
            NoticeKind::CreditsExpiring => "credits.expiring",
            NoticeKind::MemberSignIn => "member.sign_in",
            NoticeKind::MemberInvited => "member.invited",
            NoticeKind::RefundIssued => "refund.issued",
        }
    }

    /// Whether a notice of this kind is for one member (`member.*`): emailed to that member
    /// only, and never sent to webhooks, since it carries a sign-in link.
    pub fn is_for_member(self) -> bool {
        matches!(self, NoticeKind::MemberSignIn | NoticeKind::MemberInvited)
    }

    /// The kind named `text` (exactly as [`NoticeKind::as_str`] spells it).
    pub fn parse(text: &str) -> Option<NoticeKind> {
        NoticeKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }
}

/// The receipt a credit transfer of `kind` into an org calls for: grants and purchases
/// [`NoticeKind::CreditsAdded`], auto-reload charges [`NoticeKind::AutoReloadCharged`] (they
/// say why the card was charged without anyone asking). Adjustments are corrections, not
/// receipts; the other kinds add no credits.
pub fn for_credit(kind: TransferKind) -> Option<NoticeKind> {
    match kind {
        TransferKind::Grant | TransferKind::Purchase => Some(NoticeKind::CreditsAdded),
        TransferKind::AutoReload => Some(NoticeKind::AutoReloadCharged),
        TransferKind::Adjustment
        | TransferKind::Usage
        | TransferKind::Refund
        | TransferKind::Expiry => None,
    }
}
