//! Simulated controllers, standing in for kube-controller-manager and the
//! kubelets: one loop wakes every tick and moves Jobs, Pods, rollouts and
//! the ReplicaSets and pods of workloads on.

pub mod deployment;
pub mod job;
pub mod pods;
pub mod recorder;
pub mod rollout;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::SimConfig;
use crate::server::Shared;
use crate::store::Store;

/// Runs until the server shuts down.
pub async fn run(shared: Arc<Shared>, config: SimConfig) {
    let mut rollouts = rollout::Tracker::default();
    let mut deployments = Settled::default();
    let mut workloads = Settled::default();
    let mut shutdown = shared.shutdown.subscribe();
    let mut interval = tokio::time::interval(config.tick.max(Duration::from_millis(5)));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = shutdown.changed() => return,
        }
        let mut store = shared
            .store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        job::reconcile_all(&mut store, &config);
        rollouts.reconcile_all(&mut store, &config);
        deployment::reconcile_all(&mut store, &mut deployments);
        pods::reconcile_all(&mut store, &mut workloads);
        store.collect_garbage();
    }
}

/// Owners a controller found nothing to do for, by uid, with a stamp of
/// what it read (the resourceVersions of the owner and of the objects it
/// owns). A real controller works only on what its watches say changed;
/// here an owner whose stamp is the same as when it last settled is
/// skipped, so a tick costs little for a thousand idle Deployments and the
/// API, which waits for the tick's lock, stays responsive.
#[derive(Default)]
pub struct Settled {
    stamps: HashMap<String, u64>,
    /// Owners seen this tick: the others are forgotten at its end.
    seen: HashMap<String, u64>,
}

impl Settled {
    /// Whether `owner`, with `owned`, is as it was when it last settled;
    /// otherwise its stamp, to pass to [`Self::settle_if`].
    pub fn check(&mut self, owner: &Value, owned: &[Arc<Value>]) -> Result<(), u64> {
        let uid = crate::util::uid_of(owner);
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        for obj in std::iter::once(owner).chain(owned.iter().map(|o| &**o)) {
            crate::util::str_at(obj, "/metadata/resourceVersion").hash(&mut hasher);
        }
        let stamp = hasher.finish();
        match self.stamps.get(uid) {
            Some(&s) if s == stamp => {
                self.seen.insert(uid.to_string(), stamp);
                Ok(())
            }
            _ => Err(stamp),
        }
    }

    /// The reconcile of `owner` (stamp `stamp`) ran; it settled when it
    /// wrote nothing (the store's resourceVersion did not move).
    pub fn settle_if(&mut self, owner: &Value, stamp: u64, rv_before: u64, store: &Store) {
        if store.current_rv() == rv_before {
            self.seen
                .insert(crate::util::uid_of(owner).to_string(), stamp);
        }
    }

    /// The tick is over: owners not seen in it are gone or changed.
    pub fn end_tick(&mut self) {
        self.stamps = std::mem::take(&mut self.seen);
    }
}
