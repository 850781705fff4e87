//! What a customer sees when its credits run out, seen through the official Python SDKs
//! (PyPI `anthropic==2.10.0`, `openai==3.51.0`) calling the metering proxy, on every backend,
//! with the emails delivered to a real SMTP server (aiosmtpd):
//!
//! - a call whose worst case exceeds the available balance while the balance is above the
//!   org's cut-off level is refused on its own (402 `request_exceeds_balance`), and the org
//!   stays on;
//! - below the cut-off level (the lowest low-balance threshold, but at least
//!   `cutoff_balance_min`, 1.00 by default, above the floor) the first call refused for lack
//!   of credits turns the org off: 402 `credit_balance_exhausted` in the style's own envelope
//!   (`anthropic.PaymentRequiredError`, `openai.APIStatusError` with `insufficient_quota`),
//!   `creditgate-access-state: depleted`, every later call refused the same way, never
//!   retried by the SDK (its HTTP attempts, and fakellm's request counter, show it), one
//!   "turned off" email;
//! - a top-up turns it back on (one "back on" email) and the SDK calls pass again;
//! - with auto-reload on the refusal triggers one reload and no "turned off" email; with a
//!   declining card one "turned off" email saying the card was declined;
//! - 64 SDK clients at once spending across the thresholds to the cut-off: one "balance low"
//!   email per threshold, one "turned off", one "back on" after a top-up.
//!
//! Upstreams: the built-in demo upstream (deterministic usage) and fakellm (PyPI
//! `fakellm==0.3.5`, a real server we did not write). The expectations of each test are
//! recorded with `sdk_support::Checks` and listed together when some fail. Setup (SDKs in
//! `target/venv-sdk`, aiosmtpd, fakellm): see `sdk_support` and `smtp_support`; when `CI` is
//! set, a missing piece fails the test, otherwise the test is skipped with a message.

// sdk_support and smtp_support each bring their own copy of python_tools.
#![allow(clippy::duplicate_mod)]

mod api_support;
mod sdk_support;
mod smtp_support;

use api_support::helpers::{create_org_with, transitions};
use api_support::{databases, spawn_app_with, As, TestApp};
use creditgate::config::Config;
use reqwest::{Method, StatusCode};
use sdk_support::{
    balance, count, expect_ok, expect_refused, holds_settled, mails_once, micros, money,
    notice_kinds, payments, subjects, top_up, usage_charges, within, Call, Checks, Customer,
    FakeLlm, Outcome, Phase, Price, Sdk, ESSAY_TRIGGER, RATE_LIMIT_TRIGGER,
};
use serde_json::{json, Value};
use smtp_support::{Smtpd, QUIET};

const LOW: &str = "Your Acme AI credit balance is low";
const OFF: &str = "[action needed] Your Acme AI API access is turned off";
const BACK: &str = "Your Acme AI API access is back on";
/// With the default product name, "Example API" (no "Example API API").
const OFF_DEFAULT: &str = "[action needed] Your Example API access is turned off";
const BACK_DEFAULT: &str = "Your Example API access is back on";

const SONNET: Price = Price {
    model: "claude-sonnet-4-5",
    input: "3.00",
    output: "15.00",
    request_fee: None,
};
const OPUS: Price = Price {
    model: "claude-opus-4-1",
    input: "15.00",
    output: "75.00",
    request_fee: None,
};
const GPT: Price = Price {
    model: "gpt-4.1",
    input: "2.00",
    output: "8.00",
    request_fee: None,
};
const GPT_MINI: Price = Price {
    model: "gpt-4.1-mini",
    input: "0.40",
    output: "1.60",
    request_fee: None,
};
const O3_PRO: Price = Price {
    model: "o3-pro",
    input: "20.00",
    output: "80.00",
    request_fee: None,
};

/// A long answer asked for (Opus, streamed, 32,000 tokens): its worst case is 2.40 and more.
const DESIGN_DOC: &str = "Write the complete design document for a multi-region ledger service: \
     goals, data model, the write path with group commit, failover, capacity planning for 40k \
     transfers per second, and a rollout plan with milestones.";

/// A contract of about 6 KB, the context of the questions asked about it (Opus prices it at
/// about 0.025 a call on the demo upstream).
fn contract() -> String {
    (1..=48)
        .map(|i| {
            format!(
                "Clause {i}. The Supplier shall deliver the services described in Schedule {} \
                 within {} business days of each purchase order. ",
                i % 7 + 1,
                i * 3 % 29 + 2
            )
        })
        .collect()
}

