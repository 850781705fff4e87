//! Tests of the endpoints' request facts, worst cases, usage and the Responses stream meter.

use super::*;
use crate::http::proxy::formats::StreamUsage;
use creditgate_domain::pricing::TOKENS_MAX;
use serde_json::json;

fn usage(input: u64, output: u64, cache_write: u64, cache_read: u64) -> Usage {
    Usage {
        input_tokens: input,
        output_tokens: output,
        cache_write_tokens: cache_write,
        cache_read_tokens: cache_read,
        ..Usage::default()
    }
}

fn facts(endpoint: Endpoint, body: Value) -> Result<RequestFacts, RequestError> {
    request_facts(endpoint, &body)
}

fn input_max(endpoint: Endpoint, body: Value) -> u64 {
    facts(endpoint, body).unwrap().input_tokens_max
}

fn field_of(result: Result<RequestFacts, RequestError>) -> Option<&'static str> {
    match result {
        Err(RequestError::BadField { field, .. }) => Some(field),
        Err(RequestError::MissingModel) => Some("model"),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------- endpoints

#[test]
fn endpoints_name_their_style_and_path() {
    let table: Vec<(Endpoint, Style, &str)> = Endpoint::ALL
        .iter()
        .map(|e| (*e, e.style(), e.path()))
        .collect();
    assert_eq!(
        table,
        vec![
            (Endpoint::Messages, Style::Anthropic, "/v1/messages"),
            (
                Endpoint::ChatCompletions,
                Style::OpenAi,
                "/v1/chat/completions"
            ),
            (Endpoint::Responses, Style::OpenAi, "/v1/responses"),
            (Endpoint::Embeddings, Style::OpenAi, "/v1/embeddings"),
        ]
    );
    // Messages and Chat Completions are read exactly as formats.rs reads them.
    let chat = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
        "stream": true, "max_tokens": 7});
    assert_eq!(
        facts(Endpoint::ChatCompletions, chat.clone()),
        formats::request_facts(Style::OpenAi, &chat)
    );
    let f = facts(Endpoint::ChatCompletions, chat.clone()).unwrap();
    assert_eq!(
        upstream_body(Endpoint::ChatCompletions, &chat, &f),
        formats::upstream_body(Style::OpenAi, &chat, &f)
    );
    assert!(upstream_body(Endpoint::ChatCompletions, &chat, &f).is_some());
    let messages = json!({"model": "m", "max_tokens": 5, "messages": []});
    assert_eq!(
        facts(Endpoint::Messages, messages.clone()),
        formats::request_facts(Style::Anthropic, &messages)
    );
}

// ---------------------------------------------------------------------------------- responses

#[test]
fn responses_request_facts() {
    let f = facts(
        Endpoint::Responses,
        json!({"model": "gpt-5", "input": "Tell me a three sentence bedtime story about a unicorn."}),
    )
    .unwrap();
    assert_eq!(f.model, "gpt-5");
    assert_eq!(f.max_output_tokens, None);
    assert_eq!(f.output_tokens_max(128_000), 128_000);
    assert_eq!(f.choices, 1);
    assert!(!f.stream);
    assert!(f.client_wants_usage);

    let f = facts(
        Endpoint::Responses,
        json!({"model": "gpt-5", "input": [], "max_output_tokens": 300, "stream": true,
               "background": false, "n": "not a responses field"}),
    )
    .unwrap();
    assert_eq!(f.max_output_tokens, Some(300));
    assert_eq!(f.output_tokens_max(128_000), 300);
    assert!(f.stream && f.client_wants_usage);
    // No input at all (a stored prompt, or a previous response) is the upstream's to judge.
    assert!(facts(
        Endpoint::Responses,
        json!({"model": "m", "previous_response_id": "resp_1"})
    )
    .is_ok());
    // The stream is never changed: its terminal event always carries the usage.
    let body = json!({"model": "m", "input": "hi", "stream": true});
    let f = facts(Endpoint::Responses, body.clone()).unwrap();
    assert_eq!(upstream_body(Endpoint::Responses, &body, &f), None);
}

