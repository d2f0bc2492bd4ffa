//! Waiting, driven by watches, for one object to become ready or fail.

use std::sync::Mutex;

use futures::StreamExt;
use kube::Api;
use kube::api::DynamicObject;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, watcher};

use super::{Health, evaluate};

/// The latest word on an object that is not ready yet; read when the stage
/// times out, to say why each object is still waiting.
#[derive(Debug, Default)]
pub struct Progress(Mutex<String>);

impl Progress {
    pub fn set(&self, message: impl Into<String>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = message.into();
    }

    pub fn get(&self) -> String {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Watch `name` until `evaluate` says Ready or Failed. Watch errors are
/// retried with backoff; the caller bounds the wait with the stage timeout.
pub async fn wait_ready(
    api: Api<DynamicObject>,
    name: &str,
    kind: &str,
    progress: &Progress,
) -> Health {
    progress.set("waiting for the first status");
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = watcher(api, config)
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Some(item) = stream.next().await {
        match item {
            Ok(obj) => {
                let value = serde_json::to_value(&obj).unwrap_or_default();
                match evaluate(kind, &value) {
                    Health::Progressing(message) => progress.set(message),
                    done => return done,
                }
            }
            Err(e) => {
                tracing::debug!(object = name, error = %e, "watch error, retrying");
                progress.set(format!("watch error: {e}"));
            }
        }
    }
    Health::Progressing("watch ended".into())
}
