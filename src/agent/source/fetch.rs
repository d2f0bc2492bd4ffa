//! The blocking half of a fetch: one connection, the ref advertisement, and a
//! download only when the wanted object is not already in the cache.

use std::path::Path;

use git2::{AutotagOption, Direction, FetchOptions, Oid, ProxyOptions, Remote, Repository};

use super::auth::Credentials;
use super::error::SourceError;
use super::ssh_home::{self, SshHome};
use super::url::{RemoteUrl, Transport};
use super::{GitAuth, GitRef, SourceConfig};

/// Where fetched objects are kept alive in the cache repository. Nothing else
/// writes refs there, so these names cannot collide with the remote's.
const LOCAL_NAMESPACE: &str = "refs/stagegate";

/// libgit2's value for "fetch the whole history, undoing a shallow clone".
const DEPTH_UNSHALLOW: i32 = i32::MAX;

pub(crate) struct Outcome {
    pub commit: Oid,
    pub reference: String,
    pub bytes_received: usize,
    pub downloaded: bool,
}

/// What to ask the server for, decided from its advertisement.
struct Want {
    /// A ref name (`refs/heads/main`) or, for a pinned commit, the object id.
    source: String,
    /// The ref in the cache that keeps the fetched object.
    local: String,
    /// The object the server advertised for `source`, when it is a ref.
    advertised: Option<Oid>,
    /// The short name shown in the reference string (`main`, `v1.2.0`).
    label: Option<String>,
}

pub(crate) fn open_or_init(repo_dir: &Path) -> Result<Repository, SourceError> {
    if repo_dir.exists() {
        match Repository::open_bare(repo_dir) {
            Ok(repo) => return Ok(repo),
            Err(error) if !cache_is_broken(&error) => {
                // Out of file descriptors, memory or disk: the cache is fine,
                // this process is not. Deleting it would turn a passing
                // shortage into a full clone; fail this fetch instead.
                return Err(SourceError::Git {
                    operation: "open the cache",
                    url: repo_dir.display().to_string().as_str().into(),
                    message: error.message().to_string(),
                });
            }
            Err(error) => {
                // A cache is only a cache: one that cannot be opened (a crash
                // during the very first init) is rebuilt rather than repaired.
                tracing::warn!(path = %repo_dir.display(), error = %error.message(), "Git cache unreadable, recreating it");
                std::fs::remove_dir_all(repo_dir)
                    .map_err(|e| SourceError::io("remove the broken Git cache", repo_dir, e))?;
            }
        }
    }
    if let Some(parent) = repo_dir.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| SourceError::io("create the cache directory", parent, e))?;
    }
    Repository::init_bare(repo_dir).map_err(|e| SourceError::Git {
        operation: "init",
        url: repo_dir.display().to_string().as_str().into(),
        message: e.message().to_string(),
    })
}

/// Whether an error opening the cache says the cache itself is broken, as
/// opposed to the process lacking a resource (EMFILE, ENOMEM, ENOSPC...),
/// which libgit2 reports as an OS error.
fn cache_is_broken(error: &git2::Error) -> bool {
    const SHORTAGES: &[&str] = &[
        "too many open files",
        "cannot allocate memory",
        "no space left",
        "resource temporarily unavailable",
        "permission denied",
    ];
    let message = error.message().to_ascii_lowercase();
    error.class() != git2::ErrorClass::Os && !SHORTAGES.iter().any(|s| message.contains(s))
}

