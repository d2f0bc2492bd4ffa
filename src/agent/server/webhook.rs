//! The push webhook's guards: the signature, replays, and how often a push
//! may make the agent fetch.
//!
//! A signature proves a payload came from the Git host, not that it is new:
//! GitHub signs the body only, so a captured request can be sent again. Two
//! things keep replays harmless. A delivery id seen before (GitHub's
//! `X-GitHub-Delivery`, GitLab's `X-Gitlab-Event-UUID`) is acknowledged and
//! ignored; the last [`REMEMBERED_DELIVERIES`] ids are kept. And whatever
//! arrives, pushes start at most one fetch per `min_gap`: a push inside the
//! gap leaves one fetch pending for its end, and more pushes add nothing.
//! A fetch is idempotent, so coalescing loses no push.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Delivery ids remembered for replay detection.
pub const REMEMBERED_DELIVERIES: usize = 4096;
/// The shortest time between two fetches a push starts.
pub const MIN_FETCH_GAP: Duration = Duration::from_secs(5);

/// Headers that carry a delivery's unique id.
const DELIVERY_HEADERS: &[&str] = &["x-github-delivery", "x-gitlab-event-uuid"];

/// A configured webhook: a non-empty secret and its guards.
pub struct Webhook {
    secret: Vec<u8>,
    deliveries: Mutex<RecentDeliveries>,
    trigger: Arc<FetchTrigger>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "the webhook secret is empty: an HMAC with an empty key proves nothing; put a random secret in the file, or leave --webhook-secret-file unset to turn the webhook off"
)]
pub struct EmptySecret;

/// What became of an accepted push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// A fetch starts now.
    FetchNow,
    /// A fetch starts when the gap since the last one has passed.
    FetchScheduled,
    /// A fetch is already pending: this push adds nothing.
    Coalesced,
    /// This delivery id was seen before.
    Replay,
}

impl Webhook {
    pub fn new(secret: Vec<u8>, wake: Arc<Notify>, min_gap: Duration) -> Result<Self, EmptySecret> {
        if secret.is_empty() {
            return Err(EmptySecret);
        }
        Ok(Self {
            secret,
            deliveries: Mutex::new(RecentDeliveries::default()),
            trigger: Arc::new(FetchTrigger::new(wake, min_gap)),
        })
    }

    /// Check the signature, then replays, then start or schedule a fetch.
    pub fn receive(&self, headers: &HeaderMap, body: &[u8]) -> Result<Accepted, &'static str> {
        verify(&self.secret, headers, body)?;
        let id = DELIVERY_HEADERS
            .iter()
            .find_map(|h| headers.get(*h))
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty());
        if let Some(id) = id {
            let fresh = self
                .deliveries
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id);
            if !fresh {
                return Ok(Accepted::Replay);
            }
        }
        Ok(self.trigger.request())
    }

    /// Fetches started by pushes so far (for tests and metrics).
    pub fn fetches_started(&self) -> u64 {
        self.trigger.started.load(Ordering::Relaxed)
    }
}

/// The last ids seen, oldest forgotten first.
#[derive(Default)]
struct RecentDeliveries {
    order: VecDeque<String>,
    seen: HashSet<String>,
}

impl RecentDeliveries {
    /// False when `id` was seen before.
    fn insert(&mut self, id: &str) -> bool {
        // Ids are GUIDs; anything much longer is not one and is cut to bound memory.
        let id: String = id.chars().take(128).collect();
        if self.seen.contains(&id) {
            return false;
        }
        if self.order.len() >= REMEMBERED_DELIVERIES
            && let Some(oldest) = self.order.pop_front()
        {
            self.seen.remove(&oldest);
        }
        self.seen.insert(id.clone());
        self.order.push_back(id);
        true
    }
}

/// Turns pushes into at most one fetch per `min_gap`.
struct FetchTrigger {
    wake: Arc<Notify>,
    min_gap: Duration,
    state: Mutex<TriggerState>,
    started: AtomicU64,
}

#[derive(Default)]
struct TriggerState {
    last: Option<Instant>,
    scheduled: bool,
}

impl FetchTrigger {
    fn new(wake: Arc<Notify>, min_gap: Duration) -> Self {
        Self {
            wake,
            min_gap,
            state: Mutex::new(TriggerState::default()),
            started: AtomicU64::new(0),
        }
    }

    fn request(self: &Arc<Self>) -> Accepted {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.scheduled {
            return Accepted::Coalesced;
        }
        let now = Instant::now();
        match state.last {
            Some(last) if now < last + self.min_gap => {
                state.scheduled = true;
                let (this, at) = (self.clone(), last + self.min_gap);
                tokio::spawn(async move {
                    tokio::time::sleep_until(at).await;
                    let mut state = this.state.lock().unwrap_or_else(|p| p.into_inner());
                    state.scheduled = false;
                    state.last = Some(Instant::now());
                    this.fire();
                });
                Accepted::FetchScheduled
            }
            _ => {
                state.last = Some(now);
                self.fire();
                Accepted::FetchNow
            }
        }
    }

