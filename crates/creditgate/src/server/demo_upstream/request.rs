//! What a demo upstream request asks for: the test hooks of its headers ([`Hooks`]) and, for a
//! valid body, the model, streaming and the token counts ([`Ask`]).

use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;

use super::usage::{anthropic_input_tokens, openai_input_tokens, output_tokens};
use super::{Style, DEFAULT_MAX_TOKENS, DELAY_MS_MAX, REPLY, REPLY_WORDS};

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
    pub(super) output_tokens: u64,
}

impl Ask {
    pub(super) fn parse(style: Style, body: &[u8]) -> Result<Ask, String> {
        let request: Value = serde_json::from_slice(body)
            .map_err(|e| format!("The body is not valid JSON: {e}."))?;
        if !request.is_object() {
            return Err("The body must be a JSON object.".into());
        }
        let model = request
            .get("model")
            .and_then(Value::as_str)
            .filter(|model| !model.is_empty())
            .ok_or("model: a non-empty string is required.")?
            .to_owned();
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
        let stream = match request.get("stream") {
            None | Some(Value::Null) => false,
            Some(value) => value.as_bool().ok_or("stream: a boolean is required.")?,
        };
        let include_usage = request
            .get("stream_options")
            .and_then(|options| options.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let input_tokens = match style {
            Style::Anthropic => anthropic_input_tokens(&request),
            Style::OpenAi => openai_input_tokens(&request),
        };
        Ok(Ask {
            model,
            stream,
            include_usage,
            input_tokens,
            output_tokens: output_tokens(limit),
        })
    }

    /// The reply's words, one per output token.
    pub(super) fn words(&self) -> Vec<&'static str> {
        REPLY
            .split_whitespace()
            .take(usize::try_from(self.output_tokens).unwrap_or(usize::MAX))
            .collect()
    }

    pub(super) fn truncated(&self) -> bool {
        self.output_tokens < REPLY_WORDS
    }
}
