//! The endpoints the metering proxy serves, and how each is read. Pure: JSON values and bytes
//! in, facts out; no I/O, no async, no clock.
//!
//! Metered ([`Endpoint`]): held for their worst case, settled at the usage the upstream reports.
//!
//! | endpoint | request facts | usage |
//! |---|---|---|
//! | Anthropic `POST /v1/messages` | [`formats::request_facts`] | body `usage`, or the stream's `message_start` / `message_delta` |
//! | OpenAI `POST /v1/chat/completions` | [`formats::request_facts`] | body `usage`, or the stream's usage chunk |
//! | OpenAI `POST /v1/responses` | `model`, `input`, `instructions`, `tools`, `max_output_tokens`, `stream` | body `usage`, or the `response.usage` of the stream's terminal event |
//! | OpenAI `POST /v1/embeddings` | `model`, `input` (never streamed) | body `usage.prompt_tokens` |
//!
//! Free (passed through; no hold, no charge): Anthropic `POST /v1/messages/count_tokens`, and
//! `GET /v1/models` and `GET /v1/models/{model}` in both styles. Any other path under a style's
//! prefix is a 404 in that style's envelope ([`unknown_url_message`]).
//!
//! # Responses API usage
//! `usage` {`input_tokens`, `output_tokens`, `input_tokens_details` {`cached_tokens`,
//! `cache_write_tokens`?}, `output_tokens_details` {`reasoning_tokens`}}. Cached and
//! cache-written tokens are part of `input_tokens`: the plain input is `input_tokens −
//! cached_tokens − cache_write_tokens`, cached tokens are charged at the cache-read price and
//! cache-written ones at the cache-write price. Reasoning tokens are part of `output_tokens`
//! and charged as output once (a report with more reasoning than output tokens is malformed).
//! A stream's usage is the one of its terminal event: `response.completed`, or
//! `response.incomplete` (the output cap was reached) or `response.failed`, whose `response`
//! carries the usage too.
//!
//! # Responses API input estimate
//! As [`formats`] bounds Chat Completions: bytes of every text the model reads (`instructions`,
//! the `input` string or each input item's text parts, tool calls and their outputs, tool
//! definitions, the `text.format` schema), fixed allowances per message, part, image and file,
//! and [`STORED_INPUT_TOKENS_MAX`] once when the request refers to input the provider keeps
//! (`previous_response_id`, `conversation`, a stored `prompt`, `item_reference` items): that
//! input is not in the request, so the allowance is an allowance, not a proof. The output cap is
//! `max_output_tokens` (which covers reasoning tokens), else the price's `max_output_tokens`.
//! `background: true` is refused (400): a background response answers before it has usage, and
//! its result is fetched from an endpoint the proxy does not meter.
//!
//! # Embeddings input estimate
//! `input` is a string, an array of strings, an array of token ids (one input) or an array of
//! token-id arrays. Each string counts its UTF-8 bytes, each token array its length, and each
//! input [`CONTENT_BLOCK_OVERHEAD_TOKENS`]. The worst case is that bound at the input price
//! (plus the request fee): embeddings have no output.

use creditgate_domain::pricing::{self, PricingError, TokenPrices, Usage};
use creditgate_domain::Amount;
use serde_json::{Map, Value};

use super::formats::{
    self, bad_field, output_cap, required_count, Estimate, RequestError, RequestFacts, StreamMeter,
    Style, UsageError, BUILTIN_TOOL_TOKENS_MAX, CONTENT_BLOCK_OVERHEAD_TOKENS, DOCUMENT_TOKENS_MAX,
    IMAGE_TOKENS_MAX, MESSAGE_OVERHEAD_TOKENS, REQUEST_OVERHEAD_TOKENS, TOOLS_PROMPT_TOKENS_MAX,
    TOOL_OVERHEAD_TOKENS,
};

/// Input-token allowance, once per request, for input the provider keeps and the request only
/// names (`previous_response_id`, `conversation`, a stored `prompt`, `item_reference` items).
pub const STORED_INPUT_TOKENS_MAX: u64 = 128_000;

/// A metered endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// Anthropic `POST /v1/messages`.
    Messages,
    /// OpenAI `POST /v1/chat/completions`.
    ChatCompletions,
    /// OpenAI `POST /v1/responses`.
    Responses,
    /// OpenAI `POST /v1/embeddings`.
    Embeddings,
}

