//! Rate limits through the official SDKs (PyPI `anthropic`, `openai`, pinned) against the
//! metering proxy and the built-in demo upstream, on every backend:
//!
//! - a key limited to 5 requests a minute: five support questions of different lengths are
//!   answered, each with `anthropic-ratelimit-requests-remaining` counting down, the sixth and seventh are raised as the SDK's `RateLimitError` (429,
//!   `rate_limit_error`) with `retry-after` and `anthropic-ratelimit-requests-*` headers; the
//!   refused calls held and charged nothing (each answered call is charged exactly its usage);
//!   another key of the same org is not limited by it;
//! - an org limited to 40 requests a minute, through the OpenAI SDK with its default retries:
//!   42 calls in a row all succeed, the last ones after the SDK waited the `retry-after-ms` the
//!   429 carried (their attempts and elapsed time show it), each charged once;
//! - the metering API: `POST /v1/holds` with the limited key answers 429
//!   `rate_limit_exceeded` with `retry-after`, and nothing is held;
//! - limits outside 1..=1,000,000,000 are a 400 naming the field.
//!
//! The ledger invariants hold at the end.

// sdk_support and smtp_support each bring their own copy of python_tools.
#![allow(clippy::duplicate_mod)]

mod api_support;
mod sdk_support;
mod smtp_support;

use api_support::{databases, spawn_app, As, TestApp};
use reqwest::{Method, StatusCode};
use sdk_support::{balance, usage_amounts, Call, Checks, Customer, Outcome, Phase, Price};
use serde_json::{json, Value};

const PRICE: Price = Price {
    model: "claude-haiku-4-5",
    input: "1",
    output: "5",
    request_fee: None,
};

/// Questions a support assistant is asked, of different lengths.
const QUESTIONS: [&str; 7] = [
    "How do I rotate an API key without downtime?",
    "Why was my card declined when auto-reload ran last night at 02:13 UTC?",
    "Summarise our usage for the week.",
    "Can two teams share one organization but keep separate monthly budgets for their keys, and \
     how would the invoices look?",
    "What does error 402 mean?",
    "Is streaming billed differently from non-streamed calls, for example with long prompts?",
    "Thanks!",
];

