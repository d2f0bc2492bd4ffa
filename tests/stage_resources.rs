//! Stages as Kubernetes resources, used the way an operator would: the real
//! `stagegate run` against kube-sim, read and driven with the real `kubectl`
//! (`get stages`, `wait --for=condition=Ready`, `describe`, `events --for`,
//! `annotate`).

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::git::GitRepo;
use common::*;
use k8s_openapi::ByteString;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use stagegate::cluster::state::store::StageObject;
use stagegate::cluster::state::{Phase, StateStore};
use stagegate::core::labels::SPEC_HASH_ANNOTATION;

const NS: &str = "stagegate-system";

fn files(job_annotations: &str) -> Vec<(String, String)> {
    let stages = "apiVersion: stagegate.dev/v1alpha1\nkind: Stage\nmetadata: {name: pre}\nspec:\n  path: pre\n  targetNamespace: shop\n  timeout: 2m\n---\n\
         apiVersion: stagegate.dev/v1alpha1\nkind: Stage\nmetadata: {name: application}\nspec:\n  path: application\n  dependsOn: [pre]\n  targetNamespace: shop\n  wait: true\n  prune: true\n  timeout: 2m\n";
    let job = format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: db-migrate\n  annotations:\n    sim.stagegate.dev/duration: 300ms\n{job_annotations}spec:\n  backoffLimit: 0\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n        - name: migrate\n          image: registry.example.com/shop/app:1.0.0\n"
    );
    let config = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\ndata: {color: blue}\n";
    vec![
        ("stages.yaml".into(), stages.into()),
        (
            "pre/namespace.yaml".into(),
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n".into(),
        ),
        ("pre/job.yaml".into(), job),
        ("application/config.yaml".into(), config.into()),
    ]
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

impl Env {
    fn agent(&self, url: &str, extra: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_stagegate"));
        cmd.args([
            "run",
            "--repo",
            url,
            "--namespace",
            NS,
            "--create-namespace",
        ])
        .args(["--listen", "127.0.0.1:0"])
        .arg("--cache-dir")
        .arg(self.tmp.path().join("cache"))
        .arg("--kubeconfig")
        .arg(&self.kubeconfig)
        .args(extra)
        .env_remove("KUBECONFIG")
        .env("STAGEGATE_LOG", "info");
        cmd
    }

    fn spawn(&self, url: &str, interval: &str) -> Child {
        self.agent(url, &["--interval", interval])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn stagegate")
    }

    async fn once(&self, url: &str) -> Output {
        let mut cmd = self.agent(url, &["--once"]);
        tokio::task::spawn_blocking(move || cmd.output().expect("run stagegate"))
            .await
            .unwrap()
    }

    /// kubectl against the sim, on a blocking thread; the output whatever the exit.
    async fn kubectl(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("kubectl");
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.tmp.path().join("kubectl-cache"))
            .args(args);
        tokio::task::spawn_blocking(move || cmd.output().expect("run kubectl (is it installed?)"))
            .await
            .unwrap()
    }

    async fn kubectl_ok(&self, args: &[&str]) -> String {
        let o = self.kubectl(args).await;
        assert!(o.status.success(), "kubectl {args:?} failed:\n{}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    async fn stagegate(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_stagegate"));
        cmd.args(args)
            .args(["--namespace", NS])
            .env("KUBECONFIG", &self.kubeconfig);
        tokio::task::spawn_blocking(move || cmd.output().expect("run stagegate"))
            .await
            .unwrap()
    }

    fn store(&self) -> StateStore {
        StateStore::new(self.c.client.clone(), NS)
    }

    /// Poll one Stage object until `done`; generous, the machine may be busy.
    async fn wait_for(
        &self,
        stage: &str,
        what: &str,
        done: impl Fn(&StageObject) -> bool,
    ) -> StageObject {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(object) = self.store().get_stage(stage).await
                && done(&object)
            {
                return object;
            }
            assert!(std::time::Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn events_for(&self, stage: &str) -> Vec<(String, String)> {
        let events: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(self.c.client.clone(), NS);
        events
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| {
                e.regarding.as_ref().is_some_and(|r| {
                    r.kind.as_deref() == Some("Stage") && r.name.as_deref() == Some(stage)
                })
            })
            .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
            .collect()
    }
}

