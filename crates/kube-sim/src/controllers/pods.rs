//! Pods of ReplicaSets, StatefulSets and DaemonSets, made from their
//! templates as the real controllers make them (names, labels, owner
//! references). The simulated kubelet (job.rs) runs them like any pod: with
//! `restartPolicy: Always` they run and are ready until deleted. A pod made
//! while its owner carries `sim.stagegate.dev/rollout: hang|fail` (copied
//! from the Deployment for ReplicaSets) stays Pending in `ImagePullBackOff`,
//! and a StatefulSet or DaemonSet in that state keeps its old pods.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};

use super::job::OUTCOME;
use super::recorder::{Regarding, record};
use super::rollout::ROLLOUT;
use crate::ops::{DeleteOpts, WriteOpts};
use crate::resources::{ResKey, ResourceType};
use crate::store::Store;
use crate::util::{annotation, ensure_map, i64_at, name_of, namespace_of, str_at, uid_of};

pub const TEMPLATE_HASH: &str = "pod-template-hash";
const REVISION_HASH: &str = "controller-revision-hash";
/// Pod creations per owner and tick: a big scale-up is spread over ticks,
/// as the real controllers' slow start does.
const MAX_CREATES_PER_TICK: usize = 50;

fn internal() -> WriteOpts {
    WriteOpts {
        manager: "kube-controller-manager".into(),
        api_version: "v1".into(),
        ..Default::default()
    }
}

/// Objects of `key` by the uid of their controller of kind `owner_kind`.
pub fn controller_index(
    store: &Store,
    key: &ResKey,
    owner_kind: &str,
) -> HashMap<String, Vec<Arc<Value>>> {
    let mut index: HashMap<String, Vec<Arc<Value>>> = HashMap::new();
    for obj in store.list(key, None) {
        let owner = obj
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .and_then(|refs| {
                refs.iter().find(|r| {
                    r.get("controller") == Some(&json!(true))
                        && r.get("kind").and_then(Value::as_str) == Some(owner_kind)
                })
            })
            .and_then(|r| r.get("uid"))
            .and_then(Value::as_str)
            .map(str::to_string);
        if let Some(uid) = owner {
            index.entry(uid).or_default().push(obj);
        }
    }
    index
}

pub fn owner_ref(owner: &Value, api_version: &str, kind: &str) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": kind,
        "name": name_of(owner),
        "uid": uid_of(owner),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// A stable hash of a pod template, in the alphabet Kubernetes uses for
/// `pod-template-hash` and `controller-revision-hash`.
pub fn template_hash(template: &Value, namespace: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in without_nulls(template)
        .to_string()
        .bytes()
        .chain(namespace.bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..10)
        .map(|i| ALPHABET[((h >> (i * 6)) % ALPHABET.len() as u64) as usize] as char)
        .collect()
}

/// A template as the Go types hold it: a `null` (kubectl's
/// `creationTimestamp: null`) is no value at all.
pub fn without_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

fn stuck(owner: &Value) -> bool {
    matches!(annotation(owner, ROLLOUT), Some("hang" | "fail"))
}

fn terminating(pod: &Value) -> bool {
    pod.pointer("/metadata/deletionTimestamp").is_some()
}

fn ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// A pod from the owner's template; `name` or a generated `<prefix>-xxxxx`.
fn pod_from(owner: &Value, api_version: &str, kind: &str, name: Result<String, String>) -> Value {
    let template = owner
        .pointer("/spec/template")
        .cloned()
        .unwrap_or(json!({}));
    let mut meta = template.get("metadata").cloned().unwrap_or(json!({}));
    if !meta.is_object() {
        meta = json!({});
    }
    if let Value::Object(m) = &mut meta {
        m.remove("creationTimestamp");
        match name {
            Ok(n) => m.insert("name".into(), json!(n)),
            Err(prefix) => m.insert("generateName".into(), json!(format!("{prefix}-"))),
        };
    }
    if stuck(owner) {
        ensure_map(&mut meta, &["annotations"]).insert(OUTCOME.into(), json!("image-pull-backoff"));
    }
    meta["ownerReferences"] = json!([owner_ref(owner, api_version, kind)]);
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": template.get("spec").cloned().unwrap_or(json!({})),
    })
}

/// The controller behind each owner kind, and its Event messages.
fn component(kind: &str) -> &'static str {
    match kind {
        "ReplicaSet" => "replicaset-controller",
        "StatefulSet" => "statefulset-controller",
        _ => "daemonset-controller",
    }
}

