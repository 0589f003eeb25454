//! Hostile-client protection for every listener (proxy, TLS, admin), in front of Pingora:
//!
//! - a cap on concurrent connections per listener (and optionally per source address):
//!   past it a new connection is closed at once, before a byte is read;
//! - on the TLS listener, the TLS handshake itself (see [`crate::downstream_tls`]), spending
//!   from the first head's deadline;
//! - a total deadline for each request head, however slowly the client trickles it: from
//!   accept for the first request, from the first byte for the next ones on a kept-alive
//!   connection (the idle wait between requests is Pingora's keep-alive timeout, which the
//!   gateway sets to `server.idle_timeout_seconds`);
//! - a cap on the request-head size, enforced while the head is read, so an oversized head
//!   never sits in memory whole.
//!
//! Pingora 0.9.1 has no hook for any of this (its `ConnectionFilter` sees an address, not
//! the connection's end; its read timeout is per read), so [`Guarded`] wraps the listener's
//! application and hands it a [`GuardedStream`] that watches the bytes of each request head.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::{Peek, Stream, ALPN};
use pingora::server::ShutdownWatch;
use prometheus::{IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// The limits of one listener.
#[derive(Debug, Clone)]
pub struct ListenerLimits {
    /// `proxy`, `tls` or `admin` (the `listener` label of the metrics).
    pub name: &'static str,
    /// Most connections open at once.
    pub max_connections: usize,
    /// Most connections open at once from one source IP address (`None`: no cap).
    pub max_connections_per_source: Option<usize>,
    /// Longest time for a whole request head.
    pub head_timeout: Duration,
    /// Longest silence between two requests on a kept-alive connection.
    pub idle_timeout: Duration,
    /// Largest request head (request line and headers), in bytes.
    pub max_head_bytes: usize,
}

/// Metrics of hostile or slow clients, shared by every listener.
#[derive(Clone)]
pub struct ConnMetrics {
    /// Connections closed because the client was too slow, by listener and phase
    /// (`head`, `idle`, `body`).
    pub timeouts: IntCounterVec,
    /// Connections the client dropped in the middle of a request head, by listener.
    pub disconnects: IntCounterVec,
    /// Requests whose client went away before the response was complete, by listener.
    pub aborts: IntCounterVec,
    /// Connections refused at accept, by listener and reason (`listener_cap`, `source_cap`).
    pub refused: IntCounterVec,
    /// Connections open now, by listener.
    pub open: IntGaugeVec,
    /// TLS handshakes that failed (see `downstream_tls`).
    pub tls_handshake_errors: IntCounter,
    /// Pingora's upstream pool race, recovered by a new connection (see `pingora_log`).
    pub upstream_pool_races: IntCounter,
}

impl ConnMetrics {
    /// Creates and registers the metrics.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let timeouts = IntCounterVec::new(
            Opts::new(
                "gateway_client_timeouts_total",
                "Client connections closed for slowness, by listener and phase (head, idle, body)",
            ),
            &["listener", "phase"],
        )?;
        let disconnects = IntCounterVec::new(
            Opts::new(
                "gateway_client_disconnects_total",
                "Clients that went away in the middle of a request head, by listener",
            ),
            &["listener"],
        )?;
        let aborts = IntCounterVec::new(
            Opts::new(
                "gateway_client_aborts_total",
                "Requests whose client went away (closed, reset, stopped reading) before the response was complete, by listener",
            ),
            &["listener"],
        )?;
        let refused = IntCounterVec::new(
            Opts::new(
                "gateway_connections_refused_total",
                "Connections closed at accept, by listener and reason (listener_cap, source_cap)",
            ),
            &["listener", "reason"],
        )?;
        let open = IntGaugeVec::new(
            Opts::new(
                "gateway_connections_open",
                "Client connections open, by listener",
            ),
            &["listener"],
        )?;
        registry.register(Box::new(timeouts.clone()))?;
        registry.register(Box::new(disconnects.clone()))?;
        registry.register(Box::new(aborts.clone()))?;
        registry.register(Box::new(refused.clone()))?;
        let tls_handshake_errors = IntCounter::new(
            "gateway_tls_handshake_errors_total",
            "TLS handshakes that failed (client gone, plain HTTP on the TLS port, nothing acceptable offered)",
        )?;
        let upstream_pool_races = IntCounter::new(
            "gateway_upstream_pool_races_total",
            "Pooled upstream connections Pingora could not take over (a new one was opened)",
        )?;
        registry.register(Box::new(open.clone()))?;
        registry.register(Box::new(tls_handshake_errors.clone()))?;
        registry.register(Box::new(upstream_pool_races.clone()))?;
        Ok(Self {
            timeouts,
            disconnects,
            aborts,
            refused,
            open,
            tls_handshake_errors,
            upstream_pool_races,
        })
    }
}

