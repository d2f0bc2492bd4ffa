//! Hooks inside a stage against kube-sim: pre- and post-apply Jobs in weight
//! order, Helm and kluctl annotations, initial/upgrade hooks, delete
//! policies, and a failing pre-apply hook that stops the stage.
//!
//! Ordering is proven with the server's resourceVersions (one counter for
//! the whole server) as a watcher saw them, never with wall-clock timing.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::ListParams;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, watcher};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use stagegate::cluster::apply::job_policy::{JobAction, SkipReason};
use stagegate::cluster::apply::report::HookDeletion;
use stagegate::cluster::apply::{Engine, EngineSettings, JobOutcome, StageReport};
use stagegate::cluster::events::EventSink;
use stagegate::cluster::state::{JobResult, Phase, StageState, StateStore};

fn engine(client: &kube::Client) -> Engine {
    Engine::new(
        client.clone(),
        EngineSettings {
            stuck_pod_grace: Duration::from_secs(10),
            ..EngineSettings::default()
        },
    )
}

/// What a watcher saw of one object: the resourceVersion at which it first
/// appeared (its creation), at which a Job first showed a final condition
/// (a Pod its final phase),
/// and whether it was deleted.
#[derive(Debug, Default, Clone)]
struct Seen {
    created: Option<u64>,
    finished: Option<u64>,
    deleted: bool,
}

/// Watches Jobs, Deployments, ConfigMaps and Pods in `default` and keeps, per
/// `Kind/name`, the resourceVersions that order what happened.
struct Timeline {
    seen: Arc<Mutex<BTreeMap<String, Seen>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Timeline {
    async fn start(client: &kube::Client) -> Self {
        let seen = Arc::new(Mutex::new(BTreeMap::new()));
        let mut tasks = Vec::new();
        let mut ready = Vec::new();
        tasks.push(watch::<Job>(client, &seen, &mut ready));
        tasks.push(watch::<Deployment>(client, &seen, &mut ready));
        tasks.push(watch::<ConfigMap>(client, &seen, &mut ready));
        tasks.push(watch::<Pod>(client, &seen, &mut ready));
        for r in ready {
            tokio::time::timeout(Duration::from_secs(60), r)
                .await
                .expect("watchers start")
                .expect("watcher ready");
        }
        Self { seen, tasks }
    }

    /// Wait until the watchers have seen `object` (created, or finished).
    async fn get(&self, object: &str, finished: bool) -> Seen {
        tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                if let Some(s) = self.seen.lock().unwrap().get(object).cloned()
                    && s.created.is_some()
                    && (!finished || s.finished.is_some())
                {
                    return s;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("the watcher never saw {object} (finished: {finished})"))
    }

    async fn created(&self, object: &str) -> u64 {
        self.get(object, false).await.created.unwrap()
    }

    async fn finished(&self, object: &str) -> u64 {
        self.get(object, true).await.finished.unwrap()
    }

    fn stop(self) {
        for t in self.tasks {
            t.abort();
        }
    }
}

fn watch<K>(
    client: &kube::Client,
    seen: &Arc<Mutex<BTreeMap<String, Seen>>>,
    ready: &mut Vec<tokio::sync::oneshot::Receiver<()>>,
) -> tokio::task::JoinHandle<()>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + serde::Serialize
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), "default");
    let seen = seen.clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    ready.push(rx);
    tokio::spawn(async move {
        let mut tx = Some(tx);
        let mut stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(event) = stream.next().await {
            let Ok(event) = event else { continue };
            let (obj, deleted) = match event {
                watcher::Event::InitDone => {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(());
                    }
                    continue;
                }
                watcher::Event::Apply(obj) | watcher::Event::InitApply(obj) => (obj, false),
                watcher::Event::Delete(obj) => (obj, true),
                watcher::Event::Init => continue,
            };
            let key = format!("{}/{}", K::kind(&K::DynamicType::default()), obj.name_any());
            let rv: u64 = obj
                .resource_version()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let value = serde_json::to_value(&obj).unwrap_or_default();
            let pod_done = matches!(
                value.pointer("/status/phase").and_then(|p| p.as_str()),
                Some("Succeeded" | "Failed")
            );
            let done = pod_done
                || value
                    .pointer("/status/conditions")
                    .and_then(|c| c.as_array())
                    .is_some_and(|c| {
                        c.iter().any(|c| {
                            matches!(
                                c.get("type").and_then(|t| t.as_str()),
                                Some("Complete" | "Failed")
                            ) && c.get("status").and_then(|s| s.as_str()) == Some("True")
                        })
                    });
            let mut seen = seen.lock().unwrap();
            let entry = seen.entry(key).or_default();
            entry.created.get_or_insert(rv);
            if done {
                entry.finished.get_or_insert(rv);
            }
            entry.deleted |= deleted;
        }
    })
}

fn job(name: &str, annotations: &[(&str, &str)]) -> String {
    let lines: String = annotations
        .iter()
        .map(|(k, v)| format!("    {k}: \"{v}\"\n"))
        .collect();
    pi_job(name, 2000, &lines)
}

