//! Problems found in a repository, collected so that all of them are reported
//! together rather than one per run.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;
use serde_json::Value;

use crate::core::object::Manifest;
use crate::core::object::StageName;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// How discovery introduces a YAML syntax error.
pub const DISCOVERY_YAML: &str = "invalid YAML: ";

/// One problem, naming where it is: the file and, when known, the stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub severity: Severity,
    pub file: Option<PathBuf>,
    pub stage: Option<StageName>,
    pub message: String,
}

impl Problem {
    pub fn error(message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            file: None,
            stage: None,
            message: message.into(),
        }
    }

    pub fn warning(message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(message)
        }
    }

    pub fn in_file(mut self, file: impl Into<PathBuf>) -> Self {
        self.file = Some(file.into());
        self
    }

    pub fn in_stage(mut self, stage: &StageName) -> Self {
        self.stage = Some(stage.clone());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.severity {
            Severity::Error => f.write_str("error: ")?,
            Severity::Warning => f.write_str("warning: ")?,
        }
        if let Some(file) = &self.file {
            write!(f, "{}: ", file.display())?;
        }
        if let Some(stage) = &self.stage {
            write!(f, "stage {stage}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem of a repository; errors and warnings together.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Problems(Vec<Problem>);

impl Problems {
    pub fn push(&mut self, problem: Problem) {
        // The same file can be read by discovery and by a stage's render; say it once.
        if !self.0.contains(&problem) {
            self.0.push(problem);
        }
    }

    pub fn extend(&mut self, problems: impl IntoIterator<Item = Problem>) {
        for problem in problems {
            self.push(problem);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Problem> {
        self.0.iter()
    }

    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.0.iter().filter(|p| p.is_error())
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Problem> {
        self.0.iter().filter(|p| !p.is_error())
    }

    pub fn has_errors(&self) -> bool {
        self.0.iter().any(Problem::is_error)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A YAML file inside a stage is read by discovery and by the stage's
    /// render: keep the render's report, which names the stage.
    pub fn drop_discovery_duplicates(&mut self) {
        let rendered: Vec<PathBuf> = self
            .0
            .iter()
            .filter(|p| !p.message.starts_with(DISCOVERY_YAML))
            .filter_map(|p| p.file.clone())
            .collect();
        self.0.retain(|p| {
            !(p.message.starts_with(DISCOVERY_YAML)
                && p.file.as_ref().is_some_and(|f| rendered.contains(f)))
        });
    }

    /// Errors first, then warnings; each group in the order found.
    pub fn sorted(&self) -> Vec<&Problem> {
        let mut all: Vec<&Problem> = self.0.iter().collect();
        all.sort_by_key(|p| p.severity);
        all
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for problem in self.sorted() {
            writeln!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

impl IntoIterator for Problems {
    type Item = Problem;
    type IntoIter = std::vec::IntoIter<Problem>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// Names of stagegate's own objects. A repository object by these names
/// would overwrite the agent's state or Lease (and brick the agent), so it
/// is refused in whatever namespace it is rendered into: `validate` does not
/// know the agent's namespace, and must give the answer the agent gives.
/// (Kept equal to the state store's and `run::leader::LEASE_NAME` by
/// a test; the core cannot import the agent's modules.)
pub const RESERVED_CONFIGMAPS: &[&str] = &["stagegate-source", "stagegate-state"];
pub const RESERVED_LEASE: &str = "stagegate-leader";
/// The API group of stagegate's own resources (`stages.stagegate.dev`).
pub const OWN_GROUP: &str = "stagegate.dev";

/// What the API server accepts in a ConfigMap's or Secret's data.
pub const MAX_DATA_BYTES: usize = 1024 * 1024;

/// Every rendered object checked on its own: stagegate's own names, data
/// size limits, and the shape of well-known kinds, each problem naming the
/// file the object came from.
pub fn check_objects<'a>(
    objects: impl IntoIterator<Item = (&'a StageName, &'a Manifest)>,
    problems: &mut Problems,
) {
    for (stage, manifest) in objects {
        for message in object_problems(manifest) {
            problems.push(
                Problem::error(format!("{}: {message}", manifest.object_ref()))
                    .in_file(&manifest.source)
                    .in_stage(stage),
            );
        }
    }
}

fn object_problems(manifest: &Manifest) -> Vec<String> {
    let mut found = Vec::new();
    let (group, kind, name) = (manifest.group(), manifest.kind(), manifest.name());
    let reserved = match (group, kind) {
        ("", "ConfigMap") => RESERVED_CONFIGMAPS.contains(&name),
        ("coordination.k8s.io", "Lease") => name == RESERVED_LEASE,
        (g, _) => g == OWN_GROUP,
    };
    if reserved {
        found.push(format!(
            "collides with stagegate's own objects (its ConfigMaps {}, \
             its Lease {RESERVED_LEASE}, its {OWN_GROUP} resources); applying it would \
             overwrite the agent's state: rename it",
            RESERVED_CONFIGMAPS.join(" and ")
        ));
    }
    let value = &manifest.value;
    if value.get("metadata").is_some_and(|m| !m.is_object()) {
        found.push("`metadata` must be a mapping".into());
    }
    for field in ["labels", "annotations"] {
        if let Some(map) = value.pointer(&format!("/metadata/{field}")) {
            let strings = map
                .as_object()
                .is_some_and(|m| m.values().all(Value::is_string));
            if !strings && !map.is_null() {
                found.push(format!("`metadata.{field}` must map names to strings"));
            }
        }
    }
    let spec_kinds = [
        ("batch", "Job"),
        ("batch", "CronJob"),
        ("apps", "Deployment"),
        ("apps", "StatefulSet"),
        ("apps", "DaemonSet"),
        ("apps", "ReplicaSet"),
        ("", "Service"),
        ("", "Pod"),
    ];
    if spec_kinds.contains(&(group, kind)) {
        match value.get("spec") {
            Some(Value::Object(_)) => {}
            Some(other) => found.push(format!(
                "`spec` must be a mapping, not {}",
                type_name(other)
            )),
            None if kind != "Service" => found.push("has no `spec`".into()),
            None => {}
        }
    }
    if group.is_empty() && matches!(kind, "ConfigMap" | "Secret") {
        let mut bytes = 0usize;
        for field in ["data", "binaryData", "stringData"] {
            match value.get(field) {
                None | Some(Value::Null) => {}
                Some(Value::Object(map)) => {
                    for (key, v) in map {
                        let Some(text) = v.as_str() else {
                            found.push(format!("`{field}.{key}` must be a string"));
                            continue;
                        };
                        // Base64 values count as the bytes they hold.
                        let base64 = field == "binaryData" || (kind == "Secret" && field == "data");
                        bytes += key.len()
                            + if base64 {
                                text.len() / 4 * 3
                            } else {
                                text.len()
                            };
                    }
                }
                Some(other) => found.push(format!(
                    "`{field}` must be a mapping, not {}",
                    type_name(other)
                )),
            }
        }
        if bytes > MAX_DATA_BYTES {
            found.push(format!(
                "its data is {bytes} bytes, over the API server's limit of {MAX_DATA_BYTES} bytes (1 MiB) \
                 for a {kind}; split it or mount the data another way"
            ));
        }
    }
    found
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn problems_of(value: Value) -> Vec<String> {
        object_problems(&Manifest {
            value,
            source: "app/x.yaml".into(),
        })
    }

    #[test]
    fn reserved_names_are_the_agents_own() {
        assert!(RESERVED_CONFIGMAPS.contains(&crate::cluster::state::store::SOURCE_CONFIGMAP));
        assert!(RESERVED_CONFIGMAPS.contains(&crate::cluster::state::legacy::LEGACY_CONFIGMAP));
        assert_eq!(RESERVED_LEASE, crate::agent::run::leader::LEASE_NAME);
    }

    #[test]
    fn objects_colliding_with_the_agents_own_are_refused() {
        for value in [
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "stagegate-state", "namespace": "stagegate-system"}}),
            json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                   "metadata": {"name": "stagegate-leader"}}),
            json!({"apiVersion": "stagegate.dev/v1alpha1", "kind": "Stage",
                   "metadata": {"name": "app"}}),
        ] {
            let found = problems_of(value.clone());
            assert!(
                found.iter().any(|p| p.contains("collides")),
                "{value}: {found:?}"
            );
        }
        assert!(
            problems_of(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "app-config"}, "data": {"k": "v"}}))
            .is_empty()
        );
    }

    #[test]
    fn oversized_data_and_wrong_types_in_well_known_kinds_are_refused() {
        let big = "x".repeat(MAX_DATA_BYTES + 1);
        let found = problems_of(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "big"}, "data": {"blob": big}}));
        assert!(found.iter().any(|p| p.contains("1 MiB")), "{found:?}");
        let found = problems_of(json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "j"}, "spec": "string"}));
        assert!(
            found
                .iter()
                .any(|p| p.contains("`spec` must be a mapping, not a string")),
            "{found:?}"
        );
        let found = problems_of(json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s", "labels": {"a": 1}}, "data": ["x"]}));
        assert_eq!(found.len(), 2, "{found:?}");
    }
}
