//! Field specs — where kustomize's transformers write — and the
//! `configurations:` files that extend kustomize's built-in tables with
//! fields of custom resources.
//!
//! A kustomization's configuration is kustomize's built-in one plus its own
//! `configurations` files plus those of every kustomization it builds (bases
//! and components): it flows up, never down into a base or across to a
//! sibling, as kustomize merges each sub-build's transformer configuration
//! into its parent's.

use serde::Deserialize;
use serde_json::{Map, Value};

/// A field kustomize writes to: objects of a group/version/kind (empty
/// parts match all), a `/`-separated path (`x[]` names a list), maps
/// created on the way when `create`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct FieldSpec {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub kind: String,
    pub path: String,
    #[serde(default)]
    pub create: bool,
}

impl FieldSpec {
    pub fn selects(&self, group: &str, version: &str, kind: &str) -> bool {
        (self.group.is_empty() || self.group == group)
            && (self.version.is_empty() || self.version == version)
            && (self.kind.is_empty() || self.kind == kind)
    }

    fn of_kind(kind: &str, path: &str) -> Self {
        Self {
            kind: kind.to_string(),
            path: path.to_string(),
            ..Self::default()
        }
    }
}

/// A `nameReference` entry: fields naming an object of the target kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct NameReference {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub version: String,
    pub kind: String,
    #[serde(default)]
    pub field_specs: Vec<FieldSpec>,
}

/// A `configurations:` file, as kustomize reads it. The sections stagegate
/// does not follow are named so that a file using them is refused.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ConfigFile {
    #[serde(default)]
    name_reference: Vec<NameReference>,
    #[serde(default)]
    common_labels: Vec<FieldSpec>,
    #[serde(default)]
    common_annotations: Vec<FieldSpec>,
    #[serde(default)]
    template_labels: Vec<FieldSpec>,
    #[serde(default)]
    namespace: Vec<FieldSpec>,
    #[serde(default)]
    var_reference: Vec<FieldSpec>,
    #[serde(default)]
    images: Vec<FieldSpec>,
    #[serde(default)]
    replicas: Vec<FieldSpec>,
    #[serde(default)]
    name_prefix: Vec<FieldSpec>,
    #[serde(default)]
    name_suffix: Vec<FieldSpec>,
}

/// What a kustomization's `configurations` add to kustomize's built-in
/// field specs (the built-in ones are not repeated here).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Config {
    pub name_reference: Vec<NameReference>,
    pub common_labels: Vec<FieldSpec>,
    pub common_annotations: Vec<FieldSpec>,
    pub template_labels: Vec<FieldSpec>,
    pub namespace: Vec<FieldSpec>,
    pub var_reference: Vec<FieldSpec>,
    pub images: Vec<FieldSpec>,
    pub replicas: Vec<FieldSpec>,
    /// Fields `namePrefix` / `nameSuffix` change besides `metadata/name`.
    pub name_prefix: Vec<FieldSpec>,
    pub name_suffix: Vec<FieldSpec>,
}

fn merge_specs(into: &mut Vec<FieldSpec>, from: &[FieldSpec]) {
    for spec in from {
        if !into.contains(spec) {
            into.push(spec.clone());
        }
    }
}

impl Config {
    /// Read a configuration file's sections.
    pub fn from_file(file: ConfigFile) -> Self {
        let mut config = Self::default();
        config.merge(&Self {
            name_reference: file.name_reference,
            common_labels: file.common_labels,
            common_annotations: file.common_annotations,
            template_labels: file.template_labels,
            namespace: file.namespace,
            var_reference: file.var_reference,
            images: file.images,
            replicas: file.replicas,
            name_prefix: file.name_prefix,
            name_suffix: file.name_suffix,
        });
        config
    }

    /// kustomize's `TransformerConfig.Merge`: field specs are added once;
    /// name references to the same kind pool their field specs.
    pub fn merge(&mut self, other: &Config) {
        for nr in &other.name_reference {
            match self.name_reference.iter_mut().find(|mine| {
                mine.group == nr.group && mine.version == nr.version && mine.kind == nr.kind
            }) {
                Some(mine) => merge_specs(&mut mine.field_specs, &nr.field_specs),
                None => self.name_reference.push(nr.clone()),
            }
        }
        merge_specs(&mut self.common_labels, &other.common_labels);
        merge_specs(&mut self.common_annotations, &other.common_annotations);
        merge_specs(&mut self.template_labels, &other.template_labels);
        merge_specs(&mut self.namespace, &other.namespace);
        merge_specs(&mut self.var_reference, &other.var_reference);
        merge_specs(&mut self.images, &other.images);
        merge_specs(&mut self.replicas, &other.replicas);
        merge_specs(&mut self.name_prefix, &other.name_prefix);
        merge_specs(&mut self.name_suffix, &other.name_suffix);
    }
}

