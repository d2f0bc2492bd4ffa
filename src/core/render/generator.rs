//! `configMapGenerator`, `secretGenerator` and `generatorOptions`, and the
//! name suffix kustomize derives from a generated object's content.
//!
//! The suffix is kustomize's byte for byte: the SHA-256 of a JSON document
//! (`kind`, `name`, `data`, …, keys sorted, strings escaped as Go's
//! `encoding/json` does), its first ten hex digits with `0 1 3 a e` spelled
//! `g h k m t`. It is added once the whole build is done, after every prefix
//! and suffix, and references to the object follow it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::error::RenderError;
use super::resource::{Ctx, Resource};

/// kustomize's `generatorOptions`, also a generator's own `options`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct GeneratorOptions {
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    disable_name_suffix_hash: bool,
    #[serde(default)]
    immutable: bool,
}

impl GeneratorOptions {
    /// The kustomization's options under a generator's own: its labels and
    /// annotations win, and either one can turn the hash off or make the
    /// object immutable.
    fn under(local: Option<&Self>, global: Option<&Self>) -> Self {
        let mut merged = local.cloned().unwrap_or_default();
        if let Some(global) = global {
            for (k, v) in &global.labels {
                merged.labels.entry(k.clone()).or_insert_with(|| v.clone());
            }
            for (k, v) in &global.annotations {
                merged
                    .annotations
                    .entry(k.clone())
                    .or_insert_with(|| v.clone());
            }
            merged.disable_name_suffix_hash |= global.disable_name_suffix_hash;
            merged.immutable |= global.immutable;
        }
        merged
    }
}

/// One entry of `configMapGenerator` or `secretGenerator`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct GeneratorArgs {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    behavior: Option<String>,
    #[serde(default)]
    literals: Vec<String>,
    #[serde(default)]
    files: Vec<String>,
    #[serde(default)]
    envs: Vec<String>,
    /// The deprecated single form of `envs`.
    #[serde(default)]
    env: Option<String>,
    #[serde(default)]
    options: Option<GeneratorOptions>,
    /// Secrets only: the Secret's `type` (default `Opaque`).
    #[serde(default, rename = "type")]
    secret_type: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behavior {
    Create,
    Merge,
    Replace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GeneratedKind {
    ConfigMap,
    Secret,
}

impl GeneratedKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::ConfigMap => "ConfigMap",
            Self::Secret => "Secret",
        }
    }

    fn field(self) -> &'static str {
        match self {
            Self::ConfigMap => "configMapGenerator",
            Self::Secret => "secretGenerator",
        }
    }
}

/// Where a generator runs: the kustomization file and its directory.
pub(crate) struct GeneratorSite<'a> {
    pub ctx: &'a Ctx<'a>,
    pub dir: &'a Path,
    pub file: &'a Path,
}

impl GeneratorSite<'_> {
    fn error(
        &self,
        kind: GeneratedKind,
        name: &str,
        message: impl std::fmt::Display,
    ) -> RenderError {
        self.ctx
            .kustomization_error(self.file, format!("{} `{name}`: {message}", kind.field()))
    }

    fn read(&self, kind: GeneratedKind, name: &str, rel: &str) -> Result<Vec<u8>, RenderError> {
        let path = self
            .ctx
            .resolve(self.dir, Path::new(rel))
            .map_err(|e| self.error(kind, name, format!("`{rel}`: {e}")))?;
        self.ctx
            .tree
            .read(&path)
            .map_err(|e| self.ctx.io_error(&path, e))
    }
}

/// Run one kustomization's generators over `resources` (its resources so far).
pub(crate) fn run(
    site: &GeneratorSite<'_>,
    kind: GeneratedKind,
    generators: &[GeneratorArgs],
    global: Option<&GeneratorOptions>,
    resources: &mut Vec<Resource>,
) -> Result<(), RenderError> {
    for args in generators {
        let generated = generate(site, kind, args, global)?;
        let behavior = match args.behavior.as_deref() {
            None | Some("") | Some("create") => Behavior::Create,
            Some("merge") => Behavior::Merge,
            Some("replace") => Behavior::Replace,
            Some(other) => {
                return Err(site.error(
                    kind,
                    &args.name,
                    format!("unknown behavior `{other}`; use create, merge or replace"),
                ));
            }
        };
        absorb(site, kind, &args.name, behavior, generated, resources)?;
    }
    Ok(())
}

