//! The proxy's format layer: what the metering proxy reads from, and changes in, Anthropic-style
//! (`POST /v1/messages`) and OpenAI-style (`POST /v1/chat/completions`) traffic. Pure: bytes and
//! JSON values in, facts out; no I/O, no async, no clock.
//!
//! - [`parse_request`] and [`request_facts`]: the model, the output cap, streaming, and a
//!   conservative upper bound of the input tokens, for the hold placed before forwarding.
//! - [`upstream_body`]: the body to forward (an OpenAI stream is made to report its usage).
//! - [`usage_from_body`]: the usage of a non-streamed response.
//! - [`StreamMeter`]: watches a server-sent-events response as it passes, meters its usage, and
//!   drops the usage chunk the proxy asked for on behalf of a client that did not
//!   ([`StreamMeter::responses`]: an OpenAI Responses stream, metered from its terminal event).
//!
//! The other endpoints (Responses, embeddings) and the dispatch by endpoint are
//! [`super::endpoints`].
//!
//! # The input estimate is an upper bound
//! Both providers tokenize text with byte-level BPE: every token stands for at least one UTF-8
//! byte of the text, so a text never has more tokens than bytes. [`request_facts`] counts the
//! bytes of every string the model reads (system prompt, message text, tool calls and results,
//! tool definitions as serialized JSON) and adds, for what is not text or is not sent as text,
//! fixed allowances: the special tokens of the chat template around each message and block
//! ([`MESSAGE_OVERHEAD_TOKENS`], [`CONTENT_BLOCK_OVERHEAD_TOKENS`], [`REQUEST_OVERHEAD_TOKENS`]),
//! the tool-use system prompt ([`TOOLS_PROMPT_TOKENS_MAX`], [`TOOL_OVERHEAD_TOKENS`],
//! [`BUILTIN_TOOL_TOKENS_MAX`]), images ([`IMAGE_TOKENS_MAX`]) and documents, files and audio
//! given by reference or as base64 ([`DOCUMENT_TOKENS_MAX`]). The base64 data of media is not
//! counted as text (it is not tokenized as text, and counting it would overstate a 1 MB image as
//! a million tokens).
//!
//! Limits, by design: the media allowances are generous allowances, not proofs (a dense
//! 100-page PDF can exceed [`DOCUMENT_TOKENS_MAX`]); and input the provider fetches by itself
//! (Anthropic server tools such as web search or web fetch, `mcp_servers`) is not in the request
//! and cannot be bounded from it. Settlement charges the usage the upstream reports in any case.
//!
//! Server-tool requests (Anthropic web search and web fetch, billed per request) are bounded
//! by each tool's `max_uses`; a tool that sets none is sent upstream with `max_uses`
//! [`SERVER_TOOL_USES_MAX`] (see [`upstream_body`]), so the hold's worst case covers every
//! request the provider can run.

use std::io;

use creditgate_domain::pricing::{Usage, TOKENS_MAX};
use serde_json::{Map, Value};

/// The `max_uses` the proxy gives an Anthropic server tool (web search, web fetch) that sets
/// none, so that the requests it can bill are bounded before the call.
pub const SERVER_TOOL_USES_MAX: u64 = 20;
/// The largest `max_uses` a request may set on a server tool.
pub const SERVER_TOOL_USES_LIMIT: u64 = 1_000;
/// Input-token allowance for one image (an Anthropic `image` block, an OpenAI `image_url` part).
/// Claude scales images down to well under 5,000 tokens and OpenAI's high-detail images cost a
/// few thousand at most; the allowance covers both with room.
pub const IMAGE_TOKENS_MAX: u64 = 10_000;
/// Input-token allowance for one document, file or audio input whose text is not in the request
/// (an Anthropic `document` block with a base64, URL or file source; an OpenAI `file` or
/// `input_audio` part). Anthropic accepts PDFs of up to 100 pages, at about 1,000 tokens a page
/// for typical pages. Documents given as plain text are counted by their bytes instead.
pub const DOCUMENT_TOKENS_MAX: u64 = 100_000;
/// Input tokens the chat template adds around each message (role markers, separators).
/// OpenAI's documented figure is 3 to 4; Anthropic's is of the same order.
pub const MESSAGE_OVERHEAD_TOKENS: u64 = 8;
/// Input tokens the chat template adds around each content block or part of a message.
pub const CONTENT_BLOCK_OVERHEAD_TOKENS: u64 = 4;
/// Input tokens added once per request (the start of the prompt and the assistant's turn).
pub const REQUEST_OVERHEAD_TOKENS: u64 = 32;
/// Input tokens of the system prompt a provider adds once when a request defines tools
/// (Anthropic documents 250 to 500 tokens, depending on the model and `tool_choice`).
pub const TOOLS_PROMPT_TOKENS_MAX: u64 = 1_024;
/// Input tokens added per tool definition, on top of its serialized JSON bytes.
pub const TOOL_OVERHEAD_TOKENS: u64 = 32;
/// Input tokens added per Anthropic built-in tool (a tool whose `type` is not `custom`, such as
/// `bash_…`, `text_editor_…`, `computer_…`, `web_search_…`): its real definition is the
/// provider's, not the request's (Anthropic documents up to about 1,200 tokens each).
pub const BUILTIN_TOOL_TOKENS_MAX: u64 = 2_048;
/// Tokens counted per byte of an Anthropic `tool_use` block's serialized `input`: Claude reads
/// tool calls as markup with a few tokens of tags per parameter, more than the JSON's bytes for
/// tiny values, so the JSON is counted twice.
pub const TOOL_INPUT_TOKENS_PER_BYTE: u64 = 2;
/// Largest OpenAI `n` (choices per request) accepted.
pub const CHOICES_MAX: u64 = 128;
/// Longest server-sent event [`StreamMeter`] holds and parses; a longer one is passed through
/// unparsed (and the stream marked malformed).
pub const EVENT_BYTES_MAX: usize = 1 << 20;
/// Buffer capacity a [`StreamMeter`] keeps between events; larger buffers are released.
const BUFFER_RETAINED_BYTES_MAX: usize = 64 << 10;