fn deployment(image: &str) -> String {
    DEPLOYMENT.replace("nginx:1.27", image)
}

fn config_map(name: &str, data: &str, annotations: &[(&str, &str)]) -> String {
    let lines: String = annotations
        .iter()
        .map(|(k, v)| format!("    {k}: \"{v}\"\n"))
        .collect();
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  annotations:\n    note: x\n{lines}data: {{a: \"{data}\"}}\n"
    )
}

async fn apply(
    engine: &Engine,
    dir: &std::path::Path,
    revision: &str,
    state: &mut StageState,
) -> StageReport {
    let plan = plan(dir);
    engine.apply_stage(&plan.stages[0], revision, state).await
}

async fn job_uid(client: &kube::Client, name: &str) -> Option<String> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    jobs.get_opt(name)
        .await
        .unwrap()
        .and_then(|j| j.metadata.uid)
}

async fn wait_gone_pods(client: &kube::Client, job: &str) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let selector = format!("batch.kubernetes.io/job-name={job}");
    tokio::time::timeout(Duration::from_secs(60), async {
        while !pods
            .list(&ListParams::default().labels(&selector))
            .await
            .unwrap()
            .items
            .is_empty()
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the pods of Job {job} are never removed"));
}

#[tokio::test]
async fn kluctl_post_deploy_hook_is_applied_last_not_waited_for_and_recreated_when_changed() {
    let c = cluster().await;
    let hook = [
        ("kluctl.io/hook", "post-deploy"),
        ("kluctl.io/hook-wait", "false"),
    ];
    // Long enough that the apply has returned well before the Job ends.
    let slow = |digits: u32| {
        pi_job(
            "pi",
            digits,
            &hook
                .iter()
                .map(|(k, v)| format!("    {k}: \"{v}\"\n"))
                .collect::<String>(),
        )
        .replace("duration: 200ms", "duration: 8s")
    };
    let dir = repo(&[
        ("stages.yaml", &stage_doc("app", "app", "")),
        ("app/deploy.yaml", &deployment("nginx:1.27")),
        ("app/pi.yaml", &slow(2000)),
    ]);
    let timeline = Timeline::start(&c.client).await;
    let engine = engine(&c.client);
    let mut state = StageState::default();

    let report = apply(&engine, dir.path(), "r1", &mut state).await;
    assert!(report.ready, "{}", report.message);
    let pi = report.jobs.iter().find(|j| j.job == "default/pi").unwrap();
    assert_eq!(pi.outcome, JobOutcome::Started, "{:?}", report.jobs);
    let jobs: Api<Job> = Api::namespaced(c.client.clone(), "default");
    let live = jobs.get("pi").await.unwrap();
    assert!(
        live.status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .all(|c| c.type_ != "Complete"),
        "the stage returned before its unwaited hook finished"
    );
    // Applied after the Deployment was applied and rolled out.
    let deployed = timeline.created("Deployment/web").await;
    assert!(deployed < timeline.created("Job/pi").await);
    let first = live.metadata.uid.unwrap();

    // The seeds' change: a new command recreates the hook Job, where a
    // plain apply would fail with "field is immutable".
    write_files(dir.path(), &[("app/pi.yaml", &slow(20))]);
    let report = apply(&engine, dir.path(), "r2", &mut state).await;
    assert!(report.ready, "{}", report.message);
    assert!(!report.message.contains("immutable"), "{}", report.message);
    assert_eq!(report.recreated, 1, "{:?}", report.jobs);
    let second = job_uid(&c.client, "pi").await.unwrap();
    assert_ne!(first, second);
    let command = jobs
        .get("pi")
        .await
        .unwrap()
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .containers[0]
        .command
        .clone()
        .unwrap();
    assert!(command.iter().any(|a| a == "print bpi(20)"), "{command:?}");
    // The engine reports its Events; whoever records the stage publishes them.
    EventSink::new(c.client.clone(), None)
        .publish_all(&report.events)
        .await;
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(c.client.clone(), "default");
    let recreated = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .any(|e| {
            e.reason.as_deref() == Some("Recreated")
                && e.regarding.and_then(|r| r.uid).as_deref() == Some(second.as_str())
        });
    assert!(recreated, "a Recreated Event on the new hook Job");
    assert_eq!(
        state.jobs["default/pi"].hook.as_deref(),
        Some("post-apply"),
        "the state marks the Job as a hook"
    );
    timeline.stop();
    c.sim.shutdown().await;
}

#[tokio::test]
async fn helm_pre_install_hook_runs_before_the_deployment_is_deleted_after_success_and_never_again()
{
    let c = cluster().await;
    let hook = [
        ("helm.sh/hook", "pre-install"),
        ("helm.sh/hook-weight", "1"),
        ("helm.sh/hook-delete-policy", "hook-succeeded"),
    ];
    let dir = repo(&[
        ("stages.yaml", &stage_doc("app", "app", "")),
        ("app/deploy.yaml", &deployment("nginx:1.27")),
        ("app/migrate.yaml", &job("migrate", &hook)),
    ]);
    let timeline = Timeline::start(&c.client).await;
    let engine = engine(&c.client);
    let mut state = StageState::default();

    let report = apply(&engine, dir.path(), "r1", &mut state).await;
    assert!(report.ready, "{}", report.message);
    // The hook ran to completion before the Deployment was created.
    let migrated = timeline.finished("Job/migrate").await;
    let deployed = timeline.created("Deployment/web").await;
    assert!(
        migrated < deployed,
        "Job completed at rv {migrated}, Deployment created at rv {deployed}"
    );
    // Deleted with its pods once it succeeded; its success stays recorded.
    assert!(job_uid(&c.client, "migrate").await.is_none());
    wait_gone_pods(&c.client, "migrate").await;
    let runs = &state.jobs["default/migrate"].runs;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].result, JobResult::Succeeded);
    assert_eq!(
        state.jobs["default/migrate"].hook.as_deref(),
        Some("pre-apply")
    );

    // The same revision again, then a revision that leaves the hook
    // unchanged: no Job is created.
    let creates = c.sim.stats().create;
    let report = apply(&engine, dir.path(), "r1", &mut state).await;
    assert!(report.ready, "{}", report.message);
    write_files(
        dir.path(),
        &[("app/deploy.yaml", &deployment("nginx:1.28"))],
    );
    let report = apply(&engine, dir.path(), "r2", &mut state).await;
    assert!(report.ready, "{}", report.message);
    assert!(job_uid(&c.client, "migrate").await.is_none());
    let jobs: Api<Job> = Api::namespaced(c.client.clone(), "default");
    assert!(
        jobs.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert_eq!(
        c.sim.stats().create,
        creates,
        "nothing created: the Deployment is patched, the hook not run"
    );
    assert_eq!(state.jobs["default/migrate"].runs.len(), 1);
    let deploy: Api<Deployment> = Api::namespaced(c.client.clone(), "default");
    let image = deploy
        .get("web")
        .await
        .unwrap()
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .containers[0]
        .image
        .clone();
    assert_eq!(image.as_deref(), Some("nginx:1.28"));
    timeline.stop();
    c.sim.shutdown().await;
}

