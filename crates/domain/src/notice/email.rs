//! The email a notice is sent as: what it is built from ([`EmailContext`]), what it is
//! rendered to ([`Email`], by [`render`]), and what every email is composed of: its blocks,
//! the message before layout, and what all emails draw on (`Common`: names made safe for one
//! line, the base links, the shared blocks and the footer).

use super::balance_emails::{
    access_restored, access_turned_off, balance_low, credits_added, credits_expiring,
    spend_limit_reached,
};
use super::layout::{api_name, format_money, format_utc, one_line, render_html, render_text};
use super::member_emails::{member_invited, member_sign_in};
use super::payment_emails::{
    auto_reload_charged, auto_reload_disabled, auto_reload_failed, payment_action_required,
    refund_issued,
};
use super::NoticeKind;
use crate::money::Amount;
use crate::time::Timestamp;

/// What an email is built from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EmailContext<'a> {
    /// The operator's product name ("Acme AI").
    pub product_name: &'a str,
    /// The org's name.
    pub org_name: &'a str,
    /// The org's id (`org_…`), used in links.
    pub org_id: &'a str,
    /// The public base URL links are built from (`CREDITGATE_PUBLIC_URL`), no trailing slash.
    pub public_url: &'a str,
    /// The org's available balance when the notice was caused.
    pub available: Amount,
    /// The deployment's currency code ("USD").
    pub currency: &'a str,
    /// [`NoticeKind::BalanceLow`]: the threshold crossed. [`NoticeKind::AutoReloadCharged`]:
    /// the auto-reload threshold the balance reached.
    pub threshold: Option<Amount>,
    /// [`NoticeKind::CreditsAdded`], [`NoticeKind::AutoReloadCharged`]: the credits added.
    /// [`NoticeKind::AutoReloadFailed`], [`NoticeKind::PaymentActionRequired`]: the amount of
    /// the charge or payment. [`NoticeKind::CreditsExpiring`]: the grant's credits still
    /// unused. [`NoticeKind::SpendLimitReached`]: the spend limit reached.
    pub amount: Option<Amount>,
    /// [`NoticeKind::CreditsAdded`], [`NoticeKind::AutoReloadCharged`]: the receipt number
    /// (the ledger transfer's id).
    pub receipt_id: Option<&'a str>,
    /// [`NoticeKind::AutoReloadFailed`], [`NoticeKind::AutoReloadDisabled`]: why the (last)
    /// charge failed, as a sentence for people ("Your card was declined."); the line is left
    /// out when `None` or blank. [`NoticeKind::AccessTurnedOff`] with auto-reload on: why
    /// auto-reload could not add credits ("Auto-reload reached its monthly limit.").
    pub failure_reason: Option<&'a str>,
    /// [`NoticeKind::AutoReloadFailed`]: when the failed charge is tried again (`None`: it is
    /// not retried automatically). Not the email's own delivery retry.
    pub next_attempt_at: Option<Timestamp>,
    /// [`NoticeKind::PaymentActionRequired`]: the absolute `https` (or `http`) URL where the
    /// card holder confirms the payment, from the payment provider. When `None`, or not such
    /// a URL (say `javascript:…`), the email links to the Billing page instead.
    pub action_url: Option<&'a str>,
    /// [`NoticeKind::MemberSignIn`], [`NoticeKind::MemberInvited`]: the member's sign-in link
    /// (`{public_url}/billing/auth/{secret}`). When `None`, the email points to the Billing
    /// page, where a new link can be asked for. [`NoticeKind::AutoReloadCharged`]: the link
    /// that undoes the charge (`{public_url}/undo/{token}`); when `None`, none is offered.
    pub link: Option<&'a str>,
    /// [`NoticeKind::MemberInvited`]: the member's role as people read it ("Admin").
    pub member_role: Option<&'a str>,
    /// [`NoticeKind::MemberSignIn`], [`NoticeKind::MemberInvited`],
    /// [`NoticeKind::AutoReloadCharged`]: when the link stops working.
    /// [`NoticeKind::CreditsExpiring`]: when the grant's credits expire.
    pub expires_at: Option<Timestamp>,
    /// [`NoticeKind::SpendLimitReached`]: when the spend limit resets and API requests are
    /// accepted again (`None`: the email says only that it resets).
    pub resets_at: Option<Timestamp>,
    /// Whether the org has auto-reload turned on when the email is rendered (not when the
    /// notice was caused). [`NoticeKind::AccessTurnedOff`] and [`NoticeKind::BalanceLow`]
    /// recommend auto-reload only when it is off; with it on, the turned-off email says why
    /// it did not keep access on instead.
    pub auto_reload_enabled: bool,
}

/// A rendered email.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Email {
    /// The subject line (one line, no control characters).
    pub subject: String,
    /// The plain-text part.
    pub text: String,
    /// The HTML part: a whole document.
    pub html: String,
}

/// The email for a notice of `kind`.
pub fn render(kind: NoticeKind, context: &EmailContext) -> Email {
    let message = compose(kind, context);
    Email {
        subject: message.subject.clone(),
        text: render_text(&message),
        html: render_html(&message),
    }
}

