//! Debian's headless Chromium (`apt-get install chromium chromium-driver`, done by
//! `scripts/test.sh`), driven over WebDriver by `chromedriver` with the `fantoccini` crate.
//!
//! Use from an integration test with `#[path = "browser_support/mod.rs"] mod browser_support;`
//! and start a browser with [`browser_or_skip`]: without Chromium it skips the test with a
//! message, unless `CI` is set, where it panics. Each [`Browser`] is its own chromedriver on a
//! free 127.0.0.1 port (its output in a log file, never an inherited pipe) with its own Chromium
//! and a fresh profile, all in one temp dir; dropping it kills both and removes the dir, and
//! prints the chromedriver log's last lines when the test is panicking.
//!
//! The helpers panic on failure (after saving a `failure-….png` screenshot), and every wait is
//! bounded ([`WAIT_MAX`]). Screenshots go to `<workspace>/target/artifacts/billing/`.

// Each test file compiles this module on its own and uses only part of it.
#![allow(dead_code)]

use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fantoccini::elements::Element;
use fantoccini::wd::{Capabilities, TimeoutConfiguration};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

/// The browser binary: Debian's Chromium.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// The longest wait for chromedriver to answer and for the browser session to open.
const START_MAX: Duration = Duration::from_secs(30);
/// The longest wait of [`Browser::wait_for`], [`Browser::wait_for_text`] and the helpers that
/// look an element up.
pub const WAIT_MAX: Duration = Duration::from_secs(15);
/// How often the waits poll.
const POLL: Duration = Duration::from_millis(100);
/// The viewport of a new [`Browser`] (desktop size).
pub const WINDOW: (u32, u32) = (1280, 900);
/// A phone-size viewport for [`Browser::set_window_size`].
pub const PHONE: (u32, u32) = (390, 844);

/// Whether tests run in CI (`CI` set, non-empty and not `0`/`false`, as in the other test
/// support modules), where a browser that cannot start fails the test instead of skipping it.
pub fn ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// A started [`Browser`]; `None` (with a message on stderr) when none can start and `CI` is
/// not set. Panics with the reason when `CI` is set.
pub async fn browser_or_skip() -> Option<Browser> {
    match Browser::start().await {
        Ok(browser) => Some(browser),
        Err(error) if ci() => panic!("CI is set and the browser did not start: {error}"),
        Err(error) => {
            eprintln!(
                "skipping: the browser did not start ({error}); scripts/test.sh installs \
                 Debian's chromium and chromium-driver; with CI set this is a failure"
            );
            None
        }
    }
}

/// `<workspace>/target/artifacts/billing`, where screenshots go.
pub fn artifacts_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = manifest.ancestors().nth(2).unwrap_or(manifest);
    workspace.join("target/artifacts/billing")
}

/// A headless Chromium behind its own chromedriver; both killed on drop.
pub struct Browser {
    client: Option<Client>,
    driver: Option<Child>,
    /// The temp dir: the chromedriver log and the browser profile.
    dir: PathBuf,
    profile: PathBuf,
    log: PathBuf,
    /// `http://127.0.0.1:PORT`, chromedriver's address.
    driver_url: String,
}

