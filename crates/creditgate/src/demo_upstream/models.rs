//! The demo upstream's model catalogue (`GET /v1/models`, `GET /v1/models/{id}`) in each
//! style, and Anthropic's token count (`POST /v1/messages/count_tokens`).

use serde_json::{json, Value};

use super::request::Ask;
use super::Style;

/// The models a list names (the demo answers any model; these are the ones `creditgate demo`
/// prices).
pub const ANTHROPIC_MODELS: [&str; 1] = ["claude-demo"];
/// The OpenAI-style models a list names.
pub const OPENAI_MODELS: [&str; 2] = ["gpt-demo", "text-embedding-demo"];

/// When every demo model was "created".
const CREATED_AT: &str = "2025-01-01T00:00:00Z";
const CREATED_UNIX: u64 = 1_735_689_600;

/// One model in the style's shape.
pub(super) fn model(style: Style, id: &str) -> Value {
    match style {
        Style::Anthropic => json!({
            "type": "model",
            "id": id,
            "display_name": format!("{id} (creditgate demo)"),
            "created_at": CREATED_AT,
        }),
        Style::OpenAi => json!({
            "id": id,
            "object": "model",
            "created": CREATED_UNIX,
            "owned_by": "creditgate-demo",
        }),
    }
}

/// The list in the style's shape (one page: Anthropic `has_more: false`).
pub(super) fn models(style: Style) -> Value {
    match style {
        Style::Anthropic => {
            let data: Vec<Value> = ANTHROPIC_MODELS.iter().map(|id| model(style, id)).collect();
            json!({
                "data": data,
                "has_more": false,
                "first_id": ANTHROPIC_MODELS.first(),
                "last_id": ANTHROPIC_MODELS.last(),
            })
        }
        Style::OpenAi => {
            let data: Vec<Value> = OPENAI_MODELS.iter().map(|id| model(style, id)).collect();
            json!({"object": "list", "data": data})
        }
    }
}

/// Anthropic's token count: the input tokens a Messages call with this body reports.
pub(super) fn token_count(ask: &Ask) -> Value {
    json!({ "input_tokens": ask.input_tokens })
}
