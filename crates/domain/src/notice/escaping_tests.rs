//! Hostile values (names, ids, URLs, failure reasons, links and roles carrying markup or
//! line breaks) are escaped in the HTML part, left as they are in the text part, and never
//! break a link.

use super::snapshot_tests::{context, expiry};
use super::*;

#[test]
fn interpolated_values_are_escaped_in_html() {
    let hostile = EmailContext {
        product_name: "Acme <b>AI</b>",
        org_name: "<script>alert(1)</script> & Sons \"Ltd\"",
        org_id: "org_1\"><img src=x>",
        public_url: "https://api.acme.example?a=1&b=2",
        ..context()
    };
    for kind in NoticeKind::ALL {
        let email = render(kind, &hostile);
        let html = &email.html;
        assert!(!html.contains("<script>"), "{kind:?}");
        assert!(!html.contains("<b>"), "{kind:?}");
        assert!(!html.contains("<img"), "{kind:?}");
        assert!(!html.contains("\"Ltd\""), "{kind:?}");
        assert!(!html.contains("&b=2"), "{kind:?}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; Sons &quot;Ltd&quot;"),
            "{kind:?}"
        );
        assert!(html.contains("Acme &lt;b&gt;AI&lt;/b&gt;"), "{kind:?}");
        let billing =
            "https://api.acme.example?a=1&amp;b=2/billing/org_1&quot;&gt;&lt;img src=x&gt;";
        let main_link = match kind {
            NoticeKind::AutoReloadFailed | NoticeKind::AutoReloadDisabled => {
                format!("{billing}/auto-reload")
            }
            _ => billing.to_owned(),
        };
        assert!(html.contains(&format!("href=\"{main_link}\"")), "{kind:?}");
        assert_only_entities(html, kind);
        // The text part is plain: the name as it is.
        assert!(email
            .text
            .contains("<script>alert(1)</script> & Sons \"Ltd\""));
    }
}

#[test]
fn failure_reasons_and_action_urls_are_escaped_in_html() {
    let hostile = EmailContext {
        failure_reason: Some("<b>Declined</b> & \"gone\""),
        action_url: Some("https://pay.example/confirm?a=1&b=\"><script>x</script>"),
        ..context()
    };
    for kind in [NoticeKind::AutoReloadFailed, NoticeKind::AutoReloadDisabled] {
        let email = render(kind, &hostile);
        assert!(!email.html.contains("<b>"), "{kind:?}");
        assert!(
            email
                .html
                .contains("&lt;b&gt;Declined&lt;/b&gt; &amp; &quot;gone&quot;"),
            "{kind:?}"
        );
        assert_only_entities(&email.html, kind);
        assert!(
            email.text.contains("<b>Declined</b> & \"gone\""),
            "{kind:?}"
        );
    }
    let kind = NoticeKind::PaymentActionRequired;
    let email = render(kind, &hostile);
    assert!(!email.html.contains("<script>"));
    assert!(email.html.contains(
        "href=\"https://pay.example/confirm?a=1&amp;b=&quot;&gt;&lt;script&gt;x&lt;/script&gt;\""
    ));
    assert_only_entities(&email.html, kind);
    assert!(email
        .text
        .lines()
        .any(|line| line == "https://pay.example/confirm?a=1&b=\"><script>x</script>"));
}

#[test]
fn member_emails_escape_their_link_and_role() {
    let hostile = EmailContext {
        link: Some("https://api.acme.example/billing/auth/a&b=\"><script>x</script>"),
        member_role: Some("<b>Owner</b>\r\nBcc: x"),
        expires_at: Some(expiry()),
        ..context()
    };
    for kind in [NoticeKind::MemberSignIn, NoticeKind::MemberInvited] {
        let email = render(kind, &hostile);
        assert!(!email.html.contains("<script>"), "{kind:?}");
        assert!(!email.html.contains("<b>"), "{kind:?}");
        assert!(
            email.html.contains(
                "href=\"https://api.acme.example/billing/auth/a&amp;b=&quot;&gt;&lt;script&gt;x&lt;/script&gt;\""
            ),
            "{kind:?}"
        );
        assert_only_entities(&email.html, kind);
        assert!(email
            .text
            .lines()
            .any(|l| l == "https://api.acme.example/billing/auth/a&b=\"><script>x</script>"));
    }
    let email = render(NoticeKind::MemberInvited, &hostile);
    assert!(email.text.contains("Role: <b>Owner</b> Bcc: x\n"));
    assert!(email.html.contains("&lt;b&gt;Owner&lt;/b&gt; Bcc: x"));
}

/// Every `&` in `html` starts an entity.
fn assert_only_entities(html: &str, kind: NoticeKind) {
    for (at, _) in html.match_indices('&') {
        let rest = &html[at..];
        assert!(
            ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;"]
                .iter()
                .any(|entity| rest.starts_with(entity)),
            "{kind:?}: bare & at {at}"
        );
    }
}
