//! Just enough understanding of Git remote URLs to redact credentials and to
//! know which host and port an SSH host key must match. libgit2 does the real
//! parsing when it connects; this never rewrites the URL it is given.

use std::fmt;

use crate::core::redact::RedactedUrl;

/// How a remote is reached, as far as authentication and shallow fetches care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `file://` or a plain local path: libgit2's local transport, which cannot
    /// do shallow fetches.
    Local,
    /// `git://`: the unauthenticated git daemon protocol.
    Git,
    /// `http://` or `https://`.
    Http,
    /// `ssh://` or the scp-like `user@host:path`.
    Ssh,
}

/// A remote URL split into the parts the source needs.
#[derive(Clone, PartialEq, Eq)]
pub struct RemoteUrl {
    raw: String,
    transport: Transport,
    user: Option<String>,
    host: Option<String>,
    port: Option<u16>,
}

/// Why a repository URL cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("the repository URL is empty")]
    Empty,
    #[error("unsupported URL scheme `{0}` (use https://, ssh://, git:// or file://)")]
    Scheme(String),
    #[error("the repository URL has no host")]
    NoHost,
    #[error("unterminated `[` in host `{0}`")]
    UnterminatedBracket(String),
    #[error("`{0}` is not a valid port number")]
    Port(String),
}

impl RemoteUrl {
    pub fn parse(raw: &str) -> Result<Self, UrlError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(UrlError::Empty);
        }
        if let Some((scheme, rest)) = raw.split_once("://") {
            let transport = match scheme.to_ascii_lowercase().as_str() {
                "file" => Transport::Local,
                "git" => Transport::Git,
                "http" | "https" => Transport::Http,
                "ssh" | "ssh+git" | "git+ssh" => Transport::Ssh,
                other => return Err(UrlError::Scheme(other.to_string())),
            };
            if transport == Transport::Local {
                return Ok(Self::local(raw));
            }
            let authority = rest.split('/').next().unwrap_or_default();
            let (userinfo, hostport) = match authority.rsplit_once('@') {
                Some((userinfo, hostport)) => (Some(userinfo), hostport),
                None => (None, authority),
            };
            let user =
                userinfo.map(|info| info.split_once(':').map_or(info, |(u, _)| u).to_string());
            let (host, port) = split_host_port(hostport)?;
            if host.is_empty() {
                return Err(UrlError::NoHost);
            }
            return Ok(Self {
                raw: raw.to_string(),
                transport,
                user: user.filter(|u| !u.is_empty()),
                host: Some(host),
                port,
            });
        }
        // Without a scheme it is scp-like (`[user@]host:path`) when a colon comes
        // before the first slash, and a local path otherwise, as git decides.
        let colon = raw.find(':');
        let slash = raw.find('/');
        match colon {
            Some(c) if slash.is_none_or(|s| c < s) && c > 0 => {
                let authority = &raw[..c];
                let (user, host) = match authority.rsplit_once('@') {
                    Some((user, host)) => (Some(user.to_string()), host),
                    None => (None, authority),
                };
                let host = host.trim_start_matches('[').trim_end_matches(']');
                if host.is_empty() {
                    return Err(UrlError::NoHost);
                }
                Ok(Self {
                    raw: raw.to_string(),
                    transport: Transport::Ssh,
                    user: user.filter(|u| !u.is_empty()),
                    host: Some(host.to_string()),
                    port: None,
                })
            }
            _ => Ok(Self::local(raw)),
        }
    }

    fn local(raw: &str) -> Self {
        Self {
            raw: raw.to_string(),
            transport: Transport::Local,
            user: None,
            host: None,
            port: None,
        }
    }

    /// The URL exactly as configured, credentials included: for libgit2 only.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    pub fn transport(&self) -> Transport {
        self.transport
    }

    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// The port, with the scheme's default when none is written.
    pub fn port(&self) -> Option<u16> {
        self.port.or(match self.transport {
            Transport::Ssh => Some(22),
            Transport::Git => Some(9418),
            Transport::Http if self.raw.to_ascii_lowercase().starts_with("https") => Some(443),
            Transport::Http => Some(80),
            Transport::Local => None,
        })
    }

    /// The URL without credentials (user name, password, query), for logs,
    /// events, status and errors.
    pub fn redacted(&self) -> RedactedUrl {
        RedactedUrl::new(&self.raw)
    }

    /// Whether the URL itself carries credentials (a password, or a token
    /// as the user name or in the query string).
    pub fn has_credentials(&self) -> bool {
        !self.credentials().is_empty()
    }

    /// The credentials written into the URL, so that they can be scrubbed
    /// from messages libgit2 produces.
    pub fn credentials(&self) -> Vec<String> {
        crate::core::redact::url_credentials(&self.raw)
    }
}

