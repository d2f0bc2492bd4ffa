//! TLS on the API port, for kubeconfigs that carry credentials: kubectl
//! (client-go) sends a bearer token only over TLS, so user and
//! ServiceAccount kubeconfigs point at `https://127.0.0.1:PORT`, while the
//! admin kubeconfig keeps plain HTTP. Both are served on the same port: a
//! connection whose first byte starts a TLS handshake is served over TLS.
//!
//! The certificate is a fixed self-signed one for `127.0.0.1` and
//! `localhost` (valid until 2126), generated once with openssl; kubeconfigs
//! trust it through `certificate-authority-data`. A simulator on loopback has
//! no secret to keep.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{self, pki_types};

const CERT_DER: &[u8] = include_bytes!("tls/cert.der");
const KEY_DER: &[u8] = include_bytes!("tls/key.der");
/// The certificate in PEM, base64-encoded, as `certificate-authority-data` wants it.
pub const CA_DATA: &str = include_str!("tls/cert.pem.b64");

/// The certificate as PEM.
pub fn ca_pem() -> String {
    include_str!("tls/cert.pem").to_string()
}

/// The first byte of a TLS ClientHello record.
const HANDSHAKE: u8 = 0x16;

pub fn acceptor() -> Result<TlsAcceptor, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![pki_types::CertificateDer::from(CERT_DER)],
            pki_types::PrivateKeyDer::Pkcs8(pki_types::PrivatePkcs8KeyDer::from(KEY_DER)),
        )?;
    let mut config = config;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A connection, plain or TLS.
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// Serves TLS if the client starts a handshake, plain HTTP otherwise.
pub async fn accept(stream: TcpStream, tls: &TlsAcceptor) -> io::Result<Conn> {
    let mut first = [0u8; 1];
    let n = stream.peek(&mut first).await?;
    if n == 1 && first[0] == HANDSHAKE {
        let s = tls.accept(stream).await?;
        Ok(Conn::Tls(Box::new(s)))
    } else {
        Ok(Conn::Plain(stream))
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
