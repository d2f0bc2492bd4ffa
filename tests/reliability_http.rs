//! The HTTP server is bounded: half-sent requests cannot exhaust file
//! descriptors or keep `/healthz` from answering, and slow or idle clients
//! are cut off.
//!
//! The flood test runs the server in a child process (this test binary run
//! again, with `RELIABILITY_HTTP_CHILD` set) limited to 1,024 descriptors,
//! the limit a container often gets, so that the client's 1,100 sockets are
//! not counted against it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use stagegate::agent::metrics::Metrics;
use stagegate::agent::server::{ConnectionLimits, ServerState, serve, serve_with};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

const CHILD_ENV: &str = "RELIABILITY_HTTP_CHILD";
const HALF_OPEN: usize = 1_100;

fn state() -> Arc<ServerState> {
    Arc::new(
        ServerState::new(
            Arc::new(Metrics::new()),
            Arc::new(AtomicBool::new(true)),
            Arc::new(Notify::new()),
            None,
        )
        .expect("no webhook"),
    )
}

/// GET /healthz on a new connection; the status code, or why there is none.
fn healthz(addr: SocketAddr, patience: Duration) -> Result<u16, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(patience))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut response = String::new();
    s.read_to_string(&mut response)
        .map_err(|e| format!("no answer: {e}"))?;
    response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not an HTTP response: {response:?}"))
}

/// Not a test of its own: the server process of the flood test.
#[test]
fn flood_child_server() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let limit = libc::rlimit {
        rlim_cur: 1024,
        rlim_max: 1024,
    };
    // SAFETY: setrlimit with a valid resource and a pointer to a live struct.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (addr, _server) = serve(
            "127.0.0.1:0".parse().unwrap(),
            state(),
            CancellationToken::new(),
        )
        .await
        .unwrap();
        println!("LISTENING {addr}");
        std::future::pending::<()>().await;
    });
}

#[test]
fn healthz_answers_while_1100_half_sent_requests_hold_connections() {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "flood_child_server",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the server process");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let addr: SocketAddr = loop {
        let line = lines
            .next()
            .expect("the server process printed its address")
            .unwrap();
        // libtest prints the test's name on the same line.
        if let Some((_, addr)) = line.split_once("LISTENING ") {
            break addr.trim().parse().unwrap();
        }
    };

    let mut held = Vec::with_capacity(HALF_OPEN);
    for _ in 0..HALF_OPEN {
        let mut s = TcpStream::connect(addr).expect("connect");
        // A request head that never ends.
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        held.push(s);
    }
    // Patience for a busy machine, not a speed requirement.
    let answer = healthz(addr, Duration::from_secs(60));
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        answer,
        Ok(200),
        "/healthz under {HALF_OPEN} half-open connections"
    );
    drop(held);
}

#[tokio::test]
async fn a_client_that_never_finishes_its_request_is_disconnected() {
    let limits = ConnectionLimits {
        header_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(300),
        max_connections: 8,
    };
    let shutdown = CancellationToken::new();
    let (addr, _server) = serve_with(
        "127.0.0.1:0".parse().unwrap(),
        state(),
        limits,
        shutdown.clone(),
    )
    .await
    .unwrap();
    let closed = tokio::task::spawn_blocking(move || {
        let mut slow = TcpStream::connect(addr).unwrap();
        slow.write_all(b"GET /healthz HTTP/1.1\r\nHost:").unwrap();
        let mut silent = TcpStream::connect(addr).unwrap();
        let mut closed = Vec::new();
        for s in [&mut slow, &mut silent] {
            s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
            let mut buf = Vec::new();
            // The server closes: the read ends (possibly with a 408 first).
            closed.push(s.read_to_end(&mut buf).is_ok() || buf.is_empty());
        }
        closed
    })
    .await
    .unwrap();
    assert_eq!(closed, vec![true, true]);
    // And the server still serves.
    let ok = tokio::task::spawn_blocking(move || healthz(addr, Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(ok, Ok(200));
    shutdown.cancel();
}

#[tokio::test]
async fn the_oldest_connection_makes_room_at_the_limit() {
    let limits = ConnectionLimits {
        header_timeout: Duration::from_secs(3600),
        idle_timeout: Duration::from_secs(3600),
        max_connections: 4,
    };
    let shutdown = CancellationToken::new();
    let (addr, _server) = serve_with(
        "127.0.0.1:0".parse().unwrap(),
        state(),
        limits,
        shutdown.clone(),
    )
    .await
    .unwrap();
    let answer = tokio::task::spawn_blocking(move || {
        let held: Vec<TcpStream> = (0..20)
            .map(|_| {
                let mut s = TcpStream::connect(addr).unwrap();
                s.write_all(b"GET / HTTP/1.1\r\n").unwrap();
                s
            })
            .collect();
        let answer = healthz(addr, Duration::from_secs(60));
        drop(held);
        answer
    })
    .await
    .unwrap();
    assert_eq!(answer, Ok(200));
    shutdown.cancel();
}
