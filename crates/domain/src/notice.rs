//! Notices: which access transitions and payments cause one, and the emails they are sent as.
//!
//! A notice is caused by a change of access ([`Transition`]), a credit into an org
//! ([`crate::ledger::TransferKind`]) or a payment event (an auto-reload charge that failed, an
//! auto-reload turned off, a payment waiting for confirmation), and is written to the outbox
//! in the same transaction as its cause. This module only decides *which* notice a transition
//! or a credit causes ([`for_transition`], [`for_credit`]; the payments shell names the kind of
//! a payment event itself) and renders its email ([`render`]). Both are pure: the shell passes
//! everything the email says in an [`EmailContext`].
//!
//! Two more kinds have causes of their own:
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
//!
//! The other notices go to the org's billing contacts and to its owners and admins (the
//! shell gathers the addresses).
//!
//! Every email has a subject, a plain-text part (wrapped at [`TEXT_WIDTH`] columns, each link
//! on a line of its own) and an HTML part (one self-contained, inline-styled document, no
//! external resources; every interpolated value is escaped with [`escape_html`]).

use crate::access::{AccessState, Cause, Transition};
use crate::ledger::TransferKind;
use crate::money::Amount;
use crate::time::Timestamp;

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
}

impl NoticeKind {
    /// Every kind.
    pub const ALL: [NoticeKind; 11] = [
        NoticeKind::AccessTurnedOff,
        NoticeKind::AccessRestored,
        NoticeKind::BalanceLow,
        NoticeKind::CreditsAdded,
        NoticeKind::AutoReloadCharged,
        NoticeKind::AutoReloadFailed,
        NoticeKind::AutoReloadDisabled,
        NoticeKind::PaymentActionRequired,
        NoticeKind::CreditsExpiring,
        NoticeKind::MemberSignIn,
        NoticeKind::MemberInvited,
    ];

    /// The kind's stable name: the webhook event name and the outbox's kind column.
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::AccessTurnedOff => "access.turned_off",
            NoticeKind::AccessRestored => "access.restored",
            NoticeKind::BalanceLow => "balance.low",
            NoticeKind::CreditsAdded => "credits.added",
            NoticeKind::AutoReloadCharged => "auto_reload.charged",
            NoticeKind::AutoReloadFailed => "auto_reload.failed",
            NoticeKind::AutoReloadDisabled => "auto_reload.disabled",
            NoticeKind::PaymentActionRequired => "payment.action_required",
            NoticeKind::CreditsExpiring => "credits.expiring",
            NoticeKind::MemberSignIn => "member.sign_in",
            NoticeKind::MemberInvited => "member.invited",
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

/// The notice an access transition causes, if any.
///
/// * into `depleted` from any other state → [`NoticeKind::AccessTurnedOff`];
/// * from `depleted` to `active` or `low` → [`NoticeKind::AccessRestored`];
/// * otherwise, into `active` or `low` with a higher level (the balance fell below one more
///   threshold) → [`NoticeKind::BalanceLow`]: one per crossing, since the level counts the
///   thresholds the balance is below and rising back above a threshold lowers it again;
/// * anything else (into `suspended`, a falling level, no change of state) → `None`.
///
/// The creation of an org ([`Cause::Created`]) causes nothing: it starts from
/// [`crate::access::Access::INITIAL`], which is no access the org ever had, so there is
/// nothing to restore or turn off.
pub fn for_transition(transition: &Transition) -> Option<NoticeKind> {
    use AccessState::{Active, Depleted, Low};
    if transition.cause == Cause::Created {
        return None;
    }
    let (from, to) = (transition.from, transition.to);
    match (from.state, to.state) {
        (Depleted, Depleted) => None,
        (_, Depleted) => Some(NoticeKind::AccessTurnedOff),
        (Depleted, Active | Low) => Some(NoticeKind::AccessRestored),
        (_, Active | Low) if to.level > from.level => Some(NoticeKind::BalanceLow),
        _ => None,
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
    /// the charge or payment.
    pub amount: Option<Amount>,
    /// [`NoticeKind::CreditsAdded`], [`NoticeKind::AutoReloadCharged`]: the receipt number
    /// (the ledger transfer's id).
    pub receipt_id: Option<&'a str>,
    /// [`NoticeKind::AutoReloadFailed`], [`NoticeKind::AutoReloadDisabled`]: why the (last)
    /// charge failed, as a sentence for people ("Your card was declined."); the line is left
    /// out when `None` or blank.
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
    /// page, where a new link can be asked for.
    pub link: Option<&'a str>,
    /// [`NoticeKind::MemberInvited`]: the member's role as people read it ("Admin").
    pub member_role: Option<&'a str>,
    /// [`NoticeKind::MemberSignIn`], [`NoticeKind::MemberInvited`]: when the link stops
    /// working. [`NoticeKind::CreditsExpiring`]: when the grant's credits expire.
    pub expires_at: Option<Timestamp>,
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

/// `amount` in `currency` as a person reads it: "$12.50" for USD, "12.50 EUR" otherwise.
pub fn format_money(amount: Amount, currency: &str) -> String {
    if currency.eq_ignore_ascii_case("USD") {
        match amount.checked_neg() {
            Some(magnitude) if amount.is_negative() => format!("-${magnitude}"),
            // i64::MIN has no positive counterpart; its Display carries the sign.
            _ => format!("${amount}"),
        }
    } else {
        format!("{amount} {currency}")
    }
}

/// `at` as a person reads it, in UTC to the minute: "2026-11-24 14:05 UTC". Seconds are
/// dropped, not rounded, so the time shown is never later than `at`.
pub fn format_utc(at: Timestamp) -> String {
    const DAY_MS: i64 = 86_400_000;
    const MINUTE_MS: i64 = 60_000;
    let (year, month, day) = civil_from_days(at.unix_ms().div_euclid(DAY_MS));
    let minute_of_day = at.unix_ms().rem_euclid(DAY_MS) / MINUTE_MS;
    let (hour, minute) = (minute_of_day / 60, minute_of_day % 60);
    format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02} UTC")
}

/// `text` with `&`, `<`, `>`, `"` and `'` escaped, safe in HTML text and quoted attributes.
pub fn escape_html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            _ => escaped.push(c),
        }
    }
    escaped
}

/// One part of an email's body, rendered to both text and HTML.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Block {
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
struct Message {
    subject: String,
    heading: String,
    blocks: Vec<Block>,
    footer: String,
}

fn compose(kind: NoticeKind, context: &EmailContext) -> Message {
    let common = Common::new(context);
    match kind {
        NoticeKind::AccessTurnedOff => access_turned_off(&common),
        NoticeKind::AccessRestored => access_restored(&common),
        NoticeKind::BalanceLow => balance_low(&common),
        NoticeKind::CreditsAdded => credits_added(&common),
        NoticeKind::AutoReloadCharged => auto_reload_charged(&common),
        NoticeKind::AutoReloadFailed => auto_reload_failed(&common),
        NoticeKind::AutoReloadDisabled => auto_reload_disabled(&common),
        NoticeKind::PaymentActionRequired => payment_action_required(&common),
        NoticeKind::CreditsExpiring => credits_expiring(&common),
        NoticeKind::MemberSignIn => member_sign_in(&common),
        NoticeKind::MemberInvited => member_invited(&common),
    }
}

/// What every email draws on, worked out once from the context: names made safe for one
/// line, the base links and the shared blocks.
struct Common<'a> {
    context: EmailContext<'a>,
    product: String,
    org: String,
    /// The public URL without a trailing slash.
    base: &'a str,
    billing_url: String,
}

