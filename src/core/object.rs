//! A rendered Kubernetes object and the reference that identifies it.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Identity of an object on a cluster: what two stages must never both render.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObjectRef {
    /// API group, empty for the core group.
    pub group: String,
    pub kind: String,
    /// `None` for cluster-scoped objects and for namespaced objects not yet placed.
    pub namespace: Option<String>,
    pub name: String,
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.group.is_empty() {
            write!(f, "{}", self.kind)?;
        } else {
            write!(f, "{}.{}", self.kind, self.group)?;
        }
        match &self.namespace {
            Some(ns) => write!(f, " {ns}/{}", self.name),
            None => write!(f, " {}", self.name),
        }
    }
}

/// The hash of a Job's rendered spec (with the configuration its pods
/// read): what decides whether the Job runs again.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpecHash(String);

impl SpecHash {
    pub fn new(hash: impl Into<String>) -> Self {
        Self(hash.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 characters, as messages show it.
    pub fn short(&self) -> &str {
        &self.0[..self.0.len().min(12)]
    }
}

impl fmt::Display for SpecHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A stage's name: what its Stage object is called and its objects are
/// labelled with. Lives here, below `stage` and `render`, which both use it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StageName(String);

impl StageName {
    pub fn new(name: impl Into<String>) -> Self {
        Self(name.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for StageName {
    fn from(s: &str) -> Self {
        Self(s.to_string())
    }
}

impl PartialEq<str> for StageName {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl std::borrow::Borrow<str> for StageName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// A revision of the repository: the followed reference and its commit,
/// `main@sha1:9f5ddfa3c0…` (or whatever a caller names a run, such as
/// `diff`). Stored as written, compared as a whole.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Revision(String);

impl Revision {
    pub fn new(revision: impl Into<String>) -> Self {
        Self(revision.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// As a log line shows it: `main@9f5ddfa` (see [`short_revision`]).
    pub fn short(&self) -> String {
        short_revision(&self.0)
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Revision {
    fn from(s: &str) -> Self {
        Self(s.to_string())
    }
}

impl From<String> for Revision {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<&String> for Revision {
    fn from(s: &String) -> Self {
        Self(s.clone())
    }
}

impl From<&Revision> for Revision {
    fn from(r: &Revision) -> Self {
        r.clone()
    }
}

impl PartialEq<str> for Revision {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<String> for Revision {
    fn eq(&self, other: &String) -> bool {
        self.0 == *other
    }
}

impl PartialEq<&str> for Revision {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// Read as the text it is (`as_deref`, `starts_with`); made only by its
/// constructors.
impl std::ops::Deref for Revision {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

/// A revision as people read it in a log line: `main@sha1:9f5ddfa3c0…` is
/// `main@9f5ddfa`. Anything else is shown as it is.
pub fn short_revision(revision: &str) -> String {
    match revision.rsplit_once('@') {
        Some((reference, id)) => {
            let id = id.strip_prefix("sha1:").unwrap_or(id);
            let id = id.get(..7).unwrap_or(id);
            format!("{reference}@{id}")
        }
        None => revision.to_string(),
    }
}

/// One rendered object, with the file it came from for error messages.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub value: Value,
    pub source: PathBuf,
}

impl Manifest {
    pub fn api_version(&self) -> &str {
        api_version_of(&self.value)
    }

    pub fn kind(&self) -> &str {
        kind_of(&self.value)
    }

    pub fn name(&self) -> &str {
        metadata_str(&self.value, "name").unwrap_or_default()
    }

    pub fn namespace(&self) -> Option<&str> {
        metadata_str(&self.value, "namespace")
    }

    pub fn group(&self) -> &str {
        group_of(self.api_version())
    }

    pub fn object_ref(&self) -> ObjectRef {
        ObjectRef {
            group: self.group().to_string(),
            kind: self.kind().to_string(),
            namespace: self.namespace().map(str::to_string),
            name: self.name().to_string(),
        }
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.value
            .pointer("/metadata/annotations")?
            .get(key)?
            .as_str()
    }
}

/// An object's `apiVersion` in its JSON form (empty when missing). These
/// few readers serve [`Manifest`] and rendering's own resources alike.
pub fn api_version_of(value: &Value) -> &str {
    value
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// An object's `kind` (empty when missing).
pub fn kind_of(value: &Value) -> &str {
    value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// A string field of an object's `metadata` (`name`, `namespace`).
pub fn metadata_str<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get("metadata")?.get(key)?.as_str()
}

/// The API group of an `apiVersion`: empty for the core group (`v1`).
pub fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}
