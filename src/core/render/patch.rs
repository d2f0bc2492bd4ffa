//! Patches: RFC 6902 operation lists through `json-patch`, and strategic-merge
//! patches as RFC 7386 merges in which the lists people patch (containers,
//! env, ports, volumes, …) merge item by item on their key, with kustomize's
//! `$patch: delete` / `$patch: replace` directives.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::error::RenderError;
use super::resource::{Ctx, Resource, group_of};
use super::target::{Index, Selector};
use super::{Patch, PatchTarget};
use crate::core::yaml::parse_documents;

#[derive(Debug, Clone)]
pub(crate) enum Body {
    Json6902(json_patch::Patch),
    Strategic(Value),
}

/// A patch ready to apply, with the file it was written in for messages.
#[derive(Debug, Clone)]
pub(crate) struct LoadedPatch {
    pub body: Body,
    pub target: Option<Selector>,
    pub file: PathBuf,
    allow_name_change: bool,
    allow_kind_change: bool,
}

impl LoadedPatch {
    /// Patches from an entry of `patches` whose text is `text` (`inline` in
    /// `file`, or read from `file`); a strategic-merge text may hold several
    /// documents.
    pub fn from_text(
        ctx: &Ctx<'_>,
        file: &Path,
        inline: bool,
        text: &str,
        target: Option<&PatchTarget>,
        options: Option<&serde_yaml::Value>,
    ) -> Result<Vec<Self>, RenderError> {
        let (allow_name_change, allow_kind_change) = parse_options(ctx, file, options)?;
        let target = match target {
            Some(t) => Some(Selector::compile(t).map_err(|e| RenderError::Selector {
                stage: ctx.stage.clone(),
                path: ctx.rel(file),
                selector: e.selector,
                message: e.message,
            })?),
            None => None,
        };
        let docs = parse_documents(text).map_err(|e| {
            if inline {
                // The line counts from the patch text, not from the file holding it.
                ctx.patch_error(
                    file,
                    format!(
                        "inline patch, line {}, column {}: {}",
                        e.line, e.column, e.message
                    ),
                )
            } else {
                ctx.yaml_error(file, e)
            }
        })?;
        let mut out = Vec::with_capacity(docs.len());
        for doc in docs {
            let body = match doc.value {
                Value::Array(_) => {
                    let ops: json_patch::Patch =
                        serde_json::from_value(doc.value).map_err(|e| {
                            ctx.patch_error(
                                file,
                                format!("not a valid RFC 6902 operation list: {e}"),
                            )
                        })?;
                    if target.is_none() {
                        return Err(ctx.patch_error(
                            file,
                            "an RFC 6902 (JSON) patch needs a `target` naming the objects to patch",
                        ));
                    }
                    Body::Json6902(ops)
                }
                Value::Object(_) => Body::Strategic(doc.value),
                _ => {
                    return Err(ctx.patch_error(
                        file,
                        "a patch must be a mapping (strategic merge) or a list of operations (RFC 6902)",
                    ));
                }
            };
            out.push(Self {
                body,
                target: target.clone(),
                file: file.to_path_buf(),
                allow_name_change,
                allow_kind_change,
            });
        }
        Ok(out)
    }

    /// A stage-level patch: always inline.
    pub fn from_inline(ctx: &Ctx<'_>, file: &Path, p: &Patch) -> Result<Vec<Self>, RenderError> {
        let Some(text) = &p.patch else {
            return Err(ctx.patch_error(file, "a patch needs `patch` (inline text)"));
        };
        Self::from_text(ctx, file, true, text, p.target.as_ref(), p.options.as_ref())
    }
}

