//! Configuration: defaults, then a TOML file, then `CREDITGATE_*` environment variables
//! (each key's variable is its name upper-cased: `listen` → `CREDITGATE_LISTEN`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where a proxied style's calls go.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(from = "String", into = "String")]
pub enum Upstream {
    /// The built-in demo upstream (`demo`).
    Demo,
    /// A base URL.
    Url(String),
}

impl Upstream {
    /// Whether it is the built-in demo upstream.
    pub fn is_demo(&self) -> bool {
        matches!(self, Upstream::Demo)
    }
}

impl From<String> for Upstream {
    fn from(text: String) -> Upstream {
        if text == "demo" {
            Upstream::Demo
        } else {
            Upstream::Url(text)
        }
    }
}

impl From<&str> for Upstream {
    fn from(text: &str) -> Upstream {
        Upstream::from(text.to_owned())
    }
}

impl From<Upstream> for String {
    fn from(upstream: Upstream) -> String {
        match upstream {
            Upstream::Demo => "demo".to_owned(),
            Upstream::Url(url) => url,
        }
    }
}

/// How the SMTP connection is secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Plain text (a local relay).
    None,
    /// STARTTLS on the submission port.
    Starttls,
    /// Implicit TLS.
    Tls,
}

/// Where notices' emails go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MailTransport {
    /// `.eml` files under `data_dir/mail`.
    Files,
    /// An SMTP server.
    Smtp,
}

/// The payment provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentsProvider {
    /// Stripe's test-card behaviours, no network.
    Sandbox,
    /// Stripe (or localstripe).
    Stripe,
}

impl std::fmt::Display for PaymentsProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PaymentsProvider::Sandbox => "sandbox",
            PaymentsProvider::Stripe => "stripe",
        })
    }
}

