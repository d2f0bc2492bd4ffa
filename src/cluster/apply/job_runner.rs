//! Running the Jobs of a stage: where Jobs are created, recreated (deleted
//! with their pods first), retried and waited for. Each Job's fate is decided
//! by [`job_policy::decide`](super::job_policy::decide) from its spec hash,
//! the live Job and the recorded runs. A run is
//! journaled when its Job is created and again when its end is seen, before
//! the stage ends (see [`super::journal`]); a Job waited on holds the
//! outcome finalizer until then (see [`super::job_finalizer`]).

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, Patch};
use tracing::{debug, info, warn};

use super::api_call::{Verb, call};
use super::delete_wait::delete_and_wait_for;
use super::engine::{Engine, StageRun, apply_params};
use super::error::{ApplyError, JobError, WithTail};
use super::item::Item;
use super::job_finalizer::{JOB_OUTCOME_FINALIZER, release, with_finalizer};
use super::job_policy::{
    JobAction, JobInputs, LiveJob, LiveStatus, REPLACE_RUNNING_ANNOTATION, RUN_POLICY_ANNOTATION,
    RunPolicy, SkipReason, decide,
};
use super::report::{HookDeletion, JobOutcome, JobReport, short};
use crate::cluster::events::Reason;
use crate::cluster::health::job::{JobEnd, JobWatch, wait_job};
use crate::cluster::health::wait::Progress;
use crate::cluster::health::{Health, evaluate};
use crate::cluster::state::{InventoryEntry, JobHistory, JobResult, JobRun, StageState};
use crate::core::hooks::{DeletePolicy, HookPhase};
use crate::core::labels::SPEC_HASH_ANNOTATION;
use crate::core::object::SpecHash;

pub(super) struct JobTask<'a> {
    pub engine: &'a Engine,
    pub ctx: &'a StageRun<'a>,
    pub item: &'a Item,
    /// The Job's spec hash: no Job is run without one.
    pub hash: &'a SpecHash,
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
    pub failure: Option<ApplyError>,
    pub report: JobReport,
    /// How the live Job ended, when this run saw it end (or found it ended
    /// and recorded): what a hook's delete policy goes by.
    pub settled: Option<bool>,
}

/// The cluster's side of one Job: its API, and the Job object found there.
struct Live {
    jobs: Api<Job>,
    pods: Api<Pod>,
    job: Option<LiveJob>,
    /// Why the live Job failed, when it has.
    failure: Option<String>,
}

/// Where carrying out a decision left the Job.
enum Carried {
    /// Nothing to wait for: this is the outcome.
    Done(JobOutcome),
    /// A Job (this uid) runs the spec: wait for it, or not.
    Running(String),
}

