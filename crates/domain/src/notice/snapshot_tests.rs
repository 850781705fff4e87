//! The example emails (one of each kind, and the base context the other email tests start
//! from), their exact subjects, and the snapshot files they must match
//! (`tests/snapshots/notice_*`; `UPDATE_SNAPSHOTS=1` rewrites them).

use super::tests::amount;
use super::*;
use crate::money::Amount;
use crate::time::Timestamp;
use std::path::PathBuf;

pub(super) fn context() -> EmailContext<'static> {
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
        resets_at: None,
        auto_reload_enabled: false,
    }
}

/// The example sign-in link (a secret of the length the shell makes).
pub(super) const SIGN_IN_URL: &str =
    "https://api.acme.example/billing/auth/sgn_7Qm2XrT9vKcL4pZ8nW3yB6dF1hJ5sA0e";

/// When the example links and credits expire: 2026-11-24 14:05 UTC.
pub(super) fn expiry() -> Timestamp {
    Timestamp::from_unix_ms(1_795_529_100_000)
}

/// When the example spend limit resets: 2026-12-01 00:00 UTC.
pub(super) fn reset() -> Timestamp {
    Timestamp::from_unix_ms(1_796_083_200_000)
}

/// Where the example payment is confirmed (with a `&`, which HTML must escape).
pub(super) const CONFIRM_URL: &str =
    "https://pay.example/authenticate/pi_3QxYz8K2eZvKYlo2C?client=email&step=1";

/// The emails the snapshots hold: one of each kind.
pub(super) fn examples() -> [(NoticeKind, &'static str, Email); 13] {
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
    let limited = EmailContext {
        available: amount("37.40"),
        amount: Some(amount("100")),
        resets_at: Some(reset()),
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
    let refunded = EmailContext {
        available: amount("7.50"),
        amount: Some(amount("12.50")),
        receipt_id: Some("txn_rfd_5e0a7c13"),
        failure_reason: Some("Bought twice by mistake"),
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
            NoticeKind::SpendLimitReached,
            "spend_limit_reached",
            render(NoticeKind::SpendLimitReached, &limited),
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
        (
            NoticeKind::RefundIssued,
            "refund_issued",
            render(NoticeKind::RefundIssued, &refunded),
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
            "[action needed] Your Acme AI API spend limit is reached",
            "Receipt: $20.00 of Acme AI credits added",
            "Receipt: $20.00 of Acme AI credits added by auto-reload",
            "[action needed] Auto-reload of your Acme AI credits failed",
            "[action needed] Auto-reload of your Acme AI credits is turned off",
            "[action needed] Confirm your Acme AI payment",
            "$20.00 of your Acme AI credits expire on 2026-11-24",
            "Your sign-in link for Acme AI billing",
            "You're invited to Initech on Acme AI",
            "Receipt: $12.50 of Acme AI credits refunded",
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
        out.push_str("(the lines agree; the difference is in line endings or the final newline)\n");
    }
    out
}
