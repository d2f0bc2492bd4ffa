//! Reading and writing the `Stage` objects of the agent's namespace.
//!
//! Only the agent writes a stage's spec and status. Each write is a JSON
//! merge patch holding only what changed since the last write of that stage
//! (see [`merge_diff`]), so its cost is that of one transition, not of the
//! number of stages, and a cycle that changes nothing writes nothing. Other
//! clients (`kubectl annotate`, `stagegate rerun`) only touch annotations.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference};
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::core::DynamicObject;
use kube::{Api, Client};
use serde_json::{Value, json};

use super::legacy::{LEGACY_CONFIGMAP, decode_configmap};
use super::requests::Requests;
use super::resource::{CRD_NAME, GROUP, KIND, StageSpec, StageStatus, VERSION, api_resource};
use super::{SourceState, StageState, State};
use crate::cluster::client::{ServerMessage, is_not_found};
use crate::core::object::StageName;

/// The ConfigMap that stands for the Git source: its status (revision, error)
/// and its Events; `stagegate reconcile` annotates it.
pub const SOURCE_CONFIGMAP: &str = "stagegate-source";
const SOURCE_KEY: &str = "source.json";
/// Stage objects read per LIST request.
const LIST_PAGE: u32 = 100;

/// What reading and writing the stages needs (see [`crate::agent::rbac`]).
pub const PERMISSIONS: &[crate::core::permission::Permission] = &[
    crate::core::permission::Permission {
        group: GROUP,
        resource: "stages",
        verbs: &["get", "list", "watch", "create", "patch", "delete"],
        cluster_wide: false,
        why: "one Stage object per stage in the agent's namespace",
    },
    crate::core::permission::Permission {
        group: GROUP,
        resource: "stages/status",
        verbs: &["get", "patch", "update"],
        cluster_wide: false,
        why: "the status of each Stage: phase, conditions, revisions, inventory, Job runs",
    },
    crate::core::permission::Permission {
        group: "",
        resource: "configmaps",
        verbs: &["get", "list", "watch", "create", "patch", "delete"],
        cluster_wide: false,
        why: "the source object stagegate-source, and converting a former stagegate-state once",
    },
];

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A call to the API server failed: `call` says which (`patch status
    /// of Stage shop/app`), the text gives the server's message once.
    #[error("{call}: {}", ServerMessage(.source))]
    Kube {
        call: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "the Stage resource ({CRD_NAME}) is not installed in this cluster: \
         install stagegate's manifests (kubectl apply -k manifests/) or its CRD (manifests/00-crd.yaml)"
    )]
    MissingCrd,
    #[error("the former state ConfigMap {namespace}/{LEGACY_CONFIGMAP} is unreadable: {message}")]
    Corrupt {
        namespace: String,
        message: super::legacy::LegacyError,
    },
    #[error(
        "namespace {0} does not exist: create it (kubectl create namespace {0}) or install stagegate's manifests"
    )]
    MissingNamespace(String),
    #[error("no stage named {stage} in namespace {namespace}; stages: {known}")]
    UnknownStage {
        stage: String,
        namespace: String,
        known: String,
    },
    #[error(
        "no ConfigMap {SOURCE_CONFIGMAP} in namespace {namespace}: the agent has not fetched there yet (is it running in this namespace?)"
    )]
    NoSource { namespace: String },
    #[error("stage {stage} has no Job {job}; its Jobs: {known}")]
    UnknownJob {
        stage: String,
        job: String,
        known: String,
    },
}

impl StateError {
    fn is_not_found(&self) -> bool {
        match self {
            StateError::Kube { source, .. } => is_not_found(source),
            StateError::MissingCrd => true,
            _ => false,
        }
    }
}

/// One Stage object as read: name, spec, status and annotations.
#[derive(Debug, Clone)]
pub struct StageObject {
    pub name: String,
    pub spec: StageSpec,
    pub status: StageStatus,
    pub requests: Requests,
    pub created: Option<jiff::Timestamp>,
    pub uid: Option<String>,
    pub generation: Option<i64>,
}

impl StageObject {
    pub fn from_dynamic(obj: &DynamicObject) -> Option<Self> {
        let name = obj.metadata.name.clone()?;
        let field = |key: &str| obj.data.get(key).cloned().unwrap_or(Value::Null);
        Some(Self {
            spec: serde_json::from_value(field("spec")).unwrap_or_default(),
            status: serde_json::from_value(field("status")).unwrap_or_default(),
            requests: Requests::from_annotations(obj.metadata.annotations.as_ref()),
            created: obj.metadata.creation_timestamp.as_ref().map(|t| t.0),
            uid: obj.metadata.uid.clone(),
            generation: obj.metadata.generation,
            name,
        })
    }

