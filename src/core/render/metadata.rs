//! Metadata transformations: namespace, name prefix/suffix, labels and
//! annotations (on metadata and, where kustomize puts them, on selectors and
//! templates), and stagegate's own labels.

use serde_json::{Map, Value};

use super::fieldspec::{Config, FieldSpec as CustomSpec, set_map_entries, set_scalar};
use super::resource::Resource;
use crate::core::labels::{MANAGED_BY_KEY, MANAGED_BY_VALUE, STAGE_LABEL};
use crate::core::object::Manifest;

/// Kinds that live outside namespaces. Without a cluster to ask (discovery),
/// this list decides where `namespace` / `targetNamespace` apply.
const CLUSTER_SCOPED: &[&str] = &[
    "APIService",
    "CertificateSigningRequest",
    "ClusterIssuer",
    "ClusterRole",
    "ClusterRoleBinding",
    "ComponentStatus",
    "CSIDriver",
    "CSINode",
    "CustomResourceDefinition",
    "FlowSchema",
    "IngressClass",
    "MutatingAdmissionPolicy",
    "MutatingAdmissionPolicyBinding",
    "MutatingWebhookConfiguration",
    "Namespace",
    "Node",
    "PersistentVolume",
    "PodSecurityPolicy",
    "PriorityClass",
    "PriorityLevelConfiguration",
    "RuntimeClass",
    "StorageClass",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "ValidatingWebhookConfiguration",
    "VolumeAttachment",
    "VolumeSnapshotClass",
    "VolumeSnapshotContent",
];

pub fn is_cluster_scoped(kind: &str) -> bool {
    CLUSTER_SCOPED.contains(&kind)
}

fn metadata_mut(value: &mut Value) -> Option<&mut Map<String, Value>> {
    let obj = value.as_object_mut()?;
    let meta = obj
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    meta.as_object_mut()
}

/// Groups and kinds kustomize knows to be cluster-scoped (its built-in
/// OpenAPI data, as in kustomize v5.5 inside kubectl 1.32, which does not
/// list ValidatingAdmissionPolicy and its binding yet). Every other kind, custom resources included, gets the
/// kustomization's namespace, whatever scope a CRD declares: kustomize does
/// not read CRDs for scope, and the API server drops the namespace of a
/// cluster-scoped object.
const KUSTOMIZE_CLUSTER_SCOPED: &[(&str, &str)] = &[
    ("", "ComponentStatus"),
    ("", "Namespace"),
    ("", "Node"),
    ("", "NodeProxyOptions"),
    ("", "PersistentVolume"),
    (
        "admissionregistration.k8s.io",
        "MutatingWebhookConfiguration",
    ),
    (
        "admissionregistration.k8s.io",
        "ValidatingWebhookConfiguration",
    ),
    ("apiextensions.k8s.io", "CustomResourceDefinition"),
    ("apiregistration.k8s.io", "APIService"),
    ("certificates.k8s.io", "CertificateSigningRequest"),
    ("flowcontrol.apiserver.k8s.io", "FlowSchema"),
    ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration"),
    ("networking.k8s.io", "IngressClass"),
    ("node.k8s.io", "RuntimeClass"),
    ("policy", "PodSecurityPolicy"),
    ("rbac.authorization.k8s.io", "ClusterRole"),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
    ("scheduling.k8s.io", "PriorityClass"),
    ("storage.k8s.io", "CSIDriver"),
    ("storage.k8s.io", "CSINode"),
    ("storage.k8s.io", "StorageClass"),
    ("storage.k8s.io", "VolumeAttachment"),
];

/// Whether kustomize treats objects of `group` and `kind` as cluster-scoped.
pub(crate) fn kustomize_cluster_scoped(group: &str, kind: &str) -> bool {
    KUSTOMIZE_CLUSTER_SCOPED.contains(&(group, kind))
}

/// kustomize's namespace transformer: every object not cluster-scoped moves
/// to `namespace`; a core Namespace is renamed to it; binding subjects named
/// `default` move along (every namespace has its own `default` account);
/// an APIService's and a CRD conversion webhook's Service namespace follow.
pub(crate) fn set_namespace(resources: &mut [Resource], namespace: &str) {
    set_namespace_in(resources, namespace, NamespaceFields::ALL);
}

