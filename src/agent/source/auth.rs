//! Credentials read from files (a mounted Secret) and the libgit2 callbacks
//! that hand them out once and verify SSH host keys.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use git2::{CertificateCheckStatus, Cred, CredentialType, RemoteCallbacks};

use super::GitAuth;
use super::error::SourceError;
use super::known_hosts::{HostKey, KnownHosts, KnownHostsError, Verdict};
use super::url::{RemoteUrl, Transport};

/// Credentials loaded for one fetch. Files are read again on every fetch, so a
/// rotated Secret takes effect without restarting the agent.
pub(crate) struct Credentials {
    kind: Kind,
    url: RemoteUrl,
    /// What went wrong inside a callback, reported instead of libgit2's
    /// generic "callback returned an error".
    outcome: Rc<RefCell<CallbackFailure>>,
}

enum Kind {
    None,
    Https {
        username: String,
        password: String,
    },
    Ssh {
        username: String,
        private_key: PathBuf,
        passphrase: Option<String>,
        known_hosts: KnownHosts,
        known_hosts_path: PathBuf,
        host: String,
        port: u16,
    },
}

#[derive(Default)]
struct CallbackFailure {
    host_key: Option<SourceError>,
    rejected: bool,
    none_configured: bool,
}

impl Credentials {
    pub(crate) fn load(auth: &GitAuth, url: &RemoteUrl) -> Result<Self, SourceError> {
        let kind = match (auth, url.transport()) {
            (GitAuth::None, Transport::Ssh) => {
                return Err(SourceError::InvalidConfig {
                    reason: format!(
                        "{url} is an SSH URL, which needs SSH auth with a private key and a known_hosts file (host keys are never accepted unverified)"
                    ),
                });
            }
            (GitAuth::None, _) => Kind::None,
            (
                GitAuth::Https {
                    username,
                    password_file,
                },
                Transport::Http,
            ) => Kind::Https {
                username: username.clone(),
                password: read_secret("password or token", password_file)?,
            },
            (GitAuth::Https { .. }, _) => {
                return Err(SourceError::InvalidConfig {
                    reason: format!(
                        "HTTPS username/password auth is configured but {url} is not an http(s) URL"
                    ),
                });
            }
            (
                GitAuth::Ssh {
                    private_key,
                    known_hosts,
                    passphrase_file,
                },
                Transport::Ssh,
            ) => {
                std::fs::metadata(private_key).map_err(|e| SourceError::Secret {
                    what: "SSH private key",
                    path: private_key.clone(),
                    reason: e.to_string(),
                })?;
                let passphrase = passphrase_file
                    .as_deref()
                    .map(|p| read_secret("SSH key passphrase", p))
                    .transpose()?;
                let parsed =
                    KnownHosts::load(known_hosts).map_err(|reason| SourceError::KnownHosts {
                        path: known_hosts.clone(),
                        reason,
                    })?;
                Kind::Ssh {
                    username: url.user().unwrap_or("git").to_string(),
                    private_key: private_key.clone(),
                    passphrase,
                    known_hosts: parsed,
                    known_hosts_path: known_hosts.clone(),
                    host: url.host().unwrap_or_default().to_string(),
                    port: url.port().unwrap_or(22),
                }
            }
            (GitAuth::Ssh { .. }, _) => {
                return Err(SourceError::InvalidConfig {
                    reason: format!(
                        "SSH auth is configured but {url} is not an SSH URL (use ssh://user@host/path or user@host:path)"
                    ),
                });
            }
        };
        Ok(Self {
            kind,
            url: url.clone(),
            outcome: Rc::default(),
        })
    }

