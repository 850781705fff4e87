//! Tests of the request facts, the usage readers and the stream meter.

use super::meter::*;
use super::request::*;
use super::usage::*;
use super::*;
use creditgate_domain::pricing::{Usage, TOKENS_MAX};
use proptest::prelude::*;
use serde_json::json;
use serde_json::Value;

fn usage(input: u64, output: u64, cache_write: u64, cache_read: u64) -> Usage {
    Usage {
        input_tokens: input,
        output_tokens: output,
        cache_write_tokens: cache_write,
        cache_read_tokens: cache_read,
        ..Usage::default()
    }
}

// ---------------------------------------------------------------- requests

fn facts(style: Style, body: Value) -> Result<RequestFacts, RequestError> {
    request_facts(style, &body)
}

#[test]
fn parse_request_rejects_non_json_and_non_objects() {
    assert_eq!(parse_request(b"{\"model\":"), Err(RequestError::NotJson));
    assert_eq!(parse_request(b""), Err(RequestError::NotJson));
    assert_eq!(parse_request(b"[1,2]"), Err(RequestError::NotObject));
    assert_eq!(parse_request(b"\"hi\""), Err(RequestError::NotObject));
    assert!(parse_request(br#"{"model":"m"}"#).unwrap().is_object());
    assert_eq!(
        request_facts(Style::OpenAi, &json!([1])),
        Err(RequestError::NotObject)
    );
}

#[test]
fn anthropic_request_facts() {
    let f = facts(
        Style::Anthropic,
        json!({"model": "claude-sonnet-4-5", "max_tokens": 1024,
               "messages": [{"role": "user", "content": "Hello, Claude"}]}),
    )
    .unwrap();
    assert_eq!(f.model, "claude-sonnet-4-5");
    assert_eq!(f.max_output_tokens, Some(1024));
    assert_eq!(f.choices, 1);
    assert!(!f.stream);
    assert!(f.client_wants_usage);
    assert!(f.input_tokens_max > 0);

    let f = facts(
        Style::Anthropic,
        json!({"model": "m", "max_tokens": 5, "stream": true, "messages": [],
               "stream_options": "ignored for anthropic", "n": "ignored"}),
    )
    .unwrap();
    assert!(f.stream && f.client_wants_usage);
    assert_eq!(f.output_tokens_max(99), 5);
}

#[test]
fn request_errors_name_the_field() {
    let m = json!([{"role": "user", "content": "hi"}]);
    let a = Style::Anthropic;
    let o = Style::OpenAi;
    // (style, body, the field at fault; "" for MissingModel)
    let cases: Vec<(Style, Value, &str)> = vec![
        (a, json!({"max_tokens": 1, "messages": m}), ""),
        (o, json!({"model": null, "messages": m}), ""),
        (o, json!({"model": "", "messages": m}), ""),
        (o, json!({"model": 4, "messages": m}), "model"),
        (a, json!({"model": "m", "messages": m}), "max_tokens"),
        (
            a,
            json!({"model": "m", "max_tokens": null, "messages": m}),
            "max_tokens",
        ),
        (
            a,
            json!({"model": "m", "max_tokens": 0, "messages": m}),
            "max_tokens",
        ),
        (
            a,
            json!({"model": "m", "max_tokens": -5, "messages": m}),
            "max_tokens",
        ),
        (
            a,
            json!({"model": "m", "max_tokens": 10.5, "messages": m}),
            "max_tokens",
        ),
        (
            a,
            json!({"model": "m", "max_tokens": "100", "messages": m}),
            "max_tokens",
        ),
        (
            a,
            json!({"model": "m", "max_tokens": TOKENS_MAX + 1, "messages": m}),
            "max_tokens",
        ),
        (a, json!({"model": "m", "max_tokens": 1}), "messages"),
        (o, json!({"model": "m", "messages": "hi"}), "messages"),
        (
            o,
            json!({"model": "m", "messages": m, "stream": "yes"}),
            "stream",
        ),
        (
            o,
            json!({"model": "m", "messages": m, "max_tokens": -1}),
            "max_tokens",
        ),
        (
            o,
            json!({"model": "m", "messages": m, "max_completion_tokens": "x"}),
            "max_completion_tokens",
        ),
        (
            o,
            json!({"model": "m", "messages": m, "max_completion_tokens": 5, "max_tokens": 0}),
            "max_tokens",
        ),
        (o, json!({"model": "m", "messages": m, "n": 0}), "n"),
        (
            o,
            json!({"model": "m", "messages": m, "n": CHOICES_MAX + 1}),
            "n",
        ),
        (
            o,
            json!({"model": "m", "messages": m, "stream_options": true}),
            "stream_options",
        ),
        (
            o,
            json!({"model": "m", "messages": m, "stream_options": {"include_usage": "true"}}),
            "stream_options.include_usage",
        ),
    ];
    for (style, body, field) in cases {
        let got = request_facts(style, &body);
        match field {
            "" => assert_eq!(got, Err(RequestError::MissingModel), "{body}"),
            field => assert!(
                matches!(&got, Err(RequestError::BadField { field: f, .. }) if *f == field),
                "{body} gave {got:?}"
            ),
        }
    }
    let e = facts(Style::Anthropic, json!({"model": "m", "messages": []})).unwrap_err();
    assert_eq!(e.param(), Some("max_tokens"));
    assert_eq!(e.to_string(), "max_tokens: Field required.");
    assert_eq!(RequestError::MissingModel.param(), Some("model"));
    assert_eq!(RequestError::NotJson.param(), None);
}

#[test]
fn openai_request_facts_table() {
    // (body extras, max_output_tokens, choices, stream, client_wants_usage)
    let cases: Vec<(Value, Option<u64>, u64, bool, bool)> = vec![
        (json!({}), None, 1, false, false),
        (json!({"max_tokens": 100}), Some(100), 1, false, false),
        (
            json!({"max_completion_tokens": 200}),
            Some(200),
            1,
            false,
            false,
        ),
        (
            json!({"max_completion_tokens": 200, "max_tokens": 100}),
            Some(200),
            1,
            false,
            false,
        ),
        (
            json!({"max_completion_tokens": null, "max_tokens": 100}),
            Some(100),
            1,
            false,
            false,
        ),
        (json!({"n": 3, "max_tokens": 10}), Some(10), 3, false, false),
        (json!({"n": null}), None, 1, false, false),
        (json!({"stream": true}), None, 1, true, false),
        (json!({"stream": false}), None, 1, false, false),
        (json!({"stream": null}), None, 1, false, false),
        (
            json!({"stream": true, "stream_options": null}),
            None,
            1,
            true,
            false,
        ),
        (
            json!({"stream": true, "stream_options": {}}),
            None,
            1,
            true,
            false,
        ),
        (
            json!({"stream": true, "stream_options": {"include_usage": false}}),
            None,
            1,
            true,
            false,
        ),
        (
            json!({"stream": true, "stream_options": {"include_usage": true}}),
            None,
            1,
            true,
            true,
        ),
    ];
    for (extra, max, choices, stream, wants) in cases {
        let mut body =
            json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let f = request_facts(Style::OpenAi, &body).unwrap();
        assert_eq!(
            (
                f.max_output_tokens,
                f.choices,
                f.stream,
                f.client_wants_usage
            ),
            (max, choices, stream, wants),
            "{body}"
        );
        assert_eq!(f.model, "gpt-4o-mini");
    }
}

#[test]
fn output_tokens_max_uses_the_cap_or_the_model_maximum_times_choices() {
    let f = facts(
        Style::OpenAi,
        json!({"model": "m", "messages": [], "n": 4, "max_tokens": 50}),
    )
    .unwrap();
    assert_eq!(f.output_tokens_max(16_384), 200);
    let f = facts(Style::OpenAi, json!({"model": "m", "messages": [], "n": 2})).unwrap();
    assert_eq!(f.output_tokens_max(16_384), 32_768);
    assert_eq!(f.output_tokens_max(u64::MAX), u64::MAX);
}

// ------------------------------------------------------- input estimates

fn input_max(style: Style, body: Value) -> u64 {
    request_facts(style, &body).unwrap().input_tokens_max
}

/// Prompts with their real input-token counts as the providers report them (from the
/// providers' documentation examples, or ~4 bytes a token for English and ~1 token a
/// character for CJK where no count is published).
#[test]
fn input_estimate_bounds_real_counts() {
    let long_english = "The quick brown fox jumps over the lazy dog. ".repeat(40);
    let cases: Vec<(&str, Style, Value, u64)> = vec![
        // Anthropic's token-counting guide: 14 tokens.
        (
            "anthropic system + hello",
            Style::Anthropic,
            json!({"model": "claude-sonnet-4-5", "max_tokens": 1024, "system": "You are a scientist",
                "messages": [{"role": "user", "content": "Hello, Claude"}]}),
            14,
        ),
        // OpenAI's chat completion example: 19 prompt tokens.
        (
            "openai system + hello",
            Style::OpenAi,
            json!({"model": "gpt-4.1", "messages": [
             {"role": "developer", "content": "You are a helpful assistant."},
             {"role": "user", "content": "Hello!"}]}),
            19,
        ),
        (
            "anthropic long english",
            Style::Anthropic,
            json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": long_english}]}),
            (long_english.len() / 4) as u64,
        ),
        (
            "openai cjk",
            Style::OpenAi,
            json!({"model": "m", "messages": [{"role": "user", "content": "你好，世界。今天天气怎么样？"}]}),
            14 + 7,
        ),
        // Anthropic's tool-use token counting example (get_weather): about 400 tokens.
        (
            "anthropic tools",
            Style::Anthropic,
            json!({"model": "claude-sonnet-4-5", "max_tokens": 1024,
                "tools": [{"name": "get_weather", "description": "Get the current weather in a given location",
                           "input_schema": {"type": "object", "properties": {"location": {"type": "string",
                               "description": "The city and state, e.g. San Francisco, CA"}}, "required": ["location"]}}],
                "messages": [{"role": "user", "content": "What's the weather like in San Francisco?"}]}),
            403,
        ),
        // Anthropic's image counting example: about 1,550 tokens.
        (
            "anthropic image",
            Style::Anthropic,
            json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": [
             {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQSkZJRg=="}},
             {"type": "text", "text": "Describe this image"}]}]}),
            1_551,
        ),
        // Anthropic's PDF counting example: about 2,200 tokens.
        (
            "anthropic pdf",
            Style::Anthropic,
            json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": [
             {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0xLjQK"}},
             {"type": "text", "text": "Please summarize this document."}]}]}),
            2_188,
        ),
        (
            "openai image",
            Style::OpenAi,
            json!({"model": "gpt-4o", "messages": [{"role": "user", "content": [
             {"type": "text", "text": "What's in this image?"},
             {"type": "image_url", "image_url": {"url": "https://example.com/boardwalk.jpg", "detail": "high"}}]}]}),
            1_105,
        ),
        (
            "openai tools",
            Style::OpenAi,
            json!({"model": "gpt-4.1", "messages": [{"role": "user", "content": "What's the weather like in Boston today?"}],
                "tools": [{"type": "function", "function": {"name": "get_current_weather",
                    "description": "Get the current weather in a given location",
                    "parameters": {"type": "object", "properties": {
                        "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
                        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["location"]}}}],
                "tool_choice": "auto"}),
            82,
        ),
    ];
    for (name, style, body, real) in cases {
        let estimate = input_max(style, body);
        assert!(
            estimate >= real,
            "{name}: estimate {estimate} < real {real}"
        );
        assert!(estimate > 0, "{name}");
    }
}

