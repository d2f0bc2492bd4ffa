//! Why applying a stage failed, each variant naming the object concerned.

use crate::object::ObjectRef;

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(
        "{object}: kind {api_version}/{kind} is not served by the cluster (no such resource type)"
    )]
    UnknownKind {
        object: ObjectRef,
        api_version: String,
        kind: String,
    },
    #[error("{object}: {message}")]
    Rejected { object: ObjectRef, message: String },
    #[error(
        "{object}: immutable field changed ({message}); set force: true on the stage to recreate it"
    )]
    Immutable { object: ObjectRef, message: String },
    #[error("{object}: {source}")]
    Kube {
        object: ObjectRef,
        #[source]
        source: kube::Error,
    },
    #[error("{object}: {message}")]
    Invalid { object: ObjectRef, message: String },
    #[error("watch ended before {object} reached its state")]
    WatchEnded { object: ObjectRef },
}

impl ApplyError {
    /// A short label for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            ApplyError::UnknownKind { .. } => "unknown_kind",
            ApplyError::Rejected { .. } => "rejected",
            ApplyError::Immutable { .. } => "immutable",
            ApplyError::Kube { .. } => "kube",
            ApplyError::Invalid { .. } => "invalid",
            ApplyError::WatchEnded { .. } => "watch_ended",
        }
    }
}

/// The server's Status, when the error is one.
pub fn api_status(e: &kube::Error) -> Option<&kube::core::Status> {
    match e {
        kube::Error::Api(status) => Some(status),
        _ => None,
    }
}

pub fn is_not_found(e: &kube::Error) -> bool {
    api_status(e).is_some_and(|s| s.code == 404)
}

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
