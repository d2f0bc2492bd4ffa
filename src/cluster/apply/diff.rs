//! What applying a stage would do, without writing anything: objects to
//! create, to change (by server-side dry run), to prune, and each Job's fate.

use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::api::Patch;
use serde_json::Value;
use similar::TextDiff;

use super::engine::{Engine, StageRun, apply_params};
use super::error::{api_status, is_immutable_field};
use super::item::{Item, Role};
use super::job_policy::{
    JobAction, JobInputs, REPLACE_RUNNING_ANNOTATION, RUN_POLICY_ANNOTATION, RunPolicy, decide,
};
use super::job_runner::live_job;
use super::journal::NoJournal;
use super::report::describe;
use crate::cluster::state::StageState;
use crate::core::hooks::HookPhase;
use crate::core::object::ObjectRef;
use crate::core::object::SpecHash;
use crate::core::plan::PlannedStage;

#[derive(Debug, Clone, Default)]
pub struct StageDiff {
    pub stage: String,
    pub create: Vec<ObjectRef>,
    /// Objects that would change, with a unified diff live -> rendered.
    pub change: Vec<(ObjectRef, String)>,
    pub prune: Vec<ObjectRef>,
    /// `(namespace/name, fate)` of each Job.
    pub jobs: Vec<(String, String)>,
    /// `(phase and object, fate)` of each hook, in the order they would run,
    /// and of hooks that would not run on this apply.
    pub hooks: Vec<(String, String)>,
    /// Jobs (hooks included) whose fate is to run.
    pub jobs_to_run: usize,
    pub errors: Vec<String>,
}

impl StageDiff {
    pub fn has_changes(&self) -> bool {
        !self.create.is_empty()
            || !self.change.is_empty()
            || !self.prune.is_empty()
            || self.jobs_to_run > 0
    }
}

/// Fields the server owns or that change on every write: not differences.
fn normalize(mut value: Value) -> Value {
    if let Some(obj) = value.as_object_mut() {
        obj.remove("status");
        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            for key in [
                "managedFields",
                "resourceVersion",
                "generation",
                "uid",
                "creationTimestamp",
            ] {
                meta.remove(key);
            }
            if let Some(annotations) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
                annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
                if annotations.is_empty() {
                    meta.remove("annotations");
                }
            }
        }
    }
    value
}

/// `value` restricted to the keys `shape` has; lists of the same length are
/// projected item by item, others kept whole.
fn project(value: &Value, shape: &Value) -> Value {
    match (value, shape) {
        (Value::Object(v), Value::Object(s)) => Value::Object(
            s.iter()
                .filter_map(|(k, sv)| v.get(k).map(|vv| (k.clone(), project(vv, sv))))
                .collect(),
        ),
        (Value::Array(v), Value::Array(s)) if v.len() == s.len() => {
            Value::Array(v.iter().zip(s).map(|(vv, sv)| project(vv, sv)).collect())
        }
        _ => value.clone(),
    }
}

fn yaml(value: &Value) -> String {
    serde_yaml::to_string(value).unwrap_or_default()
}

impl Engine {
    pub async fn diff_stage(
        &self,
        planned: &PlannedStage,
        revision: impl Into<crate::core::object::Revision>,
        state: &StageState,
    ) -> StageDiff {
        let revision = revision.into();
        let stage = &planned.stage;
        let mut diff = StageDiff {
            stage: stage.name.to_string(),
            ..StageDiff::default()
        };
        let run = StageRun::new(planned, &revision, &NoJournal);
        let prepared = match self.prepare(&run, state).await {
            Ok(prepared) => prepared,
            Err(e) => {
                diff.errors.push(e.to_string());
                return diff;
            }
        };
        // In the order they would run: pre-apply hooks by weight, the
        // rest, post-apply hooks by weight.
        for item in prepared.hooks(HookPhase::Pre) {
            self.diff_hook(&run, item, HookPhase::Pre, state, &mut diff)
                .await;
        }
        for (item, reason) in prepared.idle() {
            diff.hooks.push((
                format!("hook {}", item.object_ref()),
                format!("not run on this apply ({reason})"),
            ));
        }
        for item in prepared.items.iter().filter(|i| i.role == Role::Main) {
            if item.resolved.is_none() {
                // Its CRD comes with this stage and does not exist yet.
                diff.create.push(item.object_ref());
            } else if item.is_job() {
                self.diff_job(&run, item, state, None, &mut diff).await;
            } else {
                self.diff_object(item, stage.force, &mut diff).await;
            }
        }
        for item in prepared.hooks(HookPhase::Post) {
            self.diff_hook(&run, item, HookPhase::Post, state, &mut diff)
                .await;
        }
        if stage.prune {
            let rendered = prepared.rendered();
            diff.prune = state
                .inventory
                .iter()
                .map(|e| e.object_ref())
                .filter(|r| !rendered.contains(r))
                .collect();
        }
        diff
    }

    async fn diff_hook(
        &self,
        run: &StageRun<'_>,
        item: &Item,
        phase: HookPhase,
        state: &StageState,
        diff: &mut StageDiff,
    ) {
        if item.is_job() {
            return self.diff_job(run, item, state, Some(phase), diff).await;
        }
        let before = diff.create.len() + diff.change.len();
        if item.resolved.is_none() {
            diff.create.push(item.object_ref());
        } else {
            self.diff_object(item, run.planned.stage.force, diff).await;
        }
        let fate = if diff.create.len() + diff.change.len() > before {
            "applied"
        } else {
            "unchanged"
        };
        diff.hooks.push((
            format!("{} hook {}", phase.label(), item.object_ref()),
            fate.to_string(),
        ));
    }

