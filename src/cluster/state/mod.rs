//! What stagegate remembers between reconciles, per stage: phase, the revision
//! reached, the inventory of applied objects, and every Job run by spec hash.
//!
//! This is plain data. The apply engine reads and updates a [`StageState`];
//! the agent loop persists each stage's part as the status of its `Stage`
//! object ([`resource`]), one small write per transition, and survives
//! restarts with it. Keeping Job outcomes here, not on the cluster, is what
//! lets a Job removed by `ttlSecondsAfterFinished` stay "already ran".

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::core::object::{ObjectRef, Revision, StageName};

pub mod legacy;
pub mod requests;
pub mod resource;
pub mod stage_events;
pub mod store;

pub use requests::Requests;
pub use resource::{StageSpec, StageStatus};
pub use store::{StateError, StateStore};

/// How many runs of one Job are kept; older ones say nothing the newest don't.
const RUNS_KEPT: usize = 5;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    #[serde(default)]
    pub stages: BTreeMap<StageName, StageState>,
    /// The Git source: last good revision and the current fetch error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceState>,
    /// Id of the last rerun request absorbed from the former ConfigMap
    /// (read only when converting it, see [`legacy`]).
    #[serde(default, skip_serializing)]
    pub rerun_seen: u64,
    /// What the annotations of the Stage objects ask for, by stage: kept
    /// on the objects, not in the status.
    #[serde(skip)]
    pub requests: BTreeMap<StageName, Requests>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceState {
    /// The revision last fetched (or refused as invalid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<Revision>,
    /// The last revision every stage reached Ready at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied: Option<Revision>,
    /// Why the last fetch or plan failed; empty when it succeeded.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    /// The error is the fetched revision's own (invalid repository), not a
    /// failed fetch: fetching the same revision again does not clear it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub invalid: bool,
    /// When the error was first seen (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// What the last plan warned about (a stage skipped, a field that
    /// changes nothing), so that `status` says it too; at most
    /// [`MAX_SOURCE_WARNINGS`], the last line counting the others.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Warnings kept in the source object; `stagegate validate` lists them all.
pub const MAX_SOURCE_WARNINGS: usize = 20;

impl SourceState {
    /// Keep a plan's warnings, at most [`MAX_SOURCE_WARNINGS`] of them.
    /// Whether anything changed.
    pub fn set_warnings(&mut self, mut warnings: Vec<String>) -> bool {
        let total = warnings.len();
        warnings.truncate(MAX_SOURCE_WARNINGS);
        if total > MAX_SOURCE_WARNINGS {
            warnings.push(format!(
                "… and {} more (stagegate validate lists them)",
                total - MAX_SOURCE_WARNINGS
            ));
        }
        let changed = warnings != self.warnings;
        self.warnings = warnings;
        changed
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    #[default]
    Pending,
    Running,
    Ready,
    Failed,
    Blocked,
    Suspended,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad` so that tables can align phases with `{:<9}`.
        f.pad(&format!("{self:?}"))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StageState {
    #[serde(default)]
    pub phase: Phase,
    /// The last revision this stage reached Ready at.
    #[serde(
        rename = "lastAppliedRevision",
        alias = "revision",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub revision: Option<Revision>,
    /// The revision of the latest attempt, whatever its outcome.
    #[serde(
        rename = "lastAttemptedRevision",
        alias = "attemptedRevision",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub attempted_revision: Option<Revision>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// When the stage entered its phase (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Whether the stage pruned when last applied: a stage removed from the
    /// repository has its objects deleted only if it did.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub prune: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inventory: Vec<InventoryEntry>,
    /// Job runs, by `namespace/name`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub jobs: BTreeMap<String, JobHistory>,
    /// Jobs an operator asked to run again (`stagegate rerun`), by `namespace/name`;
    /// `*` means every Job of the stage.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub rerun: BTreeSet<String>,
    /// The last value of the `stagegate.dev/rerun` annotation taken into
    /// [`Self::rerun`]: each distinct value is one request, handled once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_rerun: Option<String>,
    /// The stage failed in a way that cannot change without a new revision or
    /// a request (a Job failed with no retry left): it is not run again on
    /// every poll.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stalled: bool,
    /// The cluster the Job runs above were recorded in: the UID of the
    /// agent's namespace. Another UID means the cluster was rebuilt or
    /// restored since, and those runs say nothing about this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
}

/// One applied object: its identity, what was applied (hash of the rendered
/// object) and the fingerprint of the fields stagegate owns on it (see
/// `apply::drift`), so that an unchanged object is recognised with one LIST
/// instead of one request per object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InventoryEntry {
    #[serde(rename = "v")]
    pub api_version: String,
    #[serde(rename = "k")]
    pub kind: String,
    #[serde(rename = "ns", default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(rename = "n")]
    pub name: String,
    /// Hash of the rendered object as applied.
    #[serde(rename = "h", default, skip_serializing_if = "String::is_empty")]
    pub hash: String,
    #[serde(rename = "rv", default, skip_serializing_if = "String::is_empty")]
    pub resource_version: String,
}

impl InventoryEntry {
    pub fn object_ref(&self) -> ObjectRef {
        ObjectRef {
            group: self
                .api_version
                .rsplit_once('/')
                .map(|(g, _)| g.to_string())
                .unwrap_or_default(),
            kind: self.kind.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobResult {
    Running,
    Succeeded,
    Failed,
}

/// One run of a Job: a Job object created by stagegate for one spec hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobRun {
    pub hash: String,
    pub revision: Revision,
    pub result: JobResult,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_tail: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobHistory {
    /// Oldest first.
    #[serde(default)]
    pub runs: Vec<JobRun>,
    /// The hook phase (`pre-apply`, `post-apply`) when the Job is a hook of its stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook: Option<String>,
}

impl JobHistory {
    pub fn last(&self) -> Option<&JobRun> {
        self.runs.last()
    }

    /// The latest run of this spec hash.
    pub fn last_of(&self, hash: &str) -> Option<&JobRun> {
        self.runs.iter().rev().find(|r| r.hash == hash)
    }

    /// Whether this spec hash ran to success at some point.
    pub fn succeeded(&self, hash: &str) -> bool {
        self.runs
            .iter()
            .any(|r| r.hash == hash && r.result == JobResult::Succeeded)
    }

    /// Failed runs of this hash since its last success (for `jobRetries`).
    pub fn failures(&self, hash: &str) -> usize {
        self.runs
            .iter()
            .rev()
            .filter(|r| r.hash == hash)
            .take_while(|r| r.result != JobResult::Succeeded)
            .filter(|r| r.result == JobResult::Failed)
            .count()
    }

    /// Record a run, or update it when it is the same Job object (same uid).
    pub fn record(&mut self, run: JobRun) {
        match self
            .runs
            .iter_mut()
            .rev()
            .find(|r| r.uid.is_some() && r.uid == run.uid)
        {
            Some(existing) => *existing = run,
            None => self.runs.push(run),
        }
        if self.runs.len() > RUNS_KEPT {
            let excess = self.runs.len() - RUNS_KEPT;
            self.runs.drain(..excess);
        }
    }
}

impl StageState {
    /// Take (and clear) an operator's rerun request for `job`.
    pub fn take_rerun(&mut self, job: &str) -> bool {
        let specific = self.rerun.remove(job);
        specific || self.rerun.contains("*")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(hash: &str, uid: &str, result: JobResult) -> JobRun {
        JobRun {
            hash: hash.into(),
            revision: "r1".into(),
            result,
            reason: None,
            uid: Some(uid.into()),
            started: None,
            finished: None,
            log_tail: None,
        }
    }

    #[test]
    fn history_updates_a_run_by_uid_and_counts_failures_since_success() {
        let mut h = JobHistory::default();
        h.record(run("a", "1", JobResult::Running));
        h.record(run("a", "1", JobResult::Failed));
        assert_eq!(h.runs.len(), 1);
        h.record(run("a", "2", JobResult::Failed));
        assert_eq!(h.failures("a"), 2);
        h.record(run("a", "3", JobResult::Succeeded));
        assert!(h.succeeded("a"));
        assert_eq!(h.failures("a"), 0);
        for i in 4..12 {
            h.record(run("b", &i.to_string(), JobResult::Failed));
        }
        assert_eq!(h.runs.len(), RUNS_KEPT);
    }

    #[test]
    fn state_round_trips_compactly() {
        let mut state = State::default();
        let stage = state.stages.entry("pre".into()).or_default();
        stage.phase = Phase::Ready;
        stage.inventory.push(InventoryEntry {
            api_version: "batch/v1".into(),
            kind: "Job".into(),
            namespace: Some("shop".into()),
            name: "migrate".into(),
            hash: "h".into(),
            resource_version: "12".into(),
        });
        let json = serde_json::to_string(&state).unwrap();
        assert!(json.contains(r#""v":"batch/v1""#), "{json}");
        assert_eq!(serde_json::from_str::<State>(&json).unwrap(), state);
    }
}
