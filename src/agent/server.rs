//! HTTP: `/metrics`, `/healthz`, `/readyz`, and the Git push webhook
//! `POST /hooks/git`, which makes the agent fetch at once, and the status
//! page (see [`crate::agent::web`]).
//!
//! The server is bounded (see [`connections`]): slow or idle clients are cut
//! off, and connections are capped, so that probes are answered whatever
//! else connects. The webhook refuses an empty secret, ignores replayed
//! deliveries, and coalesces pushes into at most one pending fetch (see
//! [`webhook`]).

pub mod connections;
pub mod webhook;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use connections::ConnectionLimits;
pub use webhook::{Accepted, EmptySecret, Webhook, verify};

use crate::agent::metrics::Metrics;

/// Push payloads are small; anything bigger is not a push event.
const BODY_LIMIT: usize = 1024 * 1024;
/// A push body arrives in one write; a client trickling it is cut off.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

pub struct ServerState {
    pub metrics: Arc<Metrics>,
    pub ready: Arc<AtomicBool>,
    pub wake: Arc<Notify>,
    /// The push webhook; `None` turns it off.
    pub webhook: Option<Webhook>,
    /// The read-only status page (`/`, `/api/status`); `None` turns it off.
    pub status_page: Option<Arc<crate::agent::web::StatusFeed>>,
}

impl ServerState {
    /// With a webhook secret, the webhook is on; an empty secret is an error,
    /// never an open webhook.
    pub fn new(
        metrics: Arc<Metrics>,
        ready: Arc<AtomicBool>,
        wake: Arc<Notify>,
        webhook_secret: Option<Vec<u8>>,
    ) -> Result<Self, EmptySecret> {
        let webhook = webhook_secret
            .map(|secret| Webhook::new(secret, wake.clone(), webhook::MIN_FETCH_GAP))
            .transpose()?;
        Ok(Self {
            metrics,
            ready,
            wake,
            webhook,
            status_page: None,
        })
    }

    /// Serve the status page from `feed` too.
    pub fn with_status_page(mut self, feed: Arc<crate::agent::web::StatusFeed>) -> Self {
        self.status_page = Some(feed);
        self
    }
}

/// Every route the agent serves: add new ones here.
pub fn router(state: Arc<ServerState>) -> Router {
    let mut router = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/hooks/git", post(receive_webhook));
    if let Some(feed) = &state.status_page {
        router = router.merge(crate::agent::web::routes(feed.clone()));
    }
    router.with_state(state)
}

/// Serve until `shutdown` with the default limits; returns the bound address once listening.
pub async fn serve(
    addr: SocketAddr,
    state: Arc<ServerState>,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    serve_with(addr, state, ConnectionLimits::default(), shutdown).await
}

pub async fn serve_with(
    addr: SocketAddr,
    state: Arc<ServerState>,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = router(state);
    let handle = tokio::spawn(connections::accept_loop(listener, app, limits, shutdown));
    Ok((bound, handle))
}

async fn metrics(State(state): State<Arc<ServerState>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

async fn readyz(State(state): State<Arc<ServerState>>) -> impl IntoResponse {
    if state.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "first fetch not done yet")
    }
}

async fn receive_webhook(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: Body,
) -> (StatusCode, &'static str) {
    let Some(webhook) = &state.webhook else {
        return (
            StatusCode::NOT_FOUND,
            "webhook not configured (--webhook-secret-file)",
        );
    };
    let body =
        match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, BODY_LIMIT)).await {
            Ok(Ok(body)) => body,
            Ok(Err(_)) => return (StatusCode::PAYLOAD_TOO_LARGE, "body over 1 MiB"),
            Err(_) => return (StatusCode::REQUEST_TIMEOUT, "body not sent in time"),
        };
    match webhook.receive(&headers, &body) {
        Ok(Accepted::Replay) => {
            tracing::info!("push webhook: delivery seen before, ignored");
            (StatusCode::OK, "delivery seen before; ignored")
        }
        Ok(Accepted::Coalesced) => (StatusCode::ACCEPTED, "a fetch is already pending"),
        Ok(Accepted::FetchScheduled) => (StatusCode::ACCEPTED, "fetch scheduled"),
        Ok(Accepted::FetchNow) => {
            tracing::info!("push webhook accepted");
            (StatusCode::ACCEPTED, "fetching")
        }
        Err(reason) => {
            tracing::warn!(reason, "push webhook rejected");
            (StatusCode::UNAUTHORIZED, reason)
        }
    }
}
