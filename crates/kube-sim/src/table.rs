//! Server-side printing: the `meta.k8s.io/v1` Table that `kubectl get` asks
//! for, with the columns the real server prints for the common kinds.

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::resources::ResourceType;
use crate::util::{i64_at, parse_time, str_at};

/// The form a client asks objects in, from the first entry of its Accept header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repr {
    Full,
    /// `as=Table`: server-side printing (`kubectl get`).
    Table,
    /// `as=PartialObjectMetadata[List]`: metadata only (kube's `*_metadata` calls).
    Metadata,
}

pub fn repr(accept: &str) -> Repr {
    let first = accept.split(',').next().unwrap_or("");
    let params: Vec<&str> = first.split(';').map(str::trim).collect();
    if !params.contains(&"g=meta.k8s.io") {
        return Repr::Full;
    }
    if params.contains(&"as=Table") {
        Repr::Table
    } else if params.contains(&"as=PartialObjectMetadata")
        || params.contains(&"as=PartialObjectMetadataList")
    {
        Repr::Metadata
    } else {
        Repr::Full
    }
}

/// `meta.k8s.io/v1` PartialObjectMetadata of an object.
pub fn partial(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
    })
}

/// Go's `duration.HumanDuration`, as the AGE column prints it.
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    format!("{}y", hours / 24 / 365)
}

fn age(obj: &Value, pointer: &str) -> String {
    str_at(obj, pointer)
        .and_then(parse_time)
        .map(|t| human_duration(SystemTime::now().duration_since(t).unwrap_or_default()))
        .unwrap_or_else(|| "<unknown>".into())
}

fn col(name: &str, ty: &str, desc: &str) -> Value {
    let mut c = json!({"name": name, "type": ty, "format": "", "description": desc, "priority": 0});
    if name == "Name" {
        c["format"] = json!("name");
    }
    c
}

/// A CRD column's JSONPath, in the subset CRDs use: `.a.b`, `.a[0].b` and
/// `.a[?(@.type=="Ready")].status`.
fn json_path<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = obj;
    let mut rest = path.trim().trim_start_matches('$');
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            cur = cur.get(&r[..end])?;
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let inner = &r[..end];
            rest = &r[end + 1..];
            if let Some(filter) = inner.strip_prefix("?(@.").and_then(|f| f.strip_suffix(')')) {
                let (key, want) = filter.split_once("==")?;
                let want = want.trim().trim_matches(|c| c == '"' || c == '\'');
                cur = cur
                    .as_array()?
                    .iter()
                    .find(|item| item.get(key.trim()).and_then(Value::as_str) == Some(want))?;
            } else {
                cur = cur.get(inner.parse::<usize>().ok()?)?;
            }
        } else {
            return None;
        }
    }
    Some(cur)
}

/// A CRD column's cell as the real table convertor makes it: `string`
/// columns hold the value as kubectl's JSONPath prints it (lists and maps as
/// JSON), typed columns the value if it has that type, `date` an age; a
/// missing or mistyped value is null, which kubectl shows as `<none>`.
fn custom_cell(obj: &Value, ty: &str, path: &str) -> Value {
    let Some(v) = json_path(obj, path).filter(|v| !v.is_null()) else {
        return Value::Null;
    };
    match (ty, v) {
        ("string", Value::String(s)) => json!(s),
        ("string", other) => json!(other.to_string()),
        ("integer", Value::Number(n)) if n.is_i64() => v.clone(),
        ("number", Value::Number(_)) | ("boolean", Value::Bool(_)) => v.clone(),
        ("date", Value::String(s)) => parse_time(s)
            .map(|t| {
                json!(human_duration(
                    SystemTime::now().duration_since(t).unwrap_or_default()
                ))
            })
            .unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

fn columns(rt: &ResourceType) -> Vec<Value> {
    if !rt.printer_columns.is_empty() {
        let mut cols = vec![col(
            "Name",
            "string",
            "Name must be unique within a namespace.",
        )];
        for c in &rt.printer_columns {
            cols.push(json!({
                "name": c.name,
                "type": c.type_,
                "format": c.format,
                "description": c.description,
                "priority": c.priority,
            }));
        }
        return cols;
    }
    let name = col("Name", "string", "Name must be unique within a namespace.");
    let age = col(
        "Age",
        "string",
        "CreationTimestamp is a timestamp representing the server time when this object was created.",
    );
    let s = |n: &str| col(n, "string", "");
    let i = |n: &str| col(n, "integer", "");
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("batch", "jobs") => vec![name, s("Status"), s("Completions"), s("Duration"), age],
        ("", "pods") => vec![name, s("Ready"), s("Status"), s("Restarts"), age],
        ("apps", "deployments") => vec![name, s("Ready"), i("Up-to-date"), i("Available"), age],
        ("apps", "statefulsets") | ("apps", "replicasets") => vec![name, s("Ready"), age],
        ("apps", "daemonsets") => vec![
            name,
            i("Desired"),
            i("Current"),
            i("Ready"),
            i("Up-to-date"),
            i("Available"),
            age,
        ],
        ("", "namespaces") => vec![name, s("Status"), age],
        ("", "configmaps") => vec![name, i("Data"), age],
        ("", "secrets") => vec![name, s("Type"), i("Data"), age],
        ("", "services") => vec![
            name,
            s("Type"),
            s("Cluster-IP"),
            s("External-IP"),
            s("Port(s)"),
            age,
        ],
        ("batch", "cronjobs") => vec![
            name,
            s("Schedule"),
            s("Suspend"),
            i("Active"),
            s("Last Schedule"),
            age,
        ],
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            vec![name, col("Created At", "date", "")]
        }
        ("", "events") => vec![
            s("Last Seen"),
            s("Type"),
            s("Reason"),
            s("Object"),
            s("Message"),
        ],
        ("", "nodes") => vec![name, s("Status"), s("Roles"), age, s("Version")],
        _ => vec![name, age],
    }
}

