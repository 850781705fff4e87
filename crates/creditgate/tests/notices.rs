//! Notices end to end, on both backends: the emails of the billing story delivered to a real
//! SMTP server (aiosmtpd), exactly one "access turned off" email per depletion under a race of
//! 256 holds, delivery after a crash between the commit and the send, an SMTP server that is
//! down for a while, and the operator's retry of a parked notice.
//!
//! Setup: aiosmtpd (PyPI) is installed once into `target/venv-aiosmtpd` (reused when present;
//! `scripts/test.sh` installs it the same way, both holding `target/venv-aiosmtpd.lock`) and
//! started per test with its Maildir handler; the test reads the delivered mail with Python's
//! `mailbox.Maildir` and `email` packages. When `CI` is set, a failure to install or start it
//! fails the test; otherwise the SMTP tests are skipped with a message.

mod api_helpers;
mod api_support;
mod python_tools;

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use api_helpers::*;
use api_support::{databases, spawn_app_with, As, TempDir, TestApp, OPERATOR_TOKEN};
use creditgate::config::Config;
use creditgate::server::{Application, Parts};
use python_tools::ci;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const AIOSMTPD_VERSION: &str = "1.4.6";
/// The longest wait for anything to be delivered.
const DELIVERY_MAX: Duration = Duration::from_secs(10);
/// How long "no further email" is watched for (many runs of a 20 ms worker).
const QUIET: Duration = Duration::from_millis(300);

const LOW_SUBJECT: &str = "Your Acme AI credit balance is low";
const OFF_SUBJECT: &str = "[action needed] Your Acme AI API access is turned off";
const BACK_SUBJECT: &str = "Your Acme AI API access is back on";
const RECEIPT_PREFIX: &str = "Receipt: ";

// ----------------------------------------------------------------------------------------
// aiosmtpd
// ----------------------------------------------------------------------------------------