#[test]
fn responses_request_errors_name_the_field() {
    let cases: Vec<(Value, &str)> = vec![
        (json!({"input": "hi"}), "model"),
        (json!({"model": "", "input": "hi"}), "model"),
        (json!({"model": 5, "input": "hi"}), "model"),
        (json!({"model": "m", "input": 5}), "input"),
        (json!({"model": "m", "input": {"role": "user"}}), "input"),
        (
            json!({"model": "m", "input": "hi", "stream": "yes"}),
            "stream",
        ),
        (
            json!({"model": "m", "input": "hi", "max_output_tokens": 0}),
            "max_output_tokens",
        ),
        (
            json!({"model": "m", "input": "hi", "max_output_tokens": -1}),
            "max_output_tokens",
        ),
        (
            json!({"model": "m", "input": "hi", "max_output_tokens": TOKENS_MAX + 1}),
            "max_output_tokens",
        ),
        (
            json!({"model": "m", "input": "hi", "background": true}),
            "background",
        ),
        (
            json!({"model": "m", "input": "hi", "background": "no"}),
            "background",
        ),
    ];
    for (body, field) in cases {
        let got = facts(Endpoint::Responses, body.clone());
        assert_eq!(field_of(got.clone()), Some(field), "{body} gave {got:?}");
    }
    assert_eq!(
        facts(Endpoint::Responses, json!([])),
        Err(RequestError::NotObject)
    );
    let e = facts(
        Endpoint::Responses,
        json!({"model": "m", "background": true}),
    )
    .unwrap_err();
    assert!(e.to_string().contains("without background"), "{e}");
}

