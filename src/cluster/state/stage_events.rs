//! Events on a `Stage` object: each transition is an Event of its own with
//! its current message, so `kubectl describe stage pre` and `kubectl events
//! --for stage/pre` tell the stage's history. (A recorder that folds Events
//! by reason into one series would keep the first message of the series; a
//! steady agent emits one Event per transition, so there is nothing to fold.)

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

pub use crate::cluster::events::EventKind;
use crate::cluster::events::truncate_note;

#[derive(Clone)]
pub struct StageEvents {
    client: Client,
    instance: String,
}

impl StageEvents {
    pub fn new(client: Client) -> Self {
        let instance = std::env::var("POD_NAME")
            .unwrap_or_else(|_| format!("stagegate-{}", std::process::id()));
        Self { client, instance }
    }

    /// Record an Event about `regarding`; a failure is logged, never fatal.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        kind: EventKind,
        reason: &str,
        action: &str,
        note: &str,
    ) {
        let namespace = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let now = jiff::Timestamp::now();
        let name = format!(
            "{}.{:x}",
            regarding.name.as_deref().unwrap_or("stagegate"),
            now.as_nanosecond()
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            type_: Some(
                match kind {
                    EventKind::Normal => "Normal",
                    EventKind::Warning => "Warning",
                }
                .into(),
            ),
            reason: Some(reason.into()),
            action: Some(action.into()),
            note: Some(truncate_note(note)),
            regarding: Some(regarding.clone()),
            reporting_controller: Some("stagegate".into()),
            reporting_instance: Some(self.instance.clone()),
            ..Event::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        if let Err(e) = api.create(&PostParams::default(), &event).await {
            tracing::warn!(
                object = regarding.name.as_deref().unwrap_or_default(),
                reason,
                error = %e,
                "could not record event"
            );
        }
    }
}
