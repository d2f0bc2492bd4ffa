//! Kinds to API resources, through discovery, cached per engine. Only the
//! group/version of a kind is queried, not the whole cluster's discovery.

use std::collections::HashMap;
use std::sync::Mutex;

use kube::Client;
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::{Scope, pinned_kind};

use super::api_call::{CallError, Verb, call};

#[derive(Debug, Clone)]
pub struct Resolved {
    pub resource: ApiResource,
    pub namespaced: bool,
}

pub struct Resolver {
    client: Client,
    cache: Mutex<HashMap<(String, String), Resolved>>,
}

impl Resolver {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// `Ok(None)` when the cluster does not serve the kind (yet: a CRD in the
    /// same stage may still be on its way). Unknown kinds are not cached.
    pub async fn resolve(
        &self,
        api_version: &str,
        kind: &str,
    ) -> Result<Option<Resolved>, CallError> {
        let key = (api_version.to_string(), kind.to_string());
        if let Some(hit) = self.lock().get(&key) {
            return Ok(Some(hit.clone()));
        }
        let (group, version) = match api_version.rsplit_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let target = format!("{api_version}/{kind}");
        let found = call(Verb::Discover, &target, || async {
            match pinned_kind(&self.client, &gvk).await {
                Ok(found) => Ok(Some(found)),
                Err(kube::Error::Discovery(_)) => Ok(None),
                Err(e) if crate::cluster::client::is_not_found(&e) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .await?;
        let Some((resource, caps)) = found else {
            return Ok(None);
        };
        let resolved = Resolved {
            resource,
            namespaced: caps.scope == Scope::Namespaced,
        };
        self.lock().insert(key, resolved.clone());
        Ok(Some(resolved))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Resolved>> {
        // A panic elsewhere cannot leave the cache half-written: entries are
        // inserted whole, so a poisoned lock is still consistent.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}