fn has_condition(obj: &Value, t: &str) -> bool {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some(t)
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

fn count(obj: &Value, pointer: &str) -> i64 {
    i64_at(obj, pointer).unwrap_or(0)
}

fn cells(rt: &ResourceType, obj: &Value) -> Vec<Value> {
    let name = json!(str_at(obj, "/metadata/name").unwrap_or(""));
    if !rt.printer_columns.is_empty() {
        let mut row = vec![name];
        for c in &rt.printer_columns {
            row.push(custom_cell(obj, &c.type_, &c.json_path));
        }
        return row;
    }
    let created = json!(age(obj, "/metadata/creationTimestamp"));
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("batch", "jobs") => {
            let status = [
                "Failed",
                "Complete",
                "Suspended",
                "FailureTarget",
                "SuccessCriteriaMet",
            ]
            .into_iter()
            .find(|t| has_condition(obj, t))
            .unwrap_or("Running");
            let completions = match i64_at(obj, "/spec/completions") {
                Some(c) => format!("{}/{c}", count(obj, "/status/succeeded")),
                None => format!(
                    "{}/1 of {}",
                    count(obj, "/status/succeeded"),
                    count(obj, "/spec/parallelism")
                ),
            };
            let start = str_at(obj, "/status/startTime").and_then(parse_time);
            let end = str_at(obj, "/status/completionTime")
                .and_then(parse_time)
                .unwrap_or_else(SystemTime::now);
            let duration = start
                .map(|s| human_duration(end.duration_since(s).unwrap_or_default()))
                .unwrap_or_default();
            vec![
                name,
                json!(status),
                json!(completions),
                json!(duration),
                created,
            ]
        }
        ("", "pods") => {
            let statuses = obj
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let total = obj
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let ready = statuses
                .iter()
                .filter(|s| s.get("ready").and_then(Value::as_bool) == Some(true))
                .count();
            let waiting = statuses
                .iter()
                .find_map(|s| s.pointer("/state/waiting/reason").and_then(Value::as_str));
            let terminated = statuses.iter().find_map(|s| {
                s.pointer("/state/terminated/reason")
                    .and_then(Value::as_str)
            });
            let phase = str_at(obj, "/status/phase").unwrap_or("Pending");
            let status = if obj.pointer("/metadata/deletionTimestamp").is_some() {
                "Terminating"
            } else {
                waiting.or(terminated).unwrap_or(phase)
            };
            vec![
                name,
                json!(format!("{ready}/{total}")),
                json!(status),
                json!(0),
                created,
            ]
        }
        ("apps", "deployments") => vec![
            name,
            json!(format!(
                "{}/{}",
                count(obj, "/status/readyReplicas"),
                i64_at(obj, "/spec/replicas").unwrap_or(1)
            )),
            json!(count(obj, "/status/updatedReplicas")),
            json!(count(obj, "/status/availableReplicas")),
            created,
        ],
        ("apps", "statefulsets") | ("apps", "replicasets") => vec![
            name,
            json!(format!(
                "{}/{}",
                count(obj, "/status/readyReplicas"),
                i64_at(obj, "/spec/replicas").unwrap_or(1)
            )),
            created,
        ],
        ("apps", "daemonsets") => vec![
            name,
            json!(count(obj, "/status/desiredNumberScheduled")),
            json!(count(obj, "/status/currentNumberScheduled")),
            json!(count(obj, "/status/numberReady")),
            json!(count(obj, "/status/updatedNumberScheduled")),
            json!(count(obj, "/status/numberAvailable")),
            created,
        ],
        ("", "namespaces") => vec![
            name,
            json!(str_at(obj, "/status/phase").unwrap_or("Active")),
            created,
        ],
        ("", "configmaps") => {
            let n = ["data", "binaryData"]
                .iter()
                .filter_map(|k| obj.get(*k).and_then(Value::as_object))
                .map(|m| m.len())
                .sum::<usize>();
            vec![name, json!(n), created]
        }
        ("", "secrets") => {
            let n = ["data", "stringData"]
                .iter()
                .filter_map(|k| obj.get(*k).and_then(Value::as_object))
                .map(|m| m.len())
                .sum::<usize>();
            vec![
                name,
                json!(str_at(obj, "/type").unwrap_or("Opaque")),
                json!(n),
                created,
            ]
        }
        ("", "services") => {
            let ports: Vec<String> = obj
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .map(|ps| {
                    ps.iter()
                        .map(|p| {
                            format!(
                                "{}/{}",
                                p.get("port").map(Value::to_string).unwrap_or_default(),
                                p.get("protocol").and_then(Value::as_str).unwrap_or("TCP")
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            vec![
                name,
                json!(str_at(obj, "/spec/type").unwrap_or("ClusterIP")),
                json!(str_at(obj, "/spec/clusterIP").unwrap_or("None")),
                json!("<none>"),
                json!(if ports.is_empty() {
                    "<none>".to_string()
                } else {
                    ports.join(",")
                }),
                created,
            ]
        }
        ("batch", "cronjobs") => vec![
            name,
            json!(str_at(obj, "/spec/schedule").unwrap_or("")),
            json!(
                obj.pointer("/spec/suspend")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
                    .to_string()
                    .replace("false", "False")
                    .replace("true", "True")
            ),
            json!(
                obj.pointer("/status/active")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len)
            ),
            json!("<none>"),
            created,
        ],
        ("", "nodes") => {
            let ready = has_condition(obj, "Ready");
            let roles: Vec<&str> = obj
                .pointer("/metadata/labels")
                .and_then(Value::as_object)
                .map(|m| {
                    m.keys()
                        .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/"))
                        .collect()
                })
                .unwrap_or_default();
            vec![
                name,
                json!(if ready { "Ready" } else { "NotReady" }),
                json!(if roles.is_empty() {
                    "<none>".to_string()
                } else {
                    roles.join(",")
                }),
                created,
                json!(str_at(obj, "/status/nodeInfo/kubeletVersion").unwrap_or("")),
            ]
        }
        ("", "events") => {
            let kind = str_at(obj, "/involvedObject/kind")
                .unwrap_or("")
                .to_lowercase();
            let object = format!(
                "{kind}/{}",
                str_at(obj, "/involvedObject/name").unwrap_or("")
            );
            vec![
                json!(age(obj, crate::events::last_seen_pointer(obj))),
                json!(str_at(obj, "/type").unwrap_or("")),
                json!(str_at(obj, "/reason").unwrap_or("")),
                json!(object),
                json!(str_at(obj, "/message").unwrap_or("")),
            ]
        }
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            vec![
                name,
                json!(str_at(obj, "/metadata/creationTimestamp").unwrap_or("")),
            ]
        }
        _ => vec![name, created],
    }
}

/// The Table for a list (or, with one object, a GET).
pub fn table(rt: &ResourceType, objs: &[&Value], rv: Option<u64>, cont: Option<&str>) -> Value {
    let rows: Vec<Value> = objs
        .iter()
        .map(|o| {
            let mut meta = o.get("metadata").cloned().unwrap_or(json!({}));
            if let Value::Object(m) = &mut meta {
                m.remove("managedFields");
            }
            json!({
                "cells": cells(rt, o),
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": meta,
                },
            })
        })
        .collect();
    let mut metadata = json!({});
    if let Some(rv) = rv {
        metadata["resourceVersion"] = json!(rv.to_string());
    }
    if let Some(c) = cont {
        metadata["continue"] = json!(c);
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": columns(rt),
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crd_column_paths() {
        let obj = json!({"spec": {"size": 3, "items": [{"n": "a"}]}, "status": {"conditions": [
            {"type": "Other", "status": "False"}, {"type": "Ready", "status": "True"}
        ]}});
        assert_eq!(json_path(&obj, ".spec.size"), Some(&json!(3)));
        assert_eq!(json_path(&obj, ".spec.items[0].n"), Some(&json!("a")));
        assert_eq!(
            json_path(&obj, ".status.conditions[?(@.type==\"Ready\")].status"),
            Some(&json!("True"))
        );
        assert_eq!(json_path(&obj, ".spec.missing"), None);
    }

    #[test]
    fn ages_print_like_kubectl() {
        let d = |s| human_duration(Duration::from_secs(s));
        assert_eq!(d(5), "5s");
        assert_eq!(d(119), "119s");
        assert_eq!(d(150), "2m30s");
        assert_eq!(d(600), "10m");
        assert_eq!(d(4 * 3600 + 60), "4h1m");
        assert_eq!(d(3 * 86400), "3d");
    }
}
