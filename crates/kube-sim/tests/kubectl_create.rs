//! Every `kubectl create …` subcommand for a kind kube-sim serves, and
//! `kubectl run`: kubectl's typed clients send protobuf bodies, which
//! kube-sim decodes to the objects a JSON body gives.

mod common;

use common::{Kubectl, eventually, sim};
use serde_json::Value;

/// A self-signed P-256 certificate and its key, valid until 2126.
const TLS_CRT: &str = "-----BEGIN CERTIFICATE-----
MIIBhzCCAS2gAwIBAgIUF0ijXUOAwR4C2U78iZp+3ZdUQPUwCgYIKoZIzj0EAwIw
GDEWMBQGA1UEAwwNa3ViZS1zaW0udGVzdDAgFw0yNjEyMDEyMTQxMTFaGA8yMTI2
MTEwNzIxNDExMVowGDEWMBQGA1UEAwwNa3ViZS1zaW0udGVzdDBZMBMGByqGSM49
AgEGCCqGSM49AwEHA0IABFlOOZ1ogRCQ+jh8p0OKfxKee4h13keSUqcjz2zfpPwD
CJZhsaKMO9X5yzP8pRN2DiALapj2YjblKELwoFtFsy2jUzBRMB0GA1UdDgQWBBTx
fPZGGJwK5oWCiq/RG0S81IKDzjAfBgNVHSMEGDAWgBTxfPZGGJwK5oWCiq/RG0S8
1IKDzjAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0gAMEUCIQCfz6ddPQnI
on5k7+P3xdO0K1VqB8od1QVkkmP1psH0fwIgJtywFR5MF506MTRJkUB2V2d/EGDs
cXhaXFczNLKq0Fc=
-----END CERTIFICATE-----
";
const TLS_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg5ncxnwSIZ9rOdPD3
1jkz/zUxFv9ODfO2v3imzCfpiuShRANCAARZTjmdaIEQkPo4fKdDin8SnnuIdd5H
klKnI89s36T8AwiWYbGijDvV+csz/KUTdg4gC2qY9mI25ShC8KBbRbMt
-----END PRIVATE KEY-----
";

