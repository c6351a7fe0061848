//! The web site in a real headless Chromium (Debian's `chromium` and
//! `chromium-driver`), driven over WebDriver with `fantoccini`: a broker and its
//! HTTP face in this process, a chromedriver on a free port, users made through
//! `Accounts`. Screenshots go to `target/screenshots/`; axe-core (npm, pinned) checks
//! each page. Without Chromium the tests say so and pass, except under `CI=true`.

mod pages;
mod tour;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use fantoccini::{ClientBuilder, Locator};
use serde_json::{json, Value};
use taskbus::accounts::{Accounts, Role};
use taskbus::broker::{Broker, Endpoints};
use taskbus::client::Client;
use taskbus::config::Config;
use taskbus::http::{Site, SiteRef};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::common::{config, free_port};

/// How long a page condition may take before a test fails.
pub const LIMIT: Duration = Duration::from_secs(30);
/// The pinned axe-core of the accessibility checks.
const AXE_VERSION: &str = "4.10.3";

pub const ADMIN: (&str, &str) = ("ada", "ada-password-1");
pub const OPERATOR: (&str, &str) = ("otto", "otto-password-1");
pub const VIEWER: (&str, &str) = ("vic", "vic-password-1");

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A broker with its web site, and a browser pointed at it.
pub struct Rig {
    pub base: String,
    pub accounts: Accounts,
    pub endpoints: Endpoints,
    pub browser: fantoccini::Client,
    driver: Child,
    stop: CancellationToken,
    broker: JoinHandle<()>,
    http: JoinHandle<std::io::Result<()>>,
}

/// Whether the browser is here; `None` (after saying why) when not and not in CI.
fn browser_present() -> bool {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|path| !std::path::Path::new(path).exists())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let why = format!(
        "{} not installed (apt-get install chromium chromium-driver)",
        missing.join(" and ")
    );
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "browser tests under CI: {why}"
    );
    eprintln!("skipped: browser tests need a headless Chromium: {why}");
    false
}

impl Rig {
    /// Starts everything with the default browser; `None` when there is no browser.
    pub async fn start() -> Option<Rig> {
        Self::start_with(&[]).await
    }

    /// Starts everything; `args` go to Chromium after the usual ones.
    pub async fn start_with(args: &[&str]) -> Option<Rig> {
        if !browser_present() {
            return None;
        }
        let config = config(|c| {
            c.broker.heartbeat_interval_secs = 1.0;
            c.broker.heartbeat_liveness = 60;
        });
        let accounts = Accounts::in_memory().expect("accounts");
        for ((name, password), role) in
            [ADMIN, OPERATOR, VIEWER]
                .into_iter()
                .zip([Role::Admin, Role::Operator, Role::Viewer])
        {
            accounts.add_user(name, role, password).expect("user added");
        }
        let (broker, endpoints, site, stop) = start_broker(config, accounts.clone()).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let http = tokio::spawn(taskbus::http::serve(
            listener,
            taskbus::http::app(site, taskbus::web::pages()),
            stop.clone(),
        ));
        let (driver, port) = start_driver().await;
        let browser = connect(port, args).await;
        Some(Rig {
            base,
            accounts,
            endpoints,
            browser,
            driver,
            stop,
            broker,
            http,
        })
    }

    pub async fn client(&self) -> Client {
        Client::connect(&self.endpoints.client)
            .await
            .expect("client connects")
    }

    pub async fn goto(&self, path: &str) {
        let url = format!("{}{path}", self.base);
        self.browser.goto(&url).await.expect("page loads");
    }

    /// Logs in through the login form and waits for the overview.
    pub async fn login(&self, (user, password): (&str, &str)) {
        self.goto("/login").await;
        self.fill("#user", user).await;
        self.fill("#password", password).await;
        self.click("form[action='/login'] button").await;
        self.until(
            "the overview after login",
            "return location.pathname === '/' && !!document.getElementById('topics');",
        )
        .await;
    }

    pub async fn fill(&self, css: &str, text: &str) {
        let field = self.browser.find(Locator::Css(css)).await.expect(css);
        field.clear().await.expect("field cleared");
        field.send_keys(text).await.expect("typed");
    }

    pub async fn click(&self, css: &str) {
        let element = self.browser.find(Locator::Css(css)).await.expect(css);
        element.click().await.expect("clicked");
    }

    /// Runs `script` in the page and returns its value.
    pub async fn js(&self, script: &str) -> Value {
        self.browser
            .execute(script, vec![])
            .await
            .expect("script runs")
    }

