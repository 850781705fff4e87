//! The API's records beside the ledger: orgs and their access state, API keys, price
//! versions and `Idempotency-Key` records, plus the ledger reads the API serves. All of it
//! goes through [`crate::sql::Db`], so each statement is written once for both backends.
//!
//! Nothing here writes a balance. The only ledger rows written here are an org's credit
//! account at creation (zero balances) and its floor (a setting, changed under the account
//! row's lock so the writer never decides with a stale one).

mod access;
mod keys;
mod members;
mod notices;
mod orgs;
mod payments;
mod prices;
mod proxy;
mod reads;
mod refunds;
mod settings;
mod webhooks;

use creditgate_domain::access::Access;
use creditgate_domain::rate::RateLimits;
use creditgate_domain::{Amount, Timestamp};

pub(crate) use access::sync_after_batch;

pub use access::AccessTransitionRecord;
pub use members::{Added, LinkUse, Member, NewLink, Session};
pub use payments::{
    Advanced, AutoReload, Payment, PaymentDetails, PaymentProfile, ReloadBegun, SandboxCharge,
    ACTION_WAIT_MS,
};
pub use proxy::ProxyRecovery;
pub use reads::{Spend, UsageGroup};
pub use refunds::{Refund, RefundCreated, RefundState};
pub use webhooks::delivery_id;

/// An organization, as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Org {
    /// `org_…`; also the id of its credit account.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Where billing notices go.
    pub billing_emails: Vec<String>,
    /// Low-balance thresholds, highest first.
    pub low_thresholds: Vec<Amount>,
    /// Suspended by the operator.
    pub suspended: bool,
    /// Most usage it may be charged in one calendar month (UTC), if capped.
    pub spend_limit_monthly: Option<Amount>,
    /// The lowest available balance it may reach.
    pub floor: Amount,
    /// Its rate limits (every key's calls together).
    pub rate_limits: RateLimits,
    /// Its access, as last derived.
    pub access: Access,
    /// When its access last changed.
    pub access_changed_at: Timestamp,
    /// When it was created.
    pub created_at: Timestamp,
    /// When its settings last changed.
    pub updated_at: Timestamp,
}

/// What an org is created with.
#[derive(Clone, Debug)]
pub struct NewOrg {
    /// `org_…`, chosen by the caller.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Where billing notices go.
    pub billing_emails: Vec<String>,
    /// Low-balance thresholds.
    pub low_thresholds: Vec<Amount>,
    /// The lowest available balance it may reach.
    pub floor: Amount,
    /// Monthly spend cap, if any.
    pub spend_limit_monthly: Option<Amount>,
    /// Its rate limits.
    pub rate_limits: RateLimits,
}

/// A change to an org's settings; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct OrgPatch {
    /// New name.
    pub name: Option<String>,
    /// New billing contacts.
    pub billing_emails: Option<Vec<String>>,
    /// New thresholds.
    pub low_thresholds: Option<Vec<Amount>>,
    /// New floor.
    pub floor: Option<Amount>,
    /// Suspend (true) or lift a suspension (false).
    pub suspended: Option<bool>,
    /// New monthly cap (`Some(None)` removes it).
    pub spend_limit_monthly: Option<Option<Amount>>,
    /// New rate limits, all three at once.
    pub rate_limits: Option<RateLimits>,
}

/// What an org update did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OrgUpdate {
    /// Applied; the org as it is now.
    Updated(Org),
    /// No such org.
    NotFound,
    /// Refused: the new floor is above the org's available balance, which the floor must
    /// bound. Nothing changed.
    FloorAboveAvailable {
        /// The available balance now.
        available: Amount,
    },
}

/// An API key, without its secret (which is never stored).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKey {
    /// `key_…`.
    pub id: String,
    /// The org it belongs to.
    pub org_id: String,
    /// A label.
    pub name: String,
    /// The secret's first characters, for recognising it in lists.
    pub prefix: String,
    /// Monthly spend cap for calls made with this key, if any.
    pub spend_limit_monthly: Option<Amount>,
    /// Rate limits of calls made with this key.
    pub rate_limits: RateLimits,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it was revoked; it authenticates nothing from then on.
    pub revoked_at: Option<Timestamp>,
}

