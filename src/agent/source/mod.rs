//! The Git source: one bare repository per source in a cache directory,
//! fetched by ref, and clean trees of exact commits for the renderer.
//!
//! A poll connects once and reads the server's ref advertisement. When the
//! wanted ref still points at an object the cache has, nothing is downloaded:
//! a no-change poll costs one round trip whatever the size of the history.
//! Otherwise only the wanted ref is fetched, with depth 1 unless the source is
//! configured for full history or the server cannot do shallow fetches.
//!
//! libgit2 is blocking, so every call runs in `spawn_blocking`. Operations
//! take turns: per source, because they share the cache repository, and
//! across sources in one process, because an SSH fetch changes a libgit2
//! setting that is global (see `ssh_home`). One `GitSource` owns its
//! `cache_dir`; two sources must not share one.
//!
//! Credentials come from files and are read at every fetch, so a rotated
//! Secret is picked up without a restart. They never appear in logs or errors:
//! URLs are shown redacted and messages from libgit2 are scrubbed.

mod auth;
mod checkout;
mod error;
mod fetch;
mod known_hosts;
mod ssh_home;
mod url;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

pub use error::SourceError;
pub use known_hosts::{HostKey, KnownHosts, Verdict};
pub use url::{RemoteUrl, Transport};

/// Which revision of the repository to follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GitRef {
    /// The tip of a branch (`main` or `refs/heads/main`).
    Branch(String),
    /// A tag (`v1.2.0` or `refs/tags/v1.2.0`); annotated tags are peeled.
    Tag(String),
    /// The highest tag matching a semver range such as `>=1.2, <2`. Tags may
    /// carry a leading `v`; pre-releases match only ranges that name one.
    TagRange(String),
    /// One commit, by its full 40-hex id.
    Commit(String),
}

impl std::fmt::Display for GitRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&fetch::describe(self))
    }
}

/// How to authenticate, from files mounted from a Secret.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum GitAuth {
    #[default]
    None,
    /// Public key authentication; the server's host key must be listed in
    /// `known_hosts` (OpenSSH format, hashed entries and `[host]:port` allowed).
    /// The user is the one in the URL, `git` by default. When the public key
    /// is mounted beside the private one as `<private_key>.pub` (as in Flux's
    /// Git secrets), it is used rather than derived from the private key,
    /// which libssh2 cannot always do for passphrase-protected keys.
    Ssh {
        private_key: PathBuf,
        known_hosts: PathBuf,
        passphrase_file: Option<PathBuf>,
    },
    /// HTTP basic authentication with a password or an access token.
    Https {
        username: String,
        password_file: PathBuf,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceConfig {
    pub url: String,
    pub reference: GitRef,
    pub cache_dir: PathBuf,
    pub auth: GitAuth,
    /// Fetch with depth 1 where the server allows it (the default).
    pub shallow: bool,
}

impl SourceConfig {
    /// A shallow, unauthenticated source; set `auth` or `shallow` afterwards.
    pub fn new(url: impl Into<String>, reference: GitRef, cache_dir: impl Into<PathBuf>) -> Self {
        Self {
            url: url.into(),
            reference,
            cache_dir: cache_dir.into(),
            auth: GitAuth::None,
            shallow: true,
        }
    }
}

/// The result of one successful fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The commit the reference points at (40-hex sha1).
    pub commit: String,
    /// The revision as Flux prints it: `main@sha1:<commit>`, `v1.2.0@sha1:<commit>`,
    /// or `sha1:<commit>` for a pinned commit.
    pub reference: crate::core::object::Revision,
    /// False when the commit is the one this source's previous successful
    /// fetch returned. The first fetch of a process always reports a change,
    /// so a restarted agent reconciles once.
    pub changed: bool,
    /// Pack bytes received; 0 when nothing had to be downloaded.
    pub bytes_received: usize,
    pub duration: Duration,
}

/// How many trees `checkout` keeps: the one returned and the most recently
/// used others, so a render still reading the previous tree is not pulled
/// from under it.
const KEEP_TREES: usize = 3;

/// libgit2's defaults wait for the kernel's TCP timeouts; an agent should
/// rather fail, keep its last good revision, and retry.
const CONNECT_TIMEOUT_MS: i32 = 30_000;
const SERVER_TIMEOUT_MS: i32 = 120_000;

pub struct GitSource {
    config: Arc<SourceConfig>,
    last_commit: Arc<Mutex<Option<String>>>,
    busy: Arc<tokio::sync::Mutex<()>>,
}