/// Which of kustomize's built-in namespace field specs a NamespaceTransformer
/// lists besides `metadata/namespace` (set on every namespaced object, and
/// binding subjects named `default`, whatever the list).
#[derive(Debug, Clone, Copy)]
pub(crate) struct NamespaceFields {
    pub namespace_name: bool,
    pub api_service: bool,
    pub crd_conversion: bool,
}

impl NamespaceFields {
    pub const ALL: Self = Self {
        namespace_name: true,
        api_service: true,
        crd_conversion: true,
    };
}

pub(crate) fn set_namespace_in(
    resources: &mut [Resource],
    namespace: &str,
    fields: NamespaceFields,
) {
    for r in resources {
        // kustomize records every object's identity here, moved or not;
        // name references look for targets among recorded identities.
        r.remember_identity();
        let (group, kind) = (r.group().to_string(), r.kind().to_string());
        if fields.namespace_name
            && kind == "Namespace"
            && r.api_version() == "v1"
            && let Some(meta) = metadata_mut(&mut r.value)
        {
            meta.insert("name".into(), Value::String(namespace.into()));
        }
        if matches!(kind.as_str(), "RoleBinding" | "ClusterRoleBinding") {
            set_default_subject_namespace(&mut r.value, namespace);
        }
        if fields.api_service && group == "apiregistration.k8s.io" && kind == "APIService" {
            set_nested(
                &mut r.value,
                &["spec", "service", "namespace"],
                namespace,
                true,
            );
        }
        if fields.crd_conversion
            && group == "apiextensions.k8s.io"
            && kind == "CustomResourceDefinition"
        {
            let path = [
                "spec",
                "conversion",
                "webhook",
                "clientConfig",
                "service",
                "namespace",
            ];
            set_nested(&mut r.value, &path, namespace, false);
        }
        if kustomize_cluster_scoped(&group, &kind) {
            continue;
        }
        if let Some(meta) = metadata_mut(&mut r.value) {
            meta.insert("namespace".into(), Value::String(namespace.into()));
        }
    }
}

/// Set the string at `path`; the maps on the way are created when `create`
/// is set, otherwise the field is only set where its parent exists.
fn set_nested(value: &mut Value, path: &[&str], text: &str, create: bool) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = value;
    for key in parents {
        let Some(map) = node.as_object_mut() else {
            return;
        };
        if !map.contains_key(*key) {
            if !create {
                return;
            }
            map.insert((*key).to_string(), Value::Object(Map::new()));
        }
        let Some(next) = map.get_mut(*key) else {
            return;
        };
        node = next;
    }
    if let Some(map) = node.as_object_mut() {
        map.insert((*last).to_string(), Value::String(text.into()));
    }
}

/// kustomize sets the namespace of every binding subject named `default`,
/// whatever its kind.
fn set_default_subject_namespace(value: &mut Value, namespace: &str) {
    let Some(Value::Array(subjects)) = value.get_mut("subjects") else {
        return;
    };
    for s in subjects {
        if s.get("name").and_then(Value::as_str) == Some("default")
            && let Value::Object(map) = s
        {
            map.insert("namespace".into(), Value::String(namespace.into()));
        }
    }
}

/// `namePrefix` / `nameSuffix`. kustomize leaves the names of CRDs,
/// APIServices and Namespaces alone: they are referred to by fixed names.
pub(crate) fn add_prefix_suffix(resources: &mut [Resource], prefix: &str, suffix: &str) {
    for r in resources {
        add_name_prefix_suffix(r, prefix, suffix);
    }
}

/// kustomize's prefix and suffix transformer with its field specs: a
/// `metadata/name` spec renames the objects it selects (and records them for
/// references); any other spec puts the prefix and suffix around the scalar
/// at its path, as a string.
pub(crate) fn prefix_suffix_by_specs(
    resources: &mut [Resource],
    prefix: &str,
    suffix: &str,
    specs: &[super::fieldspec::FieldSpec],
) {
    for r in resources.iter_mut() {
        if keeps_its_name(r) {
            continue;
        }
        let (group, version, kind) = r.gvk();
        for spec in specs.iter().filter(|s| s.selects(&group, &version, &kind)) {
            if spec.path == "metadata/name" {
                add_name_prefix_suffix(r, prefix, suffix);
            } else {
                affix_strings(&mut r.value, spec, prefix, suffix);
            }
        }
    }
}

