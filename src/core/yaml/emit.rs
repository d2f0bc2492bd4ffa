//! Writing values as YAML that every common reader reads back to the same
//! values: YAML 1.2 readers (Go's yaml.v3, serde_yaml) and YAML 1.1 ones
//! (PyYAML, older kubectl plugins) alike. A string that either version would
//! read as something else (`on`, `no`, `y`, `1_000`, `0400`, `~`, `1e3`) is
//! quoted, as kustomize's writer does. Multi-line strings are literal blocks
//! with the chomping indicator their trailing line breaks need.

use std::fmt::Write as _;

use serde_json::{Map, Value};

/// `value` as a YAML document (without a leading `---`).
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => write_map(&mut out, map, 0, false),
        Value::Array(items) if !items.is_empty() => write_seq(&mut out, items, 0),
        other => {
            write_inline(&mut out, other, 0);
            out.push('\n');
        }
    }
    out
}

fn indent(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

/// A mapping at column `col`; `first_inline` when its first key follows a
/// `- ` already written.
fn write_map(out: &mut String, map: &Map<String, Value>, col: usize, first_inline: bool) {
    for (i, (key, value)) in map.iter().enumerate() {
        if i > 0 || !first_inline {
            indent(out, col);
        }
        write_str(out, key, col, true);
        out.push(':');
        match value {
            Value::Object(m) if !m.is_empty() => {
                out.push('\n');
                write_map(out, m, col + 2, false);
            }
            // Sequences in a mapping sit at the key's column, as kubectl prints them.
            Value::Array(items) if !items.is_empty() => {
                out.push('\n');
                write_seq(out, items, col);
            }
            other => {
                out.push(' ');
                write_inline(out, other, col + 2);
                out.push('\n');
            }
        }
    }
}

fn write_seq(out: &mut String, items: &[Value], col: usize) {
    for item in items {
        indent(out, col);
        out.push('-');
        match item {
            Value::Object(m) if !m.is_empty() => {
                out.push(' ');
                write_map(out, m, col + 2, true);
            }
            Value::Array(inner) if !inner.is_empty() => {
                out.push('\n');
                write_seq(out, inner, col + 2);
            }
            other => {
                out.push(' ');
                write_inline(out, other, col + 2);
                out.push('\n');
            }
        }
    }
}

/// A scalar or an empty collection; block content of a string goes at `col`.
fn write_inline(out: &mut String, value: &Value, col: usize) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => write_str(out, s, col, false),
        Value::Array(_) => out.push_str("[]"),
        Value::Object(_) => out.push_str("{}"),
    }
}

fn write_str(out: &mut String, s: &str, col: usize, is_key: bool) {
    if is_plain_safe(s) {
        out.push_str(s);
    } else if !is_key && literal_block_fits(s) {
        write_literal(out, s, col);
    } else {
        write_double_quoted(out, s);
    }
}

fn write_literal(out: &mut String, s: &str, col: usize) {
    let body = s.trim_end_matches('\n');
    let trailing = s.len() - body.len();
    out.push_str(match trailing {
        0 => "|-",
        1 => "|",
        _ => "|+",
    });
    for line in s[..body.len()].split('\n') {
        out.push('\n');
        if !line.is_empty() {
            indent(out, col);
            out.push_str(line);
        }
    }
    // `|+` keeps every trailing break; the last one ends the scalar's line.
    for _ in 1..trailing {
        out.push('\n');
    }
}

/// A literal block holds the text exactly when it has a line break, no
/// carriage returns or other control characters, and its first line does not
/// start with a space (which would need an indentation indicator).
fn literal_block_fits(s: &str) -> bool {
    s.contains('\n')
        && !s.starts_with([' ', '\n'])
        && !s.trim_end_matches('\n').is_empty()
        && !s
            .chars()
            .any(|c| (c.is_control() && c != '\n' && c != '\t') || c == '\u{feff}')
}

/// A JSON string is a valid YAML double-quoted scalar with the same value.
fn write_double_quoted(out: &mut String, s: &str) {
    match serde_json::to_string(s) {
        Ok(quoted) => out.push_str(&quoted),
        Err(_) => out.push_str("\"\""),
    }
}

/// Whether `s` can be written unquoted and read back as the same string by
/// YAML 1.1 and 1.2 readers.
fn is_plain_safe(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    if s.starts_with([' ', '\t']) || s.ends_with([' ', '\t']) {
        return false;
    }
    if "-?:,[]{}#&*!|>'\"%@`".contains(first) {
        // `-x` and `:x` are plain in YAML, but quoting them is always safe.
        return false;
    }
    if s.contains(": ") || s.contains(" #") || s.ends_with(':') {
        return false;
    }
    if s.chars()
        .any(|c| c.is_control() || c == '\u{feff}' || c == '\u{85}')
    {
        return false;
    }
    !resolves_to_non_string(s)
}

/// Scalars some YAML version reads as null, a boolean or a number.
fn resolves_to_non_string(s: &str) -> bool {
    const WORDS: &[&str] = &[
        "~", "null", "Null", "NULL", "true", "True", "TRUE", "false", "False", "FALSE", "y", "Y",
        "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON", "off", "Off", "OFF",
        "<<", "=", ".inf", ".Inf", ".INF", ".nan", ".NaN", ".NAN",
    ];
    if WORDS.contains(&s) {
        return true;
    }
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    if matches!(unsigned, ".inf" | ".Inf" | ".INF") {
        return true;
    }
    // Anything that starts like a number may be one in some version
    // (sexagesimal `1:30`, `1_000`, `0o7`, `1e3`): quoting it costs nothing.
    let mut chars = unsigned.chars();
    match chars.next() {
        Some(c) if c.is_ascii_digit() => true,
        Some('.') => chars.next().is_some_and(|c| c.is_ascii_digit()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn round_trip(v: &Value) -> Value {
        let text = to_yaml(v);
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    #[test]
    fn yaml_1_1_words_and_number_like_strings_are_quoted() {
        for s in [
            "on", "off", "yes", "no", "y", "n", "1_000", "0400", "1e3", "~", "", "1.2.3", "-x",
            ": x", "a: b", "a #b", "@x", "*x", ".5", "+1", "<<",
        ] {
            let text = to_yaml(&json!({ "k": s }));
            assert!(text.starts_with("k: \""), "{s:?} -> {text}");
            assert_eq!(round_trip(&json!({ "k": s })), json!({ "k": s }));
        }
        assert_eq!(
            to_yaml(&json!({"k": "plain-text/ok"})),
            "k: plain-text/ok\n"
        );
    }

    #[test]
    fn multi_line_strings_keep_their_trailing_breaks() {
        for s in [
            "a\nb",
            "a\nb\n",
            "a\n\nb\n\n\n",
            "a\n  b\n",
            "a\tb\nc\n",
            " a\nb",
        ] {
            let v = json!({"k": s, "list": [s, {"x": s}]});
            assert_eq!(round_trip(&v), v, "{s:?}\n{}", to_yaml(&v));
        }
        assert_eq!(to_yaml(&json!({"k": "a\nb\n"})), "k: |\n  a\n  b\n");
    }

    #[test]
    fn nested_collections_round_trip() {
        let v = json!({
            "apiVersion": "v1",
            "metadata": {"name": "x", "labels": {}, "annotations": {"a": "1"}},
            "spec": {"list": [[1, 2], [], {}, {"a": [{"b": null}]}, true, 1.5, -3]},
        });
        assert_eq!(round_trip(&v), v);
        assert_eq!(round_trip(&json!([])), json!([]));
        assert_eq!(round_trip(&json!("on")), json!("on"));
    }
}
