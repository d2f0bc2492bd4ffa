//! Flux's `postBuild.substituteFrom`: variables read from ConfigMaps and
//! Secrets in the Kustomization's namespace. A source rendered from this
//! revision is read from there (what its stage will apply, even before it
//! did); any other is read from a [`SubstitutionSource`] the caller gives:
//! the cluster for the agent, as Flux reads it, or a file of values for the
//! offline commands. Later sources override earlier ones and
//! `postBuild.substitute` overrides them all, as in Flux. Values never
//! appear in a problem's text: they may come from Secrets.

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::Value;

use super::Stage;
use crate::core::diagnostics::Problem;
use crate::core::object::Manifest;

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

/// Why a source could not be read (not: that it does not exist).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(pub String);

/// Where the `substituteFrom` sources a repository does not render are read.
pub trait SubstitutionSource: Send + Sync {
    /// The variables of ConfigMap or Secret `namespace/name` (a Secret's
    /// decoded); `Ok(None)` when it does not exist.
    fn read(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<BTreeMap<String, String>>, SourceError>;

    /// Where it reads, for messages: "the cluster", "file vars.env".
    fn describe(&self) -> String;
}

/// Fixed values for every source not rendered from the repository: what
/// `--substitute-from FILE` gives the offline commands.
pub struct Values {
    pub values: BTreeMap<String, String>,
    /// Where they come from, for messages.
    pub origin: String,
}

impl SubstitutionSource for Values {
    fn read(
        &self,
        _kind: &str,
        _namespace: &str,
        _name: &str,
    ) -> Result<Option<BTreeMap<String, String>>, SourceError> {
        Ok(Some(self.values.clone()))
    }

    fn describe(&self) -> String {
        self.origin.clone()
    }
}

/// The variables one stage substitutes, and what stood in the way.
#[derive(Debug, Default)]
pub struct Resolved {
    pub vars: BTreeMap<String, String>,
    pub problems: Vec<Problem>,
    /// Required sources neither rendered nor readable, for want of a
    /// [`SubstitutionSource`] (`ConfigMap ns/name`): the variables they
    /// would give are unknown.
    pub unreachable: Vec<String>,
}

/// The variables `stage` substitutes: its `substituteFrom` sources, found in
/// `rendered` or read from `source`, then its own `substitute`. Problems
/// name the source, never a value.
pub fn variables<'a>(
    stage: &Stage,
    rendered: impl Iterator<Item = &'a Manifest> + Clone,
    source: Option<&dyn SubstitutionSource>,
) -> Resolved {
    let mut out = Resolved::default();
    let namespace = stage.id.namespace.as_deref().unwrap_or("default");
    let at = |p: Problem| p.in_file(&stage.source).in_stage(&stage.name);
    for from in &stage.substitute_from {
        let what = format!("{} {namespace}/{}", from.kind, from.name);
        let found = rendered.clone().find(|m| {
            m.api_version() == "v1"
                && m.kind() == from.kind
                && m.name() == from.name
                && m.namespace().unwrap_or("default") == namespace
        });
        let data = match (found, source) {
            (Some(object), _) => data_of(&object.value, &from.kind).map_err(|key| {
                format!("postBuild.substituteFrom: {what}: key {key} is not valid base64 text")
            }),
            (None, Some(source)) => match source.read(&from.kind, namespace, &from.name) {
                Ok(Some(data)) => Ok(data),
                Ok(None) if from.optional => continue,
                Ok(None) => Err(format!(
                    "postBuild.substituteFrom: {what} is neither rendered from this repository \
                     nor found in {} (mark it `optional: true` if it may be missing)",
                    source.describe()
                )),
                Err(e) => Err(format!(
                    "postBuild.substituteFrom: reading {what} from {}: {e}",
                    source.describe()
                )),
            },
            (None, None) if from.optional => {
                out.problems.push(at(Problem::warning(format!(
                    "postBuild.substituteFrom: optional {what} is not rendered from this \
                     repository and is not read here (offline commands do not read the \
                     cluster); its variables are left unset"
                ))));
                continue;
            }
            (None, None) => {
                out.unreachable.push(what);
                continue;
            }
        };
        match data {
            Ok(data) => out.vars.extend(data),
            Err(message) => out.problems.push(at(Problem::error(message))),
        }
    }
    out.vars.extend(stage.substitute.clone());
    out
}

