//! Repository-relative paths, and the errors of resolving them without ever
//! leaving the repository (done through a file tree: `tree::resolve_inside`).
//!
//! A stage path or a kustomization resource comes from the repository's author;
//! following it outside the checkout (through `..` or a symlink) would let a
//! commit read the agent's own files, so it is refused before anything is read.

use std::io;
use std::path::{Component, Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum PathError {
    #[error("{path}: does not exist")]
    Missing { path: PathBuf },
    #[error("{path}: is outside the repository root")]
    OutsideRoot { path: PathBuf },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// Lexically remove `.` and `..` components (`..` at the top stays, so the
/// caller's prefix check catches it).
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// A path as the user wrote it: relative to the repository root when inside it.
pub fn display_path(root: &Path, path: &Path) -> PathBuf {
    path.strip_prefix(root)
        .map(Path::to_path_buf)
        .unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_removes_dot_components() {
        assert_eq!(
            normalize(Path::new("/r/a/./b/../c")),
            PathBuf::from("/r/a/c")
        );
    }

    /// The checks of [`crate::core::tree::resolve_inside`] on a real disk.
    #[test]
    fn refuses_parent_escape_and_symlink_escape() {
        use crate::core::tree::DISK;
        let resolve_inside = |root: &Path, base: &Path, rel: &Path| {
            crate::core::tree::resolve_inside(&DISK, root, base, rel)
        };
        let outside = tempfile::tempdir().unwrap();
        let repo = tempfile::tempdir().unwrap();
        let root = repo.path().canonicalize().unwrap();
        std::fs::create_dir(root.join("app")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("link")).unwrap();

        assert!(resolve_inside(&root, &root, Path::new("app")).is_ok());
        assert!(matches!(
            resolve_inside(&root, &root, Path::new("../x")),
            Err(PathError::OutsideRoot { .. })
        ));
        assert!(matches!(
            resolve_inside(&root, &root, Path::new("link")),
            Err(PathError::OutsideRoot { .. })
        ));
        assert!(matches!(
            resolve_inside(&root, &root, Path::new("nope")),
            Err(PathError::Missing { .. })
        ));
    }
}
