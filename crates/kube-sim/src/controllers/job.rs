//! The Job controller and the kubelet of its pods: one Pod per attempt, which
//! runs for the simulated duration and ends as the Job's annotations say.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::SimConfig;
use crate::ops::{DeleteOpts, Propagation, WriteOpts};
use crate::store::Store;
use crate::util::{
    annotation, i64_at, name_of, namespace_of, now_rfc3339, parse_time, str_at, uid_of,
};

pub const OUTCOME: &str = "sim.stagegate.dev/outcome";
pub const DURATION: &str = "sim.stagegate.dev/duration";
pub const LOG: &str = "sim.stagegate.dev/log";
const ATTEMPT: &str = "sim.stagegate.dev/attempt";
const FINISHED_AT: &str = "sim.stagegate.dev/finished-at-ms";
const MAX_CREATES_PER_TICK: i64 = 100;
const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
const NODE: &str = "kube-sim-node";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Succeed,
    Fail,
    FailThenSucceed(u32),
    ImagePullBackOff,
    Unschedulable,
}

fn outcome_of(job: &Value) -> Outcome {
    match annotation(job, OUTCOME).map(str::trim) {
        None | Some("") | Some("succeed") => Outcome::Succeed,
        Some("fail") => Outcome::Fail,
        Some("image-pull-backoff") => Outcome::ImagePullBackOff,
        Some("unschedulable") => Outcome::Unschedulable,
        Some(other) => match other.strip_prefix("fail-then-succeed:").map(str::parse) {
            Some(Ok(n)) => Outcome::FailThenSucceed(n),
            _ => {
                tracing::warn!(
                    job = name_of(job),
                    value = other,
                    "unknown {OUTCOME}, succeeding"
                );
                Outcome::Succeed
            }
        },
    }
}

fn duration_of(job: &Value, config: &SimConfig) -> Duration {
    annotation(job, DURATION)
        .and_then(|d| humantime::parse_duration(d.trim()).ok())
        .unwrap_or(config.job_duration)
}