impl Browser {
    /// Finds chromedriver (PATH, then /usr/bin/chromedriver) and /usr/bin/chromium, starts
    /// chromedriver on a free 127.0.0.1 port, waits until it answers `/status` (≤ 30 s) and
    /// opens a headless browser session with a fresh profile and a 1280×900 window.
    /// Err(String) with the chromedriver log's last lines on failure.
    pub async fn start() -> Result<Browser, String> {
        let chromedriver = find_chromedriver()?;
        if !is_executable(Path::new(CHROMIUM)) {
            return Err(format!("{CHROMIUM} is missing (apt-get install chromium)"));
        }
        let dir = std::env::temp_dir().join(format!(
            "creditgate_browser_{}_{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let profile = dir.join("profile");
        std::fs::create_dir_all(&profile).map_err(|e| format!("{}: {e}", profile.display()))?;
        let mut browser = Browser {
            client: None,
            driver: None,
            log: dir.join("chromedriver.log"),
            dir,
            profile,
            driver_url: String::new(),
        };
        // `--port=0`: chromedriver binds a free port itself and reports it, so no other process
        // can take the port in between. A chromedriver that cannot (it reports port 0) gets a
        // port picked by binding port 0 and releasing it.
        let mut port = browser.spawn_driver(&chromedriver, 0).await?;
        if port == 0 {
            browser.kill();
            let free = free_port()?;
            port = browser.spawn_driver(&chromedriver, free).await?;
        }
        browser.driver_url = format!("http://127.0.0.1:{port}");
        browser.wait_for_status().await?;

        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            format!("--user-data-dir={}", browser.profile.display()),
            format!("--window-size={},{}", WINDOW.0, WINDOW.1),
        ];
        let mut capabilities = Capabilities::new();
        capabilities.insert("browserName".to_owned(), json!("chrome"));
        capabilities.insert("pageLoadStrategy".to_owned(), json!("normal"));
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            json!({ "binary": CHROMIUM, "args": args }),
        );
        let mut builder =
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
        builder.capabilities(capabilities);
        let connect = builder.connect(&browser.driver_url);
        let client = match tokio::time::timeout(START_MAX, connect).await {
            Ok(Ok(client)) => client,
            Ok(Err(error)) => {
                return Err(format!(
                    "no browser session from chromedriver at {}: {error}\n{}",
                    browser.driver_url,
                    browser.log()
                ))
            }
            Err(_) => {
                return Err(format!(
                    "no browser session from chromedriver within {START_MAX:?}\n{}",
                    browser.log()
                ))
            }
        };
        client
            .update_timeouts(TimeoutConfiguration::new(
                Some(START_MAX),
                Some(START_MAX),
                Some(Duration::ZERO),
            ))
            .await
            .map_err(|e| format!("setting the WebDriver timeouts: {e}\n{}", browser.log()))?;
        browser.client = Some(client);
        browser
            .try_set_viewport(WINDOW.0, WINDOW.1)
            .await
            .map_err(|e| format!("setting the window size: {e}\n{}", browser.log()))?;
        Ok(browser)
    }

