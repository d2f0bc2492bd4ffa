//! The apply engine against kube-sim over HTTP: Jobs by spec hash, immutable
//! fields, prune, CRDs, rollout waits.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use stagegate::cluster::apply::job_policy::{JobAction, SkipReason};
use stagegate::cluster::apply::{Engine, EngineSettings};
use stagegate::cluster::events::{EventSink, Reason};
use stagegate::cluster::state::StageState;

fn engine(client: &kube::Client) -> Engine {
    Engine::new(
        client.clone(),
        EngineSettings {
            stuck_pod_grace: Duration::from_secs(5),
            ..EngineSettings::default()
        },
    )
}

async fn job_uid(client: &kube::Client, ns: &str, name: &str) -> Option<String> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    jobs.get_opt(name)
        .await
        .unwrap()
        .and_then(|j| j.metadata.uid)
}

async fn pods_of(client: &kube::Client, ns: &str, uid: &str) -> usize {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    pods.list(&ListParams::default().labels(&format!("batch.kubernetes.io/controller-uid={uid}")))
        .await
        .unwrap()
        .items
        .len()
}

fn writes(stats: kube_sim::RequestStats) -> u64 {
    stats.create + stats.update + stats.patch + stats.delete
}

#[tokio::test]
async fn changed_job_is_recreated_with_its_pods_gone_and_completes() {
    let c = cluster().await;
    let dir = repo(&[
        ("stages.yaml", &stage_doc("pre", "pre", "")),
        ("pre/job.yaml", &pi_job("pi", 2000, "")),
    ]);
    let engine = engine(&c.client);
    let mut state = StageState::default();

    let report = engine
        .apply_stage(&plan(dir.path()).stages[0], "r1", &mut state)
        .await;
    assert!(report.ready, "{}", report.message);
    let first = job_uid(&c.client, "default", "pi").await.unwrap();
    assert_eq!(pods_of(&c.client, "default", &first).await, 1);

    write_files(dir.path(), &[("pre/job.yaml", &pi_job("pi", 20, ""))]);
    let report = engine
        .apply_stage(&plan(dir.path()).stages[0], "r2", &mut state)
        .await;
    assert!(report.ready, "{}", report.message);
    assert_eq!(report.recreated, 1);
    assert!(
        matches!(report.jobs[0].action, Some(JobAction::Replace { .. })),
        "{:?}",
        report.jobs
    );
    let second = job_uid(&c.client, "default", "pi").await.unwrap();
    assert_ne!(first, second);
    assert_eq!(
        pods_of(&c.client, "default", &first).await,
        0,
        "the old Job's pods are gone"
    );

    let runs = &state.jobs["default/pi"].runs;
    assert_eq!(runs.len(), 2);
    assert!(
        runs.iter()
            .all(|r| r.result == stagegate::cluster::state::JobResult::Succeeded),
        "{runs:?}"
    );

    // The report says so, typed, about the new Job; the engine published nothing.
    let reported: Vec<_> = report
        .events
        .iter()
        .map(|e| (e.reason, e.object.name.as_str(), e.uid.as_deref()))
        .collect();
    assert_eq!(
        reported,
        [(Reason::Recreated, "pi", Some(second.as_str()))],
        "{:?}",
        report.events
    );
    // The new Job carries a Recreated event.
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
    assert!(recreated, "a Recreated event on the new Job");
    c.sim.shutdown().await;
}

#[tokio::test]
async fn unchanged_job_applied_ten_times_is_never_written() {
    let c = cluster().await;
    let dir = repo(&[
        ("stages.yaml", &stage_doc("pre", "pre", "")),
        ("pre/job.yaml", &pi_job("pi", 2000, "")),
        (
            "pre/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {a: b}\n",
        ),
    ]);
    let engine = engine(&c.client);
    let mut state = StageState::default();
    let planned = plan(dir.path()).stages.remove(0);
    let report = engine.apply_stage(&planned, "r1", &mut state).await;
    assert!(report.ready, "{}", report.message);
    let uid = job_uid(&c.client, "default", "pi").await.unwrap();

    let before = c.sim.stats();
    for i in 0..10 {
        let report = engine
            .apply_stage(&planned, &format!("r{}", i + 2), &mut state)
            .await;
        assert!(report.ready, "{}", report.message);
        assert_eq!(report.unchanged, 1, "the ConfigMap is found unchanged");
    }
    let after = c.sim.stats();
    assert_eq!(
        writes(after),
        writes(before),
        "no writes: {before:?} -> {after:?}"
    );
    assert_eq!(job_uid(&c.client, "default", "pi").await.unwrap(), uid);
    c.sim.shutdown().await;
}

