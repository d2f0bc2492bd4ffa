//! References by name that follow a renamed object, resolved as kustomize
//! resolves them once the whole build is done.
//!
//! Every field of kustomize's built-in name-reference configuration is
//! followed (pod templates, bindings, webhooks' and APIServices' Services,
//! storage and priority classes, …), and a referrer's target is chosen among
//! the objects that were renamed or moved, as kustomize does: same previous
//! name and kind, same namespace as the referrer, and — when several remain —
//! the one that went through the same name prefixes and suffixes as the
//! referrer. Objects from sibling bases thus keep their own references, and
//! a reference that still fits two objects is an error naming both.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde_json::{Map, Value};

use super::fieldspec::NameReference;
use super::metadata::kustomize_cluster_scoped;
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

/// A group/version/kind pattern; an empty part matches anything.
#[derive(Debug, Clone, Copy)]
struct Gvk {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
}

impl Gvk {
    const fn kind(kind: &'static str) -> Self {
        Self {
            group: "",
            version: "",
            kind,
        }
    }

    const fn new(group: &'static str, version: &'static str, kind: &'static str) -> Self {
        Self {
            group,
            version,
            kind,
        }
    }
}

/// A [`Gvk`] pattern that also holds the ones read from `configurations`.
#[derive(Debug, Clone)]
struct Pattern {
    group: String,
    version: String,
    kind: String,
}

impl Pattern {
    fn of(gvk: Gvk) -> Self {
        Self {
            group: gvk.group.to_string(),
            version: gvk.version.to_string(),
            kind: gvk.kind.to_string(),
        }
    }

    fn selects(&self, group: &str, version: &str, kind: &str) -> bool {
        (self.group.is_empty() || self.group == group)
            && (self.version.is_empty() || self.version == version)
            && (self.kind.is_empty() || self.kind == kind)
    }
}

/// A field of `referrer` objects that names an object of kind `target`.
#[derive(Debug, Clone)]
struct Rule {
    target: Pattern,
    referrer: Pattern,
    path: Vec<String>,
}

/// The rules of a `configurations` file's `nameReference` entries.
fn custom_rules(extra: &[NameReference]) -> Vec<Rule> {
    let mut rules = Vec::new();
    for nr in extra {
        let target = Pattern {
            group: nr.group.clone(),
            version: nr.version.clone(),
            kind: nr.kind.clone(),
        };
        for spec in &nr.field_specs {
            let path = split_path(&spec.path)
                .into_iter()
                .map(|step| step.trim_end_matches("[]").to_string())
                .collect();
            rules.push(Rule {
                target: target.clone(),
                referrer: Pattern {
                    group: spec.group.clone(),
                    version: spec.version.clone(),
                    kind: spec.kind.clone(),
                },
                path,
            });
        }
    }
    rules
}

/// Where each workload kind keeps its pod spec, for the references inside it.
const CONFIG_WORKLOADS: &[(Gvk, &str)] = &[
    (Gvk::new("", "v1", "Pod"), "spec"),
    (Gvk::kind("PodTemplate"), "template/spec"),
    (Gvk::kind("Deployment"), "spec/template/spec"),
    (Gvk::kind("ReplicaSet"), "spec/template/spec"),
    (Gvk::kind("DaemonSet"), "spec/template/spec"),
    (Gvk::kind("StatefulSet"), "spec/template/spec"),
    (Gvk::kind("Job"), "spec/template/spec"),
    (Gvk::kind("CronJob"), "spec/jobTemplate/spec/template/spec"),
];

/// Workloads for service accounts, claims and priority classes: kustomize's
/// list there has ReplicationController and no ReplicaSet or PodTemplate.
const OTHER_WORKLOADS: &[(Gvk, &str)] = &[
    (Gvk::kind("Pod"), "spec"),
    (Gvk::kind("StatefulSet"), "spec/template/spec"),
    (Gvk::kind("Deployment"), "spec/template/spec"),
    (Gvk::kind("ReplicationController"), "spec/template/spec"),
    (Gvk::kind("Job"), "spec/template/spec"),
    (Gvk::kind("DaemonSet"), "spec/template/spec"),
    (Gvk::kind("CronJob"), "spec/jobTemplate/spec/template/spec"),
];

