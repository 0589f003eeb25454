//! Pingora's recoverable upstream-pool race, counted instead of logged.
//!
//! Pingora's connector logs `failed to acquire reusable stream` (`pingora_core::connectors`)
//! at ERROR when a pooled upstream connection is still held by its idle watcher at the moment
//! a request wants it; the request then opens a new connection and succeeds. Under steady load
//! that is one line every few dozen upstream requests (the first soak logged 2,865 in 30
//! minutes), burying real errors.
//!
//! [`QuietPingora`] is a `tracing` layer that drops exactly that event and counts it in
//! `gateway_upstream_pool_races_total` instead. With a log filter that names `pingora_core`
//! (an operator debugging Pingora) it is logged as Pingora wrote it, and still counted. Every
//! other line of Pingora's, at whatever level, passes untouched (an `Accept() failed` from
//! descriptor exhaustion stays an ERROR). The proxy's TLS handshakes, which Pingora's listener
//! would also log at ERROR per connection, are the gateway's own (`downstream_tls`).

use std::fmt::Write as _;
use std::sync::OnceLock;

use prometheus::IntCounter;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

const POOL_RACE_TARGET: &str = "pingora_core::connectors";
const POOL_RACE_MESSAGE: &str = "failed to acquire reusable stream";

/// Whether a log line is Pingora's pool race, from its target, level and message.
pub fn is_pool_race(target: &str, level: &Level, message: &str) -> bool {
    *level == Level::ERROR && target == POOL_RACE_TARGET && message.starts_with(POOL_RACE_MESSAGE)
}

/// Where the races are counted: the log layer is installed before any metrics exist, so the
/// gateway hands its counter over once built. A second gateway in the same process (tests)
/// leaves the first one's in place.
static POOL_RACES: OnceLock<IntCounter> = OnceLock::new();

/// Counts the races from now on into `counter` (`gateway_upstream_pool_races_total`).
pub fn count_into(counter: IntCounter) {
    let _ = POOL_RACES.set(counter);
}

/// The layer; see the module documentation.
pub struct QuietPingora {
    /// Log the event too (the log filter names `pingora_core`).
    verbose: bool,
}

impl QuietPingora {
    /// `verbose`: still log the event (it is counted either way).
    pub fn new(verbose: bool) -> Self {
        Self { verbose }
    }

    /// The layer as it is installed: behind a per-layer `ERROR` filter, so that it sees only
    /// the lines it may drop and, above all, so that it does not widen the process's maximum
    /// log level. A plain layer has no level hint, which makes the whole stack's hint "none":
    /// `tracing` then evaluates every `debug!` and `trace!` callsite at run time, and the
    /// `log` bridge sets `log::max_level` to `TRACE`, so each of Pingora's per-request
    /// `debug!` lines became a dispatched record (about 2 µs of a request's CPU, measured with
    /// `perf` under `benches/load.sh`'s mix). Behind the filter the stack's hint is the log
    /// filter's own level.
    pub fn installed<S>(verbose: bool) -> impl Layer<S>
    where
        S: Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        Self::new(verbose).with_filter(tracing_subscriber::filter::LevelFilter::ERROR)
    }
}

/// The start of an event's `message` field (enough to recognise it, bounded in size) and, for
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
            let _ = Bounded(&mut self.0).write_str(value);
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
        if !is_pool_race(target, meta.level(), &message.0) {
            return true;
        }
        if let Some(counter) = POOL_RACES.get() {
            counter.inc();
        }
        self.verbose
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::prelude::*;

    #[test]
    fn only_the_pool_race_is_recognised() {
        assert!(is_pool_race(
            POOL_RACE_TARGET,
            &Level::ERROR,
            POOL_RACE_MESSAGE
        ));
        assert!(!is_pool_race(
            POOL_RACE_TARGET,
            &Level::WARN,
            POOL_RACE_MESSAGE
        ));
        assert!(!is_pool_race("gateway", &Level::ERROR, POOL_RACE_MESSAGE));
        assert!(!is_pool_race(
            "pingora_core::services::listening",
            &Level::ERROR,
            "Accept() failed Too many open files"
        ));
    }

    /// The process-wide counter is shared by the tests that emit the race: one at a time.
    static SERIAL: Mutex<()> = Mutex::new(());

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
    fn the_layer_drops_and_counts_the_pool_race_and_passes_the_rest() {
        let _one_at_a_time = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        count_into(IntCounter::new("races", "races").unwrap());
        let counter = POOL_RACES.get().unwrap();
        let before = counter.get();
        let kept = Keep::default();
        let subscriber = tracing_subscriber::registry()
            .with(QuietPingora::installed(false))
            .with(kept.clone());
        tracing::subscriber::with_default(subscriber, || {
            // As the `log` bridge delivers Pingora's lines: target `log`, the real one a field.
            tracing::error!(
                target: "log",
                message = POOL_RACE_MESSAGE,
                log.target = POOL_RACE_TARGET
            );
            tracing::error!(
                target: "log",
                message = "Accept() failed Too many open files",
                log.target = "pingora_core::services::listening"
            );
            tracing::info!(target: "gateway", "served");
        });
        let kept = kept.0.lock().unwrap().clone();
        assert_eq!(kept, ["Accept() failed Too many open files", "served"]);
        assert_eq!(counter.get(), before + 1);
    }

    #[test]
    fn verbose_logs_it_too() {
        let _one_at_a_time = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let kept = Keep::default();
        let subscriber = tracing_subscriber::registry()
            .with(QuietPingora::installed(true))
            .with(kept.clone());
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(target: "pingora_core::connectors", "failed to acquire reusable stream");
        });
        assert_eq!(kept.0.lock().unwrap().len(), 1);
    }

    /// The stack the binary installs keeps the log filter's level as the process's maximum:
    /// below it, `debug!` and `trace!` callsites (Pingora's per-request lines through the
    /// `log` bridge among them) are skipped by a level comparison instead of being evaluated.
    #[test]
    fn the_installed_layer_keeps_the_log_filters_level_as_the_maximum() {
        use tracing::level_filters::LevelFilter;
        use tracing_subscriber::EnvFilter;
        for (filter, level) in [
            ("warn", LevelFilter::WARN),
            ("info", LevelFilter::INFO),
            ("gateway=debug,warn", LevelFilter::DEBUG),
            ("off", LevelFilter::ERROR),
        ] {
            let stack = tracing_subscriber::registry()
                .with(QuietPingora::installed(false))
                .with(Keep::default().with_filter(EnvFilter::new(filter)));
            assert_eq!(stack.max_level_hint(), Some(level), "{filter}");
        }
        // As the layer was installed before: no hint, so nothing could be skipped.
        let bare = tracing_subscriber::registry()
            .with(QuietPingora::new(false))
            .with(Keep::default().with_filter(EnvFilter::new("warn")));
        assert_eq!(bare.max_level_hint(), None);
    }

    #[test]
    fn long_messages_are_cut_at_the_prefix_on_a_char_boundary() {
        let mut m = MessageStart::default();
        let _ = write!(Bounded(&mut m.0), "{}", "é".repeat(100));
        assert!(m.0.len() <= MESSAGE_PREFIX_BYTES);
        assert!(m.0.chars().all(|c| c == 'é'));
    }
}
