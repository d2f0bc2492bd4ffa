//! The status report: what `stagegate status -o json` prints and what the
//! status page shows and serves at `/api/status`. One type, built by one
//! function from the agent's persisted state, so the two cannot disagree.
//!
//! Objects are listed by identity only (kind, namespace, name): a Secret
//! appears by name and its data never reaches the report.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::cluster::state::{JobHistory, JobResult, Phase, StageState, State};
use crate::core::object::Revision;
use crate::core::plan::Plan;
use crate::core::plan::hook_lines;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceReport>,
    /// By stage name.
    #[serde(default)]
    pub stages: BTreeMap<String, StageReport>,
}

/// The Git source as the agent sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceReport {
    /// The repository URL without credentials (known to the agent only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// What is followed: `branch main`, `tag v1`, ….
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// The revision every stage reached Ready at, when they agree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied: Option<Revision>,
    /// The revision last fetched, which the stages are brought to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempted: Option<Revision>,
    /// Why the last fetch or plan failed; empty when it succeeded.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_since: Option<String>,
    /// What the last plan warned about (a skipped stage, for one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StageReport {
    pub phase: Phase,
    /// Why the stage is in its phase (for Blocked: which stage blocks it).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<Revision>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempted_revision: Option<Revision>,
    /// From the revision the agent planned last (absent when not known).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// The stage whose rendered output declares this one (a nested Flux
    /// Kustomization or Stage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// The stage's hooks in run order, `pre: migrate (weight -5)`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<ObjectReport>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jobs: Vec<JobReport>,
}

/// An applied object, by identity only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReport {
    pub api_version: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobReport {
    /// `namespace/name`.
    pub name: String,
    /// The hook phase when the Job is a hook of its stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook: Option<String>,
    /// Oldest first.
    pub runs: Vec<RunReport>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunReport {
    pub hash: String,
    pub revision: Revision,
    pub result: JobResult,
    /// 1 for the first run of this spec hash, 2 for its first retry, ….
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<f64>,
    /// The last lines of the failed pod's log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_tail: Option<String>,
}

/// The stage graph of a planned revision: what the persisted state does not
/// hold (edges and hooks), in dependency order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Topology {
    pub stages: Vec<TopologyStage>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TopologyStage {
    pub name: String,
    pub depends_on: Vec<String>,
    pub parent: Option<String>,
    pub hooks: Vec<String>,
}

impl Topology {
    pub fn of(plan: &Plan) -> Self {
        let stages = plan
            .stages
            .iter()
            .map(|planned| TopologyStage {
                name: planned.stage.name.to_string(),
                depends_on: planned
                    .stage
                    .depends_on
                    .iter()
                    .map(|d| d.to_string())
                    .collect(),
                parent: planned.stage.parent.as_ref().map(|p| p.to_string()),
                hooks: hook_lines(planned),
            })
            .collect();
        Self { stages }
    }
}

/// Where the agent's Git source points; the CLI does not know it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceOrigin {
    pub repository: String,
    pub reference: String,
}

impl StatusReport {
    /// The report of `state`; stages of `topology` not recorded yet are
    /// Pending, and stages recorded but no longer planned stay listed.
    pub fn new(state: &State, topology: Option<&Topology>, origin: Option<&SourceOrigin>) -> Self {
        let mut stages: BTreeMap<String, StageReport> = state
            .stages
            .iter()
            .map(|(name, stage)| (name.to_string(), stage_report(stage)))
            .collect();
        for planned in topology.map(|t| t.stages.as_slice()).unwrap_or_default() {
            let stage = stages.entry(planned.name.clone()).or_default();
            stage.depends_on = planned.depends_on.clone();
            stage.parent = planned.parent.clone();
            stage.hooks = planned.hooks.clone();
        }
        let source = if state.source.is_none() && origin.is_none() {
            None
        } else {
            let recorded = state.source.clone().unwrap_or_default();
            Some(SourceReport {
                repository: origin.map(|o| o.repository.clone()),
                reference: origin.map(|o| o.reference.clone()),
                applied: applied_revision(state),
                attempted: recorded.revision,
                error: recorded.error,
                error_since: recorded.since,
                warnings: recorded.warnings,
            })
        };
        Self { source, stages }
    }
}

/// The revision all stages are Ready at, if they agree on one.
fn applied_revision(state: &State) -> Option<Revision> {
    let mut revisions = state.stages.values().map(|s| {
        (s.phase == Phase::Ready)
            .then_some(s.revision.as_ref())
            .flatten()
    });
    let first = revisions.next()??;
    revisions.all(|r| r == Some(first)).then(|| first.clone())
}

