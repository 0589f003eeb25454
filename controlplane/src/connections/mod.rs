//! Connection deadlines and accounting on every listener of the control plane (the API, plain
//! or TLS, and the admin port).
//!
//! **What.** A request head must be complete within `server.header_read_timeout_secs` of its
//! start, however slowly it trickles: from the accept for a connection's first request (the
//! TLS handshake included), from its first byte for a later one. A kept-alive HTTP/1
//! connection may stay silent between requests for `server.idle_timeout_secs`. Each connection
//! closed by either deadline counts in `controlplane_client_timeouts_total{listener,phase}`
//! (`head`, `idle`), a client that goes away in the middle of a head in
//! `controlplane_client_disconnects_total{listener}`, and open connections in
//! `controlplane_connections_open{listener}`; each is logged at debug level, without its bytes.
//!
//! **Why not hyper alone.** hyper 1.x's HTTP/1 `header_read_timeout` starts when the
//! connection begins waiting for a head (`Conn::poll_read_head`), and after a response on a
//! kept-alive connection it starts waiting at once, so the same timer covers the idle wait and
//! the head that follows: an idle connection is cut at the head deadline, and there is no
//! separate idle timeout to set. When it fires hyper closes the connection and returns an
//! error that axum-server drops; nothing is counted (and nothing logged: hyper's `tracing`
//! feature is off, axum-server logs nothing).
//!
//! **How.** [`Watched`] is an axum-server acceptor around the plain or Rustls acceptor. Per
//! connection it creates a tracker shared by the [`WatchedStream`] hyper reads (which sees
//! bytes arrive, the client's EOF or reset, and fails a waiting read with `TimedOut` at the
//! running deadline; hyper then closes the connection) and the [`WatchedService`] hyper calls
//! (a call means a head is complete; the drop of the response body means the request is done
//! and the connection idle). The tracker is classified once, when the connection's last handle
//! drops. The stream sits above TLS, so a TLS client's close_notify is not mistaken for the
//! start of a head. hyper's `header_read_timeout` (set to both deadlines added) and
//! axum-server's first-request timeout (the head deadline, started after the acceptor) remain as
//! backstops; a connection they close after our deadline has passed is still counted. The TLS
//! handshake keeps axum-server's handshake timeout (the head deadline); a handshake cut by it
//! counts as a head timeout.
//!
//! HTTP/2 connections (ALPN `h2`, or prior knowledge on plain HTTP) are watched until their
//! first request (the same bound as before: the head deadline from the accept) and then left
//! to hyper's HTTP/2 limits; they have no idle timeout.

mod service;
mod stream;
mod tracker;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum_server::accept::Accept;
use tokio::net::TcpStream;

use crate::metrics::Metrics;
pub use service::{WatchedBody, WatchedService};
pub use stream::WatchedStream;
use tracker::{ListenerShared, Tracker, Wait};

/// The connection deadlines of a listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadlines {
    /// For a complete request head (and the TLS handshake before the first one).
    pub head: Duration,
    /// For the next request on a kept-alive HTTP/1 connection.
    pub idle: Duration,
}

/// Which listener a connection came in on (the `listener` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    /// The REST API, plain or TLS.
    Api,
    /// `/healthz`, `/readyz`, `/metrics`.
    Admin,
}

impl Listener {
    fn label(self) -> &'static str {
        match self {
            Listener::Api => "api",
            Listener::Admin => "admin",
        }
    }
}

/// An acceptor that applies [`Deadlines`] to every connection `inner` accepts and counts how
/// they end.
#[derive(Clone)]
pub struct Watched<A> {
    inner: A,
    shared: Arc<ListenerShared>,
}

impl<A> Watched<A> {
    /// Watches the connections of `listener` accepted by `inner`.
    pub fn new(inner: A, listener: Listener, deadlines: Deadlines, metrics: &Metrics) -> Self {
        let label = listener.label();
        let timeouts = |phase: Wait| {
            metrics
                .client_timeouts
                .with_label_values(&[label, phase.label()])
        };
        Self {
            inner,
            shared: Arc::new(ListenerShared {
                label,
                deadlines,
                head_timeouts: timeouts(Wait::Head),
                idle_timeouts: timeouts(Wait::Idle),
                disconnects: metrics.client_disconnects.with_label_values(&[label]),
                open: metrics.connections_open.with_label_values(&[label]),
            }),
        }
    }
}

type AcceptFuture<T> = Pin<Box<dyn Future<Output = io::Result<T>> + Send>>;

impl<A, S> Accept<TcpStream, S> for Watched<A>
where
    A: Accept<TcpStream, S>,
    A::Future: Send + 'static,
{
    type Stream = WatchedStream<A::Stream>;
    type Service = WatchedService<A::Service>;
    type Future = AcceptFuture<(Self::Stream, Self::Service)>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let peer: Option<SocketAddr> = stream.peer_addr().ok();
        let tracker = Arc::new(Tracker::new(self.shared.clone(), peer));
        let accepted = self.inner.accept(stream, service);
        Box::pin(async move {
            match accepted.await {
                Ok((io, svc)) => Ok((
                    WatchedStream::new(io, tracker.clone()),
                    WatchedService::new(svc, tracker),
                )),
                Err(e) => {
                    // The TLS handshake ran out of the head deadline; any other failure (a
                    // client that is not speaking TLS, or left) is not counted.
                    if e.kind() == io::ErrorKind::TimedOut {
                        tracker.time_out(Wait::Head);
                    } else {
                        tracing::debug!(peer = ?peer, "TLS handshake failed");
                    }
                    Err(e)
                }
            }
        })
    }
}

/// An axum-server on `listener` whose connections `acceptor` watches, with hyper's and
/// axum-server's own timers as backstops (see the module documentation).
pub fn server<A>(
    listener: std::net::TcpListener,
    handle: axum_server::Handle<SocketAddr>,
    acceptor: Watched<A>,
) -> io::Result<axum_server::Server<SocketAddr, Watched<A>>> {
    let d = acceptor.shared.deadlines;
    let mut server = axum_server::from_tcp(listener)?
        .acceptor(acceptor)
        .handle(handle)
        .first_request_timeout(d.head);
    server
        .http_builder()
        .http1()
        .header_read_timeout(d.head.saturating_add(d.idle));
    Ok(server)
}
