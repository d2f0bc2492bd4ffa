//! kustomize's `replacements`: copy one field of one object (the source)
//! into fields of the objects a target selects. Field paths are kustomize's:
//! dot-separated names, `[key=value]` to pick list items, `*` for every
//! item. What stagegate does not do exactly as kustomize does — a path that
//! continues into YAML or JSON held in a string — is refused with the file
//! and the path, never approximated.

use regex::Regex;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::resource::Resource;
use super::target::{LabelSelector, SelectorSyntax};

/// One `replacements` entry (inline, or read from the file it names).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Replacement {
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    source: Option<Source>,
    #[serde(default)]
    targets: Vec<Target>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Source {
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    field_path: Option<String>,
    #[serde(default)]
    options: Option<FieldOptions>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FieldOptions {
    #[serde(default)]
    delimiter: String,
    #[serde(default)]
    index: i64,
    #[serde(default)]
    create: bool,
    #[serde(default)]
    encoding: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Selector {
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    label_selector: Option<String>,
    #[serde(default)]
    annotation_selector: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Target {
    select: Option<Selector>,
    #[serde(default)]
    reject: Vec<Selector>,
    #[serde(default)]
    field_paths: Vec<String>,
    #[serde(default)]
    options: Option<FieldOptions>,
}

impl Replacement {
    /// The entry's inline form (`path` entries are read by the caller).
    pub fn is_inline(&self) -> bool {
        self.path.is_none()
    }
}

/// Where in a kustomization's `replacements` something went wrong, and what.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("replacements[{entry}]{}: {problem}", target.map(|t| format!(".targets[{t}]")).unwrap_or_default())]
pub(crate) struct ReplacementError {
    pub entry: usize,
    pub target: Option<usize>,
    pub problem: Problem,
}

/// What a replacement cannot do.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum Problem {
    #[error("needs a `source`")]
    NoSource,
    #[error("a target needs `select`")]
    NoSelect,
    #[error("source `options.encoding` is not supported by stagegate")]
    Encoding,
    #[error("the source selects no object")]
    NoSourceObject,
    #[error("the source selects more than one object: {0}")]
    ManySourceObjects(String),
    #[error("`{pattern}`: {message}")]
    Pattern { pattern: String, message: String },
    #[error("`{text}`: {syntax}")]
    Selector {
        text: String,
        syntax: SelectorSyntax,
    },
    #[error("path `{path}`: `[{inner}]` is not [key=value]")]
    NotKeyValue { path: String, inner: String },
    #[error("path `{path}`: `{part}` is not a field name")]
    NotAField { path: String, part: String },
    #[error(
        "path `{0}` continues into a string (YAML or JSON held in a field); \
         stagegate does not edit structured data inside strings"
    )]
    TargetIntoString(String),
    #[error(
        "source path `{0}` continues into a string; stagegate does not read structured data inside strings"
    )]
    SourceIntoString(String),
    #[error("{object} has no field `{path}`")]
    NoSourceField { object: String, path: String },
    #[error("{object} has no field `{path}` (set options.create to add it)")]
    NoTargetField { object: String, path: String },
    #[error("a delimiter needs a scalar {0}")]
    DelimiterNeedsScalar(&'static str),
    #[error("options.index {index} is out of range for `{text}`")]
    IndexOutOfRange { index: i64, text: String },
}

/// One object's identities: its current one and those before renames.
fn identities(r: &Resource) -> Vec<(String, Option<String>)> {
    let mut ids = vec![(r.name().to_string(), r.namespace().map(str::to_string))];
    ids.extend(r.previous.iter().cloned());
    ids
}

fn anchored(pattern: &str) -> Result<Regex, Problem> {
    Regex::new(&format!("^(?:{pattern})$")).map_err(|e| Problem::Pattern {
        pattern: pattern.to_string(),
        message: e.to_string(),
    })
}

