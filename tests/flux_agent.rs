//! A nested Flux fleet through the real agent against kube-sim: children of
//! a Kustomization are stages, a child left out of its parent is pruned as a
//! removed stage, and a Kustomization stagegate cannot read prunes nothing.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

use common::cluster;
use common::git::GitRepo;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;

const NS: &str = "stagegate-system";

fn kustomization(name: &str, path: &str, extra: &str) -> String {
    format!(
        "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n  name: {name}\n  namespace: flux-system\nspec:\n  interval: 10m\n  path: {path}\n  prune: true\n  sourceRef: {{kind: GitRepository, name: flux-system}}\n{extra}"
    )
}

fn configmap(name: &str, data: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: default\ndata:\n  value: \"{data}\"\n"
    )
}

/// `clusters/production/apps.yaml` is the entry; its path holds two child
/// Kustomizations, and it patches both (their objects get its label).
fn fleet(children: &[&str], api_version: &str) -> Vec<(String, String)> {
    let parent = kustomization(
        "apps",
        "./apps/production",
        "  patches:\n    - target: {kind: Kustomization}\n      patch: |\n        - op: add\n          path: /spec/commonMetadata\n          value: {labels: {fleet: production}}\n",
    );
    let resources: String = children.iter().map(|c| format!("  - {c}.yaml\n")).collect();
    let mut files = vec![
        ("clusters/production/apps.yaml".to_string(), parent),
        (
            "apps/production/kustomization.yaml".to_string(),
            format!(
                "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n{resources}"
            ),
        ),
    ];
    for child in ["web", "worker"] {
        files.push((
            format!("apps/production/{child}.yaml"),
            kustomization(child, &format!("./apps/base/{child}"), "")
                .replace("kustomize.toolkit.fluxcd.io/v1", api_version),
        ));
        files.push((
            format!("apps/base/{child}/config.yaml"),
            configmap(&format!("{child}-config"), child),
        ));
    }
    files
}

fn run_once(kubeconfig: &PathBuf, cache: &PathBuf, url: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stagegate"))
        .args([
            "run",
            "--repo",
            url,
            "--namespace",
            NS,
            "--create-namespace",
        ])
        .args(["--once", "--listen", "127.0.0.1:0"])
        .arg("--cache-dir")
        .arg(cache)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .env_remove("KUBECONFIG")
        .env("STAGEGATE_LOG", "info")
        .output()
        .expect("run stagegate")
}

fn text(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_children_apply_as_stages_and_are_pruned_when_their_parent_drops_them() {
    let c = cluster().await;
    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig = tmp.path().join("kubeconfig");
    c.sim.write_kubeconfig(&kubeconfig).unwrap();
    let cache = tmp.path().join("cache");
    let repo = GitRepo::init(&tmp.path().join("repo"));
    let commit = |message: &str, files: Vec<(String, String)>| {
        let refs: Vec<(&str, &str)> = files
            .iter()
            .map(|(p, c)| (p.as_str(), c.as_str()))
            .collect();
        repo.commit(message, &refs);
    };
    let url = repo.file_url();
    let once = |kubeconfig: PathBuf, cache: PathBuf, url: String| {
        tokio::task::spawn_blocking(move || run_once(&kubeconfig, &cache, &url))
    };
    let configmaps: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");

    commit(
        "two apps",
        fleet(&["web", "worker"], "kustomize.toolkit.fluxcd.io/v1"),
    );
    let o = once(kubeconfig.clone(), cache.clone(), url.clone())
        .await
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("3/3 stages Ready"), "{}", text(&o));
    let web = configmaps.get("web-config").await.unwrap();
    let labels = web.metadata.labels.unwrap();
    assert_eq!(labels["stagegate.dev/stage"], "web");
    assert_eq!(
        labels["fleet"], "production",
        "the parent's patch reached the child"
    );
    assert!(configmaps.get_opt("worker-config").await.unwrap().is_some());

    // A typo in a child's apiVersion: an error naming the file, nothing pruned.
    commit(
        "typo",
        fleet(&["web", "worker"], "kustomize.toolkit.fluxcd.io/v1beta9"),
    );
    let o = once(kubeconfig.clone(), cache.clone(), url.clone())
        .await
        .unwrap();
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("apps/production/worker.yaml"),
        "{}",
        text(&o)
    );
    assert!(configmaps.get_opt("worker-config").await.unwrap().is_some());
    assert!(configmaps.get_opt("web-config").await.unwrap().is_some());

    // The parent no longer renders `worker`: it is a removed stage, pruned.
    commit(
        "drop worker",
        fleet(&["web"], "kustomize.toolkit.fluxcd.io/v1"),
    );
    let o = once(kubeconfig.clone(), cache.clone(), url.clone())
        .await
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(configmaps.get_opt("worker-config").await.unwrap().is_none());
    assert!(configmaps.get_opt("web-config").await.unwrap().is_some());
    c.sim.shutdown().await;
}
