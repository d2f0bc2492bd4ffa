//! Cost of polling a Git remote, by history size. For remotes of 100, 1,000
//! and 10,000 commits (made with `git fast-import`, 40 manifests, one changed
//! per commit) served by `git daemon` on loopback, it measures a first clone
//! (shallow, the default, and full for comparison), a no-change poll, and a
//! poll that finds one new commit.
//!
//! "pack bytes" is what `Fetched::bytes_received` reports (the pack libgit2
//! downloaded); "wire bytes" counts every byte both ways through a TCP relay in
//! front of the daemon, ref advertisement and negotiation included.
//!
//! Each figure is the median of 5 runs (of 20 for the no-change poll).
//!
//! Run with `cargo bench --bench git_poll`; `GIT_POLL_SIZES=100,1000` picks the
//! sizes and `GIT_POLL_ROUNDS=20` the number of no-change polls timed.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use stagegate::agent::source::{Fetched, GitRef, GitSource, SourceConfig};

// The tests' git daemon helper, shared rather than written twice.
#[allow(dead_code)]
#[path = "../tests/common/git.rs"]
mod git_fixture;
use git_fixture::GitDaemon;

const FILES: usize = 40;
/// Clones and new-commit polls are timed this many times; the median is shown.
const CLONE_ROUNDS: usize = 5;

fn main() {
    let sizes: Vec<usize> = std::env::var("GIT_POLL_SIZES")
        .unwrap_or_else(|_| "100,1000,10000".to_string())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .expect("GIT_POLL_SIZES: comma-separated numbers")
        })
        .collect();
    let rounds: usize = std::env::var("GIT_POLL_ROUNDS")
        .ok()
        .map(|s| s.parse().expect("GIT_POLL_ROUNDS: a number"))
        .unwrap_or(20);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    println!(
        "| commits | remote size | first clone, shallow | first clone, full | no-change poll | poll finding 1 new commit |"
    );
    println!("|---:|---:|---|---|---|---|");
    for commits in sizes {
        let row = runtime.block_on(measure(commits, rounds));
        println!("{row}");
    }
}

struct Measured {
    time: Duration,
    pack_bytes: usize,
    wire_bytes: u64,
}

impl std::fmt::Display for Measured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.1} ms, {} pack / {} wire bytes",
            self.time.as_secs_f64() * 1000.0,
            self.pack_bytes,
            self.wire_bytes
        )
    }
}

async fn measure(commits: usize, rounds: usize) -> String {
    let dir = tempfile::tempdir().unwrap();
    let served = dir.path().join("served");
    let bare = served.join("repo.git");
    std::fs::create_dir_all(&served).unwrap();
    git(&served, &["init", "-q", "--bare", "-b", "main", "repo.git"]);
    fast_import(&bare, commits, false);
    git(&bare, &["gc", "-q"]);
    let remote_size = dir_size(&bare);

    let daemon = GitDaemon::start(&served);
    let relay = Relay::start(daemon.port);
    let url = format!("git://127.0.0.1:{}/repo.git", relay.port);

    let clone = |shallow: bool| {
        let cache = tempfile::tempdir().unwrap();
        let mut config =
            SourceConfig::new(url.clone(), GitRef::Branch("main".into()), cache.path());
        config.shallow = shallow;
        (cache, GitSource::new(config))
    };

    let mut full_clones = Vec::new();
    let mut first_clones = Vec::new();
    for _ in 0..CLONE_ROUNDS {
        let (_cache, full) = clone(false);
        full_clones.push(timed(&relay, &full).await);
        let (_cache, shallow) = clone(true);
        first_clones.push(timed(&relay, &shallow).await);
    }

    let (_cache, source) = clone(true);
    timed(&relay, &source).await;
    let mut polls = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        polls.push(timed(&relay, &source).await);
    }

    let mut new_commit_polls = Vec::new();
    for _ in 0..CLONE_ROUNDS {
        fast_import(&bare, 1, true);
        let fetched = timed(&relay, &source).await;
        new_commit_polls.push(fetched);
    }

    format!(
        "| {commits} | {:.1} MiB | {} | {} | {} | {} |",
        remote_size as f64 / (1024.0 * 1024.0),
        median(first_clones),
        median(full_clones),
        median(polls),
        median(new_commit_polls),
    )
}

