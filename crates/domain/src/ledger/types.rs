//! The ledger's records and requests. Plain data: the rules live in `engine.rs`.

use crate::money::Amount;
use crate::time::Timestamp;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(String);

        impl $name {
            /// Wraps an id as given; validity is checked by the engine, not here.
            pub fn new(id: impl Into<String>) -> $name {
                $name(id.into())
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// A ledger account, e.g. `acct_org_…` or one of the operator accounts.
    AccountId
);
id_type!(
    /// A client-chosen transfer id (`txn_…`): the idempotency key of every money movement.
    TransferId
);
id_type!(
    /// A hold (`hold_…`): the idempotency key of a placement.
    HoldId
);
id_type!(
    /// A grant (credit lot). A grant's id is the id of the transfer that created it.
    GrantId
);

/// Longest id the ledger accepts, in bytes.
pub const ID_LEN_MAX: usize = 128;
/// The byte that joins the parts of an id the ledger derives (`hold_1:expiry`); client ids
/// may not contain it.
pub const ID_DERIVED_SEPARATOR: u8 = b':';
/// Longest reference the ledger accepts, in bytes.
pub const REFERENCE_LEN_MAX: usize = 256;
/// Longest time a hold may stay open before it expires.
pub const HOLD_TTL_MS_MAX: i64 = 24 * 60 * 60 * 1000;
/// Default consumption priority of a grant (lower is consumed first, as in OpenMeter).
pub const GRANT_PRIORITY_DEFAULT: u32 = 10;
/// Largest grant priority.
pub const GRANT_PRIORITY_MAX: u32 = 1_000;

/// What an account is for. Only org credit accounts carry grants and a floor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AccountKind {
    /// An organization's prepaid credits.
    OrgCredit,
    /// Operator: revenue from metered usage.
    UsageRevenue,
    /// Operator: money received from payments (purchases, auto-reloads).
    PaymentsReceived,
    /// Operator: source of promotional credits.
    PromotionalGrants,
    /// Operator: credits that expired unused.
    ExpiredCredits,
    /// Operator: the other side of manual corrections.
    Adjustments,
}

impl AccountKind {
    /// Every kind, the org account first, then the operator accounts.
    pub const ALL: [AccountKind; 6] = [
        AccountKind::OrgCredit,
        AccountKind::UsageRevenue,
        AccountKind::PaymentsReceived,
        AccountKind::PromotionalGrants,
        AccountKind::ExpiredCredits,
        AccountKind::Adjustments,
    ];

    /// The stable snake_case name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::OrgCredit => "org_credit",
            AccountKind::UsageRevenue => "usage_revenue",
            AccountKind::PaymentsReceived => "payments_received",
            AccountKind::PromotionalGrants => "promotional_grants",
            AccountKind::ExpiredCredits => "expired_credits",
            AccountKind::Adjustments => "adjustments",
        }
    }

    /// The kind named by [`Self::as_str`], or `None`.
    pub fn parse(text: &str) -> Option<AccountKind> {
        AccountKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }

    /// The well-known id of an operator account (`None` for org accounts).
    pub fn operator_account_id(self) -> Option<AccountId> {
        match self {
            AccountKind::OrgCredit => None,
            other => Some(AccountId::new(format!("acct_op_{}", other.as_str()))),
        }
    }
}

/// A ledger account with its running balances.
///
/// Balances follow the credit-normal convention: `posted` = credits − debits, so an org's
/// credits are positive. Operator source accounts (payments received, promotional grants)
/// go negative as they fund orgs; the sum of all `posted` is always zero.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// Unique id of the account.
    pub id: AccountId,
    /// What the account is for.
    pub kind: AccountKind,
    /// Lowest available balance allowed; `None` means unbounded (operator accounts).
    pub floor: Option<Amount>,
    /// Settled balance: credits − debits of all transfers.
    pub posted: Amount,
    /// Sum of open holds.
    pub reserved: Amount,
    /// Consumption not backed by any grant (an overdraft below zero), repaid by the next credits.
    pub unbacked: Amount,
    /// Total amount forced below the floor by usage that had already happened.
    pub overspend: Amount,
}

