//! Rate limits as callers see them: the body that sets and shows them ([`RateLimitsBody`])
//! and a rate-limited call's answer: 429 `rate_limit_exceeded` with `retry-after` (seconds) and
//! `retry-after-ms`, which the official SDKs wait for before retrying, and where each limit
//! stands in the provider's usual headers: `anthropic-ratelimit-*` for Anthropic-style calls,
//! `x-ratelimit-*` for OpenAI-style calls and the API. A call that can never fit (it asks for
//! more than a minute's allowance) says so and carries `x-should-retry: false` instead.

use creditgate_domain::rate::{Dimension, RateLimits, Standing};
use creditgate_domain::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, Headers};
use crate::limiter::{Limited, Standings};

/// Whose header names to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Names {
    /// `anthropic-ratelimit-{requests,input-tokens,output-tokens}-{limit,remaining,reset}`,
    /// resets as RFC 3339 times.
    Anthropic,
    /// `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` (tokens: the input tokens'),
    /// resets as durations (`1.5s`).
    OpenAi,
}

/// The 429 for `limited`, with its headers.
pub fn refused(limited: &Limited, names: Names, now: Timestamp) -> ApiError {
    let noun = limited.refusal.dimension.noun();
    let whose = if limited.scope.starts_with("key_") {
        "this API key"
    } else {
        "your organization"
    };
    let mut headers = standing_headers(&limited.standings, names, now);
    let message = match limited.refusal.retry_after_ms {
        Some(ms) => {
            headers.push(("retry-after", ms.div_ceil(1_000).to_string()));
            headers.push(("retry-after-ms", ms.to_string()));
            format!(
                "This request would exceed the rate limit of {whose} on {noun} per minute. \
                 Retry after {} s.",
                ms.div_ceil(1_000)
            )
        }
        None => {
            headers.push(("x-should-retry", "false".to_owned()));
            format!(
                "This request asks for more {noun} than the rate limit of {whose} allows in a \
                 whole minute; it can never fit. Make it smaller or ask for a higher limit."
            )
        }
    };
    ApiError::rate_limited(message).with_headers(headers)
}

/// Where each limited dimension stands, in `names`' headers.
pub fn standing_headers(standings: &Standings, names: Names, now: Timestamp) -> Headers {
    let mut headers = Vec::new();
    for (dimension, standing) in Dimension::ALL.into_iter().zip(standings) {
        let Some(Standing {
            limit,
            remaining,
            reset_ms,
        }) = *standing
        else {
            continue;
        };
        let [limit_name, remaining_name, reset_name] = match (names, dimension) {
            (Names::Anthropic, Dimension::Requests) => [
                "anthropic-ratelimit-requests-limit",
                "anthropic-ratelimit-requests-remaining",
                "anthropic-ratelimit-requests-reset",
            ],
            (Names::Anthropic, Dimension::InputTokens) => [
                "anthropic-ratelimit-input-tokens-limit",
                "anthropic-ratelimit-input-tokens-remaining",
                "anthropic-ratelimit-input-tokens-reset",
            ],
            (Names::Anthropic, Dimension::OutputTokens) => [
                "anthropic-ratelimit-output-tokens-limit",
                "anthropic-ratelimit-output-tokens-remaining",
                "anthropic-ratelimit-output-tokens-reset",
            ],
            (Names::OpenAi, Dimension::Requests) => [
                "x-ratelimit-limit-requests",
                "x-ratelimit-remaining-requests",
                "x-ratelimit-reset-requests",
            ],
            (Names::OpenAi, Dimension::InputTokens) => [
                "x-ratelimit-limit-tokens",
                "x-ratelimit-remaining-tokens",
                "x-ratelimit-reset-tokens",
            ],
            (Names::OpenAi, Dimension::OutputTokens) => continue,
        };
        let reset = match names {
            Names::Anthropic => now
                .plus_ms(i64::try_from(reset_ms).unwrap_or(i64::MAX))
                .rfc3339(),
            Names::OpenAi => seconds(reset_ms),
        };
        headers.push((limit_name, limit.to_string()));
        headers.push((remaining_name, remaining.to_string()));
        headers.push((reset_name, reset));
    }
    headers
}

