//! Flux fleets as they are written: the layouts Flux's documentation
//! recommends, read as Flux's kustomize-controller would reconcile them.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use stagegate::plan::{Plan, build_plan};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/flux")
        .join(name)
}

/// A copy of a fixture to change in a test.
fn copy_of(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture(name), dir.path());
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn names(plan: &Plan) -> Vec<&str> {
    plan.stages.iter().map(|s| s.stage.name.as_str()).collect()
}

fn deps<'a>(plan: &'a Plan, stage: &str) -> Vec<&'a str> {
    let mut deps: Vec<&str> = plan
        .stage(stage)
        .unwrap()
        .stage
        .depends_on
        .iter()
        .map(|d| d.as_str())
        .collect();
    deps.sort_unstable();
    deps
}

fn object<'a>(plan: &'a Plan, stage: &str, kind: &str, name: &str) -> &'a serde_json::Value {
    let planned = plan.stage(stage).unwrap();
    &planned
        .objects
        .iter()
        .find(|o| o.kind() == kind && o.name() == name)
        .unwrap_or_else(|| panic!("{kind} {name} not rendered by stage {stage}"))
        .value
}

#[test]
fn recommended_layout_nests_apps_under_their_parent_and_skips_flux_bootstrap() {
    let plan = common::plan(&fixture("production"));
    assert_eq!(
        names(&plan),
        [
            "infra-controllers",
            "infra-configs",
            "apps",
            "podinfo",
            "redis",
            "smoke-tests"
        ]
    );
    let warnings: Vec<String> = plan.warnings.iter().map(ToString::to_string).collect();
    assert!(
        warnings.iter().any(|w| w.contains(
            "Flux's own bootstrap Kustomization flux-system/flux-system (its path clusters/production holds gotk-components.yaml) is skipped"
        )),
        "{warnings:#?}"
    );
    assert!(
        warnings.iter().any(|w| w.starts_with("warning: clusters/production/apps.yaml: stage apps: postBuild.substituteFrom: optional Secret flux-system/cluster-secrets is not rendered")),
        "{warnings:#?}"
    );
    assert_eq!(warnings.len(), 2, "{warnings:#?}");

    let apps = plan.stage("apps").unwrap();
    assert!(
        apps.objects.is_empty(),
        "a child Kustomization is not applied as an object"
    );
    let podinfo = &plan.stage("podinfo").unwrap().stage;
    assert_eq!(podinfo.parent.as_ref().unwrap().as_str(), "apps");
    assert_eq!(podinfo.source, Path::new("apps/production/podinfo.yaml"));
    // A child cannot be reconciled before its parent applied it.
    assert_eq!(deps(&plan, "podinfo"), ["infra-configs"]);
    assert_eq!(deps(&plan, "redis"), ["infra-configs", "podinfo"]);
    // `apps` waits, so it is Ready when its children are (Flux's health
    // check on Kustomization objects).
    assert_eq!(deps(&plan, "smoke-tests"), ["apps", "podinfo", "redis"]);
}

#[test]
fn a_parent_patch_and_substitution_reach_its_children_and_theirs_their_objects() {
    let plan = common::plan(&fixture("production"));
    let release = object(&plan, "podinfo", "HelmRelease", "podinfo");
    // From the parent's patch on the child Kustomization, applied by the child.
    assert_eq!(release["spec"]["install"]["remediation"]["retries"], 3);
    // ${CLUSTER} substituted by the parent inside the child document, then
    // ${CLUSTER_NAME} by the child in its own objects.
    assert_eq!(
        release["spec"]["values"]["ui"]["message"],
        "running in production"
    );
    assert_eq!(release["metadata"]["namespace"], "podinfo");
    let config = object(&plan, "redis", "ConfigMap", "redis-config");
    assert_eq!(config["data"]["cluster"], "production");
    assert_eq!(config["data"]["maxmemory"], "64mb");
    // From the ConfigMap another stage renders (postBuild.substituteFrom),
    // passed on by the parent to its child.
    assert_eq!(config["data"]["region"], "eu-west-1");
    assert_eq!(
        config["metadata"]["labels"]["stagegate.dev/stage"], "redis",
        "objects carry the child's stage label"
    );
}

#[test]
fn flux_bootstrap_applied_on_request_becomes_the_root_of_the_tree() {
    let dir = copy_of("production");
    let sync = dir
        .path()
        .join("clusters/production/flux-system/gotk-sync.yaml");
    let text = fs::read_to_string(&sync).unwrap().replace(
        "  name: flux-system\n  namespace: flux-system\nspec:\n  interval: 10m0s",
        "  name: flux-system\n  namespace: flux-system\n  annotations:\n    stagegate.dev/apply-flux-bootstrap: \"true\"\nspec:\n  interval: 10m0s",
    );
    fs::write(&sync, text).unwrap();
    let plan = common::plan(dir.path());
    assert_eq!(names(&plan)[0], "flux-system");
    for child in ["infra-controllers", "infra-configs", "apps", "smoke-tests"] {
        let stage = &plan.stage(child).unwrap().stage;
        assert_eq!(
            stage.parent.as_ref().unwrap().as_str(),
            "flux-system",
            "{child}"
        );
    }
    // The bootstrap renders its own document: that is itself, not a child.
    let flux = plan.stage("flux-system").unwrap();
    assert!(flux.stage.parent.is_none());
    assert!(
        flux.objects
            .iter()
            .any(|o| o.name() == "kustomize-controller")
    );
    assert!(!flux.objects.iter().any(|o| o.kind() == "Kustomization"));
}

