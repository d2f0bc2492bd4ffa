//! `transformers:` entries that configure kustomize's own built-in
//! transformers (`apiVersion: builtin`): patches, labels and annotations
//! with their field specs, name prefixes and suffixes, replica counts and
//! replacements. They run after the kustomization's own fields, in the
//! order listed. Any other kind needs a plugin program or a field spec
//! stagegate does not follow, and is refused naming the file and the kind.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value};

use super::PatchTarget;
use super::error::RenderError;
use super::metadata;
use super::patch::{self, LoadedPatch};
use super::replacement::{self, Replacement};
use super::resource::{Ctx, Resource};
use crate::yaml::parse_documents;

/// A field kustomize writes to: objects of a group/version/kind (empty
/// parts match all), a `/`-separated path, maps created when `create`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FieldSpec {
    #[serde(default)]
    group: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    kind: String,
    path: String,
    #[serde(default)]
    create: bool,
}

impl FieldSpec {
    fn selects(&self, r: &Resource) -> bool {
        (self.group.is_empty() || self.group == r.group())
            && (self.version.is_empty() || self.version == r.version())
            && (self.kind.is_empty() || self.kind == r.kind())
    }
}

/// Where a transformer configuration came from, for errors.
struct Source<'a> {
    ctx: &'a Ctx<'a>,
    file: PathBuf,
    inline: bool,
}

impl Source<'_> {
    fn error(&self, message: impl Into<String>) -> RenderError {
        let message = message.into();
        if self.inline {
            self.ctx
                .kustomization_error(&self.file, format!("transformers: {message}"))
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
    for entry in entries {
        // kustomize takes an entry with a line break as the configuration itself.
        let (text, source) = if entry.contains('\n') {
            let source = Source {
                ctx,
                file: file.to_path_buf(),
                inline: true,
            };
            (entry.clone(), source)
        } else {
            let path = resolve(entry)?;
            if path.is_dir() {
                return Err(ctx.kustomization_error(
                    file,
                    format!(
                        "transformers entry `{entry}` is a directory; stagegate runs no transformer \
                         plugins — render this directory with kustomize and commit the output"
                    ),
                ));
            }
            let text = std::fs::read_to_string(&path).map_err(|e| ctx.io_error(&path, e))?;
            (
                text,
                Source {
                    ctx,
                    file: path,
                    inline: false,
                },
            )
        };
        let docs = parse_documents(&text).map_err(|e| RenderError::Yaml {
            stage: ctx.stage.clone(),
            path: ctx.rel(&source.file),
            line: e.line,
            column: e.column,
            message: e.message,
        })?;
        for doc in docs {
            apply_one(&source, dir, doc.value, resources)?;
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
                let specs: Vec<&FieldSpec> =
                    c.field_specs.iter().filter(|s| s.selects(r)).collect();
                for spec in specs {
                    let steps: Vec<&str> = spec.path.split('/').collect();
                    set_map_entries(&mut r.value, &steps, spec.create, &pairs);
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
            let only_names = c
                .field_specs
                .iter()
                .all(|s| s.path == "metadata/name" && s.kind.is_empty() && s.group.is_empty());
            if !only_names {
                return Err(source.error(format!(
                    "{kind}: only `fieldSpecs: [{{path: metadata/name}}]` is supported; \
                     use namePrefix / nameSuffix, or render with kustomize and commit the output"
                )));
            }
            if !c.field_specs.is_empty() {
                metadata::add_prefix_suffix(resources, &c.prefix, &c.suffix);
            }
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
                let specs: Vec<&FieldSpec> = c
                    .field_specs
                    .iter()
                    .filter(|s| named && s.selects(r))
                    .collect();
                for spec in specs {
                    found = true;
                    let steps: Vec<&str> = spec.path.split('/').collect();
                    set_scalar(
                        &mut r.value,
                        &steps,
                        spec.create,
                        &Value::from(c.replica.count),
                    );
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
            replacement::apply(&c.replacements, resources).map_err(|m| source.error(m))
        }
        other => Err(source.error(format!(
            "built-in transformer `{other}` is not supported by stagegate in `transformers`; \
             use the kustomization's own fields (namespace, images, …) or render with kustomize \
             and commit the output"
        ))),
    }
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
            let real = crate::paths::resolve_inside(source.ctx.root, dir, Path::new(&rel))
                .map_err(|e| source.ctx.path_error(e))?;
            let text = std::fs::read_to_string(&real).map_err(|e| source.ctx.io_error(&real, e))?;
            Ok((text, real, false))
        }
        _ => Err(source.error("a patch needs exactly one of `patch` (or `jsonOp`) and `path`")),
    }
}

/// Walk `steps` (entering lists; `x[]` names a list), creating maps when
/// `create`, and call `f` on the parent map with the last key.
fn walk(
    node: &mut Value,
    steps: &[&str],
    create: bool,
    f: &mut dyn FnMut(&mut Map<String, Value>, &str),
) {
    if let Value::Array(items) = node {
        for item in items {
            walk(item, steps, create, f);
        }
        return;
    }
    let Some((first, rest)) = steps.split_first() else {
        return;
    };
    let key = first.strip_suffix("[]").unwrap_or(first);
    let Some(map) = node.as_object_mut() else {
        return;
    };
    if rest.is_empty() {
        f(map, key);
        return;
    }
    if !map.contains_key(key) {
        if !create {
            return;
        }
        map.insert(key.to_string(), Value::Object(Map::new()));
    }
    if let Some(next) = map.get_mut(key) {
        walk(next, rest, create, f);
    }
}

fn set_map_entries(node: &mut Value, steps: &[&str], create: bool, pairs: &Map<String, Value>) {
    walk(node, steps, create, &mut |map, key| {
        if !map.contains_key(key) {
            if !create {
                return;
            }
            map.insert(key.to_string(), Value::Object(Map::new()));
        }
        if let Some(Value::Object(target)) = map.get_mut(key) {
            for (k, v) in pairs {
                target.insert(k.clone(), v.clone());
            }
        }
    });
}

fn set_scalar(node: &mut Value, steps: &[&str], create: bool, value: &Value) {
    walk(node, steps, create, &mut |map, key| {
        if create || map.contains_key(key) {
            map.insert(key.to_string(), value.clone());
        }
    });
}
