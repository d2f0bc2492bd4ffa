//! The deployment controller's part that users see: a Deployment owns one
//! ReplicaSet per pod template it has had (`<name>-<pod-template-hash>`),
//! numbered by the `deployment.kubernetes.io/revision` annotation. A new
//! template gets a new ReplicaSet scaled to `spec.replicas` while the old
//! ones go to 0; going back to an old template (`kubectl rollout undo`)
//! revives its ReplicaSet under the next revision. Old empty ReplicaSets
//! beyond `revisionHistoryLimit` are deleted. The rollout's status and
//! timing stay with rollout.rs and its `sim.stagegate.dev/rollout`
//! annotation: with `hang` or `fail`, the new ReplicaSet gets one pod that
//! never becomes ready and the old ones keep theirs.

use std::sync::Arc;

use serde_json::{Value, json};

use super::pods::{TEMPLATE_HASH, controller_index, owner_ref, template_hash, without_nulls};
use super::recorder::{Regarding, record};
use super::rollout::ROLLOUT;
use crate::ops::{DeleteOpts, WriteOpts};
use crate::resources::ResourceType;
use crate::store::Store;
use crate::util::{annotation, i64_at, name_of, namespace_of, uid_of};

pub const REVISION: &str = "deployment.kubernetes.io/revision";
const DESIRED: &str = "deployment.kubernetes.io/desired-replicas";
const MAX: &str = "deployment.kubernetes.io/max-replicas";
/// Annotations of the Deployment that are not copied to its ReplicaSets.
const NOT_COPIED: [&str; 3] = [
    REVISION,
    "kubectl.kubernetes.io/last-applied-configuration",
    "deployment.kubernetes.io/revision-history",
];

fn internal() -> WriteOpts {
    WriteOpts {
        manager: "kube-controller-manager".into(),
        api_version: "apps/v1".into(),
        ..Default::default()
    }
}

pub fn reconcile_all(store: &mut Store, settled: &mut super::Settled) {
    let (Some(deployments), Some(replicasets)) = (
        store.registry.get("apps", "deployments").cloned(),
        store.registry.get("apps", "replicasets").cloned(),
    ) else {
        return;
    };
    let owned = controller_index(store, &replicasets.key(), "Deployment");
    for dep in store.list(&deployments.key(), None) {
        if dep.pointer("/metadata/deletionTimestamp").is_some()
            || dep.pointer("/spec/paused") == Some(&json!(true))
        {
            continue;
        }
        let sets = owned.get(uid_of(&dep)).cloned().unwrap_or_default();
        // Its template and ReplicaSets are all it reads.
        let Err(stamp) = settled.check(&dep, &sets) else {
            continue;
        };
        let rv_before = store.current_rv();
        reconcile(store, &deployments, &replicasets, &dep, sets);
        settled.settle_if(&dep, stamp, rv_before, store);
    }
    settled.end_tick();
}

