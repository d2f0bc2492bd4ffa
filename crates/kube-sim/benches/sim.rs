//! kube-sim under the load of a scale run: 10,000 stored objects, LISTs of
//! 1,000 of them, and one change fanned out to 20 watchers.
//!
//! `cargo bench -p kube-sim --bench sim` (add `-- --quick` for a smoke run).

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube_sim::{KubeSim, SimConfig};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NAMESPACES: usize = 10;
const PER_NAMESPACE: usize = 1_000;
const WATCHERS: usize = 20;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    println!(
        "| {name} | {} | {:.2} | {:.2} | {:.2} | {:.2} |",
        samples.len(),
        mean.as_secs_f64() * 1e3,
        percentile(&samples, 0.5).as_secs_f64() * 1e3,
        percentile(&samples, 0.99).as_secs_f64() * 1e3,
        samples.last().unwrap().as_secs_f64() * 1e3,
    );
}

/// One raw GET on a fresh connection; returns the body size.
async fn raw_get(addr: std::net::SocketAddr, path: &str) -> usize {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::with_capacity(1 << 20);
    s.read_to_end(&mut buf).await.unwrap();
    buf.len()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rounds = if quick { 5 } else { 50 };
    let sim = KubeSim::start(SimConfig {
        watch_history: 50_000,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let client = kube::Client::try_from(kube::Config::new(sim.url().parse().unwrap())).unwrap();

    // Fill: 10 namespaces x 1,000 ConfigMaps, 16 requests in flight.
    let t = Instant::now();
    let nss: Api<Namespace> = Api::all(client.clone());
    for n in 0..NAMESPACES {
        let ns: Namespace =
            serde_json::from_value(json!({"metadata": {"name": format!("ns{n}")}})).unwrap();
        nss.create(&PostParams::default(), &ns).await.unwrap();
    }
    let jobs: Vec<(usize, usize)> = (0..NAMESPACES)
        .flat_map(|n| (0..PER_NAMESPACE).map(move |i| (n, i)))
        .collect();
    futures::stream::iter(jobs)
        .for_each_concurrent(16, |(n, i)| {
            let client = client.clone();
            async move {
                let api: Api<ConfigMap> = Api::namespaced(client, &format!("ns{n}"));
                let cm: ConfigMap = serde_json::from_value(json!({
                    "metadata": {"name": format!("cm-{i:05}"), "labels": {"app": "bench", "shard": (i % 10).to_string()}},
                    "data": {"key": "value", "index": i.to_string(), "payload": "x".repeat(200)}
                }))
                .unwrap();
                api.create(&PostParams::default(), &cm).await.unwrap();
            }
        })
        .await;
    let fill = t.elapsed();
    let total = NAMESPACES * PER_NAMESPACE;
    println!(
        "kube-sim benchmark: {total} ConfigMaps stored ({NAMESPACES} namespaces x {PER_NAMESPACE}), {rounds} rounds per figure"
    );
    println!();
    println!(
        "fill: {total} creates through kube-rs, 16 in flight: {:.2} s ({:.0} creates/s)",
        fill.as_secs_f64(),
        total as f64 / fill.as_secs_f64()
    );
    println!();
    println!("| operation | n | mean ms | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|");

    // LIST of 1,000 objects: one namespace, typed through kube-rs (includes client decoding).
    let one_ns: Api<ConfigMap> = Api::namespaced(client.clone(), "ns3");
    let mut samples = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        let l = one_ns.list(&ListParams::default()).await.unwrap();
        samples.push(t.elapsed());
        assert_eq!(l.items.len(), PER_NAMESPACE);
    }
    report(
        "LIST 1,000 of 10,000 (one namespace, kube-rs typed)",
        samples,
    );

    // The same LIST as raw HTTP: the server's share.
    let mut samples = Vec::new();
    let mut bytes = 0;
    for _ in 0..rounds {
        let t = Instant::now();
        bytes = raw_get(sim.addr(), "/api/v1/namespaces/ns3/configmaps").await;
        samples.push(t.elapsed());
    }
    report(
        &format!("LIST 1,000 of 10,000 (raw HTTP, {} KiB)", bytes / 1024),
        samples,
    );

    // LIST 1,000 by label across all namespaces: a selector over all 10,000.
    let all: Api<ConfigMap> = Api::all(client.clone());
    let mut samples = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        let l = all
            .list(&ListParams::default().labels("shard=7"))
            .await
            .unwrap();
        samples.push(t.elapsed());
        assert_eq!(l.items.len(), total / 10);
    }
    report(
        "LIST 1,000 of 10,000 by labelSelector (all namespaces)",
        samples,
    );

    // Paged: limit=500 with continue.
    let mut samples = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        let first = one_ns
            .list(&ListParams::default().limit(500))
            .await
            .unwrap();
        let token = first.metadata.continue_.clone().unwrap();
        let second = one_ns
            .list(&ListParams::default().limit(500).continue_token(&token))
            .await
            .unwrap();
        samples.push(t.elapsed());
        assert_eq!(first.items.len() + second.items.len(), PER_NAMESPACE);
    }
    report("LIST 1,000 in two pages of 500 (limit/continue)", samples);

    // Server-side apply of 1,000 existing objects (a changed value each), as
    // an agent's apply pass does: time per pass of 1,000, 16 in flight.
    let mut samples = Vec::new();
    for round in 0..rounds.min(10) {
        let t = Instant::now();
        futures::stream::iter(0..PER_NAMESPACE)
            .for_each_concurrent(16, |i| {
                let api = one_ns.clone();
                async move {
                    let cm = json!({
                        "apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": format!("cm-{i:05}"), "labels": {"app": "bench", "shard": (i % 10).to_string()}},
                        "data": {"key": "value", "index": i.to_string(), "payload": "x".repeat(200), "round": round.to_string()}
                    });
                    api.patch(&format!("cm-{i:05}"), &PatchParams::apply("bench").force(), &Patch::Apply(cm))
                        .await
                        .unwrap();
                }
            })
            .await;
        samples.push(t.elapsed());
    }
    report(
        "server-side apply of 1,000 changed objects (one pass, 16 in flight)",
        samples,
    );

    // Fan-out: 20 watchers on one namespace; one change must reach all of them.
    let watched: Api<ConfigMap> = Api::namespaced(client.clone(), "ns5");
    let rv = watched
        .list(&ListParams::default().limit(1))
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, String)>();
    for w in 0..WATCHERS {
        let api = watched.clone();
        let rv = rv.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut s = api
                .watch(&WatchParams::default().timeout(290), &rv)
                .await
                .unwrap()
                .boxed();
            while let Ok(Some(ev)) = s.try_next().await {
                if let WatchEvent::Modified(o) = ev
                    && tx
                        .send((w, o.data.unwrap().get("round").cloned().unwrap_or_default()))
                        .is_err()
                {
                    return;
                }
            }
        });
    }
    // Let every watch connect before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut samples = Vec::new();
    let mut first_samples = Vec::new();
    for round in 0..rounds {
        let t = Instant::now();
        watched
            .patch(
                "cm-00042",
                &PatchParams::default(),
                &Patch::Merge(json!({"data": {"round": round.to_string()}})),
            )
            .await
            .unwrap();
        let mut got = 0;
        while got < WATCHERS {
            let (_, r) = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                .await
                .unwrap()
                .unwrap();
            if r == round.to_string() {
                got += 1;
                if got == 1 {
                    first_samples.push(t.elapsed());
                }
            }
        }
        samples.push(t.elapsed());
    }
    report(
        "1 change -> first of 20 watchers (PATCH round trip included)",
        first_samples,
    );
    report(
        "1 change -> all 20 watchers (PATCH round trip included)",
        samples,
    );

    // 1,000 Jobs at once (100ms pods): the simulated controllers' throughput.
    let jobs_ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "jobs"}})).unwrap();
    nss.create(&PostParams::default(), &jobs_ns).await.unwrap();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "jobs");
    let t = Instant::now();
    futures::stream::iter(0..1_000)
        .for_each_concurrent(16, |i| {
            let jobs = jobs.clone();
            async move {
                let job: Job = serde_json::from_value(json!({
                    "metadata": {"name": format!("job-{i:04}"), "annotations": {"sim.stagegate.dev/duration": "100ms"}},
                    "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}
                }))
                .unwrap();
                jobs.create(&PostParams::default(), &job).await.unwrap();
            }
        })
        .await;
    let created = t.elapsed();
    loop {
        let list = jobs.list(&ListParams::default()).await.unwrap();
        let complete = list
            .items
            .iter()
            .filter(|j| {
                j.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c.type_ == "Complete" && c.status == "True")
                    })
            })
            .count();
        if complete == 1_000 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(300),
            "jobs did not complete"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!();
    println!(
        "1,000 Jobs (100ms pods) created in {:.2} s, all Complete after {:.2} s",
        created.as_secs_f64(),
        t.elapsed().as_secs_f64()
    );

    let stats = sim.stats();
    println!();
    println!(
        "requests served: {} (get {}, list {}, watch {}, create {}, patch {})",
        stats.total(),
        stats.get,
        stats.list,
        stats.watch,
        stats.create,
        stats.patch
    );
    sim.shutdown().await;
}