impl Account {
    /// A fresh account with zero balances.
    pub fn new(id: AccountId, kind: AccountKind, floor: Option<Amount>) -> Account {
        Account {
            id,
            kind,
            floor,
            posted: Amount::ZERO,
            reserved: Amount::ZERO,
            unbacked: Amount::ZERO,
            overspend: Amount::ZERO,
        }
    }

    /// posted − reserved: what may still be spent or held.
    pub fn available(&self) -> Amount {
        self.posted
            .checked_sub(self.reserved)
            .expect("posted and reserved are kept within range by the engine")
    }

    /// The account's balances as one value (posted, reserved, available, floor, overspend).
    pub fn balance(&self) -> Balance {
        Balance {
            posted: self.posted,
            reserved: self.reserved,
            available: self.available(),
            floor: self.floor,
            overspend: self.overspend,
        }
    }
}

/// The three balance views of an account, plus its floor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Balance {
    /// Settled balance: credits − debits of all transfers.
    pub posted: Amount,
    /// Sum of open holds.
    pub reserved: Amount,
    /// posted − reserved: what may still be spent or held.
    pub available: Amount,
    /// Lowest available balance allowed; `None` means unbounded (operator accounts).
    pub floor: Option<Amount>,
    /// Total usage recorded below the floor.
    pub overspend: Amount,
}

/// Where a grant's credits came from. Promotional credits are consumed before paid ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Origin {
    /// Given away by the operator; consumed before paid credits.
    Promotional,
    /// Paid for by the org; consumed after promotional credits.
    Paid,
}

impl Origin {
    /// The stable snake_case name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Promotional => "promotional",
            Origin::Paid => "paid",
        }
    }

    /// The origin named by [`Self::as_str`], or `None`.
    pub fn parse(text: &str) -> Option<Origin> {
        [Origin::Promotional, Origin::Paid]
            .into_iter()
            .find(|origin| origin.as_str() == text)
    }
}

/// How credits flowing into an org account are tracked as a grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantTerms {
    /// Where the credits came from.
    pub origin: Origin,
    /// Lower is consumed first.
    pub priority: u32,
    /// When the unconsumed remainder expires; `None`: never.
    pub expires_at: Option<Timestamp>,
}

impl Default for GrantTerms {
    fn default() -> GrantTerms {
        GrantTerms {
            origin: Origin::Paid,
            priority: GRANT_PRIORITY_DEFAULT,
            expires_at: None,
        }
    }
}

/// A lot of credits in an org account. `consumed + remaining + expired == amount`, where
/// `remaining` includes the part `reserved` by open holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The id of the transfer that created the grant.
    pub id: GrantId,
    /// The org account that holds the grant.
    pub account_id: AccountId,
    /// Origin, priority and expiry, fixed when the grant is created.
    pub terms: GrantTerms,
    /// Credits granted, in micro-units; never changes.
    pub amount: Amount,
    /// Credits spent by debits and settlements.
    pub consumed: Amount,
    /// Part of the remaining credits held by open holds.
    pub reserved: Amount,
    /// Credits moved to the expired-credits account when the grant expired.
    pub expired: Amount,
    /// Set once by grant expiry; an expired grant takes no new holds or debits, and whatever
    /// its open holds release later is expired on the spot.
    pub expired_at: Option<Timestamp>,
    /// When the creating transfer was posted.
    pub created_at: Timestamp,
}

impl Grant {
    /// amount − consumed − expired: what the grant still holds, reserved part included.
    pub fn remaining(&self) -> Amount {
        self.amount
            .checked_sub(self.consumed)
            .and_then(|left| left.checked_sub(self.expired))
            .expect("consumed + expired never exceed amount")
    }

    /// What a new hold or debit may take from this grant now.
    pub fn spendable(&self) -> Amount {
        if self.expired_at.is_some() {
            return Amount::ZERO;
        }
        self.remaining()
            .checked_sub(self.reserved)
            .expect("reserved never exceeds remaining")
    }

