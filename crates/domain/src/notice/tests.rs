//! Tests of the kinds, which credit causes which notice, and the formatting helpers (which
//! access change causes which notice is tested with `access::decide`).

use super::layout::{api_name, wrap, Text};
use super::*;
use crate::money::Amount;
use crate::time::Timestamp;

pub(super) fn amount(text: &str) -> Amount {
    text.parse().unwrap()
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
            "spend_limit.reached",
            "credits.added",
            "auto_reload.charged",
            "auto_reload.failed",
            "auto_reload.disabled",
            "payment.action_required",
            "credits.expiring",
            "member.sign_in",
            "member.invited",
            "refund.issued",
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
    let escape = |text: &str| maud::html! { (Text(text)) }.into_string();
    assert_eq!(
        escape("<script>alert('x')</script> & \"Co\""),
        "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;Co&quot;"
    );
    assert_eq!(escape("plain ünïcode"), "plain ünïcode");
    assert_eq!(escape("&amp;"), "&amp;amp;");
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

#[test]
fn api_names() {
    // product name → how the emails name its API
    let table = [
        ("Acme AI", "Acme AI API"),
        ("Acme", "Acme API"),
        ("Example API", "Example API"),
        ("Example api", "Example api"),
        ("Example-Api", "Example-Api"),
        ("API", "API"),
        ("api", "api"),
        // "API" ending a longer word is not the word "API".
        ("OpenAPI", "OpenAPI API"),
        ("Rapi", "Rapi API"),
        ("Acme_API", "Acme_API API"),
        ("Ünïcodeapi", "Ünïcodeapi API"),
        ("Acme ÄPI", "Acme ÄPI API"),
        ("APIs", "APIs API"),
        ("AP", "AP API"),
        ("é", "é API"),
        ("", "API"),
    ];
    for (product, expected) in table {
        assert_eq!(api_name(product), expected, "{product:?}");
    }
}
