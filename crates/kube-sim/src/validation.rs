//! Defaults the real API server sets and the validation it does for the kinds
//! stagegate touches (Job template immutability above all).

use serde_json::{Value, json};

use crate::resources::ResourceType;
use crate::status::{ApiError, FieldError};
use crate::util::{ensure_map, go_label_selector, name_of, uid_of};

/// Defaults applied on create (and, where the real server does so, on update).
pub fn apply_defaults(
    rt: &ResourceType,
    obj: &mut Value,
    old: Option<&Value>,
    cluster_ip: impl FnOnce() -> String,
) {
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("batch", "jobs") => default_job(obj, old),
        ("apps", "deployments") => {
            let spec = ensure_map(obj, &["spec"]);
            spec.entry("replicas").or_insert(json!(1));
            spec.entry("revisionHistoryLimit").or_insert(json!(10));
            spec.entry("progressDeadlineSeconds").or_insert(json!(600));
            let strategy = spec
                .entry("strategy")
                .or_insert_with(|| json!({"type": "RollingUpdate"}));
            if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate")
                && strategy.get("rollingUpdate").is_none()
            {
                strategy["rollingUpdate"] = json!({"maxUnavailable": "25%", "maxSurge": "25%"});
            }
            default_pod_spec(obj.pointer_mut("/spec/template/spec"));
        }
        ("apps", "statefulsets") => {
            let spec = ensure_map(obj, &["spec"]);
            spec.entry("replicas").or_insert(json!(1));
            spec.entry("podManagementPolicy")
                .or_insert(json!("OrderedReady"));
            spec.entry("revisionHistoryLimit").or_insert(json!(10));
            spec.entry("updateStrategy")
                .or_insert(json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}));
            default_pod_spec(obj.pointer_mut("/spec/template/spec"));
        }
        ("apps", "daemonsets") => {
            let spec = ensure_map(obj, &["spec"]);
            spec.entry("revisionHistoryLimit").or_insert(json!(10));
            spec.entry("updateStrategy").or_insert(json!({
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}
            }));
            default_pod_spec(obj.pointer_mut("/spec/template/spec"));
        }
        ("", "pods") => default_pod_spec(obj.get_mut("spec")),
        ("", "services") => {
            let old_ip = old.and_then(|o| o.pointer("/spec/clusterIP")).cloned();
            let spec = ensure_map(obj, &["spec"]);
            spec.entry("type").or_insert(json!("ClusterIP"));
            spec.entry("sessionAffinity").or_insert(json!("None"));
            if !spec.contains_key("clusterIP") {
                let ip = match old_ip {
                    Some(ip) => ip,
                    None => json!(cluster_ip()),
                };
                spec.insert("clusterIP".into(), ip.clone());
                spec.insert("clusterIPs".into(), json!([ip]));
            }
            if let Some(Value::Array(ports)) = spec.get_mut("ports") {
                for p in ports {
                    if let Value::Object(p) = p {
                        p.entry("protocol").or_insert(json!("TCP"));
                        if let Some(port) = p.get("port").cloned() {
                            p.entry("targetPort").or_insert(port);
                        }
                    }
                }
            }
        }
        ("", "namespaces") => {
            let name = name_of(obj).to_string();
            ensure_map(obj, &["metadata", "labels"])
                .insert("kubernetes.io/metadata.name".into(), json!(name));
            ensure_map(obj, &["spec"])
                .entry("finalizers")
                .or_insert(json!(["kubernetes"]));
            if obj.pointer("/metadata/deletionTimestamp").is_none() {
                obj["status"] = json!({"phase": "Active"});
            }
        }
        ("", "secrets") => {
            ensure_map(obj, &[])
                .entry("type")
                .or_insert(json!("Opaque"));
        }
        _ => {}
    }
}