#[tokio::test]
async fn completed_job_removed_by_ttl_is_not_run_again() {
    let c = cluster().await;
    let job = pi_job("pi", 2000, "").replace(
        "backoffLimit: 4",
        "backoffLimit: 4\n  ttlSecondsAfterFinished: 0",
    );
    let dir = repo(&[
        ("stages.yaml", &stage_doc("pre", "pre", "")),
        ("pre/job.yaml", &job),
    ]);
    let engine = engine(&c.client);
    let mut state = StageState::default();
    let planned = plan(dir.path()).stages.remove(0);
    let report = engine.apply_stage(&planned, "r1", &mut state).await;
    assert!(report.ready, "{}", report.message);

    // The cluster removes the finished Job.
    let jobs: Api<Job> = Api::namespaced(c.client.clone(), "default");
    tokio::time::timeout(Duration::from_secs(30), async {
        while jobs.get_opt("pi").await.unwrap().is_some() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("ttl controller removes the Job");

    let creates = c.sim.stats().create;
    let report = engine.apply_stage(&planned, "r2", &mut state).await;
    assert!(report.ready, "{}", report.message);
    assert_eq!(
        report.jobs[0].action,
        Some(JobAction::Skip(SkipReason::AlreadySucceeded))
    );
    assert!(jobs.get_opt("pi").await.unwrap().is_none());
    assert_eq!(c.sim.stats().create, creates);
    c.sim.shutdown().await;
}

#[tokio::test]
async fn failing_job_fails_the_stage_with_reason_log_tail_and_event() {
    let c = cluster().await;
    let annotations = "    sim.stagegate.dev/outcome: fail\n    sim.stagegate.dev/log: \"Traceback\\nConnectionRefusedError: db:5432\"\n";
    let dir = repo(&[
        ("stages.yaml", &stage_doc("pre", "pre", "")),
        (
            "pre/job.yaml",
            &pi_job("pi", 2000, annotations).replace("200ms", "20ms"),
        ),
    ]);
    let engine = engine(&c.client);
    let mut state = StageState::default();
    let planned = plan(dir.path()).stages.remove(0);
    let report = engine.apply_stage(&planned, "r1", &mut state).await;
    assert!(!report.ready);
    assert!(
        report.message.contains("BackoffLimitExceeded"),
        "{}",
        report.message
    );
    assert!(
        report.message.contains("ConnectionRefusedError: db:5432"),
        "{}",
        report.message
    );

    let uid = job_uid(&c.client, "default", "pi").await.unwrap();
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let failed = pods
        .list(&ListParams::default().labels(&format!("batch.kubernetes.io/controller-uid={uid}")))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed"))
        .count();
    assert_eq!(failed, 5, "backoffLimit 4 means 5 failed pods");

    // The engine reports its Events; whoever records the stage publishes them.
    EventSink::new(c.client.clone(), None)
        .publish_all(&report.events)
        .await;
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(c.client.clone(), "default");
    // The cluster's job-controller records its own Warning on the Job too;
    // ours is the one with the log tail.
    let notes: Vec<String> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| {
            e.type_.as_deref() == Some("Warning")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("pi")
        })
        .filter_map(|e| e.note)
        .collect();
    assert!(
        notes
            .iter()
            .any(|n| n.contains("BackoffLimitExceeded") && n.contains("ConnectionRefusedError")),
        "{notes:?}"
    );

    // The failure is recorded and not re-run on the next reconcile.
    let report = engine.apply_stage(&planned, "r2", &mut state).await;
    assert!(!report.ready);
    assert_eq!(job_uid(&c.client, "default", "pi").await.unwrap(), uid);
    c.sim.shutdown().await;
}

#[tokio::test]
async fn service_with_changed_cluster_ip_is_recreated_with_force_and_fails_clearly_without() {
    let c = cluster().await;
    let service = |ip: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: db}}\nspec:\n  clusterIP: {ip}\n  ports: [{{port: 5432}}]\n"
        )
    };
    let dir = repo(&[
        ("stages.yaml", &stage_doc("net", "net", "")),
        ("net/svc.yaml", &service("10.96.0.10")),
    ]);
    let engine = engine(&c.client);
    let mut state = StageState::default();
    assert!(
        engine
            .apply_stage(&plan(dir.path()).stages[0], "r1", &mut state)
            .await
            .ready
    );
    let services: Api<Service> = Api::namespaced(c.client.clone(), "default");
    let uid = services.get("db").await.unwrap().metadata.uid;

    write_files(dir.path(), &[("net/svc.yaml", &service("10.96.0.11"))]);
    let report = engine
        .apply_stage(&plan(dir.path()).stages[0], "r2", &mut state)
        .await;
    assert!(!report.ready);
    assert!(
        report.message.contains("Service default/db"),
        "{}",
        report.message
    );
    assert!(report.message.contains("immutable"), "{}", report.message);
    assert_eq!(
        services.get("db").await.unwrap().metadata.uid,
        uid,
        "left alone without force"
    );

    write_files(
        dir.path(),
        &[("stages.yaml", &stage_doc("net", "net", "  force: true\n"))],
    );
    let report = engine
        .apply_stage(&plan(dir.path()).stages[0], "r3", &mut state)
        .await;
    assert!(report.ready, "{}", report.message);
    assert_eq!(report.recreated, 1);
    let live = services.get("db").await.unwrap();
    assert_ne!(live.metadata.uid, uid);
    assert_eq!(live.spec.unwrap().cluster_ip.as_deref(), Some("10.96.0.11"));
    c.sim.shutdown().await;
}