fn revision(obj: &Value) -> i64 {
    annotation(obj, REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// The ReplicaSet's template as the Deployment's would be: without the hash label.
fn template_without_hash(rs: &Value) -> Value {
    let mut t = rs.pointer("/spec/template").cloned().unwrap_or(json!({}));
    if let Some(labels) = t
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(TEMPLATE_HASH);
    }
    without_nulls(&t)
}

fn reconcile(
    store: &mut Store,
    deployments: &ResourceType,
    replicasets: &ResourceType,
    dep: &Value,
    sets: Vec<Arc<Value>>,
) {
    let template = without_nulls(&dep.pointer("/spec/template").cloned().unwrap_or(json!({})));
    let max_revision = sets.iter().map(|rs| revision(rs)).max().unwrap_or(0);
    let current = sets
        .iter()
        .find(|rs| template_without_hash(rs) == template)
        .cloned();
    let replicas = i64_at(dep, "/spec/replicas").unwrap_or(1);
    let stuck = matches!(annotation(dep, ROLLOUT), Some("hang" | "fail"));
    let new_replicas = if stuck { replicas.min(1) } else { replicas };
    let new_rs = match current {
        Some(rs) => {
            let rev = if revision(&rs) < max_revision {
                max_revision + 1
            } else {
                revision(&rs)
            };
            // A stuck rollout does not take pods away from a ReplicaSet
            // that already had them before it got stuck.
            let have = i64_at(&rs, "/spec/replicas").unwrap_or(0);
            let want = if stuck {
                have.max(new_replicas).min(replicas)
            } else {
                new_replicas
            };
            let next = sync_new(dep, &rs, rev, want);
            if next != *rs {
                let stored = store.put(replicasets, next);
                scaled(store, dep, &stored, have, want);
                stored
            } else {
                rs
            }
        }
        None => {
            let rs = new_replicaset(dep, &template, max_revision + 1, new_replicas);
            match store.create(replicasets, namespace_of(dep), rs, &internal()) {
                Ok(rs) => {
                    scaled(store, dep, &rs, 0, new_replicas);
                    rs
                }
                Err(e) => {
                    tracing::debug!(deployment = name_of(dep), error = %e, "creating the ReplicaSet");
                    return;
                }
            }
        }
    };
    let rev = revision(&new_rs).to_string();
    if annotation(dep, REVISION) != Some(rev.as_str()) {
        let mut next = dep.clone();
        crate::util::ensure_map(&mut next, &["metadata", "annotations"])
            .insert(REVISION.into(), json!(rev));
        store.put(deployments, next);
    }
    let mut old: Vec<&Arc<Value>> = sets
        .iter()
        .filter(|rs| uid_of(rs) != uid_of(&new_rs))
        .collect();
    if !stuck {
        for rs in &old {
            let have = i64_at(rs, "/spec/replicas").unwrap_or(0);
            if have != 0 {
                let mut next = (***rs).clone();
                next["spec"]["replicas"] = json!(0);
                store.put(replicasets, next);
                scaled(store, dep, rs, have, 0);
            }
        }
    }
    // The oldest empty ReplicaSets beyond the history limit go.
    let limit = i64_at(dep, "/spec/revisionHistoryLimit")
        .unwrap_or(10)
        .max(0) as usize;
    old.retain(|rs| {
        i64_at(rs, "/spec/replicas").unwrap_or(0) == 0
            && i64_at(rs, "/status/replicas").unwrap_or(0) == 0
    });
    old.sort_by_key(|rs| revision(rs));
    let excess = old.len().saturating_sub(limit);
    for rs in old.into_iter().take(excess) {
        let _ = store.delete(
            replicasets,
            namespace_of(rs),
            name_of(rs),
            &DeleteOpts::default(),
        );
    }
}

/// The deployment-controller's `ScalingReplicaSet` Event.
fn scaled(store: &mut Store, dep: &Value, rs: &Value, from: i64, to: i64) {
    if from == to {
        return;
    }
    let direction = if to > from { "up" } else { "down" };
    let message = format!(
        "Scaled {direction} replica set {} to {to} from {from}",
        name_of(rs)
    );
    let about = Regarding {
        obj: dep,
        api_version: "apps/v1",
        kind: "Deployment",
    };
    record(
        store,
        about,
        "deployment-controller",
        "Normal",
        "ScalingReplicaSet",
        &message,
    );
}

fn copied_annotations(dep: &Value) -> serde_json::Map<String, Value> {
    dep.pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .map(|a| {
            a.iter()
                .filter(|(k, _)| !NOT_COPIED.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// The current ReplicaSet brought in line with its Deployment.
fn sync_new(dep: &Value, rs: &Value, revision: i64, replicas: i64) -> Value {
    let mut next = rs.clone();
    let mut annotations = copied_annotations(dep);
    let desired = i64_at(dep, "/spec/replicas").unwrap_or(1);
    annotations.insert(REVISION.into(), json!(revision.to_string()));
    annotations.insert(DESIRED.into(), json!(desired.to_string()));
    annotations.insert(MAX.into(), json!(max_replicas(dep, desired).to_string()));
    next["metadata"]["annotations"] = Value::Object(annotations);
    next["spec"]["replicas"] = json!(replicas);
    next
}

/// `replicas` plus the rolling update's surge (25% by default, rounded up).
fn max_replicas(dep: &Value, desired: i64) -> i64 {
    let surge = dep
        .pointer("/spec/strategy/rollingUpdate/maxSurge")
        .cloned()
        .unwrap_or(json!("25%"));
    let extra = match surge {
        Value::Number(n) => n.as_i64().unwrap_or(0),
        Value::String(s) => s
            .trim_end_matches('%')
            .parse::<i64>()
            .map(|p| (desired * p + 99) / 100)
            .unwrap_or(0),
        _ => 0,
    };
    if dep.pointer("/spec/strategy/type") == Some(&json!("Recreate")) {
        desired
    } else {
        desired + extra
    }
}

fn new_replicaset(dep: &Value, template: &Value, revision: i64, replicas: i64) -> Value {
    let hash = template_hash(template, namespace_of(dep));
    let mut template = template.clone();
    crate::util::ensure_map(&mut template, &["metadata", "labels"])
        .insert(TEMPLATE_HASH.into(), json!(hash));
    let labels = template
        .pointer("/metadata/labels")
        .cloned()
        .unwrap_or(json!({}));
    let mut selector = dep.pointer("/spec/selector").cloned().unwrap_or(json!({}));
    crate::util::ensure_map(&mut selector, &["matchLabels"])
        .insert(TEMPLATE_HASH.into(), json!(hash));
    let rs = json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": format!("{}-{hash}", name_of(dep)),
            "namespace": namespace_of(dep),
            "labels": labels,
            "ownerReferences": [owner_ref(dep, "apps/v1", "Deployment")],
        },
        "spec": {
            "replicas": replicas,
            "minReadySeconds": i64_at(dep, "/spec/minReadySeconds").unwrap_or(0),
            "selector": selector,
            "template": template,
        },
    });
    sync_new(dep, &rs, revision, replicas)
}
