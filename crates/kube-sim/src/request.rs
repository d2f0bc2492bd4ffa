//! Parsing a request: which resource the path names, and the query options.

use std::collections::HashMap;

use crate::stats::Verb;

/// What a path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Version,
    Api,
    Apis,
    Group(String),
    GroupVersion(String, String),
    OpenApiV2,
    OpenApiV3Root,
    OpenApiV3(String, String),
    Health,
    Resource(ResourcePath),
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePath {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// Splits the path; `is_namespaced_plural` resolves `/api/v1/namespaces/x/y`
/// (a namespaced list of `y`, or the `y` subresource of namespace `x`).
pub fn parse_route(path: &str, is_namespaced_plural: impl Fn(&str, &str, &str) -> bool) -> Route {
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(crate::util::percent_decode)
        .collect();
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let (group, version, rest): (&str, &str, &[&str]) = match s.as_slice() {
        ["version"] => return Route::Version,
        ["healthz" | "readyz" | "livez", ..] => return Route::Health,
        ["api"] => return Route::Api,
        ["apis"] => return Route::Apis,
        ["apis", g] => return Route::Group(g.to_string()),
        ["openapi", "v2"] => return Route::OpenApiV2,
        ["openapi", "v3"] => return Route::OpenApiV3Root,
        ["openapi", "v3", "api", v] => return Route::OpenApiV3(String::new(), v.to_string()),
        ["openapi", "v3", "apis", g, v] => return Route::OpenApiV3(g.to_string(), v.to_string()),
        ["api", v] => return Route::GroupVersion(String::new(), v.to_string()),
        ["apis", g, v] => return Route::GroupVersion(g.to_string(), v.to_string()),
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Route::Unknown,
    };
    let mk = |ns: Option<&str>, plural: &str, name: Option<&str>, sub: Option<&str>| {
        Route::Resource(ResourcePath {
            group: group.to_string(),
            version: version.to_string(),
            plural: plural.to_string(),
            namespace: ns.map(str::to_string),
            name: name.map(str::to_string),
            subresource: sub.map(str::to_string),
        })
    };
    match rest {
        ["namespaces", ns, plural, tail @ ..] if is_namespaced_plural(group, version, plural) => {
            match tail {
                [] => mk(Some(ns), plural, None, None),
                [name] => mk(Some(ns), plural, Some(name), None),
                [name, sub] => mk(Some(ns), plural, Some(name), Some(sub)),
                _ => Route::Unknown,
            }
        }
        [plural] => mk(None, plural, None, None),
        [plural, name] => mk(None, plural, Some(name), None),
        [plural, name, sub] => mk(None, plural, Some(name), Some(sub)),
        _ => Route::Unknown,
    }
}

/// Query parameters, tolerating kube's `?&` prefix and repeated keys (last wins).
#[derive(Debug, Clone, Default)]
pub struct Query(HashMap<String, String>);

impl Query {
    pub fn parse(q: Option<&str>) -> Self {
        let mut m = HashMap::new();
        for pair in q.unwrap_or("").split('&') {
            if pair.is_empty() {
                continue;
            }
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            m.insert(
                crate::util::percent_decode(k),
                crate::util::percent_decode(v),
            );
        }
        Query(m)
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }

    pub fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true") | Some("1"))
    }

    pub fn nonempty(&self, k: &str) -> Option<&str> {
        self.get(k).filter(|s| !s.is_empty())
    }
}

/// The verb a request is counted and matched under.
pub fn verb_of(method: &str, route: &Route, query: &Query) -> Verb {
    let (named, is_resource) = match route {
        Route::Resource(r) => (r.name.is_some(), true),
        _ => (true, false),
    };
    match method {
        "POST" => Verb::Create,
        "PUT" => Verb::Update,
        "PATCH" => Verb::Patch,
        "DELETE" => Verb::Delete,
        _ if !is_resource || named => Verb::Get,
        _ if query.flag("watch") => Verb::Watch,
        _ => Verb::List,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_to_resources() {
        let ns = |_: &str, _: &str, p: &str| p != "status" && p != "finalize";
        let r = parse_route("/apis/batch/v1/namespaces/a/jobs/pi/status", ns);
        let Route::Resource(r) = r else { panic!() };
        assert_eq!((r.group.as_str(), r.plural.as_str()), ("batch", "jobs"));
        assert_eq!(r.namespace.as_deref(), Some("a"));
        assert_eq!(r.subresource.as_deref(), Some("status"));
        let Route::Resource(r) = parse_route("/api/v1/namespaces/a", ns) else {
            panic!()
        };
        assert_eq!(
            (r.plural.as_str(), r.name.as_deref()),
            ("namespaces", Some("a"))
        );
        let Route::Resource(r) = parse_route("/api/v1/namespaces/a/status", ns) else {
            panic!()
        };
        assert_eq!(r.subresource.as_deref(), Some("status"));
    }

    #[test]
    fn query_tolerates_leading_ampersand() {
        let q = Query::parse(Some("&labelSelector=app%3Dweb%2Ctier+in+%28a%29&watch=1"));
        assert_eq!(q.get("labelSelector"), Some("app=web,tier in (a)"));
        assert!(q.flag("watch"));
    }
}
