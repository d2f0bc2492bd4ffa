//! Schema validation and `fieldValidation`, as kubectl meets them: custom
//! resources against their CRD's structural schema (422 Invalid with every
//! cause; unknown fields refused by kubectl's default Strict, warned with
//! `--validate=warn`, dropped with `--validate=false`; preserved where the
//! schema says `x-kubernetes-preserve-unknown-fields`).

mod common;

use common::{Kubectl, client, sim};
use kube::api::{Api, DynamicObject, GroupVersionKind, PostParams};
use serde_json::json;

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: stages.stagegate.dev}
spec:
  group: stagegate.dev
  scope: Namespaced
  names: {kind: Stage, plural: stages, singular: stage, shortNames: [stg]}
  versions:
  - name: v1alpha1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [path]
            properties:
              path: {type: string}
              retries: {type: integer, minimum: 0, maximum: 10}
              wait: {type: string, enum: ["true", "false", "jobs"]}
              substitute: {type: object, additionalProperties: {type: string}}
          status:
            type: object
            x-kubernetes-preserve-unknown-fields: true
"#;

async fn with_crd() -> (kube_sim::KubeSim, Kubectl) {
    let sim = sim().await;
    let k = Kubectl::new(&sim);
    let crd = k.file("crd.yaml", CRD);
    k.ok(&["apply", "-f", crd.to_str().unwrap()]).await;
    (sim, k)
}

