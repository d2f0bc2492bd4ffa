//! The kinds kube-sim serves: the built-in ones stagegate touches, plus the
//! resources of every established CustomResourceDefinition.

use std::collections::BTreeMap;

use serde_json::Value;

/// Objects are stored per `(group, plural)`; every served version of a group
/// reads and writes the same objects (no conversion is simulated).
pub type ResKey = (String, String);

/// One of a CRD's `additionalPrinterColumns`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrinterColumn {
    pub name: String,
    /// `string`, `integer`, `number`, `boolean` or `date`.
    pub type_: String,
    pub format: String,
    pub description: String,
    /// Above 0: shown only with `-o wide`.
    pub priority: i64,
    pub json_path: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceType {
    pub group: String,
    /// Every version served; the first is the preferred (and storage) one.
    pub versions: Vec<String>,
    pub kind: String,
    pub list_kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub has_status: bool,
    pub has_log: bool,
    /// Serves `/scale` (autoscaling/v1 Scale on `spec.replicas`).
    pub has_scale: bool,
    /// A review resource: POST only, answered, never stored.
    pub create_only: bool,
    /// A CRD's `additionalPrinterColumns` (storage version).
    pub printer_columns: Vec<PrinterColumn>,
    pub from_crd: bool,
}

impl ResourceType {
    fn builtin(
        group: &str,
        version: &str,
        kind: &str,
        plural: &str,
        namespaced: bool,
        short: &[&str],
    ) -> Self {
        ResourceType {
            group: group.to_string(),
            versions: vec![version.to_string()],
            kind: kind.to_string(),
            list_kind: format!("{kind}List"),
            plural: plural.to_string(),
            singular: kind.to_lowercase(),
            namespaced,
            short_names: short.iter().map(|s| s.to_string()).collect(),
            categories: Vec::new(),
            has_status: false,
            has_log: false,
            has_scale: false,
            create_only: false,
            printer_columns: Vec::new(),
            from_crd: false,
        }
    }

    fn create_only(mut self) -> Self {
        self.create_only = true;
        self
    }

    fn scale(mut self) -> Self {
        self.has_scale = true;
        self
    }

    fn status(mut self) -> Self {
        self.has_status = true;
        self
    }

    fn all(mut self) -> Self {
        self.categories.push("all".to_string());
        self
    }

    pub fn key(&self) -> ResKey {
        (self.group.clone(), self.plural.clone())
    }

    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{version}", self.group)
        }
    }

    pub fn preferred_version(&self) -> &str {
        self.versions.first().map(String::as_str).unwrap_or("v1")
    }

    /// `jobs.batch`, as messages name a resource.
    pub fn qualified(&self) -> String {
        crate::status::qualified(&self.group, &self.plural)
    }

    pub fn is(&self, group: &str, plural: &str) -> bool {
        self.group == group && self.plural == plural
    }

    pub fn verbs(&self) -> Vec<&'static str> {
        if self.create_only {
            return vec!["create"];
        }
        let mut v = vec!["create", "delete"];
        if !self.is("", "namespaces") {
            v.push("deletecollection");
        }
        v.extend(["get", "list", "patch", "update", "watch"]);
        v
    }
}

/// All kinds currently served. Built-ins never change; CRD kinds come and go.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    types: BTreeMap<ResKey, ResourceType>,
}

impl Registry {
    pub fn with_builtins() -> Self {
        let mut r = Registry::default();
        let b = ResourceType::builtin;
        for t in [
            b("", "v1", "Namespace", "namespaces", false, &["ns"]).status(),
            b("", "v1", "ConfigMap", "configmaps", true, &["cm"]),
            b("", "v1", "Secret", "secrets", true, &[]),
            b("", "v1", "Service", "services", true, &["svc"])
                .status()
                .all(),
            b("", "v1", "ServiceAccount", "serviceaccounts", true, &["sa"]),
            {
                let mut p = b("", "v1", "Pod", "pods", true, &["po"]).status().all();
                p.has_log = true;
                p
            },
            b("", "v1", "Event", "events", true, &["ev"]),
            b("", "v1", "Node", "nodes", false, &["no"]).status(),
            b(
                "authorization.k8s.io",
                "v1",
                "SelfSubjectAccessReview",
                "selfsubjectaccessreviews",
                false,
                &[],
            )
            .create_only(),
            b(
                "authorization.k8s.io",
                "v1",
                "SubjectAccessReview",
                "subjectaccessreviews",
                false,
                &[],
            )
            .create_only(),
            b(
                "authorization.k8s.io",
                "v1",
                "LocalSubjectAccessReview",
                "localsubjectaccessreviews",
                true,
                &[],
            )
            .create_only(),
            b(
                "authorization.k8s.io",
                "v1",
                "SelfSubjectRulesReview",
                "selfsubjectrulesreviews",
                false,
                &[],
            )
            .create_only(),
            b(
                "authentication.k8s.io",
                "v1",
                "SelfSubjectReview",
                "selfsubjectreviews",
                false,
                &[],
            )
            .create_only(),
            b("apps", "v1", "Deployment", "deployments", true, &["deploy"])
                .status()
                .scale()
                .all(),
            b("apps", "v1", "StatefulSet", "statefulsets", true, &["sts"])
                .status()
                .scale()
                .all(),
            b("apps", "v1", "DaemonSet", "daemonsets", true, &["ds"])
                .status()
                .all(),
            b("apps", "v1", "ReplicaSet", "replicasets", true, &["rs"])
                .status()
                .scale()
                .all(),
            b("batch", "v1", "Job", "jobs", true, &[]).status().all(),
            b("batch", "v1", "CronJob", "cronjobs", true, &["cj"])
                .status()
                .all(),
            b(
                "rbac.authorization.k8s.io",
                "v1",
                "Role",
                "roles",
                true,
                &[],
            ),
            b(
                "rbac.authorization.k8s.io",
                "v1",
                "RoleBinding",
                "rolebindings",
                true,
                &[],
            ),
            b(
                "rbac.authorization.k8s.io",
                "v1",
                "ClusterRole",
                "clusterroles",
                false,
                &[],
            ),
            b(
                "rbac.authorization.k8s.io",
                "v1",
                "ClusterRoleBinding",
                "clusterrolebindings",
                false,
                &[],
            ),
            b("coordination.k8s.io", "v1", "Lease", "leases", true, &[]),
            b("events.k8s.io", "v1", "Event", "events", true, &["ev"]),
            b(
                "apiextensions.k8s.io",
                "v1",
                "CustomResourceDefinition",
                "customresourcedefinitions",
                false,
                &["crd", "crds"],
            )
            .status(),
        ] {
            r.types.insert(t.key(), t);
        }
        r
    }

