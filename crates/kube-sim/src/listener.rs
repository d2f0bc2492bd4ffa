//! The TCP listener, which can play unreachable: while the fault is on,
//! connections are accepted and closed at once.

use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};

use crate::server::Shared;

pub struct SimListener {
    tcp: TcpListener,
    shared: Arc<Shared>,
}

impl SimListener {
    pub fn new(tcp: TcpListener, shared: Arc<Shared>) -> Self {
        SimListener { tcp, shared }
    }
}

impl axum::serve::Listener for SimListener {
    type Io = TcpStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.tcp.accept().await {
                Ok((stream, addr)) => {
                    if self.shared.faults.is_unreachable() {
                        drop(stream);
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    return (stream, addr);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}
