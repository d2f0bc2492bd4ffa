//! Applying one stage: resolve, detect what is unchanged, apply in kind
//! order, run Jobs, prune, wait.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use futures::{StreamExt, stream};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client};
use tracing::{info, warn};

use super::error::{ApplyError, is_immutable_field};
use super::item::{Item, Rank, Role};
use super::jobs::{JobReport, JobTask, JobTaskResult};
use super::prune::prune;
use super::resolve::Resolver;
use super::waits::wait_all;
use crate::events::EventSink;
use crate::hooks::{DeletePolicy, HookKind, HookPhase};
use crate::labels::{FIELD_MANAGER, STAGE_LABEL};
use crate::object::ObjectRef;
use crate::plan::PlannedStage;
use crate::state::{InventoryEntry, StageState};

#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Objects applied at the same time within a stage.
    pub concurrency: usize,
    /// How long a Job's pod may stay stuck (image pull, unschedulable) before
    /// the stage fails, rather than waiting out the whole timeout.
    pub stuck_pod_grace: Duration,
    /// Stage timeout when the stage sets none.
    pub default_timeout: Duration,
    /// Retry interval for `jobRetries` when the stage sets none.
    pub default_retry_interval: Duration,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            concurrency: 8,
            stuck_pod_grace: Duration::from_secs(120),
            default_timeout: Duration::from_secs(300),
            default_retry_interval: Duration::from_secs(60),
        }
    }
}

/// What applying a stage did.
#[derive(Debug, Clone, Default)]
pub struct StageReport {
    pub ready: bool,
    pub message: String,
    pub applied: usize,
    pub unchanged: usize,
    pub recreated: usize,
    pub pruned: usize,
    pub jobs: Vec<JobReport>,
    /// What each hook did (Jobs also appear in `jobs`), and hooks not run on this apply.
    pub hooks: Vec<String>,
}

pub struct Engine {
    pub(super) client: Client,
    pub(super) resolver: Resolver,
    pub(super) events: EventSink,
    pub(super) settings: EngineSettings,
}

/// What every step of one stage's apply needs to know.
/// Objects found unchanged since the last apply, with their recorded entry.
pub(super) type Unchanged = HashMap<ObjectRef, InventoryEntry>;

pub(super) struct StageCtx<'a> {
    pub planned: &'a PlannedStage,
    pub revision: &'a str,
    pub selector: String,
}

impl<'a> StageCtx<'a> {
    pub fn name(&self) -> &str {
        self.planned.stage.name.as_str()
    }
}

/// Server-side apply, forcing conflicts: the repository is the source of
/// truth, and a field last touched by `kubectl edit` or a former tool would
/// otherwise fail every apply until someone intervenes by hand. This is what
/// GitOps promises and what Flux does too.
pub(super) fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