impl Endpoint {
    /// Every metered endpoint.
    pub const ALL: [Endpoint; 4] = [
        Endpoint::Messages,
        Endpoint::ChatCompletions,
        Endpoint::Responses,
        Endpoint::Embeddings,
    ];

    /// Its API style (the upstream it goes to, the error envelope it answers in).
    pub fn style(self) -> Style {
        match self {
            Endpoint::Messages => Style::Anthropic,
            Endpoint::ChatCompletions | Endpoint::Responses | Endpoint::Embeddings => Style::OpenAi,
        }
    }

    /// Its path at the upstream (and at the proxy, after the style's prefix).
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Messages => "/v1/messages",
            Endpoint::ChatCompletions => "/v1/chat/completions",
            Endpoint::Responses => "/v1/responses",
            Endpoint::Embeddings => "/v1/embeddings",
        }
    }

    /// The request field that bounds the call's cost (the `param` of an amount overflow).
    pub fn cost_field(self) -> &'static str {
        match self {
            Endpoint::Messages => "max_tokens",
            Endpoint::ChatCompletions => "max_completion_tokens",
            Endpoint::Responses => "max_output_tokens",
            Endpoint::Embeddings => "input",
        }
    }
}

/// Reads what the proxy needs from a request to `endpoint` (see [`RequestFacts`]).
pub fn request_facts(endpoint: Endpoint, body: &Value) -> Result<RequestFacts, RequestError> {
    match endpoint {
        Endpoint::Messages | Endpoint::ChatCompletions => {
            formats::request_facts(endpoint.style(), body)
        }
        Endpoint::Responses => responses_facts(body.as_object().ok_or(RequestError::NotObject)?),
        Endpoint::Embeddings => embeddings_facts(body.as_object().ok_or(RequestError::NotObject)?),
    }
}

/// The most the call can cost at `prices`: the input bound at the dearest input rate plus the
/// output bound (`model_max_output_tokens` when the request sets no cap); for embeddings, the
/// input bound at the input price. Plus the request fee.
pub fn worst_case(
    endpoint: Endpoint,
    prices: &TokenPrices,
    facts: &RequestFacts,
    model_max_output_tokens: u64,
) -> Result<Amount, PricingError> {
    match endpoint {
        Endpoint::Embeddings => pricing::cost(
            prices,
            &Usage {
                input_tokens: facts.input_tokens_max,
                ..Usage::default()
            },
        ),
        _ => pricing::worst_case(
            prices,
            &pricing::UsageBound {
                input_tokens: facts.input_tokens_max,
                output_tokens: facts.output_tokens_max(model_max_output_tokens),
                web_search_requests: facts.web_search_requests_max,
                web_fetch_requests: facts.web_fetch_requests_max,
            },
        ),
    }
}

/// The body to send upstream, `None` for the original bytes ([`formats::upstream_body`]: only a
/// Chat Completions stream is changed, to report its usage; a Responses stream always does).
pub fn upstream_body(endpoint: Endpoint, body: &Value, facts: &RequestFacts) -> Option<Vec<u8>> {
    match endpoint {
        Endpoint::Messages | Endpoint::ChatCompletions => {
            formats::upstream_body(endpoint.style(), body, facts)
        }
        Endpoint::Responses | Endpoint::Embeddings => None,
    }
}

/// The usage of a non-streamed response from `endpoint`.
pub fn usage_from_body(endpoint: Endpoint, body: &[u8]) -> Result<Usage, UsageError> {
    match endpoint {
        Endpoint::Messages | Endpoint::ChatCompletions => {
            formats::usage_from_body(endpoint.style(), body)
        }
        Endpoint::Responses | Endpoint::Embeddings => {
            let value: Value = serde_json::from_slice(body)
                .map_err(|_| UsageError::Malformed("the response body is not JSON".to_owned()))?;
            let Value::Object(obj) = value else {
                return Err(UsageError::Malformed(
                    "the response body is not a JSON object".to_owned(),
                ));
            };
            match obj.get("usage") {
                None | Some(Value::Null) => Err(UsageError::Missing),
                Some(Value::Object(usage)) if endpoint == Endpoint::Responses => {
                    responses_usage(usage)
                }
                Some(Value::Object(usage)) => embeddings_usage(usage),
                Some(_) => Err(UsageError::Malformed("usage is not an object".to_owned())),
            }
        }
    }
}

