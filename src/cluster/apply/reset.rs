//! Noticing that the cluster lost what it held (an API server restored
//! empty, a cluster rebuilt under the same name): the stage's recorded
//! objects are all gone. The record of Job runs then says nothing about this
//! cluster, and the gate must be checked against the cluster, not memory
//! (#13): a Job recorded as succeeded runs again.

use std::collections::{BTreeMap, HashSet};

use super::drift::LiveIndex;
use super::engine::{Engine, StageRun};
use super::item::{Item, Role};
use super::prepare::Prepared;
use super::server_side_apply::Unchanged;
use crate::cluster::state::StageState;
use crate::core::object::ObjectRef;

impl Engine {
    /// Whether every ordinary (non-hook, non-Job) object this stage recorded
    /// as applied is missing from the cluster. Free on a steady cycle: an
    /// object found unchanged answers no without a request. Unanswered LISTs
    /// answer no too: memory is trusted unless the cluster says otherwise.
    pub(super) async fn cluster_was_reset(
        &self,
        run: &StageRun<'_>,
        prepared: &Prepared,
        state: &StageState,
        unchanged: &Unchanged,
    ) -> bool {
        if !unchanged.is_empty() {
            return false;
        }
        let recorded: HashSet<ObjectRef> = state.inventory.iter().map(|e| e.object_ref()).collect();
        let mut groups: BTreeMap<(&str, &str, Option<&str>), Vec<&Item>> = BTreeMap::new();
        for item in prepared.items.iter().filter(|i| {
            i.role == Role::Main
                && i.hook.is_none()
                && !i.is_job()
                && i.resolved.is_some()
                && recorded.contains(&i.object_ref())
        }) {
            let key = (
                item.api_version.as_str(),
                item.kind.as_str(),
                item.namespace.as_deref(),
            );
            groups.entry(key).or_default().push(item);
        }
        if groups.is_empty() {
            return false;
        }
        for ((api_version, kind, namespace), group) in groups {
            let Some(api) = group[0].api(&self.client) else {
                return false;
            };
            let key = (
                api_version.to_string(),
                kind.to_string(),
                namespace.map(str::to_string),
            );
            // The engine's shared listing of the kind (see `drift.rs`).
            let Some(live) = self.live.listing(key, &api).await else {
                return false;
            };
            if group
                .iter()
                .any(|i| LiveIndex::holds(&live, &i.name, run.name()))
            {
                return false;
            }
        }
        true
    }
}