/// The API style of a proxied call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Style {
    /// Anthropic Messages API: `POST /v1/messages`.
    Anthropic,
    /// OpenAI Chat Completions API: `POST /v1/chat/completions`.
    OpenAi,
}

/// What the proxy needs from a request before forwarding it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestFacts {
    /// The requested model (`model`), as sent.
    pub model: String,
    /// The request's cap on output tokens per choice: Anthropic `max_tokens` (always present);
    /// OpenAI `max_completion_tokens`, else `max_tokens`, else `None` (the model's maximum
    /// applies). See [`RequestFacts::output_tokens_max`].
    pub max_output_tokens: Option<u64>,
    /// Choices generated (OpenAI `n`, default 1; Anthropic always 1). Output usage covers all
    /// choices, so the worst-case output is `choices × max_output_tokens`.
    pub choices: u64,
    /// Whether the response is a server-sent-events stream (`stream`, default false).
    pub stream: bool,
    /// Whether the client itself asked for usage in the stream: OpenAI
    /// `stream_options.include_usage == true`; always true for Anthropic (whose streams always
    /// carry usage). When false for an OpenAI stream, [`upstream_body`] asks for usage and the
    /// [`StreamMeter`] (with `pass_usage_chunk = false`) removes the extra chunk.
    pub client_wants_usage: bool,
    /// A conservative upper bound of the request's input tokens (see the module documentation).
    pub input_tokens_max: u64,
    /// The most web searches the provider may run for the call: the sum of the `max_uses` of
    /// the request's Anthropic `web_search_*` tools ([`SERVER_TOOL_USES_MAX`] for one that
    /// sets none); 0 for OpenAI styles.
    pub web_search_requests_max: u64,
    /// The same for `web_fetch_*` tools.
    pub web_fetch_requests_max: u64,
    /// Whether some server tool sets no `max_uses` (the proxy sets it upstream).
    pub server_tools_unbounded: bool,
}

impl RequestFacts {
    /// The most output tokens the call can be charged for: `choices ×` the request's cap, or
    /// `choices × model_max_output_tokens` (the model's configured maximum) when the request
    /// sets none. Saturates instead of overflowing.
    pub fn output_tokens_max(&self, model_max_output_tokens: u64) -> u64 {
        self.max_output_tokens
            .unwrap_or(model_max_output_tokens)
            .saturating_mul(self.choices)
    }
}

/// Why a request cannot be forwarded (a 400 in the style's error envelope).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The body is not valid JSON (from [`parse_request`]).
    #[error("The request body is not valid JSON.")]
    NotJson,
    /// The body is JSON but not an object.
    #[error("The request body must be a JSON object.")]
    NotObject,
    /// No `model` (or an empty one).
    #[error("model: Field required.")]
    MissingModel,
    /// A field the proxy reads is missing or has the wrong type or range.
    #[error("{field}: {message}")]
    BadField {
        /// The field, as a JSON path (`max_tokens`, `stream_options.include_usage`).
        field: &'static str,
        /// What is wrong, as a sentence.
        message: String,
    },
}

impl RequestError {
    /// The request field at fault, for an error's `param`.
    pub fn param(&self) -> Option<&'static str> {
        match self {
            RequestError::NotJson | RequestError::NotObject => None,
            RequestError::MissingModel => Some("model"),
            RequestError::BadField { field, .. } => Some(field),
        }
    }
}

/// Why no usage could be read from a response.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    /// The response carries no `usage` (an error body, for instance).
    #[error("the response reports no usage")]
    Missing,
    /// The response's usage is there but unusable: not JSON, a count that is negative, not an
    /// integer or above [`TOKENS_MAX`], or inconsistent.
    #[error("malformed usage: {0}")]
    Malformed(String),
}

/// Parses a request body; the proxy then calls [`request_facts`] on the value.
pub fn parse_request(body: &[u8]) -> Result<Value, RequestError> {
    let value: Value = serde_json::from_slice(body).map_err(|_| RequestError::NotJson)?;
    if value.is_object() {
        Ok(value)
    } else {
        Err(RequestError::NotObject)
    }
}