#[test]
fn input_estimate_counts_every_part_the_model_reads() {
    let base = input_max(
        Style::Anthropic,
        json!({"model": "m", "max_tokens": 1, "messages": []}),
    );
    assert_eq!(base, REQUEST_OVERHEAD_TOKENS);
    let text = "x".repeat(1000);
    let cases: Vec<(&str, Value, u64)> = vec![
        ("system string", json!({"system": text}), 1000),
        (
            "system blocks",
            json!({"system": [{"type": "text", "text": text, "cache_control": {"type": "ephemeral"}}]}),
            1000 + CONTENT_BLOCK_OVERHEAD_TOKENS,
        ),
        (
            "message string",
            json!({"messages": [{"role": "user", "content": text}]}),
            1000 + MESSAGE_OVERHEAD_TOKENS,
        ),
        (
            "tool result",
            json!({"messages": [{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": text}]}]}]}),
            1000 + MESSAGE_OVERHEAD_TOKENS + 2 * CONTENT_BLOCK_OVERHEAD_TOKENS,
        ),
        (
            "tool result string",
            json!({"messages": [{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": text}]}]}),
            1000 + MESSAGE_OVERHEAD_TOKENS + CONTENT_BLOCK_OVERHEAD_TOKENS,
        ),
        (
            "thinking",
            json!({"messages": [{"role": "assistant", "content": [
            {"type": "thinking", "thinking": text, "signature": "sig"}]}]}),
            1000 + MESSAGE_OVERHEAD_TOKENS + CONTENT_BLOCK_OVERHEAD_TOKENS,
        ),
        (
            "text document",
            json!({"messages": [{"role": "user", "content": [
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": text}}]}]}),
            1000 + MESSAGE_OVERHEAD_TOKENS + CONTENT_BLOCK_OVERHEAD_TOKENS,
        ),
        (
            "image",
            json!({"messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}]}]}),
            IMAGE_TOKENS_MAX + MESSAGE_OVERHEAD_TOKENS + CONTENT_BLOCK_OVERHEAD_TOKENS,
        ),
        (
            "pdf",
            json!({"messages": [{"role": "user", "content": [
            {"type": "document", "source": {"type": "file", "file_id": "file_1"}}]}]}),
            DOCUMENT_TOKENS_MAX + MESSAGE_OVERHEAD_TOKENS + CONTENT_BLOCK_OVERHEAD_TOKENS,
        ),
    ];
    for (name, extra, added_at_least) in cases {
        let mut body = json!({"model": "m", "max_tokens": 1, "messages": []});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let estimate = input_max(Style::Anthropic, body);
        assert!(
            estimate >= base + added_at_least,
            "{name}: {estimate} < {}",
            base + added_at_least
        );
        assert!(
            estimate <= base + added_at_least + 64,
            "{name}: {estimate} counts too much"
        );
    }
}

#[test]
fn input_estimate_counts_tool_calls_and_definitions() {
    let args = r#"{"location":"Boston, MA","unit":"celsius"}"#;
    let openai = input_max(
        Style::OpenAi,
        json!({"model": "m", "messages": [
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "get_current_weather", "arguments": args}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "22"}]}),
    );
    assert!(
        openai
            >= REQUEST_OVERHEAD_TOKENS + 2 * MESSAGE_OVERHEAD_TOKENS + args.len() as u64 + 19 + 2
    );

    let input = json!({"location": "San Francisco, CA"});
    let input_len = serde_json::to_vec(&input).unwrap().len() as u64;
    let anthropic = input_max(
        Style::Anthropic,
        json!({"model": "m", "max_tokens": 1, "messages": [{"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": input}]}]}),
    );
    assert!(anthropic >= REQUEST_OVERHEAD_TOKENS + MESSAGE_OVERHEAD_TOKENS + 2 * input_len + 11);

    let tool = json!({"name": "t", "input_schema": {"type": "object"}});
    let tool_len = serde_json::to_vec(&tool).unwrap().len() as u64;
    let custom = input_max(
        Style::Anthropic,
        json!({"model": "m", "max_tokens": 1, "messages": [], "tools": [tool]}),
    );
    assert_eq!(
        custom,
        REQUEST_OVERHEAD_TOKENS + TOOLS_PROMPT_TOKENS_MAX + TOOL_OVERHEAD_TOKENS + tool_len
    );
    let builtin = input_max(
        Style::Anthropic,
        json!({"model": "m", "max_tokens": 1, "messages": [],
               "tools": [{"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"}]}),
    );
    assert!(builtin > REQUEST_OVERHEAD_TOKENS + TOOLS_PROMPT_TOKENS_MAX + BUILTIN_TOOL_TOKENS_MAX);

    let legacy = input_max(
        Style::OpenAi,
        json!({"model": "m", "messages": [], "functions": [{"name": "f", "parameters": {}}]}),
    );
    assert!(legacy > REQUEST_OVERHEAD_TOKENS + TOOLS_PROMPT_TOKENS_MAX + TOOL_OVERHEAD_TOKENS);
}

#[test]
fn input_estimate_does_not_count_media_data_as_text() {
    let data = "A".repeat(400_000);
    let estimate = input_max(
        Style::Anthropic,
        json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}}]}]}),
    );
    assert!(estimate < 20_000, "{estimate}");
    let estimate = input_max(
        Style::OpenAi,
        json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{data}")}},
            {"type": "input_audio", "input_audio": {"data": data, "format": "wav"}}]}]}),
    );
    assert!(
        estimate < IMAGE_TOKENS_MAX + DOCUMENT_TOKENS_MAX + 1_000,
        "{estimate}"
    );
}

