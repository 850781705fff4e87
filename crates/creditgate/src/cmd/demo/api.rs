//! The service over HTTP, as the demo sees it: an [`Api`] client that sends as the operator
//! or with an org's key, the [`Reply`] it reads whole, and an org's [`Balance`].

use std::str::FromStr as _;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use creditgate_domain::Amount;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::seed::DemoOrg;
use super::REQUEST_TIMEOUT;

/// An HTTP answer, read whole.
pub(super) struct Reply {
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    pub(super) text: String,
}

impl Reply {
    pub(super) fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }
}

/// Who a request is from.
#[derive(Clone, Copy)]
pub(super) enum As<'a> {
    /// The operator token.
    Operator,
    /// An org's key as `x-api-key`.
    ApiKey(&'a str),
    /// An org's key as `Authorization: Bearer`.
    Bearer(&'a str),
}

/// The service over HTTP.
pub(super) struct Api {
    http: reqwest::Client,
    pub(super) base: String,
    pub(super) operator: String,
}

impl Api {
    pub(super) fn new(base: &str, operator: &str) -> anyhow::Result<Api> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("creditgate-demo/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("setting up HTTP")?;
        Ok(Api {
            http,
            base: base.trim_end_matches('/').to_owned(),
            operator: operator.to_owned(),
        })
    }

    pub(super) async fn send(
        &self,
        method: Method,
        path: &str,
        from: As<'_>,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<Reply> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        request = match from {
            As::Operator => request.bearer_auth(&self.operator),
            As::ApiKey(key) => request.header("x-api-key", key),
            As::Bearer(key) => request.bearer_auth(key),
        };
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response
            .text()
            .await
            .with_context(|| format!("{method} {path}: reading the answer"))?;
        Ok(Reply {
            status,
            headers,
            text,
        })
    }

    /// An operator call that must succeed; its JSON answer.
    pub(super) async fn operator(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        idempotency_key: Option<&str>,
    ) -> anyhow::Result<Value> {
        let headers: Vec<(&str, &str)> = idempotency_key
            .map(|key| ("idempotency-key", key))
            .into_iter()
            .collect();
        let reply = self
            .send(method.clone(), path, As::Operator, body, &headers)
            .await?;
        if !reply.status.is_success() {
            bail!("{method} {path}: {} {}", reply.status, reply.text.trim());
        }
        Ok(reply.json())
    }

    /// Pays on the sandbox's checkout page at `path` (a form post, as the page's own form
    /// does) with the test card `card`.
    pub(super) async fn pay_on_checkout(&self, path: &str, card: &str) -> anyhow::Result<Reply> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .form(&[("payment_method", card)])
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response
            .text()
            .await
            .with_context(|| format!("POST {path}: reading the answer"))?;
        Ok(Reply {
            status,
            headers,
            text,
        })
    }

    /// An org's balance, read with its key.
    pub(super) async fn balance(&self, org: &DemoOrg) -> anyhow::Result<Balance> {
        let path = format!("/v1/orgs/{}/balance", org.org_id);
        let reply = self
            .send(Method::GET, &path, As::ApiKey(&org.key), None, &[])
            .await?;
        if !reply.status.is_success() {
            bail!("GET {path}: {} {}", reply.status, reply.text.trim());
        }
        let body = reply.json();
        let field = |name: &str| -> anyhow::Result<Amount> {
            body[name]
                .as_str()
                .and_then(|text| Amount::from_str(text).ok())
                .ok_or_else(|| anyhow!("GET {path}: no {name} in {}", reply.text.trim()))
        };
        Ok(Balance {
            available: field("available")?,
            reserved: field("reserved")?,
            access_state: body["access_state"].as_str().unwrap_or("?").to_owned(),
            currency: body["currency"].as_str().unwrap_or_default().to_owned(),
        })
    }
}

/// An org's balance as the tour shows it.
pub(super) struct Balance {
    pub(super) available: Amount,
    pub(super) reserved: Amount,
    pub(super) access_state: String,
    /// Empty when read from a proxied answer's headers.
    pub(super) currency: String,
}
