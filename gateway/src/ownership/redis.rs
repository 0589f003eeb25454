//! Ownership shared by every gateway through Redis, with this process's records as a cache.
//!
//! Layout: `aigw:own:{account}:{id}` holds the owner (`SET NX`: the first owner wins), and
//! `aigw:own:{account}:owner:{owner}` the set of that owner's ids (for lists). Ids have no `:`
//! (see [`crate::endpoints::is_object_id`]), so the two key shapes cannot collide. Keys do not
//! expire: an object lives at the provider until deleted.
//!
//! Redis I/O runs on a runtime of its own (one thread), away from the proxy's workers; the
//! connection is made lazily and remade after a failure, so a Redis that is down at start
//! delays nothing. A record is written just after the creating response has been sent (the
//! response filter cannot wait), so an id unknown to Redis is looked up once more after
//! [`RECORD_GRACE`] before the request is refused. Lookups fail closed: when Redis does not answer within the timeout, a
//! request naming an object this gateway has not seen gets 503 `ownership_unavailable`,
//! never another tenant's object. A record that cannot be written is logged and kept locally.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use gateway_schema::Secret;
use redis::aio::ConnectionManager;

use super::memory::MemoryOwnership;
use super::{OwnershipError, OwnershipStore};

const PREFIX: &str = "aigw:own:";

/// How long an unknown id is given to appear (a record in flight from another gateway).
const RECORD_GRACE: Duration = Duration::from_millis(50);

/// Records ids for one owner, keeping the first owner of each.
const RECORD: &str = r#"
local base = ARGV[1]
local owner = ARGV[2]
for i = 3, #ARGV do
  if redis.call('SET', base .. ARGV[i], owner, 'NX') then
    redis.call('SADD', base .. 'owner:' .. owner, ARGV[i])
  end
end
return 1
"#;

/// Forgets an id, only for its owner.
const FORGET: &str = r#"
local base = ARGV[1]
local owner = ARGV[2]
local id = ARGV[3]
if redis.call('GET', base .. id) == owner then
  redis.call('DEL', base .. id)
  redis.call('SREM', base .. 'owner:' .. owner, id)
end
return 1
"#;

struct Shared {
    client: redis::Client,
    conn: tokio::sync::Mutex<Option<ConnectionManager>>,
    script: redis::Script,
    forget: redis::Script,
}

impl Shared {
    async fn conn(&self) -> Result<ConnectionManager, redis::RedisError> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c = ConnectionManager::new(self.client.clone()).await?;
        *slot = Some(c.clone());
        Ok(c)
    }
}

/// Redis-backed ownership with a local cache.
pub struct RedisOwnership {
    local: MemoryOwnership,
    shared: Arc<Shared>,
    runtime: tokio::runtime::Handle,
    timeout: Duration,
}

/// Why the Redis store could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RedisSetupError {
    /// The URL does not parse (the URL itself is never printed: it may hold a password).
    #[error("server.redis_url is not a valid Redis URL ({0})")]
    Url(String),
    /// The runtime thread could not start.
    #[error("could not start the ownership store's Redis thread: {0}")]
    Runtime(#[from] std::io::Error),
}

impl RedisOwnership {
    /// Builds the store and its I/O thread. Does not connect yet.
    pub fn new(url: &Secret, timeout: Duration) -> Result<Self, RedisSetupError> {
        let client = redis::Client::open(url.expose())
            .map_err(|e| RedisSetupError::Url(format!("{:?}", e.kind())))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let runtime = rt.handle().clone();
        std::thread::Builder::new()
            .name("ownership-redis".into())
            .spawn(move || rt.block_on(std::future::pending::<()>()))?;
        Ok(Self {
            local: MemoryOwnership::new(),
            shared: Arc::new(Shared {
                client,
                conn: tokio::sync::Mutex::new(None),
                script: redis::Script::new(RECORD),
                forget: redis::Script::new(FORGET),
            }),
            runtime,
            timeout,
        })
    }

