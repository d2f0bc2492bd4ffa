//! WATCH: initial events, replay from a resourceVersion, bookmarks, timeouts,
//! and the in-stream 410 Expired for a resourceVersion that is too old.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use crate::request::{Query, ResourcePath};
use crate::resources::ResourceType;
use crate::selector::{FieldSelector, LabelSelector};
use crate::server::Shared;
use crate::status::{ApiError, ApiResult};
use crate::store::{Event, EventType};

struct Filter {
    rt: ResourceType,
    version: String,
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
    /// `kubectl get -w` asks for Table rows; the column definitions go in
    /// the first event only, as the real server sends them.
    repr: crate::table::Repr,
    columns_sent: std::sync::atomic::AtomicBool,
}

impl Filter {
    fn matches(&self, obj: &Value) -> bool {
        (self.labels.is_empty() || self.labels.matches(obj))
            && (self.fields.is_empty() || self.fields.matches(obj))
    }

    /// The event a watcher with this filter sees, if any: an object leaving
    /// the selection is DELETED for it, one entering it ADDED.
    fn translate(&self, ev: &Event) -> Option<EventType> {
        if ev.key != self.rt.key() {
            return None;
        }
        if let Some(ns) = &self.namespace
            && *ns != ev.namespace
        {
            return None;
        }
        if self.labels.is_empty() && self.fields.is_empty() {
            return Some(ev.etype);
        }
        let now = self.matches(&ev.object);
        let before = ev.previous.as_deref().is_some_and(|p| self.matches(p));
        match ev.etype {
            EventType::Added => now.then_some(EventType::Added),
            EventType::Deleted => (now || before).then_some(EventType::Deleted),
            EventType::Modified => match (before, now) {
                (true, true) => Some(EventType::Modified),
                (false, true) => Some(EventType::Added),
                (true, false) => Some(EventType::Deleted),
                (false, false) => None,
            },
        }
    }

    fn line(&self, etype: EventType, ev_json: Bytes, obj: &Value) -> Bytes {
        let object = if self.repr == crate::table::Repr::Metadata {
            Bytes::from(serde_json::to_vec(&crate::table::partial(obj)).unwrap_or_default())
        } else if self.repr == crate::table::Repr::Table {
            let mut t = crate::table::table(&self.rt, &[obj], None, None);
            if self
                .columns_sent
                .swap(true, std::sync::atomic::Ordering::Relaxed)
            {
                t["columnDefinitions"] = json!([]);
            }
            Bytes::from(serde_json::to_vec(&t).unwrap_or_default())
        } else if self.rt.from_crd {
            let mut v = obj.clone();
            v["apiVersion"] = json!(self.rt.api_version(&self.version));
            Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
        } else {
            ev_json
        };
        let mut buf = Vec::with_capacity(object.len() + 32);
        buf.extend_from_slice(b"{\"type\":\"");
        buf.extend_from_slice(etype.as_str().as_bytes());
        buf.extend_from_slice(b"\",\"object\":");
        buf.extend_from_slice(&object);
        buf.extend_from_slice(b"}\n");
        Bytes::from(buf)
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj = json!({
            "kind": self.rt.kind,
            "apiVersion": self.rt.api_version(&self.version),
            "metadata": meta,
        });
        let mut v =
            serde_json::to_vec(&json!({"type": "BOOKMARK", "object": obj})).unwrap_or_default();
        v.push(b'\n');
        Bytes::from(v)
    }
}

fn expired_line(rv: &str, floor: u64) -> Bytes {
    let status = ApiError::new(
        410,
        "Expired",
        format!("too old resource version: {rv} ({floor})"),
    )
    .to_status();
    let mut v = serde_json::to_vec(&json!({"type": "ERROR", "object": status})).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

pub async fn serve(
    shared: Arc<Shared>,
    rt: ResourceType,
    rp: ResourcePath,
    query: &Query,
    repr: crate::table::Repr,
) -> ApiResult<Response> {
    let filter = Filter {
        repr,
        columns_sent: std::sync::atomic::AtomicBool::new(false),
        labels: LabelSelector::parse(query.get("labelSelector").unwrap_or(""))?,
        fields: FieldSelector::parse(query.get("fieldSelector").unwrap_or(""), &rt)?,
        rt,
        version: rp.version.clone(),
        namespace: rp.namespace.clone(),
    };
    let bookmarks = query.flag("allowWatchBookmarks");
    let send_initial = query.flag("sendInitialEvents");
    let timeout = query
        .nonempty("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(shared.config.watch_timeout);
    let rv_param = query.nonempty("resourceVersion").map(str::to_string);

    let (tx, rx) = mpsc::channel::<Bytes>(1024);
    let mut closes = shared.faults.watch_closes();
    closes.mark_unchanged();
    let mut shutdown = shared.shutdown.subscribe();
    let mut first: Vec<Bytes> = Vec::new();
    let (events, start_rv) = {
        let store = shared.lock()?;
        let start_rv = store.current_rv();
        let from_state = send_initial || rv_param.as_deref().is_none_or(|r| r == "0");
        if from_state {
            for obj in store.list(&filter.rt.key(), filter.namespace.as_deref()) {
                if filter.matches(&obj) {
                    let bytes = Bytes::from(serde_json::to_vec(&*obj).unwrap_or_default());
                    first.push(filter.line(EventType::Added, bytes, &obj));
                }
            }
            if send_initial && bookmarks {
                first.push(filter.bookmark(start_rv, true));
            }
            (Some(store.subscribe()), start_rv)
        } else {
            let requested = rv_param.clone().unwrap_or_default();
            let Ok(n) = requested.parse::<u64>() else {
                return Err(ApiError::bad_request(format!(
                    "invalid resource version: {requested}"
                )));
            };
            match store.events_since(n) {
                Some(replay) => {
                    for ev in replay {
                        if let Some(t) = filter.translate(&ev) {
                            first.push(filter.line(t, ev.object_json(), &ev.object));
                        }
                    }
                    (Some(store.subscribe()), start_rv.max(n))
                }
                None => {
                    // The real server answers 200 and reports the expiry in-stream.
                    first.push(expired_line(&requested, store.floor()));
                    (None, start_rv)
                }
            }
        }
    };

    let bookmark_every = shared
        .config
        .bookmark_interval
        .max(Duration::from_millis(50));
    tokio::spawn(async move {
        for line in first {
            if tx.send(line).await.is_err() {
                return;
            }
        }
        let Some(mut events) = events else { return };
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(bookmark_every);
        tick.tick().await;
        let mut progress = start_rv;
        loop {
            tokio::select! {
                // A close must win over pending events: nothing is sent after it.
                biased;
                _ = closes.changed() => return,
                _ = shutdown.changed() => return,
                _ = &mut deadline => return,
                ev = events.recv() => match ev {
                    Ok(ev) => {
                        // `<`: an Event's twin in the other API shares its resourceVersion.
                        if ev.rv < progress {
                            continue;
                        }
                        progress = ev.rv;
                        if let Some(t) = filter.translate(&ev)
                            && tx.send(filter.line(t, ev.object_json(), &ev.object)).await.is_err()
                        {
                            return;
                        }
                    }
                    // A watcher that fell too far behind is closed; it re-watches.
                    Err(broadcast::error::RecvError::Lagged(_)) | Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tick.tick(), if bookmarks => {
                    if tx.send(filter.bookmark(progress, false)).await.is_err() {
                        return;
                    }
                }
            }
        }
    });

    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
    });
    let mut resp = Response::new(Body::from_stream(stream));
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}