/// Questions about [`contract`], with their `max_tokens`.
const CONTRACT_QUESTIONS: [(&str, u64); 5] = [
    (
        "Which clauses set delivery deadlines longer than 20 business days?",
        400,
    ),
    (
        "Summarize the Supplier's obligations under Schedule 3 in plain English.",
        650,
    ),
    (
        "List every clause that refers to Schedule 5, with its deadline.",
        800,
    ),
    (
        "Is there a termination clause? Quote it if there is one.",
        512,
    ),
    (
        "Draft a one-paragraph risk memo for our legal team about this contract.",
        1024,
    ),
];

/// The questions' calls (Opus, non-streamed) for the first `n` questions.
fn contract_calls(n: usize) -> Vec<Call> {
    let contract = contract();
    CONTRACT_QUESTIONS[..n]
        .iter()
        .map(|(question, max_tokens)| {
            Call::anthropic(OPUS.model, question, *max_tokens).system(&contract)
        })
        .collect()
}

/// The story's settings: aiosmtpd, branding, fast notice and payments workers.
fn configure(config: &mut Config, smtp_port: u16) {
    smtp_support::configure(config, smtp_port);
    config.payments_interval_ms = 20;
    config.reload_cooldown_ms = 0;
}

/// An org with billing contacts and thresholds, its first credits and a key; answers (org
/// id, key secret).
async fn org_with_credits(
    app: &TestApp,
    name: &str,
    billing_emails: &[&str],
    thresholds: &[&str],
    credits: &str,
) -> (String, String) {
    let org = create_org_with(
        app,
        name,
        json!({ "billing_emails": billing_emails, "low_thresholds": thresholds }),
    )
    .await;
    let org_id = org["id"].as_str().expect("id").to_owned();
    app.grant(&org_id, credits).await;
    let (_, key) = app.create_key(&org_id).await;
    (org_id, key)
}

/// Checks the successes among `outcomes` (each priced by `prices`, by index) against the
/// running balance: each carries the balance after its own charge (non-streamed calls) and
/// the state its posted balance gives under `threshold`. Answers the balance after them.
fn follow_balance(
    checks: &mut Checks,
    what: &str,
    outcomes: &[Outcome],
    prices: &[Price],
    mut posted: i64,
    threshold: i64,
) -> i64 {
    for (outcome, price) in outcomes.iter().zip(prices) {
        let label = format!("{what} #{}", outcome.index);
        if !expect_ok(checks, &label, outcome) {
            continue;
        }
        posted -= price.cost_of(outcome);
        checks.eq(
            format!("{label}: creditgate-balance-available"),
            outcome.available_micros().map(money),
            Some(money(posted)),
        );
        let state = if posted < threshold { "low" } else { "active" };
        checks.eq(
            format!("{label}: creditgate-access-state"),
            outcome.access_state.as_deref(),
            Some(state),
        );
    }
    posted
}

/// The balance's figures as (posted, reserved, access_state), once no hold is open (or
/// [`sdk_support::WAIT_MAX`] passed): a streamed call is settled just after it ends.
async fn figures(app: &TestApp, org_id: &str) -> (i64, i64, String) {
    holds_settled(app, org_id).await;
    let b = balance(app, org_id).await;
    (
        micros(b["posted"].as_str().expect("posted")),
        micros(b["reserved"].as_str().expect("reserved")),
        b["access_state"].as_str().expect("access_state").to_owned(),
    )
}

