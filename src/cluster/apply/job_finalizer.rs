//! The finalizer that keeps a finished Job until its end is recorded (#13).
//!
//! A Job's `ttlSecondsAfterFinished` deletes it after it ends, whether or
//! not anyone saw how it ended. An agent killed while the Job ran would find
//! nothing when it came back: not run again (its run is journaled), but
//! failed, and its dependents blocked. So each Job the agent waits on is
//! created with [`JOB_OUTCOME_FINALIZER`] (in the create call itself, so
//! there is no moment without it): a deletion, the TTL's or anyone's, then
//! only sets its `deletionTimestamp`, and the finished Job stays readable
//! until the agent has durably recorded its end and released it here.
//! Every path that deletes a Job on purpose (a replacement, a hook's delete
//! policy, prune) releases it first, so nothing hangs on the agent.

use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

use super::api_call::{CallError, Verb, call};

/// Held on each Job the agent waits for, until its end is in the Stage's status.
pub const JOB_OUTCOME_FINALIZER: &str = "stagegate.dev/job-outcome";

/// The Job's rendered body, as it is created: with the finalizer added to
/// whatever finalizers the repository gave it.
pub(super) fn with_finalizer(job: &Value) -> Value {
    let mut body = job.clone();
    if let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) {
        let list = meta.entry("finalizers").or_insert_with(|| json!([]));
        if let Some(list) = list.as_array_mut()
            && !list.iter().any(|f| f == JOB_OUTCOME_FINALIZER)
        {
            list.push(json!(JOB_OUTCOME_FINALIZER));
        }
    }
    body
}

/// Whether an object's finalizers include ours.
pub(super) fn holds(finalizers: Option<&[String]>) -> bool {
    finalizers.is_some_and(|f| f.iter().any(|f| f == JOB_OUTCOME_FINALIZER))
}

/// Remove our finalizer from the Job `name`, if it still holds it; a Job
/// that is gone, or was never held, needs nothing. A strategic merge patch
/// deletes only this entry, so finalizers of others (the garbage
/// collector's `foregroundDeletion`) are kept whatever their order.
pub(super) async fn release(jobs: &Api<Job>, name: &str, target: &str) -> Result<(), CallError> {
    let live = call(Verb::Get, &target, || jobs.get_opt(name)).await?;
    let Some(live) = live else { return Ok(()) };
    if !holds(live.metadata.finalizers.as_deref()) {
        return Ok(());
    }
    release_by_patch(jobs, name, target).await
}

/// The patch alone, for a caller that has just read the object itself.
pub(super) async fn release_by_patch<K>(
    api: &Api<K>,
    name: &str,
    target: &str,
) -> Result<(), CallError>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = Patch::Strategic(json!({
        "metadata": {"$deleteFromPrimitiveList/finalizers": [JOB_OUTCOME_FINALIZER]}
    }));
    let params = PatchParams::default();
    match call(Verb::Patch, &target, || api.patch(name, &params, &patch)).await {
        Ok(_) => Ok(()),
        // Released and deleted meanwhile: what was asked for.
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_finalizer_is_added_once_beside_the_repositorys_own() {
        let job = json!({"metadata": {"name": "m", "finalizers": ["example.com/keep"]}});
        let body = with_finalizer(&with_finalizer(&job));
        assert_eq!(
            body["metadata"]["finalizers"],
            json!(["example.com/keep", JOB_OUTCOME_FINALIZER])
        );
        let bare = with_finalizer(&json!({"metadata": {"name": "m"}}));
        assert_eq!(
            bare["metadata"]["finalizers"],
            json!([JOB_OUTCOME_FINALIZER])
        );
        assert!(holds(Some(&[JOB_OUTCOME_FINALIZER.to_string()])));
        assert!(!holds(Some(&["example.com/keep".to_string()])));
        assert!(!holds(None));
    }
}
