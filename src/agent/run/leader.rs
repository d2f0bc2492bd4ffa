//! Leader election on a `coordination.k8s.io` Lease, so that two replicas
//! never reconcile at once: whoever holds `stagegate-leader` (renewed well
//! within its duration) reconciles; the others wait to take it over.
//!
//! One leader writes. Noticing a lost Lease is not enough: a replica paused
//! for longer than the Lease (a stopped process, a starved node) resumes in
//! the middle of a stage, with the next write already on its way. So whether
//! this replica may write is a [`Leadership`] every write consults: true
//! only while the last successful renewal is recent enough that no other
//! replica can have taken the Lease since. [`Leadership::guard`] puts that
//! check in front of every mutating API request of a client, so no write
//! path can forget it. On shutdown the Lease is released, so that a standby
//! takes over at once rather than after the Lease expires.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::http::{Method, Request};
use tokio::time::Instant;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::core::permission::Permission;

/// What leader election needs (see [`crate::agent::rbac`]).
pub const PERMISSIONS: &[Permission] = &[Permission {
    group: "coordination.k8s.io",
    resource: "leases",
    verbs: &["get", "create", "update"],
    cluster_wide: false,
    why: "the Lease stagegate-leader in the agent's namespace, held by the replica that reconciles",
}];

pub const LEASE_NAME: &str = "stagegate-leader";
const LEASE_DURATION: Duration = Duration::from_secs(15);
const RETRY_PERIOD: Duration = Duration::from_secs(2);
/// How long after a renewal this replica still counts as leader: less than
/// the Lease's duration, so that a standby (whose clock may run a little
/// ahead) cannot have taken over while this replica still writes.
const LEADERSHIP_VALIDITY: Duration = Duration::from_secs(10);

/// Whether this replica may write now: cheap to check, shared by every
/// write path (clone it freely).
#[derive(Clone)]
pub struct Leadership(Arc<LeadershipState>);

struct LeadershipState {
    /// Without leader election this replica always writes.
    elected: bool,
    base: Instant,
    /// Milliseconds after `base` of the last renewal started; `u64::MAX`: never.
    renewed_ms: AtomicU64,
    lost: AtomicBool,
    validity: Duration,
}

/// A write refused because this replica is not (or no longer sure to be) the leader.
#[derive(Debug, thiserror::Error)]
#[error(
    "not the leader: the Lease {LEASE_NAME} was not renewed in time (or another replica holds it); nothing is written"
)]
pub struct NotLeader;

impl Leadership {
    /// Leader election off: always the leader.
    pub fn always() -> Self {
        Self::new(false, LEADERSHIP_VALIDITY)
    }

    fn new(elected: bool, validity: Duration) -> Self {
        Self(Arc::new(LeadershipState {
            elected,
            base: Instant::now(),
            renewed_ms: AtomicU64::new(u64::MAX),
            lost: AtomicBool::new(false),
            validity,
        }))
    }

    pub fn is_leader(&self) -> bool {
        let s = &self.0;
        if !s.elected {
            return true;
        }
        if s.lost.load(Ordering::Acquire) {
            return false;
        }
        let renewed = s.renewed_ms.load(Ordering::Acquire);
        if renewed == u64::MAX {
            return false;
        }
        let since = s
            .base
            .elapsed()
            .saturating_sub(Duration::from_millis(renewed));
        since < s.validity
    }

    pub fn check(&self) -> Result<(), NotLeader> {
        if self.is_leader() {
            Ok(())
        } else {
            Err(NotLeader)
        }
    }

    /// A renewal that started at `at` succeeded.
    fn renewed(&self, at: Instant) {
        let ms = u64::try_from(at.saturating_duration_since(self.0.base).as_millis())
            .unwrap_or(u64::MAX - 1);
        self.0.renewed_ms.store(ms, Ordering::Release);
    }

    fn lose(&self) {
        self.0.lost.store(true, Ordering::Release);
    }

    /// `client` with every mutating request (POST, PUT, PATCH, DELETE)
    /// refused unless this replica is the leader at the moment it is sent.
    /// Reads pass. The Lease itself must be renewed with the unguarded client.
    pub fn guard(&self, client: Client) -> Client {
        let namespace = client.default_namespace().to_string();
        let leadership = self.clone();
        let service = tower::service_fn(move |request: Request<kube::client::Body>| {
            let (client, leadership) = (client.clone(), leadership.clone());
            async move {
                let writes = !matches!(
                    *request.method(),
                    Method::GET | Method::HEAD | Method::OPTIONS
                );
                if writes && !leadership.is_leader() {
                    tracing::error!(method = %request.method(), uri = %request.uri(), "write refused: not the leader");
                    return Err(tower::BoxError::from(NotLeader));
                }
                client.send(request).await.map_err(tower::BoxError::from)
            }
        });
        Client::new(service, namespace)
    }
}

pub struct LeaderLease {
    api: Api<Lease>,
    identity: String,
    leadership: Leadership,
}