#[tokio::test]
async fn hook_deleted_after_success_is_not_run_again_for_the_same_spec() {
    let c = cluster().await;
    let hook = [
        ("stagegate.dev/hook", "pre-apply"),
        ("stagegate.dev/hook-delete-policy", "hook-succeeded"),
    ];
    let dir = repo(&[
        ("stages.yaml", &stage_doc("app", "app", "")),
        ("app/cm.yaml", &config_map("settings", "1", &[])),
        ("app/migrate.yaml", &job("migrate", &hook)),
    ]);
    let engine = engine(&c.client);
    let mut state = StageState::default();
    let report = apply(&engine, dir.path(), "r1", &mut state).await;
    assert!(report.ready, "{}", report.message);
    assert!(
        job_uid(&c.client, "migrate").await.is_none(),
        "deleted after success"
    );

    // Runs on every revision as a pre-apply hook, yet the Job it ran is
    // gone and recorded: it does not run again while its spec is the same.
    let creates = c.sim.stats().create;
    write_files(
        dir.path(),
        &[("app/cm.yaml", &config_map("settings", "2", &[]))],
    );
    let report = apply(&engine, dir.path(), "r2", &mut state).await;
    assert!(report.ready, "{}", report.message);
    assert_eq!(
        report.jobs[0].action,
        Some(JobAction::Skip(SkipReason::AlreadySucceeded))
    );
    assert_eq!(c.sim.stats().create, creates);
    assert!(job_uid(&c.client, "migrate").await.is_none());

    // A changed spec runs again, and is deleted again.
    let changed = job("migrate", &hook).replace("bpi(2000)", "bpi(20)");
    write_files(dir.path(), &[("app/migrate.yaml", &changed)]);
    let report = apply(&engine, dir.path(), "r3", &mut state).await;
    assert!(report.ready, "{}", report.message);
    assert_eq!(report.jobs[0].outcome, JobOutcome::Succeeded);
    assert_eq!(
        report.jobs[0].deletion,
        Some(HookDeletion {
            policy: "hook-succeeded",
            error: None
        }),
        "{:?}",
        report.jobs
    );
    assert_eq!(state.jobs["default/migrate"].runs.len(), 2);
    assert!(job_uid(&c.client, "migrate").await.is_none());
    c.sim.shutdown().await;
}

