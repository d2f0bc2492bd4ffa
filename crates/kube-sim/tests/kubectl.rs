//! The real kubectl against kube-sim, each test with its own kubeconfig and
//! `--cache-dir`.

mod common;

use common::{Kubectl, eventually, sim};

const JOB: &str = r#"
apiVersion: batch/v1
kind: Job
metadata:
  name: pi
  annotations:
    sim.stagegate.dev/log: "3.14159"
spec:
  backoffLimit: 4
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: pi
        image: perl:5.34
        command: ["perl", "-Mbignum=bpi", "-wle", "print bpi(5)"]
"#;

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:1.27
        ports:
        - containerPort: 80
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_side_apply_then_get_wait_rollout_and_logs() {
    let sim = sim().await;
    let k = Kubectl::new(&sim);
    let job = k.file("job.yaml", JOB);
    let dep = k.file("dep.yaml", DEPLOYMENT);
    let out = k
        .ok(&[
            "apply",
            "-f",
            job.to_str().unwrap(),
            "-f",
            dep.to_str().unwrap(),
        ])
        .await;
    assert!(out.contains("job.batch/pi created"), "{out}");
    assert!(out.contains("deployment.apps/web created"), "{out}");

    // Applying the same files again changes nothing.
    let again = k
        .ok(&[
            "apply",
            "-f",
            job.to_str().unwrap(),
            "-f",
            dep.to_str().unwrap(),
        ])
        .await;
    assert!(again.contains("job.batch/pi unchanged"), "{again}");
    assert!(again.contains("deployment.apps/web unchanged"), "{again}");

    let waited = k
        .ok(&[
            "wait",
            "--for=condition=complete",
            "job/pi",
            "--timeout=30s",
        ])
        .await;
    assert!(waited.contains("job.batch/pi condition met"), "{waited}");
    let logs = k.ok(&["logs", "job/pi"]).await;
    assert_eq!(logs.trim(), "3.14159");
    // The job-controller's Events, as describe finds them.
    let described = k.ok(&["describe", "job", "pi"]).await;
    assert!(
        described.contains("SuccessfulCreate") && described.contains("Created pod: pi-"),
        "{described}"
    );
    assert!(described.contains("Job completed"), "{described}");
    let rollout = k
        .ok(&["rollout", "status", "deployment/web", "--timeout=30s"])
        .await;
    assert!(rollout.contains("successfully rolled out"), "{rollout}");

    let got = k
        .ok(&[
            "get",
            "jobs",
            "-o",
            "jsonpath={.items[*].metadata.name} {.items[0].status.succeeded}",
        ])
        .await;
    assert_eq!(got, "pi 1");
    // Server-side printing: the columns kubectl shows for a real cluster.
    let table = k.ok(&["get", "deployments"]).await;
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        "{table}"
    );
    assert!(table.lines().nth(1).unwrap().starts_with("web "), "{table}");
    let jobs = k.ok(&["get", "jobs"]).await;
    let row: Vec<&str> = jobs.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..3], ["pi", "Complete", "1/1"], "{jobs}");
    let pods = k.ok(&["get", "pods", "-l", "job-name=pi"]).await;
    assert!(pods.contains("Completed"), "{pods}");

    // A changed manifest is patched (strategic merge from the last-applied annotation).
    let changed = k.file(
        "dep2.yaml",
        &DEPLOYMENT
            .replace("replicas: 2", "replicas: 3")
            .replace("nginx:1.27", "nginx:1.28"),
    );
    let out = k.ok(&["apply", "-f", changed.to_str().unwrap()]).await;
    assert!(out.contains("deployment.apps/web configured"), "{out}");
    let spec = k.ok(&["get", "deployment", "web", "-o", "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].image} {.metadata.generation}"]).await;
    assert_eq!(spec, "3 nginx:1.28 2");
    k.ok(&["rollout", "status", "deployment/web", "--timeout=30s"])
        .await;

    // The scale subresource.
    let out = k.ok(&["scale", "deployment/web", "--replicas=5"]).await;
    assert!(out.contains("deployment.apps/web scaled"), "{out}");
    k.ok(&["rollout", "status", "deployment/web", "--timeout=30s"])
        .await;
    let ready = k
        .ok(&[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.spec.replicas} {.status.readyReplicas}",
        ])
        .await;
    assert_eq!(ready, "5 5");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_of_job_and_deployment_with_conflicts() {
    let sim = sim().await;
    let k = Kubectl::new(&sim);
    let job = k.file("job.yaml", JOB);
    let dep = k.file("dep.yaml", DEPLOYMENT);
    let out = k
        .ok(&[
            "apply",
            "--server-side",
            "-f",
            job.to_str().unwrap(),
            "-f",
            dep.to_str().unwrap(),
        ])
        .await;
    assert!(out.contains("job.batch/pi serverside-applied"), "{out}");
    assert!(
        out.contains("deployment.apps/web serverside-applied"),
        "{out}"
    );
    let managers = k
        .ok(&[
            "get",
            "deployment",
            "web",
            "--show-managed-fields",
            "-o",
            "jsonpath={.metadata.managedFields[*].manager}/{.metadata.managedFields[*].operation}",
        ])
        .await;
    assert_eq!(managers, "kubectl/Apply");
    k.ok(&[
        "wait",
        "--for=condition=complete",
        "job/pi",
        "--timeout=30s",
    ])
    .await;

    // Another manager setting replicas to another value conflicts...
    let other = k.file(
        "other.yaml",
        &DEPLOYMENT.replace("replicas: 2", "replicas: 5"),
    );
    let err = k
        .fails(&[
            "apply",
            "--server-side",
            "--field-manager",
            "other",
            "-f",
            other.to_str().unwrap(),
        ])
        .await;
    assert!(
        err.contains("Apply failed with 1 conflict: conflict with \"kubectl\": .spec.replicas"),
        "{err}"
    );
    // ...unless forced, which moves the field to it.
    k.ok(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager",
        "other",
        "-f",
        other.to_str().unwrap(),
    ])
    .await;
    let replicas = k
        .ok(&[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.spec.replicas}",
        ])
        .await;
    assert_eq!(replicas, "5");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patching_a_job_template_is_refused_as_immutable() {
    let sim = sim().await;
    let k = Kubectl::new(&sim);
    let job = k.file("job.yaml", JOB);
    k.ok(&["apply", "-f", job.to_str().unwrap()]).await;
    let err = k
        .fails(&[
            "patch",
            "job",
            "pi",
            "-p",
            r#"{"spec":{"template":{"spec":{"containers":[{"name":"pi","image":"perl:5.36"}]}}}}"#,
        ])
        .await;
    assert!(
        err.contains(r#"The Job "pi" is invalid: spec.template: Invalid value: core.PodTemplateSpec{...}: field is immutable"#),
        "{err}"
    );
    // Changing an applied Job's template the client-side way fails the same way.
    let changed = k.file("job2.yaml", &JOB.replace("perl:5.34", "perl:5.36"));
    let err = k.fails(&["apply", "-f", changed.to_str().unwrap()]).await;
    assert!(err.contains("field is immutable"), "{err}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_job_takes_its_pods() {
    let sim = sim().await;
    let k = Kubectl::new(&sim);
    let job = k.file(
        "job.yaml",
        &JOB.replace(
            "annotations:",
            "annotations:\n    sim.stagegate.dev/duration: 1h",
        ),
    );
    k.ok(&["apply", "-f", job.to_str().unwrap()]).await;
    eventually("the job's pod runs", || async {
        k.ok(&[
            "get",
            "pods",
            "-l",
            "job-name=pi",
            "-o",
            "jsonpath={.items[*].status.phase}",
        ])
        .await
            == "Running"
    })
    .await;
    let out = k
        .ok(&["delete", "job", "pi", "--wait=true", "--timeout=30s"])
        .await;
    assert!(out.contains("job.batch \"pi\" deleted"), "{out}");
    eventually("the pods are gone", || async {
        k.ok(&["get", "pods", "-o", "name"]).await.trim().is_empty()
    })
    .await;
    let err = k.fails(&["get", "job", "pi"]).await;
    assert!(err.contains(r#"jobs.batch "pi" not found"#), "{err}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crd_then_a_custom_resource_of_it() {
    let sim = sim().await;
    let k = Kubectl::new(&sim);
    let crd = k.file(
        "crd.yaml",
        r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
"#,
    );
    let widget = k.file(
        "widget.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w1\nspec:\n  size: 3\n",
    );
    // Before the CRD the kind is unknown.
    let err = k.fails(&["apply", "-f", widget.to_str().unwrap()]).await;
    assert!(err.contains("no matches for kind \"Widget\""), "{err}");
    k.ok(&["apply", "-f", crd.to_str().unwrap()]).await;
    k.ok(&[
        "wait",
        "--for=condition=established",
        "crd/widgets.example.com",
        "--timeout=30s",
    ])
    .await;
    let out = k.ok(&["apply", "-f", widget.to_str().unwrap()]).await;
    assert!(out.contains("widget.example.com/w1 created"), "{out}");
    assert_eq!(
        k.ok(&["get", "wd", "w1", "-o", "jsonpath={.spec.size}"])
            .await,
        "3"
    );
    // The CRD's additionalPrinterColumns are the columns of `kubectl get`.
    let table = k.ok(&["get", "widgets"]).await;
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["NAME", "SIZE", "AGE"], "{table}");
    assert_eq!(&rows[1][..2], ["w1", "3"], "{table}");
    k.ok(&["apply", "--server-side", "-f", widget.to_str().unwrap()])
        .await;

    k.ok(&["delete", "crd", "widgets.example.com"]).await;
    // kubectl's cached discovery still knows the resource; the server does not.
    let err = k.fails(&["get", "widgets"]).await;
    assert!(err.contains("Error from server (NotFound)"), "{err}");
    let err = k.fails(&["get", "--raw", "/apis/example.com/v1"]).await;
    assert!(err.contains("NotFound"), "{err}");
    let groups = k.ok(&["get", "--raw", "/apis"]).await;
    assert!(!groups.contains("example.com"), "{groups}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_status_of_every_workload_kind_and_the_rollout_annotation() {
    let sim = sim().await;
    let k = Kubectl::new(&sim);
    let workloads = k.file(
        "workloads.yaml",
        r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 2
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: db, image: postgres:16}]}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec: {containers: [{name: agent, image: agent:1}]}
"#,
    );
    k.ok(&["apply", "-f", workloads.to_str().unwrap()]).await;
    let out = k
        .ok(&["rollout", "status", "statefulset/db", "--timeout=30s"])
        .await;
    assert!(
        out.contains("partitioned roll out complete") || out.contains("rolling update complete"),
        "{out}"
    );
    let out = k
        .ok(&["rollout", "status", "daemonset/agent", "--timeout=30s"])
        .await;
    assert!(
        out.contains("daemon set \"agent\" successfully rolled out"),
        "{out}"
    );

    let failing = k.file(
        "failing.yaml",
        &DEPLOYMENT.replace(
            "labels: {app: web}\nspec:",
            "labels: {app: web}\n  annotations: {sim.stagegate.dev/rollout: fail}\nspec:",
        ),
    );
    k.ok(&["apply", "-f", failing.to_str().unwrap()]).await;
    let err = k
        .fails(&["rollout", "status", "deployment/web", "--timeout=30s"])
        .await;
    assert!(
        err.contains("deployment \"web\" exceeded its progress deadline"),
        "{err}"
    );

    let hanging = k.file(
        "hanging.yaml",
        &DEPLOYMENT.replace("name: web", "name: slow").replace(
            "labels: {app: web}\nspec:",
            "labels: {app: web}\n  annotations: {sim.stagegate.dev/rollout: hang}\nspec:",
        ),
    );
    k.ok(&["apply", "-f", hanging.to_str().unwrap()]).await;
    let err = k
        .fails(&["rollout", "status", "deployment/slow", "--timeout=2s"])
        .await;
    assert!(err.contains("timed out"), "{err}");
    sim.shutdown().await;
}
