//! What the API answers: JSON views of the records, money as decimal strings, times as unix
//! seconds.

use creditgate_domain::ledger::{Account, Hold, Transfer};
use creditgate_domain::{Amount, Timestamp};
use creditgate_store::api::{AccessTransitionRecord, ApiKey, Org};
use serde::Serialize;
use utoipa::ToSchema;

use super::json::show;
pub use crate::app::rate_limit::RateLimitsBody;

fn seconds(at: Timestamp) -> i64 {
    at.unix_ms().div_euclid(1000)
}

/// An organization.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrgView {
    /// `org_…`
    pub id: String,
    /// Always `org`.
    pub object: &'static str,
    /// Its name.
    pub name: String,
    /// Where billing notices go.
    pub billing_emails: Vec<String>,
    /// Low-balance thresholds, decimal strings.
    pub low_thresholds: Vec<String>,
    /// The lowest available balance it may reach.
    pub floor: String,
    /// Suspended by the operator.
    pub suspended: bool,
    /// Monthly spend cap, if any.
    pub spend_limit_monthly: Option<String>,
    /// Rate limits of all its calls together.
    pub rate_limits: RateLimitsBody,
    /// `active`, `low`, `depleted` or `suspended`.
    pub access_state: String,
    /// Unix seconds.
    pub created_at: i64,
}

impl From<&Org> for OrgView {
    fn from(org: &Org) -> OrgView {
        OrgView {
            id: org.id.clone(),
            object: "org",
            name: org.name.clone(),
            billing_emails: org.billing_emails.clone(),
            low_thresholds: org.low_thresholds.iter().copied().map(show).collect(),
            floor: show(org.floor),
            suspended: org.suspended,
            spend_limit_monthly: org.spend_limit_monthly.map(show),
            rate_limits: RateLimitsBody::from(&org.rate_limits),
            access_state: org.access.state.as_str().to_owned(),
            created_at: seconds(org.created_at),
        }
    }
}

/// A list of items and whether more follow (`starting_after` = the last id for the next page).
#[derive(Debug, Serialize, ToSchema)]
pub struct ListView<T: ToSchema> {
    /// Always `list`.
    pub object: &'static str,
    /// The items.
    pub data: Vec<T>,
    /// Whether more follow.
    pub has_more: bool,
}

impl<T: ToSchema> ListView<T> {
    /// A page.
    pub fn new(data: Vec<T>, has_more: bool) -> ListView<T> {
        ListView {
            object: "list",
            data,
            has_more,
        }
    }
}

/// An org's balance and access state.
#[derive(Debug, Serialize, ToSchema)]
pub struct BalanceView {
    /// Always `balance`.
    pub object: &'static str,
    /// The org.
    pub org_id: String,
    /// Settled credits.
    pub posted: String,
    /// Held by open holds.
    pub reserved: String,
    /// posted − reserved.
    pub available: String,
    /// The lowest available balance it may reach.
    pub floor: String,
    /// Usage recorded below the floor (the holds aim to keep it zero).
    pub overspend: String,
    /// `active`, `low`, `depleted` or `suspended`.
    pub access_state: String,
    /// Why metered calls are refused now, as the code of their 402
    /// (`credit_balance_exhausted`, `org_suspended`, `spend_limit_reached` for the org's own
    /// monthly limit); `null` while they are accepted.
    pub calls_refused: Option<String>,
    /// With `spend_limit_reached`: when the limit resets (unix seconds).
    pub spend_limit_resets_at: Option<i64>,
    /// ISO 4217.
    pub currency: String,
}

pub use crate::app::balance::CallsRefused;

impl BalanceView {
    /// From the org, its account, and why its calls are refused.
    pub fn new(
        org: &Org,
        account: &Account,
        currency: &str,
        refused: Option<CallsRefused>,
    ) -> BalanceView {
        BalanceView {
            object: "balance",
            org_id: org.id.clone(),
            posted: show(account.posted),
            reserved: show(account.reserved),
            available: show(account.available()),
            floor: show(org.floor),
            overspend: show(account.overspend),
            access_state: org.access.state.as_str().to_owned(),
            calls_refused: refused.map(|r| r.code.to_owned()),
            spend_limit_resets_at: refused.and_then(|r| r.resets_at).map(seconds),
            currency: currency.to_owned(),
        }
    }
}

/// A ledger transfer, seen from one org's side.
#[derive(Debug, Serialize, ToSchema)]
pub struct TransferView {
    /// `txn_…`
    pub id: String,
    /// Always `transfer`.
    pub object: &'static str,
    /// purchase, auto_reload, grant, usage, refund, adjustment, expiry.
    pub kind: String,
    /// The amount moved (always positive).
    pub amount: String,
    /// `credit` (into the org) or `debit` (out of it).
    pub direction: String,
    /// The account debited.
    pub debit_account: String,
    /// The account credited.
    pub credit_account: String,
    /// The org's posted balance after it.
    pub balance_after: String,
    /// Part of a usage charge recorded below the floor.
    pub overspend: String,
    /// Free text: the model, price and key of usage; the reason of an adjustment.
    pub reference: String,
    /// The hold it settled, if any.
    pub hold_id: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
}

