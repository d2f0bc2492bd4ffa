//! Running one phase of a stage's hooks: by ascending weight, hooks of equal
//! weight at the same time, each group finished before the next starts. A
//! hook Job is an ordinary [`JobTask`] (spec hash, run policy, rerun
//! requests, log tail) with the hook's wait, timeout and delete policy; any
//! other hook is applied and waited for like the stage's other objects.

use std::time::Duration;

use futures::{StreamExt, stream};
use kube::api::DeleteParams;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, watcher};
use serde_json::Value;
use tracing::{info, warn};

use super::engine::{Engine, StageRun};
use super::error::ApplyError;
use super::item::Item;
use super::job_runner::{JobTask, JobTaskResult};
use super::server_side_apply::Unchanged;
use super::tally::Tally;
use super::waits::{needs_wait, wait_all};
use crate::cluster::state::{InventoryEntry, StageState};
use crate::core::hooks::{Hook, HookPhase};

/// What one non-Job hook did.
struct ObjectHookResult {
    entry: Option<InventoryEntry>,
    applied: bool,
    recreated: bool,
    line: String,
    failure: Option<ApplyError>,
}

enum HookResult {
    Job(Box<JobTaskResult>),
    Object(Box<ObjectHookResult>),
}

fn hook_of(item: &Item) -> &Hook {
    item.hook
        .as_ref()
        .expect("only items with a hook are given a hook role")
}

impl Engine {
    /// Run one phase's hooks (`items` by ascending weight), a weight at a time.
    pub(super) async fn run_hook_phase(
        &self,
        run: &StageRun<'_>,
        phase: HookPhase,
        items: &[&Item],
        state: &mut StageState,
        unchanged: &Unchanged,
        tally: &mut Tally,
    ) -> Result<(), ApplyError> {
        for group in items.chunk_by(|a, b| hook_of(a).weight == hook_of(b).weight) {
            info!(
                stage = run.name(),
                phase = phase.label(),
                weight = hook_of(group[0]).weight,
                hooks = group.len(),
                "running hooks"
            );
            let tasks: Vec<_> = group
                .iter()
                .map(|item| self.run_hook(run, phase, item, &*state, unchanged))
                .collect();
            let results = stream::iter(tasks)
                .buffer_unordered(self.settings.concurrency.max(1))
                .collect::<Vec<_>>()
                .await;
            let failures: Vec<ApplyError> = results
                .into_iter()
                .filter_map(|result| absorb_hook(phase, result, state, tally))
                .map(|source| ApplyError::Hook {
                    phase,
                    source: Box::new(source),
                })
                .collect();
            ApplyError::from_all(failures)?;
        }
        Ok(())
    }

    async fn run_hook(
        &self,
        run: &StageRun<'_>,
        phase: HookPhase,
        item: &Item,
        state: &StageState,
        unchanged: &Unchanged,
    ) -> HookResult {
        let hook = hook_of(item);
        if let Some(hash) = &item.job {
            let task = JobTask {
                engine: self,
                ctx: run,
                item,
                hash,
                state,
                wait: hook.wait,
                timeout: hook.timeout,
                delete: hook.delete,
                hook: Some(phase),
            };
            return HookResult::Job(Box::new(task.run().await));
        }
        HookResult::Object(Box::new(
            self.run_object_hook(run, item, hook, unchanged).await,
        ))
    }

    /// A hook that is not a Job: applied (unless unchanged), waited for
    /// like any object (a Pod until it succeeded), deleted by its policy.
    /// Without a run record, a non-Job hook its policy deleted is applied
    /// again on the next apply: put run-once work in a Job.
    async fn run_object_hook(
        &self,
        ctx: &StageRun<'_>,
        item: &Item,
        hook: &Hook,
        unchanged: &Unchanged,
    ) -> ObjectHookResult {
        let oref = item.object_ref();
        let mut result = ObjectHookResult {
            entry: None,
            applied: false,
            recreated: false,
            line: String::new(),
            failure: None,
        };
        if let Some(recorded) = unchanged.get(&oref) {
            result.entry = Some(recorded.clone());
            result.line = format!("{oref}: unchanged");
            return result;
        }
        match self.apply_object(ctx, item).await {
            Ok(applied) => {
                result.applied = true;
                result.recreated = applied.recreated;
                result.entry = Some(item.inventory_entry(applied.resource_version));
            }
            Err(e) => {
                result.line = format!("{oref}: {e}");
                result.failure = Some(e);
                return result;
            }
        }
        let timeout = hook
            .timeout
            .or(ctx.planned.stage.timeout)
            .unwrap_or(self.settings.default_timeout);
        let outcome = if !hook.wait {
            Ok(())
        } else if item.kind == "Pod" && item.group().is_empty() {
            self.wait_pod_done(item, timeout).await
        } else if needs_wait(item) {
            wait_all(self, &[item], timeout).await
        } else {
            Ok(())
        };
        let policy = match &outcome {
            Ok(()) => hook.delete.hook_succeeded.then_some("hook-succeeded"),
            Err(_) => hook.delete.hook_failed.then_some("hook-failed"),
        };
        result.line = match &outcome {
            Ok(()) if hook.wait => format!("{oref}: applied and ready"),
            Ok(()) => format!("{oref}: applied; not waited for"),
            Err(e) => format!("{oref}: failed: {e}"),
        };
        if let Some(policy) = policy {
            result
                .line
                .push_str(&self.delete_object_hook(ctx, item, policy).await);
        }
        if let Err(e) = outcome {
            result.failure = Some(e);
        }
        result
    }