/// Whether `sel` (kustomize's regex form for targets, exact for sources)
/// picks `r` by any of its identities.
fn selects(sel: &Selector, r: &Resource, regex: bool) -> Result<bool, Problem> {
    let fits = |want: &Option<String>, have: &str| -> Result<bool, Problem> {
        match want.as_deref() {
            None | Some("") => Ok(true),
            Some(w) if regex => Ok(anchored(w)?.is_match(have)),
            Some(w) => Ok(w == have),
        }
    };
    if !(fits(&sel.group, r.group())?
        && fits(&sel.version, r.version())?
        && fits(&sel.kind, r.kind())?)
    {
        return Ok(false);
    }
    for (name, ns) in identities(r) {
        let ns = ns.unwrap_or_default();
        let ns_fits = match sel.namespace.as_deref() {
            None | Some("") => true,
            Some(w) if regex => {
                let effective = if ns.is_empty() {
                    "default"
                } else {
                    ns.as_str()
                };
                anchored(w)?.is_match(&ns) || anchored(w)?.is_match(effective)
            }
            Some(w) => w == ns || (ns.is_empty() && w == "default"),
        };
        if fits(&sel.name, &name)? && ns_fits {
            return Ok(true);
        }
    }
    Ok(false)
}

fn labels_fit(sel: &Selector, r: &Resource) -> Result<bool, Problem> {
    for (text, field) in [
        (&sel.label_selector, "labels"),
        (&sel.annotation_selector, "annotations"),
    ] {
        if let Some(text) = text.as_deref().filter(|t| !t.is_empty()) {
            let parsed = LabelSelector::parse(text).map_err(|syntax| Problem::Selector {
                text: text.to_string(),
                syntax,
            })?;
            let map = r
                .value
                .pointer(&format!("/metadata/{field}"))
                .and_then(Value::as_object);
            if !parsed.matches(map) {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// A part of a field path.
#[derive(Debug, PartialEq)]
enum Step {
    Field(String),
    /// `[key=value]`: the list items whose `key` is `value`.
    Item(String, String),
    /// `*`: every list item.
    Every,
}

/// Split at dots outside brackets, as kustomize does.
fn parse_path(path: &str) -> Result<Vec<Step>, Problem> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut depth = 0usize;
    let mut chars = path.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            // `\.` is a dot inside a key (`data.config\.yaml`), as in kustomize.
            '\\' if chars.peek() == Some(&'.') => {
                chars.next();
                current.push('.');
            }
            '[' => {
                depth += 1;
                current.push(c);
            }
            ']' => {
                depth = depth.saturating_sub(1);
                current.push(c);
            }
            '.' if depth == 0 => parts.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    parts.push(current);
    parts
        .into_iter()
        .map(|p| {
            if p == "*" {
                return Ok(Step::Every);
            }
            if let Some(inner) = p.strip_prefix('[').and_then(|p| p.strip_suffix(']')) {
                return match inner.split_once('=') {
                    Some((k, v)) if !k.is_empty() => Ok(Step::Item(k.to_string(), v.to_string())),
                    _ => Err(Problem::NotKeyValue {
                        path: path.to_string(),
                        inner: inner.to_string(),
                    }),
                };
            }
            if p.is_empty() || p.contains(['[', ']']) {
                return Err(Problem::NotAField {
                    path: path.to_string(),
                    part: p,
                });
            }
            Ok(Step::Field(p))
        })
        .collect()
}

/// The nodes at `steps`, created on the way when `create` is set.
fn find_mut<'a>(
    node: &'a mut Value,
    steps: &[Step],
    create: bool,
    path: &str,
    out: &mut Vec<&'a mut Value>,
) -> Result<(), Problem> {
    let Some((step, rest)) = steps.split_first() else {
        out.push(node);
        return Ok(());
    };
    match (step, node) {
        (Step::Field(name), Value::Object(map)) => {
            if !map.contains_key(name) {
                if !create {
                    return Ok(());
                }
                let fresh = match rest.first() {
                    Some(Step::Item(..) | Step::Every) => Value::Array(Vec::new()),
                    Some(Step::Field(_)) => Value::Object(Map::new()),
                    None => Value::Null,
                };
                map.insert(name.clone(), fresh);
            }
            match map.get_mut(name) {
                Some(next) => find_mut(next, rest, create, path, out),
                None => Ok(()),
            }
        }
        (Step::Field(_), Value::String(_)) => Err(Problem::TargetIntoString(path.to_string())),
        (Step::Item(key, value), Value::Array(items)) => {
            let wanted = |item: &Value| {
                item.get(key).is_some_and(|v| match v {
                    Value::String(s) => s == value,
                    other => *other == scalar_value(value),
                })
            };
            if create && !items.iter().any(wanted) {
                let mut fresh = Map::new();
                fresh.insert(key.clone(), Value::String(value.clone()));
                items.push(Value::Object(fresh));
            }
            for item in items.iter_mut().filter(|i| wanted(i)) {
                find_mut(item, rest, create, path, out)?;
            }
            Ok(())
        }
        (Step::Every, Value::Array(items)) => {
            for item in items.iter_mut() {
                find_mut(item, rest, create, path, out)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn find<'a>(node: &'a Value, steps: &[Step], path: &str) -> Result<Option<&'a Value>, Problem> {
    let Some((step, rest)) = steps.split_first() else {
        return Ok(Some(node));
    };
    match (step, node) {
        (Step::Field(name), Value::Object(map)) => match map.get(name) {
            Some(next) => find(next, rest, path),
            None => Ok(None),
        },
        (Step::Field(_), Value::String(_)) => Err(Problem::SourceIntoString(path.to_string())),
        (Step::Item(key, value), Value::Array(items)) => {
            let hit = items.iter().find(|i| {
                i.get(key)
                    .is_some_and(|v| v.as_str().map_or(*v == scalar_value(value), |s| s == value))
            });
            match hit {
                Some(next) => find(next, rest, path),
                None => Ok(None),
            }
        }
        _ => Ok(None),
    }
}

/// A `[key=value]` value as the YAML scalar it spells (`[port=80]` picks
/// `port: 80`).
fn scalar_value(text: &str) -> Value {
    crate::core::yaml::parse_documents(text)
        .ok()
        .and_then(|docs| docs.into_iter().next())
        .map_or_else(|| Value::String(text.to_string()), |d| d.value)
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some(String::new()),
        _ => None,
    }
}

/// kustomize replaces a scalar's text and keeps its YAML type.
fn typed_like(target: &Value, text: &str) -> Value {
    match target {
        Value::Number(_) => serde_json::from_str::<serde_json::Number>(text)
            .map(Value::Number)
            .unwrap_or_else(|_| Value::String(text.to_string())),
        Value::Bool(_) if text == "true" || text == "false" => Value::Bool(text == "true"),
        _ => Value::String(text.to_string()),
    }
}

/// Apply `replacements` to `resources` in order.
pub(crate) fn apply(
    replacements: &[Replacement],
    resources: &mut [Resource],
) -> Result<(), ReplacementError> {
    for (entry, rep) in replacements.iter().enumerate() {
        let at = |target| {
            move |problem| ReplacementError {
                entry,
                target,
                problem,
            }
        };
        let source = rep
            .source
            .as_ref()
            .ok_or(Problem::NoSource)
            .map_err(at(None))?;
        let value = source_value(source, resources).map_err(at(None))?;
        for (t, target) in rep.targets.iter().enumerate() {
            apply_target(target, &value, resources).map_err(at(Some(t)))?;
        }
    }
    Ok(())
}

fn source_value(source: &Source, resources: &[Resource]) -> Result<Value, Problem> {
    if source
        .options
        .as_ref()
        .and_then(|o| o.encoding.as_deref())
        .is_some()
    {
        return Err(Problem::Encoding);
    }
    let sel = Selector {
        group: source.group.clone(),
        version: source.version.clone(),
        kind: source.kind.clone(),
        name: source.name.clone(),
        namespace: source.namespace.clone(),
        ..Default::default()
    };
    let mut found = Vec::new();
    for r in resources {
        if selects(&sel, r, false)? {
            found.push(r);
        }
    }
    let r = match found.as_slice() {
        [one] => *one,
        [] => return Err(Problem::NoSourceObject),
        many => {
            let names: Vec<String> = many.iter().map(|r| r.describe()).collect();
            return Err(Problem::ManySourceObjects(names.join(", ")));
        }
    };
    let path = source.field_path.as_deref().unwrap_or("metadata.name");
    let steps = parse_path(path)?;
    let value = find(&r.value, &steps, path)?
        .ok_or_else(|| Problem::NoSourceField {
            object: r.describe(),
            path: path.to_string(),
        })?
        .clone();
    let Some(opts) = source.options.as_ref().filter(|o| !o.delimiter.is_empty()) else {
        return Ok(value);
    };
    let text = scalar_text(&value).ok_or(Problem::DelimiterNeedsScalar("source field"))?;
    let parts: Vec<&str> = text.split(opts.delimiter.as_str()).collect();
    let index = usize::try_from(opts.index)
        .ok()
        .filter(|i| *i < parts.len())
        .ok_or_else(|| Problem::IndexOutOfRange {
            index: opts.index,
            text: text.clone(),
        })?;
    Ok(Value::String(parts[index].to_string()))
}

fn apply_target(target: &Target, value: &Value, resources: &mut [Resource]) -> Result<(), Problem> {
    let select = target.select.as_ref().ok_or(Problem::NoSelect)?;
    let default_path = ["metadata.name".to_string()];
    let paths: &[String] = if target.field_paths.is_empty() {
        &default_path
    } else {
        &target.field_paths
    };
    let options = target.options.clone().unwrap_or_default();
    for r in resources.iter_mut() {
        if !labels_fit(select, r)? || !selects(select, r, true)? {
            continue;
        }
        let mut rejected = false;
        for reject in &target.reject {
            let by_labels = reject.label_selector.is_some() || reject.annotation_selector.is_some();
            let by_id = reject.group.is_some()
                || reject.version.is_some()
                || reject.kind.is_some()
                || reject.name.is_some()
                || reject.namespace.is_some();
            if (by_labels && labels_fit(reject, r)?) || (by_id && selects(reject, r, true)?) {
                rejected = true;
            }
        }
        if rejected {
            continue;
        }
        let describe = r.describe();
        for path in paths {
            let steps = parse_path(path)?;
            let mut fields = Vec::new();
            find_mut(&mut r.value, &steps, options.create, path, &mut fields)?;
            if fields.is_empty() {
                return Err(Problem::NoTargetField {
                    object: describe,
                    path: path.clone(),
                });
            }
            for field in fields {
                set_field(field, value, &options)?;
            }
        }
    }
    Ok(())
}

fn set_field(field: &mut Value, value: &Value, options: &FieldOptions) -> Result<(), Problem> {
    if !options.delimiter.is_empty() {
        let current = scalar_text(field).ok_or(Problem::DelimiterNeedsScalar("target field"))?;
        let text = scalar_text(value).ok_or(Problem::DelimiterNeedsScalar("source value"))?;
        let mut parts: Vec<String> = current
            .split(options.delimiter.as_str())
            .map(str::to_string)
            .collect();
        match usize::try_from(options.index) {
            Err(_) => parts.insert(0, text),
            Ok(i) if i >= parts.len() => parts.push(text),
            Ok(i) => parts[i] = text,
        }
        *field = typed_like(field, &parts.join(&options.delimiter));
        return Ok(());
    }
    match (scalar_text(value), field.is_object() || field.is_array()) {
        (Some(text), false) if !field.is_null() => *field = typed_like(field, &text),
        _ => *field = value.clone(),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_at_dots_outside_brackets() {
        assert_eq!(
            parse_path("spec.containers.[name=web.x].image").unwrap(),
            vec![
                Step::Field("spec".into()),
                Step::Field("containers".into()),
                Step::Item("name".into(), "web.x".into()),
                Step::Field("image".into()),
            ]
        );
        assert!(parse_path("a.[oops].b").is_err());
    }

    #[test]
    fn a_path_into_yaml_held_in_a_string_is_refused_not_approximated() {
        let cm = Resource::new(
            serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
                               "data": {"settings": "server:\n  port: 80\n"}}),
            "f.yaml".into(),
        );
        let reps: Vec<Replacement> = serde_json::from_value(serde_json::json!([{
            "source": {"kind": "ConfigMap", "name": "c", "fieldPath": "metadata.name"},
            "targets": [{"select": {"kind": "ConfigMap"}, "fieldPaths": ["data.settings.server.port"]}]
        }]))
        .unwrap();
        let mut resources = vec![cm];
        let err = apply(&reps, &mut resources).unwrap_err().to_string();
        assert!(
            err.contains("targets[0]") && err.contains("continues into a string"),
            "{err}"
        );
    }
}