#[test]
fn input_estimate_counts_unknown_shapes_by_their_json() {
    let block = json!({"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1",
                       "content": [{"type": "web_search_result", "url": "https://example.com",
                                    "title": "Example", "encrypted_content": "E".repeat(500)}]});
    let len = serde_json::to_vec(&block).unwrap().len() as u64;
    let estimate = input_max(
        Style::Anthropic,
        json!({"model": "m", "max_tokens": 1, "messages": [{"role": "assistant", "content": [block]}]}),
    );
    assert!(estimate >= len + REQUEST_OVERHEAD_TOKENS + MESSAGE_OVERHEAD_TOKENS);
}

proptest! {
    /// Whatever the text, the estimate is at least its UTF-8 bytes (the BPE bound) plus the
    /// per-message overheads.
    #[test]
    fn input_estimate_is_at_least_the_text_bytes(
        texts in proptest::collection::vec("\\PC{0,200}", 1..8),
        system in "\\PC{0,100}",
    ) {
        let bytes: u64 = texts.iter().map(|t| t.len() as u64).sum();
        let n = texts.len() as u64;
        let anthropic = json!({"model": "m", "max_tokens": 1, "system": system,
            "messages": texts.iter().map(|t| json!({"role": "user", "content": [{"type": "text", "text": t}]})).collect::<Vec<_>>()});
        prop_assert!(input_max(Style::Anthropic, anthropic)
            >= REQUEST_OVERHEAD_TOKENS + system.len() as u64 + bytes + n * MESSAGE_OVERHEAD_TOKENS);
        let openai = json!({"model": "m",
            "messages": texts.iter().map(|t| json!({"role": "user", "content": t, "name": "ann"})).collect::<Vec<_>>()});
        prop_assert!(input_max(Style::OpenAi, openai)
            >= REQUEST_OVERHEAD_TOKENS + bytes + n * (MESSAGE_OVERHEAD_TOKENS + 3));
    }
}

// ---------------------------------------------------------- upstream body

#[test]
fn upstream_body_asks_openai_streams_for_usage() {
    let cases: Vec<(Style, Value, Option<Value>)> = vec![
        (
            Style::OpenAi,
            json!({"stream": true}),
            Some(json!({"include_usage": true})),
        ),
        (
            Style::OpenAi,
            json!({"stream": true, "stream_options": null}),
            Some(json!({"include_usage": true})),
        ),
        (
            Style::OpenAi,
            json!({"stream": true, "stream_options": {"include_usage": false}}),
            Some(json!({"include_usage": true})),
        ),
        (
            Style::OpenAi,
            json!({"stream": true, "stream_options": {"include_obfuscation": false}}),
            Some(json!({"include_usage": true, "include_obfuscation": false})),
        ),
        (
            Style::OpenAi,
            json!({"stream": true, "stream_options": {"include_usage": true}}),
            None,
        ),
        (Style::OpenAi, json!({"stream": false}), None),
        (Style::OpenAi, json!({}), None),
        (
            Style::Anthropic,
            json!({"stream": true, "max_tokens": 10}),
            None,
        ),
    ];
    for (style, extra, want_options) in cases {
        let mut body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}],
                              "temperature": 0.5});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let f = request_facts(style, &body).unwrap();
        let out = upstream_body(style, &body, &f);
        match want_options {
            None => assert_eq!(out, None, "{body}"),
            Some(options) => {
                let sent: Value = serde_json::from_slice(&out.expect("a new body")).unwrap();
                let mut expected = body.clone();
                expected["stream_options"] = options;
                assert_eq!(sent, expected);
                let again = request_facts(style, &sent).unwrap();
                assert!(again.client_wants_usage);
                assert_eq!(again.input_tokens_max, f.input_tokens_max);
            }
        }
    }
}

// ------------------------------------------------------ non-stream bodies

const ANTHROPIC_BODY: &str = r#"{
  "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
  "type": "message",
  "role": "assistant",
  "model": "claude-sonnet-4-5-20250929",
  "content": [{"type": "text", "text": "Hi! My name is Claude."}],
  "stop_reason": "end_turn",
  "stop_sequence": null,
  "usage": {
    "input_tokens": 2095,
    "cache_creation_input_tokens": 2051,
    "cache_read_input_tokens": 0,
    "cache_creation": {"ephemeral_5m_input_tokens": 2051, "ephemeral_1h_input_tokens": 0},
    "output_tokens": 503,
    "server_tool_use": {"web_search_requests": 0},
    "service_tier": "standard"
  }
}"#;