    /// Starts chromedriver on `port` (0: its choice) and answers the port it reports.
    async fn spawn_driver(&mut self, chromedriver: &Path, port: u16) -> Result<u16, String> {
        let log_file =
            File::create(&self.log).map_err(|e| format!("{}: {e}", self.log.display()))?;
        let stderr = log_file
            .try_clone()
            .map_err(|e| format!("{}: {e}", self.log.display()))?;
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(stderr)
            // Its own process group: dropping the browser kills chromedriver and its Chromium.
            .process_group(0)
            .spawn()
            .map_err(|e| format!("{}: {e}", chromedriver.display()))?;
        self.driver = Some(child);

        let deadline = Instant::now() + START_MAX;
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            // "ChromeDriver was started successfully on port 39347."
            if let Some(reported) = text
                .lines()
                .filter(|line| line.contains("started successfully"))
                .find_map(|line| line.rsplit_once("on port "))
                .and_then(|(_, rest)| rest.trim().trim_end_matches('.').parse::<u16>().ok())
            {
                return Ok(if port == 0 { reported } else { port });
            }
            if let Some(Ok(Some(status))) = self.driver.as_mut().map(Child::try_wait) {
                return Err(format!(
                    "{} exited with {status}:\n{}",
                    chromedriver.display(),
                    self.log()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} did not start within {START_MAX:?}:\n{}",
                    chromedriver.display(),
                    self.log()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until chromedriver's `/status` says it is ready.
    async fn wait_for_status(&mut self) -> Result<(), String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        let url = format!("{}/status", self.driver_url);
        let deadline = Instant::now() + START_MAX;
        loop {
            let last = match http.get(&url).send().await {
                Ok(response) => {
                    let body: Value = response.json().await.unwrap_or(Value::Null);
                    if body["value"]["ready"] == Value::Bool(true) {
                        return Ok(());
                    }
                    body.to_string()
                }
                Err(error) => error.to_string(),
            };
            if let Some(Ok(Some(status))) = self.driver.as_mut().map(Child::try_wait) {
                return Err(format!(
                    "chromedriver exited with {status}:\n{}",
                    self.log()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "chromedriver at {url} was not ready within {START_MAX:?} ({last}):\n{}",
                    self.log()
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The fantoccini client, for what the helpers do not cover.
    pub fn client(&self) -> &Client {
        self.client.as_ref().expect("the browser session")
    }

    /// The browser's profile dir (`--user-data-dir`), fresh for each browser.
    pub fn profile_dir(&self) -> &Path {
        &self.profile
    }

    /// The chromedriver log's last lines.
    pub fn log(&self) -> String {
        tail(&self.log)
    }

    /// Ends the browser session (Chromium closes), then stops chromedriver and removes the
    /// temp dir. Dropping the browser does the same, killing Chromium instead.
    pub async fn close(mut self) {
        if let Some(client) = self.client.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), client.close()).await;
        }
        drop(self);
    }

    /// Opens `url` and waits for it to load.
    pub async fn goto(&self, url: &str) {
        if let Err(error) = self.client().goto(url).await {
            self.fail(&format!("goto {url}: {error}")).await;
        }
    }

    /// The address the browser shows now.
    pub async fn current_url(&self) -> String {
        match self.client().current_url().await {
            Ok(url) => url.to_string(),
            Err(error) => self.fail(&format!("current_url: {error}")).await,
        }
    }

    /// The current page's HTML (as the browser has it now, scripts applied).
    pub async fn page_source(&self) -> String {
        match self.client().source().await {
            Ok(source) => source,
            Err(error) => self.fail(&format!("page_source: {error}")).await,
        }
    }

    /// Waits (≤ [`WAIT_MAX`]) until an element matches `css` and answers the first one.
    pub async fn wait_for(&self, css: &str) -> Element {
        match self
            .client()
            .wait()
            .at_most(WAIT_MAX)
            .every(POLL)
            .for_element(Locator::Css(css))
            .await
        {
            Ok(element) => element,
            Err(error) => {
                self.fail(&format!("no element `{css}` within {WAIT_MAX:?}: {error}"))
                    .await
            }
        }
    }

    /// Whether an element matches `css` now (no waiting).
    pub async fn exists(&self, css: &str) -> bool {
        match self.client().find_all(Locator::Css(css)).await {
            Ok(found) => !found.is_empty(),
            Err(error) => self.fail(&format!("exists `{css}`: {error}")).await,
        }
    }

    /// Clicks the first element matching `css` (waiting for it as [`Browser::wait_for`]).
    pub async fn click(&self, css: &str) {
        let element = self.wait_for(css).await;
        if let Err(error) = element.click().await {
            self.fail(&format!("click `{css}`: {error}")).await;
        }
    }

    /// Clears the field matching `css`, then types `value` into it.
    pub async fn fill(&self, css: &str, value: &str) {
        let element = self.wait_for(css).await;
        if let Err(error) = element.clear().await {
            self.fail(&format!("clear `{css}`: {error}")).await;
        }
        if let Err(error) = element.send_keys(value).await {
            self.fail(&format!("type into `{css}`: {error}")).await;
        }
    }

    /// Chooses the option with this `value` in the `<select>` matching `css`.
    pub async fn select(&self, css: &str, value: &str) {
        let element = self.wait_for(css).await;
        if let Err(error) = element.select_by_value(value).await {
            self.fail(&format!("select `{value}` in `{css}`: {error}"))
                .await;
        }
    }

    /// The rendered text of the first element matching `css` (waiting for it).
    pub async fn text(&self, css: &str) -> String {
        let element = self.wait_for(css).await;
        match element.text().await {
            Ok(text) => text,
            Err(error) => self.fail(&format!("text of `{css}`: {error}")).await,
        }
    }

    /// An attribute of the first element matching `css` (waiting for it).
    pub async fn attr(&self, css: &str, name: &str) -> Option<String> {
        let element = self.wait_for(css).await;
        match element.attr(name).await {
            Ok(value) => value,
            Err(error) => {
                self.fail(&format!("attribute {name} of `{css}`: {error}"))
                    .await
            }
        }
    }

    /// Waits (≤ [`WAIT_MAX`]) until the first element matching `css` shows `needle` in its
    /// text, and answers that text.
    pub async fn wait_for_text(&self, css: &str, needle: &str) -> String {
        let deadline = Instant::now() + WAIT_MAX;
        let mut last = None;
        loop {
            // The element may be missing or replaced (stale) while the page changes.
            if let Ok(element) = self.client().find(Locator::Css(css)).await {
                if let Ok(text) = element.text().await {
                    if text.contains(needle) {
                        return text;
                    }
                    last = Some(text);
                }
            }
            if Instant::now() > deadline {
                self.fail(&format!(
                    "`{css}` did not show {needle:?} within {WAIT_MAX:?} (last text: {last:?})"
                ))
                .await;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits (≤ [`WAIT_MAX`]) until the browser's address starts with `prefix`, and answers it.
    pub async fn wait_for_url(&self, prefix: &str) -> String {
        let deadline = Instant::now() + WAIT_MAX;
        let mut last = String::new();
        loop {
            if let Ok(url) = self.client().current_url().await {
                last = url.to_string();
                if last.starts_with(prefix) {
                    return last;
                }
            }
            if Instant::now() > deadline {
                self.fail(&format!(
                    "the address did not become {prefix}… within {WAIT_MAX:?} (last: {last})"
                ))
                .await;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Resizes the window so that the page's viewport (what [`Browser::screenshot`] saves) is
    /// `width`×`height` CSS pixels, e.g. [`PHONE`] for a phone-size screenshot.
    pub async fn set_window_size(&self, width: u32, height: u32) {
        if let Err(error) = self.try_set_viewport(width, height).await {
            self.fail(&format!("set_window_size {width}x{height}: {error}"))
                .await;
        }
    }

    async fn try_set_viewport(&self, width: u32, height: u32) -> Result<(), String> {
        let client = self.client();
        client
            .set_window_size(width, height)
            .await
            .map_err(|e| e.to_string())?;
        // The window's size includes the browser's own frame: grow it by the difference.
        let inner = client
            .execute(
                "return [window.innerWidth, window.innerHeight];",
                Vec::new(),
            )
            .await
            .map_err(|e| e.to_string())?;
        let (Some(inner_width), Some(inner_height)) = (inner[0].as_u64(), inner[1].as_u64()) else {
            return Err(format!("window.innerWidth/innerHeight: {inner}"));
        };
        let grow = |want: u32, have: u64| {
            u64::from(want)
                .saturating_mul(2)
                .saturating_sub(have)
                .try_into()
                .unwrap_or(want)
        };
        if (inner_width, inner_height) != (u64::from(width), u64::from(height)) {
            client
                .set_window_size(grow(width, inner_width), grow(height, inner_height))
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Saves a PNG of the viewport to `<workspace>/target/artifacts/billing/<name>.png` and
    /// answers its path (`name` keeps only ASCII letters, digits, `-`, `_` and `.`).
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        match self.try_screenshot(name).await {
            Ok(path) => path,
            Err(error) => self.fail(&format!("screenshot {name}: {error}")).await,
        }
    }

    async fn try_screenshot(&self, name: &str) -> Result<PathBuf, String> {
        let png = self
            .client()
            .screenshot()
            .await
            .map_err(|e| e.to_string())?;
        let dir = artifacts_dir();
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let name: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(path)
    }

    /// Panics with `message`, the address shown and a screenshot of it.
    async fn fail(&self, message: &str) -> ! {
        let url = match self.client().current_url().await {
            Ok(url) => url.to_string(),
            Err(error) => format!("unknown ({error})"),
        };
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        let shot = match self.try_screenshot(&format!("failure-{stamp}")).await {
            Ok(path) => path.display().to_string(),
            Err(error) => format!("none ({error})"),
        };
        panic!("browser: {message}\n  at: {url}\n  screenshot: {shot}");
    }

    /// Kills chromedriver and everything it started (its process group, and any process
    /// still using this browser's profile), then reaps chromedriver.
    fn kill(&mut self) {
        if let Some(mut child) = self.driver.take() {
            if let Ok(pgid) = i32::try_from(child.id()) {
                // SAFETY: kill(2) with a negative pid signals the process group we created for
                // chromedriver (process_group(0) made its pid the group id).
                unsafe {
                    libc::kill(-pgid, libc::SIGKILL);
                }
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // Chromium processes that left the group (none expected): found by our unique
        // profile dir in their command line.
        let marker = self.profile.display().to_string();
        for _ in 0..20 {
            let left = processes_using(&marker);
            if left.is_empty() {
                break;
            }
            for pid in left {
                // SAFETY: kill(2) on a process whose command line names our own profile dir.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The session's task only talks to chromedriver, which goes next.
        self.client.take();
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "chromedriver log ({}), last lines:\n{}",
                self.log.display(),
                self.log()
            );
        }
        // Chromium may still be flushing its profile for a moment after the kill.
        for _ in 0..10 {
            if std::fs::remove_dir_all(&self.dir).is_ok() || !self.dir.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// `chromedriver` on PATH, else /usr/bin/chromedriver.
fn find_chromedriver() -> Result<PathBuf, String> {
    let on_path = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("chromedriver"))
                .find(|candidate| is_executable(candidate))
        })
        .unwrap_or_default();
    let fallback = PathBuf::from("/usr/bin/chromedriver");
    match on_path {
        Some(found) => Ok(found),
        None if is_executable(&fallback) => Ok(fallback),
        None => Err("chromedriver is not on PATH nor at /usr/bin/chromedriver \
                     (apt-get install chromium-driver)"
            .to_owned()),
    }
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A port that was free a moment ago (bound to 127.0.0.1:0, then released).
fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// The pids (other than ours) whose command line contains `marker`.
fn processes_using(marker: &str) -> Vec<i32> {
    let own = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != own)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains(marker))
        })
        .filter_map(|pid| i32::try_from(pid).ok())
        .collect()
}

/// The last lines of a log file (long lines cut).
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..]
        .iter()
        .map(|line| match line.char_indices().nth(400) {
            Some((cut, _)) => format!("{}…", &line[..cut]),
            None => (*line).to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}
