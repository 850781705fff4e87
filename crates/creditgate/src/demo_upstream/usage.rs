//! The demo upstream's deterministic usage: the token counts of a request and of a reply (the
//! formulas are the parent module's docs), and the counts as a response reports them, well
//! formed or (the `x-demo-malformed-usage` hook) not.

use serde_json::{json, Value};

use super::request::Ask;
use super::REPLY_WORDS;

/// Input tokens of an Anthropic Messages request (see the module docs).
pub fn anthropic_input_tokens(request: &Value) -> u64 {
    let mut bytes = request.get("system").map_or(0, text_bytes);
    bytes += messages_bytes(request);
    tokens_of_bytes(bytes)
}

/// The tokens an Anthropic Messages request writes to the prompt cache, as (5-minute,
/// 1-hour): each text block (of `system` or of a message's `content`) that carries
/// `cache_control` writes its own `max(1, ⌈bytes / 4⌉)` tokens, to the 1-hour cache when its
/// `ttl` is `"1h"`, else to the 5-minute one. (Anthropic caches the whole prefix up to a
/// breakpoint; the demo counts the marked blocks only, which keeps the rule simple.)
pub fn anthropic_cache_writes(request: &Value) -> (u64, u64) {
    let mut blocks: Vec<&Value> = Vec::new();
    if let Some(Value::Array(system)) = request.get("system") {
        blocks.extend(system);
    }
    for message in request
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(Value::Array(content)) = message.get("content") {
            blocks.extend(content);
        }
    }
    let (mut five, mut hour) = (0u64, 0u64);
    for block in blocks {
        let (Some(control), Some(text)) = (
            block.get("cache_control").filter(|c| c.is_object()),
            block.get("text").and_then(Value::as_str),
        ) else {
            continue;
        };
        let tokens = tokens_of_bytes(text.len());
        if control.get("ttl").and_then(Value::as_str) == Some("1h") {
            hour = hour.saturating_add(tokens);
        } else {
            five = five.saturating_add(tokens);
        }
    }
    (five, hour)
}

/// The server-tool requests an Anthropic Messages request runs, as (web searches, web
/// fetches): each `tools` entry whose `type` starts with `web_search_` (`web_fetch_`) runs
/// `min(max_uses, SERVER_TOOL_RUNS)` of them (`SERVER_TOOL_RUNS` when it sets no `max_uses`).
/// `None` when the request has no server tool (the usage then has no `server_tool_use`).
pub fn anthropic_server_tool_requests(request: &Value) -> Option<(u64, u64)> {
    let tools = request.get("tools")?.as_array()?;
    let (mut search, mut fetch) = (0u64, 0u64);
    for tool in tools {
        let kind = tool.get("type").and_then(Value::as_str).unwrap_or("");
        let runs = tool
            .get("max_uses")
            .and_then(Value::as_u64)
            .unwrap_or(SERVER_TOOL_RUNS)
            .min(SERVER_TOOL_RUNS);
        if kind.starts_with("web_search_") {
            search += runs;
        } else if kind.starts_with("web_fetch_") {
            fetch += runs;
        }
    }
    (search + fetch > 0).then_some((search, fetch))
}

/// The requests each server tool of a request runs at most (see
/// [`anthropic_server_tool_requests`]).
pub const SERVER_TOOL_RUNS: u64 = 2;

/// Input tokens of an OpenAI Chat Completions request (see the module docs).
pub fn openai_input_tokens(request: &Value) -> u64 {
    tokens_of_bytes(messages_bytes(request))
}

/// Input tokens of an OpenAI Responses request (see the module docs): the bytes of
/// `instructions` and of `input` (a string, or each item's `content`: a string or the `text` of
/// each of its parts).
pub fn responses_input_tokens(request: &Value) -> u64 {
    let mut bytes = request.get("instructions").map_or(0, text_bytes);
    bytes += match request.get("input") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.get("content").map_or(0, text_bytes))
            .sum(),
        Some(input) => text_bytes(input),
        None => 0,
    };
    tokens_of_bytes(bytes)
}

/// Input tokens of one embeddings input text: `max(1, ⌈bytes / 4⌉)`.
pub fn embedding_input_tokens(text: &str) -> u64 {
    tokens_of_bytes(text.len())
}

/// The cached input tokens a Responses answer reports: none below 1,024 input tokens, else
/// half the input rounded down to a multiple of 128 (`128 × ⌊input / 256⌋`).
pub fn cached_tokens(input_tokens: u64) -> u64 {
    if input_tokens < CACHE_MIN_TOKENS {
        0
    } else {
        128 * (input_tokens / 256)
    }
}

/// The fewest input tokens a Responses answer reports cached tokens for.
pub const CACHE_MIN_TOKENS: u64 = 1024;
/// The reasoning tokens of a Responses request with `reasoning` (before the reply's words).
pub const REASONING_TOKENS: u64 = 8;
/// The most `dimensions` an embeddings request may ask for.
pub const EMBEDDING_DIMENSIONS_MAX: u64 = 3072;

/// Output tokens for an output limit: `min(limit, REPLY_WORDS)`.
pub fn output_tokens(limit: u64) -> u64 {
    limit.min(REPLY_WORDS)
}

/// `max(1, ⌈bytes / 4⌉)`.
fn tokens_of_bytes(bytes: usize) -> u64 {
    u64::try_from(bytes.div_ceil(4)).unwrap_or(u64::MAX).max(1)
}

fn messages_bytes(request: &Value) -> usize {
    request
        .get("messages")
        .and_then(Value::as_array)
        .map_or(0, |messages| {
            messages
                .iter()
                .map(|message| message.get("content").map_or(0, text_bytes))
                .sum()
        })
}

/// A string's bytes, or the `text` strings' bytes of an array of blocks.
fn text_bytes(content: &Value) -> usize {
    match content {
        Value::String(text) => text.len(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|block| block.get("text").and_then(Value::as_str))
            .map(str::len)
            .sum(),
        _ => 0,
    }
}

/// An input count as the usage reports it: a string when malformed.
pub(super) fn input_count(ask: &Ask, malformed: bool) -> Value {
    if malformed {
        json!(ask.input_tokens.to_string())
    } else {
        json!(ask.input_tokens)
    }
}

/// An output count as the usage reports it: negative when malformed.
pub(super) fn output_count(count: u64, malformed: bool) -> Value {
    if malformed {
        json!(-i64::try_from(count).unwrap_or(i64::MAX) - 1)
    } else {
        json!(count)
    }
}
