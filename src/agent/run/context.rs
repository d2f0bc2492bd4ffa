//! What every part of the running agent shares: the engine, settings, the
//! state (and its persistence, `record.rs`), metrics and events. Every stage
//! transition goes through [`AgentContext::transition`], so its side effects
//! (state, log line, Event, metric) happen in one place, in that order.

use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use tokio::sync::Mutex;
use tracing::{error, info, warn};

use futures::future::BoxFuture;

use crate::agent::config::Settings;
use crate::agent::metrics::Metrics;
use crate::cluster::apply::{Engine, JobJournal};
use crate::cluster::events::EventQueue;
use crate::cluster::state::stage_events::{EventKind, StageEvents};
use crate::cluster::state::{JobRun, Phase, StageState, State, StateStore};
use crate::core::object::{Revision, StageName};

pub struct AgentContext {
    pub engine: Engine,
    /// Where the Events the engine notes about applied objects go, as
    /// they happen.
    pub events: EventQueue,
    pub settings: Settings,
    pub store: StateStore,
    pub state: Mutex<State>,
    pub metrics: Arc<Metrics>,
    /// Events on the Stage objects and the source object.
    pub stage_events: StageEvents,
    /// The cluster this agent applies to: the UID of its namespace (see
    /// [`StageState::cluster_id`]).
    pub cluster_id: Option<String>,
    /// What Git says about each stage of the revision being run (`Stage` spec).
    pub specs:
        std::sync::Mutex<std::collections::HashMap<String, crate::cluster::state::StageSpec>>,
}

impl AgentContext {
    pub fn new(
        engine: Engine,
        events: EventQueue,
        settings: Settings,
        store: StateStore,
        state: State,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            stage_events: StageEvents::new(store.client().clone()),
            engine,
            events,
            settings,
            store,
            state: Mutex::new(state),
            metrics,
            cluster_id: None,
            specs: std::sync::Mutex::default(),
        }
    }

    /// The cluster's identity, to tell the Job runs recorded in another.
    pub fn with_cluster_id(mut self, cluster_id: Option<String>) -> Self {
        self.cluster_id = cluster_id;
        self
    }

    /// The object the source's Events are about.
    pub fn state_reference(&self) -> ObjectReference {
        self.store.source_reference()
    }

    /// Mark a stage Running (persisted only when this is a new revision for
    /// it, so a no-change cycle writes nothing) and hand out its state.
    pub async fn begin_stage(&self, name: &StageName, revision: &Revision) -> StageState {
        let snapshot = {
            let mut state = self.state.lock().await;
            let stage = state.stages.entry(name.clone()).or_default();
            self.claim_record(name, stage);
            let new_revision =
                stage.revision.as_deref() != Some(revision) || stage.phase != Phase::Ready;
            if new_revision || !stage.rerun.is_empty() {
                if stage.phase != Phase::Running {
                    stage.since = Some(jiff::Timestamp::now().to_string());
                }
                stage.phase = Phase::Running;
                stage.attempted_revision = Some(revision.clone());
                stage.message = match stage.rerun.is_empty() {
                    true => format!("applying {revision}"),
                    false => format!(
                        "rerun of {} requested",
                        stage.rerun.iter().cloned().collect::<Vec<_>>().join(", ")
                    ),
                };
                let revision = crate::agent::logging::short_revision(revision);
                info!(stage = %name, %revision, "stage {name} is Running");
            }
            let snapshot = stage.clone();
            self.metrics.set_phase(name.as_str(), stage.phase);
            snapshot
        };
        self.persist_stage(name.as_str()).await;
        snapshot
    }

    /// Make the stage's record this cluster's. Runs recorded in another
    /// cluster (the namespace's UID differs: rebuilt, or restored from a
    /// backup) are dropped, so its Jobs run again unless the cluster holds
    /// them: the gate is checked against this cluster, not remembered (#13).
    fn claim_record(&self, name: &StageName, stage: &mut StageState) {
        let Some(current) = &self.cluster_id else {
            return;
        };
        if let Some(recorded) = &stage.cluster_id
            && recorded != current
            && !stage.jobs.is_empty()
        {
            warn!(stage = %name, recorded, current, "the stage's Job runs were recorded in another cluster (its namespace UID changed): they are not trusted here");
            stage.jobs.clear();
        }
        stage.cluster_id = Some(current.clone());
    }

    /// Record a stage's new phase: state, log line, Event, metric, then
    /// persist. True when the phase or message changed.
    pub async fn transition(
        &self,
        name: &StageName,
        revision: &Revision,
        phase: Phase,
        message: &str,
        updated: Option<StageState>,
    ) -> bool {
        let changed = {
            let mut state = self.state.lock().await;
            let stage = state.stages.entry(name.clone()).or_default();
            record_transition(stage, revision, phase, message, updated)
        };
        self.metrics.set_phase(name.as_str(), phase);
        if changed {
            self.announce(name.as_str(), revision, phase, message).await;
        }
        self.persist_stage(name.as_str()).await;
        changed
    }

    /// One log line and one Event on the Stage object per transition: the
    /// first line of the message in the text, the rest (a pod's log tail) as
    /// a field.
    async fn announce(&self, name: &str, revision: &Revision, phase: Phase, message: &str) {
        let first_line = message.lines().next().unwrap_or_default();
        let detail = message.split_once('\n').map(|(_, rest)| rest).unwrap_or("");
        let short = crate::agent::logging::short_revision(revision);
        let (kind, reason) = match phase {
            Phase::Ready => {
                info!(stage = name, revision = %short, "stage {name} is Ready: {first_line}");
                (EventKind::Normal, "StageReady")
            }
            Phase::Failed => {
                error!(stage = name, revision = %short, detail, "stage {name} Failed: {first_line}");
                (EventKind::Warning, "StageFailed")
            }
            Phase::Blocked => {
                // The message says "blocked: …" for status; the line says it once.
                let why = first_line.strip_prefix("blocked: ").unwrap_or(first_line);
                warn!(stage = name, revision = %short, "stage {name} is Blocked: {why}");
                (EventKind::Warning, "StageBlocked")
            }
            Phase::Suspended => {
                info!(stage = name, revision = %short, "stage {name} is Suspended");
                (EventKind::Normal, "StageSuspended")
            }
            Phase::Pending | Phase::Running => return,
        };
        let reference = self.store.stage_reference(name);
        let note = format!("stage {name} at {revision}: {message}");
        self.stage_events
            .publish(&reference, kind, reason, "Apply", &note)
            .await;
    }
}

