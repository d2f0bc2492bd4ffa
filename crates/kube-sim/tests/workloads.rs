//! Deployments, StatefulSets and DaemonSets with ReplicaSets and pods, as
//! the real kubectl sees them: `get pods`, `rollout status|history|undo`,
//! `scale` and garbage collection.

mod common;

use common::{DEPLOYMENT, Kubectl, eventually, items, json, sim};
use serde_json::Value;

/// The running, non-terminating pods of a label selector.
async fn running(k: &Kubectl, selector: &str) -> Vec<Value> {
    items(&json(k, &["pods", "-l", selector]).await)
        .into_iter()
        .filter(|p| {
            p["status"]["phase"] == "Running" && p["metadata"]["deletionTimestamp"].is_null()
        })
        .collect()
}

async fn wait_running(k: &Kubectl, selector: &str, n: usize, image: &str) {
    eventually(
        &format!("{n} running pods of {selector} with {image}"),
        || async {
            let pods = running(k, selector).await;
            pods.len() == n
                && pods
                    .iter()
                    .all(|p| p["spec"]["containers"][0]["image"] == image)
                && items(&json(k, &["pods", "-l", selector]).await).len() == n
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_owns_a_replicaset_that_owns_its_pods() {
    let sim = sim().await;
    let k = Kubectl::new(&sim);
    let f = k.file("web.yaml", DEPLOYMENT);
    k.ok(&["apply", "-f", f.to_str().unwrap()]).await;
    let rolled = k
        .ok(&["rollout", "status", "deployment/web", "--timeout=30s"])
        .await;
    assert!(rolled.contains("successfully rolled out"), "{rolled}");
    wait_running(&k, "app=web", 2, "nginx:1.27").await;

    let dep = json(&k, &["deployment", "web"]).await;
    assert_eq!(
        dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "1"
    );
    let sets = items(&json(&k, &["replicasets", "-l", "app=web"]).await);
    assert_eq!(sets.len(), 1, "{sets:?}");
    let rs = &sets[0];
    let hash = rs["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(rs["metadata"]["name"], format!("web-{hash}"));
    assert_eq!(rs["metadata"]["ownerReferences"][0]["kind"], "Deployment");
    assert_eq!(
        rs["metadata"]["ownerReferences"][0]["uid"],
        dep["metadata"]["uid"]
    );
    assert_eq!(
        rs["spec"]["selector"]["matchLabels"]["pod-template-hash"],
        hash.as_str()
    );
    assert_eq!(
        rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "1"
    );
    // The Deployment's progress message names the ReplicaSet.
    let progressing = dep["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Progressing")
        .cloned()
        .unwrap();
    assert!(
        progressing["message"]
            .as_str()
            .unwrap()
            .contains(&format!("web-{hash}")),
        "{progressing}"
    );
    for pod in running(&k, "app=web").await {
        let name = pod["metadata"]["name"].as_str().unwrap();
        assert!(name.starts_with(&format!("web-{hash}-")), "{name}");
        assert_eq!(
            pod["metadata"]["labels"]["pod-template-hash"],
            hash.as_str()
        );
        assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "ReplicaSet");
        assert_eq!(
            pod["metadata"]["ownerReferences"][0]["uid"],
            rs["metadata"]["uid"]
        );
    }
    let table = k.ok(&["get", "pods"]).await;
    assert_eq!(table.matches("Running").count(), 2, "{table}");

    // Scaling changes the pods, not the revision.
    k.ok(&["scale", "deployment/web", "--replicas=3"]).await;
    wait_running(&k, "app=web", 3, "nginx:1.27").await;
    k.ok(&["scale", "deployment/web", "--replicas=1"]).await;
    wait_running(&k, "app=web", 1, "nginx:1.27").await;

    // Garbage collection: the ReplicaSet and the pods go with the Deployment.
    k.ok(&["delete", "deployment", "web"]).await;
    eventually("the ReplicaSet and pods are collected", || async {
        items(&json(&k, &["replicasets"]).await).is_empty()
            && items(&json(&k, &["pods"]).await).is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_history_and_undo_replace_replicasets() {
    let sim = sim().await;
    let k = Kubectl::new(&sim);
    let f = k.file("web.yaml", DEPLOYMENT);
    k.ok(&["apply", "-f", f.to_str().unwrap()]).await;
    wait_running(&k, "app=web", 2, "nginx:1.27").await;
    k.ok(&["set", "image", "deployment/web", "web=nginx:1.28"])
        .await;
    k.ok(&[
        "annotate",
        "deployment/web",
        "kubernetes.io/change-cause=bump to 1.28",
    ])
    .await;
    k.ok(&["rollout", "status", "deployment/web", "--timeout=30s"])
        .await;
    wait_running(&k, "app=web", 2, "nginx:1.28").await;
    let sets = items(&json(&k, &["replicasets", "-l", "app=web"]).await);
    assert_eq!(sets.len(), 2, "{sets:?}");
    let old = sets
        .iter()
        .find(|rs| rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1")
        .unwrap();
    assert_eq!(old["spec"]["replicas"], 0);

    let history = k.ok(&["rollout", "history", "deployment/web"]).await;
    assert!(history.contains("REVISION"), "{history}");
    assert!(
        history.lines().any(|l| l.trim().starts_with('1')),
        "{history}"
    );
    assert!(
        history
            .lines()
            .any(|l| l.trim().starts_with('2') && l.contains("bump to 1.28")),
        "{history}"
    );
    let rev1 = k
        .ok(&["rollout", "history", "deployment/web", "--revision=1"])
        .await;
    assert!(rev1.contains("nginx:1.27"), "{rev1}");

    let undone = k.ok(&["rollout", "undo", "deployment/web"]).await;
    assert!(undone.contains("rolled back"), "{undone}");
    wait_running(&k, "app=web", 2, "nginx:1.27").await;
    // The first ReplicaSet is back, as revision 3.
    let revived = json(
        &k,
        &["replicaset", old["metadata"]["name"].as_str().unwrap()],
    )
    .await;
    assert_eq!(
        revived["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "3"
    );
    assert_eq!(revived["spec"]["replicas"], 2);
    let dep = json(&k, &["deployment", "web"]).await;
    assert_eq!(
        dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "3"
    );
    let history = k.ok(&["rollout", "history", "deployment/web"]).await;
    assert!(
        history.lines().any(|l| l.trim().starts_with('3')),
        "{history}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_rollout_leaves_a_pod_that_never_gets_ready() {
    let sim = sim().await;
    let k = Kubectl::new(&sim);
    let f = k.file("web.yaml", DEPLOYMENT);
    k.ok(&["apply", "-f", f.to_str().unwrap()]).await;
    wait_running(&k, "app=web", 2, "nginx:1.27").await;
    k.ok(&[
        "annotate",
        "deployment/web",
        "sim.stagegate.dev/rollout=hang",
    ])
    .await;
    k.ok(&["set", "image", "deployment/web", "web=nginx:broken"])
        .await;
    eventually("a new pod stuck in ImagePullBackOff", || async {
        items(&json(&k, &["pods", "-l", "app=web"]).await)
            .iter()
            .any(|p| {
                p["spec"]["containers"][0]["image"] == "nginx:broken"
                    && p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
                        == "ImagePullBackOff"
            })
    })
    .await;
    // The old pods keep serving.
    assert_eq!(running(&k, "app=web").await.len(), 2);
    let err = k
        .fails(&["rollout", "status", "deployment/web", "--timeout=1s"])
        .await;
    assert!(err.contains("timed out"), "{err}");
}

const STATEFULSET: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
spec:
  serviceName: db
  replicas: 2
  selector:
    matchLabels: {app: db}
  template:
    metadata:
      labels: {app: db}
    spec:
      containers:
      - name: db
        image: postgres:16
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statefulset_has_ordinal_pods_and_rolls_them() {
    let sim = sim().await;
    let k = Kubectl::new(&sim);
    let f = k.file("db.yaml", STATEFULSET);
    k.ok(&["apply", "-f", f.to_str().unwrap()]).await;
    wait_running(&k, "app=db", 2, "postgres:16").await;
    let pod = json(&k, &["pod", "db-0"]).await;
    assert_eq!(
        pod["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"],
        "db-0"
    );
    assert_eq!(
        pod["metadata"]["labels"]["apps.kubernetes.io/pod-index"],
        "0"
    );
    assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "StatefulSet");
    assert_eq!(pod["spec"]["hostname"], "db-0");
    assert_eq!(pod["spec"]["subdomain"], "db");
    json(&k, &["pod", "db-1"]).await;

    k.ok(&["set", "image", "statefulset/db", "db=postgres:17"])
        .await;
    k.ok(&["rollout", "status", "statefulset/db", "--timeout=30s"])
        .await;
    wait_running(&k, "app=db", 2, "postgres:17").await;
    k.ok(&["scale", "statefulset/db", "--replicas=1"]).await;
    wait_running(&k, "app=db", 1, "postgres:17").await;
    json(&k, &["pod", "db-0"]).await;
    k.ok(&["delete", "statefulset", "db"]).await;
    eventually("the pods are collected", || async {
        items(&json(&k, &["pods"]).await).is_empty()
    })
    .await;
}

const DAEMONSET: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
spec:
  selector:
    matchLabels: {app: agent}
  template:
    metadata:
      labels: {app: agent}
    spec:
      containers:
      - name: agent
        image: fluent-bit:3
"#;

const NODE: &str = r#"
apiVersion: v1
kind: Node
metadata:
  name: worker-1
  labels: {kubernetes.io/hostname: worker-1}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemonset_runs_one_pod_per_node() {
    let sim = sim().await;
    let k = Kubectl::new(&sim);
    let f = k.file("agent.yaml", DAEMONSET);
    k.ok(&["apply", "-f", f.to_str().unwrap()]).await;
    wait_running(&k, "app=agent", 1, "fluent-bit:3").await;
    let pod = &running(&k, "app=agent").await[0];
    assert_eq!(pod["spec"]["nodeName"], "kube-sim-node");
    assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "DaemonSet");

    let node = k.file("node.yaml", NODE);
    k.ok(&["apply", "-f", node.to_str().unwrap()]).await;
    wait_running(&k, "app=agent", 2, "fluent-bit:3").await;
    eventually("the DaemonSet's status counts both nodes", || async {
        let ds = json(&k, &["daemonset", "agent"]).await;
        ds["status"]["desiredNumberScheduled"] == 2 && ds["status"]["numberReady"] == 2
    })
    .await;
    let nodes: Vec<Value> = running(&k, "app=agent")
        .await
        .iter()
        .map(|p| p["spec"]["nodeName"].clone())
        .collect();
    assert!(nodes.contains(&Value::from("worker-1")), "{nodes:?}");

    k.ok(&["set", "image", "daemonset/agent", "agent=fluent-bit:4"])
        .await;
    wait_running(&k, "app=agent", 2, "fluent-bit:4").await;
    k.ok(&["delete", "node", "worker-1"]).await;
    wait_running(&k, "app=agent", 1, "fluent-bit:4").await;
}

const HELD_JOB: &str = r#"
apiVersion: batch/v1
kind: Job
metadata:
  name: held
  finalizers: ["example.com/outcome"]
spec:
  ttlSecondsAfterFinished: 0
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: busybox:1.36
"#;

/// As a real API server: the TTL controller's deletion of a finished Job
/// only marks it while a finalizer holds it; no finalizer can be added
/// then; the Job goes when the last one is removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finalizer_keeps_a_finished_job_past_its_ttl_until_it_is_removed() {
    let sim = sim().await;
    let k = Kubectl::new(&sim);
    let f = k.file("held.yaml", HELD_JOB);
    k.ok(&["apply", "-f", f.to_str().unwrap()]).await;
    eventually(
        "the TTL controller marks the finished Job deleted",
        || async {
            let job = json(&k, &["job", "held"]).await;
            !job["metadata"]["deletionTimestamp"].is_null()
        },
    )
    .await;
    let job = json(&k, &["job", "held"]).await;
    let complete = job["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Complete" && c["status"] == "True")
    });
    assert!(complete, "its status is still there to read: {job}");

    let refused = k
        .fails(&[
            "patch",
            "job",
            "held",
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":["example.com/outcome","example.com/more"]}}"#,
        ])
        .await;
    assert!(
        refused.contains("no new finalizers can be added if the object is being deleted"),
        "{refused}"
    );

    k.ok(&[
        "patch",
        "job",
        "held",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers/0"}]"#,
    ])
    .await;
    eventually("the released Job is gone", || async {
        let out = k
            .run(&["get", "job", "held", "--ignore-not-found", "-o", "name"])
            .await;
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim().is_empty()
    })
    .await;
    sim.shutdown().await;
}
