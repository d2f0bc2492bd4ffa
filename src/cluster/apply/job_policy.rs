//! When a Job runs: the decision, as a pure function of the rendered spec
//! hash, the live Job (if any) and the recorded history. Kept apart from the
//! code that talks to the cluster so every rule is tested on its own.

use crate::cluster::state::{JobHistory, JobResult};

pub const RUN_POLICY_ANNOTATION: &str = "stagegate.dev/run";
pub const REPLACE_RUNNING_ANNOTATION: &str = "stagegate.dev/replace-running";

/// Per-Job run policy (`stagegate.dev/run`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RunPolicy {
    /// Run when the spec hash changes (the default).
    #[default]
    OnChange,
    /// Run on the first install only, never again even if changed.
    Once,
    /// Run for every new revision, even unchanged (smoke tests).
    EveryRevision,
}

/// A `stagegate.dev/run` value that is not a policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{RUN_POLICY_ANNOTATION}: {0:?} is not one of on-change, once, every-revision")]
pub struct RunPolicyError(pub String);

impl RunPolicy {
    pub fn parse(value: Option<&str>) -> Result<Self, RunPolicyError> {
        match value {
            None | Some("on-change") => Ok(Self::OnChange),
            Some("once") => Ok(Self::Once),
            Some("every-revision") => Ok(Self::EveryRevision),
            Some(other) => Err(RunPolicyError(other.to_string())),
        }
    }
}

/// What the cluster holds under the Job's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveJob {
    pub uid: String,
    /// `stagegate.dev/spec-hash` of the live Job; `None` when someone else made it.
    pub hash: Option<String>,
    pub status: LiveStatus,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveStatus {
    Running,
    Succeeded,
    Failed,
}

pub struct JobInputs<'a> {
    pub hash: &'a str,
    pub revision: &'a crate::core::object::Revision,
    pub policy: RunPolicy,
    pub replace_running: bool,
    pub live: Option<&'a LiveJob>,
    pub history: Option<&'a JobHistory>,
    pub rerun_requested: bool,
    /// The stage's `jobRetries`: extra runs allowed after a failure.
    pub retries: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobAction {
    /// No Job under this name: create it.
    Create,
    /// The live Job is this spec: write nothing, wait on it.
    Keep,
    /// Delete the live Job with its pods, then create the new one.
    Replace { old_hash: Option<String> },
    /// The live Job of another spec is still running: let it finish, then replace it.
    WaitThenReplace { old_hash: Option<String> },
    /// This spec failed and `jobRetries` allows another run (`attempt` from 2).
    Retry { attempt: usize },
    /// Nothing to run.
    Skip(SkipReason),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// This exact spec already completed (the Job may since have been removed).
    AlreadySucceeded,
    /// `stagegate.dev/run: once` and it ran before.
    OnceAlreadyRan,
    /// This exact spec failed and no retry is left; the stage fails again
    /// with the recorded reason until the spec changes or a rerun is asked for.
    PreviouslyFailed,
    /// This spec was started (the run is recorded) and its Job is gone
    /// without its end having been seen: a TTL removed it while the agent
    /// was down, or someone deleted it. It is not run a second time; the
    /// stage fails until the spec changes or a rerun is asked for.
    EndNotSeen,
}

pub fn decide(input: &JobInputs<'_>) -> JobAction {
    if input.rerun_requested {
        return match input.live {
            Some(live) => replace(input, live),
            None => JobAction::Create,
        };
    }

    match input.policy {
        RunPolicy::Once => {
            if input.live.is_some() {
                JobAction::Keep
            } else if input.history.is_some_and(|h| !h.runs.is_empty()) {
                JobAction::Skip(SkipReason::OnceAlreadyRan)
            } else {
                JobAction::Create
            }
        }
        RunPolicy::EveryRevision => {
            let ran_this_revision = input.history.is_some_and(|h| {
                h.runs
                    .iter()
                    .any(|r| r.hash == input.hash && r.revision == *input.revision)
            });
            match input.live {
                _ if ran_this_revision => on_change(input),
                Some(live) => replace(input, live),
                None => JobAction::Create,
            }
        }
        RunPolicy::OnChange => on_change(input),
    }
}

