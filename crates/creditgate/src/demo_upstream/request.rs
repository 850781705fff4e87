//! What a demo upstream request asks for: the test hooks of its headers ([`Hooks`]) and, for a
//! valid body, the model, streaming and the token counts ([`Ask`] for Messages, Chat
//! Completions, Responses and token counting; [`EmbeddingsAsk`] for embeddings).

use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;

use super::usage::{
    anthropic_cache_writes, anthropic_input_tokens, anthropic_server_tool_requests, cached_tokens,
    embedding_input_tokens, openai_input_tokens, output_tokens, responses_input_tokens,
    EMBEDDING_DIMENSIONS_MAX, REASONING_TOKENS,
};
use super::{
    Style, DEFAULT_EMBEDDING_DIMENSIONS, DEFAULT_MAX_TOKENS, DELAY_MS_MAX, REPLY, REPLY_WORDS,
};

/// What the request's hook headers ask for.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Hooks {
    pub(super) status: Option<StatusCode>,
    pub(super) delay: Duration,
    pub(super) malformed_usage: bool,
    pub(super) cut_after: Option<usize>,
    pub(super) event_delay: Option<Duration>,
}

impl Hooks {
    pub(super) fn parse(headers: &HeaderMap) -> Result<Hooks, String> {
        let number = |name: &str| -> Result<Option<u64>, String> {
            match headers.get(name) {
                None => Ok(None),
                Some(value) => value
                    .to_str()
                    .ok()
                    .and_then(|text| text.trim().parse::<u64>().ok())
                    .map(Some)
                    .ok_or_else(|| format!("{name} must be a whole number.")),
            }
        };
        let delay = |ms: u64| Duration::from_millis(ms.min(DELAY_MS_MAX));
        let status = match number("x-demo-status")? {
            None => None,
            Some(code) => Some(
                u16::try_from(code)
                    .ok()
                    .filter(|code| (400..=599).contains(code))
                    .and_then(|code| StatusCode::from_u16(code).ok())
                    .ok_or_else(|| "x-demo-status must be from 400 to 599.".to_owned())?,
            ),
        };
        Ok(Hooks {
            status,
            delay: number("x-demo-delay-ms")?.map_or(Duration::ZERO, delay),
            malformed_usage: number("x-demo-malformed-usage")?.is_some_and(|n| n != 0),
            cut_after: number("x-demo-cut-stream")?
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
            event_delay: number("x-demo-event-delay-ms")?.map(delay),
        })
    }
}

/// What a valid request asks for.
pub(super) struct Ask {
    pub(super) model: String,
    pub(super) stream: bool,
    pub(super) include_usage: bool,
    pub(super) input_tokens: u64,
    /// All output tokens, reasoning included.
    pub(super) output_tokens: u64,
    /// Of the output tokens, those spent reasoning (Responses with `reasoning` only).
    pub(super) reasoning_tokens: u64,
    /// Of the input tokens, those read from the cache (Responses only).
    pub(super) cached_tokens: u64,
    /// Tokens written to the 5-minute and the 1-hour cache (Anthropic only), not counted in
    /// `input_tokens`.
    pub(super) cache_writes: (u64, u64),
    /// Web searches and fetches run (Anthropic requests with server tools only).
    pub(super) server_tools: Option<(u64, u64)>,
    /// The request as sent (a Responses answer echoes some of it).
    pub(super) request: Value,
}

impl Ask {
    pub(super) fn parse(style: Style, body: &[u8]) -> Result<Ask, String> {
        let request = object(body)?;
        let model = model(&request)?;
        if !request.get("messages").is_some_and(Value::is_array) {
            return Err("messages: an array is required.".into());
        }
        let limit_fields: &[&str] = match style {
            Style::Anthropic => &["max_tokens"],
            Style::OpenAi => &["max_completion_tokens", "max_tokens"],
        };
        let mut limit = DEFAULT_MAX_TOKENS;
        for field in limit_fields {
            match request.get(*field) {
                None | Some(Value::Null) => continue,
                Some(value) => {
                    limit = value
                        .as_u64()
                        .ok_or_else(|| format!("{field}: a whole number is required."))?;
                    break;
                }
            }
        }
        let stream = flag(&request, "stream")?;
        let include_usage = request
            .get("stream_options")
            .and_then(|options| options.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let (input_tokens, cache_writes, server_tools) = match style {
            Style::Anthropic => {
                let (five, hour) = anthropic_cache_writes(&request);
                let input = anthropic_input_tokens(&request)
                    .saturating_sub(five.saturating_add(hour))
                    .max(1);
                (
                    input,
                    (five, hour),
                    anthropic_server_tool_requests(&request),
                )
            }
            Style::OpenAi => (openai_input_tokens(&request), (0, 0), None),
        };
        Ok(Ask {
            model,
            stream,
            include_usage,
            input_tokens,
            output_tokens: output_tokens(limit),
            reasoning_tokens: 0,
            cached_tokens: 0,
            cache_writes,
            server_tools,
            request,
        })
    }

    /// A Responses API request: `model`, `input` (a string or an array), `max_output_tokens`,
    /// `stream`, `reasoning`.
    pub(super) fn parse_responses(body: &[u8]) -> Result<Ask, String> {
        let request = object(body)?;
        let model = model(&request)?;
        match request.get("input") {
            None | Some(Value::Null | Value::String(_) | Value::Array(_)) => {}
            Some(_) => return Err("input: a string or an array is required.".into()),
        }
        let limit = match request.get("max_output_tokens") {
            None | Some(Value::Null) => DEFAULT_MAX_TOKENS,
            Some(value) => value
                .as_u64()
                .ok_or("max_output_tokens: a whole number is required.")?,
        };
        let stream = flag(&request, "stream")?;
        let thinks = request.get("reasoning").is_some_and(|r| !r.is_null());
        let reasoning = if thinks { REASONING_TOKENS } else { 0 };
        let input_tokens = responses_input_tokens(&request);
        Ok(Ask {
            model,
            stream,
            include_usage: true,
            input_tokens,
            output_tokens: limit.min(reasoning + REPLY_WORDS),
            reasoning_tokens: limit.min(reasoning),
            cached_tokens: cached_tokens(input_tokens),
            cache_writes: (0, 0),
            server_tools: None,
            request,
        })
    }

    /// The output tokens that are reply words.
    pub(super) fn reply_tokens(&self) -> u64 {
        self.output_tokens.saturating_sub(self.reasoning_tokens)
    }

    /// The reply's words, one per reply token.
    pub(super) fn words(&self) -> Vec<&'static str> {
        REPLY
            .split_whitespace()
            .take(usize::try_from(self.reply_tokens()).unwrap_or(usize::MAX))
            .collect()
    }

