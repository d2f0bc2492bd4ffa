//! The status page: a read-only view of the agent on its HTTP listener.
//!
//! - `GET /` and `GET /stages/NAME`: the page, the stage graph drawn on the
//!   server as SVG (`svg`, `layout`), details made as HTML (`page`);
//! - `GET /api/status`: the [`report::StatusReport`], as `stagegate status -o json`;
//! - `GET /api/stages/NAME/health`: the live health of a stage's objects;
//! - `GET /api/events`: the page's fragments on every change (Server-Sent Events);
//! - `GET /assets/…`: the stylesheet and script, embedded in the binary.
//!
//! Nothing here writes to the cluster or loads anything from elsewhere.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::Stream;

pub mod escape;
pub mod feed;
pub mod health;
pub mod layout;
pub mod page;
pub mod report;
pub mod svg;

pub use feed::StatusFeed;
pub use report::{SourceOrigin, StatusReport, Topology};

/// Only this origin's script, styles and event stream; no frames.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The page's routes, for the agent's router.
pub fn routes<S>(feed: Arc<StatusFeed>) -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/stages/{name}", get(stage))
        .route("/api/status", get(api_status))
        .route("/api/events", get(events))
        .route("/api/stages/{name}/health", get(stage_health))
        .route("/assets/page.css", get(stylesheet))
        .route("/assets/page.js", get(script))
        .with_state(feed)
}

async fn index(State(feed): State<Arc<StatusFeed>>) -> Response {
    match feed.snapshot().await {
        Ok(snapshot) => html(StatusCode::OK, page::document(&snapshot.view, None)),
        Err(e) => unavailable(e),
    }
}

async fn stage(State(feed): State<Arc<StatusFeed>>, Path(name): Path<String>) -> Response {
    match feed.snapshot().await {
        Ok(snapshot) => {
            let status = if snapshot.view.details.contains_key(&name) {
                StatusCode::OK
            } else {
                StatusCode::NOT_FOUND
            };
            html(status, page::document(&snapshot.view, Some(&name)))
        }
        Err(e) => unavailable(e),
    }
}

async fn api_status(State(feed): State<Arc<StatusFeed>>) -> Response {
    match feed.snapshot().await {
        Ok(snapshot) => match serde_json::to_string_pretty(&snapshot.report) {
            Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json + "\n").into_response(),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        },
        Err(e) => unavailable(e),
    }
}

async fn stage_health(State(feed): State<Arc<StatusFeed>>, Path(name): Path<String>) -> Response {
    match feed.stage_health(&name).await {
        Ok(Some(objects)) => match serde_json::to_string(&objects) {
            Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        },
        Ok(None) => (StatusCode::NOT_FOUND, format!("no stage named {name}\n")).into_response(),
        Err(e) => unavailable(e),
    }
}

async fn events(
    State(feed): State<Arc<StatusFeed>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let receiver = feed.subscribe();
    let stream = futures::stream::unfold(receiver, |mut receiver| async move {
        loop {
            receiver.changed().await.ok()?;
            let snapshot = receiver.borrow_and_update().clone();
            if let Some(snapshot) = snapshot {
                let event = Event::default()
                    .event("status")
                    .retry(Duration::from_millis(500))
                    .data(snapshot.event.as_str());
                return Some((Ok(event), receiver));
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

async fn stylesheet() -> Response {
    asset(
        "text/css; charset=utf-8",
        concat!(
            include_str!("assets/graph.css"),
            include_str!("assets/page.css")
        ),
    )
}

async fn script() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("assets/page.js"),
    )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

fn html(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn unavailable(e: crate::cluster::state::StateError) -> Response {
    tracing::warn!(error = %e, "status page: cannot read the state");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!("cannot read the agent's state: {e}\n"),
    )
        .into_response()
}
