//! The TCP listener, which can play unreachable: while the fault is on,
//! connections are accepted and closed at once. Each connection is served
//! as plain HTTP or, if it starts with a TLS handshake, over TLS
//! (`auth::tls`); the sniffing and handshakes run off the accept loop, so a
//! silent or slow client holds up no one.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::auth::tls::{self, Conn};
use crate::server::Shared;

pub struct SimListener {
    ready: mpsc::Receiver<(Conn, SocketAddr)>,
    addr: SocketAddr,
}

impl SimListener {
    pub fn new(
        tcp: TcpListener,
        shared: Arc<Shared>,
        acceptor: tokio_rustls::TlsAcceptor,
    ) -> std::io::Result<Self> {
        let addr = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let mut stop = shared.shutdown.subscribe();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    a = tcp.accept() => a,
                    _ = stop.changed() => return,
                };
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if shared.faults.is_unreachable() {
                    drop(stream);
                    continue;
                }
                let _ = stream.set_nodelay(true);
                let (tx, acceptor) = (tx.clone(), acceptor.clone());
                tokio::spawn(async move {
                    match tls::accept(stream, &acceptor).await {
                        Ok(conn) => {
                            let _ = tx.send((conn, peer)).await;
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, %peer, "connection dropped before its first request")
                        }
                    }
                });
            }
        });
        Ok(SimListener { ready, addr })
    }
}

impl axum::serve::Listener for SimListener {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accept loop ended (shutdown): wait for the server to stop.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}
