//! The Job spec hash: what decides whether a Job runs again. It covers the
//! Job's spec, the labels and annotations its author set, and the rendered
//! data of the ConfigMaps and Secrets its pod template reads — so a
//! migration whose script lives in a ConfigMap runs again when the script
//! changes — and nothing stagegate adds itself.

use std::collections::{BTreeSet, HashMap};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::nameref::pod_spec;
use crate::core::labels::{MANAGED_BY_KEY, SPEC_HASH_ANNOTATION, STAGE_LABEL};
use crate::core::object::Manifest;

/// Whether `m` is a ConfigMap or Secret a Job may read.
pub fn is_config_source(m: &Manifest) -> bool {
    m.api_version() == "v1" && matches!(m.kind(), "ConfigMap" | "Secret")
}

fn is_job(m: &Manifest) -> bool {
    m.group() == "batch" && m.kind() == "Job"
}

type SourceKey<'a> = (&'a str, Option<&'a str>, &'a str);

/// Set `stagegate.dev/spec-hash` on every Job in `objects`, reading the
/// ConfigMaps and Secrets they reference from `config_sources` (matched by
/// kind, namespace and name; other manifests there are ignored).
pub fn annotate_spec_hashes(objects: &mut [Manifest], config_sources: &[Manifest]) {
    let sources: HashMap<SourceKey<'_>, &Manifest> = config_sources
        .iter()
        .filter(|m| is_config_source(m))
        .map(|m| ((m.kind(), m.namespace(), m.name()), m))
        .collect();
    for job in objects.iter_mut().filter(|m| is_job(m)) {
        let hash = spec_hash_with(job, &sources);
        let Some(obj) = job.value.as_object_mut() else {
            continue;
        };
        let meta = obj
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()));
        let Some(meta) = meta.as_object_mut() else {
            continue;
        };
        let annotations = meta
            .entry("annotations")
            .or_insert_with(|| Value::Object(Map::new()));
        if !annotations.is_object() {
            *annotations = Value::Object(Map::new());
        }
        if let Value::Object(a) = annotations {
            a.insert(SPEC_HASH_ANNOTATION.into(), Value::String(hash));
        }
    }
}

/// The spec hash of `job` (sha256, hex) given the ConfigMaps and Secrets it
/// may reference.
pub fn spec_hash(job: &Manifest, config_sources: &[Manifest]) -> String {
    let sources: HashMap<SourceKey<'_>, &Manifest> = config_sources
        .iter()
        .filter(|m| is_config_source(m))
        .map(|m| ((m.kind(), m.namespace(), m.name()), m))
        .collect();
    spec_hash_with(job, &sources)
}

fn spec_hash_with(job: &Manifest, sources: &HashMap<SourceKey<'_>, &Manifest>) -> String {
    let own = |key: &str| {
        let mut map = job
            .value
            .pointer(&format!("/metadata/{key}"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        map.remove(MANAGED_BY_KEY);
        map.remove(STAGE_LABEL);
        map.remove(SPEC_HASH_ANNOTATION);
        Value::Object(map)
    };
    let mut configs = Vec::new();
    if let Some(spec) = pod_spec("Job", &job.value) {
        for (kind, name) in referenced_configs(spec) {
            let Some(source) = sources.get(&(kind, job.namespace(), name)) else {
                continue;
            };
            let mut entry = Map::new();
            entry.insert("kind".into(), Value::String(kind.into()));
            entry.insert("name".into(), Value::String(name.into()));
            for field in ["data", "binaryData", "stringData"] {
                if let Some(v) = source.value.get(field) {
                    entry.insert(field.into(), v.clone());
                }
            }
            configs.push(Value::Object(entry));
        }
    }
    let mut input = Map::new();
    input.insert(
        "spec".into(),
        job.value.get("spec").cloned().unwrap_or(Value::Null),
    );
    input.insert("labels".into(), own("labels"));
    input.insert("annotations".into(), own("annotations"));
    input.insert("configs".into(), Value::Array(configs));

    let mut canonical = Vec::with_capacity(1024);
    write_canonical(&Value::Object(input), &mut canonical);
    hex::encode(Sha256::digest(&canonical))
}

/// ConfigMaps and Secrets a pod spec reads, as (kind, name), sorted so that
/// their order in the spec does not matter twice.
fn referenced_configs(spec: &Value) -> BTreeSet<(&'static str, &str)> {
    fn add<'a>(
        out: &mut BTreeSet<(&'static str, &'a str)>,
        kind: &'static str,
        v: Option<&'a Value>,
    ) {
        if let Some(name) = v.and_then(Value::as_str) {
            out.insert((kind, name));
        }
    }
    let mut out = BTreeSet::new();
    for v in spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        add(&mut out, "ConfigMap", v.pointer("/configMap/name"));
        add(&mut out, "Secret", v.pointer("/secret/secretName"));
        for s in v
            .pointer("/projected/sources")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            add(&mut out, "ConfigMap", s.pointer("/configMap/name"));
            add(&mut out, "Secret", s.pointer("/secret/name"));
        }
    }
    for list in ["containers", "initContainers"] {
        for c in spec
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            for e in c
                .get("envFrom")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                add(&mut out, "ConfigMap", e.pointer("/configMapRef/name"));
                add(&mut out, "Secret", e.pointer("/secretRef/name"));
            }
            for e in c.get("env").and_then(Value::as_array).into_iter().flatten() {
                add(
                    &mut out,
                    "ConfigMap",
                    e.pointer("/valueFrom/configMapKeyRef/name"),
                );
                add(
                    &mut out,
                    "Secret",
                    e.pointer("/valueFrom/secretKeyRef/name"),
                );
            }
        }
    }
    out
}

