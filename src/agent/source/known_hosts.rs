//! Strict host key verification against an OpenSSH `known_hosts` file.
//!
//! libgit2 would otherwise consult `~/.ssh/known_hosts` of whoever runs the
//! agent; the file that matters is the one mounted from the Secret, so the
//! decision is made here, in the `certificate_check` callback, and an unknown or
//! different key is always an error.

use std::fmt;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// A host key as the server presented it: the SSH wire-format blob.
#[derive(Clone, PartialEq, Eq)]
pub struct HostKey {
    blob: Vec<u8>,
}

impl HostKey {
    pub fn from_blob(blob: &[u8]) -> Self {
        Self {
            blob: blob.to_vec(),
        }
    }

    /// The algorithm name written at the start of the blob (`ssh-ed25519`, …).
    pub fn key_type(&self) -> String {
        blob_key_type(&self.blob).unwrap_or_else(|| "unknown".to_string())
    }

    /// The fingerprint as `ssh-keygen -lf` and `ssh` print it: `SHA256:<base64>`.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(&self.blob);
        format!("SHA256:{}", STANDARD_NO_PAD.encode(digest))
    }
}

impl fmt::Debug for HostKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.key_type(), self.fingerprint())
    }
}

fn blob_key_type(blob: &[u8]) -> Option<String> {
    let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    let name = blob.get(4..4 + len)?;
    String::from_utf8(name.to_vec()).ok()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    None,
    Revoked,
    CertAuthority,
}

#[derive(Debug, Clone)]
struct Entry {
    marker: Marker,
    patterns: Vec<Pattern>,
    key_type: String,
    key: Vec<u8>,
}

#[derive(Debug, Clone)]
enum Pattern {
    /// `|1|salt|hash`: HMAC-SHA1 of the host name under the salt.
    Hashed {
        salt: Vec<u8>,
        hash: Vec<u8>,
        negated: bool,
    },
    /// A host name, `[host]:port`, or a wildcard pattern with `*` and `?`.
    Plain { pattern: String, negated: bool },
}

/// The entries of a `known_hosts` file.
#[derive(Debug, Clone, Default)]
pub struct KnownHosts {
    entries: Vec<Entry>,
}

/// What the file says about a presented key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A line for this host lists exactly this key.
    Trusted,
    /// The host is listed with a key of the same type, but a different one.
    Mismatch,
    /// Nothing for this host and this key type (other types may be listed).
    Unknown { listed_types: Vec<String> },
    /// The key is marked `@revoked`.
    Revoked,
}

/// Why a known_hosts file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KnownHostsError {
    /// The file cannot be read (said as the OS says it; the caller names the path).
    #[error("{0}")]
    Read(std::io::Error),
    #[error("it holds no host keys")]
    Empty,
    #[error("line {line}: {problem}")]
    Line { line: usize, problem: LineError },
    /// The file cannot be handed to libgit2's SSH transport.
    #[error("cannot copy it to {}: {error}", to.display())]
    Copy {
        to: std::path::PathBuf,
        error: std::io::Error,
    },
    #[error("the SSH server {host} sent no host key that can be checked")]
    NoHostKey { host: String },
}

/// What is wrong with one line of a known_hosts file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("empty line")]
    Empty,
    #[error("unknown marker `{0}`")]
    UnknownMarker(String),
    #[error("a marker without host patterns")]
    MarkerWithoutPatterns,
    #[error("no key type after the host patterns")]
    NoKeyType,
    #[error("no key after the key type")]
    NoKey,
    #[error("the key is not valid base64: {0}")]
    Base64(String),
    #[error("the key is of type `{blob}` but the line says `{line}`")]
    KeyTypeMismatch { blob: String, line: String },
    #[error("the key is not an SSH public key")]
    NotAKey,
    #[error("malformed hashed host `{0}`")]
    HashedHost(String),
    #[error("malformed salt in hashed host `{0}`")]
    Salt(String),
    #[error("malformed hash in hashed host `{0}`")]
    Hash(String),
    #[error("unsupported hashed host format `{0}`")]
    HashFormat(String),
}