fn stage(spec: &str) -> String {
    format!(
        "apiVersion: stagegate.dev/v1alpha1\nkind: Stage\nmetadata: {{name: pre}}\nspec: {spec}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_resources_are_validated_against_their_schema() {
    let (sim, k) = with_crd().await;
    let bad = k.file(
        "bad.yaml",
        &stage(r#"{retries: -1, wait: maybe, substitute: {TAG: 1}}"#),
    );
    let err = k.fails(&["apply", "-f", bad.to_str().unwrap()]).await;
    assert!(err.contains(r#"The Stage "pre" is invalid: "#), "{err}");
    for cause in [
        "spec.path: Required value",
        "spec.retries: Invalid value: -1: spec.retries in body should be greater than or equal to 0",
        r#"spec.substitute.TAG: Invalid value: 1: spec.substitute.TAG in body must be of type string: "integer""#,
        r#"spec.wait: Unsupported value: "maybe": supported values: "true", "false", "jobs""#,
    ] {
        assert!(err.contains(cause), "missing {cause:?} in {err}");
    }
    let out = k.run(&["get", "stage", "pre"]).await;
    assert!(!out.status.success(), "nothing was stored");
    let good = k.file("good.yaml", &stage("{path: ./pre, retries: 3, wait: jobs}"));
    k.ok(&["apply", "-f", good.to_str().unwrap()]).await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_fields_follow_field_validation() {
    let (sim, k) = with_crd().await;
    let typo = k.file("typo.yaml", &stage("{path: ./pre, retires: 3}"));
    let typo = typo.to_str().unwrap();
    // kubectl's default is Strict.
    let err = k.fails(&["create", "-f", typo]).await;
    assert!(
        err.contains(r#"Stage in version "v1alpha1" cannot be handled as a Stage: strict decoding error: unknown field "spec.retires""#),
        "{err}"
    );
    // Warn: created, the field dropped, kubectl prints the server's warning.
    let out = k.run(&["create", "--validate=warn", "-f", typo]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(r#"Warning: unknown field "spec.retires""#),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let spec = k
        .ok(&["get", "stage", "pre", "-o", "jsonpath={.spec}"])
        .await;
    assert_eq!(spec, r#"{"path":"./pre"}"#);
    // Ignore: dropped without a word.
    k.ok(&["delete", "stage", "pre"]).await;
    let out = k.run(&["create", "--validate=false", "-f", typo]).await;
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("Warning"));

    // A client that sends no fieldValidation (kube-rs) gets the API default, Warn.
    let api: Api<DynamicObject> = Api::namespaced_with(
        client(&sim),
        "default",
        &kube::discovery::ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("stagegate.dev", "v1alpha1", "Stage"),
            "stages",
        ),
    );
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "stagegate.dev/v1alpha1", "kind": "Stage",
        "metadata": {"name": "other"}, "spec": {"path": "x", "colour": "blue"},
    }))
    .unwrap();
    let created = api.create(&PostParams::default(), &obj).await.unwrap();
    assert_eq!(created.data["spec"], json!({"path": "x"}));

    // The status is preserved as written (x-kubernetes-preserve-unknown-fields).
    k.ok(&[
        "patch",
        "stage",
        "other",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"jobs":{"db-migrate":{"attempts":2}}}}"#,
    ])
    .await;
    let attempts = k
        .ok(&[
            "get",
            "stage",
            "other",
            "-o",
            "jsonpath={.status.jobs.db-migrate.attempts}",
        ])
        .await;
    assert_eq!(attempts, "2");
    sim.shutdown().await;
}

const JOB: &str = r#"
apiVersion: batch/v1
kind: Job
metadata: {name: db-migrate}
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: migrate
        image: registry.example.com/shop/app:1.4.2
        volumeMounts: [{name: creds, mountPath: /creds}]
      volumes:
      - name: creds
        secret: {secretName: db, defaultMode: DEFAULT_MODE}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn built_in_kinds_are_decoded_into_their_real_types() {
    let sim = sim().await;
    let k = Kubectl::new(&sim);
    // A rendered `defaultMode: "0400"` (a string) is refused as a real server does.
    let bad = k.file("bad.yaml", &JOB.replace("DEFAULT_MODE", r#""0400""#));
    for how in [
        &["apply"][..],
        &["apply", "--server-side"][..],
        &["create"][..],
    ] {
        let mut args = how.to_vec();
        args.extend(["-f", bad.to_str().unwrap()]);
        let err = k.fails(&args).await;
        assert!(
            err.contains(r#"Job in version "v1" cannot be handled as a Job: json: cannot unmarshal string into Go struct field spec.template.spec.volumes.secret.defaultMode of type int32"#),
            "{how:?}: {err}"
        );
    }
    let good = k.file("good.yaml", &JOB.replace("DEFAULT_MODE", "0400"));
    k.ok(&["apply", "-f", good.to_str().unwrap()]).await;
    let mode = k
        .ok(&[
            "get",
            "job",
            "db-migrate",
            "-o",
            "jsonpath={.spec.template.spec.volumes[0].secret.defaultMode}",
        ])
        .await;
    assert_eq!(mode, "256", "YAML's 0400 is octal");

    // An unknown field in a container: Strict by default, a warning when asked.
    let typo = JOB
        .replace("DEFAULT_MODE", "0400")
        .replace("name: db-migrate", "name: typo")
        .replace(
            "        image:",
            "        imagePullPolicyy: Always\n        image:",
        );
    let typo = k.file("typo.yaml", &typo);
    let err = k.fails(&["apply", "-f", typo.to_str().unwrap()]).await;
    assert!(
        err.contains(r#"strict decoding error: unknown field "spec.template.spec.containers[0].imagePullPolicyy""#),
        "{err}"
    );
    let out = k
        .run(&["apply", "--validate=warn", "-f", typo.to_str().unwrap()])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            r#"Warning: unknown field "spec.template.spec.containers[0].imagePullPolicyy""#
        ),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let container = k
        .ok(&[
            "get",
            "job",
            "typo",
            "-o",
            "jsonpath={.spec.template.spec.containers[0]}",
        ])
        .await;
    assert!(!container.contains("imagePullPolicyy"), "{container}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_out_of_range_are_invalid() {
    let sim = sim().await;
    let k = Kubectl::new(&sim);
    let job = JOB.replace("DEFAULT_MODE", "01000");
    let f = k.file("job.yaml", &job);
    let err = k.fails(&["apply", "-f", f.to_str().unwrap()]).await;
    assert!(
        err.contains(r#"The Job "db-migrate" is invalid: spec.template.spec.volumes[0].secret.defaultMode: Invalid value: 512: must be a number between 0 and 0777 (octal), both inclusive"#),
        "{err}"
    );
    let svc = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports: [{port: 70000}]\n";
    let f = k.file("svc.yaml", svc);
    let err = k.fails(&["apply", "-f", f.to_str().unwrap()]).await;
    assert!(
        err.contains(r#"The Service "web" is invalid: spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive"#),
        "{err}"
    );
    let deploy = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: -1\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: web, image: nginx}]\n";
    let f = k.file("deploy.yaml", deploy);
    let err = k.fails(&["apply", "-f", f.to_str().unwrap()]).await;
    assert!(
        err.contains(r#"The Deployment "web" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0"#),
        "{err}"
    );
    sim.shutdown().await;
}

/// A field set twice in a JSON body: Strict refuses it, Warn keeps the
/// last value and says so, as the real decoder does. `kubectl create --raw`
/// sends the file as it is (`create -f` would collapse the duplicate first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_fields_follow_field_validation() {
    let sim = sim().await;
    let k = Kubectl::new(&sim);
    let doubled = k.file(
        "cm.json",
        r#"{"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "twice", "namespace": "default"},
            "data": {"a": "first", "a": "second"}}"#,
    );
    let doubled = doubled.to_str().unwrap();
    let path = "/api/v1/namespaces/default/configmaps";
    let err = k
        .fails(&[
            "create",
            "--raw",
            &format!("{path}?fieldValidation=Strict"),
            "-f",
            doubled,
        ])
        .await;
    assert!(
        err.contains(r#"strict decoding error: duplicate field "data.a""#),
        "{err}"
    );
    let out = k
        .run(&[
            "create",
            "--raw",
            &format!("{path}?fieldValidation=Warn"),
            "-f",
            doubled,
        ])
        .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(r#"duplicate field "data.a""#), "{stderr}");
    let value = k
        .ok(&[
            "get",
            "configmap",
            "twice",
            "-n",
            "default",
            "-o",
            "jsonpath={.data.a}",
        ])
        .await;
    assert_eq!(value, "second");
}
