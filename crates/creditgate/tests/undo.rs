//! The "undo this charge" link of an auto-reload receipt, walked as the customer does, on
//! every backend, with the emails delivered to a real SMTP server (aiosmtpd):
//!
//! - the org's balance reaches its auto-reload threshold and the saved card is charged 20.00;
//!   the receipt email offers "Undo this charge" with its link;
//! - the customer spends 12.00 more, opens the link (a page asking to confirm, the charge
//!   named), and clicks Undo twice at once while usage keeps spending: one refund, of what
//!   was still unspent of that charge and never more, auto-reload turned off, the refund's
//!   receipt email saying why;
//! - clicking again later shows the same outcome and refunds nothing more; a forged link is
//!   refused and changes nothing.
//!
//! The ledger invariants hold at the end. (Expiry is the token's own unit test: the link
//! stops working `undo_window_ms` after the receipt.)

#![allow(clippy::duplicate_mod)]

mod api_support;
mod smtp_support;

use api_support::helpers::{available, eventually, spend};
use api_support::{databases, spawn_app_with, As, TestApp};
use creditgate::config::Config;
use reqwest::StatusCode;
use serde_json::{json, Value};
use smtp_support::Smtpd;

fn fast(config: &mut Config) {
    config.payments_interval_ms = 20;
    config.reload_cooldown_ms = 0;
    config.top_up_min = "5.00".into();
}

async fn get_json(app: &TestApp, path: &str) -> Value {
    let reply = app.get(&As::Operator, path).await;
    assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.body);
    reply.body
}

