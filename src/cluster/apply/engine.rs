//! The apply engine as a value: the client, the discovery cache and its
//! settings; and [`StageRun`], what every step of one stage's apply needs to
//! know and the Events it gathers for the report (the engine publishes
//! none: see [`crate::cluster::events`]). The steps live in their own files
//! (`apply_stage.rs` orders them); they all build on this one.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kube::Client;
use kube::api::PatchParams;

use super::item::Item;
use super::journal::JobJournal;
use super::resolve::Resolver;
use crate::cluster::events::{EventOutlet, ObjectEvent, Reason};
use crate::core::labels::{FIELD_MANAGER, STAGE_LABEL};
use crate::core::object::Revision;
use crate::core::plan::PlannedStage;

#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Objects applied at the same time within a stage.
    pub concurrency: usize,
    /// How long a Job's pod may stay stuck (image pull, unschedulable) before
    /// the stage fails, rather than waiting out the whole timeout.
    pub stuck_pod_grace: Duration,
    /// Stage timeout when the stage sets none.
    pub default_timeout: Duration,
    /// Retry interval for `jobRetries` when the stage sets none.
    pub default_retry_interval: Duration,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            concurrency: 8,
            stuck_pod_grace: Duration::from_secs(120),
            default_timeout: Duration::from_secs(300),
            default_retry_interval: Duration::from_secs(60),
        }
    }
}

pub struct Engine {
    pub(super) client: Client,
    pub(super) resolver: std::sync::Arc<Resolver>,
    pub(super) settings: EngineSettings,
    /// Stagegate's live objects, listed once per kind for all stages (drift.rs).
    pub(super) live: std::sync::Arc<super::drift::LiveIndex>,
}

/// One apply of one stage: what every step reads.
pub(super) struct StageRun<'a> {
    pub planned: &'a PlannedStage,
    pub revision: &'a Revision,
    /// The label selector of the stage's objects.
    pub selector: String,
    /// Where Job runs are written down as they start and end.
    pub journal: &'a dyn JobJournal,
    /// Learnt during the run: the cluster lost the stage's objects, so the
    /// recorded Job runs are not trusted (see `reset.rs`).
    pub cluster_reset: AtomicBool,
    /// Events to emit, in the order they happened; they go in the report.
    events: Mutex<Vec<ObjectEvent>>,
    /// Where each Event also goes at once, when the caller publishes them.
    outlet: Option<&'a dyn EventOutlet>,
}

impl<'a> StageRun<'a> {
    pub fn new(
        planned: &'a PlannedStage,
        revision: &'a Revision,
        journal: &'a dyn JobJournal,
    ) -> Self {
        Self {
            planned,
            revision,
            selector: format!("{STAGE_LABEL}={}", planned.stage.name),
            journal,
            cluster_reset: AtomicBool::new(false),
            events: Mutex::default(),
            outlet: None,
        }
    }

    /// Send each Event to `outlet` as well, as it happens.
    pub fn with_outlet(mut self, outlet: Option<&'a dyn EventOutlet>) -> Self {
        self.outlet = outlet;
        self
    }

    /// Note an Event about `item` (the incarnation `uid`) for the report.
    pub fn emit(&self, item: &Item, uid: Option<String>, reason: Reason, note: String) {
        let event = ObjectEvent {
            object: item.object_ref(),
            api_version: item.api_version.clone(),
            uid,
            reason,
            note,
        };
        if let Some(outlet) = self.outlet {
            outlet.send(event.clone());
        }
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(event);
    }

    /// The Events noted so far, taken out for the report.
    pub fn take_events(&self) -> Vec<ObjectEvent> {
        std::mem::take(&mut *self.events.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn cluster_reset(&self) -> bool {
        self.cluster_reset.load(Ordering::Relaxed)
    }

    pub fn name(&self) -> &str {
        self.planned.stage.name.as_str()
    }

    /// Where namespaced objects without a namespace go.
    pub fn default_namespace(&self) -> &str {
        self.planned
            .stage
            .target_namespace
            .as_deref()
            .unwrap_or("default")
    }
}

/// Server-side apply, forcing conflicts: the repository is the source of
/// truth, and a field last touched by `kubectl edit` or a former tool would
/// otherwise fail every apply until someone intervenes by hand. This is what
/// GitOps promises and what Flux does too.
pub(super) fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

impl Engine {
    /// An engine on `client`. It publishes no Events: each apply's report
    /// carries them for the caller (the agent publishes them).
    pub fn new(client: Client, settings: EngineSettings) -> Self {
        Self {
            resolver: std::sync::Arc::new(Resolver::new(client.clone())),
            client,
            settings,
            live: Default::default(),
        }
    }

    /// This engine acting as `user` (a stage's ServiceAccount): every call
    /// is authorized as that user; discovery's cache, the live listing
    /// and the settings stay the agent's.
    pub fn impersonating(
        &self,
        user: &str,
    ) -> Result<Engine, crate::cluster::client::ClusterError> {
        Ok(Self {
            client: crate::cluster::client::impersonating(&self.client, user)?,
            resolver: self.resolver.clone(),
            settings: self.settings.clone(),
            // Drift is read with the agent's own rights and one listing
            // for all stages; only writes need the stage's identity.
            live: self.live.clone(),
        })
    }

    pub fn client(&self) -> &Client {
        &self.client
    }
}
