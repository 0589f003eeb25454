//! Pingora's own per-connection log lines, counted instead of logged.
//!
//! Pingora logs three recoverable, per-connection events at ERROR, which a hostile or merely
//! unlucky client can turn into a flood that buries real errors:
//!
//! - `Downstream handshake timeout` (`pingora_core::services::listening`): a TLS client did not
//!   finish its handshake within Pingora's fixed 60 s;
//! - `Downstream handshake error ...` (same module): a TLS handshake failed (the client went
//!   away, spoke plain HTTP to the TLS port, offered nothing we accept);
//! - `failed to acquire reusable stream` (`pingora_core::connectors`): a race in Pingora's
//!   upstream pool (a pooled connection still held by its idle watcher); the request then opens
//!   a new connection and succeeds.
//!
//! [`QuietPingora`] is a `tracing` layer that drops exactly these events and counts them
//! instead: the first two in `gateway_client_timeouts_total{listener="tls",phase="handshake"}`
//! and `gateway_tls_handshake_errors_total`, the third in `gateway_upstream_pool_races_total`.
//! With a log filter that names `pingora_core` (an operator debugging Pingora) they are logged
//! as Pingora wrote them, and still counted. Every other line of Pingora's, at whatever level,
//! passes untouched (an `Accept() failed` from descriptor exhaustion stays an ERROR).

use std::fmt::Write as _;
use std::sync::OnceLock;

use prometheus::IntCounter;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// One of the events [`QuietPingora`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PingoraEvent {
    /// A TLS handshake that did not finish within Pingora's 60 s.
    HandshakeTimeout,
    /// A TLS handshake that failed.
    HandshakeError,
    /// Pingora's upstream pool race (recovered by a new connection).
    UpstreamPoolRace,
}

/// Which of the counted events a log line is, from its target, level and message.
pub fn classify(target: &str, level: &Level, message: &str) -> Option<PingoraEvent> {
    if *level != Level::ERROR {
        return None;
    }
    match target {
        "pingora_core::services::listening" => {
            if message.starts_with("Downstream handshake timeout") {
                Some(PingoraEvent::HandshakeTimeout)
            } else if message.starts_with("Downstream handshake error") {
                Some(PingoraEvent::HandshakeError)
            } else {
                None
            }
        }
        "pingora_core::connectors" if message.starts_with("failed to acquire reusable stream") => {
            Some(PingoraEvent::UpstreamPoolRace)
        }
        _ => None,
    }
}

/// Where the events are counted.
#[derive(Clone)]
pub struct Counters {
    /// `gateway_client_timeouts_total{listener="tls",phase="handshake"}`.
    pub handshake_timeouts: IntCounter,
    /// `gateway_tls_handshake_errors_total`.
    pub handshake_errors: IntCounter,
    /// `gateway_upstream_pool_races_total`.
    pub upstream_pool_races: IntCounter,
}

impl Counters {
    fn count(&self, event: PingoraEvent) {
        match event {
            PingoraEvent::HandshakeTimeout => self.handshake_timeouts.inc(),
            PingoraEvent::HandshakeError => self.handshake_errors.inc(),
            PingoraEvent::UpstreamPoolRace => self.upstream_pool_races.inc(),
        }
    }
}

/// The process's counters: the log layer is installed before any metrics exist, so the
/// gateway hands them over once it has built them. A second gateway in the same process (tests)
/// leaves the first one's in place.
static COUNTERS: OnceLock<Counters> = OnceLock::new();

/// Counts the events from now on into `counters`.
pub fn count_into(counters: Counters) {
    let _ = COUNTERS.set(counters);
}

/// The layer; see the module documentation.
pub struct QuietPingora {
    /// Log the events too (the log filter names `pingora_core`).
    verbose: bool,
}

impl QuietPingora {
    /// `verbose`: still log the events (they are counted either way).
    pub fn new(verbose: bool) -> Self {
        Self { verbose }
    }
}

/// The start of an event's `message` field (enough to classify it, bounded in size) and, for
/// a line that came through the `log` crate (all of Pingora's), its real target: such an event's
/// own metadata says `log`.
#[derive(Default)]
struct MessageStart(String, Option<String>);

const MESSAGE_PREFIX_BYTES: usize = 64;

impl Visit for MessageStart {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "log.target" {
            self.1 = Some(value.to_owned());
        } else if field.name() == "message" {
            let mut end = value.len().min(MESSAGE_PREFIX_BYTES);
            while !value.is_char_boundary(end) {
                end -= 1;
            }
            self.0.push_str(&value[..end]);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(Bounded(&mut self.0), "{value:?}");
        }
    }
}

/// A writer that keeps the first [`MESSAGE_PREFIX_BYTES`] bytes and then refuses, so a long
/// message is never formatted whole.
struct Bounded<'a>(&'a mut String);

