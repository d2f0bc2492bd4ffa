//! kube-sim: a simulated Kubernetes API server, speaking the real HTTP
//! protocol on loopback, for stagegate's tests, benchmarks and demo.
//!
//! ```no_run
//! # async fn demo() -> Result<(), kube_sim::SimError> {
//! let sim = kube_sim::KubeSim::start(kube_sim::SimConfig::default()).await?;
//! sim.write_kubeconfig(std::path::Path::new("/tmp/kubeconfig")).unwrap();
//! println!("{}", sim.url());
//! sim.shutdown().await;
//! # Ok(()) }
//! ```

mod auth;
mod controllers;
mod discovery;
mod events;
mod faults;
mod history;
mod listener;
mod ops;
mod patch;
mod proto;
mod request;
mod resources;
mod schema;
mod selector;
mod server;
mod ssa;
mod stats;
mod status;
mod store;
mod table;
mod typed;
mod util;
mod validation;
mod watch;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use auth::audit::AuditEntry;
pub use controllers::job::{
    DURATION as DURATION_ANNOTATION, LOG as LOG_ANNOTATION, OUTCOME as OUTCOME_ANNOTATION,
};
pub use controllers::rollout::ROLLOUT as ROLLOUT_ANNOTATION;
pub use faults::{FailRule, Faults};
pub use history::{Change, ChangeType};
pub use stats::{RequestStats, Verb};

/// Settings of one simulated cluster.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// How long a Job pod runs when the Job has no `sim.stagegate.dev/duration`.
    pub job_duration: Duration,
    /// How long after a spec change a Deployment/StatefulSet/DaemonSet shows a finished rollout.
    pub rollout_delay: Duration,
    /// How long a deleted pod stays Terminating (zero: deleted at once).
    pub pod_termination: Duration,
    /// How often the simulated controllers run.
    pub tick: Duration,
    /// Events kept for watches resuming from a resourceVersion; older ones get 410 Expired.
    pub watch_history: usize,
    /// How far a watcher may fall behind before its watch is closed.
    pub watch_buffer: usize,
    /// Interval of BOOKMARK events for watches that allow them.
    pub bookmark_interval: Duration,
    /// Server-side end of a watch without `timeoutSeconds`.
    pub watch_timeout: Duration,
    /// Base of the delay before a failed Job pod is replaced (doubling per
    /// failure, at most 6 minutes; the real controller uses 10s). Zero, the
    /// default, retries at once.
    pub job_backoff: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            job_duration: Duration::from_millis(500),
            rollout_delay: Duration::from_millis(300),
            pod_termination: Duration::from_millis(100),
            tick: Duration::from_millis(50),
            watch_history: 10_000,
            watch_buffer: 10_000,
            bookmark_interval: Duration::from_secs(5),
            watch_timeout: Duration::from_secs(1800),
            job_backoff: Duration::ZERO,
        }
    }
}

impl SimConfig {
    /// Short durations for tests: 200ms Jobs, 100ms rollouts and pod
    /// termination, a 20ms controller tick.
    pub fn fast() -> Self {
        SimConfig {
            job_duration: Duration::from_millis(200),
            rollout_delay: Duration::from_millis(100),
            pod_termination: Duration::from_millis(100),
            tick: Duration::from_millis(20),
            ..SimConfig::default()
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the listener has no local address: {0}")]
    LocalAddr(std::io::Error),
    #[error("the built-in TLS certificate was refused: {0}")]
    Tls(tokio_rustls::rustls::Error),
}

/// A running simulated API server.
pub struct KubeSim {
    shared: Arc<server::Shared>,
    addr: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl KubeSim {
    /// Starts on 127.0.0.1 with a free port.
    pub async fn start(config: SimConfig) -> Result<KubeSim, SimError> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), config).await
    }

