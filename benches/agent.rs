//! Agent benchmarks with the real binary against kube-sim and a local Git
//! repository:
//! (1) 1,000 stages (a ConfigMap and a Deployment each, 10 dependency layers
//!     of 100): the first `run --once`, an unchanged one, and the agent's
//!     peak RSS; the floor is ten rollouts of kube-sim's 300 ms;
//! (2) the dependency hand-off: a chain of 10 stages each holding a 1 s Job,
//!     against kube-sim's own create-to-Complete time for such a Job,
//!     measured in the same run.
//!
//! cargo bench --bench agent     (AGENT_BENCH_STAGES=200 for a smaller repository)
//!
//! Peak RSS is measured through a launcher (this binary again, `--measure-rss`):
//! a process's `ru_maxrss` starts from the high-water mark of the memory it was
//! forked from, and this process holds kube-sim with every object of the
//! runs, so an agent spawned straight from it reports kube-sim's size (230 MiB
//! after the first run) instead of its own.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::PostParams;
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

fn stage(name: &str, dep: Option<&str>, wait: bool) -> String {
    let deps = dep
        .map(|d| format!("  dependsOn: [{d}]\n"))
        .unwrap_or_default();
    format!(
        "---\napiVersion: stagegate.dev/v1alpha1\nkind: Stage\nmetadata: {{name: {name}}}\nspec:\n  path: {name}\n  targetNamespace: bench\n  wait: {wait}\n{deps}"
    )
}

/// A sim as an install leaves it: the Stage CRD and the `bench` namespace.
async fn sim(config: SimConfig) -> (KubeSim, kube::Client) {
    let sim = KubeSim::start(config).await.expect("sim");
    let client =
        kube::Client::try_from(kube::Config::new(sim.url().parse().expect("url"))).expect("client");
    let crd = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/00-crd.yaml");
    let crd: CustomResourceDefinition =
        serde_yaml::from_str(&std::fs::read_to_string(crd).expect("crd")).expect("crd yaml");
    Api::<CustomResourceDefinition>::all(client.clone())
        .create(&PostParams::default(), &crd)
        .await
        .expect("install the CRD");
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "bench"}})).expect("ns");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace");
    (sim, client)
}

fn agent(sim: &KubeSim, work: &Path, repo: &str, extra: &[&str]) -> Command {
    let kubeconfig = work.join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig).expect("kubeconfig");
    // STAGEGATE_BIN measures another build, e.g. the image's (`--profile dist`).
    let bin = std::env::var("STAGEGATE_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_stagegate").to_string());
    let mut cmd = Command::new(std::env::current_exe().expect("the bench's own path"));
    cmd.arg(MEASURE_RSS)
        .arg(rss_file(work, repo))
        .arg(bin)
        .args([
            "run",
            "--once",
            "--namespace",
            "stagegate-system",
            "--create-namespace",
            "--listen",
            "127.0.0.1:0",
        ])
        .arg("--repo")
        .arg(format!("file://{}", work.join(repo).display()))
        .arg("--cache-dir")
        .arg(work.join(format!("cache-{repo}")))
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(extra)
        .stdout(log_file(work, repo))
        .stderr(log_file(work, repo))
        .env("STAGEGATE_LOG", "warn")
        .env_remove("KUBECONFIG");
    cmd
}

fn log_file(work: &Path, repo: &str) -> Stdio {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(work.join(format!("agent-{repo}.log")))
        .map(Stdio::from)
        .expect("log file")
}

/// The launcher's first argument: `--measure-rss FILE PROGRAM ARGS...`.
const MEASURE_RSS: &str = "--measure-rss";

fn rss_file(work: &Path, repo: &str) -> std::path::PathBuf {
    work.join(format!("rss-{repo}"))
}

/// Run a program to its end and wait for it with `wait4`: its exit status
/// and its peak RSS in KiB.
fn wait_child(mut cmd: Command) -> (libc::c_int, u64) {
    // Reaped below by wait4, which also gives its peak RSS.
    #[allow(clippy::zombie_processes)]
    let child = cmd.spawn().expect("spawn");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value to be filled in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our child, not yet waited for; both pointers are valid.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4");
    (status, usage.ru_maxrss as u64)
}