impl std::fmt::Write for Bounded<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let room = MESSAGE_PREFIX_BYTES.saturating_sub(self.0.len());
        let mut end = s.len().min(room);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.0.push_str(&s[..end]);
        if end < s.len() {
            Err(std::fmt::Error)
        } else {
            Ok(())
        }
    }
}

impl<S: Subscriber> Layer<S> for QuietPingora {
    fn event_enabled(&self, event: &Event<'_>, _ctx: Context<'_, S>) -> bool {
        let meta = event.metadata();
        // Cheap tests first: only ERROR lines from the `log` crate (Pingora logs through it) or
        // with a Pingora target are looked at.
        if *meta.level() != Level::ERROR
            || (meta.target() != "log" && !meta.target().starts_with("pingora_core::"))
        {
            return true;
        }
        let mut message = MessageStart::default();
        event.record(&mut message);
        let target = message.1.as_deref().unwrap_or(meta.target());
        match classify(target, meta.level(), &message.0) {
            Some(kind) => {
                if let Some(counters) = COUNTERS.get() {
                    counters.count(kind);
                }
                self.verbose
            }
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::prelude::*;

    #[test]
    fn only_the_three_recoverable_lines_are_classified() {
        let listening = "pingora_core::services::listening";
        assert_eq!(
            classify(listening, &Level::ERROR, "Downstream handshake timeout"),
            Some(PingoraEvent::HandshakeTimeout)
        );
        assert_eq!(
            classify(
                listening,
                &Level::ERROR,
                "Downstream handshake error from 10.0.0.1:5: TLSHandshakeFailure"
            ),
            Some(PingoraEvent::HandshakeError)
        );
        assert_eq!(
            classify(
                "pingora_core::connectors",
                &Level::ERROR,
                "failed to acquire reusable stream"
            ),
            Some(PingoraEvent::UpstreamPoolRace)
        );
        // Descriptor exhaustion and everything else stay logged.
        assert_eq!(
            classify(
                listening,
                &Level::ERROR,
                "Accept() failed Too many open files"
            ),
            None
        );
        assert_eq!(
            classify(listening, &Level::WARN, "Downstream handshake timeout"),
            None
        );
        assert_eq!(
            classify("gateway", &Level::ERROR, "Downstream handshake timeout"),
            None
        );
    }

    /// A layer that keeps the messages it is given.
    #[derive(Clone, Default)]
    struct Keep(Arc<Mutex<Vec<String>>>);

    impl<S: Subscriber> Layer<S> for Keep {
        fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
            let mut m = MessageStart::default();
            event.record(&mut m);
            self.0.lock().unwrap().push(m.0);
        }
    }

    #[test]
    fn the_layer_drops_and_counts_the_handshake_failures_and_passes_the_rest() {
        let counters = Counters {
            handshake_timeouts: IntCounter::new("t", "t").unwrap(),
            handshake_errors: IntCounter::new("e", "e").unwrap(),
            upstream_pool_races: IntCounter::new("p", "p").unwrap(),
        };
        count_into(counters.clone());
        let counters = COUNTERS.get().unwrap();
        let before = counters.handshake_errors.get();
        let kept = Keep::default();
        let subscriber = tracing_subscriber::registry()
            .with(QuietPingora::new(false))
            .with(kept.clone());
        tracing::subscriber::with_default(subscriber, || {
            // As the `log` bridge delivers Pingora's lines: target `log`, the real one a field.
            let long = format!(
                "Downstream handshake error from 127.0.0.1:1: bad record {}",
                "x".repeat(500)
            );
            tracing::error!(
                target: "log",
                message = long.as_str(),
                log.target = "pingora_core::services::listening"
            );
            tracing::error!(
                target: "log",
                message = "Accept() failed Too many open files",
                log.target = "pingora_core::services::listening"
            );
            tracing::info!(target: "gateway", "served");
        });
        let kept = kept.0.lock().unwrap().clone();
        assert_eq!(kept.len(), 2, "{kept:?}");
        assert!(kept[0].starts_with("Accept() failed"));
        assert_eq!(kept[1], "served");
        assert_eq!(counters.handshake_errors.get(), before + 1);
    }

    #[test]
    fn verbose_logs_them_too() {
        let kept = Keep::default();
        let subscriber = tracing_subscriber::registry()
            .with(QuietPingora::new(true))
            .with(kept.clone());
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(target: "pingora_core::connectors", "failed to acquire reusable stream");
        });
        assert_eq!(kept.0.lock().unwrap().len(), 1);
    }

    #[test]
    fn long_messages_are_cut_at_the_prefix_on_a_char_boundary() {
        let mut m = MessageStart::default();
        let _ = write!(Bounded(&mut m.0), "{}", "é".repeat(100));
        assert!(m.0.len() <= MESSAGE_PREFIX_BYTES);
        assert!(m.0.chars().all(|c| c == 'é'));
    }
}