const OPENAI_BODY: &str = r#"{
  "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
  "object": "chat.completion",
  "created": 1741569952,
  "model": "gpt-4.1-2025-04-14",
  "choices": [{
    "index": 0,
    "message": {"role": "assistant", "content": "Hello! How can I assist you today?", "refusal": null, "annotations": []},
    "logprobs": null,
    "finish_reason": "stop"
  }],
  "usage": {
    "prompt_tokens": 19,
    "completion_tokens": 10,
    "total_tokens": 29,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                  "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
  },
  "service_tier": "default"
}"#;

#[test]
fn usage_from_realistic_bodies() {
    assert_eq!(
        usage_from_body(Style::Anthropic, ANTHROPIC_BODY.as_bytes()),
        Ok(usage(2095, 503, 2051, 0))
    );
    assert_eq!(
        usage_from_body(Style::OpenAi, OPENAI_BODY.as_bytes()),
        Ok(usage(19, 10, 0, 0))
    );
}

fn anthropic_usage_body(usage: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"type": "message", "content": [], "usage": usage})).unwrap()
}

fn openai_usage_body(usage: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"object": "chat.completion", "choices": [], "usage": usage}))
        .unwrap()
}

fn malformed(r: &Result<Usage, UsageError>) -> bool {
    matches!(r, Err(UsageError::Malformed(_)))
}

/// Server tools bound the requests a call can be billed for: each tool's `max_uses`, or
/// the proxy's own, which it then sets upstream.
#[test]
fn server_tools_are_bounded_and_unbounded_ones_capped_upstream() {
    let request = |tools: Value| {
        json!({"model": "claude-sonnet-4-5", "max_tokens": 1024, "tools": tools,
            "messages": [{"role": "user", "content": "What's the weather in Paris today?"}]})
    };
    let bounded = request(json!([
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 5},
        {"type": "web_fetch_20250910", "name": "web_fetch", "max_uses": 3},
        {"name": "get_weather", "description": "Weather", "input_schema": {"type": "object"}},
    ]));
    let facts = request_facts(Style::Anthropic, &bounded).unwrap();
    assert_eq!(
        (
            facts.web_search_requests_max,
            facts.web_fetch_requests_max,
            facts.server_tools_unbounded
        ),
        (5, 3, false)
    );
    // Sent as read (re-serialized), the bounds unchanged.
    let sent: Value =
        serde_json::from_slice(&upstream_body(Style::Anthropic, &bounded, &facts).unwrap())
            .unwrap();
    assert_eq!(sent, bounded);

    let open = request(json!([
        {"type": "web_search_20250305", "name": "web_search"},
        {"type": "web_search_20250305", "name": "news_search", "max_uses": null},
        {"type": "web_fetch_20250910", "name": "web_fetch", "max_uses": 2},
    ]));
    let facts = request_facts(Style::Anthropic, &open).unwrap();
    assert_eq!(facts.web_search_requests_max, 2 * SERVER_TOOL_USES_MAX);
    assert_eq!(facts.web_fetch_requests_max, 2);
    assert!(facts.server_tools_unbounded);
    let sent: Value =
        serde_json::from_slice(&upstream_body(Style::Anthropic, &open, &facts).unwrap()).unwrap();
    assert_eq!(sent["tools"][0]["max_uses"], SERVER_TOOL_USES_MAX);
    assert_eq!(sent["tools"][1]["max_uses"], SERVER_TOOL_USES_MAX);
    assert_eq!(sent["tools"][2]["max_uses"], 2);
    assert_eq!(sent["messages"], open["messages"]);
    // What is sent bounds itself: read again, nothing is left unbounded.
    let again = request_facts(Style::Anthropic, &sent).unwrap();
    assert!(!again.server_tools_unbounded);
    assert_eq!(again.web_search_requests_max, facts.web_search_requests_max);

    for bad in [
        json!(0),
        json!(-1),
        json!(2.5),
        json!("5"),
        json!(SERVER_TOOL_USES_LIMIT + 1),
    ] {
        let body = request(
            json!([{"type": "web_search_20250305", "name": "web_search", "max_uses": bad}]),
        );
        let err = request_facts(Style::Anthropic, &body).unwrap_err();
        assert!(
            matches!(
                err,
                RequestError::BadField {
                    field: "tools.max_uses",
                    ..
                }
            ),
            "{bad}"
        );
    }
    // OpenAI styles have no server tools the proxy bounds.
    let chat =
        json!({"model": "gpt-4o", "messages": [], "tools": [{"type": "web_search_20250305"}]});
    let facts = request_facts(Style::OpenAi, &chat).unwrap();
    assert_eq!(
        (facts.web_search_requests_max, facts.server_tools_unbounded),
        (0, false)
    );
}

#[test]
fn anthropic_usage_table() {
    let cases: Vec<(Value, Result<Usage, ()>)> = vec![
        (
            json!({"input_tokens": 25, "output_tokens": 15}),
            Ok(usage(25, 15, 0, 0)),
        ),
        (
            json!({"input_tokens": 25, "output_tokens": 15, "cache_creation_input_tokens": null,
                "cache_read_input_tokens": null}),
            Ok(usage(25, 15, 0, 0)),
        ),
        (
            json!({"input_tokens": 3, "output_tokens": 7, "cache_creation_input_tokens": 11,
                "cache_read_input_tokens": 13}),
            Ok(usage(3, 7, 11, 13)),
        ),
        (
            json!({"input_tokens": TOKENS_MAX, "output_tokens": 0}),
            Ok(usage(TOKENS_MAX, 0, 0, 0)),
        ),
        (json!({"output_tokens": 15}), Err(())),
        (json!({"input_tokens": 25}), Err(())),
        (json!({"input_tokens": null, "output_tokens": 15}), Err(())),
        (json!({"input_tokens": -1, "output_tokens": 15}), Err(())),
        (json!({"input_tokens": 2.5, "output_tokens": 15}), Err(())),
        (json!({"input_tokens": "25", "output_tokens": 15}), Err(())),
        (
            json!({"input_tokens": TOKENS_MAX + 1, "output_tokens": 15}),
            Err(()),
        ),
        (
            json!({"input_tokens": 1, "output_tokens": 1, "cache_read_input_tokens": -3}),
            Err(()),
        ),
        (
            json!({"input_tokens": 1, "output_tokens": 1, "cache_creation_input_tokens": 1e30}),
            Err(()),
        ),
        (json!([1, 2]), Err(())),
        // Cache writes split by lifetime: the split counts.
        (
            json!({"input_tokens": 3, "output_tokens": 7, "cache_creation_input_tokens": 2051,
                "cache_creation": {"ephemeral_5m_input_tokens": 51, "ephemeral_1h_input_tokens": 2000}}),
            Ok(Usage {
                cache_write_1h_tokens: 2000,
                ..usage(3, 7, 51, 0)
            }),
        ),
        // A total above the split: the rest is 5-minute writes.
        (
            json!({"input_tokens": 3, "output_tokens": 7, "cache_creation_input_tokens": 100,
                "cache_creation": {"ephemeral_1h_input_tokens": 40}}),
            Ok(Usage {
                cache_write_1h_tokens: 40,
                ..usage(3, 7, 60, 0)
            }),
        ),
        // A split above the total (or without one): the split.
        (
            json!({"input_tokens": 3, "output_tokens": 7, "cache_creation_input_tokens": 10,
                "cache_creation": {"ephemeral_5m_input_tokens": 8, "ephemeral_1h_input_tokens": 9}}),
            Ok(Usage {
                cache_write_1h_tokens: 9,
                ..usage(3, 7, 8, 0)
            }),
        ),
        (
            json!({"input_tokens": 3, "output_tokens": 7, "cache_creation": null,
                "server_tool_use": {"web_search_requests": 4, "web_fetch_requests": 2}}),
            Ok(Usage {
                web_search_requests: 4,
                web_fetch_requests: 2,
                ..usage(3, 7, 0, 0)
            }),
        ),
        (
            json!({"input_tokens": 3, "output_tokens": 7, "server_tool_use": {"web_search_requests": 1}}),
            Ok(Usage {
                web_search_requests: 1,
                ..usage(3, 7, 0, 0)
            }),
        ),
        (
            json!({"input_tokens": 3, "output_tokens": 7, "cache_creation": 5}),
            Err(()),
        ),
        (
            json!({"input_tokens": 3, "output_tokens": 7,
                "cache_creation": {"ephemeral_1h_input_tokens": "9"}}),
            Err(()),
        ),
        (
            json!({"input_tokens": 3, "output_tokens": 7,
                "server_tool_use": {"web_search_requests": -1}}),
            Err(()),
        ),
    ];
    for (u, want) in cases {
        let got = usage_from_body(Style::Anthropic, &anthropic_usage_body(u.clone()));
        match want {
            Ok(want) => assert_eq!(got, Ok(want), "{u}"),
            Err(()) => assert!(malformed(&got), "{u}: {got:?}"),
        }
    }
}

