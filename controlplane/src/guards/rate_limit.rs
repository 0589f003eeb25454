//! The global token bucket on mutating requests: local by default, shared across replicas
//! through Redis (one atomic Lua script per check) when a Redis URL is configured.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use gateway_schema::Secret;
use redis::aio::ConnectionManager;

use crate::config::{FailureMode, GuardsConfig};
use crate::metrics::Metrics;

/// A limiter decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Allowed,
    /// Out of tokens: 429 with `Retry-After`.
    Limited {
        /// Seconds until a token is available.
        retry_after_secs: u64,
    },
    /// Redis is slow or down and the limiter fails closed: 503.
    Unavailable,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Refills and takes one token; `Err(seconds to wait)` when empty.
fn take_local(b: &mut Bucket, burst: f64, per_sec: f64, now: Instant) -> Result<(), u64> {
    let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
    b.tokens = (b.tokens + elapsed * per_sec).min(burst);
    b.at = now;
    if b.tokens >= 1.0 {
        b.tokens -= 1.0;
        Ok(())
    } else {
        Err(((1.0 - b.tokens) / per_sec).ceil().max(1.0) as u64)
    }
}

/// KEYS[1] bucket; ARGV: burst, tokens per millisecond. Uses the Redis clock so replicas with
/// skewed clocks agree. Returns {allowed, wait_ms}.
const SCRIPT: &str = r#"
local burst = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local data = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(data[1]) or burst
local ts = tonumber(data[2]) or now
local elapsed = math.max(0, now - ts)
tokens = math.min(burst, tokens + elapsed * rate)
local allowed = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = math.ceil((1 - tokens) / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate) + 1000)
return {allowed, wait}
"#;

struct RedisLimiter {
    client: redis::Client,
    conn: tokio::sync::Mutex<Option<ConnectionManager>>,
    script: redis::Script,
    key: String,
    timeout: Duration,
    mode: FailureMode,
}

/// The global limiter.
pub struct RateLimiter {
    burst: f64,
    per_sec: f64,
    local: Mutex<Bucket>,
    redis: Option<RedisLimiter>,
    metrics: Metrics,
}

/// Why the limiter could not be built.
#[derive(Debug, thiserror::Error)]
#[error("invalid Redis URL for the rate limiter: {0}")]
pub struct RedisConfigError(String);

impl RateLimiter {
    /// Builds the limiter; connects to Redis lazily, so a Redis that is down at start only
    /// triggers the failure mode.
    pub fn new(
        cfg: &GuardsConfig,
        redis_url: Option<&Secret>,
        redis_key: &str,
        metrics: Metrics,
    ) -> Result<Self, RedisConfigError> {
        let redis = match redis_url {
            Some(url) => Some(RedisLimiter {
                client: redis::Client::open(url.expose())
                    .map_err(|e| RedisConfigError(format!("{:?}", e.kind())))?,
                conn: tokio::sync::Mutex::new(None),
                script: redis::Script::new(SCRIPT),
                key: redis_key.to_owned(),
                timeout: Duration::from_millis(cfg.redis_timeout_ms),
                mode: cfg.redis_failure_mode,
            }),
            None => None,
        };
        let burst = f64::from(cfg.rate_limit_burst);
        Ok(Self {
            burst,
            per_sec: cfg.rate_limit_per_second,
            local: Mutex::new(Bucket {
                tokens: burst,
                at: Instant::now(),
            }),
            redis,
            metrics,
        })
    }

    /// Takes one token.
    pub async fn check(&self) -> Decision {
        match &self.redis {
            None => {
                let mut b = self
                    .local
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                match take_local(&mut b, self.burst, self.per_sec, Instant::now()) {
                    Ok(()) => Decision::Allowed,
                    Err(retry_after_secs) => Decision::Limited { retry_after_secs },
                }
            }
            Some(r) => match tokio::time::timeout(r.timeout, self.check_redis(r)).await {
                Ok(Ok(d)) => d,
                Ok(Err(e)) => self.redis_failed(r, &e.to_string()),
                Err(_) => self.redis_failed(r, "timed out"),
            },
        }
    }

    fn redis_failed(&self, r: &RedisLimiter, why: &str) -> Decision {
        let (label, d) = match r.mode {
            FailureMode::Open => ("open", Decision::Allowed),
            FailureMode::Closed => ("closed", Decision::Unavailable),
        };
        self.metrics
            .rate_limit_redis_failures
            .with_label_values(&[label])
            .inc();
        tracing::warn!(reason = why, mode = label, "Redis rate limiter unavailable");
        d
    }

    async fn check_redis(&self, r: &RedisLimiter) -> Result<Decision, redis::RedisError> {
        let mut conn = {
            let mut slot = r.conn.lock().await;
            match slot.as_ref() {
                Some(c) => c.clone(),
                None => {
                    let c = ConnectionManager::new(r.client.clone()).await?;
                    *slot = Some(c.clone());
                    c
                }
            }
        };
        let (allowed, wait_ms): (i64, i64) = r
            .script
            .key(&r.key)
            .arg(self.burst)
            .arg(self.per_sec / 1000.0)
            .invoke_async(&mut conn)
            .await?;
        Ok(if allowed == 1 {
            Decision::Allowed
        } else {
            Decision::Limited {
                retry_after_secs: u64::try_from(wait_ms).unwrap_or(1).div_ceil(1000).max(1),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_empties_then_refills() {
        let t0 = Instant::now();
        let mut b = Bucket {
            tokens: 2.0,
            at: t0,
        };
        assert_eq!(take_local(&mut b, 2.0, 1.0, t0), Ok(()));
        assert_eq!(take_local(&mut b, 2.0, 1.0, t0), Ok(()));
        assert_eq!(take_local(&mut b, 2.0, 1.0, t0), Err(1));
        assert_eq!(
            take_local(&mut b, 2.0, 1.0, t0 + Duration::from_millis(1100)),
            Ok(())
        );
    }
}