#[tokio::test]
async fn prune_deletes_what_left_the_repository_but_never_foreign_objects() {
    let c = cluster().await;
    let cm = |name: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {{a: b}}\n")
    };
    let dir = repo(&[
        ("stages.yaml", &stage_doc("app", "app", "  prune: true\n")),
        ("app/one.yaml", &cm("one")),
        ("app/two.yaml", &cm("two")),
        ("app/three.yaml", &cm("three")),
    ]);
    let engine = engine(&c.client);
    let mut state = StageState::default();
    assert!(
        engine
            .apply_stage(&plan(dir.path()).stages[0], "r1", &mut state)
            .await
            .ready
    );

    // Someone else takes `three` over: it loses our labels.
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    let mut three = cms.get("three").await.unwrap();
    three.metadata.labels = None;
    three.metadata.managed_fields = None;
    cms.replace("three", &PostParams::default(), &three)
        .await
        .unwrap();

    std::fs::remove_file(dir.path().join("app/two.yaml")).unwrap();
    std::fs::remove_file(dir.path().join("app/three.yaml")).unwrap();
    let report = engine
        .apply_stage(&plan(dir.path()).stages[0], "r2", &mut state)
        .await;
    assert!(report.ready, "{}", report.message);
    assert_eq!(report.pruned, 1);
    assert!(cms.get_opt("one").await.unwrap().is_some());
    assert!(cms.get_opt("two").await.unwrap().is_none(), "pruned");
    assert!(
        cms.get_opt("three").await.unwrap().is_some(),
        "never prune an object without our labels"
    );
    assert!(
        report.message.contains("three") && report.message.contains("not pruned"),
        "{}",
        report.message
    );

    // The whole stage leaves the repository.
    let (pruned, _) = engine.prune_removed_stage("app", &state).await;
    assert_eq!(pruned, 1);
    assert!(cms.get_opt("one").await.unwrap().is_none());
    c.sim.shutdown().await;
}

