//! Authentication, impersonation and RBAC, driven by the real kubectl with
//! kubeconfigs for named users and ServiceAccounts.

mod common;

use common::{Kubectl, raw, sim};
use kube_sim::KubeSim;

/// kubectl with a kubeconfig of the given content (its own cache dir).
fn kubectl_with(kubeconfig: &str, sim: &KubeSim) -> Kubectl {
    let k = Kubectl::new(sim);
    k.file("kubeconfig", kubeconfig);
    k
}

const TENANT: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: team-a}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: deployer, namespace: team-a}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: deployer-edit, namespace: team-a}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: edit}
subjects:
- {kind: ServiceAccount, name: deployer, namespace: team-a}
"#;

/// What `kubectl auth whoami` sends.
const WHOAMI: &str = "apiVersion: authentication.k8s.io/v1\nkind: SelfSubjectReview\n";

const CONFIGMAP: &str =
    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {a: b}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_service_account_writes_its_namespace_only() {
    let sim = sim().await;
    let admin = Kubectl::new(&sim);
    admin.file("tenant.yaml", TENANT);
    admin
        .ok(&[
            "apply",
            "-f",
            admin.file("tenant.yaml", TENANT).to_str().unwrap(),
        ])
        .await;
    let tenant = kubectl_with(&sim.service_account_kubeconfig("team-a", "deployer"), &sim);
    let cm = tenant.file("cm.yaml", CONFIGMAP);
    let cm = cm.to_str().unwrap();

    // The aggregated `edit` role lets it write ConfigMaps in team-a.
    let out = tenant.ok(&["apply", "-n", "team-a", "-f", cm]).await;
    assert!(out.contains("configmap/settings created"), "{out}");
    tenant
        .ok(&["get", "configmap", "settings", "-n", "team-a"])
        .await;

    // Anywhere else: the real authorizer's message.
    let err = tenant.fails(&["apply", "-n", "default", "-f", cm]).await;
    assert!(
        err.contains(r#"configmaps "settings" is forbidden: User "system:serviceaccount:team-a:deployer" cannot get resource "configmaps" in API group "" in the namespace "default""#),
        "{err}"
    );
    let err = tenant.fails(&["get", "namespaces"]).await;
    assert!(
        err.contains(r#"namespaces is forbidden: User "system:serviceaccount:team-a:deployer" cannot list resource "namespaces" in API group "" at the cluster scope"#),
        "{err}"
    );
    // RBAC objects themselves are not in `edit`: no escalation.
    let err = tenant.fails(&["get", "rolebindings", "-n", "team-a"]).await;
    assert!(err.contains(r#"cannot list resource "rolebindings" in API group "rbac.authorization.k8s.io" in the namespace "team-a""#), "{err}");

    // A deleted ServiceAccount's token no longer authenticates.
    admin
        .ok(&["delete", "serviceaccount", "deployer", "-n", "team-a"])
        .await;
    let err = tenant.fails(&["get", "configmaps", "-n", "team-a"]).await;
    assert!(err.contains("Unauthorized"), "{err}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_names_subresources_and_missing_roles() {
    let sim = sim().await;
    let admin = Kubectl::new(&sim);
    let rbac = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: one-configmap, namespace: default}
rules:
- {apiGroups: [""], resources: [configmaps], resourceNames: [allowed], verbs: [get]}
- {apiGroups: [""], resources: [pods/log], verbs: [get]}
- {apiGroups: [apps], resources: ["*/scale"], verbs: [get]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: alice, namespace: default}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: one-configmap}
subjects: [{kind: User, name: alice, apiGroup: rbac.authorization.k8s.io}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: dangling, namespace: default}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: gone}
subjects: [{kind: User, name: alice, apiGroup: rbac.authorization.k8s.io}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: allowed, namespace: default}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: secret-plans, namespace: default}
"#;
    admin
        .ok(&[
            "apply",
            "-f",
            admin.file("rbac.yaml", rbac).to_str().unwrap(),
        ])
        .await;
    let alice = kubectl_with(&sim.user_kubeconfig("alice", &[]), &sim);
    alice.ok(&["get", "configmap", "allowed"]).await;
    let err = alice.fails(&["get", "configmap", "secret-plans"]).await;
    assert!(
        err.contains(r#"configmaps "secret-plans" is forbidden: User "alice" cannot get resource "configmaps" in API group "" in the namespace "default": RBAC: role.rbac.authorization.k8s.io "gone" not found"#),
        "{err}"
    );
    // resourceNames never cover a list.
    let err = alice.fails(&["get", "configmaps"]).await;
    assert!(
        err.contains(r#"User "alice" cannot list resource "configmaps""#),
        "{err}"
    );
    // A subresource needs its own rule: pods/log does not give pods.
    let err = alice.fails(&["get", "pods"]).await;
    assert!(err.contains(r#"cannot list resource "pods""#), "{err}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impersonation_needs_the_impersonate_verb_and_access_reviews_answer_as_the_authorizer() {
    let sim = sim().await;
    let admin = Kubectl::new(&sim);
    admin
        .ok(&[
            "apply",
            "-f",
            admin.file("tenant.yaml", TENANT).to_str().unwrap(),
        ])
        .await;
    let sa = "system:serviceaccount:team-a:deployer";

    // The admin may impersonate anyone; the impersonated user gets its own rights.
    admin
        .ok(&["get", "configmaps", "-n", "team-a", "--as", sa])
        .await;
    let err = admin
        .fails(&["get", "secrets", "-n", "default", "--as", sa])
        .await;
    assert!(err.contains(&format!(r#"User "{sa}" cannot list resource "secrets" in API group "" in the namespace "default""#)), "{err}");
    // Groups impersonated too: system:masters is everything.
    admin
        .ok(&[
            "get",
            "secrets",
            "-n",
            "default",
            "--as",
            "carol",
            "--as-group",
            "system:masters",
        ])
        .await;

    // bob may not impersonate until a ClusterRole says so, and then only alice.
    let bob = kubectl_with(&sim.user_kubeconfig("bob", &["devs"]), &sim);
    // kubectl's discovery is refused first and prints "Forbidden: unknown",
    // as against a real server; a raw GET shows the message.
    let err = bob.fails(&["get", "configmaps", "--as", "alice"]).await;
    assert!(err.contains("Error from server (Forbidden)"), "{err}");
    let err = bob
        .fails(&[
            "get",
            "--raw",
            "/api/v1/namespaces/default/configmaps",
            "--as",
            "alice",
        ])
        .await;
    assert!(
        err.contains(r#"users "alice" is forbidden: User "bob" cannot impersonate resource "users" in API group "" at the cluster scope"#),
        "{err}"
    );
    let grant = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: impersonate-alice}
rules: [{apiGroups: [""], resources: [users], verbs: [impersonate], resourceNames: [alice]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: devs-impersonate-alice}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: impersonate-alice}
subjects: [{kind: Group, name: devs, apiGroup: rbac.authorization.k8s.io}]
"#;
    admin
        .ok(&[
            "apply",
            "-f",
            admin.file("grant.yaml", grant).to_str().unwrap(),
        ])
        .await;
    let err = bob.fails(&["get", "configmaps", "--as", "alice"]).await;
    assert!(
        err.contains(r#"User "alice" cannot list resource "configmaps""#),
        "{err}"
    );
    let err = bob
        .fails(&[
            "get",
            "--raw",
            "/api/v1/namespaces/default/configmaps",
            "--as",
            "dave",
        ])
        .await;
    assert!(
        err.contains(r#"users "dave" is forbidden: User "bob" cannot impersonate"#),
        "{err}"
    );

    // A SelfSubjectReview (`kubectl auth whoami`) as the impersonated user.
    let whoami = admin.file("whoami.yaml", WHOAMI);
    let out = admin
        .ok(&[
            "create",
            "-f",
            whoami.to_str().unwrap(),
            "--as",
            sa,
            "-o",
            "jsonpath={.status.userInfo.username} {.status.userInfo.groups}",
        ])
        .await;
    assert!(out.starts_with(sa), "{out}");
    assert!(out.contains("system:serviceaccounts:team-a"), "{out}");

    // A SelfSubjectAccessReview, as `kubectl auth can-i` sends it.
    let review = |verb: &str, ns: &str| {
        format!(
            "apiVersion: authorization.k8s.io/v1\nkind: SelfSubjectAccessReview\nspec:\n  resourceAttributes: {{verb: {verb}, resource: deployments, group: apps, namespace: {ns}}}\n"
        )
    };
    let allowed = admin.file("allowed.yaml", &review("create", "team-a"));
    let out = admin
        .ok(&[
            "create",
            "-f",
            allowed.to_str().unwrap(),
            "--as",
            sa,
            "-o",
            "jsonpath={.status.allowed} {.status.reason}",
        ])
        .await;
    assert_eq!(
        out,
        r#"true RBAC: allowed by RoleBinding "deployer-edit/team-a" of ClusterRole "edit" to ServiceAccount "deployer/team-a""#
    );
    let denied = admin.file("denied.yaml", &review("create", "default"));
    let out = admin
        .ok(&[
            "create",
            "-f",
            denied.to_str().unwrap(),
            "--as",
            sa,
            "-o",
            "jsonpath={.status.allowed}",
        ])
        .await;
    assert_eq!(out, "false");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregated_roles_follow_their_labelled_members() {
    let sim = sim().await;
    let admin = Kubectl::new(&sim);
    let base = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: monitoring}
aggregationRule:
  clusterRoleSelectors: [{matchLabels: {example.com/aggregate-to-monitoring: "true"}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: monitoring}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: monitoring}
subjects: [{kind: User, name: erin, apiGroup: rbac.authorization.k8s.io}]
"#;
    admin
        .ok(&[
            "apply",
            "-f",
            admin.file("base.yaml", base).to_str().unwrap(),
        ])
        .await;
    let erin = kubectl_with(&sim.user_kubeconfig("erin", &[]), &sim);
    let err = erin.fails(&["get", "pods", "-A"]).await;
    assert!(
        err.contains(
            r#"User "erin" cannot list resource "pods" in API group "" at the cluster scope"#
        ),
        "{err}"
    );
    let member = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: monitoring-pods
  labels: {example.com/aggregate-to-monitoring: "true"}
rules: [{apiGroups: [""], resources: [pods], verbs: [get, list, watch]}]
"#;
    admin
        .ok(&[
            "apply",
            "-f",
            admin.file("member.yaml", member).to_str().unwrap(),
        ])
        .await;
    erin.ok(&["get", "pods", "-A"]).await;
    // Discovery and /version are every authenticated user's; other paths are not.
    erin.ok(&["get", "--raw", "/version"]).await;
    let err = erin.fails(&["get", "--raw", "/metrics"]).await;
    assert!(
        err.contains(r#"forbidden: User "erin" cannot get path "/metrics""#),
        "{err}"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_tokens_are_unauthorized_and_the_default_kubeconfig_is_admin() {
    let sim = sim().await;
    let r = raw(
        &sim,
        "GET",
        "/api/v1/namespaces",
        &[("Authorization", "Bearer nonsense")],
        "",
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["reason"], "Unauthorized");
    let real = sim.user_kubeconfig("someone", &[]);
    let token = real
        .lines()
        .find_map(|l| l.trim().strip_prefix("token: "))
        .unwrap()
        .to_string();
    let stranger = kubectl_with(&real.replace(&token, "nonsense"), &sim);
    let err = stranger.fails(&["get", "pods"]).await;
    assert!(err.contains("You must be logged in to the server"), "{err}");
    let admin = Kubectl::new(&sim);
    let whoami = admin.file("whoami.yaml", WHOAMI);
    let out = admin
        .ok(&[
            "create",
            "-f",
            whoami.to_str().unwrap(),
            "-o",
            "jsonpath={.status.userInfo.username}",
        ])
        .await;
    assert_eq!(out, "kube-sim-admin");
    sim.shutdown().await;
}

/// Runs kubectl with a kubeconfig file the binary wrote.
async fn kubectl_at(
    kubeconfig: &std::path::Path,
    cache: &std::path::Path,
    args: &[&str],
) -> std::process::Output {
    tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(cache)
        .args(args)
        .env_remove("KUBECONFIG")
        .output()
        .await
        .expect("run kubectl (is it installed?)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_writes_kubeconfigs_for_users_and_service_accounts() {
    let dir = tempfile::tempdir().unwrap();
    let (admin, sa, dev) = (
        dir.path().join("admin"),
        dir.path().join("sa"),
        dir.path().join("dev"),
    );
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kube-sim"))
        .args(["--port", "0", "--kubeconfig-out"])
        .arg(&admin)
        .arg("--service-account-kubeconfig")
        .arg(format!("team-a/deployer={}", sa.display()))
        .arg("--user-kubeconfig")
        .arg(format!("dana:devs,ops={}", dev.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    common::eventually("the kubeconfigs are written", || async {
        admin.exists() && sa.exists() && dev.exists()
    })
    .await;
    let cache = dir.path().join("cache");
    // The ServiceAccount does not exist yet: its token is refused.
    let o = kubectl_at(&sa, &cache, &["get", "configmaps", "-n", "team-a"]).await;
    assert!(!o.status.success());
    let tenant = dir.path().join("tenant.yaml");
    std::fs::write(&tenant, TENANT).unwrap();
    let o = kubectl_at(&admin, &cache, &["apply", "-f", tenant.to_str().unwrap()]).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = kubectl_at(&sa, &cache, &["get", "configmaps", "-n", "team-a"]).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // dana is in devs and ops, and nothing is bound to them.
    let o = kubectl_at(&dev, &cache, &["get", "configmaps", "-n", "team-a"]).await;
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains(r#"User "dana" cannot list resource "configmaps""#),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let whoami = dir.path().join("whoami.yaml");
    std::fs::write(&whoami, WHOAMI).unwrap();
    let o = kubectl_at(
        &dev,
        &cache,
        &[
            "create",
            "-f",
            whoami.to_str().unwrap(),
            "-o",
            "jsonpath={.status.userInfo.groups}",
        ],
    )
    .await;
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        r#"["devs","ops","system:authenticated"]"#
    );
    child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kube_client_impersonating_a_service_account_gets_its_rights() {
    let sim = sim().await;
    let admin = Kubectl::new(&sim);
    admin
        .ok(&[
            "apply",
            "-f",
            admin.file("tenant.yaml", TENANT).to_str().unwrap(),
        ])
        .await;
    let mut config = kube::Config::new(sim.url().parse().unwrap());
    config.auth_info.impersonate = Some("system:serviceaccount:team-a:deployer".into());
    let c = kube::Client::try_from(config).unwrap();
    use k8s_openapi::api::core::v1::ConfigMap;
    let cm: ConfigMap =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "x"}})).unwrap();
    let own: kube::Api<ConfigMap> = kube::Api::namespaced(c.clone(), "team-a");
    own.create(&Default::default(), &cm).await.unwrap();
    let other: kube::Api<ConfigMap> = kube::Api::namespaced(c, "default");
    match other.create(&Default::default(), &cm).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 403);
            assert_eq!(
                s.message,
                r#"configmaps is forbidden: User "system:serviceaccount:team-a:deployer" cannot create resource "configmaps" in API group "" in the namespace "default""#
            );
        }
        other => panic!("expected a 403, got {other:?}"),
    }
    sim.shutdown().await;
}

/// `kubectl auth can-i` and `auth whoami` send protobuf reviews; both are
/// answered by the authorizer, as on a real cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_auth_can_i_and_whoami_answer_as_a_real_cluster() {
    let sim = sim().await;
    let admin = Kubectl::new(&sim);
    let tenant_yaml = admin.file("tenant.yaml", TENANT);
    admin
        .ok(&["apply", "-f", tenant_yaml.to_str().unwrap()])
        .await;
    let sa = "system:serviceaccount:team-a:deployer";

    let yes = admin
        .ok(&[
            "auth",
            "can-i",
            "create",
            "configmaps",
            "-n",
            "team-a",
            "--as",
            sa,
        ])
        .await;
    assert_eq!(yes.trim(), "yes");
    let out = admin
        .run(&[
            "auth",
            "can-i",
            "create",
            "configmaps",
            "-n",
            "default",
            "--as",
            sa,
        ])
        .await;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "no");
    assert_eq!(out.status.code(), Some(1), "can-i exits 1 for no");
    let out = admin
        .run(&["auth", "can-i", "list", "clusterroles", "--as", sa])
        .await;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "no");
    let admin_yes = admin.ok(&["auth", "can-i", "*", "*"]).await;
    assert_eq!(admin_yes.trim(), "yes");

    // The ServiceAccount's own kubeconfig: whoami names it.
    let tenant = kubectl_with(&sim.service_account_kubeconfig("team-a", "deployer"), &sim);
    let who = tenant.ok(&["auth", "whoami"]).await;
    assert!(who.contains(sa), "{who}");
}
