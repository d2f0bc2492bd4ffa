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
}

pub async fn client(kubeconfig: Option<&Path>) -> Result<Client, ClusterError> {
    connect(kubeconfig).await.map(|(client, _)| client)
}

/// A client and the API server's URL (credentials stripped), for errors
/// that must say which server did not answer.
pub async fn connect(
    kubeconfig: Option<&Path>,
) -> Result<(Client, crate::redact::RedactedUrl), ClusterError> {
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
    let url = crate::redact::RedactedUrl::new(&config.cluster_url.to_string());
    let client = Client::try_from(config).map_err(|e| ClusterError::Client(e.to_string()))?;
    Ok((client, url))
}