    /// Asks the page until `script` returns true (each try a round trip to the
    /// browser); panics after [`LIMIT`] with the page's text.
    pub async fn until(&self, what: &str, script: &str) {
        let deadline = tokio::time::Instant::now() + LIMIT;
        loop {
            if self.browser.execute(script, vec![]).await.ok() == Some(json!(true)) {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                let text = self
                    .js("return document.body ? document.body.innerText : '';")
                    .await;
                panic!("{what}: not seen within {LIMIT:?}; page says: {text}");
            }
            tokio::task::yield_now().await;
        }
    }

    /// The page's text.
    pub async fn text(&self) -> String {
        self.js("return document.body.innerText;")
            .await
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// Saves a screenshot as `target/screenshots/NAME.png`.
    pub async fn screenshot(&self, name: &str) {
        let png = self.browser.screenshot().await.expect("screenshot");
        let dir = target_dir().join("screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    /// The serious and critical axe-core violations of the page, one line each.
    pub async fn axe(&self) -> Vec<String> {
        let source = axe_source();
        self.browser
            .execute(&source, vec![])
            .await
            .expect("axe loads");
        let script = "const done = arguments[arguments.length - 1];
            axe.run(document, {resultTypes: ['violations']}).then(r => done(r.violations
              .filter(v => v.impact === 'serious' || v.impact === 'critical')
              .map(v => v.id + ' (' + v.impact + '): ' + v.help + ' at ' + v.nodes.map(n => n.target.join(' ')).join(', '))),
              e => done(['axe failed: ' + e]));";
        let found = self
            .browser
            .execute_async(script, vec![])
            .await
            .expect("axe runs");
        let path = self.js("return location.pathname + location.search;").await;
        let found = found.as_array().expect("axe answers with a list");
        found
            .iter()
            .map(|v| {
                format!(
                    "{}: {}",
                    path.as_str().unwrap_or("?"),
                    v.as_str().unwrap_or("?")
                )
            })
            .collect()
    }

    pub async fn stop(mut self) {
        let _ = self.browser.close().await;
        let _ = self.driver.kill().await;
        self.stop.cancel();
        self.broker.await.expect("broker task");
        let _ = self.http.await;
    }
}

async fn start_broker(
    config: Arc<Config>,
    accounts: Accounts,
) -> (JoinHandle<()>, Endpoints, SiteRef, CancellationToken) {
    let broker = Broker::bind(config.clone()).await.expect("broker binds");
    let endpoints = broker.endpoints().clone();
    let site = Site::new(
        broker.caller(),
        accounts,
        config.http.clone(),
        taskbus::run::http_limits(&config),
    );
    let stop = CancellationToken::new();
    let token = stop.clone();
    let handle = tokio::spawn(async move { broker.run(token).await.expect("broker runs") });
    (handle, endpoints, site, stop)
}

/// Starts chromedriver on a free port and waits for its "started" line.
async fn start_driver() -> (Child, u16) {
    let port = free_port();
    let mut driver = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromedriver starts");
    let stdout = driver.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let started = tokio::time::timeout(LIMIT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("started successfully") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(started, Ok(true), "chromedriver did not say it started");
    // Keep draining its output so that it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (driver, port)
}

async fn connect(port: u16, extra: &[&str]) -> fantoccini::Client {
    let mut args = vec![
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        "--lang=en-US",
    ];
    args.extend_from_slice(extra);
    let capabilities = json!({
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": args,
            "prefs": {"intl.accept_languages": "en-US,en"}
        }
    });
    let serde_json::Value::Object(capabilities) = capabilities else {
        unreachable!()
    };
    ClientBuilder::rustls()
        .expect("tls setup")
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("browser session")
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// axe.min.js of the pinned axe-core: from `target/axe-core` (where `.ci/run` packs
/// it), else packed there now with npm.
fn axe_source() -> String {
    let dir = target_dir().join("axe-core");
    let script = dir.join("package/axe.min.js");
    if !script.exists() {
        std::fs::create_dir_all(&dir).unwrap();
        let spec = format!("axe-core@{AXE_VERSION}");
        let packed = std::process::Command::new("npm")
            .args(["pack", &spec, "--silent"])
            .current_dir(&dir)
            .status()
            .expect("npm runs (install npm)");
        assert!(packed.success(), "npm pack {spec} failed");
        let tarball = format!("axe-core-{AXE_VERSION}.tgz");
        let unpacked = std::process::Command::new("tar")
            .args(["xzf", &tarball])
            .current_dir(&dir)
            .status()
            .expect("tar runs");
        assert!(unpacked.success(), "tar xzf {tarball} failed");
    }
    std::fs::read_to_string(&script).expect("axe.min.js")
}
