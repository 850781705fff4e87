//! The rate-limit flags of `org create`, `org rate-limits` and `key create`, and how a limit
//! reads in a view.

use clap::Args;
use creditgate_domain::rate::RateLimits;
use serde_json::{json, Value};

/// Requests, input tokens and output tokens per minute (each absent: no limit).
#[derive(Args, Debug, Default)]
pub(super) struct RateFlags {
    /// Most requests per minute.
    #[arg(long, value_name = "N")]
    requests_per_minute: Option<u64>,
    /// Most input tokens per minute.
    #[arg(long, value_name = "N")]
    input_tokens_per_minute: Option<u64>,
    /// Most output tokens per minute.
    #[arg(long, value_name = "N")]
    output_tokens_per_minute: Option<u64>,
}

impl RateFlags {
    /// The `rate_limits` body: all three (a missing one is no limit).
    pub(super) fn body(&self) -> Value {
        json!({
            "requests_per_minute": self.requests_per_minute,
            "input_tokens_per_minute": self.input_tokens_per_minute,
            "output_tokens_per_minute": self.output_tokens_per_minute,
        })
    }

    /// The body when any flag is given (creation leaves the limits out otherwise).
    pub(super) fn given(&self) -> Option<Value> {
        let any = self.requests_per_minute.is_some()
            || self.input_tokens_per_minute.is_some()
            || self.output_tokens_per_minute.is_some();
        any.then(|| self.body())
    }
}

/// `rate_limits` as a view reads it: `60 requests, 40000 input tokens a minute`, or `none`.
pub(super) fn limits_text(limits: &Value) -> String {
    let limit = |field: &str| limits[field].as_u64();
    RateLimits {
        requests_per_minute: limit("requests_per_minute"),
        input_tokens_per_minute: limit("input_tokens_per_minute"),
        output_tokens_per_minute: limit("output_tokens_per_minute"),
    }
    .describe()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_read_as_words() {
        assert_eq!(limits_text(&json!({"requests_per_minute": null})), "none");
        assert_eq!(
            limits_text(&json!({"requests_per_minute": 60, "output_tokens_per_minute": 8000})),
            "60 requests, 8000 output tokens a minute"
        );
        assert_eq!(RateFlags::default().given(), None);
    }
}