const CONFIG_MAP_IN_POD: &[&str] = &[
    "volumes/configMap/name",
    "containers/env/valueFrom/configMapKeyRef/name",
    "initContainers/env/valueFrom/configMapKeyRef/name",
    "containers/envFrom/configMapRef/name",
    "initContainers/envFrom/configMapRef/name",
    "volumes/projected/sources/configMap/name",
];

const SECRET_IN_POD: &[&str] = &[
    "volumes/secret/secretName",
    "containers/env/valueFrom/secretKeyRef/name",
    "initContainers/env/valueFrom/secretKeyRef/name",
    "containers/envFrom/secretRef/name",
    "initContainers/envFrom/secretRef/name",
    "imagePullSecrets/name",
    "volumes/projected/sources/secret/name",
];

const RBAC: &str = "rbac.authorization.k8s.io";
const ADMISSION: &str = "admissionregistration.k8s.io";

/// Split a field path at `/`, where `\/` is a slash inside a key.
fn split_path(path: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = path.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'/') => {
                chars.next();
                if let Some(last) = parts.last_mut() {
                    last.push('/');
                }
            }
            '/' => parts.push(String::new()),
            c => {
                if let Some(last) = parts.last_mut() {
                    last.push(c);
                }
            }
        }
    }
    parts
}

