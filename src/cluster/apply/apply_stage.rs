//! Applying one stage, step by step over a [`Prepared`] stage: foundation
//! objects (and their CRDs established), pre-apply hooks, cluster-scoped then
//! namespaced objects, Jobs, prune, health waits, post-apply hooks. Objects,
//! options and the prior record in; the new record and a typed report out.

use std::collections::HashSet;

use std::sync::atomic::Ordering;

use futures::{StreamExt, stream};
use tracing::warn;

use super::engine::{Engine, StageRun};
use super::error::ApplyError;
use super::item::{Item, Rank};
use super::job_runner::JobTask;
use super::journal::{JobJournal, NoJournal};
use super::prepare::Prepared;
use super::prune::prune;
use super::report::StageReport;
use super::server_side_apply::Unchanged;
use super::tally::{Tally, merge_inventory};
use super::waits::{needs_wait, wait_all};
use crate::cluster::events::EventOutlet;
use crate::cluster::state::{InventoryEntry, StageState};
use crate::core::hooks::{DeletePolicy, HookPhase};
use crate::core::object::Revision;
use crate::core::plan::PlannedStage;

impl Engine {
    /// Make the cluster match `planned`, updating `state` (inventory, Job
    /// runs). Never panics on cluster errors: they end up in the report.
    pub async fn apply_stage(
        &self,
        planned: &PlannedStage,
        revision: impl Into<Revision>,
        state: &mut StageState,
    ) -> StageReport {
        self.apply_stage_journaled(planned, revision, state, &NoJournal)
            .await
    }

    /// [`Self::apply_stage`], writing each Job run to `journal` as it starts
    /// and ends, before the stage is over.
    pub async fn apply_stage_journaled(
        &self,
        planned: &PlannedStage,
        revision: impl Into<Revision>,
        state: &mut StageState,
        journal: &dyn JobJournal,
    ) -> StageReport {
        let revision = revision.into();
        self.apply_stage_observed(planned, &revision, state, journal, None)
            .await
    }

    /// [`Self::apply_stage_journaled`], sending each Event to `outlet` when
    /// it happens (the report still lists them all).
    pub async fn apply_stage_observed(
        &self,
        planned: &PlannedStage,
        revision: &Revision,
        state: &mut StageState,
        journal: &dyn JobJournal,
        outlet: Option<&dyn EventOutlet>,
    ) -> StageReport {
        let run = StageRun::new(planned, revision, journal).with_outlet(outlet);
        let mut tally = Tally::default();
        let result = match self.for_stage(planned) {
            Ok(Some(engine)) => engine.apply_recorded(&run, state, &mut tally).await,
            Ok(None) => self.apply_recorded(&run, state, &mut tally).await,
            Err(error) => Err(error),
        };
        let mut report = tally.report;
        report.events = run.take_events();
        match result {
            Ok(()) => {
                report.ready = true;
                if report.message.is_empty() {
                    report.message = format!(
                        "applied {} objects ({} unchanged, {} recreated, {} pruned)",
                        report.applied + report.unchanged,
                        report.unchanged,
                        report.recreated,
                        report.pruned
                    );
                }
            }
            Err(error) => {
                report.ready = false;
                report.message = error.to_string();
                report.error = Some(error);
            }
        }
        report
    }

    /// The engine a stage is applied with: this one, or (`Some`) one acting
    /// as the stage's ServiceAccount. A stage that could not be planned is
    /// not applied at all: without its objects, prune would remove them.
    fn for_stage(&self, planned: &PlannedStage) -> Result<Option<Engine>, ApplyError> {
        if let Some(problems) = planned.failed() {
            return Err(ApplyError::NotPlanned(problems.to_string()));
        }
        let Some(account) = &planned.stage.service_account else {
            return Ok(None);
        };
        self.impersonating(&account.user())
            .map(Some)
            .map_err(|e| ApplyError::Impersonation(format!("ServiceAccount {account}: {e}")))
    }

