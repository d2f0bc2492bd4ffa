//! Keeping the `Stage` objects in step with the agent's state: one write
//! per stage transition holding only what changed, and the rules that keep a
//! stage whose outcome cannot change from being run again on every poll.

use tracing::{error, info};

use super::context::AgentContext;
use crate::cluster::state::{JobResult, Phase, StageSpec, StageState};
use crate::core::labels::SPEC_HASH_ANNOTATION;
use crate::core::object::Revision;
use crate::core::plan::PlannedStage;

impl AgentContext {
    /// Write one stage's object (spec and status) if anything changed; a
    /// failed write is logged and made good by the next one: the cluster is
    /// the truth, the state a memory of it. `true` when the object now
    /// holds the stage's state (what a Job's outcome finalizer waits for).
    pub async fn persist_stage(&self, name: &str) -> bool {
        let stage = self.state.lock().await.stages.get(name).cloned();
        let Some(stage) = stage else { return false };
        let spec = self.spec_of(name);
        match self.store.save_stage(name, spec.as_ref(), &stage).await {
            Ok(_) => true,
            Err(e) => {
                error!(stage = name, error = %e, "cannot write the stage's status");
                false
            }
        }
    }

    /// Write the source's state (revision, fetch error).
    pub async fn persist_source(&self) {
        let source = self.state.lock().await.source.clone();
        let Some(source) = source else { return };
        if let Err(e) = self.store.save_source(&source).await {
            error!(error = %e, "cannot write the source's status");
        }
    }

    /// Remember what Git says about each stage of the plan being run.
    pub fn set_specs(&self, plan: &crate::core::plan::Plan) {
        let specs = plan
            .stages
            .iter()
            .map(|s| (s.stage.name.to_string(), StageSpec::from(&s.stage)))
            .collect();
        *self.specs.lock().unwrap_or_else(|e| e.into_inner()) = specs;
    }

