//! Access state: whether an org may spend, derived from its balance, its refused calls and
//! operator action, and what each change of it causes (notices, an auto-reload).
//!
//! The rule, in product terms:
//! * `suspended`: the operator suspended the org. Wins over everything else.
//! * `depleted` (API access turned off): the org is out of usage credits. That is the case
//!   from the first metered call refused for lack of credits while its posted balance is
//!   below its *cut-off level* (the lowest low-balance threshold, but never less than
//!   `cutoff_min` above the floor), and whenever its posted balance is at or below the floor.
//!   Access stays off until credits bring the posted balance back to the cut-off level (or
//!   above the floor, when it was turned off at the floor without a refusal).
//! * `low`: on, with the posted balance below at least one low-balance threshold.
//! * `active`: otherwise.
//!
//! A call refused while the posted balance is at or above the cut-off level (one request
//! whose worst case is larger than what is available, say 75.00 with 50.00 left) is refused
//! on its own and turns nothing off.
//!
//! Hysteresis: thresholds and the cut-off level are read from the **posted** balance, which
//! open holds do not move. Posted falls only when usage is charged (or credits expire) and
//! rises only when credits land, so a hold placed and then settled for less, or voided, never
//! crosses a threshold back and forth: one "balance low" per threshold crossed downward, one
//! "turned off" per cut-off, one "back on" per restoring credit. The available balance
//! (posted − reserved) still decides every single hold, in the ledger.
//!
//! [`decide`] is the one place that turns a batch's (or a setting's) effect on an org into its
//! new access, the transition to record and the notice and auto-reload mark it causes; the
//! store only writes what it returns.

use crate::money::Amount;
use crate::notice::NoticeKind;

/// Most low-balance thresholds per org.
pub const LOW_THRESHOLDS_MAX: usize = 8;

/// The default of [`AccessPolicy::cutoff_min`]: 1.00.
pub const CUTOFF_MIN_DEFAULT: Amount = Amount::from_micros(1_000_000);

/// An org's access state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AccessState {
    /// Credits above every threshold.
    Active,
    /// Credits below a low-balance threshold, still on.
    Low,
    /// Out of credits: calls are refused.
    Depleted,
    /// Suspended by the operator: calls are refused.
    Suspended,
}

impl AccessState {
    /// Every state.
    pub const ALL: [AccessState; 4] = [
        AccessState::Active,
        AccessState::Low,
        AccessState::Depleted,
        AccessState::Suspended,
    ];

    /// The state's name in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            AccessState::Active => "active",
            AccessState::Low => "low",
            AccessState::Depleted => "depleted",
            AccessState::Suspended => "suspended",
        }
    }

    /// The state named `text`.
    pub fn parse(text: &str) -> Option<AccessState> {
        AccessState::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether calls are refused in this state.
    pub fn refuses_calls(self) -> bool {
        matches!(self, AccessState::Depleted | AccessState::Suspended)
    }
}

/// What the state is derived from, besides the balance.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccessPolicy {
    /// Suspended by the operator.
    pub suspended: bool,
    /// The lowest available balance the org may reach.
    pub floor: Amount,
    /// Low-balance thresholds (any order).
    pub low_thresholds: Vec<Amount>,
    /// The least posted balance above the floor under which a call refused for lack of
    /// credits turns access off (the deployment's `cutoff_balance_min`; not negative).
    pub cutoff_min: Amount,
}

impl AccessPolicy {
    /// The posted balance under which a refused call turns access off, and at or above which
    /// credits turn it back on: the lowest low-balance threshold, but at least
    /// `floor + cutoff_min`.
    pub fn cutoff_level(&self) -> Amount {
        let least = self
            .floor
            .checked_add(self.cutoff_min)
            .unwrap_or(Amount::from_micros(i64::MAX));
        let lowest = self.low_thresholds.iter().copied().min();
        lowest.map_or(least, |lowest| lowest.max(least))
    }

    /// Thresholds the posted balance is below.
    pub fn level(&self, posted: Amount) -> u32 {
        let level = self
            .low_thresholds
            .iter()
            .filter(|threshold| posted < **threshold)
            .count();
        u32::try_from(level).unwrap_or(u32::MAX)
    }
}