/// kustomize's built-in name references, in its order.
static RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    let mut rules = Vec::new();
    let mut add = |target: Gvk, referrer: Gvk, path: &str| {
        rules.push(Rule {
            target: Pattern::of(target),
            referrer: Pattern::of(referrer),
            path: split_path(path),
        });
    };
    for kind in [
        "Deployment",
        "ReplicationController",
        "ReplicaSet",
        "StatefulSet",
    ] {
        add(
            Gvk::kind(kind),
            Gvk::kind("HorizontalPodAutoscaler"),
            "spec/scaleTargetRef/name",
        );
    }
    let config_map = Gvk::new("", "v1", "ConfigMap");
    for (workload, spec) in CONFIG_WORKLOADS {
        for field in CONFIG_MAP_IN_POD {
            add(config_map, *workload, &format!("{spec}/{field}"));
        }
    }
    add(config_map, Gvk::kind("Node"), "spec/configSource/configMap");
    add(config_map, Gvk::kind("Role"), "rules/resourceNames");
    add(config_map, Gvk::kind("ClusterRole"), "rules/resourceNames");
    add(
        config_map,
        Gvk::kind("Ingress"),
        r"metadata/annotations/nginx.ingress.kubernetes.io\/fastcgi-params-configmap",
    );
    let secret = Gvk::new("", "v1", "Secret");
    for (workload, spec) in CONFIG_WORKLOADS {
        for field in SECRET_IN_POD {
            add(secret, *workload, &format!("{spec}/{field}"));
        }
    }
    add(
        secret,
        Gvk::new("serving.knative.dev", "v1", "Service"),
        "spec/template/spec/containers/env/valueFrom/secretKeyRef/name",
    );
    for path in [
        "spec/tls/secretName",
        r"metadata/annotations/ingress.kubernetes.io\/auth-secret",
        r"metadata/annotations/nginx.ingress.kubernetes.io\/auth-secret",
        r"metadata/annotations/nginx.ingress.kubernetes.io\/auth-tls-secret",
    ] {
        add(secret, Gvk::kind("Ingress"), path);
    }
    add(secret, Gvk::kind("ServiceAccount"), "imagePullSecrets/name");
    for field in [
        "secretName",
        "adminSecretName",
        "userSecretName",
        "secretRef",
    ] {
        add(
            secret,
            Gvk::kind("StorageClass"),
            &format!("parameters/{field}"),
        );
    }
    add(secret, Gvk::kind("Role"), "rules/resourceNames");
    add(secret, Gvk::kind("ClusterRole"), "rules/resourceNames");
    add(
        secret,
        Gvk::kind("PersistentVolume"),
        "spec/azureFile/secretName",
    );
    let service = Gvk::new("", "v1", "Service");
    add(
        service,
        Gvk::new("apps", "", "StatefulSet"),
        "spec/serviceName",
    );
    for path in [
        "spec/rules/http/paths/backend/serviceName",
        "spec/backend/serviceName",
        "spec/rules/http/paths/backend/service/name",
        "spec/defaultBackend/service/name",
    ] {
        add(service, Gvk::kind("Ingress"), path);
    }
    add(
        service,
        Gvk::new("apiregistration.k8s.io", "", "APIService"),
        "spec/service/name",
    );
    for kind in [
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
    ] {
        add(
            service,
            Gvk::new(ADMISSION, "", kind),
            "webhooks/clientConfig/service",
        );
    }
    add(
        Gvk::new(RBAC, "", "Role"),
        Gvk::new(RBAC, "", "RoleBinding"),
        "roleRef/name",
    );
    for kind in ["RoleBinding", "ClusterRoleBinding"] {
        add(
            Gvk::new(RBAC, "", "ClusterRole"),
            Gvk::new(RBAC, "", kind),
            "roleRef/name",
        );
    }
    let account = Gvk::new("", "v1", "ServiceAccount");
    for kind in ["RoleBinding", "ClusterRoleBinding"] {
        add(account, Gvk::new(RBAC, "", kind), "subjects");
    }
    for (workload, spec) in OTHER_WORKLOADS {
        add(account, *workload, &format!("{spec}/serviceAccountName"));
    }
    let claim = Gvk::new("", "v1", "PersistentVolumeClaim");
    for (workload, spec) in OTHER_WORKLOADS {
        add(
            claim,
            *workload,
            &format!("{spec}/volumes/persistentVolumeClaim/claimName"),
        );
    }
    let volume = Gvk::new("", "v1", "PersistentVolume");
    add(
        volume,
        Gvk::kind("PersistentVolumeClaim"),
        "spec/volumeName",
    );
    add(volume, Gvk::kind("ClusterRole"), "rules/resourceNames");
    let storage_class = Gvk::new("storage.k8s.io", "v1", "StorageClass");
    add(
        storage_class,
        Gvk::kind("PersistentVolume"),
        "spec/storageClassName",
    );
    add(
        storage_class,
        Gvk::kind("PersistentVolumeClaim"),
        "spec/storageClassName",
    );
    add(
        storage_class,
        Gvk::kind("StatefulSet"),
        "spec/volumeClaimTemplates/spec/storageClassName",
    );
    let priority = Gvk::new("scheduling.k8s.io", "v1", "PriorityClass");
    for (workload, spec) in OTHER_WORKLOADS {
        add(priority, *workload, &format!("{spec}/priorityClassName"));
    }
    // kustomize spells this target's group `networking.k8s.io/v1`, so it
    // never matches: an IngressClass rename is not followed by kustomize.
    add(
        Gvk::new("networking.k8s.io/v1", "v1", "IngressClass"),
        Gvk::kind("Ingress"),
        "spec/ingressClassName",
    );
    add(
        Gvk::new(ADMISSION, "", "ValidatingAdmissionPolicy"),
        Gvk::new(ADMISSION, "", "ValidatingAdmissionPolicyBinding"),
        "spec/policyName",
    );
    rules
});

/// A reference that fits more than one object of the build.
#[derive(Debug)]
pub(crate) struct AmbiguousReference {
    /// Position of the referrer among the resources.
    pub referrer: usize,
    pub field: String,
    pub name: String,
    pub candidates: Vec<String>,
}

/// What kustomize knows of an object when resolving references to it.
struct Candidate {
    group: String,
    version: String,
    kind: String,
    name: String,
    namespace: String,
    /// Effective namespace before the first rename or move.
    original_namespace: String,
    cluster_scoped: bool,
    previous_names: Vec<String>,
    prefixes: Vec<String>,
    suffixes: Vec<String>,
}

fn effective_namespace(ns: Option<&str>) -> &str {
    match ns {
        None | Some("") => "default",
        Some(ns) => ns,
    }
}

