//! The RBAC objects every cluster starts with (the part of the real
//! bootstrap policy that matters here): `cluster-admin` for `system:masters`,
//! discovery and the self reviews for every authenticated user, and the
//! aggregated `admin`, `edit` and `view` roles that RoleBindings in tenants'
//! namespaces usually reference.

use serde_json::{Value, json};

use crate::ops::WriteOpts;
use crate::store::Store;

const GROUP: &str = "rbac.authorization.k8s.io";

fn meta(name: &str, extra_labels: Value) -> Value {
    let mut labels = json!({"kubernetes.io/bootstrapping": "rbac-defaults"});
    if let (Some(l), Some(extra)) = (labels.as_object_mut(), extra_labels.as_object()) {
        l.extend(extra.clone());
    }
    json!({
        "name": name,
        "labels": labels,
        "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
    })
}

fn cluster_role(name: &str, labels: Value, rules: Value) -> Value {
    json!({"apiVersion": format!("{GROUP}/v1"), "kind": "ClusterRole", "metadata": meta(name, labels), "rules": rules})
}

fn aggregated(name: &str, to: &str) -> Value {
    json!({
        "apiVersion": format!("{GROUP}/v1"), "kind": "ClusterRole", "metadata": meta(name, json!({})),
        "aggregationRule": {"clusterRoleSelectors": [
            {"matchLabels": {format!("rbac.authorization.k8s.io/aggregate-to-{to}"): "true"}}
        ]},
    })
}

fn binding(name: &str, role: &str, groups: &[&str]) -> Value {
    let subjects: Vec<Value> = groups
        .iter()
        .map(|g| json!({"kind": "Group", "apiGroup": GROUP, "name": g}))
        .collect();
    json!({
        "apiVersion": format!("{GROUP}/v1"), "kind": "ClusterRoleBinding", "metadata": meta(name, json!({})),
        "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": role},
        "subjects": subjects,
    })
}

const READ: [&str; 3] = ["get", "list", "watch"];
const WRITE: [&str; 6] = [
    "create",
    "delete",
    "deletecollection",
    "patch",
    "update",
    "get",
];

fn roles() -> Vec<Value> {
    let discovery_urls = json!([
        "/api",
        "/api/*",
        "/apis",
        "/apis/*",
        "/healthz",
        "/livez",
        "/openapi",
        "/openapi/*",
        "/readyz",
        "/version",
        "/version/"
    ]);
    let namespaced_kinds = json!([
        {"apiGroups": [""], "resources": ["configmaps", "endpoints", "persistentvolumeclaims", "pods", "replicationcontrollers", "services", "serviceaccounts", "events", "pods/log", "pods/status"]},
        {"apiGroups": ["apps"], "resources": ["deployments", "daemonsets", "replicasets", "statefulsets", "deployments/scale", "statefulsets/scale", "replicasets/scale"]},
        {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"]},
    ]);
    let with_verbs = |verbs: &[&str]| -> Value {
        Value::Array(
            namespaced_kinds
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| {
                    let mut r = r.clone();
                    r["verbs"] = json!(verbs);
                    r
                })
                .collect(),
        )
    };
    let mut view = with_verbs(&READ);
    if let Some(v) = view.as_array_mut() {
        v.push(json!({"apiGroups": [""], "resources": ["namespaces"], "verbs": READ}));
    }
    let mut edit = with_verbs(&WRITE);
    if let Some(e) = edit.as_array_mut() {
        e.push(json!({"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]}));
        e.push(
            json!({"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["impersonate"]}),
        );
    }
    vec![
        cluster_role(
            "cluster-admin",
            json!({}),
            json!([
                {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                {"nonResourceURLs": ["*"], "verbs": ["*"]},
            ]),
        ),
        cluster_role(
            "system:discovery",
            json!({}),
            json!([{"nonResourceURLs": discovery_urls, "verbs": ["get"]}]),
        ),
        cluster_role(
            "system:public-info-viewer",
            json!({}),
            json!([{"nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"], "verbs": ["get"]}]),
        ),
        cluster_role(
            "system:basic-user",
            json!({}),
            json!([
                {"apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"], "verbs": ["create"]},
                {"apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"], "verbs": ["create"]},
            ]),
        ),
        aggregated("admin", "admin"),
        aggregated("edit", "edit"),
        aggregated("view", "view"),
        cluster_role(
            "system:aggregate-to-admin",
            json!({"rbac.authorization.k8s.io/aggregate-to-admin": "true"}),
            json!([
                {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["rolebindings", "roles"], "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]},
                {"apiGroups": ["authorization.k8s.io"], "resources": ["localsubjectaccessreviews"], "verbs": ["create"]},
            ]),
        ),
        cluster_role(
            "system:aggregate-to-edit",
            json!({"rbac.authorization.k8s.io/aggregate-to-admin": "true", "rbac.authorization.k8s.io/aggregate-to-edit": "true"}),
            edit,
        ),
        cluster_role(
            "system:aggregate-to-view",
            json!({"rbac.authorization.k8s.io/aggregate-to-admin": "true", "rbac.authorization.k8s.io/aggregate-to-edit": "true", "rbac.authorization.k8s.io/aggregate-to-view": "true"}),
            view,
        ),
    ]
}

fn bindings() -> Vec<Value> {
    vec![
        binding("cluster-admin", "cluster-admin", &["system:masters"]),
        binding(
            "system:discovery",
            "system:discovery",
            &["system:authenticated"],
        ),
        binding(
            "system:basic-user",
            "system:basic-user",
            &["system:authenticated"],
        ),
        binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            &["system:authenticated", "system:unauthenticated"],
        ),
    ]
}

/// Writes the bootstrap roles and bindings into a fresh store.
pub fn install(store: &mut Store, opts: &WriteOpts) {
    for (plural, objects) in [
        ("clusterroles", roles()),
        ("clusterrolebindings", bindings()),
    ] {
        let Some(rt) = store.registry.get(GROUP, plural).cloned() else {
            continue;
        };
        for obj in objects {
            if let Err(e) = store.create(&rt, "", obj, opts) {
                tracing::error!(error = %e.message, plural, "bootstrap RBAC object refused");
            }
        }
    }
}