impl LeaderLease {
    pub fn new(client: Client, namespace: &str, identity: String) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            identity,
            leadership: Leadership::new(true, LEADERSHIP_VALIDITY),
        }
    }

    /// Whether this replica may write; valid for the life of the agent.
    pub fn leadership(&self) -> Leadership {
        self.leadership.clone()
    }

    /// Wait until this replica holds the Lease (or `shutdown`).
    pub async fn acquire(&self, shutdown: &CancellationToken) -> Result<bool, kube::Error> {
        let mut announced = false;
        loop {
            let started = Instant::now();
            if self.try_acquire().await? {
                self.leadership.renewed(started);
                info!(identity = %self.identity, "leader lease acquired");
                return Ok(true);
            }
            if !announced {
                info!(identity = %self.identity, "another replica holds the leader lease; standing by");
                announced = true;
            }
            tokio::select! {
                () = shutdown.cancelled() => return Ok(false),
                () = tokio::time::sleep(RETRY_PERIOD) => {}
            }
        }
    }

    /// Renew the Lease until `shutdown`; `lost` fires if it cannot be renewed
    /// in time, and the caller must stop reconciling.
    pub async fn keep(self, shutdown: CancellationToken, lost: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => {
                    self.release().await;
                    return;
                }
                () = tokio::time::sleep(LEASE_DURATION / 3) => {}
            }
            if !self.leadership.is_leader() {
                // Too long since the last renewal (this process was paused,
                // or renewals failed): another replica may hold the Lease by
                // now. Writes are already refused; stop.
                warn!(identity = %self.identity, "leader lease not renewed in time; stopping");
                self.leadership.lose();
                lost.cancel();
                return;
            }
            let started = Instant::now();
            match self.try_acquire().await {
                Ok(true) => self.leadership.renewed(started),
                Ok(false) => {
                    warn!(identity = %self.identity, "leader lease taken by another replica");
                    self.leadership.lose();
                    lost.cancel();
                    return;
                }
                Err(e) => warn!(error = %e, "cannot renew the leader lease; retrying"),
            }
        }
    }

    /// Take or renew the Lease if it is free, expired or ours.
    async fn try_acquire(&self) -> Result<bool, kube::Error> {
        let now = jiff::Timestamp::now();
        let lease = self.api.get_opt(LEASE_NAME).await?;
        let mut lease = match lease {
            Some(lease) => lease,
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(LEASE_NAME.into()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(self.spec(now, now)),
                };
                return match self.api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                    Err(e) => Err(e),
                };
            }
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let ours = holder == self.identity;
        let expired = spec.renew_time.as_ref().is_none_or(|t| {
            let duration = i64::from(spec.lease_duration_seconds.unwrap_or(15));
            t.0.checked_add(jiff::SignedDuration::from_secs(duration))
                .is_ok_and(|end| end < now)
        });
        if !ours && !holder.is_empty() && !expired {
            return Ok(false);
        }
        let acquired = if ours {
            spec.acquire_time.map(|t| t.0).unwrap_or(now)
        } else {
            now
        };
        lease.spec = Some(self.spec(acquired, now));
        match self
            .api
            .replace(LEASE_NAME, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            // Someone else wrote it between our read and write.
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn spec(&self, acquired: jiff::Timestamp, renewed: jiff::Timestamp) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
            acquire_time: Some(MicroTime(acquired)),
            renew_time: Some(MicroTime(renewed)),
            ..LeaseSpec::default()
        }
    }

    /// Give the Lease up on shutdown so a standby takes over at once.
    async fn release(&self) {
        self.leadership.lose();
        if let Ok(Some(mut lease)) = self.api.get_opt(LEASE_NAME).await
            && lease
                .spec
                .as_ref()
                .and_then(|s| s.holder_identity.as_deref())
                == Some(self.identity.as_str())
        {
            if let Some(spec) = lease.spec.as_mut() {
                spec.holder_identity = None;
                spec.renew_time = None;
            }
            match self
                .api
                .replace(LEASE_NAME, &PostParams::default(), &lease)
                .await
            {
                Ok(_) => info!(identity = %self.identity, "leader lease released"),
                Err(e) => {
                    warn!(error = %e, "cannot release the leader lease; it expires by itself")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn leadership_ends_when_renewals_stop_for_longer_than_its_validity() {
        let leadership = Leadership::new(true, LEADERSHIP_VALIDITY);
        assert!(!leadership.is_leader(), "not before the first renewal");
        leadership.renewed(Instant::now());
        assert!(leadership.is_leader());
        // A pause of 20 s: no renewal ran meanwhile.
        tokio::time::advance(Duration::from_secs(20)).await;
        assert!(!leadership.is_leader());
        assert!(leadership.check().is_err());
        leadership.renewed(Instant::now());
        assert!(leadership.is_leader());
        leadership.lose();
        assert!(!leadership.is_leader(), "a lost Lease is lost for good");
        assert!(Leadership::always().is_leader());
    }
}
