//! Fault injection and request counters, through the library API and the
//! `/sim/` admin paths; discovery on the wire; the binary.

mod common;

use std::time::{Duration, Instant};

use common::{WAIT, client, eventually, raw, sim};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams};
use kube_sim::{FailRule, Verb};
use serde_json::json;

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}})).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_requests_by_verb_and_admin_paths_are_not_counted() {
    let sim = sim().await;
    let c = client(&sim);
    let cms: Api<ConfigMap> = Api::default_namespaced(c.clone());
    let before = sim.stats();
    cms.create(&PostParams::default(), &cm("a")).await.unwrap();
    cms.get("a").await.unwrap();
    cms.list(&ListParams::default()).await.unwrap();
    cms.list(&ListParams::default()).await.unwrap();
    let after = sim.stats();
    assert_eq!(after.create - before.create, 1);
    assert_eq!(after.get - before.get, 1);
    assert_eq!(after.list - before.list, 2);

    let r = raw(&sim, "GET", "/sim/stats", &[], "").await;
    assert_eq!(r.status, 200);
    let v = r.json();
    for verb in [
        "get", "list", "watch", "create", "update", "patch", "delete",
    ] {
        assert!(v["requests"][verb].is_u64(), "{v}");
    }
    assert_eq!(v["requests"]["list"], after.list);
    let again = raw(&sim, "GET", "/sim/stats", &[], "").await.json();
    assert_eq!(again, v, "admin requests are not counted");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_next_requests_by_verb_and_path_from_api_and_admin_path() {
    let sim = sim().await;
    let c = client(&sim);
    let cms: Api<ConfigMap> = Api::default_namespaced(c.clone());
    sim.faults().fail_next(FailRule::new(
        Some(Verb::Create),
        Some("/api/v1/namespaces/default/configmaps"),
        500,
        2,
    ));
    // Other verbs pass.
    cms.list(&ListParams::default()).await.unwrap();
    for _ in 0..2 {
        match cms
            .create(&PostParams::default(), &cm("x"))
            .await
            .unwrap_err()
        {
            kube::Error::Api(s) => assert_eq!((s.code, s.reason.as_str()), (500, "InternalError")),
            e => panic!("{e:?}"),
        }
    }
    cms.create(&PostParams::default(), &cm("x")).await.unwrap();

    let r = raw(
        &sim,
        "POST",
        "/sim/faults/fail",
        &[("content-type", "application/json")],
        r#"{"verb":"get","path":"/api/v1/namespaces/default/configmaps/x","code":409,"count":1}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // (409: kube retries 503s by itself.)
    match cms.get("x").await.unwrap_err() {
        kube::Error::Api(s) => assert_eq!(s.code, 409),
        e => panic!("{e:?}"),
    }
    cms.get("x").await.unwrap();
    let bad = raw(&sim, "POST", "/sim/faults/fail", &[], r#"{"verb":"fly"}"#).await;
    assert_eq!(bad.status, 400);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_and_unreachable_then_recovered() {
    let sim = sim().await;
    let c = client(&sim);
    let cms: Api<ConfigMap> = Api::default_namespaced(c.clone());
    sim.faults().set_latency(Duration::from_millis(300));
    let t = Instant::now();
    cms.list(&ListParams::default()).await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(300));
    let r = raw(
        &sim,
        "POST",
        "/sim/faults/latency",
        &[],
        r#"{"latency":"0s"}"#,
    )
    .await;
    assert_eq!(r.status, 200);

    sim.faults().unreachable_for(Duration::from_secs(1));
    // A fresh connection is closed without an answer.
    let fresh = client(&sim);
    let fresh_cms: Api<ConfigMap> = Api::default_namespaced(fresh);
    assert!(fresh_cms.list(&ListParams::default()).await.is_err());
    // After the window the server answers again.
    eventually("the server is reachable again", || async {
        fresh_cms.list(&ListParams::default()).await.is_ok()
    })
    .await;
    cms.list(&ListParams::default()).await.unwrap();

    // The admin path works the same way.
    let r = raw(
        &sim,
        "POST",
        "/sim/faults/unreachable",
        &[],
        r#"{"duration":"500ms"}"#,
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(fresh_cms.list(&ListParams::default()).await.is_err());
    eventually("reachable after the admin-set window", || async {
        fresh_cms.list(&ListParams::default()).await.is_ok()
    })
    .await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_watches_ends_open_watch_streams() {
    let sim = sim().await;
    let started = Instant::now();
    let sim_ref = &sim;
    let closer = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        sim_ref.faults().close_watches();
    };
    let (r, ()) = tokio::join!(
        raw(
            sim_ref,
            "GET",
            "/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=60",
            &[],
            ""
        ),
        closer
    );
    assert_eq!(r.status, 200);
    assert!(
        started.elapsed() < WAIT,
        "the watch ended when closed, not at its timeout"
    );
    let r2 = raw(&sim, "POST", "/sim/faults/close-watches", &[], "").await;
    assert_eq!(r2.status, 200);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_on_the_wire() {
    let sim = sim().await;
    let v2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
    let r = raw(&sim, "GET", "/apis", &[("accept", v2)], "").await;
    assert_eq!(
        r.header("content-type"),
        Some("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList")
    );
    let doc = r.json();
    assert_eq!(doc["kind"], "APIGroupDiscoveryList");
    let batch = doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["metadata"]["name"] == "batch")
        .unwrap();
    let jobs = batch["versions"][0]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resource"] == "jobs")
        .unwrap();
    assert_eq!(jobs["subresources"][0]["subresource"], "status");

    let r = raw(&sim, "GET", "/apis", &[("accept", "application/json")], "").await;
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json()["kind"], "APIGroupList");
    let core = raw(&sim, "GET", "/api/v1", &[], "").await.json();
    let names: Vec<&str> = core["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"pods/log")
            && names.contains(&"namespaces")
            && names.contains(&"configmaps")
    );
    let version = raw(&sim, "GET", "/version", &[], "").await.json();
    assert_eq!(
        (version["major"].as_str(), version["minor"].as_str()),
        (Some("1"), Some("32"))
    );
    let openapi = raw(&sim, "GET", "/openapi/v3", &[], "").await.json();
    assert!(openapi["paths"]["apis/batch/v1"]["serverRelativeURL"].is_string());
    // kube's `?&` query style is tolerated.
    let r = raw(&sim, "GET", "/api/v1/namespaces?&limit=2", &[], "").await;
    assert_eq!(r.json()["items"].as_array().unwrap().len(), 2);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_writes_the_kubeconfig_once_serving() {
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kube-sim"))
        .args(["--port", "0", "--kubeconfig-out"])
        .arg(&kc)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    eventually("the kubeconfig is written", || async { kc.exists() }).await;
    // Once the file exists the server answers: no retry needed. kube reads
    // the kubeconfig as it would a real cluster's, token and all.
    let kubeconfig = kube::config::Kubeconfig::read_from(&kc).unwrap();
    let options = kube::config::KubeConfigOptions::default();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .unwrap();
    assert_eq!(config.default_namespace, "default");
    let c = kube::Client::try_from(config).unwrap();
    let jobs: kube::Api<k8s_openapi::api::batch::v1::Job> =
        kube::Api::default_namespaced(c.clone());
    jobs.list(&ListParams::default()).await.unwrap();
    let v = c.apiserver_version().await.unwrap();
    assert_eq!(v.minor, "32");
    child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_status_errors_and_the_server_survives() {
    let sim = sim().await;
    let json_ct = [("content-type", "application/json")];
    let base = "/api/v1/namespaces/default/configmaps";
    type Headers<'a> = &'a [(&'a str, &'a str)];
    let cases: Vec<(&str, String, Headers, &str, u16)> = vec![
        ("POST", base.to_string(), &json_ct, "not json", 400),
        (
            "POST",
            base.to_string(),
            &json_ct,
            r#"{"metadata": "x"}"#,
            400,
        ),
        (
            "POST",
            base.to_string(),
            &json_ct,
            r#"{"metadata": {"name": "a", "labels": {"k": 1}}}"#,
            400,
        ),
        (
            "POST",
            base.to_string(),
            &json_ct,
            r#"{"metadata": {"name": "a", "annotations": "x"}}"#,
            400,
        ),
        ("POST", base.to_string(), &json_ct, r#"["list"]"#, 400),
        (
            "POST",
            base.to_string(),
            &json_ct,
            r#"{"kind": "Secret", "metadata": {"name": "a"}}"#,
            400,
        ),
        (
            "POST",
            base.to_string(),
            &json_ct,
            r#"{"metadata": {"name": "Bad_Name"}}"#,
            422,
        ),
        (
            "GET",
            format!("{base}?labelSelector=a%20in%20b"),
            &[],
            "",
            400,
        ),
        ("GET", format!("{base}?limit=abc"), &[], "", 400),
        (
            "GET",
            format!("{base}?limit=1&continue=%C3%A9%C3%A9"),
            &[],
            "",
            400,
        ),
        (
            "GET",
            format!("{base}?watch=1&resourceVersion=notanumber"),
            &[],
            "",
            400,
        ),
        (
            "PATCH",
            format!("{base}/nope"),
            &[("content-type", "text/plain")],
            "{}",
            415,
        ),
        (
            "DELETE",
            format!("{base}/x"),
            &json_ct,
            r#"{"propagationPolicy": "Sideways"}"#,
            400,
        ),
    ];
    for (method, path, headers, body, code) in cases {
        let r = raw(&sim, method, &path, headers, body).await;
        assert_eq!(r.status, code, "{method} {path} {body}: {}", r.body);
        assert_eq!(r.json()["kind"], "Status", "{}", r.body);
    }
    // Objects that exist, then patched into shapes the types cannot hold.
    let ok = raw(
        &sim,
        "POST",
        base,
        &json_ct,
        r#"{"metadata": {"name": "c"}}"#,
    )
    .await;
    assert_eq!(ok.status, 201);
    let merge = [("content-type", "application/merge-patch+json")];
    let r = raw(
        &sim,
        "PATCH",
        &format!("{base}/c"),
        &merge,
        r#""just a string""#,
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = raw(
        &sim,
        "PATCH",
        &format!("{base}/c"),
        &merge,
        r#"{"metadata": {"annotations": "x"}}"#,
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let apply = [("content-type", "application/apply-patch+yaml")];
    let r = raw(
        &sim,
        "PATCH",
        &format!("{base}/c?fieldManager=m"),
        &apply,
        "metadata: x\n",
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = raw(
        &sim,
        "PATCH",
        &format!("{base}/c?fieldManager=m"),
        &apply,
        "{{{",
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    // Still serving.
    let r = raw(&sim, "GET", &format!("{base}/c"), &[], "").await;
    assert_eq!(r.status, 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(raw(&sim, "GET", "/version", &[], "").await.status, 200);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_records_every_change_in_resource_version_order_once_started() {
    let sim = sim().await;
    let c = client(&sim);
    let cms: Api<ConfigMap> = Api::default_namespaced(c.clone());
    cms.create(&PostParams::default(), &cm("before"))
        .await
        .unwrap();
    assert!(sim.history().is_empty(), "nothing is kept before it starts");
    let r = raw(&sim, "POST", "/sim/history/start", &[], "").await;
    assert_eq!(r.status, 200);
    cms.create(&PostParams::default(), &cm("a")).await.unwrap();
    let mut changed = cm("a");
    changed.data = Some([("k".to_string(), "v".to_string())].into());
    cms.replace("a", &PostParams::default(), &changed)
        .await
        .unwrap();
    cms.delete("a", &Default::default()).await.unwrap();
    let history: Vec<_> = sim
        .history()
        .into_iter()
        .filter(|c| c.resource == "configmaps")
        .collect();
    let kinds: Vec<_> = history
        .iter()
        .map(|c| (c.change, c.name.as_str()))
        .collect();
    use kube_sim::ChangeType::*;
    assert_eq!(kinds, [(Created, "a"), (Modified, "a"), (Deleted, "a")]);
    assert!(history.windows(2).all(|w| w[0].rv < w[1].rv));
    assert_eq!(history[1].object["data"]["k"], "v");
    assert_eq!(
        (history[0].group.as_str(), history[0].namespace.as_str()),
        ("", "default")
    );
    let v = raw(&sim, "GET", "/sim/history?resource=configmaps", &[], "")
        .await
        .json();
    let listed: Vec<_> = v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["change"].as_str().unwrap().to_string(),
                c["rv"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected: Vec<_> = history
        .iter()
        .map(|c| {
            (
                serde_json::to_value(c.change)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_string(),
                c.rv,
            )
        })
        .collect();
    assert_eq!(listed, expected);
    sim.shutdown().await;
}

/// A restart keeps every object as it was; a reset loses them all (custom
/// resource definitions too) and leaves what a new cluster holds. Both
/// refuse requests while down; the history orders both sides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_the_data_and_a_reset_loses_it() {
    let sim = sim().await;
    sim.start_history();
    let c = client(&sim);
    let cms: Api<ConfigMap> = Api::default_namespaced(c.clone());
    let kept = cms
        .create(&PostParams::default(), &cm("kept"))
        .await
        .unwrap();

    sim.faults().restart_for(Duration::from_millis(300));
    assert!(sim.faults().is_unreachable());
    eventually("the restarted server answers", || async {
        cms.get_opt("kept").await.is_ok()
    })
    .await;
    let after = cms.get("kept").await.unwrap();
    assert_eq!(after.metadata.uid, kept.metadata.uid);
    assert_eq!(
        after.metadata.resource_version,
        kept.metadata.resource_version
    );

    let last = sim.faults().reset_for(Duration::from_millis(300));
    eventually("the reset server answers", || async {
        cms.get_opt("kept").await.is_ok()
    })
    .await;
    assert!(
        cms.get_opt("kept").await.unwrap().is_none(),
        "the data is gone"
    );
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(c.clone());
    assert!(namespaces.get_opt("default").await.unwrap().is_some());
    cms.create(&PostParams::default(), &cm("new"))
        .await
        .unwrap();
    let history = sim.history();
    let created_new = history
        .iter()
        .find(|h| h.name == "new")
        .expect("the new cluster's change is recorded");
    assert!(created_new.rv > last, "{} after {last}", created_new.rv);
    assert!(history.iter().any(|h| h.name == "kept" && h.rv <= last));
    sim.shutdown().await;
}
