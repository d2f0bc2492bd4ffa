//! The loop: fetch the watched reference every interval (or at once on a
//! push webhook), plan the revision, run its stage graph, and start over as
//! soon as a newer revision arrives.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::context::AgentContext;
use super::scheduler::{RevisionOutcome, run_revision};
use crate::agent::metrics::ReasonLabels;
use crate::agent::source::{Fetched, GitSource, SourceConfig};
use crate::cluster::state::SourceState;
use crate::cluster::state::stage_events::EventKind;
use crate::core::diagnostics::Problems;
use crate::core::object::{Revision, StageName};
use crate::core::plan::{Plan, build_plan_with};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("fetching {url}: {message}")]
    Fetch { url: String, message: String },
    #[error("revision {revision} is invalid; nothing was applied:\n{problems}")]
    InvalidRepository {
        revision: Revision,
        problems: Problems,
    },
    #[error("{0}")]
    Internal(String),
}

impl AgentError {
    pub fn metric_label(&self) -> &'static str {
        match self {
            AgentError::Fetch { .. } => "fetch",
            AgentError::InvalidRepository { .. } => "invalid_repository",
            AgentError::Internal(_) => "internal",
        }
    }
}

/// A revision being run.
struct Running {
    commit: String,
    cancel: CancellationToken,
    handle: JoinHandle<RevisionOutcome>,
}

/// Where the loop stands between two wake-ups.
struct Turns {
    /// Fetches failed in a row: the retry backs off.
    failures: u32,
    current: Option<Running>,
    next_fetch: Instant,
}

/// What woke the loop.
enum Wake {
    Shutdown,
    Fetch,
    RevisionDone(Result<RevisionOutcome, tokio::task::JoinError>),
}

/// Cancel a revision's waits and let its task end.
async fn stop(running: Option<Running>) {
    if let Some(running) = running {
        running.cancel.cancel();
        let _ = running.handle.await;
    }
}

pub struct Agent {
    ctx: Arc<AgentContext>,
    source: GitSource,
    /// Notified by the push webhook.
    pub wake: Arc<Notify>,
    /// Set once the first fetch was attempted: `/readyz`.
    pub ready: Arc<AtomicBool>,
    /// Told of every revision planned (the status page draws its graph).
    plan_observer: Option<PlanObserver>,
}

type PlanObserver = Box<dyn Fn(&Plan) + Send + Sync>;

/// Delay before retrying a failed fetch: 2 s doubling, at most the interval.
fn backoff(failures: u32, interval: Duration) -> Duration {
    let exp = Duration::from_secs(2).saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    exp.min(interval)
}

impl Agent {
    pub fn new(ctx: Arc<AgentContext>, wake: Arc<Notify>, ready: Arc<AtomicBool>) -> Self {
        let settings = &ctx.settings;
        let mut config = SourceConfig::new(
            settings.repo.clone(),
            settings.reference.clone(),
            settings.cache_dir.clone(),
        );
        config.auth = settings.auth.clone();
        Self {
            source: GitSource::new(config),
            ctx,
            wake,
            ready,
            plan_observer: None,
        }
    }

    /// Call `observer` with every revision planned.
    pub fn observe_plans(mut self, observer: impl Fn(&Plan) + Send + Sync + 'static) -> Self {
        self.plan_observer = Some(Box::new(observer));
        self
    }

    pub fn context(&self) -> &Arc<AgentContext> {
        &self.ctx
    }

