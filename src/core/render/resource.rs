//! The renderer's working form of an object and the context errors are
//! reported in.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::error::RenderError;
use crate::core::object::{Manifest, StageName, api_version_of, kind_of, metadata_str};
use crate::core::paths::{PathError, display_path};
use crate::core::yaml::{Document, YamlError, parse_documents};

/// An object being rendered.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Resource {
    pub value: Value,
    /// File it came from, relative to the repository root.
    pub source: PathBuf,
    /// Names and namespaces the object had before a prefix, suffix or
    /// namespace changed them: kustomize lets an overlay's patch name an
    /// object by its base name, so matching must know them.
    pub previous: Vec<(String, Option<String>)>,
    /// Every `namePrefix` / `nameSuffix` applied to it, innermost first:
    /// kustomize prefers a reference's target that went through the same
    /// ones as the referrer (sibling bases keep their own references).
    pub prefixes: Vec<String>,
    pub suffixes: Vec<String>,
    /// A generated ConfigMap or Secret whose name gets kustomize's content
    /// hash once the whole build is done.
    pub needs_hash: bool,
    /// The `vars` that name this object (kustomize marks the object when the
    /// kustomization declaring the var is built).
    pub ref_vars: Vec<String>,
}

impl Resource {
    pub fn new(value: Value, source: PathBuf) -> Self {
        Self {
            value,
            source,
            previous: Vec::new(),
            prefixes: Vec::new(),
            suffixes: Vec::new(),
            needs_hash: false,
            ref_vars: Vec::new(),
        }
    }

    pub fn into_manifest(self) -> Manifest {
        Manifest {
            value: self.value,
            source: self.source,
        }
    }

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

    pub fn version(&self) -> &str {
        let api_version = self.api_version();
        api_version.rsplit_once('/').map_or(api_version, |(_, v)| v)
    }

    /// (group, version, kind), owned, for field spec matching.
    pub fn gvk(&self) -> (String, String, String) {
        (
            self.group().to_string(),
            self.version().to_string(),
            self.kind().to_string(),
        )
    }

    /// The name and namespace the object was loaded with.
    pub fn original_identity(&self) -> (&str, Option<&str>) {
        match self.previous.first() {
            Some((name, ns)) => (name, ns.as_deref()),
            None => (self.name(), self.namespace()),
        }
    }

    /// Remember the current identity before changing it.
    pub fn remember_identity(&mut self) {
        let current = (
            self.name().to_string(),
            self.namespace().map(str::to_string),
        );
        if !self.previous.contains(&current) {
            self.previous.push(current);
        }
    }

    /// `kind group/namespace/name`, for messages.
    pub fn describe(&self) -> String {
        let group = self.group();
        let kind = if group.is_empty() {
            self.kind().to_string()
        } else {
            format!("{}.{group}", self.kind())
        };
        match self.namespace() {
            Some(ns) => format!("{kind} {ns}/{}", self.name()),
            None => format!("{kind} {}", self.name()),
        }
    }
}

pub(crate) use crate::core::object::group_of;

/// The stage being rendered and the repository root, for error messages.
pub(crate) struct Ctx<'a> {
    pub root: &'a Path,
    pub stage: &'a StageName,
    /// Where the files are read (`crate::core::tree`).
    pub tree: &'a dyn crate::core::tree::FileTree,
    /// Every `vars` entry of the build so far (kustomize's var set is one
    /// per build: the same name twice is an error wherever declared).
    pub vars: std::cell::RefCell<Vec<super::vars::Declared>>,
}

impl<'a> Ctx<'a> {
    /// A context reading the disk (unit tests build their trees there).
    #[cfg(test)]
    pub fn new(root: &'a Path, stage: &'a StageName) -> Self {
        Self::in_tree(&crate::core::tree::DISK, root, stage)
    }

    pub fn in_tree(
        tree: &'a dyn crate::core::tree::FileTree,
        root: &'a Path,
        stage: &'a StageName,
    ) -> Self {
        Self {
            root,
            stage,
            tree,
            vars: std::cell::RefCell::new(Vec::new()),
        }
    }

    /// `rel` from `base`, inside the repository (see [`crate::core::tree::resolve_inside`]).
    pub fn resolve(&self, base: &Path, rel: &Path) -> Result<PathBuf, PathError> {
        crate::core::tree::resolve_inside(self.tree, self.root, base, rel)
    }

    /// A path as the user knows it: relative to the repository root.
    pub fn rel(&self, path: &Path) -> PathBuf {
        display_path(self.root, path)
    }

    pub fn path_error(&self, source: PathError) -> RenderError {
        let path = match &source {
            PathError::Missing { path }
            | PathError::OutsideRoot { path }
            | PathError::Io { path, .. } => path.clone(),
        };
        RenderError::Path {
            stage: self.stage.clone(),
            path,
            source,
        }
    }

    /// A YAML file's syntax error, at its line and column.
    pub fn yaml_error(&self, path: &Path, e: YamlError) -> RenderError {
        RenderError::Yaml {
            stage: self.stage.clone(),
            path: self.rel(path),
            line: e.line,
            column: e.column,
            message: e.message,
        }
    }

    /// The YAML documents of a file of the tree.
    pub fn read_documents(&self, path: &Path) -> Result<Vec<Document>, RenderError> {
        let text = self
            .tree
            .read_to_string(path)
            .map_err(|e| self.io_error(path, e))?;
        parse_documents(&text).map_err(|e| self.yaml_error(path, e))
    }

    pub fn io_error(&self, path: &Path, source: std::io::Error) -> RenderError {
        RenderError::Io {
            stage: self.stage.clone(),
            path: self.rel(path),
            source,
        }
    }

    pub fn patch_error(&self, path: &Path, message: impl Into<String>) -> RenderError {
        RenderError::Patch {
            stage: self.stage.clone(),
            path: self.rel(path),
            message: message.into(),
        }
    }

    pub fn kustomization_error(&self, path: &Path, message: impl Into<String>) -> RenderError {
        RenderError::Kustomization {
            stage: self.stage.clone(),
            path: self.rel(path),
            message: message.into(),
        }
    }
}