impl TransferView {
    /// Seen from `org_id`'s side.
    pub fn new(transfer: &Transfer, org_id: &str) -> TransferView {
        let credit = transfer.credit_account_id.as_str() == org_id;
        TransferView {
            id: transfer.id.as_str().to_owned(),
            object: "transfer",
            kind: transfer.kind.as_str().to_owned(),
            amount: show(transfer.amount),
            direction: if credit { "credit" } else { "debit" }.to_owned(),
            debit_account: transfer.debit_account_id.as_str().to_owned(),
            credit_account: transfer.credit_account_id.as_str().to_owned(),
            balance_after: show(if credit {
                transfer.credit_balance_after
            } else {
                transfer.debit_balance_after
            }),
            overspend: show(transfer.overspend),
            reference: transfer.reference.clone(),
            hold_id: transfer.hold_id.as_ref().map(|id| id.as_str().to_owned()),
            created_at: seconds(transfer.created_at),
        }
    }
}

pub use creditgate_domain::reference::HoldTerms;

/// A hold.
#[derive(Debug, Serialize, ToSchema)]
pub struct HoldView {
    /// `hold_…`
    pub id: String,
    /// Always `hold`.
    pub object: &'static str,
    /// The org.
    pub org_id: String,
    /// The amount reserved.
    pub amount: String,
    /// `open`, `settled`, `voided` or `expired`.
    pub state: String,
    /// The model, when placed by model.
    pub model: Option<String>,
    /// The price version it settles at.
    pub price_id: Option<String>,
    /// The key it was placed with.
    pub key_id: Option<String>,
    /// What it was settled for.
    pub settled_amount: Option<String>,
    /// Unix seconds after which it expires.
    pub expires_at: i64,
    /// Unix seconds.
    pub created_at: i64,
}

impl From<&Hold> for HoldView {
    fn from(hold: &Hold) -> HoldView {
        let terms = HoldTerms::decode(&hold.reference);
        HoldView {
            id: hold.id.as_str().to_owned(),
            object: "hold",
            org_id: hold.debit_account_id.as_str().to_owned(),
            amount: show(hold.amount),
            state: hold.state.as_str().to_owned(),
            model: terms.model,
            price_id: terms.price_id,
            key_id: terms.key_id,
            settled_amount: hold.settled_amount.map(show),
            expires_at: seconds(hold.expires_at),
            created_at: seconds(hold.created_at),
        }
    }
}

/// A settled or voided hold, with the transfer that charged it (none for a void or a zero
/// settlement).
#[derive(Debug, Serialize, ToSchema)]
pub struct HoldClosedView {
    /// The hold after closing.
    pub hold: HoldView,
    /// The usage charge.
    pub transfer: Option<TransferView>,
}

/// An API key (the secret appears only in [`KeyCreatedView`]).
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    /// `key_…`
    pub id: String,
    /// Always `api_key`.
    pub object: &'static str,
    /// The org.
    pub org_id: String,
    /// A label.
    pub name: String,
    /// The secret's first characters.
    pub prefix: String,
    /// Monthly spend cap of this key, if any.
    pub spend_limit_monthly: Option<String>,
    /// Rate limits of calls made with this key (the org's apply too).
    pub rate_limits: RateLimitsBody,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds, once revoked.
    pub revoked_at: Option<i64>,
}

impl From<&ApiKey> for KeyView {
    fn from(key: &ApiKey) -> KeyView {
        KeyView {
            id: key.id.clone(),
            object: "api_key",
            org_id: key.org_id.clone(),
            name: key.name.clone(),
            prefix: key.prefix.clone(),
            spend_limit_monthly: key.spend_limit_monthly.map(show),
            rate_limits: RateLimitsBody::from(&key.rate_limits),
            created_at: seconds(key.created_at),
            revoked_at: key.revoked_at.map(seconds),
        }
    }
}

/// A new key with its secret, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyCreatedView {
    /// The key.
    #[serde(flatten)]
    pub key: KeyView,
    /// The secret: store it now, it is never shown again.
    pub secret: String,
}

