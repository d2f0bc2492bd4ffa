//! Field ownership (`metadata.managedFields`) and server-side apply.
//!
//! A field path is a list of fieldsV1 keys (`f:spec`, `k:{"name":"app"}`,
//! `v:"x"`), so a set of paths converts to and from the `fieldsV1` tree the
//! real server stores. Precision: leaf fields, keyed list items (by the same
//! merge keys as strategic merge patch), set-like scalar lists.

use std::collections::{BTreeMap, BTreeSet};

use merge_keys::merge_key;
use serde_json::{Map, Value, json};

use crate::status::ApiError;

pub type Path = Vec<String>;
pub type FieldSet = BTreeSet<Path>;

/// Fields that belong to the server, never to a manager.
fn ignored(path: &[String]) -> bool {
    match path {
        [a] => a == "f:apiVersion" || a == "f:kind",
        [m, f] if m == "f:metadata" => matches!(
            f.as_str(),
            "f:name"
                | "f:namespace"
                | "f:uid"
                | "f:resourceVersion"
                | "f:generation"
                | "f:creationTimestamp"
                | "f:deletionTimestamp"
                | "f:deletionGracePeriodSeconds"
                | "f:managedFields"
                | "f:selfLink"
                | "f:generateName"
        ),
        _ => false,
    }
}

fn list_key(field: &str, items: &[Value]) -> Option<&'static str> {
    merge_key(field, items).filter(|k| items.iter().all(|i| i.get(*k).is_some()))
}

fn key_elem(key: &str, item: &Value) -> String {
    let mut m = Map::new();
    m.insert(
        key.to_string(),
        item.get(key).cloned().unwrap_or(Value::Null),
    );
    format!("k:{}", Value::Object(m))
}

/// The set of fields an object (or an applied configuration) sets.
/// `status_only` selects the status subresource's fields instead of the rest.
pub fn fields_of(obj: &Value, status_only: bool) -> FieldSet {
    let mut out = FieldSet::new();
    if let Value::Object(m) = obj {
        for (k, v) in m {
            if (k == "status") != status_only {
                continue;
            }
            let mut prefix = vec![format!("f:{k}")];
            walk(v, k, &mut prefix, &mut out);
        }
    }
    out.retain(|p| !(ignored(p) || p.len() == 1 && p[0] == "f:metadata"));
    out
}

fn walk(v: &Value, field: &str, prefix: &mut Path, out: &mut FieldSet) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            if ignored(prefix) {
                return;
            }
            for (k, child) in m {
                prefix.push(format!("f:{k}"));
                walk(child, k, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(items) if !items.is_empty() => {
            if let Some(key) = list_key(field, items) {
                for item in items {
                    prefix.push(key_elem(key, item));
                    out.insert(prefix.clone());
                    if let Value::Object(m) = item {
                        for (k, child) in m {
                            prefix.push(format!("f:{k}"));
                            walk(child, k, prefix, out);
                            prefix.pop();
                        }
                    }
                    prefix.pop();
                }
            } else if field == "finalizers" {
                for item in items {
                    prefix.push(format!("v:{item}"));
                    out.insert(prefix.clone());
                    prefix.pop();
                }
            } else {
                out.insert(prefix.clone());
            }
        }
        _ => {
            out.insert(prefix.clone());
        }
    }
}

/// The value a path points at in an object.
pub fn value_at<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = obj;
    for elem in path {
        cur = step(cur, elem)?;
    }
    Some(cur)
}

fn step<'a>(cur: &'a Value, elem: &str) -> Option<&'a Value> {
    if let Some(f) = elem.strip_prefix("f:") {
        cur.get(f)
    } else if let Some(k) = elem.strip_prefix("k:") {
        let want: Map<String, Value> = serde_json::from_str(k).ok()?;
        cur.as_array()?
            .iter()
            .find(|i| want.iter().all(|(wk, wv)| i.get(wk) == Some(wv)))
    } else if let Some(v) = elem.strip_prefix("v:") {
        let want: Value = serde_json::from_str(v).ok()?;
        cur.as_array()?.iter().find(|i| **i == want)
    } else {
        None
    }
}