impl fmt::Display for RemoteUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.redacted().as_str())
    }
}

impl fmt::Debug for RemoteUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RemoteUrl({})", self.redacted())
    }
}

fn split_host_port(hostport: &str) -> Result<(String, Option<u16>), UrlError> {
    if let Some(rest) = hostport.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| UrlError::UnterminatedBracket(hostport.to_string()))?;
        let port = match after.strip_prefix(':') {
            Some(p) if !p.is_empty() => Some(parse_port(p)?),
            _ => None,
        };
        return Ok((host.to_string(), port));
    }
    match hostport.rsplit_once(':') {
        Some((host, p)) if !p.is_empty() => Ok((host.to_string(), Some(parse_port(p)?))),
        Some((host, _)) => Ok((host.to_string(), None)),
        None => Ok((hostport.to_string(), None)),
    }
}

fn parse_port(p: &str) -> Result<u16, UrlError> {
    p.parse().map_err(|_| UrlError::Port(p.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_password_is_redacted_and_user_kept() {
        let url = RemoteUrl::parse("https://bot:s3cret@git.example.com/org/repo.git").unwrap();
        assert_eq!(url.transport(), Transport::Http);
        assert_eq!(
            url.redacted().as_str(),
            "https://***@git.example.com/org/repo.git"
        );
        assert!(url.credentials().contains(&"s3cret".to_string()));
        assert_eq!(url.host(), Some("git.example.com"));
        assert_eq!(url.port(), Some(443));
        assert!(!format!("{url} {url:?}").contains("s3cret"));
    }

    #[test]
    fn ssh_urls_give_host_and_port() {
        let url = RemoteUrl::parse("ssh://git@127.0.0.1:2222/srv/repo.git").unwrap();
        assert_eq!(url.transport(), Transport::Ssh);
        assert_eq!(url.user(), Some("git"));
        assert_eq!((url.host(), url.port()), (Some("127.0.0.1"), Some(2222)));

        let scp = RemoteUrl::parse("git@github.com:org/repo.git").unwrap();
        assert_eq!(scp.transport(), Transport::Ssh);
        assert_eq!((scp.host(), scp.port()), (Some("github.com"), Some(22)));

        let v6 = RemoteUrl::parse("ssh://[::1]:2200/repo").unwrap();
        assert_eq!((v6.host(), v6.port()), (Some("::1"), Some(2200)));
    }

    #[test]
    fn local_paths_and_file_urls_are_local() {
        for raw in [
            "/srv/git/repo.git",
            "file:///srv/git/repo.git",
            "./repo",
            "C/x:y",
        ] {
            assert_eq!(
                RemoteUrl::parse(raw).unwrap().transport(),
                Transport::Local,
                "{raw}"
            );
        }
    }

    #[test]
    fn unknown_scheme_and_bad_port_are_rejected() {
        assert_eq!(
            RemoteUrl::parse("ftp://host/repo"),
            Err(UrlError::Scheme("ftp".into()))
        );
        assert_eq!(
            RemoteUrl::parse("ssh://host:notaport/repo"),
            Err(UrlError::Port("notaport".into()))
        );
        assert_eq!(RemoteUrl::parse(""), Err(UrlError::Empty));
    }
}
