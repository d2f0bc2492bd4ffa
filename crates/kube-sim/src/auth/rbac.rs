//! The RBAC authorizer: ClusterRoleBindings, then the RoleBindings of the
//! request's namespace; the first rule that covers the request allows it.
//! Messages (allow reasons, the 403, missing roles) are the real authorizer's.

use serde_json::Value;

use super::{Attributes, UserInfo};
use crate::selector::LabelSelector;
use crate::status::ApiError;
use crate::store::Store;

const GROUP: &str = "rbac.authorization.k8s.io";

/// The authorizer's answer; `reason` is what a SubjectAccessReview reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub reason: String,
}

fn key(plural: &str) -> (String, String) {
    (GROUP.to_string(), plural.to_string())
}

fn strings(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Whether a binding's subject is this user; `binding_ns` is the namespace
/// of a RoleBinding (a ServiceAccount subject without one lives there).
fn applies(subject: &Value, user: &UserInfo, binding_ns: &str) -> bool {
    let name = subject.get("name").and_then(Value::as_str).unwrap_or("");
    match subject.get("kind").and_then(Value::as_str) {
        Some("User") => name == user.name,
        Some("Group") => user.groups.iter().any(|g| g == name),
        Some("ServiceAccount") => {
            let ns = subject
                .get("namespace")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .unwrap_or(binding_ns);
            !ns.is_empty() && user.name == format!("system:serviceaccount:{ns}:{name}")
        }
        _ => false,
    }
}

fn describe_subject(subject: &Value, binding_ns: &str) -> String {
    let kind = subject.get("kind").and_then(Value::as_str).unwrap_or("");
    let name = subject.get("name").and_then(Value::as_str).unwrap_or("");
    if kind == "ServiceAccount" {
        let ns = subject
            .get("namespace")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or(binding_ns);
        format!("{kind} {:?}", format!("{name}/{ns}"))
    } else {
        format!("{kind} {name:?}")
    }
}

/// The rules of a ClusterRole, an aggregated one's being those of the
/// ClusterRoles its selectors match (as the aggregation controller writes them).
fn cluster_role_rules(store: &Store, role: &Value, depth: usize) -> Vec<Value> {
    let Some(selectors) = role
        .pointer("/aggregationRule/clusterRoleSelectors")
        .and_then(Value::as_array)
    else {
        return role
            .get("rules")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
    };
    if depth > 8 {
        return Vec::new();
    }
    let own = crate::util::name_of(role);
    let selectors: Vec<LabelSelector> = selectors.iter().map(LabelSelector::from_object).collect();
    let mut rules = Vec::new();
    for other in store.list(&key("clusterroles"), None) {
        if crate::util::name_of(&other) == own {
            continue;
        }
        if selectors.iter().any(|s| !s.is_empty() && s.matches(&other)) {
            rules.extend(cluster_role_rules(store, &other, depth + 1));
        }
    }
    rules
}

fn resource_matches(rule: &Value, a: &Attributes) -> bool {
    let combined = a.combined_resource();
    strings(rule.get("resources")).into_iter().any(|r| {
        r == "*"
            || r == combined
            || (!a.subresource.is_empty() && r.strip_prefix("*/") == Some(a.subresource.as_str()))
    })
}

/// Whether one PolicyRule covers the request.
pub fn rule_allows(rule: &Value, a: &Attributes) -> bool {
    let verbs = strings(rule.get("verbs"));
    if !verbs.iter().any(|v| *v == "*" || *v == a.verb) {
        return false;
    }
    if !a.resource_request {
        return strings(rule.get("nonResourceURLs")).into_iter().any(|u| {
            u == "*"
                || u == a.path
                || u.strip_suffix('*')
                    .is_some_and(|prefix| a.path.starts_with(prefix))
        });
    }
    let groups = strings(rule.get("apiGroups"));
    if !groups.iter().any(|g| *g == "*" || *g == a.group) {
        return false;
    }
    if !resource_matches(rule, a) {
        return false;
    }
    let names = strings(rule.get("resourceNames"));
    names.is_empty() || (!a.name.is_empty() && names.contains(&a.name.as_str()))
}

/// The rules a binding's roleRef grants, or the real "not found" error.
fn role_rules(store: &Store, binding: &Value, binding_ns: &str) -> Result<Vec<Value>, String> {
    let kind = binding
        .pointer("/roleRef/kind")
        .and_then(Value::as_str)
        .unwrap_or("");
    let name = binding
        .pointer("/roleRef/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    match kind {
        "ClusterRole" => store
            .get(&key("clusterroles"), "", name)
            .map(|r| cluster_role_rules(store, &r, 0))
            .ok_or_else(|| format!("clusterrole.{GROUP} {name:?} not found")),
        "Role" => store
            .get(&key("roles"), binding_ns, name)
            .map(|r| {
                r.get("rules")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            })
            .ok_or_else(|| format!("role.{GROUP} {name:?} not found")),
        other => Err(format!("unsupported role reference kind: {other:?}")),
    }
}

/// Decides a request as the RBAC authorizer does.
pub fn authorize(store: &Store, user: &UserInfo, a: &Attributes) -> Decision {
    let mut errors = Vec::new();
    let mut scopes: Vec<(&str, Vec<std::sync::Arc<Value>>)> =
        vec![("", store.list(&key("clusterrolebindings"), None))];
    if a.resource_request && !a.namespace.is_empty() {
        scopes.push((
            a.namespace.as_str(),
            store.list(&key("rolebindings"), Some(&a.namespace)),
        ));
    }
    for (ns, bindings) in scopes {
        for binding in bindings {
            let Some(subject) = binding
                .get("subjects")
                .and_then(Value::as_array)
                .and_then(|subs| subs.iter().find(|s| applies(s, user, ns)))
            else {
                continue;
            };
            let rules = match role_rules(store, &binding, ns) {
                Ok(r) => r,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            if rules.iter().any(|r| rule_allows(r, a)) {
                let name = crate::util::name_of(&binding);
                let role = format!(
                    "{} {:?}",
                    binding
                        .pointer("/roleRef/kind")
                        .and_then(Value::as_str)
                        .unwrap_or(""),
                    binding
                        .pointer("/roleRef/name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                );
                let source = if ns.is_empty() {
                    format!("ClusterRoleBinding {name:?}")
                } else {
                    format!("RoleBinding {:?}", format!("{name}/{ns}"))
                };
                return Decision {
                    allowed: true,
                    reason: format!(
                        "RBAC: allowed by {source} of {role} to {}",
                        describe_subject(subject, ns)
                    ),
                };
            }
        }
    }
    let reason = match errors.len() {
        0 => String::new(),
        1 => format!("RBAC: {}", errors[0]),
        _ => format!("RBAC: [{}]", errors.join(", ")),
    };
    Decision {
        allowed: false,
        reason,
    }
}

/// The 403 the real server answers a denied request with:
/// `deployments.apps "web" is forbidden: User "u" cannot get resource
/// "deployments" in API group "apps" in the namespace "shop"`.
pub fn forbidden(user: &UserInfo, a: &Attributes, reason: &str) -> ApiError {
    let mut why = if !a.resource_request {
        format!("User {:?} cannot {} path {:?}", user.name, a.verb, a.path)
    } else if !a.namespace.is_empty() {
        format!(
            "User {:?} cannot {} resource {:?} in API group {:?} in the namespace {:?}",
            user.name,
            a.verb,
            a.combined_resource(),
            a.group,
            a.namespace
        )
    } else {
        format!(
            "User {:?} cannot {} resource {:?} in API group {:?} at the cluster scope",
            user.name,
            a.verb,
            a.combined_resource(),
            a.group
        )
    };
    if !reason.is_empty() {
        why = format!("{why}: {reason}");
    }
    let message = if !a.resource_request || a.resource.is_empty() {
        format!("forbidden: {why}")
    } else if a.name.is_empty() {
        format!(
            "{} is forbidden: {why}",
            crate::status::qualified(&a.group, &a.resource)
        )
    } else {
        format!(
            "{} {:?} is forbidden: {why}",
            crate::status::qualified(&a.group, &a.resource),
            a.name
        )
    };
    let mut details = serde_json::json!({"kind": a.resource});
    if !a.name.is_empty() {
        details["name"] = serde_json::json!(a.name);
    }
    if !a.group.is_empty() {
        details["group"] = serde_json::json!(a.group);
    }
    ApiError::new(403, "Forbidden", message).with_details(details)
}

/// Every rule granted to `user` cluster-wide and in `namespace` (missing
/// roles skipped), for a SelfSubjectRulesReview.
pub fn rules_for(store: &Store, user: &UserInfo, namespace: &str) -> Vec<Value> {
    let mut scopes = vec![("", store.list(&key("clusterrolebindings"), None))];
    if !namespace.is_empty() {
        scopes.push((namespace, store.list(&key("rolebindings"), Some(namespace))));
    }
    let mut rules = Vec::new();
    for (ns, bindings) in scopes {
        for binding in bindings {
            let bound = binding
                .get("subjects")
                .and_then(Value::as_array)
                .is_some_and(|subs| subs.iter().any(|s| applies(s, user, ns)));
            if bound && let Ok(r) = role_rules(store, &binding, ns) {
                rules.extend(r);
            }
        }
    }
    rules
}
