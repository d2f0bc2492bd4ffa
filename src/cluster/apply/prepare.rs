//! One prepared stage: the planned objects read (hooks), resolved to API
//! resources, placed in their namespaces, given their role on this apply
//! (initial install or upgrade), and sorted into the parts the apply goes
//! through in order. Applying and `diff` both start here.

use std::collections::HashSet;

use kube::api::ListParams;

use super::api_call::{Verb, call};
use super::engine::{Engine, StageRun};
use super::error::ApplyError;
use super::item::{Item, Rank, Role};
use crate::cluster::state::StageState;
use crate::core::hooks::HookPhase;
use crate::core::object::{ObjectRef, SpecHash};

pub(super) struct Prepared {
    pub items: Vec<Item>,
    /// Whether this is the stage's initial install (hooks run by it).
    pub initial: bool,
    /// `(group, kind)` the stage's own CRDs define.
    pub defined: HashSet<(String, String)>,
}

impl Prepared {
    fn with_role(&self, role: Role) -> impl Iterator<Item = &Item> {
        self.items.iter().filter(move |i| i.role == role)
    }

    /// Namespaces and CRDs: before the pre-apply hooks too, which need a
    /// namespace to run in and the kinds the stage defines.
    pub fn foundation(&self) -> Vec<&Item> {
        self.with_role(Role::Main)
            .filter(|i| i.resolved.is_some() && i.rank() == Rank::Foundation)
            .collect()
    }

    /// A hook phase's objects, by ascending weight (then kind and name).
    pub fn hooks(&self, phase: HookPhase) -> Vec<&Item> {
        let mut hooks: Vec<&Item> = self.with_role(Role::Hook(phase)).collect();
        hooks.sort_by_key(|i| (i.hook.as_ref().map_or(0, |h| h.weight), &i.kind, &i.name));
        hooks
    }

    /// Ordinary objects of one rank (cluster-scoped, namespaced).
    pub fn rank(&self, rank: Rank) -> Vec<&Item> {
        self.with_role(Role::Main)
            .filter(|i| i.rank() == rank)
            .collect()
    }

    /// The stage's Jobs that are not hooks, each with its spec hash.
    pub fn jobs(&self) -> Vec<(&Item, &SpecHash)> {
        self.with_role(Role::Main)
            .filter_map(|i| Some((i, i.job.as_ref()?)))
            .collect()
    }

    /// Hooks not run on this apply, each with why.
    pub fn idle(&self) -> Vec<(&Item, &'static str)> {
        self.with_role(Role::Idle)
            .map(|i| (i, idle_reason(i, self.initial)))
            .collect()
    }

    /// Every object the stage renders, in its namespace: what prune keeps.
    pub fn rendered(&self) -> HashSet<ObjectRef> {
        self.items.iter().map(Item::object_ref).collect()
    }

    /// `namespace/name` of every Job this apply may run.
    pub fn due_jobs(&self) -> Vec<String> {
        self.items
            .iter()
            .filter(|i| i.is_job() && i.role != Role::Idle)
            .map(|i| format!("{}/{}", i.namespace.as_deref().unwrap_or("default"), i.name))
            .collect()
    }
}

impl Engine {
    /// Read, resolve and give roles to the stage's objects. Kinds the
    /// stage's own CRDs define stay unresolved until [`Self::resolve_defined`].
    pub(super) async fn prepare(
        &self,
        run: &StageRun<'_>,
        state: &StageState,
    ) -> Result<Prepared, ApplyError> {
        let mut items: Vec<Item> = run.planned.objects.iter().map(Item::planned).collect();
        let defined: HashSet<(String, String)> = items
            .iter()
            .filter(|i| i.is_crd())
            .filter_map(crd_group_kind)
            .collect();
        // Objects never applied (unsupported hook kinds) need no kind the cluster knows.
        self.resolve_items(&mut items, run.default_namespace(), |i| {
            i.role != Role::Idle && !defined.contains(&(i.group().to_string(), i.kind.clone()))
        })
        .await?;
        // Before anything is written: whether this is the stage's initial install.
        let depends = items
            .iter()
            .filter_map(|i| i.hook.as_ref())
            .any(|h| h.depends_on_install());
        let initial = depends && self.initial_install(&run.selector, &items, state).await?;
        assign_roles(&mut items, initial);
        Ok(Prepared {
            items,
            initial,
            defined,
        })
    }

