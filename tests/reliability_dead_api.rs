//! A dead API server (#13 item 12): the agent started against a port where
//! nothing listens, and an agent whose API server dies while it runs, report
//! an error that names the server's URL: the operator reading the log learns
//! which server is unreachable, not only that "a connection failed".

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::git::GitRepo;
use common::{env, stage_doc};
use stagegate::cluster::state::{Phase, StateStore};

const NS: &str = "stagegate-system";

fn agent(
    repo: &str,
    kubeconfig: &std::path::Path,
    cache: &std::path::Path,
    extra: &[&str],
) -> Child {
    Command::new(env!("CARGO_BIN_EXE_stagegate"))
        .args([
            "run",
            "--repo",
            repo,
            "--namespace",
            NS,
            "--create-namespace",
        ])
        .args([
            "--interval",
            "1s",
            "--leader-elect",
            "false",
            "--listen",
            "127.0.0.1:0",
        ])
        .arg("--cache-dir")
        .arg(cache)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(extra)
        .env_remove("KUBECONFIG")
        .env("STAGEGATE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn stagegate")
}

/// The agent's log lines, as they come.
fn lines(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().expect("piped stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a line for which `wanted` holds; returns it and what came before.
fn wait_for_line(
    rx: &mpsc::Receiver<String>,
    within: Duration,
    wanted: impl Fn(&str) -> bool,
) -> Result<String, Vec<String>> {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) if wanted(&line) => return Ok(line),
            Ok(line) => seen.push(line),
            Err(mpsc::RecvTimeoutError::Timeout) => break,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    Err(seen)
}

fn is_problem(line: &str) -> bool {
    line.contains("WARN") || line.contains("ERROR")
}

fn closed_port() -> u16 {
    // Bound and released: nothing listens there now.
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn small_repo(dir: &std::path::Path) -> GitRepo {
    let repo = GitRepo::init(dir);
    repo.commit(
        "first",
        &[
            (
                "stages.yaml",
                &stage_doc("config", "config", "  targetNamespace: default\n"),
            ),
            (
                "config/settings.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {a: \"1\"}\n",
            ),
        ],
    );
    repo
}

#[test]
fn an_agent_started_against_a_closed_port_names_the_server_and_exits() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = small_repo(&tmp.path().join("repo"));
    let url = format!("http://127.0.0.1:{}", closed_port());
    let kubeconfig = tmp.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: \"{url}\"}}}}]\n\
             contexts: [{{name: c, context: {{cluster: c, user: u}}}}]\ncurrent-context: c\nusers: [{{name: u, user: {{token: t}}}}]\n"
        ),
    )
    .expect("write kubeconfig");
    let mut child = agent(
        &repo.file_url(),
        &kubeconfig,
        &tmp.path().join("cache"),
        &["--once"],
    );
    let rx = lines(&mut child);
    // The first complaint already names the server.
    let first = wait_for_line(&rx, Duration::from_secs(60), is_problem)
        .unwrap_or_else(|seen| panic!("no warning or error within 60 s: {seen:#?}"));
    assert!(
        first.contains(&url),
        "the first problem reported does not name {url}: {first}"
    );
    // Start-up retries with backoff (about a minute), then gives up: exit 2,
    // "could not", and its last word names the server.
    let mut rest = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(170);
    let status = loop {
        rest.extend(rx.try_iter());
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // The reader thread sends the last lines once the pipe closes.
    rest.extend(rx.recv_timeout(Duration::from_secs(5)));
    rest.extend(rx.try_iter());
    let status = status.expect("the agent gives up on a server that never answers");
    assert_eq!(
        status.code(),
        Some(2),
        "exit code of a run that could not reach the cluster: {rest:#?}"
    );
    let last = rest.iter().rev().find(|l| !l.trim().is_empty());
    assert!(
        last.is_some_and(|l| l.contains(&url)),
        "the final error does not name {url}: {rest:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_server_that_dies_mid_run_is_named_in_the_errors() {
    let e = env().await;
    let repo = small_repo(&e.tmp.path().join("repo"));
    let url = e.c.sim.url();
    let mut child = agent(
        &repo.file_url(),
        &e.kubeconfig,
        &e.tmp.path().join("cache"),
        &[],
    );
    let rx = lines(&mut child);
    let store = StateStore::new(e.c.client.clone(), NS);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let state = store.read().await.unwrap_or_default();
        if state
            .stages
            .get("config")
            .is_some_and(|s| s.phase == Phase::Ready)
        {
            break;
        }
        assert!(Instant::now() < deadline, "config never Ready: {state:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    e.c.sim.shutdown().await;
    // New work for the agent: it must reach the dead server.
    repo.commit(
        "second",
        &[(
            "config/settings.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {a: \"2\"}\n",
        )],
    );
    let found = tokio::task::spawn_blocking(move || {
        // Lines logged before the server died may name it too; only
        // problems count, and the server is gone for all of them.
        wait_for_line(&rx, Duration::from_secs(120), |l| {
            is_problem(l) && l.contains(&url)
        })
        .map_err(|seen| (url, seen))
    })
    .await
    .expect("join");
    let _ = child.kill();
    let _ = child.wait();
    if let Err((url, seen)) = found {
        panic!("no warning or error naming {url} after the API server died: {seen:#?}");
    }
}