    /// Apply, then write what was applied into `state`, however far it got.
    async fn apply_recorded(
        &self,
        run: &StageRun<'_>,
        state: &mut StageState,
        tally: &mut Tally,
    ) -> Result<(), ApplyError> {
        // What was applied before stays in the inventory until this apply
        // replaces or prunes it: a stage that stops half-way (a failed
        // pre-apply hook, a failed Job) still knows every object it owns, so
        // prune and the initial-install check see them next time.
        let mut carried = state.inventory.clone();
        let mut due = None;
        let result = self
            .apply_steps(run, state, tally, &mut carried, &mut due)
            .await;
        let inventory = std::mem::take(&mut tally.inventory);
        state.inventory = merge_inventory(inventory, carried);
        state.prune = run.planned.stage.prune;
        // "Every Job of the stage again" is used up by this apply; the Jobs
        // it did not reach (a pre-apply hook failed first) keep the request
        // by name. Before the Jobs are known, it stays as it is.
        if let Some(due) = due
            && state.rerun.remove("*")
        {
            let ran: HashSet<&str> = tally.report.jobs.iter().map(|j| j.job.as_str()).collect();
            let missed = due.into_iter().filter(|k| !ran.contains(k.as_str()));
            state.rerun.extend(missed);
        }
        result
    }

    async fn apply_steps(
        &self,
        run: &StageRun<'_>,
        state: &mut StageState,
        tally: &mut Tally,
        carried: &mut Vec<InventoryEntry>,
        due: &mut Option<Vec<String>>,
    ) -> Result<(), ApplyError> {
        let mut prepared = self.prepare(run, state).await?;
        *due = Some(prepared.due_jobs());
        for (item, reason) in prepared.idle() {
            let line = format!(
                "hook {}: not run on this apply ({reason})",
                item.object_ref()
            );
            tally.report.hooks.push(line);
        }
        let unchanged = self.unchanged(run, &prepared.items, state).await;
        if self
            .cluster_was_reset(run, &prepared, state, &unchanged)
            .await
        {
            warn!(
                stage = run.name(),
                revision = %run.revision.short(),
                "every object recorded as applied is gone from the cluster: recorded Job runs are not trusted"
            );
            run.cluster_reset.store(true, Ordering::Relaxed);
        }
        self.apply_foundation(run, &mut prepared, &unchanged, tally)
            .await?;
        self.run_hook_phase(
            run,
            HookPhase::Pre,
            &prepared.hooks(HookPhase::Pre),
            state,
            &unchanged,
            tally,
        )
        .await
        .map_err(|e| hook_phase_failed(HookPhase::Pre, e))?;
        for rank in [Rank::ClusterScoped, Rank::Namespaced] {
            self.apply_group(run, &prepared.rank(rank), &unchanged, tally)
                .await?;
        }
        let waits = run
            .planned
            .stage
            .wait
            .unwrap_or_else(|| prepared.items.iter().any(Item::is_job));
        self.run_jobs(run, &prepared, state, waits, tally).await?;
        self.prune_step(run, &prepared, carried, tally).await;
        if waits {
            self.wait_step(run, &prepared, &unchanged).await?;
        } else if !run.planned.stage.health_checks.is_empty() {
            self.health_check_step(run).await?;
        }
        self.run_hook_phase(
            run,
            HookPhase::Post,
            &prepared.hooks(HookPhase::Post),
            state,
            &unchanged,
            tally,
        )
        .await
        .map_err(|e| hook_phase_failed(HookPhase::Post, e))
    }

    /// Namespaces and CRDs, the CRDs established, then the kinds they define resolved.
    async fn apply_foundation(
        &self,
        run: &StageRun<'_>,
        prepared: &mut Prepared,
        unchanged: &Unchanged,
        tally: &mut Tally,
    ) -> Result<(), ApplyError> {
        let foundation = prepared.foundation();
        self.apply_group(run, &foundation, unchanged, tally).await?;
        for crd in foundation.iter().filter(|i| i.is_crd()) {
            self.wait_crd_established(crd).await?;
        }
        self.resolve_defined(run, prepared).await
    }