fn generate(
    site: &GeneratorSite<'_>,
    kind: GeneratedKind,
    args: &GeneratorArgs,
    global: Option<&GeneratorOptions>,
) -> Result<Resource, RenderError> {
    let name = args.name.as_str();
    if name.is_empty() {
        return Err(site.ctx.kustomization_error(
            site.file,
            format!("{}: an entry needs a `name`", kind.field()),
        ));
    }
    if kind == GeneratedKind::ConfigMap && args.secret_type.is_some() {
        return Err(site.error(kind, name, "`type` is only for secretGenerator"));
    }
    let pairs = load_pairs(site, kind, args)?;
    let options = GeneratorOptions::under(args.options.as_ref(), global);

    let mut meta = Map::new();
    meta.insert("name".into(), Value::String(name.into()));
    if let Some(ns) = args.namespace.as_deref().filter(|ns| !ns.is_empty()) {
        meta.insert("namespace".into(), Value::String(ns.into()));
    }
    if !options.labels.is_empty() {
        meta.insert("labels".into(), string_map(&options.labels));
    }
    if !options.annotations.is_empty() {
        meta.insert("annotations".into(), string_map(&options.annotations));
    }
    let mut obj = Map::new();
    obj.insert("apiVersion".into(), Value::String("v1".into()));
    obj.insert("kind".into(), Value::String(kind.as_str().into()));
    obj.insert("metadata".into(), Value::Object(meta));
    match kind {
        GeneratedKind::ConfigMap => {
            let mut data = Map::new();
            let mut binary = Map::new();
            for (k, v) in pairs {
                match String::from_utf8(v) {
                    Ok(text) => data.insert(k, Value::String(text)),
                    Err(e) => binary.insert(k, Value::String(encode_base64(e.as_bytes()))),
                };
            }
            if !data.is_empty() {
                obj.insert("data".into(), Value::Object(data));
            }
            if !binary.is_empty() {
                obj.insert("binaryData".into(), Value::Object(binary));
            }
        }
        GeneratedKind::Secret => {
            let secret_type = args.secret_type.as_deref().filter(|t| !t.is_empty());
            obj.insert(
                "type".into(),
                Value::String(secret_type.unwrap_or("Opaque").into()),
            );
            let data: Map<String, Value> = pairs
                .into_iter()
                .map(|(k, v)| (k, Value::String(encode_base64(&v))))
                .collect();
            obj.insert("data".into(), Value::Object(data));
        }
    }
    if options.immutable {
        obj.insert("immutable".into(), Value::Bool(true));
    }
    let mut r = Resource::new(Value::Object(obj), site.ctx.rel(site.file));
    r.needs_hash = !options.disable_name_suffix_hash;
    Ok(r)
}