fn pod_event(store: &mut Store, owner: &Value, kind: &str, create: bool, pod: &str) {
    let reason = if create {
        "SuccessfulCreate"
    } else {
        "SuccessfulDelete"
    };
    let message = match (kind, create) {
        ("StatefulSet", true) => format!(
            "create Pod {pod} in StatefulSet {} successful",
            name_of(owner)
        ),
        ("StatefulSet", false) => format!(
            "delete Pod {pod} in StatefulSet {} successful",
            name_of(owner)
        ),
        (_, true) => format!("Created pod: {pod}"),
        (_, false) => format!("Deleted pod: {pod}"),
    };
    let about = Regarding {
        obj: owner,
        api_version: "apps/v1",
        kind,
    };
    record(store, about, component(kind), "Normal", reason, &message);
}

fn create_pod(store: &mut Store, pods: &ResourceType, owner: &Value, kind: &str, pod: Value) {
    match store.create(pods, namespace_of(owner), pod, &internal()) {
        Ok(pod) => pod_event(store, owner, kind, true, name_of(&pod)),
        Err(e) => tracing::debug!(owner = name_of(owner), error = %e, "creating a pod"),
    }
}

fn delete_pod(store: &mut Store, pods: &ResourceType, owner: &Value, kind: &str, pod: &Value) {
    let deleted = store.delete(
        pods,
        namespace_of(pod),
        name_of(pod),
        &DeleteOpts::default(),
    );
    if deleted.is_ok() {
        pod_event(store, owner, kind, false, name_of(pod));
    }
}

fn write_status(store: &mut Store, rt: &ResourceType, obj: &Value, status: Value) {
    if obj.get("status") != Some(&status) {
        let mut next = obj.clone();
        next["status"] = status;
        store.put(rt, next);
    }
}

pub fn reconcile_all(store: &mut Store, settled: &mut super::Settled) {
    let Some(pods) = store.registry.get("", "pods").cloned() else {
        return;
    };
    for (plural, kind) in [
        ("replicasets", "ReplicaSet"),
        ("statefulsets", "StatefulSet"),
        ("daemonsets", "DaemonSet"),
    ] {
        let Some(rt) = store.registry.get("apps", plural).cloned() else {
            continue;
        };
        let owners = store.list(&rt.key(), None);
        if owners.is_empty() {
            continue;
        }
        let index = controller_index(store, &pods.key(), kind);
        for owner in owners {
            if terminating(&owner) {
                continue;
            }
            let owned = index.get(uid_of(&owner)).cloned().unwrap_or_default();
            match kind {
                "ReplicaSet" => {
                    // The ReplicaSet and its pods are all it reads.
                    let Err(stamp) = settled.check(&owner, &owned) else {
                        continue;
                    };
                    let rv_before = store.current_rv();
                    replicaset(store, &rt, &pods, &owner, owned);
                    settled.settle_if(&owner, stamp, rv_before, store);
                }
                "StatefulSet" => statefulset(store, &pods, &owner, owned),
                _ => daemonset(store, &pods, &owner, owned),
            }
        }
    }
    settled.end_tick();
}

fn replicaset(
    store: &mut Store,
    rt: &ResourceType,
    pods: &ResourceType,
    rs: &Value,
    owned: Vec<Arc<Value>>,
) {
    let want = i64_at(rs, "/spec/replicas").unwrap_or(1).max(0) as usize;
    let mut active: Vec<&Arc<Value>> = owned
        .iter()
        .filter(|p| {
            !terminating(p) && !matches!(str_at(p, "/status/phase"), Some("Succeeded" | "Failed"))
        })
        .collect();
    if active.len() < want {
        for _ in 0..(want - active.len()).min(MAX_CREATES_PER_TICK) {
            let pod = pod_from(rs, "apps/v1", "ReplicaSet", Err(name_of(rs).to_string()));
            create_pod(store, pods, rs, "ReplicaSet", pod);
        }
    } else if active.len() > want {
        // Not-ready pods go first, then the youngest, as the real controller ranks them.
        active.sort_by_key(|p| {
            (
                ready(p),
                std::cmp::Reverse(
                    str_at(p, "/metadata/creationTimestamp")
                        .unwrap_or("")
                        .to_string(),
                ),
            )
        });
        for pod in active.iter().take(active.len() - want) {
            delete_pod(store, pods, rs, "ReplicaSet", pod);
        }
    }
    let live: Vec<&Arc<Value>> = owned.iter().filter(|p| !terminating(p)).collect();
    let ready_count = live.iter().filter(|p| ready(p)).count();
    let mut status = json!({
        "replicas": live.len(),
        "fullyLabeledReplicas": live.len(),
        "observedGeneration": i64_at(rs, "/metadata/generation").unwrap_or(1),
    });
    if ready_count > 0 {
        status["readyReplicas"] = json!(ready_count);
        status["availableReplicas"] = json!(ready_count);
    }
    write_status(store, rt, rs, status);
}