// ----------------------------------------------------------------------------------------
// 1. The Anthropic SDK (and the OpenAI SDK) against the demo upstream: refused on its own
//    above the cut-off level, turned off below it, back on after a top-up
// ----------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_is_turned_off_once_below_the_cut_off_and_back_on_after_a_top_up() {
    let Some(mut customer) = Customer::start().await else {
        return;
    };
    let mut checks = Checks::new();
    for database in databases().await {
        let Some(smtpd) = Smtpd::started().await else {
            return;
        };
        let port = smtpd.port;
        let app = spawn_app_with(database, |c| configure(c, port)).await;
        checks.scope(app.backend);
        for price in [SONNET, OPUS, GPT] {
            price.put(&app).await;
        }
        let contacts = ["ap@globex.example", "cto@globex.example"];
        // Cut-off level: the lowest threshold, 1.50 (above the 1.00 minimum).
        let (org_id, key) =
            org_with_credits(&app, "Globex Research", &contacts, &["1.50"], "1.583917").await;
        let threshold = micros("1.50");
        let mut posted = micros("1.583917");
        let big = Call::anthropic(OPUS.model, DESIGN_DOC, 32_000).streamed();
        assert!(
            big.worst_case(&OPUS) > posted,
            "the big call exceeds the balance"
        );

        // Everyday calls pass; one call larger than the whole balance, while the balance is
        // above the cut-off level, is refused on its own.
        let calls = vec![
            Call::anthropic(
                SONNET.model,
                "Summarize these meeting notes in three bullet points: the Q3 launch slips two \
                 weeks; QA needs one more engineer; marketing wants the new pricing page first.",
                300,
            ),
            Call::openai(
                GPT.model,
                "Translate 'the invoice is overdue' into French, German and Japanese.",
                120,
            ),
            Call::anthropic(SONNET.model, "Release notes for v2.14, please.", 180)
                .system("You are a terse release-notes writer."),
            big.clone(),
        ];
        let out = customer.run(&Phase::new(&app, &key, calls)).await;
        posted = follow_balance(
            &mut checks,
            "everyday call",
            &out[..3],
            &[SONNET, GPT, SONNET],
            posted,
            threshold,
        );
        expect_refused(
            &mut checks,
            "one call larger than the balance, above the cut-off level",
            Sdk::Anthropic,
            &out[3],
            "request_exceeds_balance",
            "active",
            &org_id,
        );
        let (_, _, state) = figures(&app, &org_id).await;
        checks.eq("access after one oversized call", state.as_str(), "active");
        tokio::time::sleep(QUIET).await;
        checks.eq(
            "emails after one oversized call",
            subjects(&smtpd.mails()),
            Vec::<String>::new(),
        );

        // Questions about a long contract take the balance below the threshold (and so the
        // cut-off level); then the big call is refused for lack of credits and turns the org
        // off, and every later call, however small, with either SDK, is refused the same way.
        let mut calls = contract_calls(5);
        calls.extend([
            big.clone(),
            Call::anthropic(SONNET.model, "ping", 16),
            Call::openai(GPT.model, "Say hello in Esperanto.", 64),
            Call::anthropic(SONNET.model, "Stream a haiku about invoices.", 200).streamed(),
        ]);
        let out = customer.run(&Phase::new(&app, &key, calls)).await;
        posted = follow_balance(
            &mut checks,
            "contract question",
            &out[..5],
            &[OPUS; 5],
            posted,
            threshold,
        );
        assert!(
            posted < threshold,
            "the questions took the balance below the cut-off level: {}",
            money(posted)
        );
        let refusals = [
            ("the big call below the cut-off level", Sdk::Anthropic),
            ("a small call after the cut-off", Sdk::Anthropic),
            ("an OpenAI-SDK call after the cut-off", Sdk::Openai),
            ("a streamed call after the cut-off", Sdk::Anthropic),
        ];
        for ((what, sdk), outcome) in refusals.iter().zip(&out[5..]) {
            expect_refused(
                &mut checks,
                what,
                *sdk,
                outcome,
                "credit_balance_exhausted",
                "depleted",
                &org_id,
            );
        }
        let (now_posted, reserved, state) = figures(&app, &org_id).await;
        checks.eq("access after the refusal", state.as_str(), "depleted");
        checks.eq("nothing charged for refusals", now_posted, posted);
        checks.eq("no hold left open", reserved, 0);
        checks.eq(
            "usage charges (each success once; refusals never reach the upstream)",
            usage_charges(&app, &org_id).await,
            8,
        );
        let last = transitions(&app, &org_id)
            .await
            .pop()
            .unwrap_or(Value::Null);
        checks.eq(
            "the last access transition",
            (last["to_state"].as_str(), last["cause"].as_str()),
            (Some("depleted"), Some("refused")),
        );
        let mails = mails_once(&smtpd, |m| count(m, OFF) >= 1 && count(m, LOW) >= 1).await;
        checks.eq("low emails", count(&mails, LOW), 1);
        checks.eq("turned-off emails", count(&mails, OFF), 1);
        checks.eq("emails in all", mails.len(), 2);
        if let Some(low) = mails.iter().find(|m| m.subject == LOW) {
            checks.that(
                low.text.contains("below $1.50"),
                format_args!("the low email names the threshold: {}", low.text),
            );
        }
        if let Some(off) = mails.iter().find(|m| m.subject == OFF) {
            checks.eq(
                "the turned-off email's recipients",
                off.to.clone(),
                contacts.map(String::from).to_vec(),
            );
            checks.that(
                off.text
                    .replace('\n', " ")
                    .contains("Globex Research is out of usage credits"),
                format_args!("the turned-off email says why: {}", off.text),
            );
            checks.that(
                off.text
                    .contains(&format!("https://billing.example.com/billing/{org_id}")),
                format_args!("the turned-off email links the Billing page: {}", off.text),
            );
        }

        // A top-up (retried once with the same Idempotency-Key) turns it back on.
        top_up(&app, &org_id, "20.00").await;
        posted += micros("20.00");
        let (now_posted, _, state) = figures(&app, &org_id).await;
        checks.eq("credited once", now_posted, posted);
        checks.eq("access after the top-up", state.as_str(), "active");
        let mails = mails_once(&smtpd, |m| count(m, BACK) >= 1).await;
        checks.eq("back-on emails", count(&mails, BACK), 1);
        checks.eq("turned-off emails after the top-up", count(&mails, OFF), 1);
        let calls = vec![
            Call::anthropic(SONNET.model, "Thanks! What changed in v2.14?", 256),
            big.clone(),
            Call::openai(
                GPT.model,
                "Summarize our refund policy in one sentence.",
                90,
            ),
        ];
        let out = customer.run(&Phase::new(&app, &key, calls)).await;
        for outcome in &out {
            expect_ok(&mut checks, "a call after the top-up", outcome);
            checks.eq(
                format!(
                    "after the top-up #{}: creditgate-access-state",
                    outcome.index
                ),
                outcome.access_state.as_deref(),
                Some("active"),
            );
        }
        checks.that(
            holds_settled(&app, &org_id).await,
            "every hold settled after the calls",
        );
        checks.eq(
            "usage charges in all",
            usage_charges(&app, &org_id).await,
            11,
        );

        app.assert_invariants().await;
        app.stop().await;
    }
    checks.finish();
}

