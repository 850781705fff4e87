//! What each email must say and link to, with the example values and without the optional
//! ones: other currencies, a missing threshold, amount, reason, URL, link, role, expiry or
//! reset; how the product's API is named; and what the balance emails say about auto-reload,
//! off or on.

use super::layout::Text;
use super::snapshot_tests::{context, examples, reset, CONFIRM_URL, SIGN_IN_URL};
use super::tests::amount;
use super::*;
use crate::time::Timestamp;
use maud::html;

#[test]
fn required_content() {
    let billing = "https://api.acme.example/billing/org_01HX3Q9R7C5B2N8M4K6J0T1V2W";
    let auto_reload_settings = format!("{billing}/auto-reload");
    let help = "https://api.acme.example/help";
    let auto_reload =
        "credits are added automatically when your balance reaches a minimum you choose";
    for (kind, _, email) in examples() {
        let text = email.text.replace('\n', " ");
        let lines: Vec<&str> = email.text.lines().collect();
        let main_link = match kind {
            NoticeKind::AutoReloadFailed | NoticeKind::AutoReloadDisabled => {
                auto_reload_settings.as_str()
            }
            NoticeKind::PaymentActionRequired => CONFIRM_URL,
            NoticeKind::MemberSignIn | NoticeKind::MemberInvited => SIGN_IN_URL,
            _ => billing,
        };
        assert!(
            lines.contains(&main_link),
            "{kind:?}: main link on its own line"
        );
        assert!(lines.contains(&help), "{kind:?}: help link on its own line");
        assert!(
            email.html.contains(&format!(
                "href=\"{}\"",
                html! { (Text(main_link)) }.into_string()
            )),
            "{kind:?}: main link in HTML"
        );
        assert!(
            lines.iter().all(|line| !line.ends_with(": ")),
            "{kind:?}: no empty figure"
        );
        // A link longer than the width stays whole, on its own line.
        let link = |line: &str| line.starts_with("https://") && !line.contains(' ');
        assert!(
            lines
                .iter()
                .all(|l| l.chars().count() <= TEXT_WIDTH || link(l)),
            "{kind:?}: wrapped"
        );
        let footer = if kind.is_for_member() {
            "a member of Initech (org_01HX3Q9R7C5B2N8M4K6J0T1V2W) on Acme AI."
        } else {
            "a billing contact, owner or admin of Initech (org_01HX3Q9R7C5B2N8M4K6J0T1V2W) \
             on Acme AI."
        };
        assert!(text.ends_with(&format!("{footer} ")), "{kind:?}: footer");
        // Member emails are about signing in, not about the org's money.
        assert_eq!(
            text.contains("Available balance:"),
            !kind.is_for_member(),
            "{kind:?}: balance"
        );
        assert!(
            !email.html.contains("src="),
            "{kind:?}: no external resources"
        );
        assert!(
            !email.html.contains("<link"),
            "{kind:?}: no external resources"
        );
        let recommends = text.to_lowercase().contains(auto_reload);
        assert_eq!(
            recommends,
            matches!(kind, NoticeKind::AccessTurnedOff | NoticeKind::BalanceLow),
            "{kind:?}: auto-reload line"
        );
        match kind {
            NoticeKind::AccessTurnedOff => {
                assert!(text.contains("Initech is out of usage credits"));
                assert!(text.contains("API access is turned off"));
                assert!(text.contains("refused until credits are added"));
            }
            NoticeKind::AccessRestored => {
                assert!(text.contains("API access is back on"));
                assert!(lines.contains(&"Available balance: $12.50"));
            }
            NoticeKind::CreditsAdded => {
                assert!(lines.contains(&"Credits added: $20.00"));
                assert!(lines.contains(&"Receipt number: txn_4f1c2a9e"));
                assert!(lines.contains(&"Available balance: $25.00"));
                assert_eq!(email.subject, "Receipt: $20.00 of Acme AI credits added");
            }
            NoticeKind::BalanceLow => {
                assert!(text.contains("below $5.00"));
                assert!(lines.contains(&"Available balance: $4.99"));
            }
            NoticeKind::SpendLimitReached => {
                assert!(text.contains(
                    "Initech reached a spend limit of $100.00 on the Acme AI API, so API \
                     requests are refused until the limit resets at 2026-12-01 00:00 UTC"
                ));
                assert!(text.contains("or for one of its API keys"));
                assert!(lines.contains(&"Spend limit: $100.00"));
                assert!(lines.contains(&"Resets: 2026-12-01 00:00 UTC"));
                assert!(lines.contains(&"Available balance: $37.40"));
                assert!(email.html.contains(">Open the Billing page</a>"));
            }
            NoticeKind::AutoReloadCharged => {
                assert!(text.contains(
                    "the saved card was charged automatically because the balance \
                     reached the auto-reload threshold of $5.00."
                ));
                assert!(lines.contains(&"Credits added: $20.00"));
                assert!(lines.contains(&"Receipt number: txn_9b7d3e21"));
                assert!(lines.contains(&"Available balance: $25.00"));
                assert!(text.contains("change the auto-reload settings"));
            }
            NoticeKind::AutoReloadFailed => {
                assert!(text.contains("the charge of $20.00 on the saved card failed."));
                assert!(lines.contains(&"Reason: Your card was declined."));
                assert!(text.contains("tried again at 2026-11-24 14:05 UTC;"));
                assert!(text.contains("API access is turned off"));
                assert!(lines.contains(&"Available balance: $4.20"));
                assert!(email.html.contains(">Update your card</a>"));
            }
            NoticeKind::AutoReloadDisabled => {
                assert!(text.contains("turned off after repeated failed charges"));
                assert!(lines.contains(&"Reason for the last failure: Your card has expired."));
                assert!(text.contains("Credits are no longer added automatically."));
                assert!(text.contains("API access is turned off"));
                assert!(lines.contains(&"Available balance: $1.75"));
                assert!(email.html.contains(">Turn auto-reload back on</a>"));
            }
            NoticeKind::PaymentActionRequired => {
                assert!(text.contains("A payment of $50.00 for usage credits of Initech"));
                assert!(text.contains("3-D Secure"));
                assert!(text.contains("credits are added as soon as the payment is confirmed"));
                assert!(lines.contains(&"Available balance: $3.10"));
                assert!(email.html.contains(">Confirm the payment</a>"));
                assert!(!text.contains(billing), "links to the confirmation only");
            }
            NoticeKind::CreditsExpiring => {
                assert!(text.contains(
                    "$20.00 of the usage credits of Initech on Acme AI are still unused \
                     and expire on 2026-11-24 14:05 UTC."
                ));
                assert!(text.contains("after that, they are gone"));
                assert!(lines.contains(&"Credits expiring: $20.00"));
                assert!(lines.contains(&"Expires: 2026-11-24 14:05 UTC"));
                assert!(lines.contains(&"Available balance: $42.00"));
                assert!(email.html.contains(">Open the Billing page</a>"));
            }
            NoticeKind::MemberSignIn => {
                assert!(text.contains("sign in to the Billing page of Initech on Acme AI"));
                assert!(text.contains("The link works once, until 2026-11-24 14:20 UTC."));
                assert!(text.contains("If you didn't ask for this, ignore this email"));
                assert!(email.html.contains(">Sign in</a>"));
                assert!(!text.contains(billing), "links to the sign-in only");
            }
            NoticeKind::MemberInvited => {
                assert!(text.contains("You were added to Initech on Acme AI as Developer."));
                assert!(lines.contains(&"Role: Developer"));
                assert!(text.contains("The link works once, until 2026-11-24 14:05 UTC."));
                assert!(email.html.contains(">Accept the invitation</a>"));
                assert!(!text.contains(billing), "links to the sign-in only");
            }
            NoticeKind::RefundIssued => {
                assert!(text.contains("$12.50 was refunded to the card"));
                assert!(lines.contains(&"Reason: Bought twice by mistake"));
                assert!(lines.contains(&"Refunded: $12.50"));
                assert!(lines.contains(&"Receipt number: txn_rfd_5e0a7c13"));
                assert!(lines.contains(&"Available balance: $7.50"));
                assert!(email.html.contains(">Open the Billing page</a>"));
            }
        }
    }
}

