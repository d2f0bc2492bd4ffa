//! Validation of custom resources against their CRD's structural schema
//! (`openAPIV3Schema`), and `fieldValidation` for unknown fields, as the
//! real API server does: wrong types, missing required fields, enums and
//! bounds are a 422 Invalid listing every cause; fields the schema does not
//! declare are pruned (kept under `x-kubernetes-preserve-unknown-fields`),
//! with a `Warning` header (Warn, the API default), silently (Ignore), or
//! refused with a 400 (Strict, kubectl's default).

use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};

use crate::resources::ResourceType;
use crate::status::{ApiError, FieldError, FieldErrorKind};

/// The request's `fieldValidation`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FieldValidation {
    /// Not a request: the simulated controllers' own writes, trusted as
    /// they are.
    #[default]
    Unchecked,
    /// Unknown fields are dropped silently.
    Ignore,
    Warn,
    Strict,
}

impl FieldValidation {
    /// The query parameter; absent means Warn, as on a real server.
    pub fn from_query(v: Option<&str>) -> Result<Self, ApiError> {
        match v {
            None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation parameter unsupported: {other}"
            ))),
        }
    }
}

/// Where a write's warnings go; the HTTP layer turns them into `Warning` headers.
#[derive(Debug, Clone, Default)]
pub struct Warnings(Arc<Mutex<Vec<String>>>);

impl Warnings {
    pub fn push(&self, w: String) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(w);
    }

    pub fn take(&self) -> Vec<String> {
        std::mem::take(
            &mut *self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

/// The `openAPIV3Schema` of the CRD version an object is written in.
pub fn crd_schema<'a>(crd: &'a Value, version: &str) -> Option<&'a Value> {
    crd.pointer("/spec/versions")?
        .as_array()?
        .iter()
        .find(|v| v.get("name").and_then(Value::as_str) == Some(version))?
        .pointer("/schema/openAPIV3Schema")
}

struct Walk {
    errors: Vec<FieldError>,
    unknown: Vec<String>,
}

fn go_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Object(_) => "\"object\"".into(),
        Value::Array(_) => "\"array\"".into(),
        Value::Null => "\"null\"".into(),
        other => other.to_string(),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "string",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
        Value::Null => "null",
    }
}

