//! kustomize's legacy `vars`: `$(NAME)` in the fields kustomize's
//! `varReference` configuration lists is replaced by a field of a named
//! object, once the whole build is done (after names got their prefixes and
//! hashes, so a var naming `metadata.name` gives the final name).
//!
//! Each kustomization marks the object its var names among the objects of
//! its own build, by the identity the object was loaded with; the var's
//! value is read from that object at the end. As in kustomize, a var no
//! object fits, a var fitting two objects and a var declared twice are
//! errors; `$(UNKNOWN)` stays as written and `$$` becomes `$`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;

use super::fieldspec::FieldSpec;
use super::metadata::kustomize_cluster_scoped;
use super::resource::Resource;

/// A `vars` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Var {
    pub name: String,
    pub objref: ObjRef,
    #[serde(default)]
    pub fieldref: Option<FieldRef>,
}

/// The object a var reads, as kustomize's `Target`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ObjRef {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    group: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FieldRef {
    #[serde(default)]
    fieldpath: String,
}

impl ObjRef {
    /// (group, version): `apiVersion` wins over `group` and `version`.
    fn group_version(&self) -> (&str, &str) {
        if self.api_version.is_empty() {
            (&self.group, &self.version)
        } else {
            self.api_version
                .split_once('/')
                .unwrap_or(("", &self.api_version))
        }
    }

    fn describe(&self) -> String {
        let (group, version) = self.group_version();
        let gv = match (group, version) {
            ("", "") => String::new(),
            ("", v) => format!(" {v}"),
            (g, v) => format!(" {g}/{v}"),
        };
        let ns = if self.namespace.is_empty() {
            String::new()
        } else {
            format!("{}/", self.namespace)
        };
        format!("{}{gv} {ns}{}", self.kind, self.name)
    }
}

impl Var {
    fn fieldpath(&self) -> &str {
        self.fieldref
            .as_ref()
            .map(|f| f.fieldpath.as_str())
            .filter(|p| !p.is_empty())
            .unwrap_or("metadata.name")
    }
}

/// A var and the kustomization that declared it, for errors.
#[derive(Debug, Clone)]
pub(crate) struct Declared {
    pub var: Var,
    pub file: PathBuf,
}

/// A var problem, reported against the file that declared the var.
#[derive(Debug)]
pub(crate) struct VarError {
    pub file: PathBuf,
    pub message: String,
}

fn effective_namespace(namespaced: bool, ns: &str) -> &str {
    match (namespaced, ns) {
        (false, _) => "",
        (true, "") => "default",
        (true, ns) => ns,
    }
}

/// kustomize's `MergeVars` for one kustomization: mark the object each var
/// names among `resources` (by the identity it was loaded with), then add
/// the vars to `declared`, refusing a name declared before.
pub(crate) fn merge(
    vars: &[Var],
    file: &std::path::Path,
    resources: &mut [Resource],
    declared: &mut Vec<Declared>,
) -> Result<(), VarError> {
    let error = |message: String| VarError {
        file: file.to_path_buf(),
        message,
    };
    for var in vars {
        let (group, version) = var.objref.group_version();
        let namespaced = !kustomize_cluster_scoped(group, &var.objref.kind);
        let with_namespace = !var.objref.namespace.is_empty() || !namespaced;
        let want_ns = effective_namespace(namespaced, &var.objref.namespace);
        let matched: Vec<usize> = resources
            .iter()
            .enumerate()
            .filter(|(_, r)| {
                let (name, ns) = r.original_identity();
                r.group() == group
                    && r.version() == version
                    && r.kind() == var.objref.kind
                    && name == var.objref.name
                    && (!with_namespace
                        || effective_namespace(namespaced, ns.unwrap_or("")) == want_ns)
            })
            .map(|(i, _)| i)
            .collect();
        if matched.len() > 1 {
            let names: Vec<String> = matched.iter().map(|&i| resources[i].describe()).collect();
            return Err(error(format!(
                "vars: `{}` fits {} objects ({}); kustomize refuses this too — give the \
                 objref a namespace or apiVersion that names one",
                var.name,
                matched.len(),
                names.join(", ")
            )));
        }
        if let Some(&i) = matched.first() {
            resources[i].ref_vars.push(var.name.clone());
        }
        if declared.iter().any(|d| d.var.name == var.name) {
            return Err(error(format!(
                "vars: `{}` is declared twice in this build; kustomize refuses this too — \
                 rename one",
                var.name
            )));
        }
        declared.push(Declared {
            var: var.clone(),
            file: file.to_path_buf(),
        });
    }
    Ok(())
}