#[test]
fn responses_input_estimate_counts_what_the_model_reads() {
    let base = input_max(Endpoint::Responses, json!({"model": "m"}));
    assert_eq!(base, REQUEST_OVERHEAD_TOKENS);
    let text = "x".repeat(1000);
    // A string input: one message.
    assert_eq!(
        input_max(Endpoint::Responses, json!({"model": "m", "input": text})),
        base + MESSAGE_OVERHEAD_TOKENS + 1000
    );
    // Instructions: another message.
    assert_eq!(
        input_max(
            Endpoint::Responses,
            json!({"model": "m", "instructions": "y".repeat(50), "input": text})
        ),
        base + 2 * MESSAGE_OVERHEAD_TOKENS + 1050
    );
    // Items with a string content or text parts; an image is its allowance, not its base64.
    let image = format!("data:image/png;base64,{}", "A".repeat(1 << 20));
    let got = input_max(
        Endpoint::Responses,
        json!({"model": "m", "input": [
            {"role": "user", "content": text},
            {"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "abc"},
                {"type": "input_image", "image_url": image},
                {"type": "input_file", "file_id": "file_1"}]},
            {"type": "message", "role": "assistant", "content": [
                {"type": "output_text", "text": "defg", "annotations": []}]},
        ]}),
    );
    assert_eq!(
        got,
        base + 3 * MESSAGE_OVERHEAD_TOKENS
            + 1000
            + 4 * CONTENT_BLOCK_OVERHEAD_TOKENS
            + 3
            + IMAGE_TOKENS_MAX
            + DOCUMENT_TOKENS_MAX
            + 4
    );
    // Tool calls and their outputs, reasoning items: at least their text.
    let call = json!({"type": "function_call", "call_id": "call_1", "name": "get_weather",
        "arguments": "{\"city\":\"Paris\"}"});
    let got = input_max(
        Endpoint::Responses,
        json!({"model": "m", "input": [
            call,
            {"type": "function_call_output", "call_id": "call_1", "output": "z".repeat(300)},
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "w".repeat(200)}]},
        ]}),
    );
    assert!(
        got >= base + 3 * MESSAGE_OVERHEAD_TOKENS + 300 + 200 + 16 + 11,
        "{got}"
    );
    // Tools: the tool prompt once, each definition, built-in tools their allowance.
    let function =
        json!({"type": "function", "name": "get_weather", "parameters": {"type": "object"}});
    let got = input_max(
        Endpoint::Responses,
        json!({"model": "m", "tools": [function, {"type": "web_search"}]}),
    );
    assert_eq!(
        got,
        base + TOOLS_PROMPT_TOKENS_MAX
            + 2 * TOOL_OVERHEAD_TOKENS
            + formats::json_len(&function)
            + formats::json_len(&json!({"type": "web_search"}))
            + BUILTIN_TOOL_TOKENS_MAX
    );
    // An output schema.
    let text_format =
        json!({"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}}});
    assert_eq!(
        input_max(
            Endpoint::Responses,
            json!({"model": "m", "text": text_format})
        ),
        base + formats::json_len(&text_format)
    );
}

#[test]
fn responses_stored_input_gets_its_allowance_once() {
    let base = REQUEST_OVERHEAD_TOKENS;
    for extra in [
        json!({"previous_response_id": "resp_1"}),
        json!({"conversation": "conv_1"}),
        json!({"input": [{"type": "item_reference", "id": "msg_1"}]}),
    ] {
        let mut body = json!({"model": "m"});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let got = input_max(Endpoint::Responses, body.clone());
        assert!(got >= base + STORED_INPUT_TOKENS_MAX, "{body}: {got}");
        assert!(got < base + 2 * STORED_INPUT_TOKENS_MAX, "{body}: {got}");
    }
    let prompt = json!({"id": "pmpt_1", "variables": {"city": "Paris"}});
    assert_eq!(
        input_max(Endpoint::Responses, json!({"model": "m", "prompt": prompt})),
        base + formats::json_len(&prompt) + STORED_INPUT_TOKENS_MAX
    );
    let all = input_max(
        Endpoint::Responses,
        json!({"model": "m", "previous_response_id": "r", "conversation": null,
               "input": [{"type": "item_reference", "id": "a"}, {"type": "item_reference", "id": "b"}]}),
    );
    assert_eq!(
        all,
        base + 2 * MESSAGE_OVERHEAD_TOKENS + STORED_INPUT_TOKENS_MAX
    );
    // null is absent.
    assert_eq!(
        input_max(
            Endpoint::Responses,
            json!({"model": "m", "previous_response_id": null})
        ),
        base
    );
}

/// The input bound is never below what the demo upstream reports (⌈bytes / 4⌉ of the texts) and
/// never below the bytes of the texts (a byte-level BPE bound).
#[test]
fn responses_input_estimate_bounds_the_texts_bytes() {
    let texts = [
        "Hello!",
        "你好，世界。今天天气怎么样？",
        "The quick brown fox jumps over the lazy dog. ",
        "",
    ];
    for text in texts {
        let bytes = text.len() as u64;
        for (body, texts) in [
            (
                json!({"model": "m", "input": text, "instructions": text}),
                2,
            ),
            (
                json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_text", "text": text}]}]}),
                1,
            ),
        ] {
            assert!(
                input_max(Endpoint::Responses, body.clone()) >= texts * bytes,
                "{body}"
            );
        }
    }
}

// --------------------------------------------------------------------------------- embeddings

#[test]
fn embeddings_request_facts_and_estimate() {
    let o = CONTENT_BLOCK_OVERHEAD_TOKENS;
    let cases: Vec<(Value, u64)> = vec![
        (json!("The food was delicious and the waiter..."), 40 + o),
        (json!(["abc", "de", ""]), 5 + 3 * o),
        (json!([101, 2023, 2003, 102]), 4 + o),
        (json!([[1, 2, 3], [4]]), 4 + 2 * o),
        (json!(["你好"]), 6 + o),
        (json!([]), 0),
    ];
    for (input, want) in cases {
        let f = facts(
            Endpoint::Embeddings,
            json!({"model": "text-embedding-3-small", "input": input, "encoding_format": "base64"}),
        )
        .unwrap();
        assert_eq!(f.input_tokens_max, want, "{input}");
        assert_eq!(f.model, "text-embedding-3-small");
        assert_eq!(f.output_tokens_max(4096), 0, "embeddings have no output");
        assert!(!f.stream);
    }
    // Never streamed, whatever the body says.
    assert!(
        !facts(
            Endpoint::Embeddings,
            json!({"model": "m", "input": "x", "stream": true})
        )
        .unwrap()
        .stream
    );
}

#[test]
fn embeddings_request_errors_name_the_field() {
    let cases: Vec<(Value, &str)> = vec![
        (json!({"input": "x"}), "model"),
        (json!({"model": "m"}), "input"),
        (json!({"model": "m", "input": null}), "input"),
        (json!({"model": "m", "input": 5}), "input"),
        (json!({"model": "m", "input": {"text": "x"}}), "input"),
        (json!({"model": "m", "input": [1, -2]}), "input"),
        (json!({"model": "m", "input": [1.5]}), "input"),
        (json!({"model": "m", "input": ["a", {"b": 1}]}), "input"),
        (json!({"model": "m", "input": [["a"]]}), "input"),
        (json!({"model": "m", "input": [[1, "2"]]}), "input"),
        (json!({"model": "m", "input": [null]}), "input"),
    ];
    for (body, field) in cases {
        let got = facts(Endpoint::Embeddings, body.clone());
        assert_eq!(field_of(got.clone()), Some(field), "{body} gave {got:?}");
    }
}

// -------------------------------------------------------------------------------- worst cases

fn prices(input: i64, output: i64, cache_write: i64, cache_read: i64, fee: i64) -> TokenPrices {
    TokenPrices {
        input: Amount::from_micros(input),
        output: Amount::from_micros(output),
        cache_write: Amount::from_micros(cache_write),
        cache_read: Amount::from_micros(cache_read),
        request_fee: Amount::from_micros(fee),
        ..TokenPrices::default()
    }
}

#[test]
fn worst_cases() {
    // 2.50 / 10.00 per million, cache read 1.25.
    let p = prices(2_500_000, 10_000_000, 0, 1_250_000, 0);
    let f = facts(
        Endpoint::Responses,
        json!({"model": "m", "input": "x".repeat(960), "max_output_tokens": 500}),
    )
    .unwrap();
    assert_eq!(f.input_tokens_max, 1000);
    // 1000 × 2.50 + 500 × 10.00 = 7,500 micro-units.
    assert_eq!(
        worst_case(Endpoint::Responses, &p, &f, 128_000).unwrap(),
        Amount::from_micros(7_500)
    );
    let f = facts(
        Endpoint::Responses,
        json!({"model": "m", "input": "x".repeat(960)}),
    )
    .unwrap();
    assert_eq!(
        worst_case(Endpoint::Responses, &p, &f, 4_000).unwrap(),
        Amount::from_micros(2_500 + 40_000)
    );
    // Embeddings: the input bound at the input price (a dearer cache-write price does not
    // apply: embeddings are never cached), plus the fee; rounded up once.
    let p = prices(20_000, 0, 1_000_000, 0, 7);
    let f = facts(
        Endpoint::Embeddings,
        json!({"model": "m", "input": "x".repeat(96)}),
    )
    .unwrap();
    assert_eq!(f.input_tokens_max, 100);
    assert_eq!(
        worst_case(Endpoint::Embeddings, &p, &f, 4_000).unwrap(),
        Amount::from_micros(2 + 7)
    );
    assert_eq!(Endpoint::Embeddings.cost_field(), "input");
    assert_eq!(Endpoint::Responses.cost_field(), "max_output_tokens");
}

// ------------------------------------------------------------------------------------- usage

fn responses_body(usage: Value) -> Vec<u8> {
    serde_json::to_vec(
        &json!({"id": "resp_1", "object": "response", "status": "completed",
        "output": [], "usage": usage}),
    )
    .unwrap()
}

fn malformed(result: &Result<Usage, UsageError>) -> bool {
    matches!(result, Err(UsageError::Malformed(_)))
}

#[test]
fn responses_usage_table() {
    let ok: Vec<(Value, Usage)> = vec![
        // OpenAI's documented example.
        (
            json!({"input_tokens": 36, "input_tokens_details": {"cached_tokens": 0},
                   "output_tokens": 87, "output_tokens_details": {"reasoning_tokens": 0},
                   "total_tokens": 123}),
            usage(36, 87, 0, 0),
        ),
        // Cached input is part of input_tokens; reasoning part of output_tokens.
        (
            json!({"input_tokens": 2006, "input_tokens_details": {"cached_tokens": 1920},
                   "output_tokens": 300, "output_tokens_details": {"reasoning_tokens": 256},
                   "total_tokens": 2306}),
            usage(86, 300, 0, 1920),
        ),
        // Cache writes, where reported, are input too.
        (
            json!({"input_tokens": 1000, "input_tokens_details": {"cached_tokens": 100,
                   "cache_write_tokens": 800}, "output_tokens": 1}),
            usage(100, 1, 800, 100),
        ),
        // Details absent or null: none.
        (
            json!({"input_tokens": 5, "output_tokens": 6}),
            usage(5, 6, 0, 0),
        ),
        (
            json!({"input_tokens": 5, "output_tokens": 6, "input_tokens_details": null,
                   "output_tokens_details": {"reasoning_tokens": null}}),
            usage(5, 6, 0, 0),
        ),
        // All output may be reasoning.
        (
            json!({"input_tokens": 5, "output_tokens": 6, "output_tokens_details": {"reasoning_tokens": 6}}),
            usage(5, 6, 0, 0),
        ),
    ];
    for (u, want) in ok {
        assert_eq!(
            usage_from_body(Endpoint::Responses, &responses_body(u.clone())),
            Ok(want),
            "{u}"
        );
    }
    let bad = vec![
        json!({"output_tokens": 6}),
        json!({"input_tokens": 5}),
        json!({"input_tokens": "5", "output_tokens": 6}),
        json!({"input_tokens": 5, "output_tokens": -6}),
        json!({"input_tokens": 5.5, "output_tokens": 6}),
        json!({"input_tokens": TOKENS_MAX + 1, "output_tokens": 6}),
        json!({"input_tokens": 5, "output_tokens": 6, "input_tokens_details": {"cached_tokens": 6}}),
        json!({"input_tokens": 5, "output_tokens": 6, "input_tokens_details": {"cached_tokens": 3, "cache_write_tokens": 3}}),
        json!({"input_tokens": 5, "output_tokens": 6, "input_tokens_details": {"cached_tokens": "1"}}),
        json!({"input_tokens": 5, "output_tokens": 6, "input_tokens_details": 0}),
        json!({"input_tokens": 5, "output_tokens": 6, "output_tokens_details": {"reasoning_tokens": 7}}),
        json!({"input_tokens": 5, "output_tokens": 6, "output_tokens_details": []}),
        json!("usage"),
    ];
    for u in bad {
        let got = usage_from_body(Endpoint::Responses, &responses_body(u.clone()));
        assert!(malformed(&got), "{u} gave {got:?}");
    }
    let e = usage_from_body(
        Endpoint::Responses,
        &responses_body(json!({"input_tokens": 5, "output_tokens": 6,
            "input_tokens_details": {"cached_tokens": "x"}})),
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("usage.input_tokens_details.cached_tokens"),
        "{e}"
    );
    // No usage (a queued or failed response, an error body): missing.
    for body in [
        json!({"id": "resp_1", "status": "queued", "usage": null}),
        json!({"error": {"message": "x"}}),
    ] {
        assert_eq!(
            usage_from_body(Endpoint::Responses, &serde_json::to_vec(&body).unwrap()),
            Err(UsageError::Missing)
        );
    }
    assert!(malformed(&usage_from_body(
        Endpoint::Responses,
        b"not json"
    )));
    assert!(malformed(&usage_from_body(Endpoint::Responses, b"[1]")));
}

#[test]
fn embeddings_usage_table() {
    let body = |u: Value| {
        serde_json::to_vec(&json!({"object": "list", "data": [], "model": "m", "usage": u}))
            .unwrap()
    };
    assert_eq!(
        usage_from_body(
            Endpoint::Embeddings,
            &body(json!({"prompt_tokens": 8, "total_tokens": 8}))
        ),
        Ok(usage(8, 0, 0, 0))
    );
    for bad in [
        json!({"total_tokens": 8}),
        json!({"prompt_tokens": -1}),
        json!({"prompt_tokens": "8"}),
        json!(8),
    ] {
        assert!(
            malformed(&usage_from_body(Endpoint::Embeddings, &body(bad.clone()))),
            "{bad}"
        );
    }
    assert_eq!(
        usage_from_body(Endpoint::Embeddings, br#"{"object": "list", "data": []}"#),
        Err(UsageError::Missing)
    );
}

// ---------------------------------------------------------------------------- Responses stream

fn event(name: &str, data: &Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

/// A Responses stream as OpenAI sends it, ending with `terminal` carrying `usage`.
fn responses_stream(terminal: &str, usage: &Value) -> String {
    let response = |status: &str, usage: &Value| {
        json!({"id": "resp_1", "object": "response", "status": status, "model": "gpt-5",
               "output": [], "usage": usage})
    };
    let mut s = String::new();
    s += &event(
        "response.created",
        &json!({"type": "response.created", "sequence_number": 0, "response": response("in_progress", &Value::Null)}),
    );
    s += &event(
        "response.in_progress",
        &json!({"type": "response.in_progress", "sequence_number": 1, "response": response("in_progress", &Value::Null)}),
    );
    for (i, word) in ["Hello", " there"].iter().enumerate() {
        s += &event(
            "response.output_text.delta",
            &json!({"type": "response.output_text.delta", "sequence_number": 2 + i,
                    "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": word}),
        );
    }
    s += &event(
        terminal,
        &json!({"type": terminal, "sequence_number": 9, "response": response("completed", usage)}),
    );
    s
}

fn run_meter(input: &[u8], cuts: &[usize]) -> (Vec<u8>, StreamUsage) {
    let mut meter = stream_meter(Endpoint::Responses, false);
    let mut out = Vec::new();
    let mut start = 0;
    for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
        let cut = cut.clamp(start, input.len());
        out.extend(meter.feed(&input[start..cut]));
        start = cut;
    }
    let (rest, seen) = meter.finish();
    out.extend(rest);
    (out, seen)
}

#[test]
fn responses_stream_is_metered_from_its_terminal_event_and_passed_unchanged() {
    let u = json!({"input_tokens": 2006, "input_tokens_details": {"cached_tokens": 1920},
        "output_tokens": 300, "output_tokens_details": {"reasoning_tokens": 256}, "total_tokens": 2306});
    for terminal in [
        "response.completed",
        "response.incomplete",
        "response.failed",
    ] {
        let input = responses_stream(terminal, &u);
        let whole = run_meter(input.as_bytes(), &[]);
        assert_eq!(whole.0, input.as_bytes(), "passed unchanged");
        assert_eq!(
            whole.1,
            StreamUsage {
                usage: Some(usage(86, 300, 0, 1920)),
                complete: true,
                malformed: false
            },
            "{terminal}"
        );
        // However the bytes are split.
        for cut in 0..input.len() {
            assert_eq!(run_meter(input.as_bytes(), &[cut]), whole, "cut at {cut}");
        }
        assert_eq!(
            run_meter(input.as_bytes(), &(0..input.len()).collect::<Vec<_>>()),
            whole
        );
    }
    // CRLF line ends too.
    let crlf = responses_stream("response.completed", &u).replace('\n', "\r\n");
    assert!(run_meter(crlf.as_bytes(), &[]).1.complete);
}

#[test]
fn responses_stream_without_usage_is_incomplete() {
    let u = json!({"input_tokens": 5, "output_tokens": 6});
    let full = responses_stream("response.completed", &u);
    // Cut before the terminal event.
    let cut = full.find("event: response.completed").unwrap();
    let (out, seen) = run_meter(&full.as_bytes()[..cut], &[]);
    assert_eq!(out, &full.as_bytes()[..cut]);
    assert_eq!(seen.usage, None);
    assert!(!seen.complete);
    // Cut inside the terminal event's data line: not parsed.
    let (_, seen) = run_meter(&full.as_bytes()[..full.len() - 10], &[]);
    assert!(!seen.complete);
    // A terminal event without usage (a failed response), or with a malformed one.
    let (_, seen) = run_meter(
        responses_stream("response.failed", &Value::Null).as_bytes(),
        &[],
    );
    assert_eq!(
        (seen.usage, seen.complete, seen.malformed),
        (None, false, false)
    );
    let (_, seen) = run_meter(
        responses_stream(
            "response.completed",
            &json!({"input_tokens": "5", "output_tokens": 6}),
        )
        .as_bytes(),
        &[],
    );
    assert_eq!(
        (seen.usage, seen.complete, seen.malformed),
        (None, false, true)
    );
    // An error event, then the end: incomplete.
    let error = event(
        "error",
        &json!({"type": "error", "code": "server_error", "message": "boom", "sequence_number": 3}),
    );
    let (_, seen) = run_meter(error.as_bytes(), &[]);
    assert!(!seen.complete && !seen.malformed);
}

#[test]
fn responses_stream_malformed_events_are_passed_and_flagged() {
    let u = json!({"input_tokens": 5, "output_tokens": 6});
    let junk = "data: {not json\n\ndata: [1,2]\n\ndata: {\"no\":\"type\"}\n\n";
    let input = format!("{junk}{}", responses_stream("response.completed", &u));
    let (out, seen) = run_meter(input.as_bytes(), &[]);
    assert_eq!(out, input.as_bytes());
    // A complete usage report counts even if some other event was unreadable.
    assert_eq!(seen.usage, Some(usage(5, 6, 0, 0)));
    assert!(seen.complete && seen.malformed);
    // A second terminal event does not replace the first.
    let twice = format!(
        "{}{}",
        responses_stream("response.completed", &u),
        responses_stream(
            "response.completed",
            &json!({"input_tokens": 500, "output_tokens": 600})
        )
    );
    assert_eq!(
        run_meter(twice.as_bytes(), &[]).1.usage,
        Some(usage(5, 6, 0, 0))
    );
}

#[test]
fn responses_event_reader() {
    assert_eq!(
        responses_event(br#"{"type":"response.output_text.delta","delta":"x"}"#),
        ResponsesEvent::Other
    );
    assert_eq!(responses_event(b"[DONE]"), ResponsesEvent::Malformed);
    assert_eq!(responses_event(br#"{"type":5}"#), ResponsesEvent::Malformed);
    assert_eq!(
        responses_event(br#"{"type":"response.completed","response":{}}"#),
        ResponsesEvent::Terminal(Err(UsageError::Missing))
    );
    assert!(matches!(
        responses_event(br#"{"type":"response.completed","response":{"usage":3}}"#),
        ResponsesEvent::Terminal(Err(UsageError::Malformed(_)))
    ));
    assert_eq!(
        responses_event(
            br#"{"type":"response.incomplete","response":{"usage":{"input_tokens":1,"output_tokens":2}}}"#
        ),
        ResponsesEvent::Terminal(Ok(usage(1, 2, 0, 0)))
    );
}

// ------------------------------------------------------------------------------------- paths

#[test]
fn paths() {
    assert_eq!(style_of_path("/anthropic/v1/foo"), Some(Style::Anthropic));
    assert_eq!(style_of_path("/anthropic"), Some(Style::Anthropic));
    assert_eq!(style_of_path("/openai/"), Some(Style::OpenAi));
    assert_eq!(style_of_path("/openai/v1/batches"), Some(Style::OpenAi));
    assert_eq!(style_of_path("/openaix/v1"), None);
    assert_eq!(style_of_path("/v1/orgs"), None);
    assert_eq!(style_of_path("/"), None);

    assert_eq!(
        model_path("claude-sonnet-4-5-20250929").as_deref(),
        Some("/v1/models/claude-sonnet-4-5-20250929")
    );
    assert_eq!(
        model_path("ft:gpt-4o-mini-2024-07-18:acme::9abc").as_deref(),
        Some("/v1/models/ft:gpt-4o-mini-2024-07-18:acme::9abc")
    );
    assert_eq!(
        model_path("meta-llama/Llama 3?x#y%").as_deref(),
        Some("/v1/models/meta-llama%2FLlama%203%3Fx%23y%25")
    );
    assert_eq!(model_path("é").as_deref(), Some("/v1/models/%C3%A9"));
    for bad in ["", ".", ".."] {
        assert_eq!(model_path(bad), None);
    }
    assert_eq!(model_path("...").as_deref(), Some("/v1/models/..."));

    let m = unknown_url_message(Style::OpenAi, "GET", "/openai/v1/batches");
    assert!(
        m.starts_with("Unknown request URL: GET /openai/v1/batches."),
        "{m}"
    );
    assert!(m.contains("POST /openai/v1/responses"), "{m}");
    let m = unknown_url_message(Style::Anthropic, "POST", "/anthropic/v1/complete");
    assert!(
        m.contains("POST /anthropic/v1/messages/count_tokens"),
        "{m}"
    );
}
