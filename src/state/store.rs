//! The state persisted in the ConfigMap `stagegate-state` of the agent's
//! namespace.
//!
//! `binaryData["state.json.gz"]` holds the whole [`State`], gzip-compressed:
//! inventories of large repositories compress well, and the object must stay
//! under the API server's 1 MiB limit. Only the agent writes it; writes use
//! the resourceVersion read last (optimistic concurrency), so a concurrent
//! `stagegate rerun` is never lost: it writes to `data["reruns"]`, a list of
//! requests the agent absorbs and then drops.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use serde::{Deserialize, Serialize};

use super::State;

pub const STATE_CONFIGMAP: &str = "stagegate-state";

/// What reading and writing the state needs (see [`crate::rbac`]).
pub const PERMISSIONS: &[crate::rbac::Permission] = &[crate::rbac::Permission {
    group: "",
    resource: "configmaps",
    verbs: &["get", "create", "update"],
    cluster_wide: false,
    why: "the state ConfigMap stagegate-state in the agent's namespace",
}];
const STATE_KEY: &str = "state.json.gz";
const RERUNS_KEY: &str = "reruns";
/// Room left under the 1 MiB object limit for metadata and rerun requests.
pub const STATE_LIMIT_BYTES: usize = 900 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state ConfigMap {namespace}/{STATE_CONFIGMAP}: {source}")]
    Kube {
        namespace: String,
        #[source]
        source: kube::Error,
    },
    #[error("state ConfigMap {namespace}/{STATE_CONFIGMAP} is unreadable: {message}")]
    Corrupt { namespace: String, message: String },
    #[error(
        "state of {stages} stages is {size} bytes compressed, over the {STATE_LIMIT_BYTES}-byte budget of one ConfigMap; \
         split the repository across agents or reduce the number of objects per stage"
    )]
    TooLarge { stages: usize, size: usize },
    #[error(
        "namespace {0} does not exist: create it (kubectl create namespace {0}) or install stagegate's manifests"
    )]
    MissingNamespace(String),
}

/// An operator's request to run a stage's Job again (`stagegate rerun`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RerunRequest {
    /// Increasing; the agent remembers the last one it absorbed.
    pub id: u64,
    pub stage: String,
    /// `namespace/name` of the Job, or `*` for every Job of the stage.
    pub job: String,
}

pub struct StateStore {
    api: Api<ConfigMap>,
    namespace: String,
}

impl StateStore {
    pub fn new(client: Client, namespace: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
        }
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn kube_err(&self, source: kube::Error) -> StateError {
        if crate::cluster::api_status(&source).is_some_and(|s| {
            s.code == 404 && s.details.as_ref().is_some_and(|d| d.kind == "namespaces")
        }) {
            return StateError::MissingNamespace(self.namespace.clone());
        }
        StateError::Kube {
            namespace: self.namespace.clone(),
            source,
        }
    }

    /// The persisted state (empty when none yet), with pending rerun requests absorbed.
    pub async fn load(&self) -> Result<State, StateError> {
        let Some(cm) = self
            .api
            .get_opt(STATE_CONFIGMAP)
            .await
            .map_err(|e| self.kube_err(e))?
        else {
            return Ok(State::default());
        };
        let mut state = match cm.binary_data.as_ref().and_then(|d| d.get(STATE_KEY)) {
            Some(bytes) => decode(&bytes.0).map_err(|message| StateError::Corrupt {
                namespace: self.namespace.clone(),
                message,
            })?,
            None => State::default(),
        };
        absorb(&mut state, &reruns_of(&cm));
        Ok(state)
    }

    /// Absorb rerun requests written since the last look into `state`.
    pub async fn absorb_reruns(&self, state: &mut State) -> Result<bool, StateError> {
        let Some(cm) = self
            .api
            .get_opt(STATE_CONFIGMAP)
            .await
            .map_err(|e| self.kube_err(e))?
        else {
            return Ok(false);
        };
        Ok(absorb(state, &reruns_of(&cm)))
    }