/// The meter of a streamed response from `endpoint`; `client_wants_usage` as
/// [`RequestFacts::client_wants_usage`].
pub fn stream_meter(endpoint: Endpoint, client_wants_usage: bool) -> StreamMeter {
    match endpoint {
        Endpoint::Responses => StreamMeter::responses(),
        _ => {
            let style = endpoint.style();
            StreamMeter::new(style, style == Style::Anthropic || client_wants_usage)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

fn model_of(obj: &Map<String, Value>) -> Result<String, RequestError> {
    match obj.get("model") {
        None | Some(Value::Null) => Err(RequestError::MissingModel),
        Some(Value::String(s)) if s.is_empty() => Err(RequestError::MissingModel),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(bad_field("model", "Must be a string.")),
    }
}

fn flag(obj: &Map<String, Value>, field: &'static str) -> Result<bool, RequestError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(bad_field(field, "Must be a boolean.")),
    }
}

fn responses_facts(obj: &Map<String, Value>) -> Result<RequestFacts, RequestError> {
    let model = model_of(obj)?;
    match obj.get("input") {
        None | Some(Value::Null | Value::String(_) | Value::Array(_)) => {}
        Some(_) => {
            return Err(bad_field(
                "input",
                "Must be a string or an array of input items.",
            ))
        }
    }
    let stream = flag(obj, "stream")?;
    if flag(obj, "background")? {
        return Err(bad_field(
            "background",
            "Background responses cannot be metered through this proxy (they answer before \
             their usage is known); send the request without background.",
        ));
    }
    Ok(RequestFacts {
        model,
        max_output_tokens: output_cap(obj, "max_output_tokens")?,
        choices: 1,
        stream,
        // A Responses stream always ends with its usage.
        client_wants_usage: true,
        input_tokens_max: responses_input_tokens_max(obj),
        web_search_requests_max: 0,
        web_fetch_requests_max: 0,
        server_tools_unbounded: false,
    })
}

fn responses_input_tokens_max(obj: &Map<String, Value>) -> u64 {
    let mut e = Estimate(REQUEST_OVERHEAD_TOKENS);
    let mut stored = ["previous_response_id", "conversation", "prompt"]
        .iter()
        .any(|field| obj.get(*field).is_some_and(|v| !v.is_null()));
    if let Some(instructions) = obj.get("instructions").filter(|v| !v.is_null()) {
        e.add(MESSAGE_OVERHEAD_TOKENS);
        e.text(Some(instructions));
    }
    match obj.get("input") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for item in items {
                stored |= responses_item(&mut e, item);
            }
        }
        Some(text) => {
            e.add(MESSAGE_OVERHEAD_TOKENS);
            e.text(Some(text));
        }
    }
    match obj.get("tools") {
        Some(Value::Array(tools)) => {
            if !tools.is_empty() {
                e.add(TOOLS_PROMPT_TOKENS_MAX);
            }
            for tool in tools {
                e.add(TOOL_OVERHEAD_TOKENS);
                e.json(tool);
                match tool.get("type").and_then(Value::as_str) {
                    None | Some("function" | "custom") => {}
                    // Built-in tools (web search, file search, code interpreter, …): their
                    // definitions are the provider's.
                    Some(_) => e.add(BUILTIN_TOOL_TOKENS_MAX),
                }
            }
        }
        other => e.text(other),
    }
    // The output schema, a forced tool, a stored prompt's variables: their JSON.
    for field in ["text", "tool_choice", "prompt"] {
        if let Some(v) = obj.get(field).filter(|v| v.is_object()) {
            e.json(v);
        }
    }
    if stored {
        e.add(STORED_INPUT_TOKENS_MAX);
    }
    e.0
}