/// An org's access: the state and how many thresholds its balance is below.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    /// The state.
    pub state: AccessState,
    /// Thresholds the posted balance is below (0 when none).
    pub level: u32,
}

impl Access {
    /// A new org's access before anything is derived.
    pub const INITIAL: Access = Access {
        state: AccessState::Depleted,
        level: 0,
    };
}

/// What is stored of an org's access between decisions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrgAccess {
    /// The state and level as last decided.
    pub access: Access,
    /// Access was turned off (by a refused call, or the floor) and has not been back at the
    /// cut-off level since: calls are refused even where the ledger could fund them.
    pub cut_off: bool,
    /// A "turned off" notice went out and no "back on" since.
    pub off_told: bool,
}

impl OrgAccess {
    /// A new org: no access yet, nothing turned off, nothing told.
    pub const INITIAL: OrgAccess = OrgAccess {
        access: Access::INITIAL,
        cut_off: false,
        off_told: false,
    };
}

/// Why an access changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// Balances changed (usage, holds, credits, expiry).
    Balance,
    /// A metered call was refused for lack of credits.
    Refused,
    /// The operator suspended the org.
    Suspended,
    /// The operator lifted a suspension.
    Unsuspended,
    /// The operator changed the floor or the thresholds.
    Settings,
    /// The org was created.
    Created,
}

impl Cause {
    /// The cause's name in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Balance => "balance",
            Cause::Refused => "refused",
            Cause::Suspended => "suspended",
            Cause::Unsuspended => "unsuspended",
            Cause::Settings => "settings",
            Cause::Created => "created",
        }
    }
}

/// One change of access, to be recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    /// Before.
    pub from: Access,
    /// After.
    pub to: Access,
    /// Why.
    pub cause: Cause,
    /// The available balance after the change.
    pub available: Amount,
    /// [`Cause::Refused`]: the worst case of the refused call.
    pub refused_amount: Option<Amount>,
}

/// Whether an org's auto-reload is marked for a decision, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ReloadDue {
    /// Not marked.
    No,
    /// The available balance reached the threshold.
    Threshold,
    /// A call was refused for lack of credits: reload whatever the threshold says.
    Refused,
}

impl ReloadDue {
    /// As stored (`auto_reloads.due`).
    pub fn as_int(self) -> i64 {
        match self {
            ReloadDue::No => 0,
            ReloadDue::Threshold => 1,
            ReloadDue::Refused => 2,
        }
    }

    /// The reverse of [`ReloadDue::as_int`] (any other value reads as `Threshold`).
    pub fn from_int(value: i64) -> ReloadDue {
        match value {
            0 => ReloadDue::No,
            2 => ReloadDue::Refused,
            _ => ReloadDue::Threshold,
        }
    }
}

/// An org's auto-reload, when it is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReloadMark {
    /// Reload when the available balance is at or below this.
    pub threshold: Amount,
    /// How it is marked now.
    pub due: ReloadDue,
}

/// What one decision about an org starts from.
#[derive(Clone, Debug)]
pub struct Situation<'a> {
    /// What is stored of its access.
    pub stored: OrgAccess,
    /// Its policy (after the change, for settings).
    pub policy: &'a AccessPolicy,
    /// Its posted balance now.
    pub posted: Amount,
    /// Its available balance now.
    pub available: Amount,
    /// The worst case of the first call the batch refused for lack of credits, if any.
    pub refused: Option<Amount>,
    /// Whether credits landed in the batch (a grant, purchase, reload or positive adjustment).
    pub credited: bool,
    /// Why it is decided (`Balance` for a ledger batch; `Refused` is chosen here).
    pub cause: Cause,
    /// Its auto-reload, when on.
    pub reload: Option<ReloadMark>,
}

/// What to write for one org.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The access to store.
    pub stored: OrgAccess,
    /// The transition to record, when the state or level changed.
    pub transition: Option<Transition>,
    /// The notice to write (in the same transaction).
    pub notice: Option<NoticeKind>,
    /// Mark the auto-reload due like this (only ever raised).
    pub reload_due: Option<ReloadDue>,
}