#[tokio::test]
async fn crd_and_its_custom_resource_apply_in_one_stage() {
    let c = cluster().await;
    let crd = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          x-kubernetes-preserve-unknown-fields: true
"#;
    let widget =
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: blue}\nspec: {size: 3}\n";
    let dir = repo(&[
        ("stages.yaml", &stage_doc("crds", "crds", "  prune: true\n")),
        ("crds/crd.yaml", crd),
        ("crds/widget.yaml", widget),
    ]);
    let engine = engine(&c.client);
    let mut state = StageState::default();
    let report = engine
        .apply_stage(&plan(dir.path()).stages[0], "r1", &mut state)
        .await;
    assert!(report.ready, "{}", report.message);
    assert_eq!(report.applied, 2);
    assert_eq!(state.inventory.len(), 2);
    // Applied again: the custom resource, resolved only once its CRD
    // exists, is still one the stage keeps, not one prune deletes.
    let report = engine
        .apply_stage(&plan(dir.path()).stages[0], "r2", &mut state)
        .await;
    assert!(report.ready, "{}", report.message);
    assert_eq!(report.pruned, 0);
    let resource = kube::discovery::ApiResource {
        group: "example.com".into(),
        version: "v1".into(),
        api_version: "example.com/v1".into(),
        kind: "Widget".into(),
        plural: "widgets".into(),
    };
    let widgets: Api<kube::api::DynamicObject> =
        Api::namespaced_with(c.client.clone(), "default", &resource);
    assert!(widgets.get_opt("blue").await.unwrap().is_some());
    c.sim.shutdown().await;
}

#[tokio::test]
async fn unknown_kind_fails_the_stage_naming_it_and_applies_nothing() {
    let c = cluster().await;
    let dir = repo(&[
        ("stages.yaml", &stage_doc("s", "s", "")),
        (
            "s/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
        ),
        (
            "s/thing.yaml",
            "apiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: g}\n",
        ),
    ]);
    let engine = engine(&c.client);
    let report = engine
        .apply_stage(
            &plan(dir.path()).stages[0],
            "r1",
            &mut StageState::default(),
        )
        .await;
    assert!(!report.ready);
    assert!(
        report
            .message
            .contains("Gadget.example.com g: kind example.com/v1/Gadget is not served"),
        "{}",
        report.message
    );
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    assert!(cms.get_opt("x").await.unwrap().is_none());
    c.sim.shutdown().await;
}

#[tokio::test]
async fn deployment_rollout_waits_succeed_hang_until_timeout_or_fail() {
    let c = cluster().await;
    let engine = engine(&c.client);
    let with = |name: &str, annotation: &str| {
        DEPLOYMENT.replacen(
            "name: web\n",
            &format!("name: {name}\n  annotations: {{{annotation}}}\n"),
            1,
        )
    };
    let stage = |name: &str, extra: &str| stage_doc(name, name, &format!("  wait: true\n{extra}"));

    let ok = repo(&[
        ("stages.yaml", &stage("web", "")),
        ("web/d.yaml", &with("web", "")),
    ]);
    let report = engine
        .apply_stage(&plan(ok.path()).stages[0], "r1", &mut StageState::default())
        .await;
    assert!(report.ready, "{}", report.message);

    let hang = repo(&[
        ("stages.yaml", &stage("slow", "  timeout: 2s\n")),
        (
            "slow/d.yaml",
            &with("slow", "sim.stagegate.dev/rollout: hang"),
        ),
    ]);
    let report = engine
        .apply_stage(
            &plan(hang.path()).stages[0],
            "r1",
            &mut StageState::default(),
        )
        .await;
    assert!(!report.ready);
    assert!(
        report.message.contains("timed out after 2s")
            && report.message.contains("Deployment.apps default/slow"),
        "{}",
        report.message
    );

    let fail = repo(&[
        ("stages.yaml", &stage("bad", "")),
        (
            "bad/d.yaml",
            &with("bad", "sim.stagegate.dev/rollout: fail"),
        ),
    ]);
    let report = engine
        .apply_stage(
            &plan(fail.path()).stages[0],
            "r1",
            &mut StageState::default(),
        )
        .await;
    assert!(!report.ready);
    assert!(
        report.message.contains("ProgressDeadlineExceeded"),
        "{}",
        report.message
    );
    c.sim.shutdown().await;
}

