//! The Kubernetes permissions stagegate's own calls need. Each module that
//! talks to the cluster declares its list next to the calls it makes; the
//! install manifests are tested against [`required`], so the two cannot
//! drift apart. The list is a check, not the proof: `tests/rbac_agent.rs`
//! runs the agent as its installed ServiceAccount with RBAC enforced, and
//! every call it made must be declared here ([`undeclared`]).

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

/// Everything the agent calls, from every module that calls the cluster.
pub fn required() -> Vec<Permission> {
    [
        crate::apply::PERMISSIONS,
        crate::state::store::PERMISSIONS,
        crate::events::PERMISSIONS,
        crate::run::leader::PERMISSIONS,
        crate::run::main::PERMISSIONS,
        crate::cluster::PERMISSIONS,
        crate::cluster::SUBSTITUTION_PERMISSIONS,
    ]
    .concat()
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

/// The calls that no permission in [`required`] declares: what a test that
/// records the agent's calls checks, so the list cannot fall behind the code.
pub fn undeclared<'a>(calls: &[Call<'a>], own_namespace: &str) -> Vec<Call<'a>> {
    let declared = required();
    calls
        .iter()
        .filter(|c| !declared.iter().any(|p| p.covers(c, own_namespace)))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespaced_permission_covers_its_namespace_only() {
        let lease = Permission {
            group: "coordination.k8s.io",
            resource: "leases",
            verbs: &["get", "update"],
            cluster_wide: false,
            why: "",
        };
        let call = Call {
            verb: "update",
            group: "coordination.k8s.io",
            resource: "leases",
            namespace: "stagegate-system",
        };
        assert!(lease.covers(&call, "stagegate-system"));
        assert!(!lease.covers(&call, "other"));
        assert!(!lease.covers(
            &Call {
                verb: "delete",
                ..call.clone()
            },
            "stagegate-system"
        ));
        assert!(!lease.covers(
            &Call {
                resource: "leases/status",
                ..call
            },
            "stagegate-system"
        ));
    }
}
