//! The Git source against real repositories: created with the `git` CLI and
//! served by file URL, by `git daemon`, by `git http-backend` behind a small
//! HTTP server that checks Basic auth, and by a local `sshd`. Everything binds
//! 127.0.0.1 only.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

mod common;

use common::git::GitDaemon;
use stagegate::agent::source::{Fetched, GitAuth, GitRef, GitSource, SourceConfig, SourceError};

// ---------------------------------------------------------------------------
// Repositories

/// A repository with a working copy where commits are made and a bare copy
/// (`served/repo.git`) that the servers export.
struct Upstream {
    dir: tempfile::TempDir,
}

impl Upstream {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let up = Self { dir };
        std::fs::create_dir_all(up.served_root()).unwrap();
        git(up.dir.path(), &["init", "-q", "-b", "main", "work"]);
        git(
            up.dir.path(),
            &[
                "init",
                "-q",
                "--bare",
                "-b",
                "main",
                up.bare().to_str().unwrap(),
            ],
        );
        git(
            &up.work(),
            &["remote", "add", "served", up.bare().to_str().unwrap()],
        );
        up
    }

    fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    /// What `git daemon --base-path` and `git http-backend` export.
    fn served_root(&self) -> PathBuf {
        self.dir.path().join("served")
    }

    fn bare(&self) -> PathBuf {
        self.served_root().join("repo.git")
    }

    fn file_url(&self) -> String {
        format!("file://{}", self.bare().display())
    }

    /// Writes `files`, removes `deleted`, commits on the current branch and
    /// pushes everything; returns the new commit id.
    fn commit(&self, message: &str, files: &[(&str, &str)], deleted: &[&str]) -> String {
        let work = self.work();
        for (path, content) in files {
            let path = work.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        for path in deleted {
            git(&work, &["rm", "-q", path]);
        }
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-q", "--allow-empty", "-m", message]);
        self.push();
        self.rev_parse("HEAD")
    }

    fn push(&self) {
        git(&self.work(), &["push", "-q", "--force", "--all", "served"]);
        git(&self.work(), &["push", "-q", "--force", "--tags", "served"]);
    }

    fn rev_parse(&self, rev: &str) -> String {
        git(&self.work(), &["rev-parse", &format!("{rev}^{{commit}}")])
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .args([
            "-c",
            "user.name=Test",
            "-c",
            "user.email=test@example.com",
            "-c",
            "commit.gpgsign=false",
            "-c",
            "tag.gpgsign=false",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env_remove("GIT_DIR")
        .output()
        .expect("the git CLI must be installed");
    assert!(
        output.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

fn source(url: String, reference: GitRef, cache: &Path) -> GitSource {
    GitSource::new(SourceConfig::new(url, reference, cache))
}

/// Every file under `dir`, relative, with its content.
fn tree_files(dir: &Path) -> Vec<(String, String)> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                let rel = path.strip_prefix(base).unwrap().display().to_string();
                out.push((rel, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn files(list: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut out: Vec<_> = list
        .iter()
        .map(|(p, c)| (p.to_string(), c.to_string()))
        .collect();
    out.sort();
    out
}

// ---------------------------------------------------------------------------
// Servers

/// Picks a port that was free a moment ago. The caller retries when another
/// process takes it before the server binds.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something accepts connections on `port`, or `child` exits.
fn wait_listening(child: &mut Child, port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A child process killed when the test ends, however it ends.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn git_daemon(base_path: &Path) -> GitDaemon {
    GitDaemon::start(base_path)
}

fn daemon_url(daemon: &GitDaemon) -> String {
    daemon.url("repo.git")
}

// ---------------------------------------------------------------------------
// Fetch, change detection and checkout

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_clone_then_a_no_change_poll_downloads_nothing() {
    let up = Upstream::new();
    up.commit("first", &[("app/deploy.yaml", "kind: Deployment\n")], &[]);
    // The first commit is history below the tip, which a shallow fetch skips.
    let head = up.commit("second", &[("app/job.yaml", "kind: Job\n")], &[]);
    let daemon = git_daemon(&up.served_root());
    let cache = tempfile::tempdir().unwrap();
    let src = source(
        daemon_url(&daemon),
        GitRef::Branch("main".into()),
        cache.path(),
    );

    let first = src.fetch().await.unwrap();
    assert_eq!(first.commit, head);
    assert!(first.changed);
    assert!(first.bytes_received > 0);
    assert_eq!(first.reference, format!("main@sha1:{head}"));
    let repo = git2::Repository::open_bare(src.repository_dir()).unwrap();
    assert!(repo.is_shallow(), "git daemon allows shallow fetches");
    assert!(
        repo.find_commit(git2::Oid::from_str(&head).unwrap())
            .unwrap()
            .parent(0)
            .is_err(),
        "the parent commit must not have been downloaded"
    );

    // A file inside the cache survives only if the poll does not re-clone.
    let marker = src.repository_dir().join("stagegate-test-marker");
    std::fs::write(&marker, "still here").unwrap();
    let second = src.fetch().await.unwrap();
    assert_eq!(second.commit, head);
    assert!(!second.changed);
    assert_eq!(second.bytes_received, 0, "nothing new, so no pack");
    assert!(marker.exists(), "the cache was re-created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_commit_is_detected_and_checkout_gives_exactly_that_tree() {
    let up = Upstream::new();
    let c1 = up.commit(
        "first",
        &[("a.yaml", "a: 1\n"), ("gone/b.yaml", "b: 1\n")],
        &[],
    );
    let daemon = git_daemon(&up.served_root());
    let cache = tempfile::tempdir().unwrap();
    let src = source(
        daemon_url(&daemon),
        GitRef::Branch("main".into()),
        cache.path(),
    );

    let first = src.fetch().await.unwrap();
    assert_eq!(first.commit, c1);
    let tree1 = src.checkout(&first.commit).await.unwrap();
    assert_eq!(
        tree_files(&tree1),
        files(&[("a.yaml", "a: 1\n"), ("gone/b.yaml", "b: 1\n")])
    );

    let c2 = up.commit(
        "second",
        &[("a.yaml", "a: 2\n"), ("c.yaml", "c: 1\n")],
        &["gone/b.yaml"],
    );
    let second = src.fetch().await.unwrap();
    assert!(second.changed);
    assert_eq!(second.commit, c2);
    assert!(second.bytes_received > 0);
    let tree2 = src.checkout(&second.commit).await.unwrap();
    assert_ne!(tree1, tree2);
    assert_eq!(
        tree_files(&tree2),
        files(&[("a.yaml", "a: 2\n"), ("c.yaml", "c: 1\n")]),
        "the deleted file must be gone and nothing else left over"
    );
    // The older tree is untouched, and checking it out again reuses it.
    assert_eq!(src.checkout(&c1).await.unwrap(), tree1);
    assert_eq!(
        tree_files(&tree1),
        files(&[("a.yaml", "a: 1\n"), ("gone/b.yaml", "b: 1\n")])
    );

    // Only a few trees are kept.
    let mut last = None;
    for i in 0..5 {
        let c = up.commit(
            &format!("more {i}"),
            &[("n.yaml", &format!("n: {i}\n"))],
            &[],
        );
        let fetched = src.fetch().await.unwrap();
        assert_eq!(fetched.commit, c);
        last = Some(src.checkout(&c).await.unwrap());
    }
    let trees: Vec<_> = std::fs::read_dir(cache.path().join("trees"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(trees.len(), 3, "{trees:?}");
    assert!(last.unwrap().exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_url_fetches_branches_and_detects_changes() {
    let up = Upstream::new();
    up.commit(
        "first",
        &[("x.yaml", "x: 1\n"), ("run.sh", "#!/bin/sh\n")],
        &[],
    );
    git(&up.work(), &["update-index", "--chmod=+x", "run.sh"]);
    git(&up.work(), &["commit", "-q", "-m", "executable"]);
    up.push();
    let c1 = up.rev_parse("HEAD");
    let cache = tempfile::tempdir().unwrap();
    // shallow stays on: the local transport cannot do it, so a full fetch is used.
    let src = source(up.file_url(), GitRef::Branch("main".into()), cache.path());

    let first = src.fetch().await.unwrap();
    assert_eq!((first.commit.as_str(), first.changed), (c1.as_str(), true));
    let again = src.fetch().await.unwrap();
    assert!(!again.changed);
    assert_eq!(again.bytes_received, 0);

    let tree = src.checkout(&c1).await.unwrap();
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(tree.join("run.sh"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o755);

    let c2 = up.commit("second", &[], &["x.yaml"]);
    let second = src.fetch().await.unwrap();
    assert!(second.changed);
    assert_eq!(second.commit, c2);
    let tree2 = src.checkout(&c2).await.unwrap();
    assert!(!tree2.join("x.yaml").exists());
    assert!(tree2.join("run.sh").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn branch_tag_semver_range_and_pinned_commit_each_resolve_their_commit() {
    let up = Upstream::new();
    let c1 = up.commit("one", &[("v.txt", "1.0.0\n")], &[]);
    git(&up.work(), &["tag", "v1.0.0"]);
    let c2 = up.commit("two", &[("v.txt", "1.2.0\n")], &[]);
    git(
        &up.work(),
        &["tag", "-a", "v1.2.0", "-m", "annotated release"],
    );
    let c3 = up.commit("three", &[("v.txt", "1.3.0-rc.1\n")], &[]);
    git(&up.work(), &["tag", "v1.3.0-rc.1"]);
    let c4 = up.commit("four", &[("v.txt", "2.0.0\n")], &[]);
    git(&up.work(), &["tag", "v2.0.0"]);
    git(&up.work(), &["checkout", "-q", "-b", "dev", &c1]);
    let dev = up.commit("dev work", &[("dev.txt", "dev\n")], &[]);
    up.push();
    let daemon = git_daemon(&up.served_root());
    let url = daemon_url(&daemon);

    let cases = [
        (
            GitRef::Branch("main".into()),
            c4.clone(),
            format!("main@sha1:{c4}"),
        ),
        (
            GitRef::Branch("dev".into()),
            dev.clone(),
            format!("dev@sha1:{dev}"),
        ),
        (
            GitRef::Tag("v1.0.0".into()),
            c1.clone(),
            format!("v1.0.0@sha1:{c1}"),
        ),
        (
            GitRef::Tag("v1.2.0".into()),
            c2.clone(),
            format!("v1.2.0@sha1:{c2}"),
        ),
        (
            GitRef::TagRange(">=1.0, <2".into()),
            c2.clone(),
            format!("v1.2.0@sha1:{c2}"),
        ),
        (
            GitRef::TagRange(">=1.3.0-rc.0, <2".into()),
            c3.clone(),
            format!("v1.3.0-rc.1@sha1:{c3}"),
        ),
        (
            GitRef::TagRange("^2".into()),
            c4.clone(),
            format!("v2.0.0@sha1:{c4}"),
        ),
        // Not the tip of anything: git daemon refuses a bare id by default, so
        // this also exercises the fetch-everything fallback.
        (GitRef::Commit(c2.clone()), c2.clone(), format!("sha1:{c2}")),
    ];
    for (reference, commit, revision) in cases {
        let cache = tempfile::tempdir().unwrap();
        let src = source(url.clone(), reference.clone(), cache.path());
        let fetched = src
            .fetch()
            .await
            .unwrap_or_else(|e| panic!("{reference}: {e}"));
        assert_eq!(fetched.commit, commit, "{reference}");
        assert_eq!(fetched.reference, revision, "{reference}");
        let tree = src.checkout(&fetched.commit).await.unwrap();
        let expected = git(&up.work(), &["show", &format!("{commit}:v.txt")]);
        assert_eq!(
            std::fs::read_to_string(tree.join("v.txt")).unwrap().trim(),
            expected,
            "{reference}"
        );
        let again = src.fetch().await.unwrap();
        assert!(!again.changed, "{reference}");
        assert_eq!(again.bytes_received, 0, "{reference}");
    }

    // The pinned commit by file URL too, and a commit that does not exist.
    let cache = tempfile::tempdir().unwrap();
    let pinned = source(up.file_url(), GitRef::Commit(c3.clone()), cache.path());
    assert_eq!(pinned.fetch().await.unwrap().commit, c3);
    let cache = tempfile::tempdir().unwrap();
    let missing = source(
        url.clone(),
        GitRef::Commit("0123456789".repeat(4)),
        cache.path(),
    );
    let error = missing.fetch().await.unwrap_err();
    assert!(
        matches!(error, SourceError::CommitNotFound { .. }),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_tag_and_a_newly_pushed_matching_tag_are_changes() {
    let up = Upstream::new();
    up.commit("one", &[("v.txt", "1\n")], &[]);
    git(&up.work(), &["tag", "v1.0.0"]);
    up.push();
    let daemon = git_daemon(&up.served_root());
    let cache = tempfile::tempdir().unwrap();
    let src = source(
        daemon_url(&daemon),
        GitRef::TagRange("^1".into()),
        cache.path(),
    );
    let first = src.fetch().await.unwrap();
    assert!(first.reference.starts_with("v1.0.0@"));

    let c2 = up.commit("two", &[("v.txt", "2\n")], &[]);
    git(&up.work(), &["tag", "v1.1.0"]);
    up.push();
    let second = src.fetch().await.unwrap();
    assert!(second.changed);
    assert_eq!(second.commit, c2);
    assert_eq!(second.reference, format!("v1.1.0@sha1:{c2}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_references_are_clear_errors() {
    let up = Upstream::new();
    up.commit("one", &[("a", "a\n")], &[]);
    git(&up.work(), &["tag", "v0.1.0"]);
    up.push();
    let daemon = git_daemon(&up.served_root());
    let cache = tempfile::tempdir().unwrap();

    let error = source(
        daemon_url(&daemon),
        GitRef::Branch("prod".into()),
        cache.path(),
    )
    .fetch()
    .await
    .unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, SourceError::RefNotFound { .. }), "{text}");
    assert!(text.contains("`prod`") && text.contains("main"), "{text}");

    let error = source(
        daemon_url(&daemon),
        GitRef::TagRange(">=1".into()),
        cache.path(),
    )
    .fetch()
    .await
    .unwrap_err();
    assert!(
        matches!(error, SourceError::NoMatchingTag { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("v0.1.0"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_is_an_error_and_the_last_good_revision_stays_usable() {
    let up = Upstream::new();
    let c1 = up.commit("one", &[("a.yaml", "a\n")], &[]);
    let mut daemon = git_daemon(&up.served_root());
    let cache = tempfile::tempdir().unwrap();
    let src = source(
        daemon_url(&daemon),
        GitRef::Branch("main".into()),
        cache.path(),
    );
    assert_eq!(src.fetch().await.unwrap().commit, c1);

    daemon.kill();
    let error = src.fetch().await.unwrap_err();
    assert!(matches!(error, SourceError::Unreachable { .. }), "{error}");
    assert!(error.to_string().contains("127.0.0.1"), "{error}");
    assert_eq!(src.last_commit(), Some(c1.clone()));
    let tree = src.checkout(&c1).await.unwrap();
    assert_eq!(std::fs::read_to_string(tree.join("a.yaml")).unwrap(), "a\n");

    // A file URL that points nowhere fails the same way.
    let nowhere = source(
        format!("file://{}/missing.git", cache.path().display()),
        GitRef::Branch("main".into()),
        &cache.path().join("other"),
    );
    let error = nowhere.fetch().await.unwrap_err();
    assert!(matches!(error, SourceError::Unreachable { .. }), "{error}");

    // Checking out a commit that was never fetched names the problem.
    let error = src.checkout(&"ab".repeat(20)).await.unwrap_err();
    assert!(matches!(error, SourceError::NotFetched { .. }), "{error}");
}

// ---------------------------------------------------------------------------
// HTTPS token auth: git http-backend behind a server that checks Basic auth

struct HttpBackend {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    rejected_credentials: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HttpBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct HttpState {
    root: PathBuf,
    user: String,
    token: String,
    requests: Arc<AtomicUsize>,
    rejected_credentials: Arc<AtomicUsize>,
}

async fn http_backend(root: PathBuf, user: &str, token: &str) -> HttpBackend {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let state = HttpState {
        root,
        user: user.to_string(),
        token: token.to_string(),
        requests: Arc::default(),
        rejected_credentials: Arc::default(),
    };
    let requests = state.requests.clone();
    let rejected_credentials = state.rejected_credentials.clone();
    let app = axum::Router::new().fallback(cgi).with_state(state);
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    HttpBackend {
        addr,
        requests,
        rejected_credentials,
        task,
    }
}

async fn cgi(
    axum::extract::State(state): axum::extract::State<HttpState>,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::http::{HeaderValue, StatusCode, header};
    use base64::Engine as _;

    state.requests.fetch_add(1, Ordering::SeqCst);
    let (parts, body) = request.into_parts();
    let unauthorized = || {
        let mut response = axum::response::Response::new(axum::body::Body::from("auth needed"));
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"git\""),
        );
        response
    };
    let Some(given) = parts.headers.get(header::AUTHORIZATION) else {
        return unauthorized();
    };
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", state.user, state.token))
    );
    if given.as_bytes() != expected.as_bytes() {
        state.rejected_credentials.fetch_add(1, Ordering::SeqCst);
        return unauthorized();
    }
    let body = axum::body::to_bytes(body, 256 << 20).await.unwrap();
    let header_value = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let mut command = Command::new("git");
    command
        .arg("http-backend")
        .env("GIT_PROJECT_ROOT", &state.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("PATH_INFO", parts.uri.path())
        .env("QUERY_STRING", parts.uri.query().unwrap_or_default())
        .env("CONTENT_TYPE", header_value("content-type"))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("REMOTE_USER", &state.user)
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("GIT_PROTOCOL", header_value("git-protocol"))
        .env("HTTP_CONTENT_ENCODING", header_value("content-encoding"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let output = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = command.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        // Written from another thread so a large response cannot block on a
        // request that is still being fed in.
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&body);
        });
        let output = child.wait_with_output().unwrap();
        writer.join().unwrap();
        output.stdout
    })
    .await
    .unwrap();

    // CGI output: headers, a blank line, the body.
    let split = output
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| output.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)))
        .expect("http-backend wrote no header block");
    let (head, rest) = (&output[..split.0], &output[split.0 + split.1..]);
    let mut response = axum::response::Response::new(axum::body::Body::from(rest.to_vec()));
    for line in String::from_utf8_lossy(head).lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().unwrap().parse().unwrap();
            *response.status_mut() = StatusCode::from_u16(code).unwrap();
        } else {
            response.headers_mut().append(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
    }
    response
}

fn https_source(url: String, cache: &Path, user: &str, token_file: &Path) -> GitSource {
    let mut config = SourceConfig::new(url, GitRef::Branch("main".into()), cache);
    config.auth = GitAuth::Https {
        username: user.to_string(),
        password_file: token_file.to_path_buf(),
    };
    GitSource::new(config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_token_auth_fetches_and_a_wrong_token_is_a_clear_error_without_the_token() {
    const TOKEN: &str = "glpat-correct-horse-battery";
    const WRONG: &str = "glpat-wrong-token-0123456789";
    let up = Upstream::new();
    let c1 = up.commit("one", &[("a.yaml", "a\n")], &[]);
    let server = http_backend(up.served_root(), "deploy-bot", TOKEN).await;
    let url = format!("http://{}/repo.git", server.addr);
    let secrets = tempfile::tempdir().unwrap();
    let good = secrets.path().join("token");
    std::fs::write(&good, format!("{TOKEN}\n")).unwrap();
    let bad = secrets.path().join("wrong-token");
    std::fs::write(&bad, WRONG).unwrap();

    let cache = tempfile::tempdir().unwrap();
    let src = https_source(url.clone(), cache.path(), "deploy-bot", &good);
    let first = src.fetch().await.unwrap();
    assert_eq!(first.commit, c1);
    assert!(first.bytes_received > 0);
    let again = src.fetch().await.unwrap();
    assert!(!again.changed);
    assert_eq!(again.bytes_received, 0);
    let c2 = up.commit("two", &[("b.yaml", "b\n")], &[]);
    let next = src.fetch().await.unwrap();
    assert_eq!((next.commit.as_str(), next.changed), (c2.as_str(), true));
    let tree = src.checkout(&c2).await.unwrap();
    assert_eq!(
        tree_files(&tree),
        files(&[("a.yaml", "a\n"), ("b.yaml", "b\n")])
    );

    let before = server.rejected_credentials.load(Ordering::SeqCst);
    let cache = tempfile::tempdir().unwrap();
    let wrong = https_source(url.clone(), cache.path(), "deploy-bot", &bad);
    let error = wrong.fetch().await.unwrap_err();
    let text = format!("{error} {error:?}");
    assert!(
        matches!(error, SourceError::Authentication { .. }),
        "{text}"
    );
    assert!(text.contains("127.0.0.1"), "{text}");
    assert!(!text.contains(WRONG) && !text.contains(TOKEN), "{text}");
    let refused = server.rejected_credentials.load(Ordering::SeqCst) - before;
    assert_eq!(
        refused, 1,
        "the wrong token must be tried once, not in a loop"
    );

    // No credentials at all against a server that wants them.
    let cache = tempfile::tempdir().unwrap();
    let error = source(url.clone(), GitRef::Branch("main".into()), cache.path())
        .fetch()
        .await
        .unwrap_err();
    assert!(
        matches!(error, SourceError::Authentication { .. }),
        "{error}"
    );

    // A token in the URL itself is redacted from errors too.
    let cache = tempfile::tempdir().unwrap();
    let embedded = format!("http://deploy-bot:{WRONG}@{}/repo.git", server.addr);
    let error = source(embedded, GitRef::Branch("main".into()), cache.path())
        .fetch()
        .await
        .unwrap_err();
    let text = format!("{error} {error:?}");
    assert!(!text.contains(WRONG), "{text}");

    // A missing token file says which file.
    let cache = tempfile::tempdir().unwrap();
    let missing = secrets.path().join("not-mounted");
    let error = https_source(url, cache.path(), "deploy-bot", &missing)
        .fetch()
        .await
        .unwrap_err();
    assert!(matches!(error, SourceError::Secret { .. }), "{error}");
    assert!(error.to_string().contains("not-mounted"), "{error}");
    assert!(server.requests.load(Ordering::SeqCst) > 0);
}

// ---------------------------------------------------------------------------
// SSH: a local sshd with its own host key

struct Sshd {
    server: Server,
    dir: tempfile::TempDir,
    user: String,
    host_key_types: Vec<String>,
}

impl Sshd {
    /// A known_hosts line for the server's first host key.
    fn host_key_line(&self, host_pattern: &str) -> String {
        self.host_key_line_of(&self.host_key_types[0], host_pattern)
    }

    fn host_key_line_of(&self, kind: &str, host_pattern: &str) -> String {
        let public =
            std::fs::read_to_string(self.dir.path().join(format!("host_key_{kind}.pub"))).unwrap();
        let mut parts = public.split_whitespace();
        format!(
            "{host_pattern} {} {}\n",
            parts.next().unwrap(),
            parts.next().unwrap()
        )
    }

    fn host_fingerprint(&self) -> String {
        self.fingerprint_of(&self.host_key_types[0])
    }

    fn fingerprint_of(&self, kind: &str) -> String {
        let out = Command::new("ssh-keygen")
            .arg("-lf")
            .arg(self.dir.path().join(format!("host_key_{kind}.pub")))
            .output()
            .unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_string()
    }

    fn client_key(&self) -> PathBuf {
        self.dir.path().join("client_key")
    }
}

fn sshd_binary() -> Option<PathBuf> {
    ["/usr/sbin/sshd", "/usr/bin/sshd", "/usr/local/sbin/sshd"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

fn keygen(path: &Path, kind: &str) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", kind, "-N", "", "-C", "stagegate-test", "-f"])
        .arg(path)
        .stdout(Stdio::null())
        .status()
        .expect("ssh-keygen must be installed with sshd");
    assert!(status.success());
}

/// Starts sshd on a free loopback port, or says why it cannot.
fn start_sshd(host_key_types: &[&str]) -> Result<Sshd, String> {
    let binary = sshd_binary().ok_or("sshd is not installed (install openssh-server)")?;
    let user = std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| {
            String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
                .unwrap()
                .trim()
                .to_string()
        });
    let dir = tempfile::tempdir().unwrap();
    let mut host_keys = String::new();
    for kind in host_key_types {
        let path = dir.path().join(format!("host_key_{kind}"));
        keygen(&path, kind);
        host_keys.push_str(&format!("HostKey {}\n", path.display()));
    }
    keygen(&dir.path().join("client_key"), "ed25519");
    std::fs::copy(
        dir.path().join("client_key.pub"),
        dir.path().join("authorized_keys"),
    )
    .unwrap();
    // sshd running as root wants its privilege separation directory.
    let _ = std::fs::create_dir_all("/run/sshd");
    let mut last_error = String::new();
    for _attempt in 0..10 {
        let port = free_port();
        let config = dir.path().join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\n{host_keys}PidFile {dir}/sshd.pid\n\
                 AuthorizedKeysFile {dir}/authorized_keys\nStrictModes no\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin prohibit-password\n\
                 UsePAM no\nAllowUsers {user}\nLogLevel ERROR\n",
                dir = dir.path().display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("sshd.log")).unwrap();
        let mut child = Command::new(&binary)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        if wait_listening(&mut child, port) {
            return Ok(Sshd {
                server: Server { child, port },
                dir,
                user,
                host_key_types: host_key_types.iter().map(|k| k.to_string()).collect(),
            });
        }
        let _ = child.kill();
        let _ = child.wait();
        last_error = std::fs::read_to_string(dir.path().join("sshd.log")).unwrap_or_default();
    }
    Err(format!("sshd did not start: {last_error}"))
}

fn ssh_source(url: String, cache: &Path, key: &Path, known_hosts: &Path) -> GitSource {
    let mut config = SourceConfig::new(url, GitRef::Branch("main".into()), cache);
    config.auth = GitAuth::Ssh {
        private_key: key.to_path_buf(),
        known_hosts: known_hosts.to_path_buf(),
        passphrase_file: None,
    };
    GitSource::new(config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_key_auth_with_strict_known_hosts() {
    // sshd is part of what the suite needs (.ci/run installs it): without
    // it this test fails rather than proving nothing.
    let sshd = start_sshd(&["ed25519"]).unwrap_or_else(|reason| panic!("{reason}"));
    let up = Upstream::new();
    let c1 = up.commit("one", &[("a.yaml", "a\n")], &[]);
    let port = sshd.server.port;
    let url = format!(
        "ssh://{}@127.0.0.1:{port}{}",
        sshd.user,
        up.bare().display()
    );
    let secrets = tempfile::tempdir().unwrap();
    let known = secrets.path().join("known_hosts");
    let fingerprint = sshd.host_fingerprint();

    // The right key in plain `[host]:port` form.
    std::fs::write(&known, sshd.host_key_line(&format!("[127.0.0.1]:{port}"))).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let src = ssh_source(url.clone(), cache.path(), &sshd.client_key(), &known);
    let first = src.fetch().await.unwrap_or_else(|e| {
        panic!(
            "{e}\nsshd log: {}",
            std::fs::read_to_string(sshd.dir.path().join("sshd.log")).unwrap_or_default()
        )
    });
    assert_eq!(first.commit, c1);
    assert!(first.bytes_received > 0);
    let again = src.fetch().await.unwrap();
    assert!(!again.changed);
    let c2 = up.commit("two", &[("b.yaml", "b\n")], &["a.yaml"]);
    let next = src.fetch().await.unwrap();
    assert_eq!(next.commit, c2);
    let tree = src.checkout(&c2).await.unwrap();
    assert_eq!(tree_files(&tree), files(&[("b.yaml", "b\n")]));

    // The same key, hashed by ssh-keygen -H.
    let hashed = secrets.path().join("known_hosts_hashed");
    std::fs::write(&hashed, sshd.host_key_line(&format!("[127.0.0.1]:{port}"))).unwrap();
    let status = Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&hashed)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    assert!(std::fs::read_to_string(&hashed).unwrap().starts_with("|1|"));
    let cache = tempfile::tempdir().unwrap();
    let fetched: Fetched = ssh_source(url.clone(), cache.path(), &sshd.client_key(), &hashed)
        .fetch()
        .await
        .unwrap();
    assert_eq!(fetched.commit, c2);

    // Another ed25519 key listed for this host and port: a mismatch.
    let other = secrets.path().join("other_host_key");
    keygen(&other, "ed25519");
    let public = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let mut parts = public.split_whitespace();
    let mismatched = secrets.path().join("known_hosts_mismatch");
    std::fs::write(
        &mismatched,
        format!(
            "[127.0.0.1]:{port} {} {}\n",
            parts.next().unwrap(),
            parts.next().unwrap()
        ),
    )
    .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let error = ssh_source(url.clone(), cache.path(), &sshd.client_key(), &mismatched)
        .fetch()
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(
        matches!(error, SourceError::HostKeyMismatch { .. }),
        "{text}"
    );
    assert!(
        text.contains("127.0.0.1") && text.contains(&fingerprint),
        "{text}"
    );

    // The right key, but listed for the default port only: unknown host.
    let wrong_port = secrets.path().join("known_hosts_port22");
    std::fs::write(&wrong_port, sshd.host_key_line("127.0.0.1")).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let error = ssh_source(url.clone(), cache.path(), &sshd.client_key(), &wrong_port)
        .fetch()
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(
        matches!(error, SourceError::UnknownHostKey { .. }),
        "{text}"
    );
    assert!(
        text.contains("127.0.0.1") && text.contains(&fingerprint),
        "{text}"
    );

    // A client key the server does not know.
    let stranger = secrets.path().join("stranger_key");
    keygen(&stranger, "ed25519");
    let cache = tempfile::tempdir().unwrap();
    let error = ssh_source(url.clone(), cache.path(), &stranger, &known)
        .fetch()
        .await
        .unwrap_err();
    let text = format!("{error} {error:?}");
    assert!(
        matches!(error, SourceError::Authentication { .. }),
        "{text}"
    );
    let private = std::fs::read_to_string(&stranger).unwrap();
    let body_line = private.lines().nth(1).unwrap();
    assert!(!text.contains(body_line), "key material leaked: {text}");

    // An SSH URL without SSH auth is refused before connecting.
    let cache = tempfile::tempdir().unwrap();
    let error = source(url, GitRef::Branch("main".into()), cache.path())
        .fetch()
        .await
        .unwrap_err();
    assert!(
        matches!(error, SourceError::InvalidConfig { .. }),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_host_keys_of_each_type_and_a_passphrase_protected_client_key() {
    let sshd = start_sshd(&["ecdsa", "rsa", "ed25519"]).unwrap_or_else(|reason| panic!("{reason}"));
    let up = Upstream::new();
    let c1 = up.commit("one", &[("a.yaml", "a\n")], &[]);
    let port = sshd.server.port;
    let url = format!(
        "ssh://{}@127.0.0.1:{port}{}",
        sshd.user,
        up.bare().display()
    );
    let secrets = tempfile::tempdir().unwrap();

    // known_hosts exactly as `ssh-keyscan` writes it, every key type included.
    let scanned = Command::new("ssh-keyscan")
        .args(["-p", &port.to_string(), "127.0.0.1"])
        .stderr(Stdio::null())
        .output()
        .expect("ssh-keyscan comes with the SSH client");
    let scanned = String::from_utf8(scanned.stdout).unwrap();
    assert_eq!(
        scanned.lines().filter(|l| !l.starts_with('#')).count(),
        3,
        "{scanned}"
    );
    let known = secrets.path().join("known_hosts");
    std::fs::write(&known, &scanned).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let fetched = ssh_source(url.clone(), cache.path(), &sshd.client_key(), &known)
        .fetch()
        .await
        .unwrap();
    assert_eq!(fetched.commit, c1);

    // Any one of the server's keys is enough, as with OpenSSH: the key type
    // asked of the server is one that known_hosts lists.
    for kind in ["ecdsa", "rsa", "ed25519"] {
        let only = secrets.path().join(format!("known_hosts_{kind}"));
        std::fs::write(
            &only,
            sshd.host_key_line_of(kind, &format!("[127.0.0.1]:{port}")),
        )
        .unwrap();
        let cache = tempfile::tempdir().unwrap();
        let result = ssh_source(url.clone(), cache.path(), &sshd.client_key(), &only)
            .fetch()
            .await;
        let fetched = result.unwrap_or_else(|e| panic!("known_hosts with only {kind}: {e}"));
        assert_eq!(fetched.commit, c1, "{kind}");
    }

    // A client key protected by a passphrase, read from its own file.
    let locked_key = secrets.path().join("locked_key");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "open sesame 42", "-f"])
        .arg(&locked_key)
        .status()
        .unwrap();
    assert!(status.success());
    let mut authorized = std::fs::read_to_string(sshd.dir.path().join("authorized_keys")).unwrap();
    authorized.push_str(&std::fs::read_to_string(locked_key.with_extension("pub")).unwrap());
    std::fs::write(sshd.dir.path().join("authorized_keys"), authorized).unwrap();
    let passphrase = secrets.path().join("passphrase");
    std::fs::write(&passphrase, "open sesame 42\n").unwrap();
    let with_passphrase = |private_key: PathBuf, passphrase_file: PathBuf, cache: &Path| {
        let mut config = SourceConfig::new(url.clone(), GitRef::Branch("main".into()), cache);
        config.auth = GitAuth::Ssh {
            private_key,
            known_hosts: known.clone(),
            passphrase_file: Some(passphrase_file),
        };
        GitSource::new(config)
    };
    let cache = tempfile::tempdir().unwrap();
    let fetched = with_passphrase(locked_key.clone(), passphrase.clone(), cache.path())
        .fetch()
        .await
        .unwrap();
    assert_eq!(fetched.commit, c1);

    let wrong = secrets.path().join("wrong_passphrase");
    std::fs::write(&wrong, "not the passphrase").unwrap();
    let cache = tempfile::tempdir().unwrap();
    let error = with_passphrase(locked_key.clone(), wrong, cache.path())
        .fetch()
        .await
        .unwrap_err();
    let text = format!("{error} {error:?}");
    assert!(
        matches!(error, SourceError::Authentication { .. }),
        "{text}"
    );
    assert!(!text.contains("not the passphrase"), "{text}");
}