async fn get(k: &Kubectl, args: &[&str]) -> Value {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    let out = k.ok(&all).await;
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_namespace() {
    let sim = sim().await;
    let k = Kubectl::new(&sim);
    let out = k.ok(&["create", "namespace", "demo"]).await;
    assert_eq!(out.trim(), "namespace/demo created");
    let ns = get(&k, &["namespace", "demo"]).await;
    assert_eq!(
        ns["metadata"]["labels"]["kubernetes.io/metadata.name"],
        "demo"
    );
    assert_eq!(ns["status"]["phase"], "Active");
    assert!(ns["metadata"].get("generateName").is_none(), "{ns}");
    // Created once: a second create is the real AlreadyExists.
    let err = k.fails(&["create", "namespace", "demo"]).await;
    assert!(err.contains("namespaces \"demo\" already exists"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_configmap_from_literals_and_files() {
    let sim = sim().await;
    let k = Kubectl::new(&sim);
    let text = k.file("app.properties", "color=blue\n");
    let binary = k.file("blob.bin", "");
    std::fs::write(&binary, [0xff, 0x00, 0xfe]).unwrap();
    let out = k
        .ok(&[
            "create",
            "configmap",
            "settings",
            "--from-literal=mode=fast",
            &format!("--from-file={}", text.display()),
            &format!("--from-file=blob={}", binary.display()),
        ])
        .await;
    assert_eq!(out.trim(), "configmap/settings created");
    let cm = get(&k, &["configmap", "settings"]).await;
    assert_eq!(cm["data"]["mode"], "fast");
    assert_eq!(cm["data"]["app.properties"], "color=blue\n");
    assert_eq!(cm["binaryData"]["blob"], "/wD+");
    assert_eq!(cm["metadata"]["namespace"], "default");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_secret_generic() {
    let sim = sim().await;
    let k = Kubectl::new(&sim);
    let out = k
        .ok(&[
            "create",
            "secret",
            "generic",
            "db",
            "--from-literal=password=s3cret",
            "--type=Opaque",
        ])
        .await;
    assert_eq!(out.trim(), "secret/db created");
    let s = get(&k, &["secret", "db"]).await;
    assert_eq!(s["data"]["password"], b64("s3cret"));
    assert_eq!(s["type"], "Opaque");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_secret_docker_registry() {
    let sim = sim().await;
    let k = Kubectl::new(&sim);
    k.ok(&[
        "create",
        "secret",
        "docker-registry",
        "pull",
        "--docker-server=registry.example.com",
        "--docker-username=bot",
        "--docker-password=pw",
    ])
    .await;
    let s = get(&k, &["secret", "pull"]).await;
    assert_eq!(s["type"], "kubernetes.io/dockerconfigjson");
    let cfg = s["data"][".dockerconfigjson"].as_str().unwrap();
    use base64::Engine;
    let cfg = base64::engine::general_purpose::STANDARD
        .decode(cfg)
        .unwrap();
    let cfg: Value = serde_json::from_slice(&cfg).unwrap();
    assert_eq!(cfg["auths"]["registry.example.com"]["username"], "bot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_secret_tls() {
    let sim = sim().await;
    let k = Kubectl::new(&sim);
    let crt = k.file("tls.crt", TLS_CRT);
    let key = k.file("tls.key", TLS_KEY);
    k.ok(&[
        "create",
        "secret",
        "tls",
        "web-tls",
        &format!("--cert={}", crt.display()),
        &format!("--key={}", key.display()),
    ])
    .await;
    let s = get(&k, &["secret", "web-tls"]).await;
    assert_eq!(s["type"], "kubernetes.io/tls");
    assert_eq!(s["data"]["tls.crt"], b64(TLS_CRT));
    assert_eq!(s["data"]["tls.key"], b64(TLS_KEY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_serviceaccount() {
    let sim = sim().await;
    let k = Kubectl::new(&sim);
    k.ok(&["create", "namespace", "tenant"]).await;
    let out = k
        .ok(&["create", "serviceaccount", "deployer", "-n", "tenant"])
        .await;
    assert_eq!(out.trim(), "serviceaccount/deployer created");
    let sa = get(&k, &["serviceaccount", "deployer", "-n", "tenant"]).await;
    assert_eq!(sa["metadata"]["namespace"], "tenant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_deployment() {
    let sim = sim().await;
    let k = Kubectl::new(&sim);
    let out = k
        .ok(&[
            "create",
            "deployment",
            "web",
            "--image=nginx:1.27",
            "--replicas=2",
            "--port=8080",
        ])
        .await;
    assert_eq!(out.trim(), "deployment.apps/web created");
    let d = get(&k, &["deployment", "web"]).await;
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(d["spec"]["selector"]["matchLabels"]["app"], "web");
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "nginx:1.27");
    assert_eq!(c["name"], "nginx");
    assert_eq!(c["ports"][0]["containerPort"], 8080);
    let rolled = k
        .ok(&["rollout", "status", "deployment/web", "--timeout=30s"])
        .await;
    assert!(rolled.contains("successfully rolled out"), "{rolled}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_job() {
    let sim = sim().await;
    let k = Kubectl::new(&sim);
    let out = k
        .ok(&[
            "create",
            "job",
            "once",
            "--image=busybox",
            "--",
            "echo",
            "hi",
        ])
        .await;
    assert_eq!(out.trim(), "job.batch/once created");
    let j = get(&k, &["job", "once"]).await;
    let c = &j["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["command"], serde_json::json!(["echo", "hi"]));
    assert_eq!(j["spec"]["template"]["spec"]["restartPolicy"], "Never");
    let waited = k
        .ok(&[
            "wait",
            "--for=condition=complete",
            "job/once",
            "--timeout=30s",
        ])
        .await;
    assert!(waited.contains("condition met"), "{waited}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_cronjob_then_a_job_from_it() {
    let sim = sim().await;
    let k = Kubectl::new(&sim);
    let out = k
        .ok(&[
            "create",
            "cronjob",
            "nightly",
            "--image=busybox",
            "--schedule=0 3 * * *",
            "--",
            "date",
        ])
        .await;
    assert_eq!(out.trim(), "cronjob.batch/nightly created");
    let cj = get(&k, &["cronjob", "nightly"]).await;
    assert_eq!(cj["spec"]["schedule"], "0 3 * * *");
    // How people run a CronJob by hand.
    let out = k
        .ok(&["create", "job", "nightly-now", "--from=cronjob/nightly"])
        .await;
    assert_eq!(out.trim(), "job.batch/nightly-now created");
    let j = get(&k, &["job", "nightly-now"]).await;
    assert_eq!(
        j["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"],
        "manual"
    );
    let owner = &j["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "CronJob");
    assert_eq!(owner["uid"], cj["metadata"]["uid"]);
    assert_eq!(owner["controller"], true);
    assert_eq!(
        j["spec"]["template"]["spec"]["containers"][0]["command"],
        serde_json::json!(["date"])
    );
    k.ok(&[
        "wait",
        "--for=condition=complete",
        "job/nightly-now",
        "--timeout=30s",
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_service_clusterip_nodeport_and_externalname() {
    let sim = sim().await;
    let k = Kubectl::new(&sim);
    k.ok(&["create", "service", "clusterip", "api", "--tcp=80:8080"])
        .await;
    let s = get(&k, &["service", "api"]).await;
    assert_eq!(s["spec"]["type"], "ClusterIP");
    assert_eq!(s["spec"]["ports"][0]["port"], 80);
    assert_eq!(s["spec"]["ports"][0]["targetPort"], 8080);
    assert_eq!(s["spec"]["selector"]["app"], "api");
    assert!(
        s["spec"]["clusterIP"]
            .as_str()
            .is_some_and(|ip| ip.starts_with("10.96.")),
        "{s}"
    );

    k.ok(&[
        "create",
        "service",
        "nodeport",
        "edge",
        "--tcp=443:8443",
        "--node-port=30443",
    ])
    .await;
    let s = get(&k, &["service", "edge"]).await;
    assert_eq!(s["spec"]["type"], "NodePort");
    assert_eq!(s["spec"]["ports"][0]["nodePort"], 30443);

    k.ok(&[
        "create",
        "service",
        "externalname",
        "db",
        "--external-name=db.example.com",
    ])
    .await;
    let s = get(&k, &["service", "db"]).await;
    assert_eq!(s["spec"]["type"], "ExternalName");
    assert_eq!(s["spec"]["externalName"], "db.example.com");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_role_and_rolebinding() {
    let sim = sim().await;
    let k = Kubectl::new(&sim);
    k.ok(&[
        "create",
        "role",
        "reader",
        "--verb=get,list,watch",
        "--resource=pods,deployments.apps",
        "--resource-name=web",
    ])
    .await;
    let r = get(&k, &["role", "reader"]).await;
    let rules = r["rules"].as_array().unwrap();
    assert!(
        rules
            .iter()
            .any(|rule| rule["apiGroups"] == serde_json::json!(["apps"])
                && rule["resources"] == serde_json::json!(["deployments"])
                && rule["resourceNames"] == serde_json::json!(["web"])),
        "{r}"
    );
    k.ok(&[
        "create",
        "rolebinding",
        "reader",
        "--role=reader",
        "--serviceaccount=default:deployer",
        "--user=alice",
    ])
    .await;
    let b = get(&k, &["rolebinding", "reader"]).await;
    assert_eq!(b["roleRef"]["kind"], "Role");
    assert_eq!(b["roleRef"]["name"], "reader");
    let subjects = b["subjects"].as_array().unwrap();
    assert!(
        subjects
            .iter()
            .any(|s| s["kind"] == "ServiceAccount" && s["name"] == "deployer")
    );
    assert!(
        subjects
            .iter()
            .any(|s| s["kind"] == "User" && s["name"] == "alice")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_clusterrole_and_clusterrolebinding() {
    let sim = sim().await;
    let k = Kubectl::new(&sim);
    k.ok(&[
        "create",
        "clusterrole",
        "job-runner",
        "--verb=create,delete",
        "--resource=jobs.batch",
    ])
    .await;
    k.ok(&[
        "create",
        "clusterrole",
        "aggregate",
        "--aggregation-rule=team=platform",
    ])
    .await;
    k.ok(&[
        "create",
        "clusterrole",
        "metrics",
        "--verb=get",
        "--non-resource-url=/metrics",
    ])
    .await;
    let r = get(&k, &["clusterrole", "job-runner"]).await;
    assert_eq!(r["rules"][0]["apiGroups"], serde_json::json!(["batch"]));
    assert_eq!(
        r["rules"][0]["verbs"],
        serde_json::json!(["create", "delete"])
    );
    let a = get(&k, &["clusterrole", "aggregate"]).await;
    assert_eq!(
        a["aggregationRule"]["clusterRoleSelectors"][0]["matchLabels"]["team"],
        "platform"
    );
    let m = get(&k, &["clusterrole", "metrics"]).await;
    assert_eq!(
        m["rules"][0]["nonResourceURLs"],
        serde_json::json!(["/metrics"])
    );
    k.ok(&[
        "create",
        "clusterrolebinding",
        "runners",
        "--clusterrole=job-runner",
        "--group=ci",
    ])
    .await;
    let b = get(&k, &["clusterrolebinding", "runners"]).await;
    assert_eq!(b["roleRef"]["kind"], "ClusterRole");
    assert_eq!(b["subjects"][0]["kind"], "Group");
    assert_eq!(b["subjects"][0]["name"], "ci");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_a_pod() {
    let sim = sim().await;
    let k = Kubectl::new(&sim);
    let out = k
        .ok(&[
            "run",
            "shell",
            "--image=busybox",
            "--labels=app=shell",
            "--env=MODE=test",
            "--restart=Never",
            "--",
            "sleep",
            "1",
        ])
        .await;
    assert_eq!(out.trim(), "pod/shell created");
    let p = get(&k, &["pod", "shell"]).await;
    assert_eq!(p["metadata"]["labels"]["app"], "shell");
    let c = &p["spec"]["containers"][0];
    assert_eq!(c["env"][0]["name"], "MODE");
    assert_eq!(c["args"], serde_json::json!(["sleep", "1"]));
    assert_eq!(p["spec"]["restartPolicy"], "Never");
    eventually("the pod ran to completion", || async {
        let p = get(&k, &["pod", "shell"]).await;
        p["status"]["phase"] == "Succeeded"
    })
    .await;
}