    /// The order in which grants are consumed: priority, promotional before paid, soonest
    /// expiry (none last), oldest, then id for a total order.
    pub fn consumption_key(&self) -> (u32, Origin, i64, Timestamp, &GrantId) {
        let expires = self.terms.expires_at.map_or(i64::MAX, Timestamp::unix_ms);
        (
            self.terms.priority,
            self.terms.origin,
            expires,
            self.created_at,
            &self.id,
        )
    }
}

/// Why money moved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransferKind {
    /// Credits bought by the org.
    Purchase,
    /// Credits bought automatically when the balance ran low.
    AutoReload,
    /// Promotional credits given by the operator.
    Grant,
    /// Metered usage charged to an org.
    Usage,
    /// Money given back (a refund of a payment or a charge).
    Refund,
    /// A manual correction by the operator.
    Adjustment,
    /// Made only by the engine, when a grant expires.
    Expiry,
}

impl TransferKind {
    /// Every kind, in declaration order.
    pub const ALL: [TransferKind; 7] = [
        TransferKind::Purchase,
        TransferKind::AutoReload,
        TransferKind::Grant,
        TransferKind::Usage,
        TransferKind::Refund,
        TransferKind::Adjustment,
        TransferKind::Expiry,
    ];

    /// The stable snake_case name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            TransferKind::Purchase => "purchase",
            TransferKind::AutoReload => "auto_reload",
            TransferKind::Grant => "grant",
            TransferKind::Usage => "usage",
            TransferKind::Refund => "refund",
            TransferKind::Adjustment => "adjustment",
            TransferKind::Expiry => "expiry",
        }
    }

    /// The kind named by [`Self::as_str`], or `None`.
    pub fn parse(text: &str) -> Option<TransferKind> {
        TransferKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }
}

/// An immutable, posted movement of money between two accounts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transfer {
    /// The client's id, or one the ledger derives (`grant_1:expiry`); one namespace with usage, settle and void ids.
    pub id: TransferId,
    /// The account whose `posted` goes down.
    pub debit_account_id: AccountId,
    /// The account whose `posted` goes up.
    pub credit_account_id: AccountId,
    /// How much moved, in micro-units; positive.
    pub amount: Amount,
    /// Why the money moved.
    pub kind: TransferKind,
    /// Free text from the caller (at most [`REFERENCE_LEN_MAX`] bytes).
    pub reference: String,
    /// The hold this transfer settles, if any.
    pub hold_id: Option<HoldId>,
    /// The grant this transfer created (credits into an org) or expired.
    pub grant_id: Option<GrantId>,
    /// `posted` of the debit account right after this transfer.
    pub debit_balance_after: Amount,
    /// `posted` of the credit account right after this transfer.
    pub credit_balance_after: Amount,
    /// The part of this transfer that went below the debit account's floor (usage only).
    pub overspend: Amount,
    /// When the transfer was posted.
    pub created_at: Timestamp,
}

/// Where a hold is in its life. Only `Open` holds count as reserved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HoldState {
    /// Reserving credits; may still be settled, voided or expired.
    Open,
    /// Closed by a settlement that charged some amount.
    Settled,
    /// Closed without a charge.
    Voided,
    /// Closed by the expiry worker after its TTL passed.
    Expired,
}

impl HoldState {
    /// The stable snake_case name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            HoldState::Open => "open",
            HoldState::Settled => "settled",
            HoldState::Voided => "voided",
            HoldState::Expired => "expired",
        }
    }

    /// The state named by [`Self::as_str`], or `None`.
    pub fn parse(text: &str) -> Option<HoldState> {
        [
            HoldState::Open,
            HoldState::Settled,
            HoldState::Voided,
            HoldState::Expired,
        ]
        .into_iter()
        .find(|state| state.as_str() == text)
    }
}

/// A part of a hold reserved on one grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allocation {
    /// The grant the part is reserved on.
    pub grant_id: GrantId,
    /// How much of the grant is reserved, in micro-units.
    pub amount: Amount,
}