fn default_pod_spec(spec: Option<&mut Value>) {
    let Some(Value::Object(spec)) = spec else {
        return;
    };
    spec.entry("restartPolicy").or_insert(json!("Always"));
    spec.entry("terminationGracePeriodSeconds")
        .or_insert(json!(30));
    spec.entry("dnsPolicy").or_insert(json!("ClusterFirst"));
    spec.entry("schedulerName")
        .or_insert(json!("default-scheduler"));
    spec.entry("securityContext").or_insert(json!({}));
    for list in ["containers", "initContainers"] {
        if let Some(Value::Array(cs)) = spec.get_mut(list) {
            for c in cs {
                let Value::Object(c) = c else { continue };
                let latest = c.get("image").and_then(Value::as_str).is_some_and(|i| {
                    !i.rsplit('/').next().unwrap_or(i).contains(':') || i.ends_with(":latest")
                });
                c.entry("imagePullPolicy").or_insert(json!(if latest {
                    "Always"
                } else {
                    "IfNotPresent"
                }));
                c.entry("terminationMessagePath")
                    .or_insert(json!("/dev/termination-log"));
                c.entry("terminationMessagePolicy").or_insert(json!("File"));
                c.entry("resources").or_insert(json!({}));
                if let Some(Value::Array(ports)) = c.get_mut("ports") {
                    for p in ports {
                        if let Value::Object(p) = p {
                            p.entry("protocol").or_insert(json!("TCP"));
                        }
                    }
                }
            }
        }
    }
}

/// The Job defaults the controller relies on: a generated selector on the
/// Job's uid, the matching template labels, and the count defaults.
fn default_job(obj: &mut Value, old: Option<&Value>) {
    let uid = uid_of(obj).to_string();
    let name = name_of(obj).to_string();
    let manual = obj
        .pointer("/spec/manualSelector")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let old_selector = old.and_then(|o| o.pointer("/spec/selector")).cloned();
    {
        let spec = ensure_map(obj, &["spec"]);
        let parallelism_set = spec.contains_key("parallelism");
        if !spec.contains_key("completions") && !parallelism_set {
            spec.insert("completions".into(), json!(1));
        }
        spec.entry("parallelism").or_insert(json!(1));
        spec.entry("backoffLimit").or_insert(json!(6));
        spec.entry("completionMode").or_insert(json!("NonIndexed"));
        spec.entry("suspend").or_insert(json!(false));
        spec.entry("manualSelector").or_insert(json!(false));
        spec.entry("podReplacementPolicy")
            .or_insert(json!("TerminatingOrFailed"));
        if !manual && !spec.contains_key("selector") {
            let sel = old_selector.unwrap_or_else(
                || json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}),
            );
            spec.insert("selector".into(), sel);
        }
    }
    if !manual {
        let labels = ensure_map(obj, &["spec", "template", "metadata", "labels"]);
        for (k, v) in [
            ("batch.kubernetes.io/controller-uid", &uid),
            ("batch.kubernetes.io/job-name", &name),
            ("controller-uid", &uid),
            ("job-name", &name),
        ] {
            labels.entry(k).or_insert(json!(v));
        }
    }
    default_pod_spec(obj.pointer_mut("/spec/template/spec"));
}

