//! Prices that match the bills, through the official `anthropic` SDK (PyPI `anthropic==2.10.0`)
//! against the metering proxy and the built-in demo upstream, on every backend. The model is
//! priced as Claude Sonnet 4.5 is billed (per million tokens: input 3, output 15, 5-minute cache
//! writes 3.75, 1-hour cache writes 6, cache reads 0.30; web search 0.01 a search) with a web
//! fetch fee and a long-input threshold low enough for a realistic prompt to cross it:
//!
//! - a support assistant's prompt with a long manual cached for an hour and a style guide
//!   cached for five minutes, plain and streamed: the SDK reads the split in
//!   `usage.cache_creation`, and the charge is exactly that usage at the two write prices;
//! - calls with a web search tool (`max_uses` 1) and a web fetch tool without `max_uses`: the
//!   SDK reads `usage.server_tool_use`, and each search and fetch is charged its fee;
//! - a prompt above the long-input threshold: every token at the long-input rates; one just
//!   below it: the base rates;
//! - the hold covers the tools: a request allowing 1,000 searches is refused
//!   (`request_exceeds_balance`, raised as the SDK's billing error) by an org that could pay
//!   for the tokens, and the same request with `max_uses` 5 is answered;
//! - the price list shows what was set.
//!
//! Each charge is computed here from the usage the SDK returned (and checked against the demo
//! upstream's documented formula), to the micro-unit. The ledger invariants hold at the end.

// sdk_support and smtp_support each bring their own copy of python_tools.
#![allow(clippy::duplicate_mod)]

mod api_support;
mod sdk_support;
mod smtp_support;

use api_support::{databases, spawn_app, As};
use reqwest::{Method, StatusCode};
use sdk_support::{
    balance, expect_refused, holds_settled, micros, org_with_key, usage_amounts, Call, Checks,
    Customer, Outcome, Phase, Sdk,
};
use serde_json::{json, Value};

const MODEL: &str = "claude-sonnet-4-5";
/// Above this many input tokens (cache included), the long-input rates.
const LONG_ABOVE: u64 = 2_000;

/// (input, output, 5-minute writes, 1-hour writes, reads) per million tokens.
const BASE: [&str; 5] = ["3", "15", "3.75", "6", "0.30"];
const LONG: [&str; 5] = ["6", "22.50", "7.50", "12", "0.60"];
const SEARCH_FEE: &str = "0.01";
const FETCH_FEE: &str = "0.002";
/// The searches or fetches the demo upstream runs per tool at most.
const DEMO_TOOL_RUNS: u64 = 2;

/// What the SDK showed of one call's usage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Seen {
    input: u64,
    output: u64,
    five: u64,
    hour: u64,
    searches: u64,
    fetches: u64,
}

impl Seen {
    fn of(outcome: &Outcome) -> Seen {
        Seen {
            input: outcome.input_tokens.unwrap_or(0),
            output: outcome.output_tokens.unwrap_or(0),
            five: outcome.cache_write_5m_tokens.unwrap_or(0),
            hour: outcome.cache_write_1h_tokens.unwrap_or(0),
            searches: outcome.web_search_requests.unwrap_or(0),
            fetches: outcome.web_fetch_requests.unwrap_or(0),
        }
    }

    /// The charge at the published prices: one line item, rounded up once.
    fn charge(&self) -> i64 {
        let total_input = self.input + self.five + self.hour;
        let rates = if total_input > LONG_ABOVE { LONG } else { BASE };
        let scaled: i128 = [self.input, self.output, self.five, self.hour]
            .iter()
            .zip([rates[0], rates[1], rates[2], rates[3]])
            .map(|(tokens, price)| i128::from(*tokens) * i128::from(micros(price)))
            .sum();
        let tokens = i64::try_from((scaled + 999_999) / 1_000_000).expect("in range");
        tokens
            + i64::try_from(self.searches).unwrap() * micros(SEARCH_FEE)
            + i64::try_from(self.fetches).unwrap() * micros(FETCH_FEE)
    }
}

