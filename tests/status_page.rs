//! The status page in a real browser: headless Chromium driven over
//! WebDriver (chromedriver) against the real agent and kube-sim, following
//! the README's demo: two stages turn Ready, then a broken migration turns
//! `pre` red and `application` Blocked, live, without a reload.
//!
//! Needs Debian's `chromium` and `chromium-driver`; fails without them.
//! The screenshot lands in the test's target directory; with
//! `STAGEGATE_UPDATE_SCREENSHOT=1` it is also copied to docs/status-page.png.

mod common;

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::git::GitRepo;
use common::*;
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

const NS: &str = "stagegate-system";
/// Generous: the machine running the suite may be slow and busy.
const PATIENCE: Duration = Duration::from_secs(120);

/// A tool from PATH, or a failure that says how to install it.
fn tool(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!("{name} is required: apt-get install -y chromium chromium-driver")
        })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A plain HTTP/1.1 GET: status code and body.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let code = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_string();
    Some((code, body))
}

async fn wait_until_listening(port: u16, what: &str) {
    let deadline = Instant::now() + PATIENCE;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// chromedriver's console log of the page (`goog:loggingPrefs`).
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (axum::http::Method, Option<String>) {
        (
            axum::http::Method::POST,
            Some(json!({"type": "browser"}).to_string()),
        )
    }
}

/// A Chrome DevTools command through chromedriver, for what WebDriver lacks
/// (emulating the dark colour scheme).
#[derive(Debug)]
struct DevTools(Value);

impl WebDriverCompatibleCommand for DevTools {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/goog/cdp/execute",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (axum::http::Method, Option<String>) {
        (axum::http::Method::POST, Some(self.0.to_string()))
    }
}

/// Console errors since the last call, as (source, message).
async fn console_errors(browser: &Client) -> Vec<(String, String)> {
    let log = browser.issue_cmd(BrowserLog).await.expect("browser log");
    log.as_array()
        .into_iter()
        .flatten()
        .filter(|entry| entry["level"] == "SEVERE")
        .map(|entry| (entry["source"].to_string(), entry["message"].to_string()))
        .collect()
}

/// Headless Chromium as root needs no sandbox and a profile of its own.
async fn browser(driver_port: u16, profile: &Path) -> Client {
    let chromium = tool("chromium");
    let capabilities = json!({
        "browserName": "chrome",
        "goog:loggingPrefs": {"browser": "ALL"},
        "goog:chromeOptions": {
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1280,860",
                format!("--user-data-dir={}", profile.display()),
            ],
        },
    });
    let Value::Object(capabilities) = capabilities else {
        unreachable!("a JSON object")
    };
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{driver_port}"))
        .await
        .expect("a chromedriver session")
}

/// Each stage node's `data-stage` → `data-phase`, as the browser shows it.
async fn phases(browser: &Client) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Ok(nodes) = browser.find_all(Locator::Css("[data-stage]")).await else {
        return out;
    };
    for node in nodes {
        // A node replaced by a live update in between is read next time.
        if let (Ok(Some(stage)), Ok(phase)) =
            (node.attr("data-stage").await, node.attr("data-phase").await)
        {
            out.insert(stage, phase.unwrap_or_else(|| "(none)".into()));
        }
    }
    out
}

