//! `diff`, `status` and `rerun`: the real binary against kube-sim through a
//! kubeconfig, as an operator runs them.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use stagegate::cluster::apply::{Engine, EngineSettings};
use stagegate::cluster::state::{Phase, StageSpec, State, StateStore};

fn stagegate(kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stagegate"))
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("STAGEGATE_NAMESPACE")
        .output()
        .expect("run stagegate")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

// The binary runs as a blocking child process: the simulated cluster needs
// worker threads of its own meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_status_and_rerun_against_a_cluster() {
    let c = cluster().await;
    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig = tmp.path().join("kubeconfig");
    c.sim.write_kubeconfig(&kubeconfig).unwrap();
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/native"),
        &repo,
    );
    let repo_arg = repo.display().to_string();

    // Nothing applied yet: everything is to be created.
    let out = stagegate(&kubeconfig, &["diff", &repo_arg]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let shown = text(&out);
    assert!(
        shown.contains("stage pre:\n") && shown.contains("+ create Namespace shop"),
        "{shown}"
    );
    assert!(
        shown.contains("job shop/db-migrate: create (spec "),
        "{shown}"
    );
    assert!(shown.find("stage pre:").unwrap() < shown.find("stage application:").unwrap());

    // Apply both stages and record the state as the agent does.
    let namespaces: Api<Namespace> = Api::all(c.client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some("stagegate-system".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let engine = Engine::new(c.client.clone(), EngineSettings::default());
    let store = StateStore::new(c.client.clone(), "stagegate-system");
    let mut state = State::default();
    for planned in &plan(&repo).stages {
        let stage_state = state.stages.entry(planned.stage.name.clone()).or_default();
        let report = engine
            .apply_stage(
                planned,
                "main@sha1:1111111111111111111111111111111111111111",
                stage_state,
            )
            .await;
        assert!(report.ready, "{}", report.message);
        stage_state.phase = Phase::Ready;
        stage_state.revision = Some("main@sha1:1111111111111111111111111111111111111111".into());
        stage_state.message = report.message;
        let spec = StageSpec::from(&planned.stage);
        store
            .save_stage(planned.stage.name.as_str(), Some(&spec), stage_state)
            .await
            .unwrap();
    }

    let out = stagegate(&kubeconfig, &["diff", &repo_arg]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("job shop/db-migrate: left alone (unchanged)"),
        "{}",
        text(&out)
    );

    // A new tag: the Deployment changes and the migration would run again.
    let stages = repo.join("stages.yaml");
    let content = std::fs::read_to_string(&stages)
        .unwrap()
        .replace("1.4.2", "1.4.3");
    std::fs::write(&stages, content).unwrap();
    let out = stagegate(&kubeconfig, &["diff", &repo_arg]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let shown = text(&out);
    assert!(
        shown.contains("~ change Deployment.apps shop/shop-web"),
        "{shown}"
    );
    assert!(
        shown.contains("-        image: registry.example.com/shop/app:1.4.2"),
        "{shown}"
    );
    assert!(
        shown.contains("+        image: registry.example.com/shop/app:1.4.3"),
        "{shown}"
    );
    assert!(
        shown.contains("job shop/db-migrate: recreate because spec hash"),
        "{shown}"
    );
    let out = stagegate(&kubeconfig, &["diff", &repo_arg, "--stage", "application"]);
    assert!(!text(&out).contains("stage pre:"), "{}", text(&out));

    let out = stagegate(&kubeconfig, &["status"]);
    assert!(out.status.success(), "{}", text(&out));
    let shown = text(&out);
    assert!(
        shown.lines().any(|l| l.starts_with("pre ")
            && l.contains("Ready")
            && l.contains("main@sha1:111111111111")),
        "{shown}"
    );
    assert!(shown.contains("job shop/db-migrate: succeeded"), "{shown}");
    let out = stagegate(&kubeconfig, &["status", "-o", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The status page's report: stages by name, with their edges.
    assert_eq!(json["stages"]["application"]["phase"], "Ready", "{json}");
    assert_eq!(
        json["stages"]["application"]["dependsOn"][0], "pre",
        "{json}"
    );

    let out = stagegate(&kubeconfig, &["rerun", "pre", "db-migrate"]);
    assert!(out.status.success(), "{}", text(&out));
    let pre = store.get_stage("pre").await.unwrap();
    let asked = pre.requests.rerun.unwrap_or_default();
    assert!(asked.starts_with("db-migrate@"), "{asked}");

    // Unknown stages and Jobs are refused, naming the real ones.
    let out = stagegate(&kubeconfig, &["rerun", "nosuchstage"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains(
            "no stage named nosuchstage in namespace stagegate-system; stages: application, pre"
        ),
        "{}",
        text(&out)
    );
    let out = stagegate(&kubeconfig, &["rerun", "pre", "nosuchjob"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("stage pre has no Job nosuchjob; its Jobs: shop/db-migrate"),
        "{}",
        text(&out)
    );
    assert!(
        store
            .list()
            .await
            .unwrap()
            .iter()
            .all(|s| s.name != "nosuchstage")
    );

    // A namespace that does not exist is an error with a hint, not an empty table.
    let out = stagegate(&kubeconfig, &["status", "-n", "nope"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("namespace nope does not exist"),
        "{}",
        text(&out)
    );
    c.sim.shutdown().await;
}
