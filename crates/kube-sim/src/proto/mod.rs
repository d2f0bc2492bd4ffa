//! Protobuf request bodies (`application/vnd.kubernetes.protobuf`), as typed
//! Go clients send them (`kubectl create …`, `kubectl run`): the `k8s\0`
//! magic, then a `runtime.Unknown` whose `typeMeta` names the kind and whose
//! `raw` is the object. k8s-pb's prost types decode the object; the
//! generated `ToJson` impls (to_json.rs) give the JSON object the API serves,
//! so the rest of kube-sim never sees protobuf.

mod to_json;

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine;
use k8s_pb::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiext;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use prost::Message;
use serde_json::{Map, Value, json};

use crate::status::ApiError;

/// The media type typed clients send and accept.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";
const MAGIC: &[u8] = b"k8s\0";

/// Whether a Content-Type header names the protobuf encoding.
pub fn is_protobuf(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|m| m.trim().eq_ignore_ascii_case(MEDIA_TYPE))
}

/// The JSON object of a protobuf request body, or the real server's 415/400.
pub fn decode_body(body: &[u8]) -> Result<Value, ApiError> {
    let envelope = body.strip_prefix(MAGIC).ok_or_else(|| {
        ApiError::bad_request("the protobuf body does not start with the k8s\\0 magic")
    })?;
    let unknown = k8s_pb::apimachinery::pkg::runtime::Unknown::decode(envelope).map_err(|e| {
        ApiError::bad_request(format!("the protobuf envelope could not be decoded: {e}"))
    })?;
    let type_meta = unknown.type_meta.unwrap_or_default();
    let api_version = type_meta.api_version.unwrap_or_default();
    let kind = type_meta.kind.unwrap_or_default();
    if unknown
        .content_encoding
        .as_deref()
        .is_some_and(|e| !e.is_empty())
    {
        return Err(ApiError::bad_request(format!(
            "unsupported protobuf content encoding {:?}",
            unknown.content_encoding
        )));
    }
    let raw = unknown.raw.unwrap_or_default();
    let decoded = match kind.as_str() {
        // Sent by typed clients' deletes, with the request's group version.
        "DeleteOptions" => Some(object::<meta::DeleteOptions>(&raw)),
        // `kubectl auth whoami`: the request holds metadata only, the answer
        // is the server's to fill in.
        "SelfSubjectReview" if api_version == "authentication.k8s.io/v1" => Some(
            k8s_pb::api::authentication::v1::SelfSubjectReview::decode(raw.as_slice())
                .map(|review| json!({"metadata": review.metadata.map(|m| m.to_json())})),
        ),
        _ => to_json::decode(&api_version, &kind, &raw),
    };
    let Some(decoded) = decoded else {
        // A real server has no protobuf form of custom resources either.
        return Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (no protobuf type for {kind} in {api_version})"
            ),
        ));
    };
    let mut obj = decoded.map_err(|e| {
        ApiError::bad_request(format!(
            "the protobuf body of {kind} ({api_version}) could not be decoded: {e}"
        ))
    })?;
    if let Value::Object(m) = &mut obj {
        // apiVersion and kind first, as the JSON a client would have sent.
        let mut out = Map::new();
        out.insert("apiVersion".into(), json!(api_version));
        out.insert("kind".into(), json!(kind));
        out.append(m);
        obj = Value::Object(out);
    }
    Ok(obj)
}

fn object<T: Message + Default + ToJson>(raw: &[u8]) -> Result<Value, prost::DecodeError> {
    T::decode(raw).map(|t| t.to_json())
}

/// The JSON form of a protobuf message, as the API server's JSON encoder writes it.
pub trait ToJson {
    fn to_json(&self) -> Value;
}

/// Sets `key` unless the value is absent or an empty list or map.
fn put<T: ToJson + ?Sized>(m: &mut Map<String, Value>, key: &str, v: &T) {
    let v = v.to_json();
    let empty = match &v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        _ => false,
    };
    if !empty {
        m.insert(key.to_string(), v);
    }
}

/// Sets `key` unless absent or the zero value: a non-pointer `omitempty` field.
fn put_nonzero<T: ToJson>(m: &mut Map<String, Value>, key: &str, v: &Option<T>) {
    let v = v.to_json();
    let zero = match &v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        _ => false,
    };
    if !zero {
        m.insert(key.to_string(), v);
    }
}