/// `namePrefix` and `nameSuffix` with the field specs `configurations` add
/// to kustomize's `metadata/name`: kustomize then runs its prefix
/// transformer, then its suffix transformer, each over its own list.
pub(crate) fn add_prefix_suffix_configured(
    resources: &mut [Resource],
    prefix: &str,
    suffix: &str,
    prefix_specs: &[super::fieldspec::FieldSpec],
    suffix_specs: &[super::fieldspec::FieldSpec],
) {
    if prefix_specs.is_empty() && suffix_specs.is_empty() {
        add_prefix_suffix(resources, prefix, suffix);
        return;
    }
    let with_name = |extra: &[super::fieldspec::FieldSpec]| {
        let mut specs = vec![super::fieldspec::FieldSpec {
            path: "metadata/name".into(),
            ..Default::default()
        }];
        for spec in extra {
            if !specs.contains(spec) {
                specs.push(spec.clone());
            }
        }
        specs
    };
    if !prefix.is_empty() {
        prefix_suffix_by_specs(resources, prefix, "", &with_name(prefix_specs));
    }
    if !suffix.is_empty() {
        prefix_suffix_by_specs(resources, "", suffix, &with_name(suffix_specs));
    }
}

/// `prefix` and `suffix` around the scalar at the spec's path (created
/// empty first when the spec says `create`), as kustomize's prefix and
/// suffix filter writes them: always a string.
fn affix_strings(node: &mut Value, spec: &super::fieldspec::FieldSpec, prefix: &str, suffix: &str) {
    let steps: Vec<&str> = spec.path.split('/').collect();
    super::fieldspec::walk(node, &steps, spec.create, &mut |map, key| {
        let old = match map.get(key) {
            None if spec.create => String::new(),
            None | Some(Value::Object(_) | Value::Array(_)) => return,
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) => String::new(),
            Some(other) => other.to_string(),
        };
        map.insert(
            key.to_string(),
            Value::String(format!("{prefix}{old}{suffix}")),
        );
    });
}

/// Whether kustomize's prefix and suffix transformer leaves `r` alone.
pub(crate) fn keeps_its_name(r: &Resource) -> bool {
    match r.kind() {
        "CustomResourceDefinition" | "Namespace" => true,
        "APIService" => r.group() == "apiregistration.k8s.io",
        _ => false,
    }
}

/// [`add_prefix_suffix`] for one object.
pub(crate) fn add_name_prefix_suffix(r: &mut Resource, prefix: &str, suffix: &str) {
    if (prefix.is_empty() && suffix.is_empty()) || keeps_its_name(r) {
        return;
    }
    let new = format!("{prefix}{}{suffix}", r.name());
    r.remember_identity();
    if !prefix.is_empty() {
        r.prefixes.push(prefix.to_string());
    }
    if !suffix.is_empty() {
        r.suffixes.push(suffix.to_string());
    }
    if let Some(meta) = metadata_mut(&mut r.value) {
        meta.insert("name".into(), Value::String(new));
    }
}

/// A place kustomize writes labels or annotations to: for objects of
/// `kind` (and `group`, when given), the map at `path`, created if missing
/// when `create` is set. A list on the way is entered item by item.
struct FieldSpec {
    group: Option<&'static str>,
    kind: &'static str,
    path: &'static [&'static str],
    create: bool,
}

const fn fs(
    group: Option<&'static str>,
    kind: &'static str,
    path: &'static [&'static str],
    create: bool,
) -> FieldSpec {
    FieldSpec {
        group,
        kind,
        path,
        create,
    }
}