fn parse_options(
    ctx: &Ctx<'_>,
    file: &Path,
    options: Option<&serde_yaml::Value>,
) -> Result<(bool, bool), RenderError> {
    let Some(options) = options else {
        return Ok((false, false));
    };
    let Some(map) = options.as_mapping() else {
        return Err(ctx.patch_error(file, "`options` must be a mapping"));
    };
    let (mut name, mut kind) = (false, false);
    for (k, v) in map {
        let flag = v.as_bool();
        match (k.as_str(), flag) {
            (Some("allowNameChange"), Some(b)) => name = b,
            (Some("allowKindChange"), Some(b)) => kind = b,
            _ => {
                return Err(ctx.patch_error(
                    file,
                    format!("unsupported patch option `{}`", k.as_str().unwrap_or("?")),
                ));
            }
        }
    }
    Ok((name, kind))
}

/// Apply `patches` in order. Objects deleted by `$patch: delete` are removed.
pub(crate) fn apply_all(
    ctx: &Ctx<'_>,
    resources: &mut Vec<Resource>,
    patches: &[Vec<LoadedPatch>],
) -> Result<(), RenderError> {
    if patches.is_empty() {
        return Ok(());
    }
    let mut index = Index::build(resources);
    let mut deleted = vec![false; resources.len()];
    for patch in patches.iter().flatten() {
        let targets: Vec<usize> = match &patch.target {
            Some(sel) => index
                .candidates(sel, resources.len())
                .into_iter()
                .filter(|&i| !deleted[i] && sel.matches(&resources[i]))
                .collect(),
            None => vec![find_strategic_target(
                ctx, patch, resources, &index, &deleted,
            )?],
        };
        let mut identities_changed = false;
        for i in targets {
            let r = &mut resources[i];
            let before = (r.name().to_string(), r.kind().to_string());
            let before_ns = r.namespace().map(str::to_string);
            match &patch.body {
                Body::Json6902(ops) => {
                    json_patch::patch(&mut r.value, ops).map_err(|e| {
                        ctx.patch_error(&patch.file, format!("on {}: {e}", r.describe()))
                    })?;
                    if !r.value.is_object() {
                        return Err(ctx.patch_error(
                            &patch.file,
                            format!("on {}: the result is not an object", before.0),
                        ));
                    }
                }
                Body::Strategic(smp) => {
                    if strategic_merge(r, smp, patch.allow_name_change, patch.allow_kind_change) {
                        deleted[i] = true;
                    }
                }
            }
            if before.0 != r.name() || before.1 != r.kind() {
                identities_changed = true;
                // kustomize records the identity a patch renamed away from:
                // references to the old name follow the object.
                let old = (before.0, before_ns);
                if !r.previous.contains(&old) {
                    r.previous.push(old);
                }
            }
        }
        if identities_changed {
            index = Index::build(resources);
        }
    }
    if deleted.iter().any(|d| *d) {
        let mut i = 0;
        resources.retain(|_| {
            let keep = !deleted[i];
            i += 1;
            keep
        });
    }
    Ok(())
}

/// A strategic-merge patch without a target patches the one object with its
/// apiVersion, kind, name and namespace.
fn find_strategic_target(
    ctx: &Ctx<'_>,
    patch: &LoadedPatch,
    resources: &[Resource],
    index: &Index,
    deleted: &[bool],
) -> Result<usize, RenderError> {
    let Body::Strategic(smp) = &patch.body else {
        return Err(ctx.patch_error(&patch.file, "an RFC 6902 patch needs a target"));
    };
    let api_version = smp
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = smp.get("kind").and_then(Value::as_str).unwrap_or_default();
    let name = smp
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if kind.is_empty() || name.is_empty() {
        return Err(ctx.patch_error(
            &patch.file,
            "a strategic-merge patch without `target` needs kind and metadata.name",
        ));
    }
    let namespace = smp.pointer("/metadata/namespace").and_then(Value::as_str);
    let effective = |ns: Option<&str>| match ns {
        None | Some("") => "default".to_string(),
        Some(ns) => ns.to_string(),
    };
    let want_ns = effective(namespace);
    let matches: Vec<usize> = index
        .by_name(name)
        .into_iter()
        .filter(|&i| {
            let r = &resources[i];
            !deleted[i]
                && r.kind() == kind
                && (api_version.is_empty() || r.group() == group_of(api_version))
                && (r.name() == name && effective(r.namespace()) == want_ns
                    || r.previous
                        .iter()
                        .any(|(n, ns)| n == name && effective(ns.as_deref()) == want_ns))
        })
        .collect();
    match matches.as_slice() {
        [one] => Ok(*one),
        [] => Err(ctx.patch_error(
            &patch.file,
            format!("no object matches {kind} {name}{}", ns_suffix(namespace)),
        )),
        _ => Err(ctx.patch_error(
            &patch.file,
            format!(
                "{kind} {name}{} matches {} objects; give a target",
                ns_suffix(namespace),
                matches.len()
            ),
        )),
    }
}