    /// Reconcile until `shutdown`; with `once`, the first revision's outcome is returned.
    pub async fn run(
        self,
        shutdown: CancellationToken,
    ) -> Result<Option<RevisionOutcome>, AgentError> {
        let once = self.ctx.settings.once;
        let mut turn = Turns {
            failures: 0,
            current: None,
            next_fetch: Instant::now(),
        };
        if !once {
            tokio::spawn(super::requests::watch_requests(
                self.ctx.clone(),
                self.wake.clone(),
                shutdown.clone(),
            ));
        }
        loop {
            match self.next_wake(&shutdown, &mut turn).await {
                Wake::Shutdown => {
                    stop(turn.current.take()).await;
                    return Ok(None);
                }
                Wake::RevisionDone(joined) => {
                    turn.current = None;
                    let outcome =
                        joined.map_err(|e| AgentError::Internal(format!("revision task: {e}")))?;
                    self.finish(&outcome).await;
                    if once {
                        return Ok(Some(outcome));
                    }
                }
                Wake::Fetch => {
                    // A failure is recorded and retried; `--once` ends on it.
                    if let Err(e) = self.cycle(&mut turn).await
                        && once
                    {
                        return Err(e);
                    }
                }
            }
        }
    }

    /// Wait for the next thing to do: stop, fetch (the interval, a push), or
    /// the revision in progress ended.
    async fn next_wake(&self, shutdown: &CancellationToken, turn: &mut Turns) -> Wake {
        let next_fetch = turn.next_fetch;
        let current = &mut turn.current;
        tokio::select! {
            () = shutdown.cancelled() => Wake::Shutdown,
            () = sleep_until(next_fetch) => Wake::Fetch,
            () = self.wake.notified() => {
                info!("push webhook: fetching now");
                Wake::Fetch
            }
            joined = async { current.as_mut().map(|r| &mut r.handle).expect("guarded").await }, if current.is_some() => {
                Wake::RevisionDone(joined)
            }
        }
    }

    /// One fetch: a failure schedules the retry; a new revision replaces the
    /// one in progress and starts.
    async fn cycle(&self, turn: &mut Turns) -> Result<(), AgentError> {
        let (interval, once) = (self.ctx.settings.interval, self.ctx.settings.once);
        self.ctx.metrics.cycles.inc();
        let fetched = match self.fetch().await {
            Ok(fetched) => {
                turn.failures = 0;
                turn.next_fetch = Instant::now() + interval;
                fetched
            }
            Err(e) => {
                turn.failures += 1;
                let retry = backoff(turn.failures, interval);
                turn.next_fetch = Instant::now() + retry;
                self.source_failed(&e, (!once).then_some(retry)).await;
                return Err(e);
            }
        };
        // A newer revision replaces the one in progress at once: its waits
        // are cancelled; Jobs already running in the cluster go on, and the
        // new revision's rules decide what becomes of them.
        if let Some(running) = &turn.current {
            if running.commit == fetched.commit {
                return Ok(());
            }
            info!(revision = %crate::agent::logging::short_revision(&fetched.reference), "new revision while stages run: planning it now");
            stop(turn.current.take()).await;
        }
        match self.plan(&fetched).await {
            Ok(plan) => {
                turn.current = Some(self.start(plan, &fetched).await);
                Ok(())
            }
            Err(e) => {
                self.source_failed(&e, (!once).then_some(interval)).await;
                Err(e)
            }
        }
    }

    /// Run a planned revision's stage graph in a task of its own.
    async fn start(&self, plan: Arc<Plan>, fetched: &Fetched) -> Running {
        let plan = self.with_requests(plan).await;
        self.ctx.set_specs(&plan);
        let cancel = CancellationToken::new();
        let handle = tokio::spawn(run_revision(
            self.ctx.clone(),
            plan,
            fetched.reference.clone(),
            cancel.clone(),
        ));
        Running {
            commit: fetched.commit.clone(),
            cancel,
            handle,
        }
    }