/// Validation of a whole object, for create and update.
// One arm per kind reads better than guards spread over the match.
#[allow(clippy::collapsible_match)]
pub fn validate(rt: &ResourceType, obj: &Value) -> Result<(), ApiError> {
    let name = name_of(obj);
    let mut errs = Vec::new();
    let namespace_like = rt.is("", "namespaces");
    if namespace_like {
        if !valid_label(name) {
            errs.push(FieldError::invalid(
                "metadata.name",
                format!("{name:?}"),
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
            ));
        }
    } else if rt.group == "rbac.authorization.k8s.io" {
        // RBAC objects are named as path segments (`system:discovery`).
        if let Some(why) = path_segment_problem(name) {
            errs.push(FieldError::invalid(
                "metadata.name",
                format!("{name:?}"),
                why,
            ));
        }
    } else if !crate::util::valid_dns_subdomain(name) && !rt.from_crd {
        errs.push(FieldError::invalid(
            "metadata.name",
            format!("{name:?}"),
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        ));
    }
    let annotations: usize = obj
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
                .sum()
        })
        .unwrap_or(0);
    if annotations > MAX_ANNOTATIONS {
        errs.push(FieldError::too_long(
            "metadata.annotations",
            MAX_ANNOTATIONS,
        ));
    }
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "configmaps") => {
            if data_size(obj, &["data"], &["binaryData"]) > MAX_DATA {
                errs.push(FieldError::too_long("[]", MAX_DATA));
            }
        }
        ("", "secrets") => {
            if data_size(obj, &["stringData"], &["data"]) > MAX_DATA {
                errs.push(FieldError::too_long("data", MAX_DATA));
            }
        }
        ("batch", "jobs") => {
            check_containers(obj, "/spec/template/spec", "spec.template.spec", &mut errs);
            let rp = obj
                .pointer("/spec/template/spec/restartPolicy")
                .and_then(Value::as_str)
                .unwrap_or("Always");
            if rp != "Never" && rp != "OnFailure" {
                errs.push(FieldError {
                    kind: crate::status::FieldErrorKind::Unsupported,
                    field: "spec.template.spec.restartPolicy".into(),
                    detail: "supported values: \"OnFailure\", \"Never\"".into(),
                    value: Some(format!("{rp:?}")),
                });
            }
            if obj.pointer("/spec/completionMode").and_then(Value::as_str) == Some("Indexed")
                && obj.pointer("/spec/completions").is_none_or(Value::is_null)
            {
                errs.push(FieldError::required(
                    "spec.completions",
                    "when completion mode is Indexed",
                ));
            }
            for f in ["backoffLimit", "completions", "parallelism"] {
                if obj
                    .pointer(&format!("/spec/{f}"))
                    .and_then(Value::as_i64)
                    .is_some_and(|v| v < 0)
                {
                    errs.push(FieldError::invalid(
                        format!("spec.{f}"),
                        obj.pointer(&format!("/spec/{f}"))
                            .map(|v| v.to_string())
                            .unwrap_or_default(),
                        "must be greater than or equal to 0",
                    ));
                }
            }
        }
        ("apps", "deployments")
        | ("apps", "statefulsets")
        | ("apps", "daemonsets")
        | ("apps", "replicasets") => {
            check_containers(obj, "/spec/template/spec", "spec.template.spec", &mut errs);
            check_replicas(obj, &mut errs);
            match obj.pointer("/spec/selector") {
                None => errs.push(FieldError::required("spec.selector", "")),
                Some(sel) => {
                    let selector = crate::selector::LabelSelector::from_object(sel);
                    let tmpl = json!({"metadata": {"labels": obj.pointer("/spec/template/metadata/labels").cloned().unwrap_or(json!({}))}});
                    if !selector.matches(&tmpl) {
                        errs.push(FieldError::invalid(
                            "spec.template.metadata.labels",
                            format!(
                                "map[string]string{{{}}}",
                                go_map(obj.pointer("/spec/template/metadata/labels"))
                            ),
                            "`selector` does not match template `labels`",
                        ));
                    }
                }
            }
        }
        ("", "pods") => check_containers(obj, "/spec", "spec", &mut errs),
        ("", "services") => {
            for (i, p) in obj
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                check_port(p.get("port"), &format!("spec.ports[{i}].port"), &mut errs);
            }
        }
        ("batch", "cronjobs") => {
            if obj
                .pointer("/spec/schedule")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                errs.push(FieldError::required("spec.schedule", ""));
            }
        }
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            let group = obj
                .pointer("/spec/group")
                .and_then(Value::as_str)
                .unwrap_or("");
            let plural = obj
                .pointer("/spec/names/plural")
                .and_then(Value::as_str)
                .unwrap_or("");
            if name != format!("{plural}.{group}") {
                errs.push(FieldError::invalid(
                    "metadata.name",
                    format!("{name:?}"),
                    "must be spec.names.plural+\".\"+spec.group",
                ));
            }
            if crate::resources::type_from_crd(obj).is_none() {
                errs.push(FieldError::required(
                    "spec.versions",
                    "must have exactly one version marked as storage version",
                ));
            }
        }
        _ => {}
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(rt, name, errs))
    }
}

/// The real `ValidatePathSegmentName`.
fn path_segment_problem(name: &str) -> Option<&'static str> {
    match name {
        "." => Some("may not be '.'"),
        ".." => Some("may not be '..'"),
        _ if name.contains('/') => Some("may not contain '/'"),
        _ if name.contains('%') => Some("may not contain '%'"),
        _ => None,
    }
}