fn base64(b: &[u8]) -> Value {
    Value::String(base64::engine::general_purpose::STANDARD.encode(b))
}

fn put_bytes(m: &mut Map<String, Value>, key: &str, v: &Option<Vec<u8>>) {
    if let Some(b) = v {
        m.insert(key.to_string(), base64(b));
    }
}

fn put_bytes_map(m: &mut Map<String, Value>, key: &str, v: &BTreeMap<String, Vec<u8>>) {
    if !v.is_empty() {
        let o = v.iter().map(|(k, b)| (k.clone(), base64(b))).collect();
        m.insert(key.to_string(), Value::Object(o));
    }
}

impl ToJson for String {
    fn to_json(&self) -> Value {
        json!(self)
    }
}

macro_rules! scalar {
    ($($t:ty),*) => {$(
        impl ToJson for $t {
            fn to_json(&self) -> Value {
                json!(self)
            }
        }
    )*};
}
scalar!(bool, i32, i64, f32, f64);

impl<T: ToJson> ToJson for Option<T> {
    fn to_json(&self) -> Value {
        self.as_ref().map_or(Value::Null, ToJson::to_json)
    }
}

impl<T: ToJson> ToJson for Box<T> {
    fn to_json(&self) -> Value {
        (**self).to_json()
    }
}

impl<T: ToJson> ToJson for Vec<T> {
    fn to_json(&self) -> Value {
        Value::Array(self.iter().map(ToJson::to_json).collect())
    }
}

impl<T: ToJson> ToJson for BTreeMap<String, T> {
    fn to_json(&self) -> Value {
        if self.is_empty() {
            return Value::Null;
        }
        Value::Object(self.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
    }
}

/// Raw JSON carried as bytes (RawExtension, FieldsV1, apiextensions JSON).
fn raw_json(raw: &Option<Vec<u8>>) -> Value {
    raw.as_deref()
        .filter(|b| !b.is_empty())
        .and_then(|b| serde_json::from_slice(b).ok())
        .unwrap_or(Value::Null)
}

fn timestamp(seconds: Option<i64>, nanos: Option<i32>, micros: bool) -> Value {
    let (s, n) = (seconds.unwrap_or(0), nanos.unwrap_or(0));
    if s == 0 && n == 0 {
        // The zero time is `null` in JSON: the field is unset.
        return Value::Null;
    }
    let t = UNIX_EPOCH + Duration::new(s.max(0).unsigned_abs(), n.max(0).unsigned_abs());
    if micros {
        json!(humantime::format_rfc3339_micros(t).to_string())
    } else {
        json!(crate::util::rfc3339(t))
    }
}

impl ToJson for meta::Time {
    fn to_json(&self) -> Value {
        timestamp(self.seconds, self.nanos, false)
    }
}

impl ToJson for meta::MicroTime {
    fn to_json(&self) -> Value {
        timestamp(self.seconds, self.nanos, true)
    }
}

impl ToJson for meta::Duration {
    fn to_json(&self) -> Value {
        json!(go_duration(self.duration.unwrap_or(0)))
    }
}

/// Go's `time.Duration.String()` (`1h2m3.5s`, `150ms`, `0s`).
fn go_duration(nanos: i64) -> String {
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    if n == 0 {
        return "0s".into();
    }
    if n < 1_000_000_000 {
        let (unit, div) = match n {
            0..1_000 => ("ns", 1),
            1_000..1_000_000 => ("µs", 1_000),
            _ => ("ms", 1_000_000),
        };
        return format!("{sign}{}{unit}", trim_fraction(n, div));
    }
    let (h, rest) = (n / 3_600_000_000_000, n % 3_600_000_000_000);
    let (m, rest) = (rest / 60_000_000_000, rest % 60_000_000_000);
    let secs = trim_fraction(rest, 1_000_000_000);
    match (h, m) {
        (0, 0) => format!("{sign}{secs}s"),
        (0, m) => format!("{sign}{m}m{secs}s"),
        (h, m) => format!("{sign}{h}h{m}m{secs}s"),
    }
}

fn trim_fraction(n: u64, div: u64) -> String {
    let (whole, frac) = (n / div, n % div);
    if frac == 0 {
        return whole.to_string();
    }
    let width = div.to_string().len() - 1;
    let f = format!("{frac:0width$}");
    format!("{whole}.{}", f.trim_end_matches('0'))
}

impl ToJson for meta::FieldsV1 {
    fn to_json(&self) -> Value {
        raw_json(&self.raw)
    }
}

impl ToJson for k8s_pb::apimachinery::pkg::runtime::RawExtension {
    fn to_json(&self) -> Value {
        raw_json(&self.raw)
    }
}

impl ToJson for k8s_pb::apimachinery::pkg::util::intstr::IntOrString {
    fn to_json(&self) -> Value {
        // type 0 is an int, 1 a string.
        if self.r#type.unwrap_or(0) == 1 {
            json!(self.str_val.clone().unwrap_or_default())
        } else {
            json!(self.int_val.unwrap_or(0))
        }
    }
}