    /// Resolve the kinds the stage's CRDs define, once they are established.
    pub(super) async fn resolve_defined(
        &self,
        run: &StageRun<'_>,
        prepared: &mut Prepared,
    ) -> Result<(), ApplyError> {
        if prepared.defined.is_empty() {
            return Ok(());
        }
        self.resolve_items(&mut prepared.items, run.default_namespace(), |i| {
            i.resolved.is_none() && i.role != Role::Idle
        })
        .await
    }

    /// Whether none of the stage's (non-hook) objects existed in the cluster
    /// before this apply. Cheap on every apply but the first: an inventory
    /// entry of one of them answers no at once. Without one (first apply,
    /// or a lost state), one LIST per kind and namespace by the stage label
    /// decides. A stage holding nothing but hooks is always on its initial
    /// install.
    async fn initial_install(
        &self,
        selector: &str,
        items: &[Item],
        state: &StageState,
    ) -> Result<bool, ApplyError> {
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
            let key = (&item.api_version, &item.kind, &item.namespace);
            if !seen.insert(key) {
                continue;
            }
            let Some(api) = item.api(&self.client) else {
                continue;
            };
            let target = format!(
                "{} in {}",
                item.kind,
                item.namespace.as_deref().unwrap_or("the cluster")
            );
            let params = ListParams::default().labels(selector).limit(1);
            let list = call(Verb::List, &target, || api.list_metadata(&params))
                .await
                .map_err(|source| ApplyError::InitialInstall {
                    source: Box::new(source),
                })?;
            if !list.items.is_empty() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Resolve the items `pick` selects; every unknown kind is reported at once.
    async fn resolve_items(
        &self,
        items: &mut [Item],
        default_ns: &str,
        pick: impl Fn(&Item) -> bool,
    ) -> Result<(), ApplyError> {
        let mut unknown = Vec::new();
        for item in items.iter_mut().filter(|i| pick(i)) {
            match self.resolver.resolve(&item.api_version, &item.kind).await {
                Ok(Some(resolved)) => item.place(resolved, default_ns),
                Ok(None) => unknown.push(ApplyError::UnknownKind {
                    object: item.object_ref(),
                    api_version: item.api_version.clone(),
                }),
                Err(source) => {
                    return Err(ApplyError::Discovery {
                        api_version: item.api_version.clone(),
                        kind: item.kind.clone(),
                        source: Box::new(source),
                    });
                }
            }
        }
        ApplyError::from_all(unknown)
    }
}

fn assign_roles(items: &mut [Item], initial: bool) {
    for item in items.iter_mut() {
        if let Some(hook) = &item.hook {
            item.role = match hook.phase(initial) {
                Some(phase) => Role::Hook(phase),
                None => Role::Idle,
            };
        }
    }
}

fn idle_reason(item: &Item, initial: bool) -> &'static str {
    match (&item.hook, initial) {
        (None, _) => "its hook kinds are not supported",
        (Some(_), true) => "runs on upgrades only",
        (Some(_), false) => "runs on the initial install only",
    }
}

/// `(group, kind)` a CRD defines.
fn crd_group_kind(item: &Item) -> Option<(String, String)> {
    let spec = item.value.get("spec")?;
    let group = spec.get("group")?.as_str()?.to_string();
    let kind = spec.pointer("/names/kind")?.as_str()?.to_string();
    Some((group, kind))
}
