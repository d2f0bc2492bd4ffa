//! Running the Jobs of a stage: each Job's fate decided by
//! [`job_policy::decide`](super::job_policy::decide) from its spec hash, the
//! live Job and the recorded runs, then carried out and waited for.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, Patch};
use tracing::{info, warn};

use super::engine::{Engine, StageCtx, apply_params};
use super::item::Item;
use super::job_policy::{
    JobAction, JobInputs, LiveJob, LiveStatus, REPLACE_RUNNING_ANNOTATION, RUN_POLICY_ANNOTATION,
    RunPolicy, SkipReason, decide,
};
use super::recreate::delete_and_wait_for;
use crate::health::job::{JobOutcome, JobWatch, wait_job};
use crate::health::wait::Progress;
use crate::health::{Health, evaluate};
use crate::hooks::{DeletePolicy, HookPhase};
use crate::labels::SPEC_HASH_ANNOTATION;
use crate::state::{InventoryEntry, JobResult, JobRun, StageState};

/// What happened to one Job, for logs, `diff` and the stage report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobReport {
    /// `namespace/name`.
    pub job: String,
    pub action: String,
    pub outcome: String,
    /// The hook phase the Job ran in, when it is a hook.
    pub hook: Option<HookPhase>,
}

pub(super) struct JobTask<'a> {
    pub engine: &'a Engine,
    pub ctx: &'a StageCtx<'a>,
    pub item: &'a Item,
    pub state: &'a StageState,
    pub wait: bool,
    /// The Job's own timeout (a hook's), instead of the stage's.
    pub timeout: Option<Duration>,
    /// A hook's delete policy; the default deletes nothing.
    pub delete: DeletePolicy,
    pub hook: Option<HookPhase>,
}

pub(super) struct JobTaskResult {
    pub runs: Vec<(String, JobRun)>,
    pub rerun_taken: Option<String>,
    pub inventory: Option<InventoryEntry>,
    pub recreated: bool,
    pub failure: Option<String>,
    pub report: JobReport,
    /// How the live Job ended, when this run saw it end (or found it ended
    /// and recorded): what a hook's delete policy goes by.
    pub settled: Option<bool>,
}

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

pub fn live_job(job: &Job) -> LiveJob {
    let value = serde_json::to_value(job).unwrap_or_default();
    let status = match evaluate("Job", &value) {
        Health::Ready => LiveStatus::Succeeded,
        Health::Failed(_) => LiveStatus::Failed,
        Health::Progressing(_) => LiveStatus::Running,
    };
    LiveJob {
        uid: job.metadata.uid.clone().unwrap_or_default(),
        hash: job
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(SPEC_HASH_ANNOTATION))
            .cloned(),
        status,
    }
}