    /// Every Job of the stage as `namespace/name`: from its runs and its inventory.
    pub fn jobs(&self) -> Vec<String> {
        let mut jobs: Vec<String> = self.status.stage.jobs.keys().cloned().collect();
        for entry in &self.status.stage.inventory {
            if entry.kind == "Job" && entry.api_version == "batch/v1" {
                let key = format!(
                    "{}/{}",
                    entry.namespace.as_deref().unwrap_or("default"),
                    entry.name
                );
                if !jobs.contains(&key) {
                    jobs.push(key);
                }
            }
        }
        jobs.sort();
        jobs
    }
}

/// What was last written for one stage, to write only the difference.
#[derive(Debug, Clone)]
struct Written {
    uid: Option<String>,
    generation: Option<i64>,
    spec: Compact,
    status: Compact,
}

/// A JSON value kept as its text: held for every stage all the time, where
/// a [`Value`] tree costs several times its text in small allocations; it
/// is parsed again only when a write has something to send.
#[derive(Debug, Clone)]
struct Compact(Box<str>);

impl Compact {
    fn of(value: &Value) -> Self {
        Self(value.to_string().into_boxed_str())
    }

    /// The merge patch from this value to `new` (`new`'s text in
    /// `new_text`); `None` when they are equal.
    fn patch_to(&self, new: &Value, new_text: &str) -> Option<Value> {
        if *self.0 == *new_text {
            return None;
        }
        // Unreadable text (never written by us) is replaced whole.
        let old: Value = serde_json::from_str(&self.0).unwrap_or(Value::Null);
        // The same members in another order are no change.
        (old != *new).then(|| merge_diff(&old, new))
    }
}

pub struct StateStore {
    client: Client,
    stages: Api<DynamicObject>,
    configmaps: Api<ConfigMap>,
    namespace: String,
    written: Mutex<HashMap<String, Written>>,
}

impl StateStore {
    pub fn new(client: Client, namespace: &str) -> Self {
        Self {
            stages: Api::namespaced_with(client.clone(), namespace, &api_resource()),
            configmaps: Api::namespaced(client.clone(), namespace),
            client,
            namespace: namespace.to_string(),
            written: Mutex::new(HashMap::new()),
        }
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn stages_api(&self) -> &Api<DynamicObject> {
        &self.stages
    }

    pub fn configmaps_api(&self) -> &Api<ConfigMap> {
        &self.configmaps
    }

    /// The error for a failed call; `call` is the verb and what it was
    /// about, as in `get Stage app` (the namespace is added here).
    fn kube_err(&self, call: &str, source: kube::Error) -> StateError {
        if let Some(s) = crate::cluster::client::api_status(&source)
            && s.code == 404
        {
            if s.details.as_ref().is_some_and(|d| d.kind == "namespaces") {
                return StateError::MissingNamespace(self.namespace.clone());
            }
            // A 404 on the collection itself: the API server does not serve the resource.
            if s.details.as_ref().is_none_or(|d| d.name.is_empty()) {
                return StateError::MissingCrd;
            }
        }
        StateError::Kube {
            call: format!("{call} in namespace {}", self.namespace),
            source,
        }
    }

    /// Every Stage object of the namespace, by name.
    pub async fn list(&self) -> Result<Vec<StageObject>, StateError> {
        // Pages, so that a thousand stages are never one response parsed at once.
        let mut objects = Vec::new();
        let mut params = ListParams::default().limit(LIST_PAGE);
        loop {
            let page = self
                .stages
                .list(&params)
                .await
                .map_err(|e| self.kube_err("list Stages", e))?;
            objects.extend(page.items.iter().filter_map(StageObject::from_dynamic));
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => return Ok(objects),
            }
        }
    }

    /// The state held by the Stage objects and the source object. A former
    /// `stagegate-state` ConfigMap is converted: its stages become objects
    /// (those not already there), then it is deleted.
    pub async fn load(&self) -> Result<State, StateError> {
        let mut state = self.read().await?;
        self.convert_legacy(&mut state).await?;
        Ok(state)
    }

    /// The state held by the Stage objects and the source object; writes nothing.
    pub async fn read(&self) -> Result<State, StateError> {
        let mut state = State::default();
        for object in self.list().await? {
            self.remember(&object);
            state
                .requests
                .insert(StageName::new(object.name.clone()), object.requests.clone());
            state
                .stages
                .insert(StageName::new(object.name), object.status.stage);
        }
        state.source = self.load_source().await?;
        Ok(state)
    }

