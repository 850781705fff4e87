//! The billing page in headless Chromium (Debian's, driven through chromedriver), walking
//! the story: an org out of credits, its owner signs in through the link read from a real
//! SMTP server (aiosmtpd), sees the "API access is off" banner, adds credits through the
//! sandbox's checkout page, comes back to the new balance with the banner gone, turns on
//! auto-reload with its consent recorded, sees the usage chart drawn, and visits every page
//! (also at phone size). A second org adds credits through localstripe's Checkout page.
//! Screenshots of each page are saved under `target/artifacts/billing/`.
//!
//! SQLite only (the browser walks pages; the store and API tests cover both backends).
//! When `CI` is set, a missing Chromium, chromedriver, aiosmtpd or localstripe fails the
//! test; otherwise it is skipped with a message.

// smtp_support and stripe_support each bring their own copy of python_tools.
#![allow(clippy::duplicate_mod)]

mod api_support;
#[path = "browser_support/mod.rs"]
mod browser_support;
mod smtp_support;
#[path = "stripe_support/mod.rs"]
mod stripe_support;

use std::time::{Duration, Instant};

use api_support::{spawn_app_with, As, TestApp};
use browser_support::Browser;
use reqwest::StatusCode;
use serde_json::json;
use smtp_support::Smtpd;

const OWNER: &str = "ada@example.com";

async fn sqlite() -> creditgate_store::testing::TestDatabase {
    creditgate_store::testing::all()
        .await
        .into_iter()
        .find(|db| !db.url.starts_with("postgres"))
        .expect("SQLite is always there")
}

