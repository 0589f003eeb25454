//! Requests-per-minute and tokens-per-minute limits, per key and per project.
//!
//! Windows are fixed UTC minutes (`unix_ms / 60000`), the same on every gateway, so a local
//! count and a Redis count mean the same thing and `x-ratelimit-reset-*` is exact. Why not
//! `pingora-limits`: its `Rate` is an estimator (a count-min sketch over windows that start
//! with the process), which can over-count on hash collisions and cannot say exactly how many
//! requests remain; these headers and the "exactly at the limit" behaviour need exact counts.
//! A fixed window admits at most twice the limit across a minute boundary (a burst at 0:59 and
//! another at 1:00); that is the documented trade-off for exact, lock-free counting.
//!
//! A request takes one request count from each scope (key, then project) that has a limit, all
//! or nothing. Tokens are charged when the usage is known (end of the response); a scope is
//! refused while its token count for the minute is at or over its limit.

pub mod headers;
pub mod policy;
pub mod redis;
pub mod registry;
pub mod window;

use std::sync::Arc;

pub use headers::{RateHeaders, Trio};
pub use policy::{KeyPolicy, ProjectPolicy};
use registry::Registry;
use window::MinuteCounter;

use crate::proxy::errors::Reject;

/// Milliseconds in a window.
pub const WINDOW_MS: u64 = 60_000;

/// Which scope refused a request (a bounded metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The virtual key's own limit.
    Key,
    /// The project's limit.
    Project,
}

impl Scope {
    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Key => "key",
            Self::Project => "project",
        }
    }
}

/// Which limit refused a request (a bounded metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Requests per minute.
    Requests,
    /// Tokens per minute.
    Tokens,
}

impl Kind {
    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requests => "requests",
            Self::Tokens => "tokens",
        }
    }
}

/// A 429 from a rate limit: what refused, and the headers to send with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimited {
    /// The refusing scope.
    pub scope: Scope,
    /// The refusing limit.
    pub kind: Kind,
    /// Its value per minute.
    pub limit: u64,
    /// Until the window resets.
    pub retry_after_ms: u64,
    /// `x-ratelimit-*` as of the refusal.
    pub headers: RateHeaders,
}

/// The counters of one scope.
#[derive(Debug, Default)]
pub struct ScopeCounters {
    /// Requests admitted this minute.
    pub requests: MinuteCounter,
    /// Tokens charged this minute.
    pub tokens: MinuteCounter,
}

/// What an admitted request holds until its usage is known.
#[derive(Debug, Default)]
pub struct Grant {
    /// Counters to charge tokens to (scopes with a token limit).
    charge: Vec<Arc<ScopeCounters>>,
    /// The headers for the response.
    pub headers: RateHeaders,
}

impl Grant {
    /// Charges `tokens` to every scope with a token limit, in the minute of `now_ms` (the
    /// moment the usage became known).
    pub fn charge(&self, tokens: u64, now_ms: u64) {
        if tokens == 0 {
            return;
        }
        let minute = now_ms / WINDOW_MS;
        for c in &self.charge {
            c.tokens.add(minute, tokens);
        }
    }
}

/// The in-process limiter: counters by scope name, shared by every worker thread and kept
/// across config reloads.
#[derive(Default)]
pub struct Limiter {
    scopes: Registry<ScopeCounters>,
}

struct Check<'a> {
    scope: Scope,
    name: &'a str,
    rpm: Option<u64>,
    tpm: Option<u64>,
}

impl Limiter {
    /// Admits one request of `key` in `project` at `now_ms`, or refuses it with 429.
    pub fn admit(
        &self,
        project: &ProjectPolicy,
        key: &KeyPolicy,
        now_ms: u64,
    ) -> Result<Grant, Reject> {
        let mut grant = Grant::default();
        if !project.has_rate_limits() && !key.has_rate_limits() {
            return Ok(grant);
        }
        let minute = now_ms / WINDOW_MS;
        let reset_ms = WINDOW_MS - now_ms % WINDOW_MS;
        let checks = [
            Check {
                scope: Scope::Key,
                name: &key.scope,
                rpm: key.requests_per_minute,
                tpm: key.tokens_per_minute,
            },
            Check {
                scope: Scope::Project,
                name: &project.name,
                rpm: project.requests_per_minute,
                tpm: project.tokens_per_minute,
            },
        ];
        let mut counters: [Option<Arc<ScopeCounters>>; 2] = [None, None];
        for (slot, c) in counters.iter_mut().zip(&checks) {
            if c.rpm.is_some() || c.tpm.is_some() {
                *slot = Some(self.scopes.get(c.name));
            }
        }

        // Tokens: refused while the minute's count is at or over the limit.
        for (c, counter) in checks.iter().zip(&counters) {
            let (Some(tpm), Some(counter)) = (c.tpm, counter) else {
                continue;
            };
            let used = counter.tokens.get(minute);
            let trio = Trio {
                limit: tpm,
                remaining: tpm.saturating_sub(used),
                reset_ms,
            };
            grant.headers.tokens = RateHeaders::tighter(grant.headers.tokens, trio);
            grant.charge.push(counter.clone());
            if used >= tpm {
                return Err(self.refuse(c.scope, Kind::Tokens, tpm, reset_ms, grant.headers));
            }
        }

        // Requests: one count from every limited scope, all or nothing.
        let mut taken: [bool; 2] = [false, false];
        for (i, (c, counter)) in checks.iter().zip(&counters).enumerate() {
            let (Some(rpm), Some(counter)) = (c.rpm, counter) else {
                continue;
            };
            match counter.requests.try_acquire(minute, rpm) {
                Ok(after) => {
                    taken[i] = true;
                    let trio = Trio {
                        limit: rpm,
                        remaining: rpm - after,
                        reset_ms,
                    };
                    grant.headers.requests = RateHeaders::tighter(grant.headers.requests, trio);
                }
                Err(_) => {
                    for (t, counter) in taken.iter().zip(&counters) {
                        if let (true, Some(counter)) = (t, counter) {
                            counter.requests.release(minute);
                        }
                    }
                    let trio = Trio {
                        limit: rpm,
                        remaining: 0,
                        reset_ms,
                    };
                    grant.headers.requests = RateHeaders::tighter(grant.headers.requests, trio);
                    return Err(self.refuse(c.scope, Kind::Requests, rpm, reset_ms, grant.headers));
                }
            }
        }
        Ok(grant)
    }

