//! Usage reported in a non-streamed response body, and the readers of counts the stream
//! meter shares.

use creditgate_domain::pricing::{Usage, TOKENS_MAX};
use serde_json::{Map, Value};

use super::{Style, UsageError};

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
pub(in crate::http::proxy) fn token_count(
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

pub(in crate::http::proxy) fn required_count(
    usage: &Map<String, Value>,
    field: &str,
) -> Result<u64, UsageError> {
    token_count(usage, field)?
        .ok_or_else(|| UsageError::Malformed(format!("usage.{field} is missing")))
}

/// A count inside an object of `usage` (`usage.{details}.{field}`): the object or the count
/// absent or null → `None`.
pub(in crate::http::proxy) fn detail(
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
pub(super) struct CacheWrites {
    total: Option<u64>,
    /// (5-minute, 1-hour), when `cache_creation` says.
    split: Option<(u64, u64)>,
}

impl CacheWrites {
    /// As (5-minute, 1-hour) tokens, given the split reported earlier (a stream's
    /// `message_start`; (0, 0) for a body) for when this report has none. Where the total is
    /// above the split's sum, the rest counts as 5-minute writes; where it is below, the split
    /// counts: a call is never charged less than either says.
    pub(super) fn resolve(self, earlier: (u64, u64)) -> (u64, u64) {
        let (five, hour) = self.split.unwrap_or(earlier);
        // Without a total here, the earlier report's stands (it is not taken back).
        let total = self
            .total
            .unwrap_or_else(|| earlier.0.saturating_add(earlier.1));
        let rest = total.saturating_sub(five.saturating_add(hour));
        (five.saturating_add(rest), hour)
    }
}

/// The cache writes a usage object reports, `None` when it has none of their fields.
pub(super) fn anthropic_cache_writes(
    usage: &Map<String, Value>,
) -> Result<Option<CacheWrites>, UsageError> {
    let total = token_count(usage, "cache_creation_input_tokens")?;
    let five = detail(usage, "cache_creation", "ephemeral_5m_input_tokens")?;
    let hour = detail(usage, "cache_creation", "ephemeral_1h_input_tokens")?;
    let split = (five.is_some() || hour.is_some()).then(|| (five.unwrap_or(0), hour.unwrap_or(0)));
    Ok((total.is_some() || split.is_some()).then_some(CacheWrites { total, split }))
}

/// Anthropic's server-tool requests as (web searches, web fetches) from `server_tool_use`,
/// `None` when it is absent.
pub(super) fn anthropic_tool_requests(
    usage: &Map<String, Value>,
) -> Result<Option<(u64, u64)>, UsageError> {
    let search = detail(usage, "server_tool_use", "web_search_requests")?;
    let fetch = detail(usage, "server_tool_use", "web_fetch_requests")?;
    if search.is_none() && fetch.is_none() {
        return Ok(None);
    }
    Ok(Some((search.unwrap_or(0), fetch.unwrap_or(0))))
}

pub(super) fn anthropic_usage(usage: &Map<String, Value>) -> Result<Usage, UsageError> {
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

pub(super) fn openai_usage(usage: &Map<String, Value>) -> Result<Usage, UsageError> {
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