struct Stop(Child);

impl Drop for Stop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_gets_waits_for_describes_and_annotates_stages() {
    let e = env().await;
    let repo = GitRepo::init(&e.tmp.path().join("repo"));
    let head = commit(&repo, "first", &files(""));
    // Polls an hour apart: after the first fetch, every step below is
    // driven by a request the agent watches for.
    let _agent = Stop(e.spawn(&repo.file_url(), "1h"));

    // The agent creates the namespace and the objects; wait as a user would.
    e.wait_for(
        "application",
        "the Stage object application appears",
        |_| true,
    )
    .await;
    e.kubectl_ok(&[
        "wait",
        "--for=condition=Ready",
        "stage/application",
        "-n",
        NS,
        "--timeout=60s",
    ])
    .await;

    let table = e.kubectl_ok(&["get", "stages", "-n", NS]).await;
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header[..6],
        ["NAME", "READY", "PHASE", "REVISION", "AGE", "MESSAGE"],
        "{table}"
    );
    let pre = table.lines().find(|l| l.starts_with("pre ")).expect(&table);
    assert!(
        pre.contains("True") && pre.contains("Ready") && pre.contains(&head[..12]),
        "{table}"
    );
    let wide = e.kubectl_ok(&["get", "stg", "-n", NS, "-o", "wide"]).await;
    assert!(wide.lines().next().unwrap().contains("DEPENDSON"), "{wide}");
    let application = wide
        .lines()
        .find(|l| l.starts_with("application "))
        .expect(&wide);
    assert!(
        application
            .split_whitespace()
            .last()
            .unwrap()
            .contains("pre"),
        "{wide}"
    );

    let described = e.kubectl_ok(&["describe", "stage", "pre", "-n", NS]).await;
    assert!(described.contains("StageReady"), "{described}");
    assert!(described.contains("Last Applied Revision"), "{described}");

    // A rerun through kubectl: the Job runs once more, the request is recorded.
    let before = e.store().get_stage("pre").await.unwrap().status.stage.jobs["shop/db-migrate"]
        .runs
        .len();
    e.kubectl_ok(&[
        "annotate",
        "stage",
        "pre",
        "stagegate.dev/rerun=db-migrate",
        "--overwrite",
        "-n",
        NS,
    ])
    .await;
    let pre = e
        .wait_for("pre", "the rerun ran", |o| {
            o.status.stage.last_handled_rerun.as_deref() == Some("db-migrate")
                && o.status.stage.rerun.is_empty()
                && o.status.stage.phase == Phase::Ready
                && o.status.stage.jobs["shop/db-migrate"].runs.len() == before + 1
        })
        .await;
    assert!(
        pre.status.stage.jobs["shop/db-migrate"]
            .runs
            .iter()
            .all(|r| r.result != stagegate::cluster::state::JobResult::Failed)
    );

    // Suspend and resume, as an emergency brake over Git.
    let o = e.stagegate(&["suspend", "application"]).await;
    assert!(o.status.success(), "{}", text(&o));
    e.wait_for("application", "application is Suspended", |o| {
        o.status.stage.phase == Phase::Suspended
    })
    .await;
    let o = e.stagegate(&["resume", "application"]).await;
    assert!(o.status.success(), "{}", text(&o));
    e.wait_for("application", "application follows Git again", |o| {
        o.status.stage.phase == Phase::Ready
    })
    .await;
    let events = e.events_for("application").await;
    assert!(
        events.iter().any(|(r, _)| r == "StageSuspended"),
        "{events:?}"
    );
    // `kubectl events --for` tells the stage's history, and only its own:
    // Ready, then Suspended, then Ready again once resumed (the last seen
    // of a repeated Event moves, so the last line is the latest).
    let history = e
        .kubectl_ok(&["events", "--for", "stage/application", "-n", NS])
        .await;
    let rows: Vec<&str> = history.lines().skip(1).collect();
    assert!(
        rows.iter().all(|r| r.contains("Stage/application")),
        "{history}"
    );
    let suspended = rows.iter().position(|r| r.contains("StageSuspended"));
    let ready = rows.iter().rposition(|r| r.contains("StageReady"));
    assert!(
        matches!((suspended, ready), (Some(s), Some(r)) if s < r),
        "{history}"
    );

    // A Stage object deleted by hand comes back with its Job runs.
    e.kubectl_ok(&["delete", "stage", "pre", "-n", NS]).await;
    e.wait_for("pre", "pre is written again", |o| {
        o.status
            .stage
            .jobs
            .get("shop/db-migrate")
            .is_some_and(|h| h.runs.len() == before + 1)
    })
    .await;

    // status reads the objects, dependencies first.
    let o = e.stagegate(&["status"]).await;
    assert!(o.status.success(), "{}", text(&o));
    let shown = text(&o);
    let pre_at = shown.find("\npre ").expect(&shown);
    let app_at = shown.find("\napplication ").expect(&shown);
    assert!(pre_at < app_at, "{shown}");

    // A new commit is applied at once on `stagegate reconcile`.
    let mut next = files("");
    next[3].1 = next[3].1.replace("blue", "green");
    let second = commit(&repo, "green", &next);
    let o = e.stagegate(&["reconcile"]).await;
    assert!(o.status.success(), "{}", text(&o));
    e.wait_for(
        "application",
        "the new commit was applied on request",
        |o| {
            o.status
                .stage
                .revision
                .as_deref()
                .is_some_and(|r| r.ends_with(&second))
        },
    )
    .await;

    // As with a real API server, the `-o wide` columns (priority 1) stay
    // out of the default table.
    assert_eq!(header.len(), 6, "{table}");
    e.c.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_job_is_not_run_again_on_every_poll() {
    let e = env().await;
    let repo = GitRepo::init(&e.tmp.path().join("repo"));
    let failing = "    sim.stagegate.dev/outcome: fail\n    sim.stagegate.dev/log: \"ERROR: relation orders already exists\"\n";
    commit(&repo, "broken", &files(failing));
    let _agent = Stop(e.spawn(&repo.file_url(), "1s"));
    let failed = e
        .wait_for("pre", "pre fails", |o| {
            o.status.stage.phase == Phase::Failed
        })
        .await;
    assert!(failed.status.stage.stalled, "{:?}", failed.status);
    let stalled = failed
        .status
        .condition("Stalled")
        .expect("a Stalled condition");
    assert_eq!(stalled.status, "True");
    e.wait_for("application", "application is Blocked", |o| {
        o.status.stage.phase == Phase::Blocked
    })
    .await;

    // Several polls (1 s apart) later: no new transition, Event or write.
    let version = |o: &StageObject| serde_json::to_string(&o.status).unwrap();
    let pre_before = version(&e.store().get_stage("pre").await.unwrap());
    let events_before = e.events_for("pre").await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let pre_after = version(&e.store().get_stage("pre").await.unwrap());
    assert_eq!(
        pre_before, pre_after,
        "the status of a steady stage is not rewritten"
    );
    let events_after = e.events_for("pre").await;
    assert_eq!(
        events_before, events_after,
        "no new Events on a steady stage"
    );
    assert_eq!(
        events_after
            .iter()
            .filter(|(r, _)| r == "StageFailed")
            .count(),
        1,
        "{events_after:?}"
    );
    let jobs: Api<Job> = Api::namespaced(e.c.client.clone(), "shop");
    let job = jobs.get("db-migrate").await.unwrap();
    assert!(job.status.unwrap().failed.unwrap_or(0) >= 1);

    // A rerun request through the CLI makes it run again.
    let o = e.stagegate(&["rerun", "pre", "db-migrate"]).await;
    assert!(o.status.success(), "{}", text(&o));
    e.wait_for("pre", "the rerun ran and failed again", |o| {
        o.status.stage.jobs["shop/db-migrate"].runs.len() == 2
            && o.status.stage.phase == Phase::Failed
    })
    .await;
    e.c.sim.shutdown().await;
}