#[tokio::test]
async fn hooks_run_by_weight_the_lighter_finishing_before_equal_weights_start_together() {
    let c = cluster().await;
    let pre = |weight: &'static str| {
        [
            ("stagegate.dev/hook", "pre-apply"),
            ("stagegate.dev/hook-weight", weight),
        ]
    };
    // Long enough that the two of weight 0 cannot finish before both started.
    let slow =
        |name: &str, weight| job(name, &pre(weight)).replace("duration: 200ms", "duration: 5s");
    let dir = repo(&[
        ("stages.yaml", &stage_doc("app", "app", "")),
        ("app/first.yaml", &job("first", &pre("-1"))),
        ("app/second.yaml", &slow("second", "0")),
        ("app/third.yaml", &slow("third", "0")),
        ("app/cm.yaml", &config_map("settings", "1", &[])),
    ]);
    let timeline = Timeline::start(&c.client).await;
    let engine = engine(&c.client);
    let planned = plan(dir.path()).stages.remove(0);
    // The apply runs in a spawned task, as the agent runs stages.
    let report = tokio::spawn(async move {
        let mut state = StageState::default();
        let report = engine.apply_stage(&planned, "r1", &mut state).await;
        (report, state)
    })
    .await
    .unwrap()
    .0;
    assert!(report.ready, "{}", report.message);

    let first_done = timeline.finished("Job/first").await;
    let (second, third) = (
        timeline.created("Job/second").await,
        timeline.created("Job/third").await,
    );
    assert!(
        first_done < second && first_done < third,
        "weight -1 finished (rv {first_done}) before weight 0 started ({second}, {third})"
    );
    let (second_done, third_done) = (
        timeline.finished("Job/second").await,
        timeline.finished("Job/third").await,
    );
    assert!(
        second.max(third) < second_done.min(third_done),
        "both of weight 0 were created ({second}, {third}) before either finished ({second_done}, {third_done})"
    );
    // And all of them before the stage's other objects.
    let settings = timeline.created("ConfigMap/settings").await;
    assert!(second_done.max(third_done) < settings);
    timeline.stop();
    c.sim.shutdown().await;
}

#[tokio::test]
async fn failing_pre_apply_hook_stops_the_stage_before_anything_else_is_applied() {
    let c = cluster().await;
    let hook = [("stagegate.dev/hook", "pre-apply")];
    let failing = [
        ("stagegate.dev/hook", "pre-apply"),
        ("sim.stagegate.dev/outcome", "fail"),
        ("sim.stagegate.dev/log", "psql: connection refused"),
    ];
    let dir = repo(&[
        ("stages.yaml", &stage_doc("app", "app", "")),
        ("app/deploy.yaml", &deployment("nginx:1.27")),
        ("app/migrate.yaml", &job("migrate", &failing)),
    ]);
    let engine = engine(&c.client);
    let deploy: Api<Deployment> = Api::namespaced(c.client.clone(), "default");

    // First install: the Deployment is never created.
    let mut state = StageState::default();
    let report = apply(&engine, dir.path(), "r1", &mut state).await;
    assert!(!report.ready);
    for needle in [
        "pre-apply hook Job default/migrate",
        "BackoffLimitExceeded",
        "psql: connection refused",
        "nothing else of the stage was applied",
    ] {
        assert!(
            report.message.contains(needle),
            "{needle:?} in {}",
            report.message
        );
    }
    assert!(deploy.get_opt("web").await.unwrap().is_none());

    // An upgrade whose migration fails: the Deployment is not updated.
    let c2 = cluster().await;
    let engine = self::engine(&c2.client);
    let deploy: Api<Deployment> = Api::namespaced(c2.client.clone(), "default");
    write_files(dir.path(), &[("app/migrate.yaml", &job("migrate", &hook))]);
    let mut state = StageState::default();
    let report = apply(&engine, dir.path(), "r1", &mut state).await;
    assert!(report.ready, "{}", report.message);
    let before = deploy.get("web").await.unwrap();
    write_files(
        dir.path(),
        &[
            ("app/deploy.yaml", &deployment("nginx:1.28")),
            ("app/migrate.yaml", &job("migrate", &failing)),
        ],
    );
    let report = apply(&engine, dir.path(), "r2", &mut state).await;
    assert!(!report.ready);
    assert!(
        report
            .message
            .contains("pre-apply hook Job default/migrate"),
        "{}",
        report.message
    );
    let after = deploy.get("web").await.unwrap();
    assert_eq!(
        after.metadata.resource_version,
        before.metadata.resource_version
    );
    assert_eq!(
        after.spec.unwrap().template.spec.unwrap().containers[0]
            .image
            .as_deref(),
        Some("nginx:1.27")
    );
    // The Deployment is still in the inventory: nothing forgets it.
    assert!(
        state
            .inventory
            .iter()
            .any(|e| e.kind == "Deployment" && e.name == "web")
    );
    // Not re-run by the next reconcile of the same revision: same failure, same Job.
    let uid = job_uid(&c2.client, "migrate").await;
    let report = apply(&engine, dir.path(), "r2", &mut state).await;
    assert!(!report.ready);
    assert!(
        report
            .message
            .contains("pre-apply hook Job default/migrate"),
        "{}",
        report.message
    );
    assert_eq!(job_uid(&c2.client, "migrate").await, uid);
    c.sim.shutdown().await;
    c2.sim.shutdown().await;
}

