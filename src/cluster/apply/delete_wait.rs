//! Deleting an object and waiting, by watch, until it is gone, so that its
//! replacement can be created under the same name.

use std::fmt::Debug;
use std::time::Duration;

use kube::api::{DeleteParams, DynamicObject};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

use super::api_call::{Verb, call};
use super::engine::Engine;
use super::error::{ApplyError, DeleteError};
use super::item::Item;

/// Delete `name` with `params` and wait until the server no longer has that
/// object (its uid), for at most `timeout`. `target` names the object in
/// errors (`Job.batch shop/migrate`).
pub async fn delete_and_wait_for<K>(
    api: &Api<K>,
    name: &str,
    target: &str,
    params: &DeleteParams,
    timeout: Duration,
) -> Result<(), DeleteError>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let target = target.to_string();
    let Some(live) = call(Verb::Get, &target, || api.get_opt(name)).await? else {
        return Ok(());
    };
    let uid = live.meta().uid.clone().unwrap_or_default();
    match call(Verb::Delete, &target, || api.delete(name, params)).await {
        Ok(_) => {}
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    match tokio::time::timeout(
        timeout,
        await_condition(api.clone(), name, conditions::is_deleted(&uid)),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(DeleteError::Watch {
            target,
            message: e.to_string(),
        }),
        Err(_) => Err(DeleteError::StillPresent {
            target,
            after: timeout,
        }),
    }
}

/// Recreate path for an object whose immutable field changed. Background
/// propagation: the object goes at once and its dependents (a Deployment's
/// ReplicaSets) are collected after; the replacement brings its own.
pub(super) async fn delete_and_wait(
    engine: &Engine,
    api: &Api<DynamicObject>,
    item: &Item,
) -> Result<(), ApplyError> {
    delete_and_wait_for(
        api,
        &item.name,
        &item.object_ref().to_string(),
        &DeleteParams::background(),
        engine.settings.default_timeout,
    )
    .await
    .map_err(|source| ApplyError::Delete {
        object: item.object_ref(),
        source: Box::new(source),
    })
}