impl KnownHosts {
    pub fn load(path: &Path) -> Result<Self, KnownHostsError> {
        let text = std::fs::read_to_string(path).map_err(KnownHostsError::Read)?;
        let parsed = Self::parse(&text)?;
        if parsed.entries.is_empty() {
            return Err(KnownHostsError::Empty);
        }
        Ok(parsed)
    }

    /// Parses OpenSSH's format. A line that cannot be read is an error rather
    /// than being skipped: a silently ignored line is how a trusted key goes
    /// missing without anybody noticing.
    pub fn parse(text: &str) -> Result<Self, KnownHostsError> {
        let mut entries = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let entry = parse_line(line).map_err(|problem| KnownHostsError::Line {
                line: index + 1,
                problem,
            })?;
            entries.push(entry);
        }
        Ok(Self { entries })
    }

    /// Checks `key` for `host` reached on `port`.
    pub fn verify(&self, host: &str, port: u16, key: &HostKey) -> Verdict {
        let names = host_names(host, port);
        let key_type = key.key_type();
        let matching: Vec<&Entry> = self
            .entries
            .iter()
            .filter(|e| e.marker != Marker::CertAuthority && host_matches(&e.patterns, &names))
            .collect();
        if matching
            .iter()
            .any(|e| e.marker == Marker::Revoked && e.key == key.blob)
            // A revoked key is refused for every host, as OpenSSH does.
            || self
                .entries
                .iter()
                .any(|e| e.marker == Marker::Revoked && e.key == key.blob)
        {
            return Verdict::Revoked;
        }
        let trusted: Vec<&&Entry> = matching
            .iter()
            .filter(|e| e.marker == Marker::None)
            .collect();
        if trusted.iter().any(|e| e.key == key.blob) {
            return Verdict::Trusted;
        }
        if trusted.iter().any(|e| e.key_type == key_type) {
            return Verdict::Mismatch;
        }
        let mut listed_types: Vec<String> = trusted.iter().map(|e| e.key_type.clone()).collect();
        listed_types.sort();
        listed_types.dedup();
        Verdict::Unknown { listed_types }
    }
}

/// The names a host is known by in the file: OpenSSH writes `host` for port 22
/// and `[host]:port` otherwise.
fn host_names(host: &str, port: u16) -> Vec<String> {
    if port == 22 {
        vec![host.to_string()]
    } else {
        vec![format!("[{host}]:{port}")]
    }
}

fn parse_line(line: &str) -> Result<Entry, LineError> {
    let mut fields = line.split_whitespace();
    let mut first = fields.next().ok_or(LineError::Empty)?;
    let marker = match first {
        "@revoked" => Marker::Revoked,
        "@cert-authority" => Marker::CertAuthority,
        m if m.starts_with('@') => return Err(LineError::UnknownMarker(m.to_string())),
        _ => Marker::None,
    };
    if marker != Marker::None {
        first = fields.next().ok_or(LineError::MarkerWithoutPatterns)?;
    }
    let patterns = first
        .split(',')
        .filter(|p| !p.is_empty())
        .map(parse_pattern)
        .collect::<Result<Vec<_>, _>>()?;
    let key_type = fields.next().ok_or(LineError::NoKeyType)?.to_string();
    let key_b64 = fields.next().ok_or(LineError::NoKey)?;
    let key = STANDARD
        .decode(key_b64)
        .map_err(|e| LineError::Base64(e.to_string()))?;
    match blob_key_type(&key) {
        Some(inner) if inner == key_type => {}
        Some(inner) => {
            return Err(LineError::KeyTypeMismatch {
                blob: inner.to_string(),
                line: key_type,
            });
        }
        None => return Err(LineError::NotAKey),
    }
    Ok(Entry {
        marker,
        patterns,
        key_type,
        key,
    })
}

fn parse_pattern(raw: &str) -> Result<Pattern, LineError> {
    let (negated, body) = match raw.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, raw),
    };
    if let Some(hashed) = body.strip_prefix("|1|") {
        let (salt, hash) = hashed
            .split_once('|')
            .ok_or_else(|| LineError::HashedHost(raw.to_string()))?;
        let salt = STANDARD
            .decode(salt)
            .map_err(|_| LineError::Salt(raw.to_string()))?;
        let hash = STANDARD
            .decode(hash)
            .map_err(|_| LineError::Hash(raw.to_string()))?;
        return Ok(Pattern::Hashed {
            salt,
            hash,
            negated,
        });
    }
    if body.starts_with('|') {
        return Err(LineError::HashFormat(raw.to_string()));
    }
    Ok(Pattern::Plain {
        pattern: body.to_ascii_lowercase(),
        negated,
    })
}

