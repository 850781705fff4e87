//! `creditgate demo`, black-box: the real binary on any free port with a fresh data directory.
//! `--tour` must run the whole story (balance falling, the 402 in the provider's envelope, a
//! checkout top-up paid on the sandbox's page, access back) and exit 0; plain `demo` must serve
//! what it prints (the checkout top-up line included) and stop on Ctrl-C; a restart on the same
//! data directory reuses the demo org and key.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use creditgate_domain::Amount;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_creditgate");
/// Longest a tour may take here (it takes a few seconds).
const TOUR_WAIT_MAX: Duration = Duration::from_secs(180);
/// Longest `demo` may take to print what to try.
const START_WAIT_MAX: Duration = Duration::from_secs(60);
/// What `demo` prints once it is ready.
const READY: &str = "Serving until Ctrl-C.";

/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "creditgate_demo_{label}_{}_{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&path).expect("temp dir");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `creditgate demo ARGS --listen LISTEN --data-dir DIR`, without the caller's
/// `CREDITGATE_*` and proxy settings.
fn demo(args: &[&str], listen: &str, data_dir: &Path) -> Command {
    let mut command = Command::new(BIN);
    command
        .arg("demo")
        .args(args)
        .args(["--listen", listen, "--data-dir"])
        .arg(data_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CREDITGATE_") || name.to_ascii_lowercase().ends_with("_proxy") {
            command.env_remove(&*name);
        }
    }
    command
}

/// A child killed on drop (also when a test panics).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads a pipe to the end on a thread, so the child never blocks on a full pipe.
fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