impl Candidate {
    fn of(r: &Resource) -> Self {
        let group = r.group().to_string();
        let kind = r.kind().to_string();
        let cluster_scoped = kustomize_cluster_scoped(&group, &kind);
        let original_namespace = r.previous.first().map_or_else(
            || effective_namespace(r.namespace()).to_string(),
            |(_, ns)| effective_namespace(ns.as_deref()).to_string(),
        );
        Self {
            version: r.version().to_string(),
            name: r.name().to_string(),
            namespace: r.namespace().unwrap_or("").to_string(),
            original_namespace,
            cluster_scoped,
            previous_names: r.previous.iter().map(|(n, _)| n.clone()).collect(),
            prefixes: r.prefixes.clone(),
            suffixes: r.suffixes.clone(),
            group,
            kind,
        }
    }

    fn effective_namespace(&self) -> &str {
        effective_namespace(Some(&self.namespace))
    }

    fn describe(&self) -> String {
        let kind = if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        };
        if self.namespace.is_empty() {
            format!("{kind} {}", self.name)
        } else {
            format!("{kind} {}/{}", self.namespace, self.name)
        }
    }
}

/// `shorter` is the end of `longer` (or the other way round); an empty
/// list only matches an empty one.
fn same_ending(a: &[String], b: &[String]) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    if short.is_empty() {
        return long.is_empty();
    }
    long.ends_with(short)
}

fn affixes_equal(a: &Candidate, b: &Candidate, allow_empty: bool) -> bool {
    let fits = |x: &[String], y: &[String]| {
        (allow_empty && (x.is_empty() || y.is_empty())) || same_ending(x, y)
    };
    fits(&a.prefixes, &b.prefixes) && fits(&a.suffixes, &b.suffixes)
}

/// Rewrite every reference to an object renamed or moved during this build.
///
/// `extra` holds the `nameReference` entries of `configurations` files.
pub(crate) fn fix_references(
    resources: &mut [Resource],
    extra: &[NameReference],
) -> Result<(), AmbiguousReference> {
    if resources.iter().all(|r| r.previous.is_empty()) {
        return Ok(());
    }
    let candidates: Vec<Candidate> = resources.iter().map(Candidate::of).collect();
    // Only renamed or moved objects can be targets; most builds have few
    // kinds of them, so rules for other kinds are skipped at once.
    let renamed: Vec<usize> = (0..resources.len())
        .filter(|&i| !candidates[i].previous_names.is_empty())
        .collect();
    let custom = custom_rules(extra);
    let rules: Vec<&Rule> = RULES
        .iter()
        .chain(&custom)
        .filter(|rule| {
            renamed.iter().any(|&i| {
                let c = &candidates[i];
                rule.target.selects(&c.group, &c.version, &c.kind)
            })
        })
        .collect();
    if rules.is_empty() {
        return Ok(());
    }
    // Candidates by every name they had, and the reachable set of each
    // namespace once: looking a reference up costs its namesakes, not the
    // whole build (2,000 objects in one namespace made it quadratic).
    let mut by_previous_name: HashMap<&str, Vec<usize>> = HashMap::new();
    for &i in &renamed {
        for name in &candidates[i].previous_names {
            let list = by_previous_name.entry(name.as_str()).or_default();
            if list.last() != Some(&i) {
                list.push(i);
            }
        }
    }
    let mut reachable_in: HashMap<String, Vec<usize>> = HashMap::new();
    // The rules of each referrer kind, chosen once per kind, not per object.
    let mut rules_of: HashMap<(&str, &str, &str), Vec<&Rule>> = HashMap::new();
    for (index, r) in resources.iter_mut().enumerate() {
        let referrer = &candidates[index];
        let key = (
            referrer.group.as_str(),
            referrer.version.as_str(),
            referrer.kind.as_str(),
        );
        let applicable = rules_of.entry(key).or_insert_with(|| {
            rules
                .iter()
                .copied()
                .filter(|rule| rule.referrer.selects(key.0, key.1, key.2))
                .collect()
        });
        if applicable.is_empty() {
            continue;
        }
        let computed: Vec<usize>;
        let reachable: &[usize] = match reachable_from(referrer, &r.value, &renamed, &candidates) {
            Reachable::Computed(list) => {
                computed = list;
                &computed
            }
            Reachable::Namespace => reachable_in
                .entry(referrer.effective_namespace().to_string())
                .or_insert_with(|| same_namespace(referrer, &renamed, &candidates)),
        };
        for &rule in applicable.iter() {
            let ctx = Lookup {
                rule,
                referrer,
                role_ref: role_ref_gvk(&r.value, rule),
                candidates: &candidates,
                reachable,
                by_previous_name: &by_previous_name,
            };
            let mut failure = None;
            visit(&mut r.value, &rule.path, &mut |node| {
                if failure.is_none()
                    && let Err(e) = ctx.update(node)
                {
                    failure = Some(e);
                }
            });
            if let Some((name, found)) = failure {
                return Err(AmbiguousReference {
                    referrer: index,
                    field: rule.path.join("."),
                    name,
                    candidates: found.iter().map(|&i| candidates[i].describe()).collect(),
                });
            }
        }
    }
    Ok(())
}