    fn remember(&self, object: &StageObject) {
        let written = Written {
            uid: object.uid.clone(),
            generation: object.generation,
            spec: Compact::of(&serde_json::to_value(&object.spec).unwrap_or(Value::Null)),
            status: Compact::of(&serde_json::to_value(&object.status).unwrap_or(Value::Null)),
        };
        self.lock().insert(object.name.clone(), written);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Written>> {
        // A panic while holding it leaves a plain map behind: still usable.
        self.written.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn convert_legacy(&self, state: &mut State) -> Result<(), StateError> {
        let Some(cm) = self
            .configmaps
            .get_opt(LEGACY_CONFIGMAP)
            .await
            .map_err(|e| self.kube_err(&format!("get ConfigMap {LEGACY_CONFIGMAP}"), e))?
        else {
            return Ok(());
        };
        let old = decode_configmap(&cm).map_err(|message| StateError::Corrupt {
            namespace: self.namespace.clone(),
            message,
        })?;
        let mut converted = 0;
        for (name, stage) in old.stages {
            if state.stages.contains_key(name.as_str()) {
                continue;
            }
            self.save_stage(name.as_str(), None, &stage).await?;
            state.stages.insert(name, stage);
            converted += 1;
        }
        if state.source.is_none()
            && let Some(source) = old.source
        {
            self.save_source(&source).await?;
            state.source = Some(source);
        }
        self.configmaps
            .delete(LEGACY_CONFIGMAP, &DeleteParams::default())
            .await
            .map_err(|e| self.kube_err(&format!("delete ConfigMap {LEGACY_CONFIGMAP}"), e))?;
        tracing::info!(
            namespace = %self.namespace,
            stages = converted,
            "converted the former state ConfigMap {LEGACY_CONFIGMAP} into Stage objects and deleted it"
        );
        Ok(())
    }

    /// Write one stage: its spec (when given) and its status, only what
    /// changed since the last write; nothing at all when nothing did.
    pub async fn save_stage(
        &self,
        name: &str,
        spec: Option<&StageSpec>,
        stage: &StageState,
    ) -> Result<(), StateError> {
        match self.write_stage(name, spec, stage).await {
            // Deleted by hand since the last write: the memory of it is
            // written again in full, so that no Job run is forgotten.
            Err(e) if e.is_not_found() => {
                self.lock().remove(name);
                self.write_stage(name, spec, stage).await
            }
            other => other,
        }
    }

    async fn write_stage(
        &self,
        name: &str,
        spec: Option<&StageSpec>,
        stage: &StageState,
    ) -> Result<(), StateError> {
        let previous = self.lock().get(name).cloned();
        let mut written = match previous {
            Some(w) => w,
            None => self.create(name, spec).await?,
        };
        if let Some(spec) = spec {
            let spec = serde_json::to_value(spec).unwrap_or(Value::Null);
            let text = spec.to_string();
            if let Some(diff) = written.spec.patch_to(&spec, &text) {
                let patch = json!({ "spec": diff });
                let obj = self
                    .stages
                    .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(|e| self.kube_err(&format!("patch Stage {name}"), e))?;
                written.generation = obj.metadata.generation;
                written.spec = Compact(text.into_boxed_str());
            }
        }
        let status = serde_json::to_value(StageStatus::new(stage, written.generation))
            .unwrap_or(Value::Null);
        let text = status.to_string();
        if let Some(diff) = written.status.patch_to(&status, &text) {
            let patch = json!({ "status": diff });
            self.stages
                .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|e| self.kube_err(&format!("patch status of Stage {name}"), e))?;
            written.status = Compact(text.into_boxed_str());
        }
        self.lock().insert(name.to_string(), written);
        Ok(())
    }

    async fn create(&self, name: &str, spec: Option<&StageSpec>) -> Result<Written, StateError> {
        let spec = serde_json::to_value(spec.cloned().unwrap_or_default()).unwrap_or(Value::Null);
        let mut obj = DynamicObject::new(name, &api_resource()).within(&self.namespace);
        obj.metadata.labels = Some(BTreeMap::from([(
            crate::core::labels::MANAGED_BY_KEY.to_string(),
            crate::core::labels::MANAGED_BY_VALUE.to_string(),
        )]));
        obj.data = json!({ "spec": spec });
        let created = match self.stages.create(&PostParams::default(), &obj).await {
            Ok(created) => created,
            // Made by an earlier agent whose record this one lost: start from it.
            Err(kube::Error::Api(s)) if s.code == 409 => self
                .stages
                .get(name)
                .await
                .map_err(|e| self.kube_err(&format!("get Stage {name}"), e))?,
            Err(e) => return Err(self.kube_err(&format!("create Stage {name}"), e)),
        };
        let object = StageObject::from_dynamic(&created);
        Ok(Written {
            uid: created.metadata.uid.clone(),
            generation: created.metadata.generation,
            spec: Compact::of(
                &object
                    .as_ref()
                    .and_then(|o| serde_json::to_value(&o.spec).ok())
                    .unwrap_or(spec),
            ),
            status: Compact::of(created.data.get("status").unwrap_or(&Value::Null)),
        })
    }

    /// Forget what was written for a stage (its object is gone): the next
    /// write creates it in full.
    pub fn forget(&self, name: &str) {
        self.lock().remove(name);
    }

    /// Remove a stage's object (its objects in the cluster were dealt with before).
    pub async fn delete_stage(&self, name: &str) -> Result<(), StateError> {
        self.lock().remove(name);
        match self.stages.delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(self.kube_err(&format!("delete Stage {name}"), e)),
        }
    }