#[test]
fn openai_usage_table() {
    let cases: Vec<(Value, Result<Usage, ()>)> = vec![
        (
            json!({"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21}),
            Ok(usage(9, 12, 0, 0)),
        ),
        (
            json!({"prompt_tokens": 2006, "completion_tokens": 300, "total_tokens": 2306,
                "prompt_tokens_details": {"cached_tokens": 1920}}),
            Ok(usage(86, 300, 0, 1920)),
        ),
        (
            json!({"prompt_tokens": 5, "completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": 5}}),
            Ok(usage(0, 1, 0, 5)),
        ),
        (
            json!({"prompt_tokens": 5, "completion_tokens": 1, "prompt_tokens_details": null}),
            Ok(usage(5, 1, 0, 0)),
        ),
        (
            json!({"prompt_tokens": 5, "completion_tokens": 1, "prompt_tokens_details": {"audio_tokens": 0}}),
            Ok(usage(5, 1, 0, 0)),
        ),
        (
            json!({"prompt_tokens": 5, "completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": null}}),
            Ok(usage(5, 1, 0, 0)),
        ),
        (
            json!({"prompt_tokens": 5, "completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": 6}}),
            Err(()),
        ),
        (
            json!({"prompt_tokens": 5, "completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": -1}}),
            Err(()),
        ),
        (
            json!({"prompt_tokens": 5, "completion_tokens": 1, "prompt_tokens_details": 3}),
            Err(()),
        ),
        (json!({"completion_tokens": 1}), Err(())),
        (json!({"prompt_tokens": 5}), Err(())),
        (
            json!({"prompt_tokens": -5, "completion_tokens": 1}),
            Err(()),
        ),
        (
            json!({"prompt_tokens": 5.0, "completion_tokens": 1}),
            Err(()),
        ),
        (
            json!({"prompt_tokens": 5, "completion_tokens": TOKENS_MAX + 1}),
            Err(()),
        ),
        (json!("lots"), Err(())),
    ];
    for (u, want) in cases {
        let got = usage_from_body(Style::OpenAi, &openai_usage_body(u.clone()));
        match want {
            Ok(want) => assert_eq!(got, Ok(want), "{u}"),
            Err(()) => assert!(malformed(&got), "{u}: {got:?}"),
        }
    }
}

#[test]
fn usage_missing_or_body_unreadable() {
    let anthropic_error =
        br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
    let openai_error = br#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
    assert_eq!(
        usage_from_body(Style::Anthropic, anthropic_error),
        Err(UsageError::Missing)
    );
    assert_eq!(
        usage_from_body(Style::OpenAi, openai_error),
        Err(UsageError::Missing)
    );
    assert_eq!(
        usage_from_body(Style::OpenAi, br#"{"usage":null}"#),
        Err(UsageError::Missing)
    );
    assert!(malformed(&usage_from_body(
        Style::OpenAi,
        b"<html>502</html>"
    )));
    assert!(malformed(&usage_from_body(Style::Anthropic, b"")));
    assert!(malformed(&usage_from_body(Style::Anthropic, b"[]")));
    let e = usage_from_body(
        Style::OpenAi,
        br#"{"usage":{"prompt_tokens":5,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":"x"}}}"#,
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("usage.prompt_tokens_details.cached_tokens"),
        "{e}"
    );
}

// ---------------------------------------------------------------- streams

const ANTHROPIC_STREAM: &str = "event: message_start\n\
data: {\"type\": \"message_start\", \"message\": {\"id\": \"msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY\", \"type\": \"message\", \"role\": \"assistant\", \"content\": [], \"model\": \"claude-opus-4-6\", \"stop_reason\": null, \"stop_sequence\": null, \"usage\": {\"input_tokens\": 25, \"output_tokens\": 1}}}\n\
\n\
event: content_block_start\n\
data: {\"type\": \"content_block_start\", \"index\": 0, \"content_block\": {\"type\": \"text\", \"text\": \"\"}}\n\
\n\
event: ping\n\
data: {\"type\": \"ping\"}\n\
\n\
event: content_block_delta\n\
data: {\"type\": \"content_block_delta\", \"index\": 0, \"delta\": {\"type\": \"text_delta\", \"text\": \"Hello\"}}\n\
\n\
event: content_block_delta\n\
data: {\"type\": \"content_block_delta\", \"index\": 0, \"delta\": {\"type\": \"text_delta\", \"text\": \"!\"}}\n\
\n\
event: content_block_stop\n\
data: {\"type\": \"content_block_stop\", \"index\": 0}\n\
\n\
event: message_delta\n\
data: {\"type\": \"message_delta\", \"delta\": {\"stop_reason\": \"end_turn\", \"stop_sequence\":null}, \"usage\": {\"output_tokens\": 15}}\n\
\n\
event: message_stop\n\
data: {\"type\": \"message_stop\"}\n\
\n";

/// A tool-use stream in the newer shape: cache fields in `message_start`, cumulative input
/// and cache counts in `message_delta`.
const ANTHROPIC_TOOL_STREAM: &str = "event: message_start\n\
data: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-sonnet-4-5-20250929\",\"id\":\"msg_014p7gG3wDgGV9EUtLvnow3U\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":472,\"cache_creation_input_tokens\":100,\"cache_read_input_tokens\":2000,\"cache_creation\":{\"ephemeral_5m_input_tokens\":100,\"ephemeral_1h_input_tokens\":0},\"output_tokens\":2,\"service_tier\":\"standard\"}}}\n\
\n\
event: content_block_start\n\
data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_01T1x1fJ34qAmk2tNTrN7Up6\",\"name\":\"get_weather\",\"input\":{}}}\n\
\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"location\\\": \\\"San Fra\"}}\n\
\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"ncisco, CA\\\"}\"}}\n\
\n\
event: content_block_stop\n\
data: {\"type\":\"content_block_stop\",\"index\":0}\n\
\n\
event: message_delta\n\
data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"input_tokens\":480,\"cache_creation_input_tokens\":100,\"cache_read_input_tokens\":2000,\"output_tokens\":89,\"server_tool_use\":{\"web_search_requests\":0}}}\n\
\n\
event: message_stop\n\
data: {\"type\":\"message_stop\"}\n\
\n";

const OPENAI_CHUNKS: [&str; 3] = [
    "data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"gpt-4o-mini\",\"system_fingerprint\":\"fp_44709d6fcb\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
    "data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"gpt-4o-mini\",\"system_fingerprint\":\"fp_44709d6fcb\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
    "data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"gpt-4o-mini\",\"system_fingerprint\":\"fp_44709d6fcb\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
];

const OPENAI_USAGE_CHUNK: &str = "data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"gpt-4o-mini\",\"system_fingerprint\":\"fp_44709d6fcb\",\"choices\":[],\"usage\":{\"prompt_tokens\":2006,\"completion_tokens\":12,\"total_tokens\":2018,\"prompt_tokens_details\":{\"cached_tokens\":1920,\"audio_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":0,\"audio_tokens\":0,\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}}}\n\n";

const OPENAI_DONE: &str = "data: [DONE]\n\n";

fn openai_stream(with_usage: bool) -> String {
    let mut s = OPENAI_CHUNKS.concat();
    if with_usage {
        s.push_str(OPENAI_USAGE_CHUNK);
    }
    s.push_str(OPENAI_DONE);
    s
}

fn crlf(s: &str) -> String {
    s.replace('\n', "\r\n")
}

/// Feeds `input` cut at `cuts` (sorted positions), then finishes.
fn run(style: Style, pass: bool, input: &[u8], cuts: &[usize]) -> (Vec<u8>, StreamUsage) {
    let mut meter = StreamMeter::new(style, pass);
    let mut out = Vec::new();
    let mut start = 0;
    for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
        let cut = cut.clamp(start, input.len());
        out.extend(meter.feed(&input[start..cut]));
        start = cut;
    }
    let (rest, usage) = meter.finish();
    out.extend(rest);
    (out, usage)
}

