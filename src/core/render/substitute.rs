//! Flux's post-build variable substitution: `${VAR}`, `${VAR:=default}`,
//! `${VAR:-default}`, `${VAR=default}`, `${VAR:+alt}`, `${#VAR}` and the
//! casing functions; `$$` for a literal `$` (so `$${VAR}` stays `${VAR}`),
//! and an error for an undefined variable without a default, as in Flux's
//! strict mode. Plain `$VAR` is left alone, which is what lets shell scripts
//! in ConfigMaps survive; `${...}` that is not a valid expression is an error,
//! as it is for Flux, rather than text passed through.

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
        walk(&mut r.value, vars, false).map_err(|e| match e {
            SubstError::Undefined(variable) => RenderError::UndefinedVariable {
                stage: ctx.stage.clone(),
                path: r.source.clone(),
                variable,
            },
            SubstError::Bad { expression, reason } => RenderError::Substitution {
                stage: ctx.stage.clone(),
                path: r.source.clone(),
                expression,
                message: reason.to_string(),
            },
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
) -> Result<(), SubstError> {
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

/// Why a string could not be substituted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SubstError {
    /// A variable without a value and without a default (Flux's strict mode).
    Undefined(String),
    /// An expression Flux would reject, or one stagegate does not evaluate.
    Bad {
        expression: String,
        reason: &'static str,
    },
}

/// `Ok(None)` when nothing changed. As in Flux (a fork of drone/envsubst),
/// `$$` stands for a literal `$`, a `$` not followed by `{` is kept, and
/// `${` must start a valid expression.
pub(crate) fn substitute(
    input: &str,
    vars: &BTreeMap<String, String>,
) -> Result<Option<String>, SubstError> {
    if !input.contains("${") && !input.contains("$$") {
        return Ok(None);
    }
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if let Some(after) = tail.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if tail.starts_with("${") {
            let Some(end) = matching_brace(tail, 2) else {
                return Err(SubstError::Bad {
                    expression: tail.chars().take(40).collect(),
                    reason: "`${` without its closing `}`",
                });
            };
            out.push_str(&evaluate(&tail[2..end], vars).map_err(|e| match e {
                SubstError::Bad { reason, .. } => SubstError::Bad {
                    expression: tail[..=end].to_string(),
                    reason,
                },
                undefined => undefined,
            })?);
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok((out != input).then_some(out))
}

/// Identifier characters as envsubst scans them: a `-` is part of the name,
/// so `${A-b}` is the (probably undefined) variable `A-b`, as in Flux.
fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '-'
}

fn evaluate(body: &str, vars: &BTreeMap<String, String>) -> Result<String, SubstError> {
    let bad = |reason| SubstError::Bad {
        expression: body.to_string(),
        reason,
    };
    if let Some(name) = body.strip_prefix('#') {
        if name.is_empty() || !name.chars().all(is_ident_char) {
            return Err(bad("bad substitution"));
        }
        return match vars.get(name) {
            Some(v) => Ok(v.chars().count().to_string()),
            None => Err(SubstError::Undefined(name.to_string())),
        };
    }
    let name_end = body.find(|c: char| !is_ident_char(c)).unwrap_or(body.len());
    let (name, op) = body.split_at(name_end);
    if name.is_empty() {
        return Err(bad("bad substitution"));
    }
    let value = vars.get(name).filter(|v| !v.is_empty());
    let word = |text: &str| -> Result<String, SubstError> {
        Ok(substitute(text, vars)?.unwrap_or_else(|| text.to_string()))
    };
    match op {
        "" => vars
            .get(name)
            .cloned()
            .ok_or_else(|| SubstError::Undefined(name.to_string())),
        "^^" => Ok(value.map(|v| v.to_uppercase()).unwrap_or_default()),
        ",," => Ok(value.map(|v| v.to_lowercase()).unwrap_or_default()),
        "^" | "," => {
            let Some(v) = value else {
                return Ok(String::new());
            };
            let mut chars = v.chars();
            let first: String = chars.next().into_iter().collect();
            let first = if op == "^" {
                first.to_uppercase()
            } else {
                first.to_lowercase()
            };
            Ok(first + chars.as_str())
        }
        _ => {
            if let Some(default) = op
                .strip_prefix(":=")
                .or_else(|| op.strip_prefix(":-"))
                .or_else(|| op.strip_prefix('='))
            {
                return match value {
                    Some(v) => Ok(v.clone()),
                    None => word(default),
                };
            }
            if let Some(alternative) = op.strip_prefix(":+") {
                return match value {
                    Some(_) => word(alternative),
                    None => Ok(String::new()),
                };
            }
            if op.starts_with(":?") {
                return value
                    .cloned()
                    .ok_or_else(|| SubstError::Undefined(name.to_string()));
            }
            if op.starts_with([':', '/', '#', '%']) {
                return Err(bad(
                    "substring, replace and remove functions are not supported by stagegate",
                ));
            }
            Err(bad("bad substitution"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::object::StageName;
    use serde_json::json;
    use std::path::Path;

    fn vars() -> BTreeMap<String, String> {
        [("TAG", "1.4.2"), ("EMPTY", ""), ("N", "3")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn s(text: &str) -> Result<String, SubstError> {
        substitute(text, &vars()).map(|o| o.unwrap_or_else(|| text.to_string()))
    }

    #[test]
    fn flux_forms() {
        assert_eq!(s("app:${TAG}").unwrap(), "app:1.4.2");
        assert_eq!(s("${MISSING:=dflt}").unwrap(), "dflt");
        assert_eq!(s("${MISSING:-dflt}").unwrap(), "dflt");
        assert_eq!(s("${EMPTY:-dflt}").unwrap(), "dflt");
        assert_eq!(s("${MISSING=dflt}").unwrap(), "dflt");
        assert_eq!(s("${TAG:+set}${MISSING:+set}").unwrap(), "set");
        assert_eq!(s("${#TAG} ${TAG^^}").unwrap(), "5 1.4.2");
        assert_eq!(s("${MISSING:-${TAG}}").unwrap(), "1.4.2");
        assert_eq!(
            s("$${TAG} and $TAG and $$HOME").unwrap(),
            "${TAG} and $TAG and $HOME"
        );
        assert_eq!(
            s("${MISSING}").unwrap_err(),
            SubstError::Undefined("MISSING".into())
        );
        // envsubst reads `-` as part of a name.
        assert_eq!(
            s("${EMPTY-dflt}").unwrap_err(),
            SubstError::Undefined("EMPTY-dflt".into())
        );
        assert!(
            matches!(s("echo ${arr[@]}"), Err(SubstError::Bad { expression, .. }) if expression == "${arr[@]}")
        );
        assert!(matches!(s("${TAG:0:1}"), Err(SubstError::Bad { .. })));
        assert!(matches!(s("${TAG"), Err(SubstError::Bad { .. })));
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
