//! The former home of the state: the ConfigMap `stagegate-state`, whose
//! `binaryData["state.json.gz"]` held every stage's state gzip-compressed.
//! An agent upgraded from it converts it once into `Stage` objects (see
//! [`super::store::StateStore::load`]) and then deletes it.

use std::io::Read;

use flate2::read::GzDecoder;
use k8s_openapi::api::core::v1::ConfigMap;
use serde::Deserialize;

use super::State;

pub const LEGACY_CONFIGMAP: &str = "stagegate-state";
const STATE_KEY: &str = "state.json.gz";
const RERUNS_KEY: &str = "reruns";

/// A rerun request the former `stagegate rerun` left in the ConfigMap.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct RerunRequest {
    id: u64,
    stage: String,
    job: String,
}

/// Why the former ConfigMap's state cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum LegacyError {
    #[error("{STATE_KEY} is not gzip: {0}")]
    Gzip(#[source] std::io::Error),
    #[error("{STATE_KEY} is not the state's JSON: {0}")]
    Json(#[source] serde_json::Error),
}

/// The state held by the former ConfigMap, with its pending rerun requests
/// moved into their stages.
pub fn decode_configmap(cm: &ConfigMap) -> Result<State, LegacyError> {
    let mut state = match cm.binary_data.as_ref().and_then(|d| d.get(STATE_KEY)) {
        Some(bytes) => decode(&bytes.0)?,
        None => State::default(),
    };
    let reruns: Vec<RerunRequest> = cm
        .data
        .as_ref()
        .and_then(|d| d.get(RERUNS_KEY))
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default();
    for request in reruns.iter().filter(|r| r.id > state.rerun_seen) {
        state
            .stages
            .entry(request.stage.as_str().into())
            .or_default()
            .rerun
            .insert(request.job.clone());
    }
    Ok(state)
}

fn decode(bytes: &[u8]) -> Result<State, LegacyError> {
    let mut json = Vec::new();
    GzDecoder::new(bytes)
        .read_to_end(&mut json)
        .map_err(LegacyError::Gzip)?;
    serde_json::from_slice(&json).map_err(LegacyError::Json)
}

/// The former encoding, for tests that build an old agent's ConfigMap.
pub fn encode(state_json: &serde_json::Value) -> Vec<u8> {
    use std::io::Write;
    let json = serde_json::to_vec(state_json).unwrap_or_default();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    let _ = gz.write_all(&json);
    gz.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;

    use super::*;
    use crate::cluster::state::Phase;

    #[test]
    fn an_old_configmap_decodes_with_its_pending_reruns() {
        let old = serde_json::json!({
            "stages": {"pre": {"phase": "Ready", "revision": "r1",
                "jobs": {"shop/migrate": {"runs": [{"hash": "h", "revision": "r1", "result": "Succeeded"}]}}}},
            "rerun_seen": 3,
        });
        let cm = ConfigMap {
            binary_data: Some(BTreeMap::from([(
                STATE_KEY.into(),
                ByteString(encode(&old)),
            )])),
            data: Some(BTreeMap::from([(
                RERUNS_KEY.into(),
                r#"[{"id":9,"stage":"pre","job":"shop/migrate"}]"#.into(),
            )])),
            ..ConfigMap::default()
        };
        let state = decode_configmap(&cm).unwrap();
        let pre = &state.stages["pre"];
        assert_eq!(pre.phase, Phase::Ready);
        assert_eq!(pre.revision.as_deref(), Some("r1"));
        assert!(pre.jobs["shop/migrate"].succeeded("h"));
        assert!(pre.rerun.contains("shop/migrate"));
    }

    #[test]
    fn an_unreadable_configmap_says_which_key_and_why() {
        let cm = |bytes: Vec<u8>| ConfigMap {
            binary_data: Some(BTreeMap::from([(STATE_KEY.into(), ByteString(bytes))])),
            ..ConfigMap::default()
        };
        let error = decode_configmap(&cm(b"not gzip".to_vec())).unwrap_err();
        assert!(matches!(error, LegacyError::Gzip(_)), "{error:?}");
        assert!(
            error.to_string().starts_with("state.json.gz is not gzip"),
            "{error}"
        );
        let error = decode_configmap(&cm(encode(&serde_json::json!([1])))).unwrap_err();
        assert!(matches!(error, LegacyError::Json(_)), "{error:?}");
    }
}
