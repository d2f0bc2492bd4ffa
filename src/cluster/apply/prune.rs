//! Deleting what left the repository: objects in the stage's inventory from
//! the last apply that the new render no longer holds.

use std::collections::HashSet;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tracing::{info, warn};

use super::api_call::{CallError, Verb, call};
use super::engine::{Engine, StageRun};
use super::job_finalizer::{holds, release_by_patch};
use crate::cluster::state::{InventoryEntry, StageState};
use crate::core::labels::{MANAGED_BY_KEY, MANAGED_BY_VALUE, STAGE_LABEL};
use crate::core::object::ObjectRef;

/// Delete inventory entries not in `keep`; returns how many were deleted and
/// notes on those deliberately left in place.
pub(super) async fn prune(
    engine: &Engine,
    run: &StageRun<'_>,
    old: &[InventoryEntry],
    keep: &HashSet<ObjectRef>,
) -> (usize, Vec<String>) {
    prune_entries(engine, run.name(), old, keep).await
}

pub(super) async fn prune_entries(
    engine: &Engine,
    stage: &str,
    old: &[InventoryEntry],
    keep: &HashSet<ObjectRef>,
) -> (usize, Vec<String>) {
    let mut doomed: Vec<&InventoryEntry> = old
        .iter()
        .filter(|e| !keep.contains(&e.object_ref()))
        .collect();
    // Namespaces and CRDs last: deleting them first would take the rest with
    // them before we had checked the rest was ours to delete.
    doomed.sort_by_key(|e| matches!(e.kind.as_str(), "Namespace" | "CustomResourceDefinition"));
    let mut pruned = 0;
    let mut notes = Vec::new();
    for entry in doomed {
        let oref = entry.object_ref();
        match prune_one(engine, stage, entry).await {
            Ok(true) => {
                info!(stage, object = %oref, "pruned");
                pruned += 1;
            }
            Ok(false) => {}
            Err(note) => {
                warn!(stage, object = %oref, "{note}");
                notes.push(format!("{oref}: {note}"));
            }
        }
    }
    (pruned, notes)
}

/// Why an object of the inventory was not pruned.
#[derive(Debug, thiserror::Error)]
enum NotPruned {
    #[error(
        "not pruned: it lacks the labels {MANAGED_BY_KEY}={MANAGED_BY_VALUE}, {STAGE_LABEL}={stage}"
    )]
    NotOurs { stage: String },
    #[error("Namespace not pruned: it still holds {0}, which stagegate does not manage")]
    ForeignObjects(String),
    #[error(transparent)]
    Call(#[from] CallError),
}

async fn prune_one(
    engine: &Engine,
    stage: &str,
    entry: &InventoryEntry,
) -> Result<bool, NotPruned> {
    let Some(resolved) = engine
        .resolver
        .resolve(&entry.api_version, &entry.kind)
        .await?
    else {
        return Ok(false);
    };
    let api: Api<kube::api::DynamicObject> = match &entry.namespace {
        Some(ns) if resolved.namespaced => {
            Api::namespaced_with(engine.client.clone(), ns, &resolved.resource)
        }
        _ => Api::all_with(engine.client.clone(), &resolved.resource),
    };
    let object = entry.object_ref();
    let Some(live) = call(Verb::Get, &object, || api.get_opt(&entry.name)).await? else {
        return Ok(false);
    };
    let labels = live.metadata.labels.clone().unwrap_or_default();
    if labels.get(MANAGED_BY_KEY).map(String::as_str) != Some(MANAGED_BY_VALUE)
        || labels.get(STAGE_LABEL).map(String::as_str) != Some(stage)
    {
        return Err(NotPruned::NotOurs {
            stage: stage.to_string(),
        });
    }
    if entry.kind == "Namespace"
        && entry.api_version == "v1"
        && let Some(foreign) = unmanaged_in_namespace(&engine.client, &entry.name).await
    {
        return Err(NotPruned::ForeignObjects(foreign));
    }
    // A Job still held for its outcome is let go: pruned, nobody will
    // read its end, and the deletion must not wait on us.
    // (A Job its TTL already deleted then goes at once: pruned all the same.)
    let released = holds(live.metadata.finalizers.as_deref());
    if released {
        release_by_patch(&api, &entry.name, &object.to_string()).await?;
    }
    let params = DeleteParams::background();
    match call(Verb::Delete, &object, || api.delete(&entry.name, &params)).await {
        Ok(_) => Ok(true),
        Err(e) if e.is_not_found() => Ok(released),
        Err(e) => Err(e.into()),
    }
}

/// An object in `ns` that neither stagegate nor a controller owns, if any.
/// Looks at the kinds people put in namespaces by hand; not exhaustive.
async fn unmanaged_in_namespace(client: &Client, ns: &str) -> Option<String> {
    async fn first<K>(client: &Client, ns: &str) -> Option<String>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let api: Api<K> = Api::namespaced(client.clone(), ns);
        let list = api.list_metadata(&ListParams::default()).await.ok()?;
        list.items.iter().find_map(|o| {
            let meta = &o.metadata;
            let ours = meta
                .labels
                .as_ref()
                .and_then(|l| l.get(MANAGED_BY_KEY))
                .map(String::as_str)
                == Some(MANAGED_BY_VALUE);
            let owned = meta
                .owner_references
                .as_ref()
                .is_some_and(|r| !r.is_empty());
            let name = meta.name.clone().unwrap_or_default();
            // The cluster puts this ConfigMap in every namespace.
            let builtin = name == "kube-root-ca.crt";
            (!ours && !owned && !builtin)
                .then(|| format!("{} {name}", K::kind(&K::DynamicType::default())))
        })
    }
    if let Some(found) = first::<ConfigMap>(client, ns).await {
        return Some(found);
    }
    if let Some(found) = first::<Secret>(client, ns).await {
        return Some(found);
    }
    if let Some(found) = first::<Service>(client, ns).await {
        return Some(found);
    }
    if let Some(found) = first::<Deployment>(client, ns).await {
        return Some(found);
    }
    if let Some(found) = first::<StatefulSet>(client, ns).await {
        return Some(found);
    }
    if let Some(found) = first::<Job>(client, ns).await {
        return Some(found);
    }
    first::<Pod>(client, ns).await
}

impl Engine {
    /// Delete the objects of a stage that is no longer in the repository, if
    /// it pruned when it was last applied: its inventory, and the Jobs its
    /// runs name. A Job journaled at its creation by an agent killed before
    /// the stage ended is in no inventory, and would otherwise hold its
    /// outcome finalizer for ever once its TTL deleted it.
    pub async fn prune_removed_stage(
        &self,
        stage: &str,
        recorded: &StageState,
    ) -> (usize, Vec<String>) {
        let mut doomed = recorded.inventory.clone();
        for key in recorded.jobs.keys() {
            let entry = job_entry(key);
            if !doomed.iter().any(|e| e.object_ref() == entry.object_ref()) {
                doomed.push(entry);
            }
        }
        prune_entries(self, stage, &doomed, &HashSet::new()).await
    }
}

/// The inventory entry of a Job known by its run's key, `namespace/name`.
fn job_entry(key: &str) -> InventoryEntry {
    let (namespace, name) = key.split_once('/').unwrap_or(("default", key));
    InventoryEntry {
        api_version: "batch/v1".into(),
        kind: "Job".into(),
        namespace: Some(namespace.to_string()),
        name: name.to_string(),
        hash: String::new(),
        resource_version: String::new(),
    }
}