/// Counts one input item; answers whether it refers to a stored item.
fn responses_item(e: &mut Estimate, item: &Value) -> bool {
    e.add(MESSAGE_OVERHEAD_TOKENS);
    let Value::Object(i) = item else {
        e.json(item);
        return false;
    };
    match i.get("type").and_then(Value::as_str) {
        // An easy input message has no type.
        None | Some("message") => responses_content(e, i.get("content")),
        Some("item_reference") => return true,
        Some("function_call_output" | "custom_tool_call_output") => {
            e.text(i.get("call_id"));
            responses_content(e, i.get("output"));
        }
        // A screenshot, or a generated image passed back: an image, not its base64 as text.
        Some("computer_call_output" | "image_generation_call") => e.add(IMAGE_TOKENS_MAX),
        // Function and tool calls, reasoning (its summary, text or encrypted content), …:
        // their JSON bounds what the model reads of them.
        _ => e.json(item),
    }
    false
}

/// A message's content or a tool output: a string, or an array of content parts.
fn responses_content(e: &mut Estimate, content: Option<&Value>) {
    match content {
        Some(Value::Array(parts)) => {
            for part in parts {
                responses_part(e, part);
            }
        }
        other => e.text(other),
    }
}

fn responses_part(e: &mut Estimate, part: &Value) {
    e.add(CONTENT_BLOCK_OVERHEAD_TOKENS);
    let Value::Object(p) = part else {
        e.json(part);
        return;
    };
    match p.get("type").and_then(Value::as_str) {
        Some("input_text" | "output_text" | "text" | "summary_text" | "reasoning_text") => {
            e.text(p.get("text"))
        }
        Some("refusal") => e.text(p.get("refusal")),
        Some("input_image") => e.add(IMAGE_TOKENS_MAX),
        Some("input_file" | "input_audio") => e.add(DOCUMENT_TOKENS_MAX),
        _ => e.json(part),
    }
}

fn embeddings_facts(obj: &Map<String, Value>) -> Result<RequestFacts, RequestError> {
    let model = model_of(obj)?;
    const WHAT: &str = "Must be a string, an array of strings, an array of token ids or an array \
                        of token-id arrays.";
    let is_token = |v: &Value| v.as_u64().is_some();
    let input_tokens_max = match obj.get("input") {
        None | Some(Value::Null) => return Err(bad_field("input", "Field required.")),
        Some(Value::String(text)) => embedding_text(text),
        Some(Value::Array(items)) if !items.is_empty() && items.iter().all(is_token) => {
            (items.len() as u64).saturating_add(CONTENT_BLOCK_OVERHEAD_TOKENS)
        }
        Some(Value::Array(items)) => {
            let mut total: u64 = 0;
            for item in items {
                let tokens = match item {
                    Value::String(text) => embedding_text(text),
                    Value::Array(ids) if ids.iter().all(is_token) => {
                        (ids.len() as u64).saturating_add(CONTENT_BLOCK_OVERHEAD_TOKENS)
                    }
                    _ => return Err(bad_field("input", WHAT)),
                };
                total = total.saturating_add(tokens);
            }
            total
        }
        Some(_) => return Err(bad_field("input", WHAT)),
    };
    Ok(RequestFacts {
        model,
        max_output_tokens: Some(0),
        choices: 1,
        stream: false,
        client_wants_usage: false,
        input_tokens_max,
        web_search_requests_max: 0,
        web_fetch_requests_max: 0,
        server_tools_unbounded: false,
    })
}

fn embedding_text(text: &str) -> u64 {
    (text.len() as u64).saturating_add(CONTENT_BLOCK_OVERHEAD_TOKENS)
}

// ---------------------------------------------------------------------------------------------
// Usage
// ---------------------------------------------------------------------------------------------

/// A count in a `usage.…_details` object, named by its path for errors.
fn detail_count(usage: &Map<String, Value>, details: &str, field: &str) -> Result<u64, UsageError> {
    formats::detail(usage, details, field).map(Option::unwrap_or_default)
}

