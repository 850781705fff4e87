//! Anthropic server tools (web search, web fetch): how many requests a call may run, billed
//! per request, and the `max_uses` the proxy sets upstream on a tool that sets none.

use serde_json::{Map, Value};

use super::request::bad_field;
use super::RequestError;

/// The `max_uses` the proxy gives an Anthropic server tool (web search, web fetch) that sets
/// none, so that the requests it can bill are bounded before the call.
pub const SERVER_TOOL_USES_MAX: u64 = 20;
/// The largest `max_uses` a request may set on a server tool.
pub const SERVER_TOOL_USES_LIMIT: u64 = 1_000;
/// What an Anthropic request's server tools may run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct ServerToolBounds {
    pub(super) search: u64,
    pub(super) fetch: u64,
    pub(super) unbounded: bool,
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

pub(super) fn server_tool_bounds(
    obj: &Map<String, Value>,
) -> Result<ServerToolBounds, RequestError> {
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

/// `body` with `max_uses` [`SERVER_TOOL_USES_MAX`] on each server tool that sets none.
pub(super) fn bound_server_tools(body: &Value) -> Option<Vec<u8>> {
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