#[tokio::test]
async fn running_job_of_an_older_spec_is_waited_for_before_replacement() {
    let c = cluster().await;
    let slow = pi_job("migrate", 2000, "").replace("200ms", "1500ms");
    let dir = repo(&[
        ("stages.yaml", &stage_doc("pre", "pre", "  wait: false\n")),
        ("pre/job.yaml", &slow),
    ]);
    let engine = engine(&c.client);
    let mut state = StageState::default();
    let report = engine
        .apply_stage(&plan(dir.path()).stages[0], "r1", &mut state)
        .await;
    assert!(report.ready, "{}", report.message);
    let first = job_uid(&c.client, "default", "migrate").await.unwrap();

    write_files(
        dir.path(),
        &[
            ("stages.yaml", &stage_doc("pre", "pre", "")),
            ("pre/job.yaml", &pi_job("migrate", 20, "")),
        ],
    );
    let report = engine
        .apply_stage(&plan(dir.path()).stages[0], "r2", &mut state)
        .await;
    assert!(report.ready, "{}", report.message);
    assert!(
        matches!(
            report.jobs[0].action,
            Some(JobAction::WaitThenReplace { .. })
        ),
        "{:?}",
        report.jobs
    );
    let runs = &state.jobs["default/migrate"].runs;
    let old = runs
        .iter()
        .find(|r| r.uid.as_deref() == Some(first.as_str()))
        .unwrap();
    assert_eq!(
        old.result,
        stagegate::cluster::state::JobResult::Succeeded,
        "the old run was allowed to finish"
    );
    let jobs: Api<Job> = Api::namespaced(c.client.clone(), "default");
    let _ = jobs.delete("migrate", &DeleteParams::background()).await;
    c.sim.shutdown().await;
}

#[tokio::test]
async fn failed_job_runs_again_only_when_an_operator_asks_or_retries_allow() {
    let c = cluster().await;
    let fail = "    sim.stagegate.dev/outcome: fail\n";
    let job = pi_job("pi", 2000, fail)
        .replace("200ms", "20ms")
        .replace("backoffLimit: 4", "backoffLimit: 0");
    let dir = repo(&[
        ("stages.yaml", &stage_doc("pre", "pre", "")),
        ("pre/job.yaml", &job),
    ]);
    let engine = engine(&c.client);
    let mut state = StageState::default();
    let planned = plan(dir.path()).stages.remove(0);
    assert!(!engine.apply_stage(&planned, "r1", &mut state).await.ready);
    let first = job_uid(&c.client, "default", "pi").await.unwrap();

    // Reconciling again does not run it again.
    let report = engine.apply_stage(&planned, "r1", &mut state).await;
    assert!(!report.ready);
    assert_eq!(job_uid(&c.client, "default", "pi").await.unwrap(), first);

    // `stagegate rerun pre pi` leaves this request in the state.
    state.rerun.insert("pi".into());
    let report = engine.apply_stage(&planned, "r1", &mut state).await;
    assert!(!report.ready);
    let second = job_uid(&c.client, "default", "pi").await.unwrap();
    assert_ne!(first, second, "run again on request");
    assert!(state.rerun.is_empty(), "the request is consumed");

    // jobRetries: 2 counts every failed run of this spec, the requested one too.
    write_files(
        dir.path(),
        &[(
            "stages.yaml",
            &stage_doc("pre", "pre", "  jobRetries: 2\n  retryInterval: 100ms\n"),
        )],
    );
    let planned = plan(dir.path()).stages.remove(0);
    let report = engine.apply_stage(&planned, "r2", &mut state).await;
    assert!(!report.ready);
    assert!(
        matches!(report.jobs[0].action, Some(JobAction::Retry { .. })),
        "{:?}",
        report.jobs
    );
    let third = job_uid(&c.client, "default", "pi").await.unwrap();
    assert_ne!(second, third);
    let report = engine.apply_stage(&planned, "r2", &mut state).await;
    assert!(!report.ready);
    assert_eq!(
        report.jobs[0].action,
        Some(JobAction::Keep),
        "{:?}",
        report.jobs
    );
    c.sim.shutdown().await;
}

#[tokio::test]
async fn pod_stuck_pulling_its_image_is_reported_and_fails_after_the_grace_period() {
    let c = cluster().await;
    let annotations = "    sim.stagegate.dev/outcome: image-pull-backoff\n";
    let dir = repo(&[
        ("stages.yaml", &stage_doc("pre", "pre", "  timeout: 5m\n")),
        ("pre/job.yaml", &pi_job("pi", 2000, annotations)),
    ]);
    // The engine of these tests gives stuck pods 5 s, not the whole 5m timeout.
    let report = engine(&c.client)
        .apply_stage(
            &plan(dir.path()).stages[0],
            "r1",
            &mut StageState::default(),
        )
        .await;
    assert!(!report.ready);
    assert!(
        report.message.contains("pod stuck for 5s"),
        "{}",
        report.message
    );
    assert!(
        report.message.contains("ImagePullBackOff"),
        "{}",
        report.message
    );
    // The engine reports its Events; whoever records the stage publishes them.
    EventSink::new(c.client.clone(), None)
        .publish_all(&report.events)
        .await;
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(c.client.clone(), "default");
    let stuck = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .any(|e| e.reason.as_deref() == Some("PodStuck"));
    assert!(stuck, "a PodStuck Warning Event");
    c.sim.shutdown().await;
}