    /// Jobs, each by its own rules; all Jobs of the stage at once.
    async fn run_jobs(
        &self,
        run: &StageRun<'_>,
        prepared: &Prepared,
        state: &mut StageState,
        wait: bool,
        tally: &mut Tally,
    ) -> Result<(), ApplyError> {
        // Futures collected first: a lazily mapped iterator inside the stream
        // would make this future's Send-ness unprovable to the compiler.
        let tasks: Vec<_> = prepared
            .jobs()
            .into_iter()
            .map(|(item, hash)| {
                JobTask {
                    engine: self,
                    ctx: run,
                    item,
                    hash,
                    state: &*state,
                    wait,
                    timeout: None,
                    delete: DeletePolicy::default(),
                    hook: None,
                }
                .run()
            })
            .collect();
        let results = stream::iter(tasks)
            .buffer_unordered(self.settings.concurrency.max(1))
            .collect::<Vec<_>>()
            .await;
        let failures: Vec<ApplyError> = results
            .into_iter()
            .filter_map(|result| tally.absorb_job(state, result))
            .collect();
        ApplyError::from_all(failures)
    }

    /// Delete what left the stage (when it prunes); stop tracking it either way.
    async fn prune_step(
        &self,
        run: &StageRun<'_>,
        prepared: &Prepared,
        carried: &mut Vec<InventoryEntry>,
        tally: &mut Tally,
    ) {
        let rendered = prepared.rendered();
        if run.planned.stage.prune {
            let (pruned, notes) = prune(self, run, carried, &rendered).await;
            tally.report.pruned = pruned;
            if !notes.is_empty() {
                tally.report.message = notes.join("; ");
            }
        }
        // Pruned, or deliberately left alone and no longer ours to track.
        carried.retain(|e| rendered.contains(&e.object_ref()));
    }

    /// Flux's `healthChecks` (with `wait` off): exactly those objects, from
    /// this stage, another one or the cluster, each until it is healthy.
    async fn health_check_step(&self, run: &StageRun<'_>) -> Result<(), ApplyError> {
        let timeout = run
            .planned
            .stage
            .timeout
            .unwrap_or(self.settings.default_timeout);
        let mut items = Vec::new();
        for check in &run.planned.stage.health_checks {
            let mut item = Item::new(serde_json::json!({
                "apiVersion": check.api_version,
                "kind": check.kind,
                "metadata": {"name": check.name, "namespace": check.namespace},
            }));
            let resolved = self
                .resolver
                .resolve(&check.api_version, &check.kind)
                .await
                .map_err(|source| ApplyError::Discovery {
                    api_version: check.api_version.clone(),
                    kind: check.kind.clone(),
                    source: Box::new(source),
                })?
                .ok_or_else(|| ApplyError::UnknownKind {
                    object: item.object_ref(),
                    api_version: check.api_version.clone(),
                })?;
            item.place(resolved, run.default_namespace());
            items.push(item);
        }
        wait_all(self, &items.iter().collect::<Vec<_>>(), timeout).await
    }

    /// Health of what this apply changed (Jobs were waited for already).
    async fn wait_step(
        &self,
        run: &StageRun<'_>,
        prepared: &Prepared,
        unchanged: &Unchanged,
    ) -> Result<(), ApplyError> {
        let timeout = run
            .planned
            .stage
            .timeout
            .unwrap_or(self.settings.default_timeout);
        let to_wait: Vec<&Item> = prepared
            .rank(Rank::ClusterScoped)
            .into_iter()
            .chain(prepared.rank(Rank::Namespaced))
            .chain(prepared.foundation())
            .filter(|i| !unchanged.contains_key(&i.object_ref()) && needs_wait(i))
            .collect();
        wait_all(self, &to_wait, timeout).await
    }
}

fn hook_phase_failed(phase: HookPhase, source: ApplyError) -> ApplyError {
    ApplyError::HookPhaseFailed {
        phase,
        source: Box::new(source),
    }
}
