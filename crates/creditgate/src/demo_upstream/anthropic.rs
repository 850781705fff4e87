//! The demo upstream's Anthropic Messages answers: the `message` body and the stream's
//! events (`message_start` … `message_stop`).

use axum::body::Bytes;
use serde_json::{json, Value};

use super::new_id;
use super::request::Ask;
use super::usage::{input_count, output_count};

fn anthropic_stop_reason(ask: &Ask) -> &'static str {
    if ask.truncated() {
        "max_tokens"
    } else {
        "end_turn"
    }
}

pub(super) fn anthropic_message(ask: &Ask, malformed: bool) -> Value {
    json!({
        "id": new_id("msg_demo_"),
        "type": "message",
        "role": "assistant",
        "model": ask.model,
        "content": [{"type": "text", "text": ask.words().join(" ")}],
        "stop_reason": anthropic_stop_reason(ask),
        "stop_sequence": null,
        "usage": usage(ask, output_count(ask.output_tokens, malformed), malformed),
    })
}

/// A Messages usage object: the input and cache counts, `output`, and `server_tool_use` when
/// the request has server tools.
fn usage(ask: &Ask, output: Value, malformed: bool) -> Value {
    let (five, hour) = ask.cache_writes;
    let mut usage = json!({
        "input_tokens": input_count(ask, malformed),
        "output_tokens": output,
        "cache_creation_input_tokens": five + hour,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": five, "ephemeral_1h_input_tokens": hour},
    });
    if let Some((search, fetch)) = ask.server_tools {
        usage["server_tool_use"] =
            json!({"web_search_requests": search, "web_fetch_requests": fetch});
    }
    usage
}

/// The usage of `message_delta`: the output tokens and, as Anthropic sends them at the end of
/// a call that used server tools, the cumulative counts with `server_tool_use`.
fn delta_usage(ask: &Ask, malformed: bool) -> Value {
    let output = output_count(ask.output_tokens, malformed);
    match ask.server_tools {
        Some(_) => usage(ask, output, malformed),
        None => json!({"output_tokens": output}),
    }
}

fn sse(event: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

pub(super) fn anthropic_events(ask: &Ask, malformed: bool) -> Vec<Bytes> {
    let mut events = vec![
        sse(
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": new_id("msg_demo_"),
                "type": "message",
                "role": "assistant",
                "model": ask.model,
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                "usage": usage(ask, json!(1), malformed),
            }}),
        ),
        sse(
            "content_block_start",
            &json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "text", "text": ""}}),
        ),
        sse("ping", &json!({"type": "ping"})),
    ];
    for (index, word) in ask.words().into_iter().enumerate() {
        let text = if index == 0 {
            word.to_owned()
        } else {
            format!(" {word}")
        };
        events.push(sse(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": text}}),
        ));
    }
    events.push(sse(
        "content_block_stop",
        &json!({"type": "content_block_stop", "index": 0}),
    ));
    events.push(sse(
        "message_delta",
        &json!({"type": "message_delta",
            "delta": {"stop_reason": anthropic_stop_reason(ask), "stop_sequence": null},
            "usage": delta_usage(ask, malformed)}),
    ));
    events.push(sse("message_stop", &json!({"type": "message_stop"})));
    events
}