/// An org with an owner, a price, some usage of two models that leaves it out of credits.
async fn depleted_org(app: &TestApp, name: &str) -> String {
    let org = app.create_org(name).await;
    let reply = app
        .post(
            &As::Operator,
            &format!("/v1/orgs/{org}/members"),
            json!({"email": OWNER, "name": "Ada", "role": "owner", "invite": false}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    app.set_price("claude-demo", "3.00", "15.00").await;
    app.set_price("gpt-demo", "1.00", "4.00").await;
    app.grant(&org, "2.00").await;
    let (key, _) = app.create_key(&org).await;
    let events: Vec<_> = (0..6)
        .map(|i| {
            json!({
                "id": format!("ev{i}"),
                "model": if i % 2 == 0 { "claude-demo" } else { "gpt-demo" },
                "key_id": key,
                "usage": {"input_tokens": 100_000, "output_tokens": 20_000},
            })
        })
        .collect();
    let reply = app
        .post(
            &As::Operator,
            "/v1/usage",
            json!({"org_id": org, "events": events}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let balance = app.balance(&org).await;
    assert_eq!(
        balance.body["access_state"], "depleted",
        "{:?}",
        balance.body
    );
    org
}

/// The sign-in link (to `base`) of a sign-in email to `to`, waited for (≤ 15 s).
async fn sign_in_link(smtpd: &Smtpd, to: &str, base: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mails: Vec<_> = smtpd
            .all_mails()
            .into_iter()
            .filter(|m| {
                m.to.iter().any(|t| t == to) && m.text.contains(&format!("{base}/billing/auth/"))
            })
            .collect();
        if !mails.is_empty() {
            let text = &mails.last().unwrap().text;
            let start = text.find(base).expect("a link");
            let link: String = text[start..]
                .chars()
                .take_while(|c| !c.is_whitespace())
                .collect();
            assert!(link.contains("/billing/auth/"), "{link}");
            return link;
        }
        assert!(Instant::now() < deadline, "no sign-in email to {to}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Signs in as the owner through the page and the emailed link.
async fn sign_in(browser: &Browser, app: &TestApp, smtpd: &Smtpd, org: &str) {
    browser.goto(&format!("{}/billing/sign-in", app.base)).await;
    browser.fill("#email", OWNER).await;
    browser.click("form button[type=submit]").await;
    browser.wait_for_text("main", "Check your email").await;
    let link = sign_in_link(smtpd, OWNER, &app.base).await;
    browser.goto(&link).await;
    browser.click("#sign-in").await;
    browser
        .wait_for_url(&format!("{}/billing/{org}", app.base))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_billing_story_in_a_browser() {
    let Some(browser) = browser_support::browser_or_skip().await else {
        return;
    };
    let Some(smtpd) = Smtpd::started().await else {
        return;
    };
    let port = smtpd.port;
    let app = spawn_app_with(sqlite().await, move |config| {
        smtp_support::configure(config, port);
        config.public_url = String::new();
    })
    .await;
    let org = depleted_org(&app, "Browser Co").await;

    // The sign-in page, and the link from the email.
    browser.goto(&format!("{}/billing", app.base)).await;
    browser.wait_for("#email").await;
    browser.screenshot("01-sign-in").await;
    sign_in(&browser, &app, &smtpd, &org).await;

    // The depleted banner says what happened and what to do.
    let banner = browser
        .wait_for_text("#access-banner", "API access is off")
        .await;
    assert!(banner.contains("out of usage credits"), "{banner}");
    assert!(banner.contains("Add credits"), "{banner}");
    browser.screenshot("02-overview-depleted").await;

    // Add credits through the sandbox's checkout page.
    browser.click("#access-banner a[href$='/credits']").await;
    browser.wait_for("#custom").await;
    browser.screenshot("03-add-credits").await;
    browser.click("button[name=amount][value='25.00']").await;
    browser
        .wait_for_url(&format!("{}/sandbox/checkout/", app.base))
        .await;
    browser.screenshot("04-sandbox-checkout").await;
    browser.click("form button[type=submit]").await;
    browser
        .wait_for_url(&format!("{}/billing/{org}/credits?payment=", app.base))
        .await;
    let note = browser.wait_for_text("main", "Payment received").await;
    assert!(note.contains("$25.00 added"), "{note}");
    browser.screenshot("05-credits-added").await;

    // Back on the overview: the banner is gone and the balance is up.
    browser.goto(&format!("{}/billing/{org}", app.base)).await;
    let banner = browser
        .wait_for_text("#access-banner", "API access is on")
        .await;
    assert!(!banner.contains("off"), "{banner}");
    let available = browser.text("#available").await;
    let balance = app.balance(&org).await;
    assert_eq!(
        available,
        format!("${}", balance.body["available"].as_str().unwrap()),
        "{:?}",
        balance.body
    );
    assert_eq!(balance.body["access_state"], "active");
    browser.screenshot("06-overview-restored").await;

    // Turn on auto-reload with the consent recorded.
    browser
        .goto(&format!("{}/billing/{org}/auto-reload", app.base))
        .await;
    browser.fill("#threshold", "5.00").await;
    browser.fill("#amount", "20.00").await;
    browser.fill("#monthly_limit", "100.00").await;
    browser
        .click("input[name=payment_method][value=pm_card_visa]")
        .await;
    // Without the consent box ticked, saving is refused and nothing changes.
    browser.click("#save-reload").await;
    browser.wait_for(".error").await;
    browser.fill("#threshold", "5.00").await;
    browser.fill("#amount", "20.00").await;
    browser.fill("#monthly_limit", "100.00").await;
    browser
        .click("input[name=payment_method][value=pm_card_visa]")
        .await;
    browser.click("#consent").await;
    browser.click("#save-reload").await;
    browser
        .wait_for_text("#reload-status", "Auto-reload is on")
        .await;
    let record = browser.text("#consent-record").await;
    assert!(record.contains(OWNER), "{record}");
    browser.screenshot("07-auto-reload").await;
    let reload = app
        .get(&As::Operator, &format!("/v1/orgs/{org}/auto_reload"))
        .await;
    assert_eq!(reload.body["enabled"], true);
    assert_eq!(reload.body["consent"]["accepted_by"], OWNER);

    // The usage chart is drawn, with both models.
    browser
        .goto(&format!("{}/billing/{org}/usage", app.base))
        .await;
    browser.wait_for("#usage-chart svg rect").await;
    let chart = browser.attr("#usage-chart svg", "role").await;
    assert_eq!(chart.as_deref(), Some("img"));
    let table = browser.text("#usage-table").await;
    assert!(
        table.contains("claude-demo") && table.contains("gpt-demo"),
        "{table}"
    );
    browser.screenshot("08-usage").await;

    // Every other page, then the overview at phone size.
    for (path, name, needle) in [
        ("/history", "09-history", "Credits purchased"),
        ("/keys", "10-keys", "Create key"),
        ("/settings", "11-settings", "Billing contacts"),
        ("/members", "12-members", OWNER),
    ] {
        browser
            .goto(&format!("{}/billing/{org}{path}", app.base))
            .await;
        browser.wait_for_text("main", needle).await;
        browser.screenshot(name).await;
    }
    browser
        .goto(&format!("{}/billing/{org}/keys", app.base))
        .await;
    browser.fill("#name", "production").await;
    browser.click("#create-key").await;
    let secret = browser.wait_for_text("#new-secret", "cg_live_").await;
    assert!(secret.starts_with("cg_live_"), "{secret}");
    browser.screenshot("13-key-created").await;
    browser
        .set_window_size(browser_support::PHONE.0, browser_support::PHONE.1)
        .await;
    browser.goto(&format!("{}/billing/{org}", app.base)).await;
    browser.wait_for("#available").await;
    browser.screenshot("14-overview-phone").await;
    browser
        .set_window_size(browser_support::WINDOW.0, browser_support::WINDOW.1)
        .await;

    // Sign out: the pages ask to sign in again.
    browser.click("header form button[type=submit]").await;
    browser.wait_for_text("main", "You are signed out").await;
    browser.goto(&format!("{}/billing/{org}", app.base)).await;
    browser.wait_for("#email").await;
    app.assert_invariants().await;
    app.stop().await;

    // A second deployment on Stripe (localstripe): credits through its Checkout page.
    let Some(stripe) = stripe_support::localstripe().await else {
        browser.close().await;
        return;
    };
    let (base, key) = (stripe.base_url().to_owned(), stripe.secret_key().to_owned());
    let app = spawn_app_with(sqlite().await, move |config| {
        smtp_support::configure(config, port);
        config.public_url = String::new();
        config.payments = creditgate::config::PaymentsProvider::Stripe;
        config.stripe_api_base = base;
        config.stripe_secret_key = key;
        config.stripe_webhook_secret = "whsec_browser".into();
    })
    .await;
    stripe
        .register_webhook(
            &format!("browser-{}", app.address.port()),
            &format!("{}/v1/webhooks/stripe", app.base),
            "whsec_browser",
            None,
        )
        .await
        .expect("the webhook registers");
    let org = depleted_org(&app, "Stripe Browser Co").await;
    sign_in(&browser, &app, &smtpd, &org).await;
    browser
        .wait_for_text("#access-banner", "API access is off")
        .await;
    browser
        .goto(&format!("{}/billing/{org}/credits", app.base))
        .await;
    browser.fill("#custom", "30").await;
    browser.click("#pay-custom").await;
    browser.wait_for_url(stripe.base_url()).await;
    browser.wait_for("#pay").await;
    browser.screenshot("15-localstripe-checkout").await;
    browser.click("#pay").await;
    browser
        .wait_for_url(&format!("{}/billing/{org}/credits?payment=", app.base))
        .await;
    browser.wait_for_text("main", "Payment received").await;
    // The webhook credits it; the overview shows it.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        browser.goto(&format!("{}/billing/{org}", app.base)).await;
        let banner = browser.text("#access-banner").await;
        if banner.contains("API access is on") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the Checkout's credits never landed: {banner}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(app.balance(&org).await.body["access_state"], "active");
    browser.screenshot("16-overview-after-stripe").await;
    app.assert_invariants().await;
    app.stop().await;
    browser.close().await;
}
