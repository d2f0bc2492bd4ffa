//! The Kubernetes permissions stagegate's own calls need. Each module that
//! talks to the cluster declares its list next to the calls it makes; the
//! install manifests are tested against [`required`], so the two cannot
//! drift apart. The list is a check, not the proof: `tests/rbac_agent.rs`
//! runs the agent as its installed ServiceAccount with RBAC enforced, and
//! every call it made must be declared here ([`undeclared`]).

pub use crate::core::permission::{Call, Permission};

/// Everything the agent calls, from every module that calls the cluster.
pub fn required() -> Vec<Permission> {
    [
        crate::cluster::apply::PERMISSIONS,
        crate::cluster::state::store::PERMISSIONS,
        crate::cluster::events::PERMISSIONS,
        crate::agent::run::leader::PERMISSIONS,
        crate::agent::run::main::PERMISSIONS,
        crate::cluster::client::PERMISSIONS,
        crate::cluster::client::SUBSTITUTION_PERMISSIONS,
    ]
    .concat()
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