    /// Runs `f` on the Redis thread, bounded by the timeout.
    async fn run<T, F, Fut>(&self, f: F) -> Result<T, OwnershipError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Shared>) -> Fut,
        Fut: std::future::Future<Output = Result<T, redis::RedisError>> + Send + 'static,
    {
        let task = self
            .runtime
            .spawn(tokio::time::timeout(self.timeout, f(self.shared.clone())));
        match task.await {
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(e))) => Err(OwnershipError::Unavailable(format!("{:?}", e.kind()))),
            Ok(Err(_)) => Err(OwnershipError::Unavailable("timed out".into())),
            Err(e) => Err(OwnershipError::Unavailable(e.to_string())),
        }
    }
}

fn object_key(account: &str, id: &str) -> String {
    format!("{PREFIX}{account}:{id}")
}

fn owner_set_key(account: &str, owner: &str) -> String {
    format!("{PREFIX}{account}:owner:{owner}")
}

#[async_trait]
impl OwnershipStore for RedisOwnership {
    fn record(&self, account: &str, owner: &str, ids: Vec<String>) {
        self.local.insert(account, owner, &ids);
        let shared = self.shared.clone();
        let base = format!("{PREFIX}{account}:");
        let owner = owner.to_owned();
        let timeout = self.timeout;
        self.runtime.spawn(async move {
            let write = async {
                let mut conn = shared.conn().await?;
                let mut call = shared.script.prepare_invoke();
                call.arg(&base).arg(&owner);
                for id in &ids {
                    call.arg(id);
                }
                call.invoke_async::<i64>(&mut conn).await
            };
            let outcome = match tokio::time::timeout(timeout * 4, write).await {
                Ok(Ok(_)) => return,
                Ok(Err(e)) => format!("{:?}", e.kind()),
                Err(_) => "timed out".to_owned(),
            };
            tracing::warn!(reason = %outcome, objects = ids.len(),
                "could not record object ownership in Redis; kept on this gateway only");
        });
    }

    fn knows(&self, account: &str, id: &str) -> bool {
        self.local.knows(account, id)
    }

    /// Seeds this process's cache only: Redis already holds what other gateways recorded,
    /// and the control plane's records fill in what a Redis restart may have lost here.
    fn seed(&self, account: &str, owner: &str, ids: &[String]) {
        self.local.insert(account, owner, ids);
    }

    fn forget(&self, account: &str, owner: &str, id: &str) {
        self.local.remove(account, owner, id);
        let shared = self.shared.clone();
        let base = format!("{PREFIX}{account}:");
        let (owner, id) = (owner.to_owned(), id.to_owned());
        let timeout = self.timeout;
        self.runtime.spawn(async move {
            let write = async {
                let mut conn = shared.conn().await?;
                let mut call = shared.forget.prepare_invoke();
                call.arg(&base).arg(&owner).arg(&id);
                call.invoke_async::<i64>(&mut conn).await
            };
            // A record left behind names an object that no longer exists: harmless.
            if !matches!(tokio::time::timeout(timeout * 4, write).await, Ok(Ok(_))) {
                tracing::debug!("could not forget a deleted object in Redis");
            }
        });
    }

    async fn owns(&self, account: &str, owner: &str, id: &str) -> Result<bool, OwnershipError> {
        if let Some(o) = self.local.owner_of(account, id) {
            return Ok(&*o == owner);
        }
        let key = object_key(account, id);
        let get = || {
            let key = key.clone();
            self.run(|s| async move {
                let mut conn = s.conn().await?;
                redis::cmd("GET").arg(&key).query_async(&mut conn).await
            })
        };
        let mut found: Option<String> = get().await?;
        if found.is_none() {
            // The creating gateway writes its record just after the response leaves it; a
            // client that got the id and asks another gateway at once may be that fast.
            tokio::time::sleep(RECORD_GRACE).await;
            found = get().await?;
        }
        Ok(match found {
            Some(o) => {
                self.local.insert(account, &o, &[id.to_owned()]);
                o == owner
            }
            None => false,
        })
    }

    async fn owned(&self, account: &str, owner: &str) -> Result<HashSet<String>, OwnershipError> {
        let key = owner_set_key(account, owner);
        let mut ids: HashSet<String> = self
            .run(|s| async move {
                let mut conn = s.conn().await?;
                redis::cmd("SMEMBERS")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        ids.extend(self.local.owned_by(account, owner));
        Ok(ids)
    }
}
