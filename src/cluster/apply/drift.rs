//! Recognising an object nobody changed since stagegate applied it, from its
//! metadata alone.
//!
//! The resourceVersion cannot tell: controllers write status all the time (a
//! Deployment's rollout), which moves it without anything drifting. What
//! stagegate owns is recorded by the server in `managedFields`: its entry
//! (manager `stagegate`, operation Apply) changes only when stagegate applies
//! something new, or when another writer takes a field over from it.
//!
//! The live side is read once per kind and namespace for all stages (a
//! [`LiveIndex`]): one LIST by stagegate's label serves every stage with
//! objects of that kind there, so a cycle costs a few requests whatever the
//! number of stages, not one or two per stage, each scanning the whole
//! namespace on the server.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::Api;
use kube::api::{DynamicObject, ListParams, ObjectMeta};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use super::engine::Engine;
use crate::core::labels::{FIELD_MANAGER, MANAGED_BY_KEY, MANAGED_BY_VALUE, STAGE_LABEL};

/// Objects read per page of the index's LIST: a bound on one response's
/// memory, whatever the number of stages.
const PAGE: u32 = 100;

/// How old a listing may be when a stage compares against it. A drift check
/// is always a snapshot (an object can change a moment after it is read), so
/// one shared listing a few seconds old is the same check made a few seconds
/// earlier; a new cycle starts from a fresh one anyway
/// ([`Engine::begin_cycle`]).
const MAX_AGE: Duration = Duration::from_secs(10);

/// What the index knows of one live object stagegate labelled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveObject {
    /// Its `stagegate.dev/stage` label.
    pub stage: String,
    /// [`fingerprint`] of stagegate's managed-fields entry.
    pub fingerprint: String,
}

/// Live objects of one kind in one namespace, by name; `None` when the
/// LIST failed (then every object of that kind is simply applied). What
/// this engine applies afterwards is written into it (see
/// [`LiveIndex::applied`]), so it never contradicts the engine's own writes.
type Listing = Option<Arc<Mutex<HashMap<String, LiveObject>>>>;

/// `(apiVersion, kind, namespace)`.
pub type ListKey = (String, String, Option<String>);

struct Entry {
    taken: Instant,
    listing: Arc<OnceCell<Listing>>,
}

/// Stagegate's live objects, one LIST per kind and namespace, shared by every
/// stage of a cycle. Stages asking for the same kind at once wait for the
/// one LIST in flight instead of sending their own.
#[derive(Default)]
pub struct LiveIndex {
    lists: Mutex<HashMap<ListKey, Entry>>,
}

impl LiveIndex {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ListKey, Entry>> {
        // A panic while holding it leaves a plain map behind: still usable.
        self.lists.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forget every listing: the next check reads the cluster again.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// The listing of `key`, read through `api` unless a recent one exists.
    pub async fn listing(&self, key: ListKey, api: &Api<DynamicObject>) -> Listing {
        let cell = {
            let mut lists = self.lock();
            let fresh = lists.get(&key).is_some_and(|e| e.taken.elapsed() < MAX_AGE);
            if !fresh {
                lists.insert(
                    key.clone(),
                    Entry {
                        taken: Instant::now(),
                        listing: Arc::new(OnceCell::new()),
                    },
                );
            }
            lists.get(&key).map(|e| e.listing.clone())
        };
        let cell = cell?;
        cell.get_or_init(|| list_labelled(api)).await.clone()
    }

    /// Whether `name` is, by the listing of `key`, the object of `stage`
    /// with stagegate's fields as `fingerprint`.
    pub fn same(listing: &Listing, name: &str, stage: &str, fingerprint: &str) -> bool {
        let Some(listing) = listing else {
            return false;
        };
        let live = listing.lock().unwrap_or_else(|e| e.into_inner());
        live.get(name)
            .is_some_and(|o| o.stage == stage && o.fingerprint == fingerprint)
    }