fn type_matches(want: &str, v: &Value) -> bool {
    match want {
        "integer" => matches!(v, Value::Number(n) if n.is_i64() || n.is_u64()),
        "number" => v.is_number(),
        other => type_name(v) == other,
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl Walk {
    fn invalid(&mut self, path: &str, v: &Value, detail: String) {
        self.errors.push(FieldError {
            kind: FieldErrorKind::Invalid,
            field: path.to_string(),
            detail,
            value: Some(go_value(v)),
        });
    }

    /// Checks `v` against `schema`, pruning undeclared fields.
    fn value(&mut self, path: &str, schema: &Value, v: &mut Value, root: bool) {
        if v.is_null() {
            if !schema
                .get("nullable")
                .and_then(Value::as_bool)
                .unwrap_or(false)
            {
                // A real server drops a null it cannot keep (pruning), as Go's decoding does.
            }
            return;
        }
        let int_or_string = schema
            .get("x-kubernetes-int-or-string")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if int_or_string {
            if !(v.is_string() || type_matches("integer", v)) {
                self.invalid(
                    path,
                    v,
                    format!(
                        "{path} in body must be of type integer,string: {}",
                        go_value(v)
                    ),
                );
            }
            return;
        }
        if let Some(want) = schema.get("type").and_then(Value::as_str)
            && !type_matches(want, v)
        {
            let got = type_name(v);
            self.invalid(
                path,
                v,
                format!("{path} in body must be of type {want}: {:?}", got),
            );
            return;
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
            && !allowed.contains(v)
        {
            let list: Vec<String> = allowed.iter().map(go_value).collect();
            self.errors.push(FieldError {
                kind: FieldErrorKind::Unsupported,
                field: path.to_string(),
                detail: format!("supported values: {}", list.join(", ")),
                value: Some(go_value(v)),
            });
        }
        self.bounds(path, schema, v);
        match v {
            Value::Object(map) => self.object(path, schema, map, root),
            Value::Array(items) => {
                if let Some(item_schema) = schema.get("items") {
                    for (i, item) in items.iter_mut().enumerate() {
                        self.value(&format!("{path}[{i}]"), item_schema, item, false);
                    }
                }
            }
            _ => {}
        }
    }

    fn bounds(&mut self, path: &str, schema: &Value, v: &Value) {
        let num = |k: &str| schema.get(k).and_then(Value::as_f64);
        if let Some(x) = v.as_f64() {
            if let Some(min) = num("minimum")
                && x < min
            {
                self.invalid(
                    path,
                    v,
                    format!("{path} in body should be greater than or equal to {min}"),
                );
            }
            if let Some(max) = num("maximum")
                && x > max
            {
                self.invalid(
                    path,
                    v,
                    format!("{path} in body should be less than or equal to {max}"),
                );
            }
        }
        if let Some(s) = v.as_str() {
            let len = s.chars().count() as f64;
            if let Some(max) = num("maxLength")
                && len > max
            {
                self.errors.push(FieldError {
                    kind: FieldErrorKind::TooLong,
                    field: path.to_string(),
                    detail: format!("may not be more than {max} bytes"),
                    value: None,
                });
            }
            if let Some(min) = num("minLength")
                && len < min
            {
                self.invalid(
                    path,
                    v,
                    format!("{path} in body should be at least {min} chars long"),
                );
            }
        }
        if let Some(a) = v.as_array() {
            let n = a.len() as f64;
            if let Some(max) = num("maxItems")
                && n > max
            {
                self.errors.push(FieldError {
                    kind: FieldErrorKind::TooLong,
                    field: path.to_string(),
                    detail: format!("must have at most {max} items"),
                    value: None,
                });
            }
            if let Some(min) = num("minItems")
                && n < min
            {
                self.invalid(
                    path,
                    v,
                    format!("{path} in body should have at least {min} items"),
                );
            }
        }
    }

    fn object(&mut self, path: &str, schema: &Value, map: &mut Map<String, Value>, root: bool) {
        for req in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if map.get(req).is_none_or(Value::is_null) {
                self.errors.push(FieldError::required(join(path, req), ""));
            }
        }
        let preserve = schema
            .get("x-kubernetes-preserve-unknown-fields")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let embedded = schema
            .get("x-kubernetes-embedded-resource")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let props = schema.get("properties").and_then(Value::as_object);
        let additional = schema.get("additionalProperties");
        let keys: Vec<String> = map.keys().cloned().collect();
        for key in keys {
            if (root || embedded) && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            let child_path = join(path, &key);
            let child_schema = props
                .and_then(|p| p.get(&key))
                .or_else(|| additional.filter(|a| a.is_object()));
            match child_schema {
                Some(s) => {
                    if let Some(child) = map.get_mut(&key) {
                        self.value(&child_path, s, child, false);
                    }
                }
                None if preserve || additional == Some(&Value::Bool(true)) => {}
                None => {
                    map.remove(&key);
                    self.unknown.push(child_path);
                }
            }
        }
    }
}

/// Validates and prunes a custom resource against its schema; returns the
/// unknown fields it dropped (the caller applies `fieldValidation`).
pub fn check_custom(
    rt: &ResourceType,
    schema: &Value,
    obj: &mut Value,
) -> Result<Vec<String>, ApiError> {
    let mut walk = Walk {
        errors: Vec::new(),
        unknown: Vec::new(),
    };
    walk.value("", schema, obj, true);
    walk.errors.sort_by(|a, b| a.field.cmp(&b.field));
    if !walk.errors.is_empty() {
        return Err(ApiError::invalid(
            rt,
            crate::util::name_of(obj),
            walk.errors,
        ));
    }
    Ok(walk.unknown)
}

/// What `fieldValidation` makes of the unknown fields a write would drop.
pub fn unknown_fields(
    rt: &ResourceType,
    version: &str,
    unknown: &[String],
    mode: FieldValidation,
    warnings: &Warnings,
) -> Result<(), ApiError> {
    let problems: Vec<String> = unknown
        .iter()
        .map(|f| format!("unknown field {f:?}"))
        .collect();
    field_problems(rt, version, &problems, mode, warnings)
}

/// What `fieldValidation` makes of fields a JSON body sets twice (the last
/// one wins, as the real decoder's).
pub fn duplicate_fields(
    rt: &ResourceType,
    version: &str,
    body: &[u8],
    mode: FieldValidation,
    warnings: &Warnings,
) -> Result<(), ApiError> {
    if matches!(mode, FieldValidation::Ignore | FieldValidation::Unchecked) {
        return Ok(());
    }
    let problems: Vec<String> = duplicate_paths(body)
        .iter()
        .map(|f| format!("duplicate field {f:?}"))
        .collect();
    field_problems(rt, version, &problems, mode, warnings)
}

/// Warn about or refuse `problems` (`unknown field "spec.x"`), as
/// `fieldValidation` says; Strict lists them all in one 400.
fn field_problems(
    rt: &ResourceType,
    version: &str,
    problems: &[String],
    mode: FieldValidation,
    warnings: &Warnings,
) -> Result<(), ApiError> {
    if problems.is_empty() {
        return Ok(());
    }
    match mode {
        FieldValidation::Ignore | FieldValidation::Unchecked => Ok(()),
        FieldValidation::Warn => {
            for p in problems {
                warnings.push(p.clone());
            }
            Ok(())
        }
        FieldValidation::Strict => Err(ApiError::bad_request(format!(
            "{kind} in version {version:?} cannot be handled as a {kind}: strict decoding error: {}",
            problems.join(", "),
            kind = rt.kind
        ))),
    }
}

/// The paths (`metadata.name`, `spec.containers[0].image`) of the fields a
/// JSON document sets more than once; none for anything that is not JSON.
pub fn duplicate_paths(body: &[u8]) -> Vec<String> {
    use serde::de::DeserializeSeed;
    let mut found = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(body);
    let walk = DuplicateWalk {
        path: String::new(),
        found: &mut found,
    };
    if walk.deserialize(&mut de).is_err() {
        return Vec::new();
    }
    found
}

struct DuplicateWalk<'a> {
    path: String,
    found: &'a mut Vec<String>,
}

impl<'de> serde::de::DeserializeSeed<'de> for DuplicateWalk<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for DuplicateWalk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = if self.path.is_empty() {
                key.clone()
            } else {
                format!("{}.{key}", self.path)
            };
            if !seen.insert(key) {
                self.found.push(path.clone());
            }
            map.next_value_seed(DuplicateWalk {
                path,
                found: &mut *self.found,
            })?;
        }
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        loop {
            let walk = DuplicateWalk {
                path: format!("{}[{i}]", self.path),
                found: &mut *self.found,
            };
            if seq.next_element_seed(walk)?.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

/// A built-in object against its real type.
fn check_builtin(
    rt: &ResourceType,
    version: &str,
    obj: &mut Value,
    opts: &crate::ops::WriteOpts,
) -> Result<(), ApiError> {
    let mut typed = obj.clone();
    if let Value::Object(m) = &mut typed {
        m.insert(
            "apiVersion".into(),
            Value::String(rt.api_version(rt.preferred_version())),
        );
        m.insert("kind".into(), Value::String(rt.kind.clone()));
    }
    match crate::typed::decode(rt, version, &typed) {
        None => Ok(()),
        Some(crate::typed::Decoded::Err(e)) => Err(e),
        Some(crate::typed::Decoded::Ok(unknown)) => {
            unknown_fields(rt, version, &unknown, opts.field_validation, &opts.warnings)?;
            crate::typed::prune(obj, &unknown);
            Ok(())
        }
    }
}

impl crate::store::Store {
    /// Schema validation and `fieldValidation` of one write (create, update,
    /// patch, apply; main resource or status): custom resources against
    /// their CRD's schema.
    pub fn check_schema(
        &self,
        rt: &ResourceType,
        obj: &mut Value,
        opts: &crate::ops::WriteOpts,
    ) -> Result<(), ApiError> {
        if opts.field_validation == FieldValidation::Unchecked {
            return Ok(());
        }
        let version = match opts.api_version.rsplit('/').next() {
            Some(v) if !v.is_empty() => v.to_string(),
            _ => rt.preferred_version().to_string(),
        };
        if !rt.from_crd {
            return check_builtin(rt, &version, obj, opts);
        }
        let crd_key = (
            "apiextensions.k8s.io".to_string(),
            "customresourcedefinitions".to_string(),
        );
        let Some(crd) = self.get(&crd_key, "", &format!("{}.{}", rt.plural, rt.group)) else {
            return Ok(());
        };
        let Some(schema) = crd_schema(&crd, &version) else {
            return Ok(());
        };
        let unknown = check_custom(rt, schema, obj)?;
        unknown_fields(
            rt,
            &version,
            &unknown,
            opts.field_validation,
            &opts.warnings,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_set_twice_are_found_with_their_paths() {
        let body = br#"{"metadata": {"name": "a", "name": "b"}, "data": {"x": "1"},
            "spec": {"containers": [{"image": "a", "image": "b"}]}}"#;
        assert_eq!(
            duplicate_paths(body),
            ["metadata.name", "spec.containers[0].image"]
        );
        assert!(duplicate_paths(b"kind: ConfigMap\n").is_empty());
        assert!(duplicate_paths(br#"{"a": 1, "b": {"a": 2}}"#).is_empty());
    }

    fn stage_type() -> ResourceType {
        crate::resources::type_from_crd(&json!({"spec": {"group": "stagegate.dev", "names": {"plural": "stages", "kind": "Stage"},
            "scope": "Namespaced", "versions": [{"name": "v1alpha1", "served": true, "storage": true}]}}))
        .unwrap()
    }

    #[test]
    fn types_required_enums_and_bounds_are_all_reported() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "required": ["path"], "properties": {
            "retries": {"type": "integer", "minimum": 0},
            "wait": {"type": "string", "enum": ["true", "false"]},
            "timeout": {"type": "string"},
        }}}});
        let mut obj = json!({"metadata": {"name": "pre"}, "spec": {"retries": -1, "wait": "maybe", "timeout": 5}});
        let e = check_custom(&stage_type(), &schema, &mut obj).unwrap_err();
        assert_eq!(e.code, 422);
        assert_eq!(
            e.message,
            "Stage.stagegate.dev \"pre\" is invalid: [spec.path: Required value, spec.retries: Invalid value: -1: spec.retries in body should be greater than or equal to 0, spec.timeout: Invalid value: 5: spec.timeout in body must be of type string: \"integer\", spec.wait: Unsupported value: \"maybe\": supported values: \"true\", \"false\"]"
        );
    }

    #[test]
    fn unknown_fields_are_pruned_unless_preserved() {
        let schema = json!({"type": "object", "properties": {
            "spec": {"type": "object", "properties": {"path": {"type": "string"}}},
            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
        }});
        let mut obj = json!({"apiVersion": "stagegate.dev/v1alpha1", "kind": "Stage", "metadata": {"name": "pre"},
            "spec": {"path": "p", "extra": 1}, "status": {"anything": {"goes": true}}, "top": 1});
        let unknown = check_custom(&stage_type(), &schema, &mut obj).unwrap();
        assert_eq!(unknown, ["spec.extra", "top"]);
        assert_eq!(obj["spec"], json!({"path": "p"}));
        assert_eq!(obj["status"]["anything"]["goes"], true);
    }
}
