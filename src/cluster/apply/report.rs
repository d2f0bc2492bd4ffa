//! What applying a stage did, as types: counts, each Job's decision and
//! outcome, each hook's line. The agent turns them into its state, metrics
//! and log lines; `Display` makes the text where it is shown.

use std::fmt;

use super::error::ApplyError;
use super::job_policy::{JobAction, SkipReason};
use crate::cluster::events::ObjectEvent;
use crate::core::hooks::HookPhase;

/// What applying a stage did.
#[derive(Debug, Default)]
pub struct StageReport {
    pub ready: bool,
    /// The outcome as shown in the status: a summary, or the failure.
    pub message: String,
    /// Why the stage failed, when it did.
    pub error: Option<ApplyError>,
    pub applied: usize,
    pub unchanged: usize,
    pub recreated: usize,
    pub pruned: usize,
    pub jobs: Vec<JobReport>,
    /// What each hook did (Jobs also appear in `jobs`), and hooks not run on this apply.
    pub hooks: Vec<String>,
    /// Events to emit about the stage's objects, in the order they happened:
    /// the engine publishes none, whoever records the stage does.
    pub events: Vec<ObjectEvent>,
}

/// What happened to one Job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobReport {
    /// `namespace/name`.
    pub job: String,
    /// The rendered spec hash; empty when the Job had none.
    pub hash: String,
    /// What the run policy decided; `None` when the Job could not be read.
    pub action: Option<JobAction>,
    pub outcome: JobOutcome,
    /// The hook phase the Job ran in, when it is a hook.
    pub hook: Option<HookPhase>,
    /// What a hook's delete policy did to the Job afterwards.
    pub deletion: Option<HookDeletion>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    /// Created (or kept) and watched to success.
    Succeeded,
    /// Left alone: it had succeeded, as recorded.
    SucceededUnchanged,
    /// Not run: this spec already completed.
    AlreadyCompleted,
    /// Created and not waited for (a hook with `hook-wait: false`).
    Started,
    /// Not waited for, found ended: `None` when it succeeded, else why it failed.
    EndedUnwatched { failure: Option<String> },
    /// Not waited for, started earlier and gone without its end seen: not
    /// run again, and nothing waits on it.
    EndNotSeen,
    /// Why it failed, as the stage message says it.
    Failed(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookDeletion {
    /// `hook-succeeded` or `hook-failed`.
    pub policy: &'static str,
    /// Why the deletion failed, when it did.
    pub error: Option<String>,
}

impl JobReport {
    pub fn new(job: String, hook: Option<HookPhase>) -> Self {
        Self {
            job,
            hash: String::new(),
            action: None,
            outcome: JobOutcome::Succeeded,
            hook,
            deletion: None,
        }
    }

    /// Whether a Job was started on this apply (created, recreated, retried).
    pub fn ran(&self) -> bool {
        matches!(
            self.action,
            Some(
                JobAction::Create
                    | JobAction::Replace { .. }
                    | JobAction::WaitThenReplace { .. }
                    | JobAction::Retry { .. }
            )
        )
    }

    /// The decision, as `diff` and the hook lines say it.
    pub fn action_text(&self) -> String {
        match &self.action {
            Some(action) => describe(action, &self.hash),
            None => "not decided".into(),
        }
    }

    /// The outcome with what the delete policy did.
    pub fn outcome_text(&self) -> String {
        let mut text = self.outcome.to_string();
        if let Some(deletion) = &self.deletion {
            match &deletion.error {
                None => text.push_str(&format!("; deleted ({})", deletion.policy)),
                Some(e) => text.push_str(&format!("; not deleted ({}): {e}", deletion.policy)),
            }
        }
        text
    }
}

impl fmt::Display for JobOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobOutcome::Succeeded => f.write_str("succeeded"),
            JobOutcome::SucceededUnchanged => f.write_str("succeeded (unchanged)"),
            JobOutcome::AlreadyCompleted => f.write_str("already completed; not run again"),
            JobOutcome::Started => f.write_str("started; not waited for"),
            JobOutcome::EndedUnwatched { failure: None } => {
                f.write_str("succeeded (not waited for)")
            }
            JobOutcome::EndedUnwatched {
                failure: Some(reason),
            } => write!(f, "failed (not waited for): {reason}"),
            JobOutcome::EndNotSeen => {
                f.write_str("started earlier, gone before its end was seen; not run again")
            }
            JobOutcome::Failed(message) => write!(f, "failed: {message}"),
        }
    }
}

pub(crate) fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

/// A run policy's decision in words.
pub fn describe(action: &JobAction, hash: &str) -> String {
    match action {
        JobAction::Create => format!("create (spec {})", short(hash)),
        JobAction::Keep => "left alone (unchanged)".into(),
        JobAction::Replace { old_hash } => {
            format!(
                "recreate because spec hash {} -> {}",
                old_hash.as_deref().map(short).unwrap_or("(none)"),
                short(hash)
            )
        }
        JobAction::WaitThenReplace { old_hash } => format!(
            "recreate after the running Job finishes, spec hash {} -> {}",
            old_hash.as_deref().map(short).unwrap_or("(none)"),
            short(hash)
        ),
        JobAction::Retry { attempt } => format!("retry (run {attempt})"),
        JobAction::Skip(SkipReason::AlreadySucceeded) => "not re-run: already completed".into(),
        JobAction::Skip(SkipReason::OnceAlreadyRan) => "not re-run: run policy once".into(),
        JobAction::Skip(SkipReason::PreviouslyFailed) => {
            "not re-run: failed earlier with this spec".into()
        }
        JobAction::Skip(SkipReason::EndNotSeen) => {
            "not re-run: started earlier, its end not seen".into()
        }
    }
}
