//! The agent as it is installed: `stagegate run` authenticates as the
//! `stagegate` ServiceAccount with exactly the RBAC that `manifests/` (or
//! `manifests-namespaced/`) installs, kube-sim enforces RBAC, and the seed
//! scenarios (the examples/native repository: a Job stage and its dependent,
//! a changed Job, prune) must pass without one forbidden call. Every call the
//! agent made must also be declared in `stagegate::agent::rbac::required()`, so the
//! hand-kept list is checked against what the agent really does.

mod common;

use std::path::PathBuf;
use std::process::Output;

use common::git::GitRepo;
use common::*;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube_sim::AuditEntry;
use stagegate::agent::rbac::{Call, undeclared};

const NS: &str = "stagegate-system";
const SA_USER: &str = "system:serviceaccount:stagegate-system:stagegate";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The files of examples/native, with `edit` applied to each (path, content).
fn example_files(edit: impl Fn(&str, String) -> Option<String>) -> Vec<(String, String)> {
    let base = root().join("examples/native");
    let mut out = Vec::new();
    for rel in [
        "stages.yaml",
        "pre/namespace.yaml",
        "pre/migration.yaml",
        "application/deployment.yaml",
        "application/service.yaml",
    ] {
        let content = std::fs::read_to_string(base.join(rel)).expect("read examples/native");
        if let Some(c) = edit(rel, content) {
            out.push((rel.to_string(), c));
        }
    }
    out
}

struct Installed {
    c: Cluster,
    tmp: tempfile::TempDir,
    admin: PathBuf,
    agent: PathBuf,
}

impl Installed {
    /// A kube-sim with the install manifests of `dir` applied by an admin,
    /// and a kubeconfig for the agent's ServiceAccount.
    async fn new(dir: &str, before: &str) -> Installed {
        let c = cluster().await;
        let tmp = tempfile::tempdir().expect("tempdir");
        let admin = tmp.path().join("admin.kubeconfig");
        c.sim.write_kubeconfig(&admin).expect("write kubeconfig");
        let agent = tmp.path().join("agent.kubeconfig");
        std::fs::write(&agent, c.sim.service_account_kubeconfig(NS, "stagegate"))
            .expect("write agent kubeconfig");
        let i = Installed {
            c,
            tmp,
            admin,
            agent,
        };
        if !before.is_empty() {
            let f = i.tmp.path().join("before.yaml");
            std::fs::write(&f, before).expect("write");
            i.kubectl(&["apply", "-f", &f.to_string_lossy()]);
        }
        let manifests = i.kubectl(&["kustomize", &root().join(dir).to_string_lossy()]);
        let f = i.tmp.path().join("install.yaml");
        std::fs::write(&f, manifests).expect("write");
        i.kubectl(&["apply", "-f", &f.to_string_lossy()]);
        i.c.sim.start_audit();
        i
    }

