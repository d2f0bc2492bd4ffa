//! Reading one stage-defining document, native `Stage` or Flux `Kustomization`,
//! into a [`Stage`].

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::identity::SourceRef;
use super::substitute_from::SubstituteFrom;
use super::{
    FLUX_KUSTOMIZATION_KIND, HealthCheck, STAGE_API_VERSION, STAGE_KIND, ServiceAccountRef, Stage,
    StageName, StageOrigin, StageRef,
};
use crate::core::diagnostics::Problem;
use crate::core::paths::normalize;
use crate::core::render::{ImageOverride, Patch};
use crate::core::yaml::Document;

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
    /// Applied as this ServiceAccount (impersonation), in the Stage's
    /// `metadata.namespace`, else its `targetNamespace`.
    #[serde(default)]
    service_account_name: Option<String>,
}

/// The fields of a Flux Kustomization's spec that stagegate honours; the
/// others are refused by [`flux_refused_fields`], never ignored.
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
    name_prefix: Option<String>,
    #[serde(default)]
    name_suffix: Option<String>,
    #[serde(default)]
    common_metadata: Option<FluxCommonMetadata>,
    #[serde(default)]
    suspend: bool,
    #[serde(default)]
    source_ref: Option<FluxSourceRef>,
    #[serde(default)]
    service_account_name: Option<String>,
    #[serde(default)]
    components: Vec<String>,
    #[serde(default)]
    health_checks: Vec<FluxHealthCheck>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FluxHealthCheck {
    #[serde(default)]
    api_version: Option<String>,
    kind: String,
    name: String,
    #[serde(default)]
    namespace: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FluxSourceRef {
    kind: String,
    name: String,
    #[serde(default)]
    namespace: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FluxCommonMetadata {
    #[serde(default)]
    labels: BTreeMap<String, Scalar>,
    #[serde(default)]
    annotations: BTreeMap<String, Scalar>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FluxDependency {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FluxPostBuild {
    #[serde(default)]
    substitute: BTreeMap<String, Scalar>,
    #[serde(default)]
    substitute_from: Vec<FluxSubstituteFrom>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FluxSubstituteFrom {
    kind: SubstituteKind,
    name: String,
    #[serde(default)]
    optional: bool,
}

#[derive(Deserialize)]
enum SubstituteKind {
    ConfigMap,
    Secret,
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

/// Spec fields of Flux's Kustomization that stagegate honours as Flux does.
/// `sourceRef` is checked across stages (see [`super::identity`]) and
/// `deletionPolicy` by [`flux_refused_fields`].
const FLUX_HONOURED: &[&str] = &[
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
    "namePrefix",
    "nameSuffix",
    "commonMetadata",
    "suspend",
    "sourceRef",
    "deletionPolicy",
    "serviceAccountName",
    "components",
    "healthChecks",
];

/// Fields of Flux's Kustomization stagegate cannot honour, each with why.
/// Ignoring any of them would apply something else than Flux would (or
/// somewhere else, or as someone else), so each is an error for its stage.
const FLUX_REFUSED: &[(&str, &str)] = &[
    (
        "kubeConfig",
        "applies to a remote cluster; stagegate applies only to its own cluster (run an agent there)",
    ),
    (
        "decryption",
        "SOPS decryption is not supported; the Secrets would be applied still encrypted",
    ),
    (
        "healthCheckExprs",
        "CEL health expressions are not supported; remove them: objects with a Ready \
         condition (HelmReleases, custom resources following kstatus) are judged by it",
    ),
    (
        "ignoreMissingComponents",
        "is not supported; every component in spec.components must exist",
    ),
    (
        "patchesStrategicMerge",
        "removed in kustomize.toolkit.fluxcd.io/v1; use spec.patches",
    ),
    (
        "patchesJson6902",
        "removed in kustomize.toolkit.fluxcd.io/v1; use spec.patches",
    ),
    ("validation", "removed in kustomize.toolkit.fluxcd.io/v1"),
];

/// Read a stage definition document found in `file` (relative to the root).
pub fn read_definition(file: &Path, doc: &Document) -> Definition {
    read_value(file, &doc.value, &format!("line {}", doc.line))
}

/// Read a stage document found in `parent`'s rendered output (a nested
/// Kustomization or Stage), `file` being where the document is written.
pub fn read_rendered_definition(
    file: &Path,
    value: &serde_json::Value,
    parent: &StageName,
) -> Definition {
    read_value(file, value, &format!("rendered by stage {parent}"))
}

fn read_value(file: &Path, value: &Value, location: &str) -> Definition {
    let doc = value;
    let api_version = doc
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
    let name = doc.pointer("/metadata/name").and_then(Value::as_str);
    let at = |message: String| {
        let problem = Problem::error(format!("{location}: {message}")).in_file(file);
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
        match serde_path_to_error::deserialize::<_, NativeDocument>(doc) {
            Ok(native) => match native_service_account(&native) {
                Ok(account) => {
                    let mut stage = from_native(file, native);
                    stage.service_account = account;
                    Definition {
                        stage: Some(stage),
                        problems: vec![],
                    }
                }
                Err(message) => Definition {
                    stage: None,
                    problems: vec![at(format!(
                        "invalid Stage: spec.serviceAccountName: {message}"
                    ))],
                },
            },
            Err(e) => Definition {
                stage: None,
                problems: vec![at(format!("invalid Stage: {}: {}", e.path(), e.inner()))],
            },
        }
    } else {
        debug_assert_eq!(kind, FLUX_KUSTOMIZATION_KIND);
        let spec = doc.get("spec").cloned().unwrap_or(Value::Null);
        let namespace = doc
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .filter(|ns| !ns.is_empty());
        // A refused field fails its stage alone: the stage exists (its
        // objects are not pruned, its dependents are blocked) but is never
        // rendered nor applied.
        let problems: Vec<Problem> = flux_refused_fields(&spec)
            .into_iter()
            .map(|(field, why)| at(format!("Kustomization spec.{field}: {why}")))
            .collect();
        match serde_path_to_error::deserialize::<_, FluxSpec>(&spec) {
            Ok(spec) => match from_flux(file, name, namespace, spec) {
                Ok(mut stage) => Definition {
                    stage: Some({
                        stage.apply_bootstrap = doc
                            .pointer("/metadata/annotations")
                            .and_then(|a| a.get(super::discover::APPLY_BOOTSTRAP_ANNOTATION))
                            .and_then(Value::as_str)
                            == Some("true");
                        stage.refused = !problems.is_empty();
                        stage
                    }),
                    problems,
                },
                Err(message) => Definition {
                    stage: None,
                    problems: problems.into_iter().chain([at(message)]).collect(),
                },
            },
            Err(e) => Definition {
                stage: None,
                problems: problems
                    .into_iter()
                    .chain([at(format!(
                        "invalid Kustomization: spec.{}: {}",
                        e.path(),
                        e.inner()
                    ))])
                    .collect(),
            },
        }
    }
}

/// Fields of a Flux spec that stagegate refuses, as dotted paths with the
/// reason: the ones it cannot honour and the ones Flux does not know.
fn flux_refused_fields(spec: &Value) -> Vec<(String, String)> {
    let Some(map) = spec.as_object() else {
        return Vec::new();
    };
    let mut fields = Vec::new();
    for key in map.keys() {
        if let Some((_, why)) = FLUX_REFUSED.iter().find(|(f, _)| f == key) {
            fields.push((key.clone(), (*why).to_string()));
        } else if !FLUX_HONOURED.contains(&key.as_str()) {
            fields.push((
                key.clone(),
                "is not a field of Flux's Kustomization".to_string(),
            ));
        }
    }
    if let Some(policy) = map.get("deletionPolicy")
        && policy.as_str() != Some("MirrorPrune")
    {
        fields.push((
            "deletionPolicy".to_string(),
            format!(
                "{policy} is not supported; stagegate prunes a removed stage's objects as \
                 spec.prune says (Flux's MirrorPrune)"
            ),
        ));
    }
    if let Some(post_build) = map.get("postBuild").and_then(Value::as_object) {
        for key in post_build.keys() {
            let why = match key.as_str() {
                "substitute" => continue,
                "substituteFrom" => continue,
                _ => "is not a field of Flux's postBuild",
            };
            fields.push((format!("postBuild.{key}"), why.to_string()));
        }
    }
    fields
}

/// A native Stage's ServiceAccount: its name in the Stage's own namespace,
/// else in the namespace its objects go to. Neither set is an error: a
/// guessed namespace would be someone else's account.
fn native_service_account(doc: &NativeDocument) -> Result<Option<ServiceAccountRef>, &'static str> {
    let Some(name) = doc.spec.service_account_name.as_deref() else {
        return Ok(None);
    };
    if name.is_empty() {
        return Err("is empty");
    }
    let namespace = doc
        .metadata
        .namespace
        .as_deref()
        .or(doc.spec.target_namespace.as_deref())
        .filter(|ns| !ns.is_empty())
        .ok_or(
            "the ServiceAccount's namespace is unknown: set metadata.namespace \
             (or spec.targetNamespace) on the Stage",
        )?;
    Ok(Some(ServiceAccountRef {
        namespace: namespace.to_string(),
        name: name.to_string(),
    }))
}

fn from_native(file: &Path, doc: NativeDocument) -> Stage {
    let spec = doc.spec;
    Stage {
        id: StageRef {
            namespace: None,
            name: doc.metadata.name.clone(),
        },
        name: StageName::new(doc.metadata.name),
        parent: None,
        source: file.to_path_buf(),
        origin: StageOrigin::Native,
        path: normalize(Path::new(&spec.path)),
        depends_on: Vec::new(),
        dependency_refs: spec
            .depends_on
            .into_iter()
            .map(|name| StageRef {
                namespace: None,
                name,
            })
            .collect(),
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
        name_prefix: None,
        name_suffix: None,
        common_labels: BTreeMap::new(),
        common_annotations: BTreeMap::new(),
        suspend: spec.suspend,
        source_ref: None,
        substitute_from: Vec::new(),
        apply_bootstrap: false,
        service_account: None,
        components: Vec::new(),
        health_checks: Vec::new(),
        refused: false,
        not_planned: None,
    }
}

fn from_flux(
    file: &Path,
    name: &str,
    namespace: Option<&str>,
    spec: FluxSpec,
) -> Result<Stage, String> {
    // Flux builds the source's root when spec.path is empty.
    let path = spec.path.unwrap_or_else(|| "./".to_string());
    let (substitute, substitute_from) = spec
        .post_build
        .map(|p| {
            let from = p
                .substitute_from
                .into_iter()
                .map(|s| SubstituteFrom {
                    kind: match s.kind {
                        SubstituteKind::ConfigMap => "ConfigMap",
                        SubstituteKind::Secret => "Secret",
                    }
                    .to_string(),
                    name: s.name,
                    optional: s.optional,
                })
                .collect();
            (strings(p.substitute), from)
        })
        .unwrap_or_default();
    for patch in &spec.patches {
        if patch.path.is_some() {
            return Err(
                "Kustomization spec.patches[].path is not valid in Flux; inline the patch".into(),
            );
        }
    }
    let (common_labels, common_annotations) = spec
        .common_metadata
        .map(|m| (strings(m.labels), strings(m.annotations)))
        .unwrap_or_default();
    let own_namespace = namespace.map(str::to_string);
    let service_account = spec
        .service_account_name
        .filter(|n| !n.is_empty())
        .map(|name| ServiceAccountRef {
            namespace: own_namespace.clone().unwrap_or_else(|| "default".into()),
            name,
        });
    let mut health_checks = Vec::with_capacity(spec.health_checks.len());
    for (i, check) in spec.health_checks.into_iter().enumerate() {
        // Which version to watch cannot be guessed without the cluster.
        let Some(api_version) = check.api_version.filter(|v| !v.is_empty()) else {
            return Err(format!(
                "Kustomization spec.healthChecks[{i}] ({} {}): apiVersion is required",
                check.kind, check.name
            ));
        };
        if check.kind == FLUX_KUSTOMIZATION_KIND
            && api_version.starts_with(super::FLUX_KUSTOMIZE_GROUP)
        {
            return Err(format!(
                "Kustomization spec.healthChecks[{i}]: Kustomization {} is a stage, not an \
                 object in the cluster; name it in spec.dependsOn to wait for it",
                check.name
            ));
        }
        health_checks.push(HealthCheck {
            api_version,
            kind: check.kind,
            namespace: check.namespace.filter(|n| !n.is_empty()),
            name: check.name,
        });
    }
    Ok(Stage {
        id: StageRef {
            namespace: own_namespace.clone(),
            name: name.to_string(),
        },
        name: StageName::from(name),
        parent: None,
        source: file.to_path_buf(),
        origin: StageOrigin::Flux,
        path: normalize(Path::new(&path)),
        depends_on: Vec::new(),
        // A dependency without a namespace is in the Kustomization's own, as in Flux.
        dependency_refs: spec
            .depends_on
            .into_iter()
            .map(|d| StageRef {
                namespace: d.namespace.or_else(|| own_namespace.clone()),
                name: d.name,
            })
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
        name_prefix: spec.name_prefix.filter(|p| !p.is_empty()),
        name_suffix: spec.name_suffix.filter(|p| !p.is_empty()),
        common_labels,
        common_annotations,
        suspend: spec.suspend,
        // A source without a namespace is in the Kustomization's own, as in Flux.
        apply_bootstrap: false,
        substitute_from,
        source_ref: spec.source_ref.map(|r| SourceRef {
            kind: r.kind,
            namespace: r.namespace.or_else(|| own_namespace.clone()),
            name: r.name,
        }),
        service_account,
        components: spec.components,
        health_checks,
        refused: false,
        not_planned: None,
    })
}

fn strings(map: BTreeMap<String, Scalar>) -> BTreeMap<String, String> {
    map.into_iter().map(|(k, v)| (k, v.into_string())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::yaml::parse_documents;

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
        assert_eq!(stage.dependency_refs[0].to_string(), "pre");
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
    fn a_native_stage_names_its_service_account_in_its_namespace() {
        let stage = |meta: &str, spec: &str| {
            read(&format!(
                "apiVersion: stagegate.dev/v1alpha1\nkind: Stage\nmetadata: {{name: web{meta}}}\nspec:\n  path: web\n  serviceAccountName: deployer\n{spec}"
            ))
        };
        let own = stage(", namespace: team-a", "  targetNamespace: web\n");
        assert_eq!(
            own.stage.unwrap().service_account.unwrap().user(),
            "system:serviceaccount:team-a:deployer"
        );
        let target = stage("", "  targetNamespace: team-b\n");
        assert_eq!(
            target.stage.unwrap().service_account.unwrap().to_string(),
            "team-b/deployer"
        );
        let unknown = stage("", "");
        assert!(unknown.stage.is_none());
        let message = unknown.problems[0].to_string();
        assert!(
            message.contains("spec.serviceAccountName")
                && message.contains("set metadata.namespace"),
            "{message}"
        );
    }

    #[test]
    fn flux_kustomization_maps_its_fields_with_namespaced_identity() {
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
  dependsOn: [{name: infra}, {name: crds, namespace: platform}]
  namePrefix: prod-
  nameSuffix: -eu
  deletionPolicy: MirrorPrune
  commonMetadata:
    labels: {team: web}
    annotations: {owner: web}
  serviceAccountName: web-reconciler
  components: [../components/ha]
  healthChecks:
    - {apiVersion: apps/v1, kind: Deployment, name: web, namespace: web}
  postBuild:
    substitute: {TAG: "1.0"}
"#,
        );
        assert!(def.problems.is_empty(), "{:?}", def.problems);
        let stage = def.stage.unwrap();
        assert_eq!(stage.origin, StageOrigin::Flux);
        assert_eq!(stage.id.to_string(), "flux-system/apps");
        assert_eq!(stage.interval, Some(Duration::from_secs(600)));
        let deps: Vec<String> = stage
            .dependency_refs
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(deps, ["flux-system/infra", "platform/crds"]);
        assert_eq!(stage.substitute["TAG"], "1.0");
        assert_eq!(stage.name_prefix.as_deref(), Some("prod-"));
        assert_eq!(stage.name_suffix.as_deref(), Some("-eu"));
        assert_eq!(stage.common_labels["team"], "web");
        assert_eq!(stage.common_annotations["owner"], "web");
        assert_eq!(
            stage.service_account.as_ref().unwrap().user(),
            "system:serviceaccount:flux-system:web-reconciler"
        );
        assert_eq!(stage.components, ["../components/ha"]);
        assert_eq!(stage.health_checks[0].to_string(), "Deployment web/web");
        assert_eq!(
            stage.source_ref.unwrap().to_string(),
            "GitRepository flux-system/flux-system"
        );
    }

    #[test]
    fn fields_stagegate_cannot_honour_are_errors_naming_them() {
        let def = read(
            r#"
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: spoke, namespace: hub}
spec:
  path: ./apps
  kubeConfig: {secretRef: {name: spoke-kubeconfig}}
  decryption: {provider: sops}
  healthCheckExprs: [{apiVersion: v1, kind: Pod, current: "true"}]
  deletionPolicy: Orphan
  dependOn: [{name: x}]
  postBuild:
    substituteFrom: [{kind: ConfigMap, name: vars}]
    substitutFrom: []
"#,
        );
        assert!(
            def.stage.as_ref().is_some_and(|s| s.refused),
            "the stage exists, to fail alone"
        );
        let errors: Vec<String> = def.problems.iter().map(ToString::to_string).collect();
        for field in [
            "spec.kubeConfig: applies to a remote cluster",
            "spec.decryption: SOPS",
            "spec.healthCheckExprs: CEL",
            "spec.deletionPolicy: \"Orphan\" is not supported",
            "spec.dependOn: is not a field",
            "spec.postBuild.substitutFrom: is not a field",
        ] {
            assert!(
                errors.iter().any(|e| e
                    .starts_with("error: stages.yaml: stage spoke: line 1: Kustomization ")
                    && e.contains(field)),
                "{field} not in {errors:#?}"
            );
        }
    }

    #[test]
    fn missing_name_is_an_error() {
        let def = read(
            "apiVersion: stagegate.dev/v1alpha1\nkind: Stage\nmetadata: {}\nspec: {path: a}\n",
        );
        assert!(def.problems[0].to_string().contains("metadata.name"));
    }
}