pub(crate) fn fetch(
    config: &SourceConfig,
    url: &RemoteUrl,
    repo_dir: &Path,
) -> Result<Outcome, SourceError> {
    validate_reference(&config.reference)?;
    let credentials = Credentials::load(&config.auth, url)?;
    let git2_lock = ssh_home::lock();
    let repo = open_or_init(repo_dir)?;

    // A pinned commit never changes: once it is in the cache there is nothing
    // to ask the server.
    if let GitRef::Commit(sha) = &config.reference {
        let oid = Oid::from_str(sha).expect("validated above");
        if repo.find_commit(oid).is_ok() {
            return Ok(Outcome {
                commit: oid,
                reference: reference_string(&config.reference, None, oid),
                bytes_received: 0,
                downloaded: false,
            });
        }
    }

    let _home = match &config.auth {
        GitAuth::Ssh { known_hosts, .. } => Some(SshHome::enter(
            &git2_lock,
            &repo_dir.with_file_name("ssh-home"),
            known_hosts,
        )?),
        _ => None,
    };
    let mut remote = repo
        .remote_anonymous(url.as_str())
        .map_err(|e| credentials.classify("remote", e))?;
    let mut proxy = ProxyOptions::new();
    proxy.auto();
    let mut connection = remote
        .connect_auth(Direction::Fetch, Some(credentials.callbacks()), Some(proxy))
        .map_err(|e| credentials.classify("connect", e))?;
    let advertised: Vec<(String, Oid)> = connection
        .list()
        .map_err(|e| credentials.classify("ls-remote", e))?
        .iter()
        .map(|head| (head.name().to_string(), head.oid()))
        .collect();
    let want = resolve(&config.reference, &advertised, url)?;

    let have = want
        .advertised
        .is_some_and(|oid| repo.odb().is_ok_and(|odb| odb.exists(oid)));

    let mut bytes_received = 0;
    let mut downloaded = false;
    let target = if have {
        drop(connection);
        want.advertised.expect("checked above")
    } else {
        let shallow = config.shallow && url.transport() != Transport::Local;
        let spec = format!("+{}:{}", want.source, want.local);
        // The first attempt reuses the connection that read the advertisement
        // (one SSH or TLS handshake per changed poll); retries reconnect.
        let result = download(
            connection.remote(),
            &credentials,
            &spec,
            if shallow { 1 } else { 0 },
        );
        drop(connection);
        let result = match result {
            Err(error) if shallow && retry_without_depth(&error) => {
                tracing::info!(url = %url, error = %error, "shallow fetch refused, fetching full history");
                download(&mut remote, &credentials, &spec, 0)
            }
            other => other,
        };
        match (result, &config.reference) {
            (Ok(bytes), _) => {
                bytes_received = bytes;
                downloaded = true;
            }
            // Servers without uploadpack.allowReachableSHA1InWant refuse a
            // bare object id; everything they advertise is fetched instead and
            // the commit looked for in it.
            (Err(error), GitRef::Commit(_)) if !is_fatal(&error) => {
                tracing::info!(url = %url, error = %error, "server refuses fetching by commit id, fetching all branches and tags");
                let depth = if repo.is_shallow() {
                    DEPTH_UNSHALLOW
                } else {
                    0
                };
                bytes_received = download_all(&mut remote, &credentials, depth)?;
                downloaded = true;
            }
            (Err(error), _) => return Err(error),
        }
        match want.advertised {
            Some(oid) => oid,
            None => Oid::from_str(&want.source).expect("pinned commits are validated"),
        }
    };

    let commit = repo
        .find_object(target, None)
        .and_then(|object| object.peel_to_commit())
        .map_err(|_| match &config.reference {
            GitRef::Commit(sha) => SourceError::CommitNotFound {
                commit: sha.clone(),
                url: url.redacted(),
            },
            other => SourceError::Git {
                operation: "fetch",
                url: url.redacted(),
                message: format!(
                    "the server advertised {target} for {} but did not send it",
                    describe(other)
                ),
            },
        })?;
    repo.reference(&want.local, target, true, "stagegate: fetch")
        .map_err(|e| credentials.classify("update-ref", e))?;
    Ok(Outcome {
        commit: commit.id(),
        reference: reference_string(&config.reference, want.label.as_deref(), commit.id()),
        bytes_received,
        downloaded,
    })
}