#[test]
fn other_currencies_and_a_missing_threshold() {
    let euros = EmailContext {
        currency: "EUR",
        available: amount("4.99"),
        threshold: Some(amount("5")),
        ..context()
    };
    let email = render(NoticeKind::BalanceLow, &euros);
    assert!(email.text.contains("below 5.00 EUR."));
    assert!(email.text.contains("Available balance: 4.99 EUR\n"));
    assert!(email.html.contains("<strong>4.99 EUR</strong>"));

    let no_threshold = EmailContext {
        available: amount("4.99"),
        ..context()
    };
    let email = render(NoticeKind::BalanceLow, &no_threshold);
    assert!(email
        .text
        .contains("The usage credits of Initech are running low."));
}

#[test]
fn a_trailing_slash_on_the_public_url_is_dropped() {
    let slashed = EmailContext {
        public_url: "https://api.acme.example/",
        ..context()
    };
    assert_eq!(
        render(NoticeKind::AccessTurnedOff, &slashed),
        render(NoticeKind::AccessTurnedOff, &context())
    );
}

#[test]
fn payment_emails_without_optional_values() {
    let billing = "https://api.acme.example/billing/org_01HX3Q9R7C5B2N8M4K6J0T1V2W";
    // Auto-reload charged: no amount, threshold or receipt number.
    let email = render(NoticeKind::AutoReloadCharged, &context());
    assert_eq!(
        email.subject,
        "Receipt: Acme AI credits added by auto-reload"
    );
    let text = email.text.replace('\n', " ");
    assert!(text.starts_with("Usage credits were added to Initech on Acme AI by auto-reload:"));
    assert!(text.contains("because the balance reached the auto-reload threshold."));
    assert!(!text.contains("Credits added:"));
    assert!(!text.contains("Receipt number:"));

    // Auto-reload failed: no amount, no reason (missing or blank), no next try.
    for reason in [None, Some(""), Some(" \r\n ")] {
        let email = render(
            NoticeKind::AutoReloadFailed,
            &EmailContext {
                failure_reason: reason,
                ..context()
            },
        );
        let text = email.text.replace('\n', " ");
        assert!(!text.contains("Reason"), "{reason:?}");
        assert!(text.contains("the charge on the saved card failed."));
        assert!(text.contains("The charge will not be tried again automatically."));
        assert!(!text.contains("UTC"));
    }
    // A reason with line breaks stays on one line.
    let email = render(
        NoticeKind::AutoReloadFailed,
        &EmailContext {
            failure_reason: Some("Your card\r\nwas declined."),
            ..context()
        },
    );
    assert!(email
        .text
        .lines()
        .any(|l| l == "Reason: Your card was declined."));

    // Auto-reload turned off: no reason.
    let email = render(NoticeKind::AutoReloadDisabled, &context());
    let text = email.text.replace('\n', " ");
    assert!(!text.contains("Reason"));
    assert!(text.contains("turned off after repeated failed charges"));

    // Payment needing confirmation: no URL, or one not fit for a link → the Billing page.
    let fallback = render(NoticeKind::PaymentActionRequired, &context());
    assert!(fallback.text.lines().any(|l| l == billing));
    assert!(fallback
        .text
        .contains("Confirm the payment on the Billing page:\n"));
    assert!(fallback
        .text
        .contains("A payment for usage credits of Initech"));
    for unfit in [
        "javascript:alert(1)",
        "https://pay.example/a b",
        "https://pay.example/a\nb",
        "pay.example/confirm",
        "",
    ] {
        let email = render(
            NoticeKind::PaymentActionRequired,
            &EmailContext {
                action_url: Some(unfit),
                ..context()
            },
        );
        assert_eq!(email, fallback, "{unfit:?}");
    }
    let email = render(
        NoticeKind::PaymentActionRequired,
        &EmailContext {
            action_url: Some("HTTP://localhost:8080/confirm"),
            ..context()
        },
    );
    assert!(email
        .text
        .lines()
        .any(|l| l == "HTTP://localhost:8080/confirm"));
    assert!(!email.text.contains(billing));
}

