//! The offline commands, run as a user runs them: the real binary on
//! repositories written to temp dirs and on the bundled examples.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

fn stagegate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stagegate"))
        .args(args)
        .output()
        .expect("run stagegate")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
        .display()
        .to_string()
}

/// A repository in a temp dir, from (path, content) pairs.
fn repo(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, content) in files {
        let path = dir.path().join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }
    dir
}

fn stage(name: &str, path: &str, deps: &[&str]) -> String {
    format!(
        "---\napiVersion: stagegate.dev/v1alpha1\nkind: Stage\nmetadata:\n  name: {name}\nspec:\n  path: {path}\n  dependsOn: [{}]\n",
        deps.join(", ")
    )
}

const CONFIGMAP: &str =
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  a: b\n";

fn path_of(dir: &tempfile::TempDir) -> String {
    dir.path().display().to_string()
}

#[test]
fn validate_accepts_both_examples_with_a_summary() {
    for name in ["native", "flux"] {
        let out = stagegate(&["validate", &example(name)]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        assert_eq!(
            stdout(&out),
            "ok: 2 stages, 5 objects, 0 warnings\n",
            "{name}"
        );
    }
}

#[test]
fn graph_prints_dependencies_first_as_text_and_dot() {
    let out = stagegate(&["graph", &example("native")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "pre\napplication <- pre\n");

    let out = stagegate(&[
        "graph",
        &example("flux"),
        "--path",
        "clusters/demo",
        "--format",
        "dot",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let dot = stdout(&out);
    assert!(dot.starts_with("digraph stages {"), "{dot}");
    assert!(dot.contains("\"pre\" -> \"application\";"), "{dot}");
}

#[test]
fn render_streams_objects_in_dependency_order_with_substitution_and_hash() {
    let out = stagegate(&["render", &example("native")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&stdout(&out))
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    // pre's objects, then application's.
    let job = kinds.iter().position(|k| *k == "Job").unwrap();
    let deployment = kinds.iter().position(|k| *k == "Deployment").unwrap();
    assert!(job < deployment, "{kinds:?}");
    let job = &docs[job];
    assert_eq!(job["metadata"]["namespace"].as_str(), Some("shop"));
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["image"].as_str(),
        Some("registry.example.com/shop/app:1.4.2")
    );
    assert_eq!(
        job["metadata"]["labels"]["stagegate.dev/stage"].as_str(),
        Some("pre")
    );
    let hash = job["metadata"]["annotations"]["stagegate.dev/spec-hash"]
        .as_str()
        .unwrap();
    assert_eq!(hash.len(), 64);
    // No stage definition is ever rendered as an object.
    assert!(!kinds.contains(&"Stage"));
}

#[test]
fn native_and_flux_examples_render_the_same_objects() {
    // The same objects; the order inside a stage may differ (files in path
    // order without a kustomization, resources in listed order with one).
    let documents = |out: Output| {
        assert!(out.status.success(), "{}", stderr(&out));
        let mut docs: Vec<String> = stdout(&out).split("---\n").map(str::to_string).collect();
        docs.sort();
        docs
    };
    let native = documents(stagegate(&["render", &example("native")]));
    let flux = documents(stagegate(&["render", &example("flux")]));
    assert_eq!(native.len(), 6);
    assert_eq!(native, flux);
}

#[test]
fn render_one_stage_only_and_unknown_stage_is_an_error() {
    let out = stagegate(&["render", &example("native"), "--stage", "application"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("kind: Deployment") && !text.contains("kind: Job"),
        "{text}"
    );

    let out = stagegate(&["render", &example("native"), "--stage", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no stage named nope"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn every_problem_is_reported_together_naming_file_and_stage() {
    let mut stages = String::new();
    stages += &stage("a", "a", &["b"]);
    stages += &stage("b", "b", &["c"]);
    stages += &stage("c", "c", &["a"]);
    stages += &stage("d", "d", &["ghost"]);
    stages += &stage("d", "d", &[]);
    stages += &stage("escape", "../outside", &[]);
    stages += &stage("missing", "not-there", &[]);
    let dir = repo(&[
        ("stages.yaml", &stages),
        ("a/cm.yaml", CONFIGMAP),
        ("b/cm.yaml", CONFIGMAP),
        (
            "c/other.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: other}\n",
        ),
        (
            "d/bad.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [x\n",
        ),
    ]);
    let out = stagegate(&["validate", &path_of(&dir)]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    for expected in [
        "stages.yaml: stage d: dependsOn names unknown stage ghost",
        "stages.yaml: stage d: duplicate stage name",
        "dependency cycle: a -> b -> c -> a",
        "stage escape: spec.path ../outside: is outside the repository root; refused",
        "stage missing: spec.path not-there: does not exist",
        "d/bad.yaml: stage d: line 5, column 1:",
        "stage b: ConfigMap default/settings (from b/cm.yaml) is also rendered by stage a",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    assert!(stdout(&out).is_empty());
}

#[test]
fn symlink_out_of_the_repository_is_refused_and_never_read() {
    let outside = repo(&[("secret.yaml", CONFIGMAP)]);
    let dir = repo(&[("stages.yaml", &stage("s", "link", &[]))]);
    std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
    let out = stagegate(&["render", &path_of(&dir)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("outside the repository root"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).is_empty());
}

#[test]
fn unknown_field_and_yaml_error_name_the_file_and_line() {
    let dir = repo(&[
        (
            "stages.yaml",
            "apiVersion: stagegate.dev/v1alpha1\nkind: Stage\nmetadata: {name: s}\nspec:\n  path: s\n  dependOn: [x]\n",
        ),
        // Broken YAML that names a stage API could hide a stage: an error.
        (
            "other.yaml",
            "apiVersion: stagegate.dev/v1alpha1\n---\nb: [\n",
        ),
        ("s/cm.yaml", CONFIGMAP),
    ]);
    let out = stagegate(&["validate", &path_of(&dir)]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(
            "stages.yaml: stage s: line 1: invalid Stage: spec.dependOn: unknown field `dependOn`"
        ),
        "{err}"
    );
    assert!(err.contains("other.yaml: invalid YAML: line "), "{err}");
}

#[test]
fn empty_stage_is_a_warning_and_an_unsupported_flux_field_an_error() {
    let kustomization = |extra: &str| {
        format!(
            "apiVersion: kustomize.toolkit.fluxcd.io/v1beta2\nkind: Kustomization\nmetadata: {{name: apps}}\nspec:\n  path: ./apps\n  prune: true\n{extra}"
        )
    };
    let dir = repo(&[
        ("clusters/k.yaml", &kustomization("")),
        ("apps/README.md", "nothing to apply here"),
    ]);
    let out = stagegate(&["validate", &path_of(&dir)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "ok: 1 stages, 0 objects, 1 warnings\n");
    assert!(
        stderr(&out).contains("warning: clusters/k.yaml: stage apps: path apps holds no manifests"),
        "{}",
        stderr(&out)
    );

    std::fs::write(
        dir.path().join("clusters/k.yaml"),
        kustomization("  healthCheckExprs: [{apiVersion: v1, kind: Pod, current: \"true\"}]\n"),
    )
    .unwrap();
    let out = stagegate(&["validate", &path_of(&dir)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(
            "error: clusters/k.yaml: stage apps: line 1: Kustomization spec.healthCheckExprs: "
        ),
        "{}",
        stderr(&out)
    );
}

#[test]
fn path_flag_narrows_where_stages_are_found() {
    let dir = repo(&[
        ("clusters/prod/s.yaml", &stage("prod", "apps", &[])),
        ("clusters/dev/s.yaml", &stage("dev", "apps", &[])),
        ("apps/cm.yaml", CONFIGMAP),
    ]);
    let out = stagegate(&["graph", &path_of(&dir), "--path", "clusters/prod"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "prod\n");
    let out = stagegate(&["graph", &path_of(&dir), "--path", "../"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn help_is_available_on_every_command() {
    for cmd in ["validate", "graph", "render"] {
        let out = stagegate(&[cmd, "--help"]);
        assert!(out.status.success());
        assert!(stdout(&out).contains("Usage:"));
    }
}

/// README's exit-code table, row by row, for the commands that need no
/// cluster (`tests/cli_cluster.rs` covers `diff`, `status` and `rerun`).
#[test]
fn exit_codes_follow_the_readme_table() {
    let broken = repo(&[("stages.yaml", &stage("s", "missing", &[]))]);
    let code = |args: &[&str]| stagegate(args).status.code();
    // 0: done, and the answer is yes.
    assert_eq!(code(&["validate", &example("native")]), Some(0));
    assert_eq!(code(&["render", &example("native")]), Some(0));
    assert_eq!(code(&["graph", &example("native")]), Some(0));
    // 1: done, and the answer is no.
    assert_eq!(code(&["validate", &path_of(&broken)]), Some(1));
    // 2: could not do what was asked.
    assert_eq!(code(&["render", &path_of(&broken)]), Some(2));
    // A stage that cannot be rendered fails alone: the graph is still drawn.
    assert_eq!(code(&["graph", &path_of(&broken)]), Some(0));
    assert_eq!(
        code(&["render", &example("native"), "--stage", "nope"]),
        Some(2)
    );
    assert_eq!(code(&["validate", "/nonexistent/stagegate-repo"]), Some(2));
    assert_eq!(code(&["no-such-command"]), Some(2));
    assert_eq!(
        code(&["graph", &example("native"), "--format", "png"]),
        Some(2)
    );
}
