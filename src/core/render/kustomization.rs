//! The kustomization subset stagegate renders itself: `resources` (and the
//! deprecated `bases`), `components`, `configMapGenerator`,
//! `secretGenerator`, `generatorOptions`, `namespace`, `namePrefix`,
//! `nameSuffix`, `commonLabels`, `labels`, `commonAnnotations`, `images`,
//! `replicas`, `patches`, `patchesJson6902` and `patchesStrategicMerge`, in
//! kustomize's order: resources, generators, components, then the
//! transformers. Any other field is an error naming it: dropping it silently
//! would render something else than kustomize.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::RenderError;
use super::fieldspec::{Config, ConfigFile};
use super::generator::{self, GeneratedKind, GeneratorArgs, GeneratorOptions, GeneratorSite};
use super::metadata::{self, LabelScope};
use super::patch::{self, LoadedPatch};
use super::replacement::{self, Replacement};
use super::resource::{Ctx, Resource};
use super::transformer;
use super::vars::{self, Var};
use super::{ImageOverride, KUSTOMIZATION_FILE_NAMES, Overlay, Patch, PatchTarget, images, load};
use crate::core::paths::PathError;
use crate::core::tree::FileTree;

const SUPPORTED_FIELDS: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "resources",
    "bases",
    "components",
    "configMapGenerator",
    "secretGenerator",
    "generatorOptions",
    "replicas",
    "replacements",
    "transformers",
    "generators",
    "vars",
    "configurations",
    "sortOptions",
    "namespace",
    "namePrefix",
    "nameSuffix",
    "commonLabels",
    "labels",
    "commonAnnotations",
    "images",
    "patches",
    "patchesJson6902",
    "patchesStrategicMerge",
];

/// Fields stagegate refuses with a specific piece of advice: plugins (it runs
/// no program).
const PLUGIN_FIELDS: &[(&str, &str)] = &[
    (
        "helmCharts",
        "render the chart elsewhere (`kustomize build --enable-helm` or `helm template`) and commit the output",
    ),
    (
        "helmChartInflationGenerator",
        "render the chart elsewhere (`helm template`) and commit the output",
    ),
    (
        "helmGlobals",
        "render the chart elsewhere (`helm template`) and commit the output",
    ),
    (
        "validators",
        "validator plugins run programs; validate in CI instead",
    ),
];

const KUSTOMIZE_GROUP: &str = "kustomize.config.k8s.io";

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Kustomization {
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    components: Vec<String>,
    #[serde(default)]
    config_map_generator: Vec<GeneratorArgs>,
    #[serde(default)]
    secret_generator: Vec<GeneratorArgs>,
    #[serde(default)]
    generator_options: Option<GeneratorOptions>,
    #[serde(default)]
    replicas: Vec<Replica>,
    #[serde(default)]
    replacements: Vec<Replacement>,
    #[serde(default)]
    transformers: Vec<String>,
    #[serde(default)]
    generators: Vec<String>,
    #[serde(default)]
    vars: Vec<Var>,
    #[serde(default)]
    configurations: Vec<String>,
    #[serde(default)]
    sort_options: Option<SortOptions>,
    #[serde(default)]
    bases: Vec<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    name_prefix: Option<String>,
    #[serde(default)]
    name_suffix: Option<String>,
    #[serde(default)]
    common_labels: BTreeMap<String, Scalar>,
    #[serde(default)]
    labels: Vec<Labels>,
    #[serde(default)]
    common_annotations: BTreeMap<String, Scalar>,
    #[serde(default)]
    images: Vec<ImageOverride>,
    #[serde(default)]
    patches: Vec<Patch>,
    #[serde(default)]
    patches_json6902: Vec<Json6902>,
    #[serde(default)]
    patches_strategic_merge: Vec<String>,
}

/// Label and annotation values written as numbers or booleans are strings
/// to Kubernetes; kustomize writes them as such.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Scalar {
    String(String),
    Other(serde_json::Number),
    Bool(bool),
}

