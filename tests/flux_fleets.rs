//! Flux fleets as they are written: the layouts Flux's documentation
//! recommends, read as Flux's kustomize-controller would reconcile them.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use stagegate::core::plan::{Plan, PlanOptions, build_plan, build_plan_with};

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
    assert_eq!(deps(&plan, "podinfo"), ["apps", "infra-configs"]);
    assert_eq!(deps(&plan, "redis"), ["apps", "infra-configs", "podinfo"]);
    // `apps` waits, so it is Ready when its children are (Flux's health
    // check on Kustomization objects).
    assert_eq!(deps(&plan, "smoke-tests"), ["apps", "podinfo", "redis"]);

    let out = stagegate(&["graph", &fixture("production").display().to_string()]);
    assert!(out.status.success());
    let graph = String::from_utf8_lossy(&out.stdout);
    assert!(
        graph.contains("podinfo <- apps, infra-configs (child of apps)\n"),
        "{graph}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("bootstrap Kustomization flux-system/flux-system"),
        "graph says the bootstrap is skipped"
    );
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
fn a_required_substitute_from_source_missing_from_the_repository_fails_its_stage_naming_it() {
    let dir = copy_of("production");
    fs::remove_file(dir.path().join("infrastructure/configs/cluster-vars.yaml")).unwrap();
    fs::write(
        dir.path().join("infrastructure/configs/kustomization.yaml"),
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: []\n",
    )
    .unwrap();
    let plan = common::plan(dir.path());
    let errors: Vec<String> = plan.errors.errors().map(ToString::to_string).collect();
    assert_eq!(
        errors[..1],
        [
            "error: clusters/production/apps.yaml: stage apps: postBuild.substituteFrom: ConfigMap \
          flux-system/cluster-vars cannot be read here (offline commands do not read the cluster), \
          so these variables are unresolved: region; give their values with --substitute-from FILE"
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
fn tenant_stages_are_applied_as_their_service_accounts_once_their_parent_applied_them() {
    let plan = common::plan(&fixture("tenants"));
    assert_eq!(names(&plan), ["tenants", "team-a", "team-b"]);
    let account = |stage: &str| {
        plan.stage(stage)
            .unwrap()
            .stage
            .service_account
            .as_ref()
            .map(ToString::to_string)
    };
    assert_eq!(account("team-a").as_deref(), Some("team-a/team-a"));
    assert_eq!(account("team-b").as_deref(), Some("team-b/team-b"));
    assert_eq!(account("tenants"), None, "the agent's own rights");
    // The tenant's ServiceAccount and RoleBinding come from the parent.
    assert_eq!(deps(&plan, "team-a"), ["tenants"]);

    // Flux's --default-service-account: in each Kustomization's namespace,
    // for the ones that name none.
    let options = PlanOptions {
        default_service_account: Some("reconciler".into()),
        ..PlanOptions::default()
    };
    let plan = build_plan_with(&fixture("tenants"), None, &options).unwrap();
    let tenants = &plan.stage("tenants").unwrap().stage;
    assert_eq!(
        tenants.service_account.as_ref().unwrap().user(),
        "system:serviceaccount:flux-system:reconciler"
    );
    let team_a = &plan.stage("team-a").unwrap().stage;
    assert_eq!(
        team_a.service_account.as_ref().unwrap().to_string(),
        "team-a/team-a"
    );
}

#[test]
fn a_stage_that_fails_to_render_fails_alone_in_validate_graph_and_render() {
    let dir = copy_of("production");
    // podinfo's path no longer exists.
    fs::remove_dir_all(dir.path().join("apps/base/podinfo")).unwrap();
    let plan = common::plan(dir.path());
    let failed: Vec<&str> = plan.failed().map(|s| s.stage.name.as_str()).collect();
    assert_eq!(failed, ["podinfo"]);
    let errors: Vec<String> = plan.errors.errors().map(ToString::to_string).collect();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(errors[0].contains("stage podinfo: "), "{errors:#?}");

    let root = dir.path().display().to_string();
    let out = stagegate(&["validate", &root]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("stage podinfo: "), "{stderr}");
    assert!(
        stderr.contains("1 stage(s) that fail alone (podinfo)"),
        "{stderr}"
    );

    let out = stagegate(&["graph", &root]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("redis <- "));

    let out = stagegate(&["render", &root, "--stage", "redis"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("name: redis-config"));
    let out = stagegate(&["render", &root, "--stage", "podinfo"]);
    assert_eq!(out.status.code(), Some(2));
    let out = stagegate(&["render", &root]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a partial stream is never printed"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn a_refused_field_fails_its_stage_alone_and_nothing_of_it_is_rendered() {
    // The repository as a whole is valid: only that stage fails.
    let plan = common::plan(&fixture("hub-and-spoke"));
    let edge = plan.stage("edge.apps").unwrap();
    assert!(
        edge.objects.is_empty(),
        "a remote cluster's objects are never planned"
    );
    let reason = edge.failed().unwrap();
    assert!(
        reason.starts_with("clusters/hub/spokes/edge.yaml: line 1: Kustomization spec.kubeConfig: applies to a remote cluster"),
        "{reason}"
    );
    assert!(plan.stage("staging.apps").unwrap().failed().is_none());
}

#[test]
fn components_are_appended_to_the_kustomization_of_the_path() {
    let dir = copy_of("production");
    let root = dir.path();
    common::write_files(
        root,
        &[
            (
                "apps/components/ha/kustomization.yaml",
                "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\npatches:\n  - target: {kind: ConfigMap}\n    patch: |\n      - op: add\n        path: /data/ha\n        value: \"true\"\n",
            ),
            (
                "apps/base/redis/kustomization.yaml",
                "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - configmap.yaml\n",
            ),
        ],
    );
    let redis = root.join("apps/production/redis.yaml");
    let text = fs::read_to_string(&redis).unwrap();
    let text = text.replacen(
        "spec:\n",
        "spec:\n  components:\n    - ../../components/ha\n",
        1,
    );
    fs::write(&redis, text).unwrap();
    let plan = common::plan(root);
    let config = object(&plan, "redis", "ConfigMap", "redis-config");
    assert_eq!(config["data"]["ha"], "true", "{config:#}");
}

#[test]
fn the_flux_bootstrap_is_applied_with_the_flag() {
    let root = fixture("production").display().to_string();
    let out = stagegate(&["graph", &root, "--apply-flux-bootstrap"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let graph = String::from_utf8_lossy(&out.stdout);
    assert!(
        graph.lines().next().unwrap().starts_with("flux-system"),
        "{graph}"
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("is skipped"));
}

#[test]
fn offline_substitute_from_values_come_from_a_file_or_the_unresolved_variables_are_named() {
    let dir = copy_of("production");
    let root = dir.path();
    let apps = root.join("clusters/production/apps.yaml");
    let text = fs::read_to_string(&apps)
        .unwrap()
        .replace("optional: true", "optional: false");
    fs::write(&apps, text).unwrap();
    common::write_files(
        root,
        &[
            (
                "apps/production/kustomization.yaml",
                "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - podinfo.yaml\n  - redis.yaml\n  - registry.yaml\n",
            ),
            (
                "apps/production/registry.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: registry\n  namespace: podinfo\ndata:\n  user: ${REGISTRY_USER}\n  token-length: \"${#REGISTRY_TOKEN}\"\n  mode: ${MODE:=mirror}\n  literal: $${NOT_A_VARIABLE}\n",
            ),
        ],
    );
    let plan = common::plan(root);
    let errors: Vec<String> = plan.errors.errors().map(ToString::to_string).collect();
    assert_eq!(
        errors[..1],
        [
            "error: clusters/production/apps.yaml: stage apps: postBuild.substituteFrom: Secret \
          flux-system/cluster-secrets cannot be read here (offline commands do not read the \
          cluster), so these variables are unresolved: REGISTRY_TOKEN, REGISTRY_USER; give their \
          values with --substitute-from FILE"
        ]
    );
    // Its children's documents are not known without it: they fail too,
    // rather than being applied as discovery read them; the rest is valid.
    let failed: Vec<&str> = plan.failed().map(|s| s.stage.name.as_str()).collect();
    assert_eq!(failed, ["apps", "podinfo", "redis"]);
    assert!(plan.stage("infra-configs").unwrap().failed().is_none());

    let values = root.join("cluster-secrets.env");
    fs::write(&values, "REGISTRY_USER=robot\nREGISTRY_TOKEN=s3cr3t\n").unwrap();
    let out = stagegate(&[
        "render",
        &root.display().to_string(),
        "--stage",
        "apps",
        "--substitute-from",
        &values.display().to_string(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("user: robot"), "{stdout}");
    assert!(
        stdout.contains("token-length: '6'") || stdout.contains("token-length: \"6\""),
        "{stdout}"
    );
    assert!(stdout.contains("mode: mirror"), "{stdout}");
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
