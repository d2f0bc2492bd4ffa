//! render_stage end to end on small repositories written into a tempdir.

use std::fs;
use std::path::Path;

use stagegate::core::labels::{MANAGED_BY_KEY, SPEC_HASH_ANNOTATION, STAGE_LABEL};
use stagegate::core::object::Manifest;
use stagegate::core::render::{Patch, PatchTarget, RenderError, render_stage};
use stagegate::core::stage::Stage;

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

fn names(objects: &[Manifest]) -> Vec<String> {
    objects
        .iter()
        .map(|m| format!("{}/{}", m.kind(), m.name()))
        .collect()
}

const MIGRATION: &str = r#"
apiVersion: batch/v1
kind: Job
metadata:
  name: migrate
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: migrate
          image: app:${TAG}
          command: ["/bin/sh", "/scripts/migrate.sh"]
          volumeMounts: [{name: scripts, mountPath: /scripts}]
      volumes:
        - name: scripts
          configMap: {name: migrate-scripts}
"#;

fn scripts(body: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: migrate-scripts\ndata:\n  migrate.sh: |\n    {body}\n"
    )
}

#[test]
fn plain_directory_renders_files_in_sorted_path_order_with_stagegate_labels() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(root, "pre/b-job.yaml", MIGRATION);
    write(
        root,
        "pre/a-scripts.yaml",
        &format!(
            "---\n# leading empty document\n---\n{}",
            scripts("echo $HOME")
        ),
    );
    write(
        root,
        "pre/nested/svc.json",
        r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"db"}}"#,
    );
    write(
        root,
        "pre/stage.yaml",
        "apiVersion: stagegate.dev/v1alpha1\nkind: Stage\nmetadata: {name: pre}\nspec: {path: ./pre}\n",
    );
    write(root, "pre/README.md", "not yaml");

    let mut stage = Stage::new("pre", "pre");
    stage.substitute.insert("TAG".into(), "1.4.2".into());
    stage.target_namespace = Some("db".into());
    let objects = render_stage(root, &stage).unwrap();

    assert_eq!(
        names(&objects),
        ["ConfigMap/migrate-scripts", "Job/migrate", "Service/db"]
    );
    for m in &objects {
        assert_eq!(m.value["metadata"]["labels"][MANAGED_BY_KEY], "stagegate");
        assert_eq!(m.value["metadata"]["labels"][STAGE_LABEL], "pre");
        assert_eq!(m.namespace(), Some("db"));
    }
    let job = &objects[1];
    assert_eq!(
        job.value["spec"]["template"]["spec"]["containers"][0]["image"],
        "app:1.4.2"
    );
    assert_eq!(job.source, Path::new("pre/b-job.yaml"));
    assert_eq!(job.annotation(SPEC_HASH_ANNOTATION).map(str::len), Some(64));
    // `$HOME` is not Flux syntax and stays for the shell.
    assert_eq!(objects[0].value["data"]["migrate.sh"], "echo $HOME\n");
    assert!(objects[0].annotation(SPEC_HASH_ANNOTATION).is_none());
}

#[test]
fn job_hash_follows_the_script_in_its_config_map() {
    let hash_with = |script: &str| {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "pre/job.yaml", MIGRATION);
        write(tmp.path(), "pre/scripts.yaml", &scripts(script));
        let mut stage = Stage::new("pre", "pre");
        stage.substitute.insert("TAG".into(), "1".into());
        let objects = render_stage(tmp.path(), &stage).unwrap();
        objects
            .iter()
            .find(|m| m.kind() == "Job")
            .and_then(|m| m.annotation(SPEC_HASH_ANNOTATION))
            .map(str::to_string)
            .unwrap()
    };
    assert_eq!(hash_with("echo 1"), hash_with("echo 1"));
    assert_ne!(hash_with("echo 1"), hash_with("echo 2"));
}

