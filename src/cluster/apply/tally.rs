//! What one apply has done so far: the inventory it builds and its report,
//! added to by every step.

use std::collections::BTreeMap;

use super::error::ApplyError;
use super::job_runner::JobTaskResult;
use super::report::StageReport;
use crate::cluster::state::{InventoryEntry, StageState};
use crate::core::object::ObjectRef;

/// Applied objects of this apply, by identity.
pub(super) type Inventory = BTreeMap<ObjectRef, InventoryEntry>;

#[derive(Default)]
pub(super) struct Tally {
    pub inventory: Inventory,
    pub report: StageReport,
}

impl Tally {
    pub fn record(&mut self, entry: InventoryEntry) {
        self.inventory.insert(entry.object_ref(), entry);
    }

    /// Record a Job task's runs and inventory entry; its failure, if any.
    pub fn absorb_job(
        &mut self,
        state: &mut StageState,
        result: JobTaskResult,
    ) -> Option<ApplyError> {
        let job = result.report.job.clone();
        let had_history = state.jobs.contains_key(&job);
        for (key, run) in result.runs {
            state.jobs.entry(key).or_default().record(run);
        }
        if had_history || state.jobs.contains_key(&job) {
            // `status` says which Jobs are hooks.
            state.jobs.entry(job).or_default().hook =
                result.report.hook.map(|p| p.label().to_string());
        }
        if let Some(taken) = &result.rerun_taken {
            state.rerun.remove(taken);
        }
        // A Job not in the cluster any more (TTL, a hook's delete policy) keeps
        // its earlier entry, carried over by `merge_inventory`.
        if let Some(entry) = result.inventory {
            self.record(entry);
        }
        if result.recreated {
            self.report.recreated += 1;
        }
        self.report.jobs.push(result.report);
        result.failure
    }
}

/// This apply's entries, and the earlier ones it did not replace.
pub(super) fn merge_inventory(
    mut inventory: Inventory,
    carried: Vec<InventoryEntry>,
) -> Vec<InventoryEntry> {
    for entry in carried {
        inventory.entry(entry.object_ref()).or_insert(entry);
    }
    inventory.into_values().collect()
}