/// Why the guard ended a request head; carried inside the `io::Error` it returns, so the
/// application's head-error hook can answer with the right status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadLimit {
    /// The head took longer than the head deadline.
    Timeout,
    /// The head grew past the size cap while still in the request line (the URL).
    UriTooLong,
    /// The head grew past the size cap.
    TooLarge,
}

impl fmt::Display for HeadLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Timeout => "request head deadline reached",
            Self::UriTooLong => "request line over the head size cap",
            Self::TooLarge => "request head over the size cap",
        })
    }
}

impl std::error::Error for HeadLimit {}

impl HeadLimit {
    /// The guard's verdict inside a Pingora error, if that is what ended the head.
    pub fn of(e: &pingora::Error) -> Option<Self> {
        let io = e.root_cause().downcast_ref::<io::Error>()?;
        io.get_ref()?.downcast_ref::<Self>().copied()
    }
}

struct Shared {
    limits: ListenerLimits,
    metrics: ConnMetrics,
    open: AtomicUsize,
    per_source: Option<Mutex<HashMap<IpAddr, usize>>>,
}

/// A listener's application behind the connection guard.
pub struct Guarded<A> {
    inner: Arc<A>,
    shared: Arc<Shared>,
    /// TLS terminated here, within the head deadline (see [`crate::downstream_tls`]).
    tls: Option<Arc<pingora::tls::ssl::SslAcceptor>>,
}

impl<A> Guarded<A> {
    /// Wraps `inner` with `limits`.
    pub fn new(inner: A, limits: ListenerLimits, metrics: ConnMetrics) -> Self {
        metrics.open.with_label_values(&[limits.name]).set(0);
        let per_source = limits
            .max_connections_per_source
            .map(|_| Mutex::new(HashMap::new()));
        Self {
            inner: Arc::new(inner),
            shared: Arc::new(Shared {
                limits,
                metrics,
                open: AtomicUsize::new(0),
                per_source,
            }),
            tls: None,
        }
    }

    /// Terminates TLS with `acceptor` for every admitted connection, before its first head
    /// and within the same deadline.
    pub fn with_tls(mut self, acceptor: Arc<pingora::tls::ssl::SslAcceptor>) -> Self {
        self.tls = Some(acceptor);
        self
    }

    /// The wrapped application (to set its options before the service starts).
    pub fn inner_mut(&mut self) -> Option<&mut A> {
        Arc::get_mut(&mut self.inner)
    }
}

/// One admitted connection; gives its slots back on drop.
struct Permit {
    shared: Arc<Shared>,
    source: Option<IpAddr>,
    admitted: bool,
}

