//! Waiting for a stage's applied objects (other than Jobs) to be healthy,
//! all at once, within the stage's timeout.

use std::time::Duration;

use futures::future::join_all;

use super::engine::Engine;
use super::error::ApplyError;
use super::item::Item;
use crate::cluster::health::Health;
use crate::cluster::health::wait::{Progress, wait_ready};

async fn wait_one<'i>(
    api: kube::Api<kube::api::DynamicObject>,
    item: &'i Item,
    progress: &Progress,
) -> (&'i Item, Health) {
    (
        item,
        wait_ready(api, &item.name, &item.kind, progress).await,
    )
}

pub(super) async fn wait_all(
    engine: &Engine,
    items: &[&Item],
    timeout: Duration,
) -> Result<(), ApplyError> {
    if items.is_empty() {
        return Ok(());
    }
    let progress: Vec<Progress> = items.iter().map(|_| Progress::default()).collect();
    let mut waits = Vec::new();
    for (item, progress) in items.iter().zip(&progress) {
        if let Some(api) = item.api(&engine.client) {
            waits.push(wait_one(api, item, progress));
        }
    }
    match tokio::time::timeout(timeout, join_all(waits)).await {
        Ok(results) => {
            let failed: Vec<ApplyError> = results
                .into_iter()
                .filter_map(|(item, health)| match health {
                    Health::Failed(message) => Some(ApplyError::Unhealthy {
                        object: item.object_ref(),
                        message,
                    }),
                    _ => None,
                })
                .collect();
            ApplyError::from_all(failed)
        }
        Err(_) => {
            let waiting = items
                .iter()
                .zip(&progress)
                .map(|(item, p)| (item.object_ref(), p.get()))
                .filter(|(_, p)| !p.is_empty())
                .collect();
            Err(ApplyError::WaitTimeout {
                after: timeout,
                waiting,
            })
        }
    }
}

/// Kinds whose readiness means more than "applied".
pub(super) fn needs_wait(item: &Item) -> bool {
    !matches!(
        item.kind.as_str(),
        "ConfigMap"
            | "Secret"
            | "Service"
            | "ServiceAccount"
            | "Namespace"
            | "Role"
            | "RoleBinding"
            | "ClusterRole"
            | "ClusterRoleBinding"
            | "CronJob"
            | "Lease"
            | "Event"
            | "PersistentVolumeClaim"
            | "NetworkPolicy"
            | "PodDisruptionBudget"
            | "Ingress"
            | "LimitRange"
            | "ResourceQuota"
    ) && item.resolved.is_some()
}