#[tokio::test]
async fn failed_hook_deleted_by_policy_keeps_its_reason_and_log_tail_and_does_not_run_again() {
    let c = cluster().await;
    let failing = [
        ("helm.sh/hook", "pre-install,pre-upgrade"),
        ("helm.sh/hook-delete-policy", "hook-failed"),
        ("sim.stagegate.dev/outcome", "fail"),
        ("sim.stagegate.dev/log", "ERROR: relation users exists"),
    ];
    let dir = repo(&[
        ("stages.yaml", &stage_doc("app", "app", "")),
        ("app/cm.yaml", &config_map("settings", "1", &[])),
        (
            "app/migrate.yaml",
            &job("migrate", &failing).replace("backoffLimit: 4", "backoffLimit: 0"),
        ),
    ]);
    let engine = engine(&c.client);
    let mut state = StageState::default();
    let report = apply(&engine, dir.path(), "r1", &mut state).await;
    assert!(!report.ready);
    assert!(
        report.message.contains("ERROR: relation users exists"),
        "{}",
        report.message
    );
    assert!(
        job_uid(&c.client, "migrate").await.is_none(),
        "deleted after failure"
    );
    wait_gone_pods(&c.client, "migrate").await;
    let last = state.jobs["default/migrate"].last().unwrap().clone();
    assert_eq!(last.result, JobResult::Failed);
    assert!(
        last.log_tail
            .unwrap_or_default()
            .contains("relation users exists")
    );
    // The Warning Event with the log tail stays too.
    // The engine reports its Events; whoever records the stage publishes them.
    EventSink::new(c.client.clone(), None)
        .publish_all(&report.events)
        .await;
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(c.client.clone(), "default");
    let noted = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .any(|e| {
            e.type_.as_deref() == Some("Warning")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("migrate")
                && e.note.unwrap_or_default().contains("relation users exists")
        });
    assert!(noted, "a Warning Event with the log tail");

    let creates = c.sim.stats().create;
    let report = apply(&engine, dir.path(), "r1", &mut state).await;
    assert!(!report.ready);
    assert!(
        report.message.contains("failed earlier"),
        "{}",
        report.message
    );
    assert!(
        report.message.contains("relation users exists"),
        "{}",
        report.message
    );
    assert_eq!(c.sim.stats().create, creates, "not run again");
    c.sim.shutdown().await;
}

#[tokio::test]
async fn initial_hooks_run_on_the_first_install_only_and_upgrade_hooks_on_later_revisions() {
    let c = cluster().await;
    let files = |data: &str| {
        vec![
            ("stages.yaml".to_string(), stage_doc("app", "app", "")),
            ("app/cm.yaml".to_string(), config_map("settings", data, &[])),
            (
                "app/init.yaml".to_string(),
                job("init", &[("kluctl.io/hook", "pre-deploy-initial")]),
            ),
            (
                "app/upgrade.yaml".to_string(),
                job("upgrade", &[("kluctl.io/hook", "pre-deploy-upgrade")]),
            ),
        ]
    };
    let write = |dir: &std::path::Path, data: &str| {
        let f = files(data);
        let refs: Vec<(&str, &str)> = f.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        write_files(dir, &refs);
    };
    let dir = repo(&[]);
    write(dir.path(), "1");
    let engine = engine(&c.client);
    let mut state = StageState::default();

    let report = apply(&engine, dir.path(), "r1", &mut state).await;
    assert!(report.ready, "{}", report.message);
    let init = job_uid(&c.client, "init")
        .await
        .expect("the initial hook ran");
    assert!(
        job_uid(&c.client, "upgrade").await.is_none(),
        "no upgrade hook on the first install"
    );
    assert!(
        report
            .hooks
            .iter()
            .any(|h| h.contains("upgrade") && h.contains("not run")),
        "{:?}",
        report.hooks
    );

    write(dir.path(), "2");
    let report = apply(&engine, dir.path(), "r2", &mut state).await;
    assert!(report.ready, "{}", report.message);
    assert!(
        job_uid(&c.client, "upgrade").await.is_some(),
        "the upgrade hook ran"
    );
    assert_eq!(
        job_uid(&c.client, "init").await.as_ref(),
        Some(&init),
        "the initial hook did not"
    );
    assert_eq!(
        state.jobs["default/upgrade"].runs[0].result,
        JobResult::Succeeded
    );

    // With the state lost, the stage's objects on the cluster still say
    // this is no initial install.
    let jobs: Api<Job> = Api::namespaced(c.client.clone(), "default");
    jobs.delete("init", &kube::api::DeleteParams::foreground())
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(60), async {
        while jobs.get_opt("init").await.unwrap().is_some() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap();
    let mut lost = StageState::default();
    let report = apply(&engine, dir.path(), "r3", &mut lost).await;
    assert!(report.ready, "{}", report.message);
    assert!(
        job_uid(&c.client, "init").await.is_none(),
        "not run again: the ConfigMap existed"
    );
    c.sim.shutdown().await;
}

#[tokio::test]
async fn non_job_hooks_apply_in_their_phase_and_unsupported_hooks_are_never_applied() {
    let c = cluster().await;
    let dir = repo(&[
        ("stages.yaml", &stage_doc("app", "app", "")),
        ("app/deploy.yaml", &deployment("nginx:1.27")),
        (
            "app/before.yaml",
            &config_map("before", "1", &[("stagegate.dev/hook", "pre-apply")]),
        ),
        (
            "app/after.yaml",
            &config_map("after", "1", &[("kluctl.io/hook", "post-deploy")]),
        ),
        (
            "app/cleanup.yaml",
            &job("cleanup", &[("helm.sh/hook", "pre-delete")]),
        ),
        // A test hook of a kind this cluster does not serve: never applied,
        // so its kind need not be known.
        (
            "app/widget.yaml",
            "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: check\n  annotations: {helm.sh/hook: test}\n",
        ),
    ]);
    // `validate` warns about the hook kind it cannot honour, naming the object.
    let warnings: Vec<String> = plan(dir.path())
        .warnings
        .iter()
        .map(|p| p.to_string())
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("Job.batch cleanup") && w.contains("pre-delete")),
        "{warnings:?}"
    );

    let timeline = Timeline::start(&c.client).await;
    let engine = engine(&c.client);
    let mut state = StageState::default();
    let report = apply(&engine, dir.path(), "r1", &mut state).await;
    assert!(report.ready, "{}", report.message);
    let deployed = timeline.created("Deployment/web").await;
    assert!(timeline.created("ConfigMap/before").await < deployed);
    assert!(deployed < timeline.created("ConfigMap/after").await);
    assert!(
        job_uid(&c.client, "cleanup").await.is_none(),
        "a pre-delete hook is never applied"
    );

    // Unchanged hooks are not written again.
    let report = apply(&engine, dir.path(), "r2", &mut state).await;
    assert!(report.ready, "{}", report.message);
    for hook in [
        "pre-apply ConfigMap default/before: unchanged",
        "post-apply ConfigMap default/after: unchanged",
    ] {
        assert!(
            report.hooks.iter().any(|h| h == hook),
            "{hook:?} in {:?}",
            report.hooks
        );
    }
    timeline.stop();
    c.sim.shutdown().await;
}