#[test]
fn member_emails_without_optional_values() {
    let billing = "https://api.acme.example/billing/org_01HX3Q9R7C5B2N8M4K6J0T1V2W";
    for kind in [NoticeKind::MemberSignIn, NoticeKind::MemberInvited] {
        // No link: the Billing page, where a new one can be asked for.
        let email = render(kind, &context());
        assert!(email.text.lines().any(|l| l == billing), "{kind:?}");
        assert!(
            email
                .text
                .contains("Ask for a sign-in link on the Billing page:\n"),
            "{kind:?}"
        );
        assert!(
            email
                .text
                .replace('\n', " ")
                .contains("The link works once, for a limited time."),
            "{kind:?}"
        );
        assert!(!email.text.contains("UTC"), "{kind:?}");
    }
    // No role, or a blank one: no role line.
    for role in [None, Some(""), Some(" \r\n ")] {
        let email = render(
            NoticeKind::MemberInvited,
            &EmailContext {
                member_role: role,
                ..context()
            },
        );
        let text = email.text.replace('\n', " ");
        assert!(!text.contains("Role"), "{role:?}");
        assert!(
            text.contains("You were added to Initech on Acme AI."),
            "{role:?}"
        );
    }
}

#[test]
fn credits_expiring_without_optional_values() {
    let email = render(NoticeKind::CreditsExpiring, &context());
    assert_eq!(email.subject, "Some of your Acme AI credits expire soon");
    let text = email.text.replace('\n', " ");
    assert!(text.contains(
        "Some of the usage credits of Initech on Acme AI are still unused and expire soon."
    ));
    assert!(!text.contains("Credits expiring:"));
    assert!(!text.contains("Expires:"));
    let only_amount = render(
        NoticeKind::CreditsExpiring,
        &EmailContext {
            amount: Some(amount("0.000375")),
            ..context()
        },
    );
    assert_eq!(
        only_amount.subject,
        "$0.000375 of your Acme AI credits expire soon"
    );
    let only_time = render(
        NoticeKind::CreditsExpiring,
        &EmailContext {
            expires_at: Some(Timestamp::from_unix_ms(4_107_542_340_000)),
            ..context()
        },
    );
    assert_eq!(
        only_time.subject,
        "Some of your Acme AI credits expire on 2100-02-28"
    );
    assert!(only_time
        .text
        .lines()
        .any(|l| l == "Expires: 2100-02-28 23:59 UTC"));
}

