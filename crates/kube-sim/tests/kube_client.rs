//! The real kube client against kube-sim: typed APIs, dynamic objects with
//! discovery, watchers (including the 410 relist), await_condition.

mod common;

use std::time::Duration;

use common::{WAIT, client, eventually, raw, sim};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchParams,
};
use kube::core::WatchEvent;
use kube::discovery::{Discovery, Scope};
use kube::runtime::wait::{await_condition, conditions};
use kube::runtime::watcher;
use serde_json::{Value, json};

fn job(name: &str, annotations: Value, spec_extra: Value) -> Job {
    let mut spec = json!({
        "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox:1.36"}]}}
    });
    if let (Value::Object(s), Value::Object(extra)) = (&mut spec, spec_extra) {
        s.extend(extra);
    }
    serde_json::from_value(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "annotations": annotations},
        "spec": spec,
    }))
    .unwrap()
}

fn api_error(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn condition<'a>(job: &'a Job, t: &str) -> Option<&'a k8s_openapi::api::batch::v1::JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == t)
}

async fn job_pods(pods: &Api<Pod>, name: &str) -> Vec<Pod> {
    pods.list(&ListParams::default().labels(&format!("job-name={name}")))
        .await
        .unwrap()
        .items
}

async fn wait_job(jobs: &Api<Job>, name: &str, cond: &'static str) -> Job {
    let done = tokio::time::timeout(
        WAIT,
        await_condition(jobs.clone(), name, move |j: Option<&Job>| {
            j.and_then(|j| condition(j, cond))
                .is_some_and(|c| c.status == "True")
        }),
    )
    .await
    .unwrap_or_else(|_| panic!("job {name} never got {cond}"))
    .unwrap();
    done.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_job_runs_to_complete_with_real_looking_status_and_pods() {
    let sim = sim().await;
    let c = client(&sim);
    let jobs: Api<Job> = Api::default_namespaced(c.clone());
    let pods: Api<Pod> = Api::default_namespaced(c.clone());
    let created = jobs
        .create(
            &PostParams::default(),
            &job(
                "migrate",
                json!({"sim.stagegate.dev/log": "first\ndone"}),
                json!({}),
            ),
        )
        .await
        .unwrap();
    let uid = created.metadata.uid.clone().unwrap();
    let spec = created.spec.clone().unwrap();
    assert_eq!(spec.backoff_limit, Some(6));
    assert_eq!(spec.completions, Some(1));
    assert_eq!(spec.parallelism, Some(1));
    let sel = spec.selector.unwrap().match_labels.unwrap();
    assert_eq!(sel.get("batch.kubernetes.io/controller-uid"), Some(&uid));
    let tl = spec.template.metadata.unwrap().labels.unwrap();
    assert_eq!(tl.get("job-name").map(String::as_str), Some("migrate"));
    assert_eq!(tl.get("controller-uid"), Some(&uid));
    assert_eq!(created.metadata.generation, Some(1));

    let done = tokio::time::timeout(
        WAIT,
        await_condition(jobs.clone(), "migrate", conditions::is_job_completed()),
    )
    .await
    .unwrap()
    .unwrap()
    .unwrap();
    let st = done.status.clone().unwrap();
    assert_eq!(st.succeeded, Some(1));
    assert_eq!(st.active, Some(0));
    assert!(st.start_time.is_some() && st.completion_time.is_some());
    assert_eq!(
        condition(&done, "SuccessCriteriaMet").unwrap().status,
        "True"
    );
    assert_eq!(
        condition(&done, "Complete").unwrap().reason.as_deref(),
        Some("CompletionsReached")
    );

    let ps = job_pods(&pods, "migrate").await;
    assert_eq!(ps.len(), 1);
    let pod = &ps[0];
    assert_eq!(
        pod.status.as_ref().unwrap().phase.as_deref(),
        Some("Succeeded")
    );
    let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("Job", uid.as_str(), Some(true))
    );
    let log = pods
        .logs(pod.metadata.name.as_deref().unwrap(), &Default::default())
        .await
        .unwrap();
    assert_eq!(log, "first\ndone\n");
    let tail = kube::api::LogParams {
        tail_lines: Some(1),
        ..Default::default()
    };
    let last = pods
        .logs(pod.metadata.name.as_deref().unwrap(), &tail)
        .await
        .unwrap();
    assert_eq!(last, "done\n");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_job_retries_until_backoff_limit_exceeded() {
    let sim = sim().await;
    let c = client(&sim);
    let jobs: Api<Job> = Api::default_namespaced(c.clone());
    let pods: Api<Pod> = Api::default_namespaced(c.clone());
    let ann = json!({"sim.stagegate.dev/outcome": "fail", "sim.stagegate.dev/duration": "50ms"});
    jobs.create(
        &PostParams::default(),
        &job("broken", ann, json!({"backoffLimit": 4})),
    )
    .await
    .unwrap();
    let failed = wait_job(&jobs, "broken", "Failed").await;
    let c = condition(&failed, "Failed").unwrap();
    assert_eq!(c.reason.as_deref(), Some("BackoffLimitExceeded"));
    assert_eq!(
        c.message.as_deref(),
        Some("Job has reached the specified backoff limit")
    );
    assert_eq!(
        condition(&failed, "FailureTarget")
            .unwrap()
            .reason
            .as_deref(),
        Some("BackoffLimitExceeded")
    );
    assert_eq!(failed.status.as_ref().unwrap().failed, Some(5));
    assert!(condition(&failed, "Complete").is_none());
    let ps = job_pods(&pods, "broken").await;
    assert_eq!(ps.len(), 5, "backoffLimit 4 means five failed pods");
    assert!(
        ps.iter()
            .all(|p| p.status.as_ref().unwrap().phase.as_deref() == Some("Failed"))
    );

    // fail-then-succeed:2 fails twice, then completes with the third pod.
    let ann = json!({"sim.stagegate.dev/outcome": "fail-then-succeed:2", "sim.stagegate.dev/duration": "50ms"});
    jobs.create(&PostParams::default(), &job("flaky", ann, json!({})))
        .await
        .unwrap();
    let done = wait_job(&jobs, "flaky", "Complete").await;
    let st = done.status.unwrap();
    assert_eq!((st.failed, st.succeeded), (Some(2), Some(1)));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_parallelism_suspend_ttl_and_stuck_pods() {
    let sim = sim().await;
    let c = client(&sim);
    let jobs: Api<Job> = Api::default_namespaced(c.clone());
    let pods: Api<Pod> = Api::default_namespaced(c.clone());
    let pp = PostParams::default();

    jobs.create(
        &pp,
        &job(
            "slow",
            json!({"sim.stagegate.dev/duration": "1h"}),
            json!({"activeDeadlineSeconds": 1}),
        ),
    )
    .await
    .unwrap();
    jobs.create(
        &pp,
        &job(
            "wide",
            json!({"sim.stagegate.dev/duration": "100ms"}),
            json!({"completions": 3, "parallelism": 2}),
        ),
    )
    .await
    .unwrap();
    jobs.create(&pp, &job("paused", json!({}), json!({"suspend": true})))
        .await
        .unwrap();
    jobs.create(
        &pp,
        &job(
            "short-lived",
            json!({"sim.stagegate.dev/duration": "50ms"}),
            json!({"ttlSecondsAfterFinished": 0}),
        ),
    )
    .await
    .unwrap();
    jobs.create(
        &pp,
        &job(
            "pull",
            json!({"sim.stagegate.dev/outcome": "image-pull-backoff"}),
            json!({}),
        ),
    )
    .await
    .unwrap();
    jobs.create(
        &pp,
        &job(
            "nowhere",
            json!({"sim.stagegate.dev/outcome": "unschedulable"}),
            json!({}),
        ),
    )
    .await
    .unwrap();

    let slow = wait_job(&jobs, "slow", "Failed").await;
    assert_eq!(
        condition(&slow, "Failed").unwrap().reason.as_deref(),
        Some("DeadlineExceeded")
    );

    let wide = wait_job(&jobs, "wide", "Complete").await;
    assert_eq!(wide.status.unwrap().succeeded, Some(3));

    eventually(
        "the finished job is removed by its TTL, with its pods",
        || async {
            jobs.get_opt("short-lived").await.unwrap().is_none()
                && job_pods(&pods, "short-lived").await.is_empty()
        },
    )
    .await;

    eventually("stuck pods show why", || async {
        let pull = job_pods(&pods, "pull").await;
        let nowhere = job_pods(&pods, "nowhere").await;
        let waiting = pull.first().and_then(|p| {
            let cs = p.status.as_ref()?.container_statuses.as_ref()?;
            cs[0].state.as_ref()?.waiting.as_ref()?.reason.clone()
        });
        let unsched = nowhere.first().and_then(|p| {
            let c = p
                .status
                .as_ref()?
                .conditions
                .as_ref()?
                .iter()
                .find(|c| c.type_ == "PodScheduled")?
                .clone();
            Some((c.status, c.reason))
        });
        waiting.as_deref() == Some("ImagePullBackOff")
            && unsched == Some(("False".into(), Some("Unschedulable".into())))
    })
    .await;
    let pull = jobs.get("pull").await.unwrap();
    assert_eq!(pull.status.unwrap().active, Some(1));

    // Suspended: no pods until resumed.
    assert!(job_pods(&pods, "paused").await.is_empty());
    assert_eq!(
        condition(&jobs.get("paused").await.unwrap(), "Suspended")
            .unwrap()
            .status,
        "True"
    );
    jobs.patch(
        "paused",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"suspend": false}})),
    )
    .await
    .unwrap();
    let resumed = wait_job(&jobs, "paused", "Complete").await;
    let c = condition(&resumed, "Suspended").unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_deref()),
        ("False", Some("JobResumed"))
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_server_side_apply_rolls_out_and_conflicts_are_real() {
    let sim = sim().await;
    let c = client(&sim);
    let deps: Api<Deployment> = Api::default_namespaced(c.clone());
    let manifest = |replicas: i32, image: &str| {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": image}]}}
            }
        })
    };
    let ssa = PatchParams::apply("stagegate");
    let d = deps
        .patch("web", &ssa, &Patch::Apply(manifest(2, "nginx:1")))
        .await
        .unwrap();
    assert_eq!(d.metadata.generation, Some(1));
    let mf = d.metadata.managed_fields.clone().unwrap();
    assert_eq!(
        (mf[0].manager.as_deref(), mf[0].operation.as_deref()),
        (Some("stagegate"), Some("Apply"))
    );
    let done = tokio::time::timeout(
        WAIT,
        await_condition(deps.clone(), "web", conditions::is_deployment_completed()),
    )
    .await
    .unwrap()
    .unwrap()
    .unwrap();
    let st = done.status.unwrap();
    assert_eq!(
        (
            st.observed_generation,
            st.replicas,
            st.ready_replicas,
            st.available_replicas
        ),
        (Some(1), Some(2), Some(2), Some(2))
    );

    // Same config again: nothing changes, not even the resourceVersion.
    let again = deps
        .patch("web", &ssa, &Patch::Apply(manifest(2, "nginx:1")))
        .await
        .unwrap();
    assert_eq!(
        again.metadata.resource_version,
        done.metadata.resource_version
    );

    // A label change is metadata: no new generation. An image change is.
    let mut labelled = manifest(2, "nginx:1");
    labelled["metadata"]["labels"]["tier"] = json!("front");
    let d = deps
        .patch("web", &ssa, &Patch::Apply(labelled))
        .await
        .unwrap();
    assert_eq!(d.metadata.generation, Some(1));
    let d = deps
        .patch("web", &ssa, &Patch::Apply(manifest(2, "nginx:2")))
        .await
        .unwrap();
    assert_eq!(d.metadata.generation, Some(2));
    assert!(
        !d.metadata.labels.unwrap().contains_key("tier"),
        "a field no longer applied is removed"
    );

    // Another manager changing an owned field conflicts unless forced.
    let err = api_error(
        deps.patch(
            "web",
            &PatchParams::apply("other"),
            &Patch::Apply(manifest(4, "nginx:2")),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 409);
    assert_eq!(err.reason, "Conflict");
    assert_eq!(
        err.message,
        "Apply failed with 1 conflict: conflict with \"stagegate\": .spec.replicas"
    );
    let causes = err.details.unwrap().causes;
    assert_eq!(causes[0].field, ".spec.replicas");
    let forced = deps
        .patch(
            "web",
            &PatchParams::apply("other").force(),
            &Patch::Apply(manifest(4, "nginx:2")),
        )
        .await
        .unwrap();
    assert_eq!(forced.spec.unwrap().replicas, Some(4));

    // Selector is immutable, with the real message.
    let mut moved = manifest(4, "nginx:2");
    moved["spec"]["selector"]["matchLabels"]["app"] = json!("other");
    moved["spec"]["template"]["metadata"]["labels"]["app"] = json!("other");
    let err = api_error(
        deps.patch(
            "web",
            &PatchParams::apply("other").force(),
            &Patch::Apply(moved),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 422);
    assert!(
        err.message.starts_with(
            "Deployment.apps \"web\" is invalid: spec.selector: Invalid value: v1.LabelSelector{"
        ),
        "{}",
        err.message
    );
    assert!(
        err.message.ends_with("field is immutable"),
        "{}",
        err.message
    );

    // Writes to the main resource ignore status; /status writes only status.
    // Once the controllers are done with the Deployment (revision, status),
    // nobody else writes it between this get and replace.
    tokio::time::timeout(
        WAIT,
        await_condition(deps.clone(), "web", conditions::is_deployment_completed()),
    )
    .await
    .unwrap()
    .unwrap();
    // A controller may still write between the get and the replace (a 409,
    // as on a real cluster): read again and retry, as a client would.
    let mut attempts = 0;
    let replaced = loop {
        let mut d = deps.get("web").await.unwrap();
        d.status.as_mut().unwrap().replicas = Some(99);
        match deps.replace("web", &PostParams::default(), &d).await {
            Err(kube::Error::Api(e)) if e.code == 409 && attempts < 10 => attempts += 1,
            other => break other.unwrap(),
        }
    };
    assert_ne!(replaced.status.unwrap().replicas, Some(99));
    let st = deps
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"replicas": 7}, "spec": {"replicas": 1}})),
        )
        .await
        .unwrap();
    assert_eq!(
        (st.status.unwrap().replicas, st.spec.unwrap().replicas),
        (Some(7), Some(4))
    );
    // Server-side apply of status, as a controller would: its own manager
    // entry for the status subresource, the spec untouched.
    let st = deps
        .patch_status(
            "web",
            &PatchParams::apply("status-writer").force(),
            &Patch::Apply(json!({"apiVersion": "apps/v1", "kind": "Deployment", "status": {"replicas": 9}, "spec": {"replicas": 1}})),
        )
        .await
        .unwrap();
    assert_eq!(
        (st.status.unwrap().replicas, st.spec.unwrap().replicas),
        (Some(9), Some(4))
    );
    let mf = st.metadata.managed_fields.unwrap();
    let entry = mf
        .iter()
        .find(|m| m.manager.as_deref() == Some("status-writer"))
        .unwrap();
    assert_eq!(
        (entry.operation.as_deref(), entry.subresource.as_deref()),
        (Some("Apply"), Some("status"))
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_objects_through_discovery_including_a_crd() {
    let sim = sim().await;
    let c = client(&sim);
    let crds: Api<DynamicObject> = {
        let d = Discovery::new(c.clone()).run().await.unwrap();
        let (ar, caps) = d
            .resolve_gvk(&kube::api::GroupVersionKind::gvk(
                "apiextensions.k8s.io",
                "v1",
                "CustomResourceDefinition",
            ))
            .unwrap();
        assert_eq!(caps.scope, Scope::Cluster);
        Api::all_with(c.clone(), &ar)
    };
    let crd: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.example.com"},
        "spec": {
            "group": "example.com", "scope": "Namespaced",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
            "versions": [{"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
                          "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]
        }
    }))
    .unwrap();
    crds.patch(
        "gadgets.example.com",
        &PatchParams::apply("stagegate"),
        &Patch::Apply(&crd),
    )
    .await
    .unwrap();
    let got = crds.get("gadgets.example.com").await.unwrap();
    let conds = got.data["status"]["conditions"].as_array().unwrap();
    assert!(
        conds
            .iter()
            .any(|c| c["type"] == "Established" && c["status"] == "True")
    );

    // Both discovery flavours now see the new kind.
    for aggregated in [false, true] {
        let d = Discovery::new(c.clone());
        let d = if aggregated {
            d.run_aggregated().await.unwrap()
        } else {
            d.run().await.unwrap()
        };
        let (ar, caps) = d
            .resolve_gvk(&kube::api::GroupVersionKind::gvk(
                "example.com",
                "v1",
                "Gadget",
            ))
            .unwrap();
        assert_eq!(caps.scope, Scope::Namespaced);
        assert_eq!(ar.plural, "gadgets");
        let jobs = d
            .resolve_gvk(&kube::api::GroupVersionKind::gvk("batch", "v1", "Job"))
            .unwrap();
        assert!(
            jobs.1
                .subresources
                .iter()
                .any(|(s, _)| s.plural == "status"),
            "jobs/status is discovered"
        );
    }
    let d = Discovery::new(c.clone()).run().await.unwrap();
    let (ar, _) = d
        .resolve_gvk(&kube::api::GroupVersionKind::gvk(
            "example.com",
            "v1",
            "Gadget",
        ))
        .unwrap();
    let gadgets: Api<DynamicObject> = Api::namespaced_with(c.clone(), "default", &ar);
    let g: DynamicObject = serde_json::from_value(json!({"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g1"}, "spec": {"size": 1}})).unwrap();
    gadgets
        .patch("g1", &PatchParams::apply("stagegate"), &Patch::Apply(&g))
        .await
        .unwrap();
    assert_eq!(
        gadgets
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    // The status subresource the CRD declares: /status writes only status,
    // the main resource keeps it.
    let st = gadgets
        .patch_status(
            "g1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"ready": true}, "spec": {"size": 9}})),
        )
        .await
        .unwrap();
    assert_eq!(
        (
            st.data["status"]["ready"].clone(),
            st.data["spec"]["size"].clone()
        ),
        (json!(true), json!(1))
    );
    let main = gadgets
        .patch(
            "g1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"ready": false}})),
        )
        .await
        .unwrap();
    assert_eq!(main.data["status"]["ready"], json!(true));
    // Custom resources take merge patches, not strategic ones.
    gadgets
        .patch(
            "g1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 2}})),
        )
        .await
        .unwrap();
    let err = api_error(
        gadgets
            .patch(
                "g1",
                &PatchParams::default(),
                &Patch::Strategic(json!({"spec": {"size": 3}})),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 415);

    // Deleting the CRD removes the kind and its objects.
    crds.delete("gadgets.example.com", &DeleteParams::default())
        .await
        .unwrap();
    let err = api_error(gadgets.get("g1").await.unwrap_err());
    assert_eq!(err.code, 404);
    let d = Discovery::new(c.clone()).run().await.unwrap();
    assert!(
        d.resolve_gvk(&kube::api::GroupVersionKind::gvk(
            "example.com",
            "v1",
            "Gadget"
        ))
        .is_none()
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_relists_after_in_stream_410() {
    let sim = sim().await;
    let c = client(&sim);
    let cms: Api<ConfigMap> = Api::default_namespaced(c.clone());
    let cm = |n: &str| -> ConfigMap {
        serde_json::from_value(json!({"metadata": {"name": n}, "data": {"k": "v"}})).unwrap()
    };
    cms.create(&PostParams::default(), &cm("a")).await.unwrap();

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stream_api = cms.clone();
    let task = tokio::spawn(async move {
        let mut s = watcher(stream_api, watcher::Config::default()).boxed();
        while let Some(ev) = s.next().await {
            let msg = match ev {
                Ok(watcher::Event::Init) => "init".to_string(),
                Ok(watcher::Event::InitApply(o)) => {
                    format!("init-apply {}", o.metadata.name.unwrap())
                }
                Ok(watcher::Event::InitDone) => "init-done".to_string(),
                Ok(watcher::Event::Apply(o)) => format!("apply {}", o.metadata.name.unwrap()),
                Ok(watcher::Event::Delete(o)) => format!("delete {}", o.metadata.name.unwrap()),
                Err(e) => format!("error {e}"),
            };
            if tx.send(msg).is_err() {
                return;
            }
        }
    });
    let mut seen = Vec::new();
    let mut expect = async |what: &str, seen: &mut Vec<String>| {
        let found = tokio::time::timeout(WAIT, async {
            while let Some(m) = rx.recv().await {
                seen.push(m.clone());
                if m == what || m.starts_with(what) {
                    return true;
                }
            }
            false
        })
        .await;
        assert!(
            matches!(found, Ok(true)),
            "never saw {what:?}; saw {seen:?}"
        );
    };
    expect("init-done", &mut seen).await;
    cms.create(&PostParams::default(), &cm("b")).await.unwrap();
    expect("apply b", &mut seen).await;

    // History compacted and watches closed: the re-watch from the last
    // resourceVersion is answered in-stream with 410 Expired, and the
    // watcher relists, finding the object created meanwhile.
    sim.faults().expire_watches();
    cms.create(&PostParams::default(), &cm("c")).await.unwrap();
    expect("error", &mut seen).await;
    assert!(
        seen.last().unwrap().contains("410")
            || seen.last().unwrap().to_lowercase().contains("expired"),
        "{seen:?}"
    );
    expect("init", &mut seen).await;
    expect("init-done", &mut seen).await;
    // c arrives in the relist or, if created after it, as a change.
    if !seen.iter().any(|m| m == "init-apply c") {
        expect("apply c", &mut seen).await;
    }
    task.abort();
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_watch_semantics_expired_bookmarks_and_initial_events() {
    let mut cfg = common::fast_config();
    cfg.watch_history = 5;
    cfg.bookmark_interval = Duration::from_millis(100);
    let sim = kube_sim::KubeSim::start(cfg).await.unwrap();
    let c = client(&sim);
    let cms: Api<ConfigMap> = Api::default_namespaced(c.clone());
    for i in 0..10 {
        let cm: ConfigMap = serde_json::from_value(
            json!({"metadata": {"name": format!("c{i}"), "labels": {"i": i.to_string()}}}),
        )
        .unwrap();
        cms.create(&PostParams::default(), &cm).await.unwrap();
    }
    // Too old: HTTP 200 with an ERROR event carrying a 410 Expired Status.
    let mut s = cms
        .watch(&WatchParams::default().timeout(5), "1")
        .await
        .unwrap()
        .boxed();
    match s.try_next().await.unwrap() {
        Some(WatchEvent::Error(e)) => {
            assert_eq!((e.code, e.reason.as_str()), (410, "Expired"));
        }
        other => panic!("expected 410, got {other:?}"),
    }
    let r = raw(
        &sim,
        "GET",
        "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=1&timeoutSeconds=1",
        &[],
        "",
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.body.starts_with("{\"type\":\"ERROR\""), "{}", r.body);

    // From a recent version: only later changes, filtered by label; bookmarks flow.
    let list = cms.list(&ListParams::default()).await.unwrap();
    let rv = list.metadata.resource_version.unwrap();
    let mut s = cms
        .watch(
            &WatchParams::default().labels("i in (3,4)").timeout(10),
            &rv,
        )
        .await
        .unwrap()
        .boxed();
    cms.patch(
        "c1",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"x": "1"}})),
    )
    .await
    .unwrap();
    cms.patch(
        "c3",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"x": "1"}})),
    )
    .await
    .unwrap();
    cms.patch(
        "c4",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"i": "40"}}})),
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    let mut bookmarks = 0;
    tokio::time::timeout(WAIT, async {
        while let Some(ev) = s.try_next().await.unwrap() {
            match ev {
                WatchEvent::Modified(o) => {
                    got.push(format!("modified {}", o.metadata.name.unwrap()))
                }
                WatchEvent::Deleted(o) => got.push(format!("deleted {}", o.metadata.name.unwrap())),
                WatchEvent::Added(o) => got.push(format!("added {}", o.metadata.name.unwrap())),
                WatchEvent::Bookmark(b) => {
                    assert!(!b.metadata.resource_version.is_empty());
                    bookmarks += 1;
                }
                WatchEvent::Error(e) => panic!("{e:?}"),
            }
            if got.len() == 2 && bookmarks > 0 {
                return;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(
        got,
        ["modified c3", "deleted c4"],
        "leaving the selection is a DELETED"
    );

    // sendInitialEvents: ADDED for everything, then the initial-events-end bookmark.
    let r = raw(
        &sim,
        "GET",
        "/api/v1/namespaces/default/configmaps?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=1",
        &[],
        "",
    )
    .await;
    let lines: Vec<Value> = r
        .body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.iter().filter(|l| l["type"] == "ADDED").count(), 10);
    let end = lines.iter().find(|l| l["type"] == "BOOKMARK").unwrap();
    assert_eq!(
        end["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    assert_eq!(end["object"]["kind"], "ConfigMap");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_real_status_objects() {
    let sim = sim().await;
    let c = client(&sim);
    let jobs: Api<Job> = Api::default_namespaced(c.clone());
    let err = api_error(jobs.get("nope").await.unwrap_err());
    assert_eq!(
        (err.code, err.reason.as_str(), err.message.as_str()),
        (404, "NotFound", "jobs.batch \"nope\" not found")
    );
    let d = err.details.unwrap();
    assert_eq!(
        (d.kind.as_str(), d.group.as_str(), d.name.as_str()),
        ("jobs", "batch", "nope")
    );

    let j = job("pi", json!({"sim.stagegate.dev/duration": "1h"}), json!({}));
    jobs.create(&PostParams::default(), &j).await.unwrap();
    let err = api_error(jobs.create(&PostParams::default(), &j).await.unwrap_err());
    assert_eq!(
        (err.code, err.reason.as_str(), err.message.as_str()),
        (409, "AlreadyExists", "jobs.batch \"pi\" already exists")
    );

    // A stale resourceVersion on PUT.
    let mut current = jobs.get("pi").await.unwrap();
    jobs.patch(
        "pi",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"x": "1"}}})),
    )
    .await
    .unwrap();
    current.metadata.labels = Some([("y".to_string(), "2".to_string())].into());
    let err = api_error(
        jobs.replace("pi", &PostParams::default(), &current)
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 409);
    assert_eq!(
        err.message,
        "Operation cannot be fulfilled on jobs.batch \"pi\": the object has been modified; please apply your changes to the latest version and try again"
    );

    // Template, completions immutable: 422 with causes.
    let err = api_error(
        jobs.patch("pi", &PatchParams::default(), &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "busybox:2"}]}}}})))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 422);
    assert_eq!(err.reason, "Invalid");
    assert_eq!(
        err.message,
        "Job.batch \"pi\" is invalid: spec.template: Invalid value: core.PodTemplateSpec{...}: field is immutable"
    );
    let causes = err.details.unwrap().causes;
    assert_eq!(
        (causes[0].reason.as_str(), causes[0].field.as_str()),
        ("FieldValueInvalid", "spec.template")
    );
    let err = api_error(
        jobs.patch(
            "pi",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"completions": 2}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(
        err.message,
        "Job.batch \"pi\" is invalid: spec.completions: Invalid value: 2: field is immutable"
    );

    // A Job that cannot run: restartPolicy Always.
    let mut bad = job("bad", json!({}), json!({}));
    bad.spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap()
        .restart_policy = Some("Always".into());
    let err = api_error(jobs.create(&PostParams::default(), &bad).await.unwrap_err());
    assert_eq!(err.code, 422);
    assert!(
        err.message
            .contains("spec.template.spec.restartPolicy: Unsupported value: \"Always\""),
        "{}",
        err.message
    );

    // A namespace that does not exist.
    let elsewhere: Api<Job> = Api::namespaced(c.clone(), "missing");
    let err = api_error(
        elsewhere
            .create(&PostParams::default(), &j)
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (err.code, err.message.as_str()),
        (404, "namespaces \"missing\" not found")
    );

    // A failed json-patch test.
    let err = api_error(
        jobs.patch(
            "pi",
            &PatchParams::default(),
            &Patch::<()>::Json(
                serde_json::from_value(
                    json!([{"op": "test", "path": "/metadata/name", "value": "other"}]),
                )
                .unwrap(),
            ),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 422);

    // The ConfigMap size limit the state ConfigMap must stay under.
    let cms: Api<ConfigMap> = Api::default_namespaced(c.clone());
    let big: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "big"}, "data": {"a": "x".repeat(1024 * 1024 + 1)}}),
    )
    .unwrap();
    let err = api_error(cms.create(&PostParams::default(), &big).await.unwrap_err());
    assert_eq!(
        (err.code, err.message.as_str()),
        (
            422,
            "ConfigMap \"big\" is invalid: []: Too long: may not be more than 1048576 bytes"
        )
    );
    let fits: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "fits"}, "data": {"a": "x".repeat(1024 * 1024)}}),
    )
    .unwrap();
    cms.create(&PostParams::default(), &fits).await.unwrap();

    // Unknown kinds are the plain 404.
    let r = raw(
        &sim,
        "GET",
        "/apis/example.com/v1/namespaces/default/things",
        &[],
        "",
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["kind"], "Status");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_validates_returns_and_stores_nothing() {
    let sim = sim().await;
    let c = client(&sim);
    let cms: Api<ConfigMap> = Api::default_namespaced(c.clone());
    let before = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version;
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "dry"}, "data": {"a": "1"}})).unwrap();
    let out = cms
        .create(
            &PostParams {
                dry_run: true,
                ..Default::default()
            },
            &cm,
        )
        .await
        .unwrap();
    assert_eq!(out.metadata.name.as_deref(), Some("dry"));
    let applied = cms
        .patch(
            "dry2",
            &PatchParams::apply("x").dry_run(),
            &Patch::Apply(&cm),
        )
        .await;
    // The URL names dry2, the body dry: refused like the real server.
    assert_eq!(api_error(applied.unwrap_err()).code, 400);
    assert!(cms.get_opt("dry").await.unwrap().is_none());
    let after = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version;
    assert_eq!(before, after, "no write happened");
    cms.create(&PostParams::default(), &cm).await.unwrap();
    cms.delete("dry", &DeleteParams::default().dry_run())
        .await
        .unwrap();
    assert!(cms.get_opt("dry").await.unwrap().is_some());
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_propagation_finalizers_and_namespaces() {
    let sim = sim().await;
    let c = client(&sim);
    let jobs: Api<Job> = Api::default_namespaced(c.clone());
    let pods: Api<Pod> = Api::default_namespaced(c.clone());
    let long = json!({"sim.stagegate.dev/duration": "1h"});
    for n in ["fg", "bg", "orphan"] {
        jobs.create(&PostParams::default(), &job(n, long.clone(), json!({})))
            .await
            .unwrap();
    }
    eventually("three running pods", || async {
        pods.list(&ListParams::default().fields("status.phase=Running"))
            .await
            .unwrap()
            .items
            .len()
            == 3
    })
    .await;

    // Foreground: the Job stays, marked, until its pods are gone.
    // Pending deletion answers with the object, immediate deletion with a Status.
    let answer = jobs
        .delete("fg", &DeleteParams::foreground())
        .await
        .unwrap();
    assert!(answer.is_left());
    let marked = jobs.get("fg").await.unwrap();
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert!(
        marked
            .metadata
            .finalizers
            .unwrap()
            .contains(&"foregroundDeletion".to_string())
    );
    eventually("foreground job gone after its pods", || async {
        jobs.get_opt("fg").await.unwrap().is_none() && job_pods(&pods, "fg").await.is_empty()
    })
    .await;

    let answer = jobs
        .delete("bg", &DeleteParams::background())
        .await
        .unwrap();
    assert!(answer.is_right());
    assert!(jobs.get_opt("bg").await.unwrap().is_none());
    eventually("background job's pods gone", || async {
        job_pods(&pods, "bg").await.is_empty()
    })
    .await;

    jobs.delete("orphan", &DeleteParams::orphan())
        .await
        .unwrap();
    let left = job_pods(&pods, "orphan").await;
    assert_eq!(left.len(), 1);
    assert!(
        left[0]
            .metadata
            .owner_references
            .as_ref()
            .is_none_or(Vec::is_empty)
    );

    // Background with a finalizer on the owner: the pods stay until the
    // owner is really gone, then the garbage collector takes them.
    let mut held_job = job("held-job", long.clone(), json!({}));
    held_job.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    jobs.create(&PostParams::default(), &held_job)
        .await
        .unwrap();
    eventually("held job's pod runs", || async {
        job_pods(&pods, "held-job")
            .await
            .iter()
            .any(|p| p.status.as_ref().unwrap().phase.as_deref() == Some("Running"))
    })
    .await;
    let answer = jobs
        .delete("held-job", &DeleteParams::background())
        .await
        .unwrap();
    assert!(answer.is_left(), "pending on its finalizer");
    let ps = job_pods(&pods, "held-job").await;
    assert!(
        ps.iter().all(|p| p.metadata.deletion_timestamp.is_none()),
        "pods wait for the owner"
    );
    jobs.patch(
        "held-job",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    eventually("held job and its pods gone", || async {
        jobs.get_opt("held-job").await.unwrap().is_none()
            && job_pods(&pods, "held-job").await.is_empty()
    })
    .await;

    // A finalizer holds deletion until it is removed.
    let cms: Api<ConfigMap> = Api::default_namespaced(c.clone());
    let cm: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}),
    )
    .unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    cms.delete("held", &DeleteParams::default()).await.unwrap();
    let held = cms.get("held").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(cms.get_opt("held").await.unwrap().is_none());

    // deletecollection with a label selector.
    for n in ["l1", "l2", "l3"] {
        let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": n, "labels": {"batch": if n == "l3" { "keep" } else { "drop" }}}})).unwrap();
        cms.create(&PostParams::default(), &cm).await.unwrap();
    }
    cms.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("batch=drop"),
    )
    .await
    .unwrap();
    let names: Vec<String> = cms
        .list(&ListParams::default().labels("batch"))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|c| c.metadata.name.unwrap())
        .collect();
    assert_eq!(names, ["l3"]);

    // Deleting a namespace deletes what is in it; new content is refused meanwhile.
    let nss: Api<Namespace> = Api::all(c.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "doomed"}})).unwrap(),
    )
    .await
    .unwrap();
    let in_ns: Api<ConfigMap> = Api::namespaced(c.clone(), "doomed");
    in_ns
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "x", "finalizers": ["example.com/hold"]}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    nss.delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    let ns = nss.get("doomed").await.unwrap();
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Terminating"));
    let err = api_error(
        in_ns
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": "y"}})).unwrap(),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (403, "Forbidden"));
    in_ns
        .patch(
            "x",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    eventually("the namespace is gone", || async {
        nss.get_opt("doomed").await.unwrap().is_none()
    })
    .await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_selectors_and_pagination() {
    let sim = sim().await;
    let c = client(&sim);
    let cms: Api<ConfigMap> = Api::default_namespaced(c.clone());
    for i in 0..7 {
        let tier = if i % 2 == 0 { "front" } else { "back" };
        let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": format!("cm{i}"), "labels": {"tier": tier, "n": i.to_string()}}})).unwrap();
        cms.create(&PostParams::default(), &cm).await.unwrap();
    }
    let names = |l: kube::core::ObjectList<ConfigMap>| {
        l.items
            .into_iter()
            .map(|c| c.metadata.name.unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(
            cms.list(&ListParams::default().labels("tier=back"))
                .await
                .unwrap()
        ),
        ["cm1", "cm3", "cm5"]
    );
    assert_eq!(
        names(
            cms.list(&ListParams::default().labels("tier!=back,n notin (0,2)"))
                .await
                .unwrap()
        ),
        ["cm4", "cm6"]
    );
    assert_eq!(
        names(
            cms.list(&ListParams::default().labels("n in (1, 2)"))
                .await
                .unwrap()
        ),
        ["cm1", "cm2"]
    );
    assert_eq!(
        names(
            cms.list(&ListParams::default().fields("metadata.name=cm3"))
                .await
                .unwrap()
        ),
        ["cm3"]
    );
    assert_eq!(
        names(
            cms.list(
                &ListParams::default()
                    .fields("metadata.name!=cm3,metadata.namespace=default")
                    .labels("tier=back")
            )
            .await
            .unwrap()
        ),
        ["cm1", "cm5"]
    );

    let mut all = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut lp = ListParams::default().limit(3);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = cms.list(&lp).await.unwrap();
        pages += 1;
        assert!(page.metadata.resource_version.is_some());
        token = page.metadata.continue_.clone().filter(|t| !t.is_empty());
        all.extend(names(page));
        if token.is_none() {
            break;
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(all.len(), 7);
    // A continue token from before a compaction has expired.
    let first = cms.list(&ListParams::default().limit(3)).await.unwrap();
    sim.faults().expire_watches();
    let token = first.metadata.continue_.unwrap();
    let err = api_error(
        cms.list(&ListParams::default().limit(3).continue_token(&token))
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (410, "Expired"));

    // Events by involved object.
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::default_namespaced(c.clone());
    for (n, obj) in [("e1", "pi"), ("e2", "other")] {
        let e = json!({"metadata": {"name": n}, "involvedObject": {"kind": "Job", "name": obj, "namespace": "default"}, "reason": "Created", "type": "Normal"});
        events
            .create(&PostParams::default(), &serde_json::from_value(e).unwrap())
            .await
            .unwrap();
    }
    let found = events
        .list(&ListParams::default().fields("involvedObject.kind=Job,involvedObject.name=pi"))
        .await
        .unwrap();
    assert_eq!(found.items.len(), 1);
    let err = api_error(
        cms.list(&ListParams::default().fields("spec.nope=1"))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 400);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strategic_merge_patch_as_kubectl_sends_it() {
    let sim = sim().await;
    let c = client(&sim);
    let deps: Api<Deployment> = Api::default_namespaced(c.clone());
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "d"},
        "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [
            {"name": "one", "image": "x:1", "env": [{"name": "A", "value": "1"}], "ports": [{"containerPort": 80}]},
            {"name": "two", "image": "y:1"}
        ]}}}
    }))
    .unwrap();
    deps.create(&PostParams::default(), &d).await.unwrap();
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "two"}, {"name": "one"}],
        "containers": [
            {"name": "one", "image": "x:2", "$setElementOrder/env": [{"name": "B"}], "env": [{"name": "A", "$patch": "delete"}, {"name": "B", "value": "2"}]}
        ]
    }}}});
    let out = deps
        .patch("d", &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .unwrap();
    let cs = out.spec.unwrap().template.spec.unwrap().containers;
    assert_eq!(
        cs.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["two", "one"]
    );
    assert_eq!(cs[1].image.as_deref(), Some("x:2"));
    assert_eq!(
        cs[1]
            .env
            .as_ref()
            .unwrap()
            .iter()
            .map(|e| e.name.as_str())
            .collect::<Vec<_>>(),
        ["B"]
    );
    assert_eq!(cs[1].ports.as_ref().unwrap()[0].container_port, 80);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn immutable_fields_of_services_statefulsets_and_configmaps() {
    let sim = sim().await;
    let c = client(&sim);
    let svcs: Api<k8s_openapi::api::core::v1::Service> = Api::default_namespaced(c.clone());
    let svc = svcs
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let spec = svc.spec.unwrap();
    let ip = spec.cluster_ip.unwrap();
    assert!(ip.starts_with("10.96."), "{ip}");
    assert_eq!(
        spec.ports.unwrap()[0].target_port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(80))
    );
    let err = api_error(
        svcs.patch(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"clusterIP": "10.96.9.9"}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 422);
    assert_eq!(
        err.message,
        "Service \"s\" is invalid: spec.clusterIP: Invalid value: \"10.96.9.9\": field is immutable"
    );

    let sts: Api<k8s_openapi::api::apps::v1::StatefulSet> = Api::default_namespaced(c.clone());
    sts.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "db"}, "spec": {"serviceName": "db", "selector": {"matchLabels": {"a": "b"}},
            "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "db", "image": "pg"}]}}}}))
        .unwrap(),
    )
    .await
    .unwrap();
    sts.patch(
        "db",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 3}})),
    )
    .await
    .unwrap();
    let err = api_error(
        sts.patch(
            "db",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"serviceName": "other"}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 422);
    assert!(
        err.message
            .contains("spec: Forbidden: updates to statefulset spec for fields other than"),
        "{}",
        err.message
    );

    let cms: Api<ConfigMap> = Api::default_namespaced(c.clone());
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(
            json!({"metadata": {"name": "frozen"}, "immutable": true, "data": {"a": "1"}}),
        )
        .unwrap(),
    )
    .await
    .unwrap();
    let err = api_error(
        cms.patch(
            "frozen",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"a": "2"}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 422);
    cms.patch(
        "frozen",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"ok": "yes"}}})),
    )
    .await
    .unwrap();
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_jobs_at_once_all_complete() {
    let sim = sim().await;
    let c = client(&sim);
    let jobs: Api<Job> = Api::default_namespaced(c.clone());
    futures::stream::iter(0..100)
        .for_each_concurrent(10, |i| {
            let jobs = jobs.clone();
            async move {
                let ann = json!({"sim.stagegate.dev/duration": "100ms"});
                jobs.create(
                    &PostParams::default(),
                    &job(&format!("j{i}"), ann, json!({})),
                )
                .await
                .unwrap();
            }
        })
        .await;
    eventually("all 100 jobs complete", || async {
        let list = jobs.list(&ListParams::default()).await.unwrap();
        list.items
            .iter()
            .filter(|j| condition(j, "Complete").is_some_and(|c| c.status == "True"))
            .count()
            == 100
    })
    .await;
    let pods: Api<Pod> = Api::default_namespaced(c.clone());
    assert_eq!(
        pods.list(&ListParams::default()).await.unwrap().items.len(),
        100
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_with_streaming_lists_and_is_deleted() {
    let sim = sim().await;
    let c = client(&sim);
    let cms: Api<ConfigMap> = Api::default_namespaced(c.clone());
    for n in ["s1", "s2"] {
        cms.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": n}})).unwrap(),
        )
        .await
        .unwrap();
    }
    // sendInitialEvents: the initial state arrives as watch events, ended by
    // the initial-events-end bookmark, with no LIST request at all.
    let lists_before = sim.stats().list;
    let mut s = watcher(cms.clone(), watcher::Config::default().streaming_lists()).boxed();
    let mut names = Vec::new();
    tokio::time::timeout(WAIT, async {
        while let Some(ev) = s.try_next().await.unwrap() {
            match ev {
                watcher::Event::InitApply(o) => names.push(o.metadata.name.unwrap()),
                watcher::Event::InitDone => return,
                _ => {}
            }
        }
    })
    .await
    .unwrap();
    names.sort();
    assert_eq!(names, ["s1", "s2"]);
    assert_eq!(sim.stats().list, lists_before);
    drop(s);

    let uid: &'static str = cms.get("s1").await.unwrap().metadata.uid.unwrap().leak();
    let waiter = tokio::spawn(await_condition(
        cms.clone(),
        "s1",
        conditions::is_deleted(uid),
    ));
    tokio::time::sleep(Duration::from_millis(100)).await;
    cms.delete("s1", &DeleteParams::default()).await.unwrap();
    tokio::time::timeout(WAIT, waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorder_events_are_read_through_both_event_apis() {
    use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
    let sim = sim().await;
    let c = client(&sim);
    let cms: Api<ConfigMap> = Api::default_namespaced(c.clone());
    let cm = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "state"}})).unwrap(),
        )
        .await
        .unwrap();
    let recorder = Recorder::new(
        c.clone(),
        Reporter {
            controller: "stagegate".into(),
            instance: None,
        },
    );
    let ev = KubeEvent {
        type_: EventType::Normal,
        reason: "Applied".into(),
        note: Some("stage pre applied".into()),
        action: "Apply".into(),
        secondary: None,
    };
    let reference = kube::Resource::object_ref(&cm, &());
    recorder.publish(&ev, &reference).await.unwrap();
    recorder.publish(&ev, &reference).await.unwrap();

    let core: Api<k8s_openapi::api::core::v1::Event> = Api::default_namespaced(c.clone());
    let found = core
        .list(
            &ListParams::default()
                .fields("involvedObject.kind=ConfigMap,involvedObject.name=state"),
        )
        .await
        .unwrap();
    assert_eq!(found.items.len(), 1);
    let e = &found.items[0];
    assert_eq!(e.reason.as_deref(), Some("Applied"));
    assert_eq!(e.message.as_deref(), Some("stage pre applied"));
    assert_eq!(
        e.series.as_ref().and_then(|s| s.count),
        Some(2),
        "the second publish updated the series"
    );

    // And the other way: the job-controller's core Events through events.k8s.io.
    let jobs: Api<Job> = Api::default_namespaced(c.clone());
    jobs.create(
        &PostParams::default(),
        &job(
            "evented",
            json!({"sim.stagegate.dev/duration": "50ms"}),
            json!({}),
        ),
    )
    .await
    .unwrap();
    wait_job(&jobs, "evented", "Complete").await;
    let new_api: Api<k8s_openapi::api::events::v1::Event> = Api::default_namespaced(c.clone());
    let reasons: Vec<String> = new_api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("evented"))
        .filter_map(|e| e.reason)
        .collect();
    assert!(
        reasons.contains(&"SuccessfulCreate".to_string())
            && reasons.contains(&"Completed".to_string()),
        "{reasons:?}"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_only_get_list_and_watch() {
    let sim = sim().await;
    let c = client(&sim);
    let cms: Api<ConfigMap> = Api::default_namespaced(c.clone());
    let cm: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "m", "labels": {"a": "b"}}, "data": {"big": "x".repeat(1000)}}),
    )
    .unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    let meta = cms.get_metadata("m").await.unwrap();
    assert_eq!(
        meta.metadata.labels.unwrap().get("a").map(String::as_str),
        Some("b")
    );
    let list = cms
        .list_metadata(&ListParams::default().labels("a=b"))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 1);
    assert!(list.metadata.resource_version.is_some());
    let r = raw(
        &sim,
        "GET",
        "/api/v1/namespaces/default/configmaps",
        &[(
            "accept",
            "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
        )],
        "",
    )
    .await;
    assert!(!r.body.contains("xxxxxxxx"), "metadata only");

    let metas: Api<kube::core::PartialObjectMeta<ConfigMap>> = Api::default_namespaced(c.clone());
    let mut s = watcher(metas, watcher::Config::default()).boxed();
    let mut seen = false;
    tokio::time::timeout(WAIT, async {
        while let Some(ev) = s.try_next().await.unwrap() {
            match ev {
                watcher::Event::InitApply(o) => {
                    assert_eq!(o.metadata.name.as_deref(), Some("m"));
                    seen = true;
                }
                watcher::Event::InitDone => return,
                _ => {}
            }
        }
    })
    .await
    .unwrap();
    assert!(seen);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_ready_node_and_access_reviews_always_allow() {
    let sim = sim().await;
    let c = client(&sim);
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(c.clone());
    let list = nodes.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    let ready = list.items[0]
        .status
        .as_ref()
        .unwrap()
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    assert!(ready);
    let reviews: Api<k8s_openapi::api::authorization::v1::SelfSubjectAccessReview> =
        Api::all(c.clone());
    let review = serde_json::from_value(json!({"spec": {"resourceAttributes": {"verb": "delete", "group": "batch", "resource": "jobs", "namespace": "default"}}})).unwrap();
    let answer = reviews
        .create(&PostParams::default(), &review)
        .await
        .unwrap();
    assert!(answer.status.unwrap().allowed);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_run_on_their_own_annotations_even_without_a_job() {
    let sim = sim().await;
    let c = client(&sim);
    let pods: Api<Pod> = Api::default_namespaced(c.clone());
    let pod = |name: &str, restart: &str, ann: Value| -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "annotations": ann},
            "spec": {"restartPolicy": restart, "containers": [{"name": "c", "image": "busybox"}]}
        }))
        .unwrap()
    };
    pods.create(&PostParams::default(), &pod("server", "Always", json!({})))
        .await
        .unwrap();
    pods.create(
        &PostParams::default(),
        &pod(
            "task",
            "Never",
            json!({"sim.stagegate.dev/duration": "50ms"}),
        ),
    )
    .await
    .unwrap();
    pods.create(
        &PostParams::default(),
        &pod(
            "broken",
            "Never",
            json!({"sim.stagegate.dev/duration": "50ms", "sim.stagegate.dev/outcome": "fail"}),
        ),
    )
    .await
    .unwrap();
    let phase = |p: Pod| p.status.and_then(|s| s.phase).unwrap_or_default();
    eventually("the run-to-completion pods end", || async {
        phase(pods.get("task").await.unwrap()) == "Succeeded"
            && phase(pods.get("broken").await.unwrap()) == "Failed"
    })
    .await;
    let server = pods.get("server").await.unwrap();
    assert_eq!(
        server.spec.as_ref().unwrap().node_name.as_deref(),
        Some("kube-sim-node")
    );
    assert_eq!(
        phase(server),
        "Running",
        "restartPolicy Always runs for ever"
    );

    // A Job deleted with Orphan leaves its pod behind, which still finishes.
    let jobs: Api<Job> = Api::default_namespaced(c.clone());
    jobs.create(
        &PostParams::default(),
        &job(
            "left",
            json!({"sim.stagegate.dev/duration": "500ms"}),
            json!({}),
        ),
    )
    .await
    .unwrap();
    eventually("the job's pod runs", || async {
        job_pods(&pods, "left")
            .await
            .iter()
            .any(|p| p.status.as_ref().unwrap().phase.as_deref() == Some("Running"))
    })
    .await;
    jobs.delete("left", &DeleteParams::orphan()).await.unwrap();
    eventually("the orphan finishes", || async {
        job_pods(&pods, "left")
            .await
            .iter()
            .all(|p| p.status.as_ref().unwrap().phase.as_deref() == Some("Succeeded"))
    })
    .await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cronjobs_are_stored_not_scheduled() {
    let sim = sim().await;
    let c = client(&sim);
    let cjs: Api<k8s_openapi::api::batch::v1::CronJob> = Api::default_namespaced(c.clone());
    let cj = serde_json::from_value(json!({
        "metadata": {"name": "nightly"},
        "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]
        }}}}}
    }))
    .unwrap();
    let created = cjs.create(&PostParams::default(), &cj).await.unwrap();
    assert_eq!(created.spec.unwrap().schedule, "* * * * *");
    let bad = serde_json::from_value(json!({"metadata": {"name": "bad"}, "spec": {"schedule": "", "jobTemplate": {"spec": {"template": {}}}}})).unwrap();
    let err = api_error(cjs.create(&PostParams::default(), &bad).await.unwrap_err());
    assert_eq!(err.code, 422);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let jobs: Api<Job> = Api::default_namespaced(c.clone());
    assert!(
        jobs.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexed_jobs_run_each_index_once() {
    let sim = sim().await;
    let c = client(&sim);
    let jobs: Api<Job> = Api::default_namespaced(c.clone());
    let pods: Api<Pod> = Api::default_namespaced(c.clone());
    let ann = json!({"sim.stagegate.dev/duration": "50ms", "sim.stagegate.dev/outcome": "fail-then-succeed:1"});
    let spec = json!({"completionMode": "Indexed", "completions": 3, "parallelism": 2});
    jobs.create(&PostParams::default(), &job("shards", ann, spec))
        .await
        .unwrap();
    let done = wait_job(&jobs, "shards", "Complete").await;
    let st = done.status.unwrap();
    assert_eq!(st.completed_indexes.as_deref(), Some("0-2"));
    assert_eq!((st.succeeded, st.failed), (Some(3), Some(1)));
    let ps = job_pods(&pods, "shards").await;
    let mut succeeded: Vec<String> = ps
        .iter()
        .filter(|p| p.status.as_ref().unwrap().phase.as_deref() == Some("Succeeded"))
        .map(|p| {
            p.metadata.labels.as_ref().unwrap()["batch.kubernetes.io/job-completion-index"].clone()
        })
        .collect();
    succeeded.sort();
    assert_eq!(succeeded, ["0", "1", "2"]);
    let p0 = ps
        .iter()
        .find(|p| p.metadata.name.as_deref().unwrap().starts_with("shards-0-"))
        .unwrap();
    assert_eq!(
        p0.spec.as_ref().unwrap().hostname.as_deref(),
        Some("shards-0")
    );

    // Indexed without completions is refused.
    let bad = job(
        "bad",
        json!({}),
        json!({"completionMode": "Indexed", "parallelism": 2}),
    );
    let err = api_error(jobs.create(&PostParams::default(), &bad).await.unwrap_err());
    assert_eq!(err.code, 422);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_pods_are_replaced_after_the_configured_backoff() {
    let sim = kube_sim::KubeSim::start(kube_sim::SimConfig {
        job_backoff: Duration::from_millis(300),
        ..kube_sim::SimConfig::fast()
    })
    .await
    .unwrap();
    let c = client(&sim);
    let jobs: Api<Job> = Api::default_namespaced(c.clone());
    let pods: Api<Pod> = Api::default_namespaced(c.clone());
    let ann = json!({"sim.stagegate.dev/outcome": "fail", "sim.stagegate.dev/duration": "20ms"});
    jobs.create(
        &PostParams::default(),
        &job("slowretry", ann, json!({"backoffLimit": 2})),
    )
    .await
    .unwrap();
    wait_job(&jobs, "slowretry", "Failed").await;
    let ms = |p: &Pod, key: &str| -> u128 {
        p.metadata.annotations.as_ref().unwrap()[key]
            .parse()
            .unwrap()
    };
    let mut ps = job_pods(&pods, "slowretry").await;
    assert_eq!(ps.len(), 3);
    ps.sort_by_key(|p| ms(p, "sim.stagegate.dev/attempt"));
    for (i, pair) in ps.windows(2).enumerate() {
        let gap = ms(&pair[1], "sim.stagegate.dev/started-at-ms")
            - ms(&pair[0], "sim.stagegate.dev/finished-at-ms");
        let expected = 300u128 << i;
        assert!(
            gap >= expected,
            "retry {i} came after {gap} ms, before the {expected} ms backoff"
        );
    }
    sim.shutdown().await;
}
