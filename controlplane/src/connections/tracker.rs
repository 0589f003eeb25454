//! One connection's state: what it waits for, since when, and how it ended.
//!
//! The stream ([`super::WatchedStream`]) reports bytes and the client's end; the service
//! ([`super::WatchedService`]) reports where requests begin (their head is complete) and end
//! (their response body is dropped). When the last handle goes, the connection is classified
//! once: a head timeout, an idle timeout, a disconnect in the middle of a head, or nothing.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Waker;

use prometheus::{IntCounter, IntGauge};
use tokio::time::Instant;

use super::Deadlines;

/// What a connection with a deadline is waiting for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wait {
    /// The rest of a request head (or, on a fresh connection, its first byte).
    Head,
    /// The first byte of the next request on a kept-alive connection.
    Idle,
}

impl Wait {
    /// The `phase` label of `controlplane_client_timeouts_total`.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Wait::Head => "head",
            Wait::Idle => "idle",
        }
    }
}

/// Where an HTTP/1 connection is between requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for a request head that began at `since` (the accept, or the first byte after an
    /// idle wait); `bytes`: whether any of it has arrived.
    Head { since: Instant, bytes: bool },
    /// Requests dispatched and not finished; no deadline of ours (the body timeout is the
    /// guards', a response takes what it takes).
    Busy { in_flight: usize },
    /// Kept alive with nothing in flight since `since`.
    Idle { since: Instant },
    /// HTTP/2: heads are framed by the protocol (hyper's HTTP/2 limits); the connection is idle,
    /// with the idle timeout running, from `idle_since` when its last stream finished.
    Http2 {
        in_flight: usize,
        idle_since: Option<Instant>,
    },
    /// An upgraded connection: left to its own protocol's limits.
    Unwatched,
}

/// How a connection ended, as far as the metrics are concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    TimedOut(Wait),
    Disconnected,
}

/// The per-connection state, without locking or metrics (so it is tested on its own).
#[derive(Debug)]
struct State {
    phase: Phase,
    /// Set when our deadline closed the connection.
    timed_out: Option<Wait>,
    /// The client ended its side (EOF) or the read failed (reset).
    client_gone: bool,
}

impl State {
    fn new(accepted: Instant) -> Self {
        Self {
            phase: Phase::Head {
                since: accepted,
                bytes: false,
            },
            timed_out: None,
            client_gone: false,
        }
    }

    fn bytes_arrived(&mut self, now: Instant) {
        match self.phase {
            Phase::Idle { .. } => {
                self.phase = Phase::Head {
                    since: now,
                    bytes: true,
                }
            }
            Phase::Head { since, .. } => self.phase = Phase::Head { since, bytes: true },
            // HTTP/2 control frames (pings, settings) do not make a connection busy.
            Phase::Busy { .. } | Phase::Http2 { .. } | Phase::Unwatched => {}
        }
    }

    fn request_started(&mut self, watched: bool) {
        self.phase = match self.phase {
            Phase::Unwatched => Phase::Unwatched,
            Phase::Http2 { in_flight, .. } => Phase::Http2 {
                in_flight: in_flight.saturating_add(1),
                idle_since: None,
            },
            _ if !watched => Phase::Http2 {
                in_flight: 1,
                idle_since: None,
            },
            Phase::Busy { in_flight } => Phase::Busy {
                in_flight: in_flight.saturating_add(1),
            },
            Phase::Head { .. } | Phase::Idle { .. } => Phase::Busy { in_flight: 1 },
        };
    }

    /// Returns whether the connection went idle.
    fn request_finished(&mut self, now: Instant) -> bool {
        match self.phase {
            Phase::Busy { in_flight } if in_flight > 1 => {
                self.phase = Phase::Busy {
                    in_flight: in_flight - 1,
                };
                false
            }
            Phase::Busy { .. } => {
                self.phase = Phase::Idle { since: now };
                true
            }
            Phase::Http2 { in_flight, .. } if in_flight > 1 => {
                self.phase = Phase::Http2 {
                    in_flight: in_flight - 1,
                    idle_since: None,
                };
                false
            }
            Phase::Http2 { .. } => {
                self.phase = Phase::Http2 {
                    in_flight: 0,
                    idle_since: Some(now),
                };
                true
            }
            Phase::Head { .. } | Phase::Idle { .. } | Phase::Unwatched => false,
        }
    }