/// kustomize's `ResolveVars`: read every var's value and replace `$(NAME)`
/// in the `specs` fields of every object.
pub(crate) fn resolve(
    declared: &[Declared],
    resources: &mut [Resource],
    specs: &[FieldSpec],
) -> Result<(), VarError> {
    let mut values: BTreeMap<&str, Value> = BTreeMap::new();
    let mut sorted: Vec<&Declared> = declared.iter().collect();
    sorted.sort_by(|a, b| a.var.name.cmp(&b.var.name));
    for d in sorted {
        let error = |message: String| VarError {
            file: d.file.clone(),
            message,
        };
        let Some(r) = resources.iter().find(|r| r.ref_vars.contains(&d.var.name)) else {
            return Err(error(format!(
                "vars: `{}` names {}, which is not among the objects of this kustomization and \
                 its bases (kustomize refuses this too; objref needs the object's apiVersion, \
                 kind and name as loaded)",
                d.var.name,
                d.var.objref.describe()
            )));
        };
        let path = d.var.fieldpath();
        let value = field_value(&r.value, path).ok_or_else(|| {
            error(format!(
                "vars: `{}`: {} has no field `{path}` (kustomize refuses this too)",
                d.var.name,
                r.describe()
            ))
        })?;
        if !matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_)) {
            return Err(error(format!(
                "vars: `{}`: field `{path}` of {} is not a string, number or boolean; \
                 stagegate substitutes only those — point the var at a scalar field",
                d.var.name,
                r.describe()
            )));
        }
        values.insert(d.var.name.as_str(), value.clone());
    }
    if values.is_empty() {
        return Ok(());
    }
    for r in resources.iter_mut() {
        let (group, version, kind) = (
            r.group().to_string(),
            r.version().to_string(),
            r.kind().to_string(),
        );
        for spec in specs.iter().filter(|s| s.selects(&group, &version, &kind)) {
            let steps: Vec<&str> = spec.path.split('/').collect();
            // kustomize writes annotation values back as strings, label
            // values as the var's type.
            let metadata_map = steps.as_slice() == ["metadata", "annotations"];
            if let Err(message) = substitute_at(&mut r.value, &steps, &values, metadata_map) {
                return Err(VarError {
                    file: r.source.clone(),
                    message: format!("vars: {}: `{}`: {message}", r.describe(), spec.path),
                });
            }
        }
    }
    Ok(())
}

/// A field by kustomize's field path: `a.b`, `list[0]`, `list.[key=value]`
/// (kustomize finds nothing at `list[key=value]`, so neither does this).
fn field_value<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    let mut node = value;
    for (step, attached) in split_field_path(path) {
        node = match step.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            Some(inner) => {
                let items = node.as_array()?;
                match inner.split_once('=') {
                    Some(_) if attached => return None,
                    Some((key, want)) => items
                        .iter()
                        .find(|item| scalar_text(item.get(key)).as_deref() == Some(want))?,
                    None => items.get(inner.parse::<usize>().ok()?)?,
                }
            }
            None => node.as_object()?.get(step.as_str())?,
        };
    }
    if node.is_null() { None } else { Some(node) }
}