impl Engine {
    pub fn new(client: Client, settings: EngineSettings) -> Self {
        let events = EventSink::new(client.clone(), std::env::var("POD_NAME").ok());
        Self {
            resolver: Resolver::new(client.clone()),
            client,
            events,
            settings,
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn events(&self) -> &EventSink {
        &self.events
    }

    /// Make the cluster match `planned`, updating `state` (inventory, Job
    /// runs). Never panics on cluster errors: they end up in the report.
    pub async fn apply_stage(
        &self,
        planned: &PlannedStage,
        revision: &str,
        state: &mut StageState,
    ) -> StageReport {
        let stage = &planned.stage;
        let ctx = StageCtx {
            planned,
            revision,
            selector: format!("{STAGE_LABEL}={}", stage.name),
        };
        let mut report = StageReport::default();
        match self.apply_inner(&ctx, state, &mut report).await {
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
            Err(message) => {
                report.ready = false;
                report.message = message;
            }
        }
        report
    }

    async fn apply_inner(
        &self,
        ctx: &StageCtx<'_>,
        state: &mut StageState,
        report: &mut StageReport,
    ) -> Result<(), String> {
        // What was applied before stays in the inventory until this apply
        // replaces or prunes it: a stage that stops half-way (a failed
        // pre-apply hook, a failed Job) still knows every object it owns, so
        // prune and the initial-install check see them next time.
        let mut carried = state.inventory.clone();
        let mut inventory = Inventory::new();
        let mut due = None;
        let result = self
            .apply_phases(ctx, state, report, &mut inventory, &mut carried, &mut due)
            .await;
        state.inventory = merge_inventory(inventory, carried);
        state.prune = ctx.planned.stage.prune;
        // "Every Job of the stage again" is used up by this apply; the Jobs
        // it did not reach (a pre-apply hook failed first) keep the request
        // by name. Before the Jobs are known, it stays as it is.
        if let Some(due) = due
            && state.rerun.remove("*")
        {
            let ran: HashSet<&str> = report.jobs.iter().map(|j| j.job.as_str()).collect();
            let missed: Vec<String> = due
                .into_iter()
                .filter(|k| !ran.contains(k.as_str()))
                .collect();
            state.rerun.extend(missed);
        }
        result
    }

    async fn apply_phases(
        &self,
        ctx: &StageCtx<'_>,
        state: &mut StageState,
        report: &mut StageReport,
        inventory: &mut Inventory,
        carried: &mut Vec<InventoryEntry>,
        due: &mut Option<Vec<String>>,
    ) -> Result<(), String> {
        let stage = &ctx.planned.stage;
        let default_ns = stage
            .target_namespace
            .clone()
            .unwrap_or_else(|| "default".to_string());
        let mut items: Vec<Item> = ctx
            .planned
            .objects
            .iter()
            .map(|m| Item::new(m.value.clone()))
            .collect();
        read_hooks(&mut items)?;

        // Kinds this stage's own CRDs define cannot be resolved before the CRDs exist.
        let defined: HashSet<(String, String)> = items
            .iter()
            .filter(|i| i.is_crd())
            .filter_map(crd_group_kind)
            .collect();
        // Objects never applied (unsupported hook kinds) need no kind the cluster knows.
        self.resolve_items(&mut items, &default_ns, |i| {
            i.role != Role::Idle && !defined.contains(&(i.group().to_string(), i.kind.clone()))
        })
        .await?;

        // Before anything is written: whether this is the stage's initial install.
        let initial = if items
            .iter()
            .filter_map(|i| i.hook.as_ref())
            .any(|h| h.depends_on_install())
        {
            self.initial_install(&ctx.selector, &items, state).await?
        } else {
            false
        };
        assign_roles(&mut items, initial);
        *due = Some(
            items
                .iter()
                .filter(|i| i.is_job() && i.role != Role::Idle)
                .map(|i| format!("{}/{}", i.namespace.as_deref().unwrap_or("default"), i.name))
                .collect(),
        );
        for item in items.iter().filter(|i| i.role == Role::Idle) {
            report.hooks.push(format!(
                "hook {}: not run on this apply ({})",
                item.object_ref(),
                idle_reason(item, initial)
            ));
        }

        let unchanged = self.unchanged(ctx, &items, state).await;

        // Namespaces and CRDs, before the pre-apply hooks too: hooks need a
        // namespace to run in and the kinds the stage defines.
        let foundation: Vec<&Item> = items
            .iter()
            .filter(|i| {
                i.role == Role::Main && i.resolved.is_some() && i.rank() == Rank::Foundation
            })
            .collect();
        self.apply_group(ctx, &foundation, &unchanged, inventory, report)
            .await?;
        for crd in foundation.iter().filter(|i| i.is_crd()) {
            self.wait_crd_established(crd).await?;
        }
        if !defined.is_empty() {
            self.resolve_items(&mut items, &default_ns, |i| {
                i.resolved.is_none() && i.role != Role::Idle
            })
            .await?;
        }

        // Every object in its namespace now: what prune keeps.
        let rendered: HashSet<ObjectRef> = items.iter().map(Item::object_ref).collect();

        let pre: Vec<&Item> = items
            .iter()
            .filter(|i| i.role == Role::Hook(HookPhase::Pre))
            .collect();
        self.run_hook_phase(
            ctx,
            HookPhase::Pre,
            &pre,
            state,
            &unchanged,
            inventory,
            report,
        )
        .await
        .map_err(|e| format!("{e}; nothing else of the stage was applied"))?;

        for rank in [Rank::ClusterScoped, Rank::Namespaced] {
            let group: Vec<&Item> = items
                .iter()
                .filter(|i| i.role == Role::Main && i.rank() == rank)
                .collect();
            self.apply_group(ctx, &group, &unchanged, inventory, report)
                .await?;
        }

        // Jobs, each by its own rules; all Jobs of the stage at once.
        let waits = stage.wait.unwrap_or_else(|| items.iter().any(Item::is_job));
        let jobs: Vec<&Item> = items
            .iter()
            .filter(|i| i.role == Role::Main && i.is_job())
            .collect();
        // Futures collected first: a lazily mapped iterator inside the stream
        // would make this future's Send-ness unprovable to the compiler.
        let tasks: Vec<_> = jobs
            .iter()
            .map(|item| {
                JobTask {
                    engine: self,
                    ctx,
                    item,
                    state: &*state,
                    wait: waits,
                    timeout: None,
                    delete: DeletePolicy::default(),
                    hook: None,
                }
                .run()
            })
            .collect();
        let job_results = stream::iter(tasks)
            .buffer_unordered(self.settings.concurrency.max(1))
            .collect::<Vec<_>>()
            .await;
        let job_failures: Vec<String> = job_results
            .into_iter()
            .filter_map(|result| absorb_job(state, inventory, report, result))
            .collect();
        if !job_failures.is_empty() {
            return Err(job_failures.join("; "));
        }

        if stage.prune {
            let (pruned, notes) = prune(self, ctx, carried, &rendered).await;
            report.pruned = pruned;
            if !notes.is_empty() {
                report.message = notes.join("; ");
            }
        }
        // Pruned, or deliberately left alone and no longer ours to track.
        carried.retain(|e| rendered.contains(&e.object_ref()));

        if waits {
            let timeout = stage.timeout.unwrap_or(self.settings.default_timeout);
            let to_wait: Vec<&Item> = items
                .iter()
                .filter(|i| {
                    i.role == Role::Main
                        && !i.is_job()
                        && !unchanged.contains_key(&i.object_ref())
                        && needs_wait(i)
                })
                .collect();
            wait_all(self, &to_wait, timeout).await?;
        }

        let post: Vec<&Item> = items
            .iter()
            .filter(|i| i.role == Role::Hook(HookPhase::Post))
            .collect();
        self.run_hook_phase(
            ctx,
            HookPhase::Post,
            &post,
            state,
            &unchanged,
            inventory,
            report,
        )
        .await
        .map_err(|e| format!("{e}; the stage's other objects stay applied"))?;
        Ok(())
    }

    /// Whether none of the stage's (non-hook) objects existed in the cluster
    /// before this apply. Cheap on every apply but the first: an inventory
    /// entry of one of them answers no at once. Without one (first apply,
    /// or a lost state), one LIST per kind and namespace by the stage label
    /// decides. A stage holding nothing but hooks is always on its initial
    /// install.
    pub(super) async fn initial_install(
        &self,
        selector: &str,
        items: &[Item],
        state: &StageState,
    ) -> Result<bool, String> {
        let main: Vec<&Item> = items
            .iter()
            .filter(|i| i.hook.is_none() && i.role == Role::Main && i.resolved.is_some())
            .collect();
        let recorded: HashSet<ObjectRef> = state.inventory.iter().map(|e| e.object_ref()).collect();
        if main.iter().any(|i| recorded.contains(&i.object_ref())) {
            return Ok(false);
        }
        let mut seen = HashSet::new();
        for item in main {
            if !seen.insert((
                item.api_version.clone(),
                item.kind.clone(),
                item.namespace.clone(),
            )) {
                continue;
            }
            let Some(api) = item.api(&self.client) else {
                continue;
            };
            let list = api
                .list_metadata(&ListParams::default().labels(selector).limit(1))
                .await
                .map_err(|e| {
                    format!(
                        "cannot tell whether this is the stage's initial install: listing {}: {e}",
                        item.kind
                    )
                })?;
            if !list.items.is_empty() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Resolve the items `pick` selects; every unknown kind is reported at once.
    pub(super) async fn resolve_items(
        &self,
        items: &mut [Item],
        default_ns: &str,
        pick: impl Fn(&Item) -> bool,
    ) -> Result<(), String> {
        let mut unknown = Vec::new();
        for item in items.iter_mut().filter(|i| pick(i)) {
            match self.resolver.resolve(&item.api_version, &item.kind).await {
                Ok(Some(resolved)) => item.place(resolved, default_ns),
                Ok(None) => unknown.push(
                    ApplyError::UnknownKind {
                        object: item.object_ref(),
                        api_version: item.api_version.clone(),
                        kind: item.kind.clone(),
                    }
                    .to_string(),
                ),
                Err(e) => {
                    return Err(format!(
                        "discovery of {}/{}: {e}",
                        item.api_version, item.kind
                    ));
                }
            }
        }
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(unknown.join("; "))
        }
    }

    /// Objects whose rendered form is what was last applied and whose live
    /// resourceVersion has not moved since: one LIST (metadata only) per kind
    /// and namespace, instead of one request per object.
    async fn unchanged(&self, ctx: &StageCtx<'_>, items: &[Item], state: &StageState) -> Unchanged {
        let recorded: HashMap<_, &InventoryEntry> = state
            .inventory
            .iter()
            .map(|e| (e.object_ref(), e))
            .collect();
        let mut groups: BTreeMap<(String, String, Option<String>), Vec<&Item>> = BTreeMap::new();
        for item in items.iter().filter(|i| i.resolved.is_some() && !i.is_job()) {
            if recorded
                .get(&item.object_ref())
                .is_some_and(|e| e.hash == item.hash && !e.resource_version.is_empty())
            {
                groups
                    .entry((
                        item.api_version.clone(),
                        item.kind.clone(),
                        item.namespace.clone(),
                    ))
                    .or_default()
                    .push(item);
            }
        }
        let mut unchanged = Unchanged::new();
        for group in groups.values() {
            let Some(api) = group[0].api(&self.client) else {
                continue;
            };
            let Ok(list) = api
                .list_metadata(&ListParams::default().labels(&ctx.selector))
                .await
            else {
                continue;
            };
            let live: HashMap<&str, String> = list
                .items
                .iter()
                .filter_map(|o| {
                    Some((
                        o.metadata.name.as_deref()?,
                        super::drift::fingerprint(&o.metadata),
                    ))
                })
                .collect();
            for item in group {
                let oref = item.object_ref();
                if let Some(entry) = recorded.get(&oref)
                    && live.get(item.name.as_str()) == Some(&entry.resource_version)
                {
                    unchanged.insert(oref, (*entry).clone());
                }
            }
        }
        unchanged
    }

    async fn apply_group(
        &self,
        ctx: &StageCtx<'_>,
        group: &[&Item],
        unchanged: &Unchanged,
        inventory: &mut Inventory,
        report: &mut StageReport,
    ) -> Result<(), String> {
        let tasks: Vec<_> = group
            .iter()
            .map(|item| self.apply_unless_unchanged(ctx, item, unchanged))
            .collect();
        let results = stream::iter(tasks)
            .buffer_unordered(self.settings.concurrency.max(1))
            .collect::<Vec<_>>()
            .await;
        let mut errors = Vec::new();
        for (item, result) in results {
            match result {
                Ok(None) => {
                    report.unchanged += 1;
                    if let Some(recorded) = unchanged.get(&item.object_ref()) {
                        inventory.insert(inv_key(recorded), recorded.clone());
                    }
                }
                Ok(Some(applied)) => {
                    report.applied += 1;
                    if applied.recreated {
                        report.recreated += 1;
                    }
                    let entry = item.inventory_entry(applied.resource_version);
                    inventory.insert(inv_key(&entry), entry);
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    async fn apply_unless_unchanged<'i>(
        &self,
        ctx: &StageCtx<'_>,
        item: &'i Item,
        unchanged: &Unchanged,
    ) -> (&'i Item, Result<Option<Applied>, ApplyError>) {
        if unchanged.contains_key(&item.object_ref()) {
            return (item, Ok(None));
        }
        (item, self.apply_object(ctx, item).await.map(Some))
    }

    async fn wait_crd_established(&self, crd: &Item) -> Result<(), String> {
        let api: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        let wait = await_condition(api, &crd.name, conditions::is_crd_established());
        match tokio::time::timeout(self.settings.default_timeout, wait).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!(
                "{}: waiting for Established: {e}",
                crd.object_ref()
            )),
            Err(_) => Err(format!("{}: not Established in time", crd.object_ref())),
        }
    }
}

pub(super) struct Applied {
    pub resource_version: String,
    pub recreated: bool,
}

impl Engine {
    /// Server-side apply one object; an immutable-field rejection recreates it
    /// when the stage allows (`force`), and fails naming it otherwise.
    pub(super) async fn apply_object(
        &self,
        ctx: &StageCtx<'_>,
        item: &Item,
    ) -> Result<Applied, ApplyError> {
        let api = item.api(&self.client).ok_or_else(|| ApplyError::Invalid {
            object: item.object_ref(),
            message: "kind not resolved".into(),
        })?;
        match api
            .patch(&item.name, &apply_params(), &Patch::Apply(&item.value))
            .await
        {
            Ok(obj) => Ok(Applied {
                resource_version: super::drift::fingerprint(&obj.metadata),
                recreated: false,
            }),
            Err(e) if is_immutable_field(&e) => {
                let message = super::error::api_status(&e)
                    .map(|s| s.message.clone())
                    .unwrap_or_default();
                if !ctx.planned.stage.force {
                    return Err(ApplyError::Immutable {
                        object: item.object_ref(),
                        message,
                    });
                }
                info!(stage = ctx.name(), object = %item.object_ref(), "immutable field changed; recreating (force)");
                super::recreate::delete_and_wait(self, &api, item).await?;
                let created = api
                    .patch(&item.name, &apply_params(), &Patch::Apply(&item.value))
                    .await
                    .map_err(|source| ApplyError::Kube {
                        object: item.object_ref(),
                        source,
                    })?;
                let reference = item.reference(created.metadata.uid.clone());
                self.events
                    .normal(
                        &reference,
                        "Recreated",
                        "Recreate",
                        &format!("recreated because an immutable field changed: {message}"),
                    )
                    .await;
                Ok(Applied {
                    resource_version: super::drift::fingerprint(&created.metadata),
                    recreated: true,
                })
            }
            Err(e) => {
                warn!(stage = ctx.name(), object = %item.object_ref(), error = %e, "apply failed");
                Err(match super::error::api_status(&e) {
                    Some(status) => ApplyError::Rejected {
                        object: item.object_ref(),
                        message: status.message.clone(),
                    },
                    None => ApplyError::Kube {
                        object: item.object_ref(),
                        source: e,
                    },
                })
            }
        }
    }
}

pub(super) fn inv_key(e: &InventoryEntry) -> (String, String, Option<String>, String) {
    (
        e.api_version.clone(),
        e.kind.clone(),
        e.namespace.clone(),
        e.name.clone(),
    )
}

/// Applied objects of this apply, by identity.
pub(super) type Inventory = BTreeMap<(String, String, Option<String>, String), InventoryEntry>;

/// This apply's entries, and the earlier ones it did not replace.
fn merge_inventory(mut inventory: Inventory, carried: Vec<InventoryEntry>) -> Vec<InventoryEntry> {
    for entry in carried {
        inventory.entry(inv_key(&entry)).or_insert(entry);
    }
    inventory.into_values().collect()
}

/// Record a Job task's runs and inventory entry; its failure, if any.
pub(super) fn absorb_job(
    state: &mut StageState,
    inventory: &mut Inventory,
    report: &mut StageReport,
    result: JobTaskResult,
) -> Option<String> {
    let had_history = state.jobs.contains_key(&result.report.job);
    for (key, run) in result.runs {
        state.jobs.entry(key).or_default().record(run);
    }
    if had_history || state.jobs.contains_key(&result.report.job) {
        // `status` says which Jobs are hooks.
        state
            .jobs
            .entry(result.report.job.clone())
            .or_default()
            .hook = result.report.hook.map(|p| p.label().to_string());
    }
    if let Some(taken) = &result.rerun_taken {
        state.rerun.remove(taken);
    }
    // A Job not in the cluster any more (TTL, a hook's delete policy) keeps
    // its earlier entry, carried over by `merge_inventory`.
    if let Some(entry) = result.inventory {
        inventory.insert(inv_key(&entry), entry);
    }
    if result.recreated {
        report.recreated += 1;
    }
    report.jobs.push(result.report);
    result.failure
}

/// Read every item's hook annotations; an unreadable one fails the stage.
pub(super) fn read_hooks(items: &mut [Item]) -> Result<(), String> {
    let mut errors = Vec::new();
    for item in items.iter_mut() {
        match crate::hooks::parse(&item.value, &item.object_ref().to_string()) {
            Ok(parsed) => match parsed.kind {
                HookKind::NotAHook => {}
                HookKind::Hook(hook) => item.hook = Some(hook),
                HookKind::Unsupported => item.role = Role::Idle,
            },
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

pub(super) fn assign_roles(items: &mut [Item], initial: bool) {
    for item in items.iter_mut() {
        if let Some(hook) = &item.hook {
            item.role = match hook.phase(initial) {
                Some(phase) => Role::Hook(phase),
                None => Role::Idle,
            };
        }
    }
}

pub(super) fn idle_reason(item: &Item, initial: bool) -> &'static str {
    match (&item.hook, initial) {
        (None, _) => "its hook kinds are not supported",
        (Some(_), true) => "runs on upgrades only",
        (Some(_), false) => "runs on the initial install only",
    }
}

/// `(group, kind)` a CRD defines.
pub(super) fn crd_group_kind(item: &Item) -> Option<(String, String)> {
    let spec = item.value.get("spec")?;
    let group = spec.get("group")?.as_str()?.to_string();
    let kind = spec.pointer("/names/kind")?.as_str()?.to_string();
    Some((group, kind))
}

/// Kinds whose readiness means more than "applied".
pub(super) fn needs_wait(item: &Item) -> bool {
    !matches!(
        item.kind.as_str(),
        "ConfigMap"
            | "Secret"
            | "Service"
            | "ServiceAccount"
            | "Namespace"
            | "Role"
            | "RoleBinding"
            | "ClusterRole"
            | "ClusterRoleBinding"
            | "CronJob"
            | "Lease"
            | "Event"
            | "PersistentVolumeClaim"
            | "NetworkPolicy"
            | "PodDisruptionBudget"
            | "Ingress"
            | "LimitRange"
            | "ResourceQuota"
    ) && item.resolved.is_some()
}