/// A Responses API `usage` object (see the module docs).
pub fn responses_usage(usage: &Map<String, Value>) -> Result<Usage, UsageError> {
    let input = required_count(usage, "input_tokens")?;
    let output = required_count(usage, "output_tokens")?;
    let cached = detail_count(usage, "input_tokens_details", "cached_tokens")?;
    let cache_write = detail_count(usage, "input_tokens_details", "cache_write_tokens")?;
    let reasoning = detail_count(usage, "output_tokens_details", "reasoning_tokens")?;
    let plain = input
        .checked_sub(cached)
        .and_then(|rest| rest.checked_sub(cache_write))
        .ok_or_else(|| {
            UsageError::Malformed(format!(
                "usage.input_tokens_details: cached_tokens ({cached}) and cache_write_tokens \
                 ({cache_write}) exceed usage.input_tokens ({input})"
            ))
        })?;
    if reasoning > output {
        return Err(UsageError::Malformed(format!(
            "usage.output_tokens_details.reasoning_tokens ({reasoning}) exceeds \
             usage.output_tokens ({output})"
        )));
    }
    Ok(Usage {
        input_tokens: plain,
        output_tokens: output,
        cache_write_tokens: cache_write,
        cache_read_tokens: cached,
        ..Usage::default()
    })
}

/// An embeddings `usage` object: `prompt_tokens`, all input.
pub fn embeddings_usage(usage: &Map<String, Value>) -> Result<Usage, UsageError> {
    Ok(Usage {
        input_tokens: required_count(usage, "prompt_tokens")?,
        ..Usage::default()
    })
}

/// What one event of a Responses stream says to the meter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponsesEvent {
    /// Any event but a terminal one.
    Other,
    /// Data that is not a JSON object with a string `type`.
    Malformed,
    /// `response.completed`, `response.incomplete` or `response.failed`, with its
    /// `response.usage` read ([`UsageError::Missing`] when absent or null).
    Terminal(Result<Usage, UsageError>),
}

/// Reads one event's `data` of a Responses stream.
pub fn responses_event(data: &[u8]) -> ResponsesEvent {
    let Ok(Value::Object(event)) = serde_json::from_slice::<Value>(data) else {
        return ResponsesEvent::Malformed;
    };
    match event.get("type").and_then(Value::as_str) {
        None => ResponsesEvent::Malformed,
        Some("response.completed" | "response.incomplete" | "response.failed") => {
            ResponsesEvent::Terminal(match event.get("response").and_then(|r| r.get("usage")) {
                None | Some(Value::Null) => Err(UsageError::Missing),
                Some(Value::Object(usage)) => responses_usage(usage),
                Some(_) => Err(UsageError::Malformed("usage is not an object".to_owned())),
            })
        }
        Some(_) => ResponsesEvent::Other,
    }
}

// ---------------------------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------------------------

/// The style whose prefix (`/anthropic`, `/openai`) starts `path`.
pub fn style_of_path(path: &str) -> Option<Style> {
    let under = |prefix: &str| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    if under("/anthropic") {
        Some(Style::Anthropic)
    } else if under("/openai") {
        Some(Style::OpenAi)
    } else {
        None
    }
}

/// The routes the proxy serves in `style`.
pub fn routes(style: Style) -> &'static [&'static str] {
    match style {
        Style::Anthropic => &[
            "POST /anthropic/v1/messages",
            "POST /anthropic/v1/messages/count_tokens",
            "GET /anthropic/v1/models",
            "GET /anthropic/v1/models/{model}",
        ],
        Style::OpenAi => &[
            "POST /openai/v1/chat/completions",
            "POST /openai/v1/responses",
            "POST /openai/v1/embeddings",
            "GET /openai/v1/models",
            "GET /openai/v1/models/{model}",
        ],
    }
}

/// The message of a 404 for a route the proxy does not serve.
pub fn unknown_url_message(style: Style, method: &str, path: &str) -> String {
    format!(
        "Unknown request URL: {method} {path}. This API serves {}.",
        routes(style).join(", ")
    )
}

/// The upstream path of one model (`/v1/models/{id}`), its id percent-encoded as one path
/// segment; `None` for an id that cannot be one (empty, `.` or `..`).
pub fn model_path(id: &str) -> Option<String> {
    if matches!(id, "" | "." | "..") {
        return None;
    }
    let mut path = String::from("/v1/models/");
    for byte in id.bytes() {
        let keep = byte.is_ascii_alphanumeric() || b"-._~:@!$&'()*+,;=".contains(&byte);
        if keep {
            path.push(char::from(byte));
        } else {
            path.push_str(&format!("%{byte:02X}"));
        }
    }
    Some(path)
}

#[cfg(test)]
mod tests;