fn download(
    remote: &mut Remote<'_>,
    credentials: &Credentials,
    spec: &str,
    depth: i32,
) -> Result<usize, SourceError> {
    let mut options = fetch_options(credentials, depth);
    let result = remote.download(&[spec], Some(&mut options));
    let bytes = remote.stats().received_bytes();
    // Disconnect while the callbacks libgit2 points at are still alive, and
    // drop them (with their borrow of the credentials) before any error is
    // classified from what they recorded.
    let _ = remote.disconnect();
    drop(options);
    result.map_err(|e| credentials.classify("fetch", e))?;
    Ok(bytes)
}

fn download_all(
    remote: &mut Remote<'_>,
    credentials: &Credentials,
    depth: i32,
) -> Result<usize, SourceError> {
    let specs = [
        format!("+refs/heads/*:{LOCAL_NAMESPACE}/all/heads/*"),
        format!("+refs/tags/*:{LOCAL_NAMESPACE}/all/tags/*"),
    ];
    let mut options = fetch_options(credentials, depth);
    let result = remote.fetch(&specs, Some(&mut options), Some("stagegate: fetch all"));
    let bytes = remote.stats().received_bytes();
    let _ = remote.disconnect();
    drop(options);
    result.map_err(|e| credentials.classify("fetch", e))?;
    Ok(bytes)
}

fn fetch_options(credentials: &Credentials, depth: i32) -> FetchOptions<'_> {
    let mut proxy = ProxyOptions::new();
    proxy.auto();
    let mut options = FetchOptions::new();
    options
        .remote_callbacks(credentials.callbacks())
        .proxy_options(proxy)
        .download_tags(AutotagOption::None)
        .update_fetchhead(false)
        .depth(depth);
    options
}

/// Errors that another attempt with different fetch options cannot fix.
fn is_fatal(error: &SourceError) -> bool {
    matches!(
        error,
        SourceError::Authentication { .. }
            | SourceError::UnknownHostKey { .. }
            | SourceError::HostKeyMismatch { .. }
            | SourceError::HostKeyRevoked { .. }
            | SourceError::Secret { .. }
            | SourceError::KnownHosts { .. }
    )
}

fn retry_without_depth(error: &SourceError) -> bool {
    match error {
        SourceError::Git { message, .. } | SourceError::Unreachable { message, .. } => {
            message.contains("shallow")
        }
        _ => false,
    }
}

fn validate_reference(reference: &GitRef) -> Result<(), SourceError> {
    let invalid = |reason: &str| SourceError::InvalidReference {
        reference: describe(reference),
        reason: reason.to_string(),
    };
    match reference {
        GitRef::Branch(name) | GitRef::Tag(name) => {
            let short = short_name(name);
            if short.is_empty() || !git2::Reference::is_valid_name(&format!("refs/heads/{short}")) {
                return Err(invalid("not a valid Git ref name"));
            }
        }
        GitRef::TagRange(range) => {
            semver::VersionReq::parse(range).map_err(|e| {
                invalid(&format!(
                    "not a semver range ({e}); write it like `>=1.2, <2`"
                ))
            })?;
        }
        GitRef::Commit(sha) => {
            if sha.len() != 40 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid("a pinned commit must be the full 40-hex commit id"));
            }
        }
    }
    Ok(())
}

fn short_name(name: &str) -> &str {
    name.strip_prefix("refs/heads/")
        .or_else(|| name.strip_prefix("refs/tags/"))
        .unwrap_or(name)
}

pub(crate) fn describe(reference: &GitRef) -> String {
    match reference {
        GitRef::Branch(b) => format!("branch {b}"),
        GitRef::Tag(t) => format!("tag {t}"),
        GitRef::TagRange(r) => format!("tag range `{r}`"),
        GitRef::Commit(c) => format!("commit {c}"),
    }
}

