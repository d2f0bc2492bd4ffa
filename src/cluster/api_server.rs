//! Errors reaching the API server name it (#13): a refused or reset
//! connection, a TLS failure or a timeout is shown as "cannot reach the API
//! server at URL: …" wherever it is reported (the call that failed, the
//! stage, the Event), so an operator learns which server did not answer,
//! not only that a connection failed. A layer in front of the kube client
//! does it once for every request.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tower::{BoxError, Layer, Service};

use crate::core::redact::RedactedUrl;

/// A request that got no answer from the API server at `server`.
#[derive(Debug, thiserror::Error)]
#[error("cannot reach the API server at {server}: {source}")]
pub struct Unreachable {
    pub server: RedactedUrl,
    #[source]
    pub source: BoxError,
}

/// Wraps every transport error of the inner service in [`Unreachable`].
#[derive(Clone)]
pub struct NameServer {
    server: RedactedUrl,
}

impl NameServer {
    pub fn new(server: RedactedUrl) -> Self {
        NameServer { server }
    }
}

impl<S> Layer<S> for NameServer {
    type Service = Named<S>;

    fn layer(&self, inner: S) -> Named<S> {
        Named {
            inner,
            server: self.server.clone(),
        }
    }
}

pub struct Named<S> {
    inner: S,
    server: RedactedUrl,
}

impl<S, R> Service<R> for Named<S>
where
    S: Service<R>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        let server = self.server.clone();
        self.inner
            .poll_ready(cx)
            .map_err(|source| named(server, source.into()))
    }

    fn call(&mut self, req: R) -> Self::Future {
        let server = self.server.clone();
        let response = self.inner.call(req);
        Box::pin(async move {
            response
                .await
                .map_err(|source| named(server, source.into()))
        })
    }
}

fn named(server: RedactedUrl, source: BoxError) -> BoxError {
    Box::new(Unreachable { server, source })
}
