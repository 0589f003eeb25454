//! TLS for the proxy listener, terminated by the gateway instead of Pingora's listener.
//!
//! Pingora's listener performs a TLS handshake before the application sees the connection,
//! with a fixed 60 s timeout, outside any connection cap, and logs each failure at ERROR. So
//! the gateway's TLS listener is a plain TCP listener and [`crate::connections::Guarded`]
//! performs the handshake itself, after admitting the connection (it counts against
//! `max_connections`) and within the head deadline that starts at accept: a client that
//! trickles its handshake is cut at `head_timeout_seconds` like one that trickles a head, and
//! counted in `gateway_client_timeouts_total{listener="tls",phase="handshake"}`; a failed
//! handshake is counted in `gateway_tls_handshake_errors_total` and logged at debug level.
//!
//! The acceptor is Pingora's own setup rebuilt from its public parts: Mozilla's intermediate
//! profile, the certificate chain and key from the files, and ALPN preferring HTTP/2 over
//! HTTP/1.1 (what `TlsSettings::intermediate` plus `enable_h2` configure); the handshake is
//! Pingora's `protocols::tls::server::handshake`, so the stream the proxy gets is the same
//! `SslStream` it would have made.

use std::fmt;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora::protocols::{Peek, Stream};
use pingora::tls::ssl::{self, AlpnError, SslAcceptor, SslFiletype, SslMethod, SslRef};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Why the TLS settings could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("TLS certificate or key ({what}): {source}")]
pub struct TlsSetupError {
    what: &'static str,
    #[source]
    source: pingora::tls::error::ErrorStack,
}

/// Builds the proxy listener's acceptor from PEM files.
pub fn acceptor(cert: &Path, key: &Path) -> Result<Arc<SslAcceptor>, TlsSetupError> {
    let err = |what| move |source| TlsSetupError { what, source };
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls())
        .map_err(err("intermediate profile"))?;
    b.set_private_key_file(key, SslFiletype::PEM)
        .map_err(err("key file"))?;
    b.set_certificate_chain_file(cert)
        .map_err(err("certificate file"))?;
    b.check_private_key()
        .map_err(err("key does not match the certificate"))?;
    b.set_alpn_select_callback(prefer_h2);
    Ok(Arc::new(b.build()))
}

/// HTTP/2 when the client offers it, else HTTP/1.1; no ALPN answer for a malformed list or
/// one with neither (the client then speaks HTTP/1.1 by default).
fn prefer_h2<'a>(_: &mut SslRef, offered: &'a [u8]) -> Result<&'a [u8], AlpnError> {
    if !well_formed(offered) {
        return Err(AlpnError::NOACK);
    }
    ssl::select_next_proto(H2_THEN_HTTP1, offered).ok_or(AlpnError::NOACK)
}

/// Our preference in ALPN's wire form: `h2`, then `http/1.1` (Pingora's `ALPN::H2H1`).
const H2_THEN_HTTP1: &[u8] = b"\x02h2\x08http/1.1";

/// A non-empty list of non-empty, length-prefixed protocol names that ends exactly.
fn well_formed(mut list: &[u8]) -> bool {
    if list.is_empty() {
        return false;
    }
    while let Some((&len, rest)) = list.split_first() {
        let len = usize::from(len);
        if len == 0 || rest.len() < len {
            return false;
        }
        list = &rest[len..];
    }
    true
}

/// How a handshake ended badly.
#[derive(Debug)]
pub enum HandshakeFailure {
    /// Not finished within the time left of the head deadline.
    Timeout,
    /// Failed (the client went away, spoke plain HTTP, offered nothing acceptable).
    Error(Box<pingora::Error>),
}

/// Performs the server handshake on `stream` within `within`.
pub async fn handshake(
    acceptor: &SslAcceptor,
    stream: Stream,
    within: Duration,
) -> Result<Stream, HandshakeFailure> {
    match tokio::time::timeout(
        within,
        pingora::protocols::tls::server::handshake(acceptor, Plain(stream)),
    )
    .await
    {
        Ok(Ok(tls)) => Ok(Box::new(tls)),
        Ok(Err(e)) => Err(HandshakeFailure::Error(e)),
        Err(_) => Err(HandshakeFailure::Timeout),
    }
}

/// The accepted TCP stream as Pingora's TLS layer wants it (a sized `IO` type): every
/// property is the inner stream's.
struct Plain(Stream);

impl fmt::Debug for Plain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl AsyncRead for Plain {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Plain {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

crate::connections::forward_stream_properties!(Plain, 0);

#[async_trait]
impl Peek for Plain {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.0.try_peek(buf).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpn_lists_are_checked_before_selection() {
        assert!(well_formed(b"\x02h2\x08http/1.1"));
        assert!(well_formed(b"\x08http/1.1"));
        assert!(!well_formed(b""));
        assert!(!well_formed(b"\x00"));
        assert!(!well_formed(b"\x02h2\x09http/1.1"));
        assert!(!well_formed(b"\x02h2\x00"));
    }
}
