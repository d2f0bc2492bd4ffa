//! Flux's post-build variable substitution: `${VAR}`, `${VAR:=default}`,
//! `${VAR:-default}` (and `=`/`-` without the colon), `$${VAR}` for a literal
//! `${VAR}`, and an error for an undefined variable without a default, as in
//! Flux's strict mode. Plain `$VAR` is left alone, which is what lets shell
//! scripts in ConfigMaps survive.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::error::RenderError;
use super::resource::{Ctx, Resource};

/// Flux skips objects carrying this annotation or label with value `disabled`.
const DISABLE_KEY: &str = "kustomize.toolkit.fluxcd.io/substitute";

pub(crate) fn apply(
    ctx: &Ctx<'_>,
    resources: &mut [Resource],
    vars: &BTreeMap<String, String>,
) -> Result<(), RenderError> {
    for r in resources {
        let disabled = ["annotations", "labels"].iter().any(|m| {
            r.value
                .pointer(&format!("/metadata/{m}"))
                .and_then(|v| v.get(DISABLE_KEY))
                == Some(&Value::String("disabled".into()))
        });
        if disabled {
            continue;
        }
        walk(&mut r.value, vars, false).map_err(|variable| RenderError::UndefinedVariable {
            stage: ctx.stage.clone(),
            path: r.source.clone(),
            variable,
        })?;
    }
    Ok(())
}

