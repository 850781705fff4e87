//! The access rules as data: one row per situation, with what it must decide.

use super::*;
use AccessState::{Active, Depleted, Low, Suspended};

fn amount(text: &str) -> Amount {
    Amount::parse_with(text, crate::money::Sign::Signed).unwrap()
}

fn policy(suspended: bool, floor: &str, thresholds: &[&str]) -> AccessPolicy {
    AccessPolicy {
        suspended,
        floor: amount(floor),
        low_thresholds: thresholds.iter().map(|t| amount(t)).collect(),
        cutoff_min: CUTOFF_MIN_DEFAULT,
    }
}

fn stored(state: AccessState, level: u32, cut_off: bool, off_told: bool) -> OrgAccess {
    OrgAccess {
        access: Access { state, level },
        cut_off,
        off_told,
    }
}

#[test]
fn cutoff_level_is_the_lowest_threshold_but_at_least_the_minimum() {
    // (floor, thresholds) → cut-off level (cutoff_min 1.00)
    let table: &[(&str, &[&str], &str)] = &[
        ("0", &[], "1"),
        ("-5", &[], "-4"),
        ("0", &["5"], "5"),
        ("0", &["5", "2"], "2"),
        ("0", &["0.01"], "1"),
        ("0", &["0"], "1"),
        ("-5", &["0"], "0"),
    ];
    for &(floor, thresholds, level) in table {
        assert_eq!(
            policy(false, floor, thresholds).cutoff_level(),
            amount(level),
            "floor {floor} thresholds {thresholds:?}"
        );
    }
}

/// One row: (before: state, level, cut off, told), posted, refused, credited, reload on,
/// thresholds, floor → (state, level, cut off, notice, reload mark).
type Row<'a> = (
    (AccessState, u32, bool, bool),
    &'a str,
    Option<&'a str>,
    bool,
    bool,
    &'a [&'a str],
    &'a str,
    (
        AccessState,
        u32,
        bool,
        Option<NoticeKind>,
        Option<ReloadDue>,
    ),
);

