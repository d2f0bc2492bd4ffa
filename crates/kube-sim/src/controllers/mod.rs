//! Simulated controllers, standing in for kube-controller-manager and the
//! kubelets: one loop wakes every tick and moves Jobs, Pods, rollouts and
//! the ReplicaSets and pods of workloads on.

pub mod deployment;
pub mod job;
pub mod pods;
pub mod recorder;
pub mod rollout;

use std::sync::Arc;
use std::time::Duration;

use crate::SimConfig;
use crate::server::Shared;

/// Runs until the server shuts down.
pub async fn run(shared: Arc<Shared>, config: SimConfig) {
    let mut rollouts = rollout::Tracker::default();
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
        deployment::reconcile_all(&mut store);
        pods::reconcile_all(&mut store);
        store.collect_garbage();
    }
}
