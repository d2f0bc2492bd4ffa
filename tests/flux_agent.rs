//! A nested Flux fleet through the real agent against kube-sim: children of
//! a Kustomization are stages, a child left out of its parent is pruned as a
//! removed stage, and a Kustomization stagegate cannot read prunes nothing.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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
    run_once_with(kubeconfig, cache, url, &[])
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
    let common::Env { c, tmp, kubeconfig } = common::env().await;
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

/// Every file of a fixture under tests/fixtures/flux, as (path, content).
fn fixture_files(name: &str) -> Vec<(String, String)> {
    fn walk(base: &std::path::Path, dir: &std::path::Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                let rel = path.strip_prefix(base).unwrap().display().to_string();
                out.push((rel, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/flux")
        .join(name);
    let mut out = Vec::new();
    walk(&base, &base, &mut out);
    out
}

/// `stagegate run --once` with extra flags.
fn run_once_with(kubeconfig: &PathBuf, cache: &PathBuf, url: &str, extra: &[&str]) -> Output {
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
        .args(extra)
        .env_remove("KUBECONFIG")
        .env("STAGEGATE_LOG", "info")
        .output()
        .expect("run stagegate")
}

/// A `stagegate` command against the cluster (`diff`, `status`), with no
/// setting from the environment.
fn stagegate(kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stagegate"))
        .args(args)
        .args(["--namespace", NS, "--kubeconfig"])
        .arg(kubeconfig)
        .env_remove("KUBECONFIG")
        .env_remove("STAGEGATE_DEFAULT_SERVICE_ACCOUNT")
        .output()
        .expect("run stagegate")
}

/// The checkout of the tenants fixture, as `diff` reads it.
fn tenants_checkout() -> String {
    format!("{}/tests/fixtures/flux/tenants", env!("CARGO_MANIFEST_DIR"))
}

/// kubectl as the cluster's admin.
fn kubectl(kubeconfig: &PathBuf, args: &[&str]) -> Output {
    Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .env_remove("KUBECONFIG")
        .output()
        .expect("run kubectl (is it installed?)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_stage_is_applied_as_its_service_account_and_refused_outside_its_namespace() {
    let common::Env { c, tmp, kubeconfig } = common::env().await;
    let cache = tmp.path().join("cache");
    let repo = GitRepo::init(&tmp.path().join("repo"));
    common::commit(&repo, "tenants", &fixture_files("tenants"));
    c.sim.start_audit();
    let (k, ca, url) = (kubeconfig.clone(), cache.clone(), repo.file_url());
    let o = tokio::task::spawn_blocking(move || run_once_with(&k, &ca, &url, &[]))
        .await
        .unwrap();
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("2/3 stages Ready"), "{out}");
    // The API server's own 403, naming the ServiceAccount and the namespace.
    assert!(
        out.contains("is forbidden: User \"system:serviceaccount:team-b:team-b\" cannot")
            && out.contains("in API group \"\" in the namespace \"team-a\""),
        "{out}"
    );
    let team_b = out
        .lines()
        .find(|l| l.trim_start().starts_with("team-b "))
        .unwrap();
    assert!(team_b.contains("Failed"), "{out}");

    // team-a's app is in its namespace, written as team-a's ServiceAccount.
    let get = kubectl(
        &kubeconfig,
        &[
            "get",
            "configmap",
            "team-a-app",
            "-n",
            "team-a",
            "-o",
            "jsonpath={.data.owner}",
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&get.stdout),
        "team-a",
        "{}",
        String::from_utf8_lossy(&get.stderr)
    );
    let intrusion = kubectl(
        &kubeconfig,
        &["get", "configmap", "team-b-intrusion", "-n", "team-a"],
    );
    assert!(
        !intrusion.status.success(),
        "the refused object is not there"
    );
    let can = kubectl(
        &kubeconfig,
        &[
            "auth",
            "can-i",
            "patch",
            "configmaps",
            "-n",
            "team-a",
            "--as",
            "system:serviceaccount:team-b:team-b",
        ],
    );
    assert_eq!(String::from_utf8_lossy(&can.stdout).trim(), "no");
    let audit = c.sim.audit_log();
    assert!(
        audit
            .iter()
            .any(|e| e.user == "system:serviceaccount:team-a:team-a"
                && e.resource == "configmaps"
                && e.name == "team-a-app"
                && e.allowed),
        "team-a's objects were written as its ServiceAccount"
    );
    assert!(
        !audit
            .iter()
            .any(|e| e.user == "system:serviceaccount:team-b:team-b"
                && e.namespace == "team-a"
                && e.allowed),
        "team-b's ServiceAccount was allowed nothing in team-a"
    );
    assert!(
        audit
            .iter()
            .any(|e| e.user == "system:serviceaccount:team-b:team-b"
                && e.namespace == "team-a"
                && !e.allowed),
        "team-b's stage tried team-a as its ServiceAccount and was refused"
    );

    // `diff` compares each tenant's stage as its ServiceAccount too.
    let diff = stagegate(
        &kubeconfig,
        &["diff", &tenants_checkout(), "--stage", "team-b"],
    );
    let diffed = text(&diff);
    assert_eq!(diff.status.code(), Some(2), "{diffed}");
    assert!(
        diffed.contains("User \"system:serviceaccount:team-b:team-b\" cannot"),
        "{diffed}"
    );
    c.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn substitute_from_reads_the_cluster_and_a_stage_that_cannot_render_fails_alone() {
    let common::Env { c, tmp, kubeconfig } = common::env().await;
    let cache = tmp.path().join("cache");
    let repo = GitRepo::init(&tmp.path().join("repo"));
    let secrets = "postBuild:\n    substituteFrom:\n      - {kind: Secret, name: cluster-secrets}\n      - {kind: ConfigMap, name: cluster-extra, optional: true}\n";
    let files = vec![
        ("clusters/app.yaml".to_string(), kustomization("app", "./app", &format!("  {secrets}"))),
        (
            "app/config.yaml".to_string(),
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app-config\n  namespace: default\ndata:\n  user: ${DB_USER}\n  region: ${REGION:=eu}\n".to_string(),
        ),
        // Its path is missing: it fails, and so is its dependent blocked.
        ("clusters/broken.yaml".to_string(), kustomization("broken", "./missing", "")),
        (
            "clusters/after-broken.yaml".to_string(),
            kustomization("after-broken", "./after", "  dependsOn: [{name: broken}]\n"),
        ),
        ("after/config.yaml".to_string(), configmap("after-config", "x")),
    ];
    common::commit(&repo, "substituteFrom", &files);
    let secret = kubectl(&kubeconfig, &["create", "namespace", "flux-system"]);
    assert!(
        secret.status.success(),
        "{}",
        String::from_utf8_lossy(&secret.stderr)
    );
    let secret = kubectl(
        &kubeconfig,
        &[
            "create",
            "secret",
            "generic",
            "cluster-secrets",
            "-n",
            "flux-system",
            "--from-literal=DB_USER=s3cr3t-user",
        ],
    );
    assert!(
        secret.status.success(),
        "{}",
        String::from_utf8_lossy(&secret.stderr)
    );

    let (k, ca, url) = (kubeconfig.clone(), cache.clone(), repo.file_url());
    let o = tokio::task::spawn_blocking(move || run_once_with(&k, &ca, &url, &[]))
        .await
        .unwrap();
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("1/3 stages Ready"), "{out}");
    assert!(
        !out.contains("s3cr3t-user"),
        "a Secret's value is never logged: {out}"
    );
    let row = |name: &str| {
        out.lines()
            .find(|l| l.trim_start().starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in {out}"))
            .to_string()
    };
    assert!(row("app").contains("Ready"), "{out}");
    assert!(
        row("broken").contains("Failed") && row("broken").contains("spec.path missing"),
        "{out}"
    );
    assert!(row("after-broken").contains("Blocked"), "{out}");
    let get = kubectl(
        &kubeconfig,
        &[
            "get",
            "configmap",
            "app-config",
            "-o",
            "jsonpath={.data.user}/{.data.region}",
        ],
    );
    assert_eq!(String::from_utf8_lossy(&get.stdout), "s3cr3t-user/eu");

    // Without the Secret, the stage fails naming it.
    let gone = kubectl(
        &kubeconfig,
        &["delete", "secret", "cluster-secrets", "-n", "flux-system"],
    );
    assert!(gone.status.success());
    let (k, ca, url) = (kubeconfig.clone(), cache.clone(), repo.file_url());
    let o = tokio::task::spawn_blocking(move || run_once_with(&k, &ca, &url, &[]))
        .await
        .unwrap();
    let out = text(&o);
    assert!(
        out.contains("postBuild.substituteFrom: Secret flux-system/cluster-secrets is neither rendered from this repository nor found in the cluster"),
        "{out}"
    );
    assert!(out.contains("0/3 stages Ready"), "{out}");
    c.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_wait_for_exactly_the_objects_named_wherever_they_come_from() {
    let common::Env { c, tmp, kubeconfig } = common::env().await;
    let cache = tmp.path().join("cache");
    let repo = GitRepo::init(&tmp.path().join("repo"));
    let checks = |extra: &str| {
        format!(
            "  wait: false\n  timeout: 3s\n  healthChecks:\n    - {{apiVersion: apps/v1, kind: Deployment, name: web, namespace: default}}\n{extra}"
        )
    };
    let files = vec![
        (
            "clusters/web.yaml".to_string(),
            kustomization("web", "./web", ""),
        ),
        (
            "web/deployment.yaml".to_string(),
            common::DEPLOYMENT.to_string(),
        ),
        // Its own objects are a ConfigMap; it waits for another stage's Deployment.
        (
            "clusters/smoke.yaml".to_string(),
            kustomization("smoke", "./smoke", &checks("")),
        ),
        (
            "smoke/config.yaml".to_string(),
            configmap("smoke-config", "x"),
        ),
        // Waits for a Deployment no one applies: it times out naming it.
        (
            "clusters/ghost.yaml".to_string(),
            kustomization(
                "ghost",
                "./ghost",
                &checks(
                    "    - {apiVersion: apps/v1, kind: Deployment, name: ghost, namespace: default}\n",
                ),
            ),
        ),
        (
            "ghost/config.yaml".to_string(),
            configmap("ghost-config", "x"),
        ),
    ];
    common::commit(&repo, "health checks", &files);
    let (k, ca, url) = (kubeconfig.clone(), cache.clone(), repo.file_url());
    let o = tokio::task::spawn_blocking(move || run_once_with(&k, &ca, &url, &[]))
        .await
        .unwrap();
    let out = text(&o);
    let row = |name: &str| {
        out.lines()
            .find(|l| l.trim_start().starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in {out}"))
            .to_string()
    };
    assert!(row("web").contains("Ready"), "{out}");
    assert!(row("smoke").contains("Ready"), "{out}");
    assert!(row("ghost").contains("Failed"), "{out}");
    assert!(
        row("ghost").contains("timed out after 3s") && row("ghost").contains("ghost"),
        "{out}"
    );
    assert!(
        !row("ghost").contains("Deployment default/web"),
        "web was healthy: {out}"
    );
    let rollout = kubectl(
        &kubeconfig,
        &["rollout", "status", "deployment/web", "--timeout=10s"],
    );
    assert!(
        rollout.status.success(),
        "{}",
        String::from_utf8_lossy(&rollout.stderr)
    );
    c.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_service_account_locks_down_stages_that_name_none() {
    let common::Env { c, tmp, kubeconfig } = common::env().await;
    let cache = tmp.path().join("cache");
    let repo = GitRepo::init(&tmp.path().join("repo"));
    common::commit(&repo, "tenants", &fixture_files("tenants"));
    let (k, ca, url) = (kubeconfig.clone(), cache.clone(), repo.file_url());
    // `tenants` (in flux-system) names no ServiceAccount: it is applied as
    // flux-system's `reconciler`, which has no rights at all.
    let o = tokio::task::spawn_blocking(move || {
        run_once_with(&k, &ca, &url, &["--default-service-account", "reconciler"])
    })
    .await
    .unwrap();
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("0/3 stages Ready"), "{out}");
    assert!(
        out.contains("User \"system:serviceaccount:flux-system:reconciler\" cannot"),
        "{out}"
    );
    let ns = kubectl(&kubeconfig, &["get", "namespace", "team-a"]);
    assert!(
        !ns.status.success(),
        "nothing of the tenants stage was created"
    );

    // `diff` compares as the stage would be applied: with the same flag, as
    // the ServiceAccount, which may not even read; without it, as the user.
    let checkout = tenants_checkout();
    let diff = |extra: &[&str]| {
        let mut args = vec!["diff", checkout.as_str(), "--stage", "tenants"];
        args.extend_from_slice(extra);
        stagegate(&kubeconfig, &args)
    };
    let as_account = diff(&["--default-service-account", "reconciler"]);
    let out = text(&as_account);
    assert_eq!(as_account.status.code(), Some(2), "{out}");
    assert!(
        out.contains("system:serviceaccount:flux-system:reconciler"),
        "{out}"
    );
    let as_user = diff(&[]);
    let out = text(&as_user);
    assert_eq!(as_user.status.code(), Some(1), "changes to show: {out}");
    assert!(
        !out.contains("system:serviceaccount:flux-system:reconciler"),
        "{out}"
    );
    c.sim.shutdown().await;
}

/// A repository as `flux bootstrap` leaves it: the agent skips Flux's own
/// Kustomization, applies nothing of Flux's controllers, and `status`
/// says the bootstrap was skipped, as `validate` and `graph` do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flux_bootstrap_is_skipped_and_status_says_so() {
    let common::Env { c, tmp, kubeconfig } = common::env().await;
    let cache = tmp.path().join("cache");
    let repo = GitRepo::init(&tmp.path().join("repo"));
    let bootstrap = "clusters/production/flux-system";
    let sync = format!(
        "apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata:\n  name: flux-system\n  namespace: flux-system\nspec:\n  interval: 1m\n  ref: {{branch: main}}\n  url: ssh://git@example.com/fleet\n---\n{}",
        kustomization("flux-system", "./clusters/production", "")
    );
    let components = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: kustomize-controller\n  namespace: flux-system\nspec:\n  selector: {matchLabels: {app: kc}}\n  template:\n    metadata: {labels: {app: kc}}\n    spec: {containers: [{name: manager, image: ghcr.io/fluxcd/kustomize-controller:v1.4.0}]}\n";
    let files = [
        (
            format!("{bootstrap}/kustomization.yaml"),
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [gotk-components.yaml, gotk-sync.yaml]\n".to_string(),
        ),
        (format!("{bootstrap}/gotk-components.yaml"), components.to_string()),
        (format!("{bootstrap}/gotk-sync.yaml"), sync),
        (
            "clusters/production/apps.yaml".to_string(),
            kustomization("apps", "./apps", ""),
        ),
        ("apps/config.yaml".to_string(), configmap("app-config", "v1")),
    ];
    common::commit(&repo, "bootstrapped", &files);
    let (k, cc, url) = (kubeconfig.clone(), cache.clone(), repo.file_url());
    let o = tokio::task::spawn_blocking(move || run_once(&k, &cc, &url))
        .await
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let configmaps: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    assert!(configmaps.get_opt("app-config").await.unwrap().is_some());
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(c.client.clone(), "flux-system");
    assert!(
        deployments
            .get_opt("kustomize-controller")
            .await
            .unwrap()
            .is_none(),
        "nothing of Flux's own install is applied"
    );

    let status = stagegate(&kubeconfig, &["status"]);
    let out = text(&status);
    assert!(status.status.success(), "{out}");
    assert!(
        out.contains("Flux's own bootstrap Kustomization flux-system/flux-system")
            && out.contains("is skipped"),
        "status says the bootstrap was skipped:\n{out}"
    );
    c.sim.shutdown().await;
}