/// Everything `creditgate serve` is configured by.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the embedded default keeps its database and secrets.
    pub data_dir: PathBuf,
    /// `sqlite:PATH` or `postgres://…`; empty: SQLite in `data_dir`.
    pub database_url: String,
    /// Address and port to listen on (port 0: any free port).
    pub listen: String,
    /// The operator's bearer token; empty: generated once and kept in `data_dir`.
    pub operator_token: String,
    /// Secret keying the hash under which API keys are stored; empty: generated once and
    /// kept in `data_dir`.
    pub key_hash_secret: String,
    /// Base of links in emails and billing errors.
    pub public_url: String,
    /// The operator's product name, in emails and pages.
    pub product_name: String,
    /// Currency of every amount (one per deployment).
    pub currency: String,
    /// Largest request body accepted.
    pub body_bytes_max: usize,
    /// Longest a request may take before it is answered 503.
    pub request_timeout_ms: u64,
    /// A hold's TTL when the request gives none.
    pub hold_ttl_s_default: u64,
    /// Most events in one `POST /v1/usage`.
    pub usage_events_max: usize,
    /// Most items in one page of a list.
    pub page_len_max: usize,
    /// How long `Idempotency-Key` records are kept.
    pub idempotency_ttl_s: u64,
    /// Pause between two runs of the expiry worker (holds past their TTL, grants past expiry).
    pub expiry_interval_ms: u64,
    /// Most operations the ledger writer commits in one transaction.
    pub batch_len_max: usize,
    /// Longest the writer waits for more operations once it has one.
    pub batch_wait_us: u64,
    /// Most submissions queued for the writer before callers get 503.
    pub queue_len_max: usize,
    /// Connections for the API's queries.
    pub pool_connections_max: usize,
    /// SQLite: `FULL` (survives power loss) or `NORMAL`.
    pub sqlite_synchronous: String,
    /// Where `POST /anthropic/v1/messages` goes: a base URL, or `demo` (the built-in upstream).
    pub anthropic_upstream: Upstream,
    /// The provider's key sent upstream as `x-api-key` (never the caller's key).
    pub anthropic_upstream_key: String,
    /// Where `POST /openai/v1/chat/completions` goes: a base URL, or `demo`.
    pub openai_upstream: Upstream,
    /// The provider's key sent upstream as `Authorization: Bearer`.
    pub openai_upstream_key: String,
    /// Longest wait for an upstream's response headers (the first byte), and between two
    /// chunks of a body or a stream.
    pub upstream_timeout_ms: u64,
    /// Longest wait to connect to an upstream (nothing is forwarded before it connects).
    pub upstream_connect_timeout_ms: u64,
    /// Longest a proxied call may take as a whole, from forwarding to its last byte. Proxied
    /// routes are outside `request_timeout_ms`; a proxied call's hold lives this long plus
    /// a minute, so it never expires while its call runs.
    pub proxy_call_ms_max: u64,
    /// On shutdown, longest wait for proxied calls in flight to finish and settle.
    pub proxy_drain_ms_max: u64,
    /// Largest proxied request body (images and documents travel as base64): 32 MiB, the
    /// providers' own request limit; `body_bytes_max` bounds the API's bodies.
    pub proxy_body_bytes_max: usize,
    /// This node's id (hex), marking the holds of the calls it proxies so that, after a crash,
    /// its next start settles the ones left open; empty: generated once and kept in
    /// `data_dir`. Each node of a shared database needs its own.
    pub node_id: String,
    /// Largest upstream response body read whole (non-streamed responses).
    pub upstream_body_bytes_max: usize,
    /// How notices are delivered: `files` (`.eml` files in `data_dir/mail`) or `smtp`.
    pub mail: MailTransport,
    /// The sender of every email.
    pub mail_from: String,
    /// SMTP server host.
    pub smtp_host: String,
    /// SMTP server port (0: the TLS mode's usual port).
    pub smtp_port: u16,
    /// `none` (plain), `starttls` or `tls` (implicit TLS).
    pub smtp_tls: SmtpTls,
    /// SMTP user name (empty: no authentication).
    pub smtp_username: String,
    /// SMTP password.
    pub smtp_password: String,
    /// Longest an SMTP exchange may take.
    pub smtp_timeout_ms: u64,
    /// Pause between two runs of the notice worker.
    pub notice_interval_ms: u64,
    /// Delivery attempts before a notice is parked for the operator.
    pub notice_attempts_max: u32,
    /// Most notices delivered in one run of the worker (also: most webhook deliveries sent
    /// in one run of the webhook worker).
    pub notice_batch_len_max: usize,
    /// Longest a webhook endpoint may take to answer a delivery.
    pub webhook_timeout_ms: u64,
    /// Delivery attempts before a webhook delivery is parked (the operator can resend it).
    pub webhook_attempts_max: u32,
    /// The payment provider: `sandbox` (Stripe's test-card behaviours, no network) or `stripe`.
    pub payments: PaymentsProvider,
    /// Stripe: the secret API key (`sk_…`).
    pub stripe_secret_key: String,
    /// Stripe: the webhook endpoint's signing secret (`whsec_…`).
    pub stripe_webhook_secret: String,
    /// Stripe: the API's base URL (tests point it at localstripe).
    pub stripe_api_base: String,
    /// Stripe: how old a webhook's signed timestamp may be.
    pub stripe_webhook_tolerance_s: u64,
    /// Longest a call to the payment provider may take.
    pub provider_timeout_ms: u64,
    /// The smallest top-up or reload (a decimal string).
    pub top_up_min: String,
    /// The largest top-up or reload (a decimal string).
    pub top_up_max: String,
    /// Pause between two runs of the payments worker (auto-reload decisions and charges).
    pub payments_interval_ms: u64,
    /// Least time between two auto-reload attempts of an org.
    pub reload_cooldown_ms: u64,
    /// Wait before retrying a declined auto-reload; doubled after each further failure.
    pub reload_backoff_ms: u64,
    /// The longest wait between two retries of a declined auto-reload.
    pub reload_backoff_ms_max: u64,
    /// Consecutive declined auto-reloads after which auto-reload turns itself off.
    pub reload_failures_max: u32,
    /// A charge still `charging` after this long (a crash, a timeout) is resumed.
    pub charging_resume_ms: u64,
    /// The version of the auto-reload consent text shown to customers.
    pub consent_text_version: String,
    /// How long an emailed sign-in link works (it works once).
    pub sign_in_link_ttl_ms: u64,
    /// How long an invitation's sign-in link works (it works once).
    pub invite_link_ttl_ms: u64,
    /// How long the "undo this charge" link of an auto-reload receipt works.
    pub undo_window_ms: u64,
    /// Unused, unexpired sign-in links a member may have at once; asking for more sends none.
    pub sign_in_links_open_max: u32,
    /// How long a billing-page session lasts after sign-in.
    pub session_ttl_ms: u64,
    /// How long before a grant expires its "credits expiring" email goes out.
    pub credits_expiring_lead_ms: u64,
    /// A decimal amount: a call refused for lack of credits turns an org's API access off
    /// when its posted balance is less than this above its floor, or below its lowest
    /// low-balance threshold, whichever is higher; credits bring access back once the
    /// balance is at that level again (see `creditgate_domain::access`).
    pub cutoff_balance_min: String,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            data_dir: PathBuf::from(".creditgate"),
            database_url: String::new(),
            listen: "127.0.0.1:8080".into(),
            operator_token: String::new(),
            key_hash_secret: String::new(),
            public_url: String::new(),
            product_name: "Example API".into(),
            currency: "USD".into(),
            body_bytes_max: 1 << 20,
            request_timeout_ms: 30_000,
            hold_ttl_s_default: 600,
            usage_events_max: 1_000,
            page_len_max: 100,
            idempotency_ttl_s: 24 * 3600,
            expiry_interval_ms: 1_000,
            batch_len_max: 4_096,
            batch_wait_us: 0,
            queue_len_max: 65_536,
            pool_connections_max: 4,
            sqlite_synchronous: "FULL".into(),
            anthropic_upstream: Upstream::Demo,
            anthropic_upstream_key: String::new(),
            openai_upstream: Upstream::Demo,
            openai_upstream_key: String::new(),
            upstream_timeout_ms: 60_000,
            upstream_connect_timeout_ms: 10_000,
            proxy_call_ms_max: 600_000,
            proxy_drain_ms_max: 30_000,
            proxy_body_bytes_max: 32 << 20,
            node_id: String::new(),
            upstream_body_bytes_max: 16 << 20,
            mail: MailTransport::Files,
            mail_from: "billing@creditgate.localhost".into(),
            smtp_host: "127.0.0.1".into(),
            smtp_port: 0,
            smtp_tls: SmtpTls::Starttls,
            smtp_username: String::new(),
            smtp_password: String::new(),
            smtp_timeout_ms: 10_000,
            notice_interval_ms: 1_000,
            notice_attempts_max: 8,
            notice_batch_len_max: 100,
            webhook_timeout_ms: 10_000,
            webhook_attempts_max: 8,
            payments: PaymentsProvider::Sandbox,
            stripe_secret_key: String::new(),
            stripe_webhook_secret: String::new(),
            stripe_api_base: "https://api.stripe.com".into(),
            stripe_webhook_tolerance_s: 300,
            provider_timeout_ms: 10_000,
            top_up_min: "5.00".into(),
            top_up_max: "5000.00".into(),
            payments_interval_ms: 200,
            reload_cooldown_ms: 60_000,
            reload_backoff_ms: 3_600_000,
            reload_backoff_ms_max: 24 * 3_600_000,
            reload_failures_max: 3,
            charging_resume_ms: 60_000,
            consent_text_version: "2026-11".into(),
            sign_in_link_ttl_ms: 15 * 60_000,
            invite_link_ttl_ms: 7 * 24 * 3_600_000,
            undo_window_ms: 24 * 3_600_000,
            sign_in_links_open_max: 5,
            session_ttl_ms: 12 * 3_600_000,
            credits_expiring_lead_ms: 7 * 24 * 3_600_000,
            cutoff_balance_min: "1.00".into(),
        }
    }
}