/// The demo upstream's `max(1, ⌈bytes / 4⌉)`.
fn tokens(bytes: usize) -> u64 {
    (bytes.div_ceil(4) as u64).max(1)
}

/// A text block, cached for `ttl` ("5m", "1h") or not at all.
fn block(text: &str, ttl: Option<&str>) -> Value {
    match ttl {
        Some(ttl) => json!({"type": "text", "text": text,
            "cache_control": {"type": "ephemeral", "ttl": ttl}}),
        None => json!({"type": "text", "text": text}),
    }
}

/// What the demo upstream reports for a call with these `system` blocks, `question` and
/// `max_tokens` (its documented formula), without tools.
fn demo_usage(system: &[(String, Option<&str>)], question: &str, max_tokens: u64) -> Seen {
    let bytes: usize = system.iter().map(|(t, _)| t.len()).sum::<usize>() + question.len();
    let written = |lifetime: &str| -> u64 {
        system
            .iter()
            .filter(|(_, ttl)| *ttl == Some(lifetime))
            .map(|(t, _)| tokens(t.len()))
            .sum()
    };
    let (five, hour) = (written("5m"), written("1h"));
    Seen {
        input: tokens(bytes).saturating_sub(five + hour).max(1),
        output: max_tokens.min(32),
        five,
        hour,
        searches: 0,
        fetches: 0,
    }
}

fn call(system: &[(String, Option<&str>)], question: &str, max_tokens: u64) -> Call {
    let blocks: Vec<Value> = system.iter().map(|(t, ttl)| block(t, *ttl)).collect();
    Call::anthropic(MODEL, question, max_tokens).extra(json!({ "system": blocks }))
}