/// One part of an email's body, rendered to both text and HTML.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Block {
    /// A paragraph of prose.
    Paragraph(String),
    /// A labelled figure on a line of its own: "Available balance: $12.50".
    Figure { label: &'static str, value: String },
    /// The email's main link: `lead` is a sentence without its final punctuation. Text: `lead`
    /// and the URL on its own line; HTML: `lead` and a button.
    Action {
        lead: String,
        button: &'static str,
        url: String,
    },
    /// A secondary link. Text: `lead` and the URL on its own line; HTML: `lead` then the link.
    Link { lead: &'static str, url: String },
}

/// An email before rendering.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Message {
    pub(super) subject: String,
    pub(super) heading: String,
    pub(super) blocks: Vec<Block>,
    pub(super) footer: String,
}

fn compose(kind: NoticeKind, context: &EmailContext) -> Message {
    let common = Common::new(context);
    match kind {
        NoticeKind::AccessTurnedOff => access_turned_off(&common),
        NoticeKind::AccessRestored => access_restored(&common),
        NoticeKind::BalanceLow => balance_low(&common),
        NoticeKind::SpendLimitReached => spend_limit_reached(&common),
        NoticeKind::CreditsAdded => credits_added(&common),
        NoticeKind::AutoReloadCharged => auto_reload_charged(&common),
        NoticeKind::AutoReloadFailed => auto_reload_failed(&common),
        NoticeKind::AutoReloadDisabled => auto_reload_disabled(&common),
        NoticeKind::PaymentActionRequired => payment_action_required(&common),
        NoticeKind::CreditsExpiring => credits_expiring(&common),
        NoticeKind::MemberSignIn => member_sign_in(&common),
        NoticeKind::MemberInvited => member_invited(&common),
        NoticeKind::RefundIssued => refund_issued(&common),
    }
}

/// What every email draws on, worked out once from the context: names made safe for one
/// line, the base links and the shared blocks.
pub(super) struct Common<'a> {
    pub(super) context: EmailContext<'a>,
    pub(super) product: String,
    /// How the emails name the product's API ("Acme AI API"; "Example API" stays as it is).
    pub(super) api: String,
    pub(super) org: String,
    /// The public URL without a trailing slash.
    base: &'a str,
    pub(super) billing_url: String,
}

impl<'a> Common<'a> {
    fn new(context: &EmailContext<'a>) -> Common<'a> {
        let base = context.public_url.trim_end_matches('/');
        let product = one_line(context.product_name);
        Common {
            context: *context,
            api: api_name(&product),
            product,
            org: one_line(context.org_name),
            base,
            billing_url: format!("{base}/billing/{}", context.org_id),
        }
    }

    pub(super) fn money(&self, amount: Amount) -> String {
        format_money(amount, self.context.currency)
    }

    /// Where the saved card and the auto-reload settings are changed.
    pub(super) fn auto_reload_url(&self) -> String {
        format!("{}/auto-reload", self.billing_url)
    }

    pub(super) fn balance(&self) -> Block {
        Block::Figure {
            label: "Available balance",
            value: self.money(self.context.available),
        }
    }

    pub(super) fn help(&self) -> Block {
        Block::Link {
            lead: "Questions? See the help pages:",
            url: format!("{}/help", self.base),
        }
    }

    /// The receipt number's figure, when there is one.
    pub(super) fn receipt(&self) -> Option<Block> {
        self.context.receipt_id.map(|receipt| Block::Figure {
            label: "Receipt number",
            value: one_line(receipt),
        })
    }

    /// The failure reason on one line; `None` when there is none or it is blank.
    pub(super) fn failure_reason(&self) -> Option<String> {
        self.context
            .failure_reason
            .map(one_line)
            .filter(|reason| !reason.is_empty())
    }

    /// The message with the footer every org's email ends with.
    pub(super) fn message(&self, subject: String, heading: &str, blocks: Vec<Block>) -> Message {
        let why = "you are a billing contact, owner or admin of";
        self.message_because(subject, heading, blocks, why)
    }

    /// The message with a footer saying why the reader gets it: "You receive this email
    /// because `why` <org> (<org id>) on <product>."
    pub(super) fn message_because(
        &self,
        subject: String,
        heading: &str,
        blocks: Vec<Block>,
        why: &str,
    ) -> Message {
        Message {
            subject,
            heading: heading.to_owned(),
            blocks,
            footer: format!(
                "You receive this email because {why} {} ({}) on {}.",
                self.org, self.context.org_id, self.product
            ),
        }
    }

    /// A member email's link: the sign-in link, or else the Billing page (where a new one
    /// can be asked for).
    pub(super) fn sign_in_action(&self, lead: &str, button: &'static str) -> Block {
        match self.context.link {
            Some(link) => Block::Action {
                lead: lead.to_owned(),
                button,
                url: link.to_owned(),
            },
            None => Block::Action {
                lead: "Ask for a sign-in link on the Billing page".to_owned(),
                button: "Open the Billing page",
                url: self.billing_url.clone(),
            },
        }
    }

    /// "The link works once, until <time>." for a member email.
    pub(super) fn link_validity(&self) -> String {
        match self.context.expires_at {
            Some(at) => format!("The link works once, until {}.", format_utc(at)),
            None => "The link works once, for a limited time.".to_owned(),
        }
    }
}

/// The consequence of running out, for the emails that warn of it: "When `credits` run
/// out, …".
pub(super) fn when_credits_run_out(common: &Common, credits: &str) -> String {
    format!(
        "When {credits} run out, its {} access is turned off and API requests are \
         refused until credits are added.",
        common.api
    )
}
