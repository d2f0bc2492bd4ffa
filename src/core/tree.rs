//! The files of one revision, as the pure core reads them: the checkout on
//! disk for the agent and the command line, an in-memory tree in unit tests
//! (no temporary directories). Paths are absolute, under the tree's root.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use crate::core::paths::{PathError, display_path, normalize};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    /// A symbolic link (not followed by [`FileTree::entry_kind`]).
    Symlink,
}

pub trait FileTree: Sync {
    fn read_to_string(&self, path: &Path) -> io::Result<String>;
    /// The bytes of a file (generator files need not be UTF-8).
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.read_to_string(path).map(String::into_bytes)
    }
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

/// Join `rel` (relative to `base`, itself inside `root`) and return the
/// real path in `tree`, refusing anything that resolves outside `root`
/// (through `..` or a symbolic link). `root` must be canonical.
pub fn resolve_inside(
    tree: &dyn FileTree,
    root: &Path,
    base: &Path,
    rel: &Path,
) -> Result<PathBuf, PathError> {
    let joined = normalize(&base.join(rel));
    let outside = || PathError::OutsideRoot {
        path: display_path(root, &joined),
    };
    if !joined.starts_with(root) {
        return Err(outside());
    }
    let real = match tree.canonicalize(&joined) {
        Ok(real) => real,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(PathError::Missing {
                path: display_path(root, &joined),
            });
        }
        Err(source) => {
            return Err(PathError::Io {
                path: display_path(root, &joined),
                source,
            });
        }
    };
    if !real.starts_with(root) {
        return Err(outside());
    }
    Ok(real)
}

/// The checkout on disk.
pub struct DiskTree;

/// For the many callers that read the disk (see [`DiskTree`]).
pub static DISK: DiskTree = DiskTree;

impl FileTree for DiskTree {
    fn read_to_string(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
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
/// under them. Symbolic links are followed as on disk.
#[derive(Debug, Default, Clone)]
pub struct MemoryTree {
    files: BTreeMap<PathBuf, String>,
    /// Link path to its target (relative to the link's directory, or absolute).
    links: BTreeMap<PathBuf, PathBuf>,
}

/// More links than this in one path is a loop, as on Linux.
const MAX_LINKS: usize = 40;

impl MemoryTree {
    /// A tree of `(path relative to root, content)` pairs.
    pub fn new(root: &Path, files: &[(&str, &str)]) -> Self {
        let files = files
            .iter()
            .map(|(path, text)| (normalize(&root.join(path)), text.to_string()))
            .collect();
        Self {
            files,
            links: BTreeMap::new(),
        }
    }

    /// Add a symbolic link at `link` (absolute) pointing to `target`.
    pub fn with_symlink(mut self, link: &Path, target: &Path) -> Self {
        self.links.insert(link.to_path_buf(), target.to_path_buf());
        self
    }

    fn not_found(path: &Path) -> io::Error {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{}: no such file", path.display()),
        )
    }

    /// `path` with every link on the way resolved, without checking that
    /// the result exists.
    fn resolve(&self, path: &Path) -> io::Result<PathBuf> {
        let mut pending: Vec<PathBuf> = vec![normalize(path)];
        let mut hops = 0;
        'again: while let Some(path) = pending.pop() {
            let mut out = PathBuf::new();
            let components: Vec<_> = path.components().collect();
            for (i, c) in components.iter().enumerate() {
                out.push(c.as_os_str());
                if let Some(target) = self.links.get(&out) {
                    hops += 1;
                    if hops > MAX_LINKS {
                        return Err(io::Error::other(format!(
                            "{}: too many levels of symbolic links",
                            path.display()
                        )));
                    }
                    let parent = out.parent().map(Path::to_path_buf).unwrap_or_default();
                    let mut next = parent.join(target);
                    for rest in &components[i + 1..] {
                        next.push(rest.as_os_str());
                    }
                    pending.push(normalize(&next));
                    continue 'again;
                }
            }
            return Ok(out);
        }
        Err(Self::not_found(path))
    }
}

impl FileTree for MemoryTree {
    fn read_to_string(&self, path: &Path) -> io::Result<String> {
        let real = self.resolve(path)?;
        self.files
            .get(&real)
            .cloned()
            .ok_or_else(|| Self::not_found(path))
    }

    fn read_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let dir = self.resolve(dir)?;
        let mut names: Vec<String> = self
            .files
            .keys()
            .chain(self.links.keys())
            .filter_map(|p| p.strip_prefix(&dir).ok())
            .filter_map(|rest| rest.components().next())
            .filter_map(|c| c.as_os_str().to_str().map(str::to_string))
            .collect();
        if names.is_empty() && self.entry_kind(&dir)? != EntryKind::Dir {
            return Err(io::Error::other(format!(
                "{}: not a directory",
                dir.display()
            )));
        }
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn entry_kind(&self, path: &Path) -> io::Result<EntryKind> {
        if self.links.contains_key(path) {
            Ok(EntryKind::Symlink)
        } else if self.files.contains_key(path) {
            Ok(EntryKind::File)
        } else if self.files.keys().any(|p| p.starts_with(path)) {
            Ok(EntryKind::Dir)
        } else {
            Err(Self::not_found(path))
        }
    }

    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf> {
        let real = self.resolve(path)?;
        self.entry_kind(&real).map(|_| real)
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
        let (stages, problems) = crate::core::stage::discover_stages_in(&tree, root, root);
        assert!(!problems.has_errors(), "{problems}");
        let names: Vec<&str> = stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["pre"]);
    }
}
