//! The agent end to end: the real `stagegate run` binary against kube-sim and
//! real Git repositories (file URL and `git daemon`), as in production.

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::git::{GitDaemon, GitRepo, git};
use common::*;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::runtime::watcher;
use stagegate::cluster::state::{Phase, State, StateStore};

const NS: &str = "stagegate-system";

/// The seeds' repository: a migration Job in `pre`, the application after it.
fn seed_files(command: &str, tag: &str, job_annotations: &str) -> Vec<(String, String)> {
    let stages = format!(
        "apiVersion: stagegate.dev/v1alpha1\nkind: Stage\nmetadata: {{name: pre}}\nspec:\n  path: pre\n  targetNamespace: shop\n  timeout: 2m\n  substitute: {{TAG: \"{tag}\"}}\n---\n\
         apiVersion: stagegate.dev/v1alpha1\nkind: Stage\nmetadata: {{name: application}}\nspec:\n  path: application\n  dependsOn: [pre]\n  targetNamespace: shop\n  wait: true\n  prune: true\n  timeout: 2m\n  substitute: {{TAG: \"{tag}\"}}\n"
    );
    let job = format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: db-migrate\n  annotations:\n    sim.stagegate.dev/duration: 300ms\n{job_annotations}spec:\n  backoffLimit: 1\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n        - name: migrate\n          image: registry.example.com/shop/app:${{TAG}}\n          command: [\"perl\", \"-Mbignum=bpi\", \"-wle\", \"{command}\"]\n"
    );
    let deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers:\n        - name: web\n          image: registry.example.com/shop/app:${TAG}\n";
    vec![
        ("stages.yaml".into(), stages),
        (
            "pre/namespace.yaml".into(),
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n".into(),
        ),
        ("pre/job.yaml".into(), job),
        ("application/deployment.yaml".into(), deployment.into()),
    ]
}

impl Env {
    fn command(&self, url: &str, extra: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_stagegate"));
        cmd.args([
            "run",
            "--repo",
            url,
            "--namespace",
            NS,
            "--create-namespace",
        ])
        .arg("--cache-dir")
        .arg(self.tmp.path().join("cache"))
        .arg("--kubeconfig")
        .arg(&self.kubeconfig)
        .args(extra)
        .env_remove("KUBECONFIG")
        .env("STAGEGATE_LOG", "info");
        cmd
    }

    /// `stagegate run --once`, on a blocking thread so the simulated cluster keeps serving.
    async fn once(&self, url: &str, extra: &[&str]) -> Output {
        let mut cmd = self.command(url, &["--once", "--listen", "127.0.0.1:0"]);
        cmd.args(extra);
        tokio::task::spawn_blocking(move || cmd.output().expect("run stagegate"))
            .await
            .unwrap()
    }