    pub fn get(&self, group: &str, plural: &str) -> Option<&ResourceType> {
        self.types.get(&(group.to_string(), plural.to_string()))
    }

    /// The type served at `group/version/plural`, if that version is served.
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        self.get(group, plural)
            .filter(|t| t.versions.iter().any(|v| v == version))
    }

    pub fn iter(&self) -> impl Iterator<Item = &ResourceType> {
        self.types.values()
    }

    pub fn insert(&mut self, t: ResourceType) {
        self.types.insert(t.key(), t);
    }

    pub fn remove(&mut self, key: &ResKey) -> Option<ResourceType> {
        self.types.remove(key)
    }

    /// Groups in discovery order: core first, then the rest sorted by name.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for t in self.types.values() {
            let e = out.entry(t.group.clone()).or_default();
            for v in &t.versions {
                if !e.contains(v) {
                    e.push(v.clone());
                }
            }
        }
        out.into_iter().collect()
    }

    /// Whether `group/version` is served at all (for the 404 of unknown paths).
    pub fn serves_group_version(&self, group: &str, version: &str) -> bool {
        self.types
            .values()
            .any(|t| t.group == group && t.versions.iter().any(|v| v == version))
    }
}

/// The resource type a CRD object declares, if it is well-formed enough.
pub fn type_from_crd(crd: &Value) -> Option<ResourceType> {
    let spec = crd.get("spec")?;
    let group = spec.get("group")?.as_str()?.to_string();
    let names = spec.get("names")?;
    let plural = names.get("plural")?.as_str()?.to_string();
    let kind = names.get("kind")?.as_str()?.to_string();
    let singular = names
        .get("singular")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| kind.to_lowercase());
    let list_kind = names
        .get("listKind")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| format!("{kind}List"));
    let strings = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut versions: Vec<(bool, String, bool)> = Vec::new();
    for v in spec.get("versions")?.as_array()? {
        let served = v.get("served").and_then(Value::as_bool).unwrap_or(true);
        if !served {
            continue;
        }
        let storage = v.get("storage").and_then(Value::as_bool).unwrap_or(false);
        let status = v.pointer("/subresources/status").is_some();
        versions.push((storage, v.get("name")?.as_str()?.to_string(), status));
    }
    if versions.is_empty() {
        return None;
    }
    // Storage version first: it is the preferred one in discovery.
    versions.sort_by_key(|(storage, _, _)| !*storage);
    let has_status = versions.iter().any(|(_, _, s)| *s);
    let storage_name = versions
        .first()
        .map(|(_, n, _)| n.clone())
        .unwrap_or_default();
    let printer_columns = spec
        .get("versions")
        .and_then(Value::as_array)
        .and_then(|vs| {
            vs.iter()
                .find(|v| v.get("name").and_then(Value::as_str) == Some(storage_name.as_str()))
        })
        .and_then(|v| v.get("additionalPrinterColumns"))
        .and_then(Value::as_array)
        .map(|cols| {
            cols.iter()
                .filter_map(|c| {
                    let text = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                    Some(PrinterColumn {
                        name: c.get("name")?.as_str()?.to_string(),
                        type_: c
                            .get("type")
                            .and_then(Value::as_str)
                            .unwrap_or("string")
                            .to_string(),
                        format: text("format"),
                        description: text("description"),
                        priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                        json_path: c.get("jsonPath")?.as_str()?.to_string(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Some(ResourceType {
        group,
        versions: versions.into_iter().map(|(_, n, _)| n).collect(),
        kind,
        list_kind,
        plural,
        singular,
        namespaced: spec.get("scope").and_then(Value::as_str) != Some("Cluster"),
        short_names: strings(names.get("shortNames")),
        categories: strings(names.get("categories")),
        has_status,
        has_log: false,
        has_scale: false,
        create_only: false,
        printer_columns,
        from_crd: true,
    })
}