/// One version of a model's prices (per million tokens).
#[derive(Debug, Serialize, ToSchema)]
pub struct PriceView {
    /// `price_…`
    pub id: String,
    /// Always `price`.
    pub object: &'static str,
    /// The model.
    pub model: String,
    /// Per million input tokens.
    pub input: String,
    /// Per million output tokens.
    pub output: String,
    /// Per million tokens written to the 5-minute prompt cache.
    pub cache_write: String,
    /// Per million tokens written to the 1-hour prompt cache.
    pub cache_write_1h: String,
    /// Per million cache-read tokens.
    pub cache_read: String,
    /// Per call.
    pub request_fee: String,
    /// Per web search the provider runs for a call.
    pub web_search_request: String,
    /// Per web fetch the provider runs for a call.
    pub web_fetch_request: String,
    /// Rates for every token of a call whose input is above `above_input_tokens`, or null.
    pub long_input: Option<LongInputView>,
    /// Output tokens assumed when a hold does not say.
    pub max_output_tokens: u64,
    /// Unix seconds from which it is in force.
    pub effective_at: i64,
    /// Unix seconds.
    pub created_at: i64,
}

/// Per-million-token rates of calls with a large input.
#[derive(Debug, Serialize, ToSchema)]
pub struct LongInputView {
    /// A call whose input tokens (cache included) are above this is priced at these rates.
    pub above_input_tokens: u64,
    /// Per million input tokens.
    pub input: String,
    /// Per million output tokens.
    pub output: String,
    /// Per million 5-minute cache writes.
    pub cache_write: String,
    /// Per million 1-hour cache writes.
    pub cache_write_1h: String,
    /// Per million cache reads.
    pub cache_read: String,
}

impl From<&creditgate_domain::pricing::PriceVersion> for PriceView {
    fn from(p: &creditgate_domain::pricing::PriceVersion) -> PriceView {
        PriceView {
            id: p.id.clone(),
            object: "price",
            model: p.model.clone(),
            input: show(p.prices.input),
            output: show(p.prices.output),
            cache_write: show(p.prices.cache_write),
            cache_write_1h: show(p.prices.cache_write_1h),
            cache_read: show(p.prices.cache_read),
            request_fee: show(p.prices.request_fee),
            web_search_request: show(p.prices.web_search_request),
            web_fetch_request: show(p.prices.web_fetch_request),
            long_input: p.prices.long_input.map(|long| LongInputView {
                above_input_tokens: long.above_input_tokens,
                input: show(long.rates.input),
                output: show(long.rates.output),
                cache_write: show(long.rates.cache_write),
                cache_write_1h: show(long.rates.cache_write_1h),
                cache_read: show(long.rates.cache_read),
            }),
            max_output_tokens: p.max_output_tokens,
            effective_at: seconds(p.effective_at),
            created_at: seconds(p.created_at),
        }
    }
}

/// A change of an org's access.
#[derive(Debug, Serialize, ToSchema)]
pub struct TransitionView {
    /// Order of recording.
    pub seq: i64,
    /// Before.
    pub from_state: String,
    /// After.
    pub to_state: String,
    /// Thresholds the balance was below, before.
    pub from_level: u32,
    /// Thresholds the balance is below, after.
    pub to_level: u32,
    /// balance, refused (a call refused for lack of credits turned access off), suspended,
    /// unsuspended, settings, created.
    pub cause: String,
    /// Available balance after the change.
    pub available: String,
    /// Unix seconds.
    pub at: i64,
    /// `refused`: the refused call's worst case.
    pub refused_amount: Option<String>,
    /// `refused`: the refused call's request id (`req_…`).
    pub refused_request_id: Option<String>,
}

impl From<&AccessTransitionRecord> for TransitionView {
    fn from(t: &AccessTransitionRecord) -> TransitionView {
        TransitionView {
            seq: t.seq,
            from_state: t.from.state.as_str().to_owned(),
            to_state: t.to.state.as_str().to_owned(),
            from_level: t.from.level,
            to_level: t.to.level,
            cause: t.cause.clone(),
            available: show(t.available),
            at: seconds(t.at),
            refused_amount: t.refused_amount.map(show),
            refused_request_id: t
                .refused_reference
                .as_deref()
                .and_then(|reference| HoldTerms::decode(reference).request_id),
        }
    }
}

/// Per-event result of `POST /v1/usage`.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageResultView {
    /// The event's id.
    pub id: String,
    /// `created`, `exists` (recorded before: nothing changed) or `rejected`.
    pub status: String,
    /// The usage charge.
    pub transfer_id: Option<String>,
    /// What it cost.
    pub amount: Option<String>,
    /// The part recorded below the floor.
    pub overspend: Option<String>,
    /// Why it was rejected.
    pub error: Option<UsageErrorView>,
}

/// Why one usage event was rejected.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageErrorView {
    /// Stable code.
    pub code: String,
    /// For people.
    pub message: String,
    /// The field at fault.
    pub param: Option<String>,
}

/// The answer to `POST /v1/usage`: one result per event, in order.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageBatchView {
    /// Always `list`.
    pub object: &'static str,
    /// One per event.
    pub data: Vec<UsageResultView>,
}

/// Health.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusView {
    /// `ok`.
    pub status: String,
}

/// An amount unless it is zero.
pub fn nonzero(amount: Amount) -> Option<String> {
    (amount != Amount::ZERO).then(|| show(amount))
}