/// The revision as Flux prints it: `main@sha1:<id>` for a branch,
/// `v1.2.0@sha1:<id>` for a tag (also one picked by a range), `sha1:<id>` for a
/// pinned commit.
fn reference_string(reference: &GitRef, label: Option<&str>, commit: Oid) -> String {
    match (reference, label) {
        (GitRef::Commit(_), _) => format!("sha1:{commit}"),
        (GitRef::Branch(name) | GitRef::Tag(name), None) => {
            format!("{}@sha1:{commit}", short_name(name))
        }
        (_, Some(label)) => format!("{label}@sha1:{commit}"),
        (GitRef::TagRange(range), None) => format!("{range}@sha1:{commit}"),
    }
}

fn resolve(
    reference: &GitRef,
    advertised: &[(String, Oid)],
    url: &RemoteUrl,
) -> Result<Want, SourceError> {
    let names = |prefix: &str| -> Vec<String> {
        let mut names: Vec<String> = advertised
            .iter()
            .filter_map(|(name, _)| name.strip_prefix(prefix))
            .filter(|name| !name.ends_with("^{}"))
            .map(str::to_string)
            .collect();
        names.sort();
        names.dedup();
        names
    };
    let find = |full: &str| {
        advertised
            .iter()
            .find(|(n, _)| n == full)
            .map(|(_, oid)| *oid)
    };
    match reference {
        GitRef::Branch(name) => {
            let short = short_name(name);
            let full = format!("refs/heads/{short}");
            let oid = find(&full).ok_or_else(|| SourceError::RefNotFound {
                kind: "branch",
                name: short.to_string(),
                url: url.redacted(),
                available: names("refs/heads/"),
            })?;
            Ok(Want {
                local: format!("{LOCAL_NAMESPACE}/heads/{short}"),
                source: full,
                advertised: Some(oid),
                label: Some(short.to_string()),
            })
        }
        GitRef::Tag(name) => {
            let short = short_name(name);
            tag_want(short, find(&format!("refs/tags/{short}")), || {
                SourceError::RefNotFound {
                    kind: "tag",
                    name: short.to_string(),
                    url: url.redacted(),
                    available: names("refs/tags/"),
                }
            })
        }
        GitRef::TagRange(range) => {
            let req =
                semver::VersionReq::parse(range).map_err(|e| SourceError::InvalidReference {
                    reference: describe(reference),
                    reason: e.to_string(),
                })?;
            let tags = names("refs/tags/");
            let best = tags
                .iter()
                .filter_map(|tag| {
                    let version =
                        semver::Version::parse(tag.strip_prefix('v').unwrap_or(tag)).ok()?;
                    req.matches(&version).then_some((version, tag))
                })
                .max();
            let Some((version, tag)) = best else {
                return Err(SourceError::NoMatchingTag {
                    range: range.clone(),
                    url: url.redacted(),
                    available: tags,
                });
            };
            tracing::debug!(range = %range, tag = %tag, version = %version, "semver range resolved");
            tag_want(tag, find(&format!("refs/tags/{tag}")), || {
                unreachable!("listed above")
            })
        }
        GitRef::Commit(sha) => Ok(Want {
            source: sha.to_ascii_lowercase(),
            local: format!("{LOCAL_NAMESPACE}/commits/{}", sha.to_ascii_lowercase()),
            advertised: None,
            label: None,
        }),
    }
}

