//! Black-box API tests: the real `Application` on port 0 over a fresh database of each
//! backend, driven over HTTP with reqwest, and the ledger invariants checked at the end.

// Each test file compiles this module on its own and uses only part of it.
#![allow(dead_code)]

pub mod helpers;

use std::net::SocketAddr;

use creditgate::config::Config;
use creditgate::node::{Application, Parts};
use creditgate_store::testing::TestDatabase;
use creditgate_store::Store;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

pub const OPERATOR_TOKEN: &str = "op_test_token";

/// A running service on one backend.
pub struct TestApp {
    pub address: SocketAddr,
    pub base: String,
    pub client: reqwest::Client,
    /// A second handle on the service's database, for invariant checks.
    pub store: Store,
    pub backend: &'static str,
    /// The database's URL (another node may serve it too).
    pub database_url: String,
    shutdown: CancellationToken,
    served: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _database: TestDatabase,
    _data_dir: TempDir,
}

/// A response: status, JSON body (Null if none), and the headers.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Reply {
    /// `body["error"]["code"]`.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
    /// `body[field]` as a string.
    pub fn str(&self, field: &str) -> String {
        self.body[field]
            .as_str()
            .unwrap_or_else(|| panic!("{field} in {}", self.body))
            .to_owned()
    }
}

