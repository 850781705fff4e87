//! A running node: [`Application::build`] opens the store, starts the ledger writer and the
//! background workers, binds the listener (port 0 picks a free one) and reports the real
//! address; [`AppState`] is what the application layer, the transports and the workers share
//! (store, writer, clock, ids, configuration, the payment provider). The HTTP surface itself
//! is [`crate::http::router`], kept apart from serving so tests can drive it in-process.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use creditgate_store::{
    Clock, Store, StoreConfig, StoreError, Synchronous, SystemClock, WriterConfig,
};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Upstream};
use crate::http;
use crate::ids::{IdSource, RandomIds};
use crate::providers;
pub use crate::state::AppState;
use crate::state::Inner;
use crate::workers::{expiry_step, notice_step, on_timer, payments_loop, webhook_step, Mailer};

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store could not be opened.
    #[error("opening the database: {0}")]
    Store(#[from] StoreError),
    /// A file in the data directory could not be read or written.
    #[error("{path}: {source}")]
    DataDir {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The listener could not bind.
    #[error("listening on {address}: {source}")]
    Bind {
        /// The address.
        address: String,
        /// Why.
        source: std::io::Error,
    },
    /// A setting is out of range.
    #[error("configuration: {0}")]
    Config(String),
}

/// What a test or `main` may swap in.
pub struct Parts {
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// The id source.
    pub ids: Arc<dyn IdSource>,
}

impl Default for Parts {
    fn default() -> Parts {
        Parts {
            clock: Arc::new(SystemClock),
            ids: Arc::new(RandomIds),
        }
    }
}

/// A built service, bound and ready to serve.
pub struct Application {
    listener: tokio::net::TcpListener,
    address: SocketAddr,
    state: AppState,
    mailer: Arc<Mailer>,
}

impl Application {
    /// Opens everything and binds the listener.
    pub async fn build(config: Config, parts: Parts) -> Result<Application, StartError> {
        let synchronous = match config.sqlite_synchronous.to_ascii_uppercase().as_str() {
            "FULL" => Synchronous::Full,
            "NORMAL" => Synchronous::Normal,
            other => {
                return Err(StartError::Config(format!(
                    "sqlite_synchronous {other:?}: FULL or NORMAL"
                )))
            }
        };
        let mut store_config = StoreConfig::new(config.database_url());
        store_config.sqlite_synchronous = synchronous;
        store_config.pool_connections_max = config.pool_connections_max;
        store_config.access_cutoff_min =
            creditgate_domain::Amount::parse(&config.cutoff_balance_min)
                .ok()
                .filter(|amount| !amount.is_negative())
                .ok_or_else(|| {
                    StartError::Config(format!(
                        "cutoff_balance_min {:?}: an amount, 0 or more",
                        config.cutoff_balance_min
                    ))
                })?;
        let store = Store::open(&store_config).await?;
        let writer = store
            .start_writer(
                WriterConfig {
                    batch_len_max: config.batch_len_max.max(1),
                    batch_wait_us: config.batch_wait_us,
                    queue_len_max: config.queue_len_max.max(1),
                    submit_len_max: config.usage_events_max.max(1),
                },
                parts.clock.clone(),
            )
            .await?;
        let mailer = Arc::new(Mailer::from_config(&config).map_err(StartError::Config)?);
        let provider = providers::Provider::from_config(&config).map_err(StartError::Config)?;
        let payment_limits = providers::limits(&config).map_err(StartError::Config)?;
        let (operator_token, key_hash_secret, node_id) =
            node_secrets(&config, &store, parts.clock.now()).await?;
        let listener = tokio::net::TcpListener::bind(&config.listen)
            .await
            .map_err(|source| StartError::Bind {
                address: config.listen.clone(),
                source,
            })?;
        let address = listener.local_addr().map_err(|source| StartError::Bind {
            address: config.listen.clone(),
            source,
        })?;
        let public_url = if config.public_url.is_empty() {
            format!("http://{address}")
        } else {
            config.public_url.trim_end_matches('/').to_owned()
        };
        crate::metrics::install();
        let demo = if config.anthropic_upstream.is_demo() || config.openai_upstream.is_demo() {
            Some(start_demo_upstream().await?)
        } else {
            None
        };
        // The demo upstream runs whenever a style uses it.
        let upstream = |configured: &Upstream| match configured {
            Upstream::Demo => demo.map(|d| format!("http://{d}")).unwrap_or_default(),
            Upstream::Url(url) => url.trim_end_matches('/').to_owned(),
        };
        let anthropic_upstream = upstream(&config.anthropic_upstream);
        let openai_upstream = upstream(&config.openai_upstream);
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(UPSTREAM_IDLE_CONNECTIONS_MAX)
            .connect_timeout(Duration::from_millis(
                config.upstream_connect_timeout_ms.max(1),
            ))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| StartError::Config(format!("the upstream client: {e}")))?;
        let started_at = parts.clock.now();
        let state = AppState::new(Inner {
            http,
            anthropic_upstream,
            openai_upstream,
            store,
            writer,
            clock: parts.clock,
            ids: parts.ids,
            config,
            operator_token,
            key_hash_secret: key_hash_secret.into_bytes(),
            billing_url: public_url,
            provider,
            payment_limits,
            payments_wake: tokio::sync::Notify::new(),
            proxy_calls: tokio_util::task::TaskTracker::new(),
            rate_limiter: Default::default(),
            node_id,
            started_at,
        });
        Ok(Application {
            listener,
            address,
            state,
            mailer,
        })
    }

    /// The address actually bound.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The state (for tests: the store, the operator token).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` is cancelled, then stops taking connections, lets in-flight
    /// requests (and so their ledger batches) finish, and returns.
    pub async fn run(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let config = self.state.config();
        let (state, mailer) = (self.state.clone(), self.mailer.clone());
        let expiry = tokio::spawn(on_timer(config.expiry_interval_ms, shutdown.clone(), {
            let state = state.clone();
            move || {
                let state = state.clone();
                async move { expiry_step(&state).await }
            }
        }));
        let payments = tokio::spawn({
            let (state, shutdown) = (state.clone(), shutdown.clone());
            async move { payments_loop(&state, &shutdown).await }
        });
        let notices = tokio::spawn(on_timer(config.notice_interval_ms, shutdown.clone(), {
            let state = state.clone();
            move || {
                let (state, mailer) = (state.clone(), mailer.clone());
                async move { notice_step(&state, &mailer).await }
            }
        }));
        // Webhook deliveries go out on the notice worker's timer.
        let webhooks = tokio::spawn(on_timer(config.notice_interval_ms, shutdown.clone(), {
            let shutdown = shutdown.clone();
            move || {
                let (state, shutdown) = (state.clone(), shutdown.clone());
                async move { webhook_step(&state, &shutdown).await }
            }
        }));
        // Calls this node had in flight when it last stopped: settled by the one rule.
        http::proxy::recover_calls(&self.state).await;
        let app = http::router(self.state.clone());
        let result = axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .await;
        shutdown.cancel();
        // Proxied calls still streaming finish and settle, for at most proxy_drain_ms_max;
        // whatever is left is settled at the next start (see proxy.rs).
        let calls = self.state.proxy_calls();
        calls.close();
        let drain = Duration::from_millis(config.proxy_drain_ms_max);
        if tokio::time::timeout(drain, calls.wait()).await.is_err() {
            tracing::warn!(
                in_flight = calls.len(),
                "shutdown: proxied calls still in flight after proxy_drain_ms_max"
            );
        }
        let _ = expiry.await;
        let _ = notices.await;
        let _ = webhooks.await;
        let _ = payments.await;
        result
    }
}

