//! What every part of the running agent shares: the engine, settings, the
//! state (and its persistence), metrics and events. Every stage transition
//! goes through [`AgentContext::transition`], so its side effects (state,
//! log line, Event, metric) happen in one place, in that order.

use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use tokio::sync::Mutex;
use tracing::{error, info, warn};

use futures::future::BoxFuture;

use crate::apply::{Engine, JobJournal};
use crate::config::Settings;
use crate::events::EventSink;
use crate::metrics::Metrics;
use crate::state::store::STATE_CONFIGMAP;
use crate::state::{JobRun, Phase, StageState, State, StateStore};

pub struct AgentContext {
    pub engine: Engine,
    /// Where the agent's Events go; the engine publishes through the same sink.
    pub events: EventSink,
    pub settings: Settings,
    pub store: StateStore,
    pub state: Mutex<State>,
    pub metrics: Arc<Metrics>,
    /// The last state written, to skip writes that would change nothing.
    saved: Mutex<Vec<u8>>,
}

impl AgentContext {
    pub fn new(
        engine: Engine,
        events: EventSink,
        settings: Settings,
        store: StateStore,
        state: State,
        metrics: Arc<Metrics>,
    ) -> Self {
        let saved = Mutex::new(crate::state::store::encode(&state));
        Self {
            engine,
            events,
            settings,
            store,
            state: Mutex::new(state),
            metrics,
            saved,
        }
    }

    /// The object the agent's own Events are about.
    pub fn state_reference(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("ConfigMap".into()),
            name: Some(STATE_CONFIGMAP.into()),
            namespace: Some(self.settings.namespace.clone()),
            ..ObjectReference::default()
        }
    }

    /// Mark a stage Running (persisted only when this is a new revision for
    /// it, so a no-change cycle writes nothing) and hand out its state.
    pub async fn begin_stage(&self, name: &str, revision: &str) -> StageState {
        let snapshot = {
            let mut state = self.state.lock().await;
            let stage = state.stages.entry(name.to_string()).or_default();
            let new_revision =
                stage.revision.as_deref() != Some(revision) || stage.phase != Phase::Ready;
            if new_revision {
                if stage.phase != Phase::Running {
                    stage.since = Some(jiff::Timestamp::now().to_string());
                }
                stage.phase = Phase::Running;
                stage.attempted_revision = Some(revision.to_string());
                stage.message = format!("applying {revision}");
                info!(stage = name, revision, "stage {name} is Running");
            }
            let snapshot = stage.clone();
            self.metrics.set_phase(name, stage.phase);
            snapshot
        };
        self.persist().await;
        snapshot
    }

    /// Record a stage's new phase: state, log line, Event, metric, then persist.
    pub async fn transition(
        &self,
        name: &str,
        revision: &str,
        phase: Phase,
        message: &str,
        updated: Option<StageState>,
    ) {
        let changed = {
            let mut state = self.state.lock().await;
            let stage = state.stages.entry(name.to_string()).or_default();
            if let Some(updated) = updated {
                stage.inventory = updated.inventory;
                stage.jobs = updated.jobs;
                stage.prune = updated.prune;
                stage.rerun = updated.rerun;
            }
            let changed = stage.phase != phase
                || stage.message != message
                || (phase == Phase::Ready && stage.revision.as_deref() != Some(revision));
            if stage.phase != phase {
                stage.since = Some(jiff::Timestamp::now().to_string());
            }
            stage.phase = phase;
            stage.message = message.to_string();
            if phase != Phase::Suspended {
                stage.attempted_revision = Some(revision.to_string());
            }
            if phase == Phase::Ready {
                stage.revision = Some(revision.to_string());
            }
            changed
        };
        self.metrics.set_phase(name, phase);
        if changed {
            let first_line = message.lines().next().unwrap_or_default();
            let reference = self.state_reference();
            let note = format!("stage {name} at {revision}: {message}");
            match phase {
                Phase::Ready => {
                    info!(
                        stage = name,
                        revision, "stage {name} is Ready: {first_line}"
                    );
                    self.events
                        .normal(&reference, "StageReady", "Apply", &note)
                        .await;
                }
                Phase::Failed => {
                    error!(stage = name, revision, "stage {name} Failed: {message}");
                    self.events
                        .warning(&reference, "StageFailed", "Apply", &note)
                        .await;
                }
                Phase::Blocked => {
                    warn!(stage = name, revision, "stage {name} is Blocked: {message}");
                    self.events
                        .warning(&reference, "StageBlocked", "Apply", &note)
                        .await;
                }
                Phase::Suspended => info!(stage = name, revision, "stage {name} is Suspended"),
                Phase::Pending | Phase::Running => {}
            }
        }
        self.persist().await;
    }

    /// Write the state if it changed since the last write. A failed write is
    /// logged and retried with the next one: the cluster is the truth, the
    /// state a memory of it.
    pub async fn persist(&self) {
        let state = self.state.lock().await;
        let encoded = crate::state::store::encode(&state);
        let mut saved = self.saved.lock().await;
        if *saved == encoded {
            return;
        }
        match self.store.save(&state).await {
            Ok(()) => *saved = encoded,
            Err(e) => error!(error = %e, "cannot write the state"),
        }
    }
}

/// Job runs are persisted as they start and end, not when the stage ends: a
/// SIGKILL, a restart or a Job's TTL then cannot make one run twice (#13).
impl JobJournal for AgentContext {
    fn record<'a>(&'a self, stage: &'a str, job: &'a str, run: &'a JobRun) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            {
                let mut state = self.state.lock().await;
                let stage = state.stages.entry(stage.to_string()).or_default();
                stage
                    .jobs
                    .entry(job.to_string())
                    .or_default()
                    .record(run.clone());
            }
            self.persist().await;
        })
    }
}
