//! Reading one stage-defining document, native `Stage` or Flux `Kustomization`,
//! into a [`Stage`].

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::{
    FLUX_KUSTOMIZATION_KIND, STAGE_API_VERSION, STAGE_KIND, Stage, StageName, StageOrigin,
};
use crate::diagnostics::Problem;
use crate::paths::normalize;
use crate::render::{ImageOverride, Patch};
use crate::yaml::Document;

/// What reading a definition gave: the stage, if it could be read, and what
/// is wrong or unsupported in it.
pub struct Definition {
    pub stage: Option<Stage>,
    pub problems: Vec<Problem>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NativeDocument {
    #[allow(dead_code)]
    api_version: String,
    #[allow(dead_code)]
    kind: String,
    metadata: Metadata,
    spec: NativeSpec,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Metadata {
    name: String,
    #[allow(dead_code)]
    #[serde(default)]
    namespace: Option<String>,
    #[allow(dead_code)]
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[allow(dead_code)]
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NativeSpec {
    path: String,
    #[serde(default)]
    depends_on: Vec<String>,
    #[serde(default)]
    wait: Option<bool>,
    #[serde(default)]
    force: bool,
    #[serde(default)]
    prune: bool,
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    retry_interval: Option<Duration>,
    #[serde(default)]
    job_retries: u32,
    #[serde(default)]
    target_namespace: Option<String>,
    #[serde(default)]
    substitute: BTreeMap<String, Scalar>,
    #[serde(default)]
    patches: Vec<Patch>,
    #[serde(default)]
    images: Vec<ImageOverride>,
    #[serde(default)]
    suspend: bool,
}

/// The subset of a Flux Kustomization's spec that stagegate honours; the
/// rest is reported by [`flux_unsupported_fields`].
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FluxSpec {
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    depends_on: Vec<FluxDependency>,
    #[serde(default)]
    wait: Option<bool>,
    #[serde(default)]
    force: bool,
    #[serde(default)]
    prune: bool,
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    retry_interval: Option<Duration>,
    #[serde(default)]
    target_namespace: Option<String>,
    #[serde(default)]
    post_build: Option<FluxPostBuild>,
    #[serde(default)]
    patches: Vec<Patch>,
    #[serde(default)]
    images: Vec<ImageOverride>,
    #[serde(default)]
    suspend: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FluxDependency {
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FluxPostBuild {
    #[serde(default)]
    substitute: BTreeMap<String, Scalar>,
}

/// Substitution values are strings in Flux; a YAML author writing `REPLICAS: 3`
/// means the string "3", so plain scalars are accepted as their text.
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    String(String),
    Number(serde_json::Number),
    Bool(bool),
}

impl Scalar {
    fn into_string(self) -> String {
        match self {
            Scalar::String(s) => s,
            Scalar::Number(n) => n.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

/// Spec fields of Flux's Kustomization that stagegate reads.
const FLUX_SUPPORTED: &[&str] = &[
    "path",
    "dependsOn",
    "wait",
    "force",
    "prune",
    "timeout",
    "interval",
    "retryInterval",
    "targetNamespace",
    "postBuild",
    "patches",
    "images",
    "suspend",
    // The repository is the one stagegate was pointed at; Flux's source
    // reference has nothing more to say to us.
    "sourceRef",
];

/// Read a stage definition document found in `file` (relative to the root).
pub fn read_definition(file: &Path, doc: &Document) -> Definition {
    let api_version = doc
        .value
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = doc
        .value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let name = doc.value.pointer("/metadata/name").and_then(Value::as_str);
    let at = |message: String| {
        let problem = Problem::error(format!("line {}: {message}", doc.line)).in_file(file);
        match name {
            Some(name) => problem.in_stage(&StageName::from(name)),
            None => problem,
        }
    };
    let Some(name) = name.filter(|n| !n.is_empty()) else {
        return Definition {
            stage: None,
            problems: vec![at(format!("{kind} document has no metadata.name"))],
        };
    };
    if api_version == STAGE_API_VERSION && kind == STAGE_KIND {
        match serde_path_to_error::deserialize::<_, NativeDocument>(&doc.value) {
            Ok(native) => Definition {
                stage: Some(from_native(file, native)),
                problems: vec![],
            },
            Err(e) => Definition {
                stage: None,
                problems: vec![at(format!("invalid Stage: {}: {}", e.path(), e.inner()))],
            },
        }
    } else {
        debug_assert_eq!(kind, FLUX_KUSTOMIZATION_KIND);
        let spec = doc.value.get("spec").cloned().unwrap_or(Value::Null);
        let mut problems: Vec<Problem> = flux_unsupported_fields(&spec)
            .into_iter()
            .map(|field| {
                Problem::warning(format!(
                    "line {}: Kustomization field spec.{field} is not supported by stagegate and is ignored",
                    doc.line
                ))
                .in_file(file)
                .in_stage(&StageName::from(name))
            })
            .collect();
        match serde_path_to_error::deserialize::<_, FluxSpec>(&spec) {
            Ok(spec) => match from_flux(file, name, spec) {
                Ok(stage) => Definition {
                    stage: Some(stage),
                    problems,
                },
                Err(message) => {
                    problems.push(at(message));
                    Definition {
                        stage: None,
                        problems,
                    }
                }
            },
            Err(e) => {
                problems.push(at(format!(
                    "invalid Kustomization: spec.{}: {}",
                    e.path(),
                    e.inner()
                )));
                Definition {
                    stage: None,
                    problems,
                }
            }
        }
    }
}

/// Fields of a Flux spec that stagegate does not honour, as dotted paths.
fn flux_unsupported_fields(spec: &Value) -> Vec<String> {
    let Some(map) = spec.as_object() else {
        return Vec::new();
    };
    let mut fields: Vec<String> = map
        .keys()
        .filter(|k| !FLUX_SUPPORTED.contains(&k.as_str()))
        .cloned()
        .collect();
    if let Some(post_build) = map.get("postBuild").and_then(Value::as_object) {
        fields.extend(
            post_build
                .keys()
                .filter(|k| *k != "substitute")
                .map(|k| format!("postBuild.{k}")),
        );
    }
    fields
}

fn from_native(file: &Path, doc: NativeDocument) -> Stage {
    let spec = doc.spec;
    Stage {
        name: StageName::new(doc.metadata.name),
        source: file.to_path_buf(),
        origin: StageOrigin::Native,
        path: normalize(Path::new(&spec.path)),
        depends_on: spec.depends_on.into_iter().map(StageName::new).collect(),
        wait: spec.wait,
        force: spec.force,
        prune: spec.prune,
        timeout: spec.timeout,
        interval: None,
        retry_interval: spec.retry_interval,
        job_retries: spec.job_retries,
        target_namespace: spec.target_namespace,
        substitute: spec
            .substitute
            .into_iter()
            .map(|(k, v)| (k, v.into_string()))
            .collect(),
        patches: spec.patches,
        images: spec.images,
        suspend: spec.suspend,
    }
}

fn from_flux(file: &Path, name: &str, spec: FluxSpec) -> Result<Stage, String> {
    // Flux builds the source's root when spec.path is empty.
    let path = spec.path.unwrap_or_else(|| "./".to_string());
    let substitute = spec
        .post_build
        .map(|p| {
            p.substitute
                .into_iter()
                .map(|(k, v)| (k, v.into_string()))
                .collect()
        })
        .unwrap_or_default();
    for patch in &spec.patches {
        if patch.path.is_some() {
            return Err(
                "Kustomization spec.patches[].path is not valid in Flux; inline the patch".into(),
            );
        }
    }
    Ok(Stage {
        name: StageName::from(name),
        source: file.to_path_buf(),
        origin: StageOrigin::Flux,
        path: normalize(Path::new(&path)),
        depends_on: spec
            .depends_on
            .into_iter()
            .map(|d| StageName::new(d.name))
            .collect(),
        wait: spec.wait,
        force: spec.force,
        prune: spec.prune,
        timeout: spec.timeout,
        interval: spec.interval,
        retry_interval: spec.retry_interval,
        job_retries: 0,
        target_namespace: spec.target_namespace,
        substitute,
        patches: spec.patches,
        images: spec.images,
        suspend: spec.suspend,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse_documents;

    fn read(text: &str) -> Definition {
        let docs = parse_documents(text).unwrap();
        read_definition(Path::new("stages.yaml"), &docs[0])
    }

    #[test]
    fn native_stage_reads_every_field() {
        let def = read(
            r#"
apiVersion: stagegate.dev/v1alpha1
kind: Stage
metadata: {name: application}
spec:
  path: ./application
  dependsOn: [pre]
  wait: true
  force: true
  prune: true
  timeout: 5m
  retryInterval: 30s
  jobRetries: 2
  targetNamespace: apps
  substitute: {TAG: "1.4.2", REPLICAS: 3}
  images: [{name: app, newTag: "2"}]
  patches:
    - patch: '[{"op": "add", "path": "/metadata/labels/x", "value": "y"}]'
      target: {kind: Deployment}
  suspend: false
"#,
        );
        assert!(def.problems.is_empty());
        let stage = def.stage.unwrap();
        assert_eq!(stage.name.as_str(), "application");
        assert_eq!(stage.depends_on, [StageName::from("pre")]);
        assert_eq!(stage.timeout, Some(Duration::from_secs(300)));
        assert_eq!(stage.retry_interval, Some(Duration::from_secs(30)));
        assert_eq!(stage.job_retries, 2);
        assert_eq!(stage.substitute["REPLICAS"], "3");
        assert_eq!(stage.images[0].new_tag.as_deref(), Some("2"));
        assert_eq!(
            stage.patches[0].target.as_ref().unwrap().kind.as_deref(),
            Some("Deployment")
        );
    }

    #[test]
    fn unknown_field_in_a_stage_is_an_error_naming_it() {
        let def = read(
            "apiVersion: stagegate.dev/v1alpha1\nkind: Stage\nmetadata: {name: a}\nspec:\n  path: a\n  dependOn: [b]\n",
        );
        assert!(def.stage.is_none());
        let message = def.problems[0].to_string();
        assert!(message.contains("dependOn"), "{message}");
        assert!(message.contains("stage a"), "{message}");
        assert!(message.contains("stages.yaml"), "{message}");
    }

    #[test]
    fn bad_duration_names_the_field() {
        let def = read(
            "apiVersion: stagegate.dev/v1alpha1\nkind: Stage\nmetadata: {name: a}\nspec:\n  path: a\n  timeout: soon\n",
        );
        assert!(
            def.problems[0].to_string().contains("spec.timeout"),
            "{}",
            def.problems[0]
        );
    }

    #[test]
    fn flux_kustomization_maps_and_warns_on_unsupported_fields() {
        let def = read(
            r#"
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: apps, namespace: flux-system}
spec:
  interval: 10m
  path: ./apps/production
  prune: true
  sourceRef: {kind: GitRepository, name: flux-system}
  dependsOn: [{name: infra}]
  decryption: {provider: sops}
  postBuild:
    substitute: {TAG: "1.0"}
    substituteFrom: [{kind: ConfigMap, name: vars}]
"#,
        );
        let stage = def.stage.unwrap();
        assert_eq!(stage.origin, StageOrigin::Flux);
        assert_eq!(stage.interval, Some(Duration::from_secs(600)));
        assert_eq!(stage.depends_on, [StageName::from("infra")]);
        assert_eq!(stage.substitute["TAG"], "1.0");
        let warnings: Vec<String> = def.problems.iter().map(ToString::to_string).collect();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("spec.decryption") && warnings[0].contains("stage apps"));
        assert!(warnings[1].contains("spec.postBuild.substituteFrom"));
    }

    #[test]
    fn missing_name_is_an_error() {
        let def = read(
            "apiVersion: stagegate.dev/v1alpha1\nkind: Stage\nmetadata: {}\nspec: {path: a}\n",
        );
        assert!(def.problems[0].to_string().contains("metadata.name"));
    }
}
