//! Deleting an object and waiting, by watch, until it is gone, so that its
//! replacement can be created under the same name.

use std::fmt::Debug;
use std::time::Duration;

use kube::api::{DeleteParams, DynamicObject};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

use super::engine::Engine;
use super::error::{ApplyError, is_not_found};
use super::item::Item;

/// Delete `name` with `params` and wait until the server no longer has that
/// object (its uid), for at most `timeout`.
pub async fn delete_and_wait_for<K>(
    api: &Api<K>,
    name: &str,
    params: &DeleteParams,
    timeout: Duration,
) -> Result<(), kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let Some(live) = api.get_opt(name).await? else {
        return Ok(());
    };
    let uid = live.meta().uid.clone().unwrap_or_default();
    match api.delete(name, params).await {
        Ok(_) => {}
        Err(e) if is_not_found(&e) => return Ok(()),
        Err(e) => return Err(e),
    }
    match tokio::time::timeout(
        timeout,
        await_condition(api.clone(), name, conditions::is_deleted(&uid)),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(kube::Error::Service(Box::new(e))),
        Err(_) => Err(kube::Error::Service(
            format!(
                "{name} still present {} after deletion",
                humantime::format_duration(timeout)
            )
            .into(),
        )),
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
        &DeleteParams::background(),
        engine.settings.default_timeout,
    )
    .await
    .map_err(|source| ApplyError::Kube {
        object: item.object_ref(),
        source,
    })
}