/// Reads what the proxy needs from a request body (see [`RequestFacts`]). Checks only the
/// fields it reads (`model`, `messages` is an array, `stream`, the output caps, `n`,
/// `stream_options`); everything else is the upstream's to judge.
pub fn request_facts(style: Style, body: &Value) -> Result<RequestFacts, RequestError> {
    let obj = body.as_object().ok_or(RequestError::NotObject)?;
    let model = match obj.get("model") {
        None | Some(Value::Null) => return Err(RequestError::MissingModel),
        Some(Value::String(s)) if s.is_empty() => return Err(RequestError::MissingModel),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(bad_field("model", "Must be a string.")),
    };
    match obj.get("messages") {
        Some(Value::Array(_)) => {}
        None | Some(Value::Null) => return Err(bad_field("messages", "Field required.")),
        Some(_) => return Err(bad_field("messages", "Must be an array.")),
    }
    let stream = match obj.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(bad_field("stream", "Must be a boolean.")),
    };
    match style {
        Style::Anthropic => {
            let max_tokens = output_cap(obj, "max_tokens")?
                .ok_or_else(|| bad_field("max_tokens", "Field required."))?;
            let tools = server_tool_bounds(obj)?;
            Ok(RequestFacts {
                model,
                max_output_tokens: Some(max_tokens),
                choices: 1,
                stream,
                client_wants_usage: true,
                input_tokens_max: anthropic_input_tokens_max(obj),
                web_search_requests_max: tools.search,
                web_fetch_requests_max: tools.fetch,
                server_tools_unbounded: tools.unbounded,
            })
        }
        Style::OpenAi => {
            let max_completion_tokens = output_cap(obj, "max_completion_tokens")?;
            let max_tokens = output_cap(obj, "max_tokens")?;
            let choices = match obj.get("n") {
                None | Some(Value::Null) => 1,
                Some(v) => match v.as_u64() {
                    Some(n) if (1..=CHOICES_MAX).contains(&n) => n,
                    _ => {
                        return Err(bad_field(
                            "n",
                            format!("Must be an integer from 1 to {CHOICES_MAX}."),
                        ))
                    }
                },
            };
            let client_wants_usage = match obj.get("stream_options") {
                None | Some(Value::Null) => false,
                Some(Value::Object(options)) => match options.get("include_usage") {
                    None | Some(Value::Null) => false,
                    Some(Value::Bool(b)) => *b,
                    Some(_) => {
                        return Err(bad_field(
                            "stream_options.include_usage",
                            "Must be a boolean.",
                        ))
                    }
                },
                Some(_) => return Err(bad_field("stream_options", "Must be an object.")),
            };
            Ok(RequestFacts {
                model,
                max_output_tokens: max_completion_tokens.or(max_tokens),
                choices,
                stream,
                client_wants_usage,
                input_tokens_max: openai_input_tokens_max(obj),
                web_search_requests_max: 0,
                web_fetch_requests_max: 0,
                server_tools_unbounded: false,
            })
        }
    }
}

/// What an Anthropic request's server tools may run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct ServerToolBounds {
    search: u64,
    fetch: u64,
    unbounded: bool,
}

/// Which server tool a `tools` entry is, by its versioned `type` (`web_search_20250305`).
fn server_tool_kind(tool: &Map<String, Value>) -> Option<ServerTool> {
    match tool.get("type").and_then(Value::as_str) {
        Some(t) if t.starts_with("web_search_") => Some(ServerTool::WebSearch),
        Some(t) if t.starts_with("web_fetch_") => Some(ServerTool::WebFetch),
        _ => None,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ServerTool {
    WebSearch,
    WebFetch,
}

fn server_tool_bounds(obj: &Map<String, Value>) -> Result<ServerToolBounds, RequestError> {
    let mut bounds = ServerToolBounds::default();
    let Some(Value::Array(tools)) = obj.get("tools") else {
        return Ok(bounds);
    };
    for tool in tools.iter().filter_map(Value::as_object) {
        let Some(kind) = server_tool_kind(tool) else {
            continue;
        };
        let uses = match tool.get("max_uses") {
            None | Some(Value::Null) => {
                bounds.unbounded = true;
                SERVER_TOOL_USES_MAX
            }
            Some(v) => match v.as_u64() {
                Some(n) if (1..=SERVER_TOOL_USES_LIMIT).contains(&n) => n,
                _ => {
                    return Err(bad_field(
                        "tools.max_uses",
                        format!("Must be an integer from 1 to {SERVER_TOOL_USES_LIMIT}."),
                    ))
                }
            },
        };
        match kind {
            ServerTool::WebSearch => bounds.search = bounds.search.saturating_add(uses),
            ServerTool::WebFetch => bounds.fetch = bounds.fetch.saturating_add(uses),
        }
    }
    Ok(bounds)
}

pub(super) fn bad_field(field: &'static str, message: impl Into<String>) -> RequestError {
    RequestError::BadField {
        field,
        message: message.into(),
    }
}

/// An optional output-token cap: absent or null → `None`; else an integer in 1..=TOKENS_MAX.
pub(super) fn output_cap(
    obj: &Map<String, Value>,
    field: &'static str,
) -> Result<Option<u64>, RequestError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if (1..=TOKENS_MAX).contains(&n) => Ok(Some(n)),
            _ => Err(bad_field(
                field,
                format!("Must be an integer from 1 to {TOKENS_MAX}."),
            )),
        },
    }
}

/// Counts bytes written, to size a value's JSON without building it.
struct ByteCount(u64);

impl io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 = self.0.saturating_add(buf.len() as u64);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The bytes of `value` serialized as compact JSON.
pub(super) fn json_len(value: &Value) -> u64 {
    let mut count = ByteCount(0);
    // Writing to a counter cannot fail, and a `Value` always serializes.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// A running input-token upper bound.
pub(super) struct Estimate(pub(super) u64);

impl Estimate {
    pub(super) fn add(&mut self, tokens: u64) {
        self.0 = self.0.saturating_add(tokens);
    }

    /// The serialized JSON bytes of `value` (at least the bytes of every string in it:
    /// serde_json writes non-ASCII characters as raw UTF-8 and escapes only grow).
    pub(super) fn json(&mut self, value: &Value) {
        self.add(json_len(value));
    }

    /// A field the model reads as text: a string's bytes, anything else's JSON bytes, absent
    /// or null nothing.
    pub(super) fn text(&mut self, value: Option<&Value>) {
        match value {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => self.add(s.len() as u64),
            Some(other) => self.json(other),
        }
    }
}

fn anthropic_input_tokens_max(obj: &Map<String, Value>) -> u64 {
    let mut e = Estimate(REQUEST_OVERHEAD_TOKENS);
    anthropic_content(&mut e, obj.get("system"));
    if let Some(Value::Array(messages)) = obj.get("messages") {
        for message in messages {
            e.add(MESSAGE_OVERHEAD_TOKENS);
            match message {
                Value::Object(m) => anthropic_content(&mut e, m.get("content")),
                other => e.json(other),
            }
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
                    None | Some("custom") => {}
                    Some(_) => e.add(BUILTIN_TOOL_TOKENS_MAX),
                }
            }
        }
        other => e.text(other),
    }
    for field in ["mcp_servers", "output_format", "output_config"] {
        if let Some(v) = obj.get(field).filter(|v| !v.is_null()) {
            e.json(v);
        }
    }
    e.0
}

