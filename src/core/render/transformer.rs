//! `transformers:` entries that configure kustomize's own built-in
//! transformers (`apiVersion: builtin`): patches, labels and annotations
//! with their field specs, name prefixes and suffixes, replica counts and
//! replacements, namespaces and image tags. They run after the
//! kustomization's own fields, in the order listed. Any other kind needs a plugin program or a field spec
//! stagegate does not follow, and is refused naming the file and the kind.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::RenderError;
use super::fieldspec::{FieldSpec, set_map_entries, set_scalar};
use super::generator::{self, GeneratedKind, GeneratorArgs, GeneratorSite};
use super::metadata;
use super::patch::{self, LoadedPatch};
use super::replacement::{self, Replacement};
use super::resource::{Ctx, Resource};
use super::valueadd;
use super::{ImageOverride, PatchTarget, images};
use crate::core::yaml::parse_documents;

/// Where a transformer configuration came from, for errors.
struct Source<'a> {
    ctx: &'a Ctx<'a>,
    file: PathBuf,
    inline: bool,
    /// The kustomization field that lists it.
    field: &'a str,
}

impl Source<'_> {
    fn error(&self, message: impl Into<String>) -> RenderError {
        let message = message.into();
        if self.inline {
            self.ctx
                .kustomization_error(&self.file, format!("{}: {message}", self.field))
        } else {
            self.ctx.kustomization_error(&self.file, message)
        }
    }

    fn parse<T: for<'de> Deserialize<'de>>(
        &self,
        kind: &str,
        value: Value,
    ) -> Result<T, RenderError> {
        serde_json::from_value(value).map_err(|e| self.error(format!("{kind}: {e}")))
    }
}

/// Run the `transformers` entries of the kustomization `file` in `dir`.
pub(crate) fn run(
    ctx: &Ctx<'_>,
    dir: &Path,
    file: &Path,
    entries: &[String],
    resolve: &dyn Fn(&str) -> Result<PathBuf, RenderError>,
    resources: &mut Vec<Resource>,
) -> Result<(), RenderError> {
    for_each_config(
        ctx,
        file,
        "transformers",
        entries,
        resolve,
        &mut |source, value| apply_one(source, dir, value, resources),
    )
}

/// Run the `generators` entries of a kustomization: kustomize's built-in
/// ConfigMapGenerator and SecretGenerator, configured as the kustomization's
/// `configMapGenerator` / `secretGenerator` entries are (without its
/// `generatorOptions`, which kustomize does not apply to them either).
pub(crate) fn run_generators(
    site: &GeneratorSite<'_>,
    entries: &[String],
    resolve: &dyn Fn(&str) -> Result<PathBuf, RenderError>,
    resources: &mut Vec<Resource>,
) -> Result<(), RenderError> {
    for_each_config(
        site.ctx,
        site.file,
        "generators",
        entries,
        resolve,
        &mut |source, value| {
            let (kind, args) = generator_config(source, value)?;
            generator::run(site, kind, &[args], None, resources)
        },
    )
}

