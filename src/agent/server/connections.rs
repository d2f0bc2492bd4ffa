//! The accept loop, with the limits `axum::serve` does not set: a client
//! that sends its request slowly, or nothing at all, must not hold a file
//! descriptor for ever, and a thousand such clients must not keep `/healthz`
//! from answering.
//!
//! - the request head must arrive within `header_timeout` (hyper's own
//!   timer, which also covers the wait for a kept-alive connection's next
//!   request);
//! - a connection with no byte read or written for `idle_timeout` is closed;
//! - at most `max_connections` are open: a new connection closes the oldest
//!   one, so that the newest client (a probe) is served, not the one that has
//!   waited longest without finishing its request;
//! - an accept error such as EMFILE is logged and retried after a pause,
//!   never a reason to stop serving.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long a client may take, and how many may be connected at once.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    /// A probe or a scrape sends its request at once; Git hosts send a push
    /// in one write. Well below the 1,024 descriptors a container often
    /// gets, with room left for Git and the API client.
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 256,
        }
    }
}

/// Open connections by arrival order, each with the token that closes it.
#[derive(Default)]
struct Open {
    next: u64,
    by_age: BTreeMap<u64, CancellationToken>,
}

pub(super) async fn accept_loop(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) {
    let open = Arc::new(Mutex::new(Open::default()));
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) => {
                    // EMFILE and its kin pass once connections close.
                    tracing::warn!(%error, "HTTP server cannot accept a connection; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let close = shutdown.child_token();
        let id = {
            let mut open = open.lock().unwrap_or_else(|p| p.into_inner());
            while open.by_age.len() >= limits.max_connections.max(1) {
                if let Some((_, oldest)) = open.by_age.pop_first() {
                    oldest.cancel();
                }
            }
            let id = open.next;
            open.next += 1;
            open.by_age.insert(id, close.clone());
            id
        };
        let (app, open) = (app.clone(), open.clone());
        tokio::spawn(async move {
            serve_connection(stream, app, limits, close).await;
            open.lock()
                .unwrap_or_else(|p| p.into_inner())
                .by_age
                .remove(&id);
        });
    }
    for token in open
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .by_age
        .values()
    {
        token.cancel();
    }
}

async fn serve_connection(
    stream: TcpStream,
    app: Router,
    limits: ConnectionLimits,
    close: CancellationToken,
) {
    let started = Instant::now();
    let activity = Arc::new(AtomicU64::new(0));
    let io = TokioIo::new(Tracked {
        inner: stream,
        started,
        activity: activity.clone(),
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let connection = builder.serve_connection(io, TowerToHyperService::new(app));
    tokio::pin!(connection);
    loop {
        let last = started + Duration::from_millis(activity.load(Ordering::Relaxed));
        tokio::select! {
            _ = connection.as_mut() => return,
            () = close.cancelled() => return,
            () = tokio::time::sleep_until(last + limits.idle_timeout) => {
                let now_last = started + Duration::from_millis(activity.load(Ordering::Relaxed));
                if now_last + limits.idle_timeout <= Instant::now() {
                    tracing::debug!("closing an idle HTTP connection");
                    return;
                }
            }
        }
    }
}

/// A stream that notes when a byte last went through it.
struct Tracked {
    inner: TcpStream,
    started: Instant,
    activity: Arc<AtomicU64>,
}

impl Tracked {
    fn touch(&self) {
        let elapsed = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.activity.store(elapsed, Ordering::Relaxed);
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.touch();
        }
        poll
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