/// The subject of the turned-off email for a product name.
#[test]
fn turned_off_subjects_name_the_api_once() {
    // product name → subject
    let table = [
        (
            "Example API",
            "[action needed] Your Example API access is turned off",
        ),
        ("Acme", "[action needed] Your Acme API access is turned off"),
        (
            "Acme AI",
            "[action needed] Your Acme AI API access is turned off",
        ),
        (
            "Example api",
            "[action needed] Your Example api access is turned off",
        ),
    ];
    for (product_name, subject) in table {
        let context = EmailContext {
            product_name,
            ..context()
        };
        let email = render(NoticeKind::AccessTurnedOff, &context);
        assert_eq!(email.subject, subject, "{product_name:?}");
    }
    // Every email that names the product's API names it once.
    let example = EmailContext {
        product_name: "Example API",
        ..context()
    };
    for kind in NoticeKind::ALL {
        let email = render(kind, &example);
        let text = email.text.replace('\n', " ");
        for doubled in ["API API", "api API"] {
            assert!(
                !email.subject.contains(doubled),
                "{kind:?}: {}",
                email.subject
            );
            assert!(!text.contains(doubled), "{kind:?}: {text}");
            assert!(!email.html.contains(doubled), "{kind:?}");
        }
    }
    let restored = render(NoticeKind::AccessRestored, &example);
    assert_eq!(restored.subject, "Your Example API access is back on");
    let limited = render(NoticeKind::SpendLimitReached, &example);
    assert_eq!(
        limited.subject,
        "[action needed] Your Example API spend limit is reached"
    );
    let low = render(NoticeKind::BalanceLow, &example);
    assert!(low
        .text
        .replace('\n', " ")
        .contains("its Example API access is turned off"));
}