/// Removes what a path points at; returns whether something was removed.
fn remove_at(obj: &mut Value, path: &[String]) -> bool {
    let Some((last, parent_path)) = path.split_last() else {
        return false;
    };
    let mut cur = obj;
    for elem in parent_path {
        let next = if let Some(f) = elem.strip_prefix("f:") {
            cur.get_mut(f)
        } else {
            let idx = index_of(cur, elem);
            match (idx, cur.as_array_mut()) {
                (Some(i), Some(a)) => a.get_mut(i),
                _ => None,
            }
        };
        match next {
            Some(n) => cur = n,
            None => return false,
        }
    }
    if let Some(f) = last.strip_prefix("f:") {
        cur.as_object_mut().is_some_and(|m| m.remove(f).is_some())
    } else {
        match (index_of(cur, last), cur.as_array_mut()) {
            (Some(i), Some(a)) => {
                a.remove(i);
                true
            }
            _ => false,
        }
    }
}

fn index_of(arr: &Value, elem: &str) -> Option<usize> {
    let target = step(arr, elem)?;
    arr.as_array()?.iter().position(|i| std::ptr::eq(i, target))
}

/// `.spec.template.spec.containers[name="app"].image`, as conflict messages print paths.
pub fn render_path(path: &[String]) -> String {
    let mut s = String::new();
    for elem in path {
        if let Some(f) = elem.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = elem.strip_prefix("k:") {
            let m: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
            let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
            s.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(v) = elem.strip_prefix("v:") {
            s.push_str(&format!("[={v}]"));
        }
    }
    s
}

pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut cur = &mut root;
        for elem in path {
            let next = cur
                .entry(elem.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            cur = match next {
                Value::Object(m) => m,
                _ => unreachable!("only objects are inserted"),
            };
        }
        // A keyed item or set element is itself a member, marked with ".".
        if path.last().is_some_and(|e| !e.starts_with("f:")) {
            cur.insert(".".to_string(), json!({}));
        }
    }
    Value::Object(root)
}

pub fn from_fields_v1(v: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    let mut prefix = Vec::new();
    collect(v, &mut prefix, &mut out);
    out
}

fn collect(v: &Value, prefix: &mut Path, out: &mut FieldSet) {
    let Some(m) = v.as_object() else { return };
    if m.is_empty() && !prefix.is_empty() {
        out.insert(prefix.clone());
        return;
    }
    for (k, child) in m {
        if k == "." {
            out.insert(prefix.clone());
            continue;
        }
        prefix.push(k.clone());
        collect(child, prefix, out);
        prefix.pop();
    }
}

/// One `managedFields` entry, decoded.
#[derive(Debug, Clone)]
pub struct Manager {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub subresource: String,
    pub time: String,
    pub fields: FieldSet,
}

impl Manager {
    fn id(&self) -> (String, String, String) {
        (
            self.manager.clone(),
            self.operation.clone(),
            self.subresource.clone(),
        )
    }

    /// How conflict messages name a manager (`"kubectl" using apps/v1` for updaters).
    fn display(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            s.push_str(&format!(" with subresource {:?}", self.subresource));
        }
        if self.operation == "Update" {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }
}

pub fn read_managers(obj: &Value) -> Vec<Manager> {
    let Some(entries) = obj
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    entries
        .iter()
        .map(|e| {
            let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            Manager {
                manager: s("manager"),
                operation: s("operation"),
                api_version: s("apiVersion"),
                subresource: s("subresource"),
                time: s("time"),
                fields: e.get("fieldsV1").map(from_fields_v1).unwrap_or_default(),
            }
        })
        .collect()
}

pub fn write_managers(obj: &mut Value, managers: &[Manager]) {
    let entries: Vec<Value> = managers
        .iter()
        .filter(|m| !m.fields.is_empty())
        .map(|m| {
            let mut e = json!({
                "manager": m.manager,
                "operation": m.operation,
                "apiVersion": m.api_version,
                "time": m.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": to_fields_v1(&m.fields),
            });
            if !m.subresource.is_empty() {
                e["subresource"] = json!(m.subresource);
            }
            e
        })
        .collect();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if entries.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".to_string(), Value::Array(entries));
        }
    }
}