/// The renamed objects `referrer` may refer to: cluster-scoped ones, those
/// in its namespace, and for a RoleBinding those in its subjects' namespaces.
fn reachable_from(
    referrer: &Candidate,
    value: &Value,
    renamed: &[usize],
    candidates: &[Candidate],
) -> Reachable {
    if referrer.cluster_scoped {
        return Reachable::Computed(renamed.to_vec());
    }
    let mut subject_namespaces = Vec::new();
    if referrer.kind == "RoleBinding"
        && let Some(Value::Array(subjects)) = value.get("subjects")
    {
        for s in subjects {
            if s.get("kind").and_then(Value::as_str) == Some("ServiceAccount")
                && let Some(ns) = s.get("namespace").and_then(Value::as_str)
            {
                subject_namespaces.push(ns.to_string());
            }
        }
    }
    if subject_namespaces.is_empty() {
        return Reachable::Namespace;
    }
    Reachable::Computed(
        renamed
            .iter()
            .copied()
            .filter(|&i| {
                let c = &candidates[i];
                c.cluster_scoped
                    || c.effective_namespace() == referrer.effective_namespace()
                    || subject_namespaces.contains(&c.namespace)
            })
            .collect(),
    )
}

/// What [`reachable_from`] found: a list of its own, or the one every
/// referrer of its namespace shares.
enum Reachable {
    Computed(Vec<usize>),
    Namespace,
}

/// The renamed objects a referrer without subjects reaches: cluster-scoped
/// ones and those of its namespace.
fn same_namespace(referrer: &Candidate, renamed: &[usize], candidates: &[Candidate]) -> Vec<usize> {
    renamed
        .iter()
        .copied()
        .filter(|&i| {
            let c = &candidates[i];
            c.cluster_scoped || c.effective_namespace() == referrer.effective_namespace()
        })
        .collect()
}

/// For `roleRef/name`, the group and kind the binding names: a Role and a
/// ClusterRole of the same name are told apart by it.
fn role_ref_gvk(value: &Value, rule: &Rule) -> Option<(String, String)> {
    if rule.path.last().map(String::as_str) != Some("name")
        || rule.path.first().map(String::as_str) != Some("roleRef")
    {
        return None;
    }
    let role_ref = value.get("roleRef")?;
    let group = role_ref.get("apiGroup")?.as_str()?;
    let kind = role_ref.get("kind")?.as_str()?;
    Some((group.to_string(), kind.to_string()))
}

/// Call `f` on every node at `path`, entering lists on the way.
fn visit(value: &mut Value, path: &[String], f: &mut dyn FnMut(&mut Value)) {
    if let Value::Array(items) = value {
        for item in items {
            visit(item, path, f);
        }
        return;
    }
    let Some((first, rest)) = path.split_first() else {
        f(value);
        return;
    };
    if let Some(next) = value.as_object_mut().and_then(|m| m.get_mut(first)) {
        visit(next, rest, f);
    }
}