const TEMPLATE_LABELS: &[&str] = &["spec", "template", "metadata", "labels"];
const MATCH_LABELS: &[&str] = &["spec", "selector", "matchLabels"];
const AFFINITY_PATHS: &[&[&str]] = &[
    &[
        "spec",
        "template",
        "spec",
        "affinity",
        "podAffinity",
        "preferredDuringSchedulingIgnoredDuringExecution",
        "podAffinityTerm",
        "labelSelector",
        "matchLabels",
    ],
    &[
        "spec",
        "template",
        "spec",
        "affinity",
        "podAffinity",
        "requiredDuringSchedulingIgnoredDuringExecution",
        "labelSelector",
        "matchLabels",
    ],
    &[
        "spec",
        "template",
        "spec",
        "affinity",
        "podAntiAffinity",
        "preferredDuringSchedulingIgnoredDuringExecution",
        "podAffinityTerm",
        "labelSelector",
        "matchLabels",
    ],
    &[
        "spec",
        "template",
        "spec",
        "affinity",
        "podAntiAffinity",
        "requiredDuringSchedulingIgnoredDuringExecution",
        "labelSelector",
        "matchLabels",
    ],
    &[
        "spec",
        "template",
        "spec",
        "topologySpreadConstraints",
        "labelSelector",
        "matchLabels",
    ],
];

/// kustomize's template label places (`labels` with `includeTemplates`, and
/// part of `commonLabels`).
const TEMPLATE_LABEL_SPECS: &[FieldSpec] = &[
    fs(None, "ReplicationController", TEMPLATE_LABELS, true),
    fs(None, "Deployment", TEMPLATE_LABELS, true),
    fs(None, "ReplicaSet", TEMPLATE_LABELS, true),
    fs(None, "DaemonSet", TEMPLATE_LABELS, true),
    fs(Some("apps"), "StatefulSet", TEMPLATE_LABELS, true),
    fs(
        Some("apps"),
        "StatefulSet",
        &["spec", "volumeClaimTemplates[]", "metadata", "labels"],
        true,
    ),
    fs(Some("batch"), "Job", TEMPLATE_LABELS, true),
    fs(
        Some("batch"),
        "CronJob",
        &["spec", "jobTemplate", "metadata", "labels"],
        true,
    ),
    fs(
        Some("batch"),
        "CronJob",
        &[
            "spec",
            "jobTemplate",
            "spec",
            "template",
            "metadata",
            "labels",
        ],
        true,
    ),
];

/// kustomize's selector places (`commonLabels`, `labels` with `includeSelectors`).
const SELECTOR_LABEL_SPECS: &[FieldSpec] = &[
    fs(None, "Service", &["spec", "selector"], true),
    fs(None, "ReplicationController", &["spec", "selector"], true),
    fs(None, "Deployment", MATCH_LABELS, true),
    fs(None, "ReplicaSet", MATCH_LABELS, true),
    fs(None, "DaemonSet", MATCH_LABELS, true),
    fs(Some("apps"), "StatefulSet", MATCH_LABELS, true),
    fs(Some("batch"), "Job", MATCH_LABELS, false),
    fs(
        Some("batch"),
        "CronJob",
        &["spec", "jobTemplate", "spec", "selector", "matchLabels"],
        false,
    ),
    fs(Some("policy"), "PodDisruptionBudget", MATCH_LABELS, false),
    fs(
        Some("networking.k8s.io"),
        "NetworkPolicy",
        &["spec", "podSelector", "matchLabels"],
        false,
    ),
    fs(
        Some("networking.k8s.io"),
        "NetworkPolicy",
        &["spec", "ingress", "from", "podSelector", "matchLabels"],
        false,
    ),
    fs(
        Some("networking.k8s.io"),
        "NetworkPolicy",
        &["spec", "egress", "to", "podSelector", "matchLabels"],
        false,
    ),
];

