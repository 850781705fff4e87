//! aiosmtpd (PyPI), the real SMTP server of the notice and billing-page tests: one per test
//! on a free port, writing to a Maildir that Python's `mailbox` reads back. Installed once
//! into `target/venv-aiosmtpd` (shared with `scripts/test.sh`). When `CI` is set, a failure to
//! install or start it fails the test; otherwise the test is skipped with a message.

// Each test file compiles this module on its own and uses only part of it.
#![allow(dead_code)]

#[path = "../python_tools/mod.rs"]
mod python_tools;

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use creditgate::config::Config;
use python_tools::ci;
use serde_json::Value;

/// The aiosmtpd release used.
pub const AIOSMTPD_VERSION: &str = "1.4.6";
/// The longest wait for anything to be delivered.
pub const DELIVERY_MAX: Duration = Duration::from_secs(10);
/// How long "no further email" is watched for (many runs of a 20 ms worker).
pub const QUIET: Duration = Duration::from_millis(300);
/// Subjects of receipts (left out of [`Smtpd::mails`]).
pub const RECEIPT_PREFIX: &str = "Receipt: ";

// ----------------------------------------------------------------------------------------
// aiosmtpd
// ----------------------------------------------------------------------------------------

pub fn aiosmtpd_installed(python: &Path) -> bool {
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
pub fn install_aiosmtpd() -> Result<PathBuf, String> {
    python_tools::venv_with(
        "aiosmtpd",
        &format!("aiosmtpd=={AIOSMTPD_VERSION}"),
        "python",
        aiosmtpd_installed,
    )
}

pub static AIOSMTPD_PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// The venv's python with aiosmtpd; `None` (skip) when unavailable outside CI.
pub async fn aiosmtpd_python() -> Option<PathBuf> {
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

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// Prints the Maildir's messages as JSON: subject, to, message_id, rcpt_to, text, html.
pub const READ_MAILDIR: &str = r#"
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
pub struct Mail {
    pub subject: String,
    pub to: Vec<String>,
    pub message_id: String,
    pub rcpt_to: String,
    pub text: String,
    pub html: String,
}

/// A running aiosmtpd writing to a Maildir, killed on drop.
pub struct Smtpd {
    pub port: u16,
    pub python: PathBuf,
    pub dir: PathBuf,
    pub child: Option<Child>,
    /// Message-IDs [`Smtpd::mails`] leaves out (see [`Smtpd::ignore_delivered`]).
    pub ignored: Mutex<HashSet<String>>,
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
    pub async fn new() -> Option<Smtpd> {
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
    pub async fn started() -> Option<Smtpd> {
        let mut smtpd = Smtpd::new().await?;
        smtpd.start().await;
        Some(smtpd)
    }

    pub fn maildir(&self) -> PathBuf {
        self.dir.join("maildir")
    }

    /// Starts the server on its port and waits until it accepts connections (≤ 10 s).
    pub async fn start(&mut self) {
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
    pub fn ignore_delivered(&self) {
        let ids: Vec<String> = self.mails().into_iter().map(|m| m.message_id).collect();
        self.ignored.lock().expect("the set").extend(ids);
    }

    /// Every email delivered so far (but the ignored ones).
    /// The access emails received (receipts left out: `receipts` has those).
    pub fn mails(&self) -> Vec<Mail> {
        self.all_mails()
            .into_iter()
            .filter(|m| !m.subject.starts_with(RECEIPT_PREFIX))
            .collect()
    }

    /// The receipts received.
    pub fn receipts(&self) -> Vec<Mail> {
        self.all_mails()
            .into_iter()
            .filter(|m| m.subject.starts_with(RECEIPT_PREFIX))
            .collect()
    }

    pub fn all_mails(&self) -> Vec<Mail> {
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
    pub async fn expect_mails(&self, count: usize) -> Vec<Mail> {
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

/// Points `config` at `smtpd` with the story's branding and a fast worker.
pub fn configure(config: &mut Config, port: u16) {
    config.mail = creditgate::config::MailTransport::Smtp;
    config.smtp_host = "127.0.0.1".into();
    config.smtp_port = port;
    config.smtp_tls = creditgate::config::SmtpTls::None;
    config.smtp_timeout_ms = 2_000;
    config.product_name = "Acme AI".into();
    config.public_url = "https://billing.example.com".into();
    config.notice_interval_ms = 20;
}
