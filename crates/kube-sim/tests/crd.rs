//! Custom resources as kubectl sees them, with a CRD shaped like stagegate's
//! `Stage`: printer columns (and `-o wide`), the status subresource with
//! generation and observedGeneration, `kubectl wait --for=condition=Ready`,
//! `kubectl get -w` and `kubectl describe`.

mod common;

use std::time::Duration;

use common::{Kubectl, eventually, sim};
use serde_json::{Value, json};

pub const STAGE_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: stages.stagegate.dev
spec:
  group: stagegate.dev
  scope: Namespaced
  names: {kind: Stage, plural: stages, singular: stage, listKind: StageList, shortNames: [stg]}
  versions:
  - name: v1alpha1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Ready, type: string, jsonPath: '.status.conditions[?(@.type=="Ready")].status'}
    - {name: Phase, type: string, jsonPath: .status.phase}
    - {name: Revision, type: string, jsonPath: .status.lastAppliedRevision}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
    - {name: Message, type: string, jsonPath: '.status.conditions[?(@.type=="Ready")].message'}
    - {name: Attempted, type: string, priority: 1, jsonPath: .status.lastAttemptedRevision}
    - {name: Depends-On, type: string, priority: 1, jsonPath: .spec.dependsOn}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [path]
            properties:
              path: {type: string}
              dependsOn: {type: array, items: {type: string}}
              timeout: {type: string}
              suspend: {type: boolean}
              retries: {type: integer, minimum: 0, maximum: 10}
              wait: {type: string, enum: ["true", "false", "jobs"]}
          status:
            type: object
            properties:
              observedGeneration: {type: integer}
              phase: {type: string}
              lastAppliedRevision: {type: string}
              lastAttemptedRevision: {type: string}
              conditions:
                type: array
                items:
                  type: object
                  required: [type, status]
                  properties:
                    type: {type: string}
                    status: {type: string}
                    reason: {type: string}
                    message: {type: string}
                    lastTransitionTime: {type: string, format: date-time}
              inventory:
                type: object
                x-kubernetes-preserve-unknown-fields: true
"#;

const PRE: &str = r#"
apiVersion: stagegate.dev/v1alpha1
kind: Stage
metadata: {name: pre}
spec: {path: ./pre}
---
apiVersion: stagegate.dev/v1alpha1
kind: Stage
metadata: {name: application}
spec: {path: ./application, dependsOn: [pre]}
"#;

async fn with_crd() -> (kube_sim::KubeSim, Kubectl) {
    let sim = sim().await;
    let k = Kubectl::new(&sim);
    let crd = k.file("crd.yaml", STAGE_CRD);
    k.ok(&["apply", "-f", crd.to_str().unwrap()]).await;
    k.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/stages.stagegate.dev",
    ])
    .await;
    (sim, k)
}

async fn generation(k: &Kubectl, name: &str) -> String {
    k.ok(&[
        "get",
        "stage",
        name,
        "-o",
        "jsonpath={.metadata.generation}",
    ])
    .await
}

/// Writes the status of `name` as the agent would, through `/status`.
async fn set_status(k: &Kubectl, name: &str, status: Value) {
    let patch = json!({ "status": status }).to_string();
    k.ok(&[
        "patch",
        "stage",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        &patch,
    ])
    .await;
}