/// Total size of all annotations (keys and values).
const MAX_ANNOTATIONS: usize = 256 * 1024;
/// ConfigMap and Secret payload limit.
const MAX_DATA: usize = 1024 * 1024;

/// Bytes of a ConfigMap's or Secret's payload: plain strings as they are,
/// base64 fields decoded.
fn data_size(obj: &Value, plain: &[&str], base64: &[&str]) -> usize {
    let sum = |fields: &[&str], f: fn(&str) -> usize| -> usize {
        fields
            .iter()
            .filter_map(|k| obj.get(*k).and_then(Value::as_object))
            .flat_map(|m| m.values())
            .filter_map(Value::as_str)
            .map(f)
            .sum()
    };
    sum(plain, str::len)
        + sum(base64, |s| {
            let padding = s.bytes().rev().take_while(|b| *b == b'=').count();
            (s.len() / 4 * 3).saturating_sub(padding)
        })
}

fn valid_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn go_map(v: Option<&Value>) -> String {
    let mut pairs: Vec<String> = v
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k:?}:{:?}", v.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    pairs.sort();
    pairs.join(", ")
}

fn check_containers(obj: &Value, pointer: &str, field: &str, errs: &mut Vec<FieldError>) {
    let containers = obj
        .pointer(&format!("{pointer}/containers"))
        .and_then(Value::as_array);
    match containers {
        None => errs.push(FieldError::required(format!("{field}.containers"), "")),
        Some(cs) if cs.is_empty() => {
            errs.push(FieldError::required(format!("{field}.containers"), ""))
        }
        Some(cs) => {
            for (i, c) in cs.iter().enumerate() {
                if c.get("name")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    errs.push(FieldError::required(
                        format!("{field}.containers[{i}].name"),
                        "",
                    ));
                }
                if c.get("image")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    errs.push(FieldError::required(
                        format!("{field}.containers[{i}].image"),
                        "",
                    ));
                }
                for (j, p) in c
                    .get("ports")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    check_port(
                        p.get("containerPort"),
                        &format!("{field}.containers[{i}].ports[{j}].containerPort"),
                        errs,
                    );
                }
            }
        }
    }
    check_volume_modes(obj, pointer, field, errs);
}

/// A port number: 1 to 65535.
fn check_port(v: Option<&Value>, field: &str, errs: &mut Vec<FieldError>) {
    if let Some(n) = v.and_then(Value::as_i64)
        && !(1..=65535).contains(&n)
    {
        errs.push(FieldError::invalid(
            field,
            n.to_string(),
            "must be between 1 and 65535, inclusive",
        ));
    }
}

/// File modes of secret, configMap, downwardAPI and projected volumes: 0 to 0777.
fn check_volume_modes(obj: &Value, pointer: &str, field: &str, errs: &mut Vec<FieldError>) {
    let volumes = obj
        .pointer(&format!("{pointer}/volumes"))
        .and_then(Value::as_array);
    for (i, v) in volumes.into_iter().flatten().enumerate() {
        for source in ["secret", "configMap", "downwardAPI", "projected"] {
            let Some(src) = v.get(source) else { continue };
            let mut modes = vec![(
                format!("{field}.volumes[{i}].{source}.defaultMode"),
                src.get("defaultMode"),
            )];
            for (j, item) in src
                .get("items")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                modes.push((
                    format!("{field}.volumes[{i}].{source}.items[{j}].mode"),
                    item.get("mode"),
                ));
            }
            for (f, m) in modes {
                if let Some(n) = m.and_then(Value::as_i64)
                    && !(0..=0o777).contains(&n)
                {
                    errs.push(FieldError::invalid(
                        f,
                        n.to_string(),
                        "must be a number between 0 and 0777 (octal), both inclusive",
                    ));
                }
            }
        }
    }
}

/// `spec.replicas` of a workload: not negative.
fn check_replicas(obj: &Value, errs: &mut Vec<FieldError>) {
    if let Some(n) = obj.pointer("/spec/replicas").and_then(Value::as_i64)
        && n < 0
    {
        errs.push(FieldError::invalid(
            "spec.replicas",
            n.to_string(),
            "must be greater than or equal to 0",
        ));
    }
}

