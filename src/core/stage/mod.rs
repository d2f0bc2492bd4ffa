//! Stage definitions: what a repository declares, in stagegate's own `Stage`
//! form or as Flux `Kustomization` documents, and the graph they form.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

pub use crate::core::object::StageName;
use crate::core::render::{ImageOverride, Patch, StageInput};

pub mod definition;
pub mod discover;
pub mod graph;
pub mod identity;
pub mod nested;
pub mod substitute_from;

pub use discover::{discover_stages, discover_stages_in, discover_stages_with};
pub use graph::{Cycle, StageGraph};

pub use crate::core::kinds::{
    FLUX_API_VERSIONS, FLUX_KUSTOMIZATION_KIND, FLUX_KUSTOMIZE_GROUP, STAGE_API_VERSION,
    STAGE_GROUP, STAGE_KIND, is_stage_document, is_unreadable_stage_document,
};

impl<'a> From<&'a Stage> for StageInput<'a> {
    fn from(stage: &'a Stage) -> Self {
        StageInput {
            name: &stage.name,
            path: &stage.path,
            source: &stage.source,
            name_prefix: stage.name_prefix.as_deref(),
            name_suffix: stage.name_suffix.as_deref(),
            components: &stage.components,
            patches: &stage.patches,
            target_namespace: stage.target_namespace.as_deref(),
            common_labels: &stage.common_labels,
            common_annotations: &stage.common_annotations,
            images: &stage.images,
            substitute: &stage.substitute,
            substitutes_from: !stage.substitute_from.is_empty(),
        }
    }
}

/// Which document form declared a stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageOrigin {
    Native,
    Flux,
}

/// One stage, as declared in the repository, in the form the rest of stagegate uses.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub name: StageName,
    /// Identity as the repository writes it: a Flux Kustomization's
    /// namespace and name (`name` may add the namespace when the name alone
    /// is ambiguous); a native stage's name.
    pub id: StageRef,
    /// The stage whose rendered output declares this one (a nested
    /// Kustomization or Stage); `None` for a stage found by discovery.
    pub parent: Option<StageName>,
    /// File that declares the stage, relative to the repository root.
    pub source: PathBuf,
    pub origin: StageOrigin,
    /// Directory of manifests, relative to the repository root, normalised
    /// (no `.` or `..` components; empty for the root itself).
    pub path: PathBuf,
    pub depends_on: Vec<StageName>,
    /// `dependsOn` as written, with the namespace a Flux dependency means
    /// (its own when none is given); resolved into `depends_on` once every
    /// stage is known.
    pub dependency_refs: Vec<StageRef>,
    /// `None` means the default: wait when the stage holds Jobs.
    pub wait: Option<bool>,
    pub force: bool,
    pub prune: bool,
    pub timeout: Option<Duration>,
    pub interval: Option<Duration>,
    pub retry_interval: Option<Duration>,
    pub job_retries: u32,
    pub target_namespace: Option<String>,
    pub substitute: BTreeMap<String, String>,
    pub patches: Vec<Patch>,
    pub images: Vec<ImageOverride>,
    pub name_prefix: Option<String>,
    pub name_suffix: Option<String>,
    /// Flux's `commonMetadata`: labels and annotations set on every object's
    /// metadata (not on selectors or templates).
    pub common_labels: BTreeMap<String, String>,
    pub common_annotations: BTreeMap<String, String>,
    pub suspend: bool,
    /// A Flux stage's `sourceRef` (checked against the watched repository).
    pub source_ref: Option<identity::SourceRef>,
    /// Flux's `postBuild.substituteFrom`, in order.
    pub substitute_from: Vec<substitute_from::SubstituteFrom>,
    /// Flux's bootstrap Kustomization annotated to be applied anyway
    /// (see [`discover::APPLY_BOOTSTRAP_ANNOTATION`]).
    pub apply_bootstrap: bool,
    /// Flux's `serviceAccountName`, in the Kustomization's namespace: the
    /// stage is applied as this ServiceAccount (impersonation), so it can do
    /// no more than the tenant's RBAC allows. Planning fills in the default
    /// ServiceAccount, or the parent's for a nested stage without its own.
    pub service_account: Option<ServiceAccountRef>,
    /// Flux's `components`: kustomize components (paths relative to the
    /// stage's path) appended to its kustomization's own.
    pub components: Vec<String>,
    /// Flux's `healthChecks`: with `wait` off, the objects whose health the
    /// stage waits for, wherever they come from (this stage, another one,
    /// the cluster).
    pub health_checks: Vec<HealthCheck>,
    /// The definition uses a field stagegate cannot honour (the problem
    /// names it): the stage is neither rendered nor applied, and fails alone.
    pub refused: bool,
    /// Set by planning: why the stage could not be planned (its errors,
    /// one per line). It is never applied; its dependents are blocked.
    pub not_planned: Option<String>,
}