async fn wait_for_phases(browser: &Client, want: &[(&str, &str)]) {
    let want: BTreeMap<String, String> = want
        .iter()
        .map(|(s, p)| (s.to_string(), p.to_string()))
        .collect();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let shown = phases(browser).await;
        if shown == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "waited for {want:?}, the page shows {shown:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Wait until the element `css` shows `needle`; found afresh each time,
/// since live updates replace the page's fragments.
async fn wait_for_text(browser: &Client, css: &str, needle: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let text = match browser.find(Locator::Css(css)).await {
            Ok(element) => element.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if text.contains(needle) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "waited for {needle:?} in {css}, it shows {text:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The demo's repository: examples/native.
fn example_files() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/native");
    let mut files = Vec::new();
    for path in ["stages.yaml", "pre/namespace.yaml", "pre/migration.yaml"]
        .into_iter()
        .chain(["application/deployment.yaml", "application/service.yaml"])
    {
        let text = std::fs::read_to_string(root.join(path)).expect("example file");
        files.push((path.to_string(), text));
    }
    files
}

fn commit(repo: &GitRepo, message: &str, files: &[(String, String)]) {
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    repo.commit(message, &files);
}

/// The README's "Make it fail" step: kube-sim fails the migration with a log.
fn broken_migration(files: &mut [(String, String)]) {
    for (path, text) in files.iter_mut() {
        if path == "pre/migration.yaml" {
            *text = text.replace(
                "\n  name: db-migrate\n",
                "\n  name: db-migrate\n  annotations:\n    sim.stagegate.dev/outcome: fail\n    sim.stagegate.dev/log: \"ERROR: column placed_at already exists\"\n",
            );
            assert!(text.contains("outcome: fail"));
        }
        if path == "stages.yaml" {
            *text = text.replace("1.4.2", "1.4.4");
        }
    }
}

struct Agent {
    port: u16,
    args: Vec<String>,
    log: PathBuf,
}

impl Agent {
    fn start(&self) -> Killed {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_stagegate"))
            .args(&self.args)
            .env_remove("KUBECONFIG")
            .env("STAGEGATE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn stagegate");
        Killed(child)
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_follows_the_demo_live_in_a_real_browser() {
    let chromedriver = tool("chromedriver");
    tool("chromium");
    let c = cluster().await;
    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig = tmp.path().join("kubeconfig");
    c.sim.write_kubeconfig(&kubeconfig).unwrap();
    let repo = GitRepo::init(&tmp.path().join("repo"));
    let mut files = example_files();
    commit(&repo, "shop: migration + application", &files);

    let port = free_port();
    let agent = Agent {
        port,
        args: [
            "run",
            "--repo",
            &repo.file_url(),
            "--namespace",
            NS,
            "--create-namespace",
            "--interval",
            "1s",
            "--leader-elect",
            "false",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([
            "--cache-dir".into(),
            tmp.path().join("cache").display().to_string(),
            "--kubeconfig".into(),
            kubeconfig.display().to_string(),
        ])
        .collect(),
        log: tmp.path().join("agent.log"),
    };
    let mut running = agent.start();
    wait_until_listening(port, "the agent").await;

    let driver_port = free_port();
    let _driver = Killed(
        Command::new(&chromedriver)
            .arg(format!("--port={driver_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver"),
    );
    wait_until_listening(driver_port, "chromedriver").await;
    let browser = browser(driver_port, &tmp.path().join("profile")).await;

    // The demo's two stages turn Ready.
    browser.goto(&agent.url("/")).await.unwrap();
    wait_for_phases(&browser, &[("application", "Ready"), ("pre", "Ready")]).await;
    let edge = browser
        .find(Locator::Css(
            r#"path.edge[data-from="pre"][data-to="application"]"#,
        ))
        .await;
    assert!(
        edge.is_ok(),
        "an edge from pre to its dependent application"
    );
    browser
        .execute("window.stagegateNotReloaded = true; return true;", vec![])
        .await
        .unwrap();

    // A broken migration: pre turns red and blocks application, live.
    broken_migration(&mut files);
    commit(&repo, "a broken migration", &files);
    wait_for_phases(&browser, &[("application", "Blocked"), ("pre", "Failed")]).await;
    let kept = browser
        .execute("return window.stagegateNotReloaded === true;", vec![])
        .await
        .unwrap();
    assert_eq!(kept, json!(true), "the page changed without a reload");

    // Selecting the red stage shows why, with the failed pod's log tail, at
    // a URL of its own.
    browser
        .find(Locator::Css(r#"[data-stage="pre"]"#))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_text(
        &browser,
        r#"#detail pre.log-tail[data-job="shop/db-migrate"]"#,
        "ERROR: column placed_at already exists",
    )
    .await;
    assert_eq!(browser.current_url().await.unwrap().path(), "/stages/pre");
    wait_for_text(&browser, "#detail", "BackoffLimitExceeded").await;

    // The screenshot: a test artefact, and the README's picture on request.
    let png = browser.screenshot().await.unwrap();
    let artefact = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    std::fs::write(&artefact, &png).unwrap();
    if std::env::var_os("STAGEGATE_UPDATE_SCREENSHOT").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/status-page.png");
        std::fs::write(docs, &png).unwrap();
    }

    // Blocked says why, and a pasted link opens the stage.
    browser
        .goto(&agent.url("/stages/application"))
        .await
        .unwrap();
    wait_for_text(
        &browser,
        r#"#detail [data-detail="application"] pre.message"#,
        "stage pre failed",
    )
    .await;

    // Its objects' live health, read from the cluster on selection.
    wait_for_text(
        &browser,
        r#"td.health[data-object="Deployment/shop/shop-web"]"#,
        "Ready",
    )
    .await;

    // The same data as `stagegate status -o json`, from the same code.
    let (code, body) = http_get(port, "/api/status").expect("/api/status");
    assert_eq!(code, 200, "{body}");
    let served: Value = serde_json::from_str(&body).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_stagegate"))
        .args(["status", "-o", "json", "-n", NS])
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    // Both carry the edges; hooks come from the plan, which only the agent
    // holds.
    assert_eq!(
        without_hooks(&served["stages"]),
        printed["stages"],
        "the page's report adds only the planned hooks to the CLI's"
    );
    assert_eq!(
        served["source"]["attempted"],
        printed["source"]["attempted"]
    );
    assert_eq!(served["stages"]["application"]["dependsOn"], json!(["pre"]));
    assert!(
        !body.contains("placed_at timestamptz"),
        "no object content in the report"
    );

    // Narrow and dark: the layout stacks without a horizontal scrollbar and
    // the colours follow the browser's scheme.
    browser.set_window_size(390, 844).await.unwrap();
    browser
        .issue_cmd(DevTools(json!({
            "cmd": "Emulation.setEmulatedMedia",
            "params": {"features": [{"name": "prefers-color-scheme", "value": "dark"}]},
        })))
        .await
        .unwrap();
    let fits = browser
        .execute(
            "return document.documentElement.scrollWidth <= window.innerWidth;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        fits,
        json!(true),
        "no horizontal scrolling in a narrow window"
    );
    let background = browser
        .execute(
            "return getComputedStyle(document.body).backgroundColor;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(background, json!("rgb(13, 17, 23)"), "dark mode");
    let narrow = browser.screenshot().await.unwrap();
    std::fs::write(
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page-narrow-dark.png"),
        narrow,
    )
    .unwrap();
    browser.set_window_size(1280, 860).await.unwrap();

    let errors = console_errors(&browser).await;
    assert!(errors.is_empty(), "console errors: {errors:?}");

    // The agent restarts: the page reconnects by itself and shows the fix.
    browser.goto(&agent.url("/")).await.unwrap();
    wait_for_phases(&browser, &[("application", "Blocked"), ("pre", "Failed")]).await;
    browser
        .execute("window.stagegateNotReloaded = true; return true;", vec![])
        .await
        .unwrap();
    drop(running);
    running = agent.start();
    wait_until_listening(port, "the restarted agent").await;
    commit(&repo, "the migration fixed", &example_files());
    wait_for_phases(&browser, &[("application", "Ready"), ("pre", "Ready")]).await;
    let kept = browser
        .execute("return window.stagegateNotReloaded === true;", vec![])
        .await
        .unwrap();
    assert_eq!(kept, json!(true), "reconnected without a reload");

    // Refused connections while the agent was down are expected; script
    // errors are not.
    let errors = console_errors(&browser).await;
    assert!(
        errors.iter().all(|(source, _)| source.contains("network")),
        "console errors: {errors:?}"
    );
    browser.close().await.unwrap();
    drop(running);
    c.sim.shutdown().await;
}

/// `/api/status` with what only the agent knows (the planned graph) removed.
fn without_hooks(stages: &Value) -> Value {
    let mut stages = stages.clone();
    if let Some(map) = stages.as_object_mut() {
        for stage in map.values_mut() {
            if let Some(stage) = stage.as_object_mut() {
                stage.remove("hooks");
            }
        }
    }
    stages
}

#[test]
fn graph_svg_draws_a_repository_as_the_page_does() {
    let out = Command::new(env!("CARGO_BIN_EXE_stagegate"))
        .args(["graph", "--format", "svg"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/native"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let svg = String::from_utf8(out.stdout).unwrap();
    assert!(
        svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""),
        "{svg}"
    );
    assert!(svg.contains(r#"data-stage="pre""#), "{svg}");
    assert!(svg.contains(r#"data-stage="application""#), "{svg}");
    assert!(
        svg.contains(r#"<path class="edge" data-from="pre" data-to="application""#),
        "{svg}"
    );
    // From a repository there is no phase yet, and nothing links anywhere.
    assert!(!svg.contains("data-phase") && !svg.contains("<a "), "{svg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flag_turns_the_page_off_and_metrics_stay() {
    let c = cluster().await;
    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig = tmp.path().join("kubeconfig");
    c.sim.write_kubeconfig(&kubeconfig).unwrap();
    let repo = GitRepo::init(&tmp.path().join("repo"));
    commit(&repo, "shop", &example_files());
    let port = free_port();
    let agent = Agent {
        port,
        args: vec![
            "run".into(),
            "--repo".into(),
            repo.file_url(),
            "--namespace".into(),
            NS.into(),
            "--create-namespace".into(),
            "--leader-elect".into(),
            "false".into(),
            "--status-page".into(),
            "false".into(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--cache-dir".into(),
            tmp.path().join("cache").display().to_string(),
            "--kubeconfig".into(),
            kubeconfig.display().to_string(),
        ],
        log: tmp.path().join("agent.log"),
    };
    let _running = agent.start();
    wait_until_listening(port, "the agent").await;
    for path in ["/", "/api/status", "/stages/pre", "/api/events"] {
        let (code, _) = http_get(port, path).expect(path);
        assert_eq!(code, 404, "{path} with --status-page false");
    }
    let (code, _) = http_get(port, "/metrics").expect("/metrics");
    assert_eq!(code, 200);
    c.sim.shutdown().await;
}
