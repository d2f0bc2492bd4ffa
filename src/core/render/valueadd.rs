//! kustomize's built-in `ValueAddTransformer`: one string written into a
//! field of the selected objects (the field and the maps on the way are
//! created), or inserted as a part of a file path the field already holds.
//!
//! kustomize sends a `metadata/namespace` target to its namespace filter
//! instead; that and the list steps of a field path (`[name=x]`) are refused
//! here, naming the target, rather than approximated.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::PatchTarget;
use super::resource::Resource;
use super::target::Selector;

/// The transformer's configuration, as kustomize reads it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Config {
    #[serde(default)]
    pub value: String,
    #[serde(default)]
    pub targets: Vec<Target>,
    #[serde(default)]
    pub target_file_path: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Target {
    #[serde(default)]
    pub selector: Option<PatchTarget>,
    #[serde(default)]
    pub field_path: String,
    #[serde(default)]
    pub file_path_position: i64,
}

/// Why a configuration cannot be applied.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ValueAddError {
    #[error("`targetFilePath` is not supported by stagegate; list the targets inline")]
    TargetFile,
    #[error("must specify at least one target")]
    NoTarget,
    #[error("targets[{0}]: fieldPath cannot be empty")]
    EmptyPath(usize),
    #[error("targets[{0}]: value of filePathPosition ({1}) cannot be negative")]
    NegativePosition(usize, i64),
    #[error(
        "targets[{index}]: fieldPath `{path}` is not supported by stagegate ({why}); \
         use the kustomization's `namespace` or a NamespaceTransformer for namespaces, \
         a replacement or a patch for list items"
    )]
    Unsupported {
        index: usize,
        path: String,
        why: &'static str,
    },
    #[error("targets[{index}]: selector: {message}")]
    Selector { index: usize, message: String },
    #[error("targets[{index}]: {object}: field `{path}` is not a string field (it holds {found})")]
    NotScalar {
        index: usize,
        object: String,
        path: String,
        found: &'static str,
    },
}

/// Apply `config` to `resources`; `root_name` is the base name of the
/// kustomization's directory, kustomize's value when none is given.
pub(crate) fn apply(
    config: &Config,
    root_name: &str,
    resources: &mut [Resource],
) -> Result<(), ValueAddError> {
    if config.target_file_path.is_some() {
        return Err(ValueAddError::TargetFile);
    }
    if config.targets.is_empty() {
        return Err(ValueAddError::NoTarget);
    }
    let value = match config.value.trim() {
        "" => root_name,
        v => v,
    };
    let mut compiled = Vec::with_capacity(config.targets.len());
    for (index, target) in config.targets.iter().enumerate() {
        compiled.push(check_target(index, target)?);
    }
    for (index, (target, (fields, selector))) in config.targets.iter().zip(compiled).enumerate() {
        for r in resources.iter_mut() {
            if selector.as_ref().is_some_and(|s| !s.matches(r)) {
                continue;
            }
            let object = r.describe();
            set_value(&mut r.value, &fields, value, target.file_path_position).map_err(
                |found| ValueAddError::NotScalar {
                    index,
                    object,
                    path: target.field_path.clone(),
                    found,
                },
            )?;
        }
    }
    Ok(())
}

fn check_target(
    index: usize,
    target: &Target,
) -> Result<(Vec<String>, Option<Selector>), ValueAddError> {
    if target.field_path.is_empty() {
        return Err(ValueAddError::EmptyPath(index));
    }
    if target.file_path_position < 0 {
        return Err(ValueAddError::NegativePosition(
            index,
            target.file_path_position,
        ));
    }
    let unsupported = |why| ValueAddError::Unsupported {
        index,
        path: target.field_path.clone(),
        why,
    };
    if target.field_path == "metadata/namespace" {
        return Err(unsupported(
            "kustomize moves the object to that namespace with its namespace rules",
        ));
    }
    let fields = split_fields(&target.field_path);
    if fields
        .iter()
        .any(|f| f.is_empty() || f.starts_with('[') || f.contains('='))
    {
        return Err(unsupported("only names of mapping fields are followed"));
    }
    let selector = match &target.selector {
        None => None,
        Some(t) => Some(Selector::compile(t).map_err(|e| ValueAddError::Selector {
            index,
            message: format!("`{}`: {}", e.selector, e.message),
        })?),
    };
    Ok((fields, selector))
}

/// The field names of a path; `\/` is a slash inside a name, as in kustomize.
fn split_fields(path: &str) -> Vec<String> {
    let mut fields: Vec<String> = Vec::new();
    for part in path.split('/') {
        match fields.last_mut() {
            Some(last) if last.ends_with('\\') => {
                last.pop();
                last.push('/');
                last.push_str(part);
            }
            _ => fields.push(part.to_string()),
        }
    }
    fields
}

