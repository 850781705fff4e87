//! A node's shared state: the store, the ledger writer, the clock, the id source, the
//! configuration, the payment provider and the secrets. Built once by `node`; the operations
//! (`app`), the transports (`http`) and the workers read it.

use std::sync::Arc;

use creditgate_store::{Clock, LedgerWriter, Store};

use crate::config::Config;
use crate::ids::IdSource;
use crate::providers;

/// What the operations, the transports and the workers share. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub(crate) struct Inner {
    pub(crate) store: Store,
    pub(crate) writer: LedgerWriter,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) ids: Arc<dyn IdSource>,
    pub(crate) config: Config,
    pub(crate) operator_token: String,
    pub(crate) key_hash_secret: Vec<u8>,
    pub(crate) billing_url: String,
    pub(crate) http: reqwest::Client,
    pub(crate) anthropic_upstream: String,
    pub(crate) openai_upstream: String,
    pub(crate) provider: providers::Provider,
    pub(crate) payment_limits: creditgate_domain::reload::PaymentLimits,
    pub(crate) payments_wake: tokio::sync::Notify,
    /// The proxied calls' metering tasks, waited for (bounded) at shutdown.
    pub(crate) proxy_calls: tokio_util::task::TaskTracker,
    /// This node's rate-limit buckets.
    pub(crate) rate_limiter: crate::limiter::RateLimiter,
    /// This node's id (marks its proxied calls' holds).
    pub(crate) node_id: String,
    /// When this process started: its node's open proxy holds placed before were in flight
    /// when it last stopped.
    pub(crate) started_at: creditgate_domain::Timestamp,
}

impl AppState {
    /// The state of a node being built.
    pub(crate) fn new(inner: Inner) -> AppState {
        AppState(Arc::new(inner))
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.0.store
    }
    /// The one writer of balances.
    pub fn writer(&self) -> &LedgerWriter {
        &self.0.writer
    }
    /// The current time.
    pub fn now(&self) -> creditgate_domain::Timestamp {
        self.0.clock.now()
    }
    /// A new id with `prefix`.
    pub fn new_id(&self, prefix: &str) -> String {
        self.0.ids.generate(prefix)
    }
    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.0.config
    }
    /// The operator's token.
    pub fn operator_token(&self) -> &str {
        &self.0.operator_token
    }
    /// The secret API keys are hashed under.
    pub fn key_hash_secret(&self) -> &[u8] {
        &self.0.key_hash_secret
    }
    /// The client the proxy calls upstreams with.
    pub fn http(&self) -> &reqwest::Client {
        &self.0.http
    }
    /// The Anthropic-style upstream's base URL and the provider's key for it.
    pub fn anthropic_upstream(&self) -> (&str, &str) {
        (
            &self.0.anthropic_upstream,
            &self.0.config.anthropic_upstream_key,
        )
    }
    /// The OpenAI-style upstream's base URL and the provider's key for it.
    pub fn openai_upstream(&self) -> (&str, &str) {
        (&self.0.openai_upstream, &self.0.config.openai_upstream_key)
    }
    /// The base of links in emails and errors.
    pub fn public_url(&self) -> &str {
        &self.0.billing_url
    }
    /// Where an org adds credits.
    pub fn billing_url(&self, org_id: &str) -> String {
        format!("{}/billing/{org_id}", self.0.billing_url)
    }
    /// The payment provider.
    pub fn provider(&self) -> &providers::Provider {
        &self.0.provider
    }
    /// The smallest and largest top-up or reload.
    pub fn payment_limits(&self) -> creditgate_domain::reload::PaymentLimits {
        self.0.payment_limits
    }
    /// Wakes the payments worker (auto-reload settings changed).
    pub fn wake_payments(&self) {
        self.0.payments_wake.notify_one();
    }

    /// Resolves when the payments worker is woken (see [`AppState::wake_payments`]).
    pub async fn payments_woken(&self) {
        self.0.payments_wake.notified().await;
    }
    /// The proxied calls in flight (their metering tasks).
    pub fn proxy_calls(&self) -> &tokio_util::task::TaskTracker {
        &self.0.proxy_calls
    }
    /// This node's rate-limit buckets.
    pub fn rate_limiter(&self) -> &crate::limiter::RateLimiter {
        &self.0.rate_limiter
    }
    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.0.node_id
    }
    /// When this process started.
    pub fn started_at(&self) -> creditgate_domain::Timestamp {
        self.0.started_at
    }
}
