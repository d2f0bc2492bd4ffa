//! Flux's `postBuild.substituteFrom`: variables read from ConfigMaps and
//! Secrets in the Kustomization's namespace. Flux reads them from the
//! cluster; the pure core reads them from the objects this revision renders
//! (where fleets keep their `cluster-vars`), so the variables a stage gets
//! are the ones its repository declares. Later sources override earlier
//! ones and `postBuild.substitute` overrides them all, as in Flux.

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::Value;

use super::Stage;
use crate::diagnostics::Problem;
use crate::object::Manifest;

/// One `substituteFrom` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubstituteFrom {
    /// `ConfigMap` or `Secret`.
    pub kind: String,
    pub name: String,
    /// A missing optional source gives no variables; a missing required one
    /// fails the stage.
    pub optional: bool,
}

/// The variables `stage` substitutes: its `substituteFrom` sources found in
/// `rendered`, then its own `substitute`. Problems name the source.
pub fn variables<'a>(
    stage: &Stage,
    rendered: impl Iterator<Item = &'a Manifest> + Clone,
) -> (BTreeMap<String, String>, Vec<Problem>) {
    let mut vars = BTreeMap::new();
    let mut problems = Vec::new();
    let namespace = stage.id.namespace.as_deref().unwrap_or("default");
    for source in &stage.substitute_from {
        let found = rendered.clone().find(|m| {
            m.api_version() == "v1"
                && m.kind() == source.kind
                && m.name() == source.name
                && m.namespace().unwrap_or("default") == namespace
        });
        let at = |p: Problem| p.in_file(&stage.source).in_stage(&stage.name);
        let Some(object) = found else {
            let what = format!("{} {namespace}/{}", source.kind, source.name);
            problems.push(at(if source.optional {
                Problem::warning(format!(
                    "postBuild.substituteFrom: optional {what} is not rendered from this \
                     repository; its variables are left unset (a copy made in the cluster \
                     by other means is not read)"
                ))
            } else {
                Problem::error(format!(
                    "postBuild.substituteFrom: {what} is not rendered from this repository; \
                     stagegate reads substitution variables only from objects in the \
                     repository (or mark it `optional: true`)"
                ))
            }));
            continue;
        };
        match data_of(&object.value, &source.kind) {
            Ok(data) => vars.extend(data),
            Err(key) => problems.push(at(Problem::error(format!(
                "postBuild.substituteFrom: {} {namespace}/{}: key {key} is not valid base64 \
                 text",
                source.kind, source.name
            )))),
        }
    }
    vars.extend(stage.substitute.clone());
    (vars, problems)
}

/// A ConfigMap's `data`, or a Secret's `data` (decoded) and `stringData`.
fn data_of(value: &Value, kind: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if let Some(data) = value.get("data").and_then(Value::as_object) {
        for (key, v) in data {
            let v = text(v);
            let v = if kind == "Secret" {
                base64::engine::general_purpose::STANDARD
                    .decode(v.trim())
                    .ok()
                    .and_then(|bytes| String::from_utf8(bytes).ok())
                    .ok_or_else(|| key.clone())?
            } else {
                v
            };
            out.insert(key.clone(), v);
        }
    }
    if kind == "Secret"
        && let Some(data) = value.get("stringData").and_then(Value::as_object)
    {
        for (key, v) in data {
            out.insert(key.clone(), text(v));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn manifest(value: Value) -> Manifest {
        Manifest {
            value,
            source: "infra/vars.yaml".into(),
        }
    }

    #[test]
    fn later_sources_override_earlier_and_inline_overrides_all() {
        let mut stage = Stage::new("apps", "apps");
        stage.id.namespace = Some("flux-system".into());
        stage.substitute.insert("REGION".into(), "eu-west-1".into());
        stage.substitute_from = vec![
            SubstituteFrom {
                kind: "ConfigMap".into(),
                name: "cluster-vars".into(),
                optional: false,
            },
            SubstituteFrom {
                kind: "Secret".into(),
                name: "cluster-secrets".into(),
                optional: false,
            },
            SubstituteFrom {
                kind: "ConfigMap".into(),
                name: "absent".into(),
                optional: true,
            },
        ];
        let objects = [
            manifest(json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "cluster-vars", "namespace": "flux-system"},
                "data": {"CLUSTER": "prod", "REGION": "us-east-1", "TOKEN": "plain"}})),
            manifest(json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "cluster-secrets", "namespace": "flux-system"},
                "data": {"TOKEN": "czNjcjN0"}, "stringData": {"USER": "ops"}})),
            manifest(json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "cluster-vars", "namespace": "other"},
                "data": {"CLUSTER": "wrong"}})),
        ];
        let (vars, problems) = variables(&stage, objects.iter());
        assert_eq!(vars["CLUSTER"], "prod");
        assert_eq!(vars["REGION"], "eu-west-1");
        assert_eq!(vars["TOKEN"], "s3cr3t");
        assert_eq!(vars["USER"], "ops");
        assert_eq!(problems.len(), 1);
        assert!(!problems[0].is_error(), "{}", problems[0]);
        assert!(
            problems[0]
                .to_string()
                .contains("optional ConfigMap flux-system/absent")
        );
    }

    #[test]
    fn a_required_source_missing_from_the_repository_is_an_error_naming_it() {
        let mut stage = Stage::new("apps", "apps");
        stage.id.namespace = Some("flux-system".into());
        stage.substitute_from = vec![SubstituteFrom {
            kind: "Secret".into(),
            name: "vault-vars".into(),
            optional: false,
        }];
        let (_, problems) = variables(&stage, [].iter());
        let message = problems[0].to_string();
        assert!(
            message.starts_with("error: ")
                && message.contains(
                    "stage apps: postBuild.substituteFrom: Secret flux-system/vault-vars"
                ),
            "{message}"
        );
    }
}
