//! Connecting to a cluster: a kubeconfig file when given, else the usual
//! inference (`KUBECONFIG`, `~/.kube/config`, then in-cluster).

use std::path::Path;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("kubeconfig {path}: {message}")]
    Kubeconfig { path: String, message: String },
    #[error(
        "no cluster configuration found (set --kubeconfig or KUBECONFIG, or run in a pod): {0}"
    )]
    Infer(String),
    #[error("cannot build a client: {0}")]
    Client(String),
    #[error(
        "namespace {0} does not exist: pass the agent's namespace with -n (default stagegate-system, \
         or STAGEGATE_NAMESPACE); `kubectl get stages -A` shows where Stage objects are"
    )]
    MissingNamespace(String),
}

pub async fn client(kubeconfig: Option<&Path>) -> Result<Client, ClusterError> {
    let config = match kubeconfig {
        Some(path) => {
            let err = |message: String| ClusterError::Kubeconfig {
                path: path.display().to_string(),
                message,
            };
            let kc = Kubeconfig::read_from(path).map_err(|e| err(e.to_string()))?;
            Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(|e| err(e.to_string()))?
        }
        None => Config::infer()
            .await
            .map_err(|e| ClusterError::Infer(e.to_string()))?,
    };
    Client::try_from(config).map_err(|e| ClusterError::Client(e.to_string()))
}

/// Fail with a hint when the agent's namespace does not exist (a typo in
/// `-n`, or stagegate not installed), instead of showing nothing.
pub async fn require_namespace(client: &Client, namespace: &str) -> Result<(), ClusterError> {
    let api: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client.clone());
    match api.get_opt(namespace).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(ClusterError::MissingNamespace(namespace.to_string())),
        // Not allowed to read namespaces: the calls that follow will say more.
        Err(kube::Error::Api(s)) if s.code == 403 => Ok(()),
        Err(e) => Err(ClusterError::Client(format!("reading namespace {namespace}: {e}"))),
    }
}