    fn fire(&self) {
        self.started.fetch_add(1, Ordering::Relaxed);
        self.wake.notify_one();
    }
}

/// GitHub's `X-Hub-Signature-256` (HMAC-SHA256 of the body) or GitLab's
/// `X-Gitlab-Token` (the secret itself), compared in constant time. An empty
/// secret verifies nothing.
pub fn verify(secret: &[u8], headers: &HeaderMap, body: &[u8]) -> Result<(), &'static str> {
    if secret.is_empty() {
        return Err("the webhook secret is empty");
    }
    if let Some(signature) = headers.get("x-hub-signature-256") {
        let hex_sig = signature
            .to_str()
            .ok()
            .and_then(|s| s.strip_prefix("sha256="))
            .ok_or("malformed X-Hub-Signature-256")?;
        let expected = hex::decode(hex_sig).map_err(|_| "malformed X-Hub-Signature-256")?;
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| "bad secret")?;
        mac.update(body);
        // verify_slice compares in constant time.
        return mac
            .verify_slice(&expected)
            .map_err(|_| "signature mismatch");
    }
    if let Some(token) = headers.get("x-gitlab-token") {
        return if bool::from(token.as_bytes().ct_eq(secret)) {
            Ok(())
        } else {
            Err("token mismatch")
        };
    }
    Err("no X-Hub-Signature-256 or X-Gitlab-Token header")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn signed(secret: &[u8], body: &[u8], delivery: Option<&str>) -> HeaderMap {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(body);
        let sig = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        let mut h = HeaderMap::new();
        h.insert("x-hub-signature-256", HeaderValue::from_str(&sig).unwrap());
        if let Some(id) = delivery {
            h.insert("x-github-delivery", HeaderValue::from_str(id).unwrap());
        }
        h
    }

    #[test]
    fn github_and_gitlab_signatures() {
        let secret = b"s3cret";
        let body = br#"{"ref":"refs/heads/main"}"#;
        let h = signed(secret, body, None);
        assert_eq!(verify(secret, &h, body), Ok(()));
        assert_eq!(verify(secret, &h, b"tampered"), Err("signature mismatch"));
        let mut h = HeaderMap::new();
        h.insert("x-gitlab-token", HeaderValue::from_static("s3cret"));
        assert_eq!(verify(secret, &h, body), Ok(()));
        h.insert("x-gitlab-token", HeaderValue::from_static("wrong"));
        assert!(verify(secret, &h, body).is_err());
        assert!(verify(secret, &HeaderMap::new(), body).is_err());
    }

    #[test]
    fn an_empty_secret_verifies_nothing_and_is_refused() {
        let body = b"{}";
        let h = signed(b"", body, None);
        assert!(verify(b"", &h, body).is_err());
        let mut h = HeaderMap::new();
        h.insert("x-gitlab-token", HeaderValue::from_static(""));
        assert!(verify(b"", &h, body).is_err());
        assert!(Webhook::new(Vec::new(), Arc::new(Notify::new()), MIN_FETCH_GAP).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn replays_are_ignored_and_pushes_coalesce_into_one_pending_fetch() {
        let secret = b"s3cret".to_vec();
        let hook = Webhook::new(secret.clone(), Arc::new(Notify::new()), MIN_FETCH_GAP).unwrap();
        let body = br#"{"ref":"refs/heads/main"}"#;
        let first = signed(&secret, body, Some("id-1"));
        assert_eq!(hook.receive(&first, body), Ok(Accepted::FetchNow));
        for _ in 0..2000 {
            assert_eq!(hook.receive(&first, body), Ok(Accepted::Replay));
        }
        // Fresh ids (or none at all) inside the gap: one pending fetch, no more.
        assert_eq!(
            hook.receive(&signed(&secret, body, Some("id-2")), body),
            Ok(Accepted::FetchScheduled)
        );
        for i in 3..2000 {
            let id = format!("id-{i}");
            assert_eq!(
                hook.receive(&signed(&secret, body, Some(&id)), body),
                Ok(Accepted::Coalesced)
            );
            assert_eq!(
                hook.receive(&signed(&secret, body, None), body),
                Ok(Accepted::Coalesced)
            );
        }
        assert_eq!(hook.fetches_started(), 1);
        tokio::time::sleep(MIN_FETCH_GAP * 2).await;
        assert_eq!(hook.fetches_started(), 2, "the pending fetch ran once");
        assert_eq!(
            hook.receive(&signed(&secret, body, None), body),
            Ok(Accepted::FetchNow)
        );
    }

    #[test]
    fn the_delivery_memory_is_bounded() {
        let mut recent = RecentDeliveries::default();
        for i in 0..REMEMBERED_DELIVERIES * 2 {
            assert!(recent.insert(&format!("id-{i}")));
        }
        assert_eq!(recent.seen.len(), REMEMBERED_DELIVERIES);
        assert!(!recent.insert(&format!("id-{}", REMEMBERED_DELIVERIES * 2 - 1)));
        assert!(recent.insert("id-0"), "the oldest ids are forgotten");
    }
}