    /// Starts on the given address; the server accepts connections when this returns.
    pub async fn start_on(addr: SocketAddr, config: SimConfig) -> Result<KubeSim, SimError> {
        let tcp = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| SimError::Bind { addr, source })?;
        let addr = tcp.local_addr().map_err(SimError::LocalAddr)?;
        let mut store = store::Store::new(config.watch_history, config.watch_buffer);
        store.pod_termination = config.pod_termination;
        bootstrap(&mut store);
        let store = Arc::new(Mutex::new(store));
        let shared = Arc::new(server::Shared {
            faults: Faults::new(store.clone()),
            store,
            config: config.clone(),
            stats: stats::Counters::default(),
            shutdown: tokio::sync::watch::channel(false).0,
            server_address: addr.to_string(),
            tokens: auth::Tokens::default(),
            audit: auth::audit::Audit::default(),
        });
        let acceptor = auth::tls::acceptor().map_err(SimError::Tls)?;
        let listener = listener::SimListener::new(tcp, shared.clone(), acceptor)
            .map_err(SimError::LocalAddr)?;
        let app = server::router(shared.clone());
        let mut stop = shared.shutdown.subscribe();
        let serve = tokio::spawn(async move {
            let result = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.changed().await;
                })
                .await;
            if let Err(e) = result {
                tracing::error!(error = %e, "kube-sim server stopped");
            }
        });
        let ctl = tokio::spawn(controllers::run(shared.clone(), config));
        Ok(KubeSim {
            shared,
            addr,
            tasks: vec![serve, ctl],
        })
    }

    /// The bound address (the port `start` picked).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig whose current context points at this server, as the
    /// admin (`kube-sim-admin`, in `system:masters`).
    pub fn kubeconfig_yaml(&self) -> String {
        self.kubeconfig_with_token("kube-sim", auth::ADMIN_TOKEN)
    }

    /// A bearer token for a named user in `groups` (plus
    /// `system:authenticated`); RBAC decides what it may do.
    pub fn user_token(&self, name: &str, groups: &[&str]) -> String {
        let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        self.shared.tokens.issue_user(name, &groups)
    }

    /// A bearer token for the ServiceAccount `namespace/name`
    /// (`system:serviceaccount:NS:NAME`); requests with it get 401 while the
    /// ServiceAccount does not exist.
    pub fn service_account_token(&self, namespace: &str, name: &str) -> String {
        self.shared.tokens.issue_service_account(namespace, name)
    }

    /// A kubeconfig for a named user (see [`KubeSim::user_token`]).
    pub fn user_kubeconfig(&self, name: &str, groups: &[&str]) -> String {
        self.kubeconfig_with_token(name, &self.user_token(name, groups))
    }

    /// A kubeconfig for a ServiceAccount, as a pod using it would authenticate
    /// (see [`KubeSim::service_account_token`]).
    pub fn service_account_kubeconfig(&self, namespace: &str, name: &str) -> String {
        self.kubeconfig_with_token(
            &format!("system:serviceaccount:{namespace}:{name}"),
            &self.service_account_token(namespace, name),
        )
    }

    /// `https://127.0.0.1:PORT`: the same port over TLS, which kubectl
    /// needs before it sends a token.
    pub fn https_url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The CA of [`KubeSim::https_url`], PEM.
    pub fn ca_pem(&self) -> String {
        auth::tls::ca_pem()
    }

    fn kubeconfig_with_token(&self, user: &str, token: &str) -> String {
        let cluster = if token == auth::ADMIN_TOKEN {
            format!("server: {}", self.url())
        } else {
            format!(
                "server: {}\n    certificate-authority-data: {}",
                self.https_url(),
                auth::tls::CA_DATA
            )
        };
        format!(
            "apiVersion: v1
kind: Config
clusters:
- name: kube-sim
  cluster:
    {cluster}
contexts:
- name: kube-sim
  context:
    cluster: kube-sim
    user: {user:?}
    namespace: default
current-context: kube-sim
preferences: {{}}
users:
- name: {user:?}
  user:
    token: {token}
"
        )
    }

    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig_yaml())
    }

    /// From now on, record every API request's user, authorization
    /// attributes and RBAC decision (see [`KubeSim::audit_log`]).
    pub fn start_audit(&self) {
        self.shared.audit.start();
    }

    /// The requests recorded since [`KubeSim::start_audit`], in order.
    pub fn audit_log(&self) -> Vec<AuditEntry> {
        self.shared.audit.entries()
    }

    /// From now on, keep every change the server makes to any object (a
    /// creation, a modification, a deletion, with the object as stored), for
    /// [`KubeSim::history`]; also `POST /sim/history/start`.
    pub fn start_history(&self) {
        self.shared
            .store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .start_recording();
    }

    /// The changes kept since [`KubeSim::start_history`], in resourceVersion
    /// order; also `GET /sim/history`.
    pub fn history(&self) -> Vec<Change> {
        self.shared
            .store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .recorded()
    }

    /// Requests counted by verb since start (admin paths not counted).
    pub fn stats(&self) -> RequestStats {
        self.shared.stats.snapshot()
    }

    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// Stops accepting, ends every watch and the controllers.
    pub async fn shutdown(mut self) {
        let _ = self.shared.shutdown.send(true);
        for t in std::mem::take(&mut self.tasks) {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }
}

/// A sim dropped without `shutdown` still stops serving and simulating.
impl Drop for KubeSim {
    fn drop(&mut self) {
        let _ = self.shared.shutdown.send(true);
    }
}

/// The namespaces every cluster starts with.
fn bootstrap(store: &mut store::Store) {
    let Some(ns) = store.registry.get("", "namespaces").cloned() else {
        return;
    };
    let opts = ops::WriteOpts {
        manager: "kube-apiserver".into(),
        api_version: "v1".into(),
        ..Default::default()
    };
    auth::bootstrap::install(store, &opts);
    for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let _ = store.create(
            &ns,
            "",
            serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
            &opts,
        );
    }
    // The one node every simulated pod runs on.
    let Some(nodes) = store.registry.get("", "nodes").cloned() else {
        return;
    };
    let node = serde_json::json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "kube-sim-node", "labels": {
            "kubernetes.io/hostname": "kube-sim-node", "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
            "node-role.kubernetes.io/control-plane": ""
        }},
        "spec": {},
    });
    if let Ok(created) = store.create(&nodes, "", node, &opts) {
        let now = util::now_rfc3339();
        let mut with_status = (*created).clone();
        with_status["status"] = serde_json::json!({
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
                            "lastHeartbeatTime": now, "lastTransitionTime": now}],
            "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}, {"type": "Hostname", "address": "kube-sim-node"}],
            "capacity": {"cpu": "2", "memory": "24Gi", "pods": "110"},
            "allocatable": {"cpu": "2", "memory": "24Gi", "pods": "110"},
            "nodeInfo": {"kubeletVersion": "v1.32.0", "kubeProxyVersion": "v1.32.0", "containerRuntimeVersion": "kube-sim://1",
                         "operatingSystem": "linux", "architecture": "amd64", "osImage": "kube-sim", "kernelVersion": "",
                         "machineID": "", "systemUUID": "", "bootID": ""},
        });
        store.put(&nodes, with_status);
    }
}