    async fn fetch(&self) -> Result<Fetched, AgentError> {
        let result = self.source.fetch().await;
        self.ready.store(true, Ordering::Relaxed);
        let fetched = result.map_err(|e| {
            self.ctx
                .metrics
                .git_fetch_failures
                .get_or_create(&ReasonLabels {
                    reason: e.metric_label().to_string(),
                })
                .inc();
            AgentError::Fetch {
                url: redacted(&self.ctx.settings.repo),
                message: e.to_string(),
            }
        })?;
        self.ctx
            .metrics
            .git_fetch_duration
            .observe(fetched.duration.as_secs_f64());
        if fetched.changed {
            info!(revision = %crate::agent::logging::short_revision(&fetched.reference), bytes = fetched.bytes_received, "fetched a new revision");
        }
        let changed = {
            let mut state = self.ctx.state.lock().await;
            let source = state.source.get_or_insert_with(SourceState::default);
            if !source.error.is_empty() && !source.invalid {
                info!(revision = %crate::agent::logging::short_revision(&fetched.reference), "the repository is reachable again");
            }
            let before = source.clone();
            // An invalid revision stays refused, with its first-seen time,
            // until another revision arrives.
            if !(source.invalid && source.revision.as_deref() == Some(fetched.reference.as_str())) {
                source.error.clear();
                source.since = None;
                source.invalid = false;
            }
            source.revision = Some(fetched.reference.clone());
            *source != before
        };
        if changed {
            self.ctx.persist_source().await;
        }
        Ok(fetched)
    }

    /// Check out and plan a revision; an invalid repository changes nothing.
    async fn plan(&self, fetched: &Fetched) -> Result<Arc<Plan>, AgentError> {
        let tree: PathBuf =
            self.source
                .checkout(&fetched.commit)
                .await
                .map_err(|e| AgentError::Fetch {
                    url: redacted(&self.ctx.settings.repo),
                    message: e.to_string(),
                })?;
        let path = self.ctx.settings.path.clone();
        let options = plan_options(&self.ctx.settings, self.ctx.engine.client());
        let planned =
            tokio::task::spawn_blocking(move || build_plan_with(&tree, path.as_deref(), &options))
                .await
                .map_err(|e| AgentError::Internal(format!("planning: {e}")))?;
        match planned {
            Ok(plan) => {
                for warning in plan.warnings.iter() {
                    warn!(revision = %fetched.reference, "{warning}");
                }
                self.keep_warnings(&plan).await;
                if let Some(observe) = &self.plan_observer {
                    observe(&plan);
                }
                Ok(Arc::new(plan))
            }
            Err(problems) => Err(AgentError::InvalidRepository {
                revision: fetched.reference.clone(),
                problems,
            }),
        }
    }

    /// The plan's warnings go to the source object, for `status` and the
    /// status page: a skipped stage is said wherever stages are shown.
    async fn keep_warnings(&self, plan: &Plan) {
        let changed = {
            let mut state = self.ctx.state.lock().await;
            let source = state.source.get_or_insert_with(SourceState::default);
            source.set_warnings(plan.warnings.iter().map(ToString::to_string).collect())
        };
        if changed {
            self.ctx.persist_source().await;
        }
    }

    /// Make a source or plan failure visible: log, Event, state. Without a
    /// retry (`--once`) the caller reports the error, once.
    async fn source_failed(&self, e: &AgentError, retry: Option<Duration>) {
        let revision = self
            .ctx
            .state
            .lock()
            .await
            .source
            .as_ref()
            .and_then(|s| s.applied.clone());
        if let Some(retry) = retry {
            let retry_in = humantime::format_duration(retry);
            match &revision {
                Some(applied) => error!(error = %e, %retry_in, "stages stay at {applied}"),
                None => error!(error = %e, %retry_in, "nothing applied yet"),
            }
        }
        let reason = match e {
            AgentError::InvalidRepository { .. } => "InvalidRepository",
            _ => "GitFetchFailed",
        };
        let changed = {
            let mut state = self.ctx.state.lock().await;
            let source = state.source.get_or_insert_with(SourceState::default);
            // "Failing since" is when this error first appeared.
            let message = e.to_string();
            let changed = source.error != message;
            if source.error.is_empty() {
                source.since = Some(jiff::Timestamp::now().to_string());
            }
            source.invalid = matches!(e, AgentError::InvalidRepository { .. });
            if let AgentError::InvalidRepository { revision, .. } = e {
                source.revision = Some(revision.clone());
            }
            source.error = message;
            changed
        };
        if changed {
            self.ctx
                .stage_events
                .publish(
                    &self.ctx.state_reference(),
                    EventKind::Warning,
                    reason,
                    "Fetch",
                    &e.to_string(),
                )
                .await;
            self.ctx.persist_source().await;
        }
    }