/// Write `value` at `fields`, creating maps on the way; an error names what
/// is found where a string belongs.
fn set_value(
    node: &mut Value,
    fields: &[String],
    value: &str,
    position: i64,
) -> Result<(), &'static str> {
    let Some((last, parents)) = fields.split_last() else {
        return Ok(());
    };
    let mut map = as_map(node)?;
    for field in parents {
        let next = map
            .entry(field.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if next.is_null() {
            *next = Value::Object(Map::new());
        }
        map = as_map(next)?;
    }
    let old = match map.get(last) {
        None | Some(Value::Null) => String::new(),
        Some(Value::Object(_)) => return Err("a mapping"),
        Some(Value::Array(_)) => return Err("a list"),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    // kustomize inserts into the path the field holds (empty when new).
    let new = if position > 0 {
        insert_path_part(&old, (position - 1) as usize, value)
    } else {
        value.to_string()
    };
    map.insert(last.clone(), Value::String(new));
    Ok(())
}

fn as_map(node: &mut Value) -> Result<&mut Map<String, Value>, &'static str> {
    match node {
        Value::Object(map) => Ok(map),
        Value::Array(_) => Err("a list on the way"),
        _ => Err("a scalar on the way"),
    }
}

/// `part` inserted into the slash-separated `path` at `pos` (0 is first):
/// a position past the end appends, a leading `/` stays first, and the
/// result is cleaned as Go's `filepath.Join` cleans it.
fn insert_path_part(path: &str, pos: usize, part: &str) -> String {
    let mut parts = split_path(path);
    let mut pos = pos.min(parts.len());
    if parts.first().is_some_and(String::is_empty) && pos < parts.len() {
        pos += 1;
    }
    parts.insert(pos, part.to_string());
    join_path(&parts)
}

fn split_path(path: &str) -> Vec<String> {
    if path.is_empty() {
        return Vec::new();
    }
    let (dir, file) = match path.rfind('/') {
        Some(at) => (&path[..=at], &path[at + 1..]),
        None => ("", path),
    };
    if dir == "/" {
        return if file.is_empty() {
            vec![String::new()]
        } else {
            vec![String::new(), file.to_string()]
        };
    }
    let dir = dir.strip_suffix('/').unwrap_or(dir);
    if dir.is_empty() {
        return vec![file.to_string()];
    }
    let mut parts = split_path(dir);
    parts.push(file.to_string());
    parts
}

fn join_path(parts: &[String]) -> String {
    match parts.split_first() {
        None => String::new(),
        Some((first, rest)) if first.is_empty() => format!("/{}", join_clean(rest)),
        Some(_) => join_clean(parts),
    }
}

/// Go's `filepath.Join`: the non-empty parts joined by `/`, then cleaned.
fn join_clean(parts: &[String]) -> String {
    let joined: Vec<&str> = parts
        .iter()
        .map(String::as_str)
        .filter(|p| !p.is_empty())
        .collect();
    if joined.is_empty() {
        return String::new();
    }
    clean(&joined.join("/"))
}

/// Go's `path.Clean`.
fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => match out.last() {
                Some(&last) if last != ".." => {
                    out.pop();
                }
                _ if rooted => {}
                _ => out.push(".."),
            },
            other => out.push(other),
        }
    }
    let body = out.join("/");
    match (rooted, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".to_string(),
        (false, false) => body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_parts_are_inserted_as_kustomize_inserts_them() {
        let cases = [
            ("", 0, "PEACH"),
            ("/", 5, "/PEACH"),
            ("pie", 0, "PEACH/pie"),
            ("/pie", 0, "/PEACH/pie"),
            ("raw", 1, "raw/PEACH"),
            ("/raw", 9, "/raw/PEACH"),
            ("a/nice/warm/pie", 3, "a/nice/warm/PEACH/pie"),
            ("/a/nice/warm/pie", 3, "/a/nice/warm/PEACH/pie"),
            ("a/./b/../c", 9, "a/c/PEACH"),
        ];
        for (path, pos, want) in cases {
            assert_eq!(
                insert_path_part(path, pos, "PEACH"),
                want,
                "{path} at {pos}"
            );
        }
    }

    #[test]
    fn escaped_slashes_stay_inside_a_field_name() {
        assert_eq!(
            split_fields(r"metadata/annotations/example.com\/owner"),
            ["metadata", "annotations", "example.com/owner"]
        );
    }

    #[test]
    fn a_mapping_where_the_value_goes_is_an_error() {
        let mut v = serde_json::json!({"spec": {"a": {"b": 1}}});
        let fields = split_fields("spec/a");
        assert_eq!(set_value(&mut v, &fields, "x", 0), Err("a mapping"));
        let fields = split_fields("spec/new/deep");
        set_value(&mut v, &fields, "x", 2).unwrap();
        assert_eq!(v["spec"]["new"]["deep"], "x");
    }
}