// ----------------------------------------------------------------------------------------
// 2. The OpenAI SDK against fakellm, with the default cut-off minimum and product name
// ----------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_sdk_through_fakellm_is_cut_off_at_the_default_minimum_and_never_retries_a_402()
{
    let Some(mut customer) = Customer::start().await else {
        return;
    };
    let Some(fake) = FakeLlm::start().await else {
        return;
    };
    let mut checks = Checks::new();
    for database in databases().await {
        let Some(smtpd) = Smtpd::started().await else {
            return;
        };
        let (port, upstream) = (smtpd.port, fake.url.clone());
        let app = spawn_app_with(database, |c| {
            configure(c, port);
            c.product_name = "Example API".into();
            c.anthropic_upstream = upstream.clone().into();
            c.openai_upstream = upstream.into();
        })
        .await;
        checks.scope(app.backend);
        for price in [GPT_MINI, O3_PRO, SONNET] {
            price.put(&app).await;
        }
        // A threshold of 0.25: the cut-off level is the 1.00 minimum above the floor.
        let (org_id, key) = org_with_credits(
            &app,
            "Initech",
            &["billing@initech.example"],
            &["0.25"],
            "1.183307",
        )
        .await;
        let mut posted = micros("1.183307");
        let big = Call::openai(
            O3_PRO.model,
            "Prove that the ledger's double-entry invariant holds under concurrent holds, step \
             by step, with every lemma.",
            20_000,
        );
        assert!(
            big.worst_case(&O3_PRO) > posted,
            "the big call exceeds the balance"
        );

        // Everyday calls pass; an upstream 429 is retried by the SDK (max_retries = 2: three
        // attempts, all of them at fakellm); one call larger than the balance above the
        // cut-off level is refused on its own, once, without reaching fakellm.
        let before = fake.requests().await;
        let calls = vec![
            Call::openai(
                GPT_MINI.model,
                "Draft a two-line status update for the on-call channel.",
                200,
            ),
            Call::openai(
                GPT_MINI.model,
                &format!("{RATE_LIMIT_TRIGGER} Retry me: list three HTTP status codes."),
                100,
            ),
            Call::anthropic(
                SONNET.model,
                "Classify this support ticket: 'I was charged twice for the March invoice.'",
                256,
            ),
            big.clone(),
        ];
        let out = customer.run(&Phase::new(&app, &key, calls)).await;
        posted = follow_balance(&mut checks, "call", &out[..1], &[GPT_MINI], posted, 0);
        checks.eq(
            "an upstream 429: status and exception",
            (out[1].status, out[1].exception.as_deref()),
            (Some(429), Some("openai.RateLimitError")),
        );
        checks.eq(
            "an upstream 429: HTTP attempts (retried)",
            out[1].attempts,
            3,
        );
        posted = follow_balance(&mut checks, "call", &out[2..3], &[SONNET], posted, 0);
        expect_refused(
            &mut checks,
            "one call larger than the balance, above the cut-off level",
            Sdk::Openai,
            &out[3],
            "request_exceeds_balance",
            "active",
            &org_id,
        );
        checks.eq(
            "requests at fakellm (1 + 3 attempts of the 429 + 1)",
            fake.requests().await - before,
            5,
        );
        let (_, _, state) = figures(&app, &org_id).await;
        checks.eq("access after one oversized call", state.as_str(), "active");

        // Two long essays take the balance below 1.00; the big call then turns the org off,
        // and later calls of either SDK are refused without reaching fakellm.
        let before = fake.requests().await;
        let calls = vec![
            Call::openai(
                O3_PRO.model,
                &format!("{ESSAY_TRIGGER} Write an essay on double-entry bookkeeping."),
                4_000,
            ),
            Call::openai(
                O3_PRO.model,
                &format!("{ESSAY_TRIGGER} Now a second essay, on ledgers in distributed systems."),
                4_000,
            ),
            big.clone(),
            Call::openai(GPT_MINI.model, "ping", 32),
            Call::anthropic(SONNET.model, "Are you there?", 64),
        ];
        let out = customer.run(&Phase::new(&app, &key, calls)).await;
        posted = follow_balance(&mut checks, "essay", &out[..2], &[O3_PRO; 2], posted, 0);
        assert!(
            posted < micros("1.00"),
            "the essays took the balance below the 1.00 minimum: {}",
            money(posted)
        );
        let refusals = [
            ("the big call below the cut-off level", Sdk::Openai),
            ("a small OpenAI-SDK call after the cut-off", Sdk::Openai),
            ("an Anthropic-SDK call after the cut-off", Sdk::Anthropic),
        ];
        for ((what, sdk), outcome) in refusals.iter().zip(&out[2..]) {
            expect_refused(
                &mut checks,
                what,
                *sdk,
                outcome,
                "credit_balance_exhausted",
                "depleted",
                &org_id,
            );
        }
        checks.eq(
            "requests at fakellm (the essays only)",
            fake.requests().await - before,
            2,
        );
        let (now_posted, _, state) = figures(&app, &org_id).await;
        checks.eq("access after the refusal", state.as_str(), "depleted");
        checks.eq("nothing charged for refusals", now_posted, posted);
        let mails = mails_once(&smtpd, |m| count(m, OFF_DEFAULT) >= 1).await;
        checks.eq(
            "emails (one turned-off, named 'Example API' once; no low: 0.25 never crossed)",
            subjects(&mails),
            vec![OFF_DEFAULT.to_owned()],
        );
        if let Some(off) = mails.first() {
            checks.that(
                off.text
                    .replace('\n', " ")
                    .contains("Initech is out of usage credits"),
                format_args!("the turned-off email says why: {}", off.text),
            );
        }

        top_up(&app, &org_id, "10.00").await;
        let (_, _, state) = figures(&app, &org_id).await;
        checks.eq("access after the top-up", state.as_str(), "active");
        let mails = mails_once(&smtpd, |m| count(m, BACK_DEFAULT) >= 1).await;
        checks.eq("back-on emails", count(&mails, BACK_DEFAULT), 1);
        let before = fake.requests().await;
        let calls = vec![
            Call::openai(
                GPT_MINI.model,
                "Welcome back: summarize today's alerts.",
                150,
            ),
            Call::anthropic(SONNET.model, "What is our current balance policy?", 120),
        ];
        let out = customer.run(&Phase::new(&app, &key, calls)).await;
        for outcome in &out {
            expect_ok(&mut checks, "a call after the top-up", outcome);
        }
        checks.eq(
            "requests at fakellm after the top-up",
            fake.requests().await - before,
            2,
        );

        app.assert_invariants().await;
        app.stop().await;
    }
    checks.finish();
}