    /// Whether the output limit cut the reply short.
    pub(super) fn truncated(&self) -> bool {
        self.reply_tokens() < REPLY_WORDS
    }
}

/// What a valid embeddings request asks for.
pub(super) struct EmbeddingsAsk {
    pub(super) model: String,
    /// Each input's token count, and the bytes its vector is made from.
    pub(super) inputs: Vec<(u64, Vec<u8>)>,
    pub(super) dimensions: usize,
    pub(super) base64: bool,
}

impl EmbeddingsAsk {
    /// `model`, `input` (a string, strings, token ids or token-id arrays), `dimensions`,
    /// `encoding_format` (`float`, the default, or `base64`).
    pub(super) fn parse(body: &[u8]) -> Result<EmbeddingsAsk, String> {
        let request = object(body)?;
        let model = model(&request)?;
        const WHAT: &str = "input: a non-empty string, or a non-empty array of strings, token ids \
                            or token-id arrays, is required.";
        let tokens = |ids: &[Value]| -> Result<(u64, Vec<u8>), String> {
            let mut seed = Vec::new();
            for id in ids {
                seed.extend_from_slice(&id.as_u64().ok_or(WHAT)?.to_le_bytes());
            }
            Ok((ids.len() as u64, seed))
        };
        let text = |text: &str| -> Result<(u64, Vec<u8>), String> {
            if text.is_empty() {
                return Err(WHAT.into());
            }
            Ok((embedding_input_tokens(text), text.as_bytes().to_vec()))
        };
        let inputs = match request.get("input") {
            Some(Value::String(s)) => vec![text(s)?],
            Some(Value::Array(items)) if !items.is_empty() && items.iter().all(Value::is_u64) => {
                vec![tokens(items)?]
            }
            Some(Value::Array(items)) if !items.is_empty() => items
                .iter()
                .map(|item| match item {
                    Value::String(s) => text(s),
                    Value::Array(ids) if !ids.is_empty() => tokens(ids),
                    _ => Err(WHAT.into()),
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(WHAT.into()),
        };
        let dimensions = match request.get("dimensions") {
            None | Some(Value::Null) => DEFAULT_EMBEDDING_DIMENSIONS,
            Some(value) => value
                .as_u64()
                .filter(|n| (1..=EMBEDDING_DIMENSIONS_MAX).contains(n))
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| {
                    format!("dimensions: a whole number from 1 to {EMBEDDING_DIMENSIONS_MAX} is required.")
                })?,
        };
        let base64 = match request.get("encoding_format") {
            None | Some(Value::Null) => false,
            Some(Value::String(format)) if format == "float" => false,
            Some(Value::String(format)) if format == "base64" => true,
            Some(_) => return Err("encoding_format: \"float\" or \"base64\" is required.".into()),
        };
        Ok(EmbeddingsAsk {
            model,
            inputs,
            dimensions,
            base64,
        })
    }

    /// The usage's `prompt_tokens`: the inputs' tokens.
    pub(super) fn input_tokens(&self) -> u64 {
        self.inputs.iter().map(|(tokens, _)| tokens).sum()
    }
}

fn object(body: &[u8]) -> Result<Value, String> {
    let request: Value =
        serde_json::from_slice(body).map_err(|e| format!("The body is not valid JSON: {e}."))?;
    if request.is_object() {
        Ok(request)
    } else {
        Err("The body must be a JSON object.".into())
    }
}

fn model(request: &Value) -> Result<String, String> {
    Ok(request
        .get("model")
        .and_then(Value::as_str)
        .filter(|model| !model.is_empty())
        .ok_or("model: a non-empty string is required.")?
        .to_owned())
}

fn flag(request: &Value, field: &str) -> Result<bool, String> {
    match request.get(field) {
        None | Some(Value::Null) => Ok(false),
        Some(value) => value
            .as_bool()
            .ok_or_else(|| format!("{field}: a boolean is required.")),
    }
}