/// Anthropic content: a string, or an array of content blocks.
fn anthropic_content(e: &mut Estimate, content: Option<&Value>) {
    match content {
        Some(Value::Array(blocks)) => {
            for block in blocks {
                anthropic_block(e, block);
            }
        }
        other => e.text(other),
    }
}

fn anthropic_block(e: &mut Estimate, block: &Value) {
    e.add(CONTENT_BLOCK_OVERHEAD_TOKENS);
    let Value::Object(b) = block else {
        e.json(block);
        return;
    };
    match b.get("type").and_then(Value::as_str) {
        Some("text") => e.text(b.get("text")),
        Some("image") => e.add(IMAGE_TOKENS_MAX),
        Some("document") => {
            e.text(b.get("title"));
            e.text(b.get("context"));
            let source = b.get("source");
            match source.and_then(|s| s.get("type")).and_then(Value::as_str) {
                Some("text") => e.text(source.and_then(|s| s.get("data"))),
                Some("content") => anthropic_content(e, source.and_then(|s| s.get("content"))),
                _ => e.add(DOCUMENT_TOKENS_MAX),
            }
        }
        Some("tool_use" | "server_tool_use" | "mcp_tool_use") => {
            e.text(b.get("name"));
            e.text(b.get("server_name"));
            if let Some(input) = b.get("input") {
                e.add(json_len(input).saturating_mul(TOOL_INPUT_TOKENS_PER_BYTE));
            }
        }
        Some("tool_result" | "mcp_tool_result") => anthropic_content(e, b.get("content")),
        Some("thinking") => e.text(b.get("thinking")),
        Some("redacted_thinking") => e.text(b.get("data")),
        Some("search_result") => {
            e.text(b.get("source"));
            e.text(b.get("title"));
            anthropic_content(e, b.get("content"));
        }
        // Anything else (web search results, container uploads, future types): its JSON.
        _ => e.json(block),
    }
}

fn openai_input_tokens_max(obj: &Map<String, Value>) -> u64 {
    let mut e = Estimate(REQUEST_OVERHEAD_TOKENS);
    if let Some(Value::Array(messages)) = obj.get("messages") {
        for message in messages {
            e.add(MESSAGE_OVERHEAD_TOKENS);
            let Value::Object(m) = message else {
                e.json(message);
                continue;
            };
            match m.get("content") {
                Some(Value::Array(parts)) => {
                    for part in parts {
                        openai_part(&mut e, part);
                    }
                }
                other => e.text(other),
            }
            e.text(m.get("name"));
            e.text(m.get("refusal"));
            for field in ["tool_calls", "function_call"] {
                if let Some(v) = m.get(field).filter(|v| !v.is_null()) {
                    e.json(v);
                }
            }
        }
    }
    for field in ["tools", "functions"] {
        match obj.get(field) {
            Some(Value::Array(tools)) => {
                if !tools.is_empty() {
                    e.add(TOOLS_PROMPT_TOKENS_MAX);
                }
                for tool in tools {
                    e.add(TOOL_OVERHEAD_TOKENS);
                    e.json(tool);
                }
            }
            other => e.text(other),
        }
    }
    if let Some(v) = obj.get("response_format").filter(|v| !v.is_null()) {
        e.json(v);
    }
    e.0
}

fn openai_part(e: &mut Estimate, part: &Value) {
    e.add(CONTENT_BLOCK_OVERHEAD_TOKENS);
    let Value::Object(p) = part else {
        e.json(part);
        return;
    };
    match p.get("type").and_then(Value::as_str) {
        Some("text") => e.text(p.get("text")),
        Some("refusal") => e.text(p.get("refusal")),
        Some("image_url") => e.add(IMAGE_TOKENS_MAX),
        Some("input_audio" | "file") => e.add(DOCUMENT_TOKENS_MAX),
        _ => e.json(part),
    }
}

/// The body to send upstream: for an OpenAI stream whose client did not ask for usage, the
/// request with `stream_options.include_usage = true` added (other `stream_options` kept), since
/// the proxy needs the final usage chunk; otherwise `None`, meaning "send the original bytes".
pub fn upstream_body(style: Style, body: &Value, facts: &RequestFacts) -> Option<Vec<u8>> {
    if style == Style::Anthropic && facts.server_tools_unbounded {
        return bound_server_tools(body);
    }
    if style != Style::OpenAi || !facts.stream || facts.client_wants_usage {
        return None;
    }
    let mut body = body.clone();
    let obj = body.as_object_mut()?;
    let options = obj
        .entry("stream_options")
        .or_insert_with(|| Value::Object(Map::new()));
    if !options.is_object() {
        *options = Value::Object(Map::new());
    }
    options
        .as_object_mut()?
        .insert("include_usage".to_owned(), Value::Bool(true));
    serde_json::to_vec(&body).ok()
}