    /// Callbacks for one connection attempt. Each set offers the secret once:
    /// being asked again means the server refused it, and asking the server
    /// again with the same secret would only loop.
    pub(crate) fn callbacks(&self) -> RemoteCallbacks<'_> {
        let mut callbacks = RemoteCallbacks::new();
        // libgit2 counts received bytes only while a progress callback is set.
        callbacks.transfer_progress(|_| true);
        let offered = Cell::new(false);
        let asked = Cell::new(0u32);
        callbacks.credentials(move |_url, username_from_url, allowed| {
            asked.set(asked.get() + 1);
            if asked.get() > 4 {
                self.outcome.borrow_mut().rejected = true;
                return Err(git2::Error::from_str("credentials were refused"));
            }
            match &self.kind {
                Kind::None => {
                    self.outcome.borrow_mut().none_configured = true;
                    Err(git2::Error::from_str("no credentials configured"))
                }
                Kind::Https { username, password } => {
                    if !allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
                        return Err(git2::Error::from_str(
                            "the server wants a kind of credential other than username and password",
                        ));
                    }
                    if offered.replace(true) {
                        self.outcome.borrow_mut().rejected = true;
                        return Err(git2::Error::from_str("the server refused the credentials"));
                    }
                    let username = if username.is_empty() {
                        username_from_url.unwrap_or("git")
                    } else {
                        username
                    };
                    Cred::userpass_plaintext(username, password)
                }
                Kind::Ssh {
                    username,
                    private_key,
                    passphrase,
                    ..
                } => {
                    if allowed.contains(CredentialType::USERNAME) {
                        return Cred::username(username);
                    }
                    if !allowed.contains(CredentialType::SSH_KEY) {
                        return Err(git2::Error::from_str(
                            "the SSH server does not accept public key authentication",
                        ));
                    }
                    if offered.replace(true) {
                        self.outcome.borrow_mut().rejected = true;
                        return Err(git2::Error::from_str("the server refused the SSH key"));
                    }
                    // libssh2 cannot derive the public key of an encrypted
                    // private key, so the one mounted beside it is used.
                    let public = public_key_beside(private_key);
                    Cred::ssh_key(
                        username,
                        public.as_deref(),
                        private_key,
                        passphrase.as_deref(),
                    )
                }
            }
        });
        callbacks.certificate_check(move |cert, _libgit2_host| {
            let Kind::Ssh {
                known_hosts,
                known_hosts_path,
                host,
                port,
                ..
            } = &self.kind
            else {
                // TLS certificates keep libgit2's own verification against the
                // system trust store.
                return Ok(CertificateCheckStatus::CertificatePassthrough);
            };
            let Some(blob) = cert.as_hostkey().and_then(|k| k.hostkey()) else {
                let error = SourceError::KnownHosts {
                    path: known_hosts_path.clone(),
                    reason: KnownHostsError::NoHostKey { host: host.clone() },
                };
                self.outcome.borrow_mut().host_key = Some(error);
                return Err(git2::Error::from_str("host key not verifiable"));
            };
            let key = HostKey::from_blob(blob);
            let error = match known_hosts.verify(host, *port, &key) {
                Verdict::Trusted => {
                    tracing::debug!(host = %host, port, fingerprint = %key.fingerprint(), "SSH host key verified");
                    return Ok(CertificateCheckStatus::CertificateOk);
                }
                Verdict::Mismatch => SourceError::HostKeyMismatch {
                    host: host.clone(),
                    port: *port,
                    key_type: key.key_type(),
                    fingerprint: key.fingerprint(),
                    known_hosts: known_hosts_path.clone(),
                },
                Verdict::Unknown { listed_types } => SourceError::UnknownHostKey {
                    host: host.clone(),
                    port: *port,
                    key_type: key.key_type(),
                    fingerprint: key.fingerprint(),
                    known_hosts: known_hosts_path.clone(),
                    listed_types,
                },
                Verdict::Revoked => SourceError::HostKeyRevoked {
                    host: host.clone(),
                    key_type: key.key_type(),
                    fingerprint: key.fingerprint(),
                    known_hosts: known_hosts_path.clone(),
                },
            };
            self.outcome.borrow_mut().host_key = Some(error);
            Err(git2::Error::from_str("host key rejected"))
        });
        callbacks
    }

    /// Removes every secret this fetch knows of from a message.
    pub(crate) fn scrub(&self, message: &str) -> String {
        let mut out = message.replace(self.url.as_str(), self.url.redacted().as_str());
        let from_url = self.url.credentials();
        let mut secrets: Vec<&str> = from_url.iter().map(String::as_str).collect();
        match &self.kind {
            Kind::Https { password, .. } => secrets.push(password),
            Kind::Ssh {
                passphrase: Some(p),
                ..
            } => secrets.push(p),
            _ => {}
        }
        for secret in secrets {
            if !secret.is_empty() {
                out = out.replace(secret, "***");
            }
        }
        crate::core::redact::scrub_urls(&out)
    }

    /// Turns a libgit2 error into the error the user should see, preferring
    /// what the callbacks found out over libgit2's summary of it.
    pub(crate) fn classify(&self, operation: &'static str, error: git2::Error) -> SourceError {
        let mut outcome = self.outcome.borrow_mut();
        if let Some(host_key) = outcome.host_key.take() {
            return host_key;
        }
        let url = self.url.redacted();
        let message = self.scrub(error.message());
        if std::mem::take(&mut outcome.rejected) {
            let detail = match self.kind {
                Kind::Ssh { .. } => "the server refused the SSH key",
                _ => "the server refused the username and token",
            };
            return SourceError::Authentication {
                url,
                detail: detail.to_string(),
            };
        }
        if std::mem::take(&mut outcome.none_configured) {
            let detail = if self.url.has_credentials() {
                "the server refused the credentials written in the URL"
            } else {
                "the server asks for credentials and none are configured"
            };
            return SourceError::Authentication {
                url,
                detail: detail.to_string(),
            };
        }
        if error.code() == git2::ErrorCode::Auth
            || message.contains("authentication required")
            || message.contains("status code: 401")
            || message.contains("status code: 403")
        {
            return SourceError::Authentication {
                url,
                detail: message,
            };
        }
        if let Kind::Ssh { private_key, .. } = &self.kind
            && error.class() == git2::ErrorClass::Ssh
            && (message.contains("private key")
                || message.contains("passphrase")
                || message.contains("authenticate"))
        {
            let hint = if public_key_beside(private_key).is_none() {
                format!(
                    "; check the passphrase, and mount the public key beside the private key as {}.pub (libssh2 cannot derive it from an encrypted key)",
                    private_key.display()
                )
            } else {
                "; check the key and its passphrase".to_string()
            };
            return SourceError::Authentication {
                url,
                detail: format!(
                    "cannot use the SSH private key {}: {message}{hint}",
                    private_key.display()
                ),
            };
        }
        if error.code() == git2::ErrorCode::Certificate {
            return SourceError::Git {
                operation,
                url,
                message: format!(
                    "{message}; the server's TLS certificate is not trusted by the system's CA bundle"
                ),
            };
        }
        let network = matches!(
            error.class(),
            git2::ErrorClass::Net
                | git2::ErrorClass::Os
                | git2::ErrorClass::Ssh
                | git2::ErrorClass::Http
                | git2::ErrorClass::Ssl
        ) || (self.url.transport() == Transport::Local
            && error.code() == git2::ErrorCode::NotFound);
        if network {
            SourceError::Unreachable { url, message }
        } else {
            SourceError::Git {
                operation,
                url,
                message,
            }
        }
    }
}

/// `<private key>.pub`, as `ssh-keygen` and Flux's Git secrets lay it out.
fn public_key_beside(private_key: &Path) -> Option<PathBuf> {
    let mut name = private_key.as_os_str().to_os_string();
    name.push(".pub");
    let public = PathBuf::from(name);
    public.is_file().then_some(public)
}

fn read_secret(what: &'static str, path: &Path) -> Result<String, SourceError> {
    let text = std::fs::read_to_string(path).map_err(|e| SourceError::Secret {
        what,
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    // Secrets written with `echo` end in a newline that is not part of them.
    let value = text.trim_end_matches(['\n', '\r']).to_string();
    if value.is_empty() {
        return Err(SourceError::Secret {
            what,
            path: path.to_path_buf(),
            reason: "the file is empty".to_string(),
        });
    }
    Ok(value)
}
