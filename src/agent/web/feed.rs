//! The status page's view of the agent: the persisted state, read with the
//! same code as `stagegate status` (so every replica, leader or not, shows
//! the same), joined with the stage graph of the revision planned last.
//!
//! The state is read only while a page is open: every connected page holds
//! a receiver, and the follower reads at most every [`POLL`] while there is
//! one, publishing only what changed.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::health::{self, ObjectHealth};
use super::page::View;
use super::report::{SourceOrigin, StatusReport, Topology};
use crate::cluster::apply::resolve::Resolver;
use crate::cluster::state::{StateError, StateStore};
use crate::core::plan::Plan;

/// A transition reaches open pages within this (plus one request).
const POLL: Duration = Duration::from_millis(250);

/// One published state of the page.
#[derive(Debug)]
pub struct Snapshot {
    pub report: StatusReport,
    pub view: View,
    /// `view` as the JSON the page's event stream carries.
    pub event: String,
}

pub struct StatusFeed {
    store: StateStore,
    client: kube::Client,
    resolver: Resolver,
    origin: SourceOrigin,
    topology: RwLock<Option<Arc<Topology>>>,
    published: watch::Sender<Option<Arc<Snapshot>>>,
    wake: Notify,
}

impl StatusFeed {
    pub fn new(client: kube::Client, namespace: &str, origin: SourceOrigin) -> Self {
        Self {
            store: StateStore::new(client.clone(), namespace),
            resolver: Resolver::new(client.clone()),
            client,
            origin,
            topology: RwLock::new(None),
            published: watch::Sender::new(None),
            wake: Notify::new(),
        }
    }

    /// The agent planned a revision: its graph is what the page draws.
    pub fn plan_applied(&self, plan: &Plan) {
        let topology = Arc::new(Topology::of(plan));
        if let Ok(mut current) = self.topology.write() {
            *current = Some(topology);
        }
        self.wake.notify_one();
    }

    /// Read the state now; publish it to open pages if it changed.
    pub async fn snapshot(&self) -> Result<Arc<Snapshot>, StateError> {
        let state = self.store.load().await?;
        let topology = self.topology.read().ok().and_then(|t| t.clone());
        let report = StatusReport::new(&state, topology.as_deref(), Some(&self.origin));
        let current = self.published.borrow().clone();
        if let Some(current) = current
            && current.report == report
        {
            return Ok(current);
        }
        let view = View::of(&report);
        let event = serde_json::to_string(&view).unwrap_or_default();
        let snapshot = Arc::new(Snapshot {
            report,
            view,
            event,
        });
        self.published.send_replace(Some(snapshot.clone()));
        Ok(snapshot)
    }

    /// The live health of a stage's objects; `None` for an unknown stage.
    pub async fn stage_health(&self, stage: &str) -> Result<Option<Vec<ObjectHealth>>, StateError> {
        let snapshot = self.snapshot().await?;
        let Some(stage) = snapshot.report.stages.get(stage) else {
            return Ok(None);
        };
        Ok(Some(
            health::of_objects(&self.client, &self.resolver, &stage.objects).await,
        ))
    }

    /// Changes from now on; the current snapshot first, once there is one.
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<Snapshot>>> {
        let mut receiver = self.published.subscribe();
        receiver.mark_changed();
        self.wake.notify_one();
        receiver
    }

    /// Keep open pages current until `shutdown`.
    pub async fn follow(self: Arc<Self>, shutdown: CancellationToken) {
        let mut failing: Option<String> = None;
        loop {
            if self.published.receiver_count() > 0 {
                match self.snapshot().await {
                    Ok(_) => failing = None,
                    Err(e) => {
                        let message = e.to_string();
                        if failing.as_deref() != Some(message.as_str()) {
                            tracing::warn!(error = %message, "status page: cannot read the state");
                        }
                        failing = Some(message);
                    }
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(POLL) => {}
                () = self.wake.notified() => {}
            }
        }
    }
}
