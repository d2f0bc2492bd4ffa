//! Rendering the manifests of one stage without kustomize: YAML loading, the
//! kustomization subset, patches, substitution, stagegate's labels and the Job
//! spec hash. Files in, objects out; no Git, no cluster.
//!
//! Order, per stage: the kustomization (or the plain files) ▸ the stage's
//! `patches` ▸ `targetNamespace` ▸ the stage's `images` ▸ `${VAR}`
//! substitution ▸ stagegate's labels ▸ the Job spec hash. Substitution comes
//! after the stage's own settings because Flux builds `patches`,
//! `targetNamespace` and `images` into the kustomize build (in kustomize's
//! transformer order) and runs `postBuild` substitution on its output, so a
//! `${TAG}` inside a stage patch is substituted there too.

mod error;
pub mod hash;
mod images;
mod kustomization;
mod load;
mod metadata;
mod nameref;
mod patch;
mod resource;
mod substitute;
mod target;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::object::Manifest;
use crate::paths::resolve_inside;
use crate::stage::{Stage, is_stage_document, is_unreadable_stage_document};

pub use error::RenderError;
pub use hash::{annotate_spec_hashes, spec_hash};
pub use metadata::is_cluster_scoped;

use resource::{Ctx, Resource};

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

/// Render every object of `stage`, reading only below `root`.
///
/// Jobs carry a spec hash computed over the stage's own ConfigMaps and
/// Secrets; the planner may recompute it with the whole repository's through
/// [`annotate_spec_hashes`].
pub fn render_stage(root: &Path, stage: &Stage) -> Result<Vec<Manifest>, RenderError> {
    render_stage_with_children(root, stage).map(|rendered| rendered.objects)
}

/// A stage's output split as Flux's kustomize-controller splits it: the
/// objects to apply, and the stage documents (nested Flux Kustomizations or
/// Stages) it declares, after the stage's own settings were applied to them.
#[derive(Debug, Clone, Default)]
pub struct RenderedStage {
    pub objects: Vec<Manifest>,
    pub children: Vec<Manifest>,
}

/// [`render_stage`], keeping the stage documents found in the output.
pub fn render_stage_with_children(
    root: &Path,
    stage: &Stage,
) -> Result<RenderedStage, RenderError> {
    let root = root.canonicalize().map_err(|source| RenderError::Io {
        stage: stage.name.clone(),
        path: root.to_path_buf(),
        source,
    })?;
    let ctx = Ctx::new(&root, &stage.name);
    let dir = resolve_inside(&root, &root, &stage.path).map_err(|e| ctx.path_error(e))?;
    if !dir.is_dir() {
        return Err(RenderError::NotADirectory {
            stage: stage.name.clone(),
            path: ctx.rel(&dir),
        });
    }

    let mut resources = match kustomization::find_file(&dir) {
        Some(_) => kustomization::build(&ctx, &dir, &mut Vec::new())?,
        None => {
            let resources = load::load_tree(&ctx, &dir)?;
            // Flux builds a plain directory as a kustomization, which refuses
            // the same object twice.
            kustomization::check_duplicates(&ctx, &resources)?;
            resources
        }
    };

    let stage_file = if stage.source.as_os_str().is_empty() {
        ctx.rel(&dir)
    } else {
        stage.source.clone()
    };
    apply_stage_settings(&ctx, stage, &stage_file, &mut resources)?;

    let (children, resources): (Vec<Resource>, Vec<Resource>) =
        resources.into_iter().partition(|r| {
            is_stage_document(r.api_version(), r.kind())
                || is_unreadable_stage_document(r.api_version(), r.kind())
        });
    let children = children.into_iter().map(Resource::into_manifest).collect();
    let mut manifests: Vec<Manifest> = resources.into_iter().map(Resource::into_manifest).collect();
    metadata::add_stagegate_labels(&mut manifests, stage.name.as_str());
    let sources: Vec<Manifest> = manifests
        .iter()
        .filter(|m| hash::is_config_source(m))
        .cloned()
        .collect();
    annotate_spec_hashes(&mut manifests, &sources);
    Ok(RenderedStage {
        objects: manifests,
        children,
    })
}

/// The settings a stage definition adds on top of its kustomization.
fn apply_stage_settings(
    ctx: &Ctx<'_>,
    stage: &Stage,
    stage_file: &Path,
    resources: &mut Vec<Resource>,
) -> Result<(), RenderError> {
    let mut patches = Vec::with_capacity(stage.patches.len());
    for p in &stage.patches {
        if p.path.is_some() {
            return Err(ctx.patch_error(
                stage_file,
                "a stage's patches must be inline (`patch`); `path` is only allowed in a kustomization",
            ));
        }
        patches.push(patch::LoadedPatch::from_inline(ctx, stage_file, p)?);
    }
    // The order of kustomize's transformers in the kustomization Flux
    // generates for these settings: patches, namespace, images.
    patch::apply_all(ctx, resources, &patches)?;
    if let Some(namespace) = &stage.target_namespace {
        metadata::set_namespace(resources, namespace);
    }
    metadata::add_prefix_suffix(
        resources,
        stage.name_prefix.as_deref().unwrap_or(""),
        stage.name_suffix.as_deref().unwrap_or(""),
    );
    // Flux's commonMetadata: labels on metadata only, annotations as
    // kustomize's commonAnnotations.
    let strings = |map: &std::collections::BTreeMap<String, String>| {
        map.iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect::<serde_json::Map<_, _>>()
    };
    metadata::add_labels(
        resources,
        &strings(&stage.common_labels),
        metadata::LabelScope {
            selectors: false,
            templates: false,
        },
    );
    metadata::add_annotations(resources, &strings(&stage.common_annotations));
    images::apply(resources, &stage.images);
    // kustomize follows renamed and moved objects once the whole build is
    // done; Flux's build includes the stage's namespace, patches and images.
    nameref::fix_references(resources);
    if !stage.substitute.is_empty() {
        substitute::apply(ctx, resources, &stage.substitute)?;
    }
    Ok(())
}

/// File names kustomize accepts for a kustomization, in its order of preference.
pub const KUSTOMIZATION_FILE_NAMES: [&str; 3] =
    ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// Whether `dir` holds a kustomization file.
pub fn has_kustomization(dir: &Path) -> Option<PathBuf> {
    kustomization::find_file(dir)
}
