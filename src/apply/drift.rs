//! Recognising an object nobody changed since stagegate applied it, from its
//! metadata alone (one LIST per kind and namespace, metadata only).
//!
//! The resourceVersion cannot tell: controllers write status all the time (a
//! Deployment's rollout), which moves it without anything drifting. What
//! stagegate owns is recorded by the server in `managedFields`: its entry
//! (manager `stagegate`, operation Apply) changes only when stagegate applies
//! something new, or when another writer takes a field over from it.

use kube::api::ObjectMeta;
use sha2::{Digest, Sha256};

use crate::labels::FIELD_MANAGER;

/// A short fingerprint of stagegate's managed-fields entry; empty when
/// stagegate manages nothing on the object.
pub fn fingerprint(meta: &ObjectMeta) -> String {
    let entry = meta.managed_fields.iter().flatten().find(|m| {
        m.manager.as_deref() == Some(FIELD_MANAGER) && m.operation.as_deref() == Some("Apply")
    });
    let Some(entry) = entry else {
        return String::new();
    };
    let mut hasher = Sha256::new();
    hasher.update(entry.api_version.as_deref().unwrap_or_default());
    hasher.update(serde_json::to_vec(&entry.fields_v1).unwrap_or_default());
    hex::encode(&hasher.finalize()[..12])
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};

    fn meta(fields: serde_json::Value, manager: &str) -> ObjectMeta {
        ObjectMeta {
            resource_version: Some("1".into()),
            managed_fields: Some(vec![ManagedFieldsEntry {
                manager: Some(manager.into()),
                operation: Some("Apply".into()),
                api_version: Some("apps/v1".into()),
                fields_v1: Some(FieldsV1(fields)),
                ..ManagedFieldsEntry::default()
            }]),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn fingerprint_follows_our_fields_not_the_resource_version() {
        let a = meta(
            serde_json::json!({"f:spec": {"f:replicas": {}}}),
            "stagegate",
        );
        let mut b = a.clone();
        b.resource_version = Some("99".into());
        assert_eq!(fingerprint(&a), fingerprint(&b));
        let c = meta(serde_json::json!({"f:spec": {}}), "stagegate");
        assert_ne!(fingerprint(&a), fingerprint(&c));
        assert_eq!(fingerprint(&meta(serde_json::json!({}), "kubectl")), "");
    }
}
