//! References by name that follow a renamed object. When `namePrefix` or
//! `nameSuffix` renames a ConfigMap, Secret, ServiceAccount, PVC, Service,
//! Role or workload, kustomize rewrites the places that name it — pod
//! templates, role bindings, StatefulSet `serviceName`, Ingress backends,
//! HPA targets — so the rendered objects still fit together. Other
//! references kustomize knows (webhook services, APIService, CSI secrets…)
//! are not followed.

use std::collections::HashMap;

use serde_json::Value;

use super::resource::Resource;

/// The pod spec of a workload, wherever its kind keeps it.
pub(crate) fn pod_spec<'a>(kind: &str, value: &'a Value) -> Option<&'a Value> {
    match kind {
        "Pod" => value.get("spec"),
        "CronJob" => value.pointer("/spec/jobTemplate/spec/template/spec"),
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "Job"
        | "ReplicationController" => value.pointer("/spec/template/spec"),
        _ => None,
    }
}

fn pod_spec_mut<'a>(kind: &str, value: &'a mut Value) -> Option<&'a mut Value> {
    match kind {
        "Pod" => value.get_mut("spec"),
        "CronJob" => value.pointer_mut("/spec/jobTemplate/spec/template/spec"),
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "Job"
        | "ReplicationController" => value.pointer_mut("/spec/template/spec"),
        _ => None,
    }
}

/// (kind, effective namespace, original name) → current name.
type Renames = HashMap<(String, String, String), String>;

fn effective(ns: Option<&str>) -> String {
    ns.filter(|ns| !ns.is_empty())
        .unwrap_or("default")
        .to_string()
}

/// A ServiceAccount that moved: its first name and namespace, and its current ones.
struct MovedAccount {
    original_name: String,
    original_ns: Option<String>,
    name: String,
    namespace: Option<String>,
}

/// Rewrite references to objects that were renamed during this render.
pub(crate) fn fix_references(resources: &mut [Resource]) {
    let mut renames = Renames::new();
    let mut accounts = Vec::new();
    for r in resources.iter() {
        let Some((original, original_ns)) = r.previous.first() else {
            continue;
        };
        if original != r.name() {
            let key = (
                r.kind().to_string(),
                effective(r.namespace()),
                original.clone(),
            );
            renames.insert(key, r.name().to_string());
        }
        if r.kind() == "ServiceAccount" {
            accounts.push(MovedAccount {
                original_name: original.clone(),
                original_ns: original_ns.clone(),
                name: r.name().to_string(),
                namespace: r.namespace().map(str::to_string),
            });
        }
    }
    if renames.is_empty() && accounts.is_empty() {
        return;
    }
    for r in resources.iter_mut() {
        let kind = r.kind().to_string();
        let ns = effective(r.namespace());
        let lookup = |ref_kind: &str, ns: &str, name: &str| {
            renames
                .get(&(ref_kind.to_string(), ns.to_string(), name.to_string()))
                .cloned()
        };
        if let Some(spec) = pod_spec_mut(&kind, &mut r.value) {
            fix_pod_spec(spec, &|k, name| lookup(k, &ns, name));
        }
        if kind == "StatefulSet"
            && let Some(Value::String(svc)) = r.value.pointer_mut("/spec/serviceName")
            && let Some(new) = lookup("Service", &ns, svc)
        {
            *svc = new;
        }
        if matches!(kind.as_str(), "RoleBinding" | "ClusterRoleBinding") {
            fix_role_ref(&mut r.value, &ns, &lookup);
            fix_subjects(&mut r.value, &accounts);
        }
        if kind == "Ingress" {
            fix_ingress(&mut r.value, &|k, name| lookup(k, &ns, name));
        }
        if kind == "HorizontalPodAutoscaler"
            && let Some(target) = r.value.pointer_mut("/spec/scaleTargetRef")
        {
            let target_kind = target
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            rename(target.get_mut("name"), &target_kind, &|k, name| {
                lookup(k, &ns, name)
            });
        }
    }
}

fn rename(slot: Option<&mut Value>, kind: &str, lookup: &dyn Fn(&str, &str) -> Option<String>) {
    if let Some(Value::String(name)) = slot
        && let Some(new) = lookup(kind, name)
    {
        *name = new;
    }
}

