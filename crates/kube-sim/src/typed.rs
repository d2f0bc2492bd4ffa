//! Built-in kinds decoded as the API server decodes them: into the real
//! types (k8s-openapi's, generated from the Kubernetes OpenAPI), so a value
//! of the wrong type (`defaultMode: "0400"`) is refused as the real JSON
//! decoder refuses it, and every field the type does not have is found (to
//! be pruned, warned about or refused, per `fieldValidation`).

use k8s_openapi::api::{apps, batch, coordination, core, events, rbac};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiext;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::resources::ResourceType;
use crate::status::{ApiError, FieldError};

/// What decoding found.
pub enum Decoded {
    /// The unknown fields' paths (`spec.template.spec.containers[0].foo`).
    Ok(Vec<String>),
    Err(ApiError),
}

fn roundtrip<T: DeserializeOwned + Serialize>(
    rt: &ResourceType,
    version: &str,
    obj: &Value,
) -> Decoded {
    match serde_path_to_error::deserialize::<_, T>(obj) {
        Ok(typed) => match serde_json::to_value(&typed) {
            Ok(back) => {
                let mut unknown = Vec::new();
                dropped("", obj, &back, &mut unknown);
                Decoded::Ok(unknown)
            }
            Err(_) => Decoded::Ok(Vec::new()),
        },
        Err(e) => Decoded::Err(decode_error(
            rt,
            version,
            obj,
            &e.path().to_string(),
            &e.inner().to_string(),
        )),
    }
}

/// The Go type a serde expectation names.
fn go_type(expected: &str) -> &str {
    let e = expected.trim();
    match e {
        "i32" => "int32",
        "i64" => "int64",
        "u32" | "u64" => "int64",
        "f64" => "float64",
        "a boolean" => "bool",
        "a string" => "string",
        "a sequence" => "[]interface {}",
        "a map" => "map[string]interface {}",
        _ if e.starts_with("struct ") => "struct",
        _ => "string",
    }
}

fn json_kind(v: Option<&Value>) -> &'static str {
    match v {
        Some(Value::String(_)) => "string",
        Some(Value::Number(_)) => "number",
        Some(Value::Bool(_)) => "bool",
        Some(Value::Array(_)) => "array",
        Some(Value::Object(_)) => "object",
        _ => "null",
    }
}

/// Follows a serde_path_to_error path (`spec.volumes[0].secret.defaultMode`).
fn at<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = obj;
    for part in path.split('.') {
        let (key, indexes) = part
            .split_once('[')
            .map_or((part, ""), |(k, rest)| (k, rest));
        if !key.is_empty() {
            cur = cur.get(key)?;
        }
        for idx in indexes.split('[').filter(|s| !s.is_empty()) {
            cur = cur.get(idx.trim_end_matches(']').parse::<usize>().ok()?)?;
        }
    }
    Some(cur)
}

/// A decoding failure as the real server reports it: a missing required
/// field is a 422 (validation), a value of the wrong type a 400 from the
/// JSON decoder.
fn decode_error(
    rt: &ResourceType,
    version: &str,
    obj: &Value,
    path: &str,
    inner: &str,
) -> ApiError {
    if let Some(field) = inner
        .strip_prefix("missing field `")
        .and_then(|r| r.split('`').next())
    {
        let full = if path.is_empty() || path == "." {
            field.to_string()
        } else {
            format!("{path}.{field}")
        };
        return ApiError::invalid(
            rt,
            crate::util::name_of(obj),
            vec![FieldError::required(full, "")],
        );
    }
    let got = json_kind(at(obj, path));
    let expected = inner
        .rsplit_once("expected ")
        .map(|(_, e)| e.split(" at ").next().unwrap_or(e))
        .unwrap_or("");
    let go_path: String = path
        .split('.')
        .map(|p| p.split('[').next().unwrap_or(p))
        .collect::<Vec<_>>()
        .join(".");
    ApiError::bad_request(format!(
        "{kind} in version {version:?} cannot be handled as a {kind}: json: cannot unmarshal {got} into Go struct field {go_path} of type {}",
        go_type(expected),
        kind = rt.kind
    ))
}

/// Paths present (and not null) in `sent` but absent from `kept`.
fn dropped(path: &str, sent: &Value, kept: &Value, out: &mut Vec<String>) {
    match (sent, kept) {
        (Value::Object(s), Value::Object(k)) => {
            for (key, v) in s {
                if v.is_null() {
                    continue;
                }
                let p = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match k.get(key) {
                    Some(kv) => dropped(&p, v, kv, out),
                    None => out.push(p),
                }
            }
        }
        (Value::Array(s), Value::Array(k)) => {
            for (i, (sv, kv)) in s.iter().zip(k).enumerate() {
                dropped(&format!("{path}[{i}]"), sv, kv, out);
            }
        }
        _ => {}
    }
}