/// Job runs as a state store would hold them: what the journal wrote.
#[derive(Default)]
struct Persisted(std::sync::Mutex<stagegate::cluster::state::StageState>);

impl stagegate::cluster::apply::JobJournal for Persisted {
    fn record<'a>(
        &'a self,
        _stage: &'a stagegate::core::stage::StageName,
        job: &'a str,
        run: &'a stagegate::cluster::state::JobRun,
    ) -> futures::future::BoxFuture<'a, bool> {
        let mut state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        state
            .jobs
            .entry(job.to_string())
            .or_default()
            .record(run.clone());
        Box::pin(async { true })
    }
}

/// The agent dies (its apply is dropped) once the Job `pi` exists; what it
/// journaled until then is returned.
async fn kill_while_the_job_runs(
    c: &Cluster,
    engine: &Engine,
    planned: &stagegate::core::plan::PlannedStage,
) -> StageState {
    let persisted = Persisted::default();
    let mut state = StageState::default();
    let apply = engine.apply_stage_journaled(planned, "r1", &mut state, &persisted);
    let job_exists = async {
        while job_uid(&c.client, "default", "pi").await.is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::select! {
        _ = apply => panic!("the Job should still be running"),
        () = job_exists => {}
    }
    persisted.0.lock().unwrap().clone()
}

async fn job_deleted(c: &Cluster, name: &str) -> Option<Job> {
    let jobs: Api<Job> = Api::namespaced(c.client.clone(), "default");
    let job = jobs.get_opt(name).await.unwrap()?;
    job.metadata.deletion_timestamp.is_some().then_some(job)
}

/// Stage `pre` with one Job of 1 s that its TTL deletes the moment it ends.
fn ttl_zero_job_repo() -> tempfile::TempDir {
    let job = pi_job("pi", 2000, "")
        .replace("duration: 200ms", "duration: 1s")
        .replace(
            "backoffLimit: 4",
            "backoffLimit: 4\n  ttlSecondsAfterFinished: 0",
        );
    repo(&[
        ("stages.yaml", &stage_doc("pre", "pre", "")),
        ("pre/job.yaml", &job),
    ])
}

#[tokio::test]
async fn job_outcome_survives_an_agent_killed_while_it_ran_and_its_ttl_and_the_gate_opens() {
    let c = cluster().await;
    let dir = ttl_zero_job_repo();
    let engine = engine(&c.client);
    let planned = plan(dir.path()).stages.remove(0);
    let mut restarted = kill_while_the_job_runs(&c, &engine, &planned).await;

    // The Job ends and its TTL deletes it while the agent is down: the
    // finalizer keeps it, ended, for the agent to read.
    tokio::time::timeout(Duration::from_secs(30), async {
        while job_deleted(&c, "pi").await.is_none() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the TTL controller deletes the finished Job");
    let held = job_deleted(&c, "pi").await.expect("held by the finalizer");
    assert_eq!(
        held.metadata.finalizers,
        Some(vec![
            stagegate::cluster::apply::JOB_OUTCOME_FINALIZER.to_string()
        ])
    );

    // The agent is back with what it had persisted: the end is read, the
    // Job not run again, the stage Ready (its dependents may start).
    let creates = c.sim.stats().create;
    let report = engine.apply_stage(&planned, "r1", &mut restarted).await;
    assert!(report.ready, "{}", report.message);
    assert_eq!(
        report.jobs[0].action,
        Some(JobAction::Keep),
        "{:?}",
        report.jobs
    );
    assert_eq!(
        c.sim.stats().create,
        creates,
        "the Job was not created again"
    );
    let runs = &restarted.jobs["default/pi"].runs;
    assert_eq!(runs.len(), 1, "one run, now ended: {runs:?}");
    assert_eq!(
        runs[0].result,
        stagegate::cluster::state::JobResult::Succeeded
    );

    // Its end recorded, the Job is let go, and the deletion completes.
    tokio::time::timeout(Duration::from_secs(30), async {
        while job_uid(&c.client, "default", "pi").await.is_some() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the released Job is deleted");
    let report = engine.apply_stage(&planned, "r2", &mut restarted).await;
    assert!(report.ready, "{}", report.message);
    assert_eq!(
        report.jobs[0].action,
        Some(JobAction::Skip(SkipReason::AlreadySucceeded))
    );
    assert_eq!(c.sim.stats().create, creates);
    c.sim.shutdown().await;
}

#[tokio::test]
async fn a_held_job_of_a_stage_removed_from_git_is_released_and_pruned_even_outside_its_inventory()
{
    let c = cluster().await;
    let dir = ttl_zero_job_repo();
    let engine = engine(&c.client);
    let planned = plan(dir.path()).stages.remove(0);
    // Killed before the stage ended: the run is journaled, the inventory
    // never written.
    let recorded = kill_while_the_job_runs(&c, &engine, &planned).await;
    assert!(recorded.inventory.is_empty());
    tokio::time::timeout(Duration::from_secs(30), async {
        while job_deleted(&c, "pi").await.is_none() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the TTL controller deletes the finished Job");

    // The stage leaves the repository: its Job does not hang on the
    // finalizer of an agent that will never read it.
    let (pruned, notes) = engine.prune_removed_stage("pre", &recorded).await;
    assert_eq!((pruned, notes), (1, Vec::<String>::new()));
    tokio::time::timeout(Duration::from_secs(30), async {
        while job_uid(&c.client, "default", "pi").await.is_some() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the Job is gone");
    c.sim.shutdown().await;
}

#[tokio::test]
async fn job_deleted_by_hand_past_its_finalizer_while_the_agent_was_down_is_not_run_again() {
    let c = cluster().await;
    let slow = pi_job("pi", 2000, "").replace("duration: 200ms", "duration: 3s");
    let dir = repo(&[
        ("stages.yaml", &stage_doc("pre", "pre", "")),
        ("pre/job.yaml", &slow),
    ]);
    let engine = engine(&c.client);
    let planned = plan(dir.path()).stages.remove(0);
    let mut restarted = kill_while_the_job_runs(&c, &engine, &planned).await;

    // Someone removes the finalizer and deletes the Job: nothing in the
    // cluster says how it ended.
    let jobs: Api<Job> = Api::namespaced(c.client.clone(), "default");
    let release = serde_json::json!({"metadata": {"finalizers": null}});
    jobs.patch(
        "pi",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&release),
    )
    .await
    .unwrap();
    jobs.delete("pi", &DeleteParams::background())
        .await
        .unwrap();
    while job_uid(&c.client, "default", "pi").await.is_some() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The restarted agent has only what was persisted.
    let creates = c.sim.stats().create;
    let report = engine.apply_stage(&planned, "r1", &mut restarted).await;
    assert!(!report.ready, "its end was never seen: the gate stays shut");
    assert!(
        report.message.contains("before its end was seen"),
        "{}",
        report.message
    );
    assert_eq!(
        c.sim.stats().create,
        creates,
        "the Job was not created again"
    );
    assert!(job_uid(&c.client, "default", "pi").await.is_none());
    c.sim.shutdown().await;
}

#[tokio::test]
async fn transient_api_errors_are_retried_inside_the_stage() {
    let c = cluster().await;
    let dir = repo(&[
        ("stages.yaml", &stage_doc("pre", "pre", "")),
        ("pre/job.yaml", &pi_job("pi", 20, "")),
        (
            "pre/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {a: b}\n",
        ),
    ]);
    let engine = engine(&c.client);
    let planned = plan(dir.path()).stages.remove(0);
    let faults = c.sim.faults();
    faults.fail_next(kube_sim::FailRule::new(
        Some(kube_sim::Verb::Patch),
        Some("/apis/batch/v1"),
        503,
        2,
    ));
    faults.fail_next(kube_sim::FailRule::new(
        Some(kube_sim::Verb::Patch),
        Some("/api/v1"),
        500,
        1,
    ));
    faults.fail_next(kube_sim::FailRule::new(
        Some(kube_sim::Verb::Get),
        Some("/apis/batch/v1"),
        429,
        1,
    ));
    let mut state = StageState::default();
    let report = engine.apply_stage(&planned, "r1", &mut state).await;
    assert!(report.ready, "{}", report.message);
    assert_eq!(state.jobs["default/pi"].runs.len(), 1, "the Job ran once");
    c.sim.shutdown().await;
}

#[tokio::test]
async fn a_rejected_call_names_the_call_and_the_servers_message_once() {
    let c = cluster().await;
    let dir = repo(&[
        ("stages.yaml", &stage_doc("pre", "pre", "")),
        ("pre/job.yaml", &pi_job("pi", 20, "")),
    ]);
    let engine = engine(&c.client);
    let planned = plan(dir.path()).stages.remove(0);
    c.sim.faults().fail_next(kube_sim::FailRule::new(
        Some(kube_sim::Verb::Get),
        Some("/apis/batch/v1/namespaces/default/jobs"),
        403,
        1,
    ));
    let mut state = StageState::default();
    let report = engine.apply_stage(&planned, "r1", &mut state).await;
    assert!(!report.ready);
    assert!(
        report
            .message
            .starts_with("Job default/pi: get Job.batch default/pi: "),
        "{}",
        report.message
    );
    assert!(report.message.ends_with("(403)"), "{}", report.message);
    assert!(!report.message.contains("Status {"), "{}", report.message);
    assert_eq!(
        report.error.as_ref().map(|e| e.metric_label()),
        Some("forbidden")
    );
    c.sim.shutdown().await;
}

#[tokio::test]
async fn after_a_cluster_reset_a_recorded_job_runs_again_before_the_stage_is_ready() {
    let c = cluster().await;
    let dir = repo(&[
        ("stages.yaml", &stage_doc("pre", "pre", "")),
        ("pre/job.yaml", &pi_job("pi", 20, "")),
        (
            "pre/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {a: b}\n",
        ),
    ]);
    let planned = plan(dir.path()).stages.remove(0);
    let mut state = StageState::default();
    let report = engine(&c.client)
        .apply_stage(&planned, "r1", &mut state)
        .await;
    assert!(report.ready, "{}", report.message);
    c.sim.shutdown().await;

    // The API server comes back without its data; the agent's state survived.
    let reset = cluster().await;
    let report = engine(&reset.client)
        .apply_stage(&planned, "r1", &mut state)
        .await;
    assert!(report.ready, "{}", report.message);
    assert_eq!(
        report.jobs[0].action,
        Some(JobAction::Create),
        "{:?}",
        report.jobs
    );
    assert!(
        job_uid(&reset.client, "default", "pi").await.is_some(),
        "the Job exists on the new cluster"
    );
    assert_eq!(state.jobs["default/pi"].runs.len(), 2);
    reset.sim.shutdown().await;
}

/// Stages starting together ask discovery about a kind once between them,
/// not once each: a layer of a hundred stages made a hundred calls.
#[tokio::test]
async fn stages_applied_at_once_share_one_discovery_of_a_kind() {
    let c = cluster().await;
    let mut files: Vec<(String, String)> = Vec::new();
    let mut stages = String::new();
    for i in 0..12 {
        stages.push_str(&stage_doc(&format!("s{i}"), &format!("s{i}"), ""));
        stages.push_str("---\n");
        files.push((
            format!("s{i}/cm.yaml"),
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm-{i}}}\ndata: {{a: b}}\n"
            ),
        ));
    }
    files.push(("stages.yaml".into(), stages));
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    let dir = repo(&refs);
    let planned = plan(dir.path()).stages;
    assert_eq!(planned.len(), 12);
    let engine = engine(&c.client);
    let before = c.sim.stats();
    let reports = futures::future::join_all(planned.iter().map(|p| {
        let engine = &engine;
        async move {
            engine
                .apply_stage(p, "r1", &mut StageState::default())
                .await
        }
    }))
    .await;
    assert!(
        reports.iter().all(|r| r.ready),
        "{:?}",
        reports.iter().map(|r| &r.message).collect::<Vec<_>>()
    );
    let gets = c.sim.stats().get - before.get;
    assert!(
        gets <= 1,
        "one discovery of v1 ConfigMap for 12 stages, {gets} GETs made"
    );
    c.sim.shutdown().await;
}
