//! Readiness of applied objects: a pure evaluation of an object's status,
//! and watch-driven waits built on it (never sleep-polling).

use serde_json::Value;

pub mod job;
pub mod wait;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Ready,
    /// Not there yet, and why (shown when the stage times out).
    Progressing(String),
    Failed(String),
}

/// The health of `obj` (a live object as JSON) by its kind's rules.
pub fn evaluate(kind: &str, obj: &Value) -> Health {
    let status = obj.get("status").unwrap_or(&Value::Null);
    match kind {
        "Job" => job_health(status),
        "Deployment" => deployment_health(obj, status),
        "StatefulSet" => statefulset_health(obj, status),
        "DaemonSet" => daemonset_health(obj, status),
        "Pod" => pod_health(status),
        "CustomResourceDefinition" => match condition(status, "Established") {
            Some(("True", _, _)) => Health::Ready,
            _ => Health::Progressing("not Established yet".into()),
        },
        _ => match condition(status, "Ready") {
            Some(("True", _, _)) | None => Health::Ready,
            Some((_, reason, message)) => Health::Progressing(
                format!("Ready is not True: {reason} {message}")
                    .trim()
                    .to_string(),
            ),
        },
    }
}

/// `(status, reason, message)` of the condition of `type_`.
pub fn condition<'a>(status: &'a Value, type_: &str) -> Option<(&'a str, &'a str, &'a str)> {
    let conditions = status.get("conditions")?.as_array()?;
    let c = conditions
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(type_))?;
    let field = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or_default();
    Some((field("status"), field("reason"), field("message")))
}

fn int(v: &Value, key: &str) -> i64 {
    v.get(key).and_then(Value::as_i64).unwrap_or(0)
}

fn job_health(status: &Value) -> Health {
    for done in ["Complete", "SuccessCriteriaMet"] {
        if matches!(condition(status, done), Some(("True", _, _))) {
            return Health::Ready;
        }
    }
    for failed in ["Failed", "FailureTarget"] {
        if let Some(("True", reason, message)) = condition(status, failed) {
            let reason = if reason.is_empty() { "Failed" } else { reason };
            return Health::Failed(
                format!("{reason}: {message}")
                    .trim_end_matches(": ")
                    .to_string(),
            );
        }
    }
    Health::Progressing(format!(
        "running: {} active, {} succeeded, {} failed",
        int(status, "active"),
        int(status, "succeeded"),
        int(status, "failed")
    ))
}

fn generation_observed(obj: &Value, status: &Value) -> bool {
    let generation = obj
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    int(status, "observedGeneration") >= generation
}

fn deployment_health(obj: &Value, status: &Value) -> Health {
    if let Some((_, "ProgressDeadlineExceeded", message)) = condition(status, "Progressing") {
        return Health::Failed(
            format!("ProgressDeadlineExceeded: {message}")
                .trim_end_matches(": ")
                .to_string(),
        );
    }
    if !generation_observed(obj, status) {
        return Health::Progressing("new generation not observed yet".into());
    }
    let want = obj
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let (updated, ready, available) = (
        int(status, "updatedReplicas"),
        int(status, "readyReplicas"),
        int(status, "availableReplicas"),
    );
    if updated >= want && ready >= want && available >= want && int(status, "replicas") <= want {
        Health::Ready
    } else {
        Health::Progressing(format!(
            "rollout: {updated}/{want} updated, {ready}/{want} ready, {available}/{want} available"
        ))
    }
}

fn statefulset_health(obj: &Value, status: &Value) -> Health {
    if !generation_observed(obj, status) {
        return Health::Progressing("new generation not observed yet".into());
    }
    let want = obj
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let (updated, ready) = (int(status, "updatedReplicas"), int(status, "readyReplicas"));
    if updated >= want && ready >= want {
        Health::Ready
    } else {
        Health::Progressing(format!(
            "rollout: {updated}/{want} updated, {ready}/{want} ready"
        ))
    }
}

fn daemonset_health(obj: &Value, status: &Value) -> Health {
    if !generation_observed(obj, status) {
        return Health::Progressing("new generation not observed yet".into());
    }
    let want = int(status, "desiredNumberScheduled");
    let (updated, ready, available) = (
        int(status, "updatedNumberScheduled"),
        int(status, "numberReady"),
        int(status, "numberAvailable"),
    );
    if updated >= want && ready >= want && available >= want {
        Health::Ready
    } else {
        Health::Progressing(format!(
            "rollout: {updated}/{want} updated, {ready}/{want} ready"
        ))
    }
}

fn pod_health(status: &Value) -> Health {
    match status.get("phase").and_then(Value::as_str) {
        Some("Succeeded") => Health::Ready,
        Some("Failed") => Health::Failed(
            status
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("pod failed")
                .to_string(),
        ),
        _ if matches!(condition(status, "Ready"), Some(("True", _, _))) => Health::Ready,
        phase => Health::Progressing(format!("pod phase {}", phase.unwrap_or("Pending"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn job_complete_failed_and_running() {
        let done = json!({"status": {"conditions": [{"type": "Complete", "status": "True"}]}});
        assert_eq!(evaluate("Job", &done), Health::Ready);
        let failed = json!({"status": {"conditions": [
            {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}
        ]}});
        assert_eq!(
            evaluate("Job", &failed),
            Health::Failed(
                "BackoffLimitExceeded: Job has reached the specified backoff limit".into()
            )
        );
        assert!(matches!(
            evaluate("Job", &json!({"status": {"active": 1}})),
            Health::Progressing(_)
        ));
    }

    #[test]
    fn deployment_needs_observed_generation_and_all_replicas() {
        let mut d = json!({
            "metadata": {"generation": 2},
            "spec": {"replicas": 2},
            "status": {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 2, "availableReplicas": 2}
        });
        assert!(matches!(evaluate("Deployment", &d), Health::Progressing(_)));
        d["status"]["observedGeneration"] = json!(2);
        assert_eq!(evaluate("Deployment", &d), Health::Ready);
        d["status"]["conditions"] = json!([{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "too slow"}]);
        assert_eq!(
            evaluate("Deployment", &d),
            Health::Failed("ProgressDeadlineExceeded: too slow".into())
        );
    }

    #[test]
    fn other_kinds_use_ready_condition_when_present() {
        assert_eq!(evaluate("ConfigMap", &json!({})), Health::Ready);
        let not_ready = json!({"status": {"conditions": [{"type": "Ready", "status": "False", "reason": "Waiting"}]}});
        assert!(matches!(
            evaluate("Certificate", &not_ready),
            Health::Progressing(_)
        ));
        assert_eq!(
            evaluate("Pod", &json!({"status": {"phase": "Succeeded"}})),
            Health::Ready
        );
    }
}
