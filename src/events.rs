//! Kubernetes Events about the objects stagegate touches. Publishing an Event
//! never fails a stage: an Event that cannot be written is logged instead.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

#[derive(Clone)]
pub struct EventSink {
    recorder: Recorder,
}

/// Event notes are limited to 1 kB by the API server.
const NOTE_LIMIT: usize = 1000;

impl EventSink {
    pub fn new(client: Client, instance: Option<String>) -> Self {
        let reporter = Reporter {
            controller: "stagegate".into(),
            instance,
        };
        Self {
            recorder: Recorder::new(client, reporter),
        }
    }

    pub async fn normal(
        &self,
        regarding: &ObjectReference,
        reason: &str,
        action: &str,
        note: &str,
    ) {
        self.publish(regarding, EventType::Normal, reason, action, note)
            .await;
    }

    pub async fn warning(
        &self,
        regarding: &ObjectReference,
        reason: &str,
        action: &str,
        note: &str,
    ) {
        self.publish(regarding, EventType::Warning, reason, action, note)
            .await;
    }

    async fn publish(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: &str,
    ) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(truncate_note(note)),
            action: action.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, regarding).await {
            tracing::warn!(
                object = regarding.name.as_deref().unwrap_or_default(),
                reason,
                error = %e,
                "could not record event"
            );
        }
    }
}

/// Keep the end of a long note: for a log tail the last lines matter most.
pub(crate) fn truncate_note(note: &str) -> String {
    if note.len() <= NOTE_LIMIT {
        return note.to_string();
    }
    let mut start = note.len() - (NOTE_LIMIT - 4);
    while !note.is_char_boundary(start) {
        start += 1;
    }
    format!("... {}", &note[start..])
}

/// What publishing Events needs (see [`crate::rbac`]).
pub const PERMISSIONS: &[crate::rbac::Permission] = &[crate::rbac::Permission {
    group: "events.k8s.io",
    resource: "events",
    verbs: &["create", "patch"],
    cluster_wide: true,
    why: "Events on the objects stagegate applies (Jobs recreated or failed) and on its Stage objects and the source ConfigMap",
}];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_notes_keep_their_end() {
        let note = format!("{}END", "x".repeat(3000));
        let t = truncate_note(&note);
        assert!(t.len() <= NOTE_LIMIT && t.ends_with("END") && t.starts_with("... "));
    }
}