impl ToJson for k8s_pb::apimachinery::pkg::api::resource::Quantity {
    fn to_json(&self) -> Value {
        json!(self.string.clone().unwrap_or_default())
    }
}

impl ToJson for apiext::Json {
    fn to_json(&self) -> Value {
        raw_json(&self.raw)
    }
}

impl ToJson for apiext::JsonSchemaPropsOrArray {
    fn to_json(&self) -> Value {
        match &self.schema {
            Some(s) => s.to_json(),
            None => self.j_son_schemas.to_json(),
        }
    }
}

impl ToJson for apiext::JsonSchemaPropsOrBool {
    fn to_json(&self) -> Value {
        match &self.schema {
            Some(s) => s.to_json(),
            None => json!(self.allows.unwrap_or(false)),
        }
    }
}

impl ToJson for apiext::JsonSchemaPropsOrStringArray {
    fn to_json(&self) -> Value {
        match &self.schema {
            Some(s) => s.to_json(),
            None => self.property.to_json(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_pb::api::core::v1 as core;

    fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
        let unknown = k8s_pb::apimachinery::pkg::runtime::Unknown {
            type_meta: Some(k8s_pb::apimachinery::pkg::runtime::TypeMeta {
                api_version: Some(api_version.into()),
                kind: Some(kind.into()),
            }),
            raw: Some(raw),
            content_encoding: Some(String::new()),
            content_type: Some(String::new()),
        };
        let mut out = MAGIC.to_vec();
        out.extend(unknown.encode_to_vec());
        out
    }

    #[test]
    fn a_configmap_decodes_to_the_json_object() {
        let cm = core::ConfigMap {
            metadata: Some(meta::ObjectMeta {
                name: Some("settings".into()),
                namespace: Some(String::new()),
                generate_name: Some(String::new()),
                creation_timestamp: Some(meta::Time::default()),
                ..Default::default()
            }),
            data: [("a".to_string(), "1".to_string())].into(),
            binary_data: [("b".to_string(), vec![0xff, 0])].into(),
            ..Default::default()
        };
        let v = decode_body(&envelope("v1", "ConfigMap", cm.encode_to_vec())).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
                   "data": {"a": "1"}, "binaryData": {"b": "/wA="}})
        );
    }

    #[test]
    fn pointer_zeros_stay_and_special_types_take_their_json_form() {
        let port = core::ServicePort {
            port: Some(80),
            target_port: Some(k8s_pb::apimachinery::pkg::util::intstr::IntOrString {
                r#type: Some(1),
                int_val: Some(0),
                str_val: Some("http".into()),
            }),
            node_port: Some(0),
            ..Default::default()
        };
        let v = port.to_json();
        assert_eq!(v, json!({"port": 80, "targetPort": "http"}));
        let spec = k8s_pb::api::batch::v1::JobSpec {
            backoff_limit: Some(0),
            ..Default::default()
        };
        assert_eq!(spec.to_json(), json!({"backoffLimit": 0}));
    }

    #[test]
    fn unknown_kinds_are_a_415_and_garbage_a_400() {
        let e = decode_body(&envelope("example.com/v1", "Widget", vec![])).unwrap_err();
        assert_eq!(e.code, 415);
        assert_eq!(decode_body(b"k8s\0\xff\xff").unwrap_err().code, 400);
        assert_eq!(decode_body(b"{}").unwrap_err().code, 400);
    }

    #[test]
    fn durations_read_as_go_writes_them() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(1_500_000_000), "1.5s");
        assert_eq!(go_duration(3_723_000_000_000), "1h2m3s");
        assert_eq!(go_duration(150_000_000), "150ms");
    }
}