/// `body` with `max_uses` [`SERVER_TOOL_USES_MAX`] on each server tool that sets none.
fn bound_server_tools(body: &Value) -> Option<Vec<u8>> {
    let mut body = body.clone();
    let tools = body.get_mut("tools")?.as_array_mut()?;
    for tool in tools.iter_mut().filter_map(Value::as_object_mut) {
        let unset = matches!(tool.get("max_uses"), None | Some(Value::Null));
        if unset && server_tool_kind(tool).is_some() {
            tool.insert("max_uses".to_owned(), Value::from(SERVER_TOOL_USES_MAX));
        }
    }
    serde_json::to_vec(&body).ok()
}

/// Usage reported in a non-streamed response body.
///
/// Anthropic `usage`: `input_tokens`, `output_tokens`, `cache_creation_input_tokens` (→
/// `cache_write_tokens`), `cache_read_input_tokens` (→ `cache_read_tokens`); missing or null
/// cache fields are 0. OpenAI `usage`: `prompt_tokens`, `completion_tokens` (reasoning tokens
/// included), `prompt_tokens_details.cached_tokens`; cached tokens are part of the prompt
/// tokens, so `input_tokens = prompt_tokens − cached_tokens` and `cache_read_tokens =
/// cached_tokens`. A body without `usage` (or with `"usage": null`) is [`UsageError::Missing`].
pub fn usage_from_body(style: Style, body: &[u8]) -> Result<Usage, UsageError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| UsageError::Malformed("the response body is not JSON".to_owned()))?;
    usage_from_value(style, &value)
}

/// [`usage_from_body`] for an already parsed body.
pub fn usage_from_value(style: Style, body: &Value) -> Result<Usage, UsageError> {
    let Value::Object(obj) = body else {
        return Err(UsageError::Malformed(
            "the response body is not a JSON object".to_owned(),
        ));
    };
    match obj.get("usage") {
        None | Some(Value::Null) => Err(UsageError::Missing),
        Some(Value::Object(usage)) => match style {
            Style::Anthropic => anthropic_usage(usage),
            Style::OpenAi => openai_usage(usage),
        },
        Some(_) => Err(UsageError::Malformed("usage is not an object".to_owned())),
    }
}

/// A token count: absent or null → `None`; else an integer in 0..=TOKENS_MAX.
pub(super) fn token_count(
    usage: &Map<String, Value>,
    field: &str,
) -> Result<Option<u64>, UsageError> {
    match usage.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if n <= TOKENS_MAX => Ok(Some(n)),
            _ => Err(UsageError::Malformed(format!(
                "usage.{field} is not an integer from 0 to {TOKENS_MAX}: {v}"
            ))),
        },
    }
}

pub(super) fn required_count(usage: &Map<String, Value>, field: &str) -> Result<u64, UsageError> {
    token_count(usage, field)?
        .ok_or_else(|| UsageError::Malformed(format!("usage.{field} is missing")))
}

/// A count inside an object of `usage` (`usage.{details}.{field}`): the object or the count
/// absent or null → `None`.
pub(super) fn detail(
    usage: &Map<String, Value>,
    details: &str,
    field: &str,
) -> Result<Option<u64>, UsageError> {
    match usage.get(details) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(d)) => token_count(d, field).map_err(|e| match e {
            UsageError::Malformed(m) => {
                UsageError::Malformed(m.replacen("usage.", &format!("usage.{details}."), 1))
            }
            other => other,
        }),
        Some(_) => Err(UsageError::Malformed(format!(
            "usage.{details} is not an object"
        ))),
    }
}

/// Anthropic's cache writes as reported: the total `cache_creation_input_tokens` and its split
/// by lifetime, `cache_creation` {`ephemeral_5m_input_tokens`, `ephemeral_1h_input_tokens`}.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct CacheWrites {
    total: Option<u64>,
    /// (5-minute, 1-hour), when `cache_creation` says.
    split: Option<(u64, u64)>,
}

impl CacheWrites {
    /// As (5-minute, 1-hour) tokens, given the split reported earlier (a stream's
    /// `message_start`; (0, 0) for a body) for when this report has none. Where the total is
    /// above the split's sum, the rest counts as 5-minute writes; where it is below, the split
    /// counts: a call is never charged less than either says.
    fn resolve(self, earlier: (u64, u64)) -> (u64, u64) {
        let (five, hour) = self.split.unwrap_or(earlier);
        let rest = self
            .total
            .unwrap_or(0)
            .saturating_sub(five.saturating_add(hour));
        (five.saturating_add(rest), hour)
    }
}

/// The cache writes a usage object reports, `None` when it has none of their fields.
fn anthropic_cache_writes(usage: &Map<String, Value>) -> Result<Option<CacheWrites>, UsageError> {
    let total = token_count(usage, "cache_creation_input_tokens")?;
    let five = detail(usage, "cache_creation", "ephemeral_5m_input_tokens")?;
    let hour = detail(usage, "cache_creation", "ephemeral_1h_input_tokens")?;
    let split = (five.is_some() || hour.is_some()).then(|| (five.unwrap_or(0), hour.unwrap_or(0)));
    Ok((total.is_some() || split.is_some()).then_some(CacheWrites { total, split }))
}

/// Anthropic's server-tool requests as (web searches, web fetches) from `server_tool_use`,
/// `None` when it is absent.
fn anthropic_tool_requests(usage: &Map<String, Value>) -> Result<Option<(u64, u64)>, UsageError> {
    let search = detail(usage, "server_tool_use", "web_search_requests")?;
    let fetch = detail(usage, "server_tool_use", "web_fetch_requests")?;
    if search.is_none() && fetch.is_none() {
        return Ok(None);
    }
    Ok(Some((search.unwrap_or(0), fetch.unwrap_or(0))))
}