impl Scalar {
    fn into_value(self) -> Value {
        Value::String(match self {
            Scalar::String(s) => s,
            Scalar::Other(n) => n.to_string(),
            Scalar::Bool(b) => b.to_string(),
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Labels {
    #[serde(default)]
    pairs: BTreeMap<String, Scalar>,
    #[serde(default)]
    include_selectors: bool,
    #[serde(default)]
    include_templates: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Replica {
    name: String,
    count: i64,
}

/// Output order only: stagegate applies objects in its own kind order, so
/// the order is checked for a known value and otherwise not needed.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SortOptions {
    order: String,
    #[serde(default, rename = "legacySortOptions")]
    _legacy: Option<serde_json::Value>,
}

/// What a kustomization file must be: a Kustomization, or a Component
/// when named under `components`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expected {
    Kustomization,
    Component,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Json6902 {
    target: PatchTarget,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    patch: Option<String>,
}

/// The kustomization file of `dir`, if it has one.
pub(crate) fn find_file(tree: &dyn FileTree, dir: &Path) -> Option<PathBuf> {
    KUSTOMIZATION_FILE_NAMES
        .iter()
        .map(|n| dir.join(n))
        .find(|p| tree.is_file(p))
}

fn to_map(pairs: BTreeMap<String, Scalar>) -> Map<String, Value> {
    pairs
        .into_iter()
        .map(|(k, v)| (k, v.into_value()))
        .collect()
}

/// Build the kustomization in `dir` (canonical, inside the root). `stack`
/// holds the kustomizations being built above it, to report cycles.
///
/// Its configuration (its `configurations` and those of everything it
/// builds) is merged into `parent`'s, as kustomize merges a base's
/// transformer configuration into the kustomization that names it.
pub(crate) fn build(
    ctx: &Ctx<'_>,
    dir: &Path,
    stack: &mut Vec<PathBuf>,
    parent: &mut Config,
) -> Result<Vec<Resource>, RenderError> {
    let mut own = Config::default();
    let built = build_into(
        ctx,
        dir,
        stack,
        Expected::Kustomization,
        Vec::new(),
        None,
        &mut own,
    )?;
    parent.merge(&own);
    Ok(built)
}

/// Build the stage's own kustomization with the stage definition's
/// settings written into it, as Flux writes them before building.
pub(crate) fn build_with(
    ctx: &Ctx<'_>,
    dir: &Path,
    overlay: &Overlay,
    config: &mut Config,
) -> Result<Vec<Resource>, RenderError> {
    build_into(
        ctx,
        dir,
        &mut Vec::new(),
        Expected::Kustomization,
        Vec::new(),
        Some(overlay),
        config,
    )
}

/// A directory without a kustomization, as Flux builds it: its files as
/// `resources`, then the stage definition's components and name settings.
pub(crate) fn build_plain_with(
    ctx: &Ctx<'_>,
    dir: &Path,
    mut resources: Vec<Resource>,
    overlay: &Overlay,
    config: &mut Config,
) -> Result<Vec<Resource>, RenderError> {
    let mut stack = vec![dir.to_path_buf()];
    for entry in &overlay.components {
        let path = ctx
            .resolve(dir, Path::new(entry))
            .map_err(|e| ctx.path_error(e))?;
        resources = build_into(
            ctx,
            &path,
            &mut stack,
            Expected::Component,
            resources,
            None,
            config,
        )?;
    }
    metadata::add_prefix_suffix(
        &mut resources,
        overlay.name_prefix.as_deref().unwrap_or(""),
        overlay.name_suffix.as_deref().unwrap_or(""),
    );
    Ok(resources)
}

/// Build the kustomization (or component) in `dir` on top of `resources`:
/// a component transforms what its parent accumulated so far.
fn build_into(
    ctx: &Ctx<'_>,
    dir: &Path,
    stack: &mut Vec<PathBuf>,
    expected: Expected,
    resources: Vec<Resource>,
    overlay: Option<&Overlay>,
    config: &mut Config,
) -> Result<Vec<Resource>, RenderError> {
    let Some(file) = find_file(ctx.tree, dir) else {
        return Err(ctx.kustomization_error(dir, "directory has no kustomization.yaml"));
    };
    if stack.iter().any(|d| d == dir) {
        let mut chain: Vec<String> = stack
            .iter()
            .skip_while(|d| *d != dir)
            .map(|d| ctx.rel(d).display().to_string())
            .collect();
        chain.push(ctx.rel(dir).display().to_string());
        return Err(RenderError::Cycle {
            stage: ctx.stage.clone(),
            path: ctx.rel(&file),
            chain: chain.join(" -> "),
        });
    }
    stack.push(dir.to_path_buf());
    let result = build_file(ctx, &file, stack, expected, resources, overlay, config);
    stack.pop();
    result
}

fn parse(ctx: &Ctx<'_>, file: &Path) -> Result<Kustomization, RenderError> {
    let docs = ctx.read_documents(file)?;
    let value = match docs.as_slice() {
        [] => Value::Object(Map::new()),
        [one] => one.value.clone(),
        _ => return Err(ctx.kustomization_error(file, "a kustomization must be one YAML document")),
    };
    let Some(map) = value.as_object() else {
        return Err(ctx.kustomization_error(file, "a kustomization must be a mapping"));
    };
    let value = Value::Object(canonical_field_names(ctx, file, map)?);
    let Some(map) = value.as_object() else {
        return Err(ctx.kustomization_error(file, "a kustomization must be a mapping"));
    };
    if let Some((field, advice)) = PLUGIN_FIELDS.iter().find(|(f, _)| map.contains_key(*f)) {
        return Err(RenderError::Refused {
            stage: ctx.stage.clone(),
            path: ctx.rel(file),
            field: format!("kustomization field `{field}`"),
            advice: (*advice).to_string(),
        });
    }
    if let Some(field) = map.keys().find(|k| !SUPPORTED_FIELDS.contains(&k.as_str())) {
        return Err(RenderError::UnsupportedField {
            stage: ctx.stage.clone(),
            path: ctx.rel(file),
            field: field.clone(),
        });
    }
    let k: Kustomization = serde_json::from_value(value)
        .map_err(|e| ctx.kustomization_error(file, format!("invalid kustomization: {e}")))?;
    check_type(ctx, file, &k)?;
    Ok(k)
}

/// kustomize matches field names without regard to case, as Go's JSON
/// decoder does (`patchesJSON6902` is `patchesJson6902`); the fields are
/// renamed to their usual spelling, and the same field twice is an error.
fn canonical_field_names(
    ctx: &Ctx<'_>,
    file: &Path,
    map: &Map<String, Value>,
) -> Result<Map<String, Value>, RenderError> {
    let known = SUPPORTED_FIELDS
        .iter()
        .copied()
        .chain(PLUGIN_FIELDS.iter().map(|(f, _)| *f));
    let known: Vec<&str> = known.collect();
    let mut out = Map::with_capacity(map.len());
    for (key, v) in map {
        let name = known
            .iter()
            .find(|k| k.eq_ignore_ascii_case(key))
            .map_or_else(|| key.clone(), |k| (*k).to_string());
        if out.insert(name.clone(), v.clone()).is_some() {
            return Err(ctx.kustomization_error(
                file,
                format!("field `{name}` is given twice (in different spellings)"),
            ));
        }
    }
    Ok(out)
}

/// Check `apiVersion` and `kind`: kustomize's Kustomization
/// (`kustomize.config.k8s.io/v1beta1`) or Component (`…/v1alpha1`), and
/// the one the place that names the directory expects.
fn check_type(ctx: &Ctx<'_>, file: &Path, k: &Kustomization) -> Result<(), RenderError> {
    let kind = k.kind.as_deref().unwrap_or("Kustomization");
    let want_version = match kind {
        "Kustomization" => "v1beta1",
        "Component" => "v1alpha1",
        other => {
            return Err(ctx.kustomization_error(
                file,
                format!("unknown kind `{other}`; a kustomization file is `kind: Kustomization` or `kind: Component`"),
            ));
        }
    };
    if let Some(api_version) = k.api_version.as_deref()
        && api_version != format!("{KUSTOMIZE_GROUP}/{want_version}")
    {
        return Err(ctx.kustomization_error(
            file,
            format!(
                "unknown apiVersion `{api_version}` for kind {kind}; \
                 use `{KUSTOMIZE_GROUP}/{want_version}`"
            ),
        ));
    }
    Ok(())
}

/// Resolve an entry of the kustomization `file`, naming the file and the
/// entry as written when it does not exist or leaves the repository.
fn resolve_entry(
    ctx: &Ctx<'_>,
    dir: &Path,
    file: &Path,
    field: &str,
    entry: &str,
) -> Result<PathBuf, RenderError> {
    ctx.resolve(dir, Path::new(entry)).map_err(|e| match e {
        PathError::OutsideRoot { .. } => ctx.kustomization_error(
            file,
            format!("{field} entry `{entry}` points outside the repository"),
        ),
        PathError::Missing { .. } => {
            ctx.kustomization_error(file, format!("{field} entry `{entry}` does not exist"))
        }
        other => ctx.path_error(other),
    })
}

/// A `resources` entry once read: a directory to build, or a file's objects.
enum Entry {
    Directory(PathBuf),
    Objects(Vec<Resource>),
}

/// Below this many entries, reading them on other threads costs more than it saves.
const PARALLEL_ENTRIES: usize = 64;

/// The `resources` entries of `file`, in order: files are read and parsed
/// (on every core when there are many: parsing is most of a large build),
/// directories are left for the caller to build in order. Each entry keeps
/// its own error, so the first one in order is the one reported.
fn read_entries(
    ctx: &Ctx<'_>,
    dir: &Path,
    file: &Path,
    entries: &[&String],
) -> Vec<Result<Entry, RenderError>> {
    let workers = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(entries.len() / PARALLEL_ENTRIES)
        .max(1);
    if workers == 1 {
        return entries
            .iter()
            .map(|e| read_entry(ctx, dir, file, e))
            .collect();
    }
    let chunk = entries.len().div_ceil(workers);
    std::thread::scope(|scope| {
        let handles: Vec<_> = entries
            .chunks(chunk)
            .map(|part| {
                // `Ctx` holds the build's vars in a RefCell; reading files
                // needs only the tree, the root and the stage.
                let (tree, root, stage) = (ctx.tree, ctx.root, ctx.stage);
                scope.spawn(move || {
                    let ctx = Ctx::in_tree(tree, root, stage);
                    part.iter()
                        .map(|e| read_entry(&ctx, dir, file, e))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| match h.join() {
                Ok(read) => read,
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    })
}

fn read_entry(ctx: &Ctx<'_>, dir: &Path, file: &Path, entry: &str) -> Result<Entry, RenderError> {
    if entry.contains("://") || entry.starts_with("github.com/") || entry.starts_with("git@") {
        return Err(ctx.kustomization_error(
            file,
            format!("remote resource `{entry}` is not supported; vendor it into the repository"),
        ));
    }
    let path = resolve_entry(ctx, dir, file, "resources", entry)?;
    if ctx.tree.is_dir(&path) {
        Ok(Entry::Directory(path))
    } else {
        load::load_file(ctx, &path).map(Entry::Objects)
    }
}

/// Build the kustomization `file` (in the directory entries are relative to).
fn build_file(
    ctx: &Ctx<'_>,
    file: &Path,
    stack: &mut Vec<PathBuf>,
    expected: Expected,
    mut resources: Vec<Resource>,
    overlay: Option<&Overlay>,
    config: &mut Config,
) -> Result<Vec<Resource>, RenderError> {
    let dir = file.parent().unwrap_or(file);
    let mut k = parse(ctx, file)?;
    if let Some(overlay) = overlay {
        if overlay.name_prefix.is_some() {
            k.name_prefix.clone_from(&overlay.name_prefix);
        }
        if overlay.name_suffix.is_some() {
            k.name_suffix.clone_from(&overlay.name_suffix);
        }
        k.components.extend(overlay.components.iter().cloned());
    }
    let is_component = k.kind.as_deref() == Some("Component");
    match (expected, is_component) {
        (Expected::Kustomization, true) => {
            return Err(ctx.kustomization_error(
                file,
                "is a kind: Component; name its directory under `components`, not `resources`",
            ));
        }
        (Expected::Component, false) => {
            return Err(ctx.kustomization_error(
                file,
                "is named under `components` but is not `kind: Component`",
            ));
        }
        _ => {}
    }
    let entries: Vec<&String> = k.resources.iter().chain(&k.bases).collect();
    for read in read_entries(ctx, dir, file, &entries) {
        match read? {
            Entry::Directory(path) => resources.extend(build(ctx, &path, stack, config)?),
            Entry::Objects(objects) => resources.extend(objects),
        }
    }
    check_duplicates(ctx, &resources)?;
    for entry in &k.configurations {
        config.merge(&load_configuration(ctx, dir, file, entry)?);
    }

    let site = GeneratorSite { ctx, dir, file };
    let global = k.generator_options.as_ref();
    generator::run(
        &site,
        GeneratedKind::ConfigMap,
        &k.config_map_generator,
        global,
        &mut resources,
    )?;
    generator::run(
        &site,
        GeneratedKind::Secret,
        &k.secret_generator,
        global,
        &mut resources,
    )?;
    if !k.generators.is_empty() {
        let resolve = |entry: &str| resolve_entry(ctx, dir, file, "generators", entry);
        transformer::run_generators(&site, &k.generators, &resolve, &mut resources)?;
    }
    check_duplicates(ctx, &resources)?;

    for entry in &k.components {
        let path = resolve_entry(ctx, dir, file, "components", entry)?;
        if !ctx.tree.is_dir(&path) {
            return Err(ctx.kustomization_error(
                file,
                format!("components entry `{entry}` is not a directory"),
            ));
        }
        resources = build_into(
            ctx,
            &path,
            stack,
            Expected::Component,
            resources,
            None,
            config,
        )?;
    }
    if let Some(sort) = &k.sort_options
        && !matches!(sort.order.as_str(), "legacy" | "fifo")
    {
        return Err(ctx.kustomization_error(
            file,
            format!(
                "sortOptions order `{}` is neither legacy nor fifo",
                sort.order
            ),
        ));
    }

    let mut strategic = Vec::new();
    for entry in &k.patches_strategic_merge {
        let (text, source) = read_patch(ctx, dir, file, None, Some(entry.as_str()))?;
        strategic.push(LoadedPatch::from_text(
            ctx,
            &source,
            source == file,
            &text,
            None,
            None,
        )?);
    }
    patch::apply_all(ctx, &mut resources, &strategic)?;

    let mut patches = Vec::new();
    for p in &k.patches {
        let (text, source) = read_patch(ctx, dir, file, p.patch.as_deref(), p.path.as_deref())?;
        patches.push(LoadedPatch::from_text(
            ctx,
            &source,
            source == file,
            &text,
            p.target.as_ref(),
            p.options.as_ref(),
        )?);
    }
    patch::apply_all(ctx, &mut resources, &patches)?;

    if let Some(ns) = k.namespace.as_deref().filter(|ns| !ns.is_empty()) {
        metadata::set_namespace(&mut resources, ns);
        metadata::set_custom_namespace_fields(&mut resources, ns, &config.namespace);
    }
    metadata::add_prefix_suffix_configured(
        &mut resources,
        k.name_prefix.as_deref().unwrap_or(""),
        k.name_suffix.as_deref().unwrap_or(""),
        &config.name_prefix,
        &config.name_suffix,
    );
    let common = to_map(k.common_labels);
    let both = LabelScope {
        selectors: true,
        templates: true,
    };
    metadata::add_labels(&mut resources, &common, both);
    metadata::add_custom_labels(&mut resources, &common, both, config);
    for set in k.labels {
        let scope = LabelScope {
            selectors: set.include_selectors,
            templates: set.include_templates,
        };
        let pairs = to_map(set.pairs);
        metadata::add_labels(&mut resources, &pairs, scope);
        metadata::add_custom_labels(&mut resources, &pairs, scope, config);
    }
    let annotations = to_map(k.common_annotations);
    metadata::add_annotations(&mut resources, &annotations);
    metadata::add_custom_annotations(&mut resources, &annotations, config);

    let mut json_patches = Vec::new();
    for p in &k.patches_json6902 {
        let (text, source) = read_patch(ctx, dir, file, p.patch.as_deref(), p.path.as_deref())?;
        json_patches.push(LoadedPatch::from_text(
            ctx,
            &source,
            source == file,
            &text,
            Some(&p.target),
            None,
        )?);
    }
    patch::apply_all(ctx, &mut resources, &json_patches)?;

    for replica in &k.replicas {
        set_replicas(ctx, file, &mut resources, replica)?;
    }
    images::apply(&mut resources, &k.images);
    images::apply_to_fields(&mut resources, &k.images, &config.images);
    if !k.replacements.is_empty() {
        let list = load_replacements(ctx, dir, file, &k.replacements)?;
        replacement::apply(&list, &mut resources)
            .map_err(|e| ctx.kustomization_error(file, e.to_string()))?;
    }
    if !k.transformers.is_empty() {
        let resolve = |entry: &str| resolve_entry(ctx, dir, file, "transformers", entry);
        transformer::run(ctx, dir, file, &k.transformers, &resolve, &mut resources)?;
    }
    if !k.vars.is_empty() {
        vars::merge(&k.vars, file, &mut resources, &mut ctx.vars.borrow_mut())
            .map_err(|e| ctx.kustomization_error(&e.file, e.message))?;
    }
    Ok(resources)
}

/// A `configurations` file: field specs for custom resources.
fn load_configuration(
    ctx: &Ctx<'_>,
    dir: &Path,
    file: &Path,
    entry: &str,
) -> Result<Config, RenderError> {
    let path = resolve_entry(ctx, dir, file, "configurations", entry)?;
    let docs = ctx.read_documents(&path)?;
    let mut config = Config::default();
    for doc in docs {
        let parsed: ConfigFile = serde_json::from_value(doc.value).map_err(|e| {
            ctx.kustomization_error(
                &path,
                format!(
                    "invalid configuration: {e}; stagegate reads nameReference, commonLabels, \
                     commonAnnotations, templateLabels, namespace, varReference, images, \
                     replicas, namePrefix and nameSuffix"
                ),
            )
        })?;
        config.merge(&Config::from_file(parsed));
    }
    Ok(config)
}

/// `replacements` entries, with those given by `path` read from their files
/// (one replacement or a list of them per file).
fn load_replacements(
    ctx: &Ctx<'_>,
    dir: &Path,
    file: &Path,
    entries: &[Replacement],
) -> Result<Vec<Replacement>, RenderError> {
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let Some(rel) = entry.path.as_deref() else {
            out.push(entry.clone());
            continue;
        };
        let path = resolve_entry(ctx, dir, file, "replacements path", rel)?;
        let docs = ctx.read_documents(&path)?;
        for doc in docs {
            let items = match doc.value {
                Value::Array(items) => items,
                one => vec![one],
            };
            for item in items {
                let r: Replacement = serde_json::from_value(item).map_err(|e| {
                    ctx.kustomization_error(&path, format!("invalid replacement: {e}"))
                })?;
                if !r.is_inline() {
                    return Err(ctx.kustomization_error(
                        &path,
                        "a replacement file cannot name another file",
                    ));
                }
                out.push(r);
            }
        }
    }
    Ok(out)
}

/// kustomize's `replicas`: the workloads that have (or had) the name.
fn set_replicas(
    ctx: &Ctx<'_>,
    file: &Path,
    resources: &mut [Resource],
    replica: &Replica,
) -> Result<(), RenderError> {
    let mut found = false;
    for r in resources.iter_mut() {
        let kind_fits = matches!(
            r.kind(),
            "Deployment" | "ReplicationController" | "ReplicaSet" | "StatefulSet"
        );
        let name_fits =
            r.name() == replica.name || r.previous.iter().any(|(n, _)| *n == replica.name);
        if !(kind_fits && name_fits) {
            continue;
        }
        found = true;
        if let Some(obj) = r.value.as_object_mut() {
            let spec = obj
                .entry("spec")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Some(spec) = spec.as_object_mut() {
                spec.insert("replicas".into(), Value::from(replica.count));
            }
        }
    }
    if found {
        Ok(())
    } else {
        Err(ctx.kustomization_error(
            file,
            format!(
                "replicas: no Deployment, ReplicationController, ReplicaSet or StatefulSet is named `{}`",
                replica.name
            ),
        ))
    }
}

/// The text of a patch given inline or by path (relative to the
/// kustomization), with the file to name in errors.
fn read_patch(
    ctx: &Ctx<'_>,
    dir: &Path,
    file: &Path,
    inline: Option<&str>,
    path: Option<&str>,
) -> Result<(String, PathBuf), RenderError> {
    match (inline, path) {
        (Some(text), None) => Ok((text.to_string(), file.to_path_buf())),
        // patchesStrategicMerge entries may be inline YAML rather than a path.
        (None, Some(p)) if p.contains('\n') => Ok((p.to_string(), file.to_path_buf())),
        (None, Some(p)) => {
            let real = resolve_entry(ctx, dir, file, "patch path", p)?;
            let text = ctx
                .tree
                .read_to_string(&real)
                .map_err(|e| ctx.io_error(&real, e))?;
            Ok((text, real))
        }
        (Some(_), Some(_)) => {
            Err(ctx.patch_error(file, "a patch has both `patch` and `path`; give one"))
        }
        (None, None) => Err(ctx.patch_error(file, "a patch needs `patch` or `path`")),
    }
}

/// kustomize refuses two resources with the same identity in one build.
pub(crate) fn check_duplicates(ctx: &Ctx<'_>, resources: &[Resource]) -> Result<(), RenderError> {
    let mut seen: HashMap<(&str, &str, &str, &str), &Path> =
        HashMap::with_capacity(resources.len());
    for r in resources {
        let key = (r.group(), r.kind(), r.namespace().unwrap_or(""), r.name());
        if let Some(other) = seen.insert(key, &r.source) {
            return Err(RenderError::Duplicate {
                stage: ctx.stage.clone(),
                path: r.source.clone(),
                object: r.describe(),
                other: other.to_path_buf(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::object::StageName;
    use std::fs;

    fn write(dir: &Path, rel: &str, text: &str) {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(path, text).unwrap();
    }

    fn build_dir(root: &Path, rel: &str) -> Result<Vec<Resource>, RenderError> {
        let stage = StageName::new("s");
        let ctx = Ctx::new(root, &stage);
        build(
            &ctx,
            &root.join(rel),
            &mut Vec::new(),
            &mut Config::default(),
        )
    }

    #[test]
    fn many_entries_read_in_parallel_keep_their_order_and_the_first_error() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let n = PARALLEL_ENTRIES * 3;
        let mut k = String::from("resources:\n");
        for i in 0..n {
            k.push_str(&format!("- cm-{i:03}.yaml\n"));
            let text = format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i:03}\n");
            write(&root, &format!("app/cm-{i:03}.yaml"), &text);
        }
        write(&root, "app/kustomization.yaml", &k);
        let names: Vec<String> = build_dir(&root, "app")
            .unwrap()
            .iter()
            .map(|r| r.name().to_string())
            .collect();
        let expected: Vec<String> = (0..n).map(|i| format!("cm-{i:03}")).collect();
        assert_eq!(names, expected);

        // A missing file before an invalid one: the missing one is reported.
        fs::remove_file(root.join("app/cm-100.yaml")).unwrap();
        write(&root, "app/cm-150.yaml", "a: [unclosed\n");
        let text = build_dir(&root, "app").unwrap_err().to_string();
        assert!(text.contains("`cm-100.yaml` does not exist"), "{text}");
    }

    #[test]
    fn unsupported_field_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        write(
            &root,
            "app/kustomization.yaml",
            "resources: []\nopenapi: {path: x.json}\n",
        );
        let err = build_dir(&root, "app").unwrap_err();
        assert!(
            matches!(&err, RenderError::UnsupportedField { field, path, .. }
                if field == "openapi" && path == Path::new("app/kustomization.yaml")),
            "{err}"
        );
    }

    #[test]
    fn cycles_are_reported_as_a_chain() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        write(&root, "a/kustomization.yaml", "resources: [../b]\n");
        write(&root, "b/kustomization.yaml", "resources: [../a]\n");
        let err = build_dir(&root, "a").unwrap_err().to_string();
        assert!(err.contains("a -> b -> a"), "{err}");
    }

    #[test]
    fn resources_outside_the_root_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("repo");
        fs::create_dir_all(&root).unwrap();
        let root = root.canonicalize().unwrap();
        write(
            tmp.path(),
            "secret.yaml",
            "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n",
        );
        write(
            &root,
            "a/kustomization.yaml",
            "resources: [../../secret.yaml]\n",
        );
        let err = build_dir(&root, "a").unwrap_err();
        assert_eq!(err.file(), Path::new("a/kustomization.yaml"), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("`../../secret.yaml` points outside the repository")
                && !text.contains(&*tmp.path().to_string_lossy()),
            "{text}"
        );
    }
}
