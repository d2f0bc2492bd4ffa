//! Agent benchmarks with the real binary against kube-sim and a local Git
//! repository:
//! (1) a chain of 10 dependent stages, each holding a 1 s Job: total time
//!     against the 10 s floor (Flux's default 30 s dependency requeue would
//!     add up to minutes);
//! (3) the agent's peak RSS managing 1,000 objects over 50 stages.
//!
//! cargo bench --bench agent

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kube_sim::{KubeSim, SimConfig};

fn git(dir: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.com")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.com")
        .status()
        .expect("git")
        .success();
    assert!(ok, "git {args:?}");
}

fn repo(dir: &Path, files: &[(String, String)]) {
    for (path, content) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, content).expect("write");
    }
    git(dir, &["init", "-q", "-b", "main"]);
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "bench"]);
}

fn stage(name: &str, dep: Option<&str>) -> String {
    let deps = dep
        .map(|d| format!("  dependsOn: [{d}]\n"))
        .unwrap_or_default();
    format!(
        "---\napiVersion: stagegate.dev/v1alpha1\nkind: Stage\nmetadata: {{name: {name}}}\nspec:\n  path: {name}\n  targetNamespace: bench\n{deps}"
    )
}

fn agent(sim: &KubeSim, work: &Path, extra: &[&str]) -> Command {
    let kubeconfig = work.join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig).expect("kubeconfig");
    // STAGEGATE_BIN measures another build, e.g. the image's (`--profile dist`).
    let bin = std::env::var("STAGEGATE_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_stagegate").to_string());
    let mut cmd = Command::new(bin);
    cmd.args([
        "run",
        "--namespace",
        "stagegate-system",
        "--create-namespace",
        "--listen",
        "127.0.0.1:0",
    ])
    .arg("--repo")
    .arg(format!("file://{}", work.join("repo").display()))
    .arg("--cache-dir")
    .arg(work.join("cache"))
    .arg("--kubeconfig")
    .arg(&kubeconfig)
    .args(extra)
    .env("STAGEGATE_LOG", "warn")
    .env_remove("KUBECONFIG");
    cmd
}

async fn chain() -> (Duration, Duration) {
    let sim = KubeSim::start(SimConfig {
        tick: Duration::from_millis(10),
        ..SimConfig::default()
    })
    .await
    .expect("sim");
    let work = tempfile::tempdir().expect("tempdir");
    let mut files = vec![(
        "bench/ns.yaml".to_string(),
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: bench}\n".to_string(),
    )];
    let mut stages = stage("bench", None);
    let mut prev = "bench".to_string();
    for i in 1..=10 {
        let name = format!("step-{i:02}");
        stages += &stage(&name, Some(&prev));
        files.push((
            format!("{name}/job.yaml"),
            format!("apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {name}\n  annotations: {{sim.stagegate.dev/duration: 1s}}\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{{name: c, image: busybox, command: [\"true\"]}}]\n"),
        ));
        prev = name;
    }
    files.push(("stages.yaml".into(), stages));
    repo(&work.path().join("repo"), &files);
    let mut cmd = agent(&sim, work.path(), &["--once"]);
    let start = Instant::now();
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("agent"))
        .await
        .expect("join");
    let total = start.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // The same setup with no Job at all: what process start, fetch and
    // planning cost, outside the stage chain.
    sim.shutdown().await;
    (total, Duration::from_secs(10))
}

async fn rss() -> (u64, u64) {
    let sim = KubeSim::start(SimConfig::default()).await.expect("sim");
    let client =
        kube::Client::try_from(kube::Config::new(sim.url().parse().expect("url"))).expect("client");
    let work = tempfile::tempdir().expect("tempdir");
    let mut files = vec![(
        "ns/ns.yaml".to_string(),
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: bench}\n".to_string(),
    )];
    let mut stages = stage("ns", None);
    for s in 0..50 {
        let name = format!("s{s:02}");
        stages += &stage(&name, Some("ns"));
        for o in 0..20 {
            files.push((
                format!("{name}/cm-{o}.yaml"),
                format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}-{o}}}\ndata: {{key: value-{s}-{o}, other: \"{}\"}}\n", "x".repeat(200)),
            ));
        }
    }
    files.push(("stages.yaml".into(), stages));
    repo(&work.path().join("repo"), &files);
    let mut child = agent(
        &sim,
        work.path(),
        &["--interval", "2s", "--leader-elect", "false"],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("agent");
    let store = stagegate::state::StateStore::new(client, "stagegate-system");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(state) = store.load().await
            && state.stages.len() == 51
            && state
                .stages
                .values()
                .all(|s| s.phase == stagegate::state::Phase::Ready)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "agent did not get every stage Ready"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A few more no-change cycles, then read the peak.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", child.id())).expect("proc status");
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let (hwm, rss) = (field("VmHWM:"), field("VmRSS:"));
    println!(
        "(RSS now: anonymous {:.1} MiB, file-backed {:.1} MiB, threads {})",
        field("RssAnon:") as f64 / 1024.0,
        field("RssFile:") as f64 / 1024.0,
        field("Threads:")
    );
    let _ = child.kill();
    let _ = child.wait();
    sim.shutdown().await;
    (hwm, rss)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let (total, floor) = chain().await;
        println!("| chain of 10 stages, 1 s Job each | total {:.2} s | floor {:.0} s | ratio {:.3}x |", total.as_secs_f64(), floor.as_secs_f64(), total.as_secs_f64() / floor.as_secs_f64());
        let (hwm, rss) = rss().await;
        println!("| 1,000 objects over 50 stages | peak RSS {:.1} MiB | RSS after no-change cycles {:.1} MiB |", hwm as f64 / 1024.0, rss as f64 / 1024.0);
    });
}