struct Lookup<'a> {
    rule: &'a Rule,
    referrer: &'a Candidate,
    role_ref: Option<(String, String)>,
    candidates: &'a [Candidate],
    /// Sorted, as `renamed` is.
    reachable: &'a [usize],
    by_previous_name: &'a HashMap<&'a str, Vec<usize>>,
}

type Failure = (String, Vec<usize>);

impl Lookup<'_> {
    /// A scalar name, or a `{name, namespace}` mapping (binding subjects,
    /// webhook services). Lists were entered by `visit`.
    fn update(&self, node: &mut Value) -> Result<(), Failure> {
        match node {
            Value::String(old) => {
                if let Some(i) = self.select(old, self.reachable, false)? {
                    let name = &self.candidates[i].name;
                    if name != old {
                        *old = name.clone();
                    }
                }
                Ok(())
            }
            Value::Object(map) => self.update_mapping(map),
            _ => Ok(()),
        }
    }

    fn update_mapping(&self, map: &mut Map<String, Value>) -> Result<(), Failure> {
        let Some(old) = map.get("name").and_then(Value::as_str).map(str::to_string) else {
            return Ok(());
        };
        let narrowed: Vec<usize>;
        let pool: &[usize] = match map.get("namespace").and_then(Value::as_str) {
            None => self.reachable,
            Some(ns) => {
                let by_original: Vec<usize> = self
                    .reachable
                    .iter()
                    .copied()
                    .filter(|&i| {
                        let c = &self.candidates[i];
                        !c.cluster_scoped && c.original_namespace == ns
                    })
                    .collect();
                narrowed = if by_original.is_empty() {
                    self.reachable
                        .iter()
                        .copied()
                        .filter(|&i| {
                            let c = &self.candidates[i];
                            !c.cluster_scoped && c.effective_namespace() == ns
                        })
                        .collect()
                } else {
                    by_original
                };
                &narrowed
            }
        };
        let Some(i) = self.select(&old, pool, true)? else {
            return Ok(());
        };
        let target = &self.candidates[i];
        if target.name == old && target.namespace.is_empty() {
            return Ok(());
        }
        map.insert("name".into(), Value::String(target.name.clone()));
        if !target.namespace.is_empty() {
            map.insert("namespace".into(), Value::String(target.namespace.clone()));
        }
        Ok(())
    }

    /// kustomize's choice among `pool` (sorted) for a reference to `old`.
    fn select(
        &self,
        old: &str,
        pool: &[usize],
        with_namespace: bool,
    ) -> Result<Option<usize>, Failure> {
        let target = &self.rule.target;
        let referrer = self.referrer;
        let namesakes = self
            .by_previous_name
            .get(old)
            .map_or(&[][..], Vec::as_slice);
        let mut found: Vec<usize> = namesakes
            .iter()
            .copied()
            .filter(|&i| {
                let c = &self.candidates[i];
                pool.binary_search(&i).is_ok()
                    && target.selects(&c.group, &c.version, &c.kind)
                    && self
                        .role_ref
                        .as_ref()
                        .is_none_or(|(g, k)| (g.is_empty() || *g == c.group) && *k == c.kind)
                    && (referrer.cluster_scoped
                        || c.cluster_scoped
                        || c.kind == "ServiceAccount"
                        || c.effective_namespace() == referrer.effective_namespace())
            })
            .collect();
        if found.len() == 1 {
            return Ok(found.pop());
        }
        found.retain(|&i| affixes_equal(&self.candidates[i], referrer, true));
        if found.len() > 1 {
            found.retain(|&i| affixes_equal(&self.candidates[i], referrer, false));
        }
        match found.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(*one)),
            [first, rest @ ..] => {
                let a = &self.candidates[*first];
                let identical = rest.iter().all(|&i| {
                    let b = &self.candidates[i];
                    b.name == a.name && (!with_namespace || b.namespace == a.namespace)
                });
                if identical {
                    Ok(Some(*first))
                } else {
                    Err((old.to_string(), found))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::render::metadata::add_prefix_suffix;
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
        fix_references(&mut rs, &[]).unwrap();
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