/// True when a positive pattern matches one of the names and no negated one
/// does, which is OpenSSH's rule for a comma-separated pattern list.
fn host_matches(patterns: &[Pattern], names: &[String]) -> bool {
    let mut positive = false;
    for pattern in patterns {
        let (hit, negated) = match pattern {
            Pattern::Hashed {
                salt,
                hash,
                negated,
            } => (
                names.iter().any(|n| hashed_name_matches(salt, hash, n)),
                *negated,
            ),
            Pattern::Plain { pattern, negated } => (
                names
                    .iter()
                    .any(|n| wildcard_match(pattern, &n.to_ascii_lowercase())),
                *negated,
            ),
        };
        if hit && negated {
            return false;
        }
        positive |= hit && !negated;
    }
    positive
}

fn hashed_name_matches(salt: &[u8], hash: &[u8], name: &str) -> bool {
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(salt) else {
        return false;
    };
    mac.update(name.as_bytes());
    mac.verify_slice(hash).is_ok()
}

fn wildcard_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real public keys made with ssh-keygen (private halves discarded); the
    // fingerprints are what `ssh-keygen -lf` printed for them.
    const ED25519_A: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIKYVEHXVzrmng0yIFsx8uyTtGrH+K21Oj1/iZa/B73uV";
    const ED25519_A_FP: &str = "SHA256:KmFnUloduUJJUUjFrn7lipqL4GrckSMs8MIpygdhWsk";
    const ED25519_B: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIL1TppAoDCNXYkAxZy0Gb7ZXaCeNH4KFo5S5NEDcEVWZ";
    const ECDSA: &str = "AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBGh2Jsni8rnbXjOIwBGJB4v+vkN/F6o8kgGmaGOcWDQWVOBpA2psChwUMhY8YlUnO5WPhUSmZltsOKKop+6AzRs=";
    const ECDSA_FP: &str = "SHA256:pjcC9t0kV/xEod++7xkWRyR3ApeL21JkK1ncf0RrI0w";
    const RSA: &str = "AAAAB3NzaC1yc2EAAAADAQABAAABAQCuUywQbkgp6VUa81MvWe/2ZlSEl/PE/4wE9WEUL9G5xh2Rs/7hVlUJ7dAaGfSpyzRi2v5W7tM2uNUaA/jYRidl55oRgfuj++afCvI0Qcce06WVq8nYjVkpD87LsEU4YbwZpzjmP2jczj99Aux2KJ6tiErnedF7uYMMCa2xJpdxOdGJ7Rg/guWWOvPQXbJer9VL9f+Xl4umXVAgrlJj/x7InBClDFA9mOUG4rSVhdwgi0S3QhoQ+HzPk3aMu+SywtnCZsWLNJOJyZImzvVbxbiMfddmzwjPp1U1TsWddnU/qXgI1y/hb4CGyeI0FA7VKsEt42HyIteeeoOpaIYN+PK1";
    const RSA_FP: &str = "SHA256:ChVZCTryJpCYDTFzhOanSRnX2nN6MXaIVvkgotbrX5E";

    fn key(b64: &str) -> HostKey {
        HostKey::from_blob(&STANDARD.decode(b64).unwrap())
    }

    #[test]
    fn plain_host_on_port_22_is_trusted_and_other_key_is_a_mismatch() {
        let kh = KnownHosts::parse(&format!("git.example.com ssh-ed25519 {ED25519_A}\n")).unwrap();
        assert_eq!(
            kh.verify("git.example.com", 22, &key(ED25519_A)),
            Verdict::Trusted
        );
        assert_eq!(
            kh.verify("GIT.example.com", 22, &key(ED25519_A)),
            Verdict::Trusted
        );
        assert_eq!(
            kh.verify("git.example.com", 22, &key(ED25519_B)),
            Verdict::Mismatch
        );
        assert_eq!(
            kh.verify("git.example.com", 22, &key(ECDSA)),
            Verdict::Unknown {
                listed_types: vec!["ssh-ed25519".to_string()]
            }
        );
        assert_eq!(
            kh.verify("other.example.com", 22, &key(ED25519_A)),
            Verdict::Unknown {
                listed_types: vec![]
            }
        );
    }

    #[test]
    fn bracketed_port_entries_only_match_that_port() {
        let kh = KnownHosts::parse(&format!("[127.0.0.1]:2222 ssh-rsa {RSA}\n")).unwrap();
        assert_eq!(kh.verify("127.0.0.1", 2222, &key(RSA)), Verdict::Trusted);
        assert!(matches!(
            kh.verify("127.0.0.1", 22, &key(RSA)),
            Verdict::Unknown { .. }
        ));
        assert!(matches!(
            kh.verify("127.0.0.1", 2223, &key(RSA)),
            Verdict::Unknown { .. }
        ));
    }

    #[test]
    fn hashed_entries_written_by_ssh_keygen_match() {
        // `ssh-keygen -H` output for `[10.0.0.5]:2022` (ecdsa) and `git.example.com` (ed25519).
        let text = format!(
            "|1|ufXqpoEC0QKC3cr16mw8N+buvEc=|qeKVse7227hzTtR2CknzWp4V7vA= ecdsa-sha2-nistp256 {ECDSA}\n\
             |1|oM8yT7pFtmeQjJuTxRMgG45lJbY=|W2Gn2SaK3GFSTKlLlamOaDOjmiU= ssh-ed25519 {ED25519_A}\n"
        );
        let kh = KnownHosts::parse(&text).unwrap();
        assert_eq!(kh.verify("10.0.0.5", 2022, &key(ECDSA)), Verdict::Trusted);
        assert_eq!(
            kh.verify("git.example.com", 22, &key(ED25519_A)),
            Verdict::Trusted
        );
        assert_eq!(
            kh.verify("git.example.com", 22, &key(ED25519_B)),
            Verdict::Mismatch
        );
        assert!(matches!(
            kh.verify("10.0.0.5", 22, &key(ECDSA)),
            Verdict::Unknown { .. }
        ));
        assert!(matches!(
            kh.verify("git.example.org", 22, &key(ED25519_A)),
            Verdict::Unknown { .. }
        ));
    }

    #[test]
    fn wildcards_negation_and_revocation() {
        let text = format!(
            "*.example.com,!evil.example.com ssh-ed25519 {ED25519_A}\n@revoked * ssh-ed25519 {ED25519_B}\n"
        );
        let kh = KnownHosts::parse(&text).unwrap();
        assert_eq!(
            kh.verify("git.example.com", 22, &key(ED25519_A)),
            Verdict::Trusted
        );
        assert!(matches!(
            kh.verify("evil.example.com", 22, &key(ED25519_A)),
            Verdict::Unknown { .. }
        ));
        assert_eq!(
            kh.verify("git.example.com", 22, &key(ED25519_B)),
            Verdict::Revoked
        );
    }

    #[test]
    fn fingerprint_and_type_match_ssh_keygen() {
        for (b64, ty, fp) in [
            (ED25519_A, "ssh-ed25519", ED25519_A_FP),
            (ECDSA, "ecdsa-sha2-nistp256", ECDSA_FP),
            (RSA, "ssh-rsa", RSA_FP),
        ] {
            assert_eq!(key(b64).key_type(), ty);
            assert_eq!(key(b64).fingerprint(), fp);
        }
    }

    #[test]
    fn malformed_lines_are_errors_not_skipped() {
        assert!(KnownHosts::parse("host ssh-ed25519 not-base64!!\n").is_err());
        assert!(KnownHosts::parse("host ssh-ed25519\n").is_err());
        assert!(KnownHosts::parse(&format!("host ssh-rsa {ED25519_A}\n")).is_err());
        assert!(
            KnownHosts::parse("# only a comment\n\n")
                .unwrap()
                .entries
                .is_empty()
        );
    }
}
