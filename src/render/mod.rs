//! Rendering the manifests of one stage without kustomize: YAML loading, the
//! kustomization subset, patches, substitution, stagegate's labels and the Job
//! spec hash. Files in, objects out; no Git, no cluster.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::object::Manifest;
use crate::stage::Stage;

/// A kustomize-style patch, as written in a kustomization's `patches` or a
/// stage's `patches` (Flux's `spec.patches`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Patch {
    /// Inline patch: a strategic-merge document or an RFC 6902 operation list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
    /// Patch file, relative to the kustomization that names it (not allowed in stages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<PatchTarget>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<serde_yaml::Value>,
}

/// Which objects a patch applies to; every field given must match.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PatchTarget {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotation_selector: Option<String>,
}

/// A kustomize `images` entry.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageOverride {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("stage {stage}: rendering is not implemented yet ({path})")]
    Unimplemented { stage: String, path: PathBuf },
}

/// Render every object of `stage`, reading only below `root`.
pub fn render_stage(root: &Path, stage: &Stage) -> Result<Vec<Manifest>, RenderError> {
    Err(RenderError::Unimplemented {
        stage: stage.name.to_string(),
        path: root.join(&stage.path),
    })
}