/// The launcher: a fresh process, a few MiB, that runs the agent and writes
/// the agent's peak RSS (KiB) to FILE; its exit code is the agent's. Its own
/// high-water mark is what the agent inherits, far below the agent's own.
fn launch(args: &[String]) -> std::process::ExitCode {
    let [file, program, rest @ ..] = args else {
        panic!("usage: {MEASURE_RSS} FILE PROGRAM [ARGS...]");
    };
    let mut cmd = Command::new(program);
    cmd.args(rest);
    let (status, rss) = wait_child(cmd);
    std::fs::write(file, rss.to_string()).expect("write the peak RSS");
    let code = match libc::WIFEXITED(status) {
        true => libc::WEXITSTATUS(status),
        false => 128 + libc::WTERMSIG(status),
    };
    std::process::ExitCode::from(code as u8)
}

/// Run the agent (through the launcher) to its end: wall time and the
/// agent's own peak RSS (KiB).
async fn measure(cmd: Command, log: std::path::PathBuf) -> (Duration, u64) {
    tokio::task::spawn_blocking(move || {
        let rss = cmd.get_args().nth(1).map(std::path::PathBuf::from);
        let start = Instant::now();
        let (status, _launcher_rss) = wait_child(cmd);
        let elapsed = start.elapsed();
        let exited_ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
        if !exited_ok {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            panic!(
                "agent failed:\n{}",
                &text[text.len().saturating_sub(4000)..]
            );
        }
        let rss = rss.expect("the launcher's RSS file");
        let text = std::fs::read_to_string(&rss).expect("the agent's peak RSS");
        (elapsed, text.trim().parse().expect("a number of KiB"))
    })
    .await
    .expect("join")
}