const TEMPLATE_ANNOTATIONS: &[&str] = &["spec", "template", "metadata", "annotations"];
const TEMPLATE_ANNOTATION_SPECS: &[FieldSpec] = &[
    fs(None, "ReplicationController", TEMPLATE_ANNOTATIONS, true),
    fs(None, "Deployment", TEMPLATE_ANNOTATIONS, true),
    fs(None, "ReplicaSet", TEMPLATE_ANNOTATIONS, true),
    fs(None, "DaemonSet", TEMPLATE_ANNOTATIONS, true),
    fs(None, "StatefulSet", TEMPLATE_ANNOTATIONS, true),
    fs(Some("batch"), "Job", TEMPLATE_ANNOTATIONS, true),
    fs(
        Some("batch"),
        "CronJob",
        &["spec", "jobTemplate", "metadata", "annotations"],
        true,
    ),
    fs(
        Some("batch"),
        "CronJob",
        &[
            "spec",
            "jobTemplate",
            "spec",
            "template",
            "metadata",
            "annotations",
        ],
        true,
    ),
];

/// Where a set of labels goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LabelScope {
    pub selectors: bool,
    pub templates: bool,
}

pub(crate) fn add_labels(
    resources: &mut [Resource],
    labels: &Map<String, Value>,
    scope: LabelScope,
) {
    if labels.is_empty() {
        return;
    }
    for r in resources {
        let kind = r.kind().to_string();
        let group = r.group().to_string();
        set_pairs(&mut r.value, &["metadata", "labels"], true, labels);
        if scope.templates || scope.selectors {
            for spec in TEMPLATE_LABEL_SPECS {
                if spec_applies(spec, &kind, &group) {
                    set_pairs(&mut r.value, spec.path, spec.create, labels);
                }
            }
        }
        if scope.selectors {
            for spec in SELECTOR_LABEL_SPECS {
                if spec_applies(spec, &kind, &group) {
                    set_pairs(&mut r.value, spec.path, spec.create, labels);
                }
            }
            if matches!(
                (group.as_str(), kind.as_str()),
                ("apps", "Deployment" | "StatefulSet")
            ) {
                for path in AFFINITY_PATHS {
                    set_pairs(&mut r.value, path, false, labels);
                }
            }
        }
    }
}

pub(crate) fn add_annotations(resources: &mut [Resource], annotations: &Map<String, Value>) {
    if annotations.is_empty() {
        return;
    }
    for r in resources {
        let kind = r.kind().to_string();
        let group = r.group().to_string();
        set_pairs(
            &mut r.value,
            &["metadata", "annotations"],
            true,
            annotations,
        );
        for spec in TEMPLATE_ANNOTATION_SPECS {
            if spec_applies(spec, &kind, &group) {
                set_pairs(&mut r.value, spec.path, spec.create, annotations);
            }
        }
    }
}

fn spec_applies(spec: &FieldSpec, kind: &str, group: &str) -> bool {
    spec.kind == kind && spec.group.is_none_or(|g| g == group)
}

fn set_pairs(value: &mut Value, path: &[&str], create: bool, pairs: &Map<String, Value>) {
    let Some((first, rest)) = path.split_first() else {
        if let Value::Object(map) = value {
            for (k, v) in pairs {
                map.insert(k.clone(), v.clone());
            }
        } else if value.is_null() && create {
            *value = Value::Object(pairs.clone());
        }
        return;
    };
    match value {
        Value::Array(items) => {
            for item in items {
                set_pairs(item, path, create, pairs);
            }
        }
        Value::Object(map) => {
            let (key, is_list) = match first.strip_suffix("[]") {
                Some(k) => (k, true),
                None => (*first, false),
            };
            match map.get_mut(key) {
                Some(Value::Null) | None if create && !is_list => {
                    let mut child = Value::Object(Map::new());
                    set_pairs(&mut child, rest, create, pairs);
                    map.insert(key.to_string(), child);
                }
                Some(child) => set_pairs(child, rest, create, pairs),
                None => {}
            }
        }
        _ => {}
    }
}

/// Labels at the `commonLabels` (with selectors) or `templateLabels`
/// (templates only) field specs of the `configurations` files.
pub(crate) fn add_custom_labels(
    resources: &mut [Resource],
    labels: &Map<String, Value>,
    scope: LabelScope,
    config: &Config,
) {
    let specs = if scope.selectors {
        &config.common_labels
    } else if scope.templates {
        &config.template_labels
    } else {
        return;
    };
    set_custom_pairs(resources, labels, specs);
}