/// Never two generations of one Job running at once: a running Job is waited
/// for unless the author said it may be cut short.
fn replace(input: &JobInputs<'_>, live: &LiveJob) -> JobAction {
    if live.status == LiveStatus::Running && !input.replace_running {
        JobAction::WaitThenReplace {
            old_hash: live.hash.clone(),
        }
    } else {
        JobAction::Replace {
            old_hash: live.hash.clone(),
        }
    }
}

fn on_change(input: &JobInputs<'_>) -> JobAction {
    let failures = input.history.map_or(0, |h| h.failures(input.hash));
    let retry_left = failures > 0 && failures <= input.retries as usize;
    match input.live {
        Some(live) if live.hash.as_deref() == Some(input.hash) => {
            if live.status == LiveStatus::Failed && retry_left {
                JobAction::Retry {
                    attempt: failures + 1,
                }
            } else {
                JobAction::Keep
            }
        }
        Some(live) => replace(input, live),
        None => {
            let Some(history) = input.history else {
                return JobAction::Create;
            };
            if history.succeeded(input.hash) {
                return JobAction::Skip(SkipReason::AlreadySucceeded);
            }
            match history.last_of(input.hash).map(|r| r.result) {
                Some(JobResult::Failed) if retry_left => JobAction::Retry {
                    attempt: failures + 1,
                },
                Some(JobResult::Failed) => JobAction::Skip(SkipReason::PreviouslyFailed),
                // Started and recorded, gone before its end was seen: running
                // it again could run it twice (#13), so it is not.
                Some(JobResult::Running) => JobAction::Skip(SkipReason::EndNotSeen),
                _ => JobAction::Create,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::state::JobRun;

    fn history(runs: &[(&str, &str, JobResult)]) -> JobHistory {
        let mut h = JobHistory::default();
        for (i, (hash, revision, result)) in runs.iter().enumerate() {
            h.record(JobRun {
                hash: hash.to_string(),
                revision: (*revision).into(),
                result: *result,
                reason: None,
                uid: Some(i.to_string()),
                started: None,
                finished: None,
                log_tail: None,
            });
        }
        h
    }

    fn live(hash: Option<&str>, status: LiveStatus) -> LiveJob {
        LiveJob {
            uid: "u".into(),
            hash: hash.map(str::to_string),
            status,
        }
    }

    fn input<'a>(live: Option<&'a LiveJob>, history: Option<&'a JobHistory>) -> JobInputs<'a> {
        JobInputs {
            hash: "new",
            // A test's inputs live as long as it does.
            revision: Box::leak(Box::new("r2".into())),
            policy: RunPolicy::OnChange,
            replace_running: false,
            live,
            history,
            rerun_requested: false,
            retries: 0,
        }
    }

    #[test]
    fn no_live_job_and_never_ran_creates_it() {
        assert_eq!(decide(&input(None, None)), JobAction::Create);
    }

    #[test]
    fn completed_spec_removed_by_ttl_does_not_run_again() {
        let h = history(&[("new", "r1", JobResult::Succeeded)]);
        assert_eq!(
            decide(&input(None, Some(&h))),
            JobAction::Skip(SkipReason::AlreadySucceeded)
        );
    }

    #[test]
    fn live_job_with_the_same_hash_is_kept_even_when_failed() {
        let l = live(Some("new"), LiveStatus::Succeeded);
        assert_eq!(decide(&input(Some(&l), None)), JobAction::Keep);
        let l = live(Some("new"), LiveStatus::Failed);
        let h = history(&[("new", "r2", JobResult::Failed)]);
        assert_eq!(decide(&input(Some(&l), Some(&h))), JobAction::Keep);
    }

    #[test]
    fn changed_or_foreign_job_is_replaced_and_a_running_one_waited_for() {
        let l = live(Some("old"), LiveStatus::Succeeded);
        assert_eq!(
            decide(&input(Some(&l), None)),
            JobAction::Replace {
                old_hash: Some("old".into())
            }
        );
        let l = live(None, LiveStatus::Failed);
        assert_eq!(
            decide(&input(Some(&l), None)),
            JobAction::Replace { old_hash: None }
        );
        let l = live(Some("old"), LiveStatus::Running);
        assert_eq!(
            decide(&input(Some(&l), None)),
            JobAction::WaitThenReplace {
                old_hash: Some("old".into())
            }
        );
        let mut i = input(Some(&l), None);
        i.replace_running = true;
        assert_eq!(
            decide(&i),
            JobAction::Replace {
                old_hash: Some("old".into())
            }
        );
    }

    #[test]
    fn failed_spec_is_not_rerun_without_retries_or_request() {
        let h = history(&[("new", "r1", JobResult::Failed)]);
        assert_eq!(
            decide(&input(None, Some(&h))),
            JobAction::Skip(SkipReason::PreviouslyFailed)
        );
        let mut i = input(None, Some(&h));
        i.rerun_requested = true;
        assert_eq!(decide(&i), JobAction::Create);
    }

    #[test]
    fn started_spec_gone_before_its_end_was_seen_is_not_run_twice() {
        let h = history(&[("new", "r1", JobResult::Running)]);
        assert_eq!(
            decide(&input(None, Some(&h))),
            JobAction::Skip(SkipReason::EndNotSeen)
        );
        let mut i = input(None, Some(&h));
        i.rerun_requested = true;
        assert_eq!(decide(&i), JobAction::Create);
    }

    #[test]
    fn job_retries_allow_that_many_more_runs() {
        let l = live(Some("new"), LiveStatus::Failed);
        let h1 = history(&[("new", "r1", JobResult::Failed)]);
        let mut i = input(Some(&l), Some(&h1));
        i.retries = 2;
        assert_eq!(decide(&i), JobAction::Retry { attempt: 2 });
        let h3 = history(&[
            ("new", "r1", JobResult::Failed),
            ("new", "r1", JobResult::Failed),
            ("new", "r1", JobResult::Failed),
        ]);
        let mut i = input(Some(&l), Some(&h3));
        i.retries = 2;
        assert_eq!(decide(&i), JobAction::Keep);
    }

    #[test]
    fn once_policy_never_runs_again_even_when_changed() {
        let h = history(&[("old", "r1", JobResult::Succeeded)]);
        let mut i = input(None, Some(&h));
        i.policy = RunPolicy::Once;
        assert_eq!(decide(&i), JobAction::Skip(SkipReason::OnceAlreadyRan));
        let l = live(Some("old"), LiveStatus::Succeeded);
        let mut i = input(Some(&l), Some(&h));
        i.policy = RunPolicy::Once;
        assert_eq!(decide(&i), JobAction::Keep);
    }

    #[test]
    fn every_revision_policy_runs_once_per_revision() {
        let h = history(&[("new", "r1", JobResult::Succeeded)]);
        let l = live(Some("new"), LiveStatus::Succeeded);
        let mut i = input(Some(&l), Some(&h));
        i.policy = RunPolicy::EveryRevision;
        assert_eq!(
            decide(&i),
            JobAction::Replace {
                old_hash: Some("new".into())
            }
        );
        let h = history(&[("new", "r2", JobResult::Succeeded)]);
        let mut i = input(Some(&l), Some(&h));
        i.policy = RunPolicy::EveryRevision;
        assert_eq!(decide(&i), JobAction::Keep);
    }

    #[test]
    fn unknown_run_policy_is_an_error() {
        assert!(RunPolicy::parse(Some("always")).is_err());
        assert_eq!(RunPolicy::parse(Some("once")), Ok(RunPolicy::Once));
    }
}