#[test]
fn kustomization_then_substitution_then_stage_patches_and_images() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(
        root,
        "app/base/kustomization.yaml",
        "resources: [deploy.yaml]\ncommonLabels: {app: web}\n",
    );
    write(
        root,
        "app/base/deploy.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: ${REPLICAS:=1}\n  template:\n    spec:\n      containers:\n      - name: web\n        image: web:${TAG}\n",
    );
    write(
        root,
        "app/overlay/kustomization.yaml",
        "resources: [../base]\nnamePrefix: prod-\nnamespace: prod\n",
    );
    // Not part of the kustomization: never read.
    write(root, "app/overlay/stray.yaml", "not: [valid");

    let mut stage = Stage::new("application", "app/overlay");
    stage.substitute.insert("TAG".into(), "2.0".into());
    stage.substitute.insert("REPLICAS".into(), "3".into());
    stage.patches.push(Patch {
        patch: Some(
            "- op: add\n  path: /metadata/annotations\n  value: {tag: \"${TAG}\"}\n".into(),
        ),
        target: Some(PatchTarget {
            kind: Some("Deployment".into()),
            ..Default::default()
        }),
        ..Default::default()
    });
    let objects = render_stage(root, &stage).unwrap();
    assert_eq!(names(&objects), ["Deployment/prod-web"]);
    let d = &objects[0].value;
    assert_eq!(d["metadata"]["namespace"], "prod");
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(d["spec"]["selector"]["matchLabels"]["app"], "web");
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "web:2.0"
    );
    assert_eq!(
        d["metadata"]["annotations"]["tag"], "2.0",
        "stage patches are substituted, as in Flux"
    );
}

#[test]
fn errors_name_stage_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(
        root,
        "a/ok.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok}\n",
    );
    write(
        root,
        "a/broken.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [x\n",
    );
    let err = render_stage(root, &Stage::new("alpha", "a")).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, RenderError::Yaml { line: 4.., .. }), "{text}");
    assert!(
        text.contains("stage alpha") && text.contains("a/broken.yaml"),
        "{text}"
    );

    write(
        root,
        "b/x.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {v: \"${UNSET}\"}\n",
    );
    let mut stage = Stage::new("beta", "b");
    stage.substitute.insert("OTHER".into(), "1".into());
    let text = render_stage(root, &stage).unwrap_err().to_string();
    assert!(
        text.contains("UNSET") && text.contains("b/x.yaml") && text.contains("stage beta"),
        "{text}"
    );

    let text = render_stage(root, &Stage::new("gamma", "../outside"))
        .unwrap_err()
        .to_string();
    assert!(text.contains("outside the repository root"), "{text}");
}

#[cfg(unix)]
#[test]
fn symlink_out_of_the_repository_is_refused() {
    let outside = tempfile::tempdir().unwrap();
    write(
        outside.path(),
        "secret.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n",
    );
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir_all(tmp.path().join("app")).unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("secret.yaml"),
        tmp.path().join("app/secret.yaml"),
    )
    .unwrap();
    let err = render_stage(tmp.path(), &Stage::new("app", "app")).unwrap_err();
    assert!(matches!(err, RenderError::Path { .. }), "{err}");
}

#[test]
fn target_namespace_moves_service_account_subjects_along() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        "app/rbac.yaml",
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: app}\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: rb}\n\
         roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: x}\n\
         subjects:\n- {kind: ServiceAccount, name: app}\n- {kind: ServiceAccount, name: other}\n",
    );
    let mut stage = Stage::new("app", "app");
    stage.target_namespace = Some("apps".into());
    let objects = render_stage(tmp.path(), &stage).unwrap();
    let subjects = &objects[1].value["subjects"];
    assert_eq!(
        subjects[0]["namespace"], "apps",
        "the account of this stage moved with it"
    );
    assert!(
        subjects[1].get("namespace").is_none(),
        "an account from elsewhere is left alone"
    );
}

#[test]
fn unsupported_kustomization_field_and_bad_inline_patch_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        "a/kustomization.yaml",
        "resources: []\nhelmCharts:\n- name: x\n",
    );
    let text = render_stage(tmp.path(), &Stage::new("a", "a"))
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("`helmCharts`") && text.contains("a/kustomization.yaml"),
        "{text}"
    );

    write(
        tmp.path(),
        "b/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
    );
    write(
        tmp.path(),
        "b/kustomization.yaml",
        "resources: [cm.yaml]\npatches:\n- target: {kind: ConfigMap}\n  patch: |-\n    data: [unclosed\n",
    );
    let text = render_stage(tmp.path(), &Stage::new("b", "b"))
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("inline patch, line ") && text.contains("b/kustomization.yaml"),
        "{text}"
    );
}

#[test]
fn the_same_object_twice_in_a_stage_is_an_error_naming_both_files() {
    let tmp = tempfile::tempdir().unwrap();
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\n";
    write(tmp.path(), "app/a.yaml", cm);
    write(tmp.path(), "app/b.yaml", cm);
    let text = render_stage(tmp.path(), &Stage::new("app", "app"))
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("app/a.yaml") && text.contains("app/b.yaml"),
        "{text}"
    );
    assert!(text.contains("ConfigMap settings"), "{text}");
}

