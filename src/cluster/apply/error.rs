//! Why applying a stage failed, each variant naming the object or the call
//! concerned. The text is made here, once, when the error is shown; the
//! scheduler and the metrics go by the variant ([`ApplyError::metric_label`]).

use std::fmt;
use std::time::Duration;

use super::api_call::CallError;
use super::job_policy::RunPolicyError;
use crate::core::hooks::HookPhase;
use crate::core::object::ObjectRef;

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(
        "{object}: kind {api_version}/{} is not served by the cluster (no such resource type)",
        .object.kind
    )]
    UnknownKind {
        object: ObjectRef,
        api_version: String,
    },
    /// The server refused the apply for a reason other than an immutable
    /// field (validation, admission, conflict).
    #[error("{object}: apply refused ({code}): {message}")]
    Rejected {
        object: ObjectRef,
        code: u16,
        message: String,
    },
    #[error(
        "{object}: immutable field changed ({message}); set force: true on the stage to recreate it"
    )]
    Immutable { object: ObjectRef, message: String },
    /// A call about one object failed (after its retries, when transient).
    #[error("{object}: {source}")]
    Call {
        object: ObjectRef,
        #[source]
        source: Box<CallError>,
    },
    #[error("{object}: {message}")]
    Invalid { object: ObjectRef, message: String },
    #[error("watch ended before {object} reached its state")]
    WatchEnded { object: ObjectRef },
    #[error("discovery of {api_version}/{kind}: {source}")]
    Discovery {
        api_version: String,
        kind: String,
        #[source]
        source: Box<CallError>,
    },
    #[error("cannot tell whether this is the stage's initial install: {source}")]
    InitialInstall {
        #[source]
        source: Box<CallError>,
    },
    #[error("{object}: waiting for Established: {message}")]
    CrdWait { object: ObjectRef, message: String },
    #[error("{object}: not Established in time")]
    CrdNotEstablished { object: ObjectRef },
    /// An object that reached a failed state while waited for.
    #[error("{object}: {message}")]
    Unhealthy { object: ObjectRef, message: String },
    #[error("timed out after {}; not ready: {}", humantime::format_duration(*.after), Waiting(.waiting))]
    WaitTimeout {
        after: Duration,
        waiting: Vec<(ObjectRef, String)>,
    },
    #[error("{object}: Failed: {message}")]
    PodFailed { object: ObjectRef, message: String },
    #[error("{object}: not done after {}: pod phase {phase}", humantime::format_duration(Duration::from_millis(*.after_ms)))]
    PodTimeout {
        object: ObjectRef,
        /// Milliseconds and a boxed phase: an error small enough to return.
        after_ms: u64,
        phase: Box<str>,
    },
    /// `job` is `namespace/name`.
    #[error("Job {job}: {source}")]
    Job {
        job: String,
        #[source]
        source: Box<JobError>,
    },
    #[error("{} hook {source}", .phase.label())]
    Hook {
        phase: HookPhase,
        #[source]
        source: Box<ApplyError>,
    },
    /// A hook phase failed: what that means for the rest of the stage.
    #[error("{source}; {}", match .phase { HookPhase::Pre => "nothing else of the stage was applied", HookPhase::Post => "the stage's other objects stay applied" })]
    HookPhaseFailed {
        phase: HookPhase,
        #[source]
        source: Box<ApplyError>,
    },
    #[error("{object}: {source}")]
    Delete {
        object: ObjectRef,
        #[source]
        source: Box<DeleteError>,
    },
    /// Several independent failures of one step, each reported.
    #[error("{}", Joined(.0))]
    Several(Vec<ApplyError>),
    /// The stage could not be planned (rendered, or read); nothing of it
    /// was applied. The text is the plan's problems for it.
    #[error("{0}")]
    NotPlanned(String),
    /// The stage's ServiceAccount cannot be impersonated.
    #[error("{0}")]
    Impersonation(String),
}

