//! Connecting to a cluster: a kubeconfig file when given, else the usual
//! inference (`KUBECONFIG`, `~/.kube/config`, then in-cluster).

use std::fmt;
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
    let config = config(kubeconfig).await?;
    let named = named_server(&config);
    let builder = kube::client::ClientBuilder::try_from(config)
        .map_err(|e| ClusterError::Client(e.to_string()))?;
    Ok(builder.with_layer(&named).build())
}

/// Transport errors name the server (see [`crate::cluster::api_server`]).
fn named_server(config: &Config) -> crate::cluster::api_server::NameServer {
    crate::cluster::api_server::NameServer::new(crate::core::redact::RedactedUrl::new(
        &config.cluster_url.to_string(),
    ))
}

/// A client that has at most `limit` API requests in flight; watches, which
/// stay open while something waits, do not count. This is what bounds the
/// agent's API work (`--concurrency`) while any number of stages wait.
pub async fn limited_client(
    kubeconfig: Option<&Path>,
    limit: usize,
) -> Result<Client, ClusterError> {
    let config = config(kubeconfig).await?;
    let named = named_server(&config);
    let builder = kube::client::ClientBuilder::try_from(config)
        .map_err(|e| ClusterError::Client(e.to_string()))?;
    Ok(builder
        .with_layer(&api_limit::ApiLimit::new(limit))
        .with_layer(&named)
        .build())
}

/// The API server's URL (credentials stripped), for errors that must say
/// which server did not answer.
pub async fn server_url(
    kubeconfig: Option<&Path>,
) -> Result<crate::core::redact::RedactedUrl, ClusterError> {
    let config = config(kubeconfig).await?;
    Ok(crate::core::redact::RedactedUrl::new(
        &config.cluster_url.to_string(),
    ))
}

async fn config(kubeconfig: Option<&Path>) -> Result<Config, ClusterError> {
    Ok(match kubeconfig {
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
    })
}

mod api_limit {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::task::{Context, Poll};

    use tokio::sync::{Mutex, Semaphore};
    use tower::{Layer, Service};

    #[derive(Clone)]
    pub struct ApiLimit {
        permits: Arc<Semaphore>,
    }

    impl ApiLimit {
        pub fn new(limit: usize) -> Self {
            Self {
                permits: Arc::new(Semaphore::new(limit.max(1))),
            }
        }
    }

    impl<S> Layer<S> for ApiLimit {
        type Service = Limited<S>;

        fn layer(&self, inner: S) -> Limited<S> {
            Limited {
                inner: Arc::new(Mutex::new(inner)),
                permits: self.permits.clone(),
            }
        }
    }

    /// The inner service is shared behind a lock held only to start a
    /// request (the stack kube builds is not `Clone`); the permit is held
    /// until the response's headers arrive.
    pub struct Limited<S> {
        inner: Arc<Mutex<S>>,
        permits: Arc<Semaphore>,
    }

    fn is_watch<B>(req: &http::Request<B>) -> bool {
        req.uri()
            .query()
            .is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"))
    }

    type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

    impl<S, B> Service<http::Request<B>> for Limited<S>
    where
        S: Service<http::Request<B>> + Send + 'static,
        S::Future: Send + 'static,
        B: Send + 'static,
    {
        type Response = S::Response;
        type Error = S::Error;
        type Future = BoxFuture<Result<S::Response, S::Error>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            // Readiness is awaited in `call`, under the lock.
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: http::Request<B>) -> Self::Future {
            let inner = self.inner.clone();
            let permits = self.permits.clone();
            Box::pin(async move {
                let _permit = match is_watch(&req) {
                    true => None,
                    false => permits.acquire_owned().await.ok(),
                };
                let response = {
                    let mut service = inner.lock().await;
                    std::future::poll_fn(|cx| service.poll_ready(cx)).await?;
                    service.call(req)
                };
                response.await
            })
        }
    }
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
        Err(e) => Err(ClusterError::Client(format!(
            "reading namespace {namespace}: {e}"
        ))),
    }
}

/// The UID of `namespace`, which changes when the cluster is rebuilt or
/// restored from a backup (UIDs are never restored); `None` when it cannot
/// be read (no right to, or the server does not answer).
pub async fn namespace_uid(client: &Client, namespace: &str) -> Option<String> {
    let api: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client.clone());
    match api.get_opt(namespace).await {
        Ok(found) => found.and_then(|ns| ns.metadata.uid),
        Err(e) => {
            tracing::warn!(namespace, error = %ServerMessage(&e), "cannot read the namespace's UID: a rebuilt cluster is told by its objects only");
            None
        }
    }
}

/// The server's Status, when the error is one.
pub fn api_status(e: &kube::Error) -> Option<&kube::core::Status> {
    match e {
        kube::Error::Api(status) => Some(status),
        _ => None,
    }
}

