//! The demo upstream's OpenAI Responses answers: the `response` object and the stream's
//! events (`response.created` … `response.completed`, or `response.incomplete` when the output
//! limit cut the reply short).

use axum::body::Bytes;
use serde_json::{json, Value};

use super::new_id;
use super::request::Ask;
use super::usage::{input_count, output_count};

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// The response's usage: cached tokens are part of the input tokens, reasoning tokens part of
/// the output tokens (as OpenAI reports them).
fn usage(ask: &Ask, malformed: bool) -> Value {
    let total = ask.input_tokens.saturating_add(ask.output_tokens);
    json!({
        "input_tokens": input_count(ask, malformed),
        "input_tokens_details": {"cached_tokens": ask.cached_tokens, "cache_write_tokens": 0},
        "output_tokens": output_count(ask.output_tokens, malformed),
        "output_tokens_details": {"reasoning_tokens": ask.reasoning_tokens},
        "total_tokens": total,
    })
}

/// The ids and the reply of one answer.
struct Answer<'a> {
    ask: &'a Ask,
    id: String,
    message_id: String,
    reasoning_id: String,
    created_at: u64,
    text: String,
}

impl Answer<'_> {
    fn new(ask: &Ask) -> Answer<'_> {
        Answer {
            ask,
            id: new_id("resp_demo"),
            message_id: new_id("msg_demo"),
            reasoning_id: new_id("rs_demo"),
            created_at: unix_now(),
            text: ask.words().join(" "),
        }
    }

    fn status(&self) -> &'static str {
        if self.ask.truncated() {
            "incomplete"
        } else {
            "completed"
        }
    }

    fn reasoning_item(&self) -> Value {
        json!({"id": self.reasoning_id, "type": "reasoning", "summary": []})
    }

    fn text_part(&self, text: &str) -> Value {
        json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
    }

    fn message_item(&self, status: &str, content: Vec<Value>) -> Value {
        json!({"id": self.message_id, "type": "message", "status": status,
            "role": "assistant", "content": content})
    }

    /// The items of the finished response.
    fn output(&self) -> Vec<Value> {
        let mut output = Vec::new();
        if self.ask.reasoning_tokens > 0 {
            output.push(self.reasoning_item());
        }
        output.push(self.message_item(self.status(), vec![self.text_part(&self.text)]));
        output
    }

    /// The `response` object in `status`, with `output` and `usage`.
    fn response(&self, status: &str, output: Vec<Value>, usage: Value) -> Value {
        let request = &self.ask.request;
        let field = |name: &str| request.get(name).cloned().unwrap_or(Value::Null);
        let incomplete = (status == "incomplete").then(|| json!({"reason": "max_output_tokens"}));
        json!({
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "background": false,
            "error": null,
            "incomplete_details": incomplete,
            "instructions": field("instructions"),
            "max_output_tokens": field("max_output_tokens"),
            "model": self.ask.model,
            "output": output,
            "parallel_tool_calls": true,
            "previous_response_id": field("previous_response_id"),
            "reasoning": {"effort": field("reasoning").get("effort").cloned().unwrap_or(Value::Null), "summary": null},
            "store": request.get("store").and_then(Value::as_bool).unwrap_or(true),
            "temperature": 1.0,
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [],
            "top_p": 1.0,
            "truncation": "disabled",
            "usage": usage,
            "user": null,
            "metadata": {},
        })
    }
}

/// The non-streamed answer.
pub(super) fn openai_response(ask: &Ask, malformed: bool) -> Value {
    let answer = Answer::new(ask);
    answer.response(answer.status(), answer.output(), usage(ask, malformed))
}

/// The stream's events, in OpenAI's order, each `event: <type>` with its data.
pub(super) fn openai_response_events(ask: &Ask, malformed: bool) -> Vec<Bytes> {
    let answer = Answer::new(ask);
    let mut events = Vec::new();
    let mut push = |kind: &str, mut data: Value| {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(events.len());
        events.push(Bytes::from(format!("event: {kind}\ndata: {data}\n\n")));
    };
    let started = answer.response("in_progress", Vec::new(), Value::Null);
    push("response.created", json!({"response": started}));
    push("response.in_progress", json!({"response": started}));
    let mut index = 0;
    if ask.reasoning_tokens > 0 {
        let item = answer.reasoning_item();
        push(
            "response.output_item.added",
            json!({"output_index": index, "item": item}),
        );
        push(
            "response.output_item.done",
            json!({"output_index": index, "item": item}),
        );
        index += 1;
    }
    let at = |data: Value| {
        let mut data = data;
        data["item_id"] = json!(answer.message_id);
        data["output_index"] = json!(index);
        data["content_index"] = json!(0);
        data
    };
    push(
        "response.output_item.added",
        json!({"output_index": index, "item": answer.message_item("in_progress", Vec::new())}),
    );
    push(
        "response.content_part.added",
        at(json!({"part": answer.text_part("")})),
    );
    for (i, word) in ask.words().into_iter().enumerate() {
        let delta = if i == 0 {
            word.to_owned()
        } else {
            format!(" {word}")
        };
        push(
            "response.output_text.delta",
            at(json!({"delta": delta, "logprobs": []})),
        );
    }
    push(
        "response.output_text.done",
        at(json!({"text": answer.text, "logprobs": []})),
    );
    push(
        "response.content_part.done",
        at(json!({"part": answer.text_part(&answer.text)})),
    );
    let status = answer.status();
    push(
        "response.output_item.done",
        json!({"output_index": index, "item": answer.message_item(status, vec![answer.text_part(&answer.text)])}),
    );
    let done = answer.response(status, answer.output(), usage(ask, malformed));
    let terminal = if status == "completed" {
        "response.completed"
    } else {
        "response.incomplete"
    };
    push(terminal, json!({ "response": done }));
    events
}