#[tokio::test]
async fn diff_says_which_hooks_would_run() {
    let c = cluster().await;
    let dir = repo(&[
        ("stages.yaml", &stage_doc("app", "app", "")),
        ("app/deploy.yaml", &deployment("nginx:1.27")),
        (
            "app/migrate.yaml",
            &job(
                "migrate",
                &[
                    ("helm.sh/hook", "pre-install"),
                    ("helm.sh/hook-weight", "1"),
                ],
            ),
        ),
        (
            "app/smoke.yaml",
            &job("smoke", &[("stagegate.dev/hook", "post-apply")]),
        ),
    ]);
    let engine = engine(&c.client);
    let mut state = StageState::default();
    let planned = plan(dir.path()).stages.remove(0);

    let diff = engine.diff_stage(&planned, "r1", &state).await;
    assert!(diff.errors.is_empty(), "{:?}", diff.errors);
    let hooks: Vec<String> = diff
        .hooks
        .iter()
        .map(|(h, f)| format!("{h}: {f}"))
        .collect();
    assert_eq!(hooks.len(), 2, "{hooks:?}");
    assert!(
        hooks[0].starts_with("pre-apply hook Job default/migrate: create"),
        "{hooks:?}"
    );
    assert!(
        hooks[1].starts_with("post-apply hook Job default/smoke: create"),
        "{hooks:?}"
    );
    assert_eq!(diff.jobs_to_run, 2);
    assert!(
        diff.to_string()
            .contains("  pre-apply hook Job default/migrate: create")
    );

    let report = engine.apply_stage(&planned, "r1", &mut state).await;
    assert!(report.ready, "{}", report.message);
    let diff = engine.diff_stage(&planned, "r2", &state).await;
    let text = diff.to_string();
    assert!(
        text.contains("hook Job.batch default/migrate: not run on this apply (runs on the initial install only)"),
        "{text}"
    );
    assert!(
        text.contains("post-apply hook Job default/smoke: left alone (unchanged)"),
        "{text}"
    );
    assert_eq!(diff.jobs_to_run, 0, "{text}");
    c.sim.shutdown().await;
}