    fn spec_of(&self, name: &str) -> Option<StageSpec> {
        self.specs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// When a stage's outcome cannot change at `revision` (it failed on a Job
    /// with no retry left, and nobody asked for a rerun), its recorded phase
    /// and message: it is not run again, so no Running transition, Event,
    /// metric or write, until a new revision or a request.
    pub async fn steady(
        &self,
        planned: &PlannedStage,
        revision: &Revision,
    ) -> Option<(Phase, String)> {
        let state = self.state.lock().await;
        let stage = state.stages.get(planned.stage.name.as_str())?;
        let steady = stage.phase == Phase::Failed
            && stage.attempted_revision.as_deref() == Some(revision)
            && stage.rerun.is_empty()
            && stalled(planned, stage);
        steady.then(|| (stage.phase, stage.message.clone()))
    }
}

/// How often a stage that is still applying or waiting says so in the log.
pub const WAIT_REPORT: std::time::Duration = std::time::Duration::from_secs(30);

impl AgentContext {
    /// Log, for each stage still running, how long it has and what it waits for.
    pub async fn report_waiting(
        &self,
        plan: &crate::core::plan::Plan,
        revision: &Revision,
        running: impl Iterator<Item = usize>,
    ) {
        let now = jiff::Timestamp::now();
        for i in running {
            let planned = &plan.stages[i];
            let name = planned.stage.name.as_str();
            let since = self
                .state
                .lock()
                .await
                .stages
                .get(name)
                .and_then(|s| s.since.as_deref()?.parse::<jiff::Timestamp>().ok());
            let elapsed = since
                .and_then(|s| now.duration_since(s).try_into().ok())
                .map(|d: std::time::Duration| {
                    humantime::format_duration(std::time::Duration::from_secs(d.as_secs()))
                        .to_string()
                })
                .unwrap_or_else(|| "a while".into());
            info!(
                stage = name,
                revision = %revision.short(),
                "stage {name} still running after {elapsed}: waiting for {}",
                waiting_for(planned)
            );
        }
    }
}

/// What a running stage waits for: its Jobs, else its objects' health.
fn waiting_for(planned: &PlannedStage) -> String {
    let default_ns = planned
        .stage
        .target_namespace
        .as_deref()
        .unwrap_or("default");
    let jobs: Vec<String> = planned
        .objects
        .iter()
        .filter(|o| o.api_version() == "batch/v1" && o.kind() == "Job")
        .map(|o| {
            let meta = &o.value["metadata"];
            format!(
                "{}/{}",
                meta["namespace"].as_str().unwrap_or(default_ns),
                meta["name"].as_str().unwrap_or_default()
            )
        })
        .collect();
    match jobs.as_slice() {
        [] => format!(
            "{} objects to be applied and healthy",
            planned.objects.len()
        ),
        _ => format!(
            "Job {} to complete (and its other objects)",
            jobs.join(", ")
        ),
    }
}

/// Whether a Job of the stage, as planned, failed with no retry left: the
/// stage cannot progress without a new spec or a rerun request.
pub fn stalled(planned: &PlannedStage, state: &StageState) -> bool {
    let default_ns = planned
        .stage
        .target_namespace
        .as_deref()
        .unwrap_or("default");
    planned
        .objects
        .iter()
        .filter(|o| o.api_version() == "batch/v1" && o.kind() == "Job")
        .any(|job| {
            let meta = &job.value["metadata"];
            let namespace = meta["namespace"].as_str().unwrap_or(default_ns);
            let key = format!("{namespace}/{}", meta["name"].as_str().unwrap_or_default());
            let Some(hash) = meta["annotations"][SPEC_HASH_ANNOTATION].as_str() else {
                return false;
            };
            state.jobs.get(&key).is_some_and(|history| {
                history
                    .last_of(hash)
                    .is_some_and(|run| run.result == JobResult::Failed)
                    && history.failures(hash) > planned.stage.job_retries as usize
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::state::{JobHistory, JobRun};
    use crate::core::object::Manifest;
    use crate::core::stage::Stage;

    fn planned(retries: u32) -> PlannedStage {
        let mut stage = Stage::new("pre", "pre");
        stage.target_namespace = Some("shop".into());
        stage.job_retries = retries;
        let job = serde_json::json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "migrate", "annotations": {SPEC_HASH_ANNOTATION: "h1"}}});
        PlannedStage {
            stage,
            objects: vec![crate::core::plan::PlannedObject {
                manifest: Manifest {
                    value: job,
                    source: "pre/job.yaml".into(),
                },
                hook: crate::core::hooks::HookKind::NotAHook,
                job: Some(crate::core::object::SpecHash::new("h1")),
            }],
            needs: Vec::new(),
        }
    }

    fn failed_run(hash: &str, uid: &str) -> JobRun {
        JobRun {
            hash: hash.into(),
            revision: "r1".into(),
            result: JobResult::Failed,
            reason: Some("BackoffLimitExceeded".into()),
            uid: Some(uid.into()),
            started: None,
            finished: None,
            log_tail: None,
        }
    }

    #[test]
    fn a_job_failed_with_no_retry_left_stalls_the_stage() {
        let mut state = StageState::default();
        assert!(!stalled(&planned(0), &state), "never ran");
        let mut history = JobHistory::default();
        history.record(failed_run("h1", "1"));
        state.jobs.insert("shop/migrate".into(), history);
        assert!(stalled(&planned(0), &state));
        assert!(!stalled(&planned(1), &state), "one retry is left");
        state
            .jobs
            .get_mut("shop/migrate")
            .unwrap()
            .record(failed_run("h1", "2"));
        assert!(stalled(&planned(1), &state));
        state.jobs.get_mut("shop/migrate").unwrap().runs[1].hash = "h0".into();
        state.jobs.get_mut("shop/migrate").unwrap().runs[0].hash = "h0".into();
        assert!(!stalled(&planned(0), &state), "the spec changed");
    }
}