impl Permit {
    fn acquire(shared: &Arc<Shared>, source: Option<IpAddr>) -> Result<Self, &'static str> {
        let max = shared.limits.max_connections;
        if shared
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_err()
        {
            return Err("listener_cap");
        }
        let mut permit = Self {
            shared: shared.clone(),
            source: None,
            admitted: false,
        };
        if let (Some(map), Some(cap), Some(ip)) = (
            &shared.per_source,
            shared.limits.max_connections_per_source,
            source,
        ) {
            let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
            let n = map.entry(ip).or_insert(0);
            if *n >= cap {
                return Err("source_cap"); // `permit` drops and gives the listener slot back
            }
            *n += 1;
            permit.source = Some(ip);
        }
        permit.admitted = true;
        shared
            .metrics
            .open
            .with_label_values(&[shared.limits.name])
            .inc();
        Ok(permit)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.shared.open.fetch_sub(1, Ordering::AcqRel);
        if let (Some(map), Some(ip)) = (&self.shared.per_source, self.source) {
            let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = map.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&ip);
                }
            }
        }
        if self.admitted {
            self.shared
                .metrics
                .open
                .with_label_values(&[self.shared.limits.name])
                .dec();
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Guarded<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let source = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        let permit = match Permit::acquire(&self.shared, source) {
            Ok(p) => p,
            Err(reason) => {
                self.shared
                    .metrics
                    .refused
                    .with_label_values(&[self.shared.limits.name, reason])
                    .inc();
                tracing::debug!(
                    listener = self.shared.limits.name,
                    reason,
                    "connection refused"
                );
                return None; // dropping the stream closes it
            }
        };
        // The head deadline runs from accept; a TLS handshake spends from the same budget.
        let deadline = tokio::time::Instant::now() + self.shared.limits.head_timeout;
        let stream = match &self.tls {
            None => stream,
            Some(acceptor) => {
                let within = self.shared.limits.head_timeout;
                match crate::downstream_tls::handshake(acceptor, stream, within).await {
                    Ok(tls) => tls,
                    Err(failure) => {
                        self.count_handshake_failure(&failure);
                        return None;
                    }
                }
            }
        };
        let guarded: Stream = Box::new(GuardedStream::new(
            stream,
            self.shared.clone(),
            permit,
            deadline,
        ));
        // HTTP apps loop over kept-alive requests themselves and never hand a stream back;
        // one that did would be closed here rather than re-admitted without a permit.
        let _ = self.inner.process_new(guarded, shutdown).await;
        None
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await;
    }
}

impl<A> Guarded<A> {
    fn count_handshake_failure(&self, failure: &crate::downstream_tls::HandshakeFailure) {
        use crate::downstream_tls::HandshakeFailure;
        let listener = self.shared.limits.name;
        let m = &self.shared.metrics;
        match failure {
            HandshakeFailure::Timeout => {
                m.timeouts.with_label_values(&[listener, "handshake"]).inc();
                tracing::debug!(
                    listener,
                    phase = "handshake",
                    "client too slow: connection closed"
                );
            }
            HandshakeFailure::Error(e) => {
                m.tls_handshake_errors.inc();
                // The error's type only: its text can quote what the client sent.
                tracing::debug!(listener, error = ?e.etype(), "TLS handshake failed");
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading a request head: the deadline is armed.
    Head,
    /// The head is complete: body bytes or the upstream wait; no deadline here (the body
    /// has its own timeout in the proxy).
    Body,
    /// A response has been written; the next byte read starts a new head.
    AwaitNext,
    /// HTTP/2 (which frames its own heads; idle is `h2_idle_timeout`): no watching.
    Off,
}

const H2_PREFACE_START: &[u8] = b"PRI * HTTP/2.0";

/// A client connection seen through the guard (see the module docs).
pub struct GuardedStream {
    inner: Stream,
    shared: Arc<Shared>,
    _permit: Permit,
    phase: Phase,
    deadline: Pin<Box<Sleep>>,
    head: HeadCount,
    /// The first bytes of the connection (to recognise the HTTP/2 preface).
    prefix: [u8; 14],
    prefix_len: usize,
    last_write: Option<Instant>,
    eof: bool,
}

impl fmt::Debug for GuardedStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedStream")
            .field("inner", &self.inner)
            .field("phase", &self.phase)
            .finish()
    }
}

impl GuardedStream {
    /// `deadline`: when the first head must be complete (the head timeout after accept).
    fn new(
        inner: Stream,
        shared: Arc<Shared>,
        permit: Permit,
        deadline: tokio::time::Instant,
    ) -> Self {
        let phase = if matches!(inner.selected_alpn_proto(), Some(ALPN::H2)) {
            Phase::Off
        } else {
            Phase::Head
        };
        let deadline = Box::pin(tokio::time::sleep_until(deadline));
        Self {
            inner,
            shared,
            _permit: permit,
            phase,
            deadline,
            head: HeadCount::default(),
            prefix: [0; 14],
            prefix_len: 0,
            last_write: None,
            eof: false,
        }
    }