fn anthropic_usage(usage: &Map<String, Value>) -> Result<Usage, UsageError> {
    let (cache_write_tokens, cache_write_1h_tokens) = anthropic_cache_writes(usage)?
        .unwrap_or_default()
        .resolve((0, 0));
    let (web_search_requests, web_fetch_requests) =
        anthropic_tool_requests(usage)?.unwrap_or_default();
    Ok(Usage {
        input_tokens: required_count(usage, "input_tokens")?,
        output_tokens: required_count(usage, "output_tokens")?,
        cache_write_tokens,
        cache_write_1h_tokens,
        cache_read_tokens: token_count(usage, "cache_read_input_tokens")?.unwrap_or(0),
        web_search_requests,
        web_fetch_requests,
    })
}

fn openai_usage(usage: &Map<String, Value>) -> Result<Usage, UsageError> {
    let prompt = required_count(usage, "prompt_tokens")?;
    let completion = required_count(usage, "completion_tokens")?;
    let cached = detail(usage, "prompt_tokens_details", "cached_tokens")?.unwrap_or(0);
    let input = prompt.checked_sub(cached).ok_or_else(|| {
        UsageError::Malformed(format!(
            "usage.prompt_tokens_details.cached_tokens ({cached}) exceeds usage.prompt_tokens ({prompt})"
        ))
    })?;
    Ok(Usage {
        input_tokens: input,
        output_tokens: completion,
        cache_read_tokens: cached,
        ..Usage::default()
    })
}

/// The usage a [`StreamMeter`] has seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamUsage {
    /// The usage seen so far, `None` if none was reported. Anthropic: input and cache counts
    /// from `message_start` (overridden by the last `message_delta` where it carries them),
    /// output from the last `message_delta`, else from `message_start`. OpenAI: the last
    /// non-null chunk `usage`.
    pub usage: Option<Usage>,
    /// Whether the stream reported its final usage. Anthropic: `message_start`, a
    /// `message_delta` with usage and `message_stop` were all seen. OpenAI: the usage chunk
    /// (`"choices": []` with a `usage` object) was seen, or a usage and then `data: [DONE]`.
    pub complete: bool,
    /// Whether some event could not be read: data that is not a JSON object, a usage with bad
    /// counts, a `message_start` without usage, or an event over [`EVENT_BYTES_MAX`] (passed on
    /// unparsed). `usage` is still what was seen; whether to trust it is the caller's call.
    pub malformed: bool,
}

/// Output usage from an Anthropic `message_delta`; the other counts only if present.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct DeltaUsage {
    output_tokens: u64,
    input_tokens: Option<u64>,
    cache_writes: Option<CacheWrites>,
    cache_read_tokens: Option<u64>,
    /// (web searches, web fetches).
    tool_requests: Option<(u64, u64)>,
}

/// Watches a server-sent-events stream as it passes: meters usage, and for OpenAI streams whose
/// client did not ask for usage, removes the usage-only chunk the proxy asked for.
///
/// Events end at a blank line; lines end with LF or CRLF (a lone CR is not a line end). Comment
/// lines (`: ping`) and fields other than `data` are ignored; several `data:` lines of one event
/// are joined with `\n`. Memory is bounded by [`EVENT_BYTES_MAX`] per stream.
#[derive(Debug)]
pub struct StreamMeter {
    style: Style,
    /// OpenAI and the client did not ask for usage: hold each event until its end, and drop the
    /// usage chunk.
    swallow_usage_chunk: bool,
    /// The current line so far, without its LF (only its first 2 bytes once `oversized`).
    line: Vec<u8>,
    /// The current event's `data` lines, joined with `\n`.
    data: Vec<u8>,
    /// Whether the current event has a `data` line (possibly empty).
    has_data: bool,
    /// The current event's raw bytes not yet passed on (only when swallowing).
    held: Vec<u8>,
    /// The current event's raw bytes so far.
    event_bytes: usize,
    /// The current event is over [`EVENT_BYTES_MAX`]: passed through, not parsed.
    oversized: bool,
    finished: bool,
    malformed: bool,
    anthropic_start: Option<Usage>,
    anthropic_delta: Option<DeltaUsage>,
    anthropic_stopped: bool,
    openai_usage: Option<Usage>,
    openai_usage_chunk_seen: bool,
    openai_done: bool,
    /// An OpenAI Responses stream (`response.*` events; see [`StreamMeter::responses`]).
    responses: bool,
    /// The usage of its terminal event, once seen.
    responses_usage: Option<Usage>,
    /// Whether its terminal event (`response.completed`, `.incomplete` or `.failed`) was seen.
    responses_done: bool,
}

impl StreamMeter {
    /// A meter for a response stream of `style`. `pass_usage_chunk` is whether the client asked
    /// for usage ([`RequestFacts::client_wants_usage`]); it only matters for OpenAI streams.
    pub fn new(style: Style, pass_usage_chunk: bool) -> StreamMeter {
        StreamMeter {
            style,
            swallow_usage_chunk: style == Style::OpenAi && !pass_usage_chunk,
            line: Vec::new(),
            data: Vec::new(),
            has_data: false,
            held: Vec::new(),
            event_bytes: 0,
            oversized: false,
            finished: false,
            malformed: false,
            anthropic_start: None,
            anthropic_delta: None,
            anthropic_stopped: false,
            openai_usage: None,
            openai_usage_chunk_seen: false,
            openai_done: false,
            responses: false,
            responses_usage: None,
            responses_done: false,
        }
    }