fn whole(style: Style, pass: bool, input: &[u8]) -> (Vec<u8>, StreamUsage) {
    run(style, pass, input, &[])
}

/// Every single cut position, and one byte at a time, give the whole-stream result.
fn assert_split_invariant(style: Style, pass: bool, input: &[u8]) -> (Vec<u8>, StreamUsage) {
    let expected = whole(style, pass, input);
    for cut in 0..=input.len() {
        assert_eq!(run(style, pass, input, &[cut]), expected, "cut at {cut}");
    }
    let every: Vec<usize> = (0..input.len()).collect();
    assert_eq!(run(style, pass, input, &every), expected, "byte at a time");
    expected
}

/// The sample streams of the tests, with the meter settings that apply.
fn sample_streams() -> Vec<(Style, bool, String)> {
    let mut streams = vec![
        (Style::Anthropic, true, ANTHROPIC_STREAM.to_owned()),
        (Style::Anthropic, true, crlf(ANTHROPIC_STREAM)),
        (Style::Anthropic, true, ANTHROPIC_TOOL_STREAM.to_owned()),
        (Style::Anthropic, false, ANTHROPIC_TOOL_STREAM.to_owned()),
    ];
    for pass in [false, true] {
        streams.push((Style::OpenAi, pass, openai_stream(true)));
        streams.push((Style::OpenAi, pass, crlf(&openai_stream(true))));
        streams.push((Style::OpenAi, pass, openai_stream(false)));
    }
    streams
}

#[test]
fn anthropic_stream_is_metered_and_passed_unchanged() {
    for input in [ANTHROPIC_STREAM.to_owned(), crlf(ANTHROPIC_STREAM)] {
        let (out, seen) = assert_split_invariant(Style::Anthropic, true, input.as_bytes());
        assert_eq!(out, input.as_bytes());
        assert_eq!(
            seen,
            StreamUsage {
                usage: Some(usage(25, 15, 0, 0)),
                complete: true,
                malformed: false
            }
        );
    }
}

#[test]
fn anthropic_delta_counts_override_the_start() {
    let (out, seen) =
        assert_split_invariant(Style::Anthropic, false, ANTHROPIC_TOOL_STREAM.as_bytes());
    assert_eq!(out, ANTHROPIC_TOOL_STREAM.as_bytes());
    assert_eq!(
        seen,
        StreamUsage {
            usage: Some(usage(480, 89, 100, 2000)),
            complete: true,
            malformed: false
        }
    );
}

#[test]
fn anthropic_stream_cut_short_is_incomplete() {
    let start_end = ANTHROPIC_STREAM.find("\n\n").unwrap() + 2;
    let delta_end = ANTHROPIC_STREAM.find("event: message_stop").unwrap();
    let cases: Vec<(&str, StreamUsage)> = vec![
        ("", StreamUsage::default()),
        // The message_start line is cut: not parsed.
        (&ANTHROPIC_STREAM[..start_end - 10], StreamUsage::default()),
        // message_start whole, but without its blank line yet: counted at finish.
        (
            &ANTHROPIC_STREAM[..start_end - 1],
            StreamUsage {
                usage: Some(usage(25, 1, 0, 0)),
                complete: false,
                malformed: false,
            },
        ),
        (
            &ANTHROPIC_STREAM[..start_end],
            StreamUsage {
                usage: Some(usage(25, 1, 0, 0)),
                complete: false,
                malformed: false,
            },
        ),
        (
            &ANTHROPIC_STREAM[..delta_end],
            StreamUsage {
                usage: Some(usage(25, 15, 0, 0)),
                complete: false,
                malformed: false,
            },
        ),
    ];
    for (input, want) in cases {
        let (out, seen) = assert_split_invariant(Style::Anthropic, true, input.as_bytes());
        assert_eq!(out, input.as_bytes());
        assert_eq!(seen, want, "{input:?}");
    }
}

#[test]
fn anthropic_usage_so_far_and_error_events() {
    let mut meter = StreamMeter::new(Style::Anthropic, true);
    let start_end = ANTHROPIC_STREAM.find("\n\n").unwrap() + 2;
    assert_eq!(meter.usage(), StreamUsage::default());
    meter.feed(&ANTHROPIC_STREAM.as_bytes()[..start_end]);
    assert_eq!(meter.usage().usage, Some(usage(25, 1, 0, 0)));
    let error = "event: error\ndata: {\"type\": \"error\", \"error\": {\"type\": \"overloaded_error\", \"message\": \"Overloaded\"}}\n\n";
    assert_eq!(meter.feed(error.as_bytes()), error.as_bytes());
    let (rest, seen) = meter.finish();
    assert!(rest.is_empty());
    assert_eq!(
        seen,
        StreamUsage {
            usage: Some(usage(25, 1, 0, 0)),
            complete: false,
            malformed: false
        }
    );
    // After finish: passed through, not read.
    assert_eq!(meter.feed(b"data: x\n\n"), b"data: x\n\n");
    assert_eq!(meter.finish(), (Vec::new(), seen));
}