// ----------------------------------------------------------------------------------------
// 3. Auto-reload: the refusal reloads (no "turned off"), or a declined card says so
// ----------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_auto_reload_the_refusal_reloads_once_and_nobody_is_told_access_is_off() {
    auto_reload_story("pm_card_visa").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_declining_card_one_turned_off_email_says_the_card_was_declined() {
    auto_reload_story("pm_card_visa_chargeDeclined").await;
}

async fn auto_reload_story(card: &str) {
    let declines = card != "pm_card_visa";
    let Some(mut customer) = Customer::start().await else {
        return;
    };
    let mut checks = Checks::new();
    for database in databases().await {
        let Some(smtpd) = Smtpd::started().await else {
            return;
        };
        let port = smtpd.port;
        let app = spawn_app_with(database, |c| configure(c, port)).await;
        checks.scope(app.backend);
        for price in [SONNET, OPUS, GPT] {
            price.put(&app).await;
        }
        let (org_id, key) = org_with_credits(
            &app,
            "Hooli",
            &["finance@hooli.example"],
            &["1.50"],
            "1.543211",
        )
        .await;
        let threshold = micros("1.50");
        // Reload at 0.50 (below where the refusal happens): only the refusal can cause it.
        let reply = app
            .request(
                &As::Operator,
                Method::PUT,
                &format!("/v1/orgs/{org_id}/auto_reload"),
                Some(json!({
                    "enabled": true,
                    "threshold": "0.50",
                    "amount": "10.00",
                    "monthly_limit": "50.00",
                    "payment_method": card,
                    "consent": {"accepted_by": "gavin@hooli.example", "text_version": "2026-11"}
                })),
                &[],
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);

        // Below the low threshold (the cut-off level), still above the reload threshold:
        // one low email, no reload.
        let out = customer
            .run(&Phase::new(&app, &key, contract_calls(3)))
            .await;
        let posted = follow_balance(
            &mut checks,
            "contract question",
            &out,
            &[OPUS; 3],
            micros("1.543211"),
            threshold,
        );
        assert!(
            posted < threshold,
            "below the cut-off level: {}",
            money(posted)
        );
        let mails = mails_once(&smtpd, |m| count(m, LOW) >= 1).await;
        checks.eq(
            "emails below the threshold",
            subjects(&mails),
            vec![LOW.to_owned()],
        );
        checks.eq(
            "payments before any refusal",
            payments(&app, &org_id).await.len(),
            0,
        );

        // The big call is refused for lack of credits below the cut-off level.
        let big = Call::anthropic(OPUS.model, DESIGN_DOC, 32_000).streamed();
        let out = customer
            .run(&Phase::new(&app, &key, vec![big.clone()]))
            .await;
        expect_refused(
            &mut checks,
            "the big call below the cut-off level",
            Sdk::Anthropic,
            &out[0],
            "credit_balance_exhausted",
            // With a working card the reload may land before the header is read.
            if declines {
                "depleted"
            } else {
                "depleted|active"
            },
            &org_id,
        );
        let wanted = if declines { "failed" } else { "succeeded" };
        let made = within(|| async {
            let made = payments(&app, &org_id).await;
            made.iter().any(|p| p["state"] == wanted).then_some(made)
        })
        .await
        .unwrap_or_default();
        checks.eq("reloads the refusal caused", made.len(), 1);
        if let Some(payment) = made.first() {
            checks.eq(
                "the reload",
                (payment["kind"].as_str(), payment["amount"].as_str()),
                (Some("auto_reload"), Some("10.00")),
            );
        }

        if declines {
            let mails = mails_once(&smtpd, |m| count(m, OFF) >= 1).await;
            checks.eq("turned-off emails", count(&mails, OFF), 1);
            checks.eq("back-on emails", count(&mails, BACK), 0);
            if let Some(off) = mails.iter().find(|m| m.subject == OFF) {
                checks.that(
                    off.text.to_lowercase().contains("declined"),
                    format_args!(
                        "the turned-off email says the card was declined: {}",
                        off.text
                    ),
                );
            }
            let (_, _, state) = figures(&app, &org_id).await;
            checks.eq(
                "access after the declined reload",
                state.as_str(),
                "depleted",
            );
            let calls = vec![
                Call::anthropic(SONNET.model, "Is the API back?", 32),
                Call::openai(GPT.model, "Hello?", 32),
            ];
            let out = customer.run(&Phase::new(&app, &key, calls)).await;
            for (outcome, sdk) in out.iter().zip([Sdk::Anthropic, Sdk::Openai]) {
                expect_refused(
                    &mut checks,
                    "a call after the declined reload",
                    sdk,
                    outcome,
                    "credit_balance_exhausted",
                    "depleted",
                    &org_id,
                );
            }
            // A top-up brings it back, with one "back on".
            top_up(&app, &org_id, "10.00").await;
            let mails = mails_once(&smtpd, |m| count(m, BACK) >= 1).await;
            checks.eq("back-on emails after the top-up", count(&mails, BACK), 1);
            checks.eq("turned-off emails in all", count(&mails, OFF), 1);
        }

        // Access is back (the product's promise: within a second of the credits), and calls
        // pass again: the big one too.
        let back = within(|| async {
            let state = balance(&app, &org_id).await["access_state"].clone();
            (state == "active").then_some(())
        })
        .await;
        checks.that(
            back.is_some(),
            "access back on after the reload (or the top-up)",
        );
        let calls = vec![
            big.clone(),
            Call::anthropic(SONNET.model, "Give me a status summary for the board.", 400),
            Call::openai(GPT.model, "Spell 'reconciliation' backwards.", 40),
        ];
        let out = customer.run(&Phase::new(&app, &key, calls)).await;
        for outcome in &out {
            expect_ok(
                &mut checks,
                "a call after the reload (or the top-up)",
                outcome,
            );
        }
        let (_, _, state) = figures(&app, &org_id).await;
        checks.eq("access at the end", state.as_str(), "active");
        tokio::time::sleep(QUIET).await;
        if !declines {
            let mails = smtpd.mails();
            checks.eq(
                "emails (a reload kept access on: no turned-off, no back-on)",
                subjects(&mails),
                vec![LOW.to_owned()],
            );
            let kinds = notice_kinds(&app, &org_id).await;
            checks.that(
                !kinds.iter().any(|k| k.starts_with("access.")),
                format_args!("no access notice: {kinds:?}"),
            );
            checks.that(
                smtpd
                    .receipts()
                    .iter()
                    .any(|m| m.subject.contains("auto-reload")),
                format_args!("the reload's receipt: {:?}", subjects(&smtpd.receipts())),
            );
        }
        checks.eq(
            "payments in all (one reload per need)",
            payments(&app, &org_id).await.len(),
            1,
        );

        app.assert_invariants().await;
        app.stop().await;
    }
    checks.finish();
}

