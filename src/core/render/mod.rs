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
mod fieldspec;
mod generator;
pub mod hash;
mod images;
mod kustomization;
mod load;
mod metadata;
mod nameref;
mod patch;
mod replacement;
mod resource;
mod substitute;
mod target;
mod transformer;
mod valueadd;
mod vars;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::core::kinds::{is_stage_document, is_unreadable_stage_document};
use crate::core::object::{Manifest, StageName};
use crate::core::tree::{DISK, FileTree};

pub use error::{Ambiguity, RenderError};
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

/// Kustomize settings a stage definition writes into its directory's
/// kustomization before the build, as Flux does with a Kustomization's
/// `namePrefix`, `nameSuffix` and `components`: the prefix and suffix
/// replace the kustomization's own, the components (paths relative to the
/// stage's directory) come after its own. A directory without a
/// kustomization is built as one listing its files.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overlay {
    pub name_prefix: Option<String>,
    pub name_suffix: Option<String>,
    pub components: Vec<String>,
}

impl Overlay {
    pub fn is_empty(&self) -> bool {
        self.name_prefix.is_none() && self.name_suffix.is_none() && self.components.is_empty()
    }
}

/// What rendering reads of a stage: where its files are, and the settings
/// its definition adds on top of them (a Flux Kustomization's fields).
/// `core::stage` makes one from a `Stage`; rendering knows nothing else of
/// stages, so `stage` sits above `render` and never the other way round.
#[derive(Debug, Clone, Copy)]
pub struct StageInput<'a> {
    pub name: &'a StageName,
    /// The stage's directory, relative to the root.
    pub path: &'a Path,
    /// The file that declares the stage (empty when none does).
    pub source: &'a Path,
    pub name_prefix: Option<&'a str>,
    pub name_suffix: Option<&'a str>,
    pub components: &'a [String],
    pub patches: &'a [Patch],
    pub target_namespace: Option<&'a str>,
    pub common_labels: &'a std::collections::BTreeMap<String, String>,
    pub common_annotations: &'a std::collections::BTreeMap<String, String>,
    pub images: &'a [ImageOverride],
    pub substitute: &'a std::collections::BTreeMap<String, String>,
    /// Whether the stage names variable sources (Flux's `substituteFrom`):
    /// Flux then substitutes even when no value came of them.
    pub substitutes_from: bool,
}

/// Render every object of `stage`, reading only below `root`.
///
/// Jobs carry a spec hash computed over the stage's own ConfigMaps and
/// Secrets; the planner may recompute it with the whole repository's through
/// [`annotate_spec_hashes`].
pub fn render_stage<'a>(
    root: &Path,
    stage: impl Into<StageInput<'a>>,
) -> Result<Vec<Manifest>, RenderError> {
    render_stage_with_children(root, stage).map(|rendered| rendered.objects)
}

/// [`render_stage`] with `overlay` written into the stage's kustomization
/// instead of the one the stage's own fields make.
pub fn render_stage_with<'a>(
    root: &Path,
    stage: impl Into<StageInput<'a>>,
    overlay: &Overlay,
) -> Result<Vec<Manifest>, RenderError> {
    render_split(&DISK, root, &stage.into(), overlay).map(|rendered| rendered.objects)
}

/// [`render_stage_with_children`], reading the files of `tree` (the
/// checkout, or an in-memory tree in tests) instead of the disk.
pub fn render_stage_in<'a>(
    tree: &dyn FileTree,
    root: &Path,
    stage: impl Into<StageInput<'a>>,
) -> Result<RenderedStage, RenderError> {
    let stage = stage.into();
    render_split(tree, root, &stage, &stage_overlay(&stage))
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
pub fn render_stage_with_children<'a>(
    root: &Path,
    stage: impl Into<StageInput<'a>>,
) -> Result<RenderedStage, RenderError> {
    let stage = stage.into();
    render_split(&DISK, root, &stage, &stage_overlay(&stage))
}

/// What a stage's own fields write into its kustomization, as Flux writes a
/// Kustomization's `namePrefix`, `nameSuffix` and `components`: kustomize
/// then renames the objects and every reference to them in one build.
fn stage_overlay(stage: &StageInput<'_>) -> Overlay {
    Overlay {
        name_prefix: stage.name_prefix.map(str::to_string),
        name_suffix: stage.name_suffix.map(str::to_string),
        components: stage.components.to_vec(),
    }
}

