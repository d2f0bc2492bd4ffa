//! Which objects a patch targets: kustomize's selector (group, version, kind,
//! name and namespace as anchored regular expressions, plus label and
//! annotation selectors in Kubernetes' equality- and set-based syntax).

use std::collections::{BTreeSet, HashMap};

use regex::Regex;
use serde_json::{Map, Value};

use super::PatchTarget;
use super::resource::Resource;

#[derive(Debug, Clone)]
enum Matcher {
    Exact(String),
    Pattern(Regex),
}

impl Matcher {
    fn new(text: &str) -> Result<Option<Self>, regex::Error> {
        if text.is_empty() {
            return Ok(None);
        }
        // Most targets are plain names; skipping the regex engine for them
        // also lets the caller look them up in an index.
        if text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '/'))
        {
            return Ok(Some(Self::Exact(text.to_string())));
        }
        Ok(Some(Self::Pattern(Regex::new(&format!("^(?:{text})$"))?)))
    }

    fn is_match(&self, text: &str) -> bool {
        match self {
            Self::Exact(want) => want == text,
            Self::Pattern(re) => re.is_match(text),
        }
    }

    fn exact(&self) -> Option<&str> {
        match self {
            Self::Exact(s) => Some(s),
            Self::Pattern(_) => None,
        }
    }
}

/// A compiled `target`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Selector {
    group: Option<Matcher>,
    version: Option<Matcher>,
    kind: Option<Matcher>,
    name: Option<Matcher>,
    namespace: Option<Matcher>,
    labels: Option<LabelSelector>,
    annotations: Option<LabelSelector>,
}

/// Which part of a target failed to compile, and why.
#[derive(Debug)]
pub(crate) struct SelectorError {
    pub selector: String,
    pub message: String,
}

impl Selector {
    pub fn compile(target: &PatchTarget) -> Result<Self, SelectorError> {
        let field = |v: &Option<String>| -> Result<Option<Matcher>, SelectorError> {
            let text = v.as_deref().unwrap_or("");
            Matcher::new(text).map_err(|e| SelectorError {
                selector: text.to_string(),
                message: e.to_string(),
            })
        };
        let labels = |v: &Option<String>| -> Result<Option<LabelSelector>, SelectorError> {
            match v.as_deref() {
                None | Some("") => Ok(None),
                Some(text) => LabelSelector::parse(text)
                    .map(Some)
                    .map_err(|e| SelectorError {
                        selector: text.to_string(),
                        message: e.to_string(),
                    }),
            }
        };
        Ok(Self {
            group: field(&target.group)?,
            version: field(&target.version)?,
            kind: field(&target.kind)?,
            name: field(&target.name)?,
            namespace: field(&target.namespace)?,
            labels: labels(&target.label_selector)?,
            annotations: labels(&target.annotation_selector)?,
        })
    }

    pub fn exact_name(&self) -> Option<&str> {
        self.name.as_ref().and_then(Matcher::exact)
    }

    pub fn exact_kind(&self) -> Option<&str> {
        self.kind.as_ref().and_then(Matcher::exact)
    }

    /// As kustomize does, a name or namespace matches if the object has it
    /// now or had it before an overlay renamed it.
    pub fn matches(&self, r: &Resource) -> bool {
        if let Some(m) = &self.group
            && !m.is_match(r.group())
        {
            return false;
        }
        if let Some(m) = &self.version
            && !m.is_match(r.version())
        {
            return false;
        }
        if let Some(m) = &self.kind
            && !m.is_match(r.kind())
        {
            return false;
        }
        if let Some(m) = &self.name
            && !m.is_match(r.name())
            && !r.previous.iter().any(|(n, _)| m.is_match(n))
        {
            return false;
        }
        if let Some(m) = &self.namespace {
            let effective = |ns: Option<&str>| match ns {
                None | Some("") => "default".to_string(),
                Some(ns) => ns.to_string(),
            };
            if !m.is_match(&effective(r.namespace()))
                && !r
                    .previous
                    .iter()
                    .any(|(_, ns)| m.is_match(&effective(ns.as_deref())))
            {
                return false;
            }
        }
        if let Some(sel) = &self.labels
            && !sel.matches(
                r.value
                    .pointer("/metadata/labels")
                    .and_then(Value::as_object),
            )
        {
            return false;
        }
        if let Some(sel) = &self.annotations
            && !sel.matches(
                r.value
                    .pointer("/metadata/annotations")
                    .and_then(Value::as_object),
            )
        {
            return false;
        }
        true
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
    Exists(String),
    NotExists(String),
}

/// A Kubernetes label selector string (`app=web,tier in (a,b),!legacy`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LabelSelector(Vec<Requirement>);

/// Why a label or annotation selector cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SelectorSyntax {
    #[error("empty requirement")]
    EmptyRequirement,
    #[error("invalid label key `{0}`")]
    InvalidKey(String),
    #[error("unclosed `(` in `{0}`")]
    Unclosed(String),
    #[error("expected `key in (…)` or `key notin (…)`, got `{0}`")]
    NotASetRequirement(String),
    #[error("unknown operator `{operator}` in `{term}`")]
    UnknownOperator { operator: String, term: String },
}