impl ApplyError {
    /// A short label for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            ApplyError::UnknownKind { .. } => "unknown_kind",
            ApplyError::Rejected { .. } => "rejected",
            ApplyError::Immutable { .. } => "immutable",
            ApplyError::Call { source, .. }
            | ApplyError::Discovery { source, .. }
            | ApplyError::InitialInstall { source } => source.metric_label(),
            ApplyError::Invalid { .. } => "invalid",
            ApplyError::WatchEnded { .. } => "watch_ended",
            ApplyError::CrdWait { .. } | ApplyError::CrdNotEstablished { .. } => {
                "crd_not_established"
            }
            ApplyError::Unhealthy { .. } => "unhealthy",
            ApplyError::NotPlanned(_) => "not_planned",
            ApplyError::Impersonation(_) => "impersonation",
            ApplyError::WaitTimeout { .. } => "timeout",
            ApplyError::PodFailed { .. } => "hook_failed",
            ApplyError::PodTimeout { .. } => "timeout",
            ApplyError::Job { source, .. } => source.metric_label(),
            ApplyError::Delete { source, .. } => source.metric_label(),
            ApplyError::Hook { source, .. } | ApplyError::HookPhaseFailed { source, .. } => {
                source.metric_label()
            }
            ApplyError::Several(errors) => errors.first().map_or("several", Self::metric_label),
        }
    }

    /// One error for a step's failures: none, one, or several.
    pub fn from_all(mut errors: Vec<ApplyError>) -> Result<(), ApplyError> {
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(ApplyError::Several(errors)),
        }
    }
}

/// Why one Job of a stage did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    RunPolicy(#[from] RunPolicyError),
    #[error(transparent)]
    Call(#[from] CallError),
    #[error(
        "failed earlier and is not run again until its spec changes or `stagegate rerun` asks: {}",
        WithTail(.reason, .log_tail.as_deref())
    )]
    FailedEarlier {
        reason: String,
        log_tail: Option<String>,
    },
    #[error("{}", WithTail(.reason, .log_tail.as_deref()))]
    Failed {
        reason: String,
        log_tail: Option<String>,
    },
    #[error("not complete after {}: {progress}", humantime::format_duration(*.after))]
    Timeout { after: Duration, progress: String },
    #[error(
        "started{} and gone from the cluster before its end was seen; not run again for this spec (`stagegate rerun` runs it)",
        .started.as_deref().map(|s| format!(" at {s}")).unwrap_or_default()
    )]
    EndNotSeen { started: Option<String> },
    #[error("deleting the previous Job: {0}")]
    Delete(#[from] DeleteError),
    #[error("kept Job vanished")]
    Vanished,
}

/// Deleting an object and waiting until it is gone did not work.
#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    #[error(transparent)]
    Call(#[from] CallError),
    #[error("{target} still present {} after deletion", humantime::format_duration(*.after))]
    StillPresent { target: String, after: Duration },
    #[error("watching {target} until it is gone: {message}")]
    Watch { target: String, message: String },
}

impl DeleteError {
    pub fn metric_label(&self) -> &'static str {
        match self {
            DeleteError::Call(call) => call.metric_label(),
            DeleteError::StillPresent { .. } => "timeout",
            DeleteError::Watch { .. } => "watch_ended",
        }
    }
}

impl JobError {
    pub fn metric_label(&self) -> &'static str {
        match self {
            JobError::RunPolicy(_) => "invalid",
            JobError::Call(call) => call.metric_label(),
            JobError::FailedEarlier { .. } => "job_failed_earlier",
            JobError::Failed { .. } => "job_failed",
            JobError::Timeout { .. } => "timeout",
            JobError::EndNotSeen { .. } => "job_end_not_seen",
            JobError::Delete(e) => e.metric_label(),
            JobError::Vanished => "job_vanished",
        }
    }
}

/// A failure reason with the failed pod's log tail, as shown everywhere.
pub struct WithTail<'a>(pub &'a str, pub Option<&'a str>);

impl fmt::Display for WithTail<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            Some(tail) if !tail.is_empty() => write!(f, "{}\nlast log lines of {tail}", self.0),
            _ => f.write_str(self.0),
        }
    }
}

struct Joined<'a>(&'a [ApplyError]);

impl fmt::Display for Joined<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

struct Waiting<'a>(&'a [(ObjectRef, String)]);

impl fmt::Display for Waiting<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (object, progress)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{object}: {progress}")?;
        }
        Ok(())
    }
}

pub use crate::cluster::client::{api_status, is_not_found};

/// A 422 whose causes say a field is immutable: the only case in which an
/// object is deleted and recreated. Flux treats every 409/422 this way and has
/// deleted users' volumes on every reconcile; we look at what the server said.
pub fn is_immutable_field(e: &kube::Error) -> bool {
    let Some(status) = api_status(e) else {
        return false;
    };
    if status.code != 422 {
        return false;
    }
    let immutable = |m: &str| m.contains("field is immutable");
    match &status.details {
        Some(details) if !details.causes.is_empty() => {
            details.causes.iter().any(|c| immutable(&c.message))
        }
        _ => immutable(&status.message),
    }
}
