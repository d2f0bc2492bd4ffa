//! Running one revision's stage graph: a stage starts as soon as all its
//! dependencies are Ready for this revision, independent stages run at the
//! same time (bounded), a failed stage blocks its transitive dependents.
//!
//! Event-driven: a stage's completion is seen the moment its task ends
//! (`JoinSet::join_next`), so a dependent starts right away, with no requeue
//! interval in between.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::context::AgentContext;
use crate::agent::metrics::{StageLabels, StageReasonLabels, StageResultLabels};
use crate::cluster::apply::{JobOutcome, StageReport};
use crate::cluster::state::{Phase, StageState};
use crate::core::object::Revision;
use crate::core::plan::Plan;

/// How a revision's run ended.
#[derive(Debug, Clone)]
pub struct RevisionOutcome {
    pub revision: Revision,
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

/// A finished stage task: its position, and the phase and message it
/// settled in (its transition already made).
type Finished = (usize, Phase, String);

/// Where each stage of the revision stands.
struct Progress {
    phase: Vec<Phase>,
    message: Vec<String>,
    started: Vec<bool>,
}

/// What to do with a stage not started yet.
enum Next {
    Start,
    Block(String),
    Wait,
}

impl Progress {
    fn new(n: usize) -> Self {
        Self {
            phase: vec![Phase::Pending; n],
            message: vec![String::new(); n],
            started: vec![false; n],
        }
    }

    fn settle(&mut self, i: usize, phase: Phase, message: String) {
        self.started[i] = true;
        self.phase[i] = phase;
        self.message[i] = message;
    }

