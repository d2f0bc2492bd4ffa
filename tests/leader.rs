//! Leader election on the Lease: one holder at a time, a standby takes over
//! when the holder lets go.

mod common;

use std::time::Duration;

use common::cluster;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use stagegate::run::leader::{LEASE_NAME, LeaderLease};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_one_replica_holds_the_lease_and_a_standby_takes_over() {
    let c = cluster().await;
    let first = LeaderLease::new(c.client.clone(), "default", "replica-a".into());
    let shutdown_a = CancellationToken::new();
    assert!(first.acquire(&shutdown_a).await.unwrap());
    let lost_a = CancellationToken::new();
    let keeper = tokio::spawn(first.keep(shutdown_a.clone(), lost_a.clone()));

    // The second replica stands by while the first renews.
    let second = LeaderLease::new(c.client.clone(), "default", "replica-b".into());
    let shutdown_b = CancellationToken::new();
    let standby = tokio::time::timeout(Duration::from_secs(3), second.acquire(&shutdown_b)).await;
    assert!(standby.is_err(), "replica-b must not acquire a held lease");
    let leases: Api<Lease> = Api::namespaced(c.client.clone(), "default");
    let holder = |l: Lease| l.spec.and_then(|s| s.holder_identity);
    assert_eq!(
        holder(leases.get(LEASE_NAME).await.unwrap()).as_deref(),
        Some("replica-a")
    );

    // The first shuts down and releases; the second takes over at once.
    shutdown_a.cancel();
    keeper.await.unwrap();
    assert!(!lost_a.is_cancelled());
    let took = tokio::time::timeout(Duration::from_secs(30), second.acquire(&shutdown_b)).await;
    assert!(matches!(took, Ok(Ok(true))), "{took:?}");
    assert_eq!(
        holder(leases.get(LEASE_NAME).await.unwrap()).as_deref(),
        Some("replica-b")
    );
    c.sim.shutdown().await;
}