/// The org's payments, newest first.
async fn payments(app: &TestApp, org: &str) -> Vec<Value> {
    get_json(app, &format!("/v1/orgs/{org}/payments?limit=100")).await["data"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Takes 1.00 as usage would, if the org still has it; whether it did.
async fn try_spend(app: &TestApp, org: &str) -> bool {
    let reply = app
        .post_idempotent(
            &As::Operator,
            &format!("/v1/orgs/{org}/adjustments"),
            &format!("use-{}", rand::random::<u64>()),
            json!({"amount": "-1.00", "reason": "usage stand-in"}),
        )
        .await;
    match reply.code() {
        "" => true,
        "insufficient_funds" => false,
        other => panic!("{other}: {}", reply.body),
    }
}

/// The path of the undo link in a receipt's text (`/undo/…`), whatever the public host.
fn undo_path(text: &str) -> Option<String> {
    let start = text.find("/undo/")?;
    let path: String = text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '.' | '-'))
        .collect();
    Some(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auto_reload_is_undone_once_from_its_receipt() {
    let Some(smtpd) = Smtpd::started().await else {
        return;
    };
    let browser = reqwest::Client::new();
    for database in databases().await {
        smtpd.ignore_delivered();
        let app = spawn_app_with(database, |config| {
            fast(config);
            smtp_support::configure(config, smtpd.port);
        })
        .await;
        let org = app.create_org("Undo Co").await;
        app.grant(&org, "15.00").await;
        let reload = app
            .request(
                &As::Operator,
                reqwest::Method::PUT,
                &format!("/v1/orgs/{org}/auto_reload"),
                Some(json!({
                    "enabled": true, "threshold": "10.00", "amount": "20.00",
                    "monthly_limit": "100.00", "payment_method": "pm_card_visa",
                    "consent": {"accepted_by": "ada@example.com", "text_version": "2026-11"}
                })),
                &[],
            )
            .await;
        assert_eq!(reload.status, StatusCode::OK, "{}", reload.body);

        // Down to 9.00: auto-reload charges 20.00.
        spend(&app, &org, "6.00").await;
        eventually("the reload", || async {
            (available(&app, &org).await == "29.00").then_some(())
        })
        .await;
        let charge = payments(&app, &org).await[0].clone();
        assert_eq!(
            (charge["kind"].as_str(), charge["amount"].as_str()),
            (Some("auto_reload"), Some("20.00"))
        );
        let payment_id = charge["id"].as_str().expect("an id").to_owned();
        let receipt = eventually("the receipt email", || async {
            smtpd.receipts().into_iter().find(|m| {
                m.subject.contains("added by auto-reload") && m.text.contains(&payment_id)
            })
        })
        .await;
        assert!(
            receipt.text.contains("Did not expect this charge?"),
            "{}",
            receipt.text
        );
        assert!(
            receipt.html.contains("Undo this charge"),
            "{}",
            receipt.html
        );
        let path = undo_path(&receipt.text).expect("an undo link in the receipt");

        // 12.00 more is used: 9.00 of the first credits and 3.00 of the reload's.
        spend(&app, &org, "12.00").await;
        let page = browser
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .expect("the page");
        assert_eq!(page.status(), StatusCode::OK);
        let text = page.text().await.expect("a body");
        assert!(
            text.contains("Undo this charge") && text.contains("20.00"),
            "{text}"
        );

        // Undo, clicked twice at once, while usage spends 1.00 three times.
        let click = || browser.post(format!("{}{path}", app.base)).send();
        let (first, second, a, b, c) = tokio::join!(
            click(),
            click(),
            try_spend(&app, &org),
            try_spend(&app, &org),
            try_spend(&app, &org),
        );
        for page in [first, second] {
            let page = page.expect("an answer");
            assert_eq!(page.status(), StatusCode::OK);
            let text = page.text().await.expect("a body");
            assert!(text.contains("Auto-reload is turned off"), "{text}");
        }
        let refunds = get_json(&app, &format!("/v1/payments/{payment_id}/refunds")).await;
        let refunds = refunds["data"].as_array().cloned().unwrap_or_default();
        // An attempt whose amount usage spent first refunds nothing (the provider is never
        // asked) and the next asks for what is unspent then: one refund, however many clicks.
        let (made, nothing): (Vec<Value>, Vec<Value>) = refunds
            .into_iter()
            .partition(|r| r["state"].as_str() == Some("succeeded"));
        assert_eq!(made.len(), 1, "one refund: {made:?} {nothing:?}");
        for refused in &nothing {
            assert_eq!(refused["state"], "failed", "{refused}");
            assert_eq!(refused["provider_ref"], Value::Null, "{refused}");
        }
        let refund = &made[0];
        let refunded = refund["amount"].as_str().expect("an amount").to_owned();
        let refund_id = refund["id"].as_str().expect("an id").to_owned();
        // At most the 17.00 unspent before the clicks; the spends that came first took theirs.
        let cents = |text: &str| -> i64 {
            let (units, fraction) = text.split_once('.').expect("a decimal");
            units.parse::<i64>().unwrap() * 100 + fraction.parse::<i64>().unwrap()
        };
        assert!((1_400..=1_700).contains(&cents(&refunded)), "{refund}");
        assert_eq!(
            cents(&available(&app, &org).await),
            1_700
                - 100 * [a, b, c].iter().filter(|spent| **spent).count() as i64
                - cents(&refunded),
            "the balance lost the spends and the refund, nothing else"
        );
        let reload = get_json(&app, &format!("/v1/orgs/{org}/auto_reload")).await;
        assert_eq!(reload["enabled"], false, "{reload}");

        // The refund's receipt confirms it, with why.
        let confirmation = eventually("the refund receipt", || async {
            smtpd.receipts().into_iter().find(|m| {
                m.text.contains("You undid this automatic charge") && m.text.contains(&refund_id)
            })
        })
        .await;
        assert!(
            confirmation.text.contains(&refunded),
            "{}",
            confirmation.text
        );

        // Later clicks show the outcome and refund nothing more; a forged link is refused.
        let again = browser
            .post(format!("{}{path}", app.base))
            .send()
            .await
            .expect("an answer");
        assert_eq!(again.status(), StatusCode::OK);
        let forged = path.replace(&payment_id, "pay_forged");
        let refused = browser
            .post(format!("{}{forged}", app.base))
            .send()
            .await
            .expect("an answer");
        assert_eq!(refused.status(), StatusCode::NOT_FOUND);
        let after = get_json(&app, &format!("/v1/payments/{payment_id}/refunds")).await;
        let succeeded = after["data"].as_array().map_or(0, |list| {
            list.iter()
                .filter(|r| r["state"].as_str() == Some("succeeded"))
                .count()
        });
        assert_eq!(succeeded, 1);
        app.assert_invariants().await;
        app.stop().await;
    }
}