fn aiosmtpd_installed(python: &Path) -> bool {
    Command::new(python)
        .args([
            "-c",
            &format!(
                "import sys, aiosmtpd; sys.exit(aiosmtpd.__version__ != '{AIOSMTPD_VERSION}')"
            ),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Finds or installs aiosmtpd into `target/venv-aiosmtpd`; answers the venv's python.
fn install_aiosmtpd() -> Result<PathBuf, String> {
    python_tools::venv_with(
        "aiosmtpd",
        &format!("aiosmtpd=={AIOSMTPD_VERSION}"),
        "python",
        aiosmtpd_installed,
    )
}

static AIOSMTPD_PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// The venv's python with aiosmtpd; `None` (skip) when unavailable outside CI.
async fn aiosmtpd_python() -> Option<PathBuf> {
    let python =
        tokio::task::spawn_blocking(|| AIOSMTPD_PYTHON.get_or_init(install_aiosmtpd).clone())
            .await
            .expect("the install task ends");
    match python {
        Ok(python) => Some(python),
        Err(error) if ci() => panic!("aiosmtpd is required when CI is set: {error}"),
        Err(error) => {
            eprintln!("skipping: aiosmtpd is unavailable (set CI to make this fail): {error}");
            None
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// Prints the Maildir's messages as JSON: subject, to, message_id, rcpt_to, text, html.
const READ_MAILDIR: &str = r#"
import email, json, mailbox, sys
from email import policy
box = mailbox.Maildir(sys.argv[1], factory=None, create=False)
out = []
for key in box.keys():
    msg = email.message_from_bytes(box.get_bytes(key), policy=policy.default)
    plain = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    out.append({
        "subject": str(msg["Subject"]),
        "to": [a.addr_spec for a in msg["To"].addresses],
        "message_id": str(msg["Message-ID"]),
        "rcpt_to": str(msg.get("X-RcptTo", "")),
        "text": plain.get_content() if plain is not None else None,
        "html": html.get_content() if html is not None else None,
    })
print(json.dumps(out))
"#;

/// A delivered email.
#[derive(Clone, Debug)]
struct Mail {
    subject: String,
    to: Vec<String>,
    message_id: String,
    rcpt_to: String,
    text: String,
    html: String,
}

/// A running aiosmtpd writing to a Maildir, killed on drop.
struct Smtpd {
    port: u16,
    python: PathBuf,
    dir: PathBuf,
    child: Option<Child>,
    /// Message-IDs [`Smtpd::mails`] leaves out (see [`Smtpd::ignore_delivered`]).
    ignored: Mutex<HashSet<String>>,
}

impl Drop for Smtpd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Smtpd {
    /// An aiosmtpd for one test on a free port, not started yet; `None` to skip.
    async fn new() -> Option<Smtpd> {
        let python = aiosmtpd_python().await?;
        let dir = std::env::temp_dir().join(format!(
            "creditgate_smtpd_{}_{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).expect("the smtpd directory");
        Some(Smtpd {
            port: free_port(),
            python,
            dir,
            child: None,
            ignored: Mutex::new(HashSet::new()),
        })
    }

    /// An aiosmtpd already answering; `None` to skip.
    async fn started() -> Option<Smtpd> {
        let mut smtpd = Smtpd::new().await?;
        smtpd.start().await;
        Some(smtpd)
    }

    fn maildir(&self) -> PathBuf {
        self.dir.join("maildir")
    }

    /// Starts the server on its port and waits until it accepts connections (≤ 10 s).
    async fn start(&mut self) {
        let log_path = self.dir.join("smtpd.log");
        let log = File::create(&log_path).expect("the smtpd log");
        let child = Command::new(&self.python)
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{}", self.port))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(self.maildir())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the smtpd log"))
            .stderr(log)
            .spawn()
            .expect("aiosmtpd starts");
        self.child = Some(child);
        let deadline = Instant::now() + DELIVERY_MAX;
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "aiosmtpd exited with {status}: {}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
                && self.maildir().join("new").is_dir()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "aiosmtpd did not answer on port {}: {}",
                self.port,
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Leaves every email delivered so far out of [`Smtpd::mails`] from now on.
    fn ignore_delivered(&self) {
        let ids: Vec<String> = self.mails().into_iter().map(|m| m.message_id).collect();
        self.ignored.lock().expect("the set").extend(ids);
    }

    /// Every email delivered so far (but the ignored ones).
    /// The access emails received (receipts left out: `receipts` has those).
    fn mails(&self) -> Vec<Mail> {
        self.all_mails()
            .into_iter()
            .filter(|m| !m.subject.starts_with(RECEIPT_PREFIX))
            .collect()
    }

    /// The receipts received.
    fn receipts(&self) -> Vec<Mail> {
        self.all_mails()
            .into_iter()
            .filter(|m| m.subject.starts_with(RECEIPT_PREFIX))
            .collect()
    }

    fn all_mails(&self) -> Vec<Mail> {
        if !self.maildir().join("new").is_dir() {
            return Vec::new();
        }
        let out = Command::new(&self.python)
            .args(["-c", READ_MAILDIR])
            .arg(self.maildir())
            .stdin(Stdio::null())
            .output()
            .expect("python reads the maildir");
        assert!(
            out.status.success(),
            "reading the maildir: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let items: Vec<Value> = serde_json::from_slice(&out.stdout).expect("JSON mail");
        items
            .into_iter()
            .map(|m| Mail {
                subject: m["subject"].as_str().unwrap_or_default().to_owned(),
                to: m["to"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default(),
                message_id: m["message_id"].as_str().unwrap_or_default().to_owned(),
                rcpt_to: m["rcpt_to"].as_str().unwrap_or_default().to_owned(),
                text: m["text"].as_str().expect("a text/plain part").to_owned(),
                html: m["html"].as_str().expect("a text/html part").to_owned(),
            })
            .filter(|m| {
                !self
                    .ignored
                    .lock()
                    .expect("the set")
                    .contains(&m.message_id)
            })
            .collect()
    }

    /// Waits (≤ 10 s) until `count` emails arrived, then watches a while that no more come.
    async fn expect_mails(&self, count: usize) -> Vec<Mail> {
        let deadline = Instant::now() + DELIVERY_MAX;
        loop {
            let mails = self.mails();
            if mails.len() >= count {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{count} emails expected, {} arrived: {:#?}",
                mails.len(),
                mails.iter().map(|m| &m.subject).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(QUIET).await;
        let mails = self.mails();
        assert_eq!(
            mails.len(),
            count,
            "exactly {count} emails: {:#?}",
            mails.iter().map(|m| &m.subject).collect::<Vec<_>>()
        );
        mails
    }
}

// ----------------------------------------------------------------------------------------
// The service
// ----------------------------------------------------------------------------------------

/// Points `config` at `smtpd` with the story's branding and a fast worker.
fn smtp_config(config: &mut Config, port: u16) {
    config.mail = "smtp".into();
    config.smtp_host = "127.0.0.1".into();
    config.smtp_port = port;
    config.smtp_tls = "none".into();
    config.smtp_timeout_ms = 2_000;
    config.product_name = "Acme AI".into();
    config.public_url = "https://billing.example.com".into();
    config.notice_interval_ms = 20;
}

/// The org's access notices (operator), newest first; `state` filters when given.
/// Receipts (`credits.added`) are left out, as `Smtpd::mails` leaves their emails out.
async fn notices(app: &TestApp, org_id: &str, state: Option<&str>) -> Vec<Value> {
    all_notices(app, org_id, state)
        .await
        .into_iter()
        .filter(|n| n["kind"] != "credits.added")
        .collect()
}

/// Every notice of the org, receipts included.
async fn all_notices(app: &TestApp, org_id: &str, state: Option<&str>) -> Vec<Value> {
    let mut path = format!("/v1/notices?org_id={org_id}&limit=100");
    if let Some(state) = state {
        path.push_str(&format!("&state={state}"));
    }
    let reply = app.get(&As::Operator, &path).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["data"].as_array().expect("data").clone()
}

/// Waits (≤ 10 s) until the org's notices satisfy `done`; answers them.
async fn wait_notices(app: &TestApp, org_id: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + DELIVERY_MAX;
    loop {
        let items = notices(app, org_id, None).await;
        if done(&items) {
            return items;
        }
        assert!(
            Instant::now() < deadline,
            "notices never got there: {items:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Uses `amount` of the org's credits: a hold settled for all of it.
async fn spend(app: &TestApp, key: &As, amount: &str) {
    let hold = hold_ok(app, key, amount).await;
    settle_amount(app, key, &hold, amount).await;
}

fn subjects(mails: &[Mail]) -> Vec<&str> {
    mails.iter().map(|m| m.subject.as_str()).collect()
}

/// The one email with `message_id` carrying notice `id`.
fn mail_of<'a>(mails: &'a [Mail], notice: &Value) -> &'a Mail {
    let id = notice["id"].as_str().expect("notice id");
    let found: Vec<&Mail> = mails.iter().filter(|m| m.message_id.contains(id)).collect();
    assert_eq!(found.len(), 1, "one email for {id}: {:#?}", subjects(mails));
    found[0]
}

// ----------------------------------------------------------------------------------------
// 1. The billing story against a real SMTP server
// ----------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_billing_story_sends_the_right_emails_over_smtp() {
    for database in databases().await {
        let Some(smtpd) = Smtpd::started().await else {
            return;
        };
        let port = smtpd.port;
        let app = spawn_app_with(database, |c| smtp_config(c, port)).await;
        let org = create_org_with(
            &app,
            "Globex Research",
            json!({ "billing_emails": ["a@x.com", "b@x.com"], "low_thresholds": ["0.50"] }),
        )
        .await;
        let org_id = org["id"].as_str().expect("id").to_owned();
        app.grant(&org_id, "1.00").await;
        let (_, secret) = app.create_key(&org_id).await;
        let key = As::Key(secret);
        // What the first grant to a new org sends is checked on its own (see
        // `a_first_grant_to_a_new_org_sends_no_email`); the story starts after it.
        let before = wait_notices(&app, &org_id, |items| {
            items.iter().all(|n| n["state"] == "sent")
        })
        .await;
        tokio::time::sleep(QUIET).await;
        smtpd.ignore_delivered();
        let before: HashSet<String> = before
            .iter()
            .map(|n| n["id"].as_str().expect("id").to_owned())
            .collect();

        // Below the threshold: one low-balance email to both contacts.
        spend(&app, &key, "0.60").await;
        let mails = smtpd.expect_mails(1).await;
        let low = &mails[0];
        assert_eq!(low.subject, LOW_SUBJECT);
        assert_eq!(low.to, ["a@x.com", "b@x.com"], "{low:#?}");
        assert!(low.rcpt_to.contains("a@x.com") && low.rcpt_to.contains("b@x.com"));
        assert!(low.text.contains("below $0.50"), "{}", low.text);
        assert!(
            low.text.contains("Available balance: $0.40"),
            "{}",
            low.text
        );
        let billing_url = format!("https://billing.example.com/billing/{org_id}");
        assert!(low.text.contains(&billing_url), "{}", low.text);

        // Down to zero: one "turned off" email.
        spend(&app, &key, "0.40").await;
        let mails = smtpd.expect_mails(2).await;
        let items = notices(&app, &org_id, None).await;
        let off_notice = items
            .iter()
            .find(|n| n["kind"] == "access.turned_off")
            .expect("a turned-off notice");
        let off = mail_of(&mails, off_notice);
        assert_eq!(off.subject, OFF_SUBJECT);
        assert_eq!(off.to, ["a@x.com", "b@x.com"], "{off:#?}");
        let text = off.text.replace('\n', " ");
        assert!(
            text.contains("Globex Research is out of usage credits"),
            "{}",
            off.text
        );
        assert!(text.contains("API access is turned off"), "{}", off.text);
        assert!(
            off.text.contains(&format!("\n{billing_url}\n")),
            "{}",
            off.text
        );
        assert!(
            text.contains("auto-reload")
                && text.contains(
                    "Credits are added automatically when your balance reaches a minimum you choose."
                ),
            "{}",
            off.text
        );
        assert!(
            off.text.contains("https://billing.example.com/help"),
            "{}",
            off.text
        );
        assert!(off.html.contains(&billing_url), "{}", off.html);
        assert!(off.html.contains("Globex Research"), "{}", off.html);

        // Refused while depleted: no further email.
        for _ in 0..5 {
            let reply = hold_amount(&app, &key, "0.01").await;
            assert_eq!(reply.status, StatusCode::PAYMENT_REQUIRED, "{}", reply.body);
        }
        smtpd.expect_mails(2).await;

        // Credits land: one "back on" email.
        app.grant(&org_id, "1.00").await;
        let mails = smtpd.expect_mails(3).await;
        let back: Vec<&Mail> = mails.iter().filter(|m| m.subject == BACK_SUBJECT).collect();
        assert_eq!(back.len(), 1, "{:#?}", subjects(&mails));
        assert!(back[0].text.contains("Globex Research has new credits"));
        assert!(back[0].text.contains(&billing_url));

        // Crossing the threshold again (re-armed by the rise): a second low email.
        spend(&app, &key, "0.60").await;
        let mails = smtpd.expect_mails(4).await;
        // Rising above it without depleting, and crossing once more: a third.
        app.grant(&org_id, "0.20").await;
        smtpd.expect_mails(4).await;
        spend(&app, &key, "0.20").await;
        let mails_after = smtpd.expect_mails(5).await;
        assert_eq!(mails.len(), 4);
        let lows = mails_after
            .iter()
            .filter(|m| m.subject == LOW_SUBJECT)
            .count();
        assert_eq!(lows, 3, "{:#?}", subjects(&mails_after));
        assert_eq!(
            mails_after
                .iter()
                .filter(|m| m.subject == OFF_SUBJECT)
                .count(),
            1
        );

        // Every notice is sent, and each email's Message-ID carries its notice's id.
        let items: Vec<Value> = notices(&app, &org_id, None)
            .await
            .into_iter()
            .filter(|n| !before.contains(n["id"].as_str().expect("id")))
            .collect();
        assert_eq!(items.len(), 5, "{items:#?}");
        let mut kinds: Vec<&str> = items.iter().map(|n| n["kind"].as_str().unwrap()).collect();
        kinds.reverse();
        assert_eq!(
            kinds,
            [
                "balance.low",
                "access.turned_off",
                "access.restored",
                "balance.low",
                "balance.low"
            ],
            "{items:#?}"
        );
        for notice in &items {
            assert_eq!(notice["state"], "sent", "{notice}");
            assert!(
                notice["id"].as_str().unwrap().starts_with("ntc_"),
                "{notice}"
            );
            mail_of(&mails_after, notice);
        }
        let ids: HashSet<&str> = mails_after.iter().map(|m| m.message_id.as_str()).collect();
        assert_eq!(ids.len(), 5, "distinct Message-IDs");

        app.assert_invariants().await;
        app.stop().await;
    }
}

/// The first grant to a new org: it never had access, so nothing is "back on" (see
/// `notice::for_transition`); the grant's receipt is the one email.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_grant_sends_its_receipt_and_nothing_else() {
    let mut wrong = Vec::new();
    for database in databases().await {
        let Some(smtpd) = Smtpd::started().await else {
            return;
        };
        let port = smtpd.port;
        let app = spawn_app_with(database, |c| smtp_config(c, port)).await;
        let org_id = create_org_with(
            &app,
            "Umbrella",
            json!({ "billing_emails": ["a@x.com"], "low_thresholds": ["0.50"] }),
        )
        .await["id"]
            .as_str()
            .expect("id")
            .to_owned();
        let grant = app.grant(&org_id, "1.00").await;
        let deadline = Instant::now() + DELIVERY_MAX;
        while smtpd.receipts().is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Give the 20 ms worker many runs to send anything else it would.
        tokio::time::sleep(QUIET).await;
        let items = all_notices(&app, &org_id, None).await;
        let kinds: Vec<&str> = items.iter().filter_map(|n| n["kind"].as_str()).collect();
        let receipts = smtpd.receipts();
        let access = smtpd.mails();
        let receipt_ok = receipts.len() == 1
            && receipts[0].subject == "Receipt: $1.00 of Acme AI credits added"
            && receipts[0]
                .text
                .contains(&format!("Receipt number: {}", grant.str("id")));
        if kinds != ["credits.added"] || !access.is_empty() || !receipt_ok {
            wrong.push(format!(
                "{}: notices {kinds:?}, access emails {:#?}, receipts {:#?}",
                app.backend,
                subjects(&access),
                subjects(&receipts)
            ));
        }
        app.assert_invariants().await;
        app.stop().await;
    }
    assert!(wrong.is_empty(), "a first grant caused {wrong:#?}");
}

// ----------------------------------------------------------------------------------------
// 2. One "turned off" notice per depletion under a race
// ----------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_holds_to_zero_cause_exactly_one_turned_off_email() {
    const RACERS: usize = 256;
    for database in databases().await {
        let data_dir = std::env::temp_dir().join(format!(
            "creditgate_notices_{}_{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let _cleanup = TempDir(data_dir.clone());
        let dir = data_dir.clone();
        let app = spawn_app_with(database, move |c| {
            c.data_dir = dir;
            c.mail = "files".into();
            c.product_name = "Acme AI".into();
            c.public_url = "https://billing.example.com".into();
            c.notice_interval_ms = 20;
        })
        .await;
        let org_id = app.create_org("Racer").await;
        app.grant(&org_id, "1.00").await;
        let (_, secret) = app.create_key(&org_id).await;

        let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
        let mut tasks = Vec::new();
        for _ in 0..RACERS {
            let client = app.client.clone();
            let url = format!("{}/v1/holds", app.base);
            let (secret, barrier) = (secret.clone(), barrier.clone());
            tasks.push(tokio::spawn(async move {
                let request = client
                    .post(url)
                    .header("x-api-key", secret)
                    .json(&json!({ "amount": "0.01" }));
                barrier.wait().await;
                request.send().await.expect("the service answers").status()
            }));
        }
        let mut placed = 0;
        for task in tasks {
            match task.await.expect("the racer ends") {
                StatusCode::CREATED => placed += 1,
                StatusCode::PAYMENT_REQUIRED => {}
                other => panic!("unexpected {other}"),
            }
        }
        assert_eq!(placed, 100, "holds placed");

        let sent = wait_notices(&app, &org_id, |items| {
            !items.is_empty() && items.iter().all(|n| n["state"] == "sent")
        })
        .await;
        // More refused holds while depleted change nothing.
        for _ in 0..3 {
            let reply = hold_amount(&app, &As::Key(secret.clone()), "0.01").await;
            assert_eq!(reply.status, StatusCode::PAYMENT_REQUIRED, "{}", reply.body);
        }
        tokio::time::sleep(QUIET).await;
        let items = notices(&app, &org_id, None).await;
        assert_eq!(items.len(), sent.len(), "{items:#?}");
        let off: Vec<&Value> = items
            .iter()
            .filter(|n| n["kind"] == "access.turned_off")
            .collect();
        assert_eq!(off.len(), 1, "one turned-off notice: {items:#?}");
        assert_eq!(off[0]["available"], "0.00", "{}", off[0]);
        let sent_off = notices(&app, &org_id, Some("sent")).await;
        assert_eq!(
            sent_off
                .iter()
                .filter(|n| n["kind"] == "access.turned_off")
                .count(),
            1,
            "{sent_off:#?}"
        );

        let mut files = 0;
        for entry in std::fs::read_dir(data_dir.join("mail")).expect("the mail directory") {
            let path = entry.expect("an entry").path();
            if path.extension().is_some_and(|e| e == "eml") {
                let text = std::fs::read_to_string(&path).expect("an email");
                if text.contains(&format!("Subject: {OFF_SUBJECT}")) {
                    files += 1;
                }
            }
        }
        assert_eq!(files, 1, "one turned-off email file");

        app.assert_invariants().await;
        app.stop().await;
    }
}

// ----------------------------------------------------------------------------------------
// 3. A crash between the commit and the send
// ----------------------------------------------------------------------------------------

/// A request to a bare `Application` as the operator (or with an org key).
async fn call(
    client: &reqwest::Client,
    base: &str,
    key: Option<&str>,
    method: Method,
    path: &str,
    body: Value,
) -> (StatusCode, Value) {
    let mut request = client
        .request(method, format!("{base}{path}"))
        .header("Idempotency-Key", format!("k-{}", rand::random::<u64>()))
        .json(&body);
    request = match key {
        Some(secret) => request.header("x-api-key", secret),
        None => request.bearer_auth(OPERATOR_TOKEN),
    };
    let response = request.send().await.expect("the service answers");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_committed_before_a_crash_is_delivered_after_the_restart_once() {
    for database in databases().await {
        let Some(smtpd) = Smtpd::started().await else {
            return;
        };
        let port = smtpd.port;
        let data_dir = std::env::temp_dir().join(format!(
            "creditgate_notices_{}_{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let _cleanup = TempDir(data_dir.clone());

        // The first life: the worker never gets to run.
        let mut config = Config {
            data_dir: data_dir.clone(),
            database_url: database.url.clone(),
            listen: "127.0.0.1:0".into(),
            operator_token: OPERATOR_TOKEN.into(),
            key_hash_secret: "test-key-hash-secret".into(),
            expiry_interval_ms: 50,
            ..Config::default()
        };
        smtp_config(&mut config, port);
        config.notice_interval_ms = 3_600_000;
        let first = Application::build(config, Parts::default())
            .await
            .expect("the service starts");
        let base = format!("http://{}", first.address());
        let shutdown = CancellationToken::new();
        let served = tokio::spawn(first.run(shutdown.clone()));
        let client = reqwest::Client::new();
        let (status, org) = call(
            &client,
            &base,
            None,
            Method::POST,
            "/v1/orgs",
            json!({ "name": "Initech", "billing_emails": ["a@x.com"] }),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{org}");
        let org_id = org["id"].as_str().expect("id").to_owned();
        let (status, body) = call(
            &client,
            &base,
            None,
            Method::POST,
            &format!("/v1/orgs/{org_id}/grants"),
            json!({ "amount": "1.00", "origin": "paid" }),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (status, key) = call(
            &client,
            &base,
            None,
            Method::POST,
            &format!("/v1/orgs/{org_id}/keys"),
            json!({ "name": "k" }),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{key}");
        let secret = key["secret"].as_str().expect("secret").to_owned();
        let (status, hold) = call(
            &client,
            &base,
            Some(&secret),
            Method::POST,
            "/v1/holds",
            json!({ "amount": "1.00" }),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{hold}");
        let (status, list) = call(
            &client,
            &base,
            None,
            Method::GET,
            &format!("/v1/notices?org_id={org_id}"),
            Value::Null,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{list}");
        // Every notice committed so far is pending (access notices; the grant's receipt is
        // pending too, and left out here as `Smtpd::mails` leaves its email out).
        let pending: Vec<Value> = list["data"]
            .as_array()
            .expect("data")
            .iter()
            .filter(|n| n["kind"] != "credits.added")
            .cloned()
            .collect();
        assert!(!pending.is_empty(), "{list}");
        for notice in &pending {
            assert_eq!(notice["state"], "pending", "{list}");
            assert_eq!(notice["attempts"], 0, "{list}");
        }
        let off: Vec<&Value> = pending
            .iter()
            .filter(|n| n["kind"] == "access.turned_off")
            .collect();
        assert_eq!(off.len(), 1, "{list}");
        let off_id = off[0]["id"].as_str().expect("id").to_owned();
        shutdown.cancel();
        served
            .await
            .expect("the server task ends")
            .expect("the server stops");
        assert!(smtpd.mails().is_empty(), "nothing sent before the crash");

        // The second life: the worker delivers it, once.
        let dir = data_dir.clone();
        let app = spawn_app_with(database, move |c| {
            smtp_config(c, port);
            c.data_dir = dir;
        })
        .await;
        let mails = smtpd.expect_mails(pending.len()).await;
        let items = wait_notices(&app, &org_id, |items| {
            items.iter().all(|n| n["state"] == "sent")
        })
        .await;
        assert_eq!(items.len(), pending.len(), "{items:#?}");
        for notice in &items {
            // Delivered on the first attempt after the restart, one email per notice.
            assert_eq!(notice["attempts"], 1, "{notice}");
            mail_of(&mails, notice);
        }
        let off = mails
            .iter()
            .find(|m| m.message_id.contains(&off_id))
            .expect("the turned-off email");
        assert_eq!(off.subject, OFF_SUBJECT);
        assert_eq!(off.to, ["a@x.com"]);
        assert_eq!(smtpd.expect_mails(pending.len()).await.len(), mails.len());

        app.assert_invariants().await;
        app.stop().await;
    }
}

// ----------------------------------------------------------------------------------------
// 4. The SMTP server down for a while
// ----------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_wait_while_smtp_is_down_and_go_out_when_it_is_back() {
    for database in databases().await {
        let Some(mut smtpd) = Smtpd::new().await else {
            return;
        };
        let port = smtpd.port;
        let app = spawn_app_with(database, |c| {
            smtp_config(c, port);
            c.notice_attempts_max = 50;
        })
        .await;
        let org_id = create_org_with(
            &app,
            "Hooli",
            json!({ "billing_emails": ["a@x.com"], "low_thresholds": ["0.50"] }),
        )
        .await["id"]
            .as_str()
            .expect("id")
            .to_owned();
        app.grant(&org_id, "1.00").await;
        let (_, secret) = app.create_key(&org_id).await;
        let key = As::Key(secret);
        spend(&app, &key, "0.60").await;
        spend(&app, &key, "0.40").await;

        // Both notices fail and wait, pending, with the reason.
        let items = wait_notices(&app, &org_id, |items| {
            ["balance.low", "access.turned_off"]
                .iter()
                .all(|kind| items.iter().any(|n| n["kind"] == *kind))
                && items
                    .iter()
                    .all(|n| n["attempts"].as_u64() > Some(0) && n["last_error"].is_string())
        })
        .await;
        for notice in &items {
            assert_eq!(notice["state"], "pending", "{notice}");
        }

        // Back up: the back-off brings both (1 s, 2 s, … after the failures so far).
        smtpd.start().await;
        // Every notice goes out once (the first grant's too, while
        // `a_first_grant_to_a_new_org_sends_no_email` fails).
        let mails = smtpd.expect_mails(items.len()).await;
        for subject in [OFF_SUBJECT, LOW_SUBJECT] {
            let count = mails.iter().filter(|m| m.subject == subject).count();
            assert_eq!(count, 1, "{subject}: {:#?}", subjects(&mails));
        }
        let sent = wait_notices(&app, &org_id, |items| {
            items.iter().all(|n| n["state"] == "sent")
        })
        .await;
        assert_eq!(sent.len(), items.len(), "none lost, none added: {sent:#?}");
        for notice in &sent {
            mail_of(&mails, notice);
        }

        app.assert_invariants().await;
        app.stop().await;
    }
}

// ----------------------------------------------------------------------------------------
// 5. Parked notices and the operator's retry
// ----------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_notice_is_retried_by_the_operator() {
    for database in databases().await {
        let Some(mut smtpd) = Smtpd::new().await else {
            return;
        };
        let port = smtpd.port;
        let app = spawn_app_with(database, |c| {
            smtp_config(c, port);
            c.notice_attempts_max = 1;
        })
        .await;
        let org_id = app.create_org("Pied Piper").await;
        app.grant(&org_id, "1.00").await;
        let (_, secret) = app.create_key(&org_id).await;
        let key = As::Key(secret.clone());
        hold_ok(&app, &key, "1.00").await;

        // One failed attempt parks it.
        let off_of = |items: &[Value]| {
            items
                .iter()
                .find(|n| n["kind"] == "access.turned_off")
                .cloned()
        };
        let items = wait_notices(&app, &org_id, |items| {
            off_of(items).is_some_and(|n| n["state"] == "parked")
        })
        .await;
        let parked = &off_of(&items).expect("the turned-off notice");
        assert_eq!(parked["kind"], "access.turned_off", "{parked}");
        assert_eq!(parked["attempts"], 1, "{parked}");
        assert!(parked["last_error"].is_string(), "{parked}");
        let id = parked["id"].as_str().expect("id").to_owned();
        let listed = app
            .get(&As::Operator, "/v1/notices?state=parked&limit=100")
            .await;
        assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
        assert!(
            listed.body["data"]
                .as_array()
                .expect("data")
                .iter()
                .any(|n| n["id"] == id.as_str()),
            "{}",
            listed.body
        );
        // Parked stays parked: the worker leaves it alone.
        tokio::time::sleep(QUIET).await;
        let again = off_of(&notices(&app, &org_id, None).await).expect("the notice");
        assert_eq!(again["state"], "parked", "{again}");
        assert_eq!(again["attempts"], 1, "{again}");

        // Org keys may not list or retry.
        let retry_path = format!("/v1/notices/{id}/retry");
        let reply = app.post(&key, &retry_path, json!({})).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
        let reply = app.get(&key, "/v1/notices").await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
        // Unknown notice.
        let reply = app
            .post(
                &As::Operator,
                "/v1/notices/ntc_nosuchnotice/retry",
                json!({}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.body);

        // The server is back; the operator retries; it goes out once.
        smtpd.start().await;
        let reply = app.post(&As::Operator, &retry_path, json!({})).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert_eq!(reply.body["id"], id.as_str(), "{}", reply.body);
        assert_eq!(reply.body["state"], "pending", "{}", reply.body);
        let mails = smtpd.expect_mails(1).await;
        assert_eq!(mails[0].subject, OFF_SUBJECT);
        assert!(mails[0].message_id.contains(&id), "{:?}", mails[0]);
        wait_notices(&app, &org_id, |items| {
            off_of(items).is_some_and(|n| n["state"] == "sent")
        })
        .await;

        // A sent notice cannot be retried.
        let reply = app.post(&As::Operator, &retry_path, json!({})).await;
        assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.body);
        assert_eq!(reply.code(), "notice_already_sent", "{}", reply.body);
        smtpd.expect_mails(1).await;

        app.assert_invariants().await;
        app.stop().await;
    }
}
