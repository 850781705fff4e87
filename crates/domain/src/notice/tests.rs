//! Tests of the kinds and the decisions (which transition or credit causes which notice, as
//! tables and along a walk of balances) and of the formatting helpers.

use super::layout::wrap;
use super::*;
use crate::access::Access;
use crate::money::Amount;
use crate::time::Timestamp;

pub(super) fn amount(text: &str) -> Amount {
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