/// Removes the fields `dropped` found (paths of object keys, never list items).
pub fn prune(obj: &mut Value, paths: &[String]) {
    let escape = |k: &str| k.replace('~', "~0").replace('/', "~1");
    for path in paths {
        let mut pointer = String::new();
        let mut segments = Vec::new();
        for seg in path.split('.') {
            let mut parts = seg.split('[');
            if let Some(key) = parts.next().filter(|k| !k.is_empty()) {
                segments.push(escape(key));
            }
            segments.extend(parts.map(|i| i.trim_end_matches(']').to_string()));
        }
        let Some(last) = segments.pop() else {
            continue;
        };
        for s in &segments {
            pointer.push('/');
            pointer.push_str(s);
        }
        let key = last.replace("~1", "/").replace("~0", "~");
        if let Some(Value::Object(m)) = obj.pointer_mut(&pointer) {
            m.remove(&key);
        }
    }
}

/// Decodes a built-in object into its real type; `None` for kinds kube-sim
/// has no type for (reviews).
pub fn decode(rt: &ResourceType, version: &str, obj: &Value) -> Option<Decoded> {
    let d = match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "namespaces") => roundtrip::<core::v1::Namespace>(rt, version, obj),
        ("", "configmaps") => roundtrip::<core::v1::ConfigMap>(rt, version, obj),
        ("", "secrets") => roundtrip::<core::v1::Secret>(rt, version, obj),
        ("", "services") => roundtrip::<core::v1::Service>(rt, version, obj),
        ("", "serviceaccounts") => roundtrip::<core::v1::ServiceAccount>(rt, version, obj),
        ("", "pods") => roundtrip::<core::v1::Pod>(rt, version, obj),
        ("", "events") => roundtrip::<core::v1::Event>(rt, version, obj),
        ("", "nodes") => roundtrip::<core::v1::Node>(rt, version, obj),
        ("apps", "deployments") => roundtrip::<apps::v1::Deployment>(rt, version, obj),
        ("apps", "statefulsets") => roundtrip::<apps::v1::StatefulSet>(rt, version, obj),
        ("apps", "daemonsets") => roundtrip::<apps::v1::DaemonSet>(rt, version, obj),
        ("apps", "replicasets") => roundtrip::<apps::v1::ReplicaSet>(rt, version, obj),
        ("batch", "jobs") => roundtrip::<batch::v1::Job>(rt, version, obj),
        ("batch", "cronjobs") => roundtrip::<batch::v1::CronJob>(rt, version, obj),
        ("rbac.authorization.k8s.io", "roles") => roundtrip::<rbac::v1::Role>(rt, version, obj),
        ("rbac.authorization.k8s.io", "rolebindings") => {
            roundtrip::<rbac::v1::RoleBinding>(rt, version, obj)
        }
        ("rbac.authorization.k8s.io", "clusterroles") => {
            roundtrip::<rbac::v1::ClusterRole>(rt, version, obj)
        }
        ("rbac.authorization.k8s.io", "clusterrolebindings") => {
            roundtrip::<rbac::v1::ClusterRoleBinding>(rt, version, obj)
        }
        ("coordination.k8s.io", "leases") => roundtrip::<coordination::v1::Lease>(rt, version, obj),
        ("events.k8s.io", "events") => roundtrip::<events::v1::Event>(rt, version, obj),
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            roundtrip::<apiext::CustomResourceDefinition>(rt, version, obj)
        }
        _ => return None,
    };
    Some(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn jobs() -> ResourceType {
        crate::resources::Registry::with_builtins()
            .get("batch", "jobs")
            .cloned()
            .unwrap()
    }

    fn job(volume: Value, extra: Value) -> Value {
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "m"},
               "spec": {"template": {"spec": {"restartPolicy": "Never",
                   "containers": [{"name": "c", "image": "i", "colour": extra}], "volumes": [volume]}}}})
    }

    #[test]
    fn a_string_where_an_integer_belongs_is_refused_as_the_json_decoder_does() {
        let obj = job(
            json!({"name": "s", "secret": {"secretName": "s", "defaultMode": "0400"}}),
            Value::Null,
        );
        let Some(Decoded::Err(e)) = decode(&jobs(), "v1", &obj) else {
            panic!("accepted")
        };
        assert_eq!(e.code, 400);
        assert_eq!(
            e.message,
            "Job in version \"v1\" cannot be handled as a Job: json: cannot unmarshal string into Go struct field spec.template.spec.volumes.secret.defaultMode of type int32"
        );
    }

    #[test]
    fn unknown_fields_are_found_with_their_list_index_and_pruned() {
        let mut obj = job(json!({"name": "s", "emptyDir": {}}), json!("blue"));
        let Some(Decoded::Ok(unknown)) = decode(&jobs(), "v1", &obj) else {
            panic!("refused")
        };
        assert_eq!(unknown, ["spec.template.spec.containers[0].colour"]);
        prune(&mut obj, &unknown);
        assert!(
            obj.pointer("/spec/template/spec/containers/0/colour")
                .is_none()
        );
        assert_eq!(
            obj.pointer("/spec/template/spec/containers/0/image"),
            Some(&json!("i"))
        );
    }
}