    fn spawn(&self, url: &str, extra: &[&str]) -> Child {
        self.command(url, extra)
            .args(["--listen", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn stagegate")
    }

    async fn state(&self) -> State {
        StateStore::new(self.c.client.clone(), NS)
            .read()
            .await
            .unwrap()
    }

    /// Poll the agent's state (as `stagegate status` reads it) until `done`
    /// holds; generous, since the machine may be slow and busy.
    async fn wait_for_state(&self, what: &str, done: impl Fn(&State) -> bool) {
        let store = StateStore::new(self.c.client.clone(), NS);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let state = store.read().await.unwrap_or_default();
            if done(&state) {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "{what}: {state:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn job(&self, name: &str) -> Option<Job> {
        Api::<Job>::namespaced(self.c.client.clone(), "shop")
            .get_opt(name)
            .await
            .unwrap()
    }
}

fn out(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn rv(meta: &kube::api::ObjectMeta) -> u64 {
    meta.resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Every resourceVersion at which something happened, from watches started
/// before the agent: resourceVersions are ordered across the whole cluster.
#[derive(Default)]
struct Timeline {
    /// (job uid, rv) where the Job was first seen Complete.
    jobs_complete: BTreeMap<String, u64>,
    /// (image, rv) where a Deployment was first seen with that image.
    deployment_images: BTreeMap<String, u64>,
}

fn record(client: &kube::Client) -> Arc<Mutex<Timeline>> {
    let timeline = Arc::new(Mutex::new(Timeline::default()));
    let jobs: Api<Job> = Api::all(client.clone());
    let t = timeline.clone();
    tokio::spawn(async move {
        let mut s = watcher(jobs, watcher::Config::default()).boxed();
        while let Some(Ok(event)) = s.next().await {
            if let watcher::Event::Apply(job) | watcher::Event::InitApply(job) = event {
                let complete = job
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| {
                        c.iter()
                            .any(|c| c.type_ == "Complete" && c.status == "True")
                    });
                if complete {
                    let uid = job.metadata.uid.clone().unwrap_or_default();
                    t.lock()
                        .unwrap()
                        .jobs_complete
                        .entry(uid)
                        .or_insert(rv(&job.metadata));
                }
            }
        }
    });
    let deployments: Api<Deployment> = Api::all(client.clone());
    let t = timeline.clone();
    tokio::spawn(async move {
        let mut s = watcher(deployments, watcher::Config::default()).boxed();
        while let Some(Ok(event)) = s.next().await {
            if let watcher::Event::Apply(d) | watcher::Event::InitApply(d) = event {
                let image = d
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.spec.as_ref())
                    .and_then(|s| s.containers.first())
                    .and_then(|c| c.image.clone())
                    .unwrap_or_default();
                t.lock()
                    .unwrap()
                    .deployment_images
                    .entry(image)
                    .or_insert(rv(&d.metadata));
            }
        }
    });
    timeline
}

async fn settle() {
    // Let the recording watches see the last events.
    tokio::time::sleep(Duration::from_millis(500)).await;
}

fn writes(s: kube_sim::RequestStats) -> u64 {
    s.create + s.update + s.patch + s.delete
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_gates_the_application_and_a_second_run_changes_nothing() {
    let e = env().await;
    let timeline = record(&e.c.client);
    let repo = GitRepo::init(&e.tmp.path().join("repo"));
    commit(&repo, "first", &seed_files("print bpi(2000)", "1.0.0", ""));

    let o = e.once(&repo.file_url(), &[]).await;
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("2/2 stages Ready"), "{}", out(&o));
    settle().await;
    let job = e.job("db-migrate").await.unwrap();
    let uid = job.metadata.uid.clone().unwrap();
    {
        let t = timeline.lock().unwrap();
        let done = t.jobs_complete[&uid];
        let deployed = t.deployment_images["registry.example.com/shop/app:1.0.0"];
        assert!(
            deployed > done,
            "the Deployment ({deployed}) came after the Job completed ({done})"
        );
    }
    let state = e.state().await;
    assert_eq!(state.stages["pre"].phase, Phase::Ready);
    assert_eq!(state.stages["application"].phase, Phase::Ready);

    // No new commit, no drift: same Job, nothing written.
    let before = e.c.sim.stats();
    let o = e.once(&repo.file_url(), &[]).await;
    assert!(o.status.success(), "{}", out(&o));
    let after = e.c.sim.stats();
    assert_eq!(
        writes(after),
        writes(before),
        "no writes on a no-change run: {before:?} -> {after:?}"
    );
    assert_eq!(
        e.job("db-migrate").await.unwrap().metadata.uid.unwrap(),
        uid
    );
    e.c.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_job_is_recreated_and_the_application_waits_for_it() {
    let e = env().await;
    let timeline = record(&e.c.client);
    let repo = GitRepo::init(&e.tmp.path().join("repo"));
    commit(&repo, "first", &seed_files("print bpi(2000)", "1.0.0", ""));
    let o = e.once(&repo.file_url(), &[]).await;
    assert!(o.status.success(), "{}", out(&o));
    let first = e.job("db-migrate").await.unwrap().metadata.uid.unwrap();

    commit(
        &repo,
        "faster migration, new tag",
        &seed_files("print bpi(20)", "1.1.0", ""),
    );
    let o = e.once(&repo.file_url(), &[]).await;
    assert!(o.status.success(), "{}", out(&o));
    settle().await;
    let second = e.job("db-migrate").await.unwrap();
    let second_uid = second.metadata.uid.clone().unwrap();
    assert_ne!(first, second_uid, "the Job was recreated");
    let command = second.spec.unwrap().template.spec.unwrap().containers[0]
        .command
        .clone()
        .unwrap();
    assert_eq!(command.last().unwrap(), "print bpi(20)");
    let (done, updated) = {
        let t = timeline.lock().unwrap();
        (
            t.jobs_complete[&second_uid],
            t.deployment_images["registry.example.com/shop/app:1.1.0"],
        )
    };
    assert!(
        updated > done,
        "the Deployment update ({updated}) came after the new Job completed ({done})"
    );
    e.c.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_job_blocks_the_application_with_an_event_and_a_failed_exit() {
    let e = env().await;
    let repo = GitRepo::init(&e.tmp.path().join("repo"));
    commit(&repo, "first", &seed_files("print bpi(2000)", "1.0.0", ""));
    let o = e.once(&repo.file_url(), &[]).await;
    assert!(o.status.success(), "{}", out(&o));

    let failing = "    sim.stagegate.dev/outcome: fail\n    sim.stagegate.dev/log: \"ERROR: relation orders already exists\"\n";
    commit(
        &repo,
        "broken migration",
        &seed_files("print bpi(7)", "2.0.0", failing),
    );
    let o = e.once(&repo.file_url(), &[]).await;
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    let shown = out(&o);
    assert!(shown.contains("0/2 stages Ready"), "{shown}");

    let deployments: Api<Deployment> = Api::namespaced(e.c.client.clone(), "shop");
    let web = deployments.get("web").await.unwrap();
    let image = web.spec.unwrap().template.spec.unwrap().containers[0]
        .image
        .clone()
        .unwrap();
    assert_eq!(
        image, "registry.example.com/shop/app:1.0.0",
        "the application stays on its old version"
    );

    let state = e.state().await;
    assert_eq!(state.stages["application"].phase, Phase::Blocked);
    assert!(
        state.stages["application"]
            .message
            .contains("stage pre failed"),
        "{}",
        state.stages["application"].message
    );
    assert_eq!(state.stages["pre"].phase, Phase::Failed);
    assert!(
        state.stages["pre"]
            .message
            .contains("ERROR: relation orders already exists"),
        "{}",
        state.stages["pre"].message
    );

    // An Event on the Job carries the failure and its log tail.
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(e.c.client.clone(), "shop");
    let found = events
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .any(|ev| {
            ev.type_.as_deref() == Some("Warning")
                && ev.note.as_deref().is_some_and(|n| {
                    n.contains("BackoffLimitExceeded") && n.contains("relation orders")
                })
        });
    assert!(found, "a Warning Event with the failure and log tail");

    let status = Command::new(env!("CARGO_BIN_EXE_stagegate"))
        .args(["status", "--namespace", NS, "--kubeconfig"])
        .arg(&e.kubeconfig)
        .output()
        .unwrap();
    let shown = out(&status);
    assert!(
        shown.lines().any(|l| l.starts_with("application")
            && l.contains("Blocked")
            && l.contains("stage pre failed")),
        "{shown}"
    );
    e.c.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_removed_by_ttl_is_not_run_again() {
    let e = env().await;
    let repo = GitRepo::init(&e.tmp.path().join("repo"));
    let mut files = seed_files("print bpi(2000)", "1.0.0", "");
    files[2].1 = files[2].1.replace(
        "backoffLimit: 1",
        "backoffLimit: 1\n  ttlSecondsAfterFinished: 0",
    );
    commit(&repo, "first", &files);
    let o = e.once(&repo.file_url(), &[]).await;
    assert!(o.status.success(), "{}", out(&o));
    tokio::time::timeout(Duration::from_secs(30), async {
        while e.job("db-migrate").await.is_some() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the cluster deletes the finished Job");
    for _ in 0..2 {
        let o = e.once(&repo.file_url(), &[]).await;
        assert!(o.status.success(), "{}", out(&o));
        assert!(e.job("db-migrate").await.is_none(), "not run again");
    }
    e.c.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_agent_resumes_without_rerunning_a_completed_job() {
    let e = env().await;
    let repo = GitRepo::init(&e.tmp.path().join("repo"));
    let mut files = seed_files("print bpi(2000)", "1.0.0", "");
    // A long second migration keeps the agent busy in the middle of the graph.
    files.push((
        "stages2.yaml".into(),
        "apiVersion: stagegate.dev/v1alpha1\nkind: Stage\nmetadata: {name: backfill}\nspec:\n  path: backfill\n  dependsOn: [pre]\n  targetNamespace: shop\n".into(),
    ));
    files.push((
        "backfill/job.yaml".into(),
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: backfill\n  annotations: {sim.stagegate.dev/duration: 4s}\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: b, image: busybox, command: [\"true\"]}]\n".into(),
    ));
    commit(&repo, "first", &files);
    let mut agent = e.spawn(
        &repo.file_url(),
        &["--interval", "1h", "--leader-elect", "false"],
    );
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if let Ok(state) = StateStore::new(e.c.client.clone(), NS).read().await
                && state
                    .stages
                    .get("pre")
                    .is_some_and(|s| s.phase == Phase::Ready)
                && e.job("backfill").await.is_some()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("pre Ready and backfill started");
    agent.kill().unwrap();
    agent.wait().unwrap();
    let pre = e.job("db-migrate").await.unwrap().metadata.uid.unwrap();
    let backfill = e.job("backfill").await.unwrap().metadata.uid.unwrap();

    let o = e.once(&repo.file_url(), &[]).await;
    assert!(o.status.success(), "{}", out(&o));
    assert_eq!(
        e.job("db-migrate").await.unwrap().metadata.uid.unwrap(),
        pre,
        "completed Job not re-run"
    );
    assert_eq!(
        e.job("backfill").await.unwrap().metadata.uid.unwrap(),
        backfill,
        "running Job re-checked, not re-run"
    );
    let state = e.state().await;
    assert!(
        state.stages.values().all(|s| s.phase == Phase::Ready),
        "{state:?}"
    );
    e.c.sim.shutdown().await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn post_webhook(port: u16, headers: &[(&str, String)], body: &str) -> u16 {
    // A plain HTTP/1.1 request: enough for a webhook, and no client crate needed.
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut request = format!(
        "POST /hooks/git HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_push_reconciles_at_once_and_bad_signatures_are_rejected() {
    let e = env().await;
    let served = e.tmp.path().join("served");
    let repo = GitRepo::init(&served.join("repo.git"));
    commit(&repo, "first", &seed_files("print bpi(2000)", "1.0.0", ""));
    let daemon = GitDaemon::start(&served);
    let secret = e.tmp.path().join("webhook-secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut cmd = e.command(
        &daemon.url("repo.git"),
        &["--interval", "1h", "--leader-elect", "false"],
    );
    cmd.args(["--listen", &listen, "--webhook-secret-file"])
        .arg(&secret);
    let mut agent = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let ready_at = |state: &State, tag: &str| {
        state
            .stages
            .get("application")
            .is_some_and(|s| s.phase == Phase::Ready)
            && state
                .source
                .as_ref()
                .and_then(|s| s.revision.clone())
                .is_some_and(|r| r.contains(tag))
    };
    let first = git(&repo.dir, &["rev-parse", "HEAD"]);
    let wait_for = |commit: String| {
        let client = e.c.client.clone();
        async move {
            tokio::time::timeout(Duration::from_secs(60), async {
                loop {
                    if let Ok(state) = StateStore::new(client.clone(), NS).read().await
                        && ready_at(&state, &commit)
                    {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
            .await
        }
    };
    wait_for(first).await.expect("first revision applied");

    let second = commit(
        &repo,
        "new tag",
        &seed_files("print bpi(2000)", "1.2.0", ""),
    );
    let body = r#"{"ref":"refs/heads/main"}"#;
    let bad = tokio::task::spawn_blocking(move || {
        post_webhook(
            port,
            &[("X-Hub-Signature-256", format!("sha256={}", "0".repeat(64)))],
            body,
        )
    })
    .await
    .unwrap();
    assert_eq!(bad, 401);
    let started = std::time::Instant::now();
    let good = tokio::task::spawn_blocking(move || {
        post_webhook(port, &[("X-Gitlab-Token", "s3cret".into())], body)
    })
    .await
    .unwrap();
    assert_eq!(good, 202);
    // The interval is an hour: only the webhook can have triggered this.
    wait_for(second)
        .await
        .expect("the pushed revision is applied after the webhook");
    eprintln!("webhook to applied revision: {:?}", started.elapsed());
    agent.kill().unwrap();
    agent.wait().unwrap();
    drop(daemon);
    e.c.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn independent_stages_run_at_the_same_time() {
    let e = env().await;
    let repo = GitRepo::init(&e.tmp.path().join("repo"));
    let stage = |name: &str| {
        format!(
            "---\napiVersion: stagegate.dev/v1alpha1\nkind: Stage\nmetadata: {{name: {name}}}\nspec: {{path: {name}, targetNamespace: shop}}\n"
        )
    };
    let job = |name: &str| {
        format!(
            "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {name}\n  annotations: {{sim.stagegate.dev/duration: 3s}}\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{{name: c, image: busybox, command: [\"true\"]}}]\n"
        )
    };
    let files = vec![
        (
            "stages.yaml".to_string(),
            format!("{}{}{}", stage("ns"), stage("left"), stage("right"))
                .replace("{path: left", "{dependsOn: [ns], path: left")
                .replace("{path: right", "{dependsOn: [ns], path: right"),
        ),
        (
            "ns/ns.yaml".into(),
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n".into(),
        ),
        ("left/job.yaml".into(), job("left")),
        ("right/job.yaml".into(), job("right")),
    ];
    commit(&repo, "two independent stages", &files);
    let o = e.once(&repo.file_url(), &[]).await;
    assert!(o.status.success(), "{}", out(&o));
    let span = |j: Job| {
        let s = j.status.unwrap();
        (s.start_time.unwrap().0, s.completion_time.unwrap().0)
    };
    let (ls, le) = span(e.job("left").await.unwrap());
    let (rs, re) = span(e.job("right").await.unwrap());
    assert!(
        rs < le && ls < re,
        "the two Jobs overlapped: left {ls}..{le}, right {rs}..{re}"
    );
    e.c.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_agent_namespace_is_a_clear_error() {
    let e = env().await;
    let repo = GitRepo::init(&e.tmp.path().join("repo"));
    commit(&repo, "first", &seed_files("print bpi(2000)", "1.0.0", ""));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stagegate"));
    cmd.args([
        "run",
        "--once",
        "--listen",
        "127.0.0.1:0",
        "--namespace",
        "gitops",
        "--repo",
        &repo.file_url(),
    ])
    .arg("--kubeconfig")
    .arg(&e.kubeconfig)
    .arg("--cache-dir")
    .arg(e.tmp.path().join("cache"));
    let o = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    assert!(
        out(&o).contains("namespace gitops does not exist"),
        "{}",
        out(&o)
    );
    assert!(out(&o).contains("--create-namespace"), "{}", out(&o));
    e.c.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_revision_cancels_the_waits_of_the_one_in_progress() {
    let e = env().await;
    let repo = GitRepo::init(&e.tmp.path().join("repo"));
    let mut files = seed_files("print bpi(2000)", "1.0.0", "");
    // Revision 1's rollout never finishes; its stage would wait its whole 2m timeout.
    files[3].1 = files[3].1.replace(
        "metadata: {name: web}",
        "metadata: {name: web, annotations: {sim.stagegate.dev/rollout: hang}}",
    );
    commit(&repo, "a rollout that hangs", &files);
    let mut agent = e.spawn(
        &repo.file_url(),
        &["--interval", "1s", "--leader-elect", "false"],
    );
    e.wait_for_state("application never started", |state| {
        state
            .stages
            .get("application")
            .is_some_and(|s| s.phase == Phase::Running)
    })
    .await;
    let fixed = commit(&repo, "fixed", &seed_files("print bpi(2000)", "1.0.1", ""));
    // Well within the first revision's 2m timeout: its wait was cancelled.
    e.wait_for_state("the new revision was not applied", |state| {
        state.stages.get("application").is_some_and(|s| {
            s.phase == Phase::Ready && s.revision.as_deref().is_some_and(|r| r.contains(&fixed))
        })
    })
    .await;
    agent.kill().unwrap();
    agent.wait().unwrap();
    e.c.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspended_stage_blocks_dependents_only_until_it_was_once_ready() {
    let e = env().await;
    let repo = GitRepo::init(&e.tmp.path().join("repo"));
    let suspend = |files: &mut Vec<(String, String)>| {
        files[0].1 = files[0]
            .1
            .replacen("  path: pre\n", "  path: pre\n  suspend: true\n", 1);
    };
    // Suspended before it ever ran: its dependent has nothing to stand on.
    let mut files = seed_files("print bpi(2000)", "1.0.0", "");
    suspend(&mut files);
    commit(&repo, "pre suspended from the start", &files);
    let o = e.once(&repo.file_url(), &[]).await;
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    let state = e.state().await;
    assert_eq!(state.stages["pre"].phase, Phase::Blocked);
    assert_eq!(state.stages["application"].phase, Phase::Blocked);
    assert!(
        e.job("db-migrate").await.is_none(),
        "a suspended stage is not applied"
    );

    // Ready once, then suspended: its objects stand as last applied, and the
    // dependent goes ahead with a new revision of its own.
    commit(&repo, "resume", &seed_files("print bpi(2000)", "1.0.0", ""));
    let o = e.once(&repo.file_url(), &[]).await;
    assert!(o.status.success(), "{}", out(&o));
    let mut files = seed_files("print bpi(2000)", "1.1.0", "");
    suspend(&mut files);
    commit(&repo, "pre suspended again, app 1.1.0", &files);
    let o = e.once(&repo.file_url(), &[]).await;
    assert_eq!(
        o.status.code(),
        Some(1),
        "not every stage is Ready: {}",
        out(&o)
    );
    let state = e.state().await;
    assert_eq!(state.stages["pre"].phase, Phase::Suspended);
    assert_eq!(state.stages["application"].phase, Phase::Ready);
    let deployments: Api<Deployment> = Api::namespaced(e.c.client.clone(), "shop");
    let web = deployments.get("web").await.unwrap();
    let image = web.spec.unwrap().template.spec.unwrap().containers[0]
        .image
        .clone()
        .unwrap();
    assert_eq!(image, "registry.example.com/shop/app:1.1.0");
    e.c.sim.shutdown().await;
}

/// An Event is published when it happens, not when its stage ends: a pod
/// stuck pulling its image is on the Job while the stage still waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_pod_is_an_event_while_its_stage_still_waits() {
    let e = env().await;
    let repo = GitRepo::init(&e.tmp.path().join("repo"));
    commit(
        &repo,
        "stuck",
        &seed_files(
            "print bpi(20)",
            "1.0.0",
            "    sim.stagegate.dev/outcome: image-pull-backoff\n",
        ),
    );
    let mut agent = e.spawn(
        &repo.file_url(),
        &[
            "--interval",
            "1h",
            "--leader-elect",
            "false",
            "--stuck-pod-grace",
            "10m",
        ],
    );
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(e.c.client.clone(), "shop");
    let stuck = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let found = events
                .list(&Default::default())
                .await
                .map(|l| l.items)
                .unwrap_or_default()
                .into_iter()
                .find(|ev| ev.reason.as_deref() == Some("PodStuck"));
            if let Some(found) = found {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("a PodStuck Event within a minute");
    assert_eq!(
        stuck.regarding.as_ref().and_then(|r| r.name.as_deref()),
        Some("db-migrate")
    );
    // The stage cannot end before the 10m grace: it is still Running.
    let state = e.state().await;
    assert_eq!(state.stages["pre"].phase, Phase::Running, "{state:?}");
    agent.kill().unwrap();
    agent.wait().unwrap();
    e.c.sim.shutdown().await;
}