/// A `generators` entry as the generator arguments it configures.
fn generator_config(
    source: &Source<'_>,
    mut value: Value,
) -> Result<(GeneratedKind, GeneratorArgs), RenderError> {
    let text = |key: &str| {
        value
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let (api_version, kind) = (text("apiVersion"), text("kind"));
    let generated = match (api_version.as_str(), kind.as_str()) {
        ("builtin", "ConfigMapGenerator") => GeneratedKind::ConfigMap,
        ("builtin", "SecretGenerator") => GeneratedKind::Secret,
        ("builtin", _) => {
            return Err(source.error(format!(
                "generator `{kind}` is not supported by stagegate (it runs no program); render \
                 it elsewhere (`helm template`, `kustomize build`) and commit the output"
            )));
        }
        _ => {
            return Err(source.error(format!(
                "generator `{api_version}` `{kind}` is a plugin, which stagegate does not run; \
                 render this directory with kustomize and commit the output"
            )));
        }
    };
    // The generated object's name and namespace are the configuration's own.
    let meta = value.get("metadata").cloned().unwrap_or(Value::Null);
    if let Some(obj) = value.as_object_mut() {
        obj.remove("apiVersion");
        obj.remove("kind");
        obj.remove("metadata");
        for key in ["name", "namespace"] {
            if let Some(v) = meta.get(key) {
                obj.insert(key.to_string(), v.clone());
            }
        }
    }
    Ok((generated, source.parse(&kind, value)?))
}

/// Read each entry — a file, or the configuration itself when it spans
/// lines — and call `f` on each YAML document.
fn for_each_config(
    ctx: &Ctx<'_>,
    file: &Path,
    field: &str,
    entries: &[String],
    resolve: &dyn Fn(&str) -> Result<PathBuf, RenderError>,
    f: &mut dyn FnMut(&Source<'_>, Value) -> Result<(), RenderError>,
) -> Result<(), RenderError> {
    for entry in entries {
        // kustomize takes an entry with a line break as the configuration itself.
        let (text, source) = if entry.contains('\n') {
            let source = Source {
                ctx,
                file: file.to_path_buf(),
                inline: true,
                field,
            };
            (entry.clone(), source)
        } else {
            let path = resolve(entry)?;
            if ctx.tree.is_dir(&path) {
                return Err(ctx.kustomization_error(
                    file,
                    format!(
                        "{field} entry `{entry}` is a directory; stagegate runs no plugins \
                         — render this directory with kustomize and commit the output"
                    ),
                ));
            }
            let text = ctx
                .tree
                .read_to_string(&path)
                .map_err(|e| ctx.io_error(&path, e))?;
            (
                text,
                Source {
                    ctx,
                    file: path,
                    inline: false,
                    field,
                },
            )
        };
        let docs = parse_documents(&text).map_err(|e| ctx.yaml_error(&source.file, e))?;
        for doc in docs {
            f(&source, doc.value)?;
        }
    }
    Ok(())
}

fn apply_one(
    source: &Source<'_>,
    dir: &Path,
    mut config: Value,
    resources: &mut Vec<Resource>,
) -> Result<(), RenderError> {
    let api_version = config
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let kind = config
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if api_version != "builtin" {
        return Err(source.ctx.kustomization_error(
            &source.file,
            format!(
                "transformer `{api_version}` `{kind}` is a plugin, which stagegate does not run; \
                 render this directory with kustomize and commit the output"
            ),
        ));
    }
    let meta_namespace = config
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(obj) = config.as_object_mut() {
        obj.remove("apiVersion");
        obj.remove("kind");
        obj.remove("metadata");
    }
    let ctx = source.ctx;
    match kind.as_str() {
        "PatchTransformer" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase", deny_unknown_fields)]
            struct C {
                #[serde(default)]
                patch: Option<String>,
                #[serde(default)]
                path: Option<String>,
                #[serde(default)]
                target: Option<PatchTarget>,
                #[serde(default)]
                options: Option<serde_yaml::Value>,
            }
            let c: C = source.parse(&kind, config)?;
            let (text, file, inline) = patch_text(source, dir, c.patch, c.path)?;
            let p = LoadedPatch::from_text(
                ctx,
                &file,
                inline,
                &text,
                c.target.as_ref(),
                c.options.as_ref(),
            )?;
            patch::apply_all(ctx, resources, &[p])
        }
        "PatchJson6902Transformer" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase", deny_unknown_fields)]
            struct C {
                target: PatchTarget,
                #[serde(default)]
                path: Option<String>,
                #[serde(default)]
                json_op: Option<String>,
            }
            let c: C = source.parse(&kind, config)?;
            let (text, file, inline) = patch_text(source, dir, c.json_op, c.path)?;
            let p = LoadedPatch::from_text(ctx, &file, inline, &text, Some(&c.target), None)?;
            patch::apply_all(ctx, resources, &[p])
        }
        "PatchStrategicMergeTransformer" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase", deny_unknown_fields)]
            struct C {
                #[serde(default)]
                paths: Vec<String>,
                #[serde(default)]
                patches: Option<String>,
            }
            let c: C = source.parse(&kind, config)?;
            let mut loaded = Vec::new();
            for path in &c.paths {
                let (text, file, inline) = patch_text(source, dir, None, Some(path.clone()))?;
                loaded.push(LoadedPatch::from_text(
                    ctx, &file, inline, &text, None, None,
                )?);
            }
            if let Some(text) = &c.patches {
                loaded.push(LoadedPatch::from_text(
                    ctx,
                    &source.file,
                    true,
                    text,
                    None,
                    None,
                )?);
            }
            patch::apply_all(ctx, resources, &loaded)
        }
        "LabelTransformer" | "AnnotationsTransformer" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase", deny_unknown_fields)]
            struct C {
                #[serde(default)]
                labels: Map<String, Value>,
                #[serde(default)]
                annotations: Map<String, Value>,
                #[serde(default)]
                field_specs: Vec<FieldSpec>,
            }
            let c: C = source.parse(&kind, config)?;
            let pairs = if kind == "LabelTransformer" {
                c.labels
            } else {
                c.annotations
            };
            let pairs: Map<String, Value> = pairs
                .into_iter()
                .map(|(k, v)| {
                    let text = match v {
                        Value::String(s) => s,
                        Value::Null => String::new(),
                        other => other.to_string(),
                    };
                    (k, Value::String(text))
                })
                .collect();
            for r in resources.iter_mut() {
                let (group, version, kind) = r.gvk();
                let specs: Vec<&FieldSpec> = c
                    .field_specs
                    .iter()
                    .filter(|s| s.selects(&group, &version, &kind))
                    .collect();
                for spec in specs {
                    set_map_entries(&mut r.value, spec, &pairs);
                }
            }
            Ok(())
        }
        "PrefixTransformer" | "SuffixTransformer" | "PrefixSuffixTransformer" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase", deny_unknown_fields)]
            struct C {
                #[serde(default)]
                prefix: String,
                #[serde(default)]
                suffix: String,
                #[serde(default)]
                field_specs: Vec<FieldSpec>,
            }
            let c: C = source.parse(&kind, config)?;
            metadata::prefix_suffix_by_specs(resources, &c.prefix, &c.suffix, &c.field_specs);
            Ok(())
        }
        "ReplicaCountTransformer" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase", deny_unknown_fields)]
            struct Replica {
                name: String,
                count: i64,
            }
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase", deny_unknown_fields)]
            struct C {
                replica: Replica,
                #[serde(default)]
                field_specs: Vec<FieldSpec>,
            }
            let c: C = source.parse(&kind, config)?;
            let mut found = false;
            for r in resources.iter_mut() {
                let named = r.name() == c.replica.name
                    || r.previous.iter().any(|(n, _)| *n == c.replica.name);
                let (group, version, kind) = r.gvk();
                let specs: Vec<&FieldSpec> = c
                    .field_specs
                    .iter()
                    .filter(|s| named && s.selects(&group, &version, &kind))
                    .collect();
                for spec in specs {
                    found = true;
                    set_scalar(&mut r.value, spec, &Value::from(c.replica.count));
                }
            }
            if found {
                Ok(())
            } else {
                Err(source.error(format!(
                    "ReplicaCountTransformer: no object named `{}` fits its fieldSpecs",
                    c.replica.name
                )))
            }
        }
        "ReplacementTransformer" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase", deny_unknown_fields)]
            struct C {
                #[serde(default)]
                replacements: Vec<Replacement>,
            }
            let c: C = source.parse(&kind, config)?;
            if c.replacements.iter().any(|r| !r.is_inline()) {
                return Err(source.error("ReplacementTransformer: give the replacements inline"));
            }
            replacement::apply(&c.replacements, resources).map_err(|e| source.error(e.to_string()))
        }
        "NamespaceTransformer" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase", deny_unknown_fields)]
            struct C {
                #[serde(default)]
                field_specs: Vec<FieldSpec>,
                #[serde(default)]
                unset_only: bool,
                #[serde(default)]
                set_role_binding_subjects: Option<String>,
            }
            let c: C = source.parse(&kind, config)?;
            namespace_transformer(
                source,
                meta_namespace,
                &c.field_specs,
                c.unset_only,
                c.set_role_binding_subjects.as_deref(),
                resources,
            )
        }
        "ImageTagTransformer" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase", deny_unknown_fields)]
            struct C {
                image_tag: ImageOverride,
                #[serde(default)]
                field_specs: Vec<FieldSpec>,
            }
            let c: C = source.parse(&kind, config)?;
            let overrides = [c.image_tag];
            images::apply(resources, &overrides);
            images::apply_to_fields(resources, &overrides, &c.field_specs);
            Ok(())
        }
        "HashTransformer" => {
            // kustomize suffixes the generated objects whose names take a
            // hash now, and again with their final content at the end of
            // the build (their names then carry two suffixes).
            generator::add_name_hashes_now(resources);
            Ok(())
        }
        "ValueAddTransformer" => {
            let c: valueadd::Config = source.parse(&kind, config)?;
            let root_name = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            valueadd::apply(&c, &root_name, resources)
                .map_err(|e| source.error(format!("ValueAddTransformer: {e}")))
        }
        // kustomize v5.5 cannot load it as a transformer either ("unable to
        // load builtin SortOrderTransformer"); the field is what works.
        "SortOrderTransformer" => Err(source.error(
            "built-in transformer `SortOrderTransformer` cannot be listed in `transformers` \
             (kustomize refuses it too); use the kustomization's `sortOptions` field",
        )),
        other => Err(source.error(format!(
            "built-in transformer `{other}` is not supported by stagegate in `transformers`; \
             use the kustomization's own fields (sortOptions, generators, …) or render with kustomize \
             and commit the output"
        ))),
    }
}