fn ns_suffix(ns: Option<&str>) -> String {
    ns.map(|ns| format!(" in namespace {ns}"))
        .unwrap_or_default()
}

/// Merge `patch` into `r`; returns true when the patch deletes the object.
fn strategic_merge(r: &mut Resource, patch: &Value, allow_name: bool, allow_kind: bool) -> bool {
    let Some(patch) = patch.as_object() else {
        return false;
    };
    if directive(patch) == Some("delete") {
        return true;
    }
    let name = r.value.pointer("/metadata/name").cloned();
    let namespace = r.value.pointer("/metadata/namespace").cloned();
    let kind = r.value.get("kind").cloned();
    let api_version = r.value.get("apiVersion").cloned();
    if let Some(target) = r.value.as_object_mut() {
        merge_map(target, patch);
    }
    // The patch names its target; that name is not a rename unless asked for.
    let restore = |r: &mut Resource, pointer: &str, key: &str, old: Option<Value>| {
        if let Some(obj) = r.value.pointer_mut(pointer).and_then(Value::as_object_mut) {
            match old {
                Some(v) => {
                    obj.insert(key.to_string(), v);
                }
                None => {
                    obj.remove(key);
                }
            }
        }
    };
    if !allow_name {
        restore(r, "/metadata", "name", name);
    }
    restore(r, "/metadata", "namespace", namespace);
    if !allow_kind {
        restore(r, "", "kind", kind);
        restore(r, "", "apiVersion", api_version);
    }
    false
}

fn directive(map: &Map<String, Value>) -> Option<&str> {
    map.get("$patch").and_then(Value::as_str)
}

/// The key that identifies an item of the list under `field` (the one
/// table, `merge_keys`); ports only when every item carries it.
fn merge_key(field: &str, items: &[Value]) -> Option<&'static str> {
    // kustomize's built-in schema predates `resourceClaims` (Kubernetes
    // 1.26): `kubectl kustomize` replaces that list where the API server
    // merges it by name (tests/render_parity.rs, merge keys).
    if field == "resourceClaims" {
        return None;
    }
    merge_keys::merge_key(field, items).filter(|k| {
        field != "ports"
            || items
                .iter()
                .all(|i| i.get(*k).is_some() || directive_only(i))
    })
}

fn directive_only(item: &Value) -> bool {
    item.as_object().is_some_and(|m| m.contains_key("$patch"))
}

fn merge_map(target: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (key, value) in patch {
        if key.starts_with('$') {
            continue;
        }
        match value {
            Value::Null => {
                target.remove(key);
            }
            Value::Object(sub) => match directive(sub) {
                Some("delete") => {
                    target.remove(key);
                }
                Some("replace") => {
                    target.insert(key.clone(), strip(value));
                }
                _ => match target.get_mut(key) {
                    Some(Value::Object(existing)) => merge_map(existing, sub),
                    _ => {
                        target.insert(key.clone(), strip(value));
                    }
                },
            },
            Value::Array(items) => {
                let mergeable = items.iter().all(Value::is_object);
                match (merge_key(key, items), target.get_mut(key)) {
                    (Some(mk), Some(Value::Array(existing))) if mergeable => {
                        merge_list(existing, items, mk)
                    }
                    _ => {
                        let kept: Vec<Value> = items
                            .iter()
                            .filter(|i| i.as_object().is_none_or(|m| directive(m).is_none()))
                            .map(strip)
                            .collect();
                        target.insert(key.clone(), Value::Array(kept));
                    }
                }
            }
            scalar => {
                target.insert(key.clone(), scalar.clone());
            }
        }
    }
}

