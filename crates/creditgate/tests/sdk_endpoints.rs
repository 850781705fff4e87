//! The endpoints customers call besides Messages and Chat Completions, through the official
//! Python SDKs (PyPI `anthropic==2.10.0`, `openai==3.51.0`) against the metering proxy and the
//! built-in demo upstream, on every backend:
//!
//! - `client.responses.create`, plain and `stream=True` (with cached input and reasoning
//!   tokens, and a reply cut by `max_output_tokens`), and `client.embeddings.create` (one input
//!   and several): each charged exactly what the demo upstream's deterministic usage costs at
//!   the prices set (cached input at the cache-read price, reasoning as output, once), to the
//!   micro-unit, with the balance header after each non-streamed call;
//! - `client.messages.count_tokens`, `client.models.list()` and `client.models.retrieve()`
//!   (both SDKs): passed through, charging nothing, balance headers on;
//! - an endpoint the proxy does not serve: `NotFoundError` raised by each SDK, from a 404 in
//!   its own envelope (`not_found_error`; `invalid_request_error` / `unknown_url`);
//! - over plain HTTP, the unhappy paths on the new endpoints: an upstream error voided, a
//!   Responses stream cut before `response.completed` and a malformed embeddings usage charged
//!   their holds' worst case, `background: true` refused, 401 and 404 in each style's envelope
//!   (a 404 needs no key; a method the proxy does not serve on its path is a 404 too);
//! - out of credits: responses (plain and streamed) and embeddings refused with a 402 the SDKs
//!   raise as their own billing error, not retried; the free endpoints still answer the
//!   depleted org, and a suspended org is refused them (402 `org_suspended`).
//!
//! The ledger invariants hold at the end. Setup and skipping: see `sdk_support`.

// sdk_support and smtp_support each bring their own copy of python_tools.
#![allow(clippy::duplicate_mod)]

mod api_support;
mod sdk_support;
mod smtp_support;

use api_support::helpers::patch_org;
use api_support::{databases, spawn_app, As, TestApp};
use reqwest::{Method, StatusCode};
use sdk_support::{
    balance, expect_ok, expect_refused, holds_settled, micros, money, org_with_key, usage_amounts,
    Call, Checks, Customer, Endpoint, Outcome, Phase, Sdk,
};
use serde_json::{json, Value};

/// A Responses model: per million tokens input 2.50, output 10.00, cache read 1.25.
const GPT: &str = "gpt-5";
const GPT_PRICES: [&str; 3] = ["2.50", "10.00", "1.25"];
/// An embedding model: 0.02 per million input tokens.
const EMBEDDING: &str = "text-embedding-3-small";
const EMBEDDING_INPUT: &str = "0.02";

/// `PUT /v1/prices/{model}`.
async fn put_price(app: &TestApp, model: &str, body: Value) {
    let reply = app
        .request(
            &As::Operator,
            Method::PUT,
            &format!("/v1/prices/{model}"),
            Some(body),
            &[],
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
}

/// The demo upstream's tokens of a text of `bytes` bytes: `max(1, ⌈bytes / 4⌉)`.
fn demo_tokens(bytes: usize) -> u64 {
    u64::try_from(bytes.div_ceil(4).max(1)).expect("small")
}

/// What the demo upstream reports for a Responses call (its documented formula).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ResponsesUsage {
    input: u64,
    cached: u64,
    output: u64,
    reasoning: u64,
}

fn demo_responses_usage(call: &Call) -> ResponsesUsage {
    let bytes = call.prompt.len() + call.system.as_ref().map_or(0, String::len);
    let input = demo_tokens(bytes);
    let thinks = call
        .extra
        .as_ref()
        .is_some_and(|e| !e["reasoning"].is_null());
    let reasoning = if thinks { 8 } else { 0 };
    ResponsesUsage {
        input,
        cached: if input >= 1024 {
            128 * (input / 256)
        } else {
            0
        },
        output: call.max_tokens.min(reasoning + 32),
        reasoning: call.max_tokens.min(reasoning),
    }
}