/// The first response to an `Idempotency-Key`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyRecord {
    /// Who may replay it: an org id, or `operator`.
    pub scope: String,
    /// The client's key.
    pub key: String,
    /// A hash of the request's method, path and body.
    pub request_hash: String,
    /// The response's HTTP status.
    pub status: u16,
    /// The response's body.
    pub body: String,
    /// When it was recorded.
    pub created_at: Timestamp,
}

/// A notice in the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// `ntc_…`, from the transition that caused it; the email's Message-ID carries it.
    pub id: String,
    /// `access.turned_off`, `access.restored`, `balance.low`.
    pub kind: String,
    /// The org it is about.
    pub org_id: String,
    /// The org's available balance when it was caused.
    pub available: Amount,
    /// Thresholds the balance was below, then.
    pub level: u32,
    /// `pending`, `sent` or `parked`.
    pub state: String,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// When the next attempt is due.
    pub next_attempt_at: Timestamp,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When it was written.
    pub created_at: Timestamp,
    /// When it was delivered.
    pub sent_at: Option<Timestamp>,
    /// Credits added: the amount.
    pub amount: Option<Amount>,
    /// Credits added: the ledger transfer (the receipt number).
    pub transfer_id: Option<String>,
    /// Payment notices: the payment (`pay_…`).
    pub payment_id: Option<String>,
    /// Payment notices: why the charge failed.
    pub reason: Option<String>,
    /// A failed auto-reload: when it is tried again. A sign-in link or invitation: when
    /// the link expires.
    pub retry_at: Option<Timestamp>,
    /// A notice for one member (a sign-in link, an invitation): the member (`mem_…`).
    pub member_id: Option<String>,
    /// A sign-in link's or invitation's secret, until the email is sent.
    pub secret: Option<String>,
}

/// Where webhooks go: an org's endpoint, or the operator's (every org's events).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookEndpoint {
    /// `whk_…`.
    pub id: String,
    /// The org whose events it receives; `None`: the operator's, every org's events.
    pub org_id: Option<String>,
    /// Where deliveries are POSTed (http or https).
    pub url: String,
    /// The secret each body is signed with (HMAC-SHA256).
    pub secret: String,
    /// The event names it receives, or `["*"]` for all.
    pub events: Vec<String>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it was disabled; nothing is delivered to it from then on.
    pub disabled_at: Option<Timestamp>,
}

impl WebhookEndpoint {
    /// Whether it receives events named `event`.
    pub fn receives(&self, event: &str) -> bool {
        self.events.iter().any(|e| e == "*" || e == event)
    }
}

/// One notice's delivery to one webhook endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookDelivery {
    /// `wdl_<notice id>_<endpoint id suffix>`: derived, so a repeated fan-out makes no second.
    pub id: String,
    /// The endpoint.
    pub endpoint_id: String,
    /// The notice it carries (also the event's id in the body).
    pub notice_id: String,
    /// The event name (the notice's kind).
    pub event: String,
    /// The JSON body, as sent.
    pub payload: String,
    /// `pending`, `sent` or `parked`.
    pub state: String,
    /// Attempts since it was made (or last resent).
    pub attempts: u32,
    /// When the next attempt is due.
    pub next_attempt_at: Timestamp,
    /// The HTTP status of the last attempt, if the endpoint answered.
    pub last_status: Option<u16>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When it was made.
    pub created_at: Timestamp,
    /// When it was last delivered.
    pub sent_at: Option<Timestamp>,
}

/// One page of a list, newest first.
#[derive(Clone, Debug)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Whether more follow the last one.
    pub has_more: bool,
}

/// Thresholds as stored: micro-units, comma-separated.
fn encode_amounts(amounts: &[Amount]) -> String {
    amounts
        .iter()
        .map(|a| a.micros().to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn decode_amounts(text: &str) -> Result<Vec<Amount>, crate::StoreError> {
    text.split(',')
        .filter(|part| !part.is_empty())
        .map(|part| {
            part.parse::<i64>()
                .map(Amount::from_micros)
                .map_err(|_| crate::StoreError::Corrupt(format!("amount list {text:?}")))
        })
        .collect()
}