impl JobTask<'_> {
    pub async fn run(self) -> JobTaskResult {
        let namespace = self
            .item
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let key = format!("{namespace}/{}", self.item.name);
        let mut result = JobTaskResult {
            runs: Vec::new(),
            rerun_taken: None,
            inventory: None,
            recreated: false,
            failure: None,
            report: JobReport {
                job: key.clone(),
                action: String::new(),
                outcome: String::new(),
                hook: self.hook,
            },
            settled: None,
        };
        if let Err(message) = self.run_inner(&namespace, &key, &mut result).await {
            result.report.outcome = format!("failed: {message}");
            result.failure = Some(format!("Job {key}: {message}"));
        } else if result.report.outcome.is_empty() {
            result.report.outcome = "ok".into();
        }
        let doomed = match result.settled {
            Some(true) => self.delete.hook_succeeded.then_some("hook-succeeded"),
            Some(false) => self.delete.hook_failed.then_some("hook-failed"),
            None => None,
        };
        if let Some(policy) = doomed {
            result
                .report
                .outcome
                .push_str(&self.delete_by_policy(&namespace, policy).await);
        }
        result
    }

    /// A hook's delete policy: the Job goes with its pods. Its outcome stays
    /// in the state (spec hash, reason, log tail), so it is not run again for
    /// the same spec: the engine finds it absent and already recorded.
    async fn delete_by_policy(&self, namespace: &str, policy: &str) -> String {
        let jobs: Api<Job> = Api::namespaced(self.engine.client.clone(), namespace);
        // Foreground, as for a replacement: once the Job is gone, so are its pods.
        match delete_and_wait_for(
            &jobs,
            &self.item.name,
            &DeleteParams::foreground(),
            self.engine.settings.default_timeout,
        )
        .await
        {
            Ok(()) => {
                info!(stage = self.ctx.name(), object = %self.item.object_ref(), policy, "hook Job deleted by its delete policy");
                format!("; deleted ({policy})")
            }
            Err(e) => {
                warn!(stage = self.ctx.name(), object = %self.item.object_ref(), policy, error = %e, "deleting the hook Job failed");
                format!("; not deleted ({policy}): {e}")
            }
        }
    }

    async fn run_inner(
        &self,
        namespace: &str,
        key: &str,
        result: &mut JobTaskResult,
    ) -> Result<(), String> {
        let engine = self.engine;
        let stage = &self.ctx.planned.stage;
        let hash = self
            .item
            .annotation(SPEC_HASH_ANNOTATION)
            .ok_or_else(|| {
                format!("has no {SPEC_HASH_ANNOTATION} annotation (not rendered by stagegate?)")
            })?
            .to_string();
        let policy = RunPolicy::parse(self.item.annotation(RUN_POLICY_ANNOTATION))?;
        let jobs: Api<Job> = Api::namespaced(engine.client.clone(), namespace);
        let pods: Api<Pod> = Api::namespaced(engine.client.clone(), namespace);

        let live = jobs
            .get_opt(&self.item.name)
            .await
            .map_err(|e| format!("reading the live Job: {e}"))?;
        let live_state = live.as_ref().map(live_job);
        let live_failure = live.as_ref().and_then(|j| {
            match evaluate("Job", &serde_json::to_value(j).unwrap_or_default()) {
                Health::Failed(reason) => Some(reason),
                _ => None,
            }
        });
        let history = self.state.jobs.get(key);
        // An operator may name the Job as `namespace/name` or just `name`.
        let asked = [key, self.item.name.as_str()]
            .into_iter()
            .find(|k| self.state.rerun.contains(*k));
        let rerun_requested = asked.is_some() || self.state.rerun.contains("*");
        result.rerun_taken = asked.map(str::to_string);
        let action = decide(&JobInputs {
            hash: &hash,
            revision: self.ctx.revision,
            policy,
            replace_running: self.item.annotation(REPLACE_RUNNING_ANNOTATION) == Some("true"),
            live: live_state.as_ref(),
            history,
            rerun_requested,
            retries: stage.job_retries,
        });
        result.report.action = describe(&action, &hash);
        info!(stage = self.ctx.name(), revision = self.ctx.revision, object = key, action = %result.report.action, "job");

        let uid = match action {
            JobAction::Skip(SkipReason::AlreadySucceeded | SkipReason::OnceAlreadyRan) => {
                result.report.outcome = "already completed; not run again".into();
                return Ok(());
            }
            JobAction::Skip(SkipReason::PreviouslyFailed) => {
                let last = history.and_then(|h| h.last_of(&hash));
                let reason = last
                    .and_then(|r| r.reason.clone())
                    .unwrap_or_else(|| "failed".into());
                let tail = last.and_then(|r| r.log_tail.clone());
                return Err(with_tail(
                    &format!(
                        "failed earlier and is not run again until its spec changes or `stagegate rerun` asks: {reason}"
                    ),
                    tail.as_deref(),
                ));
            }
            JobAction::Keep => {
                let live = live_state.as_ref().ok_or("kept Job vanished")?;
                // Already watched to its end and recorded: nothing to wait for,
                // and no new Event for an old failure.
                let recorded = history.and_then(|h| {
                    h.runs
                        .iter()
                        .rev()
                        .find(|r| r.uid.as_deref() == Some(live.uid.as_str()))
                });
                result.inventory = Some(self.item.inventory_entry(String::new()));
                match (recorded.map(|r| r.result), &live.status) {
                    (Some(JobResult::Succeeded), LiveStatus::Succeeded) => {
                        result.report.outcome = "succeeded (unchanged)".into();
                        result.settled = Some(true);
                        return Ok(());
                    }
                    (Some(JobResult::Failed), LiveStatus::Failed) => {
                        let run = recorded.ok_or("no record")?;
                        result.settled = Some(false);
                        return Err(with_tail(
                            run.reason.as_deref().unwrap_or("failed"),
                            run.log_tail.as_deref(),
                        ));
                    }
                    // A Job not waited for (a hook with hook-wait false) that
                    // has ended since: record how, so that the record, not
                    // the live Job, keeps it from running again once its TTL
                    // removes it.
                    (_, LiveStatus::Succeeded | LiveStatus::Failed) if !self.wait => {
                        let outcome = match live_failure {
                            Some(reason) => JobOutcome::Failed {
                                reason,
                                log_tail: None,
                            },
                            None => JobOutcome::Succeeded,
                        };
                        let uid = live.uid.clone();
                        self.record_outcome(result, key, &hash, &uid, &outcome);
                        result.settled = Some(outcome == JobOutcome::Succeeded);
                        result.report.outcome = match outcome {
                            JobOutcome::Succeeded => "succeeded (not waited for)".into(),
                            JobOutcome::Failed { reason, .. } => {
                                format!("failed (not waited for): {reason}")
                            }
                        };
                        return Ok(());
                    }
                    _ => live.uid.clone(),
                }
            }
            JobAction::Create => self.create(&jobs, &hash, result).await?,
            JobAction::WaitThenReplace { old_hash } => {
                if let Some(old) = &live_state {
                    info!(
                        stage = self.ctx.name(),
                        object = key,
                        "waiting for the running Job of the previous spec to finish"
                    );
                    let outcome = self.watch(&jobs, &pods, &old.uid).await?;
                    self.record_outcome(
                        result,
                        key,
                        old.hash.as_deref().unwrap_or_default(),
                        &old.uid,
                        &outcome,
                    );
                }
                self.replace(&jobs, &hash, old_hash.as_deref(), result)
                    .await?
            }
            JobAction::Replace { old_hash } => {
                self.replace(&jobs, &hash, old_hash.as_deref(), result)
                    .await?
            }
            JobAction::Retry { attempt } => {
                let interval = stage
                    .retry_interval
                    .unwrap_or(engine.settings.default_retry_interval);
                let last_end = history
                    .and_then(|h| h.last_of(&hash))
                    .and_then(|r| r.finished.clone());
                if let Some(wait) = remaining(last_end.as_deref(), interval) {
                    info!(
                        stage = self.ctx.name(),
                        object = key,
                        attempt,
                        "retrying the failed Job after {}",
                        humantime::format_duration(wait)
                    );
                    tokio::time::sleep(wait).await;
                }
                self.replace(&jobs, &hash, Some(&hash), result).await?
            }
        };

        result.inventory = Some(self.item.inventory_entry(String::new()));
        if !self.wait {
            result.report.outcome = "started; not waited for".into();
            return Ok(());
        }
        let outcome = self.watch(&jobs, &pods, &uid).await?;
        self.record_outcome(result, key, &hash, &uid, &outcome);
        result.settled = Some(outcome == JobOutcome::Succeeded);
        match outcome {
            JobOutcome::Succeeded => {
                result.report.outcome = "succeeded".into();
                Ok(())
            }
            JobOutcome::Failed { reason, log_tail } => Err(with_tail(&reason, log_tail.as_deref())),
        }
    }

    async fn create(
        &self,
        jobs: &Api<Job>,
        hash: &str,
        result: &mut JobTaskResult,
    ) -> Result<String, String> {
        let created = jobs
            .patch(
                &self.item.name,
                &apply_params(),
                &Patch::Apply(&self.item.value),
            )
            .await
            .map_err(|e| format!("create: {e}"))?;
        let uid = created.metadata.uid.clone().unwrap_or_default();
        result.runs.push((
            format!(
                "{}/{}",
                self.item.namespace.as_deref().unwrap_or("default"),
                self.item.name
            ),
            JobRun {
                hash: hash.to_string(),
                revision: self.ctx.revision.to_string(),
                result: JobResult::Running,
                reason: None,
                uid: Some(uid.clone()),
                started: Some(now()),
                finished: None,
                log_tail: None,
            },
        ));
        Ok(uid)
    }

    /// Delete the live Job with its pods, wait until it is gone, create the new one.
    async fn replace(
        &self,
        jobs: &Api<Job>,
        hash: &str,
        old_hash: Option<&str>,
        result: &mut JobTaskResult,
    ) -> Result<String, String> {
        // Foreground: the Job object stays until the garbage collector removed
        // its pods, so once it is gone no pod of the old spec is left running
        // beside the new one. Background would drop the Job at once and leave
        // its pods to be collected later, possibly overlapping the new run;
        // and with no policy at all, batch/v1 orphans the pods.
        delete_and_wait_for(
            jobs,
            &self.item.name,
            &DeleteParams::foreground(),
            self.engine.settings.default_timeout,
        )
        .await
        .map_err(|e| format!("deleting the previous Job: {e}"))?;
        let uid = self.create(jobs, hash, result).await?;
        result.recreated = true;
        let old = old_hash.map(short).unwrap_or("(none)");
        let note = format!(
            "spec hash {old} -> {}: deleted the previous Job with its pods and created it again",
            short(hash)
        );
        info!(stage = self.ctx.name(), revision = self.ctx.revision, object = %self.item.object_ref(), "Job recreated: {note}");
        self.engine
            .events
            .normal(
                &self.item.reference(Some(uid.clone())),
                "Recreated",
                "Recreate",
                &note,
            )
            .await;
        Ok(uid)
    }

    async fn watch(
        &self,
        jobs: &Api<Job>,
        pods: &Api<Pod>,
        uid: &str,
    ) -> Result<JobOutcome, String> {
        let progress = Progress::default();
        let reference = self.item.reference(Some(uid.to_string()));
        let timeout = self
            .timeout
            .or(self.ctx.planned.stage.timeout)
            .unwrap_or(self.engine.settings.default_timeout);
        let watch = wait_job(JobWatch {
            jobs: jobs.clone(),
            pods: pods.clone(),
            name: &self.item.name,
            uid,
            stuck_grace: self.engine.settings.stuck_pod_grace,
            progress: &progress,
            events: &self.engine.events,
            reference: &reference,
        });
        let outcome = match tokio::time::timeout(timeout, watch).await {
            Ok(outcome) => outcome,
            Err(_) => {
                return Err(format!(
                    "not complete after {}: {}",
                    humantime::format_duration(timeout),
                    progress.get()
                ));
            }
        };
        if let JobOutcome::Failed { reason, log_tail } = &outcome {
            warn!(stage = self.ctx.name(), revision = self.ctx.revision, object = %self.item.object_ref(), reason, "Job failed");
            self.engine
                .events
                .warning(
                    &reference,
                    "Failed",
                    "Wait",
                    &with_tail(reason, log_tail.as_deref()),
                )
                .await;
        }
        Ok(outcome)
    }

    fn record_outcome(
        &self,
        result: &mut JobTaskResult,
        key: &str,
        hash: &str,
        uid: &str,
        outcome: &JobOutcome,
    ) {
        let previous = self
            .state
            .jobs
            .get(key)
            .and_then(|h| h.runs.iter().find(|r| r.uid.as_deref() == Some(uid)));
        let started = result
            .runs
            .iter()
            .find(|(_, r)| r.uid.as_deref() == Some(uid))
            .and_then(|(_, r)| r.started.clone())
            .or_else(|| previous.and_then(|r| r.started.clone()));
        let revision = previous
            .map(|r| r.revision.clone())
            .unwrap_or_else(|| self.ctx.revision.to_string());
        let (job_result, reason, log_tail) = match outcome {
            JobOutcome::Succeeded => (JobResult::Succeeded, None, None),
            JobOutcome::Failed { reason, log_tail } => {
                (JobResult::Failed, Some(reason.clone()), log_tail.clone())
            }
        };
        result.runs.push((
            key.to_string(),
            JobRun {
                hash: hash.to_string(),
                revision,
                result: job_result,
                reason,
                uid: Some(uid.to_string()),
                started,
                finished: Some(now()),
                log_tail,
            },
        ));
    }
}