/// Annotations at the `commonAnnotations` field specs of the
/// `configurations` files.
pub(crate) fn add_custom_annotations(
    resources: &mut [Resource],
    annotations: &Map<String, Value>,
    config: &Config,
) {
    set_custom_pairs(resources, annotations, &config.common_annotations);
}

fn set_custom_pairs(resources: &mut [Resource], pairs: &Map<String, Value>, specs: &[CustomSpec]) {
    if pairs.is_empty() || specs.is_empty() {
        return;
    }
    for r in resources {
        let (group, version, kind) = r.gvk();
        for spec in specs.iter().filter(|s| s.selects(&group, &version, &kind)) {
            set_map_entries(&mut r.value, spec, pairs);
        }
    }
}

/// The namespace at the `namespace` field specs of the `configurations`
/// files (fields of custom resources that hold a namespace).
pub(crate) fn set_custom_namespace_fields(
    resources: &mut [Resource],
    namespace: &str,
    specs: &[CustomSpec],
) {
    if specs.is_empty() {
        return;
    }
    let value = Value::String(namespace.to_string());
    for r in resources {
        let (group, version, kind) = r.gvk();
        for spec in specs.iter().filter(|s| s.selects(&group, &version, &kind)) {
            if spec.path != "metadata/namespace" {
                set_scalar(&mut r.value, spec, &value);
            }
        }
    }
}

/// stagegate's own labels, on metadata only: selectors are immutable on
/// workloads, so adding them there would break existing Deployments.
pub(crate) fn add_stagegate_labels(manifests: &mut [Manifest], stage: &str) {
    for m in manifests {
        let Some(meta) = metadata_mut(&mut m.value) else {
            continue;
        };
        let labels = meta
            .entry("labels")
            .or_insert_with(|| Value::Object(Map::new()));
        if !labels.is_object() {
            *labels = Value::Object(Map::new());
        }
        if let Value::Object(labels) = labels {
            labels.insert(
                MANAGED_BY_KEY.into(),
                Value::String(MANAGED_BY_VALUE.into()),
            );
            labels.insert(STAGE_LABEL.into(), Value::String(stage.into()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> Resource {
        Resource::new(
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                   "spec": {"selector": {"matchLabels": {"app": "web"}},
                            "template": {"metadata": {"labels": {"app": "web"}}}}}),
            "f".into(),
        )
    }

    #[test]
    fn labels_reach_selectors_only_when_asked() {
        let pairs = json!({"team": "a"})
            .as_object()
            .cloned()
            .unwrap_or_default();
        let mut meta_only = vec![deployment()];
        add_labels(
            &mut meta_only,
            &pairs,
            LabelScope {
                selectors: false,
                templates: false,
            },
        );
        assert_eq!(meta_only[0].value["metadata"]["labels"]["team"], "a");
        assert!(
            meta_only[0].value["spec"]["selector"]["matchLabels"]
                .get("team")
                .is_none()
        );
        assert!(
            meta_only[0].value["spec"]["template"]["metadata"]["labels"]
                .get("team")
                .is_none()
        );

        let mut templates = vec![deployment()];
        add_labels(
            &mut templates,
            &pairs,
            LabelScope {
                selectors: false,
                templates: true,
            },
        );
        assert_eq!(
            templates[0].value["spec"]["template"]["metadata"]["labels"]["team"],
            "a"
        );
        assert!(
            templates[0].value["spec"]["selector"]["matchLabels"]
                .get("team")
                .is_none()
        );

        let mut all = vec![deployment()];
        add_labels(
            &mut all,
            &pairs,
            LabelScope {
                selectors: true,
                templates: true,
            },
        );
        assert_eq!(all[0].value["spec"]["selector"]["matchLabels"]["team"], "a");
    }

    #[test]
    fn namespace_skips_cluster_scoped_kinds() {
        let mut rs = vec![
            deployment(),
            Resource::new(
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "r"}}),
                "f".into(),
            ),
        ];
        set_namespace(&mut rs, "apps");
        assert_eq!(rs[0].namespace(), Some("apps"));
        assert_eq!(rs[1].namespace(), None);
    }
}