fn string_map(m: &BTreeMap<String, String>) -> Value {
    Value::Object(
        m.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

/// The key-value pairs of a generator, in kustomize's order (env files,
/// literals, files), each key once.
fn load_pairs(
    site: &GeneratorSite<'_>,
    kind: GeneratedKind,
    args: &GeneratorArgs,
) -> Result<Vec<(String, Vec<u8>)>, RenderError> {
    let name = args.name.as_str();
    let mut pairs: Vec<(String, Vec<u8>)> = Vec::new();
    for env in args.envs.iter().chain(args.env.as_ref()) {
        let bytes = site.read(kind, name, env)?;
        let Ok(text) = String::from_utf8(bytes) else {
            return Err(site.error(kind, name, format!("env file `{env}` is not UTF-8")));
        };
        for (i, line) in text.trim_start_matches('\u{feff}').lines().enumerate() {
            let line = line.trim_start();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = line.split_once('=').unwrap_or((line, ""));
            if !is_env_var_name(key) {
                return Err(site.error(
                    kind,
                    name,
                    format!(
                        "env file `{env}` line {}: `{key}` is not a valid variable name",
                        i + 1
                    ),
                ));
            }
            pairs.push((key.to_string(), value.as_bytes().to_vec()));
        }
    }
    for literal in &args.literals {
        let Some((key, value)) = literal.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            return Err(site.error(kind, name, format!("literal `{literal}` is not key=value")));
        };
        pairs.push((key.to_string(), remove_quotes(value).as_bytes().to_vec()));
    }
    for source in &args.files {
        let (key, path) = match source.matches('=').count() {
            0 => (
                source.rsplit('/').next().unwrap_or(source).to_string(),
                source.as_str(),
            ),
            1 => match source.split_once('=') {
                Some((k, p)) if !k.is_empty() && !p.is_empty() => (k.to_string(), p),
                _ => {
                    return Err(site.error(
                        kind,
                        name,
                        format!("file source `{source}` needs both a key and a path (key=path)"),
                    ));
                }
            },
            _ => {
                return Err(site.error(
                    kind,
                    name,
                    format!("file source `{source}`: key name or file path contains '='"),
                ));
            }
        };
        pairs.push((key, site.read(kind, name, path)?));
    }
    let mut seen = std::collections::HashSet::new();
    for (key, _) in &pairs {
        if !is_config_map_key(key) {
            return Err(site.error(
                kind,
                name,
                format!("`{key}` is not a valid key (letters, digits, `-`, `_` and `.`)"),
            ));
        }
        if !seen.insert(key.as_str()) {
            return Err(site.error(kind, name, format!("the key `{key}` is given twice")));
        }
    }
    Ok(pairs)
}

fn remove_quotes(s: &str) -> &str {
    let b = s.as_bytes();
    if b.len() >= 2 && b[0] == b[b.len() - 1] && (b[0] == b'"' || b[0] == b'\'') {
        &s[1..s.len() - 1]
    } else {
        s
    }
}

fn is_config_map_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key != "."
        && key != ".."
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn is_env_var_name(key: &str) -> bool {
    let mut bytes = key.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || matches!(b, b'-' | b'_' | b'.'))
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Base64 as kustomize writes a Secret's values: lines of 70 characters,
/// each ended by a line break, once the text is 70 characters or longer.
fn encode_base64(bytes: &[u8]) -> String {
    const LINE: usize = 70;
    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
    if encoded.len() < LINE {
        return encoded;
    }
    let mut out = String::with_capacity(encoded.len() + encoded.len() / LINE + 1);
    for chunk in encoded.as_bytes().chunks(LINE) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out
}

/// Add a generated object to the build, or merge it into (or replace) the
/// object of the same kind, name and namespace from a base.
fn absorb(
    site: &GeneratorSite<'_>,
    kind: GeneratedKind,
    name: &str,
    behavior: Behavior,
    mut generated: Resource,
    resources: &mut Vec<Resource>,
) -> Result<(), RenderError> {
    let ns = effective(generated.namespace());
    let matches: Vec<usize> = resources
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            r.kind() == kind.as_str()
                && r.api_version() == "v1"
                && (r.name() == name && effective(r.namespace()) == ns
                    || r.previous
                        .iter()
                        .any(|(n, prev_ns)| n == name && effective(prev_ns.as_deref()) == ns))
        })
        .map(|(i, _)| i)
        .collect();
    let index = match (matches.as_slice(), behavior) {
        ([], Behavior::Create) => {
            resources.push(generated);
            return Ok(());
        }
        ([], _) => {
            return Err(site.error(
                kind,
                name,
                "behavior merge or replace needs an object of that name from a base; none was found",
            ));
        }
        ([one], Behavior::Merge | Behavior::Replace) => *one,
        ([_], Behavior::Create) => {
            return Err(site.error(
                kind,
                name,
                "an object of that name already exists; use behavior merge or replace",
            ));
        }
        _ => {
            return Err(site.error(kind, name, "more than one object could take this merge"));
        }
    };
    let old = &resources[index];
    if behavior == Behavior::Merge {
        for field in ["data", "binaryData"] {
            if let Some(Value::Object(old_data)) = old.value.get(field) {
                let mut merged = old_data.clone();
                if let Some(Value::Object(new_data)) = generated.value.get(field) {
                    for (k, v) in new_data {
                        merged.insert(k.clone(), v.clone());
                    }
                }
                if let Some(obj) = generated.value.as_object_mut() {
                    obj.insert(field.into(), Value::Object(merged));
                }
            }
        }
    }
    for field in ["labels", "annotations"] {
        let mut merged = old
            .value
            .pointer(&format!("/metadata/{field}"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        if let Some(Value::Object(new)) = generated.value.pointer(&format!("/metadata/{field}")) {
            for (k, v) in new {
                merged.insert(k.clone(), v.clone());
            }
        }
        if let Some(meta) = generated
            .value
            .pointer_mut("/metadata")
            .and_then(Value::as_object_mut)
        {
            if merged.is_empty() {
                meta.remove(field);
            } else {
                meta.insert(field.into(), Value::Object(merged));
            }
        }
    }
    if let Some(meta) = generated
        .value
        .pointer_mut("/metadata")
        .and_then(Value::as_object_mut)
    {
        meta.insert("name".into(), Value::String(old.name().into()));
        match old.namespace() {
            Some(ns) => meta.insert("namespace".into(), Value::String(ns.into())),
            None => meta.remove("namespace"),
        };
    }
    generated.needs_hash = generated.needs_hash && old.needs_hash;
    generated.previous = old.previous.clone();
    generated.prefixes = old.prefixes.clone();
    generated.suffixes = old.suffixes.clone();
    generated.ref_vars = old.ref_vars.clone();
    resources[index] = generated;
    Ok(())
}

fn effective(ns: Option<&str>) -> &str {
    match ns {
        None | Some("") => "default",
        Some(ns) => ns,
    }
}

/// Give every generated object its content-hash suffix.
pub(crate) fn add_name_hashes(resources: &mut [Resource]) {
    add_name_hashes_now(resources);
    for r in resources.iter_mut() {
        r.needs_hash = false;
    }
}

/// kustomize's HashTransformer listed under `transformers`: the generated
/// objects that take a hash get one for their content so far, and keep
/// needing the one the end of the build gives.
pub(crate) fn add_name_hashes_now(resources: &mut [Resource]) {
    for r in resources.iter_mut().filter(|r| r.needs_hash) {
        let hash = content_hash(&r.value);
        let name = format!("{}-{hash}", r.name());
        r.remember_identity();
        if let Some(meta) = r.value.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("name".into(), Value::String(name));
        }
    }
}