/// Idle connections kept open to each upstream.
const UPSTREAM_IDLE_CONNECTIONS_MAX: usize = 256;

/// Serves the built-in demo upstream on a loopback port of its own; answers its address.
async fn start_demo_upstream() -> Result<SocketAddr, StartError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|source| StartError::Bind {
            address: "127.0.0.1:0 (demo upstream)".into(),
            source,
        })?;
    let address = listener.local_addr().map_err(|source| StartError::Bind {
        address: "127.0.0.1:0 (demo upstream)".into(),
        source,
    })?;
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, crate::demo_upstream::router()).await {
            tracing::error!(%error, "the demo upstream stopped");
        }
    });
    Ok(address)
}

/// The operator token, the key-hash secret (each from the configuration, or else the data
/// directory, and the same on every node of the database) and the node's id.
async fn node_secrets(
    config: &Config,
    store: &Store,
    now: creditgate_domain::Timestamp,
) -> Result<(String, String, String), StartError> {
    let operator_token = secret_or_file(
        &config.operator_token,
        &config.data_dir,
        "operator_token",
        "op_",
    )?;
    let key_hash_secret = secret_or_file(
        &config.key_hash_secret,
        &config.data_dir,
        "key_hash_secret",
        "",
    )?;
    shared_secret(store, "key_hash_secret", &key_hash_secret, now).await?;
    let node_id = secret_or_file(&config.node_id, &config.data_dir, "node_id", "")?;
    if node_id.is_empty() || !node_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(StartError::Config(
            "node_id: letters and digits only".into(),
        ));
    }
    Ok((operator_token, key_hash_secret, node_id))
}

/// A secret from the configuration, or else from `data_dir/name`, made there once.
fn secret_or_file(
    configured: &str,
    data_dir: &Path,
    name: &str,
    prefix: &str,
) -> Result<String, StartError> {
    if !configured.is_empty() {
        return Ok(configured.to_owned());
    }
    let path = data_dir.join(name);
    let io = |source| StartError::DataDir {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_owned()),
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(io(error)),
    }
    std::fs::create_dir_all(data_dir).map_err(io)?;
    let secret = format!("{prefix}{}", crate::ids::random_hex(24));
    write_private(&path, &secret).map_err(io)?;
    Ok(secret)
}

/// Checks that `secret` (configuration `name`: the key-hash secret) is the one every node of
/// this database uses: the first node records a fingerprint of it (a keyed hash, not the
/// secret), and a node whose secret gives another fingerprint refuses to start, since the
/// keys made through the others would not authenticate on it. (The operator token is not
/// checked: it must stay easy to change, and its fingerprint would let a copy of the
/// database test guesses at it.) Changing the key-hash secret on purpose, which retires
/// every key, means deleting the `key_hash_secret_fingerprint` row of `settings`.
async fn shared_secret(
    store: &Store,
    name: &str,
    secret: &str,
    now: creditgate_domain::Timestamp,
) -> Result<(), StartError> {
    let fingerprint =
        http::auth::secret_hash(secret.as_bytes(), &format!("creditgate {name} check"));
    let recorded = store
        .setting_once(&format!("{name}_fingerprint"), &fingerprint, now)
        .await?;
    if recorded == fingerprint {
        Ok(())
    } else {
        Err(StartError::Config(format!(
            "{name} differs from the one the other nodes of this database use: give every \
             node the same {name} (in the configuration, or CREDITGATE_{})",
            name.to_ascii_uppercase()
        )))
    }
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(text.as_bytes())
}