/// The revision hash of the owner's current template.
fn revision_of(owner: &Value) -> String {
    let template = owner
        .pointer("/spec/template")
        .cloned()
        .unwrap_or(json!({}));
    format!(
        "{}-{}",
        name_of(owner),
        template_hash(&template, namespace_of(owner))
    )
}

fn statefulset(store: &mut Store, pods: &ResourceType, sts: &Value, owned: Vec<Arc<Value>>) {
    let want = i64_at(sts, "/spec/replicas").unwrap_or(1).max(0);
    let revision = revision_of(sts);
    let name = name_of(sts);
    let mut have: HashMap<i64, &Arc<Value>> = HashMap::new();
    for pod in &owned {
        let ordinal = name_of(pod)
            .strip_prefix(name)
            .and_then(|s| s.strip_prefix('-'))
            .and_then(|s| s.parse::<i64>().ok());
        match ordinal {
            Some(i) if i < want => {
                have.insert(i, pod);
            }
            _ if !terminating(pod) => delete_pod(store, pods, sts, "StatefulSet", pod),
            _ => {}
        }
    }
    let mut created = 0;
    for i in 0..want {
        match have.get(&i) {
            // Replaced by the rolling update unless the rollout is stuck.
            Some(pod)
                if !terminating(pod)
                    && crate::util::labels(pod)
                        .and_then(|l| l.get(REVISION_HASH))
                        .and_then(Value::as_str)
                        != Some(revision.as_str())
                    && !stuck(sts) =>
            {
                delete_pod(store, pods, sts, "StatefulSet", pod);
            }
            Some(_) => {}
            None if created < MAX_CREATES_PER_TICK => {
                created += 1;
                let pod_name = format!("{name}-{i}");
                let mut pod = pod_from(sts, "apps/v1", "StatefulSet", Ok(pod_name.clone()));
                let labels = ensure_map(&mut pod, &["metadata", "labels"]);
                labels.insert(REVISION_HASH.into(), json!(revision));
                labels.insert("statefulset.kubernetes.io/pod-name".into(), json!(pod_name));
                labels.insert("apps.kubernetes.io/pod-index".into(), json!(i.to_string()));
                pod["spec"]["hostname"] = json!(pod_name);
                if let Some(svc) = str_at(sts, "/spec/serviceName").filter(|s| !s.is_empty()) {
                    pod["spec"]["subdomain"] = json!(svc);
                }
                create_pod(store, pods, sts, "StatefulSet", pod);
            }
            None => {}
        }
    }
}

fn daemonset(store: &mut Store, pods: &ResourceType, ds: &Value, owned: Vec<Arc<Value>>) {
    let nodes: Vec<String> = store
        .list(&("".into(), "nodes".into()), None)
        .iter()
        .filter(|n| !terminating(n))
        .map(|n| name_of(n).to_string())
        .collect();
    let revision = revision_of(ds);
    let mut covered = std::collections::HashSet::new();
    for pod in &owned {
        if terminating(pod) {
            covered.insert(str_at(pod, "/spec/nodeName").unwrap_or("").to_string());
            continue;
        }
        let node = str_at(pod, "/spec/nodeName").unwrap_or("").to_string();
        let current = crate::util::labels(pod)
            .and_then(|l| l.get(REVISION_HASH))
            .and_then(Value::as_str)
            == Some(revision.as_str());
        if !nodes.contains(&node) || covered.contains(&node) || (!current && !stuck(ds)) {
            delete_pod(store, pods, ds, "DaemonSet", pod);
        }
        covered.insert(node);
    }
    let generation = i64_at(ds, "/metadata/generation").unwrap_or(1);
    for node in nodes.iter().filter(|n| !covered.contains(*n)) {
        let mut pod = pod_from(ds, "apps/v1", "DaemonSet", Err(name_of(ds).to_string()));
        let labels = ensure_map(&mut pod, &["metadata", "labels"]);
        labels.insert(REVISION_HASH.into(), json!(revision));
        labels.insert(
            "pod-template-generation".into(),
            json!(generation.to_string()),
        );
        pod["spec"]["nodeName"] = json!(node);
        create_pod(store, pods, ds, "DaemonSet", pod);
    }
}