impl<'a> Common<'a> {
    fn new(context: &EmailContext<'a>) -> Common<'a> {
        let base = context.public_url.trim_end_matches('/');
        Common {
            context: *context,
            product: one_line(context.product_name),
            org: one_line(context.org_name),
            base,
            billing_url: format!("{base}/billing/{}", context.org_id),
        }
    }

    fn money(&self, amount: Amount) -> String {
        format_money(amount, self.context.currency)
    }

    /// Where the saved card and the auto-reload settings are changed.
    fn auto_reload_url(&self) -> String {
        format!("{}/auto-reload", self.billing_url)
    }

    fn balance(&self) -> Block {
        Block::Figure {
            label: "Available balance",
            value: self.money(self.context.available),
        }
    }

    fn help(&self) -> Block {
        Block::Link {
            lead: "Questions? See the help pages:",
            url: format!("{}/help", self.base),
        }
    }

    /// The receipt number's figure, when there is one.
    fn receipt(&self) -> Option<Block> {
        self.context.receipt_id.map(|receipt| Block::Figure {
            label: "Receipt number",
            value: one_line(receipt),
        })
    }

    /// The failure reason on one line; `None` when there is none or it is blank.
    fn failure_reason(&self) -> Option<String> {
        self.context
            .failure_reason
            .map(one_line)
            .filter(|reason| !reason.is_empty())
    }

    /// The message with the footer every org's email ends with.
    fn message(&self, subject: String, heading: &str, blocks: Vec<Block>) -> Message {
        let why = "you are a billing contact, owner or admin of";
        self.message_because(subject, heading, blocks, why)
    }

    /// The message with a footer saying why the reader gets it: "You receive this email
    /// because `why` <org> (<org id>) on <product>."
    fn message_because(
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
    fn sign_in_action(&self, lead: &str, button: &'static str) -> Block {
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
    fn link_validity(&self) -> String {
        match self.context.expires_at {
            Some(at) => format!("The link works once, until {}.", format_utc(at)),
            None => "The link works once, for a limited time.".to_owned(),
        }
    }
}

/// The recommendation of auto-reload, with its one line on what it does.
fn auto_reload_tip(lead: &str) -> Block {
    Block::Paragraph(format!(
        "{lead} turn on auto-reload on the Billing page. Credits are added automatically \
         when your balance reaches a minimum you choose."
    ))
}

/// The consequence of running out, for the emails that warn of it: "When `credits` run
/// out, …".
fn when_credits_run_out(common: &Common, credits: &str) -> String {
    format!(
        "When {credits} run out, its {} API access is turned off and API requests are \
         refused until credits are added.",
        common.product
    )
}

fn access_turned_off(common: &Common) -> Message {
    let Common { product, org, .. } = common;
    common.message(
        format!("[action needed] Your {product} API access is turned off"),
        "Your API access is turned off",
        vec![
            Block::Paragraph(format!(
                "{org} is out of usage credits, so its {product} API access is turned off: \
                 API requests from {org} are refused until credits are added."
            )),
            common.balance(),
            Block::Action {
                lead: "Add credits on the Billing page to turn access back on".to_owned(),
                button: "Add credits",
                url: common.billing_url.clone(),
            },
            auto_reload_tip("Avoid this next time:"),
            common.help(),
        ],
    )
}

fn access_restored(common: &Common) -> Message {
    let Common { product, org, .. } = common;
    common.message(
        format!("Your {product} API access is back on"),
        "Your API access is back on",
        vec![
            Block::Paragraph(format!(
                "{org} has new credits, and its {product} API access is back on: API \
                 requests are accepted again."
            )),
            common.balance(),
            Block::Action {
                lead: "See the balance and add credits on the Billing page".to_owned(),
                button: "Open the Billing page",
                url: common.billing_url.clone(),
            },
            common.help(),
        ],
    )
}

fn balance_low(common: &Common) -> Message {
    let Common { product, org, .. } = common;
    let below = match common.context.threshold {
        Some(threshold) => {
            format!(
                "The usage credits of {org} are below {}.",
                common.money(threshold)
            )
        }
        None => format!("The usage credits of {org} are running low."),
    };
    common.message(
        format!("Your {product} credit balance is low"),
        "Your credit balance is low",
        vec![
            Block::Paragraph(format!("{below} {}", when_credits_run_out(common, "they"))),
            common.balance(),
            Block::Action {
                lead: "Add credits on the Billing page".to_owned(),
                button: "Add credits",
                url: common.billing_url.clone(),
            },
            auto_reload_tip("Avoid running out:"),
            common.help(),
        ],
    )
}

fn credits_added(common: &Common) -> Message {
    let Common { product, org, .. } = common;
    let added = common
        .context
        .amount
        .map_or_else(|| "Credits".to_owned(), |amount| common.money(amount));
    let mut blocks = vec![
        Block::Paragraph(format!(
            "{added} of usage credits were added to {org} on {product}."
        )),
        Block::Figure {
            label: "Credits added",
            value: added.clone(),
        },
    ];
    blocks.extend(common.receipt());
    blocks.push(common.balance());
    blocks.push(Block::Action {
        lead: "See your balance and history on the Billing page".to_owned(),
        button: "Open the Billing page",
        url: common.billing_url.clone(),
    });
    blocks.push(common.help());
    common.message(
        format!("Receipt: {added} of {product} credits added"),
        "Credits added",
        blocks,
    )
}

fn auto_reload_charged(common: &Common) -> Message {
    let Common { product, org, .. } = common;
    let added = common.context.amount.map(|amount| common.money(amount));
    let (subject, credits) = match &added {
        Some(added) => (
            format!("Receipt: {added} of {product} credits added by auto-reload"),
            format!("{added} of usage credits were"),
        ),
        None => (
            format!("Receipt: {product} credits added by auto-reload"),
            "Usage credits were".to_owned(),
        ),
    };
    let threshold = match common.context.threshold {
        Some(threshold) => format!("the auto-reload threshold of {}", common.money(threshold)),
        None => "the auto-reload threshold".to_owned(),
    };
    let mut blocks = vec![Block::Paragraph(format!(
        "{credits} added to {org} on {product} by auto-reload: the saved card was charged \
         automatically because the balance reached {threshold}."
    ))];
    blocks.extend(added.map(|value| Block::Figure {
        label: "Credits added",
        value,
    }));
    blocks.extend(common.receipt());
    blocks.push(common.balance());
    blocks.push(Block::Action {
        lead: "See your balance and history, or change the auto-reload settings, on the \
               Billing page"
            .to_owned(),
        button: "Open the Billing page",
        url: common.billing_url.clone(),
    });
    blocks.push(common.help());
    common.message(subject, "Credits added by auto-reload", blocks)
}

fn auto_reload_failed(common: &Common) -> Message {
    let Common { product, org, .. } = common;
    let charge = match common.context.amount {
        Some(amount) => format!("the charge of {} on the saved card", common.money(amount)),
        None => "the charge on the saved card".to_owned(),
    };
    let mut blocks = vec![Block::Paragraph(format!(
        "Auto-reload could not add usage credits to {org} on {product}: {charge} failed."
    ))];
    blocks.extend(
        common
            .failure_reason()
            .map(|reason| Block::Paragraph(format!("Reason: {reason}"))),
    );
    let next = match common.context.next_attempt_at {
        Some(at) => format!(
            "The charge will be tried again at {}; update the card before then so that \
             it goes through.",
            format_utc(at)
        ),
        None => "The charge will not be tried again automatically.".to_owned(),
    };
    blocks.push(Block::Paragraph(next));
    blocks.push(Block::Paragraph(when_credits_run_out(
        common,
        &format!("the credits of {org}"),
    )));
    blocks.push(common.balance());
    blocks.push(Block::Action {
        lead: "Update the saved card on the Billing page".to_owned(),
        button: "Update your card",
        url: common.auto_reload_url(),
    });
    blocks.push(common.help());
    common.message(
        format!("[action needed] Auto-reload of your {product} credits failed"),
        "Auto-reload failed",
        blocks,
    )
}

fn auto_reload_disabled(common: &Common) -> Message {
    let Common { product, org, .. } = common;
    let mut blocks = vec![Block::Paragraph(format!(
        "Auto-reload for {org} on {product} was turned off after repeated failed charges on \
         the saved card."
    ))];
    blocks.extend(
        common
            .failure_reason()
            .map(|reason| Block::Paragraph(format!("Reason for the last failure: {reason}"))),
    );
    blocks.push(Block::Paragraph(format!(
        "Credits are no longer added automatically. {}",
        when_credits_run_out(common, &format!("the credits of {org}"))
    )));
    blocks.push(common.balance());
    blocks.push(Block::Action {
        lead: "Update the card and turn auto-reload back on from the Billing page".to_owned(),
        button: "Turn auto-reload back on",
        url: common.auto_reload_url(),
    });
    blocks.push(common.help());
    common.message(
        format!("[action needed] Auto-reload of your {product} credits is turned off"),
        "Auto-reload is turned off",
        blocks,
    )
}

fn payment_action_required(common: &Common) -> Message {
    let Common { product, org, .. } = common;
    let payment = match common.context.amount {
        Some(amount) => format!("A payment of {}", common.money(amount)),
        None => "A payment".to_owned(),
    };
    let action = match common.context.action_url.and_then(web_url) {
        Some(url) => Block::Action {
            lead: "Confirm the payment with your bank".to_owned(),
            button: "Confirm the payment",
            url: url.to_owned(),
        },
        None => Block::Action {
            lead: "Confirm the payment on the Billing page".to_owned(),
            button: "Open the Billing page",
            url: common.billing_url.clone(),
        },
    };
    common.message(
        format!("[action needed] Confirm your {product} payment"),
        "Confirm your payment",
        vec![
            Block::Paragraph(format!(
                "{payment} for usage credits of {org} on {product} needs the card holder's \
                 confirmation: the card's bank asked to authenticate it (for example with \
                 3-D Secure). The credits are added as soon as the payment is confirmed."
            )),
            common.balance(),
            action,
            common.help(),
        ],
    )
}

fn credits_expiring(common: &Common) -> Message {
    let Common { product, org, .. } = common;
    let expiring = common.context.amount.map(|amount| common.money(amount));
    let at = common.context.expires_at.map(format_utc);
    // The subject names the day ("2026-11-24 14:05 UTC" up to the space); the body the time.
    let day = at.as_deref().and_then(|at| at.split(' ').next());
    let subject = match (&expiring, day) {
        (Some(expiring), Some(day)) => {
            format!("{expiring} of your {product} credits expire on {day}")
        }
        (Some(expiring), None) => format!("{expiring} of your {product} credits expire soon"),
        (None, Some(day)) => format!("Some of your {product} credits expire on {day}"),
        (None, None) => format!("Some of your {product} credits expire soon"),
    };
    let credits = match &expiring {
        Some(expiring) => format!("{expiring} of the usage credits of {org} on {product} are"),
        None => format!("Some of the usage credits of {org} on {product} are"),
    };
    let when = match &at {
        Some(at) => format!("on {at}"),
        None => "soon".to_owned(),
    };
    let mut blocks = vec![Block::Paragraph(format!(
        "{credits} still unused and expire {when}. Use them before then: after that, they \
         are gone and no longer count towards the balance."
    ))];
    blocks.extend(expiring.map(|value| Block::Figure {
        label: "Credits expiring",
        value,
    }));
    blocks.extend(at.map(|value| Block::Figure {
        label: "Expires",
        value,
    }));
    blocks.push(common.balance());
    blocks.push(Block::Action {
        lead: "See your balance and credits on the Billing page".to_owned(),
        button: "Open the Billing page",
        url: common.billing_url.clone(),
    });
    blocks.push(common.help());
    common.message(subject, "Credits expire soon", blocks)
}

fn member_sign_in(common: &Common) -> Message {
    let Common { product, org, .. } = common;
    common.message_because(
        format!("Your sign-in link for {product} billing"),
        "Sign in to the Billing page",
        vec![
            Block::Paragraph(format!(
                "Here is the link you asked for to sign in to the Billing page of {org} on \
                 {product}. {}",
                common.link_validity()
            )),
            common.sign_in_action("Sign in to the Billing page", "Sign in"),
            Block::Paragraph(
                "If you didn't ask for this, ignore this email: nobody can sign in without \
                 the link."
                    .to_owned(),
            ),
            common.help(),
        ],
        "a sign-in link was asked for with your address, as a member of",
    )
}

fn member_invited(common: &Common) -> Message {
    let Common { product, org, .. } = common;
    let role = common
        .context
        .member_role
        .map(one_line)
        .filter(|role| !role.is_empty());
    let added = match &role {
        Some(role) => format!("You were added to {org} on {product} as {role}."),
        None => format!("You were added to {org} on {product}."),
    };
    let mut blocks = vec![Block::Paragraph(format!(
        "{added} Its Billing page shows the org's credits, usage and API keys, as far as \
         your role allows."
    ))];
    blocks.extend(role.map(|value| Block::Figure {
        label: "Role",
        value,
    }));
    blocks.push(Block::Paragraph(format!(
        "Accept the invitation by signing in with the link below. {}",
        common.link_validity()
    )));
    blocks.push(common.sign_in_action(
        "Accept the invitation and sign in to the Billing page",
        "Accept the invitation",
    ));
    blocks.push(Block::Paragraph(
        "If you didn't expect this invitation, ignore this email.".to_owned(),
    ));
    blocks.push(common.help());
    common.message_because(
        format!("You're invited to {org} on {product}"),
        &format!("You're invited to {org}"),
        blocks,
        "you were added as a member of",
    )
}

/// `url` when it can be a link's target: an absolute `https` or `http` URL without
/// whitespace or control characters (which would break the text part's link line). Anything
/// else — a `javascript:` URL above all — is refused rather than made a button.
fn web_url(url: &str) -> Option<&str> {
    let web = ["https://", "http://"].iter().any(|scheme| {
        url.get(..scheme.len())
            .is_some_and(|start| start.eq_ignore_ascii_case(scheme))
    });
    let one_word = !url.chars().any(|c| c.is_whitespace() || c.is_control());
    (web && one_word).then_some(url)
}

use crate::time::civil_from_days;

/// `text` on one line: every control character (line breaks included) becomes a space, and
/// runs of whitespace one space, so that a name cannot break a header or the layout.
fn one_line(text: &str) -> String {
    let spaced: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    spaced.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `text` wrapped at `width` columns on word boundaries (a longer word stays whole).
fn wrap(text: &str, width: usize) -> String {
    let mut wrapped = String::with_capacity(text.len());
    let mut column = 0;
    for word in text.split_whitespace() {
        let length = word.chars().count();
        if column > 0 && column + 1 + length > width {
            wrapped.push('\n');
            column = 0;
        }
        if column > 0 {
            wrapped.push(' ');
            column += 1;
        }
        wrapped.push_str(word);
        column += length;
    }
    wrapped
}

fn render_text(message: &Message) -> String {
    let mut parts: Vec<String> = Vec::with_capacity(message.blocks.len() + 1);
    for block in &message.blocks {
        parts.push(match block {
            Block::Paragraph(text) => wrap(text, TEXT_WIDTH),
            Block::Figure { label, value } => format!("{label}: {value}"),
            Block::Action { lead, url, .. } => format!("{}:\n{url}", wrap(lead, TEXT_WIDTH)),
            Block::Link { lead, url } => format!("{}\n{url}", wrap(lead, TEXT_WIDTH)),
        });
    }
    // "-- " (with the space) is the signature separator mail clients recognise.
    parts.push(format!("-- \n{}", wrap(&message.footer, TEXT_WIDTH)));
    let mut text = parts.join("\n\n");
    text.push('\n');
    text
}

const STYLE_BODY: &str = "margin:0;padding:0;background-color:#f4f4f5;";
const STYLE_CARD: &str = "max-width:600px;margin:0 auto;padding:32px 24px;\
    background-color:#ffffff;color:#18181b;\
    font-family:-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;\
    font-size:16px;line-height:1.5;";
const STYLE_HEADING: &str = "margin:0 0 16px;font-size:22px;line-height:1.3;color:#18181b;";
const STYLE_PARAGRAPH: &str = "margin:0 0 16px;";
const STYLE_FIGURE: &str = "margin:0 0 24px;font-size:18px;";
const STYLE_BUTTON_ROW: &str = "margin:0 0 24px;";
const STYLE_BUTTON: &str = "display:inline-block;padding:12px 24px;border-radius:6px;\
    background-color:#1d4ed8;color:#ffffff;font-weight:bold;text-decoration:none;";
const STYLE_LINK: &str = "color:#1d4ed8;text-decoration:underline;";
const STYLE_RULE: &str = "margin:32px 0 16px;border:0;border-top:1px solid #d4d4d8;";
const STYLE_FOOTER: &str = "margin:0;font-size:13px;color:#52525b;";

fn render_html(message: &Message) -> String {
    let subject = escape_html(&message.subject);
    let mut html = String::new();
    html.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n");
    html.push_str("<meta charset=\"utf-8\">\n");
    html.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    html.push_str(&format!("<title>{subject}</title>\n"));
    html.push_str("</head>\n");
    html.push_str(&format!("<body style=\"{STYLE_BODY}\">\n"));
    html.push_str(&format!(
        "<div role=\"article\" aria-label=\"{subject}\" style=\"{STYLE_CARD}\">\n"
    ));
    html.push_str(&format!(
        "<h1 style=\"{STYLE_HEADING}\">{}</h1>\n",
        escape_html(&message.heading)
    ));
    for block in &message.blocks {
        let line = match block {
            Block::Paragraph(text) => {
                format!("<p style=\"{STYLE_PARAGRAPH}\">{}</p>", escape_html(text))
            }
            Block::Figure { label, value } => format!(
                "<p style=\"{STYLE_FIGURE}\">{}: <strong>{}</strong></p>",
                escape_html(label),
                escape_html(value)
            ),
            Block::Action { lead, button, url } => format!(
                "<p style=\"{STYLE_PARAGRAPH}\">{}.</p>\n\
                 <p style=\"{STYLE_BUTTON_ROW}\"><a href=\"{}\" style=\"{STYLE_BUTTON}\">{}</a></p>",
                escape_html(lead),
                escape_html(url),
                escape_html(button)
            ),
            Block::Link { lead, url } => {
                let url = escape_html(url);
                format!(
                    "<p style=\"{STYLE_PARAGRAPH}\">{} <a href=\"{url}\" style=\"{STYLE_LINK}\">{url}</a></p>",
                    escape_html(lead)
                )
            }
        };
        html.push_str(&line);
        html.push('\n');
    }
    html.push_str(&format!("<hr style=\"{STYLE_RULE}\">\n"));
    html.push_str(&format!(
        "<p style=\"{STYLE_FOOTER}\">{}</p>\n",
        escape_html(&message.footer)
    ));
    html.push_str("</div>\n</body>\n</html>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::Access;
    use std::path::PathBuf;

    fn amount(text: &str) -> Amount {
        text.parse().unwrap()
    }

    fn access(state: AccessState, level: u32) -> Access {
        Access { state, level }
    }

    #[test]
    fn names_round_trip() {
        for kind in NoticeKind::ALL {
            assert_eq!(NoticeKind::parse(kind.as_str()), Some(kind));
        }
        let names: Vec<&str> = NoticeKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "access.turned_off",
                "access.restored",
                "balance.low",
                "credits.added",
                "auto_reload.charged",
                "auto_reload.failed",
                "auto_reload.disabled",
                "payment.action_required",
                "credits.expiring",
                "member.sign_in",
                "member.invited",
            ]
        );
        let for_member: Vec<NoticeKind> = NoticeKind::ALL
            .into_iter()
            .filter(|kind| kind.is_for_member())
            .collect();
        assert_eq!(
            for_member,
            [NoticeKind::MemberSignIn, NoticeKind::MemberInvited]
        );
        assert_eq!(NoticeKind::parse("Access.Turned_Off"), None);
        assert_eq!(NoticeKind::parse(""), None);
        assert_eq!(NoticeKind::parse("balance.low "), None);
    }

    #[test]
    fn for_transition_table() {
        use AccessState::{Active, Depleted, Low, Suspended};
        use NoticeKind::{AccessRestored, AccessTurnedOff, BalanceLow};
        // (from, to, cause) → notice
        type Row = (
            (AccessState, u32),
            (AccessState, u32),
            Cause,
            Option<NoticeKind>,
        );
        let table: &[Row] = &[
            // Running out, from every other state.
            (
                (Active, 0),
                (Depleted, 0),
                Cause::Balance,
                Some(AccessTurnedOff),
            ),
            (
                (Active, 0),
                (Depleted, 2),
                Cause::Balance,
                Some(AccessTurnedOff),
            ),
            (
                (Low, 1),
                (Depleted, 1),
                Cause::Balance,
                Some(AccessTurnedOff),
            ),
            (
                (Low, 2),
                (Depleted, 2),
                Cause::Balance,
                Some(AccessTurnedOff),
            ),
            (
                (Low, 1),
                (Depleted, 2),
                Cause::Balance,
                Some(AccessTurnedOff),
            ),
            (
                (Active, 0),
                (Depleted, 0),
                Cause::Settings,
                Some(AccessTurnedOff),
            ),
            (
                (Suspended, 0),
                (Depleted, 0),
                Cause::Unsuspended,
                Some(AccessTurnedOff),
            ),
            (
                (Suspended, 1),
                (Depleted, 1),
                Cause::Unsuspended,
                Some(AccessTurnedOff),
            ),
            // Staying depleted: never a second "turned off".
            ((Depleted, 0), (Depleted, 1), Cause::Balance, None),
            ((Depleted, 2), (Depleted, 1), Cause::Balance, None),
            ((Depleted, 0), (Depleted, 1), Cause::Settings, None),
            // Credits landing.
            (
                (Depleted, 0),
                (Active, 0),
                Cause::Balance,
                Some(AccessRestored),
            ),
            (
                (Depleted, 2),
                (Active, 0),
                Cause::Balance,
                Some(AccessRestored),
            ),
            (
                (Depleted, 2),
                (Low, 1),
                Cause::Balance,
                Some(AccessRestored),
            ),
            (
                (Depleted, 1),
                (Low, 1),
                Cause::Balance,
                Some(AccessRestored),
            ),
            (
                (Depleted, 0),
                (Low, 1),
                Cause::Settings,
                Some(AccessRestored),
            ),
            // Crossing a threshold downward: one each.
            ((Active, 0), (Low, 1), Cause::Balance, Some(BalanceLow)),
            ((Low, 1), (Low, 2), Cause::Balance, Some(BalanceLow)),
            ((Low, 2), (Low, 3), Cause::Balance, Some(BalanceLow)),
            ((Active, 0), (Low, 2), Cause::Balance, Some(BalanceLow)),
            ((Active, 0), (Low, 1), Cause::Settings, Some(BalanceLow)),
            (
                (Suspended, 0),
                (Low, 1),
                Cause::Unsuspended,
                Some(BalanceLow),
            ),
            // Rising back: re-arms, says nothing.
            ((Low, 2), (Low, 1), Cause::Balance, None),
            ((Low, 1), (Active, 0), Cause::Balance, None),
            ((Low, 2), (Active, 0), Cause::Settings, None),
            // Suspension and its lifting.
            ((Active, 0), (Suspended, 0), Cause::Suspended, None),
            ((Low, 1), (Suspended, 1), Cause::Suspended, None),
            ((Depleted, 0), (Suspended, 0), Cause::Suspended, None),
            ((Suspended, 0), (Suspended, 1), Cause::Balance, None),
            ((Suspended, 1), (Suspended, 0), Cause::Balance, None),
            ((Suspended, 0), (Active, 0), Cause::Unsuspended, None),
            ((Suspended, 1), (Low, 1), Cause::Unsuspended, None),
            ((Suspended, 2), (Low, 1), Cause::Unsuspended, None),
            // Creation: nothing to turn off or restore.
            ((Depleted, 0), (Depleted, 0), Cause::Created, None),
            ((Depleted, 0), (Depleted, 1), Cause::Created, None),
            ((Depleted, 0), (Active, 0), Cause::Created, None),
            ((Depleted, 0), (Low, 1), Cause::Created, None),
            ((Depleted, 0), (Suspended, 0), Cause::Created, None),
        ];
        for &((from_state, from_level), (to_state, to_level), cause, expected) in table {
            let transition = Transition {
                from: access(from_state, from_level),
                to: access(to_state, to_level),
                cause,
                available: Amount::ZERO,
            };
            assert_eq!(
                for_transition(&transition),
                expected,
                "{from_state:?}/{from_level} → {to_state:?}/{to_level} ({cause:?})"
            );
        }
    }

    /// The notices a walk of balances causes under real derivation: one per crossing.
    #[test]
    fn notices_along_a_balance_walk() {
        use crate::access::{transition, AccessPolicy};
        let policy = AccessPolicy {
            suspended: false,
            floor: Amount::ZERO,
            low_thresholds: vec![amount("10"), amount("5")],
        };
        let walk = [
            ("20", None),
            ("9", Some(NoticeKind::BalanceLow)),
            ("8", None),
            ("4", Some(NoticeKind::BalanceLow)),
            ("6", None),
            ("4.50", Some(NoticeKind::BalanceLow)),
            ("0", Some(NoticeKind::AccessTurnedOff)),
            ("-0.02", None),
            ("3", Some(NoticeKind::AccessRestored)),
            ("11", None),
            ("9.99", Some(NoticeKind::BalanceLow)),
        ];
        let mut current = crate::access::derive(amount("20"), &policy);
        for (available, expected) in walk {
            let notice =
                transition(current, amount(available), &policy, Cause::Balance).and_then(|t| {
                    current = t.to;
                    for_transition(&t)
                });
            assert_eq!(notice, expected, "balance {available}");
        }
    }

    #[test]
    fn for_credit_table() {
        use NoticeKind::{AutoReloadCharged, CreditsAdded};
        let table = [
            (TransferKind::Purchase, Some(CreditsAdded)),
            (TransferKind::AutoReload, Some(AutoReloadCharged)),
            (TransferKind::Grant, Some(CreditsAdded)),
            (TransferKind::Usage, None),
            (TransferKind::Refund, None),
            (TransferKind::Adjustment, None),
            (TransferKind::Expiry, None),
        ];
        assert_eq!(table.len(), TransferKind::ALL.len(), "every transfer kind");
        for (kind, expected) in table {
            assert_eq!(for_credit(kind), expected, "{kind:?}");
        }
    }

    #[test]
    fn utc_formats() {
        // (unix ms, as shown)
        let table = [
            (0, "1970-01-01 00:00 UTC"),
            (59_999, "1970-01-01 00:00 UTC"),
            (60_000, "1970-01-01 00:01 UTC"),
            (-1, "1969-12-31 23:59 UTC"),
            (951_782_400_000, "2000-02-29 00:00 UTC"), // leap day of a leap century
            (1_709_210_096_789, "2024-02-29 12:34 UTC"), // leap day
            (1_735_689_599_999, "2024-12-31 23:59 UTC"), // end of a leap year
            (1_735_689_600_000, "2025-01-01 00:00 UTC"),
            (1_795_529_100_000, "2026-11-24 14:05 UTC"),
            (4_107_542_340_000, "2100-02-28 23:59 UTC"), // 2100 is no leap year
            (4_107_542_400_000, "2100-03-01 00:00 UTC"),
        ];
        for (unix_ms, expected) in table {
            assert_eq!(
                format_utc(Timestamp::from_unix_ms(unix_ms)),
                expected,
                "{unix_ms}"
            );
        }
    }

    #[test]
    fn money_formats() {
        let table = [
            ("12.50", "USD", "$12.50"),
            ("12.5", "usd", "$12.50"),
            ("0", "USD", "$0.00"),
            ("0.000375", "USD", "$0.000375"),
            ("-0.02", "USD", "-$0.02"),
            ("1000000", "USD", "$1000000.00"),
            ("12.50", "EUR", "12.50 EUR"),
            ("-3", "EUR", "-3.00 EUR"),
        ];
        for (value, currency, expected) in table {
            assert_eq!(format_money(amount(value), currency), expected);
        }
        assert_eq!(
            format_money(Amount::from_micros(i64::MIN), "USD"),
            "$-9223372036854.775808"
        );
    }

    #[test]
    fn escapes_html() {
        assert_eq!(
            escape_html("<script>alert('x')</script> & \"Co\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;Co&quot;"
        );
        assert_eq!(escape_html("plain ünïcode"), "plain ünïcode");
        assert_eq!(escape_html("&amp;"), "&amp;amp;");
    }

    #[test]
    fn wraps_text() {
        assert_eq!(wrap("a b c", 3), "a b\nc");
        assert_eq!(wrap("  spaced   out  ", 72), "spaced out");
        assert_eq!(
            wrap("short https://a.very.long/url here", 8),
            "short\nhttps://a.very.long/url\nhere"
        );
        assert_eq!(wrap("", 72), "");
    }

    fn context() -> EmailContext<'static> {
        EmailContext {
            product_name: "Acme AI",
            org_name: "Initech",
            org_id: "org_01HX3Q9R7C5B2N8M4K6J0T1V2W",
            public_url: "https://api.acme.example",
            available: Amount::ZERO,
            currency: "USD",
            threshold: None,
            amount: None,
            receipt_id: None,
            failure_reason: None,
            next_attempt_at: None,
            action_url: None,
            link: None,
            member_role: None,
            expires_at: None,
        }
    }

    /// The example sign-in link (a secret of the length the shell makes).
    const SIGN_IN_URL: &str =
        "https://api.acme.example/billing/auth/sgn_7Qm2XrT9vKcL4pZ8nW3yB6dF1hJ5sA0e";

    /// When the example links and credits expire: 2026-11-24 14:05 UTC.
    fn expiry() -> Timestamp {
        Timestamp::from_unix_ms(1_795_529_100_000)
    }

    /// Where the example payment is confirmed (with a `&`, which HTML must escape).
    const CONFIRM_URL: &str =
        "https://pay.example/authenticate/pi_3QxYz8K2eZvKYlo2C?client=email&step=1";

    /// The emails the snapshots hold: one of each kind.
    fn examples() -> [(NoticeKind, &'static str, Email); 11] {
        let turned_off = EmailContext {
            available: Amount::ZERO,
            ..context()
        };
        let restored = EmailContext {
            available: amount("12.50"),
            ..context()
        };
        let low = EmailContext {
            available: amount("4.99"),
            threshold: Some(amount("5")),
            ..context()
        };
        let receipt = EmailContext {
            available: amount("25.00"),
            amount: Some(amount("20.00")),
            receipt_id: Some("txn_4f1c2a9e"),
            ..context()
        };
        let charged = EmailContext {
            available: amount("25.00"),
            threshold: Some(amount("5")),
            amount: Some(amount("20.00")),
            receipt_id: Some("txn_9b7d3e21"),
            ..context()
        };
        let failed = EmailContext {
            available: amount("4.20"),
            amount: Some(amount("20.00")),
            failure_reason: Some("Your card was declined."),
            next_attempt_at: Some(Timestamp::from_unix_ms(1_795_529_100_000)),
            ..context()
        };
        let disabled = EmailContext {
            available: amount("1.75"),
            failure_reason: Some("Your card has expired."),
            ..context()
        };
        let confirm = EmailContext {
            available: amount("3.10"),
            amount: Some(amount("50.00")),
            action_url: Some(CONFIRM_URL),
            ..context()
        };
        let expiring = EmailContext {
            available: amount("42.00"),
            amount: Some(amount("20.00")),
            expires_at: Some(expiry()),
            ..context()
        };
        let sign_in = EmailContext {
            link: Some(SIGN_IN_URL),
            expires_at: Some(Timestamp::from_unix_ms(1_795_529_100_000 + 15 * 60_000)),
            ..context()
        };
        let invited = EmailContext {
            link: Some(SIGN_IN_URL),
            member_role: Some("Developer"),
            expires_at: Some(expiry()),
            ..context()
        };
        [
            (
                NoticeKind::AccessTurnedOff,
                "access_turned_off",
                render(NoticeKind::AccessTurnedOff, &turned_off),
            ),
            (
                NoticeKind::AccessRestored,
                "access_restored",
                render(NoticeKind::AccessRestored, &restored),
            ),
            (
                NoticeKind::BalanceLow,
                "balance_low",
                render(NoticeKind::BalanceLow, &low),
            ),
            (
                NoticeKind::CreditsAdded,
                "credits_added",
                render(NoticeKind::CreditsAdded, &receipt),
            ),
            (
                NoticeKind::AutoReloadCharged,
                "auto_reload_charged",
                render(NoticeKind::AutoReloadCharged, &charged),
            ),
            (
                NoticeKind::AutoReloadFailed,
                "auto_reload_failed",
                render(NoticeKind::AutoReloadFailed, &failed),
            ),
            (
                NoticeKind::AutoReloadDisabled,
                "auto_reload_disabled",
                render(NoticeKind::AutoReloadDisabled, &disabled),
            ),
            (
                NoticeKind::PaymentActionRequired,
                "payment_action_required",
                render(NoticeKind::PaymentActionRequired, &confirm),
            ),
            (
                NoticeKind::CreditsExpiring,
                "credits_expiring",
                render(NoticeKind::CreditsExpiring, &expiring),
            ),
            (
                NoticeKind::MemberSignIn,
                "member_sign_in",
                render(NoticeKind::MemberSignIn, &sign_in),
            ),
            (
                NoticeKind::MemberInvited,
                "member_invited",
                render(NoticeKind::MemberInvited, &invited),
            ),
        ]
    }

    #[test]
    fn subjects_are_exact() {
        let subjects: Vec<String> = examples().into_iter().map(|(_, _, e)| e.subject).collect();
        assert_eq!(
            subjects,
            [
                "[action needed] Your Acme AI API access is turned off",
                "Your Acme AI API access is back on",
                "Your Acme AI credit balance is low",
                "Receipt: $20.00 of Acme AI credits added",
                "Receipt: $20.00 of Acme AI credits added by auto-reload",
                "[action needed] Auto-reload of your Acme AI credits failed",
                "[action needed] Auto-reload of your Acme AI credits is turned off",
                "[action needed] Confirm your Acme AI payment",
                "$20.00 of your Acme AI credits expire on 2026-11-24",
                "Your sign-in link for Acme AI billing",
                "You're invited to Initech on Acme AI",
            ]
        );
        // A product name cannot break the header.
        let hostile = EmailContext {
            product_name: "Acme\r\nBcc: victim@example.com",
            ..context()
        };
        assert_eq!(
            render(NoticeKind::AccessTurnedOff, &hostile).subject,
            "[action needed] Your Acme Bcc: victim@example.com API access is turned off"
        );
    }

    #[test]
    fn examples_cover_every_kind_once() {
        let kinds: Vec<NoticeKind> = examples().into_iter().map(|(kind, _, _)| kind).collect();
        assert_eq!(kinds, NoticeKind::ALL);
    }

    #[test]
    fn snapshots() {
        for (_, name, email) in examples() {
            check_snapshot(&format!("{name}.txt"), &email.text);
            check_snapshot(&format!("{name}.html"), &email.html);
        }
    }

    #[test]
    fn required_content() {
        let billing = "https://api.acme.example/billing/org_01HX3Q9R7C5B2N8M4K6J0T1V2W";
        let auto_reload_settings = format!("{billing}/auto-reload");
        let help = "https://api.acme.example/help";
        let auto_reload =
            "credits are added automatically when your balance reaches a minimum you choose";
        for (kind, _, email) in examples() {
            let text = email.text.replace('\n', " ");
            let lines: Vec<&str> = email.text.lines().collect();
            let main_link = match kind {
                NoticeKind::AutoReloadFailed | NoticeKind::AutoReloadDisabled => {
                    auto_reload_settings.as_str()
                }
                NoticeKind::PaymentActionRequired => CONFIRM_URL,
                NoticeKind::MemberSignIn | NoticeKind::MemberInvited => SIGN_IN_URL,
                _ => billing,
            };
            assert!(
                lines.contains(&main_link),
                "{kind:?}: main link on its own line"
            );
            assert!(lines.contains(&help), "{kind:?}: help link on its own line");
            assert!(
                email
                    .html
                    .contains(&format!("href=\"{}\"", escape_html(main_link))),
                "{kind:?}: main link in HTML"
            );
            assert!(
                lines.iter().all(|line| !line.ends_with(": ")),
                "{kind:?}: no empty figure"
            );
            // A link longer than the width stays whole, on its own line.
            let link = |line: &str| line.starts_with("https://") && !line.contains(' ');
            assert!(
                lines
                    .iter()
                    .all(|l| l.chars().count() <= TEXT_WIDTH || link(l)),
                "{kind:?}: wrapped"
            );
            let footer = if kind.is_for_member() {
                "a member of Initech (org_01HX3Q9R7C5B2N8M4K6J0T1V2W) on Acme AI."
            } else {
                "a billing contact, owner or admin of Initech (org_01HX3Q9R7C5B2N8M4K6J0T1V2W) \
                 on Acme AI."
            };
            assert!(text.ends_with(&format!("{footer} ")), "{kind:?}: footer");
            // Member emails are about signing in, not about the org's money.
            assert_eq!(
                text.contains("Available balance:"),
                !kind.is_for_member(),
                "{kind:?}: balance"
            );
            assert!(
                !email.html.contains("src="),
                "{kind:?}: no external resources"
            );
            assert!(
                !email.html.contains("<link"),
                "{kind:?}: no external resources"
            );
            let recommends = text.to_lowercase().contains(auto_reload);
            assert_eq!(
                recommends,
                matches!(kind, NoticeKind::AccessTurnedOff | NoticeKind::BalanceLow),
                "{kind:?}: auto-reload line"
            );
            match kind {
                NoticeKind::AccessTurnedOff => {
                    assert!(text.contains("Initech is out of usage credits"));
                    assert!(text.contains("API access is turned off"));
                    assert!(text.contains("refused until credits are added"));
                }
                NoticeKind::AccessRestored => {
                    assert!(text.contains("API access is back on"));
                    assert!(lines.contains(&"Available balance: $12.50"));
                }
                NoticeKind::CreditsAdded => {
                    assert!(lines.contains(&"Credits added: $20.00"));
                    assert!(lines.contains(&"Receipt number: txn_4f1c2a9e"));
                    assert!(lines.contains(&"Available balance: $25.00"));
                    assert_eq!(email.subject, "Receipt: $20.00 of Acme AI credits added");
                }
                NoticeKind::BalanceLow => {
                    assert!(text.contains("below $5.00"));
                    assert!(lines.contains(&"Available balance: $4.99"));
                }
                NoticeKind::AutoReloadCharged => {
                    assert!(text.contains(
                        "the saved card was charged automatically because the balance \
                         reached the auto-reload threshold of $5.00."
                    ));
                    assert!(lines.contains(&"Credits added: $20.00"));
                    assert!(lines.contains(&"Receipt number: txn_9b7d3e21"));
                    assert!(lines.contains(&"Available balance: $25.00"));
                    assert!(text.contains("change the auto-reload settings"));
                }
                NoticeKind::AutoReloadFailed => {
                    assert!(text.contains("the charge of $20.00 on the saved card failed."));
                    assert!(lines.contains(&"Reason: Your card was declined."));
                    assert!(text.contains("tried again at 2026-11-24 14:05 UTC;"));
                    assert!(text.contains("API access is turned off"));
                    assert!(lines.contains(&"Available balance: $4.20"));
                    assert!(email.html.contains(">Update your card</a>"));
                }
                NoticeKind::AutoReloadDisabled => {
                    assert!(text.contains("turned off after repeated failed charges"));
                    assert!(lines.contains(&"Reason for the last failure: Your card has expired."));
                    assert!(text.contains("Credits are no longer added automatically."));
                    assert!(text.contains("API access is turned off"));
                    assert!(lines.contains(&"Available balance: $1.75"));
                    assert!(email.html.contains(">Turn auto-reload back on</a>"));
                }
                NoticeKind::PaymentActionRequired => {
                    assert!(text.contains("A payment of $50.00 for usage credits of Initech"));
                    assert!(text.contains("3-D Secure"));
                    assert!(text.contains("credits are added as soon as the payment is confirmed"));
                    assert!(lines.contains(&"Available balance: $3.10"));
                    assert!(email.html.contains(">Confirm the payment</a>"));
                    assert!(!text.contains(billing), "links to the confirmation only");
                }
                NoticeKind::CreditsExpiring => {
                    assert!(text.contains(
                        "$20.00 of the usage credits of Initech on Acme AI are still unused \
                         and expire on 2026-11-24 14:05 UTC."
                    ));
                    assert!(text.contains("after that, they are gone"));
                    assert!(lines.contains(&"Credits expiring: $20.00"));
                    assert!(lines.contains(&"Expires: 2026-11-24 14:05 UTC"));
                    assert!(lines.contains(&"Available balance: $42.00"));
                    assert!(email.html.contains(">Open the Billing page</a>"));
                }
                NoticeKind::MemberSignIn => {
                    assert!(text.contains("sign in to the Billing page of Initech on Acme AI"));
                    assert!(text.contains("The link works once, until 2026-11-24 14:20 UTC."));
                    assert!(text.contains("If you didn't ask for this, ignore this email"));
                    assert!(email.html.contains(">Sign in</a>"));
                    assert!(!text.contains(billing), "links to the sign-in only");
                }
                NoticeKind::MemberInvited => {
                    assert!(text.contains("You were added to Initech on Acme AI as Developer."));
                    assert!(lines.contains(&"Role: Developer"));
                    assert!(text.contains("The link works once, until 2026-11-24 14:05 UTC."));
                    assert!(email.html.contains(">Accept the invitation</a>"));
                    assert!(!text.contains(billing), "links to the sign-in only");
                }
            }
        }
    }

    #[test]
    fn other_currencies_and_a_missing_threshold() {
        let euros = EmailContext {
            currency: "EUR",
            available: amount("4.99"),
            threshold: Some(amount("5")),
            ..context()
        };
        let email = render(NoticeKind::BalanceLow, &euros);
        assert!(email.text.contains("below 5.00 EUR."));
        assert!(email.text.contains("Available balance: 4.99 EUR\n"));
        assert!(email.html.contains("<strong>4.99 EUR</strong>"));

        let no_threshold = EmailContext {
            available: amount("4.99"),
            ..context()
        };
        let email = render(NoticeKind::BalanceLow, &no_threshold);
        assert!(email
            .text
            .contains("The usage credits of Initech are running low."));
    }

    #[test]
    fn a_trailing_slash_on_the_public_url_is_dropped() {
        let slashed = EmailContext {
            public_url: "https://api.acme.example/",
            ..context()
        };
        assert_eq!(
            render(NoticeKind::AccessTurnedOff, &slashed),
            render(NoticeKind::AccessTurnedOff, &context())
        );
    }

    #[test]
    fn interpolated_values_are_escaped_in_html() {
        let hostile = EmailContext {
            product_name: "Acme <b>AI</b>",
            org_name: "<script>alert(1)</script> & Sons \"Ltd\"",
            org_id: "org_1\"><img src=x>",
            public_url: "https://api.acme.example?a=1&b=2",
            ..context()
        };
        for kind in NoticeKind::ALL {
            let email = render(kind, &hostile);
            let html = &email.html;
            assert!(!html.contains("<script>"), "{kind:?}");
            assert!(!html.contains("<b>"), "{kind:?}");
            assert!(!html.contains("<img"), "{kind:?}");
            assert!(!html.contains("\"Ltd\""), "{kind:?}");
            assert!(!html.contains("&b=2"), "{kind:?}");
            assert!(
                html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; Sons &quot;Ltd&quot;"),
                "{kind:?}"
            );
            assert!(html.contains("Acme &lt;b&gt;AI&lt;/b&gt;"), "{kind:?}");
            let billing =
                "https://api.acme.example?a=1&amp;b=2/billing/org_1&quot;&gt;&lt;img src=x&gt;";
            let main_link = match kind {
                NoticeKind::AutoReloadFailed | NoticeKind::AutoReloadDisabled => {
                    format!("{billing}/auto-reload")
                }
                _ => billing.to_owned(),
            };
            assert!(html.contains(&format!("href=\"{main_link}\"")), "{kind:?}");
            assert_only_entities(html, kind);
            // The text part is plain: the name as it is.
            assert!(email
                .text
                .contains("<script>alert(1)</script> & Sons \"Ltd\""));
        }
    }

    #[test]
    fn failure_reasons_and_action_urls_are_escaped_in_html() {
        let hostile = EmailContext {
            failure_reason: Some("<b>Declined</b> & \"gone\""),
            action_url: Some("https://pay.example/confirm?a=1&b=\"><script>x</script>"),
            ..context()
        };
        for kind in [NoticeKind::AutoReloadFailed, NoticeKind::AutoReloadDisabled] {
            let email = render(kind, &hostile);
            assert!(!email.html.contains("<b>"), "{kind:?}");
            assert!(
                email
                    .html
                    .contains("&lt;b&gt;Declined&lt;/b&gt; &amp; &quot;gone&quot;"),
                "{kind:?}"
            );
            assert_only_entities(&email.html, kind);
            assert!(
                email.text.contains("<b>Declined</b> & \"gone\""),
                "{kind:?}"
            );
        }
        let kind = NoticeKind::PaymentActionRequired;
        let email = render(kind, &hostile);
        assert!(!email.html.contains("<script>"));
        assert!(email.html.contains(
            "href=\"https://pay.example/confirm?a=1&amp;b=&quot;&gt;&lt;script&gt;x&lt;/script&gt;\""
        ));
        assert_only_entities(&email.html, kind);
        assert!(email
            .text
            .lines()
            .any(|line| line == "https://pay.example/confirm?a=1&b=\"><script>x</script>"));
    }

    #[test]
    fn payment_emails_without_optional_values() {
        let billing = "https://api.acme.example/billing/org_01HX3Q9R7C5B2N8M4K6J0T1V2W";
        // Auto-reload charged: no amount, threshold or receipt number.
        let email = render(NoticeKind::AutoReloadCharged, &context());
        assert_eq!(
            email.subject,
            "Receipt: Acme AI credits added by auto-reload"
        );
        let text = email.text.replace('\n', " ");
        assert!(text.starts_with("Usage credits were added to Initech on Acme AI by auto-reload:"));
        assert!(text.contains("because the balance reached the auto-reload threshold."));
        assert!(!text.contains("Credits added:"));
        assert!(!text.contains("Receipt number:"));

        // Auto-reload failed: no amount, no reason (missing or blank), no next try.
        for reason in [None, Some(""), Some(" \r\n ")] {
            let email = render(
                NoticeKind::AutoReloadFailed,
                &EmailContext {
                    failure_reason: reason,
                    ..context()
                },
            );
            let text = email.text.replace('\n', " ");
            assert!(!text.contains("Reason"), "{reason:?}");
            assert!(text.contains("the charge on the saved card failed."));
            assert!(text.contains("The charge will not be tried again automatically."));
            assert!(!text.contains("UTC"));
        }
        // A reason with line breaks stays on one line.
        let email = render(
            NoticeKind::AutoReloadFailed,
            &EmailContext {
                failure_reason: Some("Your card\r\nwas declined."),
                ..context()
            },
        );
        assert!(email
            .text
            .lines()
            .any(|l| l == "Reason: Your card was declined."));

        // Auto-reload turned off: no reason.
        let email = render(NoticeKind::AutoReloadDisabled, &context());
        let text = email.text.replace('\n', " ");
        assert!(!text.contains("Reason"));
        assert!(text.contains("turned off after repeated failed charges"));

        // Payment needing confirmation: no URL, or one not fit for a link → the Billing page.
        let fallback = render(NoticeKind::PaymentActionRequired, &context());
        assert!(fallback.text.lines().any(|l| l == billing));
        assert!(fallback
            .text
            .contains("Confirm the payment on the Billing page:\n"));
        assert!(fallback
            .text
            .contains("A payment for usage credits of Initech"));
        for unfit in [
            "javascript:alert(1)",
            "https://pay.example/a b",
            "https://pay.example/a\nb",
            "pay.example/confirm",
            "",
        ] {
            let email = render(
                NoticeKind::PaymentActionRequired,
                &EmailContext {
                    action_url: Some(unfit),
                    ..context()
                },
            );
            assert_eq!(email, fallback, "{unfit:?}");
        }
        let email = render(
            NoticeKind::PaymentActionRequired,
            &EmailContext {
                action_url: Some("HTTP://localhost:8080/confirm"),
                ..context()
            },
        );
        assert!(email
            .text
            .lines()
            .any(|l| l == "HTTP://localhost:8080/confirm"));
        assert!(!email.text.contains(billing));
    }

    #[test]
    fn member_emails_escape_their_link_and_role() {
        let hostile = EmailContext {
            link: Some("https://api.acme.example/billing/auth/a&b=\"><script>x</script>"),
            member_role: Some("<b>Owner</b>\r\nBcc: x"),
            expires_at: Some(expiry()),
            ..context()
        };
        for kind in [NoticeKind::MemberSignIn, NoticeKind::MemberInvited] {
            let email = render(kind, &hostile);
            assert!(!email.html.contains("<script>"), "{kind:?}");
            assert!(!email.html.contains("<b>"), "{kind:?}");
            assert!(
                email.html.contains(
                    "href=\"https://api.acme.example/billing/auth/a&amp;b=&quot;&gt;&lt;script&gt;x&lt;/script&gt;\""
                ),
                "{kind:?}"
            );
            assert_only_entities(&email.html, kind);
            assert!(email
                .text
                .lines()
                .any(|l| l == "https://api.acme.example/billing/auth/a&b=\"><script>x</script>"));
        }
        let email = render(NoticeKind::MemberInvited, &hostile);
        assert!(email.text.contains("Role: <b>Owner</b> Bcc: x\n"));
        assert!(email.html.contains("&lt;b&gt;Owner&lt;/b&gt; Bcc: x"));
    }

    #[test]
    fn member_emails_without_optional_values() {
        let billing = "https://api.acme.example/billing/org_01HX3Q9R7C5B2N8M4K6J0T1V2W";
        for kind in [NoticeKind::MemberSignIn, NoticeKind::MemberInvited] {
            // No link: the Billing page, where a new one can be asked for.
            let email = render(kind, &context());
            assert!(email.text.lines().any(|l| l == billing), "{kind:?}");
            assert!(
                email
                    .text
                    .contains("Ask for a sign-in link on the Billing page:\n"),
                "{kind:?}"
            );
            assert!(
                email
                    .text
                    .replace('\n', " ")
                    .contains("The link works once, for a limited time."),
                "{kind:?}"
            );
            assert!(!email.text.contains("UTC"), "{kind:?}");
        }
        // No role, or a blank one: no role line.
        for role in [None, Some(""), Some(" \r\n ")] {
            let email = render(
                NoticeKind::MemberInvited,
                &EmailContext {
                    member_role: role,
                    ..context()
                },
            );
            let text = email.text.replace('\n', " ");
            assert!(!text.contains("Role"), "{role:?}");
            assert!(
                text.contains("You were added to Initech on Acme AI."),
                "{role:?}"
            );
        }
    }

    #[test]
    fn credits_expiring_without_optional_values() {
        let email = render(NoticeKind::CreditsExpiring, &context());
        assert_eq!(email.subject, "Some of your Acme AI credits expire soon");
        let text = email.text.replace('\n', " ");
        assert!(text.contains(
            "Some of the usage credits of Initech on Acme AI are still unused and expire soon."
        ));
        assert!(!text.contains("Credits expiring:"));
        assert!(!text.contains("Expires:"));
        let only_amount = render(
            NoticeKind::CreditsExpiring,
            &EmailContext {
                amount: Some(amount("0.000375")),
                ..context()
            },
        );
        assert_eq!(
            only_amount.subject,
            "$0.000375 of your Acme AI credits expire soon"
        );
        let only_time = render(
            NoticeKind::CreditsExpiring,
            &EmailContext {
                expires_at: Some(Timestamp::from_unix_ms(4_107_542_340_000)),
                ..context()
            },
        );
        assert_eq!(
            only_time.subject,
            "Some of your Acme AI credits expire on 2100-02-28"
        );
        assert!(only_time
            .text
            .lines()
            .any(|l| l == "Expires: 2100-02-28 23:59 UTC"));
    }

    /// Every `&` in `html` starts an entity.
    fn assert_only_entities(html: &str, kind: NoticeKind) {
        for (at, _) in html.match_indices('&') {
            let rest = &html[at..];
            assert!(
                ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;"]
                    .iter()
                    .any(|entity| rest.starts_with(entity)),
                "{kind:?}: bare & at {at}"
            );
        }
    }

    // ---- snapshots ----

    fn snapshot_path(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests")
            .join("snapshots")
            .join(format!("notice_{name}"))
    }

    /// Compares `actual` with the snapshot file `name`; with `UPDATE_SNAPSHOTS=1`, writes it.
    fn check_snapshot(name: &str, actual: &str) {
        let path = snapshot_path(name);
        if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, actual).unwrap();
            return;
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_else(|error| {
            panic!(
                "{}: {error} (run with UPDATE_SNAPSHOTS=1 to write it)",
                path.display()
            )
        });
        if expected != actual {
            panic!(
                "snapshot {} differs (- expected, + actual; UPDATE_SNAPSHOTS=1 rewrites it):\n{}",
                path.display(),
                line_diff(&expected, actual)
            );
        }
    }

    /// A line diff of `expected` and `actual` (longest common subsequence), changed lines
    /// with up to two lines of context.
    fn line_diff(expected: &str, actual: &str) -> String {
        let old: Vec<&str> = expected.lines().collect();
        let new: Vec<&str> = actual.lines().collect();
        // common[i][j]: the longest common subsequence of old[i..] and new[j..].
        let mut common = vec![vec![0usize; new.len() + 1]; old.len() + 1];
        for i in (0..old.len()).rev() {
            for j in (0..new.len()).rev() {
                common[i][j] = if old[i] == new[j] {
                    common[i + 1][j + 1] + 1
                } else {
                    common[i + 1][j].max(common[i][j + 1])
                };
            }
        }
        let mut lines: Vec<(char, &str)> = Vec::new();
        let (mut i, mut j) = (0, 0);
        while i < old.len() || j < new.len() {
            if i < old.len() && j < new.len() && old[i] == new[j] {
                lines.push((' ', old[i]));
                i += 1;
                j += 1;
            } else if i < old.len() && (j == new.len() || common[i + 1][j] >= common[i][j + 1]) {
                lines.push(('-', old[i]));
                i += 1;
            } else {
                lines.push(('+', new[j]));
                j += 1;
            }
        }
        let near_change = |at: usize| {
            let low = at.saturating_sub(2);
            let high = (at + 2).min(lines.len() - 1);
            lines[low..=high].iter().any(|(mark, _)| *mark != ' ')
        };
        let mut out = String::new();
        for (at, (mark, line)) in lines.iter().enumerate() {
            if near_change(at) {
                out.push_str(&format!("{mark} {line}\n"));
            }
        }
        if out.is_empty() {
            out.push_str(
                "(the lines agree; the difference is in line endings or the final newline)\n",
            );
        }
        out
    }
}
