//! The demo upstream's OpenAI Chat Completions answers: the `chat.completion` body and the
//! stream's `chat.completion.chunk` events, with the usage chunk only when asked for.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use serde_json::{json, Value};

use super::new_id;
use super::request::Ask;
use super::usage::{input_count, output_count};

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

fn openai_finish_reason(ask: &Ask) -> &'static str {
    if ask.truncated() {
        "length"
    } else {
        "stop"
    }
}

fn openai_usage(ask: &Ask, malformed: bool) -> Value {
    let total = ask.input_tokens.saturating_add(ask.output_tokens);
    json!({
        "prompt_tokens": input_count(ask, malformed),
        "completion_tokens": output_count(ask.output_tokens, malformed),
        "total_tokens": if malformed { json!(total.to_string()) } else { json!(total) },
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    })
}

pub(super) fn openai_completion(ask: &Ask, malformed: bool) -> Value {
    json!({
        "id": new_id("chatcmpl-demo"),
        "object": "chat.completion",
        "created": unix_now(),
        "model": ask.model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": ask.words().join(" "), "refusal": null},
            "logprobs": null,
            "finish_reason": openai_finish_reason(ask),
        }],
        "usage": openai_usage(ask, malformed),
        "system_fingerprint": null,
    })
}

pub(super) fn openai_events(ask: &Ask, malformed: bool) -> Vec<Bytes> {
    let id = new_id("chatcmpl-demo");
    let created = unix_now();
    let chunk = |choices: Value, usage: Option<Value>| {
        let mut chunk = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": ask.model,
            "system_fingerprint": null,
            "choices": choices,
        });
        if ask.include_usage {
            chunk["usage"] = usage.unwrap_or(Value::Null);
        }
        Bytes::from(format!("data: {chunk}\n\n"))
    };
    let delta = |delta: Value, finish_reason: Value| json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}]);
    let mut events = vec![chunk(
        delta(
            json!({"role": "assistant", "content": "", "refusal": null}),
            Value::Null,
        ),
        None,
    )];
    for (index, word) in ask.words().into_iter().enumerate() {
        let text = if index == 0 {
            word.to_owned()
        } else {
            format!(" {word}")
        };
        events.push(chunk(delta(json!({"content": text}), Value::Null), None));
    }
    events.push(chunk(
        delta(json!({}), json!(openai_finish_reason(ask))),
        None,
    ));
    if ask.include_usage {
        events.push(chunk(json!([]), Some(openai_usage(ask, malformed))));
    }
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    events
}