fn now() -> String {
    jiff::Timestamp::now().to_string()
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
    fn key(&self) -> String {
        format!("{}/{}", self.namespace(), self.item.name)
    }

    fn namespace(&self) -> &str {
        self.item.namespace.as_deref().unwrap_or("default")
    }

    /// The recorded runs, unless the cluster they ran on was since reset.
    fn history(&self) -> Option<&JobHistory> {
        if self.ctx.cluster_reset() {
            return None;
        }
        self.state.jobs.get(&self.key())
    }

    pub async fn run(self) -> JobTaskResult {
        let key = self.key();
        let mut result = JobTaskResult {
            runs: Vec::new(),
            rerun_taken: None,
            inventory: None,
            recreated: false,
            failure: None,
            report: JobReport::new(key.clone(), self.hook),
            settled: None,
        };
        match self.run_inner(&mut result).await {
            Ok(outcome) => result.report.outcome = outcome,
            Err(source) => {
                result.report.outcome = JobOutcome::Failed(source.to_string());
                result.failure = Some(ApplyError::Job {
                    job: key,
                    source: Box::new(source),
                });
            }
        }
        let doomed = match result.settled {
            Some(true) => self.delete.hook_succeeded.then_some("hook-succeeded"),
            Some(false) => self.delete.hook_failed.then_some("hook-failed"),
            None => None,
        };
        if let Some(policy) = doomed {
            result.report.deletion = Some(self.delete_by_policy(policy).await);
        }
        result
    }

    /// A hook's delete policy: the Job goes with its pods. Its outcome stays
    /// in the state (spec hash, reason, log tail), so it is not run again for
    /// the same spec: the engine finds it absent and already recorded.
    async fn delete_by_policy(&self, policy: &'static str) -> HookDeletion {
        let jobs: Api<Job> = Api::namespaced(self.engine.client.clone(), self.namespace());
        let target = self.item.object_ref().to_string();
        // Its end is recorded (that is what `settled` says): nothing to
        // hold it for. Foreground, as for a replacement: once the Job is
        // gone, so are its pods.
        let deleted = match release(&jobs, &self.item.name, &target).await {
            Ok(()) => delete_and_wait_for(
                &jobs,
                &self.item.name,
                &target,
                &DeleteParams::foreground(),
                self.engine.settings.default_timeout,
            )
            .await
            .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let object = self.item.object_ref();
        let error = match deleted {
            Ok(()) => {
                info!(stage = self.ctx.name(), object = %object, policy, "hook Job deleted by its delete policy");
                None
            }
            Err(e) => {
                warn!(stage = self.ctx.name(), object = %object, policy, error = %e, "deleting the hook Job failed");
                Some(e)
            }
        };
        HookDeletion { policy, error }
    }

    /// Read, decide, carry out, wait and record.
    async fn run_inner(&self, result: &mut JobTaskResult) -> Result<JobOutcome, JobError> {
        let hash = self.hash.as_str().to_string();
        result.report.hash = hash.clone();
        let policy = RunPolicy::parse(self.item.annotation(RUN_POLICY_ANNOTATION))?;
        let live = self.read_live().await?;
        let action = self.decide(&hash, policy, &live, result);
        result.report.action = Some(action.clone());
        let key = self.key();
        // A Job that runs is news; one left alone is not (an idle poll logs
        // nothing at INFO).
        if result.report.ran() {
            info!(stage = self.ctx.name(), revision = %crate::core::object::short_revision(self.ctx.revision), object = key, "job {key}: {}", result.report.action_text());
        } else {
            debug!(stage = self.ctx.name(), revision = %crate::core::object::short_revision(self.ctx.revision), object = key, "job {key}: {}", result.report.action_text());
        }

        let uid = match self.carry_out(action, &hash, &live, result).await? {
            Carried::Done(outcome) => return Ok(outcome),
            Carried::Running(uid) => uid,
        };
        result.inventory = Some(self.item.inventory_entry(String::new()));
        if !self.wait {
            return Ok(JobOutcome::Started);
        }
        let end = self.watch(&live, &uid).await?;
        self.record_end(result, &hash, &uid, &end).await;
        result.settled = Some(end == JobEnd::Succeeded);
        match end {
            JobEnd::Succeeded => Ok(JobOutcome::Succeeded),
            JobEnd::Failed { reason, log_tail } => Err(JobError::Failed { reason, log_tail }),
        }
    }

    async fn read_live(&self) -> Result<Live, JobError> {
        let client = &self.engine.client;
        let jobs: Api<Job> = Api::namespaced(client.clone(), self.namespace());
        let pods: Api<Pod> = Api::namespaced(client.clone(), self.namespace());
        let object = self.item.object_ref();
        let found = call(Verb::Get, &object, || jobs.get_opt(&self.item.name)).await?;
        let failure = found.as_ref().and_then(|j| {
            match evaluate("Job", &serde_json::to_value(j).unwrap_or_default()) {
                Health::Failed(reason) => Some(reason),
                _ => None,
            }
        });
        Ok(Live {
            job: found.as_ref().map(live_job),
            jobs,
            pods,
            failure,
        })
    }

    fn decide(
        &self,
        hash: &str,
        policy: RunPolicy,
        live: &Live,
        result: &mut JobTaskResult,
    ) -> JobAction {
        let key = self.key();
        // An operator may name the Job as `namespace/name` or just `name`.
        let asked = [key.as_str(), self.item.name.as_str()]
            .into_iter()
            .find(|k| self.state.rerun.contains(*k));
        let rerun_requested = asked.is_some() || self.state.rerun.contains("*");
        result.rerun_taken = asked.map(str::to_string);
        decide(&JobInputs {
            hash,
            revision: self.ctx.revision,
            policy,
            replace_running: self.item.annotation(REPLACE_RUNNING_ANNOTATION) == Some("true"),
            live: live.job.as_ref(),
            history: self.history(),
            rerun_requested,
            retries: self.ctx.planned.stage.job_retries,
        })
    }

    async fn carry_out(
        &self,
        action: JobAction,
        hash: &str,
        live: &Live,
        result: &mut JobTaskResult,
    ) -> Result<Carried, JobError> {
        let uid = match action {
            JobAction::Skip(reason) => return self.skip(reason, hash).map(Carried::Done),
            JobAction::Keep => return self.keep(hash, live, result).await,
            JobAction::Create => self.create(&live.jobs, hash, result).await?,
            JobAction::WaitThenReplace { old_hash } => {
                if let Some(old) = &live.job {
                    info!(
                        stage = self.ctx.name(),
                        object = %self.item.object_ref(),
                        "waiting for the running Job of the previous spec to finish"
                    );
                    let end = self.watch(live, &old.uid).await?;
                    let old_spec = old.hash.as_deref().unwrap_or_default();
                    self.record_end(result, old_spec, &old.uid, &end).await;
                }
                self.replace(&live.jobs, hash, old_hash.as_deref(), result)
                    .await?
            }
            JobAction::Replace { old_hash } => {
                self.replace(&live.jobs, hash, old_hash.as_deref(), result)
                    .await?
            }
            JobAction::Retry { attempt } => {
                self.pause_before_retry(hash, attempt).await;
                self.replace(&live.jobs, hash, Some(hash), result).await?
            }
        };
        Ok(Carried::Running(uid))
    }

    fn skip(&self, reason: SkipReason, hash: &str) -> Result<JobOutcome, JobError> {
        let last = self.history().and_then(|h| h.last_of(hash));
        match reason {
            SkipReason::AlreadySucceeded | SkipReason::OnceAlreadyRan => {
                Ok(JobOutcome::AlreadyCompleted)
            }
            SkipReason::PreviouslyFailed => Err(JobError::FailedEarlier {
                reason: last
                    .and_then(|r| r.reason.clone())
                    .unwrap_or_else(|| "failed".into()),
                log_tail: last.and_then(|r| r.log_tail.clone()),
            }),
            // Nothing waits on a Job not waited for: running it again
            // would be the harm, not leaving it be.
            SkipReason::EndNotSeen if !self.wait => Ok(JobOutcome::EndNotSeen),
            SkipReason::EndNotSeen => Err(JobError::EndNotSeen {
                started: last.and_then(|r| r.started.clone()),
            }),
        }
    }

    /// The live Job is this spec: nothing to write; wait on it unless it
    /// was already watched to its end.
    async fn keep(
        &self,
        hash: &str,
        live: &Live,
        result: &mut JobTaskResult,
    ) -> Result<Carried, JobError> {
        let job = live.job.as_ref().ok_or(JobError::Vanished)?;
        let recorded = self.history().and_then(|h| {
            h.runs
                .iter()
                .rev()
                .find(|r| r.uid.as_deref() == Some(job.uid.as_str()))
        });
        result.inventory = Some(self.item.inventory_entry(String::new()));
        match (recorded.map(|r| r.result), &job.status) {
            // Already watched to its end and recorded: nothing to wait for,
            // and no new Event for an old failure.
            // A kill between the record and the release leaves the Job
            // held: release it now.
            (Some(JobResult::Succeeded), LiveStatus::Succeeded) => {
                result.settled = Some(true);
                self.release_recorded(&live.jobs).await;
                Ok(Carried::Done(JobOutcome::SucceededUnchanged))
            }
            (Some(JobResult::Failed), LiveStatus::Failed) => {
                result.settled = Some(false);
                self.release_recorded(&live.jobs).await;
                let run = recorded.ok_or(JobError::Vanished)?;
                Err(JobError::Failed {
                    reason: run.reason.clone().unwrap_or_else(|| "failed".into()),
                    log_tail: run.log_tail.clone(),
                })
            }
            // A Job not waited for (a hook with hook-wait false) that has
            // ended since: record how, so that the record, not the live Job,
            // keeps it from running again once its TTL removes it.
            (_, LiveStatus::Succeeded | LiveStatus::Failed) if !self.wait => {
                let end = match &live.failure {
                    Some(reason) => JobEnd::Failed {
                        reason: reason.clone(),
                        log_tail: None,
                    },
                    None => JobEnd::Succeeded,
                };
                self.record_end(result, hash, &job.uid, &end).await;
                result.settled = Some(end == JobEnd::Succeeded);
                Ok(Carried::Done(JobOutcome::EndedUnwatched {
                    failure: live.failure.clone(),
                }))
            }
            _ => Ok(Carried::Running(job.uid.clone())),
        }
    }

    /// `jobRetries`: the next run waits out the retry interval after the last.
    async fn pause_before_retry(&self, hash: &str, attempt: usize) {
        let interval = self
            .ctx
            .planned
            .stage
            .retry_interval
            .unwrap_or(self.engine.settings.default_retry_interval);
        let last_end = self
            .history()
            .and_then(|h| h.last_of(hash))
            .and_then(|r| r.finished.clone());
        if let Some(wait) = remaining(last_end.as_deref(), interval) {
            info!(
                stage = self.ctx.name(),
                object = %self.item.object_ref(),
                attempt,
                "retrying the failed Job after {}",
                humantime::format_duration(wait)
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// Create the Job and journal the run before anything waits on it.
    async fn create(
        &self,
        jobs: &Api<Job>,
        hash: &str,
        result: &mut JobTaskResult,
    ) -> Result<String, JobError> {
        let object = self.item.object_ref();
        // A Job waited on is held until its end is recorded, from its
        // creation on. One not waited on is not: nothing waits for its end,
        // and nothing would be sure to come back and release it.
        let body = match self.wait {
            true => with_finalizer(&self.item.value),
            false => self.item.value.clone(),
        };
        let (params, patch) = (apply_params(), Patch::Apply(&body));
        let created = call(Verb::Apply, &object, || {
            jobs.patch(&self.item.name, &params, &patch)
        })
        .await?;
        let uid = created.metadata.uid.clone().unwrap_or_default();
        self.log_started(hash, result);
        let run = JobRun {
            hash: hash.to_string(),
            revision: self.ctx.revision.clone(),
            result: JobResult::Running,
            reason: None,
            uid: Some(uid.clone()),
            started: Some(now()),
            finished: None,
            log_tail: None,
        };
        self.journal(&run).await;
        result.runs.push((self.key(), run));
        Ok(uid)
    }

    /// The run begins: one line saying which spec and which attempt, so a
    /// long Job is visible in the log from its start (the stage's own
    /// "still running" lines follow every 30 s).
    fn log_started(&self, hash: &str, result: &JobTaskResult) {
        let key = self.key();
        // Runs of this spec before this one, as the status page numbers them.
        let earlier = self
            .history()
            .map_or(0, |h| h.runs.iter().filter(|r| r.hash == hash).count());
        let this_task = result.runs.iter().filter(|(_, r)| r.hash == hash).count();
        let attempt = earlier + this_task + 1;
        info!(
            stage = self.ctx.name(),
            revision = %crate::core::object::short_revision(self.ctx.revision),
            object = key,
            job = key,
            spec_hash = short(hash),
            attempt,
            "Job started: {key}, spec {}, attempt {attempt}",
            short(hash)
        );
    }

    /// `true` once the record is durable.
    async fn journal(&self, run: &JobRun) -> bool {
        self.ctx
            .journal
            .record(&self.ctx.planned.stage.name, &self.key(), run)
            .await
    }

    /// Delete the live Job with its pods, wait until it is gone, create the new one.
    async fn replace(
        &self,
        jobs: &Api<Job>,
        hash: &str,
        old_hash: Option<&str>,
        result: &mut JobTaskResult,
    ) -> Result<String, JobError> {
        // Foreground: the Job object stays until the garbage collector removed
        // its pods, so once it is gone no pod of the old spec is left running
        // beside the new one. Background would drop the Job at once and leave
        // its pods to be collected later, possibly overlapping the new run;
        // and with no policy at all, batch/v1 orphans the pods. The old Job
        // is let go first, or the deletion would wait on our own finalizer.
        release(jobs, &self.item.name, &self.item.object_ref().to_string()).await?;
        delete_and_wait_for(
            jobs,
            &self.item.name,
            &self.item.object_ref().to_string(),
            &DeleteParams::foreground(),
            self.engine.settings.default_timeout,
        )
        .await?;
        let uid = self.create(jobs, hash, result).await?;
        result.recreated = true;
        let old = old_hash.map(short).unwrap_or("(none)");
        // An unchanged hash here means an operator asked for a rerun.
        let note = match old_hash == Some(hash) {
            true => format!(
                "rerun requested (spec hash {old} unchanged): deleted the previous Job with its pods and created it again"
            ),
            false => format!(
                "spec hash {old} -> {}: deleted the previous Job with its pods and created it again",
                short(hash)
            ),
        };
        info!(stage = self.ctx.name(), revision = %crate::core::object::short_revision(self.ctx.revision), object = %self.item.object_ref(), "Job recreated: {note}");
        self.ctx
            .emit(self.item, Some(uid.clone()), Reason::Recreated, note);
        Ok(uid)
    }

    async fn watch(&self, live: &Live, uid: &str) -> Result<JobEnd, JobError> {
        let progress = Progress::default();
        let stuck = |note: String| {
            self.ctx
                .emit(self.item, Some(uid.to_string()), Reason::PodStuck, note)
        };
        let timeout = self
            .timeout
            .or(self.ctx.planned.stage.timeout)
            .unwrap_or(self.engine.settings.default_timeout);
        let watch = wait_job(JobWatch {
            jobs: live.jobs.clone(),
            pods: live.pods.clone(),
            name: &self.item.name,
            uid,
            stuck_grace: self.engine.settings.stuck_pod_grace,
            progress: &progress,
            on_stuck: &stuck,
        });
        let Ok(end) = tokio::time::timeout(timeout, watch).await else {
            return Err(JobError::Timeout {
                after: timeout,
                progress: progress.get(),
            });
        };
        if let JobEnd::Failed { reason, log_tail } = &end {
            warn!(stage = self.ctx.name(), revision = %crate::core::object::short_revision(self.ctx.revision), object = %self.item.object_ref(), reason, "Job failed");
            let note = WithTail(reason, log_tail.as_deref()).to_string();
            self.ctx
                .emit(self.item, Some(uid.to_string()), Reason::Failed, note);
        }
        Ok(end)
    }

    /// Record how the run `uid` ended, in the result and the journal.
    async fn record_end(&self, result: &mut JobTaskResult, hash: &str, uid: &str, end: &JobEnd) {
        let previous = self
            .history()
            .and_then(|h| h.runs.iter().find(|r| r.uid.as_deref() == Some(uid)));
        let started = result
            .runs
            .iter()
            .find(|(_, r)| r.uid.as_deref() == Some(uid))
            .and_then(|(_, r)| r.started.clone())
            .or_else(|| previous.and_then(|r| r.started.clone()));
        let revision = previous
            .map(|r| r.revision.clone())
            .unwrap_or_else(|| self.ctx.revision.clone());
        let (job_result, reason, log_tail) = match end {
            JobEnd::Succeeded => (JobResult::Succeeded, None, None),
            JobEnd::Failed { reason, log_tail } => {
                (JobResult::Failed, Some(reason.clone()), log_tail.clone())
            }
        };
        let run = JobRun {
            hash: hash.to_string(),
            revision,
            result: job_result,
            reason,
            uid: Some(uid.to_string()),
            started,
            finished: Some(now()),
            log_tail,
        };
        let durable = self.journal(&run).await;
        result.runs.push((self.key(), run));
        if durable {
            self.release_recorded(&Api::namespaced(
                self.engine.client.clone(),
                self.namespace(),
            ))
            .await;
        } else {
            warn!(stage = self.ctx.name(), object = %self.item.object_ref(), "the Job's end could not be recorded; the Job is kept (finalizer {JOB_OUTCOME_FINALIZER}) until it is");
        }
    }

    /// The Job's end is recorded: let the cluster delete it. A failure here
    /// costs nothing but the Job staying until the next run releases it.
    async fn release_recorded(&self, jobs: &Api<Job>) {
        let object = self.item.object_ref();
        if let Err(e) = release(jobs, &self.item.name, &object.to_string()).await {
            warn!(stage = self.ctx.name(), object = %object, error = %e, "cannot release the Job's outcome finalizer; the next run of the stage will");
        }
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
