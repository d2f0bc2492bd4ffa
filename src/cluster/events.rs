//! Kubernetes Events about the objects stagegate applies. The apply engine
//! does not publish them: it notes them, typed ([`ObjectEvent`]), in its
//! report and, when given one, to an [`EventOutlet`] at the moment they
//! happen. The agent's outlet is an [`EventQueue`], which publishes them in
//! order while the stage still runs (a pod stuck pulling its image is said
//! when it is seen, not when the stage gives up). `diff` and the other
//! commands get the same report and publish nothing. Publishing an Event
//! never fails a stage: an Event that cannot be written is logged instead.

use std::fmt;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tokio::sync::mpsc;

use crate::core::object::ObjectRef;

/// An Event's type, as the API server knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Normal,
    Warning,
}

/// Why the engine has something to say about an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Deleted and created again: a Job whose spec hash changed or whose
    /// rerun was asked for, or an object whose immutable field changed.
    Recreated,
    /// A Job failed; the note holds the reason and the pod's log tail.
    Failed,
    /// A Job's pod cannot make progress (image pull, configuration).
    PodStuck,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Recreated => "Recreated",
            Reason::Failed => "Failed",
            Reason::PodStuck => "PodStuck",
        }
    }

    /// What stagegate was doing when it happened (the Event's `action`).
    pub fn action(self) -> &'static str {
        match self {
            Reason::Recreated => "Recreate",
            Reason::Failed | Reason::PodStuck => "Wait",
        }
    }

    pub fn kind(self) -> EventKind {
        match self {
            Reason::Recreated => EventKind::Normal,
            Reason::Failed | Reason::PodStuck => EventKind::Warning,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An Event to emit about one applied object, as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectEvent {
    pub object: ObjectRef,
    /// `group/version` (or `v1`), which the Event's reference needs.
    pub api_version: String,
    /// Which incarnation of the object: a recreated Job's new uid.
    pub uid: Option<String>,
    pub reason: Reason,
    /// What happened, for people; cut to the API's limit when published.
    pub note: String,
}

impl ObjectEvent {
    pub fn kind(&self) -> EventKind {
        self.reason.kind()
    }

    /// The reference the Event is recorded against.
    pub fn regarding(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some(self.api_version.clone()),
            kind: Some(self.object.kind.clone()),
            name: Some(self.object.name.clone()),
            namespace: self.object.namespace.clone(),
            uid: self.uid.clone(),
            ..ObjectReference::default()
        }
    }
}

/// Where the agent's Events about applied objects go.
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

    /// Publish what an apply reported, in the order it happened.
    pub async fn publish_all(&self, events: &[ObjectEvent]) {
        for event in events {
            self.publish(event).await;
        }
    }

    pub async fn publish(&self, event: &ObjectEvent) {
        let regarding = event.regarding();
        let record = Event {
            type_: match event.kind() {
                EventKind::Normal => EventType::Normal,
                EventKind::Warning => EventType::Warning,
            },
            reason: event.reason.as_str().into(),
            note: Some(truncate_note(&event.note)),
            action: event.reason.action().into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&record, &regarding).await {
            tracing::warn!(
                object = %event.object,
                reason = %event.reason,
                error = %crate::cluster::client::ServerMessage(&e),
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

/// What publishing Events needs (see [`crate::agent::rbac`]).
pub const PERMISSIONS: &[crate::core::permission::Permission] = &[
    crate::core::permission::Permission {
        group: "events.k8s.io",
        resource: "events",
        verbs: &["create", "patch"],
        cluster_wide: true,
        why: "Events on the objects stagegate applies (Jobs recreated or failed) and on its Stage objects and the source ConfigMap",
    },
];

/// Takes the engine's Events as they happen.
pub trait EventOutlet: Send + Sync {
    fn send(&self, event: ObjectEvent);
}

/// An [`EventSink`] fed through a queue: [`EventOutlet::send`] never waits,
/// and one task publishes the Events in the order they were sent.
pub struct EventQueue {
    queue: mpsc::UnboundedSender<Queued>,
}

enum Queued {
    Event(ObjectEvent),
    /// Answered once every Event sent before it is published.
    Flush(tokio::sync::oneshot::Sender<()>),
}

impl EventQueue {
    /// Start the task publishing to `sink`; it ends when the queue is dropped.
    pub fn start(sink: EventSink) -> Self {
        let (queue, mut events) = mpsc::unbounded_channel::<Queued>();
        tokio::spawn(async move {
            while let Some(queued) = events.recv().await {
                match queued {
                    Queued::Event(event) => sink.publish(&event).await,
                    Queued::Flush(done) => {
                        let _ = done.send(());
                    }
                }
            }
        });
        Self { queue }
    }

    /// Wait until every Event sent so far is published (or failed and
    /// logged): a stage's Events come before its transition.
    pub async fn flush(&self) {
        let (done, published) = tokio::sync::oneshot::channel();
        if self.queue.send(Queued::Flush(done)).is_ok() {
            let _ = published.await;
        }
    }
}

impl EventOutlet for EventQueue {
    fn send(&self, event: ObjectEvent) {
        if let Err(lost) = self.queue.send(Queued::Event(event))
            && let Queued::Event(event) = lost.0
        {
            tracing::warn!(object = %event.object, reason = %event.reason, "event not recorded: the agent is stopping");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_notes_keep_their_end() {
        let note = format!("{}END", "x".repeat(3000));
        let t = truncate_note(&note);
        assert!(t.len() <= NOTE_LIMIT && t.ends_with("END") && t.starts_with("... "));
    }

    #[test]
    fn an_event_refers_to_the_incarnation_it_is_about() {
        let event = ObjectEvent {
            object: ObjectRef {
                group: "batch".into(),
                kind: "Job".into(),
                namespace: Some("shop".into()),
                name: "migrate".into(),
            },
            api_version: "batch/v1".into(),
            uid: Some("u2".into()),
            reason: Reason::Recreated,
            note: "spec hash a -> b".into(),
        };
        let regarding = event.regarding();
        assert_eq!(regarding.api_version.as_deref(), Some("batch/v1"));
        assert_eq!(regarding.kind.as_deref(), Some("Job"));
        assert_eq!(regarding.namespace.as_deref(), Some("shop"));
        assert_eq!(regarding.name.as_deref(), Some("migrate"));
        assert_eq!(regarding.uid.as_deref(), Some("u2"));
        assert_eq!(event.kind(), EventKind::Normal);
        assert_eq!(Reason::PodStuck.kind(), EventKind::Warning);
        assert_eq!(Reason::Failed.action(), "Wait");
    }
}
