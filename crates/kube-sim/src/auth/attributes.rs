//! The authorization attributes of a request, as the real server's
//! `RequestInfoFactory` derives them from the method, path and query.

use crate::request::{Query, Route};

/// What RBAC is asked about.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Attributes {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `deletecollection`, `impersonate`… for resources; the lowercase HTTP
    /// method for non-resource paths.
    pub verb: String,
    pub resource_request: bool,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    /// The URL path of a non-resource request.
    pub path: String,
}

impl Attributes {
    pub fn of_request(method: &str, path: &str, route: &Route, query: &Query) -> Attributes {
        let Route::Resource(rp) = route else {
            return Attributes {
                verb: match method {
                    "HEAD" => "get".into(),
                    m => m.to_ascii_lowercase(),
                },
                path: path.to_string(),
                ..Attributes::default()
            };
        };
        let named = rp.name.is_some();
        let verb = match method {
            "POST" => "create",
            "PUT" => "update",
            "PATCH" => "patch",
            "DELETE" if named => "delete",
            "DELETE" => "deletecollection",
            _ if named => "get",
            _ if query.flag("watch") => "watch",
            _ => "list",
        };
        let mut name = rp.name.clone().unwrap_or_default();
        // A list or watch of one object by field selector is authorized as a
        // request for that name (since Kubernetes 1.x, as kubectl's
        // `get NAME -w` sends it).
        if (verb == "list" || verb == "watch") && name.is_empty() {
            name = query
                .get("fieldSelector")
                .and_then(|s| {
                    s.split(',').find_map(|term| {
                        term.strip_prefix("metadata.name==")
                            .or_else(|| term.strip_prefix("metadata.name="))
                    })
                })
                .unwrap_or("")
                .to_string();
        }
        let mut namespace = rp.namespace.clone().unwrap_or_default();
        // A Namespace is authorized as a request inside itself.
        if rp.group.is_empty() && rp.plural == "namespaces" && !name.is_empty() && rp.name.is_some()
        {
            namespace = name.clone();
        }
        Attributes {
            verb: verb.into(),
            resource_request: true,
            group: rp.group.clone(),
            resource: rp.plural.clone(),
            subresource: rp.subresource.clone().unwrap_or_default(),
            namespace,
            name,
            path: path.to_string(),
        }
    }

    /// The check the impersonation filter makes for one impersonated value.
    pub fn impersonate(resource: &str, namespace: &str, name: &str) -> Attributes {
        Attributes {
            verb: "impersonate".into(),
            resource_request: true,
            group: String::new(),
            resource: resource.into(),
            subresource: String::new(),
            namespace: namespace.into(),
            name: name.into(),
            path: String::new(),
        }
    }

    /// `pods/log`, as rules and messages name a subresource.
    pub fn combined_resource(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::parse_route;

    fn attrs(method: &str, path: &str, query: &str) -> Attributes {
        let route = parse_route(path, |_, _, p| p != "status" && p != "log");
        Attributes::of_request(method, path, &route, &Query::parse(Some(query)))
    }

    #[test]
    fn verbs_follow_method_name_and_query() {
        assert_eq!(attrs("GET", "/api/v1/namespaces/a/pods", "").verb, "list");
        assert_eq!(
            attrs("GET", "/api/v1/namespaces/a/pods", "watch=1").verb,
            "watch"
        );
        assert_eq!(attrs("GET", "/api/v1/namespaces/a/pods/p", "").verb, "get");
        assert_eq!(
            attrs("DELETE", "/api/v1/namespaces/a/pods", "").verb,
            "deletecollection"
        );
        let log = attrs("GET", "/api/v1/namespaces/a/pods/p/log", "");
        assert_eq!(log.combined_resource(), "pods/log");
        let ns = attrs("GET", "/api/v1/namespaces/shop", "");
        assert_eq!((ns.namespace.as_str(), ns.name.as_str()), ("shop", "shop"));
        let by_name = attrs(
            "GET",
            "/api/v1/namespaces/a/pods",
            "watch=1&fieldSelector=metadata.name%3Dp",
        );
        assert_eq!(by_name.name, "p");
        let path = attrs("GET", "/version", "");
        assert!(!path.resource_request);
        assert_eq!(
            (path.verb.as_str(), path.path.as_str()),
            ("get", "/version")
        );
    }
}