/// One object of Flux's `healthChecks`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub api_version: String,
    pub kind: String,
    /// `None` for a cluster-scoped object (or the stage's namespace).
    pub namespace: Option<String>,
    pub name: String,
}

impl fmt::Display for HealthCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// A ServiceAccount a stage is applied as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccountRef {
    pub namespace: String,
    pub name: String,
}

impl ServiceAccountRef {
    /// The user the API server knows the ServiceAccount as, which is what
    /// `Impersonate-User` names.
    pub fn user(&self) -> String {
        format!("system:serviceaccount:{}:{}", self.namespace, self.name)
    }
}

impl fmt::Display for ServiceAccountRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A reference to a stage as a definition writes it: a name and, for Flux
/// documents, a namespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StageRef {
    pub namespace: Option<String>,
    pub name: String,
}

impl fmt::Display for StageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{ns}/{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

impl Stage {
    /// A stage with every setting at its default, for tests and builders.
    pub fn new(name: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        let name: String = name.into();
        Self {
            id: StageRef {
                namespace: None,
                name: name.clone(),
            },
            name: StageName::new(name),
            parent: None,
            source: PathBuf::new(),
            origin: StageOrigin::Native,
            path: path.into(),
            depends_on: Vec::new(),
            dependency_refs: Vec::new(),
            wait: None,
            force: false,
            prune: false,
            timeout: None,
            interval: None,
            retry_interval: None,
            job_retries: 0,
            target_namespace: None,
            substitute: BTreeMap::new(),
            patches: Vec::new(),
            images: Vec::new(),
            name_prefix: None,
            name_suffix: None,
            common_labels: BTreeMap::new(),
            common_annotations: BTreeMap::new(),
            suspend: false,
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

    /// The ServiceAccount `name` in this stage's namespace (`default` for a
    /// document without one, where `kubectl apply` would place it).
    pub fn own_service_account(&self, name: &str) -> ServiceAccountRef {
        ServiceAccountRef {
            namespace: self
                .id
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            name: name.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_stage_documents_are_told_from_other_apis() {
        for (api_version, kind) in [
            ("stagegate.dev/v1", "Stage"),
            ("stagegate/v1alpha1", "Stage"),
            ("stagegate.dev/v1alpah1", "Stage"),
            ("stagegate.dve/v1alpha1", "Stage"),
            ("stagegate.dev/v1alpha1", "Stages"),
            ("kustomize.toolkit.fluxcd.io/v1beta1", "Kustomization"),
            ("kustomize.toolkit.flux.io/v1", "Kustomization"),
            ("kustomize.toolkit.fluxcd.io/v1", "Kustomisation"),
        ] {
            assert!(
                is_unreadable_stage_document(api_version, kind),
                "{api_version} {kind}"
            );
        }
        for (api_version, kind) in [
            ("stagegate.dev/v1alpha1", "Stage"),
            ("kustomize.toolkit.fluxcd.io/v1", "Kustomization"),
            ("kustomize.config.k8s.io/v1beta1", "Kustomization"),
            ("kustomize.config.k8s.io/v1alpha1", "Component"),
            ("kargo.akuity.io/v1alpha1", "Stage"),
            ("helm.toolkit.fluxcd.io/v2", "HelmRelease"),
            ("v1", "ConfigMap"),
        ] {
            assert!(
                !is_unreadable_stage_document(api_version, kind),
                "{api_version} {kind}"
            );
        }
    }
}