/// kustomize's built-in `varReference` field specs (the fields `$(VAR)`
/// is replaced in), in its order.
pub(crate) fn default_var_reference() -> Vec<FieldSpec> {
    let mut specs = Vec::new();
    let containers = |prefix: &str| {
        let mut paths = Vec::new();
        for list in ["containers", "initContainers"] {
            for field in ["args", "command", "env/value", "volumeMounts/mountPath"] {
                paths.push(format!("{prefix}{list}/{field}"));
            }
        }
        paths.push(format!("{prefix}volumes/nfs/server"));
        paths
    };
    for path in containers("spec/jobTemplate/spec/template/spec/") {
        specs.push(FieldSpec::of_kind("CronJob", &path));
    }
    for kind in ["DaemonSet", "Deployment"] {
        for path in containers("spec/template/spec/") {
            specs.push(FieldSpec::of_kind(kind, &path));
        }
    }
    for path in ["spec/rules/host", "spec/tls/hosts", "spec/tls/secretName"] {
        specs.push(FieldSpec::of_kind("Ingress", path));
    }
    for path in containers("spec/template/spec/") {
        specs.push(FieldSpec::of_kind("Job", &path));
    }
    for path in containers("spec/") {
        specs.push(FieldSpec::of_kind("Pod", &path));
    }
    for path in containers("spec/template/spec/") {
        specs.push(FieldSpec::of_kind("ReplicaSet", &path));
    }
    specs.push(FieldSpec::of_kind("Service", "spec/ports/port"));
    specs.push(FieldSpec::of_kind("Service", "spec/ports/targetPort"));
    let mut stateful = containers("spec/template/spec/");
    stateful.pop();
    stateful.push("spec/volumeClaimTemplates/spec/nfs/server".into());
    for path in stateful {
        specs.push(FieldSpec::of_kind("StatefulSet", &path));
    }
    specs.push(FieldSpec::of_kind("PersistentVolume", "spec/nfs/server"));
    specs.push(FieldSpec::of_kind("", "metadata/labels"));
    specs.push(FieldSpec::of_kind("", "metadata/annotations"));
    specs
}

/// Walk `steps` (entering lists; `x[]` names a list), creating maps when
/// `create`, and call `f` on the parent map with the last key.
pub(crate) fn walk(
    node: &mut Value,
    steps: &[&str],
    create: bool,
    f: &mut dyn FnMut(&mut Map<String, Value>, &str),
) {
    if let Value::Array(items) = node {
        for item in items {
            walk(item, steps, create, f);
        }
        return;
    }
    let Some((first, rest)) = steps.split_first() else {
        return;
    };
    let key = first.strip_suffix("[]").unwrap_or(first);
    let Some(map) = node.as_object_mut() else {
        return;
    };
    if rest.is_empty() {
        f(map, key);
        return;
    }
    if !map.contains_key(key) {
        if !create {
            return;
        }
        map.insert(key.to_string(), Value::Object(Map::new()));
    }
    if let Some(next) = map.get_mut(key) {
        walk(next, rest, create, f);
    }
}

/// Add `pairs` to the map at the spec's path.
pub(crate) fn set_map_entries(node: &mut Value, spec: &FieldSpec, pairs: &Map<String, Value>) {
    let steps: Vec<&str> = spec.path.split('/').collect();
    walk(node, &steps, spec.create, &mut |map, key| {
        if !map.contains_key(key) {
            if !spec.create {
                return;
            }
            map.insert(key.to_string(), Value::Object(Map::new()));
        }
        if let Some(Value::Object(target)) = map.get_mut(key) {
            for (k, v) in pairs {
                target.insert(k.clone(), v.clone());
            }
        }
    });
}

/// Set the scalar at the spec's path (where it exists, or always when `create`).
pub(crate) fn set_scalar(node: &mut Value, spec: &FieldSpec, value: &Value) {
    let steps: Vec<&str> = spec.path.split('/').collect();
    walk(node, &steps, spec.create, &mut |map, key| {
        if spec.create || map.contains_key(key) {
            map.insert(key.to_string(), value.clone());
        }
    });
}

/// Rewrite every string at the spec's path with `f`.
pub(crate) fn map_strings(
    node: &mut Value,
    spec: &FieldSpec,
    f: &mut dyn FnMut(&str) -> Option<String>,
) {
    let steps: Vec<&str> = spec.path.split('/').collect();
    walk(node, &steps, false, &mut |map, key| {
        if let Some(Value::String(text)) = map.get_mut(key)
            && let Some(new) = f(text)
        {
            *text = new;
        }
    });
}