// ----------------------------------------------------------------------------------------
// 4. 64 SDK clients at once
// ----------------------------------------------------------------------------------------

/// Sonnet with a request fee of 0.01 (a per-call surcharge such as a tool's), so 64 clients
/// get through 3.47 in a few hundred calls.
const SONNET_WITH_FEE: Price = Price {
    model: "claude-sonnet-4-5",
    input: "3.00",
    output: "15.00",
    request_fee: Some("0.01"),
};

const SHORT_PROMPTS: [&str; 16] = [
    "Suggest a name for a billing microservice.",
    "What is idempotency, in one sentence?",
    "Rewrite 'pls fix asap' politely.",
    "Give three test cases for a currency parser.",
    "Explain group commit to a product manager.",
    "Is 0.000375 dollars more than a tenth of a cent?",
    "Write a commit message for a typo fix in the README.",
    "Name two risks of floating-point money.",
    "What does HTTP 402 mean?",
    "Outline a postmortem for a 5-minute outage.",
    "Translate 'credits' into Spanish.",
    "Summarize the CAP theorem in twelve words.",
    "Draft a tweet announcing auto-reload.",
    "What is a double-entry ledger?",
    "List the days of the week in French.",
    "Propose a SQL index for lookups by org id and time.",
];
const MAX_TOKENS: [u64; 8] = [48, 96, 160, 256, 384, 512, 700, 1000];
const CLIENTS: usize = 64;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_sdk_clients_spending_to_the_cut_off_cause_one_email_of_each() {
    let Some(mut customer) = Customer::start().await else {
        return;
    };
    let mut checks = Checks::new();
    for database in databases().await {
        let Some(smtpd) = Smtpd::started().await else {
            return;
        };
        let port = smtpd.port;
        let app = spawn_app_with(database, |c| configure(c, port)).await;
        checks.scope(app.backend);
        SONNET_WITH_FEE.put(&app).await;
        // Cut-off level: 1.25, the lower threshold.
        let (org_id, key) = org_with_credits(
            &app,
            "Massive Dynamic",
            &["ap@massive.example"],
            &["2.50", "1.25"],
            "3.471901",
        )
        .await;

        // 64 threads, a client each, up to 8 calls each; a thread stops at its first
        // `credit_balance_exhausted`.
        let calls: Vec<Call> = (0..CLIENTS * 8)
            .map(|i| {
                let call = Call::anthropic(
                    SONNET_WITH_FEE.model,
                    SHORT_PROMPTS[i % SHORT_PROMPTS.len()],
                    MAX_TOKENS[(i / CLIENTS + i) % MAX_TOKENS.len()],
                );
                if i % 5 == 0 {
                    call.streamed()
                } else {
                    call
                }
            })
            .collect();
        let phase = Phase::new(&app, &key, calls)
            .concurrent(CLIENTS)
            .stop_on("credit_balance_exhausted");
        let out = customer.run(&phase).await;
        let succeeded: Vec<&Outcome> = out.iter().filter(|o| o.ok).collect();
        let refused: Vec<&Outcome> = out.iter().filter(|o| o.status == Some(402)).collect();
        let odd: Vec<String> = out
            .iter()
            .filter(|o| {
                let fine_success = o.ok && o.status == Some(200) && o.attempts == 1;
                let fine_refusal = o.status == Some(402)
                    && o.attempts == 1
                    && o.exception.as_deref() == Some("anthropic.PaymentRequiredError")
                    && matches!(
                        o.error_code.as_deref(),
                        Some("request_exceeds_balance" | "credit_balance_exhausted")
                    );
                !(fine_success || fine_refusal)
            })
            .map(Outcome::brief)
            .take(5)
            .collect();
        checks.eq(
            "every call succeeds or is refused with a billing error, in one attempt",
            odd,
            Vec::<String>::new(),
        );
        checks.that(
            refused
                .iter()
                .any(|o| o.error_code.as_deref() == Some("credit_balance_exhausted")),
            format_args!(
                "the org ran out ({} succeeded, {} refused)",
                succeeded.len(),
                refused.len()
            ),
        );
        eprintln!(
            "[{}] {CLIENTS} clients: {} calls succeeded, {} refused ({} request_exceeds_balance)",
            app.backend,
            succeeded.len(),
            refused.len(),
            refused
                .iter()
                .filter(|o| o.error_code.as_deref() == Some("request_exceeds_balance"))
                .count()
        );
        let spent: i64 = succeeded.iter().map(|o| SONNET_WITH_FEE.cost_of(o)).sum();
        let (posted, reserved, state) = figures(&app, &org_id).await;
        checks.eq(
            "posted = credits − the usage the SDKs reported",
            money(posted),
            money(micros("3.471901") - spent),
        );
        checks.eq("no hold left open", reserved, 0);
        checks.eq("access after the run", state.as_str(), "depleted");
        checks.that(
            posted < micros("1.25"),
            format_args!("turned off only below the cut-off level: {}", money(posted)),
        );
        checks.eq(
            "usage charges (one per success)",
            usage_charges(&app, &org_id).await,
            succeeded.len(),
        );
        // Turned off means off, although the balance left would cover these.
        let calls = vec![
            Call::anthropic(SONNET_WITH_FEE.model, "One more, please.", 32),
            Call::anthropic(SONNET_WITH_FEE.model, "And a streamed one.", 48).streamed(),
        ];
        let after = customer.run(&Phase::new(&app, &key, calls)).await;
        for outcome in &after {
            expect_refused(
                &mut checks,
                "a call after the cut-off",
                Sdk::Anthropic,
                outcome,
                "credit_balance_exhausted",
                "depleted",
                &org_id,
            );
        }

        let mails = mails_once(&smtpd, |m| count(m, OFF) >= 1 && count(m, LOW) >= 1).await;
        checks.eq("turned-off emails", count(&mails, OFF), 1);
        let below = |amount: &str| {
            mails
                .iter()
                .filter(|m| m.subject == LOW && m.text.contains(&format!("below ${amount}")))
                .count()
        };
        checks.eq("low emails for 2.50", below("2.50"), 1);
        checks.that(
            below("1.25") <= 1,
            format_args!("at most one low email for 1.25: {}", below("1.25")),
        );
        checks.eq(
            "low emails (one per threshold crossed)",
            count(&mails, LOW),
            below("2.50") + below("1.25"),
        );
        let kinds = notice_kinds(&app, &org_id).await;
        checks.eq(
            "low notices = low emails",
            kinds.iter().filter(|k| *k == "balance.low").count(),
            count(&mails, LOW),
        );

        top_up(&app, &org_id, "5.00").await;
        let (_, _, state) = figures(&app, &org_id).await;
        checks.eq("access after the top-up", state.as_str(), "active");
        let mails = mails_once(&smtpd, |m| count(m, BACK) >= 1).await;
        checks.eq("back-on emails", count(&mails, BACK), 1);
        checks.eq("turned-off emails in all", count(&mails, OFF), 1);
        let calls: Vec<Call> = (0..16)
            .map(|i| Call::anthropic(SONNET_WITH_FEE.model, SHORT_PROMPTS[i], MAX_TOKENS[i % 8]))
            .collect();
        let out = customer
            .run(&Phase::new(&app, &key, calls).concurrent(16))
            .await;
        checks.eq(
            "calls after the top-up that pass",
            out.iter().filter(|o| o.ok).count(),
            16,
        );

        app.assert_invariants().await;
        app.stop().await;
    }
    checks.finish();
}