    /// A stage may start once every stage it needs is Ready (or Suspended
    /// after having been Ready); it is blocked by one that failed or is blocked.
    fn next(&self, plan: &Plan, i: usize) -> Next {
        let needs = &plan.stages[i].needs;
        if let Some(&d) = needs
            .iter()
            .find(|&&d| matches!(self.phase[d], Phase::Failed | Phase::Blocked))
        {
            let culprit = &plan.stages[d].stage.name;
            return Next::Block(match self.phase[d] {
                // The first line of the failure names the culprit (a Job, a
                // hook), so a blocked stage says exactly why.
                Phase::Failed => format!(
                    "blocked: stage {culprit} failed: {}",
                    self.message[d].lines().next().unwrap_or_default()
                ),
                _ => format!("blocked: stage {culprit} is blocked"),
            });
        }
        if needs
            .iter()
            .all(|&d| matches!(self.phase[d], Phase::Ready | Phase::Suspended))
        {
            Next::Start
        } else {
            Next::Wait
        }
    }
}

/// Run `plan` at `revision` until every stage is settled or `cancel` fires.
pub async fn run_revision(
    ctx: Arc<AgentContext>,
    plan: Arc<Plan>,
    revision: Revision,
    cancel: CancellationToken,
) -> RevisionOutcome {
    let n = plan.stages.len();
    let mut progress = Progress::new(n);
    // Drift checks of this run read the cluster as it is now.
    ctx.engine.begin_cycle();
    settle_suspended(&ctx, &plan, &revision, &mut progress).await;
    let mut running: JoinSet<Finished> = JoinSet::new();
    let mut cancelled = false;
    let mut heartbeat = tokio::time::interval_at(
        tokio::time::Instant::now() + super::record::WAIT_REPORT,
        super::record::WAIT_REPORT,
    );
    loop {
        start_ready(&ctx, &plan, &revision, &mut progress, &mut running).await;
        // A blocked stage can unblock nothing; loop again only when something changed.
        if running.is_empty() {
            // Dependencies that can no longer be satisfied (should not happen
            // once every failure blocks its dependents): settle what is left.
            for i in 0..n {
                if progress.started[i] {
                    continue;
                }
                let message = "blocked: dependencies did not become Ready".to_string();
                progress.settle(i, Phase::Blocked, message);
            }
            break;
        }
        let joined = tokio::select! {
            joined = running.join_next() => joined,
            _ = heartbeat.tick() => {
                let waiting = (0..n).filter(|&i| progress.phase[i] == Phase::Running);
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
        match joined {
            Some(Ok((i, phase, message))) => {
                progress.phase[i] = phase;
                progress.message[i] = message;
            }
            Some(Err(e)) => warn!(error = %e, "stage task ended abnormally"),
            None => {}
        }
    }
    if cancelled {
        info!(revision = %revision.short(), "run of this revision stopped before its end");
    }
    let stages = (0..n)
        .map(|i| {
            let name = plan.stages[i].stage.name.to_string();
            (name, progress.phase[i], progress.message[i].clone())
        })
        .collect();
    RevisionOutcome {
        revision,
        stages,
        cancelled,
    }
}

/// Suspended stages are not applied. A dependent may still go ahead when
/// the suspended stage was Ready at some earlier revision: its objects are
/// in the cluster as last applied, which is what suspending means (as in
/// Flux). One that never was Ready blocks its dependents, who would
/// otherwise run against something that does not exist.
async fn settle_suspended(
    ctx: &AgentContext,
    plan: &Plan,
    revision: &Revision,
    progress: &mut Progress,
) {
    let suspended: Vec<(usize, bool)> = {
        let state = ctx.state.lock().await;
        plan.stages
            .iter()
            .enumerate()
            .filter(|(_, planned)| planned.stage.suspend)
            .map(|(i, planned)| {
                let was_ready = state
                    .stages
                    .get(planned.stage.name.as_str())
                    .is_some_and(|s| s.revision.is_some());
                (i, was_ready)
            })
            .collect()
    };
    for (i, was_ready) in suspended {
        let (phase, message) = if was_ready {
            (Phase::Suspended, "suspended; objects left as last applied")
        } else {
            (Phase::Blocked, "suspended before it was ever applied")
        };
        progress.settle(i, phase, message.to_string());
        let name = &plan.stages[i].stage.name;
        ctx.transition(name, revision, phase, message, None).await;
    }
}

/// Start every stage whose dependencies are all satisfied, up to the limit;
/// block those a failure upstream will never let run.
async fn start_ready(
    ctx: &Arc<AgentContext>,
    plan: &Arc<Plan>,
    revision: &Revision,
    progress: &mut Progress,
    running: &mut JoinSet<Finished>,
) {
    for i in 0..plan.stages.len() {
        // Waiting costs nothing: `--concurrency` bounds API requests in
        // flight (the agent's client), not stages.
        if progress.started[i] {
            continue;
        }
        let name = &plan.stages[i].stage.name;
        match progress.next(plan, i) {
            Next::Wait => {}
            Next::Block(reason) => {
                ctx.transition(name, revision, Phase::Blocked, &reason, None)
                    .await;
                progress.settle(i, Phase::Blocked, reason);
            }
            Next::Start => {
                // A stage whose outcome cannot change is not run again.
                if let Some((was, why)) = ctx.steady(&plan.stages[i], revision).await {
                    progress.settle(i, was, why);
                    continue;
                }
                progress.started[i] = true;
                progress.phase[i] = Phase::Running;
                // The stage's own writes (Running, then its outcome) happen
                // in its task: stages starting together write together
                // (bounded by the client), and this loop is free at once
                // for the next stage to start or finish.
                let (ctx, plan) = (ctx.clone(), plan.clone());
                let revision = revision.clone();
                running.spawn(async move { run_stage(&ctx, &plan, &revision, i).await });
            }
        }
    }
}

/// One stage from Running to its outcome: begin, apply, transition.
async fn run_stage(ctx: &AgentContext, plan: &Plan, revision: &Revision, i: usize) -> Finished {
    let name = &plan.stages[i].stage.name;
    let mut stage_state = ctx.begin_stage(name, revision).await;
    let begin = Instant::now();
    let report = ctx
        .engine
        .apply_stage_observed(
            &plan.stages[i],
            revision,
            &mut stage_state,
            ctx,
            Some(&ctx.events),
        )
        .await;
    settle(ctx, plan, revision, i, stage_state, report, begin.elapsed()).await
}

/// A stage's apply ended: its phase, transition and metrics.
async fn settle(
    ctx: &AgentContext,
    plan: &Plan,
    revision: &Revision,
    i: usize,
    mut stage_state: StageState,
    report: StageReport,
    elapsed: Duration,
) -> Finished {
    stage_state.stalled = !report.ready && super::record::stalled(&plan.stages[i], &stage_state);
    let name = &plan.stages[i].stage.name;
    let phase = if report.ready {
        Phase::Ready
    } else {
        Phase::Failed
    };
    // A Ready stage's message stays the same from one no-change cycle to
    // the next, so that such a cycle writes nothing; the details are logged.
    let message = if report.ready {
        // The Ready transition says it for people; the counts are detail.
        tracing::debug!(stage = %name, revision = %revision.short(), "{}", report.message);
        format!("{} objects applied", plan.stages[i].objects.len())
    } else {
        report.message.clone()
    };
    // Its Events were sent as they happened; they are out before its transition.
    ctx.events.flush().await;
    let changed = ctx
        .transition(name, revision, phase, &message, Some(stage_state))
        .await;
    // A drift check that found nothing to do is no reconcile.
    if changed || report.applied > 0 || report.recreated > 0 || report.pruned > 0 {
        record_metrics(ctx, name.as_str(), &report, elapsed);
    }
    (i, phase, message)
}

fn record_metrics(ctx: &AgentContext, name: &str, report: &StageReport, elapsed: Duration) {
    let metrics = &ctx.metrics;
    let result = if report.ready { "ready" } else { "failed" };
    metrics
        .reconcile_duration
        .get_or_create(&StageResultLabels {
            stage: name.to_string(),
            result: result.into(),
        })
        .observe(elapsed.as_secs_f64());
    if let Some(error) = &report.error {
        metrics
            .stage_failures
            .get_or_create(&StageReasonLabels {
                stage: name.to_string(),
                reason: error.metric_label().into(),
            })
            .inc();
    }
    if report.recreated > 0 {
        metrics
            .job_recreations
            .get_or_create(&StageLabels {
                stage: name.to_string(),
            })
            .inc_by(report.recreated as u64);
    }
    for job in report.jobs.iter().filter(|j| j.ran()) {
        let result = match job.outcome {
            JobOutcome::Failed(_) | JobOutcome::EndedUnwatched { failure: Some(_) } => "failed",
            JobOutcome::Started => "started",
            _ => "succeeded",
        };
        metrics
            .job_runs
            .get_or_create(&StageResultLabels {
                stage: name.to_string(),
                result: result.into(),
            })
            .inc();
    }
}
