//! Where a Job run is written down the moment it starts and the moment its
//! end is seen, before the stage ends: the agent persists it through its
//! state store, so no crash, restart or TTL can make it run twice (#13).
//! The engine calls the journal; it does not know where the record goes.

use futures::future::BoxFuture;

use crate::cluster::state::JobRun;
use crate::core::object::StageName;

pub trait JobJournal: Send + Sync {
    /// Record `run` of the Job `job` (`namespace/name`) of `stage`, durably,
    /// before returning. `true` once the record is durable: only then may
    /// the Job's outcome finalizer be released (a failed write keeps the
    /// Job, and its end, in the cluster for the next attempt to read).
    fn record<'a>(
        &'a self,
        stage: &'a StageName,
        job: &'a str,
        run: &'a JobRun,
    ) -> BoxFuture<'a, bool>;
}

/// For callers whose record is the returned state alone (`diff`, tests):
/// that state is all the record there is, so it counts as durable.
pub struct NoJournal;

impl JobJournal for NoJournal {
    fn record<'a>(&'a self, _: &'a StageName, _: &'a str, _: &'a JobRun) -> BoxFuture<'a, bool> {
        Box::pin(async { true })
    }
}