    async fn diff_object(&self, item: &Item, force: bool, diff: &mut StageDiff) {
        let Some(api) = item.api(&self.client) else {
            return;
        };
        let live = match api.get_opt(&item.name).await {
            Ok(Some(live)) => live,
            Ok(None) => {
                diff.create.push(item.object_ref());
                return;
            }
            Err(e) => {
                diff.errors.push(format!("{}: {e}", item.object_ref()));
                return;
            }
        };
        let dry = api
            .patch(
                &item.name,
                &apply_params().dry_run(),
                &Patch::Apply(&item.value),
            )
            .await;
        let after = match dry {
            Ok(after) => after,
            Err(e) if is_immutable_field(&e) => {
                let message = api_status(&e)
                    .map(|s| s.message.clone())
                    .unwrap_or_default();
                let what = if force {
                    "would be deleted and recreated (force)"
                } else {
                    "cannot change without force"
                };
                diff.change.push((
                    item.object_ref(),
                    format!("immutable field changed, {what}: {message}\n"),
                ));
                return;
            }
            Err(e) => {
                diff.errors
                    .push(format!("{}: dry run: {e}", item.object_ref()));
                return;
            }
        };
        // Only the fields stagegate sets: defaults the server fills in and
        // fields other managers own are not stagegate's to report.
        let mut before = project(
            &normalize(serde_json::to_value(&live).unwrap_or_default()),
            &item.value,
        );
        let mut after = project(
            &normalize(serde_json::to_value(&after).unwrap_or_default()),
            &item.value,
        );
        crate::core::redact::mask_secret_pair(&mut before, &mut after);
        let (before, after) = (yaml(&before), yaml(&after));
        if before != after {
            let text = TextDiff::from_lines(&before, &after)
                .unified_diff()
                .context_radius(3)
                .header("live", "rendered")
                .to_string();
            diff.change.push((item.object_ref(), text));
        }
    }

    async fn diff_job(
        &self,
        run: &StageRun<'_>,
        item: &Item,
        state: &StageState,
        hook: Option<HookPhase>,
        diff: &mut StageDiff,
    ) {
        let (revision, retries) = (run.revision, run.planned.stage.job_retries);
        let namespace = item.namespace.clone().unwrap_or_else(|| "default".into());
        let key = format!("{namespace}/{}", item.name);
        let Some(hash) = item.job.as_ref().map(SpecHash::as_str) else {
            return;
        };
        let policy = match RunPolicy::parse(item.annotation(RUN_POLICY_ANNOTATION)) {
            Ok(policy) => policy,
            Err(e) => {
                diff.errors.push(format!("Job {key}: {e}"));
                return;
            }
        };
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), &namespace);
        let live = match jobs.get_opt(&item.name).await {
            Ok(live) => live.as_ref().map(live_job),
            Err(e) => {
                diff.errors.push(format!("Job {key}: {e}"));
                return;
            }
        };
        let action = decide(&JobInputs {
            hash,
            revision,
            policy,
            replace_running: item.annotation(REPLACE_RUNNING_ANNOTATION) == Some("true"),
            live: live.as_ref(),
            history: state.jobs.get(&key),
            rerun_requested: state.rerun.contains(&key)
                || state.rerun.contains(item.name.as_str())
                || state.rerun.contains("*"),
            retries,
        });
        if !matches!(action, JobAction::Keep | JobAction::Skip(_)) {
            diff.jobs_to_run += 1;
        }
        match hook {
            Some(phase) => diff.hooks.push((
                format!("{} hook Job {key}", phase.label()),
                describe(&action, hash),
            )),
            None => diff.jobs.push((key, describe(&action, hash))),
        }
    }
}

impl std::fmt::Display for StageDiff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "stage {}:", self.stage)?;
        if !self.has_changes()
            && self.errors.is_empty()
            && self.jobs.is_empty()
            && self.hooks.is_empty()
        {
            writeln!(f, "  no changes")?;
        }
        for oref in &self.create {
            writeln!(f, "  + create {oref}")?;
        }
        for (oref, text) in &self.change {
            writeln!(f, "  ~ change {oref}")?;
            for line in text.lines() {
                writeln!(f, "      {line}")?;
            }
        }
        for oref in &self.prune {
            writeln!(f, "  - prune {oref}")?;
        }
        for (job, fate) in &self.jobs {
            writeln!(f, "  job {job}: {fate}")?;
        }
        for (hook, fate) in &self.hooks {
            writeln!(f, "  {hook}: {fate}")?;
        }
        for error in &self.errors {
            writeln!(f, "  error: {error}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn projection_keeps_only_rendered_fields() {
        let live = json!({"spec": {"replicas": 2, "strategy": {"type": "RollingUpdate"}, "template": {"spec": {"containers": [{"name": "a", "image": "x", "imagePullPolicy": "Always"}]}}}});
        let shape = json!({"spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "a", "image": "y"}]}}}});
        assert_eq!(
            project(&live, &shape),
            json!({"spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}}})
        );
    }
}
