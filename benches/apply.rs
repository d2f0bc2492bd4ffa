//! Apply benchmark: a fresh stage of 1,000 objects against kube-sim, then the
//! same stage re-applied unchanged (requests per object, writes, time).
//!
//! cargo bench --bench apply

use std::time::{Duration, Instant};

use kube_sim::{KubeSim, RequestStats, SimConfig};
use stagegate::cluster::apply::{Engine, EngineSettings};
use stagegate::cluster::state::StageState;
use stagegate::core::plan::build_plan;

fn writes(s: &RequestStats) -> u64 {
    s.create + s.update + s.patch + s.delete
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let objects = 1_000;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("stages.yaml"),
        "apiVersion: stagegate.dev/v1alpha1\nkind: Stage\nmetadata: {name: big}\nspec: {path: big, targetNamespace: bench, wait: false}\n",
    )
    .expect("write");
    std::fs::create_dir_all(dir.path().join("big")).expect("mkdir");
    std::fs::write(
        dir.path().join("big/ns.yaml"),
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: bench}\n",
    )
    .expect("write");
    for i in 1..objects {
        let doc = match i % 4 {
            0 => format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: app-{i}}}\nspec:\n  replicas: 1\n  selector: {{matchLabels: {{app: app-{i}}}}}\n  template:\n    metadata: {{labels: {{app: app-{i}}}}}\n    spec: {{containers: [{{name: c, image: nginx:1.27}}]}}\n"
            ),
            1 => format!(
                "apiVersion: v1\nkind: Service\nmetadata: {{name: svc-{i}}}\nspec: {{selector: {{app: app-{i}}}, ports: [{{port: 80}}]}}\n"
            ),
            2 => format!(
                "apiVersion: v1\nkind: Secret\nmetadata: {{name: secret-{i}}}\nstringData: {{password: p{i}}}\n"
            ),
            _ => format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: config-{i}}}\ndata: {{key: value-{i}}}\n"
            ),
        };
        std::fs::write(dir.path().join(format!("big/{i:04}.yaml")), doc).expect("write");
    }
    let plan = build_plan(dir.path(), None).expect("plan");
    let stage = &plan.stages[0];
    assert_eq!(stage.objects.len(), objects);

    let sim = KubeSim::start(SimConfig {
        rollout_delay: Duration::from_millis(50),
        ..SimConfig::default()
    })
    .await
    .expect("kube-sim");
    let client =
        kube::Client::try_from(kube::Config::new(sim.url().parse().expect("url"))).expect("client");
    let engine = Engine::new(client, EngineSettings::default());
    let mut state = StageState::default();

    let before = sim.stats();
    let start = Instant::now();
    let report = engine.apply_stage(stage, "r1", &mut state).await;
    let fresh = start.elapsed();
    assert!(report.ready, "{}", report.message);
    let after_fresh = sim.stats();

    let mut rounds = Vec::new();
    for round in 0..5 {
        let before = sim.stats();
        let start = Instant::now();
        let report = engine
            .apply_stage(stage, &format!("r{}", round + 2), &mut state)
            .await;
        let took = start.elapsed();
        assert!(report.ready, "{}", report.message);
        let after = sim.stats();
        rounds.push((
            took,
            after.total() - before.total(),
            writes(&after) - writes(&before),
            report.unchanged,
        ));
    }
    rounds.sort_by_key(|r| r.0);
    let (took, requests, written, unchanged) = rounds[rounds.len() / 2];

    println!(
        "apply benchmark: one stage of {objects} objects (ConfigMaps, Secrets, Services, Deployments) against kube-sim"
    );
    println!("| run | time | requests | requests/object | writes |");
    println!("|---|---|---|---|---|");
    println!(
        "| fresh apply | {:.0} ms | {} | {:.2} | {} |",
        fresh.as_secs_f64() * 1000.0,
        after_fresh.total() - before.total(),
        (after_fresh.total() - before.total()) as f64 / objects as f64,
        writes(&after_fresh) - writes(&before)
    );
    println!(
        "| unchanged re-apply (median of 5) | {:.1} ms | {requests} | {:.3} | {written} |",
        took.as_secs_f64() * 1000.0,
        requests as f64 / objects as f64
    );
    println!("objects found unchanged: {unchanged}/{objects}");
    sim.shutdown().await;
}
