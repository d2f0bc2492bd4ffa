//! No secret reaches any output: Secret values in `diff`, tokens written
//! into the repository URL in errors, Events and the stored state.

mod common;

use common::*;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::PostParams;
use stagegate::agent::source::{GitRef, GitSource, SourceConfig};
use stagegate::cluster::apply::{Engine, EngineSettings};
use stagegate::cluster::state::StageState;

const LIVE_VALUE: &str = "live-password-4711";
const GIT_VALUE: &str = "git-password-0815";

fn b64(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_masks_secret_values_from_the_cluster_and_from_git() {
    let c = cluster().await;
    let live: Secret = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "db", "namespace": "default"},
        "data": {"password": b64(LIVE_VALUE), "user": b64("admin-user")}
    }))
    .unwrap();
    let secrets: Api<Secret> = Api::namespaced(c.client.clone(), "default");
    secrets.create(&PostParams::default(), &live).await.unwrap();

    let secret_doc = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: default\n\
         stringData:\n  password: {GIT_VALUE}\ndata:\n  user: {}\n",
        b64("admin-user")
    );
    let dir = repo(&[
        ("stages.yaml", &stage_doc("db", "db", "")),
        ("db/secret.yaml", &secret_doc),
    ]);
    let plan = plan(dir.path());
    let engine = Engine::new(c.client.clone(), EngineSettings::default());
    let diff = engine
        .diff_stage(&plan.stages[0], "main@sha1:1", &StageState::default())
        .await;
    let shown = format!("{diff}");
    assert!(diff.errors.is_empty(), "{:?}", diff.errors);
    assert_eq!(diff.change.len(), 1, "the Secret changes: {shown}");
    for secret in [LIVE_VALUE, GIT_VALUE, &b64(LIVE_VALUE), &b64(GIT_VALUE)] {
        assert!(!shown.contains(secret), "{secret} shown in:\n{shown}");
    }
    // Which key changes is still visible, never to what.
    assert!(shown.contains("password: '*** (after)'"), "{shown}");
    assert!(
        !shown.contains("admin-user") && !shown.contains(&b64("admin-user")),
        "{shown}"
    );
    c.sim.shutdown().await;
}

#[tokio::test]
async fn a_token_as_url_user_or_query_never_appears_in_fetch_errors() {
    // Nothing listens on this port: the fetch fails, and its error is what
    // goes into logs, the GitFetchFailed Event and the state.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    for url in [
        format!("https://ghp_USERTOKEN1234@127.0.0.1:{port}/org/repo.git"),
        format!("https://oauth2:ghp_PASSTOKEN1234@127.0.0.1:{port}/org/repo.git"),
        format!("https://127.0.0.1:{port}/org/repo.git?private_token=ghp_QUERYTOKEN1234"),
    ] {
        let cache = tempfile::tempdir().unwrap();
        let source = GitSource::new(SourceConfig::new(
            url.clone(),
            GitRef::Branch("main".into()),
            cache.path().to_path_buf(),
        ));
        let error = source.fetch().await.unwrap_err();
        let text = format!("{error} {error:?}");
        assert!(!text.contains("TOKEN1234"), "{url} leaked in: {text}");
        assert!(
            text.contains("127.0.0.1"),
            "the server is still named: {text}"
        );
    }
}
