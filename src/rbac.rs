//! The Kubernetes permissions stagegate's own calls need. Each module that
//! talks to the cluster declares its list next to the calls it makes; the
//! install manifests are tested against [`required`], so the two cannot
//! drift apart.

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
    ]
    .concat()
}
