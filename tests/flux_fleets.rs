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
    assert_eq!(warnings.len(), 1, "{warnings:#?}");

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