fn job_hash(objects: &[Manifest], name_prefix: &str) -> String {
    objects
        .iter()
        .find(|m| m.kind() == "Job" && m.name().starts_with(name_prefix))
        .and_then(|m| m.value["metadata"]["annotations"][SPEC_HASH_ANNOTATION].as_str())
        .map(str::to_string)
        .expect("the Job carries a spec hash")
}

#[test]
fn editing_a_generated_script_recreates_the_job_and_other_generators_do_not() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(
        root,
        "app/kustomization.yaml",
        "resources: [job.yaml]\nconfigMapGenerator:\n- name: migrate-scripts\n  files: [migrate.sh]\n\
         - name: unrelated\n  literals: [A=1]\n",
    );
    write(root, "app/job.yaml", MIGRATION);
    write(root, "app/migrate.sh", "psql -f v1.sql\n");
    let mut stage = Stage::new("app", "app");
    stage.substitute.insert("TAG".into(), "1".into());
    let first = render_stage(root, &stage).unwrap();
    let before = job_hash(&first, "migrate");
    let volume = &first.iter().find(|m| m.kind() == "Job").unwrap().value["spec"]["template"]["spec"]
        ["volumes"][0]["configMap"]["name"];
    assert!(
        volume
            .as_str()
            .is_some_and(|n| n.starts_with("migrate-scripts-")),
        "the Job mounts the generated ConfigMap by its hashed name: {volume}"
    );

    write(
        root,
        "app/kustomization.yaml",
        "resources: [job.yaml]\nconfigMapGenerator:\n- name: migrate-scripts\n  files: [migrate.sh]\n\
         - name: unrelated\n  literals: [A=2]\n",
    );
    let unchanged = job_hash(&render_stage(root, &stage).unwrap(), "migrate");
    assert_eq!(
        before, unchanged,
        "a generator the Job does not read leaves it alone"
    );

    write(root, "app/migrate.sh", "psql -f v2.sql\n");
    let after = job_hash(&render_stage(root, &stage).unwrap(), "migrate");
    assert_ne!(
        before, after,
        "editing the script changes the Job's spec hash"
    );
}

#[test]
fn kustomization_header_escaping_paths_and_huge_files_are_refused_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(
        root,
        "v9/kustomization.yaml",
        "apiVersion: kustomize.config.k8s.io/v9\nkind: Kustomization\nresources: []\n",
    );
    let err = render_stage(root, &Stage::new("v9", "v9")).unwrap_err();
    assert_eq!(err.file(), Path::new("v9/kustomization.yaml"));
    assert!(
        err.to_string()
            .contains("unknown apiVersion `kustomize.config.k8s.io/v9`"),
        "{err}"
    );

    write(
        root,
        "out/kustomization.yaml",
        "resources: [../../elsewhere]\n",
    );
    let err = render_stage(root, &Stage::new("out", "out")).unwrap_err();
    let text = err.to_string();
    assert_eq!(err.file(), Path::new("out/kustomization.yaml"), "{text}");
    assert!(
        text.contains("`../../elsewhere` points outside the repository")
            && !text.contains(&*root.to_string_lossy()),
        "the message names the entry as written, not the agent's cache path: {text}"
    );

    let big = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: big}}\ndata:\n  blob: \"{}\"\n",
        "x".repeat(stagegate::core::yaml::MAX_FILE_BYTES)
    );
    write(root, "big/cm.yaml", &big);
    let err = render_stage(root, &Stage::new("big", "big")).unwrap_err();
    let text = err.to_string();
    assert_eq!(err.file(), Path::new("big/cm.yaml"), "{text}");
    let limit = format!("limit of {} bytes", stagegate::core::yaml::MAX_FILE_BYTES);
    assert!(text.contains(&limit), "{text}");
}

#[test]
fn plugin_fields_are_refused_with_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        "t/kustomization.yaml",
        "resources: []\ntransformers: [plugin.yaml]\n",
    );
    write(
        tmp.path(),
        "t/plugin.yaml",
        "apiVersion: example.com/v1\nkind: Sed\nmetadata: {name: s}\n",
    );
    let err = render_stage(tmp.path(), &Stage::new("t", "t")).unwrap_err();
    assert_eq!(err.file(), Path::new("t/plugin.yaml"));
    assert!(err.to_string().contains("commit the output"), "{err}");

    write(
        tmp.path(),
        "h/kustomization.yaml",
        "helmCharts:\n- name: redis\n",
    );
    let err = render_stage(tmp.path(), &Stage::new("h", "h")).unwrap_err();
    assert!(err.to_string().contains("helm template"), "{err}");
}