/// kustomize's order: the patch's items first, in the patch's order (merged
/// into the existing item with the same key), then the existing items the
/// patch does not mention.
fn merge_list(target: &mut Vec<Value>, patch: &[Value], key: &str) {
    if patch
        .iter()
        .any(|i| i.as_object().and_then(directive) == Some("replace"))
    {
        *target = patch
            .iter()
            .filter(|i| i.as_object().and_then(directive).is_none())
            .map(strip)
            .collect();
        return;
    }
    let mut existing: Vec<Option<Value>> = std::mem::take(target).into_iter().map(Some).collect();
    let mut merged = Vec::with_capacity(existing.len() + patch.len());
    for item in patch {
        let Some(item_map) = item.as_object() else {
            continue;
        };
        let pos = item_map.get(key).and_then(|id| {
            existing
                .iter()
                .position(|t| t.as_ref().and_then(|t| t.get(key)) == Some(id))
        });
        let current = pos.and_then(|p| existing[p].take());
        if directive(item_map) == Some("delete") {
            continue;
        }
        match current {
            Some(Value::Object(mut map)) => {
                merge_map(&mut map, item_map);
                merged.push(Value::Object(map));
            }
            _ => merged.push(strip(item)),
        }
    }
    merged.extend(existing.into_iter().flatten());
    *target = merged;
}

/// A patch value inserted whole: drop directives and nulls, which only mean
/// something when merged.
fn strip(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, v)| !k.starts_with('$') && !v.is_null())
                .map(|(k, v)| (k.clone(), strip(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(strip).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn res(v: Value) -> Resource {
        Resource::new(v, "f.yaml".into())
    }

    #[test]
    fn containers_merge_by_name_and_scalars_replace() {
        let mut r = res(json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [
                {"name": "app", "image": "a:1", "env": [{"name": "A", "value": "1"}], "args": ["x"]},
                {"name": "side", "image": "s:1"}
            ]}}}
        }));
        let patch = json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": 3, "template": {"spec": {"containers": [
                {"name": "app", "env": [{"name": "B", "value": "2"}], "args": ["y"]},
                {"name": "side", "$patch": "delete"}
            ]}}}
        });
        assert!(!strategic_merge(&mut r, &patch, false, false));
        assert_eq!(r.value["spec"]["replicas"], 3);
        let containers = r.value["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap();
        assert_eq!(containers.len(), 1);
        assert_eq!(containers[0]["image"], "a:1");
        assert_eq!(containers[0]["args"], json!(["y"]));
        assert_eq!(containers[0]["env"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn null_removes_and_patch_delete_removes_the_object() {
        let mut r = res(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"a": "1"}}}),
        );
        strategic_merge(
            &mut r,
            &json!({"metadata": {"labels": {"a": null}}}),
            false,
            false,
        );
        assert_eq!(r.value["metadata"]["labels"], json!({}));
        assert!(strategic_merge(
            &mut r,
            &json!({"$patch": "delete"}),
            false,
            false
        ));
    }

    #[test]
    fn target_name_is_kept_unless_allowed() {
        let mut r =
            res(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}));
        strategic_merge(
            &mut r,
            &json!({"metadata": {"name": "other"}, "data": {"k": "v"}}),
            false,
            false,
        );
        assert_eq!(r.name(), "c");
        assert_eq!(r.value["data"]["k"], "v");
    }
}
