//! Keeping secrets out of every output: Secret values masked wherever an
//! object is shown, and credentials stripped from every URL before it is
//! logged, stored, put in an Event or shown in a status.
//!
//! Two things are secrets here. A Secret's `data` and `stringData` values
//! (never its keys: which keys changed is useful and not secret), and the
//! user information and query string of a URL: Git hosts accept an access
//! token as the user name (`https://TOKEN@host/repo.git`), as the password,
//! or as a query parameter, so none of the three is ever shown.

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

/// What a masked value or credential is replaced with.
pub const MASK: &str = "***";

/// A URL with its credentials removed: the only form in which a URL is shown.
///
/// Built from the raw URL, never the other way round, so holding one proves
/// the text went through [`RedactedUrl::new`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RedactedUrl(String);

impl RedactedUrl {
    /// Strips the user name and password (`***@` marks that there were
    /// some), the query string and the fragment. The user of an SSH URL is
    /// kept: it names an account (`git@`), and SSH has no token in it.
    pub fn new(raw: &str) -> Self {
        let raw = raw.trim();
        // Without a scheme it is a local path or scp-like `user@host:path`,
        // which is SSH: nothing in it is a credential.
        let Some((scheme, rest)) = raw.split_once("://") else {
            return Self(raw.to_string());
        };
        let ssh = matches!(
            scheme.to_ascii_lowercase().as_str(),
            "ssh" | "ssh+git" | "git+ssh"
        );
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let authority = match authority.rsplit_once('@') {
            Some((userinfo, host)) if ssh => {
                let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
                format!("{user}@{host}")
            }
            Some((_, host)) => format!("{MASK}@{host}"),
            None => authority.to_string(),
        };
        let path = tail.split(['?', '#']).next().unwrap_or_default();
        let query = if tail.contains('?') {
            format!("?{MASK}")
        } else {
            String::new()
        };
        Self(format!("{scheme}://{authority}{path}{query}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for RedactedUrl {
    fn from(raw: &str) -> Self {
        Self::new(raw)
    }
}

impl fmt::Display for RedactedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RedactedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedactedUrl({})", self.0)
    }
}

impl serde::Serialize for RedactedUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// The parts of `raw` that are credentials (user name, password, query
/// values), to be scrubbed from messages other code produced about it, such
/// as libgit2's, which quote the URL in their own ways.
pub fn url_credentials(raw: &str) -> Vec<String> {
    let Some((scheme, rest)) = raw.trim().split_once("://") else {
        return Vec::new();
    };
    let ssh = matches!(
        scheme.to_ascii_lowercase().as_str(),
        "ssh" | "ssh+git" | "git+ssh"
    );
    let mut found = Vec::new();
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if let Some((userinfo, _)) = authority.rsplit_once('@') {
        match userinfo.split_once(':') {
            Some((user, password)) => {
                if !ssh {
                    found.push(user.to_string());
                }
                found.push(password.to_string());
            }
            None if !ssh => found.push(userinfo.to_string()),
            None => {}
        }
    }
    if let Some((_, query)) = tail.split_once('?') {
        let query = query.split('#').next().unwrap_or_default();
        found.push(query.to_string());
        for pair in query.split('&') {
            found.push(pair.split_once('=').map_or(pair, |(_, v)| v).to_string());
        }
    }
    // Short pieces (`git`, `1`) would mangle the message and reveal nothing.
    found.retain(|s| s.len() >= 4);
    found.sort_by_key(|s| std::cmp::Reverse(s.len()));
    found.dedup();
    found
}

/// Every URL in `text` redacted: the last line of defence for messages
/// built from other libraries' errors.
pub fn scrub_urls(text: &str) -> String {
    static URL: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r#"[A-Za-z][A-Za-z0-9+.\-]*://[^\s"'<>`]+"#).expect("a valid regex")
    });
    URL.replace_all(text, |c: &regex::Captures<'_>| {
        RedactedUrl::new(&c[0]).to_string()
    })
    .into_owned()
}

/// Replaces every value of a Secret's `data` and `stringData` with [`MASK`];
/// other objects are left alone. For what is shown of one object.
pub fn mask_secret(object: &mut Value) {
    if !is_secret(object) {
        return;
    }
    for field in ["data", "stringData"] {
        if let Some(map) = object.get_mut(field).and_then(Value::as_object_mut) {
            for value in map.values_mut() {
                *value = Value::String(MASK.into());
            }
        }
    }
}