/// The agent end to end: `stagegate run --once` on a Git repository whose
/// first stage has a failing pre-apply hook; the stage after it is Blocked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_blocks_the_dependent_of_a_stage_whose_pre_apply_hook_failed() {
    let c = cluster().await;
    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig = tmp.path().join("kubeconfig");
    c.sim.write_kubeconfig(&kubeconfig).unwrap();
    let git = common::git::GitRepo::init(&tmp.path().join("repo"));
    let stages = format!(
        "{}\n{}",
        stage_doc("app", "app", "  timeout: 2m\n"),
        stage_doc("smoke", "smoke", "  dependsOn: [app]\n")
    );
    let failing = job(
        "migrate",
        &[
            ("stagegate.dev/hook", "pre-apply"),
            ("sim.stagegate.dev/outcome", "fail"),
            (
                "sim.stagegate.dev/log",
                "ERROR: relation orders already exists",
            ),
        ],
    )
    .replace("backoffLimit: 4", "backoffLimit: 0");
    let deploy = deployment("nginx:1.27");
    let settings = config_map("settings", "1", &[]);
    git.commit(
        "failing migration",
        &[
            ("stages.yaml", stages.as_str()),
            ("app/deploy.yaml", deploy.as_str()),
            ("app/migrate.yaml", failing.as_str()),
            ("smoke/cm.yaml", settings.as_str()),
        ],
    );

    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_stagegate"));
    cmd.args([
        "run",
        "--once",
        "--listen",
        "127.0.0.1:0",
        "--create-namespace",
    ])
    .args(["--namespace", "stagegate-system", "--repo", &git.file_url()])
    .arg("--cache-dir")
    .arg(tmp.path().join("cache"))
    .arg("--kubeconfig")
    .arg(&kubeconfig)
    .env_remove("KUBECONFIG");
    let output = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let shown = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(1), "{shown}");

    let state = StateStore::new(c.client.clone(), "stagegate-system")
        .load()
        .await
        .unwrap();
    let app = &state.stages["app"];
    assert_eq!(app.phase, Phase::Failed, "{}", app.message);
    assert!(
        app.message.contains("pre-apply hook Job default/migrate")
            && app.message.contains("relation orders already exists"),
        "{}",
        app.message
    );
    let smoke = &state.stages["smoke"];
    assert_eq!(smoke.phase, Phase::Blocked, "{}", smoke.message);
    assert!(
        smoke.message.contains("stage app failed"),
        "{}",
        smoke.message
    );
    let deployments: Api<Deployment> = Api::namespaced(c.client.clone(), "default");
    assert!(deployments.get_opt("web").await.unwrap().is_none());
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    assert!(cms.get_opt("settings").await.unwrap().is_none());

    // `stagegate status` shows the hook's outcome under its stage.
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_stagegate"))
        .args(["status", "--namespace", "stagegate-system", "--kubeconfig"])
        .arg(&kubeconfig)
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&status.stdout);
    assert!(
        table.contains("hook pre-apply default/migrate: failed"),
        "{table}"
    );
    c.sim.shutdown().await;
}

#[tokio::test]
async fn rerun_of_every_job_survives_for_the_jobs_a_failed_pre_apply_hook_kept_from_running() {
    let c = cluster().await;
    let failing = [
        ("stagegate.dev/hook", "pre-apply"),
        ("sim.stagegate.dev/outcome", "fail"),
    ];
    let dir = repo(&[
        ("stages.yaml", &stage_doc("app", "app", "")),
        (
            "app/migrate.yaml",
            &job("migrate", &failing).replace("backoffLimit: 4", "backoffLimit: 0"),
        ),
        ("app/pi.yaml", &pi_job("pi", 20, "")),
    ]);
    let engine = engine(&c.client);
    let mut state = StageState::default();
    let report = apply(&engine, dir.path(), "r1", &mut state).await;
    assert!(!report.ready);
    let first = job_uid(&c.client, "migrate").await.unwrap();
    assert!(job_uid(&c.client, "pi").await.is_none());

    // `stagegate rerun app`: the hook runs again (and fails again); the
    // request stays for the Job it never reached.
    state.rerun.insert("*".into());
    let report = apply(&engine, dir.path(), "r1", &mut state).await;
    assert!(!report.ready);
    assert_ne!(
        job_uid(&c.client, "migrate").await.unwrap(),
        first,
        "run again"
    );
    assert_eq!(
        state.rerun.iter().collect::<Vec<_>>(),
        vec!["default/pi"],
        "{:?}",
        state.rerun
    );
    c.sim.shutdown().await;
}

#[tokio::test]
async fn hook_timeout_replaces_the_stage_timeout_for_that_hook() {
    let c = cluster().await;
    let hook = [
        ("kluctl.io/hook", "pre-deploy"),
        ("kluctl.io/hook-timeout", "2s"),
    ];
    let dir = repo(&[
        // The stage would wait ten minutes; the hook's own timeout is 2s.
        ("stages.yaml", &stage_doc("app", "app", "  timeout: 10m\n")),
        (
            "app/migrate.yaml",
            &job("migrate", &hook).replace("duration: 200ms", "duration: 1h"),
        ),
        ("app/cm.yaml", &config_map("settings", "1", &[])),
    ]);
    let engine = engine(&c.client);
    let mut state = StageState::default();
    let report = tokio::time::timeout(
        Duration::from_secs(120),
        apply(&engine, dir.path(), "r1", &mut state),
    )
    .await
    .expect("the hook's timeout ends the wait, not the stage's");
    assert!(!report.ready);
    assert!(
        report
            .message
            .contains("pre-apply hook Job default/migrate: not complete after 2s"),
        "{}",
        report.message
    );
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    assert!(cms.get_opt("settings").await.unwrap().is_none());
    c.sim.shutdown().await;
}

