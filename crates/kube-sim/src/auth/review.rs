//! The review resources: access reviews answered by the RBAC authorizer
//! (`kubectl auth can-i`, with `--as` through impersonation), rules reviews
//! (`kubectl auth can-i --list`) and `kubectl auth whoami`. Answered, never
//! stored.

use serde_json::{Value, json};

use super::{Attributes, UserInfo};
use crate::request::ResourcePath;
use crate::status::{ApiError, ApiResult};
use crate::store::Store;

/// The review kinds and where each is served.
pub fn is_review(rp: &ResourcePath) -> bool {
    matches!(
        (rp.group.as_str(), rp.plural.as_str()),
        (
            "authorization.k8s.io",
            "selfsubjectaccessreviews"
                | "subjectaccessreviews"
                | "localsubjectaccessreviews"
                | "selfsubjectrulesreviews"
        ) | ("authentication.k8s.io", "selfsubjectreviews")
    )
}

fn str_of<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// A review's spec as authorization attributes.
fn attributes_of(spec: &Value) -> ApiResult<Attributes> {
    if let Some(r) = spec.get("resourceAttributes") {
        return Ok(Attributes {
            verb: str_of(r, "/verb").into(),
            resource_request: true,
            group: str_of(r, "/group").into(),
            resource: str_of(r, "/resource").into(),
            subresource: str_of(r, "/subresource").into(),
            namespace: str_of(r, "/namespace").into(),
            name: str_of(r, "/name").into(),
            path: String::new(),
        });
    }
    if let Some(n) = spec.get("nonResourceAttributes") {
        return Ok(Attributes {
            verb: str_of(n, "/verb").into(),
            path: str_of(n, "/path").into(),
            ..Attributes::default()
        });
    }
    Err(ApiError::new(
        422,
        "Invalid",
        "spec.resourceAttributes: Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes must be specified",
    ))
}

fn access_status(store: &Store, user: &UserInfo, spec: &Value) -> ApiResult<Value> {
    let attrs = attributes_of(spec)?;
    let d = super::decide(store, user, &attrs);
    let mut status = json!({"allowed": d.allowed});
    if !d.reason.is_empty() {
        status["reason"] = json!(d.reason);
    }
    Ok(status)
}

/// The user a SubjectAccessReview asks about.
fn subject_of(spec: &Value) -> UserInfo {
    let groups: Vec<String> = spec
        .get("groups")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    UserInfo {
        name: str_of(spec, "/user").into(),
        groups,
        uid: str_of(spec, "/uid").into(),
    }
}

/// Every rule that applies to `user` in `namespace`, split as a
/// SelfSubjectRulesReview reports them.
fn rules_status(store: &Store, user: &UserInfo, namespace: &str) -> Value {
    let mut resource_rules = Vec::new();
    let mut non_resource_rules = Vec::new();
    for rule in super::rbac::rules_for(store, user, namespace) {
        if rule.get("nonResourceURLs").is_some() {
            non_resource_rules.push(json!({
                "verbs": rule.get("verbs").cloned().unwrap_or(json!([])),
                "nonResourceURLs": rule.get("nonResourceURLs").cloned().unwrap_or(json!([])),
            }));
        } else {
            let mut r = json!({
                "verbs": rule.get("verbs").cloned().unwrap_or(json!([])),
                "apiGroups": rule.get("apiGroups").cloned().unwrap_or(json!([])),
                "resources": rule.get("resources").cloned().unwrap_or(json!([])),
            });
            if let Some(n) = rule.get("resourceNames") {
                r["resourceNames"] = n.clone();
            }
            resource_rules.push(r);
        }
    }
    json!({
        "resourceRules": resource_rules,
        "nonResourceRules": non_resource_rules,
        "incomplete": false,
    })
}

/// Answers a POST of a review as `user` (after impersonation).
pub fn answer(store: &Store, user: &UserInfo, rp: &ResourcePath, body: &Value) -> ApiResult<Value> {
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request was not a JSON object",
        ));
    }
    let mut review = body.clone();
    let spec = review.get("spec").cloned().unwrap_or(json!({}));
    let status = match rp.plural.as_str() {
        "selfsubjectaccessreviews" => access_status(store, user, &spec)?,
        "subjectaccessreviews" => access_status(store, &subject_of(&spec), &spec)?,
        "localsubjectaccessreviews" => {
            let ns = rp.namespace.clone().unwrap_or_default();
            let asked = str_of(&spec, "/resourceAttributes/namespace");
            if asked != ns {
                return Err(ApiError::bad_request(format!(
                    "spec.resourceAttributes.namespace must match namespace: {ns}"
                )));
            }
            access_status(store, &subject_of(&spec), &spec)?
        }
        "selfsubjectrulesreviews" => rules_status(store, user, str_of(&spec, "/namespace")),
        "selfsubjectreviews" => {
            let mut info = json!({"username": user.name, "groups": user.groups});
            if !user.uid.is_empty() {
                info["uid"] = json!(user.uid);
            }
            json!({"userInfo": info})
        }
        _ => return Err(ApiError::path_not_found()),
    };
    review["status"] = status;
    let meta = crate::util::ensure_map(&mut review, &["metadata"]);
    meta.entry("creationTimestamp").or_insert(Value::Null);
    Ok(review)
}