fn manual() -> String {
    // A product manual's refund section, about 3 KB: cached for an hour.
    "Refunds: a purchase can be refunded within 14 days from the Billing page; auto-reload \
     charges can be undone within 24 hours of their receipt. Credits already spent are not \
     refunded. Disputed charges suspend the organization until resolved. "
        .repeat(14)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_lifetimes_server_tools_and_long_inputs_are_charged_as_billed() {
    let Some(mut customer) = Customer::start().await else {
        return;
    };
    let mut checks = Checks::new();
    for database in databases().await {
        let app = spawn_app(database).await;
        checks.scope(app.backend);
        let price = json!({
            "input": BASE[0], "output": BASE[1], "cache_write": BASE[2],
            "cache_write_1h": BASE[3], "cache_read": BASE[4],
            "web_search_request": SEARCH_FEE, "web_fetch_request": FETCH_FEE,
            "long_input": {"above_input_tokens": LONG_ABOVE, "input": LONG[0],
                "output": LONG[1], "cache_write": LONG[2], "cache_write_1h": LONG[3],
                "cache_read": LONG[4]},
        });
        let reply = app
            .request(
                &As::Operator,
                Method::PUT,
                &format!("/v1/prices/{MODEL}"),
                Some(price),
                &[],
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        checks.eq(
            "the price shows the 1-hour write rate",
            reply.body["cache_write_1h"].as_str(),
            Some("6.00"),
        );
        checks.eq(
            "the price shows the long-input threshold",
            reply.body["long_input"]["above_input_tokens"].as_u64(),
            Some(LONG_ABOVE),
        );
        let listed = app
            .get(&As::Operator, &format!("/v1/prices?model={MODEL}"))
            .await;
        checks.eq(
            "the price list shows the search fee",
            listed.body["data"][0]["web_search_request"].as_str(),
            Some("0.01"),
        );

        let (org_id, key) = org_with_key(&app, "Globex Support", "7.43").await;
        let manual = manual();
        let style = "Answer in two sentences; quote the section you used.".to_owned();
        let cached: Vec<(String, Option<&str>)> =
            vec![(manual.clone(), Some("1h")), (style.clone(), Some("5m"))];
        let question = "A customer was charged by auto-reload 30 hours ago. Can they undo it?";
        // Long: the manual three times over crosses the threshold; the short one does not.
        let long_system: Vec<(String, Option<&str>)> =
            vec![(manual.repeat(3), Some("5m")), (style.clone(), None)];
        let near_system: Vec<(String, Option<&str>)> = vec![(manual.repeat(2), None)];
        let mut calls = vec![
            call(&cached, question, 300),
            call(&cached, "And a purchase made 9 days ago?", 17).streamed(),
            call(&long_system, question, 250),
            call(&near_system, question, 64).streamed(),
        ];
        let mut expected: Vec<Seen> = vec![
            demo_usage(&cached, question, 300),
            demo_usage(&cached, "And a purchase made 9 days ago?", 17),
            demo_usage(&long_system, question, 250),
            demo_usage(&near_system, question, 64),
        ];
        // Server tools: one search allowed; fetches left to the proxy's bound.
        let tools = json!([
            {"type": "web_search_20250305", "name": "web_search", "max_uses": 1},
            {"type": "web_fetch_20250910", "name": "web_fetch"},
        ]);
        let asked = "What is the status page saying about today's API latency?";
        for stream in [false, true] {
            let mut c = Call::anthropic(MODEL, asked, 120).extra(json!({ "tools": tools }));
            if stream {
                c = c.streamed();
            }
            calls.push(c);
            expected.push(Seen {
                searches: 1,
                fetches: DEMO_TOOL_RUNS,
                ..demo_usage(&[], asked, 120)
            });
        }
        let out = customer.run(&Phase::new(&app, &key, calls.clone())).await;
        checks.eq("every call answered", out.len(), calls.len());
        let mut charges = Vec::new();
        for (i, (outcome, want)) in out.iter().zip(&expected).enumerate() {
            checks.that(
                outcome.ok,
                format!("call {i} answered: {}", outcome.brief()),
            );
            let seen = Seen::of(outcome);
            checks.eq(format!("call {i}: the usage the SDK read"), seen, *want);
            charges.push(seen.charge());
        }
        let [first, _, long, near, ..] = expected[..] else {
            unreachable!()
        };
        checks.that(
            first.hour > 0 && first.five > 0,
            "the first call wrote to both caches",
        );
        checks.that(
            long.input + long.five + long.hour > LONG_ABOVE,
            "the long prompt is above the threshold",
        );
        checks.that(
            near.input + near.five + near.hour <= LONG_ABOVE,
            "the near prompt is not",
        );
        checks.that(holds_settled(&app, &org_id).await, "every call settled");
        let mut want = charges.clone();
        want.sort_unstable();
        checks.eq(
            "the org's usage charges, to the micro-unit",
            usage_amounts(&app, &org_id).await,
            want,
        );
        let posted = micros(balance(&app, &org_id).await["posted"].as_str().unwrap());
        checks.eq(
            "posted = credits − charges",
            posted,
            micros("7.43") - charges.iter().sum::<i64>(),
        );

        // The hold covers what the tools may run: 1,000 searches (10.00) are more than 3.00,
        // though the tokens alone cost cents; with max_uses 5 the same call is answered.
        let (poor_id, poor_key) = org_with_key(&app, "Initrode", "3.00").await;
        let search = |uses: u64| {
            Call::anthropic(MODEL, asked, 120).extra(json!({"tools": [
                {"type": "web_search_20250305", "name": "web_search", "max_uses": uses}]}))
        };
        let out = customer
            .run(&Phase::new(&app, &poor_key, vec![search(1_000), search(5)]))
            .await;
        expect_refused(
            &mut checks,
            "a call allowing 1,000 searches",
            Sdk::Anthropic,
            &out[0],
            "request_exceeds_balance",
            "active",
            &poor_id,
        );
        checks.that(
            out[1].ok,
            format!("max_uses 5 answered: {}", out[1].brief()),
        );
        let seen = Seen::of(&out[1]);
        checks.eq("searches run", seen.searches, DEMO_TOOL_RUNS);
        checks.that(holds_settled(&app, &poor_id).await, "settled");
        checks.eq(
            "the answered call's charge",
            usage_amounts(&app, &poor_id).await,
            vec![seen.charge()],
        );

        app.assert_invariants().await;
        app.stop().await;
    }
    checks.finish();
}
