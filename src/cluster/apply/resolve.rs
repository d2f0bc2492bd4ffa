//! Kinds to API resources, through discovery, cached per engine. Only the
//! group/version of a kind is queried, not the whole cluster's discovery.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::Client;
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::{Scope, pinned_kind};
use tokio::sync::OnceCell;

use super::api_call::{CallError, Verb, call};

#[derive(Debug, Clone)]
pub struct Resolved {
    pub resource: ApiResource,
    pub namespaced: bool,
}

pub struct Resolver {
    client: Client,
    /// One cell per kind: stages asking for the same kind at once wait for
    /// one discovery call instead of each making its own (a layer of a
    /// hundred stages would otherwise ask a hundred times).
    cache: Mutex<Cells>,
}

/// Per `(apiVersion, kind)`, the cell its resolution lands in.
type Cells = HashMap<(String, String), Arc<OnceCell<Resolved>>>;

/// Why a kind was not resolved: not served (not cached, asked again next
/// time, as a CRD of the same stage may be on its way), or the call failed.
enum Unresolved {
    NotServed,
    Call(CallError),
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
        let cell = self.lock().entry(key).or_default().clone();
        match cell
            .get_or_try_init(|| self.discover(api_version, kind))
            .await
        {
            Ok(resolved) => Ok(Some(resolved.clone())),
            Err(Unresolved::NotServed) => Ok(None),
            Err(Unresolved::Call(e)) => Err(e),
        }
    }

    async fn discover(&self, api_version: &str, kind: &str) -> Result<Resolved, Unresolved> {
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
        .await
        .map_err(Unresolved::Call)?;
        let (resource, caps) = found.ok_or(Unresolved::NotServed)?;
        Ok(Resolved {
            resource,
            namespaced: caps.scope == Scope::Namespaced,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cells> {
        // A panic elsewhere cannot leave the map half-written: entries are
        // inserted whole, so a poisoned lock is still consistent.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}
