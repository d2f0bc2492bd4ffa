use crate::core::redact::RedactedUrl;
use std::path::PathBuf;

/// Why a fetch or checkout failed. Every message names what to do next, and
/// none carries a credential: URLs are redacted and messages from libgit2 are
/// scrubbed of the secrets that were loaded before they get here.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("invalid Git source configuration: {reason}")]
    InvalidConfig { reason: String },

    #[error("invalid Git reference {reference}: {reason}")]
    InvalidReference { reference: String, reason: String },

    #[error(
        "cannot read the {what} from {path}: {reason}; check that the Secret is mounted there and readable by the agent"
    )]
    Secret {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },

    #[error(
        "cannot use the known_hosts file {path}: {reason}; mount a known_hosts file holding the Git server's host keys (for example from `ssh-keyscan -p PORT HOST`, checked against the fingerprints the server's owner publishes)"
    )]
    KnownHosts {
        path: PathBuf,
        reason: super::known_hosts::KnownHostsError,
    },

    #[error(
        "the SSH host key of {host} port {port} is not trusted: the server presented {key_type} {fingerprint}, and {known_hosts} has {listed}; verify that fingerprint with the server's owner, then add the key to known_hosts (`ssh-keyscan -p {port} -t {key_type} {host}`)",
        listed = listed_types_phrase(listed_types)
    )]
    UnknownHostKey {
        host: String,
        port: u16,
        key_type: String,
        fingerprint: String,
        known_hosts: PathBuf,
        listed_types: Vec<String>,
    },

    #[error(
        "SSH HOST KEY MISMATCH for {host} port {port}: the server presented {key_type} {fingerprint}, which is not the {key_type} key in {known_hosts}; someone may be intercepting the connection, so nothing was fetched. If the server's key really changed, replace its line in known_hosts"
    )]
    HostKeyMismatch {
        host: String,
        port: u16,
        key_type: String,
        fingerprint: String,
        known_hosts: PathBuf,
    },

    #[error(
        "the SSH host key of {host} ({key_type} {fingerprint}) is marked @revoked in {known_hosts}; refusing to connect"
    )]
    HostKeyRevoked {
        host: String,
        key_type: String,
        fingerprint: String,
        known_hosts: PathBuf,
    },

    #[error(
        "authentication to {url} failed: {detail}; check the username and token (or SSH key) in the Secret and that they grant read access to the repository"
    )]
    Authentication { url: RedactedUrl, detail: String },

    #[error("{kind} `{name}` does not exist on {url}{available}; check the configured reference", available = available_phrase(available))]
    RefNotFound {
        kind: &'static str,
        name: String,
        url: RedactedUrl,
        available: Vec<String>,
    },

    #[error("no tag on {url} matches the semver range `{range}`{available}; push a matching tag or widen the range", available = available_phrase(available))]
    NoMatchingTag {
        range: String,
        url: RedactedUrl,
        available: Vec<String>,
    },

    #[error(
        "commit {commit} is not on {url}: no branch or tag there reaches it; check the pinned commit (a full 40-hex id)"
    )]
    CommitNotFound { commit: String, url: RedactedUrl },

    #[error(
        "cannot reach {url}: {message}; the last good revision stays in force, and the fetch is retried"
    )]
    Unreachable { url: RedactedUrl, message: String },

    #[error("git {operation} failed for {url}: {message}")]
    Git {
        operation: &'static str,
        url: RedactedUrl,
        message: String,
    },

    #[error(
        "commit {commit} is not in the cache at {cache}; fetch a reference that contains it before checking it out"
    )]
    NotFetched { commit: String, cache: PathBuf },

    #[error(
        "commit {commit} holds the path `{path}`, which cannot be written safely; refusing to check it out"
    )]
    UnsafePath { commit: String, path: String },

    #[error(
        "commit {commit} holds the file `{path}`, whose name is not UTF-8 (its other bytes shown as U+FFFD); rename it: stagegate cannot name it in errors or match it in kustomizations"
    )]
    NonUtf8Path { commit: String, path: String },

    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("the Git worker thread stopped unexpectedly: {0}")]
    Worker(String),
}

impl SourceError {
    /// A short, stable name for metrics labels and Event reasons.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::InvalidConfig { .. } => "invalid_config",
            Self::InvalidReference { .. } => "invalid_reference",
            Self::Secret { .. } => "secret",
            Self::KnownHosts { .. } => "known_hosts",
            Self::UnknownHostKey { .. } => "unknown_host_key",
            Self::HostKeyMismatch { .. } => "host_key_mismatch",
            Self::HostKeyRevoked { .. } => "host_key_revoked",
            Self::Authentication { .. } => "authentication",
            Self::RefNotFound { .. } => "ref_not_found",
            Self::NoMatchingTag { .. } => "no_matching_tag",
            Self::CommitNotFound { .. } => "commit_not_found",
            Self::Unreachable { .. } => "unreachable",
            Self::Git { .. } => "git",
            Self::NotFetched { .. } => "not_fetched",
            Self::UnsafePath { .. } => "unsafe_path",
            Self::NonUtf8Path { .. } => "non_utf8_path",
            Self::Io { .. } => "io",
            Self::Worker(_) => "worker",
        }
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

fn listed_types_phrase(types: &[String]) -> String {
    if types.is_empty() {
        "no entry for this host".to_string()
    } else {
        format!("only {} for this host", types.join(", "))
    }
}

fn available_phrase(names: &[String]) -> String {
    const SHOWN: usize = 10;
    if names.is_empty() {
        return " (the remote has none)".to_string();
    }
    let mut text = names
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        text.push_str(&format!(", and {} more", names.len() - SHOWN));
    }
    format!(" (it has {text})")
}