pub fn is_not_found(e: &kube::Error) -> bool {
    api_status(e).is_some_and(|s| s.code == 404)
}

/// What impersonating stages' ServiceAccounts needs (see [`crate::agent::rbac`]).
pub const PERMISSIONS: &[crate::core::permission::Permission] = &[
    crate::core::permission::Permission {
        group: "",
        resource: "serviceaccounts",
        verbs: &["impersonate"],
        cluster_wide: true,
        why: "a Flux Kustomization's serviceAccountName (or --default-service-account) applies \
          its stage as that ServiceAccount, so a tenant's stage can do no more than its RBAC allows",
    },
];

/// What reading `postBuild.substituteFrom` sources needs (also granted by
/// the apply engine's rule; declared here, next to the reads).
pub const SUBSTITUTION_PERMISSIONS: &[crate::core::permission::Permission] = &[
    crate::core::permission::Permission {
        group: "",
        resource: "configmaps",
        verbs: &["get"],
        cluster_wide: true,
        why: "postBuild.substituteFrom ConfigMaps, read in each Kustomization's namespace",
    },
    crate::core::permission::Permission {
        group: "",
        resource: "secrets",
        verbs: &["get"],
        cluster_wide: true,
        why: "postBuild.substituteFrom Secrets, read in each Kustomization's namespace",
    },
];

/// `client` acting as `user` (`Impersonate-User`), for a stage applied as
/// a tenant's ServiceAccount: the API server authorizes every request as
/// that user and answers its 403. The server adds the ServiceAccount's
/// groups itself when none are sent.
pub fn impersonating(client: &Client, user: &str) -> Result<Client, ClusterError> {
    let value = http::HeaderValue::from_str(user)
        .map_err(|e| ClusterError::Client(format!("cannot impersonate {user:?}: {e}")))?;
    let namespace = client.default_namespace().to_string();
    let inner = client.clone();
    let service = tower::service_fn(move |mut request: http::Request<kube::client::Body>| {
        let client = inner.clone();
        request
            .headers_mut()
            .insert("Impersonate-User", value.clone());
        async move { client.send(request).await.map_err(tower::BoxError::from) }
    });
    Ok(Client::new(service, namespace))
}

/// `postBuild.substituteFrom` sources read from the cluster, as Flux's
/// kustomize-controller reads them, with the agent's client. Planning is
/// blocking work (it runs in `spawn_blocking`), so each read blocks on the
/// runtime it was made for.
pub struct ClusterVariables {
    client: Client,
    runtime: tokio::runtime::Handle,
}

impl ClusterVariables {
    pub fn new(client: Client, runtime: tokio::runtime::Handle) -> Self {
        Self { client, runtime }
    }
}

impl crate::core::stage::substitute_from::SubstitutionSource for ClusterVariables {
    fn read(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<
        Option<std::collections::BTreeMap<String, String>>,
        crate::core::stage::substitute_from::SourceError,
    > {
        use k8s_openapi::api::core::v1::{ConfigMap, Secret};
        let error =
            |e: kube::Error| crate::core::stage::substitute_from::SourceError(e.to_string());
        self.runtime.block_on(async {
            match kind {
                "Secret" => {
                    let api: kube::Api<Secret> =
                        kube::Api::namespaced(self.client.clone(), namespace);
                    let Some(secret) = api.get_opt(name).await.map_err(error)? else {
                        return Ok(None);
                    };
                    let mut vars = std::collections::BTreeMap::new();
                    for (key, value) in secret.data.unwrap_or_default() {
                        let text = String::from_utf8(value.0).map_err(|_| {
                            crate::core::stage::substitute_from::SourceError(format!(
                                "key {key} is not UTF-8 text"
                            ))
                        })?;
                        vars.insert(key, text);
                    }
                    Ok(Some(vars))
                }
                _ => {
                    let api: kube::Api<ConfigMap> =
                        kube::Api::namespaced(self.client.clone(), namespace);
                    let configmap = api.get_opt(name).await.map_err(error)?;
                    Ok(configmap.map(|c| c.data.unwrap_or_default().into_iter().collect()))
                }
            }
        })
    }

    fn describe(&self) -> String {
        "the cluster".to_string()
    }
}

/// The server's message without kube's debug dump of the whole Status.
pub struct ServerMessage<'a>(pub &'a kube::Error);

impl fmt::Display for ServerMessage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match api_status(self.0) {
            Some(status) if status.message.is_empty() => {
                write!(f, "the server answered {} {}", status.code, status.reason)
            }
            Some(status) => write!(f, "{} ({})", status.message, status.code),
            None => write!(f, "{}", self.0),
        }
    }
}
