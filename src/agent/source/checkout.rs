//! Clean trees of exact commits, written from the object database.
//!
//! A tree is written into a fresh temporary directory and renamed into place,
//! so a reader never sees a half-written tree and nothing from another commit
//! can be left over in it: there is no working copy to update, only whole
//! trees that are created once and deleted whole.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use git2::{ObjectType, Oid, Repository, Tree};

use super::error::SourceError;

const TEMP_PREFIX: &str = ".tmp-";

pub(crate) fn checkout(
    repo_dir: &Path,
    trees_dir: &Path,
    commit: &str,
    keep: usize,
) -> Result<PathBuf, SourceError> {
    let not_fetched = || SourceError::NotFetched {
        commit: commit.to_string(),
        cache: repo_dir.to_path_buf(),
    };
    if commit.len() != 40 || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(SourceError::InvalidReference {
            reference: format!("commit {commit}"),
            reason: "checkout needs the full 40-hex commit id".to_string(),
        });
    }
    let commit = commit.to_ascii_lowercase();
    let _git2 = super::ssh_home::lock();
    if !repo_dir.exists() {
        return Err(not_fetched());
    }
    let repo = Repository::open_bare(repo_dir).map_err(|_| not_fetched())?;
    let oid = Oid::from_str(&commit).map_err(|_| not_fetched())?;
    let tree = repo
        .find_commit(oid)
        .and_then(|c| c.tree())
        .map_err(|_| not_fetched())?;

    std::fs::create_dir_all(trees_dir)
        .map_err(|e| SourceError::io("create the trees directory", trees_dir, e))?;
    let target = trees_dir.join(&commit);
    if target.is_dir() {
        // Marks it as recently used so that pruning keeps it.
        touch(&target);
    } else {
        let temp = trees_dir.join(format!("{TEMP_PREFIX}{commit}-{}", std::process::id()));
        if temp.exists() {
            std::fs::remove_dir_all(&temp)
                .map_err(|e| SourceError::io("remove the stale temporary tree", &temp, e))?;
        }
        std::fs::create_dir(&temp)
            .map_err(|e| SourceError::io("create the temporary tree", &temp, e))?;
        let written = write_tree(&repo, &tree, &temp, "", &commit);
        if let Err(error) = written {
            let _ = std::fs::remove_dir_all(&temp);
            return Err(error);
        }
        std::fs::rename(&temp, &target)
            .map_err(|e| SourceError::io("move the tree into place at", &target, e))?;
    }
    prune(trees_dir, &target, keep);
    Ok(target)
}

fn write_tree(
    repo: &Repository,
    tree: &Tree<'_>,
    dir: &Path,
    prefix: &str,
    commit: &str,
) -> Result<(), SourceError> {
    for entry in tree.iter() {
        let name = entry.name_bytes();
        let shown = format!("{prefix}{}", String::from_utf8_lossy(name));
        if !is_safe_name(name) {
            return Err(SourceError::UnsafePath {
                commit: commit.to_string(),
                path: shown,
            });
        }
        // A name that is not UTF-8 cannot be named in an error or matched by
        // a kustomization: refused, never skipped silently.
        if std::str::from_utf8(name).is_err() {
            return Err(SourceError::NonUtf8Path {
                commit: commit.to_string(),
                path: shown,
            });
        }
        let path = dir.join(OsStr::from_bytes(name));
        let object_error = |e: git2::Error| SourceError::Git {
            operation: "checkout",
            url: format!("commit {commit}").as_str().into(),
            message: format!("{shown}: {}", e.message()),
        };
        match (entry.kind(), entry.filemode()) {
            (Some(ObjectType::Tree), _) => {
                std::fs::create_dir(&path).map_err(|e| SourceError::io("create", &path, e))?;
                let subtree = repo.find_tree(entry.id()).map_err(object_error)?;
                write_tree(repo, &subtree, &path, &format!("{shown}/"), commit)?;
            }
            (Some(ObjectType::Blob), 0o120000) => {
                let blob = repo.find_blob(entry.id()).map_err(object_error)?;
                std::os::unix::fs::symlink(OsStr::from_bytes(blob.content()), &path)
                    .map_err(|e| SourceError::io("create the symlink", &path, e))?;
            }
            (Some(ObjectType::Blob), mode) => {
                let blob = repo.find_blob(entry.id()).map_err(object_error)?;
                std::fs::write(&path, blob.content())
                    .map_err(|e| SourceError::io("write", &path, e))?;
                let bits = if mode & 0o111 != 0 { 0o755 } else { 0o644 };
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(bits))
                    .map_err(|e| SourceError::io("set permissions of", &path, e))?;
            }
            // A submodule: git leaves an empty directory, and so do we.
            (Some(ObjectType::Commit), _) => {
                std::fs::create_dir(&path).map_err(|e| SourceError::io("create", &path, e))?;
            }
            (kind, mode) => {
                return Err(SourceError::Git {
                    operation: "checkout",
                    url: format!("commit {commit}").as_str().into(),
                    message: format!("{shown}: unexpected tree entry {kind:?} with mode {mode:o}"),
                });
            }
        }
    }
    Ok(())
}

