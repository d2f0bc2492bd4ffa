//! Running one revision's stage graph: a stage starts as soon as all its
//! dependencies are Ready for this revision, independent stages run at the
//! same time (bounded), a failed stage blocks its transitive dependents.
//!
//! Event-driven: a stage's completion is seen the moment its task ends
//! (`JoinSet::join_next`), so a dependent starts right away, with no requeue
//! interval in between.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::context::AgentContext;
use crate::apply::StageReport;
use crate::metrics::{StageLabels, StageResultLabels};
use crate::plan::Plan;
use crate::state::{Phase, StageState};

/// How a revision's run ended.
#[derive(Debug, Clone)]
pub struct RevisionOutcome {
    pub revision: String,
    /// Final phase and message of every stage, in plan order.
    pub stages: Vec<(String, Phase, String)>,
    pub cancelled: bool,
}

impl RevisionOutcome {
    pub fn all_ready(&self) -> bool {
        !self.cancelled
            && self
                .stages
                .iter()
                .all(|(_, phase, _)| *phase == Phase::Ready)
    }
}

/// Run `plan` at `revision` until every stage is settled or `cancel` fires.
pub async fn run_revision(
    ctx: Arc<AgentContext>,
    plan: Arc<Plan>,
    revision: String,
    cancel: CancellationToken,
) -> RevisionOutcome {
    let n = plan.stages.len();
    let index: HashMap<&str, usize> = plan
        .stages
        .iter()
        .enumerate()
        .map(|(i, s)| (s.stage.name.as_str(), i))
        .collect();
    let deps: Vec<Vec<usize>> = plan
        .stages
        .iter()
        .map(|s| {
            s.stage
                .depends_on
                .iter()
                .filter_map(|d| index.get(d.as_str()).copied())
                .collect()
        })
        .collect();
    let mut phase: Vec<Phase> = vec![Phase::Pending; n];
    let mut message: Vec<String> = vec![String::new(); n];
    let mut started = vec![false; n];

    // Suspended stages are not applied. A dependent may still go ahead when
    // the suspended stage was Ready at some earlier revision: its objects are
    // in the cluster as last applied, which is what suspending means (as in
    // Flux). One that never was Ready blocks its dependents, who would
    // otherwise run against something that does not exist.
    {
        let state = ctx.state.lock().await;
        for (i, planned) in plan.stages.iter().enumerate() {
            if planned.stage.suspend {
                started[i] = true;
                let was_ready = state
                    .stages
                    .get(planned.stage.name.as_str())
                    .is_some_and(|s| s.revision.is_some());
                phase[i] = if was_ready {
                    Phase::Suspended
                } else {
                    Phase::Blocked
                };
                message[i] = if was_ready {
                    "suspended; objects left as last applied".into()
                } else {
                    "suspended before it was ever applied".into()
                };
            }
        }
    }
    for i in 0..n {
        if plan.stages[i].stage.suspend {
            ctx.transition(
                &plan.stages[i].stage.name.to_string(),
                &revision,
                phase[i],
                &message[i],
                None,
            )
            .await;
        }
    }

    let mut running: JoinSet<(usize, StageState, StageReport, std::time::Duration)> =
        JoinSet::new();
    let mut cancelled = false;
    let mut heartbeat = tokio::time::interval_at(
        tokio::time::Instant::now() + super::record::WAIT_REPORT,
        super::record::WAIT_REPORT,
    );
    loop {
        // Start every stage whose dependencies are all satisfied.
        for i in 0..n {
            // Waiting costs nothing: `--concurrency` bounds API requests
            // in flight (the agent's client), not stages.
            if started[i] {
                continue;
            }
            let satisfied = deps[i]
                .iter()
                .all(|&d| matches!(phase[d], Phase::Ready | Phase::Suspended));
            let blocked_by = deps[i]
                .iter()
                .find(|&&d| matches!(phase[d], Phase::Failed | Phase::Blocked));
            if let Some(&d) = blocked_by {
                started[i] = true;
                phase[i] = Phase::Blocked;
                let reason = match phase[d] {
                    // The first line of the failure names the culprit (a
                    // Job, a hook), so a blocked stage says exactly why.
                    Phase::Failed => format!(
                        "blocked: stage {} failed: {}",
                        plan.stages[d].stage.name,
                        message[d].lines().next().unwrap_or_default()
                    ),
                    _ => format!("blocked: stage {} is blocked", plan.stages[d].stage.name),
                };
                message[i] = reason;
                ctx.transition(
                    plan.stages[i].stage.name.as_str(),
                    &revision,
                    Phase::Blocked,
                    &message[i],
                    None,
                )
                .await;
                continue;
            }
            if !satisfied {
                continue;
            }
            if let Some((was, why)) = ctx.steady(&plan.stages[i], &revision).await {
                (started[i], phase[i], message[i]) = (true, was, why);
                continue;
            }
            started[i] = true;
            phase[i] = Phase::Running;
            let name = plan.stages[i].stage.name.to_string();
            let stage_state = ctx.begin_stage(&name, &revision).await;
            let ctx = ctx.clone();
            let plan = plan.clone();
            let revision = revision.clone();
            running.spawn(async move {
                let mut stage_state = stage_state;
                let begin = Instant::now();
                let report = ctx
                    .engine
                    .apply_stage(&plan.stages[i], &revision, &mut stage_state)
                    .await;
                (i, stage_state, report, begin.elapsed())
            });
        }
        // A blocked stage can unblock nothing; loop again only when something changed.
        if running.is_empty() {
            if (0..n).all(|i| started[i]) {
                break;
            }
            // Dependencies can no longer be satisfied (should not happen once
            // every failure blocks its dependents): settle what is left.
            for i in 0..n {
                if started[i] {
                    continue;
                }
                started[i] = true;
                phase[i] = Phase::Blocked;
                message[i] = "blocked: dependencies did not become Ready".into();
            }
            break;
        }
        let joined = tokio::select! {
            joined = running.join_next() => joined,
            _ = heartbeat.tick() => {
                let waiting = (0..n).filter(|&i| phase[i] == Phase::Running);
                ctx.report_waiting(&plan, &revision, waiting).await;
                continue;
            }
            () = cancel.cancelled() => {
                // Waits are abandoned; whatever Jobs run in the cluster go on.
                running.abort_all();
                while running.join_next().await.is_some() {}
                cancelled = true;
                break;
            }
        };
        let Some(joined) = joined else { continue };
        let (i, stage_state, report, elapsed) = match joined {
            Ok(done) => done,
            Err(e) => {
                warn!(error = %e, "stage task ended abnormally");
                continue;
            }
        };
        let mut stage_state = stage_state;
        stage_state.stalled =
            !report.ready && super::record::stalled(&plan.stages[i], &stage_state);
        let name = plan.stages[i].stage.name.to_string();
        phase[i] = if report.ready {
            Phase::Ready
        } else {
            Phase::Failed
        };
        // A Ready stage's message stays the same from one no-change cycle to
        // the next, so that such a cycle writes nothing; the details are logged.
        message[i] = if report.ready {
            info!(stage = %name, revision, "{}", report.message);
            format!("{} objects applied", plan.stages[i].objects.len())
        } else {
            report.message.clone()
        };
        // A drift check that found nothing to do is no reconcile.
        let changed = ctx
            .transition(&name, &revision, phase[i], &message[i], Some(stage_state))
            .await;
        let result = if report.ready { "ready" } else { "failed" };
        if changed || report.applied > 0 || report.recreated > 0 || report.pruned > 0 {
            ctx.metrics
                .reconcile_duration
                .get_or_create(&StageResultLabels {
                    stage: name.clone(),
                    result: result.into(),
                })
                .observe(elapsed.as_secs_f64());
        }
        if report.recreated > 0 {
            ctx.metrics
                .job_recreations
                .get_or_create(&StageLabels {
                    stage: name.clone(),
                })
                .inc_by(report.recreated as u64);
        }
        for job in &report.jobs {
            let ran = ["create", "recreate", "retry"]
                .iter()
                .any(|a| job.action.starts_with(a));
            if ran {
                let result = if job.outcome.starts_with("failed") {
                    "failed"
                } else if job.outcome.starts_with("started") {
                    "started"
                } else {
                    "succeeded"
                };
                ctx.metrics
                    .job_runs
                    .get_or_create(&StageResultLabels {
                        stage: name.clone(),
                        result: result.into(),
                    })
                    .inc();
            }
        }
    }

    if cancelled {
        info!(revision, "run of this revision stopped before its end");
    }
    let stages = (0..n)
        .map(|i| {
            (
                plan.stages[i].stage.name.to_string(),
                phase[i],
                message[i].clone(),
            )
        })
        .collect();
    RevisionOutcome {
        revision,
        stages,
        cancelled,
    }
}