/// The access `situation` leads to, the transition, notice and reload mark it causes.
///
/// Notices:
/// * into `depleted` (not from `depleted`): "turned off", unless auto-reload is on and gets
///   the first try (the store then tells the org only if that reload does not restore access:
///   declined, limit reached, confirmation needed, or too small), or the org was told already;
/// * staying `depleted` after credits landed, not told yet: "turned off" (the rescue was not
///   enough);
/// * out of `depleted` into `active` or `low`: "back on", only if "turned off" was told;
/// * a higher level while on: "balance low";
/// * a new org ([`Cause::Created`]): nothing.
pub fn decide(situation: &Situation) -> Decision {
    let Situation {
        stored,
        policy,
        posted,
        available,
        refused,
        credited,
        reload,
        ..
    } = situation;
    let (posted, available) = (*posted, *available);
    let created = situation.cause == Cause::Created;
    let at_floor = posted <= policy.floor;
    let cut_off = if policy.suspended {
        stored.cut_off
    } else if posted >= policy.cutoff_level() && !at_floor {
        false
    } else if refused.is_some() || (at_floor && !created) {
        true
    } else {
        stored.cut_off
    };
    let level = policy.level(posted);
    let state = if policy.suspended {
        AccessState::Suspended
    } else if at_floor || cut_off {
        AccessState::Depleted
    } else if level > 0 {
        AccessState::Low
    } else {
        AccessState::Active
    };
    let to = Access { state, level };
    let from = stored.access;
    let cause = match situation.cause {
        Cause::Balance if refused.is_some() && to.state == AccessState::Depleted => Cause::Refused,
        cause => cause,
    };
    let transition = (to != from).then_some(Transition {
        from,
        to,
        cause,
        available,
        refused_amount: refused.filter(|_| cause == Cause::Refused),
    });
    let mut off_told = stored.off_told;
    let mut reload_due = None;
    let reloading = reload.is_some() && !policy.suspended;
    let notice = if created {
        None
    } else {
        match (from.state, to.state) {
            (AccessState::Depleted, AccessState::Depleted) => {
                (*credited && !off_told).then_some(NoticeKind::AccessTurnedOff)
            }
            (_, AccessState::Depleted) if reloading => None,
            (_, AccessState::Depleted) => (!off_told).then_some(NoticeKind::AccessTurnedOff),
            (AccessState::Depleted, AccessState::Active | AccessState::Low) => {
                off_told.then_some(NoticeKind::AccessRestored)
            }
            (_, AccessState::Active | AccessState::Low) if to.level > from.level => {
                Some(NoticeKind::BalanceLow)
            }
            _ => None,
        }
    };
    match notice {
        Some(NoticeKind::AccessTurnedOff) => off_told = true,
        Some(NoticeKind::AccessRestored) => off_told = false,
        _ => {}
    }
    if let Some(mark) = reload.filter(|_| !policy.suspended && !created) {
        let wanted = if refused.is_some() && to.state == AccessState::Depleted {
            ReloadDue::Refused
        } else if available <= mark.threshold {
            ReloadDue::Threshold
        } else {
            ReloadDue::No
        };
        reload_due = (wanted > mark.due).then_some(wanted);
    }
    Decision {
        stored: OrgAccess {
            access: to,
            cut_off,
            off_told,
        },
        transition,
        notice,
        reload_due,
    }
}

/// Whether an org whose auto-reload did not restore its access (declined, limit reached,
/// confirmation needed, no reload made) is to be told now that access is turned off.
pub fn tell_after_reload(stored: &OrgAccess) -> bool {
    stored.access.state == AccessState::Depleted && stored.cut_off && !stored.off_told
}

/// Which 402 a call refused for lack of credits gets: `true` when the org is out of credits
/// (its posted balance is below the cut-off level, or at the floor), `false` when only this
/// request's worst case is more than what is available.
pub fn refusal_turns_off(posted: Amount, policy: &AccessPolicy) -> bool {
    posted <= policy.floor || posted < policy.cutoff_level()
}

#[cfg(test)]
mod tests;
