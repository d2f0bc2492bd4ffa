//! Start-up calls to the API server, retried: an API server that answers one
//! request with a 500, or is restarting, must not end the agent before it
//! started. Only errors that another attempt can fix are retried (5xx, 429,
//! a refused or reset connection); each retry and the final error name the
//! call.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::warn;

/// Attempts before start-up gives up: about two minutes of backoff.
const ATTEMPTS: u32 = 8;
const FIRST_DELAY: Duration = Duration::from_millis(500);
const MAX_DELAY: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum StartupError<E: std::error::Error + 'static> {
    #[error("{call}: {source}")]
    Failed {
        call: &'static str,
        #[source]
        source: E,
    },
    #[error("{call}: stopped while retrying")]
    Cancelled { call: &'static str },
}

/// Whether a kube error is worth another attempt.
pub fn is_transient(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => status.code >= 500 || status.code == 429,
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

/// Runs `call` until it succeeds, fails for good, or `shutdown`.
pub async fn retry<T, E, F, Fut>(
    call: &'static str,
    shutdown: &CancellationToken,
    transient: impl Fn(&E) -> bool,
    mut attempt: F,
) -> Result<T, StartupError<E>>
where
    E: std::error::Error + 'static,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut delay = FIRST_DELAY;
    for n in 1..=ATTEMPTS {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(source) if n == ATTEMPTS || !transient(&source) => {
                return Err(StartupError::Failed { call, source });
            }
            Err(error) => {
                warn!(call, attempt = n, %error, retry_in = ?delay, "start-up call failed; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return Err(StartupError::Cancelled { call }),
                    () = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(MAX_DELAY);
            }
        }
    }
    unreachable!("the last attempt returns")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn api_error(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(
            kube::core::Status::failure("boom", "InternalError").with_code(code),
        ))
    }

    #[tokio::test(start_paused = true)]
    async fn one_500_is_retried_and_a_403_is_not() {
        let calls = AtomicU32::new(0);
        let shutdown = CancellationToken::new();
        let got = retry("reading the state", &shutdown, is_transient, || async {
            if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                Err(api_error(500))
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(got.unwrap(), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 2);

        let calls = AtomicU32::new(0);
        let got: Result<(), _> = retry("reading the state", &shutdown, is_transient, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(api_error(403))
        })
        .await;
        let text = got.unwrap_err().to_string();
        assert!(text.starts_with("reading the state: "), "{text}");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