/// kustomize looks the name up with `metadata/name` as one key, finds
/// nothing and hashes an empty name: the hash depends on content only.
const NAME_AS_KUSTOMIZE_READS_IT: Value = Value::String(String::new());

/// kustomize's hash of a ConfigMap or Secret (of anything else: its JSON).
pub(crate) fn content_hash(value: &Value) -> String {
    let field = |path: &str| -> Value {
        match value.pointer(path) {
            Some(Value::Object(m)) => Value::Object(m.clone()),
            Some(Value::String(s)) => Value::String(s.clone()),
            Some(Value::Null) | None => Value::String(String::new()),
            Some(other) => Value::String(other.to_string()),
        }
    };
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut doc = Map::new();
    match kind {
        "ConfigMap" => {
            doc.insert("kind".into(), Value::String("ConfigMap".into()));
            doc.insert("name".into(), NAME_AS_KUSTOMIZE_READS_IT);
            doc.insert("data".into(), field("/data"));
            if let Some(Value::Object(_)) = value.get("binaryData") {
                doc.insert("binaryData".into(), field("/binaryData"));
            }
        }
        "Secret" => {
            doc.insert("kind".into(), Value::String("Secret".into()));
            doc.insert("type".into(), field("/type"));
            doc.insert("name".into(), NAME_AS_KUSTOMIZE_READS_IT);
            doc.insert("data".into(), field("/data"));
            if let Some(Value::Object(_)) = value.get("stringData") {
                doc.insert("stringData".into(), field("/stringData"));
            }
        }
        _ => return encode_hash(&go_json(value)),
    }
    encode_hash(&go_json(&Value::Object(doc)))
}

fn encode_hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    let mut hex = String::with_capacity(10);
    for b in digest.iter().take(5) {
        let _ = write!(hex, "{b:02x}");
    }
    hex.chars()
        .map(|c| match c {
            '0' => 'g',
            '1' => 'h',
            '3' => 'k',
            'a' => 'm',
            'e' => 't',
            c => c,
        })
        .collect()
}

/// JSON as Go's `encoding/json` writes a `map[string]interface{}`: keys
/// sorted, no spaces, and `<`, `>`, `&`, U+2028 and U+2029 escaped.
fn go_json(value: &Value) -> String {
    let mut out = String::new();
    write_go_json(&mut out, value);
    out
}

fn write_go_json(out: &mut String, value: &Value) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_go_string(out, k);
                out.push(':');
                if let Some(v) = map.get(k) {
                    write_go_json(out, v);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_go_json(out, v);
            }
            out.push(']');
        }
        Value::String(s) => write_go_string(out, s),
        other => {
            let _ = write!(out, "{other}");
        }
    }
}

fn write_go_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn go_json_sorts_keys_and_escapes_html() {
        let v = json!({"b": "<a&b>", "a": ["x\ny", 1]});
        assert_eq!(
            go_json(&v),
            r#"{"a":["x\ny",1],"b":"\u003ca\u0026b\u003e"}"#
        );
    }

    #[test]
    fn hash_is_kustomizes_for_a_literal_config_map() {
        // `kubectl kustomize` names this ConfigMap `frozen-588tk542k9`.
        let cm = json!({"kind": "ConfigMap", "metadata": {"name": "frozen"}, "data": {"B": "2"}});
        assert_eq!(content_hash(&cm), "588tk542k9");
    }

    #[test]
    fn long_secret_values_are_wrapped_at_seventy() {
        let text = encode_base64(&[b'x'; 60]);
        assert_eq!(text.lines().next().map(str::len), Some(70));
        assert!(text.ends_with('\n'));
        assert!(!encode_base64(b"short").contains('\n'));
    }
}
