//! Leader election on a `coordination.k8s.io` Lease, so that two replicas
//! never reconcile at once.

use crate::rbac::Permission;

/// What leader election needs (see [`crate::rbac`]).
pub const PERMISSIONS: &[Permission] = &[Permission {
    group: "coordination.k8s.io",
    resource: "leases",
    verbs: &["get", "create", "update", "patch"],
    cluster_wide: false,
    why: "the Lease stagegate-leader in the agent's namespace, held by the replica that reconciles",
}];