/// Write a transition into the stage's state (with what the apply updated):
/// true when it is news, a phase or message not recorded before, or a first
/// Ready at this revision.
fn record_transition(
    stage: &mut StageState,
    revision: &Revision,
    phase: Phase,
    message: &str,
    updated: Option<StageState>,
) -> bool {
    if let Some(updated) = updated {
        stage.inventory = updated.inventory;
        stage.jobs = updated.jobs;
        stage.prune = updated.prune;
        stage.rerun = updated.rerun;
        stage.stalled = updated.stalled;
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
        stage.attempted_revision = Some(revision.clone());
    }
    if phase == Phase::Ready {
        stage.revision = Some(revision.clone());
    }
    changed
}

/// Job runs are persisted as they start and end, not when the stage ends: a
/// SIGKILL, a restart or a Job's TTL then cannot make one run twice (#13).
impl JobJournal for AgentContext {
    fn record<'a>(
        &'a self,
        stage: &'a StageName,
        job: &'a str,
        run: &'a JobRun,
    ) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            {
                let mut state = self.state.lock().await;
                let stage = state.stages.entry(stage.clone()).or_default();
                stage
                    .jobs
                    .entry(job.to_string())
                    .or_default()
                    .record(run.clone());
            }
            self.persist_stage(stage.as_str()).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transition_is_news_once_and_ready_records_the_revision() {
        let mut stage = StageState::default();
        assert!(record_transition(
            &mut stage,
            &"r1".into(),
            Phase::Failed,
            "Job failed",
            None
        ));
        assert_eq!(stage.attempted_revision.as_deref(), Some("r1"));
        assert_eq!(
            stage.revision, None,
            "only Ready records the applied revision"
        );
        let since = stage.since.clone();
        assert!(
            !record_transition(&mut stage, &"r1".into(), Phase::Failed, "Job failed", None),
            "the same phase and message again is no news"
        );
        assert_eq!(stage.since, since, "the phase did not change");
        assert!(record_transition(
            &mut stage,
            &"r2".into(),
            Phase::Ready,
            "3 objects applied",
            None
        ));
        assert_eq!(stage.revision.as_deref(), Some("r2"));
        assert!(
            record_transition(
                &mut stage,
                &"r3".into(),
                Phase::Ready,
                "3 objects applied",
                None
            ),
            "Ready at a new revision is news"
        );
        assert!(record_transition(
            &mut stage,
            &"r4".into(),
            Phase::Suspended,
            "suspended",
            None
        ));
        assert_eq!(
            stage.attempted_revision.as_deref(),
            Some("r3"),
            "a suspension attempts nothing"
        );
    }

    #[test]
    fn a_transition_takes_what_the_apply_recorded() {
        let mut stage = StageState::default();
        let updated = StageState {
            prune: true,
            stalled: true,
            ..StageState::default()
        };
        record_transition(&mut stage, &"r1".into(), Phase::Failed, "x", Some(updated));
        assert!(stage.prune && stage.stalled);
    }
}
