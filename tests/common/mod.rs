//! Shared helpers of the integration tests: a simulated cluster with a real
//! `kube` client, and repositories written to temp dirs.
#![allow(dead_code)]

use std::fs;
use std::path::Path;
use std::time::Duration;

use kube_sim::{KubeSim, SimConfig};
use stagegate::core::plan::{Plan, build_plan};

pub struct Cluster {
    pub sim: KubeSim,
    pub client: kube::Client,
}

/// A fresh kube-sim with short simulated durations.
pub async fn cluster() -> Cluster {
    let config = SimConfig {
        job_duration: Duration::from_millis(200),
        rollout_delay: Duration::from_millis(200),
        ..SimConfig::default()
    };
    let sim = KubeSim::start(config).await.expect("start kube-sim");
    let client = client_for(&sim);
    install_stage_crd(&client).await;
    Cluster { sim, client }
}

/// The Stage CRD from manifests/, as an install puts it in the cluster.
pub async fn install_stage_crd(client: &kube::Client) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/00-crd.yaml");
    let text = fs::read_to_string(&path).expect("read manifests/00-crd.yaml");
    let crd: CustomResourceDefinition = serde_yaml::from_str(&text).expect("parse the Stage CRD");
    let api: kube::Api<CustomResourceDefinition> = kube::Api::all(client.clone());
    api.create(&kube::api::PostParams::default(), &crd)
        .await
        .expect("install the Stage CRD");
}

pub fn client_for(sim: &KubeSim) -> kube::Client {
    let config = kube::Config::new(sim.url().parse().expect("sim url"));
    kube::Client::try_from(config).expect("kube client")
}

/// Write (path, content) pairs under `dir`, replacing what was there.
pub fn write_files(dir: &Path, files: &[(&str, &str)]) {
    for (path, content) in files {
        let path = dir.join(path);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(path, content).expect("write");
    }
}

pub fn repo(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    write_files(dir.path(), files);
    dir
}

pub fn plan(dir: &Path) -> Plan {
    match build_plan(dir, None) {
        Ok(plan) => plan,
        Err(problems) => panic!("plan failed:\n{problems}"),
    }
}

/// A native Stage document.
pub fn stage_doc(name: &str, path: &str, extra: &str) -> String {
    format!(
        "---\napiVersion: stagegate.dev/v1alpha1\nkind: Stage\nmetadata:\n  name: {name}\nspec:\n  path: {path}\n{extra}"
    )
}

/// The Kubernetes docs' pi Job, with `digits` and extra annotations.
pub fn pi_job(name: &str, digits: u32, annotations: &str) -> String {
    format!(
        r#"apiVersion: batch/v1
kind: Job
metadata:
  name: {name}
  annotations:
    sim.stagegate.dev/duration: 200ms
{annotations}
spec:
  backoffLimit: 4
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: pi
          image: perl:5.34.0
          command: ["perl", "-Mbignum=bpi", "-wle", "print bpi({digits})"]
"#
    )
}

pub const DEPLOYMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: nginx:1.27
"#;
pub mod git;

/// What the agent's tests run against: a simulated cluster, a temp dir and
/// a kubeconfig for the real binaries and kubectl.
pub struct Env {
    pub c: Cluster,
    pub tmp: tempfile::TempDir,
    pub kubeconfig: std::path::PathBuf,
}

pub async fn env() -> Env {
    let c = cluster().await;
    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig = tmp.path().join("kubeconfig");
    c.sim.write_kubeconfig(&kubeconfig).unwrap();
    Env { c, tmp, kubeconfig }
}

/// Commit owned (path, content) pairs.
pub fn commit(repo: &git::GitRepo, message: &str, files: &[(String, String)]) -> String {
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    repo.commit(message, &files)
}