impl GitSource {
    pub fn new(config: SourceConfig) -> Self {
        static TIMEOUTS: Once = Once::new();
        TIMEOUTS.call_once(|| {
            // SAFETY: these only store integers in libgit2's global settings,
            // set once before this process starts any Git operation.
            unsafe {
                let _ = git2::opts::set_server_connect_timeout_in_milliseconds(CONNECT_TIMEOUT_MS);
                let _ = git2::opts::set_server_timeout_in_milliseconds(SERVER_TIMEOUT_MS);
            }
        });
        Self {
            config: Arc::new(config),
            last_commit: Arc::default(),
            busy: Arc::default(),
        }
    }

    pub fn config(&self) -> &SourceConfig {
        &self.config
    }

    /// The commit of the last successful fetch, if any.
    pub fn last_commit(&self) -> Option<String> {
        self.last_commit.lock().expect("poisoned").clone()
    }

    /// The bare repository that caches the remote's objects.
    pub fn repository_dir(&self) -> PathBuf {
        self.config.cache_dir.join("repo.git")
    }

    fn trees_dir(&self) -> PathBuf {
        self.config.cache_dir.join("trees")
    }

    /// Fetches the configured reference and reports its commit. The cache
    /// repository is created on the first call and reused afterwards; a failed
    /// fetch changes nothing the caller relies on.
    pub async fn fetch(&self) -> Result<Fetched, SourceError> {
        let url =
            RemoteUrl::parse(&self.config.url).map_err(|reason| SourceError::InvalidConfig {
                reason: format!("repository URL: {reason}"),
            })?;
        let redacted = url.redacted();
        let reference = self.config.reference.to_string();
        // Owned so that the lock stays held by the blocking task even if this
        // future is dropped while it runs.
        let guard = self.busy.clone().lock_owned().await;
        let config = self.config.clone();
        let repo_dir = self.repository_dir();
        let started = Instant::now();
        let outcome = tokio::task::spawn_blocking(move || {
            let _guard = guard;
            fetch::fetch(&config, &url, &repo_dir)
        })
        .await
        .map_err(|e| SourceError::Worker(e.to_string()))?;
        let duration = started.elapsed();
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(error) => {
                tracing::warn!(url = %redacted, reference = %reference, error = %error, kind = error.metric_label(), "Git fetch failed");
                return Err(error);
            }
        };
        let commit = outcome.commit.to_string();
        let changed = {
            let mut last = self.last_commit.lock().expect("poisoned");
            let changed = last.as_deref() != Some(commit.as_str());
            *last = Some(commit.clone());
            changed
        };
        // The agent logs a new revision; a poll that found none is quiet.
        tracing::debug!(
            url = %redacted,
            reference = %reference,
            commit = %commit,
            revision = %outcome.reference,
            changed,
            downloaded = outcome.downloaded,
            bytes = outcome.bytes_received,
            ms = duration.as_millis() as u64,
            "Git fetch done"
        );
        Ok(Fetched {
            commit,
            reference: outcome.reference.into(),
            changed,
            bytes_received: outcome.bytes_received,
            duration,
        })
    }

    /// A clean tree of exactly `commit` (which must have been fetched) at
    /// `cache_dir/trees/<commit>`. Trees are written once and never modified;
    /// older ones beyond the few most recently used are removed.
    pub async fn checkout(&self, commit: &str) -> Result<PathBuf, SourceError> {
        let guard = self.busy.clone().lock_owned().await;
        let repo_dir = self.repository_dir();
        let trees_dir = self.trees_dir();
        let commit = commit.to_string();
        let span_commit = commit.clone();
        let result = tokio::task::spawn_blocking(move || {
            let _guard = guard;
            checkout::checkout(&repo_dir, &trees_dir, &commit, KEEP_TREES)
        })
        .await
        .map_err(|e| SourceError::Worker(e.to_string()))?;
        match &result {
            Ok(path) => {
                tracing::debug!(commit = %span_commit, path = %path.display(), "tree checked out")
            }
            Err(error) => tracing::warn!(commit = %span_commit, error = %error, "checkout failed"),
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loop_can_share_a_source_and_spawn_its_futures() {
        fn send<T: Send>(_: &T) {}
        fn shared<T: Send + Sync>() {}
        shared::<GitSource>();
        let source = GitSource::new(SourceConfig::new(
            "file:///nowhere",
            GitRef::Branch("main".into()),
            "/nonexistent",
        ));
        send(&source.fetch());
        send(&source.checkout(&"0".repeat(40)));
    }

    #[tokio::test]
    async fn a_bad_url_fails_at_fetch_without_touching_the_cache() {
        let cache = tempfile::tempdir().unwrap();
        let source = GitSource::new(SourceConfig::new(
            "ftp://example.com/repo.git",
            GitRef::Branch("main".into()),
            cache.path().join("cache"),
        ));
        let error = source.fetch().await.unwrap_err();
        assert!(
            matches!(error, SourceError::InvalidConfig { .. }),
            "{error}"
        );
        assert!(!cache.path().join("cache").exists());
    }
}