/// Micro-units per million tokens × tokens, summed, rounded up once.
fn cost(lines: &[(u64, &str)]) -> i64 {
    let scaled: i128 = lines
        .iter()
        .map(|(tokens, price)| i128::from(*tokens) * i128::from(micros(price)))
        .sum();
    i64::try_from((scaled + 999_999) / 1_000_000).expect("in range")
}

/// The charge of a Responses call: plain input, cached input at the cache-read price, all
/// output (reasoning included) at the output price.
fn responses_charge(u: ResponsesUsage) -> i64 {
    let [input, output, cache_read] = GPT_PRICES;
    cost(&[
        (u.input - u.cached, input),
        (u.cached, cache_read),
        (u.output, output),
    ])
}

/// The demo upstream's `prompt_tokens` for embedding `inputs`.
fn demo_embedding_tokens(inputs: &[&str]) -> u64 {
    inputs.iter().map(|text| demo_tokens(text.len())).sum()
}

/// A contract of about 6 KB: past 1,024 input tokens, so part of it is read from the cache.
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

const ARTICLES: [&str; 3] = [
    "Prepaid credits are debited as each call is priced from its usage.",
    "Auto-reload adds credits when the balance falls below a chosen minimum.",
    "A hold reserves the worst case of a call before it is forwarded.",
];

/// Checks a successful metered call: made once, the usage the SDK parsed is the demo's, and
/// (non-streamed) the balance header is the balance after its charge. Answers its charge.
fn check_metered(
    checks: &mut Checks,
    what: &str,
    call: &Call,
    outcome: &Outcome,
    posted_after: Option<i64>,
) -> i64 {
    expect_ok(checks, what, outcome);
    let charge = match call.endpoint {
        Endpoint::Responses => {
            let want = demo_responses_usage(call);
            let got = ResponsesUsage {
                input: outcome.input_tokens.unwrap_or(0),
                cached: outcome.cached_tokens.unwrap_or(0),
                output: outcome.output_tokens.unwrap_or(0),
                reasoning: outcome.reasoning_tokens.unwrap_or(0),
            };
            checks.eq(format!("{what}: usage the SDK parsed"), got, want);
            let status = if want.output - want.reasoning < 32 {
                "incomplete"
            } else {
                "completed"
            };
            checks.eq(
                format!("{what}: response status"),
                outcome.response_status.as_deref(),
                Some(status),
            );
            checks.that(
                outcome
                    .text
                    .as_deref()
                    .is_some_and(|t| t.starts_with("Hello from")),
                format_args!("{what}: the reply's text: {:?}", outcome.text),
            );
            responses_charge(want)
        }
        Endpoint::Embeddings => {
            let inputs: Vec<&str> = match &call.extra {
                Some(extra) => extra["input"]
                    .as_array()
                    .expect("inputs")
                    .iter()
                    .map(|v| v.as_str().expect("a text"))
                    .collect(),
                None => vec![call.prompt.as_str()],
            };
            let tokens = demo_embedding_tokens(&inputs);
            checks.eq(
                format!("{what}: prompt tokens the SDK parsed"),
                outcome.input_tokens,
                Some(tokens),
            );
            checks.eq(
                format!("{what}: vectors"),
                outcome.vectors,
                Some(inputs.len() as u64),
            );
            checks.eq(format!("{what}: dimensions"), outcome.dimensions, Some(16));
            cost(&[(tokens, EMBEDDING_INPUT)])
        }
        other => panic!("not metered: {other:?}"),
    };
    if let Some(posted) = posted_after {
        checks.eq(
            format!("{what}: creditgate-balance-available"),
            outcome.available_micros().map(money),
            Some(money(posted - charge)),
        );
    }
    charge
}

