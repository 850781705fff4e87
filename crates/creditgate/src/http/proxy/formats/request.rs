//! Requests: what a Messages or Chat Completions request says (model, output cap, streaming,
//! server tools) and the body sent upstream.
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
//! [`SERVER_TOOL_USES_MAX`](super::SERVER_TOOL_USES_MAX) (see [`upstream_body`]), so the hold's worst case covers every
//! request the provider can run.

use std::io;

use serde_json::{Map, Value};

use super::tools::{bound_server_tools, server_tool_bounds};
use super::Style;
use creditgate_domain::pricing::TOKENS_MAX;

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
    /// [`StreamMeter`](super::StreamMeter) (with `pass_usage_chunk = false`) removes the extra chunk.
    pub client_wants_usage: bool,
    /// A conservative upper bound of the request's input tokens (see the module documentation).
    pub input_tokens_max: u64,
    /// The most web searches the provider may run for the call: the sum of the `max_uses` of
    /// the request's Anthropic `web_search_*` tools ([`SERVER_TOOL_USES_MAX`](super::SERVER_TOOL_USES_MAX) for one that
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

pub(in crate::http::proxy) fn bad_field(
    field: &'static str,
    message: impl Into<String>,
) -> RequestError {
    RequestError::BadField {
        field,
        message: message.into(),
    }
}

/// An optional output-token cap: absent or null → `None`; else an integer in 1..=TOKENS_MAX.
pub(in crate::http::proxy) fn output_cap(
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
pub(in crate::http::proxy) fn json_len(value: &Value) -> u64 {
    let mut count = ByteCount(0);
    // Writing to a counter cannot fail, and a `Value` always serializes.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// A running input-token upper bound.
pub(in crate::http::proxy) struct Estimate(pub(in crate::http::proxy) u64);

impl Estimate {
    pub(in crate::http::proxy) fn add(&mut self, tokens: u64) {
        self.0 = self.0.saturating_add(tokens);
    }

    /// The serialized JSON bytes of `value` (at least the bytes of every string in it:
    /// serde_json writes non-ASCII characters as raw UTF-8 and escapes only grow).
    pub(in crate::http::proxy) fn json(&mut self, value: &Value) {
        self.add(json_len(value));
    }

    /// A field the model reads as text: a string's bytes, anything else's JSON bytes, absent
    /// or null nothing.
    pub(in crate::http::proxy) fn text(&mut self, value: Option<&Value>) {
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
/// the proxy needs the final usage chunk; for an Anthropic request with server tools, the
/// request as read, each tool with a `max_uses`; otherwise `None`, meaning "send the original
/// bytes".
pub fn upstream_body(style: Style, body: &Value, facts: &RequestFacts) -> Option<Vec<u8>> {
    // With server tools, what is sent is what was read (a body with a repeated key could
    // otherwise mean one bound here and another upstream), and each tool has its max_uses.
    let has_server_tools = facts.web_search_requests_max > 0 || facts.web_fetch_requests_max > 0;
    if style == Style::Anthropic && has_server_tools {
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
