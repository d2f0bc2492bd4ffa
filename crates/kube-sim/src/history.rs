//! The server's own record of what changed, in resourceVersion order: how a
//! test proves, from the API server's side rather than from a client's
//! watch, that a Job was created once per spec or that an object was written
//! only after some Job completed. Off until asked for (it grows without bound).

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use crate::store::{Event, EventType};

/// What a change did to its object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeType {
    Created,
    Modified,
    Deleted,
}

/// One stored change.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// The cluster-wide resourceVersion the change was made at: changes are
    /// totally ordered by it.
    pub rv: u64,
    pub change: ChangeType,
    /// API group (`""` for core) and plural resource (`jobs`).
    pub group: String,
    pub resource: String,
    pub namespace: String,
    pub name: String,
    /// The object as stored by the change (its last state for a deletion).
    #[serde(serialize_with = "shared_value")]
    pub object: Arc<Value>,
}

impl Change {
    pub(crate) fn of(event: &Event) -> Change {
        Change {
            rv: event.rv,
            change: match event.etype {
                EventType::Added => ChangeType::Created,
                EventType::Modified => ChangeType::Modified,
                EventType::Deleted => ChangeType::Deleted,
            },
            group: event.key.0.clone(),
            resource: event.key.1.clone(),
            namespace: event.namespace.clone(),
            name: crate::util::name_of(&event.object).to_string(),
            object: event.object.clone(),
        }
    }

    /// A `metadata.annotations` value.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.object
            .get("metadata")?
            .get("annotations")?
            .get(key)?
            .as_str()
    }

    /// A `metadata.labels` value.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.object
            .get("metadata")?
            .get("labels")?
            .get(key)?
            .as_str()
    }

    /// Whether `status.conditions` holds `type` with status `"True"`
    /// (a Job's `Complete` or `Failed`).
    pub fn has_condition(&self, condition: &str) -> bool {
        self.object
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|cs| {
                cs.iter().any(|c| {
                    c.get("type").and_then(Value::as_str) == Some(condition)
                        && c.get("status").and_then(Value::as_str) == Some("True")
                })
            })
    }
}

fn shared_value<S: serde::Serializer>(v: &Arc<Value>, s: S) -> Result<S::Ok, S::Error> {
    v.as_ref().serialize(s)
}