fn ready(status: &str, reason: &str, message: &str) -> Value {
    json!({"type": "Ready", "status": status, "reason": reason, "message": message,
           "lastTransitionTime": "2026-01-01T00:00:00Z"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn printer_columns_read_like_flux_and_wide_adds_priority_columns() {
    let (sim, k) = with_crd().await;
    let f = k.file("stages.yaml", PRE);
    k.ok(&["apply", "-f", f.to_str().unwrap()]).await;
    set_status(
        &k,
        "pre",
        json!({"phase": "Ready", "lastAppliedRevision": "main@sha1:abc", "lastAttemptedRevision": "main@sha1:abc",
               "conditions": [ready("True", "Succeeded", "3 objects applied")]}),
    )
    .await;
    let out = k.ok(&["get", "stg"]).await;
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "READY", "PHASE", "REVISION", "AGE", "MESSAGE"],
        "{out}"
    );
    let pre = out.lines().find(|l| l.starts_with("pre ")).unwrap();
    assert!(
        pre.contains("True") && pre.contains("Ready") && pre.contains("main@sha1:abc"),
        "{out}"
    );
    assert!(pre.ends_with("3 objects applied"), "{out}");
    // Missing values are null cells, which kubectl leaves blank.
    let app: Vec<&str> = out
        .lines()
        .find(|l| l.starts_with("application "))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(app.len(), 2, "only NAME and AGE: {out}");

    let wide = k.ok(&["get", "stages", "-o", "wide"]).await;
    let header: Vec<&str> = wide.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header.last(), Some(&"DEPENDS-ON"), "{wide}");
    assert!(header.contains(&"ATTEMPTED"), "{wide}");
    let app = wide
        .lines()
        .find(|l| l.starts_with("application "))
        .unwrap();
    assert!(app.contains(r#"["pre"]"#), "{wide}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_subresource_keeps_spec_and_status_apart_and_generation_follows_spec() {
    let (sim, k) = with_crd().await;
    let f = k.file("stages.yaml", PRE);
    k.ok(&["apply", "-f", f.to_str().unwrap()]).await;
    assert_eq!(generation(&k, "pre").await, "1");
    // A status write changes neither spec nor generation…
    set_status(
        &k,
        "pre",
        json!({"observedGeneration": 1, "phase": "Ready"}),
    )
    .await;
    assert_eq!(generation(&k, "pre").await, "1");
    // …and a status sent to the main resource is ignored.
    k.ok(&[
        "patch",
        "stage",
        "pre",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Hacked"}}"#,
    ])
    .await;
    let phase = k
        .ok(&["get", "stage", "pre", "-o", "jsonpath={.status.phase}"])
        .await;
    assert_eq!(phase, "Ready");
    // A spec change bumps generation; observedGeneration now lags behind.
    k.ok(&[
        "patch",
        "stage",
        "pre",
        "--type=merge",
        "-p",
        r#"{"spec":{"timeout":"5m"}}"#,
    ])
    .await;
    assert_eq!(generation(&k, "pre").await, "2");
    let observed = k
        .ok(&[
            "get",
            "stage",
            "pre",
            "-o",
            "jsonpath={.status.observedGeneration}",
        ])
        .await;
    assert_eq!(observed, "1");
    // Labels and annotations are metadata: no bump.
    k.ok(&["annotate", "stage", "pre", "stagegate.dev/rerun=db-migrate"])
        .await;
    assert_eq!(generation(&k, "pre").await, "2");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_ready_watch_and_describe_a_custom_resource() {
    let (sim, k) = with_crd().await;
    let f = k.file("stages.yaml", PRE);
    k.ok(&["apply", "-f", f.to_str().unwrap()]).await;

    // `kubectl get -w` prints a row per change, with the printer columns.
    let dir = tempfile::tempdir().unwrap();
    let watch_out = dir.path().join("watch.txt");
    let mut watcher = std::process::Command::new("kubectl");
    watcher
        .args([
            "--kubeconfig",
            k.file("kubeconfig-copy", &sim.kubeconfig_yaml())
                .to_str()
                .unwrap(),
        ])
        .arg("--cache-dir")
        .arg(dir.path().join("cache"))
        .args(["get", "stages", "-w", "--request-timeout=0"])
        .env_remove("KUBECONFIG")
        .stdout(std::fs::File::create(&watch_out).unwrap());
    let mut watcher = watcher.spawn().expect("kubectl");

    let wait = {
        let k = Kubectl::new(&sim);
        tokio::spawn(async move {
            let out = k
                .run(&[
                    "wait",
                    "--for=condition=Ready",
                    "stage/pre",
                    "--timeout=60s",
                ])
                .await;
            (out, k)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    set_status(
        &k,
        "pre",
        json!({"phase": "Running", "conditions": [ready("Unknown", "Progressing", "applying")]}),
    )
    .await;
    set_status(
        &k,
        "pre",
        json!({"phase": "Ready", "lastAppliedRevision": "main@sha1:def",
                                 "conditions": [ready("True", "Succeeded", "2 objects applied")]}),
    )
    .await;
    let (out, _k) = wait.await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("stage.stagegate.dev/pre condition met"));

    eventually("the watch shows the Ready row", || {
        let text = std::fs::read_to_string(&watch_out).unwrap_or_default();
        async move {
            text.lines().any(|l| {
                l.starts_with("pre ")
                    && l.contains("main@sha1:def")
                    && l.contains("2 objects applied")
            })
        }
    })
    .await;
    let _ = watcher.kill();
    let _ = watcher.wait();
    let text = std::fs::read_to_string(&watch_out).unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("pre ") && l.contains("Running")),
        "{text}"
    );

    // describe: spec, status and conditions of the custom resource.
    let out = k.ok(&["describe", "stage", "pre"]).await;
    for want in [
        "Name:         pre",
        "API Version:  stagegate.dev/v1alpha1",
        "Kind:         Stage",
        "Path:  ./pre",
        "Phase:",
        "Ready",
        "2 objects applied",
    ] {
        assert!(out.contains(want), "describe lacks {want:?}:\n{out}");
    }
    sim.shutdown().await;
}
