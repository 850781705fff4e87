//! Access state: whether an org may spend, derived from its balance and operator action.
//!
//! * `suspended`: the operator suspended the org. Wins over everything else.
//! * `depleted`: the available balance (posted − reserved) is at or below the floor, so no
//!   hold or charge can be placed: API access is off until credits land.
//! * `low`: above the floor but below at least one low-balance threshold.
//! * `active`: otherwise.
//!
//! Besides the state, [`Access::level`] counts the thresholds the balance is below, so that a
//! crossing of each threshold downward is one transition (one "balance low" notice per
//! crossing), and a rise back above it re-arms it.
//!
//! The writer of balances derives the state after every batch, in the batch's transaction,
//! and records each change as a [`Transition`]; operator changes (suspend, floor, thresholds)
//! do the same in theirs.

use crate::money::Amount;

/// Most low-balance thresholds per org.
pub const LOW_THRESHOLDS_MAX: usize = 8;

/// An org's access state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AccessState {
    /// Credits above every threshold.
    Active,
    /// Credits below a low-balance threshold, still above the floor.
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
}

/// An org's access: the state and how many thresholds its balance is below.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    /// The state.
    pub state: AccessState,
    /// Thresholds the available balance is below (0 when none).
    pub level: u32,
}

impl Access {
    /// A new org's access before anything is derived.
    pub const INITIAL: Access = Access {
        state: AccessState::Depleted,
        level: 0,
    };
}

/// Why an access changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// Balances changed (usage, holds, credits, expiry).
    Balance,
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
}

/// The access an org with `available` credits has under `policy`.
pub fn derive(available: Amount, policy: &AccessPolicy) -> Access {
    let level = policy
        .low_thresholds
        .iter()
        .filter(|threshold| available < **threshold)
        .count();
    let level = u32::try_from(level).unwrap_or(u32::MAX);
    let state = if policy.suspended {
        AccessState::Suspended
    } else if available <= policy.floor {
        AccessState::Depleted
    } else if level > 0 {
        AccessState::Low
    } else {
        AccessState::Active
    };
    Access { state, level }
}

/// The transition from `previous` to what `available` and `policy` now give, if anything
/// changed.
pub fn transition(
    previous: Access,
    available: Amount,
    policy: &AccessPolicy,
    cause: Cause,
) -> Option<Transition> {
    let next = derive(available, policy);
    (next != previous).then_some(Transition {
        from: previous,
        to: next,
        cause,
        available,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amount(text: &str) -> Amount {
        Amount::parse_with(text, crate::money::Sign::Signed).unwrap()
    }

    fn policy(suspended: bool, floor: &str, thresholds: &[&str]) -> AccessPolicy {
        AccessPolicy {
            suspended,
            floor: amount(floor),
            low_thresholds: thresholds.iter().map(|t| amount(t)).collect(),
        }
    }

    #[test]
    fn derive_table() {
        use AccessState::*;
        // (available, suspended, floor, thresholds) → (state, level)
        type Row<'a> = (&'a str, bool, &'a str, &'a [&'a str], AccessState, u32);
        let table: &[Row] = &[
            ("10.00", false, "0", &[], Active, 0),
            ("0.000001", false, "0", &[], Active, 0),
            ("0", false, "0", &[], Depleted, 0),
            ("-1", false, "0", &[], Depleted, 0),
            ("-1", false, "-5", &[], Active, 0),
            ("-5", false, "-5", &[], Depleted, 0),
            ("4.99", false, "0", &["5"], Low, 1),
            ("5.00", false, "0", &["5"], Active, 0),
            ("0.50", false, "0", &["5", "1"], Low, 2),
            ("2.00", false, "0", &["1", "5"], Low, 1),
            ("0", false, "0", &["5", "1"], Depleted, 2),
            ("100", true, "0", &["5"], Suspended, 0),
            ("0", true, "0", &["5"], Suspended, 1),
        ];
        for &(available, suspended, floor, thresholds, state, level) in table {
            let got = derive(amount(available), &policy(suspended, floor, thresholds));
            assert_eq!(
                got,
                Access { state, level },
                "available {available} suspended {suspended} floor {floor} thresholds {thresholds:?}"
            );
        }
    }

    #[test]
    fn transitions_only_on_change() {
        let p = policy(false, "0", &["5", "1"]);
        let active = derive(amount("10"), &p);
        assert_eq!(transition(active, amount("9"), &p, Cause::Balance), None);
        let low = transition(active, amount("4"), &p, Cause::Balance).unwrap();
        assert_eq!(low.to.state, AccessState::Low);
        // Crossing the second threshold is a transition of its own, state unchanged.
        let lower = transition(low.to, amount("0.5"), &p, Cause::Balance).unwrap();
        assert_eq!((lower.to.state, lower.to.level), (AccessState::Low, 2));
        let off = transition(lower.to, amount("0"), &p, Cause::Balance).unwrap();
        assert_eq!(off.to.state, AccessState::Depleted);
        assert_eq!(transition(off.to, amount("0"), &p, Cause::Balance), None);
        let back = transition(off.to, amount("20"), &p, Cause::Balance).unwrap();
        assert_eq!((back.to.state, back.to.level), (AccessState::Active, 0));
    }

    #[test]
    fn names_round_trip() {
        for state in AccessState::ALL {
            assert_eq!(AccessState::parse(state.as_str()), Some(state));
        }
        assert!(AccessState::Depleted.refuses_calls());
        assert!(AccessState::Suspended.refuses_calls());
        assert!(!AccessState::Low.refuses_calls());
    }
}