/// Credits reserved for an in-flight request (a pending transfer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hold {
    /// Client-chosen id; holds are their own id namespace.
    pub id: HoldId,
    /// The account whose credits are reserved.
    pub debit_account_id: AccountId,
    /// The account a settlement will credit.
    pub credit_account_id: AccountId,
    /// How much is reserved, in micro-units.
    pub amount: Amount,
    /// Free text from the caller (at most [`REFERENCE_LEN_MAX`] bytes).
    pub reference: String,
    /// How long the hold may stay open, in milliseconds.
    pub ttl_ms: i64,
    /// created_at + ttl_ms: from then on the hold can only be expired.
    pub expires_at: Timestamp,
    /// Open, or how it was closed.
    pub state: HoldState,
    /// Where the reserved credits sit, in consumption order.
    pub allocations: Vec<Allocation>,
    /// The part reserved beyond all grants (possible only with a floor below zero).
    pub unbacked: Amount,
    /// The id of the operation that closed the hold (settle, void or expiry).
    pub closed_by: Option<TransferId>,
    /// The amount charged at settlement.
    pub settled_amount: Option<Amount>,
    /// When the hold was placed.
    pub created_at: Timestamp,
    /// When the hold was settled, voided or expired.
    pub closed_at: Option<Timestamp>,
}

/// A plain transfer. Refused if it would take the debit account below its floor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferRequest {
    /// Client-chosen id of the transfer (idempotency key).
    pub id: TransferId,
    /// The account to debit.
    pub debit_account_id: AccountId,
    /// The account to credit.
    pub credit_account_id: AccountId,
    /// How much to move, in micro-units; positive.
    pub amount: Amount,
    /// Why the money moves; never [`TransferKind::Expiry`].
    pub kind: TransferKind,
    /// Free text from the caller (at most [`REFERENCE_LEN_MAX`] bytes).
    pub reference: String,
    /// Grant terms for credits into an org account; `None` means [`GrantTerms::default`].
    pub grant: Option<GrantTerms>,
}

/// Usage that already happened: always recorded, even below the floor (that part is overspend).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageRequest {
    /// Client-chosen id of the usage transfer (idempotency key).
    pub id: TransferId,
    /// The org account charged.
    pub debit_account_id: AccountId,
    /// The account credited (usage revenue).
    pub credit_account_id: AccountId,
    /// How much was used, in micro-units; positive.
    pub amount: Amount,
    /// Free text from the caller (at most [`REFERENCE_LEN_MAX`] bytes).
    pub reference: String,
}

/// Reserve `amount` of the debit account for at most `ttl_ms`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlaceHoldRequest {
    /// Client-chosen id of the hold (idempotency key).
    pub id: HoldId,
    /// The account whose credits are reserved.
    pub debit_account_id: AccountId,
    /// The account a settlement will credit.
    pub credit_account_id: AccountId,
    /// How much to reserve, in micro-units; positive.
    pub amount: Amount,
    /// Free text from the caller (at most [`REFERENCE_LEN_MAX`] bytes).
    pub reference: String,
    /// How long the hold may stay open, in milliseconds (at most [`HOLD_TTL_MS_MAX`]).
    pub ttl_ms: i64,
}

/// Charge `amount` for a hold and release the rest. `id` is the id of the settling transfer.
/// An amount above the hold is charged in full, as usage (the excess may be overspend).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettleHoldRequest {
    /// Client-chosen id of the settling transfer (idempotency key).
    pub id: TransferId,
    /// The hold to settle.
    pub hold_id: HoldId,
    /// What to charge, in micro-units; zero charges nothing and releases everything.
    pub amount: Amount,
}

/// Release a hold without charging. `id` names this operation for idempotency.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoidHoldRequest {
    /// Client-chosen id of the void (idempotency key).
    pub id: TransferId,
    /// The hold to void.
    pub hold_id: HoldId,
}

/// Release a hold whose TTL has passed. Its id is derived from the hold's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpireHoldRequest {
    /// The hold to expire.
    pub hold_id: HoldId,
}

/// Move a due grant's unconsumed remainder to the expired-credits account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpireGrantRequest {
    /// The org account that holds the grant.
    pub account_id: AccountId,
    /// The grant to expire.
    pub grant_id: GrantId,
}