    /// Write `state`, keeping rerun requests it has not absorbed yet.
    pub async fn save(&self, state: &State) -> Result<(), StateError> {
        let encoded = encode(state);
        if encoded.len() > STATE_LIMIT_BYTES {
            return Err(StateError::TooLarge {
                stages: state.stages.len(),
                size: encoded.len(),
            });
        }
        loop {
            let current = self
                .api
                .get_opt(STATE_CONFIGMAP)
                .await
                .map_err(|e| self.kube_err(e))?;
            let pending: Vec<RerunRequest> = current
                .as_ref()
                .map(reruns_of)
                .unwrap_or_default()
                .into_iter()
                .filter(|r| r.id > state.rerun_seen)
                .collect();
            let mut cm = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(STATE_CONFIGMAP.into()),
                    namespace: Some(self.namespace.clone()),
                    labels: Some(BTreeMap::from([(
                        crate::labels::MANAGED_BY_KEY.to_string(),
                        crate::labels::MANAGED_BY_VALUE.to_string(),
                    )])),
                    ..ObjectMeta::default()
                },
                binary_data: Some(BTreeMap::from([(
                    STATE_KEY.to_string(),
                    ByteString(encoded.clone()),
                )])),
                data: Some(BTreeMap::from([(
                    RERUNS_KEY.to_string(),
                    serde_json::to_string(&pending).unwrap_or_default(),
                )])),
                ..ConfigMap::default()
            };
            let result = match current {
                Some(current) => {
                    cm.metadata.resource_version = current.metadata.resource_version;
                    self.api
                        .replace(STATE_CONFIGMAP, &PostParams::default(), &cm)
                        .await
                }
                None => self.api.create(&PostParams::default(), &cm).await,
            };
            match result {
                Ok(_) => return Ok(()),
                // Someone wrote in between (a rerun request): read again and retry.
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(e) => return Err(self.kube_err(e)),
            }
        }
    }

    /// Ask the running agent to run `job` (or every Job, `*`) of `stage` again.
    pub async fn request_rerun(&self, stage: &str, job: &str) -> Result<RerunRequest, StateError> {
        loop {
            let current = self
                .api
                .get_opt(STATE_CONFIGMAP)
                .await
                .map_err(|e| self.kube_err(e))?;
            let mut reruns = current.as_ref().map(reruns_of).unwrap_or_default();
            let now = jiff::Timestamp::now().as_nanosecond().max(0) as u64;
            let id = reruns.iter().map(|r| r.id + 1).max().unwrap_or(0).max(now);
            let request = RerunRequest {
                id,
                stage: stage.to_string(),
                job: job.to_string(),
            };
            reruns.push(request.clone());
            let text = serde_json::to_string(&reruns).unwrap_or_default();
            let result = match current {
                Some(mut cm) => {
                    cm.data
                        .get_or_insert_with(BTreeMap::new)
                        .insert(RERUNS_KEY.into(), text);
                    self.api
                        .replace(STATE_CONFIGMAP, &PostParams::default(), &cm)
                        .await
                }
                None => {
                    let cm = ConfigMap {
                        metadata: ObjectMeta {
                            name: Some(STATE_CONFIGMAP.into()),
                            namespace: Some(self.namespace.clone()),
                            ..ObjectMeta::default()
                        },
                        data: Some(BTreeMap::from([(RERUNS_KEY.to_string(), text)])),
                        ..ConfigMap::default()
                    };
                    self.api.create(&PostParams::default(), &cm).await
                }
            };
            match result {
                Ok(_) => return Ok(request),
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(e) => return Err(self.kube_err(e)),
            }
        }
    }
}

fn reruns_of(cm: &ConfigMap) -> Vec<RerunRequest> {
    cm.data
        .as_ref()
        .and_then(|d| d.get(RERUNS_KEY))
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default()
}

/// Move requests newer than the last absorbed into their stages; true if any.
fn absorb(state: &mut State, reruns: &[RerunRequest]) -> bool {
    let mut any = false;
    for request in reruns.iter().filter(|r| r.id > state.rerun_seen) {
        state
            .stages
            .entry(request.stage.clone())
            .or_default()
            .rerun
            .insert(request.job.clone());
        any = true;
    }
    state.rerun_seen = reruns
        .iter()
        .map(|r| r.id)
        .max()
        .unwrap_or(0)
        .max(state.rerun_seen);
    any
}

pub fn encode(state: &State) -> Vec<u8> {
    let json = serde_json::to_vec(state).unwrap_or_default();
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    // Writing to a Vec cannot fail.
    let _ = gz.write_all(&json);
    gz.finish().unwrap_or_default()
}

pub fn decode(bytes: &[u8]) -> Result<State, String> {
    let mut json = Vec::new();
    GzDecoder::new(bytes)
        .read_to_end(&mut json)
        .map_err(|e| format!("gzip: {e}"))?;
    serde_json::from_slice(&json).map_err(|e| format!("json: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::InventoryEntry;

    #[test]
    fn encoded_state_round_trips_and_compresses() {
        let mut state = State::default();
        let stage = state.stages.entry("big".into()).or_default();
        for i in 0..5000 {
            stage.inventory.push(InventoryEntry {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                namespace: Some("apps".into()),
                name: format!("config-{i}"),
                hash: format!("{:064x}", i * 7919),
                resource_version: (100000 + i).to_string(),
            });
        }
        let bytes = encode(&state);
        let json_len = serde_json::to_vec(&state).unwrap().len();
        assert!(bytes.len() * 2 < json_len, "{} vs {json_len}", bytes.len());
        assert_eq!(decode(&bytes).unwrap(), state);
    }

    #[test]
    fn reruns_are_absorbed_once() {
        let mut state = State::default();
        let reruns = vec![RerunRequest {
            id: 5,
            stage: "pre".into(),
            job: "*".into(),
        }];
        assert!(absorb(&mut state, &reruns));
        assert!(state.stages["pre"].rerun.contains("*"));
        state.stages.get_mut("pre").unwrap().rerun.clear();
        assert!(!absorb(&mut state, &reruns));
        assert!(state.stages["pre"].rerun.is_empty());
    }
}