    /// A meter for an OpenAI Responses API stream: every event passes through unchanged; the
    /// usage is the `response.usage` of its terminal event (`response.completed`,
    /// `response.incomplete` or `response.failed`, read by
    /// [`super::endpoints::responses_event`]), and the stream is complete once that event
    /// carried a well-formed usage.
    pub fn responses() -> StreamMeter {
        StreamMeter {
            responses: true,
            ..StreamMeter::new(Style::OpenAi, true)
        }
    }

    /// Feeds bytes as they arrive from upstream; returns the bytes to pass to the client now.
    /// Everything is passed through unchanged and without waiting, except (OpenAI,
    /// `!pass_usage_chunk`) an event whose data is a chunk with `"choices": []` and a `usage`
    /// object, which is swallowed: to decide that, bytes are held back only until the end of the
    /// current event (its blank line), or until it exceeds [`EVENT_BYTES_MAX`]. After
    /// [`StreamMeter::finish`], bytes are passed through unread.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        if self.finished {
            return chunk.to_vec();
        }
        let mut out = Vec::new();
        if !self.swallow_usage_chunk {
            out.extend_from_slice(chunk);
        }
        let mut rest = chunk;
        while !rest.is_empty() {
            match rest.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    let (part, after) = rest.split_at(i + 1);
                    self.take(part, &part[..i], &mut out);
                    self.end_line(&mut out);
                    rest = after;
                }
                None => {
                    self.take(rest, rest, &mut out);
                    rest = &[];
                }
            }
        }
        out
    }

    /// At the end of the stream (or when it is cut): the bytes still held back (to pass on), and
    /// the usage seen. A last event not followed by a blank line counts if its last line is
    /// complete (ends with LF); a cut line is not parsed. Calling it again returns no bytes.
    pub fn finish(&mut self) -> (Vec<u8>, StreamUsage) {
        let mut out = Vec::new();
        if !self.finished {
            if self.line.is_empty() {
                self.end_event(&mut out);
            } else {
                out.append(&mut self.held);
            }
            self.finished = true;
            self.line = Vec::new();
            self.data = Vec::new();
            self.held = Vec::new();
        }
        (out, self.usage())
    }

    /// The usage seen so far (without finishing).
    pub fn usage(&self) -> StreamUsage {
        if self.responses {
            return StreamUsage {
                usage: self.responses_usage,
                complete: self.responses_done && self.responses_usage.is_some(),
                malformed: self.malformed,
            };
        }
        let (usage, complete) = match self.style {
            Style::Anthropic => {
                let usage = match (self.anthropic_start, self.anthropic_delta) {
                    (None, None) => None,
                    (start, delta) => {
                        let mut u = start.unwrap_or_default();
                        if let Some(d) = delta {
                            u.output_tokens = d.output_tokens;
                            u.input_tokens = d.input_tokens.unwrap_or(u.input_tokens);
                            if let Some(writes) = d.cache_writes {
                                (u.cache_write_tokens, u.cache_write_1h_tokens) =
                                    writes.resolve((u.cache_write_tokens, u.cache_write_1h_tokens));
                            }
                            u.cache_read_tokens =
                                d.cache_read_tokens.unwrap_or(u.cache_read_tokens);
                            if let Some((search, fetch)) = d.tool_requests {
                                u.web_search_requests = search;
                                u.web_fetch_requests = fetch;
                            }
                        }
                        Some(u)
                    }
                };
                let complete = self.anthropic_start.is_some()
                    && self.anthropic_delta.is_some()
                    && self.anthropic_stopped;
                (usage, complete)
            }
            Style::OpenAi => (
                self.openai_usage,
                self.openai_usage.is_some() && (self.openai_usage_chunk_seen || self.openai_done),
            ),
        };
        StreamUsage {
            usage,
            complete,
            malformed: self.malformed,
        }
    }

    /// Takes the raw bytes `part` of the current line (`content`: without its LF).
    fn take(&mut self, part: &[u8], content: &[u8], out: &mut Vec<u8>) {
        self.event_bytes = self.event_bytes.saturating_add(part.len());
        if !self.oversized && self.event_bytes > EVENT_BYTES_MAX {
            // Too long to hold or parse: pass on what was held, stop buffering until the event
            // ends. Only the first 2 bytes of a line are kept, enough to see a blank line.
            self.oversized = true;
            self.malformed = true;
            out.append(&mut self.held);
            self.data = Vec::new();
            self.has_data = false;
            self.line.truncate(2);
            self.line.shrink_to_fit();
            self.held.shrink_to_fit();
        }
        if self.swallow_usage_chunk {
            if self.oversized {
                out.extend_from_slice(part);
            } else {
                self.held.extend_from_slice(part);
            }
        }
        if self.oversized {
            let room = 2usize.saturating_sub(self.line.len()).min(content.len());
            self.line.extend_from_slice(&content[..room]);
        } else {
            self.line.extend_from_slice(content);
        }
    }

    /// The current line ended (its LF was taken).
    fn end_line(&mut self, out: &mut Vec<u8>) {
        let mut line = std::mem::take(&mut self.line);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.is_empty() {
            self.line = line;
            self.end_event(out);
            return;
        }
        if !self.oversized && line[0] != b':' {
            let (name, value) = match line.iter().position(|&b| b == b':') {
                Some(i) => {
                    let value = &line[i + 1..];
                    (&line[..i], value.strip_prefix(b" ").unwrap_or(value))
                }
                None => (&line[..], &[][..]),
            };
            if name == b"data" {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
        }
        line.clear();
        self.line = line;
    }

    /// The current event ended: meter it, and pass on or drop its held bytes.
    fn end_event(&mut self, out: &mut Vec<u8>) {
        let swallow = !self.oversized && self.has_data && self.dispatch();
        if swallow {
            self.held.clear();
        } else {
            out.append(&mut self.held);
        }
        self.data.clear();
        self.has_data = false;
        self.event_bytes = 0;
        self.oversized = false;
        for buffer in [&mut self.held, &mut self.data, &mut self.line] {
            if buffer.capacity() > BUFFER_RETAINED_BYTES_MAX {
                *buffer = Vec::new();
            }
        }
    }

    /// Meters the current event's data; returns whether to swallow the event.
    fn dispatch(&mut self) -> bool {
        let data = std::mem::take(&mut self.data);
        let swallow = match self.style {
            Style::OpenAi if self.responses => {
                self.responses_event(&data);
                false
            }
            Style::OpenAi => self.openai_event(&data),
            Style::Anthropic => {
                self.anthropic_event(&data);
                false
            }
        };
        self.data = data;
        swallow
    }

    fn openai_event(&mut self, data: &[u8]) -> bool {
        if data == b"[DONE]" {
            self.openai_done = true;
            return false;
        }
        let Ok(Value::Object(chunk)) = serde_json::from_slice::<Value>(data) else {
            self.malformed = true;
            return false;
        };
        let usage_chunk = matches!(chunk.get("choices"), Some(Value::Array(c)) if c.is_empty());
        match chunk.get("usage") {
            None | Some(Value::Null) => false,
            Some(Value::Object(usage)) => {
                match openai_usage(usage) {
                    Ok(usage) => {
                        self.openai_usage = Some(usage);
                        self.openai_usage_chunk_seen |= usage_chunk;
                    }
                    Err(_) => self.malformed = true,
                }
                usage_chunk && self.swallow_usage_chunk
            }
            Some(_) => {
                self.malformed = true;
                false
            }
        }
    }

    fn responses_event(&mut self, data: &[u8]) {
        match super::endpoints::responses_event(data) {
            super::endpoints::ResponsesEvent::Other => {}
            super::endpoints::ResponsesEvent::Malformed => self.malformed = true,
            super::endpoints::ResponsesEvent::Terminal(usage) => {
                // The first terminal event counts: a stream has one.
                if !self.responses_done {
                    self.responses_done = true;
                    match usage {
                        Ok(usage) => self.responses_usage = Some(usage),
                        Err(UsageError::Missing) => {}
                        Err(UsageError::Malformed(_)) => self.malformed = true,
                    }
                }
            }
        }
    }

    fn anthropic_event(&mut self, data: &[u8]) {
        let Ok(Value::Object(event)) = serde_json::from_slice::<Value>(data) else {
            self.malformed = true;
            return;
        };
        match event.get("type").and_then(Value::as_str) {
            Some("message_start") => match event.get("message").and_then(|m| m.get("usage")) {
                Some(Value::Object(usage)) => match anthropic_usage(usage) {
                    Ok(usage) => self.anthropic_start = Some(usage),
                    Err(_) => self.malformed = true,
                },
                _ => self.malformed = true,
            },
            Some("message_delta") => match event.get("usage") {
                None | Some(Value::Null) => {}
                Some(Value::Object(usage)) => match anthropic_delta_usage(usage) {
                    Ok(delta) => self.anthropic_delta = Some(delta),
                    Err(_) => self.malformed = true,
                },
                Some(_) => self.malformed = true,
            },
            Some("message_stop") => self.anthropic_stopped = true,
            _ => {}
        }
    }
}