/// Leaf paths whose value differs between two objects (or exists in only one).
fn changed_paths(old: &Value, new: &Value, status_only: bool) -> (FieldSet, FieldSet) {
    let new_fields = fields_of(new, status_only);
    let old_fields = fields_of(old, status_only);
    let changed: FieldSet = new_fields
        .iter()
        .filter(|p| value_at(old, p) != value_at(new, p) || !old_fields.contains(*p))
        .cloned()
        .collect();
    let removed: FieldSet = old_fields.difference(&new_fields).cloned().collect();
    (changed, removed)
}

/// Records a non-apply write (create, update, patch) by `manager`: it takes
/// the fields it changed from everyone else.
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    api_version: &str,
    subresource: &str,
) {
    let status_only = subresource == "status";
    let mut managers = old.map(read_managers).unwrap_or_default();
    let (changed, removed) = match old {
        Some(o) => changed_paths(o, new, status_only),
        None => (fields_of(new, status_only), FieldSet::new()),
    };
    if changed.is_empty() && removed.is_empty() && old.is_some() {
        write_managers(new, &managers);
        return;
    }
    for m in managers.iter_mut() {
        m.fields
            .retain(|p| !changed.contains(p) && !removed.contains(p));
    }
    let id = (
        manager.to_string(),
        "Update".to_string(),
        subresource.to_string(),
    );
    let now = crate::util::now_rfc3339();
    match managers.iter_mut().find(|m| m.id() == id) {
        Some(m) => {
            m.fields.extend(changed);
            m.time = now;
            m.api_version = api_version.to_string();
        }
        None => managers.push(Manager {
            manager: manager.to_string(),
            operation: "Update".to_string(),
            api_version: api_version.to_string(),
            subresource: subresource.to_string(),
            time: now,
            fields: changed,
        }),
    }
    managers.retain(|m| !m.fields.is_empty());
    write_managers(new, &managers);
}