    /// A Pod hook is done when it ran to its end, not when it is Ready (a
    /// running Pod is Ready): Succeeded, or Failed with its message.
    async fn wait_pod_done(&self, item: &Item, timeout: Duration) -> Result<(), ApplyError> {
        let oref = item.object_ref();
        let Some(api) = item.api(&self.client) else {
            return Err(ApplyError::Invalid {
                object: oref,
                message: "kind not resolved".into(),
            });
        };
        let phase = std::sync::Mutex::new(String::from("Pending"));
        let config = watcher::Config::default().fields(&format!("metadata.name={}", item.name));
        let watch = async {
            let mut stream = watcher(api, config)
                .default_backoff()
                .applied_objects()
                .boxed();
            while let Some(event) = stream.next().await {
                let Ok(pod) = event else { continue };
                let status = pod.data.get("status");
                let now = status
                    .and_then(|s| s.get("phase"))
                    .and_then(Value::as_str)
                    .unwrap_or("Pending");
                match now {
                    "Succeeded" => return Ok(()),
                    "Failed" => {
                        let message = status
                            .and_then(|s| s.get("message").or_else(|| s.get("reason")))
                            .and_then(Value::as_str)
                            .unwrap_or("pod failed");
                        return Err(ApplyError::PodFailed {
                            object: oref.clone(),
                            message: message.to_string(),
                        });
                    }
                    other => *phase.lock().unwrap_or_else(|p| p.into_inner()) = other.to_string(),
                }
            }
            Err(ApplyError::WatchEnded {
                object: oref.clone(),
            })
        };
        match tokio::time::timeout(timeout, watch).await {
            Ok(result) => result,
            Err(_) => Err(ApplyError::PodTimeout {
                object: item.object_ref(),
                after_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                phase: phase
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .as_str()
                    .into(),
            }),
        }
    }

    async fn delete_object_hook(&self, ctx: &StageRun<'_>, item: &Item, policy: &str) -> String {
        let Some(api) = item.api(&self.client) else {
            return String::new();
        };
        match super::delete_wait::delete_and_wait_for(
            &api,
            &item.name,
            &item.object_ref().to_string(),
            &DeleteParams::background(),
            self.settings.default_timeout.min(Duration::from_secs(120)),
        )
        .await
        {
            Ok(()) => {
                info!(stage = ctx.name(), object = %item.object_ref(), policy, "hook deleted by its delete policy");
                format!("; deleted ({policy})")
            }
            Err(e) => {
                warn!(stage = ctx.name(), object = %item.object_ref(), policy, error = %e, "deleting the hook failed");
                format!("; not deleted ({policy}): {e}")
            }
        }
    }
}

/// Add what one hook did to the tally; its failure, if any.
fn absorb_hook(
    phase: HookPhase,
    result: HookResult,
    state: &mut StageState,
    tally: &mut Tally,
) -> Option<ApplyError> {
    match result {
        HookResult::Job(job) => {
            let line = format!(
                "{} Job {}: {}: {}",
                phase.label(),
                job.report.job,
                job.report.action_text(),
                job.report.outcome_text()
            );
            tally.report.hooks.push(line);
            tally.absorb_job(state, *job)
        }
        HookResult::Object(object) => {
            tally
                .report
                .hooks
                .push(format!("{} {}", phase.label(), object.line));
            if object.applied {
                tally.report.applied += 1;
            } else if object.entry.is_some() {
                tally.report.unchanged += 1;
            }
            if object.recreated {
                tally.report.recreated += 1;
            }
            if let Some(entry) = object.entry {
                tally.record(entry);
            }
            object.failure
        }
    }
}