/// `a.b[0].c.[k=v.w]` into `a`, `b`, `[0]`, `c`, `[k=v.w]`: dots inside
/// brackets belong to the value. A bracket is `attached` when it follows a
/// name without a dot.
fn split_field_path(path: &str) -> Vec<(String, bool)> {
    let mut steps = Vec::new();
    let mut current = String::new();
    let mut depth = 0usize;
    let mut attached = false;
    for c in path.chars() {
        match c {
            '[' if depth == 0 => {
                attached = !current.is_empty();
                if attached {
                    steps.push((std::mem::take(&mut current), false));
                }
                depth = 1;
                current.push(c);
            }
            ']' if depth == 1 => {
                current.push(c);
                depth = 0;
                steps.push((std::mem::take(&mut current), attached));
            }
            '.' if depth == 0 => {
                if !current.is_empty() {
                    steps.push((std::mem::take(&mut current), false));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        steps.push((current, false));
    }
    steps
}

fn scalar_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A list at a var reference field holding something other than strings.
#[derive(Debug, thiserror::Error)]
#[error("a list item is not a string (kustomize refuses this too)")]
struct NonStringItem;

/// Walk `steps` (entering lists on the way) and substitute at the end: a
/// string, each string of a list, or each string value of a map.
fn substitute_at(
    node: &mut Value,
    steps: &[&str],
    values: &BTreeMap<&str, Value>,
    metadata_map: bool,
) -> Result<(), NonStringItem> {
    if let Value::Array(items) = node
        && !steps.is_empty()
    {
        for item in items {
            substitute_at(item, steps, values, metadata_map)?;
        }
        return Ok(());
    }
    let Some((first, rest)) = steps.split_first() else {
        return substitute_here(node, values, metadata_map);
    };
    match node.as_object_mut().and_then(|m| m.get_mut(*first)) {
        Some(next) => substitute_at(next, rest, values, metadata_map),
        None => Ok(()),
    }
}

fn substitute_here(
    node: &mut Value,
    values: &BTreeMap<&str, Value>,
    metadata_map: bool,
) -> Result<(), NonStringItem> {
    match node {
        Value::String(text) => {
            *node = expand(text, values);
            Ok(())
        }
        Value::Array(items) => {
            for item in items {
                let Value::String(text) = item else {
                    return Err(NonStringItem);
                };
                *item = expand(text, values);
            }
            Ok(())
        }
        Value::Object(map) => {
            for v in map.values_mut() {
                if let Value::String(text) = v {
                    let expanded = expand(text, values);
                    // Label and annotation values are strings to kustomize.
                    *v = if metadata_map {
                        Value::String(display(&expanded))
                    } else {
                        expanded
                    };
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// A value as Go's `%v` prints it.
fn display(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Kubernetes' `$(VAR)` expansion as kustomize runs it: a string that is
/// exactly one known `$(VAR)` takes the var's value and type; elsewhere the
/// value is written into the text; an unknown var stays as written; `$$`
/// is `$`.
fn expand(input: &str, values: &BTreeMap<&str, Value>) -> Value {
    if !input.contains('$') {
        return Value::String(input.to_string());
    }
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < bytes.len() {
        if bytes[cursor] == b'$' && cursor + 1 < bytes.len() {
            out.push_str(&input[checkpoint..cursor]);
            let rest = &input[cursor + 1..];
            let advance = match rest.as_bytes()[0] {
                b'$' => {
                    out.push('$');
                    1
                }
                b'(' => match rest.find(')') {
                    Some(close) => {
                        let name = &rest[1..close];
                        match values.get(name) {
                            Some(v) if input.len() == name.len() + 3 => return v.clone(),
                            Some(v) => out.push_str(&display(v)),
                            None => {
                                out.push_str("$(");
                                out.push_str(name);
                                out.push(')');
                            }
                        }
                        close + 1
                    }
                    None => {
                        out.push_str("$(");
                        1
                    }
                },
                _ => {
                    let c = rest.chars().next().unwrap_or_default();
                    out.push('$');
                    out.push(c);
                    c.len_utf8()
                }
            };
            cursor += advance;
            checkpoint = cursor + 1;
        }
        cursor += 1;
    }
    if checkpoint < input.len() {
        out.push_str(&input[checkpoint..]);
    }
    Value::String(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn values() -> BTreeMap<&'static str, Value> {
        BTreeMap::from([("PORT", json!(8080)), ("HOST", json!("db"))])
    }

    #[test]
    fn expansion_keeps_the_type_of_a_whole_var_and_writes_text_elsewhere() {
        let v = values();
        assert_eq!(expand("$(PORT)", &v), json!(8080));
        assert_eq!(expand("p$(PORT)", &v), json!("p8080"));
        assert_eq!(expand("$(HOST):$(PORT)", &v), json!("db:8080"));
        assert_eq!(
            expand("$$(PORT) $(NOPE) $$x", &v),
            json!("$(PORT) $(NOPE) $x")
        );
        assert_eq!(expand("a $(HOST", &v), json!("a $(HOST"));
        assert_eq!(expand("cost $5", &v), json!("cost $5"));
        assert_eq!(expand("end$", &v), json!("end$"));
    }

    #[test]
    fn field_paths_enter_lists_by_index_and_by_key() {
        let obj =
            json!({"spec": {"ports": [{"name": "a", "port": 1}, {"name": "b.c", "port": 2}]}});
        assert_eq!(field_value(&obj, "spec.ports[0].port"), Some(&json!(1)));
        assert_eq!(
            field_value(&obj, "spec.ports.[name=b.c].port"),
            Some(&json!(2))
        );
        assert_eq!(field_value(&obj, "spec.ports[name=b.c].port"), None);
        assert_eq!(field_value(&obj, "spec.ports[2].port"), None);
        assert_eq!(field_value(&obj, "spec.nope"), None);
    }
}