fn fix_pod_spec(spec: &mut Value, lookup: &dyn Fn(&str, &str) -> Option<String>) {
    rename(spec.get_mut("serviceAccountName"), "ServiceAccount", lookup);
    rename(spec.get_mut("serviceAccount"), "ServiceAccount", lookup);
    if let Some(Value::Array(secrets)) = spec.get_mut("imagePullSecrets") {
        for s in secrets {
            rename(s.get_mut("name"), "Secret", lookup);
        }
    }
    if let Some(Value::Array(volumes)) = spec.get_mut("volumes") {
        for v in volumes {
            rename(v.pointer_mut("/configMap/name"), "ConfigMap", lookup);
            rename(v.pointer_mut("/secret/secretName"), "Secret", lookup);
            rename(
                v.pointer_mut("/persistentVolumeClaim/claimName"),
                "PersistentVolumeClaim",
                lookup,
            );
            if let Some(Value::Array(sources)) = v.pointer_mut("/projected/sources") {
                for s in sources {
                    rename(s.pointer_mut("/configMap/name"), "ConfigMap", lookup);
                    rename(s.pointer_mut("/secret/name"), "Secret", lookup);
                }
            }
        }
    }
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        let Some(Value::Array(containers)) = spec.get_mut(list) else {
            continue;
        };
        for c in containers {
            if let Some(Value::Array(env_from)) = c.get_mut("envFrom") {
                for e in env_from {
                    rename(e.pointer_mut("/configMapRef/name"), "ConfigMap", lookup);
                    rename(e.pointer_mut("/secretRef/name"), "Secret", lookup);
                }
            }
            if let Some(Value::Array(env)) = c.get_mut("env") {
                for e in env {
                    rename(
                        e.pointer_mut("/valueFrom/configMapKeyRef/name"),
                        "ConfigMap",
                        lookup,
                    );
                    rename(
                        e.pointer_mut("/valueFrom/secretKeyRef/name"),
                        "Secret",
                        lookup,
                    );
                }
            }
        }
    }
}

fn fix_ingress(value: &mut Value, lookup: &dyn Fn(&str, &str) -> Option<String>) {
    rename(
        value.pointer_mut("/spec/defaultBackend/service/name"),
        "Service",
        lookup,
    );
    let Some(Value::Array(rules)) = value.pointer_mut("/spec/rules") else {
        return;
    };
    for rule in rules {
        let Some(Value::Array(paths)) = rule.pointer_mut("/http/paths") else {
            continue;
        };
        for path in paths {
            rename(path.pointer_mut("/backend/service/name"), "Service", lookup);
        }
    }
}

fn fix_role_ref(value: &mut Value, ns: &str, lookup: &dyn Fn(&str, &str, &str) -> Option<String>) {
    let Some(role_ref) = value.get_mut("roleRef") else {
        return;
    };
    let kind = role_ref
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("Role")
        .to_string();
    // A ClusterRole has no namespace; renames record it under "default".
    let ref_ns = if kind == "ClusterRole" { "default" } else { ns };
    if let Some(Value::String(name)) = role_ref.get_mut("name")
        && let Some(new) = lookup(&kind, ref_ns, name)
    {
        *name = new;
    }
}

/// A subject naming a ServiceAccount of this render follows it to its new
/// name and namespace, as kustomize's name references do.
fn fix_subjects(value: &mut Value, accounts: &[MovedAccount]) {
    let Some(Value::Array(subjects)) = value.get_mut("subjects") else {
        return;
    };
    for s in subjects {
        if s.get("kind").and_then(Value::as_str) != Some("ServiceAccount") {
            continue;
        }
        let name = s.get("name").and_then(Value::as_str).unwrap_or_default();
        let ns = s.get("namespace").and_then(Value::as_str);
        let Some(account) = accounts
            .iter()
            .find(|a| a.original_name == name && a.original_ns.as_deref() == ns)
        else {
            continue;
        };
        let Value::Object(map) = s else { continue };
        map.insert("name".into(), Value::String(account.name.clone()));
        if let Some(ns) = &account.namespace {
            map.insert("namespace".into(), Value::String(ns.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::metadata::add_prefix_suffix;
    use serde_json::json;

    #[test]
    fn prefixed_config_map_is_followed_by_its_pod_template_references() {
        let mut rs = vec![
            Resource::new(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}}),
                "f".into(),
            ),
            Resource::new(
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                       "spec": {"template": {"spec": {
                           "volumes": [{"name": "v", "configMap": {"name": "cfg"}}],
                           "containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": "cfg"}}, {"configMapRef": {"name": "external"}}]}]}}}}),
                "f".into(),
            ),
        ];
        add_prefix_suffix(&mut rs, "p-", "");
        fix_references(&mut rs);
        let spec = &rs[1].value["spec"]["template"]["spec"];
        assert_eq!(spec["volumes"][0]["configMap"]["name"], "p-cfg");
        assert_eq!(
            spec["containers"][0]["envFrom"][0]["configMapRef"]["name"],
            "p-cfg"
        );
        assert_eq!(
            spec["containers"][0]["envFrom"][1]["configMapRef"]["name"],
            "external"
        );
    }
}