impl LabelSelector {
    pub fn parse(text: &str) -> Result<Self, SelectorSyntax> {
        let mut reqs = Vec::new();
        for term in split_top_level(text) {
            let term = term.trim();
            if term.is_empty() {
                return Err(SelectorSyntax::EmptyRequirement);
            }
            reqs.push(parse_requirement(term)?);
        }
        Ok(Self(reqs))
    }

    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|req| match req {
            Requirement::Equals(k, v) => get(k) == Some(v.as_str()),
            // As in Kubernetes, `!=` and `notin` also match objects without the label.
            Requirement::NotEquals(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, set) => get(k).is_some_and(|v| set.contains(v)),
            Requirement::NotIn(k, set) => get(k).is_none_or(|v| !set.contains(v)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::NotExists(k) => get(k).is_none(),
        })
    }
}

fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn valid_key(key: &str) -> Result<String, SelectorSyntax> {
    let ok = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if ok {
        Ok(key.to_string())
    } else {
        Err(SelectorSyntax::InvalidKey(key.to_string()))
    }
}

fn parse_requirement(term: &str) -> Result<Requirement, SelectorSyntax> {
    if let Some(key) = term.strip_prefix('!') {
        return Ok(Requirement::NotExists(valid_key(key.trim())?));
    }
    if let Some((key, value)) = term.split_once("!=") {
        return Ok(Requirement::NotEquals(
            valid_key(key.trim())?,
            value.trim().to_string(),
        ));
    }
    if let Some((key, value)) = term.split_once("==").or_else(|| term.split_once('=')) {
        return Ok(Requirement::Equals(
            valid_key(key.trim())?,
            value.trim().to_string(),
        ));
    }
    if let Some(open) = term.find('(') {
        let head = term[..open].trim();
        let Some(body) = term[open + 1..].trim_end().strip_suffix(')') else {
            return Err(SelectorSyntax::Unclosed(term.to_string()));
        };
        let values: BTreeSet<String> = body
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect();
        let mut words = head.split_whitespace();
        let (Some(key), Some(op), None) = (words.next(), words.next(), words.next()) else {
            return Err(SelectorSyntax::NotASetRequirement(term.to_string()));
        };
        let key = valid_key(key)?;
        return match op {
            "in" => Ok(Requirement::In(key, values)),
            "notin" => Ok(Requirement::NotIn(key, values)),
            other => Err(SelectorSyntax::UnknownOperator {
                operator: other.to_string(),
                term: term.to_string(),
            }),
        };
    }
    Ok(Requirement::Exists(valid_key(term)?))
}

/// Objects by name (current and previous) and by kind, so that a patch whose
/// target names one object does not scan them all.
pub(crate) struct Index {
    by_name: HashMap<String, Vec<usize>>,
    by_kind: HashMap<String, Vec<usize>>,
}

impl Index {
    pub fn build(resources: &[Resource]) -> Self {
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::with_capacity(resources.len());
        let mut by_kind: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, r) in resources.iter().enumerate() {
            by_name.entry(r.name().to_string()).or_default().push(i);
            for (prev, _) in &r.previous {
                if prev != r.name() {
                    let list = by_name.entry(prev.clone()).or_default();
                    if list.last() != Some(&i) {
                        list.push(i);
                    }
                }
            }
            by_kind.entry(r.kind().to_string()).or_default().push(i);
        }
        Self { by_name, by_kind }
    }

    /// Candidate positions for `selector`, in resource order; the caller
    /// still checks each one with [`Selector::matches`].
    pub fn candidates(&self, selector: &Selector, len: usize) -> Vec<usize> {
        if let Some(name) = selector.exact_name() {
            let mut v = self.by_name.get(name).cloned().unwrap_or_default();
            v.sort_unstable();
            v.dedup();
            return v;
        }
        if let Some(kind) = selector.exact_kind() {
            return self.by_kind.get(kind).cloned().unwrap_or_default();
        }
        (0..len).collect()
    }

    pub fn by_name(&self, name: &str) -> Vec<usize> {
        let mut v = self.by_name.get(name).cloned().unwrap_or_default();
        v.sort_unstable();
        v.dedup();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn equality_and_set_based_label_selectors() {
        let l = labels(json!({"app": "web", "tier": "front"}));
        let yes = |s: &str| LabelSelector::parse(s).unwrap().matches(Some(&l));
        assert!(yes("app=web"));
        assert!(yes("app==web,tier"));
        assert!(!yes("app!=web"));
        assert!(yes("tier in (front, back)"));
        assert!(!yes("tier notin (front,back)"));
        assert!(yes("app in (web),!legacy"));
        assert!(!yes("legacy"));
        assert!(yes("legacy notin (x)"));
        assert!(LabelSelector::parse("tier in (a").is_err());
        assert!(LabelSelector::parse("tier within (a)").is_err());
    }

    #[test]
    fn names_are_anchored_regexes_and_previous_names_match() {
        let target = PatchTarget {
            kind: Some("Deployment".into()),
            name: Some("web-.*".into()),
            ..Default::default()
        };
        let sel = Selector::compile(&target).unwrap();
        let mut r = Resource::new(
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web-1"}}),
            "x".into(),
        );
        assert!(sel.matches(&r));
        r.remember_identity();
        r.value["metadata"]["name"] = json!("p-web-1");
        assert!(sel.matches(&r), "the base name still selects it");
        let exact = Selector::compile(&PatchTarget {
            name: Some("web".into()),
            ..Default::default()
        })
        .unwrap();
        assert!(!exact.matches(&r), "anchored: `web` does not match `web-1`");
    }
}
