//! The ledger's records and requests. Plain data: the rules live in `engine.rs`.

use crate::money::Amount;
use crate::time::Timestamp;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(String);

        impl $name {
            pub fn new(id: impl Into<String>) -> $name {
                $name(id.into())
            }

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
    pub const ALL: [AccountKind; 6] = [
        AccountKind::OrgCredit,
        AccountKind::UsageRevenue,
        AccountKind::PaymentsReceived,
        AccountKind::PromotionalGrants,
        AccountKind::ExpiredCredits,
        AccountKind::Adjustments,
    ];

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
    pub id: AccountId,
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
    pub posted: Amount,
    pub reserved: Amount,
    pub available: Amount,
    pub floor: Option<Amount>,
    pub overspend: Amount,
}

/// Where a grant's credits came from. Promotional credits are consumed before paid ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Origin {
    Promotional,
    Paid,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Promotional => "promotional",
            Origin::Paid => "paid",
        }
    }

    pub fn parse(text: &str) -> Option<Origin> {
        [Origin::Promotional, Origin::Paid]
            .into_iter()
            .find(|origin| origin.as_str() == text)
    }
}

/// How credits flowing into an org account are tracked as a grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantTerms {
    pub origin: Origin,
    /// Lower is consumed first.
    pub priority: u32,
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
    pub id: GrantId,
    pub account_id: AccountId,
    pub terms: GrantTerms,
    pub amount: Amount,
    pub consumed: Amount,
    pub reserved: Amount,
    pub expired: Amount,
    /// Set once by grant expiry; an expired grant takes no new holds or debits, and whatever
    /// its open holds release later is expired on the spot.
    pub expired_at: Option<Timestamp>,
    pub created_at: Timestamp,
}

impl Grant {
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
    Purchase,
    AutoReload,
    Grant,
    Usage,
    Refund,
    Adjustment,
    /// Made only by the engine, when a grant expires.
    Expiry,
}

impl TransferKind {
    pub const ALL: [TransferKind; 7] = [
        TransferKind::Purchase,
        TransferKind::AutoReload,
        TransferKind::Grant,
        TransferKind::Usage,
        TransferKind::Refund,
        TransferKind::Adjustment,
        TransferKind::Expiry,
    ];

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

    pub fn parse(text: &str) -> Option<TransferKind> {
        TransferKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }
}

/// An immutable, posted movement of money between two accounts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transfer {
    pub id: TransferId,
    pub debit_account_id: AccountId,
    pub credit_account_id: AccountId,
    pub amount: Amount,
    pub kind: TransferKind,
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
    pub created_at: Timestamp,
}

/// Where a hold is in its life. Only `Open` holds count as reserved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HoldState {
    Open,
    Settled,
    Voided,
    Expired,
}

impl HoldState {
    pub fn as_str(self) -> &'static str {
        match self {
            HoldState::Open => "open",
            HoldState::Settled => "settled",
            HoldState::Voided => "voided",
            HoldState::Expired => "expired",
        }
    }

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
    pub grant_id: GrantId,
    pub amount: Amount,
}

/// Credits reserved for an in-flight request (a pending transfer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hold {
    pub id: HoldId,
    pub debit_account_id: AccountId,
    pub credit_account_id: AccountId,
    pub amount: Amount,
    pub reference: String,
    pub ttl_ms: i64,
    pub expires_at: Timestamp,
    pub state: HoldState,
    /// Where the reserved credits sit, in consumption order.
    pub allocations: Vec<Allocation>,
    /// The part reserved beyond all grants (possible only with a floor below zero).
    pub unbacked: Amount,
    /// The id of the operation that closed the hold (settle, void or expiry).
    pub closed_by: Option<TransferId>,
    /// The amount charged at settlement.
    pub settled_amount: Option<Amount>,
    pub created_at: Timestamp,
    pub closed_at: Option<Timestamp>,
}

/// A plain transfer. Refused if it would take the debit account below its floor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferRequest {
    pub id: TransferId,
    pub debit_account_id: AccountId,
    pub credit_account_id: AccountId,
    pub amount: Amount,
    pub kind: TransferKind,
    pub reference: String,
    /// Grant terms for credits into an org account; `None` means [`GrantTerms::default`].
    pub grant: Option<GrantTerms>,
}

/// Usage that already happened: always recorded, even below the floor (that part is overspend).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageRequest {
    pub id: TransferId,
    pub debit_account_id: AccountId,
    pub credit_account_id: AccountId,
    pub amount: Amount,
    pub reference: String,
}

/// Reserve `amount` of the debit account for at most `ttl_ms`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlaceHoldRequest {
    pub id: HoldId,
    pub debit_account_id: AccountId,
    pub credit_account_id: AccountId,
    pub amount: Amount,
    pub reference: String,
    pub ttl_ms: i64,
}

/// Charge `amount` for a hold and release the rest. `id` is the id of the settling transfer.
/// An amount above the hold is charged in full, as usage (the excess may be overspend).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettleHoldRequest {
    pub id: TransferId,
    pub hold_id: HoldId,
    pub amount: Amount,
}

/// Release a hold without charging. `id` names this operation for idempotency.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoidHoldRequest {
    pub id: TransferId,
    pub hold_id: HoldId,
}

/// Release a hold whose TTL has passed. Its id is derived from the hold's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpireHoldRequest {
    pub hold_id: HoldId,
}

/// Move a due grant's unconsumed remainder to the expired-credits account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpireGrantRequest {
    pub account_id: AccountId,
    pub grant_id: GrantId,
}

/// Every balance-changing operation. All go through [`crate::ledger::apply`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operation {
    Transfer(TransferRequest),
    RecordUsage(UsageRequest),
    PlaceHold(PlaceHoldRequest),
    SettleHold(SettleHoldRequest),
    VoidHold(VoidHoldRequest),
    ExpireHold(ExpireHoldRequest),
    ExpireGrant(ExpireGrantRequest),
}

impl ExpireHoldRequest {
    /// The id under which a hold's expiry is recorded: one per hold, so it happens once.
    pub fn operation_id(&self) -> TransferId {
        TransferId::new(format!("{}:expiry", self.hold_id))
    }
}

impl ExpireGrantRequest {
    /// The id of the expiry transfer of a grant: one per grant, so it happens once.
    pub fn operation_id(&self) -> TransferId {
        TransferId::new(format!("{}:expiry", self.grant_id))
    }
}
