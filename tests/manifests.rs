//! The install manifests: they apply to an API server both ways the README
//! gives (`kubectl apply -k` and `kubectl apply -f -R`), the Deployment is
//! locked down as promised, and the RBAC rules grant every permission the
//! agent's code declares (`stagegate::agent::rbac::required()`), and nothing else.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::Api;
use kube_sim::{KubeSim, SimConfig};
use serde::Deserialize;
use serde_json::Value;
use stagegate::agent::config::{RunArgs, Settings};
use stagegate::agent::rbac::{Permission, required};
use stagegate::agent::source::GitAuth;

const OWN_NAMESPACE: &str = "stagegate-system";

/// What the manifests must grant: the code's own list.
fn wanted() -> Vec<Permission> {
    required()
}

const SERVICE_ACCOUNT: &str = "stagegate";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn manifests() -> PathBuf {
    root().join("manifests")
}

fn namespaced_variant() -> PathBuf {
    root().join("manifests-namespaced")
}

/// A kube-sim with a kubeconfig and a kubectl cache of its own.
struct Sim {
    sim: KubeSim,
    dir: tempfile::TempDir,
}

impl Sim {
    async fn start() -> Sim {
        let sim = KubeSim::start(SimConfig::default())
            .await
            .expect("start kube-sim");
        let dir = tempfile::tempdir().expect("tempdir");
        sim.write_kubeconfig(&dir.path().join("kubeconfig"))
            .expect("write kubeconfig");
        Sim { sim, dir }
    }

    fn client(&self) -> kube::Client {
        let config = kube::Config::new(self.sim.url().parse().expect("sim url"));
        kube::Client::try_from(config).expect("kube client")
    }