fn condition_true(obj: &Value, ctype: &str) -> bool {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some(ctype)
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

fn condition(ctype: &str, reason: &str, message: &str) -> Value {
    let now = now_rfc3339();
    json!({
        "type": ctype,
        "status": "True",
        "lastProbeTime": now,
        "lastTransitionTime": now,
        "reason": reason,
        "message": message,
    })
}

fn internal() -> WriteOpts {
    WriteOpts {
        manager: "kube-controller-manager".into(),
        ..Default::default()
    }
}

type PodIndex = HashMap<String, Vec<Arc<Value>>>;

/// Pods by the uid of the Job that owns them: one pass over the pods per
/// tick, however many Jobs there are.
fn pod_index(store: &Store) -> PodIndex {
    let mut index = PodIndex::new();
    for pod in store.list(&("".into(), "pods".into()), None) {
        let owner = pod
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .and_then(|refs| {
                refs.iter()
                    .find(|r| r.get("kind").and_then(Value::as_str) == Some("Job"))
            })
            .and_then(|r| r.get("uid"))
            .and_then(Value::as_str)
            .map(str::to_string);
        if let Some(uid) = owner {
            index.entry(uid).or_default().push(pod);
        }
    }
    index
}

pub fn reconcile_all(store: &mut Store, config: &SimConfig) {
    let jobs_key = ("batch".to_string(), "jobs".to_string());
    let jobs = store.list(&jobs_key, None);
    let finished = |j: &Value| condition_true(j, "Complete") || condition_true(j, "Failed");
    // Pods first: the kubelet moves them on, then the Job controller counts.
    let pods = store.list(&("".into(), "pods".into()), None);
    run_pods(store, &pods, config);
    let index = pod_index(store);
    for job in jobs {
        if finished(&job) && job.pointer("/spec/ttlSecondsAfterFinished").is_none() {
            continue;
        }
        let ns = namespace_of(&job).to_string();
        let name = name_of(&job).to_string();
        // Re-read: the pods' progress may have been written meanwhile.
        if let Some(job) = store.get(&jobs_key, &ns, &name) {
            let pods = index.get(uid_of(&job)).cloned().unwrap_or_default();
            reconcile(store, &job, pods, config);
        }
    }
}

/// The kubelet part: Pending pods start, Running pods end when their time is up.
///
/// It works from the pod alone (the Job's annotations are copied onto its
/// pods), so orphaned Job pods finish too, and pods created directly run:
/// those with `restartPolicy: Always` for ever, the others for their duration.
fn run_pods(store: &mut Store, pods: &[Arc<Value>], config: &SimConfig) {
    let Some(pod_type) = store.registry.get("", "pods").cloned() else {
        return;
    };
    for pod in pods.iter().cloned() {
        if pod.pointer("/metadata/deletionTimestamp").is_some() {
            continue;
        }
        let phase = str_at(&pod, "/status/phase").unwrap_or("Pending");
        let attempt: u32 = annotation(&pod, ATTEMPT)
            .and_then(|a| a.parse().ok())
            .unwrap_or(0);
        let outcome = outcome_of(&pod);
        let runs_forever = str_at(&pod, "/spec/restartPolicy").unwrap_or("Always") == "Always";
        // Most pods have nothing to do on a tick: no copy of them then.
        let settled = match phase {
            "Pending" => false,
            "Running" => runs_forever,
            _ => true,
        };
        if settled {
            continue;
        }
        let mut next = (*pod).clone();
        match phase {
            "Pending" => match outcome {
                Outcome::ImagePullBackOff => {
                    if pod.pointer("/status/containerStatuses").is_some() {
                        continue;
                    }
                    if str_at(&pod, "/spec/nodeName").is_none() {
                        next["spec"]["nodeName"] = json!(NODE);
                    }
                    next["status"] = json!({
                        "phase": "Pending",
                        "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": now_rfc3339()}],
                        "containerStatuses": container_statuses(&pod, |c| json!({"waiting": {
                            "reason": "ImagePullBackOff",
                            "message": format!("Back-off pulling image {:?}", c.get("image").and_then(Value::as_str).unwrap_or("")),
                        }}), false),
                        "qosClass": "BestEffort",
                    });
                }
                Outcome::Unschedulable => {
                    if pod.pointer("/status/conditions").is_some() {
                        continue;
                    }
                    next["status"] = json!({
                        "phase": "Pending",
                        "conditions": [{
                            "type": "PodScheduled", "status": "False", "lastTransitionTime": now_rfc3339(),
                            "reason": "Unschedulable",
                            "message": "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.",
                        }],
                        "qosClass": "BestEffort",
                    });
                }
                _ => {
                    let now = now_rfc3339();
                    if str_at(&pod, "/spec/nodeName").is_none() {
                        next["spec"]["nodeName"] = json!(NODE);
                    }
                    next["status"] = json!({
                        "phase": "Running",
                        "conditions": [
                            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                            {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                            {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
                            {"type": "Ready", "status": "True", "lastTransitionTime": now},
                        ],
                        "hostIP": "10.0.0.1",
                        "podIP": format!("10.244.{}.{}", crate::util::random_u64() % 250, 2 + attempt % 250),
                        "startTime": now,
                        "containerStatuses": container_statuses(&pod, |_| json!({"running": {"startedAt": now}}), true),
                        "qosClass": "BestEffort",
                    });
                    // Sub-second durations: the pod remembers when it really started.
                    next["metadata"]["annotations"]["sim.stagegate.dev/started-at-ms"] = json!(
                        SystemTime::now()
                            .duration_since(SystemTime::UNIX_EPOCH)
                            .unwrap_or_default()
                            .as_millis()
                            .to_string()
                    );
                }
            },
            "Running" => {
                let started_ms: u128 = annotation(&pod, "sim.stagegate.dev/started-at-ms")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let now_ms = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_millis();
                if runs_forever || now_ms < started_ms + duration_of(&pod, config).as_millis() {
                    continue;
                }
                let fails = match outcome {
                    Outcome::Fail => true,
                    Outcome::FailThenSucceed(n) => attempt < n,
                    _ => false,
                };
                let (phase, code, reason) = if fails {
                    ("Failed", 1, "Error")
                } else {
                    ("Succeeded", 0, "Completed")
                };
                let started = str_at(&pod, "/status/startTime").unwrap_or("").to_string();
                let now = now_rfc3339();
                next["status"]["phase"] = json!(phase);
                next["metadata"]["annotations"][FINISHED_AT] = json!(now_ms.to_string());
                next["status"]["containerStatuses"] = container_statuses(
                    &pod,
                    |_| {
                        json!({"terminated": {
                            "exitCode": code, "reason": reason, "startedAt": started, "finishedAt": now,
                        }})
                    },
                    false,
                );
                next["status"]["conditions"] = json!([
                    {"type": "PodScheduled", "status": "True", "lastTransitionTime": started},
                    {"type": "Initialized", "status": "True", "lastTransitionTime": started},
                    {"type": "ContainersReady", "status": "False", "lastTransitionTime": now, "reason": "PodCompleted"},
                    {"type": "Ready", "status": "False", "lastTransitionTime": now, "reason": "PodCompleted"},
                ]);
            }
            _ => continue,
        }
        store.put(&pod_type, next);
    }
}

fn container_statuses(pod: &Value, state: impl Fn(&Value) -> Value, ready: bool) -> Value {
    let containers = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    Value::Array(
        containers
            .iter()
            .map(|c| {
                json!({
                    "name": c.get("name").cloned().unwrap_or(Value::Null),
                    "image": c.get("image").cloned().unwrap_or(Value::Null),
                    "imageID": "",
                    "ready": ready,
                    "started": ready,
                    "restartCount": 0,
                    "state": state(c),
                })
            })
            .collect(),
    )
}

fn reconcile(store: &mut Store, job: &Value, pods: Vec<Arc<Value>>, config: &SimConfig) {
    let Some(job_type) = store.registry.get("batch", "jobs").cloned() else {
        return;
    };
    if job.pointer("/metadata/deletionTimestamp").is_some() {
        return;
    }
    let ns = namespace_of(job).to_string();
    let name = name_of(job).to_string();
    let finished = condition_true(job, "Complete") || condition_true(job, "Failed");
    if finished {
        if let Some(ttl) = i64_at(job, "/spec/ttlSecondsAfterFinished") {
            let done_at = job
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|cs| {
                    cs.iter()
                        .rev()
                        .find_map(|c| c.get("lastTransitionTime").and_then(Value::as_str))
                })
                .and_then(parse_time)
                .unwrap_or_else(SystemTime::now);
            // TTL counts from the finish, in whole seconds like the real controller.
            if crate::util::since(done_at) >= Duration::from_secs(ttl.max(0) as u64) {
                let _ = store.delete(
                    &job_type,
                    &ns,
                    &name,
                    // As the real TTL controller: Foreground, and only the
                    // Job it looked at. A finalizer on the Job (anyone's)
                    // keeps it, deletionTimestamp set, until it is removed.
                    &DeleteOpts {
                        propagation: Some(Propagation::Foreground),
                        precondition_uid: Some(crate::util::uid_of(job).to_string()),
                        ..Default::default()
                    },
                );
            }
        }
        return;
    }
    let live: Vec<_> = pods
        .iter()
        .filter(|p| p.pointer("/metadata/deletionTimestamp").is_none())
        .collect();
    let phase = |p: &Value| str_at(p, "/status/phase").unwrap_or("Pending").to_string();
    let indexed = str_at(job, "/spec/completionMode") == Some("Indexed");
    // Indexed Jobs count each index once, however many pods it took.
    let done_indexes: BTreeSet<i64> = live
        .iter()
        .filter(|p| phase(p) == "Succeeded")
        .filter_map(|p| completion_index(p))
        .collect();
    let succeeded = if indexed {
        done_indexes.len() as i64
    } else {
        live.iter().filter(|p| phase(p) == "Succeeded").count() as i64
    };
    let failed = live.iter().filter(|p| phase(p) == "Failed").count() as i64;
    let active: Vec<_> = live
        .iter()
        .filter(|p| matches!(phase(p).as_str(), "Pending" | "Running"))
        .collect();
    let ready = active.iter().filter(|p| phase(p) == "Running").count() as i64;
    let terminating = pods.len() - live.len();
    let completions = i64_at(job, "/spec/completions");
    let parallelism = i64_at(job, "/spec/parallelism").unwrap_or(1);
    let backoff_limit = i64_at(job, "/spec/backoffLimit").unwrap_or(6);
    let suspended = job
        .pointer("/spec/suspend")
        .and_then(Value::as_bool)
        .unwrap_or(false);

    let mut status = job.get("status").cloned().unwrap_or(json!({}));
    if !status.is_object() {
        status = json!({});
    }
    let mut conditions: Vec<Value> = status
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let has = |cs: &[Value], t: &str| {
        cs.iter()
            .any(|c| c.get("type").and_then(Value::as_str) == Some(t))
    };

    let pod_type = store.registry.get("", "pods").cloned();
    let delete_active = |store: &mut Store| {
        if let Some(pt) = &pod_type {
            for p in &active {
                let deleted = store.delete(
                    pt,
                    &ns,
                    name_of(p),
                    &DeleteOpts {
                        propagation: Some(Propagation::Background),
                        ..Default::default()
                    },
                );
                if deleted.is_ok() {
                    record_event(
                        store,
                        job,
                        "Normal",
                        "SuccessfulDelete",
                        format!("Deleted pod: {}", name_of(p)),
                    );
                }
            }
        }
    };

    if suspended {
        delete_active(store);
        let already = conditions.iter().any(|c| {
            c.get("type").and_then(Value::as_str) == Some("Suspended")
                && c.get("status").and_then(Value::as_str) == Some("True")
        });
        if !already {
            conditions.retain(|c| c.get("type").and_then(Value::as_str) != Some("Suspended"));
            conditions.push(condition("Suspended", "JobSuspended", "Job suspended"));
            record_event(store, job, "Normal", "Suspended", "Job suspended".into());
            // The clock starts again when the Job is resumed.
            if let Value::Object(m) = &mut status {
                m.remove("startTime");
            }
        }
        status["active"] = json!(0);
        status["ready"] = json!(0);
        status["conditions"] = json!(conditions);
        write_status(store, &job_type, job, status);
        return;
    }
    // Resumed: the Suspended condition turns False, as the real controller leaves it.
    for c in conditions.iter_mut() {
        if c.get("type").and_then(Value::as_str) == Some("Suspended")
            && c.get("status").and_then(Value::as_str) == Some("True")
        {
            *c = condition("Suspended", "JobResumed", "Job resumed");
            c["status"] = json!("False");
            record_event(store, job, "Normal", "Resumed", "Job resumed".into());
        }
    }
    if status.get("startTime").is_none() {
        status["startTime"] = json!(now_rfc3339());
    }
    let started = str_at(&status, "/startTime")
        .and_then(parse_time)
        .unwrap_or_else(SystemTime::now);

    // Terminal decisions: the *Target condition first, the final one once
    // no pod of the Job is still running or terminating.
    let failure = if has(&conditions, "FailureTarget") {
        None
    } else if failed > backoff_limit {
        Some((
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
        ))
    } else if let Some(deadline) = i64_at(job, "/spec/activeDeadlineSeconds")
        && crate::util::since(started) >= Duration::from_secs(deadline.max(0) as u64)
    {
        Some((
            "DeadlineExceeded",
            "Job was active longer than specified deadline",
        ))
    } else {
        None
    };
    if let Some((reason, message)) = failure {
        conditions.push(condition("FailureTarget", reason, message));
    }
    let target_completions = completions.unwrap_or(1);
    if !has(&conditions, "FailureTarget")
        && !has(&conditions, "SuccessCriteriaMet")
        && succeeded >= target_completions
    {
        conditions.push(condition(
            "SuccessCriteriaMet",
            "CompletionsReached",
            "Reached expected number of succeeded pods",
        ));
    }
    let ending = has(&conditions, "FailureTarget") || has(&conditions, "SuccessCriteriaMet");
    let mut still_active = active.len() as i64;
    if ending {
        if !active.is_empty() {
            delete_active(store);
        }
        still_active = 0;
        if active.is_empty() && terminating == 0 {
            let target = conditions.iter().find(|c| {
                matches!(
                    c.get("type").and_then(Value::as_str),
                    Some("FailureTarget") | Some("SuccessCriteriaMet")
                )
            });
            let reason = target
                .and_then(|c| c.get("reason"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let message = target
                .and_then(|c| c.get("message"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if has(&conditions, "FailureTarget") {
                conditions.push(condition("Failed", &reason, &message));
                record_event(store, job, "Warning", &reason, message.clone());
            } else {
                conditions.push(condition("Complete", &reason, &message));
                record_event(store, job, "Normal", "Completed", "Job completed".into());
                status["completionTime"] = json!(now_rfc3339());
            }
        }
    } else {
        let remaining = (target_completions - succeeded - still_active).max(0);
        // At most a burst of pods per tick, as the real controller batches
        // its creations (and so a huge parallelism cannot stall the loop).
        let mut want =
            (parallelism.min(remaining + still_active) - still_active).min(MAX_CREATES_PER_TICK);
        // The real controller waits before replacing a failed pod:
        // base × 2^(failures-1), at most six minutes.
        if failed > 0 && !config.job_backoff.is_zero() {
            let last_failure_ms: u128 = live
                .iter()
                .filter(|p| phase(p) == "Failed")
                .filter_map(|p| annotation(p, FINISHED_AT).and_then(|s| s.parse().ok()))
                .max()
                .unwrap_or(0);
            let delay = config
                .job_backoff
                .saturating_mul(1u32 << (failed - 1).clamp(0, 16) as u32)
                .min(Duration::from_secs(360));
            let now_ms = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis();
            if now_ms < last_failure_ms + delay.as_millis() {
                want = 0;
            }
        }
        let busy: BTreeSet<i64> = active.iter().filter_map(|p| completion_index(p)).collect();
        let mut free_indexes =
            (0..target_completions).filter(|i| !done_indexes.contains(i) && !busy.contains(i));
        if let Some(pt) = &pod_type {
            for i in 0..want.max(0) {
                let attempt = (succeeded + failed + still_active + i) as u32;
                let index = if indexed {
                    match free_indexes.next() {
                        Some(ix) => Some(ix),
                        None => break,
                    }
                } else {
                    None
                };
                let pod = pod_for(job, attempt, index);
                if let Ok(created) = store.create(pt, &ns, pod, &internal()) {
                    still_active += 1;
                    record_event(
                        store,
                        job,
                        "Normal",
                        "SuccessfulCreate",
                        format!("Created pod: {}", name_of(&created)),
                    );
                }
            }
        }
    }
    status["active"] = json!(still_active);
    status["ready"] = json!(if ending { 0 } else { ready });
    status["succeeded"] = json!(succeeded);
    status["failed"] = json!(failed);
    status["terminating"] = json!(terminating);
    status["uncountedTerminatedPods"] = json!({});
    if indexed {
        status["completedIndexes"] = json!(index_ranges(&done_indexes));
    }
    if !conditions.is_empty() {
        status["conditions"] = json!(conditions);
    }
    if let Value::Object(m) = &mut status {
        for k in ["succeeded", "failed", "terminating"] {
            if m.get(k) == Some(&json!(0)) {
                m.remove(k);
            }
        }
    }
    write_status(store, &job_type, job, status);
}

fn write_status(
    store: &mut Store,
    rt: &crate::resources::ResourceType,
    job: &Value,
    status: Value,
) {
    if job.get("status") == Some(&status) {
        return;
    }
    let mut next = job.clone();
    next["status"] = status;
    store.put(rt, next);
}

/// A core/v1 Event about a Job, as the job-controller records them
/// (`kubectl describe job` lists them).
fn record_event(store: &mut Store, job: &Value, etype: &str, reason: &str, message: String) {
    let Some(rt) = store.registry.get("", "events").cloned() else {
        return;
    };
    let now = now_rfc3339();
    let event = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": format!("{}.{:016x}", name_of(job), crate::util::random_u64()), "namespace": namespace_of(job)},
        "involvedObject": {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "name": name_of(job),
            "namespace": namespace_of(job),
            "uid": uid_of(job),
            "resourceVersion": str_at(job, "/metadata/resourceVersion").unwrap_or(""),
        },
        "reason": reason,
        "message": message,
        "source": {"component": "job-controller"},
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
        "type": etype,
        "reportingComponent": "job-controller",
        "reportingInstance": "",
    });
    let _ = store.create(&rt, namespace_of(job), event, &internal());
}

/// A Pod as the real Job controller makes it: the template, owned by the Job.
fn pod_for(job: &Value, attempt: u32, index: Option<i64>) -> Value {
    let name = name_of(job);
    let template = job.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let mut meta = template.get("metadata").cloned().unwrap_or(json!({}));
    if !meta.is_object() {
        meta = json!({});
    }
    let mut spec = template.get("spec").cloned().unwrap_or(json!({}));
    match index {
        Some(ix) => {
            meta["generateName"] = json!(format!("{name}-{ix}-"));
            crate::util::ensure_map(&mut meta, &["labels"])
                .insert(COMPLETION_INDEX.into(), json!(ix.to_string()));
            crate::util::ensure_map(&mut meta, &["annotations"])
                .insert(COMPLETION_INDEX.into(), json!(ix.to_string()));
            if let Value::Object(s) = &mut spec {
                s.insert("hostname".into(), json!(format!("{name}-{ix}")));
                if let Some(Value::Array(containers)) = s.get_mut("containers") {
                    for c in containers {
                        if let Value::Object(c) = c {
                            let env = c.entry("env").or_insert_with(|| json!([]));
                            if let Value::Array(env) = env {
                                env.push(json!({"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
                                    "apiVersion": "v1",
                                    "fieldPath": format!("metadata.labels['{COMPLETION_INDEX}']"),
                                }}}));
                            }
                        }
                    }
                }
            }
        }
        None => meta["generateName"] = json!(format!("{name}-")),
    }
    if let Value::Object(m) = &mut meta {
        m.remove("name");
    }
    let annotations = crate::util::ensure_map(&mut meta, &["annotations"]);
    annotations.insert(ATTEMPT.into(), json!(attempt.to_string()));
    // The pod carries what its kubelet needs to know.
    for key in [LOG, OUTCOME, DURATION] {
        if let Some(v) = annotation(job, key) {
            annotations.insert(key.into(), json!(v));
        }
    }
    meta["ownerReferences"] = json!([{
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": name,
        "uid": uid_of(job),
        "controller": true,
        "blockOwnerDeletion": true,
    }]);
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": spec,
    })
}

fn completion_index(pod: &Value) -> Option<i64> {
    annotation(pod, COMPLETION_INDEX)?.parse().ok()
}

/// `status.completedIndexes` as the real controller writes it: `0-2,4`.
fn index_ranges(done: &BTreeSet<i64>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut iter = done.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    parts.join(",")
}

/// What `pods/log` returns for a pod.
pub fn pod_log(pod: &Value) -> String {
    let mut log = annotation(pod, LOG).unwrap_or("").to_string();
    if !log.is_empty() && !log.ends_with('\n') {
        log.push('\n');
    }
    log
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completed_indexes_are_compressed_ranges() {
        let set = |v: &[i64]| v.iter().copied().collect::<BTreeSet<i64>>();
        assert_eq!(index_ranges(&set(&[])), "");
        assert_eq!(index_ranges(&set(&[0, 1, 2, 4])), "0-2,4");
        assert_eq!(index_ranges(&set(&[3])), "3");
        assert_eq!(index_ranges(&set(&[1, 3, 4, 5, 7, 8])), "1,3-5,7-8");
    }
}