    /// Apply the requests made on the Stage objects to a fresh plan: a
    /// stage suspended by `stagegate suspend` is suspended whatever Git says.
    async fn with_requests(&self, plan: Arc<Plan>) -> Arc<Plan> {
        let suspended: Vec<StageName> = {
            let state = self.ctx.state.lock().await;
            plan.stages
                .iter()
                .map(|s| s.stage.name.clone())
                .filter(|n| state.requests.get(n).is_some_and(|r| r.suspend))
                .collect()
        };
        if suspended.is_empty() {
            return plan;
        }
        let mut plan = (*plan).clone();
        for planned in plan.stages.iter_mut() {
            if suspended.contains(&planned.stage.name) {
                planned.stage.suspend = true;
            }
        }
        Arc::new(plan)
    }

    /// After a revision ran to its end: the applied-revision metric, and the
    /// objects of stages removed from the repository.
    async fn finish(&self, outcome: &RevisionOutcome) {
        if outcome.cancelled {
            return;
        }
        let summary: Vec<String> = outcome
            .stages
            .iter()
            .map(|(n, p, _)| format!("{n}={p}"))
            .collect();
        // Each stage's transition was logged already.
        tracing::debug!(revision = %outcome.revision, "revision done: {}", summary.join(" "));
        if !outcome.all_ready() {
            return;
        }
        self.ctx.metrics.set_applied_revision(&outcome.revision);
        let newly_applied = {
            let mut state = self.ctx.state.lock().await;
            let source = state.source.get_or_insert_with(SourceState::default);
            source.applied.replace(outcome.revision.clone()) != Some(outcome.revision.clone())
        };
        if newly_applied {
            self.ctx.persist_source().await;
        }
        let removed: Vec<(StageName, crate::cluster::state::StageState)> = {
            let state = self.ctx.state.lock().await;
            let plan_names: Vec<&str> = outcome.stages.iter().map(|(n, _, _)| n.as_str()).collect();
            state
                .stages
                .iter()
                .filter(|(n, _)| !plan_names.contains(&n.as_str()))
                .map(|(n, s)| (n.clone(), s.clone()))
                .collect()
        };
        for (name, stage) in removed {
            if stage.prune {
                let (pruned, notes) = self
                    .ctx
                    .engine
                    .prune_removed_stage(name.as_str(), &stage)
                    .await;
                info!(stage = %name, pruned, "stage removed from the repository; its objects were pruned");
                for note in notes {
                    warn!(stage = %name, "{note}");
                }
            } else {
                info!(stage = %name, "stage removed from the repository; its objects stay (prune is off)");
            }
            self.ctx.state.lock().await.stages.remove(&name);
            // The object goes last: until the objects are pruned it holds
            // the inventory that says what to prune.
            if let Err(e) = self.ctx.store.delete_stage(name.as_str()).await {
                warn!(stage = %name, error = %e, "cannot delete the stage's object");
            }
        }
    }
}

/// The repository URL without any password in it, for messages.
fn redacted(url: &str) -> String {
    crate::agent::source::RemoteUrl::parse(url)
        .map(|u| u.redacted().to_string())
        .unwrap_or_else(|_| "(unparsable URL)".into())
}

/// How the agent plans a revision: its settings' Flux options, and
/// `substituteFrom` sources read from the cluster through `client`.
pub fn plan_options(
    settings: &crate::agent::config::Settings,
    client: &kube::Client,
) -> crate::core::plan::PlanOptions {
    crate::core::plan::PlanOptions {
        default_service_account: settings.default_service_account.clone(),
        apply_flux_bootstrap: settings.apply_flux_bootstrap,
        substitution: Some(Box::new(crate::cluster::client::ClusterVariables::new(
            client.clone(),
            tokio::runtime::Handle::current(),
        ))),
    }
}
