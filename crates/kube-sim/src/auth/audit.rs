//! A record of who asked for what and whether RBAC allowed it, kept while a
//! test asks for it: how a test proves that an agent's ServiceAccount has
//! every permission it uses (and finds the calls it makes).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{Attributes, UserInfo};

/// One authorized (or refused) request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// The user the request ran as (after impersonation).
    pub user: String,
    pub verb: String,
    /// API group (`""` for core), empty for a non-resource path.
    pub group: String,
    /// Resource, with `/subresource` when there is one (`pods/log`).
    pub resource: String,
    /// Empty for cluster-scoped resources and non-resource paths.
    pub namespace: String,
    pub name: String,
    /// The URL path.
    pub path: String,
    pub allowed: bool,
    /// The 401/403 message when refused.
    pub message: String,
}

#[derive(Debug, Default)]
pub struct Audit {
    on: AtomicBool,
    entries: Mutex<Vec<AuditEntry>>,
}

impl Audit {
    pub fn start(&self) {
        self.on.store(true, Ordering::SeqCst);
    }

    pub fn entries(&self) -> Vec<AuditEntry> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn record(&self, user: Option<&UserInfo>, a: &Attributes, refusal: Option<&str>) {
        if !self.on.load(Ordering::Relaxed) {
            return;
        }
        let entry = AuditEntry {
            user: user.map(|u| u.name.clone()).unwrap_or_default(),
            verb: a.verb.clone(),
            group: a.group.clone(),
            resource: if a.resource_request {
                a.combined_resource()
            } else {
                String::new()
            },
            namespace: a.namespace.clone(),
            name: a.name.clone(),
            path: a.path.clone(),
            allowed: refusal.is_none(),
            message: refusal.unwrap_or_default().to_string(),
        };
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(entry);
    }
}