async fn posted_and_reserved(app: &TestApp, org_id: &str) -> (i64, i64) {
    let b = balance(app, org_id).await;
    (
        micros(b["posted"].as_str().expect("posted")),
        micros(b["reserved"].as_str().expect("reserved")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_through_the_sdks_is_metered_or_free_as_documented() {
    let Some(mut customer) = Customer::start().await else {
        return;
    };
    let mut checks = Checks::new();
    for database in databases().await {
        let app = spawn_app(database).await;
        checks.scope(app.backend);
        let [input, output, cache_read] = GPT_PRICES;
        put_price(
            &app,
            GPT,
            json!({"input": input, "output": output, "cache_read": cache_read}),
        )
        .await;
        put_price(
            &app,
            EMBEDDING,
            json!({"input": EMBEDDING_INPUT, "output": "0"}),
        )
        .await;
        let (org_id, key) = org_with_key(&app, "Initech", "10.00").await;
        let mut posted = micros("10.00");
        let contract = contract();
        let responses =
            |prompt: &str, max: u64| Call::to(Endpoint::Responses, Sdk::Openai, GPT, prompt, max);
        let reasoning = json!({"reasoning": {"effort": "low"}});

        // 1. Non-streamed metered calls: each answer carries the balance after its charge.
        let plain = vec![
            responses("Write a haiku about double-entry ledgers.", 100)
                .system("You are a terse poet."),
            responses("Is 1,000,003 prime? Answer yes or no.", 200).extra(reasoning.clone()),
            responses(&contract, 300).system("Answer from the contract only."),
            Call::to(
                Endpoint::Embeddings,
                Sdk::Openai,
                EMBEDDING,
                "What does auto-reload do?",
                0,
            ),
            Call::to(Endpoint::Embeddings, Sdk::Openai, EMBEDDING, "", 0)
                .extra(json!({ "input": ARTICLES })),
        ];
        let out = customer.run(&Phase::new(&app, &key, plain.clone())).await;
        checks.eq("plain calls answered", out.len(), plain.len());
        let mut charges = Vec::new();
        for (call, outcome) in plain.iter().zip(&out) {
            let what = format!("plain {:?} #{}", call.endpoint, outcome.index);
            let charge = check_metered(&mut checks, &what, call, outcome, Some(posted));
            posted -= charge;
            charges.push(charge);
        }
        checks.that(
            out[2].cached_tokens.unwrap_or(0) > 0,
            "the long prompt was partly read from the cache",
        );

        // 2. Streamed Responses calls: settled from `response.completed` (or
        //    `response.incomplete`, when max_output_tokens cut the reply).
        let streamed = vec![
            responses("Summarize double-entry bookkeeping.", 100).streamed(),
            responses(&contract, 20)
                .system("List the deadlines.")
                .streamed(),
            responses(&contract, 300)
                .extra(reasoning.clone())
                .streamed(),
        ];
        let out = customer
            .run(&Phase::new(&app, &key, streamed.clone()))
            .await;
        checks.eq("streamed calls answered", out.len(), streamed.len());
        for (call, outcome) in streamed.iter().zip(&out) {
            let what = format!("streamed {:?} #{}", call.endpoint, outcome.index);
            let charge = check_metered(&mut checks, &what, call, outcome, None);
            posted -= charge;
            charges.push(charge);
        }
        checks.that(
            holds_settled(&app, &org_id).await,
            "every streamed call settled",
        );
        let (now_posted, reserved) = posted_and_reserved(&app, &org_id).await;
        checks.eq(
            "posted after the metered calls",
            money(now_posted),
            money(posted),
        );
        checks.eq("reserved after the metered calls", reserved, 0);
        charges.sort_unstable();
        checks.eq(
            "one usage charge per call, each exactly its usage's price",
            usage_amounts(&app, &org_id).await,
            charges.clone(),
        );

        // 3. Free endpoints (both SDKs) and an endpoint the proxy does not serve.
        let free = vec![
            Call::to(
                Endpoint::CountTokens,
                Sdk::Anthropic,
                "claude-sonnet-4-5",
                "How many tokens is this?",
                0,
            )
            .system("Count carefully."),
            Call::to(Endpoint::Models, Sdk::Anthropic, "", "", 0),
            Call::to(Endpoint::Models, Sdk::Openai, "", "", 0),
            Call::to(Endpoint::Model, Sdk::Anthropic, "claude-sonnet-4-5", "", 0),
            Call::to(
                Endpoint::Model,
                Sdk::Openai,
                "ft:gpt-4o-mini:acme::x1",
                "",
                0,
            ),
            Call::to(Endpoint::Unknown, Sdk::Anthropic, "", "", 0),
            Call::to(Endpoint::Unknown, Sdk::Openai, "", "", 0),
        ];
        let out = customer.run(&Phase::new(&app, &key, free.clone())).await;
        checks.eq("free calls answered", out.len(), free.len());
        for outcome in &out[..5] {
            let what = format!("free call #{}", outcome.index);
            expect_ok(&mut checks, &what, outcome);
            checks.eq(
                format!("{what}: creditgate-balance-available"),
                outcome.available_micros().map(money),
                Some(money(posted)),
            );
            checks.eq(
                format!("{what}: creditgate-access-state"),
                outcome.access_state.as_deref(),
                Some("active"),
            );
        }
        checks.eq(
            "count_tokens: the demo's count of system + prompt",
            out[0].input_tokens,
            Some(demo_tokens(
                "How many tokens is this?".len() + "Count carefully.".len(),
            )),
        );
        let ids = |o: &Outcome| o.ids.clone().unwrap_or_default();
        checks.eq(
            "anthropic models.list",
            ids(&out[1]),
            vec!["claude-demo".to_owned()],
        );
        checks.eq(
            "openai models.list",
            ids(&out[2]),
            vec!["gpt-demo".to_owned(), "text-embedding-demo".to_owned()],
        );
        checks.eq(
            "anthropic models.retrieve",
            ids(&out[3]),
            vec!["claude-sonnet-4-5".to_owned()],
        );
        checks.eq(
            "openai models.retrieve (an id with colons)",
            ids(&out[4]),
            vec!["ft:gpt-4o-mini:acme::x1".to_owned()],
        );
        for (outcome, exception, body_type, error_type) in [
            (
                &out[5],
                "anthropic.NotFoundError",
                Some("error"),
                "not_found_error",
            ),
            (
                &out[6],
                "openai.NotFoundError",
                None,
                "invalid_request_error",
            ),
        ] {
            let what = format!("unknown endpoint #{} ({})", outcome.index, outcome.brief());
            checks.eq(format!("{what}: status"), outcome.status, Some(404));
            checks.eq(
                format!("{what}: exception"),
                outcome.exception.as_deref(),
                Some(exception),
            );
            checks.eq(
                format!("{what}: envelope type"),
                outcome.body_type.as_deref(),
                body_type,
            );
            checks.eq(
                format!("{what}: error type"),
                outcome.error_type.as_deref(),
                Some(error_type),
            );
            checks.eq(
                format!("{what}: error code"),
                outcome.error_code.as_deref(),
                Some("unknown_url"),
            );
            checks.that(
                outcome
                    .message
                    .as_deref()
                    .is_some_and(|m| m.starts_with("Unknown request URL: GET ")),
                format_args!("{what}: the message names the URL: {:?}", outcome.message),
            );
            checks.eq(format!("{what}: attempts"), outcome.attempts, 1);
            checks.eq(
                format!("{what}: creditgate-access-state"),
                outcome.access_state.as_deref(),
                Some("active"),
            );
        }
        let (now_posted, reserved) = posted_and_reserved(&app, &org_id).await;
        checks.eq(
            "free calls charge nothing",
            money(now_posted),
            money(posted),
        );
        checks.eq("free calls hold nothing", reserved, 0);
        checks.eq(
            "free calls add no usage charge",
            usage_amounts(&app, &org_id).await,
            charges.clone(),
        );

        // 4. The unhappy paths of the new endpoints, over plain HTTP with the demo upstream's
        //    hooks: an upstream error is voided; a stream cut before `response.completed` and
        //    a malformed usage are charged the hold (the worst case: 32 + 8 + one token a byte
        //    of input at the dearest input price, plus max_output_tokens); refusals before
        //    forwarding change nothing.
        let bearer = As::Bearer(key.clone());
        let hello = json!({"model": GPT, "input": "Hello", "max_output_tokens": 100});
        let reply = app
            .request(
                &bearer,
                Method::POST,
                "/openai/v1/responses",
                Some(hello.clone()),
                &[("x-demo-status", "500")],
            )
            .await;
        checks.eq("upstream 500: passed through", reply.status.as_u16(), 500);
        checks.eq(
            "upstream 500: its envelope",
            reply.body["error"]["type"].as_str(),
            Some("server_error"),
        );
        checks.eq(
            "upstream 500: the balance header (nothing charged)",
            reply
                .headers
                .get("creditgate-balance-available")
                .and_then(|v| v.to_str().ok())
                .map(micros)
                .map(money),
            Some(money(posted)),
        );
        let mut cut = hello.clone();
        cut["stream"] = json!(true);
        let reply = app
            .request(
                &bearer,
                Method::POST,
                "/openai/v1/responses",
                Some(cut),
                &[("x-demo-cut-stream", "3")],
            )
            .await;
        let text = reply.body.as_str().unwrap_or_default();
        checks.that(
            reply.status == StatusCode::OK
                && text.contains("event: response.created")
                && !text.contains("response.completed"),
            format_args!(
                "a cut stream is passed on as cut: {} {text:?}",
                reply.status
            ),
        );
        let [input_price, output_price, _] = GPT_PRICES;
        let cut_charge = cost(&[(32 + 8 + 5, input_price), (100, output_price)]);
        posted -= cut_charge;
        let reply = app
            .request(
                &bearer,
                Method::POST,
                "/openai/v1/embeddings",
                Some(json!({"model": EMBEDDING, "input": "x".repeat(996)})),
                &[("x-demo-malformed-usage", "1")],
            )
            .await;
        checks.eq("malformed usage: answered", reply.status, StatusCode::OK);
        let malformed_charge = cost(&[(996 + 4, EMBEDDING_INPUT)]);
        posted -= malformed_charge;
        checks.eq(
            "malformed usage: the balance header after the hold's amount",
            reply
                .headers
                .get("creditgate-balance-available")
                .and_then(|v| v.to_str().ok())
                .map(micros)
                .map(money),
            Some(money(posted)),
        );
        let mut background = hello.clone();
        background["background"] = json!(true);
        let reply = app
            .request(
                &bearer,
                Method::POST,
                "/openai/v1/responses",
                Some(background),
                &[],
            )
            .await;
        checks.eq(
            "background: refused before forwarding",
            (reply.status, reply.body["error"]["param"].as_str()),
            (StatusCode::BAD_REQUEST, Some("background")),
        );
        let reply = app.get(&As::Nobody, "/openai/v1/models").await;
        checks.eq(
            "models without a key: 401 in the OpenAI envelope",
            (reply.status, reply.body["error"]["type"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("authentication_error")),
        );
        let reply = app
            .post(
                &As::Nobody,
                "/anthropic/v1/messages/count_tokens",
                json!({"model": "m", "messages": []}),
            )
            .await;
        checks.eq(
            "count_tokens without a key: 401 in the Anthropic envelope",
            (
                reply.status,
                reply.body["type"].as_str(),
                reply.body["error"]["type"].as_str(),
            ),
            (
                StatusCode::UNAUTHORIZED,
                Some("error"),
                Some("authentication_error"),
            ),
        );
        for (method, path, kind) in [
            (Method::GET, "/openai/v1/files", "invalid_request_error"),
            (Method::GET, "/openai/v1/responses", "invalid_request_error"),
            (Method::POST, "/anthropic/v1/complete", "not_found_error"),
            (Method::GET, "/anthropic/v1/models/..", "not_found_error"),
        ] {
            let reply = app
                .request(&As::Nobody, method.clone(), path, None, &[])
                .await;
            checks.eq(
                format!("{method} {path} without a key: 404 unknown_url in the style's envelope"),
                (
                    reply.status,
                    reply.body["error"]["type"].as_str(),
                    reply.body["error"]["code"].as_str(),
                ),
                (StatusCode::NOT_FOUND, Some(kind), Some("unknown_url")),
            );
        }
        checks.that(holds_settled(&app, &org_id).await, "the cut stream settled");
        charges.extend([cut_charge, malformed_charge]);
        charges.sort_unstable();
        checks.eq(
            "after the unhappy paths: the cut stream and the malformed usage charged their holds",
            usage_amounts(&app, &org_id).await,
            charges,
        );
        let (now_posted, _) = posted_and_reserved(&app, &org_id).await;
        checks.eq(
            "posted after the unhappy paths",
            money(now_posted),
            money(posted),
        );

        // 5. Out of credits: the metered endpoints refuse with the SDKs' billing errors; the
        //    free ones still answer; a suspended org is refused them too.
        let (poor_id, poor_key) = org_with_key(&app, "Hooli", "0.000020").await;
        let refused = vec![
            responses("Write a haiku about running out of credits.", 100),
            responses("Stream a limerick about invoices.", 100).streamed(),
            Call::to(
                Endpoint::Embeddings,
                Sdk::Openai,
                EMBEDDING,
                &ARTICLES.concat().repeat(12),
                0,
            ),
            Call::to(
                Endpoint::CountTokens,
                Sdk::Anthropic,
                "claude-sonnet-4-5",
                "Still free?",
                0,
            ),
            Call::to(Endpoint::Models, Sdk::Openai, "", "", 0),
        ];
        let out = customer
            .run(&Phase::new(&app, &poor_key, refused.clone()))
            .await;
        checks.eq("calls of the poor org answered", out.len(), refused.len());
        for (what, outcome) in ["responses", "streamed responses", "embeddings"]
            .iter()
            .zip(&out)
        {
            expect_refused(
                &mut checks,
                &format!("{what} without credits"),
                Sdk::Openai,
                outcome,
                "credit_balance_exhausted",
                "depleted",
                &poor_id,
            );
        }
        for outcome in &out[3..] {
            let what = format!("a free call of the depleted org #{}", outcome.index);
            expect_ok(&mut checks, &what, outcome);
            checks.eq(
                format!("{what}: creditgate-access-state"),
                outcome.access_state.as_deref(),
                Some("depleted"),
            );
        }
        let (poor_posted, poor_reserved) = posted_and_reserved(&app, &poor_id).await;
        checks.eq("refusals charge nothing", poor_posted, 20);
        checks.eq("refusals hold nothing", poor_reserved, 0);
        checks.eq(
            "no usage charge for the poor org",
            usage_amounts(&app, &poor_id).await,
            Vec::<i64>::new(),
        );
        let reply = patch_org(&app, &poor_id, json!({"suspended": true})).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        let suspended = vec![
            Call::to(Endpoint::Models, Sdk::Openai, "", "", 0),
            Call::to(
                Endpoint::CountTokens,
                Sdk::Anthropic,
                "claude-sonnet-4-5",
                "Hello?",
                0,
            ),
        ];
        let out = customer.run(&Phase::new(&app, &poor_key, suspended)).await;
        for (outcome, sdk) in out.iter().zip([Sdk::Openai, Sdk::Anthropic]) {
            expect_refused(
                &mut checks,
                "a free call of a suspended org",
                sdk,
                outcome,
                "org_suspended",
                "suspended",
                &poor_id,
            );
        }

        app.assert_invariants().await;
        app.stop().await;
    }
    checks.finish();
}