    fn start_head(&mut self) {
        self.phase = Phase::Head;
        self.head = HeadCount::default();
        let at = tokio::time::Instant::now() + self.shared.limits.head_timeout;
        self.deadline.as_mut().reset(at);
    }

    fn count_timeout(&self, phase: &'static str) {
        self.shared
            .metrics
            .timeouts
            .with_label_values(&[self.shared.limits.name, phase])
            .inc();
        tracing::debug!(
            listener = self.shared.limits.name,
            phase,
            "client too slow: connection closed"
        );
    }

    /// Watches `bytes` just read. Returns the verdict when the head broke a cap.
    fn scan(&mut self, bytes: &[u8]) -> Option<HeadLimit> {
        let rest = bytes;
        if self.phase == Phase::AwaitNext && !rest.is_empty() {
            self.start_head();
        }
        if self.phase != Phase::Head {
            return None;
        }
        if self.prefix_len < self.prefix.len() {
            let take = (self.prefix.len() - self.prefix_len).min(rest.len());
            self.prefix[self.prefix_len..self.prefix_len + take].copy_from_slice(&rest[..take]);
            self.prefix_len += take;
            if !H2_PREFACE_START.starts_with(&self.prefix[..self.prefix_len]) {
                self.prefix_len = self.prefix.len(); // not HTTP/2: stop looking
            } else if self.prefix_len == self.prefix.len() {
                self.phase = Phase::Off; // h2c prior knowledge
                return None;
            }
        }
        match self.head.feed(rest, self.shared.limits.max_head_bytes) {
            HeadFeed::More => None,
            HeadFeed::Complete => {
                self.phase = Phase::Body;
                None
            }
            HeadFeed::Over(limit) => Some(limit),
        }
    }
}

/// Where a request head stands, counted as its bytes arrive in any pieces: bytes so far,
/// whether the request line is done, and newlines in a row (with only `\r` between them).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct HeadCount {
    bytes: usize,
    newlines: u8,
    line_done: bool,
}

/// What [`HeadCount::feed`] found.
#[derive(Debug, PartialEq, Eq)]
enum HeadFeed {
    /// No end yet, under the cap.
    More,
    /// An empty line ended the head (the bytes after it are the body's).
    Complete,
    /// The head passed `max` bytes: in the request line (URI too long) or after it.
    Over(HeadLimit),
}

impl HeadCount {
    /// Counts `bytes`. An empty line ends the head: CRLF CRLF, or bare LF LF as httparse
    /// allows. The head may not pass `max` bytes unless its very last byte is the one that
    /// ends it. Jumps from newline to newline (`memchr`) instead of looking at every byte: a
    /// head is a few hundred bytes per request.
    fn feed(&mut self, mut rest: &[u8], max: usize) -> HeadFeed {
        loop {
            let Some(i) = memchr::memchr(b'\n', rest) else {
                if rest.iter().any(|&b| b != b'\r') {
                    self.newlines = 0;
                }
                self.bytes += rest.len();
                return if self.bytes > max {
                    HeadFeed::Over(self.over())
                } else {
                    HeadFeed::More
                };
            };
            // Past the cap before this newline: the line it ends is what broke it.
            if self.bytes + i > max {
                return HeadFeed::Over(self.over());
            }
            if rest[..i].iter().any(|&b| b != b'\r') {
                self.newlines = 0;
            }
            self.bytes += i + 1;
            self.line_done = true;
            self.newlines += 1;
            if self.newlines == 2 {
                return HeadFeed::Complete;
            }
            if self.bytes > max {
                return HeadFeed::Over(HeadLimit::TooLarge);
            }
            rest = &rest[i + 1..];
        }
    }

    fn over(&self) -> HeadLimit {
        if self.line_done {
            HeadLimit::TooLarge
        } else {
            HeadLimit::UriTooLong
        }
    }
}