    fn refuse(
        &self,
        scope: Scope,
        kind: Kind,
        limit: u64,
        reset_ms: u64,
        headers: RateHeaders,
    ) -> Reject {
        Reject::RateLimited(Box::new(RateLimited {
            scope,
            kind,
            limit,
            retry_after_ms: reset_ms,
            headers,
        }))
    }

    /// Counts an admission decided elsewhere (by Redis) in this gateway's own counters, so
    /// they are current if Redis fails and the failure mode falls back to them.
    pub fn record(&self, project: &ProjectPolicy, key: &KeyPolicy, now_ms: u64) -> Grant {
        let minute = now_ms / WINDOW_MS;
        let mut grant = Grant::default();
        for (name, rpm, tpm) in [
            (&key.scope, key.requests_per_minute, key.tokens_per_minute),
            (
                &project.name,
                project.requests_per_minute,
                project.tokens_per_minute,
            ),
        ] {
            if rpm.is_none() && tpm.is_none() {
                continue;
            }
            let counters = self.scopes.get(name);
            if rpm.is_some() {
                counters.requests.add(minute, 1);
            }
            if tpm.is_some() {
                grant.charge.push(counters);
            }
        }
        grant
    }

    /// Number of scopes with counters (for tests and metrics).
    pub fn scopes(&self) -> usize {
        self.scopes.len()
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(rpm: Option<u64>, tpm: Option<u64>) -> ProjectPolicy {
        ProjectPolicy {
            org: "o".into(),
            slug: "p".into(),
            name: "o/p".into(),
            requests_per_minute: rpm,
            tokens_per_minute: tpm,
            monthly_budget_cents: None,
        }
    }

    fn key(rpm: Option<u64>, tpm: Option<u64>) -> KeyPolicy {
        KeyPolicy {
            scope: "key:k".into(),
            id: None,
            requests_per_minute: rpm,
            tokens_per_minute: tpm,
        }
    }

    fn refused(r: Result<Grant, Reject>) -> RateLimited {
        match r {
            Err(Reject::RateLimited(b)) => *b,
            other => panic!("expected a rate limit, got {other:?}"),
        }
    }

    #[test]
    fn key_refusal_gives_back_nothing_and_project_refusal_gives_back_the_key_count() {
        let l = Limiter::default();
        let t = 60_000 * 1000 + 15_000;
        let (p, k) = (project(Some(1), None), key(Some(5), None));
        let g = l.admit(&p, &k, t).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            g.headers.requests,
            Some(Trio {
                limit: 1,
                remaining: 0,
                reset_ms: 45_000
            })
        );
        let r = refused(l.admit(&p, &k, t + 1));
        assert_eq!(
            (r.scope, r.kind, r.limit),
            (Scope::Project, Kind::Requests, 1)
        );
        // The key's count was given back: 4 left for it, not 3.
        let k_only = project(None, None);
        let g = l
            .admit(&k_only, &k, t + 2)
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(g.headers.requests.map(|t| t.remaining), Some(3));
        // Next minute: admitted again.
        assert!(l.admit(&p, &k, t + 60_000).is_ok());
    }

    #[test]
    fn tokens_refuse_only_once_the_window_is_at_the_limit() {
        let l = Limiter::default();
        let (p, k) = (project(None, Some(100)), key(None, None));
        let g = l.admit(&p, &k, 0).unwrap_or_else(|e| panic!("{e:?}"));
        g.charge(99, 1);
        let g = l.admit(&p, &k, 2).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(g.headers.tokens.map(|t| t.remaining), Some(1));
        g.charge(5, 3);
        let r = refused(l.admit(&p, &k, 4));
        assert_eq!((r.scope, r.kind), (Scope::Project, Kind::Tokens));
        assert_eq!(r.headers.tokens.map(|t| t.remaining), Some(0));
        assert!(l.admit(&p, &k, 60_000).is_ok());
    }
}
