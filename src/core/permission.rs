//! What a permission is: one RBAC rule stagegate's calls need, and one call
//! as the API server authorized it. Each module that talks to the cluster
//! declares its own list; `agent::rbac` gathers them and checks the install
//! manifests against them.

/// One RBAC rule the agent needs: a resource of a group, with verbs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permission {
    /// API group; `""` is the core group, `"*"` any group.
    pub group: &'static str,
    /// Resource (plural), a subresource as `pods/log`, or `"*"`.
    pub resource: &'static str,
    pub verbs: &'static [&'static str],
    /// Whether the agent needs it in every namespace (else only in its own).
    pub cluster_wide: bool,
    /// Why: shown in the manifests' comments.
    pub why: &'static str,
}

/// One API call the agent made, as the API server authorized it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call<'a> {
    pub verb: &'a str,
    /// API group; `""` is the core group.
    pub group: &'a str,
    /// Resource, a subresource as `pods/log`.
    pub resource: &'a str,
    /// Empty for cluster-scoped objects.
    pub namespace: &'a str,
}

impl Permission {
    /// Whether this permission declares `call`, made by an agent running in
    /// `own_namespace`. A Namespace read is authorized inside that namespace,
    /// so reading the agent's own Namespace counts as in its namespace.
    pub fn covers(&self, call: &Call<'_>, own_namespace: &str) -> bool {
        let in_own = call.namespace == own_namespace;
        (self.cluster_wide || in_own)
            && (self.group == "*" || self.group == call.group)
            && (self.resource == "*" || self.resource == call.resource)
            && self.verbs.iter().any(|v| *v == "*" || *v == call.verb)
    }
}
