//! Stage definitions: what a repository declares, in stagegate's own `Stage`
//! form or as Flux `Kustomization` documents, and the graph they form.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::render::{ImageOverride, Patch};

pub mod definition;
pub mod discover;
pub mod graph;

pub use discover::{discover_stages, discover_stages_in};
pub use graph::{Cycle, StageGraph};

pub const STAGE_API_VERSION: &str = "stagegate.dev/v1alpha1";
pub const STAGE_KIND: &str = "Stage";
pub const FLUX_KUSTOMIZATION_KIND: &str = "Kustomization";
pub const FLUX_API_VERSIONS: [&str; 2] = [
    "kustomize.toolkit.fluxcd.io/v1",
    "kustomize.toolkit.fluxcd.io/v1beta2",
];

/// Whether a document defines a stage (and so is never applied as an object).
pub fn is_stage_document(api_version: &str, kind: &str) -> bool {
    (api_version == STAGE_API_VERSION && kind == STAGE_KIND)
        || (kind == FLUX_KUSTOMIZATION_KIND && FLUX_API_VERSIONS.contains(&api_version))
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StageName(String);

impl StageName {
    pub fn new(name: impl Into<String>) -> Self {
        Self(name.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for StageName {
    fn from(s: &str) -> Self {
        Self(s.to_string())
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
    /// File that declares the stage, relative to the repository root.
    pub source: PathBuf,
    pub origin: StageOrigin,
    /// Directory of manifests, relative to the repository root, normalised
    /// (no `.` or `..` components; empty for the root itself).
    pub path: PathBuf,
    pub depends_on: Vec<StageName>,
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
    pub suspend: bool,
}

impl Stage {
    /// A stage with every setting at its default, for tests and builders.
    pub fn new(name: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        Self {
            name: StageName::new(name),
            source: PathBuf::new(),
            origin: StageOrigin::Native,
            path: path.into(),
            depends_on: Vec::new(),
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
            suspend: false,
        }
    }
}
