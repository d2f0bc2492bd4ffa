//! Leader election on the Lease: one holder at a time, a standby takes over
//! when the holder lets go.

mod common;

use std::time::Duration;

use common::cluster;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use stagegate::agent::run::leader::{LEASE_NAME, LeaderLease};
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

/// A leader paused longer than its Lease (here: never renewed after
/// acquiring) writes nothing: every write through the guarded client is
/// refused from the moment it cannot be sure to lead, reads still pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_not_sure_to_hold_the_lease_writes_nothing() {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{ObjectMeta, PostParams};

    let c = cluster().await;
    let lease = LeaderLease::new(c.client.clone(), "default", "replica-a".into());
    let guarded = lease.leadership().guard(c.client.clone());
    let maps: Api<ConfigMap> = Api::namespaced(guarded, "default");
    let map = |name: &str| ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    };
    let before = maps.create(&PostParams::default(), &map("before")).await;
    assert!(
        before.unwrap_err().to_string().contains("not the leader"),
        "no write before the Lease is held"
    );

    assert!(lease.acquire(&CancellationToken::new()).await.unwrap());
    maps.create(&PostParams::default(), &map("leading"))
        .await
        .expect("the leader writes");
    assert!(lease.leadership().is_leader());

    // No renewal for longer than leadership lasts, as in a 20 s pause.
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert!(!lease.leadership().is_leader());
    let stale = maps.create(&PostParams::default(), &map("stale")).await;
    assert!(stale.unwrap_err().to_string().contains("not the leader"));
    assert!(maps.get_opt("stale").await.unwrap().is_none());
    assert!(
        maps.get_opt("leading").await.unwrap().is_some(),
        "reads pass"
    );
    c.sim.shutdown().await;
}

/// SIGTERM releases the Lease before the process exits, so a standby takes
/// over at once instead of after the Lease's full duration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_releases_the_lease() {
    let c = cluster().await;
    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig = tmp.path().join("kubeconfig");
    c.sim.write_kubeconfig(&kubeconfig).unwrap();
    // No repository there: fetches fail and are retried; the Lease is held regardless.
    let mut agent = std::process::Command::new(env!("CARGO_BIN_EXE_stagegate"))
        .args([
            "run",
            "--namespace",
            "stagegate-system",
            "--create-namespace",
        ])
        .args(["--listen", "127.0.0.1:0", "--interval", "1h", "--repo"])
        .arg(tmp.path().join("no-repo"))
        .arg("--cache-dir")
        .arg(tmp.path().join("cache"))
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .env_remove("KUBECONFIG")
        .env("POD_NAME", "replica-term")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn stagegate");
    let leases: Api<Lease> = Api::namespaced(c.client.clone(), "stagegate-system");
    let holder = |l: Option<Lease>| l.and_then(|l| l.spec).and_then(|s| s.holder_identity);
    let held = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if holder(leases.get_opt(LEASE_NAME).await.unwrap()).as_deref() == Some("replica-term")
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(held.is_ok(), "the agent acquires the Lease");

    let pid = i32::try_from(agent.id()).unwrap();
    // SAFETY: kill with a valid signal to the child this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = tokio::task::spawn_blocking(move || agent.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(
        holder(leases.get_opt(LEASE_NAME).await.unwrap()),
        None,
        "the Lease is released on SIGTERM"
    );
    c.sim.shutdown().await;
}
