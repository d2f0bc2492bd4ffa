//! Writing objects: server-side apply, a group at a time, skipping what is
//! unchanged since the last apply; an immutable field recreates the object
//! when the stage allows it.

use std::collections::{BTreeMap, HashMap};

use futures::{StreamExt, stream};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::Patch;
use kube::runtime::wait::{await_condition, conditions};
use tracing::{info, warn};

use super::api_call::{Verb, call};
use super::drift::{LiveIndex, fingerprint};
use super::engine::{Engine, StageRun, apply_params};
use super::error::{ApplyError, api_status, is_immutable_field};
use super::item::Item;
use super::tally::Tally;
use crate::cluster::events::Reason;
use crate::cluster::state::{InventoryEntry, StageState};
use crate::core::object::ObjectRef;

/// Objects found unchanged since the last apply, with their recorded entry.
pub(super) type Unchanged = HashMap<ObjectRef, InventoryEntry>;

pub(super) struct Applied {
    pub resource_version: String,
    pub recreated: bool,
}

impl Engine {
    /// Objects whose rendered form is what was last applied and whose
    /// stagegate-managed fields have not moved since: read from the
    /// engine's shared listing of each kind and namespace (see `drift.rs`),
    /// not with requests of this stage's own.
    pub(super) async fn unchanged(
        &self,
        run: &StageRun<'_>,
        items: &[Item],
        state: &StageState,
    ) -> Unchanged {
        let recorded: HashMap<_, &InventoryEntry> = state
            .inventory
            .iter()
            .map(|e| (e.object_ref(), e))
            .collect();
        let mut groups: BTreeMap<(&str, &str, Option<&str>), Vec<&Item>> = BTreeMap::new();
        for item in items.iter().filter(|i| i.resolved.is_some() && !i.is_job()) {
            if recorded
                .get(&item.object_ref())
                .is_some_and(|e| e.hash == item.hash && !e.resource_version.is_empty())
            {
                let key = (
                    item.api_version.as_str(),
                    item.kind.as_str(),
                    item.namespace.as_deref(),
                );
                groups.entry(key).or_default().push(item);
            }
        }
        let mut unchanged = Unchanged::new();
        for ((api_version, kind, namespace), group) in groups {
            let Some(api) = group[0].api(&self.client) else {
                continue;
            };
            let key = (
                api_version.to_string(),
                kind.to_string(),
                namespace.map(str::to_string),
            );
            let live = self.live.listing(key, &api).await;
            for item in group {
                let oref = item.object_ref();
                if let Some(entry) = recorded.get(&oref)
                    && LiveIndex::same(&live, &item.name, run.name(), &entry.resource_version)
                {
                    unchanged.insert(oref, (*entry).clone());
                }
            }
        }
        unchanged
    }

    /// Apply a group of objects at once; every failure is reported.
    pub(super) async fn apply_group(
        &self,
        run: &StageRun<'_>,
        group: &[&Item],
        unchanged: &Unchanged,
        tally: &mut Tally,
    ) -> Result<(), ApplyError> {
        let tasks: Vec<_> = group
            .iter()
            .map(|item| self.apply_unless_unchanged(run, item, unchanged))
            .collect();
        let results = stream::iter(tasks)
            .buffer_unordered(self.settings.concurrency.max(1))
            .collect::<Vec<_>>()
            .await;
        let mut errors = Vec::new();
        for (item, result) in results {
            match result {
                Ok(None) => {
                    tally.report.unchanged += 1;
                    if let Some(recorded) = unchanged.get(&item.object_ref()) {
                        tally.record(recorded.clone());
                    }
                }
                Ok(Some(applied)) => {
                    let key = (
                        item.api_version.clone(),
                        item.kind.clone(),
                        item.namespace.clone(),
                    );
                    let fingerprint = &applied.resource_version;
                    self.live.applied(&key, &item.name, run.name(), fingerprint);
                    tally.report.applied += 1;
                    if applied.recreated {
                        tally.report.recreated += 1;
                    }
                    tally.record(item.inventory_entry(applied.resource_version));
                }
                Err(e) => errors.push(e),
            }
        }
        ApplyError::from_all(errors)
    }

    async fn apply_unless_unchanged<'i>(
        &self,
        run: &StageRun<'_>,
        item: &'i Item,
        unchanged: &Unchanged,
    ) -> (&'i Item, Result<Option<Applied>, ApplyError>) {
        if unchanged.contains_key(&item.object_ref()) {
            return (item, Ok(None));
        }
        (item, self.apply_object(run, item).await.map(Some))
    }

    pub(super) async fn wait_crd_established(&self, crd: &Item) -> Result<(), ApplyError> {
        let api: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        let wait = await_condition(api, &crd.name, conditions::is_crd_established());
        match tokio::time::timeout(self.settings.default_timeout, wait).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(ApplyError::CrdWait {
                object: crd.object_ref(),
                message: e.to_string(),
            }),
            Err(_) => Err(ApplyError::CrdNotEstablished {
                object: crd.object_ref(),
            }),
        }
    }

    /// Server-side apply one object; an immutable-field rejection recreates it
    /// when the stage allows (`force`), and fails naming it otherwise.
    pub(super) async fn apply_object(
        &self,
        run: &StageRun<'_>,
        item: &Item,
    ) -> Result<Applied, ApplyError> {
        let object = item.object_ref();
        let api = item.api(&self.client).ok_or_else(|| ApplyError::Invalid {
            object: object.clone(),
            message: "kind not resolved".into(),
        })?;
        let (params, patch) = (apply_params(), Patch::Apply(&item.value));
        let apply = || api.patch(&item.name, &params, &patch);
        let error = match call(Verb::Apply, &object, apply).await {
            Ok(obj) => {
                return Ok(Applied {
                    resource_version: fingerprint(&obj.metadata),
                    recreated: false,
                });
            }
            Err(error) => error,
        };
        if !is_immutable_field(&error.source) {
            warn!(stage = run.name(), object = %object, error = %error, "apply failed");
            return Err(match api_status(&error.source) {
                Some(status) => ApplyError::Rejected {
                    object,
                    code: status.code,
                    message: status.message.clone(),
                },
                None => ApplyError::Call {
                    object,
                    source: Box::new(error),
                },
            });
        }
        let message = api_status(&error.source)
            .map(|s| s.message.clone())
            .unwrap_or_default();
        if !run.planned.stage.force {
            return Err(ApplyError::Immutable { object, message });
        }
        self.recreate(run, &api, item, &message).await
    }

    async fn recreate(
        &self,
        run: &StageRun<'_>,
        api: &Api<kube::api::DynamicObject>,
        item: &Item,
        message: &str,
    ) -> Result<Applied, ApplyError> {
        let object = item.object_ref();
        info!(stage = run.name(), object = %object, "immutable field changed; recreating (force)");
        super::delete_wait::delete_and_wait(self, api, item).await?;
        let (params, patch) = (apply_params(), Patch::Apply(&item.value));
        let apply = || api.patch(&item.name, &params, &patch);
        let created =
            call(Verb::Apply, &object, apply)
                .await
                .map_err(|source| ApplyError::Call {
                    object,
                    source: Box::new(source),
                })?;
        let note = format!("recreated because an immutable field changed: {message}");
        run.emit(item, created.metadata.uid.clone(), Reason::Recreated, note);
        Ok(Applied {
            resource_version: fingerprint(&created.metadata),
            recreated: true,
        })
    }
}
