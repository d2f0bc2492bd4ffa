//! Problems found in a repository, collected so that all of them are reported
//! together rather than one per run.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use crate::stage::StageName;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// How discovery introduces a YAML syntax error.
pub const DISCOVERY_YAML: &str = "invalid YAML: ";

/// One problem, naming where it is: the file and, when known, the stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub severity: Severity,
    pub file: Option<PathBuf>,
    pub stage: Option<StageName>,
    pub message: String,
}

impl Problem {
    pub fn error(message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            file: None,
            stage: None,
            message: message.into(),
        }
    }

    pub fn warning(message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(message)
        }
    }

    pub fn in_file(mut self, file: impl Into<PathBuf>) -> Self {
        self.file = Some(file.into());
        self
    }

    pub fn in_stage(mut self, stage: &StageName) -> Self {
        self.stage = Some(stage.clone());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.severity {
            Severity::Error => f.write_str("error: ")?,
            Severity::Warning => f.write_str("warning: ")?,
        }
        if let Some(file) = &self.file {
            write!(f, "{}: ", file.display())?;
        }
        if let Some(stage) = &self.stage {
            write!(f, "stage {stage}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem of a repository; errors and warnings together.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Problems(Vec<Problem>);

impl Problems {
    pub fn push(&mut self, problem: Problem) {
        // The same file can be read by discovery and by a stage's render; say it once.
        if !self.0.contains(&problem) {
            self.0.push(problem);
        }
    }

    pub fn extend(&mut self, problems: impl IntoIterator<Item = Problem>) {
        for problem in problems {
            self.push(problem);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Problem> {
        self.0.iter()
    }

    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.0.iter().filter(|p| p.is_error())
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Problem> {
        self.0.iter().filter(|p| !p.is_error())
    }

    pub fn has_errors(&self) -> bool {
        self.0.iter().any(Problem::is_error)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A YAML file inside a stage is read by discovery and by the stage's
    /// render: keep the render's report, which names the stage.
    pub fn drop_discovery_duplicates(&mut self) {
        let rendered: Vec<PathBuf> = self
            .0
            .iter()
            .filter(|p| !p.message.starts_with(DISCOVERY_YAML))
            .filter_map(|p| p.file.clone())
            .collect();
        self.0.retain(|p| {
            !(p.message.starts_with(DISCOVERY_YAML)
                && p.file.as_ref().is_some_and(|f| rendered.contains(f)))
        });
    }

    /// Errors first, then warnings; each group in the order found.
    pub fn sorted(&self) -> Vec<&Problem> {
        let mut all: Vec<&Problem> = self.0.iter().collect();
        all.sort_by_key(|p| p.severity);
        all
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for problem in self.sorted() {
            writeln!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

impl IntoIterator for Problems {
    type Item = Problem;
    type IntoIter = std::vec::IntoIter<Problem>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}