/// Masks two versions of a Secret for a diff, as `kubectl diff` does: a
/// value the same in both is `***`, one that differs is `*** (before)` and
/// `*** (after)`, so a diff still shows which keys change, never to what.
pub fn mask_secret_pair(before: &mut Value, after: &mut Value) {
    if !is_secret(before) && !is_secret(after) {
        return;
    }
    for field in ["data", "stringData"] {
        let old = before.get(field).and_then(Value::as_object).cloned();
        let new = after.get(field).and_then(Value::as_object).cloned();
        let same = |key: &str| {
            old.as_ref().and_then(|m| m.get(key)) == new.as_ref().and_then(|m| m.get(key))
        };
        for (object, label) in [(&mut *before, "before"), (&mut *after, "after")] {
            if let Some(map) = object.get_mut(field).and_then(Value::as_object_mut) {
                for (key, value) in map.iter_mut() {
                    let text = if same(key) {
                        MASK.to_string()
                    } else {
                        format!("{MASK} ({label})")
                    };
                    *value = Value::String(text);
                }
            }
        }
    }
}

fn is_secret(object: &Value) -> bool {
    object.get("kind").and_then(Value::as_str) == Some("Secret")
        && object
            .get("apiVersion")
            .and_then(Value::as_str)
            .is_none_or(|v| v == "v1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tokens_in_user_password_and_query_are_stripped() {
        for (raw, shown) in [
            (
                "https://ghp_TOKEN123@github.com/org/repo.git",
                "https://***@github.com/org/repo.git",
            ),
            (
                "https://bot:ghp_TOKEN123@git.example.com/r.git",
                "https://***@git.example.com/r.git",
            ),
            (
                "https://git.example.com/r.git?private_token=ghp_TOKEN123",
                "https://git.example.com/r.git?***",
            ),
            (
                "http://oauth2:ghp_TOKEN123@host:8080/r.git#frag",
                "http://***@host:8080/r.git",
            ),
            (
                "ssh://git:ghp_TOKEN123@host:2222/r.git",
                "ssh://git@host:2222/r.git",
            ),
            ("git@github.com:org/r.git", "git@github.com:org/r.git"),
            ("/srv/git/r.git", "/srv/git/r.git"),
        ] {
            let redacted = RedactedUrl::new(raw);
            assert_eq!(redacted.as_str(), shown, "{raw}");
            assert!(!format!("{redacted} {redacted:?}").contains("TOKEN123"));
        }
    }

    #[test]
    fn credentials_are_listed_for_scrubbing() {
        let found = url_credentials("https://ghp_TOKEN123@h/r.git?a=querysecret");
        assert!(found.contains(&"ghp_TOKEN123".to_string()), "{found:?}");
        assert!(found.contains(&"querysecret".to_string()), "{found:?}");
        assert!(url_credentials("ssh://git@h/r").is_empty());
    }

    #[test]
    fn urls_inside_messages_are_scrubbed() {
        let text = "failed to fetch 'https://ghp_TOKEN123@h/r.git': 401 (see http://x/?t=abc)";
        let scrubbed = scrub_urls(text);
        assert!(!scrubbed.contains("TOKEN123"), "{scrubbed}");
        assert!(!scrubbed.contains("t=abc"), "{scrubbed}");
        assert!(scrubbed.contains("https://***@h/r.git"), "{scrubbed}");
    }

    #[test]
    fn secret_values_are_masked_and_changes_still_visible() {
        let mut before = json!({"apiVersion": "v1", "kind": "Secret",
            "data": {"same": "c2FtZQ==", "pw": "b2xk"}});
        let mut after = json!({"apiVersion": "v1", "kind": "Secret",
            "data": {"same": "c2FtZQ==", "pw": "bmV3"}, "stringData": {"token": "plain"}});
        mask_secret_pair(&mut before, &mut after);
        assert_eq!(before["data"]["same"], "***");
        assert_eq!(before["data"]["pw"], "*** (before)");
        assert_eq!(after["data"]["pw"], "*** (after)");
        assert_eq!(after["stringData"]["token"], "*** (after)");
        let text = format!("{before}{after}");
        for secret in ["c2FtZQ==", "b2xk", "bmV3", "plain"] {
            assert!(!text.contains(secret), "{text}");
        }

        let mut config = json!({"kind": "ConfigMap", "data": {"k": "visible"}});
        mask_secret(&mut config);
        assert_eq!(config["data"]["k"], "visible");
        let mut secret = json!({"kind": "Secret", "stringData": {"k": "hidden"}});
        mask_secret(&mut secret);
        assert_eq!(secret["stringData"]["k"], "***");
    }
}