#[test]
fn decide_table() {
    use NoticeKind::{AccessRestored as Back, AccessTurnedOff as Off, BalanceLow};
    use ReloadDue::{Refused, Threshold};
    let rows: &[Row] = &[
        // A call refused while below the cut-off level turns access off: one email.
        (
            (Low, 1, false, false),
            "0.73",
            Some("0.90"),
            false,
            false,
            &["2"],
            "0",
            (Depleted, 1, true, Some(Off), None),
        ),
        // No threshold: the minimum (1.00) is the cut-off level.
        (
            (Active, 0, false, false),
            "0.999999",
            Some("1.20"),
            false,
            false,
            &[],
            "0",
            (Depleted, 0, true, Some(Off), None),
        ),
        // One oversized request while at or above the cut-off level: refused alone, still on.
        (
            (Active, 0, false, false),
            "50",
            Some("75"),
            false,
            false,
            &["5"],
            "0",
            (Active, 0, false, None, None),
        ),
        (
            (Active, 0, false, false),
            "2.5",
            Some("3"),
            false,
            false,
            &["2"],
            "0",
            (Active, 0, false, None, None),
        ),
        // Below the lowest threshold, which is the cut-off level: off.
        (
            (Low, 1, false, false),
            "2",
            Some("2.50"),
            false,
            false,
            &["2.5"],
            "0",
            (Depleted, 1, true, Some(Off), None),
        ),
        // Exactly at the cut-off level is on.
        (
            (Active, 0, false, false),
            "1",
            Some("3"),
            false,
            false,
            &[],
            "0",
            (Active, 0, false, None, None),
        ),
        // Already told: no second email for the same cut-off.
        (
            (Depleted, 1, true, true),
            "0.5",
            Some("0.9"),
            false,
            false,
            &["2"],
            "0",
            (Depleted, 1, true, None, None),
        ),
        // Cut off, a hold settles for less (posted unchanged or lower): stays off, silent.
        (
            (Depleted, 1, true, true),
            "0.4",
            None,
            false,
            false,
            &["2"],
            "0",
            (Depleted, 1, true, None, None),
        ),
        // Credits below the cut-off level: still off, no email (told already).
        (
            (Depleted, 1, true, true),
            "1.5",
            None,
            true,
            false,
            &["2"],
            "0",
            (Depleted, 1, true, None, None),
        ),
        // Credits at the cut-off level: back on, one email.
        (
            (Depleted, 1, true, true),
            "2",
            None,
            true,
            false,
            &["2"],
            "0",
            (Active, 0, false, Some(Back), None),
        ),
        (
            (Depleted, 1, true, true),
            "25",
            None,
            true,
            false,
            &["30", "2"],
            "0",
            (Low, 1, false, Some(Back), None),
        ),
        // Settled down to the floor without a refusal: off.
        (
            (Low, 1, false, false),
            "0",
            None,
            false,
            false,
            &["2"],
            "0",
            (Depleted, 1, true, Some(Off), None),
        ),
        // A new org (never told) whose credits land: on, no "back on".
        (
            (Depleted, 0, false, false),
            "0.25",
            None,
            true,
            false,
            &[],
            "0",
            (Active, 0, false, None, None),
        ),
        // Auto-reload on: the refusal marks it due, the email waits for the reload's outcome.
        (
            (Low, 1, false, false),
            "0.5",
            Some("0.9"),
            false,
            true,
            &["2"],
            "0",
            (Depleted, 1, true, None, Some(Refused)),
        ),
        // ... and its credits restore access silently (nothing was told).
        (
            (Depleted, 1, true, false),
            "20.5",
            None,
            true,
            true,
            &["2"],
            "0",
            (Active, 0, false, None, None),
        ),
        // ... or were too few: told now (and, still at its threshold, marked again).
        (
            (Depleted, 1, true, false),
            "1.5",
            None,
            true,
            true,
            &["2"],
            "0",
            (Depleted, 1, true, Some(Off), Some(Threshold)),
        ),
        // Threshold crossings read the posted balance: one "low" per threshold crossed.
        (
            (Active, 0, false, false),
            "4.99",
            None,
            false,
            false,
            &["5", "1"],
            "0",
            (Low, 1, false, Some(BalanceLow), None),
        ),
        (
            (Low, 1, false, false),
            "4",
            None,
            false,
            false,
            &["5", "1"],
            "0",
            (Low, 1, false, None, None),
        ),
        (
            (Low, 1, false, false),
            "0.9",
            None,
            false,
            false,
            &["5", "1"],
            "0",
            (Low, 2, false, Some(BalanceLow), None),
        ),
        // Auto-reload at its threshold (available 3 ≤ 3) is marked, the usual way.
        (
            (Active, 0, false, false),
            "3",
            None,
            false,
            true,
            &[],
            "0",
            (Active, 0, false, None, Some(Threshold)),
        ),
        // Overdraft: the floor moves the cut-off level with it.
        (
            (Active, 0, false, false),
            "-4.5",
            Some("1"),
            false,
            false,
            &[],
            "-5",
            (Depleted, 0, true, Some(Off), None),
        ),
        (
            (Active, 0, false, false),
            "-3",
            Some("2"),
            false,
            false,
            &[],
            "-5",
            (Active, 0, false, None, None),
        ),
        // Suspension wins; a cut-off is kept under it.
        (
            (Depleted, 0, true, true),
            "0",
            None,
            false,
            false,
            &[],
            "0",
            (Depleted, 0, true, None, None),
        ),
    ];
    for (i, &(before, posted, refused, credited, reload_on, thresholds, floor, want)) in
        rows.iter().enumerate()
    {
        let p = policy(false, floor, thresholds);
        let decision = decide(&Situation {
            stored: stored(before.0, before.1, before.2, before.3),
            policy: &p,
            posted: amount(posted),
            available: amount(posted),
            refused: refused.map(amount),
            credited,
            cause: Cause::Balance,
            reload: reload_on.then_some(ReloadMark {
                threshold: amount("3"),
                due: ReloadDue::No,
            }),
        });
        let got = (
            decision.stored.access.state,
            decision.stored.access.level,
            decision.stored.cut_off,
            decision.notice,
            decision.reload_due,
        );
        assert_eq!(got, want, "row {i}: {:?}", rows[i]);
        assert_eq!(
            decision.transition.is_some(),
            decision.stored.access != stored(before.0, before.1, false, false).access,
            "row {i}: a transition exactly when the access changed"
        );
    }
}