pub struct TempDir(pub std::path::PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every backend's database: SQLite always, PostgreSQL when configured (always in CI).
pub async fn databases() -> Vec<TestDatabase> {
    creditgate_store::testing::all().await
}

/// Starts the service on `database` with test settings, changed by `configure`.
pub async fn spawn_app_with(
    database: TestDatabase,
    configure: impl FnOnce(&mut Config),
) -> TestApp {
    let data_dir = std::env::temp_dir().join(format!(
        "creditgate_api_{}_{}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let mut config = Config {
        data_dir: data_dir.clone(),
        database_url: database.url.clone(),
        listen: "127.0.0.1:0".into(),
        operator_token: OPERATOR_TOKEN.into(),
        key_hash_secret: "test-key-hash-secret".into(),
        expiry_interval_ms: 50,
        ..Config::default()
    };
    configure(&mut config);
    let app = Application::build(config, Parts::default())
        .await
        .expect("the service starts");
    let address = app.address();
    let store = database.open().await.expect("the database opens");
    let shutdown = CancellationToken::new();
    let served = tokio::spawn(app.run(shutdown.clone()));
    let backend = if database.url.starts_with("postgres") {
        "postgres"
    } else {
        "sqlite"
    };
    TestApp {
        address,
        base: format!("http://{address}"),
        client: reqwest::Client::new(),
        store,
        backend,
        database_url: database.url.clone(),
        shutdown,
        served: Some(served),
        _database: database,
        _data_dir: TempDir(data_dir),
    }
}

/// Starts the service on `database` with test settings.
pub async fn spawn_app(database: TestDatabase) -> TestApp {
    spawn_app_with(database, |_| {}).await
}

/// Who a request is sent as.
#[derive(Clone, Debug)]
pub enum As {
    Operator,
    /// An org's key secret, sent as `x-api-key`.
    Key(String),
    /// An org's key secret, sent as `Authorization: Bearer`.
    Bearer(String),
    Nobody,
}

impl TestApp {
    /// Sends `method path` with an optional JSON body and headers.
    pub async fn request(
        &self,
        who: &As,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        request = match who {
            As::Operator => request.bearer_auth(OPERATOR_TOKEN),
            As::Key(secret) => request.header("x-api-key", secret),
            As::Bearer(secret) => request.bearer_auth(secret),
            As::Nobody => request,
        };
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the service answers");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("a body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Reply {
            status,
            body,
            headers,
        }
    }

    pub async fn get(&self, who: &As, path: &str) -> Reply {
        self.request(who, Method::GET, path, None, &[]).await
    }

    pub async fn post(&self, who: &As, path: &str, body: Value) -> Reply {
        self.request(who, Method::POST, path, Some(body), &[]).await
    }

    pub async fn post_idempotent(&self, who: &As, path: &str, key: &str, body: Value) -> Reply {
        self.request(
            who,
            Method::POST,
            path,
            Some(body),
            &[("Idempotency-Key", key)],
        )
        .await
    }

    /// Creates an org (operator) and answers its id.
    pub async fn create_org(&self, name: &str) -> String {
        let reply = self
            .post(
                &As::Operator,
                "/v1/orgs",
                json!({ "name": name, "billing_emails": ["billing@example.com"] }),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        reply.str("id")
    }

    /// Grants `amount` of paid credits (operator).
    pub async fn grant(&self, org_id: &str, amount: &str) -> Reply {
        let key = format!("grant-{}", rand::random::<u64>());
        let reply = self
            .post_idempotent(
                &As::Operator,
                &format!("/v1/orgs/{org_id}/grants"),
                &key,
                json!({ "amount": amount, "origin": "paid" }),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        reply
    }

    /// Creates a key for `org_id` and answers (key id, secret).
    pub async fn create_key(&self, org_id: &str) -> (String, String) {
        let reply = self
            .post(
                &As::Operator,
                &format!("/v1/orgs/{org_id}/keys"),
                json!({ "name": "test" }),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        (reply.str("id"), reply.str("secret"))
    }

    /// Sets a model's prices per million tokens (operator).
    pub async fn set_price(&self, model: &str, input: &str, output: &str) -> Reply {
        let reply = self
            .request(
                &As::Operator,
                Method::PUT,
                &format!("/v1/prices/{model}"),
                Some(json!({ "input": input, "output": output })),
                &[],
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        reply
    }

    /// The org's balance as the operator sees it.
    pub async fn balance(&self, org_id: &str) -> Reply {
        let reply = self
            .get(&As::Operator, &format!("/v1/orgs/{org_id}/balance"))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        reply
    }

    /// Checks the ledger invariants on the service's database (every test ends with this).
    pub async fn assert_invariants(&self) {
        let report = self
            .store
            .check_invariants()
            .await
            .expect("the snapshot loads");
        assert!(
            report.is_ok(),
            "ledger invariants violated on {}: {:#?}",
            self.backend,
            report.violations
        );
    }

    /// Stops the service gracefully and waits for it.
    pub async fn stop(self) {
        let _ = self.stopped().await;
    }

    /// Stops the server, keeping the handle (its store and database) for checks after.
    pub async fn stopped(mut self) -> TestApp {
        self.shutdown.cancel();
        if let Some(served) = self.served.take() {
            served
                .await
                .expect("the server task ends")
                .expect("the server stops cleanly");
        }
        self
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// What a scenario starts with: the block most API tests repeat (an app on each database,
/// a price, an org with credits, a key). Build it with the methods, then [`Setup::run`].
#[derive(Clone, Debug, Default)]
pub struct Setup {
    /// `(model, input, output)` prices per million tokens.
    pub price: Option<(&'static str, &'static str, &'static str)>,
    /// The org's name (default `Scenario`).
    pub org_name: Option<&'static str>,
    /// Paid credits granted to the org at the start.
    pub grant: Option<&'static str>,
}

/// One database's scenario: the app, the org and its key.
pub struct Scenario {
    pub app: TestApp,
    pub org: String,
    pub key_id: String,
    /// The key's secret.
    pub secret: String,
    /// The org's key, sent as `x-api-key`.
    pub key: As,
}

impl Setup {
    /// A price for `model`.
    pub fn price(
        mut self,
        model: &'static str,
        input: &'static str,
        output: &'static str,
    ) -> Setup {
        self.price = Some((model, input, output));
        self
    }

    /// The org's name.
    pub fn org(mut self, name: &'static str) -> Setup {
        self.org_name = Some(name);
        self
    }

    /// Paid credits at the start.
    pub fn grant(mut self, amount: &'static str) -> Setup {
        self.grant = Some(amount);
        self
    }

    /// Starts the scenario on `database`.
    pub async fn start(&self, database: TestDatabase) -> Scenario {
        let app = spawn_app(database).await;
        if let Some((model, input, output)) = self.price {
            app.set_price(model, input, output).await;
        }
        let org = app.create_org(self.org_name.unwrap_or("Scenario")).await;
        if let Some(amount) = self.grant {
            app.grant(&org, amount).await;
        }
        let (key_id, secret) = app.create_key(&org).await;
        Scenario {
            app,
            org,
            key_id,
            key: As::Key(secret.clone()),
            secret,
        }
    }

    /// Runs `test` on a fresh scenario on each database, then checks the ledger invariants
    /// and stops the app.
    pub async fn run(&self, mut test: impl AsyncFnMut(&Scenario)) {
        for database in databases().await {
            let scenario = self.start(database).await;
            test(&scenario).await;
            scenario.app.assert_invariants().await;
            scenario.app.stop().await;
        }
    }
}