    /// Whether the listing holds `name` as an object of `stage`.
    pub fn holds(live: &Mutex<HashMap<String, LiveObject>>, name: &str, stage: &str) -> bool {
        let live = live.lock().unwrap_or_else(|e| e.into_inner());
        live.get(name).is_some_and(|o| o.stage == stage)
    }

    /// This engine applied `name` (of `key`), whose managed fields are now
    /// `fingerprint`: a listing taken before says so from now on.
    pub fn applied(&self, key: &ListKey, name: &str, stage: &str, fingerprint: &str) {
        let listing = self
            .lock()
            .get(key)
            .and_then(|e| e.listing.get().cloned().flatten());
        if let Some(listing) = listing {
            let object = LiveObject {
                stage: stage.to_string(),
                fingerprint: fingerprint.to_string(),
            };
            let mut live = listing.lock().unwrap_or_else(|e| e.into_inner());
            live.insert(name.to_string(), object);
        }
    }
}

/// Every object of `api` stagegate labelled, metadata only, a page at a time.
async fn list_labelled(api: &Api<DynamicObject>) -> Listing {
    let selector = format!("{MANAGED_BY_KEY}={MANAGED_BY_VALUE},{STAGE_LABEL}");
    let mut params = ListParams::default().labels(&selector).limit(PAGE);
    let mut live = HashMap::new();
    loop {
        // An unanswered LIST only costs the writes it would have saved.
        let page = api.list_metadata(&params).await.ok()?;
        for object in &page.items {
            let meta = &object.metadata;
            let (Some(name), Some(stage)) = (
                meta.name.as_ref(),
                meta.labels.as_ref().and_then(|l| l.get(STAGE_LABEL)),
            ) else {
                continue;
            };
            let entry = LiveObject {
                stage: stage.clone(),
                fingerprint: fingerprint(meta),
            };
            live.insert(name.clone(), entry);
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Some(Arc::new(Mutex::new(live))),
        }
    }
}

impl Engine {
    /// A new cycle (a revision run, or a poll re-running one): drift checks
    /// read the cluster afresh.
    pub fn begin_cycle(&self) {
        self.live.clear();
    }
}

/// A short fingerprint of stagegate's managed-fields entry; empty when
/// stagegate manages nothing on the object.
pub fn fingerprint(meta: &ObjectMeta) -> String {
    let entry = meta.managed_fields.iter().flatten().find(|m| {
        m.manager.as_deref() == Some(FIELD_MANAGER) && m.operation.as_deref() == Some("Apply")
    });
    let Some(entry) = entry else {
        return String::new();
    };
    let mut hasher = Sha256::new();
    hasher.update(entry.api_version.as_deref().unwrap_or_default());
    hasher.update(serde_json::to_vec(&entry.fields_v1).unwrap_or_default());
    hex::encode(&hasher.finalize()[..12])
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};

    fn meta(fields: serde_json::Value, manager: &str) -> ObjectMeta {
        ObjectMeta {
            resource_version: Some("1".into()),
            managed_fields: Some(vec![ManagedFieldsEntry {
                manager: Some(manager.into()),
                operation: Some("Apply".into()),
                api_version: Some("apps/v1".into()),
                fields_v1: Some(FieldsV1(fields)),
                ..ManagedFieldsEntry::default()
            }]),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn fingerprint_follows_our_fields_not_the_resource_version() {
        let a = meta(
            serde_json::json!({"f:spec": {"f:replicas": {}}}),
            "stagegate",
        );
        let mut b = a.clone();
        b.resource_version = Some("99".into());
        assert_eq!(fingerprint(&a), fingerprint(&b));
        let c = meta(serde_json::json!({"f:spec": {}}), "stagegate");
        assert_ne!(fingerprint(&a), fingerprint(&c));
        assert_eq!(fingerprint(&meta(serde_json::json!({}), "kubectl")), "");
    }
}