    /// Runs kubectl against this sim; panics with its stderr unless it succeeds.
    async fn kubectl(&self, args: &[&str]) -> String {
        let output = tokio::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(self.dir.path().join("kubeconfig"))
            .arg("--cache-dir")
            .arg(self.dir.path().join("kubectl-cache"))
            .args(args)
            .output()
            .await
            .expect("run kubectl (is it installed?)");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "kubectl {args:?} failed:\n{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    /// `kubectl apply --server-side` with `how` (`-k DIR` or `-f DIR -R`);
    /// returns the `kind/name` of every object kubectl reported applied.
    async fn apply(&self, how: &[&str]) -> BTreeSet<String> {
        let mut args = vec!["apply", "--server-side"];
        args.extend_from_slice(how);
        let out = self.kubectl(&args).await;
        out.lines()
            .map(|line| {
                let (object, verdict) = line.split_once(' ').expect("kubectl apply line");
                assert_eq!(verdict, "serverside-applied", "{line}");
                object.to_string()
            })
            .collect()
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// Every YAML document of a stream (empty and comment-only documents skipped).
fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|doc| Value::deserialize(doc).expect("manifest YAML"))
        .filter(|doc| !doc.is_null())
        .collect()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The agent's settings from a config file's text, as `stagegate run
/// --config FILE` resolves them with no flags or environment.
fn resolve(config: &str) -> Settings {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("config.yaml");
    std::fs::write(&file, config).expect("write config");
    Settings::resolve(RunArgs {
        config: Some(file),
        ..RunArgs::default()
    })
    .unwrap_or_else(|e| panic!("the agent rejects the config file: {e}\n{config}"))
}

/// The config text with the commented-out `# key: value` lines of these keys
/// made live.
fn uncomment(config: &str, keys: &[&str]) -> String {
    let mut found = BTreeSet::new();
    let text: String = config
        .lines()
        .map(|line| {
            let trimmed = line.trim_start();
            for key in keys {
                if let Some(rest) = trimmed.strip_prefix(&format!("# {key}:")) {
                    found.insert(*key);
                    let value = rest.split("  #").next().unwrap().trim();
                    return format!("{key}: {value}\n");
                }
            }
            format!("{line}\n")
        })
        .collect();
    assert_eq!(
        found.len(),
        keys.len(),
        "commented-out {keys:?} in the config"
    );
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_k_and_apply_f_recursive_install_the_same_objects() {
    let by_kustomize = Sim::start().await;
    let k = by_kustomize.apply(&["-k", path_str(&manifests())]).await;
    let by_files = Sim::start().await;
    let f = by_files.apply(&["-f", path_str(&manifests()), "-R"]).await;

    let expected: BTreeSet<String> = [
        "customresourcedefinition.apiextensions.k8s.io/stages.stagegate.dev",
        "namespace/stagegate-system",
        "serviceaccount/stagegate",
        "clusterrole.rbac.authorization.k8s.io/stagegate",
        "clusterrolebinding.rbac.authorization.k8s.io/stagegate",
        "role.rbac.authorization.k8s.io/stagegate",
        "rolebinding.rbac.authorization.k8s.io/stagegate",
        "configmap/stagegate-config",
        "deployment.apps/stagegate",
        "service/stagegate",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    // The same set both ways: `-f -R` does not pick up the Kustomization,
    // the commented example Secrets or the namespaced variant.
    assert_eq!(k, expected, "kubectl apply -k manifests/");
    assert_eq!(f, expected, "kubectl apply -f manifests/ -R");

    // Applying again changes nothing and fails nothing (an upgrade).
    assert_eq!(
        by_files.apply(&["-k", path_str(&manifests())]).await,
        expected
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installed_agent_is_locked_down_and_wired_to_its_config() {
    let sim = Sim::start().await;
    sim.apply(&["-f", path_str(&manifests()), "-R"]).await;
    let client = sim.client();

    Api::<Namespace>::all(client.clone())
        .get(OWN_NAMESPACE)
        .await
        .expect("namespace");
    Api::<ServiceAccount>::namespaced(client.clone(), OWN_NAMESPACE)
        .get(SERVICE_ACCOUNT)
        .await
        .expect("service account");
    Api::<ClusterRole>::all(client.clone())
        .get("stagegate")
        .await
        .expect("cluster role");
    let binding = Api::<ClusterRoleBinding>::all(client.clone())
        .get("stagegate")
        .await
        .expect("cluster role binding");
    let subject = &binding.subjects.expect("subjects")[0];
    assert_eq!(
        (subject.kind.as_str(), subject.name.as_str()),
        ("ServiceAccount", SERVICE_ACCOUNT)
    );
    assert_eq!(subject.namespace.as_deref(), Some(OWN_NAMESPACE));
    Api::<Role>::namespaced(client.clone(), OWN_NAMESPACE)
        .get("stagegate")
        .await
        .expect("role");
    Api::<RoleBinding>::namespaced(client.clone(), OWN_NAMESPACE)
        .get("stagegate")
        .await
        .expect("role binding");

    let deployment = Api::<Deployment>::namespaced(client.clone(), OWN_NAMESPACE)
        .get("stagegate")
        .await
        .expect("deployment");
    let spec = deployment.spec.expect("deployment spec");
    assert_eq!(spec.replicas, Some(1));
    // A rolling update would deadlock on the leader Lease (see the manifest).
    assert_eq!(
        spec.strategy.as_ref().and_then(|s| s.type_.as_deref()),
        Some("Recreate")
    );
    let pod = spec.template.spec.expect("pod spec");
    assert_eq!(pod.service_account_name.as_deref(), Some(SERVICE_ACCOUNT));

    let pod_security = pod.security_context.as_ref().expect("pod securityContext");
    assert_eq!(pod_security.run_as_non_root, Some(true));
    assert_eq!(pod_security.run_as_user, Some(65532));
    assert_eq!(pod_security.run_as_group, Some(65532));
    assert_eq!(
        pod_security
            .seccomp_profile
            .as_ref()
            .map(|p| p.type_.as_str()),
        Some("RuntimeDefault")
    );

    assert_eq!(pod.containers.len(), 1);
    let container = &pod.containers[0];
    let security = container
        .security_context
        .as_ref()
        .expect("securityContext");
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.run_as_non_root, Some(true));
    assert_eq!(
        security.capabilities.as_ref().and_then(|c| c.drop.clone()),
        Some(vec!["ALL".to_string()])
    );
    assert!(
        security
            .capabilities
            .as_ref()
            .and_then(|c| c.add.as_ref())
            .is_none_or(|add| add.is_empty())
    );

    let port = container
        .ports
        .as_ref()
        .and_then(|ports| ports.iter().find(|p| p.name.as_deref() == Some("http")))
        .expect("container port named http");
    for (probe, path) in [
        (container.liveness_probe.as_ref(), "/healthz"),
        (container.readiness_probe.as_ref(), "/readyz"),
    ] {
        let get = probe
            .and_then(|p| p.http_get.as_ref())
            .unwrap_or_else(|| panic!("an HTTP probe on {path}"));
        assert_eq!(get.path.as_deref(), Some(path));
        assert_eq!(
            get.port,
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("http".into())
        );
    }

    let resources = container.resources.as_ref().expect("resources");
    for what in ["cpu", "memory"] {
        assert!(
            resources
                .requests
                .as_ref()
                .is_some_and(|r| r.contains_key(what)),
            "a {what} request"
        );
    }
    assert!(
        resources
            .limits
            .as_ref()
            .is_some_and(|l| l.contains_key("memory")),
        "a memory limit"
    );

    let pod_name = container
        .env
        .as_ref()
        .and_then(|env| env.iter().find(|e| e.name == "POD_NAME"))
        .and_then(|e| e.value_from.as_ref())
        .and_then(|from| from.field_ref.as_ref())
        .map(|field| field.field_path.as_str());
    assert_eq!(
        pod_name,
        Some("metadata.name"),
        "POD_NAME from the downward API"
    );

    // The config file the agent is told to read is the ConfigMap's, and its
    // cache directory, listen port and namespace agree with the Deployment.
    let args = container.args.clone().expect("args");
    assert_eq!(args[0], "run");
    let config_flag = args.iter().position(|a| a == "--config").expect("--config");
    let config_path = &args[config_flag + 1];
    let mounts = container.volume_mounts.clone().expect("volume mounts");
    let volumes = pod.volumes.clone().expect("volumes");
    let volume_at = |path: &str| {
        let mount = mounts
            .iter()
            .find(|m| m.mount_path == path)
            .unwrap_or_else(|| panic!("a volume mounted at {path}"));
        volumes
            .iter()
            .find(|v| v.name == mount.name)
            .expect("mounted volume")
            .clone()
    };
    let config_volume = volume_at(config_path);
    let config_map_name = config_volume
        .config_map
        .expect("config from a ConfigMap")
        .name;
    let config_map = Api::<ConfigMap>::namespaced(client.clone(), OWN_NAMESPACE)
        .get(&config_map_name)
        .await
        .expect("config ConfigMap");
    let file_name = Path::new(config_path)
        .file_name()
        .unwrap()
        .to_str()
        .unwrap();
    let config_text = config_map.data.expect("data")[file_name].clone();
    // The agent's own loader reads it (unknown keys are errors there).
    let settings = resolve(&config_text);
    assert!(
        volume_at(path_str(&settings.cache_dir)).empty_dir.is_some(),
        "the Git cache is a writable emptyDir (the root FS is read-only)"
    );
    assert!(volume_at("/tmp").empty_dir.is_some());
    assert_eq!(
        i32::from(settings.listen.map_or(0, |l| l.port())),
        port.container_port,
        "the agent listens on the container port the probes use"
    );
    assert_eq!(settings.namespace, OWN_NAMESPACE);
    assert!(settings.leader_elect);
    assert_eq!(
        settings.auth,
        GitAuth::None,
        "no credentials until configured"
    );
    assert_eq!(settings.webhook_secret_file, None);

    // Credentials come from Secrets that may be absent: the pod starts
    // without them. The example file names exactly those Secrets.
    let secrets: BTreeSet<String> = volumes
        .iter()
        .filter_map(|v| v.secret.as_ref())
        .map(|s| {
            assert_eq!(s.optional, Some(true), "{:?} is optional", s.secret_name);
            s.secret_name.clone().expect("secretName")
        })
        .collect();
    assert_eq!(
        secrets,
        [
            "stagegate-git-https",
            "stagegate-git-ssh",
            "stagegate-webhook"
        ]
        .into_iter()
        .map(String::from)
        .collect()
    );
    let example = read(&manifests().join("secrets.example.yaml"));
    assert!(
        documents(&example).is_empty(),
        "the examples are commented out"
    );
    for secret in &secrets {
        assert!(example.contains(&format!("#   name: {secret}")), "{secret}");
    }

    // The commented credential settings, once uncommented, point at files of
    // those Secrets as the Deployment mounts them, under keys the examples
    // show.
    let secret_file = |path: &Path| -> (String, String) {
        let dir = path.parent().expect("a directory");
        let secret = volume_at(path_str(dir))
            .secret
            .unwrap_or_else(|| panic!("{} is not in a Secret", path.display()));
        let key = path.file_name().unwrap().to_str().unwrap().to_string();
        assert!(
            example.contains(&format!("{key}:")),
            "no example of key {key}"
        );
        (secret.secret_name.expect("secretName"), key)
    };
    let ssh = resolve(&uncomment(
        &config_text,
        &["sshKeyFile", "knownHostsFile", "sshPassphraseFile"],
    ));
    let GitAuth::Ssh {
        private_key,
        known_hosts,
        passphrase_file,
    } = ssh.auth
    else {
        panic!("SSH settings give {:?}", ssh.auth);
    };
    for file in [
        private_key,
        known_hosts,
        passphrase_file.expect("passphrase"),
    ] {
        assert_eq!(secret_file(&file).0, "stagegate-git-ssh");
    }
    let https = resolve(&uncomment(
        &config_text,
        &["httpsUsername", "httpsPasswordFile"],
    ));
    let GitAuth::Https { password_file, .. } = https.auth else {
        panic!("HTTPS settings give {:?}", https.auth);
    };
    assert_eq!(secret_file(&password_file).0, "stagegate-git-https");
    let webhook = resolve(&uncomment(&config_text, &["webhookSecretFile"]));
    let webhook_file = webhook.webhook_secret_file.expect("webhook secret file");
    assert_eq!(secret_file(&webhook_file).0, "stagegate-webhook");

    let service = Api::<Service>::namespaced(client, OWN_NAMESPACE)
        .get("stagegate")
        .await
        .expect("service");
    let service = service.spec.expect("service spec");
    let template_labels = spec.template.metadata.and_then(|m| m.labels).unwrap();
    for (key, value) in service.selector.expect("selector") {
        assert_eq!(template_labels.get(&key), Some(&value), "selector {key}");
    }
    let service_port = &service.ports.expect("ports")[0];
    assert_eq!(
        service_port.target_port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("http".into()))
    );
}

/// Where a set of rules holds.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Scope {
    Cluster,
    Namespace(String),
}

/// The rules bound to the agent's ServiceAccount, with where each holds.
struct Grants(Vec<(Scope, Value)>);

impl Grants {
    fn from_documents(docs: &[Value]) -> Grants {
        let role = |kind: &str, namespace: Option<&str>, name: &str| -> Value {
            docs.iter()
                .find(|d| {
                    d["kind"] == kind
                        && d["metadata"]["name"] == name
                        && d["metadata"]["namespace"].as_str() == namespace
                })
                .unwrap_or_else(|| panic!("{kind} {namespace:?}/{name} is bound but missing"))
                .clone()
        };
        let mut grants = Vec::new();
        for binding in docs {
            let kind = binding["kind"].as_str().unwrap_or_default();
            if kind != "ClusterRoleBinding" && kind != "RoleBinding" {
                continue;
            }
            let to_agent = binding["subjects"].as_array().is_some_and(|subjects| {
                subjects.iter().any(|s| {
                    s["kind"] == "ServiceAccount"
                        && s["name"] == SERVICE_ACCOUNT
                        && s["namespace"] == OWN_NAMESPACE
                })
            });
            if !to_agent {
                continue;
            }
            let namespace = binding["metadata"]["namespace"].as_str();
            let scope = match namespace {
                Some(ns) => Scope::Namespace(ns.to_string()),
                None => Scope::Cluster,
            };
            let role_ref = &binding["roleRef"];
            let role_name = role_ref["name"].as_str().expect("roleRef.name");
            let rules = match role_ref["kind"].as_str() {
                Some("ClusterRole") => role("ClusterRole", None, role_name)["rules"].clone(),
                Some("Role") => role("Role", namespace, role_name)["rules"].clone(),
                other => panic!("roleRef kind {other:?}"),
            };
            for rule in rules.as_array().expect("rules") {
                grants.push((scope.clone(), rule.clone()));
            }
        }
        Grants(grants)
    }

    /// Whether a verb on a resource is allowed in `namespace` (`None`: in
    /// every namespace, which only a ClusterRoleBinding gives), by the
    /// matching rules of Kubernetes RBAC: `*` matches any group, any
    /// resource (subresources included) and any verb. Rules limited to
    /// `resourceNames` are not counted: the agent's calls name no object in
    /// advance (create, list, watch).
    fn allows(&self, namespace: Option<&str>, group: &str, resource: &str, verb: &str) -> bool {
        let has = |list: &Value, item: &str| {
            list.as_array()
                .is_some_and(|l| l.iter().any(|v| v == "*" || v == item))
        };
        self.0.iter().any(|(scope, rule)| {
            let in_scope = match (scope, namespace) {
                (Scope::Cluster, _) => true,
                (Scope::Namespace(held), Some(wanted)) => held == wanted,
                (Scope::Namespace(_), None) => false,
            };
            in_scope
                && rule.get("resourceNames").is_none_or(Value::is_null)
                && has(&rule["apiGroups"], group)
                && has(&rule["resources"], resource)
                && has(&rule["verbs"], verb)
        })
    }

    /// The namespaces with a Role bound to the agent.
    fn namespaces(&self) -> BTreeSet<String> {
        self.0
            .iter()
            .filter_map(|(scope, _)| match scope {
                Scope::Namespace(ns) => Some(ns.clone()),
                Scope::Cluster => None,
            })
            .collect()
    }

    /// Every (group, resource, verb) a rule names, with its scope.
    fn triples(&self) -> Vec<(Scope, String, String, String)> {
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .expect("a list")
                .iter()
                .map(|s| s.as_str().expect("a string").to_string())
                .collect()
        };
        let mut out = Vec::new();
        for (scope, rule) in &self.0 {
            for group in strings(&rule["apiGroups"]) {
                for resource in strings(&rule["resources"]) {
                    for verb in strings(&rule["verbs"]) {
                        out.push((scope.clone(), group.clone(), resource.clone(), verb));
                    }
                }
            }
        }
        out
    }
}

fn missing(grants: &Grants, namespace: Option<&str>, permission: &Permission) -> Vec<String> {
    permission
        .verbs
        .iter()
        .filter(|verb| !grants.allows(namespace, permission.group, permission.resource, verb))
        .map(|verb| {
            format!(
                "{verb} {}/{} in {} ({})",
                permission.group,
                permission.resource,
                namespace.unwrap_or("every namespace"),
                permission.why
            )
        })
        .collect()
}

/// No rule grants what no declared permission asks for: each (group,
/// resource, verb) written in a rule is one a permission names, literally.
fn unrequested(grants: &Grants) -> Vec<String> {
    let wanted = wanted();
    grants
        .triples()
        .into_iter()
        .filter(|(scope, group, resource, verb)| {
            !wanted.iter().any(|p| {
                p.group == group
                    && p.resource == resource
                    && p.verbs.contains(&verb.as_str())
                    && (p.cluster_wide || *scope != Scope::Cluster)
            })
        })
        .map(|(scope, group, resource, verb)| format!("{verb} {group}/{resource} ({scope:?})"))
        .collect()
}

#[test]
fn cluster_role_and_role_grant_every_permission_the_code_declares() {
    let docs = documents(&read(&manifests().join("02-rbac.yaml")));
    let grants = Grants::from_documents(&docs);
    let permissions = wanted();
    assert!(!permissions.is_empty());

    let mut gaps = Vec::new();
    for permission in &permissions {
        let namespace = (!permission.cluster_wide).then_some(OWN_NAMESPACE);
        gaps.extend(missing(&grants, namespace, permission));
    }
    assert!(
        gaps.is_empty(),
        "manifests/02-rbac.yaml lacks rules for:\n  {}",
        gaps.join("\n  ")
    );
    let extra = unrequested(&grants);
    assert!(
        extra.is_empty(),
        "manifests/02-rbac.yaml grants what no PERMISSIONS entry asks for:\n  {}",
        extra.join("\n  ")
    );
    // The permissions needed only in the agent's own namespace are in a Role
    // there, so that the namespaced install, which has no ClusterRole, keeps
    // them.
    let own_only = Grants(
        grants
            .0
            .iter()
            .filter(|(scope, _)| *scope == Scope::Namespace(OWN_NAMESPACE.into()))
            .cloned()
            .collect(),
    );
    for permission in permissions.iter().filter(|p| !p.cluster_wide) {
        let gaps = missing(&own_only, Some(OWN_NAMESPACE), permission);
        assert!(gaps.is_empty(), "not in the Role: {gaps:?}");
    }
}

#[test]
fn grants_check_notices_a_missing_rule() {
    // The check above must be able to fail: a Role without the Lease rule
    // does not cover leader election.
    let docs = documents(&read(&manifests().join("02-rbac.yaml")));
    let mut docs: Vec<Value> = docs;
    for doc in &mut docs {
        if doc["kind"] == "Role" {
            let rules = doc["rules"].as_array_mut().unwrap();
            rules.retain(|r| r["apiGroups"][0] != "coordination.k8s.io");
        }
        if doc["kind"] == "ClusterRole" {
            let rules = doc["rules"].as_array_mut().unwrap();
            rules.retain(|r| r["apiGroups"][0] != "*");
        }
    }
    let grants = Grants::from_documents(&docs);
    let lease = required()
        .into_iter()
        .find(|p| p.resource == "leases")
        .expect("leader election declares leases");
    assert!(!missing(&grants, Some(OWN_NAMESPACE), &lease).is_empty());
    // And a namespaced Role does not count for every namespace.
    assert!(!grants.allows(None, "", "configmaps", "get"));
    assert!(grants.allows(Some(OWN_NAMESPACE), "", "configmaps", "get"));
    assert!(!grants.allows(Some("elsewhere"), "", "configmaps", "get"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaced_variant_grants_the_same_permissions_in_its_namespaces_only() {
    let sim = Sim::start().await;
    let rendered = sim
        .kubectl(&["kustomize", path_str(&namespaced_variant())])
        .await;
    let docs = documents(&rendered);
    for doc in &docs {
        let kind = doc["kind"].as_str().unwrap();
        assert!(
            kind != "ClusterRole" && kind != "ClusterRoleBinding",
            "the namespaced variant has a {kind}"
        );
    }
    let grants = Grants::from_documents(&docs);
    let allowed: Vec<String> = grants
        .namespaces()
        .into_iter()
        .filter(|ns| ns != OWN_NAMESPACE)
        .collect();
    assert!(!allowed.is_empty(), "at least one allowed namespace");

    let mut gaps = Vec::new();
    for permission in wanted() {
        if permission.cluster_wide {
            for ns in &allowed {
                gaps.extend(missing(&grants, Some(ns), &permission));
            }
        } else {
            gaps.extend(missing(&grants, Some(OWN_NAMESPACE), &permission));
        }
        // Events are also recorded on the state ConfigMap, in the agent's
        // own namespace.
        if permission.resource == "events" {
            gaps.extend(missing(&grants, Some(OWN_NAMESPACE), &permission));
        }
    }
    assert!(
        gaps.is_empty(),
        "manifests-namespaced/ lacks rules for:\n  {}",
        gaps.join("\n  ")
    );
    let extra = unrequested(&grants);
    assert!(extra.is_empty(), "unrequested rules: {extra:?}");
    // Nothing beyond the allowed namespaces, and nothing cluster-wide.
    assert!(!grants.allows(None, "", "configmaps", "get"));
    assert!(!grants.allows(Some("kube-system"), "", "secrets", "get"));
    assert!(!grants.allows(Some(OWN_NAMESPACE), "", "secrets", "get"));

    // It installs, once its namespaces exist.
    for ns in &allowed {
        let namespace = format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n");
        let file = sim.dir.path().join(format!("{ns}.yaml"));
        std::fs::write(&file, namespace).unwrap();
        sim.apply(&["-f", path_str(&file)]).await;
    }
    let applied = sim.apply(&["-k", path_str(&namespaced_variant())]).await;
    assert!(applied.contains("deployment.apps/stagegate"));
    for ns in &allowed {
        Api::<RoleBinding>::namespaced(sim.client(), ns)
            .get("stagegate")
            .await
            .expect("role binding in an allowed namespace");
    }
}
