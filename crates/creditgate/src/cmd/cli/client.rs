//! The operator API over HTTP: the request, the token, and what a refusal or an
//! unreachable server turns into (`Failure`, worded for stderr).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde_json::{Map, Value};

use super::view::clean;
use super::{Connection, Failure, CONNECT_TIMEOUT_MS, REQUEST_TIMEOUT_MS};

/// Most characters of a non-API error body echoed to stderr.
const BODY_ECHO_LEN_MAX: usize = 200;

/// A successful answer: the body as received and parsed.
pub(super) struct Answer {
    pub(super) text: String,
    pub(super) body: Value,
}

/// The operator API over HTTP.
pub(super) struct Client {
    http: reqwest::Client,
    base: Url,
    token: String,
    pub(super) json: bool,
}

impl Client {
    pub(super) fn new(connection: &Connection) -> Result<Client, Failure> {
        let base = Url::parse(connection.url.trim())
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https") && url.has_host())
            .ok_or_else(|| {
                Failure::Refused(format!(
                    "error: --url {:?} is not an http(s) URL (CREDITGATE_URL)",
                    connection.url
                ))
            })?;
        let token = match connection.token.as_deref().map(str::trim) {
            Some(token) if !token.is_empty() => token.to_owned(),
            _ => token_from_data_dir()?,
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(REQUEST_TIMEOUT_MS))
            .connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
            .user_agent(concat!("creditgate-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Failure::Unavailable(format!("error: cannot set up HTTP: {e}")))?;
        Ok(Client {
            http,
            base,
            token,
            json: connection.json,
        })
    }

    /// `base` + the path `segments` (each percent-encoded: ids and models cannot escape
    /// their segment) + `query`.
    pub(super) fn url(&self, segments: &[&str], query: &[(&str, String)]) -> Result<Url, Failure> {
        // The URL parser drops `.` and `..` segments; an empty one would change the route.
        if let Some(bad) = segments.iter().find(|s| matches!(**s, "" | "." | "..")) {
            return Err(Failure::Refused(format!(
                "error: invalid_id: {bad:?} is not an id or model name"
            )));
        }
        let mut url = self.base.clone();
        url.set_query(None);
        url.set_fragment(None);
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        if !query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (name, value) in query {
                pairs.append_pair(name, value);
            }
        }
        Ok(url)
    }

    pub(super) async fn send(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<Value>,
        idempotency_key: Option<&str>,
    ) -> Result<Answer, Failure> {
        let url = self.url(segments, query)?;
        let mut request = self
            .http
            .request(method.clone(), url.clone())
            .bearer_auth(&self.token);
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let target = format!("{method} {}", url.path());
        let response = request
            .send()
            .await
            .map_err(|error| transport_failure(&self.base, &target, &error))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|error| transport_failure(&self.base, &target, &error))?;
        let parsed = serde_json::from_str::<Value>(&text);
        if status.is_success() {
            return match parsed {
                Ok(body) => Ok(Answer { text, body }),
                Err(_) => Err(Failure::Unavailable(format!(
                    "error: unexpected_response: {target} answered {status} without JSON; is {} a creditgate server?",
                    self.base
                ))),
            };
        }
        Err(api_failure(status, &text, parsed.ok().as_ref(), &self.base))
    }

    pub(super) async fn get(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<Answer, Failure> {
        self.send(Method::GET, segments, query, None, None).await
    }
}

/// `serve` keeps a generated operator token in its data directory: a CLI started beside it
/// finds it there.
fn token_from_data_dir() -> Result<String, Failure> {
    let data_dir = std::env::var_os("CREDITGATE_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(".creditgate"));
    let path = data_dir.join("operator_token");
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => Ok(text.trim().to_owned()),
        _ => Err(Failure::Refused(format!(
            "error: no operator token: set CREDITGATE_OPERATOR_TOKEN or pass --token (none in {} either)",
            path.display()
        ))),
    }
}

fn transport_failure(base: &Url, target: &str, error: &reqwest::Error) -> Failure {
    // The top-level message repeats the URL; its sources say what happened.
    let mut cause = String::new();
    let mut source = std::error::Error::source(error).or(Some(error));
    while let Some(error) = source {
        let text = error.to_string();
        if !cause.contains(&text) {
            if !cause.is_empty() {
                cause.push_str(": ");
            }
            cause.push_str(&text);
        }
        source = error.source();
    }
    let what = if error.is_timeout() {
        format!("no answer within {REQUEST_TIMEOUT_MS} ms")
    } else if error.is_connect() {
        "cannot connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    Failure::Unavailable(format!(
        "error: unreachable: {target} at {base}: {what} ({cause})"
    ))
}

/// `error: <code>: <message>` from the API's error envelope (or what there is of it).
pub(super) fn api_failure(
    status: StatusCode,
    text: &str,
    body: Option<&Value>,
    base: &Url,
) -> Failure {
    let error = body.and_then(|b| b.get("error")).filter(|e| e.is_object());
    let mut message = match error {
        Some(error) => {
            let code = error["code"].as_str().unwrap_or("unknown");
            let text = error["message"].as_str().unwrap_or("");
            let mut line = format!("error: {}: {}", clean(code), clean(text));
            if let Some(param) = error["param"].as_str() {
                let _ = write!(line, " (param: {})", clean(param));
            }
            if let Some(url) = error["billing_url"].as_str() {
                let _ = write!(line, "\nbilling: {}", clean(url));
            }
            line
        }
        None => {
            let echo: String = clean(text.trim()).chars().take(BODY_ECHO_LEN_MAX).collect();
            let reason = status.canonical_reason().unwrap_or("error");
            if echo.is_empty() {
                format!("error: http_{}: {reason} (from {base})", status.as_u16())
            } else {
                format!(
                    "error: http_{}: {reason}: {echo} (from {base})",
                    status.as_u16()
                )
            }
        }
    };
    if status.is_server_error() {
        if let Some(id) = body.and_then(|b| b["request_id"].as_str()) {
            let _ = write!(message, "\nrequest id: {}", clean(id));
        }
        Failure::Unavailable(message)
    } else {
        Failure::Refused(message)
    }
}

/// A JSON object of the fields that are present.
pub(super) fn object(fields: Vec<(&str, Option<Value>)>) -> Value {
    let map: Map<String, Value> = fields
        .into_iter()
        .filter_map(|(name, value)| value.map(|v| (name.to_owned(), v)))
        .collect();
    Value::Object(map)
}
