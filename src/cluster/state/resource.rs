//! The `Stage` custom resource (`stages.stagegate.dev/v1alpha1`): one per
//! stage, in the agent's namespace, written only by the agent. Its spec
//! mirrors what Git says about the stage; its status is the stage's
//! [`StageState`] with kstatus conditions, so `kubectl get`, `kubectl wait
//! --for=condition=Ready` and any Kubernetes UI read it.

use kube::core::{ApiResource, GroupVersionKind};
use serde::{Deserialize, Serialize};

use super::{Phase, StageState};
use crate::core::stage::Stage;

pub const GROUP: &str = "stagegate.dev";
pub const VERSION: &str = "v1alpha1";
pub const KIND: &str = "Stage";
pub const PLURAL: &str = "stages";
pub const CRD_NAME: &str = "stages.stagegate.dev";

pub fn api_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, VERSION, KIND), PLURAL)
}

/// What the repository declares about a stage, as read-only information.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StageSpec {
    /// The file declaring the stage, relative to the repository root.
    pub source_file: String,
    /// `Stage` or a Flux `Kustomization`.
    pub source_kind: String,
    pub path: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<bool>,
    #[serde(default)]
    pub prune: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub job_retries: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_namespace: Option<String>,
    #[serde(default)]
    pub suspend: bool,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl From<&Stage> for StageSpec {
    fn from(stage: &Stage) -> Self {
        Self {
            source_file: stage.source.display().to_string(),
            source_kind: match stage.origin {
                crate::core::stage::StageOrigin::Native => "Stage".into(),
                crate::core::stage::StageOrigin::Flux => "Kustomization".into(),
            },
            path: match stage.path.as_os_str().is_empty() {
                true => ".".into(),
                false => stage.path.display().to_string(),
            },
            depends_on: stage.depends_on.iter().map(|d| d.to_string()).collect(),
            wait: stage.wait,
            prune: stage.prune,
            force: stage.force,
            timeout: stage
                .timeout
                .map(|t| humantime::format_duration(t).to_string()),
            job_retries: stage.job_retries,
            target_namespace: stage.target_namespace.clone(),
            suspend: stage.suspend,
        }
    }
}

/// One kstatus condition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    pub reason: String,
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The status subresource: the stage's state and its conditions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StageStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(flatten)]
    pub stage: StageState,
}

impl StageStatus {
    /// The status for `stage`, with its conditions derived from its phase.
    pub fn new(stage: &StageState, generation: Option<i64>) -> Self {
        Self {
            observed_generation: generation,
            conditions: conditions(stage, generation),
            stage: stage.clone(),
        }
    }

    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }
}

/// kstatus: `Ready` says whether the stage is where Git wants it;
/// `Reconciling` is present while it is being applied or waited for;
/// `Stalled` when it cannot progress without a change.
fn conditions(stage: &StageState, generation: Option<i64>) -> Vec<Condition> {
    let since = stage.since.clone();
    let first_line = stage.message.lines().next().unwrap_or_default().to_string();
    let (status, reason) = match stage.phase {
        Phase::Ready => ("True", "Applied"),
        Phase::Failed if stage.stalled => ("False", "JobFailed"),
        Phase::Failed => ("False", "ApplyFailed"),
        Phase::Blocked => ("False", "DependencyNotReady"),
        Phase::Suspended => ("Unknown", "Suspended"),
        Phase::Running => ("Unknown", "Progressing"),
        Phase::Pending => ("Unknown", "Pending"),
    };
    let condition = |type_: &str, status: &str, reason: &str| Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: first_line.clone(),
        last_transition_time: since.clone(),
        observed_generation: generation,
    };
    let mut out = vec![condition("Ready", status, reason)];
    if stage.phase == Phase::Running {
        out.push(condition("Reconciling", "True", "Progressing"));
    }
    if stage.phase == Phase::Failed && stage.stalled {
        out.push(condition("Stalled", "True", "JobFailed"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_carries_the_state_and_kstatus_conditions() {
        let stage = StageState {
            phase: Phase::Failed,
            message: "Job shop/migrate failed: BackoffLimitExceeded\nlog tail".into(),
            stalled: true,
            revision: Some("main@sha1:1".into()),
            attempted_revision: Some("main@sha1:2".into()),
            ..StageState::default()
        };
        let status = StageStatus::new(&stage, Some(3));
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["phase"], "Failed");
        assert_eq!(json["lastAppliedRevision"], "main@sha1:1");
        assert_eq!(json["lastAttemptedRevision"], "main@sha1:2");
        assert_eq!(json["observedGeneration"], 3);
        let ready = status.condition("Ready").unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "JobFailed")
        );
        assert_eq!(
            ready.message,
            "Job shop/migrate failed: BackoffLimitExceeded"
        );
        assert!(status.condition("Stalled").is_some());
        assert!(status.condition("Reconciling").is_none());
        let back: StageStatus = serde_json::from_value(json).unwrap();
        assert_eq!(back.stage, stage);
    }

    #[test]
    fn former_configmap_field_names_are_still_read() {
        let old = r#"{"phase":"Ready","revision":"r1","attemptedRevision":"r1"}"#;
        let stage: StageState = serde_json::from_str(old).unwrap();
        assert_eq!(stage.revision.as_deref(), Some("r1"));
        assert_eq!(stage.attempted_revision.as_deref(), Some("r1"));
    }
}