fn anthropic_delta_usage(usage: &Map<String, Value>) -> Result<DeltaUsage, UsageError> {
    Ok(DeltaUsage {
        output_tokens: required_count(usage, "output_tokens")?,
        input_tokens: token_count(usage, "input_tokens")?,
        cache_writes: anthropic_cache_writes(usage)?,
        cache_read_tokens: token_count(usage, "cache_read_input_tokens")?,
        tool_requests: anthropic_tool_requests(usage)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
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
                >= REQUEST_OVERHEAD_TOKENS
                    + 2 * MESSAGE_OVERHEAD_TOKENS
                    + args.len() as u64
                    + 19
                    + 2
        );

        let input = json!({"location": "San Francisco, CA"});
        let input_len = serde_json::to_vec(&input).unwrap().len() as u64;
        let anthropic = input_max(
            Style::Anthropic,
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": input}]}]}),
        );
        assert!(
            anthropic >= REQUEST_OVERHEAD_TOKENS + MESSAGE_OVERHEAD_TOKENS + 2 * input_len + 11
        );

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
        assert!(
            builtin > REQUEST_OVERHEAD_TOKENS + TOOLS_PROMPT_TOKENS_MAX + BUILTIN_TOOL_TOKENS_MAX
        );

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
        assert_eq!(upstream_body(Style::Anthropic, &bounded, &facts), None);

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
            serde_json::from_slice(&upstream_body(Style::Anthropic, &open, &facts).unwrap())
                .unwrap();
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
                held_max = held_max.max(meter.held.len() + meter.data.len() + meter.line.len());
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
        assert!(meter.line.len() <= 2 && meter.held.is_empty());
    }

    /// Fragments that make SSE-ish byte streams with every framing feature (and garbage).
    const FRAGMENTS: [&str; 18] = [
        "data: ", "data:", "event: message_start\n", ": ping\n", "\n", "\r\n", "\r",
        "{\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2}}",
        "{\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}",
        "{\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":7,\"output_tokens\":1}}}",
        "{\"type\":\"message_delta\",\"usage\":{\"output_tokens\":9}}",
        "{\"type\":\"message_stop\"}", "[DONE]", "{\"choi", "ces\":[]}", "x", "é", "\n\n",
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
}