    /// The object Events about a stage are recorded on.
    pub fn stage_reference(&self, name: &str) -> ObjectReference {
        ObjectReference {
            api_version: Some(format!("{GROUP}/{VERSION}")),
            kind: Some(KIND.into()),
            name: Some(name.into()),
            namespace: Some(self.namespace.clone()),
            uid: self.lock().get(name).and_then(|w| w.uid.clone()),
            ..ObjectReference::default()
        }
    }

    /// The object that stands for the Git source: its Events go there.
    pub fn source_reference(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("ConfigMap".into()),
            name: Some(SOURCE_CONFIGMAP.into()),
            namespace: Some(self.namespace.clone()),
            ..ObjectReference::default()
        }
    }

    pub async fn load_source(&self) -> Result<Option<SourceState>, StateError> {
        let cm = self
            .configmaps
            .get_opt(SOURCE_CONFIGMAP)
            .await
            .map_err(|e| self.kube_err(&format!("get ConfigMap {SOURCE_CONFIGMAP}"), e))?;
        Ok(cm
            .and_then(|cm| cm.data)
            .and_then(|d| d.get(SOURCE_KEY).cloned())
            .and_then(|text| serde_json::from_str(&text).ok()))
    }

    /// Write the source's state (server-side apply: creates it the first time).
    pub async fn save_source(&self, source: &SourceState) -> Result<(), StateError> {
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(SOURCE_CONFIGMAP.into()),
                namespace: Some(self.namespace.clone()),
                labels: Some(BTreeMap::from([(
                    crate::core::labels::MANAGED_BY_KEY.to_string(),
                    crate::core::labels::MANAGED_BY_VALUE.to_string(),
                )])),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(
                SOURCE_KEY.to_string(),
                serde_json::to_string(source).unwrap_or_default(),
            )])),
            ..ConfigMap::default()
        };
        let mut value = serde_json::to_value(&cm).unwrap_or(Value::Null);
        value["apiVersion"] = json!("v1");
        value["kind"] = json!("ConfigMap");
        self.configmaps
            .patch(
                SOURCE_CONFIGMAP,
                &PatchParams::apply(crate::core::labels::MANAGED_BY_VALUE).force(),
                &Patch::Apply(&value),
            )
            .await
            .map_err(|e| self.kube_err(&format!("apply ConfigMap {SOURCE_CONFIGMAP}"), e))?;
        Ok(())
    }

    /// One stage's object, or an error listing the stages there are.
    pub async fn get_stage(&self, stage: &str) -> Result<StageObject, StateError> {
        let found = self
            .stages
            .get_opt(stage)
            .await
            .map_err(|e| self.kube_err(&format!("get Stage {stage}"), e))?;
        if let Some(object) = found.as_ref().and_then(StageObject::from_dynamic) {
            return Ok(object);
        }
        let known: Vec<String> = self.list().await?.into_iter().map(|o| o.name).collect();
        Err(StateError::UnknownStage {
            stage: stage.into(),
            namespace: self.namespace.clone(),
            known: if known.is_empty() {
                "none yet".into()
            } else {
                known.join(", ")
            },
        })
    }

    /// Ask the agent to run `jobs` (names, `namespace/name`, or `*`) of
    /// `stage` again; an unknown stage or Job is refused. Returns the
    /// annotation value written: made distinct by a timestamp, so asking
    /// twice for the same Job runs it twice.
    pub async fn request_rerun(&self, stage: &str, jobs: &[String]) -> Result<String, StateError> {
        let object = self.get_stage(stage).await?;
        let known = object.jobs();
        for job in jobs.iter().filter(|j| *j != "*") {
            let matches = known
                .iter()
                .any(|k| k == job || k.rsplit_once('/').is_some_and(|(_, n)| n == job));
            if !matches {
                return Err(StateError::UnknownJob {
                    stage: stage.into(),
                    job: job.clone(),
                    known: if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    },
                });
            }
        }
        let value = format!("{}@{}", jobs.join(","), jiff::Timestamp::now());
        self.annotate(stage, super::requests::RERUN_ANNOTATION, Some(&value))
            .await?;
        Ok(value)
    }

    /// Set (or, with `None`, remove) an annotation on a stage's object.
    pub async fn annotate(
        &self,
        stage: &str,
        key: &str,
        value: Option<&str>,
    ) -> Result<(), StateError> {
        self.get_stage(stage).await?;
        let patch = json!({ "metadata": { "annotations": { key: value } } });
        self.stages
            .patch(stage, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| self.kube_err(&format!("patch Stage {stage} (annotation {key})"), e))?;
        Ok(())
    }

    /// Ask the agent to fetch and reconcile now, through the source object.
    pub async fn request_reconcile(&self) -> Result<String, StateError> {
        let now = jiff::Timestamp::now().to_string();
        let patch = json!({ "metadata": { "annotations": {
            super::requests::RECONCILE_ANNOTATION: now,
        } } });
        match self
            .configmaps
            .patch(
                SOURCE_CONFIGMAP,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => Ok(now),
            Err(e) if is_not_found(&e) => Err(StateError::NoSource {
                namespace: self.namespace.clone(),
            }),
            Err(e) => Err(self.kube_err(&format!("patch ConfigMap {SOURCE_CONFIGMAP}"), e)),
        }
    }
}