#[test]
fn a_delta_split_without_its_total_keeps_the_earlier_total() {
    let stream = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":5,\"cache_creation_input_tokens\":900,\"output_tokens\":1}}}\n\n\
event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":7,\"cache_creation\":{\"ephemeral_5m_input_tokens\":100,\"ephemeral_1h_input_tokens\":300}}}\n\n\
event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    let mut meter = StreamMeter::new(Style::Anthropic, true);
    meter.feed(stream.as_bytes());
    let (_, seen) = meter.finish();
    let usage = seen.usage.expect("usage");
    // 900 written in all; the split names 400 of them: the other 500 count as 5-minute.
    assert_eq!(
        (usage.cache_write_tokens, usage.cache_write_1h_tokens),
        (600, 300)
    );
}

/// A stream whose `message_start` splits its cache writes by lifetime and whose
/// `message_delta` carries the cumulative counts with the server-tool requests, as
/// Anthropic sends a call that searched the web.
#[test]
fn anthropic_stream_with_cache_lifetimes_and_server_tools() {
    let stream = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":12,\"cache_creation_input_tokens\":3000,\"cache_read_input_tokens\":0,\"cache_creation\":{\"ephemeral_5m_input_tokens\":1000,\"ephemeral_1h_input_tokens\":2000},\"output_tokens\":1}}}\n\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"server_tool_use\",\"id\":\"srvtoolu_1\",\"name\":\"web_search\",\"input\":{}}}\n\n\
event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"input_tokens\":10682,\"cache_creation_input_tokens\":3000,\"cache_read_input_tokens\":0,\"output_tokens\":510,\"server_tool_use\":{\"web_search_requests\":3}}}\n\n\
event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    let mut meter = StreamMeter::new(Style::Anthropic, true);
    assert_eq!(meter.feed(stream.as_bytes()), stream.as_bytes());
    let (_, seen) = meter.finish();
    assert!(seen.complete && !seen.malformed);
    // The delta's total (3,000) without a split keeps message_start's split.
    assert_eq!(
        seen.usage,
        Some(Usage {
            input_tokens: 10_682,
            output_tokens: 510,
            cache_write_tokens: 1_000,
            cache_write_1h_tokens: 2_000,
            web_search_requests: 3,
            ..Usage::default()
        })
    );
}

#[test]
fn anthropic_malformed_events_are_passed_and_flagged() {
    let cases = [
        "event: message_start\ndata: {\"type\": \"message_start\", \"message\": {\"usage\": {\"input_tokens\": -1, \"output_tokens\": 1}}}\n\n",
        "event: message_start\ndata: {\"type\": \"message_start\", \"message\": {\"id\": \"msg_1\"}}\n\n",
        "event: message_delta\ndata: {\"type\": \"message_delta\", \"usage\": {\"output_tokens\": \"15\"}}\n\n",
        "event: message_delta\ndata: {\"type\": \"message_delta\", \"usage\": 15}\n\n",
        "event: content_block_delta\ndata: {\"type\": \"content_block_delta\", \"index\": 0, \"delta\": {\"type\": \"text_del\n\n",
        "data: [1, 2]\n\n",
    ];
    for bad in cases {
        let input = format!("{ANTHROPIC_STREAM}{bad}");
        let (out, seen) = whole(Style::Anthropic, true, input.as_bytes());
        assert_eq!(out, input.as_bytes());
        assert!(seen.malformed, "{bad}");
        assert_eq!(seen.usage, Some(usage(25, 15, 0, 0)), "{bad}");
    }
}

#[test]
fn openai_usage_chunk_is_swallowed_unless_the_client_asked() {
    for (input, expected_swallowed) in [
        (openai_stream(true), openai_stream(false)),
        (crlf(&openai_stream(true)), crlf(&openai_stream(false))),
    ] {
        let want = StreamUsage {
            usage: Some(usage(86, 12, 0, 1920)),
            complete: true,
            malformed: false,
        };
        let (out, seen) = assert_split_invariant(Style::OpenAi, false, input.as_bytes());
        assert_eq!(String::from_utf8(out).unwrap(), expected_swallowed);
        assert_eq!(seen, want);
        let (out, seen) = assert_split_invariant(Style::OpenAi, true, input.as_bytes());
        assert_eq!(out, input.as_bytes());
        assert_eq!(seen, want);
    }
}

#[test]
fn openai_events_pass_as_soon_as_they_end() {
    let mut meter = StreamMeter::new(Style::OpenAi, false);
    let first = OPENAI_CHUNKS[0].as_bytes();
    assert_eq!(meter.feed(&first[..10]), b"");
    assert_eq!(meter.feed(&first[10..first.len() - 1]), b"");
    assert_eq!(meter.feed(&first[first.len() - 1..]), first);
    let usage_chunk = OPENAI_USAGE_CHUNK.as_bytes();
    assert_eq!(meter.feed(usage_chunk), b"");
    assert!(meter.usage().complete);
    assert_eq!(meter.feed(OPENAI_DONE.as_bytes()), OPENAI_DONE.as_bytes());
    assert_eq!(meter.finish().0, b"");
    // Passing through: no holding at all.
    let mut meter = StreamMeter::new(Style::OpenAi, true);
    assert_eq!(meter.feed(&first[..10]), &first[..10]);
}

#[test]
fn openai_stream_without_usage_is_incomplete() {
    for pass in [false, true] {
        let input = openai_stream(false);
        let (out, seen) = whole(Style::OpenAi, pass, input.as_bytes());
        assert_eq!(out, input.as_bytes());
        assert_eq!(seen, StreamUsage::default());
    }
    // Cut before the usage chunk ends: the held bytes are given back, nothing metered.
    let input = openai_stream(true);
    let cut = input.find("\"choices\":[]").unwrap();
    let (out, seen) = whole(Style::OpenAi, false, &input.as_bytes()[..cut]);
    assert_eq!(out, &input.as_bytes()[..cut]);
    assert_eq!(seen, StreamUsage::default());
    // The usage chunk's line is whole but its blank line never came: counted, and dropped.
    let cut = OPENAI_CHUNKS.concat().len() + OPENAI_USAGE_CHUNK.len() - 1;
    let (out, seen) = whole(Style::OpenAi, false, &input.as_bytes()[..cut]);
    assert_eq!(out, OPENAI_CHUNKS.concat().as_bytes());
    assert!(seen.complete);
}

#[test]
fn openai_usage_in_every_chunk_counts_the_last_and_completes_at_done() {
    // Some OpenAI-compatible servers report cumulative usage on every chunk.
    let chunk = |content: &str, completion: u64| {
        format!("data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{content}\"}},\"finish_reason\":null}}],\"usage\":{{\"prompt_tokens\":10,\"completion_tokens\":{completion},\"total_tokens\":{}}}}}\n\n", 10 + completion)
    };
    let body = format!("{}{}", chunk("Hel", 1), chunk("lo", 2));
    for pass in [false, true] {
        let (out, seen) = whole(Style::OpenAi, pass, body.as_bytes());
        assert_eq!(out, body.as_bytes());
        assert_eq!(
            seen,
            StreamUsage {
                usage: Some(usage(10, 2, 0, 0)),
                complete: false,
                malformed: false
            }
        );
        let done = format!("{body}{OPENAI_DONE}");
        let (out, seen) = whole(Style::OpenAi, pass, done.as_bytes());
        assert_eq!(out, done.as_bytes());
        assert!(seen.complete);
    }
}