    fn deadline(&self, d: &Deadlines) -> Option<(Instant, Wait)> {
        match self.phase {
            Phase::Head { since, .. } => Some((since + d.head, Wait::Head)),
            Phase::Idle { since }
            | Phase::Http2 {
                idle_since: Some(since),
                ..
            } => Some((since + d.idle, Wait::Idle)),
            Phase::Busy { .. } | Phase::Http2 { .. } | Phase::Unwatched => None,
        }
    }

    /// How the connection ended, when it ends at `now`. A deadline that has passed counts even
    /// when a backstop (hyper's own timer, axum-server's first-request timeout) closed the
    /// connection before ours did.
    fn outcome(&self, d: &Deadlines, now: Instant) -> Option<Outcome> {
        if let Some(wait) = self.timed_out {
            return Some(Outcome::TimedOut(wait));
        }
        if let Some((deadline, wait)) = self.deadline(d) {
            if now >= deadline {
                return Some(Outcome::TimedOut(wait));
            }
        }
        match self.phase {
            Phase::Head { bytes: true, .. } if self.client_gone => Some(Outcome::Disconnected),
            _ => None,
        }
    }
}

/// A listener's label, deadlines and metric series, shared by its connections.
pub(crate) struct ListenerShared {
    pub(crate) label: &'static str,
    pub(crate) deadlines: Deadlines,
    pub(crate) head_timeouts: IntCounter,
    pub(crate) idle_timeouts: IntCounter,
    pub(crate) disconnects: IntCounter,
    pub(crate) open: IntGauge,
}

/// One connection, shared by its stream, its service and its requests in flight. Counted open
/// from creation to drop; classified on drop.
pub(crate) struct Tracker {
    listener: Arc<ListenerShared>,
    peer: Option<SocketAddr>,
    state: Mutex<State>,
    /// The stream's reader while no deadline runs, woken when the connection goes idle so the
    /// idle deadline starts being polled at once.
    reader: Mutex<Option<Waker>>,
}