/// A finished tour.
struct Tour {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `creditgate demo --tour --listen LISTEN` to its end (killed after [`TOUR_WAIT_MAX`]).
fn tour(listen: &str, data_dir: &Path) -> Tour {
    let mut child = Running(
        demo(&["--tour"], listen, data_dir)
            .spawn()
            .expect("the demo starts"),
    );
    let stdout = drain(child.0.stdout.take().expect("piped stdout"));
    let stderr = drain(child.0.stderr.take().expect("piped stderr"));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("waiting") {
            break Some(status);
        }
        if started.elapsed() > TOUR_WAIT_MAX {
            let _ = child.0.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let tour = Tour {
        code: status.and_then(|status| status.code()),
        stdout: stdout.join().expect("stdout read"),
        stderr: stderr.join().expect("stderr read"),
    };
    assert!(
        status.is_some(),
        "the tour took longer than {TOUR_WAIT_MAX:?}; stdout:\n{}\nstderr:\n{}",
        tour.stdout,
        tour.stderr
    );
    tour
}

/// The amount after `marker` in `line`, up to the next space or comma.
fn amount_after(line: &str, marker: &str) -> Amount {
    let rest = line
        .split(marker)
        .nth(1)
        .unwrap_or_else(|| panic!("no {marker:?} in {line}"));
    let text = rest.split([' ', ',', ')']).next().unwrap_or_default();
    text.parse()
        .unwrap_or_else(|_| panic!("no amount after {marker:?} in {line}"))
}

/// The available balance of a `call N … 200 …` line.
fn available(line: &str) -> Option<Amount> {
    let before = line.split(" available").next()?;
    before.split_whitespace().last()?.parse().ok()
}

#[test]
fn the_tour_runs_out_of_credits_gets_402_and_recovers() {
    let data_dir = TempDir::new("tour");
    let run = tour("127.0.0.1:0", &data_dir.0);
    let out = &run.stdout;
    assert_eq!(run.code, Some(0), "stdout:\n{out}\nstderr:\n{}", run.stderr);
    // The balance falls call by call.
    let served: Vec<&str> = out
        .lines()
        .take_while(|line| !line.contains("refused"))
        .filter(|line| line.starts_with("call ") && line.contains(" 200 "))
        .collect();
    assert!(
        (20..=40).contains(&served.len()),
        "{} calls before the cut-off:\n{out}",
        served.len()
    );
    let balances: Vec<Amount> = served.iter().filter_map(|line| available(line)).collect();
    assert_eq!(balances.len(), served.len(), "{out}");
    assert!(
        balances.windows(2).all(|pair| pair[1] < pair[0]),
        "the balance falls with every call: {balances:?}"
    );
    assert!(served.iter().any(|line| line.contains("anthropic")));
    assert!(served.iter().any(|line| line.contains("openai")));
    assert!(served.iter().any(|line| line.contains("stream")));
    assert!(served.iter().any(|line| line.ends_with("low")), "{out}");
    // The refusal: a 402 with a billing error in the provider's own envelope.
    let refusal = out
        .lines()
        .find(|line| line.contains("refused"))
        .unwrap_or_else(|| panic!("no refusal in:\n{out}"));
    assert!(refusal.contains("HTTP 402 Payment Required"), "{refusal}");
    let envelope_start = out.find("envelope:\n").expect("the 402 body") + "envelope:\n".len();
    let envelope_end = out[envelope_start..]
        .find("\n\n")
        .map_or(out.len(), |end| envelope_start + end);
    let envelope: Value = serde_json::from_str(&out[envelope_start..envelope_end])
        .unwrap_or_else(|e| panic!("the 402 body is not JSON ({e}):\n{out}"));
    let billing = envelope["error"]["type"] == "billing_error"
        || envelope["error"]["type"] == "insufficient_quota";
    assert!(billing, "{envelope}");
    // The recovery: a checkout top-up of 5.00, paid on the sandbox's page of this service.
    let base = out
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("creditgate demo: serving on "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no serving line in:\n{out}"));
    let after = &out[out.find(refusal).unwrap() + refusal.len()..];
    assert!(after.contains("5.00 USD checkout top-up"), "{out}");
    assert!(after.contains("Stripe Checkout"), "{out}");
    let line = |prefix: &str| -> &str {
        after
            .lines()
            .find(|line| line.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starting {prefix:?} after the refusal:\n{out}"))
    };
    let checkout_url = line("  checkout page: ")
        .strip_prefix("  checkout page: ")
        .unwrap();
    let payment_id = checkout_url
        .strip_prefix(&format!("{base}/sandbox/checkout/"))
        .unwrap_or_else(|| panic!("the checkout page is not on {base}: {checkout_url}"));
    assert!(
        payment_id.starts_with("pay_") && payment_id.len() > 4,
        "{payment_id}"
    );
    let posted = line("  POST /v1/orgs/org_");
    assert!(
        posted.contains("/top_ups {\"amount\":\"5.00\"}")
            && posted.ends_with(&format!("-> {payment_id}, requires_action")),
        "{posted}"
    );
    assert_eq!(
        line("  paid with test card "),
        format!(
            "  paid with test card pm_card_visa -> payment succeeded, credited as txn_{payment_id}"
        )
    );
    // Exactly the top-up was added to what was left when the call was refused.
    let left = amount_after(refusal, "(available ");
    let balance_line = line("  balance after: ");
    assert_eq!(
        amount_after(balance_line, "balance after: "),
        left.checked_add("5.00".parse().unwrap()).unwrap(),
        "{out}"
    );
    assert!(balance_line.ends_with("access active"), "{balance_line}");
    // The refused call is served again, access active.
    let paid_at = after.find("  paid with test card ").unwrap();
    let rescue_at = after
        .find("\nNext, the admin turns on auto-reload")
        .unwrap_or_else(|| {
            panic!("no auto-reload rescue in:\n{out}");
        });
    let served_again: Vec<&str> = after[paid_at..rescue_at]
        .lines()
        .filter(|line| line.starts_with("call ") && line.contains(" 200 "))
        .collect();
    assert_eq!(served_again.len(), 1, "{out}");
    assert!(
        served_again[0].starts_with(refusal.split(" refused").next().unwrap().trim_end()),
        "the refused call is made again: {}",
        served_again[0]
    );
    assert!(served_again[0].ends_with("active"), "{}", served_again[0]);
    assert!(
        after.contains("served again right after the payment: access active again"),
        "{out}"
    );
    // The emails the billing contacts got: turned off at the refusal, back on after the
    // payment, each shown with its subject and the file it was written to.
    let emailed = |subject: &str| -> String {
        let at = out
            .find(&format!("  email \"{subject}\"\n  written to "))
            .unwrap_or_else(|| panic!("no {subject:?} email shown in:\n{out}"));
        let path = out[at..].lines().nth(1).unwrap().trim_start();
        let path = path.strip_prefix("written to ").unwrap();
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    let off = emailed("[action needed] Your Example API access is turned off");
    assert!(off.contains("Subject: [action needed] Your Example API access is turned off"));
    assert!(out.find("access is turned off\"").unwrap() < out.find("checkout top-up").unwrap());
    let back = emailed("Your Example API access is back on");
    assert!(back.contains("Subject: Your Example API access is back on"));
    // The rescue: auto-reload catches the next refusal, the call is served again, and nobody
    // is told access was off.
    let rescue = &after[rescue_at..];
    let refused_again = rescue
        .lines()
        .find(|line| line.contains(" refused: HTTP 402"))
        .unwrap_or_else(|| panic!("no second refusal in:\n{rescue}"));
    let reloaded = rescue
        .lines()
        .find(|line| line.starts_with("  auto-reload succeeded 5.00 USD (pay_"))
        .unwrap_or_else(|| panic!("no auto-reload in:\n{rescue}"));
    assert!(reloaded.contains("access active again"), "{reloaded}");
    let last_call = rescue
        .lines()
        .rfind(|line| line.starts_with("call ") && line.contains(" 200 "))
        .unwrap_or_else(|| panic!("no call after the rescue:\n{rescue}"));
    assert!(
        last_call.starts_with(refused_again.split(" refused").next().unwrap().trim_end()),
        "the refused call is made again: {last_call}"
    );
    assert!(last_call.ends_with("active"), "{last_call}");
    let turned_off_emails = std::fs::read_dir(data_dir.0.join("mail"))
        .expect("the mail directory")
        .filter_map(|entry| std::fs::read_to_string(entry.ok()?.path()).ok())
        .filter(|text| {
            text.contains("Subject: [action needed] Your Example API access is turned off")
        })
        .count();
    assert_eq!(
        turned_off_emails, 1,
        "one turned-off email for the two cut-offs:\n{out}"
    );
}

#[test]
fn demo_serves_what_it_prints_and_a_restart_reuses_the_org() {
    let data_dir = TempDir::new("serve");
    let mut child = Running(
        demo(&[], "127.0.0.1:0", &data_dir.0)
            .spawn()
            .expect("the demo starts"),
    );
    let stderr = drain(child.0.stderr.take().expect("piped stderr"));
    let stdout = child.0.stdout.take().expect("piped stdout");
    let (lines, received) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = lines.send(line);
        }
    });
    let mut printed = Vec::new();
    while !printed.iter().any(|line: &String| line == READY) {
        match received.recv_timeout(START_WAIT_MAX) {
            Ok(line) => printed.push(line),
            Err(_) => {
                let _ = child.0.kill();
                panic!(
                    "demo did not get ready; stdout:\n{}\nstderr:\n{}",
                    printed.join("\n"),
                    stderr.join().unwrap_or_default()
                );
            }
        }
    }
    let text = printed.join("\n");
    let curl = |fragment: &str| -> Curl {
        let line = printed
            .iter()
            .find(|line| line.trim_start().starts_with("curl ") && line.contains(fragment))
            .unwrap_or_else(|| panic!("no curl line with {fragment}:\n{text}"));
        Curl::parse(line)
    };
    assert!(text.contains("Demo Org"), "{text}");
    assert!(text.contains("/billing/org_"), "{text}");
    assert!(text.contains("sign in as demo@example.com"), "{text}");
    assert!(text.contains("sandbox payments"), "{text}");
    assert!(
        text.contains("open its action_url and pay with a test card (pm_card_visa"),
        "{text}"
    );
    assert!(text.contains("creditgate credits grant org_"), "{text}");
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(data_dir.0.join("demo.json")).unwrap())
            .unwrap();
    let key = saved["key"].as_str().unwrap().to_owned();
    assert!(text.contains(&key), "the key is printed: {text}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(data_dir.0.join("demo.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // The printed lines work as printed.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let before = curl("/balance").send().await;
        assert_eq!(before.0, 200, "{}", before.1);
        let before: Value = serde_json::from_str(&before.1).unwrap();
        assert_eq!(before["available"], "1.00");
        assert_eq!(before["access_state"], "active");
        let anthropic = curl("/anthropic/v1/messages").send().await;
        assert_eq!(anthropic.0, 200, "{}", anthropic.1);
        let message: Value = serde_json::from_str(&anthropic.1).unwrap();
        assert_eq!(message["type"], "message");
        assert!(message["usage"]["output_tokens"].as_u64().unwrap() > 0);
        let openai = curl("/openai/v1/chat/completions").send().await;
        assert_eq!(openai.0, 200, "{}", openai.1);
        assert!(openai.1.contains("chat.completion.chunk"), "{}", openai.1);
        assert!(
            openai.1.trim_end().ends_with("data: [DONE]"),
            "{}",
            openai.1
        );
        let after: Value = serde_json::from_str(&curl("/balance").send().await.1).unwrap();
        assert_ne!(after["available"], "1.00", "the calls were charged");
        // Settled: the streamed call's hold closes just after its last event.
        let settled = || async {
            let started = Instant::now();
            loop {
                let balance: Value =
                    serde_json::from_str(&curl("/balance").send().await.1).unwrap();
                let reserved: Amount = balance["reserved"].as_str().unwrap().parse().unwrap();
                if reserved.is_zero() {
                    return balance["available"]
                        .as_str()
                        .unwrap()
                        .parse::<Amount>()
                        .unwrap();
                }
                assert!(
                    started.elapsed() < START_WAIT_MAX,
                    "a hold stays open: {balance}"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        let after = settled().await;

        // The checkout top-up as printed (its operator token read from the data directory),
        // then its action_url paid with a test card: declined first, then pm_card_visa.
        let top_up = curl("/top_ups");
        assert!(
            top_up
                .headers
                .iter()
                .any(|(name, value)| name == "Idempotency-Key" && !value.is_empty()),
            "{text}"
        );
        let created = top_up.send().await;
        assert_eq!(created.0, 201, "{}", created.1);
        let payment: Value = serde_json::from_str(&created.1).unwrap();
        assert_eq!(payment["state"], "requires_action", "{payment}");
        assert_eq!(payment["provider"], "sandbox", "{payment}");
        assert_eq!(payment["amount"], "25.00", "{payment}");
        let payment_id = payment["id"].as_str().unwrap().to_owned();
        let action_url = payment["action_url"].as_str().unwrap().to_owned();
        assert!(
            action_url.ends_with(&format!("/sandbox/checkout/{payment_id}"))
                && top_up
                    .url
                    .starts_with(action_url.split("/sandbox/").next().unwrap()),
            "{action_url}"
        );
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let page = http.get(&action_url).send().await.unwrap();
        assert_eq!(page.status().as_u16(), 200);
        assert!(page.text().await.unwrap().contains("pm_card_visa"));
        let pay = |card: &'static str| {
            http.post(&action_url)
                .form(&[("payment_method", card)])
                .send()
        };
        let declined = pay("pm_card_visa_chargeDeclined").await.unwrap();
        assert_eq!(declined.status().as_u16(), 200);
        assert!(declined.text().await.unwrap().contains("declined"));
        let paid = pay("pm_card_visa").await.unwrap();
        assert_eq!(paid.status().as_u16(), 200);
        assert!(paid.text().await.unwrap().contains("Payment received"));
        let topped = settled().await;
        assert_eq!(
            topped,
            after.checked_add("25.00".parse().unwrap()).unwrap(),
            "the top-up was credited once"
        );
        // The same line again is a replay: the same payment, nothing charged twice.
        let replay: Value = serde_json::from_str(&top_up.send().await.1).unwrap();
        assert_eq!(replay["id"], payment_id.as_str(), "{replay}");
    });

    // `--tour` at the address of a running demo drives that one.
    let listen = text
        .lines()
        .find_map(|line| line.split("serving on http://").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {text}"))
        .to_owned();
    let run = tour(&listen, &data_dir.0);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains(&format!(
            "using the demo already serving on http://{listen}"
        )),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("-> payment succeeded, credited as txn_pay_"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("access active again"), "{}", run.stdout);

    // Ctrl-C stops it cleanly.
    let pid = child.0.id().to_string();
    let signalled = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill runs");
    assert!(signalled.success());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < START_WAIT_MAX,
            "demo did not stop on SIGINT"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    let _ = reader.join();

    // A restart (here a tour with its own service) reuses the demo org and its key.
    let run = tour("127.0.0.1:0", &data_dir.0);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let again: Value =
        serde_json::from_str(&std::fs::read_to_string(data_dir.0.join("demo.json")).unwrap())
            .unwrap();
    assert_eq!(again, saved);
}

/// A printed `curl` line: its URL, `-H` headers and `-d` body. Values are single-quoted, or
/// double-quoted with `$(cat FILE)` expanded as a shell would.
struct Curl {
    url: String,
    headers: Vec<(String, String)>,
    body: Option<String>,
}

/// `text` with each `$(cat FILE)` replaced by the file's content, trimmed.
fn expand_cat(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("$(cat ") {
        out.push_str(&rest[..start]);
        let after = &rest[start + "$(cat ".len()..];
        let end = after
            .find(')')
            .unwrap_or_else(|| panic!("unclosed $(: {text}"));
        let content = std::fs::read_to_string(&after[..end])
            .unwrap_or_else(|e| panic!("{text}: reading {}: {e}", &after[..end]));
        out.push_str(content.trim());
        rest = &after[end + 1..];
    }
    assert!(!rest.contains('$'), "unexpanded shell in {text}");
    out.push_str(rest);
    out
}

impl Curl {
    fn parse(line: &str) -> Curl {
        let words: Vec<&str> = line.split_whitespace().collect();
        let url = words
            .iter()
            .find(|word| word.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in {line}"))
            .to_string();
        // The quoted arguments, in order, each after its flag.
        let mut headers = Vec::new();
        let mut body = None;
        let mut rest = line;
        while let Some(start) = rest.find(['\'', '"']) {
            let quote = rest[start..].chars().next().unwrap();
            let flag = rest[..start].split_whitespace().last().unwrap_or("");
            let after = &rest[start + 1..];
            let end = after
                .find(quote)
                .unwrap_or_else(|| panic!("unclosed quote: {line}"));
            let value = if quote == '"' {
                expand_cat(&after[..end])
            } else {
                after[..end].to_owned()
            };
            let value = value.as_str();
            match flag {
                "-H" => {
                    let (name, value) = value.split_once(": ").unwrap();
                    headers.push((name.to_owned(), value.to_owned()));
                }
                "-d" => body = Some(value.to_owned()),
                other => panic!("unexpected {other} in {line}"),
            }
            rest = &after[end + 1..];
        }
        Curl { url, headers, body }
    }

    /// Sends it; the status and the body.
    async fn send(&self) -> (u16, String) {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let mut request = match &self.body {
            Some(body) => http.post(&self.url).body(body.clone()),
            None => http.get(&self.url),
        };
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }
}
