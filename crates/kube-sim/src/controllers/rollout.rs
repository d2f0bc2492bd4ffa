//! Rollouts of Deployments, StatefulSets and DaemonSets: after the configured
//! delay the status shows a finished rollout of the current generation,
//! unless `sim.stagegate.dev/rollout` says `hang` or `fail`.

use std::collections::HashMap;
use std::time::Instant;

use serde_json::{Value, json};

use crate::SimConfig;
use crate::store::Store;
use crate::util::{annotation, i64_at, name_of, namespace_of, now_rfc3339, uid_of};

pub const ROLLOUT: &str = "sim.stagegate.dev/rollout";

/// When each (uid, generation) was first seen, so the delay counts from the change.
#[derive(Default)]
pub struct Tracker {
    seen: HashMap<(String, i64), Instant>,
    /// The resourceVersion each object had after its last check: unchanged
    /// objects are not looked at again.
    settled: HashMap<String, String>,
}

impl Tracker {
    pub fn reconcile_all(&mut self, store: &mut Store, config: &SimConfig) {
        let mut alive = Vec::new();
        // A DaemonSet wants one pod per Node: its status follows the node count.
        let nodes = store
            .list(&("".into(), "nodes".into()), None)
            .iter()
            .filter(|n| n.pointer("/metadata/deletionTimestamp").is_none())
            .count() as i64;
        for plural in ["deployments", "statefulsets", "daemonsets"] {
            let stamp = |rv: &str| match plural {
                "daemonsets" => format!("{rv}@{nodes}"),
                _ => rv.to_string(),
            };
            let Some(rt) = store.registry.get("apps", plural).cloned() else {
                continue;
            };
            for obj in store.list(&rt.key(), None) {
                let rv = crate::util::str_at(&obj, "/metadata/resourceVersion").unwrap_or("");
                if self
                    .settled
                    .get(uid_of(&obj))
                    .is_some_and(|s| *s == stamp(rv))
                {
                    alive.push((
                        uid_of(&obj).to_string(),
                        i64_at(&obj, "/metadata/generation").unwrap_or(1),
                    ));
                    continue;
                }
                let generation = i64_at(&obj, "/metadata/generation").unwrap_or(1);
                let key = (uid_of(&obj).to_string(), generation);
                alive.push(key.clone());
                let first = *self.seen.entry(key).or_insert_with(Instant::now);
                if obj.pointer("/metadata/deletionTimestamp").is_some()
                    || first.elapsed() < config.rollout_delay
                {
                    continue;
                }
                let mode = annotation(&obj, ROLLOUT).unwrap_or("");
                let status = match plural {
                    "deployments" => deployment_status(&obj, generation, mode),
                    "statefulsets" => statefulset_status(&obj, generation, mode),
                    _ => daemonset_status(generation, mode, nodes),
                };
                let stored = if obj.get("status") != Some(&status) {
                    let mut next = (*obj).clone();
                    next["status"] = status;
                    store.put(&rt, next)
                } else {
                    obj.clone()
                };
                let rv = crate::util::str_at(&stored, "/metadata/resourceVersion")
                    .unwrap_or("")
                    .to_string();
                self.settled.insert(uid_of(&stored).to_string(), stamp(&rv));
            }
        }
        let alive: std::collections::HashSet<_> = alive.into_iter().collect();
        self.seen.retain(|k, _| alive.contains(k));
        let uids: std::collections::HashSet<&String> = alive.iter().map(|(u, _)| u).collect();
        self.settled.retain(|uid, _| uids.contains(uid));
    }
}

fn replicas(obj: &Value) -> i64 {
    i64_at(obj, "/spec/replicas").unwrap_or(1)
}

/// Keeps lastTransitionTime of conditions whose status did not change.
fn keep_times(obj: &Value, mut conds: Vec<Value>) -> Vec<Value> {
    let old = obj
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for c in conds.iter_mut() {
        if let Some(o) = old.iter().find(|o| {
            o.get("type") == c.get("type")
                && o.get("status") == c.get("status")
                && o.get("reason") == c.get("reason")
        }) {
            for k in ["lastTransitionTime", "lastUpdateTime"] {
                if let Some(t) = o.get(k) {
                    c[k] = t.clone();
                }
            }
        }
    }
    conds
}

fn cond(t: &str, status: &str, reason: &str, message: String) -> Value {
    let now = now_rfc3339();
    json!({"type": t, "status": status, "lastUpdateTime": now, "lastTransitionTime": now, "reason": reason, "message": message})
}

fn deployment_status(obj: &Value, generation: i64, mode: &str) -> Value {
    let n = replicas(obj);
    let rs = format!("{}-{}", name_of(obj), short_hash(obj));
    let (updated, available, progressing) = match mode {
        "hang" => (
            0,
            0,
            cond(
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                format!("ReplicaSet \"{rs}\" is progressing."),
            ),
        ),
        "fail" => (
            0,
            0,
            cond(
                "Progressing",
                "False",
                "ProgressDeadlineExceeded",
                format!("ReplicaSet \"{rs}\" has timed out progressing."),
            ),
        ),
        _ => (
            n,
            n,
            cond(
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                format!("ReplicaSet \"{rs}\" has successfully progressed."),
            ),
        ),
    };
    let available_cond = if available >= n {
        cond(
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.".into(),
        )
    } else {
        cond(
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.".into(),
        )
    };
    let mut s = json!({
        "observedGeneration": generation,
        "replicas": n,
        "updatedReplicas": updated,
        "conditions": keep_times(obj, vec![available_cond, progressing]),
    });
    if available > 0 {
        s["readyReplicas"] = json!(available);
        s["availableReplicas"] = json!(available);
    }
    if n - available > 0 {
        s["unavailableReplicas"] = json!(n - available);
    }
    s
}

fn statefulset_status(obj: &Value, generation: i64, mode: &str) -> Value {
    let n = replicas(obj);
    let revision = format!("{}-{}", name_of(obj), short_hash(obj));
    let done = mode.is_empty() || mode == "succeed";
    let mut s = json!({
        "observedGeneration": generation,
        "replicas": n,
        "currentReplicas": if done { n } else { 0 },
        "updatedReplicas": if done { n } else { 0 },
        "readyReplicas": if done { n } else { 0 },
        "availableReplicas": if done { n } else { 0 },
        "currentRevision": revision,
        "updateRevision": revision,
        "collisionCount": 0,
    });
    if !done && let Value::Object(m) = &mut s {
        m.insert(
            "currentRevision".into(),
            json!(format!("{}-previous", name_of(obj))),
        );
    }
    s
}

fn daemonset_status(generation: i64, mode: &str, nodes: i64) -> Value {
    let done = mode.is_empty() || mode == "succeed";
    let ready = if done { nodes } else { 0 };
    json!({
        "observedGeneration": generation,
        "desiredNumberScheduled": nodes,
        "currentNumberScheduled": nodes,
        "updatedNumberScheduled": ready,
        "numberReady": ready,
        "numberAvailable": ready,
        "numberMisscheduled": 0,
        "numberUnavailable": nodes - ready,
    })
}

/// The pod-template-hash of the current template (the ReplicaSet's suffix).
fn short_hash(obj: &Value) -> String {
    let tmpl = obj.pointer("/spec/template").cloned().unwrap_or(json!({}));
    super::pods::template_hash(&tmpl, namespace_of(obj))
}
