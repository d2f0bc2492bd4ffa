//! The three non-apply patch types: JSON merge patch (RFC 7386), JSON patch
//! (RFC 6902) and strategic merge patch with the merge keys and directives
//! kubectl sends for the kinds stagegate touches.

use merge_keys::merge_key;
use serde_json::{Map, Value};

use crate::status::ApiError;

/// RFC 7386: maps merge recursively, `null` deletes, everything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// RFC 6902, with a failed `test` operation reported as an error.
pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), ApiError> {
    let ops: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
    json_patch::patch(target, &ops).map_err(|e| {
        ApiError::new(
            422,
            "Invalid",
            format!("the server rejected our request due to an error in our request: {e}"),
        )
    })
}

/// Lists of scalars that merge as sets (`patchStrategy: merge` on a []string).
fn is_merging_scalar_list(field: &str) -> bool {
    field == "finalizers"
}

/// Applies a strategic merge patch to `target`.
pub fn strategic_merge(target: &mut Value, patch: &Value) -> Result<(), ApiError> {
    let Value::Object(p) = patch else {
        return Err(ApiError::bad_request(
            "strategic merge patch must be a JSON object",
        ));
    };
    merge_map(target, p)
}

fn merge_map(target: &mut Value, patch: &Map<String, Value>) -> Result<(), ApiError> {
    match patch.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut m = patch.clone();
            m.remove("$patch");
            *target = Value::Object(m);
            return Ok(());
        }
        Some("delete") => {
            *target = Value::Null;
            return Ok(());
        }
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unknown patch type: {other} in map"
            )));
        }
        None => {}
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else {
        return Ok(());
    };
    let mut orders: Vec<(String, Vec<Value>)> = Vec::new();
    let mut retain: Option<Vec<String>> = None;
    for (k, v) in patch {
        if let Some(field) = k.strip_prefix("$setElementOrder/") {
            if let Value::Array(a) = v {
                orders.push((field.to_string(), a.clone()));
            }
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Value::Array(del)) = (t.get_mut(field), v) {
                list.retain(|x| !del.contains(x));
            }
            continue;
        }
        if k == "$retainKeys" {
            retain = v.as_array().map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            });
            continue;
        }
        if k.starts_with('$') {
            continue;
        }
        if v.is_null() {
            t.remove(k);
            continue;
        }
        match v {
            Value::Object(pm) => {
                let entry = t.entry(k.clone()).or_insert(Value::Null);
                merge_map(entry, pm)?;
                if entry.is_null() {
                    t.remove(k);
                }
            }
            Value::Array(pa) => {
                let existing = t.remove(k).unwrap_or(Value::Null);
                let merged = merge_list(k, existing, pa)?;
                t.insert(k.clone(), merged);
            }
            other => {
                t.insert(k.clone(), other.clone());
            }
        }
    }
    for (field, order) in orders {
        if let Some(Value::Array(list)) = t.get_mut(&field) {
            apply_order(&field, list, &order);
        }
    }
    if let Some(keep) = retain {
        t.retain(|k, _| keep.contains(k));
    }
    Ok(())
}

fn merge_list(field: &str, existing: Value, patch: &[Value]) -> Result<Value, ApiError> {
    let items: Vec<&Value> = patch.iter().collect();
    // `[{"$patch": "replace"}, …]` replaces the whole list with the other items.
    if patch
        .iter()
        .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        return Ok(Value::Array(
            patch
                .iter()
                .filter(|i| i.get("$patch").is_none())
                .cloned()
                .collect(),
        ));
    }
    let mut list = match existing {
        Value::Array(a) => a,
        _ => Vec::new(),
    };
    if is_merging_scalar_list(field) {
        for v in patch {
            if !list.contains(v) {
                list.push(v.clone());
            }
        }
        return Ok(Value::Array(list));
    }
    let Some(key) = merge_key(field, &items).filter(|_| patch.iter().all(Value::is_object)) else {
        return Ok(Value::Array(patch.iter().map(strip_directives).collect()));
    };
    for item in patch {
        let Some(pm) = item.as_object() else { continue };
        let id = pm.get(key).cloned().unwrap_or(Value::Null);
        let pos = list
            .iter()
            .position(|e| e.get(key).cloned().unwrap_or(Value::Null) == id);
        if pm.get("$patch").and_then(Value::as_str) == Some("delete") {
            if let Some(p) = pos {
                list.remove(p);
            }
            continue;
        }
        match pos {
            Some(p) => merge_map(&mut list[p], pm)?,
            None => {
                let mut fresh = Value::Object(Map::new());
                merge_map(&mut fresh, pm)?;
                list.push(fresh);
            }
        }
    }
    Ok(Value::Array(list))
}

fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

/// `$setElementOrder`: listed items first in the given order, others after.
fn apply_order(field: &str, list: &mut Vec<Value>, order: &[Value]) {
    let refs: Vec<&Value> = order.iter().collect();
    let key = merge_key(field, &refs);
    let ident = |v: &Value| -> Value {
        match key {
            Some(k) if v.is_object() => v.get(k).cloned().unwrap_or(Value::Null),
            _ => v.clone(),
        }
    };
    let wanted: Vec<Value> = order.iter().map(ident).collect();
    let mut rest = Vec::new();
    let mut placed: Vec<(usize, Value)> = Vec::new();
    for item in list.drain(..) {
        match wanted.iter().position(|w| *w == ident(&item)) {
            Some(i) => placed.push((i, item)),
            None => rest.push(item),
        }
    }
    placed.sort_by_key(|(i, _)| *i);
    list.extend(placed.into_iter().map(|(_, v)| v));
    list.extend(rest);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn containers_merge_by_name_and_env_by_name() {
        let mut t = json!({"spec": {"containers": [
            {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}]},
            {"name": "b", "image": "b:1"}
        ]}});
        let p = json!({"spec": {"containers": [
            {"name": "a", "image": "a:2", "env": [{"name": "Y", "value": "2"}]}
        ]}});
        strategic_merge(&mut t, &p).unwrap();
        assert_eq!(t["spec"]["containers"][0]["image"], "a:2");
        assert_eq!(
            t["spec"]["containers"][0]["env"].as_array().unwrap().len(),
            2
        );
        assert_eq!(t["spec"]["containers"][1]["name"], "b");
    }

    #[test]
    fn delete_replace_retain_and_order_directives() {
        let mut t = json!({"spec": {
            "containers": [{"name": "a"}, {"name": "b"}],
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
            "template": {"x": 1, "y": 2}
        }});
        let p = json!({"spec": {
            "$setElementOrder/containers": [{"name": "c"}, {"name": "a"}],
            "containers": [{"name": "b", "$patch": "delete"}, {"name": "c"}],
            "strategy": {"$retainKeys": ["type"], "type": "Recreate"},
            "template": {"$patch": "replace", "z": 3}
        }});
        strategic_merge(&mut t, &p).unwrap();
        assert_eq!(
            t["spec"]["containers"],
            json!([{"name": "c"}, {"name": "a"}])
        );
        assert_eq!(t["spec"]["strategy"], json!({"type": "Recreate"}));
        assert_eq!(t["spec"]["template"], json!({"z": 3}));
    }

    #[test]
    fn failed_json_patch_test_is_an_error() {
        let mut t = json!({"a": 1});
        let e = json_patch(&mut t, &json!([{"op": "test", "path": "/a", "value": 2}])).unwrap_err();
        assert_eq!(e.code, 422);
        json_patch(
            &mut t,
            &json!([{"op": "replace", "path": "/a", "value": 3}]),
        )
        .unwrap();
        assert_eq!(t["a"], 3);
    }
}