fn render_split(
    tree: &dyn FileTree,
    root: &Path,
    stage: &StageInput<'_>,
    overlay: &Overlay,
) -> Result<RenderedStage, RenderError> {
    let root = tree.canonicalize(root).map_err(|source| RenderError::Io {
        stage: stage.name.clone(),
        path: root.to_path_buf(),
        source,
    })?;
    let ctx = Ctx::in_tree(tree, &root, stage.name);
    let dir = ctx
        .resolve(&root, stage.path)
        .map_err(|e| ctx.path_error(e))?;
    if !tree.is_dir(&dir) {
        return Err(RenderError::NotADirectory {
            stage: stage.name.clone(),
            path: ctx.rel(&dir),
        });
    }

    let mut config = fieldspec::Config::default();
    let mut resources = match kustomization::find_file(tree, &dir) {
        Some(_) => kustomization::build_with(&ctx, &dir, overlay, &mut config)?,
        None => {
            let resources = load::load_tree(&ctx, &dir, &mut config)?;
            // Flux builds a plain directory as a kustomization, which refuses
            // the same object twice.
            kustomization::check_duplicates(&ctx, &resources)?;
            kustomization::build_plain_with(&ctx, &dir, resources, overlay, &mut config)?
        }
    };

    let stage_file = if stage.source.as_os_str().is_empty() {
        ctx.rel(&dir)
    } else {
        stage.source.to_path_buf()
    };
    apply_stage_settings(&ctx, stage, &stage_file, &mut resources, &config)?;

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
    stage: &StageInput<'_>,
    stage_file: &Path,
    resources: &mut Vec<Resource>,
    config: &fieldspec::Config,
) -> Result<(), RenderError> {
    let mut patches = Vec::with_capacity(stage.patches.len());
    for p in stage.patches {
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
    if let Some(namespace) = stage.target_namespace {
        metadata::set_namespace(resources, namespace);
    }
    // Flux's commonMetadata: labels on metadata only, annotations as
    // kustomize's commonAnnotations.
    let strings = |map: &std::collections::BTreeMap<String, String>| {
        map.iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect::<serde_json::Map<_, _>>()
    };
    metadata::add_labels(
        resources,
        &strings(stage.common_labels),
        metadata::LabelScope {
            selectors: false,
            templates: false,
        },
    );
    metadata::add_annotations(resources, &strings(stage.common_annotations));
    images::apply(resources, stage.images);
    // kustomize names generated objects and follows renamed and moved
    // objects once the whole build is done; Flux's build includes the
    // stage's namespace, patches and images.
    finish_build(ctx, resources, config)?;
    // Flux substitutes whenever postBuild names variables, even when its
    // sources gave none (defaults then apply, undefined ones fail).
    if !stage.substitute.is_empty() || stage.substitutes_from {
        substitute::apply(ctx, resources, stage.substitute)?;
    }
    Ok(())
}

/// What kustomize does once at the top of a build: generated objects get
/// their content-hash suffix, every reference follows its target, then
/// `$(VAR)` takes the values of the vars.
fn finish_build(
    ctx: &Ctx<'_>,
    resources: &mut [Resource],
    config: &fieldspec::Config,
) -> Result<(), RenderError> {
    generator::add_name_hashes(resources);
    nameref::fix_references(resources, &config.name_reference).map_err(|e| {
        let referrer = &resources[e.referrer];
        RenderError::AmbiguousReference {
            stage: ctx.stage.clone(),
            path: referrer.source.clone(),
            detail: Box::new(Ambiguity {
                object: referrer.describe(),
                field: e.field,
                name: e.name,
                candidates: e.candidates.join(" and "),
            }),
        }
    })?;
    let declared = ctx.vars.borrow();
    if declared.is_empty() {
        return Ok(());
    }
    let mut specs = fieldspec::default_var_reference();
    specs.extend(config.var_reference.iter().cloned());
    vars::resolve(&declared, resources, &specs)
        .map_err(|e| ctx.kustomization_error(&e.file, e.message))
}

/// File names kustomize accepts for a kustomization, in its order of preference.
pub const KUSTOMIZATION_FILE_NAMES: [&str; 3] =
    ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// Whether `dir` holds a kustomization file.
pub fn has_kustomization(dir: &Path) -> Option<PathBuf> {
    kustomization::find_file(&DISK, dir)
}

#[cfg(test)]
mod memory_tree_tests {
    use super::*;
    use crate::core::tree::MemoryTree;
    // A unit test may build its input from a Stage; the code above never does.
    use crate::core::stage::Stage;

    const BASE: &str = "resources: [cm.yaml]\nconfigMapGenerator:\n- name: script\n  files: [migrate.sh]\n  envs: [app.env]\n";
    const CM: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: plain}\n";

    fn render(tree: &MemoryTree, path: &str) -> Result<RenderedStage, RenderError> {
        render_stage_in(tree, Path::new("/repo"), &Stage::new("s", path))
    }

    #[test]
    fn kustomizations_and_generator_files_are_read_from_the_tree() {
        let tree = MemoryTree::new(
            Path::new("/repo"),
            &[
                ("app/kustomization.yaml", BASE),
                ("app/cm.yaml", CM),
                ("app/migrate.sh", "echo up\n"),
                ("app/app.env", "MODE=fast\n"),
            ],
        );
        let rendered = render(&tree, "app").unwrap();
        let script = rendered
            .objects
            .iter()
            .find(|m| {
                m.value["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("script-"))
            })
            .expect("the generated ConfigMap");
        assert_eq!(script.value["data"]["migrate.sh"], "echo up\n");
        assert_eq!(script.value["data"]["MODE"], "fast");
    }

    #[test]
    fn a_symlink_out_of_the_repository_is_refused_naming_the_kustomization() {
        let tree = MemoryTree::new(
            Path::new("/repo"),
            &[
                ("app/kustomization.yaml", "resources: [cm.yaml, secrets]\n"),
                ("app/cm.yaml", CM),
                ("../outside/kustomization.yaml", "resources: []\n"),
            ],
        )
        .with_symlink(Path::new("/repo/app/secrets"), Path::new("../../outside"));
        let err = render(&tree, "app").unwrap_err();
        let text = err.to_string();
        assert_eq!(err.file(), Path::new("app/kustomization.yaml"), "{text}");
        assert!(
            text.contains("`secrets` points outside the repository"),
            "{text}"
        );
    }

    #[test]
    fn a_missing_generator_file_is_named_relative_to_the_repository() {
        let tree = MemoryTree::new(
            Path::new("/repo"),
            &[
                ("app/kustomization.yaml", BASE),
                ("app/cm.yaml", CM),
                ("app/app.env", "A=1\n"),
            ],
        );
        let text = render(&tree, "app").unwrap_err().to_string();
        assert!(
            text.contains("app/kustomization.yaml") && text.contains("migrate.sh"),
            "{text}"
        );
        assert!(!text.contains("/repo/"), "{text}");
    }
}