impl Tracker {
    /// A connection accepted now.
    pub(crate) fn new(listener: Arc<ListenerShared>, peer: Option<SocketAddr>) -> Self {
        listener.open.inc();
        Self {
            listener,
            peer,
            state: Mutex::new(State::new(Instant::now())),
            reader: Mutex::new(None),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state stays consistent whatever panicked while holding it: every update is one
        // assignment.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn bytes_arrived(&self) {
        self.state().bytes_arrived(Instant::now());
    }

    pub(crate) fn client_gone(&self) {
        self.state().client_gone = true;
    }

    /// A request's head is complete and dispatched; `watched` is false for HTTP/2.
    pub(crate) fn request_started(&self, watched: bool) {
        self.state().request_started(watched);
    }

    /// The connection switched protocols: nothing of HTTP/1 to watch any more.
    pub(crate) fn unwatch(&self) {
        self.state().phase = Phase::Unwatched;
    }

    pub(crate) fn request_finished(&self) {
        let idle = self.state().request_finished(Instant::now());
        if idle {
            let reader = self
                .reader
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(w) = reader {
                w.wake();
            }
        }
    }

    /// The running deadline and what it waits for; with none, remembers `reader` to wake when
    /// one starts.
    pub(crate) fn deadline_or_park(&self, reader: &Waker) -> Option<(Instant, Wait)> {
        let d = self.state().deadline(&self.listener.deadlines);
        if d.is_none() {
            let mut slot = self.reader.lock().unwrap_or_else(PoisonError::into_inner);
            if !slot.as_ref().is_some_and(|w| w.will_wake(reader)) {
                *slot = Some(reader.clone());
            }
        }
        d
    }

    /// Our deadline closes the connection.
    pub(crate) fn time_out(&self, wait: Wait) {
        self.state().timed_out = Some(wait);
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        let l = &self.listener;
        l.open.dec();
        let outcome = self
            .state
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .outcome(&l.deadlines, Instant::now());
        // Debug level only, and never the client's bytes: a slow client is routine, not an
        // error of this server, and an ERROR line per connection would let any client flood
        // the log.
        let peer = self.peer.map(tracing::field::display);
        match outcome {
            Some(Outcome::TimedOut(wait)) => {
                match wait {
                    Wait::Head => l.head_timeouts.inc(),
                    Wait::Idle => l.idle_timeouts.inc(),
                }
                tracing::debug!(
                    listener = l.label,
                    phase = wait.label(),
                    peer,
                    "client too slow: connection closed"
                );
            }
            Some(Outcome::Disconnected) => {
                l.disconnects.inc();
                tracing::debug!(
                    listener = l.label,
                    peer,
                    "client went away in the middle of a request head"
                );
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const D: Deadlines = Deadlines {
        head: Duration::from_secs(2),
        idle: Duration::from_secs(6),
    };

    fn secs(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    #[test]
    fn a_fresh_connection_waits_for_its_head_from_the_accept() {
        let t0 = Instant::now();
        let s = State::new(t0);
        assert_eq!(s.deadline(&D), Some((secs(t0, 2), Wait::Head)));
        assert_eq!(s.outcome(&D, secs(t0, 1)), None);
        assert_eq!(
            s.outcome(&D, secs(t0, 2)),
            Some(Outcome::TimedOut(Wait::Head))
        );
    }

    #[test]
    fn an_idle_connection_gets_the_idle_timeout_then_the_head_deadline_from_its_first_byte() {
        let t0 = Instant::now();
        let mut s = State::new(t0);
        s.bytes_arrived(t0);
        s.request_started(true);
        assert_eq!(s.deadline(&D), None);
        assert!(s.request_finished(secs(t0, 1)));
        assert_eq!(s.deadline(&D), Some((secs(t0, 7), Wait::Idle)));
        // Past the head deadline, not the idle timeout: nothing to count yet.
        assert_eq!(s.outcome(&D, secs(t0, 4)), None);
        assert_eq!(
            s.outcome(&D, secs(t0, 7)),
            Some(Outcome::TimedOut(Wait::Idle))
        );
        s.bytes_arrived(secs(t0, 5));
        assert_eq!(s.deadline(&D), Some((secs(t0, 7), Wait::Head)));
        s.bytes_arrived(secs(t0, 6));
        assert_eq!(s.deadline(&D), Some((secs(t0, 7), Wait::Head)), "moved");
    }

    #[test]
    fn a_client_gone_mid_head_is_a_disconnect_but_not_between_requests() {
        let t0 = Instant::now();
        let mut s = State::new(t0);
        s.client_gone = true;
        assert_eq!(s.outcome(&D, t0), None, "nothing was sent");
        s.bytes_arrived(t0);
        assert_eq!(s.outcome(&D, t0), Some(Outcome::Disconnected));

        let mut s = State::new(t0);
        s.bytes_arrived(t0);
        s.request_started(true);
        s.request_finished(t0);
        s.client_gone = true;
        assert_eq!(s.outcome(&D, secs(t0, 1)), None, "closed while idle");
    }

    #[test]
    fn our_timeout_is_counted_as_fired() {
        let t0 = Instant::now();
        let mut s = State::new(t0);
        s.timed_out = Some(Wait::Head);
        assert_eq!(s.outcome(&D, t0), Some(Outcome::TimedOut(Wait::Head)));
    }

    #[test]
    fn http2_is_idle_from_its_last_stream_and_control_frames_do_not_reset_it() {
        let t0 = Instant::now();
        let mut s = State::new(t0);
        s.bytes_arrived(t0);
        s.request_started(false);
        s.request_started(false);
        assert_eq!(s.deadline(&D), None);
        assert!(!s.request_finished(secs(t0, 1)));
        assert_eq!(s.deadline(&D), None, "a stream still open");
        assert!(s.request_finished(secs(t0, 2)));
        assert_eq!(s.deadline(&D), Some((secs(t0, 8), Wait::Idle)));
        s.bytes_arrived(secs(t0, 3)); // a PING
        assert_eq!(s.deadline(&D), Some((secs(t0, 8), Wait::Idle)));
        assert_eq!(
            s.outcome(&D, secs(t0, 5)),
            None,
            "the client left while idle"
        );
        assert_eq!(
            s.outcome(&D, secs(t0, 8)),
            Some(Outcome::TimedOut(Wait::Idle))
        );
        // A new stream stops the idle clock.
        s.request_started(false);
        assert_eq!(s.deadline(&D), None);
        // An upgraded connection stays unwatched.
        let mut s = State::new(t0);
        s.request_started(true);
        s.phase = Phase::Unwatched;
        s.request_started(false);
        assert!(!s.request_finished(t0));
        assert_eq!(s.deadline(&D), None);
    }

    #[test]
    fn a_connection_is_idle_only_when_its_last_request_finishes() {
        let t0 = Instant::now();
        let mut s = State::new(t0);
        s.request_started(true);
        s.request_started(true);
        assert!(!s.request_finished(t0));
        assert_eq!(s.deadline(&D), None);
        assert!(s.request_finished(t0));
        assert_eq!(s.deadline(&D), Some((secs(t0, 6), Wait::Idle)));
    }
}
