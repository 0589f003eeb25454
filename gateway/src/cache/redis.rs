//! Entries shared by every gateway through Redis (`server.redis_url`): `SET key value PX ttl`
//! after a response is stored locally, one `GET` on a local miss. Redis is an accelerator,
//! never a dependency: a failure or a reply slower than [`TIMEOUT`] is a miss (counted in
//! `gateway_cache_redis_total{outcome="error"|"timeout"}`), and for [`BACKOFF_MS`] after one
//! the gateway does not ask again, so a Redis outage costs requests no latency.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use gateway_schema::Secret;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::entry::Entry;
use super::key::Key;
use super::metrics::CacheMetrics;

/// Longest wait for one Redis command.
pub const TIMEOUT: Duration = Duration::from_millis(250);
/// After a failure, Redis is skipped for this long.
pub const BACKOFF_MS: u64 = 1000;
/// Redis key prefix of cache entries.
const PREFIX: &str = "aigw:cache:v1:";

/// The shared tier.
pub struct SharedStore {
    client: redis::Client,
    conn: OnceLock<ConnectionManager>,
    skip_until_ms: AtomicU64,
    healthy: AtomicBool,
}

/// Why the shared tier could not be built.
#[derive(Debug, thiserror::Error)]
#[error("server.redis_url is not a valid Redis URL (for the response cache)")]
pub struct SharedSetupError;

impl SharedStore {
    /// A store on `url` (nothing is connected until first use).
    pub fn new(url: &Secret) -> Result<Self, SharedSetupError> {
        // The URL may hold a password: never echo it.
        let client = redis::Client::open(url.expose()).map_err(|_| SharedSetupError)?;
        Ok(Self {
            client,
            conn: OnceLock::new(),
            skip_until_ms: AtomicU64::new(0),
            healthy: AtomicBool::new(true),
        })
    }

    fn conn(&self) -> Result<ConnectionManager, String> {
        if let Some(c) = self.conn.get() {
            return Ok(c.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let c = ConnectionManager::new_lazy_with_config(self.client.clone(), config)
            .map_err(|e| format!("{:?}", e.kind()))?;
        Ok(self.conn.get_or_init(|| c).clone())
    }

    /// The entry under `key`, or `None` (absent, not ours, or Redis unavailable).
    pub async fn get(&self, key: &Key, now_ms: u64, m: &CacheMetrics) -> Option<Entry> {
        if now_ms < self.skip_until_ms.load(Ordering::Acquire) {
            m.redis("get", "skipped");
            return None;
        }
        let redis_key = format!("{PREFIX}{}", key.hex());
        let call = async {
            let mut conn = self.conn()?;
            redis::cmd("GET")
                .arg(&redis_key)
                .query_async::<Option<Vec<u8>>>(&mut conn)
                .await
                .map_err(|e| format!("{:?}", e.kind()))
        };
        match tokio::time::timeout(TIMEOUT, call).await {
            Ok(Ok(value)) => {
                self.recovered();
                m.redis("get", if value.is_some() { "hit" } else { "miss" });
                value.and_then(Entry::decode)
            }
            Ok(Err(reason)) => {
                self.failed("get", "error", &reason, now_ms, m);
                None
            }
            Err(_) => {
                self.failed("get", "timeout", "timed out", now_ms, m);
                None
            }
        }
    }

    /// Writes `entry` under `key` until it expires, in the background.
    pub fn put(
        self: &std::sync::Arc<Self>,
        key: &Key,
        entry: &Entry,
        now_ms: u64,
        m: &CacheMetrics,
    ) {
        if now_ms < self.skip_until_ms.load(Ordering::Acquire) {
            m.redis("set", "skipped");
            return;
        }
        let ttl_ms = entry.expires_at_ms.saturating_sub(now_ms);
        let Some(value) = entry.encode().filter(|_| ttl_ms > 0) else {
            return;
        };
        let redis_key = format!("{PREFIX}{}", key.hex());
        let this = self.clone();
        let m = m.clone();
        tokio::spawn(async move {
            let call = async {
                let mut conn = this.conn()?;
                redis::cmd("SET")
                    .arg(&redis_key)
                    .arg(value)
                    .arg("PX")
                    .arg(ttl_ms)
                    .query_async::<()>(&mut conn)
                    .await
                    .map_err(|e| format!("{:?}", e.kind()))
            };
            match tokio::time::timeout(TIMEOUT, call).await {
                Ok(Ok(())) => {
                    this.recovered();
                    m.redis("set", "ok");
                }
                Ok(Err(reason)) => this.failed("set", "error", &reason, now_ms, &m),
                Err(_) => this.failed("set", "timeout", "timed out", now_ms, &m),
            }
        });
    }

    fn failed(&self, op: &str, outcome: &str, reason: &str, now_ms: u64, m: &CacheMetrics) {
        m.redis(op, outcome);
        self.skip_until_ms
            .store(now_ms + BACKOFF_MS, Ordering::Release);
        if self.healthy.swap(false, Ordering::AcqRel) {
            tracing::warn!(%reason, "response cache: Redis unavailable; serving from this gateway's memory only");
        }
    }

    fn recovered(&self) {
        if !self.healthy.swap(true, Ordering::AcqRel) {
            tracing::info!("response cache: Redis reachable again; entries are shared again");
        }
    }
}