/// The variables `${NAME}` (and `${#NAME}`) used in `objects` without a
/// default and not in `known`, sorted: what a render without the values
/// of unreachable sources cannot substitute.
pub fn unresolved_variables<'a>(
    objects: impl Iterator<Item = &'a Manifest>,
    known: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut names = std::collections::BTreeSet::new();
    for object in objects {
        each_string(&object.value, &mut |text| {
            for name in bare_variables(text) {
                if !known.contains_key(name) {
                    names.insert(name.to_string());
                }
            }
        });
    }
    names.into_iter().collect()
}

fn each_string(value: &Value, f: &mut impl FnMut(&str)) {
    match value {
        Value::String(s) => f(s),
        Value::Array(items) => items.iter().for_each(|v| each_string(v, f)),
        Value::Object(map) => {
            for (k, v) in map {
                f(k);
                each_string(v, f);
            }
        }
        _ => {}
    }
}

/// Names in `${NAME}` or `${#NAME}` expressions of `text` (no default to
/// fall back on); `$${` is a literal.
fn bare_variables(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        let tail = &rest[pos..];
        if let Some(after) = tail.strip_prefix("$$") {
            rest = after;
            continue;
        }
        let Some(body) = tail.strip_prefix("${") else {
            rest = &tail[1..];
            continue;
        };
        let body = body.strip_prefix('#').unwrap_or(body);
        let end = body
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'))
            .unwrap_or(body.len());
        if end > 0 && body[end..].starts_with('}') {
            out.push(&body[..end]);
        }
        rest = &body[end..];
    }
    out
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
        let resolved = variables(&stage, objects.iter(), None);
        let vars = &resolved.vars;
        assert_eq!(vars["CLUSTER"], "prod");
        assert_eq!(vars["REGION"], "eu-west-1");
        assert_eq!(vars["TOKEN"], "s3cr3t");
        assert_eq!(vars["USER"], "ops");
        // The optional one offline: a warning, no variables, no failure.
        assert_eq!(resolved.problems.len(), 1);
        assert!(!resolved.problems[0].is_error());
        assert!(
            resolved.problems[0]
                .to_string()
                .contains("optional ConfigMap flux-system/absent")
        );
        assert!(resolved.unreachable.is_empty());
    }

    /// A source that knows one ConfigMap, as the cluster would.
    struct Known;

    impl SubstitutionSource for Known {
        fn read(
            &self,
            kind: &str,
            namespace: &str,
            name: &str,
        ) -> Result<Option<BTreeMap<String, String>>, SourceError> {
            let known = (kind, namespace, name) == ("ConfigMap", "flux-system", "cluster-vars");
            Ok(known.then(|| BTreeMap::from([("CLUSTER".to_string(), "live".to_string())])))
        }

        fn describe(&self) -> String {
            "the cluster".into()
        }
    }

    fn from(kind: &str, name: &str, optional: bool) -> SubstituteFrom {
        SubstituteFrom {
            kind: kind.into(),
            name: name.into(),
            optional,
        }
    }

    #[test]
    fn sources_not_in_the_repository_are_read_from_the_source_and_optional_ones_may_be_missing() {
        let mut stage = Stage::new("apps", "apps");
        stage.id.namespace = Some("flux-system".into());
        stage.substitute_from = vec![
            from("ConfigMap", "cluster-vars", false),
            from("Secret", "absent", true),
        ];
        let resolved = variables(&stage, [].iter(), Some(&Known));
        assert_eq!(resolved.vars["CLUSTER"], "live");
        assert!(resolved.problems.is_empty(), "{:?}", resolved.problems);

        stage
            .substitute_from
            .push(from("Secret", "vault-vars", false));
        let resolved = variables(&stage, [].iter(), Some(&Known));
        let message = resolved.problems[0].to_string();
        assert!(
            message.starts_with("error: ")
                && message.contains(
                    "stage apps: postBuild.substituteFrom: Secret flux-system/vault-vars is \
                     neither rendered from this repository nor found in the cluster"
                ),
            "{message}"
        );
    }

    #[test]
    fn without_a_source_required_ones_are_unreachable_and_their_variables_are_named() {
        let mut stage = Stage::new("apps", "apps");
        stage.id.namespace = Some("flux-system".into());
        stage.substitute_from = vec![from("Secret", "vault-vars", false)];
        stage.substitute.insert("REGION".into(), "eu".into());
        let resolved = variables(&stage, [].iter(), None);
        assert_eq!(resolved.unreachable, ["Secret flux-system/vault-vars"]);
        let objects = [manifest(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "${CLUSTER}-x"},
            "data": {"a": "${TOKEN} ${REGION} ${MODE:=dev} $${LITERAL} ${#SIZE}"}}))];
        assert_eq!(
            unresolved_variables(objects.iter(), &resolved.vars),
            ["CLUSTER", "SIZE", "TOKEN"]
        );
    }
}