/// The measurement with the median time.
fn median(mut samples: Vec<Measured>) -> Measured {
    samples.sort_by_key(|m| m.time);
    samples.swap_remove(samples.len() / 2)
}

async fn timed(relay: &Relay, source: &GitSource) -> Measured {
    let before = relay.bytes();
    let started = Instant::now();
    let fetched: Fetched = source.fetch().await.expect("fetch");
    let time = started.elapsed();
    Measured {
        time,
        pack_bytes: fetched.bytes_received,
        wire_bytes: relay.bytes() - before,
    }
}

/// Appends `commits` commits to `main` with `git fast-import`; each changes one
/// of the manifests, so the history grows the way a deployment repository's
/// does. The first commit of a new repository writes all of them.
fn fast_import(bare: &Path, commits: usize, append: bool) {
    let mut stream = String::new();
    let start = if append {
        git(bare, &["rev-list", "--count", "main"])
            .parse::<usize>()
            .unwrap()
    } else {
        0
    };
    for n in start..start + commits {
        let message = format!("change {n}");
        stream.push_str("commit refs/heads/main\n");
        stream.push_str(&format!(
            "committer Bench <bench@example.com> {} +0000\n",
            1_700_000_000 + n
        ));
        stream.push_str(&format!("data {}\n{message}\n", message.len()));
        if n == 0 {
            for file in 0..FILES {
                push_file(&mut stream, file, n);
            }
        } else {
            if n == start {
                stream.push_str("from refs/heads/main^0\n");
            }
            push_file(&mut stream, n % FILES, n);
        }
    }
    let mut child = Command::new("git")
        .args(["fast-import", "--quiet"])
        .current_dir(bare)
        .stdin(Stdio::piped())
        .spawn()
        .expect("git fast-import");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stream.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "git fast-import failed");
}

fn push_file(stream: &mut String, file: usize, n: usize) {
    let content = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app-{file}\n  annotations:\n    revision: \"{n}\"\n\
         spec:\n  replicas: 2\n  template:\n    spec:\n      containers:\n        - name: app\n\
         \x20         image: registry.example.com/shop/app-{file}:1.{n}.0\n"
    );
    stream.push_str(&format!(
        "M 100644 inline manifests/app-{file}.yaml\ndata {}\n{content}\n",
        content.len()
    ));
}

fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git");
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

fn dir_size(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                dir_size(&e.path())
            } else {
                meta.len()
            }
        })
        .sum()
}

/// A loopback TCP relay that counts the bytes it forwards in both directions.
struct Relay {
    port: u16,
    bytes: Arc<AtomicU64>,
}

impl Relay {
    fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let bytes = Arc::new(AtomicU64::new(0));
        let counter = bytes.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect((Ipv4Addr::LOCALHOST, upstream)) else {
                    continue;
                };
                // Without these the relay's small writes would wait for
                // delayed ACKs and add latency the direct path does not have.
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                for (from, to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let counter = counter.clone();
                    std::thread::spawn(move || pipe(from, to, &counter));
                }
            }
        });
        Self { port, bytes }
    }

    fn bytes(&self) -> u64 {
        // The relay threads finish forwarding shortly after the client is
        // done; a short pause lets the count settle before it is read.
        std::thread::sleep(Duration::from_millis(20));
        self.bytes.load(Ordering::SeqCst)
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream, counter: &AtomicU64) {
    let mut buffer = [0u8; 64 * 1024];
    loop {
        match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                counter.fetch_add(n as u64, Ordering::SeqCst);
                if to.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