/// An object being deleted may lose finalizers, never gain one: otherwise
/// its deletion could be put off for ever (the real server's rule).
fn finalizers_added_while_deleting(old: &Value, new: &Value) -> Option<FieldError> {
    old.pointer("/metadata/deletionTimestamp")?;
    let list = |v: &Value| -> Vec<String> {
        v.pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let before = list(old);
    let added: Vec<String> = list(new)
        .into_iter()
        .filter(|f| !before.contains(f))
        .collect();
    (!added.is_empty()).then(|| FieldError {
        kind: crate::status::FieldErrorKind::Forbidden,
        field: "metadata.finalizers".into(),
        detail: format!(
            "no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
            added
                .iter()
                .map(|f| format!("{f:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        value: None,
    })
}

/// Fields that may not change once set: the real messages for Job, Deployment,
/// StatefulSet, Service, and immutable ConfigMaps/Secrets.
#[allow(clippy::collapsible_match)]
pub fn validate_update(rt: &ResourceType, old: &Value, new: &Value) -> Result<(), ApiError> {
    let name = name_of(new);
    let mut errs = Vec::new();
    let changed = |p: &str| old.pointer(p) != new.pointer(p);
    if let Some(err) = finalizers_added_while_deleting(old, new) {
        errs.push(err);
    }
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("batch", "jobs") => {
            if changed("/spec/template") {
                errs.push(FieldError::immutable(
                    "spec.template",
                    "core.PodTemplateSpec{...}",
                ));
            }
            if changed("/spec/selector") {
                errs.push(FieldError::immutable(
                    "spec.selector",
                    go_label_selector(new.pointer("/spec/selector")),
                ));
            }
            let indexed =
                new.pointer("/spec/completionMode").and_then(Value::as_str) == Some("Indexed");
            if !indexed && changed("/spec/completions") {
                errs.push(FieldError::immutable(
                    "spec.completions",
                    new.pointer("/spec/completions")
                        .map(|v| v.to_string())
                        .unwrap_or("nil".into()),
                ));
            }
            if changed("/spec/completionMode") {
                errs.push(FieldError::immutable(
                    "spec.completionMode",
                    format!(
                        "{:?}",
                        new.pointer("/spec/completionMode")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                    ),
                ));
            }
        }
        ("apps", "deployments") | ("apps", "daemonsets") | ("apps", "replicasets") => {
            if changed("/spec/selector") {
                errs.push(FieldError::immutable(
                    "spec.selector",
                    go_label_selector(new.pointer("/spec/selector")),
                ));
            }
        }
        ("apps", "statefulsets") => {
            let mutable = [
                "replicas",
                "ordinals",
                "template",
                "updateStrategy",
                "persistentVolumeClaimRetentionPolicy",
                "minReadySeconds",
            ];
            let strip = |v: &Value| {
                let mut s = v.get("spec").cloned().unwrap_or(json!({}));
                if let Value::Object(m) = &mut s {
                    m.retain(|k, _| !mutable.contains(&k.as_str()));
                }
                s
            };
            if strip(old) != strip(new) {
                errs.push(FieldError {
                    kind: crate::status::FieldErrorKind::Forbidden,
                    field: "spec".into(),
                    detail: "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden".into(),
                    value: None,
                });
            }
        }
        ("", "services") => {
            let old_ip = old
                .pointer("/spec/clusterIP")
                .and_then(Value::as_str)
                .unwrap_or("");
            let new_ip = new
                .pointer("/spec/clusterIP")
                .and_then(Value::as_str)
                .unwrap_or("");
            if !old_ip.is_empty() && old_ip != new_ip {
                errs.push(FieldError::immutable(
                    "spec.clusterIP",
                    format!("{new_ip:?}"),
                ));
            }
        }
        ("", "configmaps") | ("", "secrets") => {
            if old.get("immutable").and_then(Value::as_bool) == Some(true) {
                for f in ["data", "binaryData", "stringData"] {
                    if old.get(f) != new.get(f) {
                        errs.push(FieldError {
                            kind: crate::status::FieldErrorKind::Forbidden,
                            field: f.into(),
                            detail: "field is immutable when `immutable` is set".into(),
                            value: None,
                        });
                    }
                }
            }
        }
        _ => {}
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(rt, name, errs))
    }
}