fn limit_error(limit: HeadLimit) -> io::Error {
    let kind = match limit {
        HeadLimit::Timeout => io::ErrorKind::TimedOut,
        HeadLimit::UriTooLong | HeadLimit::TooLarge => io::ErrorKind::InvalidData,
    };
    io::Error::new(kind, limit)
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let filled = &buf.filled()[before..];
                if filled.is_empty() {
                    this.eof = true;
                    return Poll::Ready(Ok(()));
                }
                match this.scan(filled) {
                    Some(limit) => Poll::Ready(Err(limit_error(limit))),
                    None => Poll::Ready(Ok(())),
                }
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if this.phase == Phase::Head && this.deadline.as_mut().poll(cx).is_ready() {
                    this.count_timeout("head");
                    return Poll::Ready(Err(limit_error(HeadLimit::Timeout)));
                }
                Poll::Pending
            }
        }
    }
}

impl GuardedStream {
    fn wrote(&mut self, n: usize, first: &[u8]) {
        // An interim `100 Continue` is not the response: the body comes next, not a head.
        if n > 0 && !first.starts_with(b"HTTP/1.1 1") && !first.starts_with(b"HTTP/1.0 1") {
            self.last_write = Some(Instant::now());
            if matches!(self.phase, Phase::Head | Phase::Body) {
                self.phase = Phase::AwaitNext;
            }
        }
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let res = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &res {
            this.wrote(*n, buf);
        }
        res
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let res = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &res {
            let first = bufs
                .iter()
                .find(|b| !b.is_empty())
                .map_or(&[][..], |b| &b[..]);
            this.wrote(*n, first);
        }
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Drop for GuardedStream {
    fn drop(&mut self) {
        // Pingora's keep-alive timeout closes an idle connection without a word; a connection
        // that ends silent after a response, its client still there, past the idle timeout,
        // was closed by it.
        if self.phase == Phase::AwaitNext
            && !self.eof
            && self
                .last_write
                .is_some_and(|t| t.elapsed() >= self.shared.limits.idle_timeout)
        {
            self.count_timeout("idle");
        }
    }
}

/// Implements Pingora's stream properties (shutdown, id, TLS, timing, proxy and socket
/// digests) for a wrapper by forwarding each to its inner stream `$field`: the connection
/// guard's [`GuardedStream`] and the TLS layer's plain stream only change how bytes are read.
macro_rules! forward_stream_properties {
    ($ty:ty, $field:tt) => {
        #[async_trait::async_trait]
        impl pingora::protocols::Shutdown for $ty {
            async fn shutdown(&mut self) {
                self.$field.shutdown().await;
            }
        }

        impl pingora::protocols::UniqueID for $ty {
            fn id(&self) -> pingora::protocols::UniqueIDType {
                self.$field.id()
            }
        }

        impl pingora::protocols::Ssl for $ty {
            fn get_ssl(&self) -> Option<&pingora::protocols::tls::TlsRef> {
                self.$field.get_ssl()
            }
            fn get_ssl_digest(&self) -> Option<std::sync::Arc<pingora::protocols::tls::SslDigest>> {
                self.$field.get_ssl_digest()
            }
            fn selected_alpn_proto(&self) -> Option<pingora::protocols::ALPN> {
                self.$field.selected_alpn_proto()
            }
        }

        impl pingora::protocols::GetTimingDigest for $ty {
            fn get_timing_digest(&self) -> Vec<Option<pingora::protocols::TimingDigest>> {
                self.$field.get_timing_digest()
            }
            fn get_read_pending_time(&self) -> std::time::Duration {
                self.$field.get_read_pending_time()
            }
            fn get_write_pending_time(&self) -> std::time::Duration {
                self.$field.get_write_pending_time()
            }
        }

        impl pingora::protocols::GetProxyDigest for $ty {
            fn get_proxy_digest(
                &self,
            ) -> Option<std::sync::Arc<pingora::protocols::raw_connect::ProxyDigest>> {
                self.$field.get_proxy_digest()
            }
            fn set_proxy_digest(&mut self, digest: pingora::protocols::raw_connect::ProxyDigest) {
                self.$field.set_proxy_digest(digest);
            }
        }

        impl pingora::protocols::GetSocketDigest for $ty {
            fn get_socket_digest(
                &self,
            ) -> Option<std::sync::Arc<pingora::protocols::SocketDigest>> {
                self.$field.get_socket_digest()
            }
            fn set_socket_digest(&mut self, socket_digest: pingora::protocols::SocketDigest) {
                self.$field.set_socket_digest(socket_digest);
            }
        }
    };
}
pub(crate) use forward_stream_properties;

forward_stream_properties!(GuardedStream, inner);

#[async_trait]
impl Peek for GuardedStream {
    /// Pingora peeks for the HTTP/2 preface before reading anything; a client that sends
    /// nothing must not hold the connection past the head deadline there either.
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        if self.phase != Phase::Head {
            return self.inner.try_peek(buf).await;
        }
        let (inner, deadline) = (&mut self.inner, self.deadline.as_mut());
        tokio::select! {
            res = inner.try_peek(buf) => res,
            () = deadline => {
                let (listener, phase) = (self.shared.limits.name, "head");
                self.shared.metrics.timeouts.with_label_values(&[listener, phase]).inc();
                tracing::debug!(listener, phase, "client too slow: connection closed");
                Err(limit_error(HeadLimit::Timeout))
            }
        }
    }
}

/// Raises the soft limit on open descriptors to the hard limit; returns the limit in force.
pub fn raise_nofile_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => {
            tracing::info!(limit = n, "open-descriptor limit raised to the hard limit");
            Some(n)
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not raise the open-descriptor limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE)
                .ok()
                .map(|(soft, _)| soft)
        }
    }
}