/// Why the configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this configuration.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An environment variable has a value its key cannot take.
    #[error("{name}: {message}")]
    Env {
        /// The variable.
        name: String,
        /// What is wrong.
        message: String,
    },
}

impl Config {
    /// Defaults, then `file` (if given), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut table = toml::Table::new();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            table = text
                .parse::<toml::Table>()
                .map_err(|e| ConfigError::Parse {
                    path: path.to_owned(),
                    message: e.to_string(),
                })?;
        }
        Config::from_table(table, std::env::vars(), file.unwrap_or(Path::new("<env>")))
    }

    /// `table` overlaid with the `CREDITGATE_*` entries of `env`.
    pub fn from_table(
        mut table: toml::Table,
        env: impl IntoIterator<Item = (String, String)>,
        source: &Path,
    ) -> Result<Config, ConfigError> {
        let defaults = toml::Table::try_from(Config::default()).expect("defaults serialize");
        for (name, text) in env {
            let Some(key) = name.strip_prefix("CREDITGATE_") else {
                continue;
            };
            let key = key.to_ascii_lowercase();
            // Only keys the configuration has; other CREDITGATE_* variables belong to
            // other tools (tests, scripts).
            let Some(default) = defaults.get(&key) else {
                continue;
            };
            let value = match default {
                toml::Value::Integer(_) => {
                    toml::Value::Integer(text.trim().parse().map_err(|_| ConfigError::Env {
                        name: name.clone(),
                        message: format!("{text:?} is not a whole number"),
                    })?)
                }
                _ => toml::Value::String(text),
            };
            table.insert(key, value);
        }
        toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse {
                path: source.to_owned(),
                message: e.to_string(),
            })
    }

    /// The database URL, the embedded default if none is set.
    pub fn database_url(&self) -> String {
        if self.database_url.is_empty() {
            format!("sqlite:{}", self.data_dir.join("creditgate.db").display())
        } else {
            self.database_url.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_environment() {
        let table: toml::Table =
            "listen = \"127.0.0.1:9\"\nbody_bytes_max = 10\nproduct_name = \"Acme\""
                .parse()
                .unwrap();
        let env = [
            ("CREDITGATE_LISTEN".to_string(), "127.0.0.1:0".to_string()),
            ("CREDITGATE_BATCH_LEN_MAX".to_string(), "64".to_string()),
            (
                "CREDITGATE_TEST_DATABASE_URL".to_string(),
                "ignored".to_string(),
            ),
            ("OTHER".to_string(), "x".to_string()),
        ];
        let config = Config::from_table(table, env, Path::new("t.toml")).unwrap();
        assert_eq!(config.listen, "127.0.0.1:0");
        assert_eq!(config.body_bytes_max, 10);
        assert_eq!(config.batch_len_max, 64);
        assert_eq!(config.product_name, "Acme");
        assert_eq!(config.page_len_max, 100);
    }

    #[test]
    fn bad_values_are_named() {
        let env = [("CREDITGATE_BATCH_LEN_MAX".to_string(), "many".to_string())];
        let error = Config::from_table(toml::Table::new(), env, Path::new("t")).unwrap_err();
        assert!(
            error.to_string().contains("CREDITGATE_BATCH_LEN_MAX"),
            "{error}"
        );
        let table: toml::Table = "no_such_key = 1".parse().unwrap();
        let error = Config::from_table(table, [], Path::new("t.toml")).unwrap_err();
        assert!(error.to_string().contains("no_such_key"), "{error}");
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn payment_settings_come_from_their_variables() {
        let defaults = Config::from_table(toml::Table::new(), [], Path::new("<env>")).unwrap();
        assert_eq!(defaults.payments, PaymentsProvider::Sandbox);
        assert_eq!(defaults.stripe_secret_key, "");
        assert_eq!(defaults.stripe_webhook_secret, "");
        assert_eq!(defaults.stripe_api_base, "https://api.stripe.com");

        let table: toml::Table = "payments = \"sandbox\"\nstripe_api_base = \"https://file\""
            .parse()
            .unwrap();
        let vars = env(&[
            ("CREDITGATE_PAYMENTS", "stripe"),
            ("CREDITGATE_STRIPE_SECRET_KEY", "sk_test_from_env"),
            ("CREDITGATE_STRIPE_WEBHOOK_SECRET", "whsec_from_env"),
            ("CREDITGATE_STRIPE_API_BASE", "http://127.0.0.1:8420"),
        ]);
        let config = Config::from_table(table, vars, Path::new("t.toml")).unwrap();
        assert_eq!(config.payments, PaymentsProvider::Stripe);
        assert_eq!(config.stripe_secret_key, "sk_test_from_env");
        assert_eq!(config.stripe_webhook_secret, "whsec_from_env");
        assert_eq!(config.stripe_api_base, "http://127.0.0.1:8420");
        // Each variable sets its own field only.
        let config = Config::from_table(
            toml::Table::new(),
            env(&[("CREDITGATE_STRIPE_WEBHOOK_SECRET", "whsec_only")]),
            Path::new("<env>"),
        )
        .unwrap();
        assert_eq!(config.stripe_webhook_secret, "whsec_only");
        assert_eq!(config.stripe_secret_key, "");
        assert_eq!(config.payments, PaymentsProvider::Sandbox);
        assert_eq!(config.stripe_api_base, "https://api.stripe.com");
    }
}
