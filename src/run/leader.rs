//! Leader election on a `coordination.k8s.io` Lease, so that two replicas
//! never reconcile at once: whoever holds `stagegate-leader` (renewed well
//! within its duration) reconciles; the others wait to take it over.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::rbac::Permission;

/// What leader election needs (see [`crate::rbac`]).
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

pub struct LeaderLease {
    api: Api<Lease>,
    identity: String,
}

impl LeaderLease {
    pub fn new(client: Client, namespace: &str, identity: String) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            identity,
        }
    }

    /// Wait until this replica holds the Lease (or `shutdown`).
    pub async fn acquire(&self, shutdown: &CancellationToken) -> Result<bool, kube::Error> {
        let mut announced = false;
        loop {
            if self.try_acquire().await? {
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
        let mut last_renewed = tokio::time::Instant::now();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => {
                    self.release().await;
                    return;
                }
                () = tokio::time::sleep(LEASE_DURATION / 3) => {}
            }
            match self.try_acquire().await {
                Ok(true) => last_renewed = tokio::time::Instant::now(),
                Ok(false) => {
                    warn!(identity = %self.identity, "leader lease taken by another replica");
                    lost.cancel();
                    return;
                }
                Err(e) => {
                    warn!(error = %e, "cannot renew the leader lease");
                    if last_renewed.elapsed() >= LEASE_DURATION {
                        lost.cancel();
                        return;
                    }
                }
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
            let _ = self
                .api
                .replace(LEASE_NAME, &PostParams::default(), &lease)
                .await;
        }
    }
}
