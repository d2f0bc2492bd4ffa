//! The files of one revision, as the pure core reads them: the checkout on
//! disk for the agent and the command line, an in-memory tree in unit tests
//! (no temporary directories). Paths are absolute, under the tree's root.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    /// A symbolic link (not followed by [`FileTree::entry_kind`]).
    Symlink,
}

pub trait FileTree: Sync {
    fn read_to_string(&self, path: &Path) -> io::Result<String>;
    /// The names of a directory's entries, in no particular order.
    fn read_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// What `path` is, without following a final symbolic link.
    fn entry_kind(&self, path: &Path) -> io::Result<EntryKind>;
    /// The real path, every symbolic link resolved.
    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf>;

    fn is_dir(&self, path: &Path) -> bool {
        self.canonicalize(path)
            .and_then(|real| self.entry_kind(&real))
            .is_ok_and(|k| k == EntryKind::Dir)
    }

    fn is_file(&self, path: &Path) -> bool {
        self.canonicalize(path)
            .and_then(|real| self.entry_kind(&real))
            .is_ok_and(|k| k == EntryKind::File)
    }
}

/// The checkout on disk.
pub struct DiskTree;

/// For the many callers that read the disk (see [`DiskTree`]).
pub static DISK: DiskTree = DiskTree;

impl FileTree for DiskTree {
    fn read_to_string(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn read_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            // A name that is not UTF-8 cannot be named in a manifest: an
            // error naming it, never a file silently left out.
            match entry?.file_name().into_string() {
                Ok(name) => names.push(name),
                Err(name) => {
                    let shown =
                        Path::new(dir.file_name().unwrap_or_default()).join(Path::new(&name));
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{}: the file name is not UTF-8; rename it", shown.display()),
                    ));
                }
            }
        }
        Ok(names)
    }

    fn entry_kind(&self, path: &Path) -> io::Result<EntryKind> {
        let meta = std::fs::symlink_metadata(path)?;
        Ok(if meta.file_type().is_symlink() {
            EntryKind::Symlink
        } else if meta.is_dir() {
            EntryKind::Dir
        } else {
            EntryKind::File
        })
    }

    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf> {
        path.canonicalize()
    }
}

/// Files in memory, by absolute path; directories are implied by the files
/// under them. No symbolic links.
#[derive(Debug, Default, Clone)]
pub struct MemoryTree {
    files: BTreeMap<PathBuf, String>,
}

impl MemoryTree {
    /// A tree of `(path relative to root, content)` pairs.
    pub fn new(root: &Path, files: &[(&str, &str)]) -> Self {
        let files = files
            .iter()
            .map(|(path, text)| (root.join(path), text.to_string()))
            .collect();
        Self { files }
    }

    fn not_found(path: &Path) -> io::Error {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{}: no such file", path.display()),
        )
    }
}

impl FileTree for MemoryTree {
    fn read_to_string(&self, path: &Path) -> io::Result<String> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| Self::not_found(path))
    }

    fn read_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names: Vec<String> = self
            .files
            .keys()
            .filter_map(|p| p.strip_prefix(dir).ok())
            .filter_map(|rest| rest.components().next())
            .filter_map(|c| c.as_os_str().to_str().map(str::to_string))
            .collect();
        if names.is_empty() && self.entry_kind(dir)? != EntryKind::Dir {
            return Err(io::Error::other(format!(
                "{}: not a directory",
                dir.display()
            )));
        }
        names.dedup();
        Ok(names)
    }

    fn entry_kind(&self, path: &Path) -> io::Result<EntryKind> {
        if self.files.contains_key(path) {
            Ok(EntryKind::File)
        } else if self.files.keys().any(|p| p.starts_with(path)) {
            Ok(EntryKind::Dir)
        } else {
            Err(Self::not_found(path))
        }
    }

    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf> {
        let path = crate::paths::normalize(path);
        self.entry_kind(&path).map(|_| path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_tree_lists_files_and_implied_directories() {
        let root = Path::new("/repo");
        let tree = MemoryTree::new(
            root,
            &[("a/x.yaml", "x"), ("a/b/y.yaml", "y"), ("z.yaml", "z")],
        );
        let mut names = tree.read_dir(root).unwrap();
        names.sort();
        assert_eq!(names, ["a", "z.yaml"]);
        assert!(tree.is_dir(&root.join("a/b")));
        assert!(tree.is_file(&root.join("a/./b/y.yaml")));
        assert_eq!(tree.read_to_string(&root.join("a/x.yaml")).unwrap(), "x");
        assert!(tree.read_to_string(&root.join("nope.yaml")).is_err());
    }

    #[test]
    fn stages_are_discovered_from_a_tree_in_memory() {
        let root = Path::new("/repo");
        let tree = MemoryTree::new(
            root,
            &[
                (
                    "stages.yaml",
                    "apiVersion: stagegate.dev/v1alpha1\nkind: Stage\nmetadata: {name: pre}\nspec: {path: pre}\n",
                ),
                (
                    "pre/cm.yaml",
                    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
                ),
                (".github/ci.yaml", "not: [valid"),
            ],
        );
        let (stages, problems) = crate::stage::discover_stages_in(&tree, root, root);
        assert!(!problems.has_errors(), "{problems}");
        let names: Vec<&str> = stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["pre"]);
    }
}