fn stage_report(stage: &StageState) -> StageReport {
    StageReport {
        phase: stage.phase,
        message: stage.message.clone(),
        since: stage.since.clone(),
        revision: stage.revision.clone(),
        attempted_revision: stage.attempted_revision.clone(),
        depends_on: Vec::new(),
        parent: None,
        hooks: Vec::new(),
        objects: stage
            .inventory
            .iter()
            .map(|entry| ObjectReport {
                api_version: entry.api_version.clone(),
                kind: entry.kind.clone(),
                namespace: entry.namespace.clone(),
                name: entry.name.clone(),
            })
            .collect(),
        jobs: stage
            .jobs
            .iter()
            .map(|(name, history)| job_report(name, history))
            .collect(),
    }
}

fn job_report(name: &str, history: &JobHistory) -> JobReport {
    let mut attempts: BTreeMap<&str, u32> = BTreeMap::new();
    let runs = history
        .runs
        .iter()
        .map(|run| {
            let attempt = attempts.entry(run.hash.as_str()).or_default();
            *attempt += 1;
            RunReport {
                hash: run.hash.clone(),
                revision: run.revision.clone(),
                result: run.result,
                attempt: *attempt,
                reason: run.reason.clone(),
                started: run.started.clone(),
                finished: run.finished.clone(),
                duration_seconds: duration(run.started.as_deref(), run.finished.as_deref()),
                log_tail: run.log_tail.clone(),
            }
        })
        .collect();
    JobReport {
        name: name.to_string(),
        hook: history.hook.clone(),
        runs,
    }
}

fn duration(started: Option<&str>, finished: Option<&str>) -> Option<f64> {
    let started: jiff::Timestamp = started?.parse().ok()?;
    let finished: jiff::Timestamp = finished?.parse().ok()?;
    Some(finished.duration_since(started).as_secs_f64().max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::state::{InventoryEntry, JobRun, SourceState};

    fn run(hash: &str, uid: &str, result: JobResult) -> JobRun {
        JobRun {
            hash: hash.into(),
            revision: "main@sha1:1".into(),
            result,
            reason: None,
            uid: Some(uid.into()),
            started: Some("2026-01-01T00:00:00Z".into()),
            finished: Some("2026-01-01T00:00:02.5Z".into()),
            log_tail: (result == JobResult::Failed).then(|| "boom".into()),
        }
    }

    #[test]
    fn report_numbers_attempts_per_hash_and_lists_secrets_by_name_only() {
        let mut state = State::default();
        let stage = state.stages.entry("pre".into()).or_default();
        stage.phase = Phase::Failed;
        let mut history = JobHistory::default();
        history.record(run("a", "1", JobResult::Failed));
        history.record(run("a", "2", JobResult::Failed));
        history.record(run("b", "3", JobResult::Failed));
        stage.jobs.insert("shop/migrate".into(), history);
        stage.inventory.push(InventoryEntry {
            api_version: "v1".into(),
            kind: "Secret".into(),
            namespace: Some("shop".into()),
            name: "db".into(),
            hash: "h".into(),
            resource_version: "1".into(),
        });
        state.source = Some(SourceState {
            revision: Some("main@sha1:1".into()),
            ..SourceState::default()
        });
        let topology = Topology {
            stages: vec![
                TopologyStage {
                    name: "pre".into(),
                    ..TopologyStage::default()
                },
                TopologyStage {
                    name: "app".into(),
                    depends_on: vec!["pre".into()],
                    parent: None,
                    hooks: vec![],
                },
            ],
        };
        let report = StatusReport::new(&state, Some(&topology), None);
        let runs = &report.stages["pre"].jobs[0].runs;
        let attempts: Vec<u32> = runs.iter().map(|r| r.attempt).collect();
        assert_eq!(attempts, [1, 2, 1]);
        assert_eq!(runs[0].duration_seconds, Some(2.5));
        assert_eq!(report.stages["app"].phase, Phase::Pending);
        assert_eq!(report.stages["app"].depends_on, ["pre"]);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(
            json["stages"]["pre"]["objects"][0],
            serde_json::json!({"apiVersion": "v1", "kind": "Secret", "namespace": "shop", "name": "db"})
        );
        assert_eq!(json["source"]["attempted"], "main@sha1:1");
        assert!(json["source"].get("applied").is_none(), "{json}");
    }
}