#[test]
fn sse_framing_comments_multiline_data_and_fields() {
    let usage_event = "id: 7\r\nevent: chunk\r\n: a comment inside\r\ndata: {\"id\":\"c\",\"choices\":[],\r\ndata:\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}\r\nretry: 10\r\n\r\n";
    let prefix = ": OPENROUTER PROCESSING\n\n\n\ndata\n\n";
    let input = format!("{prefix}{}{usage_event}{OPENAI_DONE}", OPENAI_CHUNKS[0]);
    let (out, seen) = assert_split_invariant(Style::OpenAi, false, input.as_bytes());
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!("{prefix}{}{OPENAI_DONE}", OPENAI_CHUNKS[0])
    );
    assert_eq!(
        seen,
        StreamUsage {
            usage: Some(usage(3, 4, 0, 0)),
            complete: true,
            malformed: true
        }
    );
    // `data` alone is an empty data line: "" is not JSON, hence malformed above. Without it:
    let input = format!(": ping\n\n{usage_event}{OPENAI_DONE}");
    let (_, seen) = whole(Style::OpenAi, false, input.as_bytes());
    assert!(!seen.malformed && seen.complete);
}

#[test]
fn openai_malformed_chunks_are_passed_and_flagged() {
    let cases = [
        "data: {\"id\":\"chatcmpl-123\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\n\n",
        "data: not json\n\n",
        "data: [\"a\"]\n\n",
        "data: {\"choices\":[],\"usage\":\"lots\"}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":-1,\"completion_tokens\":2}}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2,\"prompt_tokens_details\":{\"cached_tokens\":9}}}\n\n",
    ];
    for bad in cases {
        let input = format!("{}{bad}{OPENAI_USAGE_CHUNK}{OPENAI_DONE}", OPENAI_CHUNKS[0]);
        let (out, seen) = whole(Style::OpenAi, true, input.as_bytes());
        assert_eq!(out, input.as_bytes());
        assert!(seen.malformed, "{bad}");
        assert_eq!(seen.usage, Some(usage(86, 12, 0, 1920)), "{bad}");
        assert!(seen.complete);
    }
    // A usage-shaped chunk with bad counts is still swallowed for a client that did not ask.
    let bad = cases[4];
    let input = format!("{}{bad}{OPENAI_DONE}", OPENAI_CHUNKS[0]);
    let (out, seen) = whole(Style::OpenAi, false, input.as_bytes());
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!("{}{OPENAI_DONE}", OPENAI_CHUNKS[0])
    );
    assert_eq!(
        seen,
        StreamUsage {
            usage: None,
            complete: false,
            malformed: true
        }
    );
}

#[test]
fn oversized_events_are_passed_through_unparsed() {
    let huge = format!(
        "data: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":1,\"completion_tokens\":1}},\"pad\":\"{}\"}}\n\n",
        "x".repeat(EVENT_BYTES_MAX)
    );
    let input = format!(
        "{}{huge}{OPENAI_USAGE_CHUNK}{OPENAI_DONE}",
        OPENAI_CHUNKS[0]
    );
    let expected_out = format!("{}{huge}{OPENAI_DONE}", OPENAI_CHUNKS[0]);
    for cuts in [
        vec![],
        vec![100, 200, EVENT_BYTES_MAX, EVENT_BYTES_MAX + 50],
        (0..input.len()).step_by(4096).collect(),
    ] {
        let mut meter = StreamMeter::new(Style::OpenAi, false);
        let mut out = Vec::new();
        let mut start = 0;
        let mut held_max = 0;
        for cut in cuts.into_iter().chain(std::iter::once(input.len())) {
            out.extend(meter.feed(&input.as_bytes()[start..cut]));
            let (held, data, line) = meter.buffered();
            held_max = held_max.max(held + data + line);
            start = cut;
        }
        let (rest, seen) = meter.finish();
        out.extend(rest);
        assert_eq!(out, expected_out.as_bytes());
        assert_eq!(
            seen,
            StreamUsage {
                usage: Some(usage(86, 12, 0, 1920)),
                complete: true,
                malformed: true
            }
        );
        assert!(held_max <= 2 * EVENT_BYTES_MAX, "{held_max}");
    }
    // A huge line that never ends is passed on as it comes once over the limit.
    let mut meter = StreamMeter::new(Style::OpenAi, false);
    let out = meter.feed(&vec![b'a'; EVENT_BYTES_MAX + 1]);
    assert_eq!(out.len(), EVENT_BYTES_MAX + 1);
    assert_eq!(meter.feed(b"bbb"), b"bbb");
    let (held, _, line) = meter.buffered();
    assert!(line <= 2 && held == 0);
}

/// Fragments that make SSE-ish byte streams with every framing feature (and garbage).
const FRAGMENTS: [&str; 18] = [
    "data: ",
    "data:",
    "event: message_start\n",
    ": ping\n",
    "\n",
    "\r\n",
    "\r",
    "{\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2}}",
    "{\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}",
    "{\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":7,\"output_tokens\":1}}}",
    "{\"type\":\"message_delta\",\"usage\":{\"output_tokens\":9}}",
    "{\"type\":\"message_stop\"}",
    "[DONE]",
    "{\"choi",
    "ces\":[]}",
    "x",
    "é",
    "\n\n",
];

proptest! {
    #[test]
    fn sample_streams_split_anywhere_give_the_same_result(
        index in 0usize..10,
        mut cuts in proptest::collection::vec(0usize..4000, 0..12),
    ) {
        let streams = sample_streams();
        let (style, pass, input) = &streams[index % streams.len()];
        cuts.sort_unstable();
        prop_assert_eq!(run(*style, *pass, input.as_bytes(), &cuts), whole(*style, *pass, input.as_bytes()));
    }

    #[test]
    fn arbitrary_streams_split_anywhere_give_the_same_result(
        picks in proptest::collection::vec(0usize..FRAGMENTS.len(), 0..60),
        mut cuts in proptest::collection::vec(0usize..1000, 0..16),
        openai in any::<bool>(),
        pass in any::<bool>(),
    ) {
        let input: String = picks.iter().map(|&i| FRAGMENTS[i]).collect();
        let style = if openai { Style::OpenAi } else { Style::Anthropic };
        cuts.sort_unstable();
        let expected = whole(style, pass, input.as_bytes());
        prop_assert_eq!(run(style, pass, input.as_bytes(), &cuts), expected.clone());
        if style == Style::Anthropic || pass {
            prop_assert_eq!(&expected.0, input.as_bytes());
        } else {
            prop_assert!(expected.0.len() <= input.len());
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_split_invariant(
        input in proptest::collection::vec(any::<u8>(), 0..400),
        mut cuts in proptest::collection::vec(0usize..400, 0..8),
        pass in any::<bool>(),
    ) {
        cuts.sort_unstable();
        for style in [Style::Anthropic, Style::OpenAi] {
            prop_assert_eq!(run(style, pass, &input, &cuts), whole(style, pass, &input));
        }
    }
}