#[cfg(test)]
mod head_count_tests {
    use super::*;

    /// The rule, one byte at a time (as the guard counted before it jumped between newlines).
    fn bytewise(state: &mut HeadCount, bytes: &[u8], max: usize) -> HeadFeed {
        for &b in bytes {
            state.bytes += 1;
            if b == b'\n' {
                state.line_done = true;
                state.newlines += 1;
                if state.newlines == 2 {
                    return HeadFeed::Complete;
                }
            } else if b != b'\r' {
                state.newlines = 0;
            }
            if state.bytes > max {
                return HeadFeed::Over(state.over());
            }
        }
        HeadFeed::More
    }

    /// Feeds `input` in the given pieces to both; they must agree on every piece's verdict
    /// (and, while the head goes on, on the state carried to the next piece).
    fn agree(input: &[u8], cuts: &[usize], max: usize) {
        let (mut fast, mut slow) = (HeadCount::default(), HeadCount::default());
        let mut start = 0;
        for &end in cuts.iter().chain(std::iter::once(&input.len())) {
            let piece = &input[start..end.max(start)];
            let (a, b) = (fast.feed(piece, max), bytewise(&mut slow, piece, max));
            assert_eq!(
                a,
                b,
                "{:?} cut at {cuts:?}, max {max}",
                String::from_utf8_lossy(input)
            );
            if a != HeadFeed::More {
                return;
            }
            assert_eq!(fast, slow);
            start = end.max(start);
        }
    }

    #[test]
    fn heads_end_and_overflow_exactly_where_the_bytewise_rule_says() {
        let heads: [&[u8]; 7] = [
            b"GET /v1/models HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer k\r\n\r\nbody",
            b"GET / HTTP/1.1\nhost: gw\n\nrest",
            b"GET / HTTP/1.1\r\nx: \r\r\n\r\r\n",
            b"GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\n\r\n",
            b"\r\n\r\n",
            b"\n\n",
            b"GET / HTTP/1.1\r\nx: 1\r\ny: 2\r\n",
        ];
        for head in heads {
            for max in [0, 1, 5, 14, 15, 16, 17, 20, 26, 27, 28, 40, 60, 1000] {
                agree(head, &[], max);
                for cut in 0..=head.len() {
                    agree(head, &[cut], max);
                    agree(head, &[cut, (cut + 3).min(head.len())], max);
                }
            }
        }
    }

    #[test]
    fn random_heads_in_random_pieces_agree_with_the_bytewise_rule() {
        // A fixed-seed generator: bytes drawn mostly from the ones that matter.
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let alphabet = b"\r\n\r\nab: ";
        for _ in 0..20_000 {
            let len = (next() % 48) as usize;
            let input: Vec<u8> = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            let mut cuts: Vec<usize> = (0..next() % 4)
                .map(|_| (next() % (len as u64 + 1)) as usize)
                .collect();
            cuts.sort_unstable();
            agree(&input, &cuts, (next() % 40) as usize);
        }
    }
}
