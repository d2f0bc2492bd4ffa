//! Reading manifests from files: multi-document YAML or JSON, empty documents
//! skipped. Stage definitions are kept: the stage's own settings apply to
//! them as Flux's do to a nested Kustomization, and the renderer then splits
//! them off (they become stages, they are not objects to apply).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::error::RenderError;
use super::fieldspec::Config;
use super::kustomization;
use super::resource::{Ctx, Resource};
use crate::core::yaml::parse_documents;

/// Every object in one file, in document order.
pub(crate) fn load_file(ctx: &Ctx<'_>, path: &Path) -> Result<Vec<Resource>, RenderError> {
    let text = ctx
        .tree
        .read_to_string(path)
        .map_err(|e| ctx.io_error(path, e))?;
    parse_objects(ctx, path, &text)
}

pub(crate) fn parse_objects(
    ctx: &Ctx<'_>,
    path: &Path,
    text: &str,
) -> Result<Vec<Resource>, RenderError> {
    let rel = ctx.rel(path);
    let documents = parse_documents(text).map_err(|e| ctx.yaml_error(path, e))?;
    let mut out = Vec::with_capacity(documents.len());
    for doc in documents {
        let invalid = |problem: String| RenderError::InvalidObject {
            stage: ctx.stage.clone(),
            path: rel.clone(),
            document: doc.index + 1,
            line: doc.line,
            problem,
        };
        if !doc.value.is_object() {
            return Err(invalid("is not a mapping (a Kubernetes object)".into()));
        }
        check_identity(&doc.value).map_err(|e| invalid(e.to_string()))?;
        let kind = doc.value["kind"].as_str().unwrap_or_default();
        if is_list(kind, &doc.value) {
            // kustomize flattens `kind: List` (and `*List`) into its items.
            let Value::Object(mut list) = doc.value else {
                continue;
            };
            let Some(Value::Array(items)) = list.remove("items") else {
                continue;
            };
            for (i, item) in items.into_iter().enumerate() {
                check_identity(&item).map_err(|p| invalid(format!("items[{i}]: {p}")))?;
                let mut item = item;
                stringify_annotations(&mut item);
                out.push(Resource::new(item, rel.clone()));
            }
            continue;
        }
        let mut value = doc.value;
        stringify_annotations(&mut value);
        out.push(Resource::new(value, rel.clone()));
    }
    Ok(out)
}

/// kustomize reads annotation values as strings: `a: 1` and `b: true` are
/// written back as `"1"` and `"true"`, which is what the API server accepts.
fn stringify_annotations(value: &mut Value) {
    let Some(Value::Object(annotations)) = value.pointer_mut("/metadata/annotations") else {
        return;
    };
    for v in annotations.values_mut() {
        match v {
            Value::Number(n) => *v = Value::String(n.to_string()),
            Value::Bool(b) => *v = Value::String(b.to_string()),
            _ => {}
        }
    }
}

fn is_list(kind: &str, value: &Value) -> bool {
    kind.ends_with("List") && value.get("items").is_some_and(Value::is_array)
}

