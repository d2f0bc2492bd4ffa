//! What can go wrong while rendering a stage. Every variant names the stage
//! and the file (relative to the repository root) so that `validate` can
//! point at it.

use std::io;
use std::path::{Path, PathBuf};

use crate::core::object::StageName;
use crate::core::paths::PathError;

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("stage {stage}: {source}")]
    Path {
        stage: StageName,
        /// The offending path, relative to the repository root.
        path: PathBuf,
        #[source]
        source: PathError,
    },
    #[error("stage {stage}: {path}: is not a directory")]
    NotADirectory { stage: StageName, path: PathBuf },
    #[error("stage {stage}: {path}: {source}")]
    Io {
        stage: StageName,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("stage {stage}: {path}: line {line}, column {column}: {message}")]
    Yaml {
        stage: StageName,
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    /// A document that is not a usable Kubernetes object; `document` counts
    /// the file's non-empty documents from 1.
    #[error("stage {stage}: {path}: document {document} (line {line}): {problem}")]
    InvalidObject {
        stage: StageName,
        path: PathBuf,
        document: usize,
        line: usize,
        problem: String,
    },
    #[error(
        "stage {stage}: {path}: kustomization field `{field}` is not supported by stagegate; \
         render this directory with kustomize and commit the output, or remove the field"
    )]
    UnsupportedField {
        stage: StageName,
        path: PathBuf,
        field: String,
    },
    #[error("stage {stage}: {path}: {message}")]
    Kustomization {
        stage: StageName,
        path: PathBuf,
        message: String,
    },
    #[error("stage {stage}: {path}: kustomization cycle: {chain}")]
    Cycle {
        stage: StageName,
        path: PathBuf,
        chain: String,
    },
    #[error("stage {stage}: {path}: patch: {message}")]
    Patch {
        stage: StageName,
        path: PathBuf,
        message: String,
    },
    #[error("stage {stage}: {path}: selector `{selector}`: {message}")]
    Selector {
        stage: StageName,
        path: PathBuf,
        selector: String,
        message: String,
    },
    #[error(
        "stage {stage}: {path}: variable `{variable}` is not set in the stage's substitute \
         and has no default (use ${{{variable}:=default}} or $${{{variable}}} for a literal)"
    )]
    UndefinedVariable {
        stage: StageName,
        path: PathBuf,
        variable: String,
    },
    #[error("stage {stage}: {path}: substitution `{expression}`: {message}")]
    Substitution {
        stage: StageName,
        path: PathBuf,
        expression: String,
        message: String,
    },
    #[error("stage {stage}: {path}: {detail}")]
    AmbiguousReference {
        stage: StageName,
        path: PathBuf,
        detail: Box<Ambiguity>,
    },
    #[error("stage {stage}: {path}: {field} is not supported by stagegate: {advice}")]
    Refused {
        stage: StageName,
        path: PathBuf,
        field: String,
        advice: String,
    },
    #[error("stage {stage}: {path}: {object} is defined more than once (also in {other})")]
    Duplicate {
        stage: StageName,
        path: PathBuf,
        object: String,
        other: PathBuf,
    },
}

/// A name reference that fits more than one object of the build.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{object}: field `{field}` names `{name}`, which fits more than one object of the build: \
     {candidates}; kustomize refuses this too — give the objects different names or put them \
     in different namespaces"
)]
pub struct Ambiguity {
    pub object: String,
    pub field: String,
    pub name: String,
    /// The objects it fits, as `Kind namespace/name`, joined by "and".
    pub candidates: String,
}

impl RenderError {
    pub fn stage(&self) -> &StageName {
        match self {
            Self::Path { stage, .. }
            | Self::NotADirectory { stage, .. }
            | Self::Io { stage, .. }
            | Self::Yaml { stage, .. }
            | Self::InvalidObject { stage, .. }
            | Self::UnsupportedField { stage, .. }
            | Self::Kustomization { stage, .. }
            | Self::Cycle { stage, .. }
            | Self::Patch { stage, .. }
            | Self::Selector { stage, .. }
            | Self::UndefinedVariable { stage, .. }
            | Self::Substitution { stage, .. }
            | Self::AmbiguousReference { stage, .. }
            | Self::Refused { stage, .. }
            | Self::Duplicate { stage, .. } => stage,
        }
    }

    /// The file (or directory) the problem is in, relative to the repository root.
    pub fn file(&self) -> &Path {
        match self {
            Self::Path { path, .. }
            | Self::NotADirectory { path, .. }
            | Self::Io { path, .. }
            | Self::Yaml { path, .. }
            | Self::InvalidObject { path, .. }
            | Self::UnsupportedField { path, .. }
            | Self::Kustomization { path, .. }
            | Self::Cycle { path, .. }
            | Self::Patch { path, .. }
            | Self::Selector { path, .. }
            | Self::UndefinedVariable { path, .. }
            | Self::Substitution { path, .. }
            | Self::AmbiguousReference { path, .. }
            | Self::Refused { path, .. }
            | Self::Duplicate { path, .. } => path,
        }
    }
}