/// Rejects names git itself refuses to check out: they could write outside the
/// tree or plant a repository inside it.
fn is_safe_name(name: &[u8]) -> bool {
    !(name.is_empty()
        || name == b"."
        || name == b".."
        || name.contains(&b'/')
        || name.contains(&0)
        || name.eq_ignore_ascii_case(b".git"))
}

fn touch(path: &Path) {
    if let Ok(dir) = std::fs::File::open(path) {
        let _ = dir.set_modified(SystemTime::now());
    }
}

/// Keeps the `keep` most recently used trees (always including `current`) and
/// removes the others, as well as temporary trees left by an interrupted run.
fn prune(trees_dir: &Path, current: &Path, keep: usize) {
    let Ok(entries) = std::fs::read_dir(trees_dir) else {
        return;
    };
    let mut trees: Vec<(SystemTime, PathBuf)> = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(TEMP_PREFIX) {
            let _ = std::fs::remove_dir_all(&path);
            continue;
        }
        if path == current || name.len() != 40 {
            continue;
        }
        let modified = entry
            .metadata()
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        trees.push((modified, path));
    }
    trees.sort_by_key(|t| std::cmp::Reverse(t.0));
    for (_, path) in trees.into_iter().skip(keep.saturating_sub(1)) {
        tracing::debug!(path = %path.display(), "removing old tree");
        if let Err(error) = std::fs::remove_dir_all(&path) {
            tracing::warn!(path = %path.display(), %error, "cannot remove old tree");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_escape_or_plant_a_repository_are_unsafe() {
        for bad in [&b""[..], b".", b"..", b"a/b", b".git", b".GIT", b"a\0b"] {
            assert!(!is_safe_name(bad), "{:?}", String::from_utf8_lossy(bad));
        }
        for good in [&b"a"[..], b".github", b"..a", b"git", b".gitignore"] {
            assert!(is_safe_name(good));
        }
    }

    #[test]
    fn a_file_name_that_is_not_utf8_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let repo_dir = dir.path().join("repo.git");
        let repo = git2::Repository::init_bare(&repo_dir).unwrap();
        let blob = repo.blob(b"kind: ConfigMap\n").unwrap();
        let mut inner = repo.treebuilder(None).unwrap();
        inner.insert(&b"caf\xe9.yaml"[..], blob, 0o100644).unwrap();
        let inner = inner.write().unwrap();
        let mut root = repo.treebuilder(None).unwrap();
        root.insert("app", inner, 0o040000).unwrap();
        let tree = repo.find_tree(root.write().unwrap()).unwrap();
        let sig = git2::Signature::now("t", "t@example.com").unwrap();
        let commit = repo.commit(None, &sig, &sig, "m", &tree, &[]).unwrap();
        let error =
            checkout(&repo_dir, &dir.path().join("trees"), &commit.to_string(), 2).unwrap_err();
        let text = error.to_string();
        assert!(matches!(error, SourceError::NonUtf8Path { .. }), "{text}");
        assert!(text.contains("app/caf"), "{text}");
    }

    #[test]
    fn prune_keeps_the_newest_trees_and_the_current_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut paths = Vec::new();
        for i in 0..5u8 {
            let path = dir.path().join(format!("{:040x}", i));
            std::fs::create_dir(&path).unwrap();
            let when =
                SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000 + u64::from(i));
            std::fs::File::open(&path)
                .unwrap()
                .set_modified(when)
                .unwrap();
            paths.push(path);
        }
        std::fs::create_dir(dir.path().join(".tmp-leftover")).unwrap();
        // The oldest is current: it stays, with the two newest others.
        prune(dir.path(), &paths[0], 3);
        let left: Vec<bool> = paths.iter().map(|p| p.exists()).collect();
        assert_eq!(left, [true, false, false, true, true]);
        assert!(!dir.path().join(".tmp-leftover").exists());
    }
}