#[tokio::test]
async fn pod_hook_is_waited_for_until_it_succeeded_not_just_ready() {
    let c = cluster().await;
    // The simulated kubelet runs a Pod created directly: Running and Ready
    // at once, Succeeded (or Failed) after its duration.
    let pod = |outcome: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: check\n  annotations:\n    stagegate.dev/hook: pre-apply\n    sim.stagegate.dev/duration: 2s\n    sim.stagegate.dev/outcome: {outcome}\nspec:\n  restartPolicy: Never\n  containers: [{{name: check, image: busybox}}]\n"
        )
    };
    let dir = repo(&[
        ("stages.yaml", &stage_doc("app", "app", "")),
        ("app/pod.yaml", &pod("succeed")),
        ("app/cm.yaml", &config_map("settings", "1", &[])),
    ]);
    let timeline = Timeline::start(&c.client).await;
    let engine = engine(&c.client);
    let mut state = StageState::default();
    let report = apply(&engine, dir.path(), "r1", &mut state).await;
    assert!(report.ready, "{}", report.message);
    let succeeded = timeline.finished("Pod/check").await;
    let applied = timeline.created("ConfigMap/settings").await;
    assert!(
        succeeded < applied,
        "Pod succeeded at rv {succeeded}, the stage went on at rv {applied}"
    );

    // A Pod hook that fails stops the stage, naming it.
    let c2 = cluster().await;
    let engine = self::engine(&c2.client);
    write_files(dir.path(), &[("app/pod.yaml", &pod("fail"))]);
    let mut state = StageState::default();
    let report = apply(&engine, dir.path(), "r1", &mut state).await;
    assert!(!report.ready);
    assert!(
        report
            .message
            .contains("pre-apply hook Pod default/check: Failed"),
        "{}",
        report.message
    );
    let cms: Api<ConfigMap> = Api::namespaced(c2.client.clone(), "default");
    assert!(cms.get_opt("settings").await.unwrap().is_none());
    timeline.stop();
    c.sim.shutdown().await;
    c2.sim.shutdown().await;
}

#[tokio::test]
async fn failing_post_apply_hook_fails_the_stage_with_its_objects_left_applied() {
    let c = cluster().await;
    let failing = [
        ("stagegate.dev/hook", "post-apply"),
        ("sim.stagegate.dev/outcome", "fail"),
        ("sim.stagegate.dev/log", "smoke test: 502 from /healthz"),
    ];
    let dir = repo(&[
        ("stages.yaml", &stage_doc("app", "app", "")),
        ("app/deploy.yaml", &deployment("nginx:1.27")),
        (
            "app/smoke.yaml",
            &job("smoke", &failing).replace("backoffLimit: 4", "backoffLimit: 0"),
        ),
    ]);
    let engine = engine(&c.client);
    let mut state = StageState::default();
    let report = apply(&engine, dir.path(), "r1", &mut state).await;
    assert!(!report.ready);
    for needle in [
        "post-apply hook Job default/smoke",
        "BackoffLimitExceeded",
        "502 from /healthz",
        "the stage's other objects stay applied",
    ] {
        assert!(
            report.message.contains(needle),
            "{needle:?} in {}",
            report.message
        );
    }
    let deploy: Api<Deployment> = Api::namespaced(c.client.clone(), "default");
    assert!(deploy.get_opt("web").await.unwrap().is_some());
    c.sim.shutdown().await;
}

#[test]
fn graph_render_and_validate_show_hooks_from_the_command_line() {
    let dir = repo(&[
        ("stages.yaml", &stage_doc("app", "app", "")),
        ("app/deploy.yaml", &deployment("nginx:1.27")),
        (
            "app/migrate.yaml",
            &job(
                "migrate",
                &[
                    ("stagegate.dev/hook", "pre-apply"),
                    ("stagegate.dev/hook-weight", "-5"),
                ],
            ),
        ),
        (
            "app/test.yaml",
            &job("test-connection", &[("helm.sh/hook", "test")]),
        ),
    ]);
    let run = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_stagegate"))
            .args(args)
            .arg(dir.path())
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, out, err) = run(&["graph"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        out,
        "app\n  pre: migrate (weight -5)\n  never applied: test-connection (unsupported hook kinds)\n"
    );
    let (code, out, _) = run(&["render"]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("---\n# hook: pre-apply (weight -5)\napiVersion: batch/v1\nkind: Job\n"),
        "{out}"
    );
    let (code, _, err) = run(&["validate"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("warning: app/test.yaml: stage app: Job.batch test-connection: helm.sh/hook: test is not supported"),
        "{err}"
    );
}