async fn scale(stages: usize) {
    let (sim, client) = sim(SimConfig::default()).await;
    let work = tempfile::tempdir().expect("tempdir");
    let layers = 10;
    let per_layer = stages / layers;
    let mut files = Vec::new();
    let mut doc = String::new();
    for l in 0..layers {
        for i in 0..per_layer {
            let name = format!("l{l}-s{i:03}");
            let dep = (l > 0).then(|| format!("l{}-s{i:03}", l - 1));
            doc += &stage(&name, dep.as_deref(), true);
            files.push((
                format!("{name}/config.yaml"),
                format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {{layer: \"{l}\", index: \"{i}\"}}\n"),
            ));
            files.push((
                format!("{name}/deployment.yaml"),
                format!("apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: 1\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      containers: [{{name: web, image: \"nginx:1.27\"}}]\n"),
            ));
        }
    }
    files.push(("stages.yaml".into(), doc));
    repo(&work.path().join("scale"), &files);
    let stages = (layers * per_layer) as f64;
    let before = sim.stats();
    let (first, first_rss) = measure(
        agent(&sim, work.path(), "scale", &[]),
        work.path().join("agent-scale.log"),
    )
    .await;
    let between = sim.stats();
    let (unchanged, unchanged_rss) = measure(
        agent(&sim, work.path(), "scale", &[]),
        work.path().join("agent-scale.log"),
    )
    .await;
    let after = sim.stats();
    println!(
        "| {} stages, {layers} layers (ConfigMap + Deployment each) | first run {:.2} s | unchanged run {:.2} s | peak RSS {:.1} MiB (first), {:.1} MiB (unchanged) |",
        layers * per_layer,
        first.as_secs_f64(),
        unchanged.as_secs_f64(),
        first_rss as f64 / 1024.0,
        unchanged_rss as f64 / 1024.0
    );
    println!(
        "| API requests per stage (kube-sim's counters, watches included) | first run {:.2} ({} writes) | unchanged run {:.2} ({} writes) |",
        (between.total() - before.total()) as f64 / stages,
        writes(between) - writes(before),
        (after.total() - between.total()) as f64 / stages,
        writes(after) - writes(between),
    );
    println!(
        "| unchanged run's requests by verb | get {} | list {} | watch {} |",
        after.get - between.get,
        after.list - between.list,
        after.watch - between.watch,
    );
    let floor = layer_floor(&client, per_layer).await;
    println!(
        "| the floor: one layer of {per_layer} ConfigMaps + Deployments applied directly (4 in flight) until all available | {:.2} s per layer | x{layers} = {:.2} s |",
        floor.as_secs_f64(),
        floor.as_secs_f64() * layers as f64,
    );
    sim.shutdown().await;
}

fn writes(s: kube_sim::RequestStats) -> u64 {
    s.create + s.update + s.patch + s.delete
}

/// What one layer costs kube-sim alone: its objects server-side applied
/// with the agent's default concurrency, then polled (every 10 ms) until
/// every Deployment has finished its rollout.
async fn layer_floor(client: &kube::Client, per_layer: usize) -> Duration {
    use futures::StreamExt;
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{ListParams, Patch, PatchParams};
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "floor");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "floor");
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "floor"}})).expect("ns");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace");
    let params = PatchParams::apply("floor").force();
    let start = Instant::now();
    futures::stream::iter(0..per_layer)
        .map(|i| {
            let (configmaps, deployments, params) = (&configmaps, &deployments, &params);
            async move {
                let name = format!("floor-{i:03}");
                let cm = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": name}, "data": {"index": i.to_string()}});
                configmaps
                    .patch(&name, params, &Patch::Apply(&cm))
                    .await
                    .expect("configmap");
                let dep = serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": name}, "spec": {"replicas": 1,
                    "selector": {"matchLabels": {"app": name}},
                    "template": {"metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}});
                deployments
                    .patch(&name, params, &Patch::Apply(&dep))
                    .await
                    .expect("deployment");
            }
        })
        .buffer_unordered(4)
        .collect::<Vec<()>>()
        .await;
    loop {
        let list = deployments
            .list(&ListParams::default())
            .await
            .expect("list");
        let available = list
            .items
            .iter()
            .filter(|d| {
                d.status
                    .as_ref()
                    .and_then(|s| s.available_replicas)
                    .is_some_and(|a| a >= 1)
            })
            .count();
        if available == per_layer {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn job(name: &str) -> String {
    format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {name}\n  annotations: {{sim.stagegate.dev/duration: 1s}}\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{{name: c, image: busybox, command: [\"true\"]}}]\n"
    )
}

/// kube-sim's own create-to-Complete time for a 1 s Job, polled every 5 ms.
async fn sim_job_time(client: &kube::Client) -> Duration {
    let jobs: Api<Job> = Api::namespaced(client.clone(), "bench");
    let mut times = Vec::new();
    for i in 0..3 {
        let job: Job = serde_yaml::from_str(&job(&format!("reference-{i}"))).expect("job");
        let start = Instant::now();
        jobs.create(&PostParams::default(), &job)
            .await
            .expect("create");
        loop {
            let live = jobs.get(&format!("reference-{i}")).await.expect("get");
            let complete = live
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Complete" && c.status == "True");
            if complete {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        times.push(start.elapsed());
    }
    times.sort();
    times[1]
}

async fn chain() {
    let (sim, client) = sim(SimConfig {
        tick: Duration::from_millis(10),
        ..SimConfig::default()
    })
    .await;
    let work = tempfile::tempdir().expect("tempdir");
    // The same 10-stage chain with and without Jobs: the difference is what
    // the Jobs and their hand-offs cost, process start and fetch aside.
    for (repo_name, with_jobs) in [("plain", false), ("jobs", true)] {
        let mut files = Vec::new();
        let mut doc = String::new();
        let mut prev: Option<String> = None;
        for i in 1..=10 {
            let name = format!("step-{i:02}");
            doc += &stage(&name, prev.as_deref(), true);
            let content = match with_jobs {
                true => job(&name),
                false => format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\n"),
            };
            files.push((format!("{name}/object.yaml"), content));
            prev = Some(name);
        }
        files.push(("stages.yaml".into(), doc));
        repo(&work.path().join(repo_name), &files);
    }
    let (plain, _) = measure(
        agent(&sim, work.path(), "plain", &[]),
        work.path().join("agent-plain.log"),
    )
    .await;
    let (with_jobs, _) = measure(
        agent(&sim, work.path(), "jobs", &[]),
        work.path().join("agent-jobs.log"),
    )
    .await;
    let reference = sim_job_time(&client).await;
    let link = with_jobs.saturating_sub(plain) / 10;
    println!(
        "| chain of 10 stages, 1 s Job each | total {:.2} s (without Jobs {:.2} s) | per link {:.0} ms | kube-sim create-to-Complete {:.0} ms | hand-off {:+.0} ms |",
        with_jobs.as_secs_f64(),
        plain.as_secs_f64(),
        link.as_secs_f64() * 1000.0,
        reference.as_secs_f64() * 1000.0,
        (link.as_secs_f64() - reference.as_secs_f64()) * 1000.0
    );
    sim.shutdown().await;
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(MEASURE_RSS) {
        return launch(&args[1..]);
    }
    let stages = std::env::var("AGENT_BENCH_STAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        scale(stages).await;
        chain().await;
    });
    std::process::ExitCode::SUCCESS
}