/// What the turned-off email says about auto-reload: a recommendation when it is off; when
/// it is on, why it did not keep access on, and never a recommendation.
#[test]
fn turned_off_speaks_to_auto_reload() {
    let settings = "https://api.acme.example/billing/org_01HX3Q9R7C5B2N8M4K6J0T1V2W/auto-reload";
    let recommendation =
        "Credits are added automatically when your balance reaches a minimum you choose.";
    let update = "Update the saved card or the auto-reload settings on the Billing page:";
    let change = "Change the auto-reload settings on the Billing page:";
    let too_little = "Auto-reload is on, but it did not add enough credits to Initech to \
                      cover the refused request.";
    // (auto-reload on, failure reason) → what the text says (line breaks read as spaces),
    // the lead of the settings link, whether it recommends auto-reload
    type Row<'a> = (bool, Option<&'a str>, &'a [&'a str], &'a str, bool);
    let table: &[Row] = &[
        (
            false,
            None,
            &["Avoid this next time: turn on auto-reload."],
            "Set it up on the Billing page:",
            true,
        ),
        // Off: a reason cannot be auto-reload's, and the recommendation stands.
        (
            false,
            Some("Your card was declined."),
            &["Avoid this next time: turn on auto-reload."],
            "Set it up on the Billing page:",
            true,
        ),
        (
            true,
            Some("Your card was declined."),
            &[
                "Auto-reload is on, but it tried and could not add credits to Initech.",
                "Reason: Your card was declined.",
            ],
            update,
            false,
        ),
        (
            true,
            Some("Auto-reload reached its monthly limit."),
            &["Reason: Auto-reload reached its monthly limit."],
            update,
            false,
        ),
        (
            true,
            Some("Your bank asks you to confirm the payment."),
            &["Reason: Your bank asks you to confirm the payment."],
            update,
            false,
        ),
        (true, None, &[too_little], change, false),
        // A blank reason is no reason.
        (true, Some(" \r\n "), &[too_little], change, false),
    ];
    for &(auto_reload_enabled, failure_reason, says, lead, recommends) in table {
        let case = format!("auto-reload on: {auto_reload_enabled}, reason: {failure_reason:?}");
        let email = render(
            NoticeKind::AccessTurnedOff,
            &EmailContext {
                auto_reload_enabled,
                failure_reason,
                ..context()
            },
        );
        let text = email.text.replace('\n', " ");
        // What every turned-off email says, auto-reload or not.
        assert_eq!(
            email.subject, "[action needed] Your Acme AI API access is turned off",
            "{case}"
        );
        assert!(text.contains("Initech is out of usage credits"), "{case}");
        assert!(
            text.contains("API requests from Initech are refused until credits are added."),
            "{case}"
        );
        assert!(
            text.contains(
                "Add credits on the Billing page to turn access back on: \
                 https://api.acme.example/billing/org_01HX3Q9R7C5B2N8M4K6J0T1V2W "
            ),
            "{case}"
        );
        for phrase in says {
            assert!(text.contains(phrase), "{case}: {phrase:?} in {text}");
        }
        assert!(
            email.text.contains(&format!("\n{lead}\n{settings}\n")),
            "{case}: {lead:?} and the settings link in {}",
            email.text
        );
        assert!(
            email.html.contains(&format!("href=\"{settings}\"")),
            "{case}: settings link in HTML"
        );
        assert_eq!(text.contains(recommendation), recommends, "{case}: {text}");
        assert_eq!(
            text.to_lowercase().contains("turn on auto-reload"),
            recommends,
            "{case}: {text}"
        );
        // The reason is auto-reload's only when it is on, and shown only when not blank.
        let shows_reason =
            auto_reload_enabled && failure_reason.is_some_and(|reason| !reason.trim().is_empty());
        assert_eq!(text.contains("Reason:"), shows_reason, "{case}");
    }
}

/// The balance-low email recommends auto-reload only to an org that has it off.
#[test]
fn balance_low_recommends_auto_reload_only_when_off() {
    let settings = "https://api.acme.example/billing/org_01HX3Q9R7C5B2N8M4K6J0T1V2W/auto-reload";
    let recommendation =
        "Credits are added automatically when your balance reaches a minimum you choose.";
    for auto_reload_enabled in [false, true] {
        let email = render(
            NoticeKind::BalanceLow,
            &EmailContext {
                available: amount("4.99"),
                threshold: Some(amount("5")),
                auto_reload_enabled,
                ..context()
            },
        );
        let text = email.text.replace('\n', " ");
        assert!(text.contains("below $5.00"), "{auto_reload_enabled}");
        assert_eq!(
            text.contains(&format!(
                "Avoid running out: turn on auto-reload. {recommendation}"
            )),
            !auto_reload_enabled,
            "{auto_reload_enabled}: {text}"
        );
        assert_eq!(
            email.text.lines().any(|line| line == settings),
            !auto_reload_enabled,
            "{auto_reload_enabled}: settings link"
        );
    }
}