/// JSON with object keys sorted and no whitespace: the same bytes for the
/// same content however the YAML was written.
fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(key, out);
                out.push(b':');
                write_canonical(&map[key], out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        Value::String(s) => write_string(s, out),
        other => out.extend_from_slice(other.to_string().as_bytes()),
    }
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    // serde_json's escaping of a plain string cannot fail.
    out.extend_from_slice(Value::String(s.to_string()).to_string().as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::yaml::parse_documents;

    fn manifest(yaml: &str) -> Manifest {
        let docs = parse_documents(yaml).unwrap();
        Manifest {
            value: docs[0].value.clone(),
            source: "job.yaml".into(),
        }
    }

    const JOB: &str = r#"
apiVersion: batch/v1
kind: Job
metadata:
  name: migrate
  namespace: db
  labels: {team: data}
spec:
  backoffLimit: 1
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: migrate
          image: migrate:1.0
          command: ["/bin/sh", "/scripts/run.sh"]
          envFrom: [{configMapRef: {name: settings}}]
      volumes:
        - name: scripts
          configMap: {name: scripts}
"#;

    fn config(name: &str, data: &str) -> Manifest {
        manifest(&format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: db}}\ndata: {{k: {data:?}}}\n"
        ))
    }

    fn sources() -> Vec<Manifest> {
        vec![config("scripts", "echo 1"), config("settings", "a")]
    }

    fn hash(yaml: &str, sources: &[Manifest]) -> String {
        spec_hash(&manifest(yaml), sources)
    }

    #[test]
    fn same_hash_across_key_order_and_yaml_formatting() {
        let reordered = r#"
kind: Job
apiVersion: batch/v1
spec:
  template:
    spec:
      volumes: [{configMap: {name: scripts}, name: scripts}]
      containers:
      - command:
        - /bin/sh
        - /scripts/run.sh
        envFrom:
        - configMapRef:
            name: settings
        image: "migrate:1.0"
        name: migrate
      restartPolicy: Never
  backoffLimit: 1
metadata:
  labels:
    team: data
  namespace: db
  name: migrate
"#;
        assert_eq!(hash(JOB, &sources()), hash(reordered, &sources()));
    }

    #[test]
    fn stagegate_own_labels_and_hash_do_not_count() {
        let mut m = manifest(JOB);
        let before = spec_hash(&m, &sources());
        m.value["metadata"]["labels"][STAGE_LABEL] = "pre".into();
        m.value["metadata"]["labels"][MANAGED_BY_KEY] = "stagegate".into();
        m.value["metadata"]["annotations"] = serde_json::json!({SPEC_HASH_ANNOTATION: "x"});
        assert_eq!(before, spec_hash(&m, &sources()));
    }

    #[test]
    fn changes_when_command_image_config_or_user_label_changes() {
        let base = hash(JOB, &sources());
        assert_ne!(
            base,
            hash(
                &JOB.replace("/scripts/run.sh", "/scripts/other.sh"),
                &sources()
            )
        );
        assert_ne!(
            base,
            hash(&JOB.replace("migrate:1.0", "migrate:1.1"), &sources())
        );
        assert_ne!(
            base,
            hash(&JOB.replace("team: data", "team: ops"), &sources())
        );
        let changed_script = vec![config("scripts", "echo 2"), config("settings", "a")];
        assert_ne!(base, hash(JOB, &changed_script));
        let changed_env = vec![config("scripts", "echo 1"), config("settings", "b")];
        assert_ne!(base, hash(JOB, &changed_env));
    }

    #[test]
    fn config_maps_of_other_namespaces_or_unreferenced_do_not_count() {
        let base = hash(JOB, &sources());
        let mut other_ns = sources();
        other_ns.push(manifest(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: scripts, namespace: elsewhere}\ndata: {k: x}\n",
        ));
        other_ns.push(config("unrelated", "z"));
        assert_eq!(base, hash(JOB, &other_ns));
    }

    #[test]
    fn annotate_sets_the_annotation_on_jobs_only() {
        let mut objects = vec![manifest(JOB), config("scripts", "echo 1")];
        let srcs = sources();
        annotate_spec_hashes(&mut objects, &srcs);
        let h = objects[0]
            .annotation(SPEC_HASH_ANNOTATION)
            .unwrap()
            .to_string();
        assert_eq!(h.len(), 64);
        assert_eq!(h, spec_hash(&objects[0], &srcs));
        assert!(objects[1].annotation(SPEC_HASH_ANNOTATION).is_none());
    }
}