fn tag_want(
    tag: &str,
    oid: Option<Oid>,
    missing: impl FnOnce() -> SourceError,
) -> Result<Want, SourceError> {
    let oid = oid.ok_or_else(missing)?;
    Ok(Want {
        source: format!("refs/tags/{tag}"),
        local: format!("{LOCAL_NAMESPACE}/tags/{tag}"),
        advertised: Some(oid),
        label: Some(tag.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oid(n: u8) -> Oid {
        Oid::from_bytes(&[n; 20]).unwrap()
    }

    fn advertised() -> Vec<(String, Oid)> {
        [
            ("HEAD", 1),
            ("refs/heads/main", 1),
            ("refs/heads/dev", 2),
            ("refs/tags/v1.2.0", 3),
            ("refs/tags/v1.2.0^{}", 4),
            ("refs/tags/v1.10.1", 5),
            ("refs/tags/1.11.0-rc.1", 6),
            ("refs/tags/v2.0.0", 7),
            ("refs/tags/not-a-version", 8),
        ]
        .into_iter()
        .map(|(n, o)| (n.to_string(), oid(o)))
        .collect()
    }

    fn url() -> RemoteUrl {
        RemoteUrl::parse("https://bot:hunter2@example.com/repo.git").unwrap()
    }

    #[test]
    fn semver_range_picks_the_highest_matching_release() {
        let want = resolve(&GitRef::TagRange(">=1.2, <2".into()), &advertised(), &url()).unwrap();
        assert_eq!(want.source, "refs/tags/v1.10.1");
        assert_eq!(want.advertised, Some(oid(5)));
        assert_eq!(want.label.as_deref(), Some("v1.10.1"));
    }

    #[test]
    fn semver_range_without_match_lists_tags_and_hides_password() {
        let error = resolve(&GitRef::TagRange(">=3".into()), &advertised(), &url())
            .err()
            .unwrap();
        let text = error.to_string();
        assert!(text.contains("v2.0.0") && text.contains(">=3"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn missing_branch_names_the_branches_that_exist() {
        let error = resolve(&GitRef::Branch("prod".into()), &advertised(), &url())
            .err()
            .unwrap();
        let text = error.to_string();
        assert!(
            text.contains("branch `prod`") && text.contains("dev, main"),
            "{text}"
        );
    }

    #[test]
    fn branch_and_tag_accept_full_ref_names() {
        let want = resolve(
            &GitRef::Branch("refs/heads/dev".into()),
            &advertised(),
            &url(),
        )
        .unwrap();
        assert_eq!(
            (want.source.as_str(), want.advertised),
            ("refs/heads/dev", Some(oid(2)))
        );
        let want = resolve(&GitRef::Tag("v1.2.0".into()), &advertised(), &url()).unwrap();
        assert_eq!(want.local, "refs/stagegate/tags/v1.2.0");
    }

    #[test]
    fn references_are_validated_before_any_network() {
        assert!(validate_reference(&GitRef::Commit("abc123".into())).is_err());
        assert!(validate_reference(&GitRef::Branch("bad..name".into())).is_err());
        assert!(validate_reference(&GitRef::TagRange("not a range".into())).is_err());
        assert!(validate_reference(&GitRef::Commit("a".repeat(40))).is_ok());
    }

    #[test]
    fn reference_strings_follow_flux() {
        let c = oid(9);
        assert_eq!(
            reference_string(&GitRef::Branch("main".into()), Some("main"), c),
            format!("main@sha1:{c}")
        );
        assert_eq!(
            reference_string(&GitRef::TagRange("^1".into()), Some("v1.4.0"), c),
            format!("v1.4.0@sha1:{c}")
        );
        assert_eq!(
            reference_string(&GitRef::Commit(c.to_string()), None, c),
            format!("sha1:{c}")
        );
    }
}

#[cfg(test)]
mod cache_tests {
    use super::*;
    use git2::{ErrorClass, ErrorCode};

    #[test]
    fn a_resource_shortage_never_deletes_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let repo_dir = dir.path().join("repo.git");
        Repository::init_bare(&repo_dir).unwrap();
        let emfile = git2::Error::new(
            ErrorCode::GenericError,
            ErrorClass::Os,
            "failed to open directory: Too many open files",
        );
        assert!(!cache_is_broken(&emfile));
        let missing = git2::Error::new(
            ErrorCode::NotFound,
            ErrorClass::Repository,
            "could not find repository",
        );
        assert!(cache_is_broken(&missing));
    }
}
