//! HTTP: `/metrics`, `/healthz`, `/readyz`, and the Git push webhook
//! `POST /hooks/git`, which makes the agent fetch at once, and the status
//! page (see [`crate::web`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Push payloads are small; anything bigger is not a push event.
const BODY_LIMIT: usize = 1024 * 1024;

pub struct ServerState {
    pub metrics: Arc<Metrics>,
    pub ready: Arc<AtomicBool>,
    pub wake: Arc<Notify>,
    /// The webhook's shared secret; `None` disables the webhook.
    pub webhook_secret: Option<Vec<u8>>,
    /// The read-only status page (`/`, `/api/status`); `None` turns it off.
    pub status_page: Option<Arc<crate::web::StatusFeed>>,
}

pub fn router(state: Arc<ServerState>) -> Router {
    let mut router = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/hooks/git", post(webhook));
    if let Some(feed) = &state.status_page {
        router = router.merge(crate::web::routes(feed.clone()));
    }
    router
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// Serve until `shutdown`; returns the bound address once listening.
pub async fn serve(
    addr: SocketAddr,
    state: Arc<ServerState>,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = router(state);
    let handle = tokio::spawn(async move {
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    });
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

async fn webhook(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let Some(secret) = &state.webhook_secret else {
        return (
            StatusCode::NOT_FOUND,
            "webhook not configured (--webhook-secret-file)",
        );
    };
    match verify(secret, &headers, &body) {
        Ok(()) => {
            tracing::info!("push webhook accepted");
            state.wake.notify_one();
            (StatusCode::ACCEPTED, "fetching")
        }
        Err(reason) => {
            tracing::warn!(reason, "push webhook rejected");
            (StatusCode::UNAUTHORIZED, reason)
        }
    }
}

/// GitHub's `X-Hub-Signature-256` (HMAC-SHA256 of the body) or GitLab's
/// `X-Gitlab-Token` (the secret itself), compared in constant time.
pub fn verify(secret: &[u8], headers: &HeaderMap, body: &[u8]) -> Result<(), &'static str> {
    if let Some(signature) = headers.get("x-hub-signature-256") {
        let hex_sig = signature
            .to_str()
            .ok()
            .and_then(|s| s.strip_prefix("sha256="))
            .ok_or("malformed X-Hub-Signature-256")?;
        let expected = hex::decode(hex_sig).map_err(|_| "malformed X-Hub-Signature-256")?;
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| "bad secret")?;
        mac.update(body);
        // verify_slice compares in constant time.
        return mac
            .verify_slice(&expected)
            .map_err(|_| "signature mismatch");
    }
    if let Some(token) = headers.get("x-gitlab-token") {
        return if bool::from(token.as_bytes().ct_eq(secret)) {
            Ok(())
        } else {
            Err("token mismatch")
        };
    }
    Err("no X-Hub-Signature-256 or X-Gitlab-Token header")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn github_and_gitlab_signatures() {
        let secret = b"s3cret";
        let body = br#"{"ref":"refs/heads/main"}"#;
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(body);
        let good = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        let mut h = HeaderMap::new();
        h.insert("x-hub-signature-256", HeaderValue::from_str(&good).unwrap());
        assert_eq!(verify(secret, &h, body), Ok(()));
        assert_eq!(verify(secret, &h, b"tampered"), Err("signature mismatch"));
        let mut h = HeaderMap::new();
        h.insert("x-gitlab-token", HeaderValue::from_static("s3cret"));
        assert_eq!(verify(secret, &h, body), Ok(()));
        h.insert("x-gitlab-token", HeaderValue::from_static("wrong"));
        assert!(verify(secret, &h, body).is_err());
        assert!(verify(secret, &HeaderMap::new(), body).is_err());
    }
}