/// Creates a key for `org` with `rate_limits`; answers its secret.
async fn key_with_limits(app: &TestApp, org: &str, rate_limits: Value) -> String {
    let reply = app
        .post(
            &As::Operator,
            &format!("/v1/orgs/{org}/keys"),
            json!({ "name": "limited", "rate_limits": rate_limits }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(reply.body["rate_limits"], rate_limits, "{}", reply.body);
    reply.str("secret")
}

fn header<'a>(outcome: &'a Outcome, name: &str) -> Option<&'a str> {
    outcome.rate_headers.get(name).map(String::as_str)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_the_sdks_own_errors_and_move_no_money() {
    let Some(mut customer) = Customer::start().await else {
        return;
    };
    let mut checks = Checks::new();
    for database in databases().await {
        let app = spawn_app(database).await;
        checks.scope(app.backend);
        PRICE.put(&app).await;
        let org = app.create_org("Support desk").await;
        app.grant(&org, "25.00").await;
        key_limit_refuses(&app, &org, &mut customer, &mut checks).await;
        org_limit_is_waited_out(&app, &org, &mut customer, &mut checks).await;
        bad_limits_are_named(&app, &org).await;
        let balance = balance(&app, &org).await;
        checks.eq(
            "nothing left held",
            balance["reserved"].clone(),
            json!("0.00"),
        );
        app.assert_invariants().await;
        app.stop().await;
    }
    checks.finish();
}

/// A key's limit: five answered, two refused as `RateLimitError`, nothing charged for them.
async fn key_limit_refuses(app: &TestApp, org: &str, customer: &mut Customer, checks: &mut Checks) {
    let limited = key_with_limits(
        app,
        org,
        json!({"requests_per_minute": 5, "input_tokens_per_minute": null, "output_tokens_per_minute": null}),
    )
    .await;
    let calls = QUESTIONS
        .iter()
        .enumerate()
        .map(|(i, q)| Call::anthropic(PRICE.model, q, 40 + 20 * i as u64))
        .collect();
    let mut phase = Phase::new(app, &limited, calls);
    phase.max_retries = 0;
    let outcomes = customer.run(&phase).await;
    let before = usage_amounts(app, org).await;
    for outcome in &outcomes[..5] {
        checks.that(
            outcome.ok,
            format_args!("within the limit: {}", outcome.brief()),
        );
    }
    for outcome in &outcomes[5..] {
        let what = format!("call {} past the limit", outcome.index);
        checks.eq(format!("{what}: status"), outcome.status, Some(429));
        checks.eq(
            format!("{what}: exception"),
            outcome.exception.as_deref(),
            Some("anthropic.RateLimitError"),
        );
        checks.eq(
            format!("{what}: type"),
            outcome.error_type.as_deref(),
            Some("rate_limit_error"),
        );
        checks.eq(format!("{what}: attempts"), outcome.attempts, 1);
        let retry_after: u64 = header(outcome, "retry-after").map_or(0, |v| v.parse().unwrap_or(0));
        checks.that(
            (1..=12).contains(&retry_after),
            format_args!("{what}: retry-after {retry_after} s within a fifth of a minute"),
        );
        checks.eq(
            format!("{what}: limit header"),
            header(outcome, "anthropic-ratelimit-requests-limit"),
            Some("5"),
        );
        checks.eq(
            format!("{what}: remaining header"),
            header(outcome, "anthropic-ratelimit-requests-remaining"),
            Some("0"),
        );
    }
    // Exactly the five answered calls were charged, each at its usage.
    let mut charged: Vec<i64> = outcomes[..5].iter().map(|o| PRICE.cost_of(o)).collect();
    charged.sort_unstable();
    checks.eq("the key's calls charged", before.clone(), charged);
    // The org's other key is not held back by this key's limit.
    let (_, other) = app.create_key(org).await;
    let free = customer
        .run(&Phase::new(
            app,
            &other,
            vec![Call::anthropic(PRICE.model, QUESTIONS[6], 16)],
        ))
        .await;
    checks.that(free[0].ok, format_args!("another key: {}", free[0].brief()));
    // The metering API refuses the limited key the same way, holding nothing.
    let reserved = balance(app, org).await["reserved"].clone();
    let hold = app
        .post(&As::Key(limited), "/v1/holds", json!({ "amount": "0.10" }))
        .await;
    checks.eq(
        "API hold: status",
        hold.status,
        StatusCode::TOO_MANY_REQUESTS,
    );
    checks.eq("API hold: code", hold.code(), "rate_limit_exceeded");
    checks.that(
        hold.headers.contains_key("retry-after"),
        "API hold: retry-after",
    );
    checks.eq(
        "API hold: nothing held",
        balance(app, org).await["reserved"].clone(),
        reserved,
    );
}

/// An org's limit, waited out by the OpenAI SDK's own retries.
async fn org_limit_is_waited_out(
    app: &TestApp,
    org: &str,
    customer: &mut Customer,
    checks: &mut Checks,
) {
    let patched = app
        .request(
            &As::Operator,
            Method::PATCH,
            &format!("/v1/orgs/{org}"),
            Some(json!({ "rate_limits": { "requests_per_minute": 40 } })),
            &[],
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!(patched.body["rate_limits"]["requests_per_minute"], 40);
    let (_, key) = app.create_key(org).await;
    let before = usage_amounts(app, org).await;
    // The org's bucket is shared by its keys: the calls above took some of its 40.
    let calls: Vec<Call> = (0..42)
        .map(|i| Call::openai(PRICE.model, QUESTIONS[i % QUESTIONS.len()], 24))
        .collect();
    let mut phase = Phase::new(app, &key, calls);
    phase.max_retries = 4;
    let outcomes = customer.run(&phase).await;
    let answered = outcomes.iter().filter(|o| o.ok).count();
    checks.eq("every call answered in the end", answered, 42);
    let waited: Vec<&Outcome> = outcomes.iter().filter(|o| o.attempts > 1).collect();
    checks.that(
        !waited.is_empty(),
        "some calls were refused once and retried by the SDK",
    );
    for outcome in &waited {
        // 40 a minute: one request frees up every 1.5 s; the SDK waited for it.
        checks.that(
            outcome.elapsed_ms.unwrap_or(0) >= 500,
            format_args!("the SDK waited before retrying: {}", outcome.brief()),
        );
    }
    // Each answered call charged once, at its usage; the refused attempts nothing.
    let after = usage_amounts(app, org).await;
    checks.eq("usage transfers added", after.len() - before.len(), 42);
    let added: i64 = after.iter().sum::<i64>() - before.iter().sum::<i64>();
    let used: i64 = outcomes
        .iter()
        .filter(|o| o.ok)
        .map(|o| PRICE.cost_of(o))
        .sum();
    checks.eq("charged exactly the usage", added, used);
}

/// Limits outside the range are a 400 naming the field, and change nothing.
async fn bad_limits_are_named(app: &TestApp, org: &str) {
    for (limits, field) in [
        (
            json!({"requests_per_minute": 0}),
            "rate_limits.requests_per_minute",
        ),
        (
            json!({"output_tokens_per_minute": 1_000_000_001u64}),
            "rate_limits.output_tokens_per_minute",
        ),
    ] {
        let reply = app
            .request(
                &As::Operator,
                Method::PATCH,
                &format!("/v1/orgs/{org}"),
                Some(json!({ "rate_limits": limits })),
                &[],
            )
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
        assert_eq!(reply.body["error"]["param"], field, "{}", reply.body);
    }
    let org_now = app.get(&As::Operator, &format!("/v1/orgs/{org}")).await;
    assert_eq!(org_now.body["rate_limits"]["requests_per_minute"], 40);
}
