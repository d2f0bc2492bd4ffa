//! Calls to the API server, each named by what it does (verb, kind,
//! namespace/name) and retried with backoff when the failure is transient: a
//! 500, 502, 503, 504 or 429, or a connection the server reset. A stage then
//! rides out an API server restart or a burst of throttling instead of
//! failing and blocking its dependents until the next poll. Every call
//! retried here is idempotent (GET, LIST, server-side apply, DELETE).

use std::fmt;
use std::future::Future;
use std::time::Duration;

use tracing::warn;

pub use crate::cluster::client::ServerMessage;
use crate::cluster::client::api_status;

/// Attempts of one call, the first included.
const ATTEMPTS: u32 = 6;
/// Pause after the first failure; doubled after each (0.2 s .. 3.2 s, 6.2 s in all).
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Apply,
    Patch,
    Delete,
    Watch,
    Discover,
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Apply => "apply",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::Watch => "watch",
            Verb::Discover => "discover",
        })
    }
}

/// A failed call: what was asked, and the server's answer once.
#[derive(Debug, thiserror::Error)]
#[error("{verb} {target}: {}", ServerMessage(.source))]
pub struct CallError {
    pub verb: Verb,
    /// What the call was about: `Job.batch shop/migrate`, `ConfigMap in shop`.
    pub target: String,
    #[source]
    pub source: kube::Error,
}

impl CallError {
    pub fn metric_label(&self) -> &'static str {
        match api_status(&self.source).map(|s| s.code) {
            Some(403) => "forbidden",
            Some(404) => "not_found",
            Some(409) => "conflict",
            Some(code) if is_transient_code(code) => "api_unavailable",
            Some(_) => "api_error",
            None => "connection",
        }
    }

    pub fn is_not_found(&self) -> bool {
        api_status(&self.source).is_some_and(|s| s.code == 404)
    }
}

/// A watcher's error as the call that failed, on what (`.0`), and the
/// server's message, never kube's debug dump of the Status:
/// `list Stage objects: <message> (500)`.
pub struct WatchMessage<'a>(pub &'a str, pub &'a kube::runtime::watcher::Error);

impl fmt::Display for WatchMessage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use kube::runtime::watcher::Error as E;
        let target = self.0;
        match self.1 {
            E::InitialListFailed(e) => write!(f, "list {target}: {}", ServerMessage(e)),
            E::WatchStartFailed(e) | E::WatchFailed(e) => {
                write!(f, "watch {target}: {}", ServerMessage(e))
            }
            E::WatchError(status) => {
                write!(f, "watch {target}: {} ({})", status.message, status.code)
            }
            other => write!(f, "watch {target}: {other}"),
        }
    }
}

fn is_transient_code(code: u16) -> bool {
    matches!(code, 429 | 500 | 502 | 503 | 504)
}

/// Whether trying the same call again soon may succeed.
pub fn is_transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(status) => is_transient_code(status.code),
        // Connections refused or reset, and requests cut off mid-way.
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

/// Run `call` until it succeeds, fails for good, or runs out of attempts.
pub async fn call<T, F, Fut>(
    verb: Verb,
    target: &(dyn fmt::Display + Sync),
    mut call: F,
) -> Result<T, CallError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 1;
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(e) if attempt < ATTEMPTS && is_transient(&e) => {
                warn!(
                    call = %verb,
                    object = %target,
                    attempt,
                    error = %ServerMessage(&e),
                    "transient API error; retrying in {}",
                    humantime::format_duration(backoff)
                );
                tokio::time::sleep(backoff).await;
                backoff *= 2;
                attempt += 1;
            }
            Err(source) => {
                return Err(CallError {
                    verb,
                    target: target.to_string(),
                    source,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, message: &str) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status {
            code,
            message: message.into(),
            reason: "InternalError".into(),
            ..kube::core::Status::default()
        }))
    }

    #[test]
    fn server_errors_and_throttling_are_transient_rejections_are_not() {
        for code in [429, 500, 502, 503, 504] {
            assert!(is_transient(&status(code, "x")), "{code}");
        }
        for code in [400, 403, 404, 409, 422] {
            assert!(!is_transient(&status(code, "x")), "{code}");
        }
    }

    #[test]
    fn message_names_the_call_and_says_the_servers_message_once() {
        let e = CallError {
            verb: Verb::Apply,
            target: "Job.batch shop/migrate".into(),
            source: status(500, "etcd is gone"),
        };
        let text = e.to_string();
        assert_eq!(text, "apply Job.batch shop/migrate: etcd is gone (500)");
        assert_eq!(e.metric_label(), "api_unavailable");
    }

    #[tokio::test]
    async fn a_transient_failure_is_retried_and_a_permanent_one_is_not() {
        let mut calls = 0;
        let result = call(Verb::Get, &"ConfigMap a/b", || {
            calls += 1;
            let n = calls;
            async move {
                if n < 3 {
                    Err(status(503, "busy"))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(result.ok(), Some(3));

        let mut calls = 0;
        let result: Result<(), _> = call(Verb::Get, &"ConfigMap a/b", || {
            calls += 1;
            async { Err(status(422, "invalid")) }
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls, 1);
    }
}