/// kustomize's NamespaceTransformer configured as the `namespace` field
/// configures it; the variations kustomize offers beyond that (only unset
/// namespaces, other subject rules, no `metadata/namespace`) are refused.
fn namespace_transformer(
    source: &Source<'_>,
    namespace: Option<String>,
    specs: &[FieldSpec],
    unset_only: bool,
    subjects: Option<&str>,
    resources: &mut [Resource],
) -> Result<(), RenderError> {
    let Some(namespace) = namespace.filter(|ns| !ns.is_empty()) else {
        return Err(
            source.error("NamespaceTransformer: give the namespace as `metadata.namespace`")
        );
    };
    let refuse = |what: &str| {
        Err(source.error(format!(
            "NamespaceTransformer: {what} is not supported by stagegate; use the kustomization's \
             `namespace` field, or render with kustomize and commit the output"
        )))
    };
    if unset_only {
        return refuse("`unsetOnly: true`");
    }
    if !matches!(subjects, None | Some("defaultOnly")) {
        return refuse("`setRoleBindingSubjects` other than defaultOnly");
    }
    if !specs
        .iter()
        .any(|s| s.path == "metadata/namespace" && s.kind.is_empty() && s.group.is_empty())
    {
        return refuse("fieldSpecs without `path: metadata/namespace`");
    }
    let listed = |kind: &str, group: &str, path: &str| {
        specs
            .iter()
            .any(|s| s.path == path && s.kind == kind && s.group == group)
    };
    let fields = metadata::NamespaceFields {
        namespace_name: listed("Namespace", "", "metadata/name"),
        api_service: listed(
            "APIService",
            "apiregistration.k8s.io",
            "spec/service/namespace",
        ),
        crd_conversion: listed(
            "CustomResourceDefinition",
            "apiextensions.k8s.io",
            "spec/conversion/webhook/clientConfig/service/namespace",
        ),
    };
    metadata::set_namespace_in(resources, &namespace, fields);
    // The built-in ones are handled above; the others are custom fields.
    let custom: Vec<FieldSpec> = specs
        .iter()
        .filter(|s| {
            !(s.path == "metadata/name" && s.kind == "Namespace"
                || s.path.starts_with("subjects")
                || s.kind == "APIService" && s.path == "spec/service/namespace"
                || s.kind == "CustomResourceDefinition"
                    && s.path == "spec/conversion/webhook/clientConfig/service/namespace")
        })
        .cloned()
        .collect();
    metadata::set_custom_namespace_fields(resources, &namespace, &custom);
    Ok(())
}

/// A patch's text, from the configuration or from a file beside it.
fn patch_text(
    source: &Source<'_>,
    dir: &Path,
    inline: Option<String>,
    path: Option<String>,
) -> Result<(String, PathBuf, bool), RenderError> {
    match (inline, path) {
        (Some(text), None) => Ok((text, source.file.clone(), true)),
        (None, Some(rel)) => {
            let real = source
                .ctx
                .resolve(dir, Path::new(&rel))
                .map_err(|e| source.ctx.path_error(e))?;
            let text = source
                .ctx
                .tree
                .read_to_string(&real)
                .map_err(|e| source.ctx.io_error(&real, e))?;
            Ok((text, real, false))
        }
        _ => Err(source.error("a patch needs exactly one of `patch` (or `jsonOp`) and `path`")),
    }
}
