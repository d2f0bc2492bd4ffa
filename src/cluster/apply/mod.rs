//! Making the cluster match one rendered stage, through the `kube` client:
//! server-side apply in kind order, Jobs recreated by spec hash, precise
//! handling of immutable fields, prune, and watch-driven health waits. The
//! engine knows nothing of Git or of the loop that calls it, and publishes
//! nothing: the Events it has to report come back in its [`StageReport`]
//! for the caller to publish (see [`crate::cluster::events`]).

pub mod api_call;
mod apply_stage;
mod delete_wait;
mod diff;
mod drift;
mod engine;
pub mod error;
mod hook_runner;
mod item;
mod job_finalizer;
pub mod job_policy;
mod job_runner;
pub mod journal;
mod prepare;
mod prune;
pub mod report;
mod reset;
pub mod resolve;
mod server_side_apply;
mod tally;
mod waits;

pub use diff::StageDiff;
pub use engine::{Engine, EngineSettings};
pub use error::{ApplyError, JobError};
pub use job_finalizer::JOB_OUTCOME_FINALIZER;
pub use journal::{JobJournal, NoJournal};
pub use report::{JobOutcome, JobReport, StageReport};

use crate::core::permission::Permission;

/// What the apply engine calls (see [`crate::agent::rbac`]).
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