/// Milliseconds as OpenAI writes a reset (`0s`, `1.5s`, `20s`).
fn seconds(ms: u64) -> String {
    match ms % 1_000 {
        0 => format!("{}s", ms / 1_000),
        rest => format!(
            "{}.{}s",
            ms / 1_000,
            format!("{rest:03}").trim_end_matches('0')
        ),
    }
}

/// Rate limits per minute, enforced before a call is held: a call over one is refused with a
/// 429 `rate_limit_exceeded` and `retry-after`, and nothing is held or charged. Each absent or
/// null is unlimited.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitsBody {
    /// Requests per minute (1 to 1,000,000,000), or null for no limit.
    #[schema(minimum = 1, maximum = 1_000_000_000)]
    pub requests_per_minute: Option<u64>,
    /// Input tokens per minute, cache reads and writes included, as estimated before the call
    /// (1 to 1,000,000,000), or null for no limit.
    #[schema(minimum = 1, maximum = 1_000_000_000)]
    pub input_tokens_per_minute: Option<u64>,
    /// Output tokens per minute, counted at a call's most (`max_tokens`) until it settles
    /// (1 to 1,000,000,000), or null for no limit.
    #[schema(minimum = 1, maximum = 1_000_000_000)]
    pub output_tokens_per_minute: Option<u64>,
}

impl From<&RateLimits> for RateLimitsBody {
    fn from(limits: &RateLimits) -> RateLimitsBody {
        RateLimitsBody {
            requests_per_minute: limits.requests_per_minute,
            input_tokens_per_minute: limits.input_tokens_per_minute,
            output_tokens_per_minute: limits.output_tokens_per_minute,
        }
    }
}

impl From<RateLimitsBody> for RateLimits {
    fn from(body: RateLimitsBody) -> RateLimits {
        RateLimits {
            requests_per_minute: body.requests_per_minute,
            input_tokens_per_minute: body.input_tokens_per_minute,
            output_tokens_per_minute: body.output_tokens_per_minute,
        }
    }
}

#[cfg(test)]
mod tests {
    use creditgate_domain::rate::Refusal;

    use super::*;

    #[test]
    fn a_refusal_carries_when_to_retry_and_where_each_limit_stands() {
        let limited = Limited {
            refusal: Refusal {
                dimension: Dimension::Requests,
                retry_after_ms: Some(19_250),
            },
            scope: "key_1".into(),
            standings: [
                Some(Standing {
                    limit: 3,
                    remaining: 0,
                    reset_ms: 59_250,
                }),
                None,
                None,
            ],
        };
        let error = refused(&limited, Names::Anthropic, Timestamp::from_unix_ms(0));
        assert_eq!(error.status.as_u16(), 429);
        assert_eq!(error.code, "rate_limit_exceeded");
        let header = |name: &str| {
            error
                .headers
                .as_deref()
                .into_iter()
                .flatten()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(header("retry-after"), Some("20"));
        assert_eq!(header("retry-after-ms"), Some("19250"));
        assert_eq!(header("anthropic-ratelimit-requests-remaining"), Some("0"));
        assert_eq!(
            header("anthropic-ratelimit-requests-reset"),
            Some("1970-01-01T00:00:59Z")
        );
        assert!(error.message.contains("this API key"), "{}", error.message);
        let openai = refused(&limited, Names::OpenAi, Timestamp::from_unix_ms(0));
        assert!(openai
            .headers
            .as_deref()
            .is_some_and(|h| h.contains(&("x-ratelimit-reset-requests", "59.25s".to_owned()))));
    }
}