/// The Job's spec hash as the agent computes it.
fn job_hash(dir: &Path) -> String {
    let plan = plan(dir);
    let pre = plan.stage("pre").unwrap();
    let job = pre.objects.iter().find(|o| o.kind() == "Job").unwrap();
    job.value["metadata"]["annotations"][SPEC_HASH_ANNOTATION]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_former_state_configmap_is_converted_once_and_its_jobs_do_not_run_again() {
    let e = env().await;
    let repo = GitRepo::init(&e.tmp.path().join("repo"));
    let head = commit(&repo, "first", &files(""));
    let checkout = repo_dir(&files(""));
    let hash = job_hash(checkout.path());

    // What an agent of the former version left: the Job ran (and its TTL
    // removed it), a rerun request is pending for nothing else.
    let namespaces: Api<Namespace> = Api::all(e.c.client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(NS.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let revision = format!("main@sha1:{head}");
    let old = serde_json::json!({
        "stages": {"pre": {"phase": "Ready", "revision": revision, "attemptedRevision": revision,
            "jobs": {"shop/db-migrate": {"runs": [{"hash": hash, "revision": revision,
                "result": "Succeeded", "uid": "old-uid"}]}}}},
        "source": {"revision": revision},
    });
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some("stagegate-state".into()),
            ..Default::default()
        },
        binary_data: Some(
            [(
                "state.json.gz".to_string(),
                ByteString(stagegate::cluster::state::legacy::encode(&old)),
            )]
            .into(),
        ),
        ..Default::default()
    };
    let configmaps: Api<ConfigMap> = Api::namespaced(e.c.client.clone(), NS);
    configmaps
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();

    let o = e.once(&repo.file_url()).await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("converted the former state ConfigMap"),
        "{}",
        text(&o)
    );
    assert!(
        configmaps
            .get_opt("stagegate-state")
            .await
            .unwrap()
            .is_none(),
        "deleted"
    );
    let jobs: Api<Job> = Api::namespaced(e.c.client.clone(), "shop");
    assert!(
        jobs.get_opt("db-migrate").await.unwrap().is_none(),
        "the Job did not run again"
    );
    let pre = e.store().get_stage("pre").await.unwrap();
    assert_eq!(pre.status.stage.jobs["shop/db-migrate"].runs.len(), 1);
    assert_eq!(pre.status.stage.phase, Phase::Ready);
    assert_eq!(pre.spec.depends_on, Vec::<String>::new());
    assert_eq!(pre.spec.path, "pre", "the spec is filled from Git");

    // A second start finds nothing to convert.
    let o = e.once(&repo.file_url()).await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains("converted"), "{}", text(&o));
    e.c.sim.shutdown().await;
}

fn repo_dir(files: &[(String, String)]) -> tempfile::TempDir {
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    repo(&files)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_without_the_stage_crd_is_a_clear_start_up_error() {
    let sim = kube_sim::KubeSim::start(kube_sim::SimConfig::default())
        .await
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig = tmp.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig).unwrap();
    let repo = GitRepo::init(&tmp.path().join("repo"));
    commit(&repo, "first", &files(""));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stagegate"));
    cmd.args([
        "run",
        "--once",
        "--repo",
        &repo.file_url(),
        "--namespace",
        NS,
        "--create-namespace",
    ])
    .args(["--listen", "127.0.0.1:0"])
    .arg("--cache-dir")
    .arg(tmp.path().join("cache"))
    .arg("--kubeconfig")
    .arg(&kubeconfig)
    .env_remove("KUBECONFIG");
    let o = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("the Stage resource (stages.stagegate.dev) is not installed"),
        "{}",
        text(&o)
    );
    sim.shutdown().await;
}