/// Server-side apply of `applied` onto `live` (`None` when the object does not
/// exist yet). Returns the merged object with its managedFields, or the 409
/// conflict Status when another manager owns a field this apply would change.
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    api_version: &str,
    force: bool,
    subresource: &str,
) -> Result<Value, ApiError> {
    let status_only = subresource == "status";
    let applied_set = fields_of(applied, status_only);
    let mut managers = live.map(read_managers).unwrap_or_default();
    let me = (
        manager.to_string(),
        "Apply".to_string(),
        subresource.to_string(),
    );
    let empty = Value::Object(Map::new());
    let live_v = live.unwrap_or(&empty);

    // Conflicts: another manager owns a leaf this apply sets to a different value.
    let mut conflicts: Vec<(String, Path)> = Vec::new();
    for m in managers.iter().filter(|m| m.id() != me) {
        for p in m.fields.intersection(&applied_set) {
            let is_leaf = !applied_set
                .range(p.clone()..)
                .nth(1)
                .is_some_and(|next| next.starts_with(p));
            if is_leaf && value_at(live_v, p) != value_at(applied, p) {
                conflicts.push((m.display(), p.clone()));
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflict_error(&conflicts));
    }
    if force {
        let taken: FieldSet = conflicts.iter().map(|(_, p)| p.clone()).collect();
        for m in managers.iter_mut().filter(|m| m.id() != me) {
            m.fields.retain(|p| !taken.contains(p));
        }
    }

    let mut merged = live_v.clone();
    let mut to_merge = applied.clone();
    // The applied configuration sets identity only when creating.
    if let Some(meta) = to_merge.get_mut("metadata").and_then(Value::as_object_mut) {
        for k in [
            "resourceVersion",
            "uid",
            "managedFields",
            "creationTimestamp",
        ] {
            meta.remove(k);
        }
    }
    if let Value::Object(m) = &mut to_merge {
        if status_only {
            m.retain(|k, _| k == "status" || k == "apiVersion" || k == "kind" || k == "metadata");
        } else {
            m.remove("status");
        }
    }
    crate::patch::strategic_merge(&mut merged, &to_merge)?;

    // Fields this manager applied before and no longer does are removed,
    // unless someone else also owns them.
    let previous: FieldSet = managers
        .iter()
        .find(|m| m.id() == me)
        .map(|m| m.fields.clone())
        .unwrap_or_default();
    let others: FieldSet = managers
        .iter()
        .filter(|m| m.id() != me)
        .flat_map(|m| m.fields.iter().cloned())
        .collect();
    let mut dropped: Vec<&Path> = previous
        .difference(&applied_set)
        .filter(|p| !others.contains(*p) && !others.iter().any(|o| o.starts_with(p)))
        .collect();
    dropped.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in dropped {
        remove_at(&mut merged, p);
    }

    let now = crate::util::now_rfc3339();
    managers.retain(|m| m.id() != me);
    managers.push(Manager {
        manager: manager.to_string(),
        operation: "Apply".to_string(),
        api_version: api_version.to_string(),
        subresource: subresource.to_string(),
        time: now,
        fields: applied_set,
    });
    managers.retain(|m| !m.fields.is_empty());
    // Appliers first, as the real server orders them.
    let mut ordered: BTreeMap<usize, Vec<Manager>> = BTreeMap::new();
    for m in managers {
        ordered
            .entry(usize::from(m.operation != "Apply"))
            .or_default()
            .push(m);
    }
    let managers: Vec<Manager> = ordered.into_values().flatten().collect();
    write_managers(&mut merged, &managers);
    Ok(merged)
}

fn conflict_error(conflicts: &[(String, Path)]) -> ApiError {
    let n = conflicts.len();
    let message = if n == 1 {
        format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            conflicts[0].0,
            render_path(&conflicts[0].1)
        )
    } else {
        let mut by_manager: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (m, p) in conflicts {
            by_manager.entry(m).or_default().push(render_path(p));
        }
        let mut s = String::from("conflicts with");
        if by_manager.len() > 1 {
            s.push_str(":\n");
        }
        for (m, paths) in &by_manager {
            if by_manager.len() > 1 {
                s.push_str("  ");
            }
            s.push_str(&format!(" {m}"));
            if paths.len() == 1 {
                s.push_str(&format!(": {}\n", paths[0]));
            } else {
                s.push_str(":\n");
                for p in paths {
                    s.push_str(&format!("- {p}\n"));
                }
            }
        }
        format!("Apply failed with {n} conflicts: {s}")
    };
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|(m, p)| {
            json!({
                "reason": "FieldManagerConflict",
                "message": format!("conflict with {m}"),
                "field": render_path(p),
            })
        })
        .collect();
    ApiError::new(409, "Conflict", message).with_details(json!({ "causes": causes }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_v1_round_trips() {
        let obj = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "labels": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "image": "x", "ports": [{"containerPort": 80}]}]}
        });
        let set = fields_of(&obj, false);
        assert!(set.contains(&vec!["f:metadata".into(), "f:labels".into(), "f:a".into()]));
        assert!(
            !set.iter()
                .any(|p| p.contains(&"f:name".to_string()) && p.len() == 2)
        );
        let v1 = to_fields_v1(&set);
        assert_eq!(from_fields_v1(&v1), set);
        assert!(v1["f:spec"]["f:containers"]["k:{\"name\":\"c\"}"]["."].is_object());
    }

    #[test]
    fn conflicting_apply_is_refused_unless_forced() {
        let a = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"k": "1", "j": "0"}});
        let live = apply(None, &a, "one", "v1", false, "").unwrap();
        let b = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"k": "2"}});
        let err = apply(Some(&live), &b, "two", "v1", false, "").unwrap_err();
        assert_eq!(err.code, 409);
        assert_eq!(
            err.message,
            "Apply failed with 1 conflict: conflict with \"one\": .data.k"
        );
        let forced = apply(Some(&live), &b, "two", "v1", true, "").unwrap();
        assert_eq!(forced["data"]["k"], "2");
        // Same value: shared ownership, no conflict.
        let same = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"j": "0"}});
        apply(Some(&forced), &same, "three", "v1", false, "").unwrap();
    }

    #[test]
    fn fields_no_longer_applied_are_removed() {
        let a = json!({"metadata": {"name": "x"}, "data": {"k": "1", "j": "0"}});
        let live = apply(None, &a, "one", "v1", false, "").unwrap();
        let b = json!({"metadata": {"name": "x"}, "data": {"k": "1"}});
        let next = apply(Some(&live), &b, "one", "v1", false, "").unwrap();
        assert_eq!(next["data"], json!({"k": "1"}));
    }
}