/// The spend-limit email names the limit and when it resets, and says less when it does
/// not know them.
#[test]
fn spend_limit_reached_names_the_limit_and_its_reset() {
    let billing = "https://api.acme.example/billing/org_01HX3Q9R7C5B2N8M4K6J0T1V2W";
    // (limit, resets at) → the opening sentence, the figures
    type Row<'a> = (Option<&'a str>, Option<Timestamp>, &'a str, &'a [&'a str]);
    let table: &[Row] = &[
        (
            Some("100"),
            Some(reset()),
            "Initech reached a spend limit of $100.00 on the Acme AI API, so API requests \
             are refused until the limit resets at 2026-12-01 00:00 UTC, whatever the balance.",
            &["Spend limit: $100.00", "Resets: 2026-12-01 00:00 UTC"],
        ),
        (
            Some("0.50"),
            None,
            "Initech reached a spend limit of $0.50 on the Acme AI API, so API requests are \
             refused until the limit resets, whatever the balance.",
            &["Spend limit: $0.50"],
        ),
        (
            None,
            Some(reset()),
            "Initech reached a spend limit on the Acme AI API, so API requests are refused \
             until the limit resets at 2026-12-01 00:00 UTC, whatever the balance.",
            &["Resets: 2026-12-01 00:00 UTC"],
        ),
        (
            None,
            None,
            "Initech reached a spend limit on the Acme AI API, so API requests are refused \
             until the limit resets, whatever the balance.",
            &[],
        ),
    ];
    for &(limit, resets_at, opening, figures) in table {
        let case = format!("limit {limit:?}, resets at {resets_at:?}");
        let email = render(
            NoticeKind::SpendLimitReached,
            &EmailContext {
                available: amount("37.40"),
                amount: limit.map(amount),
                resets_at,
                ..context()
            },
        );
        assert_eq!(
            email.subject, "[action needed] Your Acme AI API spend limit is reached",
            "{case}"
        );
        let text = email.text.replace('\n', " ");
        assert!(text.contains(opening), "{case}: {text}");
        let lines: Vec<&str> = email.text.lines().collect();
        for figure in figures {
            assert!(lines.contains(figure), "{case}: {figure}");
        }
        assert_eq!(
            lines
                .iter()
                .filter(|line| line.starts_with("Spend limit:"))
                .count()
                + lines
                    .iter()
                    .filter(|line| line.starts_with("Resets:"))
                    .count(),
            figures.len(),
            "{case}: no other figure"
        );
        assert!(lines.contains(&"Available balance: $37.40"), "{case}");
        assert!(lines.contains(&billing), "{case}: the Billing page");
        assert!(
            !text.contains("auto-reload"),
            "{case}: not about auto-reload"
        );
    }
}

#[test]
fn an_auto_reload_receipt_offers_its_undo_link_until_it_expires() {
    let undo = "https://api.acme.example/undo/pay_1.1796860800000.ab12";
    let until = Timestamp::from_unix_ms(1_796_860_800_000);
    let with_link = EmailContext {
        link: Some(undo),
        expires_at: Some(until),
        ..context()
    };
    let email = render(NoticeKind::AutoReloadCharged, &with_link);
    let text = email.text.replace('\n', " ");
    assert!(
        text.contains("Did not expect this charge? You can undo it until"),
        "{text}"
    );
    assert!(text.contains("auto-reload is turned off"), "{text}");
    assert!(email.text.contains(undo), "{}", email.text);
    assert!(email.html.contains("Undo this charge"), "{}", email.html);
    assert!(email.html.contains(undo), "{}", email.html);
    // Without a link, or with one that is not a web address, no undo is offered.
    for link in [None, Some("javascript:alert(1)")] {
        let email = render(
            NoticeKind::AutoReloadCharged,
            &EmailContext { link, ..with_link },
        );
        assert!(!email.text.contains("undo it"), "{}", email.text);
    }
}