/// `string_context`: the value must stay a string (labels, annotations,
/// ConfigMap data, env values), so a substituted number is not retyped.
fn walk(
    value: &mut Value,
    vars: &BTreeMap<String, String>,
    string_context: bool,
) -> Result<(), String> {
    match value {
        Value::Object(map) => {
            if map.keys().any(|k| k.contains("${")) {
                let old = std::mem::take(map);
                let mut renamed = Map::with_capacity(old.len());
                for (k, v) in old {
                    renamed.insert(substitute(&k, vars)?.unwrap_or(k), v);
                }
                *map = renamed;
            }
            for (key, child) in map.iter_mut() {
                let strings = matches!(
                    key.as_str(),
                    "labels"
                        | "annotations"
                        | "data"
                        | "stringData"
                        | "binaryData"
                        | "value"
                        | "matchLabels"
                        | "selector"
                        | "args"
                        | "command"
                );
                match child {
                    Value::String(s) => {
                        if let Some(new) = substitute(s, vars)? {
                            *child = if string_context || strings || !is_single_expression(s) {
                                Value::String(new)
                            } else {
                                retype(new)
                            };
                        }
                    }
                    other => walk(other, vars, string_context || strings)?,
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::String(s) => {
                        if let Some(new) = substitute(s, vars)? {
                            *item = Value::String(new);
                        }
                    }
                    other => walk(other, vars, string_context)?,
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Flux substitutes the YAML text, so `replicas: ${N}` becomes a number;
/// a value that is exactly one expression is read back as a YAML scalar.
fn retype(text: String) -> Value {
    match serde_yaml::from_str::<Value>(&text) {
        Ok(v @ (Value::Number(_) | Value::Bool(_))) => v,
        _ => Value::String(text),
    }
}

fn is_single_expression(s: &str) -> bool {
    s.starts_with("${") && s.ends_with('}') && matching_brace(s, 2) == Some(s.len() - 1)
}

/// Position of the `}` closing the expression whose body starts at `start`.
fn matching_brace(s: &str, start: usize) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut depth = 1usize;
    let mut i = start;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// `Ok(None)` when nothing changed; `Err(variable)` for an undefined one.
pub(crate) fn substitute(
    input: &str,
    vars: &BTreeMap<String, String>,
) -> Result<Option<String>, String> {
    if !input.contains("${") {
        return Ok(None);
    }
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
            continue;
        }
        if tail.starts_with("${")
            && let Some(end) = matching_brace(tail, 2)
        {
            let body = &tail[2..end];
            match evaluate(body, vars)? {
                Some(value) => out.push_str(&value),
                // Not a variable expression (e.g. `${arr[@]}` in a script): kept as written.
                None => out.push_str(&tail[..=end]),
            }
            rest = &tail[end + 1..];
            continue;
        }
        out.push('$');
        rest = &tail[1..];
    }
    out.push_str(rest);
    Ok((out != input).then_some(out))
}

fn evaluate(body: &str, vars: &BTreeMap<String, String>) -> Result<Option<String>, String> {
    let name_end = body
        .find(|c: char| !(c == '_' || c.is_ascii_alphanumeric()))
        .unwrap_or(body.len());
    let (name, op) = body.split_at(name_end);
    if !is_var_name(name) {
        return Ok(None);
    }
    let value = vars.get(name);
    let default = |text: &str| -> Result<String, String> {
        Ok(substitute(text, vars)?.unwrap_or_else(|| text.to_string()))
    };
    if op.is_empty() {
        return match value {
            Some(v) => Ok(Some(v.clone())),
            None => Err(name.to_string()),
        };
    }
    if let Some(d) = op.strip_prefix(":=").or_else(|| op.strip_prefix(":-")) {
        return match value {
            Some(v) if !v.is_empty() => Ok(Some(v.clone())),
            _ => default(d).map(Some),
        };
    }
    if let Some(d) = op.strip_prefix('=').or_else(|| op.strip_prefix('-')) {
        return match value {
            Some(v) => Ok(Some(v.clone())),
            None => default(d).map(Some),
        };
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stage::StageName;
    use serde_json::json;
    use std::path::Path;

    fn vars() -> BTreeMap<String, String> {
        [("TAG", "1.4.2"), ("EMPTY", ""), ("N", "3")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn s(text: &str) -> Result<String, String> {
        substitute(text, &vars()).map(|o| o.unwrap_or_else(|| text.to_string()))
    }

    #[test]
    fn flux_forms() {
        assert_eq!(s("app:${TAG}").unwrap(), "app:1.4.2");
        assert_eq!(s("${MISSING:=dflt}").unwrap(), "dflt");
        assert_eq!(s("${MISSING:-dflt}").unwrap(), "dflt");
        assert_eq!(s("${EMPTY:-dflt}").unwrap(), "dflt");
        assert_eq!(s("${EMPTY-dflt}").unwrap(), "");
        assert_eq!(s("${MISSING:-${TAG}}").unwrap(), "1.4.2");
        assert_eq!(s("$${TAG} and $TAG").unwrap(), "${TAG} and $TAG");
        assert_eq!(s("echo ${arr[@]}").unwrap(), "echo ${arr[@]}");
        assert_eq!(s("${MISSING}").unwrap_err(), "MISSING");
    }

    #[test]
    fn undefined_variable_error_names_variable_file_and_stage() {
        let stage = StageName::new("application");
        let ctx = Ctx::new(Path::new("/repo"), &stage);
        let mut rs = vec![Resource::new(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "${NOPE}"}}),
            "app/cm.yaml".into(),
        )];
        let err = apply(&ctx, &mut rs, &vars()).unwrap_err().to_string();
        assert!(
            err.contains("NOPE") && err.contains("app/cm.yaml") && err.contains("application"),
            "{err}"
        );
    }

    #[test]
    fn whole_expression_numbers_are_retyped_outside_string_fields() {
        let stage = StageName::new("s");
        let ctx = Ctx::new(Path::new("/repo"), &stage);
        let mut rs = vec![Resource::new(
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "labels": {"n": "${N}"}},
                   "spec": {"replicas": "${N}", "template": {"spec": {"containers": [{"name": "c", "env": [{"name": "N", "value": "${N}"}]}]}}}}),
            "d.yaml".into(),
        )];
        apply(&ctx, &mut rs, &vars()).unwrap();
        assert_eq!(rs[0].value["spec"]["replicas"], json!(3));
        assert_eq!(rs[0].value["metadata"]["labels"]["n"], json!("3"));
        assert_eq!(
            rs[0].value["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"],
            json!("3")
        );
    }

    #[test]
    fn disabled_objects_are_left_alone() {
        let stage = StageName::new("s");
        let ctx = Ctx::new(Path::new("/repo"), &stage);
        let mut rs = vec![Resource::new(
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "c", "annotations": {DISABLE_KEY: "disabled"}}, "data": {"a": "${NOPE}"}}),
            "c.yaml".into(),
        )];
        apply(&ctx, &mut rs, &vars()).unwrap();
        assert_eq!(rs[0].value["data"]["a"], "${NOPE}");
    }
}
