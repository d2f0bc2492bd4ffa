//! Prometheus metrics, named in the spirit of Flux's `gotk_*` so that its
//! users find their way: `stagegate_reconcile_duration_seconds` and friends.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::cluster::state::Phase;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    pub stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageResultLabels {
    pub stage: String,
    pub result: String,
}

/// A stage and why it failed (`ApplyError::metric_label`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageReasonLabels {
    pub stage: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub stage: String,
    pub phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RevisionLabels {
    pub revision: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

const PHASES: [Phase; 6] = [
    Phase::Pending,
    Phase::Running,
    Phase::Ready,
    Phase::Failed,
    Phase::Blocked,
    Phase::Suspended,
];

pub struct Metrics {
    pub registry: Registry,
    /// Time to apply one stage and reach its outcome.
    pub reconcile_duration: Family<StageResultLabels, Histogram>,
    /// 1 for the stage's current phase, 0 for the others.
    pub stage_phase: Family<PhaseLabels, Gauge>,
    /// Job runs that finished, by result.
    pub job_runs: Family<StageResultLabels, Counter>,
    /// Jobs deleted and created again because their spec changed.
    pub job_recreations: Family<StageLabels, Counter>,
    /// Stage applies that failed, by reason.
    pub stage_failures: Family<StageReasonLabels, Counter>,
    pub git_fetch_duration: Histogram,
    pub git_fetch_failures: Family<ReasonLabels, Counter>,
    /// 1 for the revision last applied in full (every stage Ready).
    pub applied_revision: Family<RevisionLabels, Gauge>,
    /// Reconcile cycles started, whatever their outcome.
    pub cycles: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("stagegate");
        let reconcile_duration =
            Family::<StageResultLabels, Histogram>::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.05, 2.0, 14))
            });
        let stage_phase = Family::<PhaseLabels, Gauge>::default();
        let job_runs = Family::<StageResultLabels, Counter>::default();
        let job_recreations = Family::<StageLabels, Counter>::default();
        let stage_failures = Family::<StageReasonLabels, Counter>::default();
        let git_fetch_duration = Histogram::new(exponential_buckets(0.01, 2.0, 12));
        let git_fetch_failures = Family::<ReasonLabels, Counter>::default();
        let applied_revision = Family::<RevisionLabels, Gauge>::default();
        let cycles = Counter::default();
        registry.register(
            "reconcile_duration_seconds",
            "Time to apply a stage and reach its outcome",
            reconcile_duration.clone(),
        );
        registry.register(
            "stage_phase",
            "1 for each stage's current phase",
            stage_phase.clone(),
        );
        registry.register("job_runs", "Job runs finished, by result", job_runs.clone());
        registry.register(
            "job_recreations",
            "Jobs deleted with their pods and created again because their spec changed",
            job_recreations.clone(),
        );
        registry.register(
            "stage_failures",
            "Stage applies that failed, by reason",
            stage_failures.clone(),
        );
        registry.register(
            "git_fetch_duration_seconds",
            "Time to fetch the watched reference",
            git_fetch_duration.clone(),
        );
        registry.register(
            "git_fetch_failures",
            "Failed fetches, by reason",
            git_fetch_failures.clone(),
        );
        registry.register(
            "applied_revision_info",
            "1 for the revision whose stages are all Ready",
            applied_revision.clone(),
        );
        registry.register(
            "reconcile_cycles",
            "Reconcile cycles started",
            cycles.clone(),
        );
        Self {
            registry,
            reconcile_duration,
            stage_phase,
            job_runs,
            job_recreations,
            stage_failures,
            git_fetch_duration,
            git_fetch_failures,
            applied_revision,
            cycles,
        }
    }

    pub fn set_phase(&self, stage: &str, phase: Phase) {
        for p in PHASES {
            let labels = PhaseLabels {
                stage: stage.to_string(),
                phase: p.to_string(),
            };
            self.stage_phase
                .get_or_create(&labels)
                .set(i64::from(p == phase));
        }
    }

    pub fn set_applied_revision(&self, revision: &str) {
        self.applied_revision.clear();
        self.applied_revision
            .get_or_create(&RevisionLabels {
                revision: revision.to_string(),
            })
            .set(1);
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_exposed_with_stagegate_names() {
        let m = Metrics::new();
        m.set_phase("pre", Phase::Ready);
        m.job_runs
            .get_or_create(&StageResultLabels {
                stage: "pre".into(),
                result: "succeeded".into(),
            })
            .inc();
        m.set_applied_revision("main@sha1:abc");
        let text = m.encode();
        assert!(
            text.contains("stagegate_stage_phase{stage=\"pre\",phase=\"Ready\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("stagegate_stage_phase{stage=\"pre\",phase=\"Failed\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("stagegate_job_runs_total{stage=\"pre\",result=\"succeeded\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("stagegate_applied_revision_info{revision=\"main@sha1:abc\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE stagegate_reconcile_duration_seconds histogram"),
            "{text}"
        );
    }
}