#[test]
fn a_child_removed_from_its_parent_is_no_longer_a_stage() {
    let dir = copy_of("production");
    fs::write(
        dir.path().join("apps/production/kustomization.yaml"),
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - podinfo.yaml\n",
    )
    .unwrap();
    let plan = common::plan(dir.path());
    // Its file is still in the parent's path, but Flux applies only what
    // the parent renders: the agent prunes it as a removed stage.
    assert!(plan.stage("redis").is_none());
    assert!(plan.stage("podinfo").is_some());
    let warnings: Vec<String> = plan.warnings.iter().map(ToString::to_string).collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("warning: apps/production/redis.yaml: ")
                && w.contains(
                    "flux-system/redis is in the path of stage apps but not in its output"
                )),
        "{warnings:#?}"
    );
}

fn stagegate(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_stagegate"))
        .args(args)
        .output()
        .expect("run stagegate")
}

#[test]
fn a_required_substitute_from_source_missing_from_the_repository_fails_naming_it() {
    let dir = copy_of("production");
    fs::remove_file(dir.path().join("infrastructure/configs/cluster-vars.yaml")).unwrap();
    fs::write(
        dir.path().join("infrastructure/configs/kustomization.yaml"),
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: []\n",
    )
    .unwrap();
    let errors = problems_of(dir.path());
    assert_eq!(
        errors,
        [
            "error: clusters/production/apps.yaml: stage apps: postBuild.substituteFrom: ConfigMap \
          flux-system/cluster-vars is not rendered from this repository; stagegate reads \
          substitution variables only from objects in the repository (or mark it `optional: true`)"
        ]
    );
}

fn problems_of(dir: &Path) -> Vec<String> {
    match build_plan(dir, None) {
        Ok(plan) => panic!("plan built with stages {:?}", names(&plan)),
        Err(problems) => problems.errors().map(ToString::to_string).collect(),
    }
}

#[test]
fn hub_and_spoke_refuses_the_remote_cluster_stage_naming_kube_config() {
    let errors = problems_of(&fixture("hub-and-spoke"));
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].starts_with("error: clusters/hub/spokes/edge.yaml: stage apps: line 1: Kustomization spec.kubeConfig: applies to a remote cluster"),
        "{errors:#?}"
    );
}

#[test]
fn same_names_in_two_namespaces_are_two_stages_each_depending_in_its_own_namespace() {
    let dir = copy_of("hub-and-spoke");
    fs::remove_file(dir.path().join("clusters/hub/spokes/edge.yaml")).unwrap();
    let plan = common::plan(dir.path());
    assert_eq!(
        names(&plan),
        [
            "production.infra",
            "production.apps",
            "staging.infra",
            "staging.apps"
        ]
    );
    assert_eq!(deps(&plan, "production.apps"), ["production.infra"]);
    assert_eq!(deps(&plan, "staging.apps"), ["staging.infra"]);

    // namePrefix and commonMetadata, with kustomize's name references.
    let web = object(&plan, "staging.apps", "Deployment", "stag-web");
    assert_eq!(web["metadata"]["namespace"], "staging");
    assert_eq!(web["metadata"]["labels"]["environment"], "staging");
    assert_eq!(
        web["metadata"]["labels"]["stagegate.dev/stage"],
        "staging.apps"
    );
    assert!(
        web["spec"]["selector"]["matchLabels"]
            .get("environment")
            .is_none(),
        "commonMetadata stays out of selectors"
    );
    assert_eq!(
        web["spec"]["template"]["spec"]["containers"][0]["envFrom"][0]["configMapRef"]["name"],
        "stag-web-config"
    );
    object(&plan, "production.apps", "ConfigMap", "prod-web-config");

    let out = stagegate(&["graph", &dir.path().display().to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let graph = String::from_utf8_lossy(&out.stdout);
    assert!(graph.contains("staging.apps <- staging.infra\n"), "{graph}");
}

#[test]
fn duplicate_kustomization_names_the_namespace_and_both_files() {
    let dir = copy_of("hub-and-spoke");
    fs::remove_file(dir.path().join("clusters/hub/spokes/edge.yaml")).unwrap();
    fs::copy(
        dir.path().join("clusters/hub/staging/apps.yaml"),
        dir.path().join("clusters/hub/staging/apps-copy.yaml"),
    )
    .unwrap();
    let errors = problems_of(dir.path());
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].starts_with("error: clusters/hub/staging/apps.yaml: ")
            && errors[0].contains(
                "duplicate stage name staging/apps, also defined in clusters/hub/staging/apps-copy.yaml"
            ),
        "{errors:#?}"
    );
}

#[test]
fn a_tenant_stage_with_a_service_account_is_refused_not_applied_with_the_agent_rights() {
    let errors = problems_of(&fixture("tenants"));
    assert!(
        errors.iter().any(|e| e.starts_with(
            "error: tenants/base/team-a/sync.yaml: stage team-a: rendered by stage tenants: Kustomization spec.serviceAccountName: "
        )),
        "{errors:#?}"
    );
    assert!(
        errors.iter().all(|e| e.contains("spec.serviceAccountName")),
        "{errors:#?}"
    );
}

#[test]
fn a_child_of_an_unknown_version_is_an_error_naming_its_file_never_an_object() {
    let dir = copy_of("production");
    let file = dir.path().join("apps/production/redis.yaml");
    let text = fs::read_to_string(&file).unwrap().replace(
        "kustomize.toolkit.fluxcd.io/v1",
        "kustomize.toolkit.fluxcd.io/v3",
    );
    fs::write(&file, text).unwrap();
    let errors = problems_of(dir.path());
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("error: apps/production/redis.yaml: ")
                && e.contains("kustomize.toolkit.fluxcd.io/v3")
                && e.contains("stage document stagegate cannot read")),
        "{errors:#?}"
    );
    let out = stagegate(&["validate", &dir.path().display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
}
