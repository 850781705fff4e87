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
//! By concern: [`request`] (facts and the body sent upstream, the input bound), [`usage`]
//! (usage from a body), [`meter`] (the stream meter); the shared [`Style`] and error types
//! here.

pub mod meter;
pub mod request;
pub mod tools;
pub mod usage;

#[cfg(test)]
mod tests;

pub use meter::{StreamMeter, StreamUsage, EVENT_BYTES_MAX};
pub use request::*;
pub use tools::{SERVER_TOOL_USES_LIMIT, SERVER_TOOL_USES_MAX};
pub(in crate::http::proxy) use usage::{detail, required_count};
pub use usage::{usage_from_body, usage_from_value};

/// The API style of a proxied call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Style {
    /// Anthropic Messages API: `POST /v1/messages`.
    Anthropic,
    /// OpenAI Chat Completions API: `POST /v1/chat/completions`.
    OpenAi,
}

/// Why no usage could be read from a response.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    /// The response carries no `usage` (an error body, for instance).
    #[error("the response reports no usage")]
    Missing,
    /// The response's usage is there but unusable: not JSON, a count that is negative, not an
    /// integer or above [`TOKENS_MAX`](creditgate_domain::pricing::TOKENS_MAX), or inconsistent.
    #[error("malformed usage: {0}")]
    Malformed(String),
}