#[test]
fn suspension_and_settings() {
    let mut p = policy(true, "0", &["5"]);
    let off = decide(&Situation {
        stored: stored(Active, 0, false, false),
        policy: &p,
        posted: amount("100"),
        available: amount("100"),
        refused: None,
        credited: false,
        cause: Cause::Suspended,
        reload: None,
    });
    assert_eq!(off.stored.access.state, Suspended);
    assert_eq!(off.notice, None);
    // A new org without credits whose floor is lowered: on, and no "back on" (never off).
    p = policy(false, "-5", &[]);
    let lowered = decide(&Situation {
        stored: OrgAccess::INITIAL,
        policy: &p,
        posted: amount("0"),
        available: amount("0"),
        refused: None,
        credited: false,
        cause: Cause::Settings,
        reload: None,
    });
    assert_eq!(lowered.stored.access.state, Active);
    assert_eq!(lowered.notice, None);
    assert_eq!(lowered.transition.unwrap().cause, Cause::Settings);
    // The org's creation decides without notices.
    let created = decide(&Situation {
        stored: OrgAccess::INITIAL,
        policy: &policy(false, "0", &["5"]),
        posted: amount("0"),
        available: amount("0"),
        refused: None,
        credited: false,
        cause: Cause::Created,
        reload: None,
    });
    assert_eq!(
        (
            created.stored.access.state,
            created.stored.cut_off,
            created.notice
        ),
        (Depleted, false, None)
    );
}

#[test]
fn holds_settled_for_less_never_flap() {
    // Posted falls step by step across a threshold and to the cut-off; holds in between
    // lower only the available balance, which the thresholds do not read.
    let p = policy(false, "0", &["2", "1"]);
    let mut current = OrgAccess {
        access: Access {
            state: Active,
            level: 0,
        },
        cut_off: false,
        off_told: false,
    };
    let mut notices = Vec::new();
    let steps: &[(&str, &str, Option<&str>)] = &[
        // (posted, available, refused)
        ("2.31", "0.80", None),
        ("2.05", "2.05", None),
        ("1.97", "0.20", None),
        ("1.97", "1.97", None),
        ("1.40", "0.10", None),
        ("0.93", "0.93", None),
        ("0.93", "0.02", Some("0.40")),
        ("0.71", "0.71", None),
        ("0.71", "0.71", Some("0.80")),
    ];
    for &(posted, available, refused) in steps {
        let decision = decide(&Situation {
            stored: current,
            policy: &p,
            posted: amount(posted),
            available: amount(available),
            refused: refused.map(amount),
            credited: false,
            cause: Cause::Balance,
            reload: None,
        });
        notices.extend(decision.notice);
        current = decision.stored;
    }
    use NoticeKind::*;
    assert_eq!(notices, vec![BalanceLow, BalanceLow, AccessTurnedOff]);
    assert!(tell_after_reload(&OrgAccess {
        off_told: false,
        ..current
    }));
    assert!(!tell_after_reload(&current));
}

#[test]
fn names_round_trip() {
    for state in AccessState::ALL {
        assert_eq!(AccessState::parse(state.as_str()), Some(state));
    }
    assert!(AccessState::Depleted.refuses_calls());
    assert!(AccessState::Suspended.refuses_calls());
    assert!(!AccessState::Low.refuses_calls());
    for due in [ReloadDue::No, ReloadDue::Threshold, ReloadDue::Refused] {
        assert_eq!(ReloadDue::from_int(due.as_int()), due);
    }
}

#[test]
fn refusals_that_turn_off() {
    let p = policy(false, "0", &["5"]);
    assert!(refusal_turns_off(amount("4.99"), &p));
    assert!(!refusal_turns_off(amount("5"), &p));
    assert!(refusal_turns_off(amount("0"), &policy(false, "0", &[])));
}
