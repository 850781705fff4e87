//! The stream meter: watches a server-sent-events response as it passes and meters it.

use creditgate_domain::pricing::Usage;
use serde_json::{Map, Value};

use super::usage::{
    anthropic_cache_writes, anthropic_tool_requests, anthropic_usage, openai_usage, required_count,
    token_count, CacheWrites,
};
use super::{Style, UsageError};

/// Longest server-sent event [`StreamMeter`] holds and parses; a longer one is passed through
/// unparsed (and the stream marked malformed).
pub const EVENT_BYTES_MAX: usize = 1 << 20;
/// Buffer capacity a [`StreamMeter`] keeps between events; larger buffers are released.
const BUFFER_RETAINED_BYTES_MAX: usize = 64 << 10;

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
    /// The bytes it holds now: (the held event, its data, the current line).
    #[cfg(test)]
    pub(super) fn buffered(&self) -> (usize, usize, usize) {
        (self.held.len(), self.data.len(), self.line.len())
    }

    /// A meter for a response stream of `style`. `pass_usage_chunk` is whether the client asked
    /// for usage ([`RequestFacts::client_wants_usage`](super::RequestFacts::client_wants_usage)); it only matters for OpenAI streams.
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
    /// [`crate::http::proxy::endpoints::responses_event`]), and the stream is complete once that event
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
        match crate::http::proxy::endpoints::responses_event(data) {
            crate::http::proxy::endpoints::ResponsesEvent::Other => {}
            crate::http::proxy::endpoints::ResponsesEvent::Malformed => self.malformed = true,
            crate::http::proxy::endpoints::ResponsesEvent::Terminal(usage) => {
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