/// The JSON merge patch (RFC 7386) that turns `old` into `new`: only the
/// members that differ, removed ones as `null`.
pub fn merge_diff(old: &Value, new: &Value) -> Value {
    match (old, new) {
        (Value::Object(old), Value::Object(new)) => {
            let mut patch = serde_json::Map::new();
            for (key, value) in new {
                match old.get(key) {
                    Some(previous) if previous == value => {}
                    Some(previous) => {
                        patch.insert(key.clone(), merge_diff(previous, value));
                    }
                    None => {
                        patch.insert(key.clone(), value.clone());
                    }
                }
            }
            for key in old.keys().filter(|k| !new.contains_key(*k)) {
                patch.insert(key.clone(), Value::Null);
            }
            Value::Object(patch)
        }
        _ => new.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply_merge(target: &mut Value, patch: &Value) {
        match (target.as_object_mut(), patch.as_object()) {
            (Some(target), Some(patch)) => {
                for (k, v) in patch {
                    if v.is_null() {
                        target.remove(k);
                    } else {
                        apply_merge(target.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
            _ => *target = patch.clone(),
        }
    }

    #[test]
    fn merge_diff_holds_only_the_change_and_applies_back() {
        let old = json!({"phase": "Running", "message": "applying r2",
            "jobs": {"shop/a": {"runs": [1]}, "shop/b": {"runs": [2]}}, "inventory": [1, 2]});
        let new = json!({"phase": "Ready",
            "jobs": {"shop/a": {"runs": [1, 3]}, "shop/b": {"runs": [2]}}, "inventory": [1, 2]});
        let patch = merge_diff(&old, &new);
        assert_eq!(
            patch,
            json!({"phase": "Ready", "message": null, "jobs": {"shop/a": {"runs": [1, 3]}}})
        );
        let mut applied = old.clone();
        apply_merge(&mut applied, &patch);
        assert_eq!(applied, new);
        assert_eq!(merge_diff(&new, &new), json!({}));
    }

    #[test]
    fn compact_record_patches_only_a_real_change() {
        let old = json!({"phase": "Ready", "jobs": {"shop/a": 1, "shop/b": 2}});
        let kept = Compact::of(&old);
        assert_eq!(kept.patch_to(&old, &old.to_string()), None);
        let reordered = json!({"jobs": {"shop/b": 2, "shop/a": 1}, "phase": "Ready"});
        assert_ne!(reordered.to_string(), old.to_string());
        assert_eq!(
            kept.patch_to(&reordered, &reordered.to_string()),
            None,
            "the same members in another order are no change"
        );
        let new = json!({"phase": "Failed", "jobs": {"shop/a": 1}});
        assert_eq!(
            kept.patch_to(&new, &new.to_string()),
            Some(json!({"phase": "Failed", "jobs": {"shop/b": null}}))
        );
    }
}