    fn kubectl(&self, args: &[&str]) -> String {
        let o = std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.admin)
            .arg("--cache-dir")
            .arg(self.tmp.path().join("kubectl-cache"))
            .args(args)
            .env_remove("KUBECONFIG")
            .output()
            .expect("run kubectl (is it installed?)");
        assert!(o.status.success(), "kubectl {args:?}: {}", out(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// `stagegate run --once` as the ServiceAccount.
    async fn run_once(&self, repo: &GitRepo) -> Output {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_stagegate"));
        cmd.args([
            "run",
            "--once",
            "--listen",
            "127.0.0.1:0",
            "--namespace",
            NS,
        ])
        .args(["--repo", &repo.file_url()])
        .arg("--cache-dir")
        .arg(self.tmp.path().join("cache"))
        .arg("--kubeconfig")
        .arg(&self.agent)
        .env_remove("KUBECONFIG")
        .env("STAGEGATE_LOG", "info");
        tokio::task::spawn_blocking(move || cmd.output().expect("run stagegate"))
            .await
            .expect("join")
    }

    /// No request of the agent was refused, and each was declared.
    fn assert_agent_calls_allowed_and_declared(&self) {
        let log: Vec<AuditEntry> = self
            .c
            .sim
            .audit_log()
            .into_iter()
            .filter(|e| e.user == SA_USER)
            .collect();
        assert!(
            !log.is_empty(),
            "the agent made no call as its ServiceAccount"
        );
        let refused: Vec<&AuditEntry> = log.iter().filter(|e| !e.allowed).collect();
        assert!(
            refused.is_empty(),
            "forbidden calls of the agent: {refused:#?}"
        );
        let calls: Vec<Call<'_>> = log
            .iter()
            .filter(|e| !e.resource.is_empty())
            .map(|e| Call {
                verb: &e.verb,
                group: &e.group,
                resource: &e.resource,
                namespace: &e.namespace,
            })
            .collect();
        let missing = undeclared(&calls, NS);
        assert!(
            missing.is_empty(),
            "calls not declared in stagegate::agent::rbac::required(): {missing:#?}"
        );
    }
}

fn out(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn commit(repo: &GitRepo, message: &str, files: &[(String, String)]) {
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    repo.commit(message, &files);
}

/// The three seed scenarios against an installed agent.
async fn seed_scenarios(i: &Installed, keep_namespace_file: bool) {
    let repo = GitRepo::init(&i.tmp.path().join("repo"));
    let base =
        |rel: &str, c: String| (keep_namespace_file || rel != "pre/namespace.yaml").then_some(c);
    // Short simulated Job runs.
    let fast_job = |c: String| {
        c.replace(
            "  name: db-migrate\nspec:",
            "  name: db-migrate\n  annotations: {sim.stagegate.dev/duration: 200ms}\nspec:",
        )
    };

    // 1. A Job stage and its dependent.
    let files = example_files(|rel, c| {
        base(rel, c).map(|c| {
            if rel == "pre/migration.yaml" {
                fast_job(c)
            } else {
                c
            }
        })
    });
    commit(&repo, "first", &files);
    let o = i.run_once(&repo).await;
    assert!(o.status.success(), "first run: {}", out(&o));
    assert!(out(&o).contains("2/2 stages Ready"), "{}", out(&o));
    let jobs: Api<Job> = Api::namespaced(i.c.client.clone(), "shop");
    let first = jobs.get("db-migrate").await.expect("the Job").metadata.uid;

    // 2. A changed Job is run again before the application moves on.
    let files = example_files(|rel, c| {
        base(rel, c).map(|c| {
            if rel == "pre/migration.yaml" {
                fast_job(c).replace("--script", "--verbose\", \"--script")
            } else {
                c
            }
        })
    });
    commit(&repo, "migration with --verbose", &files);
    let o = i.run_once(&repo).await;
    assert!(o.status.success(), "changed Job: {}", out(&o));
    let second = jobs.get("db-migrate").await.expect("the Job").metadata.uid;
    assert_ne!(first, second, "the changed Job was recreated");

    // 3. Prune: the Service removed from Git is deleted.
    std::fs::remove_file(repo.dir.join("application/service.yaml")).expect("remove the Service");
    commit(&repo, "no Service", &[]);
    let o = i.run_once(&repo).await;
    assert!(o.status.success(), "prune: {}", out(&o));
    let services: Api<Service> = Api::namespaced(i.c.client.clone(), "shop");
    assert!(
        services.get_opt("shop-web").await.expect("read").is_none(),
        "the removed Service was pruned: {}",
        out(&o)
    );
    i.assert_agent_calls_allowed_and_declared();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installed_agent_passes_the_seed_scenarios_with_rbac_enforced() {
    let i = Installed::new("manifests", "").await;
    seed_scenarios(&i, true).await;
    i.c.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaced_install_passes_the_seed_scenarios_in_its_namespace() {
    // manifests-namespaced/ needs its namespaces to exist, and grants no
    // cluster-scoped writes, so the repository holds no Namespace.
    let shop = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n";
    let i = Installed::new("manifests-namespaced", shop).await;
    seed_scenarios(&i, false).await;
    i.c.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaced_install_cannot_write_outside_its_namespaces() {
    let shop = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n";
    let i = Installed::new("manifests-namespaced", shop).await;
    let repo = GitRepo::init(&i.tmp.path().join("repo"));
    // A cluster-scoped object is outside every namespace the install allows.
    let mut files = example_files(|_, c| Some(c));
    files.push((
        "pre/clusterrole.yaml".into(),
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: shop-reader}\nrules: []\n".into(),
    ));
    commit(&repo, "first", &files);
    let o = i.run_once(&repo).await;
    assert!(!o.status.success(), "{}", out(&o));
    let message = format!(
        r#"clusterroles.rbac.authorization.k8s.io \"shop-reader\" is forbidden: User \"{SA_USER}\" cannot patch resource \"clusterroles\" in API group \"rbac.authorization.k8s.io\" at the cluster scope"#
    );
    assert!(
        out(&o).contains(&message) || out(&o).contains(&message.replace('\\', "")),
        "the stage fails with the API server's message: {}",
        out(&o)
    );
    i.c.sim.shutdown().await;
}