/// The identifying field a document lacks.
#[derive(Debug, thiserror::Error)]
#[error("missing {0}")]
struct MissingIdentity(&'static str);

/// apiVersion, kind and metadata.name are what identify an object; without
/// them it cannot be applied, patched or pruned.
fn check_identity(value: &Value) -> Result<(), MissingIdentity> {
    let non_empty = |v: Option<&Value>| v.and_then(Value::as_str).is_some_and(|s| !s.is_empty());
    if !non_empty(value.get("apiVersion")) {
        return Err(MissingIdentity("apiVersion"));
    }
    if !non_empty(value.get("kind")) {
        return Err(MissingIdentity("kind"));
    }
    let kind = value["kind"].as_str().unwrap_or_default();
    if kind.ends_with("List") && value.get("items").is_some_and(Value::is_array) {
        return Ok(());
    }
    if !non_empty(value.get("metadata").and_then(|m| m.get("name"))) {
        return Err(MissingIdentity("metadata.name"));
    }
    Ok(())
}

fn is_manifest_file(name: &str) -> bool {
    name.ends_with(".yaml") || name.ends_with(".yml") || name.ends_with(".json")
}

/// Every manifest under `dir` (no kustomization at its top), recursively, in
/// sorted path order. A subdirectory with its own kustomization is built as
/// one, as Flux does when it generates a kustomization for a plain directory.
///
/// The configuration of the kustomizations built on the way is merged into
/// `config`.
pub(crate) fn load_tree(
    ctx: &Ctx<'_>,
    dir: &Path,
    config: &mut Config,
) -> Result<Vec<Resource>, RenderError> {
    let mut out = Vec::new();
    walk(ctx, dir, &mut HashSet::new(), &mut out, config)?;
    Ok(out)
}

/// `seen` holds the real paths of directories already read: a symlink back
/// up the tree would otherwise be followed forever.
fn walk(
    ctx: &Ctx<'_>,
    dir: &Path,
    seen: &mut HashSet<PathBuf>,
    out: &mut Vec<Resource>,
    config: &mut Config,
) -> Result<(), RenderError> {
    if !seen.insert(dir.to_path_buf()) {
        return Ok(());
    }
    let mut names = Vec::new();
    for name in ctx.tree.read_dir(dir).map_err(|e| ctx.io_error(dir, e))? {
        // Hidden entries are tooling (.git, .github workflows), not manifests.
        if name.starts_with('.') {
            continue;
        }
        names.push(name);
    }
    names.sort();
    for name in names {
        // Through resolve_inside, so a symlink cannot pull in files from
        // outside the repository.
        let path = ctx
            .resolve(dir, Path::new(&name))
            .map_err(|e| ctx.path_error(e))?;
        if ctx.tree.is_dir(&path) {
            if kustomization::find_file(ctx.tree, &path).is_some() {
                out.extend(kustomization::build(ctx, &path, &mut Vec::new(), config)?);
            } else {
                walk(ctx, &path, seen, out, config)?;
            }
        } else if is_manifest_file(&name) {
            out.extend(load_file(ctx, &path)?);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::object::StageName;
    use std::fs;

    fn parse(text: &str) -> Result<Vec<Resource>, RenderError> {
        let stage = StageName::new("s");
        let ctx = Ctx::new(Path::new("/repo"), &stage);
        parse_objects(&ctx, &PathBuf::from("/repo/app/x.yaml"), text)
    }

    #[test]
    fn empty_documents_are_skipped_and_stage_definitions_kept_for_the_split() {
        let text = "---\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n\
                    apiVersion: stagegate.dev/v1alpha1\nkind: Stage\nmetadata: {name: s}\n";
        let objects = parse(text).unwrap();
        assert_eq!(objects.len(), 2);
        assert_eq!(objects[0].name(), "a");
        assert_eq!(objects[1].kind(), "Stage");
        assert_eq!(objects[0].source, PathBuf::from("app/x.yaml"));
    }

    #[test]
    fn missing_name_names_file_and_document() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Secret\n";
        let err = parse(text).unwrap_err().to_string();
        assert!(err.contains("app/x.yaml"), "{err}");
        assert!(err.contains("document 2"), "{err}");
        assert!(err.contains("metadata.name"), "{err}");
        assert!(err.contains("stage s"), "{err}");
    }

    #[test]
    fn syntax_error_names_the_line() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\nkind: [\n";
        let err = parse(text).unwrap_err();
        match &err {
            RenderError::Yaml { line, path, .. } => {
                assert!(*line >= 5, "{err}");
                assert_eq!(path, &PathBuf::from("app/x.yaml"));
            }
            other => panic!("unexpected {other}"),
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_back_up_the_tree_is_read_once() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        fs::create_dir_all(root.join("app")).unwrap();
        fs::write(
            root.join("app/cm.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
        )
        .unwrap();
        std::os::unix::fs::symlink(&root, root.join("app/loop")).unwrap();
        let stage = StageName::new("s");
        let objects = load_tree(&Ctx::new(&root, &stage), &root, &mut Config::default()).unwrap();
        assert_eq!(objects.len(), 1);
    }

    #[test]
    fn lists_are_flattened() {
        let text = "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: b}}\n";
        let objects = parse(text).unwrap();
        assert_eq!(
            objects.iter().map(Resource::name).collect::<Vec<_>>(),
            ["a", "b"]
        );
    }
}