pub(super) fn describe(action: &JobAction, hash: &str) -> String {
    match action {
        JobAction::Create => format!("create (spec {})", short(hash)),
        JobAction::Keep => "left alone (unchanged)".into(),
        JobAction::Replace { old_hash } => {
            format!(
                "recreate because spec hash {} -> {}",
                old_hash.as_deref().map(short).unwrap_or("(none)"),
                short(hash)
            )
        }
        JobAction::WaitThenReplace { old_hash } => format!(
            "recreate after the running Job finishes, spec hash {} -> {}",
            old_hash.as_deref().map(short).unwrap_or("(none)"),
            short(hash)
        ),
        JobAction::Retry { attempt } => format!("retry (run {attempt})"),
        JobAction::Skip(SkipReason::AlreadySucceeded) => "not re-run: already completed".into(),
        JobAction::Skip(SkipReason::OnceAlreadyRan) => "not re-run: run policy once".into(),
        JobAction::Skip(SkipReason::PreviouslyFailed) => {
            "not re-run: failed earlier with this spec".into()
        }
    }
}

pub(super) fn with_tail(reason: &str, tail: Option<&str>) -> String {
    match tail {
        Some(tail) if !tail.is_empty() => format!("{reason}\nlast log lines of {tail}"),
        _ => reason.to_string(),
    }
}

/// Time left before a retry is due, `finished + interval` from now.
fn remaining(finished: Option<&str>, interval: Duration) -> Option<Duration> {
    let finished: jiff::Timestamp = finished?.parse().ok()?;
    let due = finished
        .checked_add(jiff::SignedDuration::try_from(interval).ok()?)
        .ok()?;
    let left = jiff::Timestamp::now().duration_until(due);
    Duration::try_from(left).ok().filter(|d| !d.is_zero())
}
