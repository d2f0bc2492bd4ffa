//! Making the cluster match one rendered stage, through the `kube` client:
//! server-side apply in kind order, Jobs recreated by spec hash, precise
//! handling of immutable fields, prune, and watch-driven health waits. The
//! engine knows nothing of Git or of the loop that calls it.

mod diff;
mod drift;
mod engine;
pub mod error;
mod hook_runner;
mod item;
pub mod job_policy;
mod jobs;
mod prune;
mod recreate;
pub mod resolve;
mod waits;

pub use diff::StageDiff;
pub use engine::{Engine, EngineSettings, StageReport};
pub use error::ApplyError;
pub use jobs::JobReport;

use crate::rbac::Permission;

/// What the apply engine calls (see [`crate::rbac`]).
pub const PERMISSIONS: &[Permission] = &[
    Permission {
        group: "*",
        resource: "*",
        verbs: &[
            "get", "list", "watch", "create", "patch", "update", "delete",
        ],
        cluster_wide: true,
        why: "server-side apply, drift detection, prune and health waits of whatever kinds the repository holds",
    },
    Permission {
        group: "",
        resource: "pods/log",
        verbs: &["get"],
        cluster_wide: true,
        why: "the log tail of a failed Job's pod, for the stage message and the Event",
    },
];
