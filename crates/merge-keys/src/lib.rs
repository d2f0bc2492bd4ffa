//! The list fields whose items strategic merge patch and server-side apply
//! merge by a key, as the Kubernetes Go types declare them
//! (`patchMergeKey`), told by field name alone. One table for the renderer's
//! patches (stagegate's `render::patch`) and for kube-sim's strategic merge
//! and field ownership: a key added here reaches both, so the renderer and
//! the cluster the tests run against cannot drift apart.
//!
//! A field not in the table is atomic: a patch replaces the list whole.

use std::borrow::Borrow;

use serde_json::Value;

/// List fields and the key their items merge on. `ports` is not here: its
/// key depends on whose ports they are (see [`merge_key`]).
pub const MERGE_KEYS: &[(&str, &str)] = &[
    ("containers", "name"),
    ("initContainers", "name"),
    ("ephemeralContainers", "name"),
    ("env", "name"),
    ("volumes", "name"),
    ("imagePullSecrets", "name"),
    ("resourceClaims", "name"),
    ("volumeMounts", "mountPath"),
    ("volumeDevices", "devicePath"),
    ("hostAliases", "ip"),
    ("conditions", "type"),
    ("ownerReferences", "uid"),
];

/// The key the items of list `field` merge on, `None` when the list is
/// atomic. A container's `ports` merge on `containerPort`, a Service's on
/// `port`: the name is the same, so the items tell which it is.
pub fn merge_key<T: Borrow<Value>>(field: &str, items: &[T]) -> Option<&'static str> {
    if field == "ports" {
        let container = items
            .iter()
            .any(|i| i.borrow().get("containerPort").is_some());
        return Some(if container { "containerPort" } else { "port" });
    }
    MERGE_KEYS
        .iter()
        .find(|(name, _)| *name == field)
        .map(|(_, key)| *key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lists_merge_on_the_key_their_go_type_declares() {
        let none: &[Value] = &[];
        assert_eq!(merge_key("containers", none), Some("name"));
        assert_eq!(merge_key("volumeMounts", none), Some("mountPath"));
        assert_eq!(merge_key("ownerReferences", none), Some("uid"));
        assert_eq!(merge_key("conditions", none), Some("type"));
        assert_eq!(merge_key("args", none), None, "atomic");
    }

    #[test]
    fn ports_are_told_apart_by_their_items() {
        let container = [json!({"containerPort": 80, "name": "http"})];
        let service = [json!({"port": 80, "targetPort": 8080})];
        assert_eq!(merge_key("ports", &container), Some("containerPort"));
        assert_eq!(merge_key("ports", &service), Some("port"));
        let refs: Vec<&Value> = container.iter().collect();
        assert_eq!(merge_key("ports", &refs), Some("containerPort"));
    }
}
