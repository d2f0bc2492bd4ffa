//! Live health of a stage's objects, read from the cluster when someone
//! opens the stage on the page: the state records what was applied, not how
//! it is doing now. Secrets are never read: the page shows them by name.

use futures::{StreamExt, stream};
use kube::Client;
use kube::api::{Api, DynamicObject};
use serde::Serialize;

use super::report::ObjectReport;
use crate::cluster::apply::resolve::Resolver;
use crate::cluster::health::{Health, evaluate};

/// Objects read at once; a stage may hold hundreds.
const CONCURRENCY: usize = 8;
/// More than this and the page shows the first ones only.
pub const MAX_OBJECTS: usize = 300;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectHealth {
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    pub health: HealthState,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum HealthState {
    Ready,
    Progressing,
    Failed,
    /// Applied once, gone from the cluster now.
    Missing,
    /// Not read (a Secret) or not readable (an error, in the message).
    Unknown,
}

/// The health of each object, in the order given.
pub async fn of_objects(
    client: &Client,
    resolver: &Resolver,
    objects: &[ObjectReport],
) -> Vec<ObjectHealth> {
    // Owned items: borrowed ones trip the compiler's Send check of the
    // handler's future (higher-ranked lifetimes in `buffered`).
    stream::iter(objects.iter().take(MAX_OBJECTS).cloned())
        .map(|object| async move { of_object(client, resolver, &object).await })
        .buffered(CONCURRENCY)
        .collect()
        .await
}

async fn of_object(client: &Client, resolver: &Resolver, object: &ObjectReport) -> ObjectHealth {
    let (health, message) = match read(client, resolver, object).await {
        Ok(found) => found,
        Err(error) => (HealthState::Unknown, error.to_string()),
    };
    ObjectHealth {
        kind: object.kind.clone(),
        namespace: object.namespace.clone(),
        name: object.name.clone(),
        health,
        message,
    }
}

/// Why an object's live health is unknown; the page shows the message.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error("{0}")]
    Resolve(crate::cluster::apply::api_call::CallError),
    #[error("{0}")]
    Get(#[from] kube::Error),
    #[error("{0}")]
    Json(#[from] serde_json::Error),
}

async fn read(
    client: &Client,
    resolver: &Resolver,
    object: &ObjectReport,
) -> Result<(HealthState, String), ReadError> {
    if object.api_version == "v1" && object.kind == "Secret" {
        return Ok((HealthState::Unknown, "Secrets are not read".into()));
    }
    let Some(resolved) = resolver
        .resolve(&object.api_version, &object.kind)
        .await
        .map_err(ReadError::Resolve)?
    else {
        return Ok((HealthState::Missing, "kind not served".into()));
    };
    let api: Api<DynamicObject> = match (&object.namespace, resolved.namespaced) {
        (Some(ns), true) => Api::namespaced_with(client.clone(), ns, &resolved.resource),
        _ => Api::all_with(client.clone(), &resolved.resource),
    };
    let Some(live) = api.get_opt(&object.name).await? else {
        return Ok((HealthState::Missing, String::new()));
    };
    if live.metadata.deletion_timestamp.is_some() {
        return Ok((HealthState::Progressing, "being deleted".into()));
    }
    let value = serde_json::to_value(&live)?;
    Ok(match evaluate(&object.kind, &value) {
        Health::Ready => (HealthState::Ready, String::new()),
        Health::Progressing(why) => (HealthState::Progressing, why),
        Health::Failed(why) => (HealthState::Failed, why),
    })
}
