//! Ownership kept in this process: the default without Redis, and the local cache in front
//! of Redis. Lost on restart (objects created before then belong to nobody afterwards).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, PoisonError, RwLock};

use async_trait::async_trait;

use super::{OwnershipError, OwnershipStore};

/// `id -> owner` in one provider account.
type Objects = HashMap<String, Arc<str>>;

/// `account -> id -> owner`, behind one read-mostly lock taken only by requests that create,
/// name or list provider objects (never by plain inference without object references).
#[derive(Debug, Default)]
pub struct MemoryOwnership {
    accounts: RwLock<HashMap<Arc<str>, Objects>>,
}

impl MemoryOwnership {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The owner of `id` in `account`, if recorded here.
    pub fn owner_of(&self, account: &str, id: &str) -> Option<Arc<str>> {
        let accounts = self.accounts.read().unwrap_or_else(PoisonError::into_inner);
        accounts.get(account)?.get(id).cloned()
    }

    /// Records ids (first owner wins); returns how many were new here.
    pub fn insert(&self, account: &str, owner: &str, ids: &[String]) -> usize {
        let owner: Arc<str> = Arc::from(owner);
        let mut accounts = self
            .accounts
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let objects = match accounts.get_mut(account) {
            Some(o) => o,
            None => accounts.entry(Arc::from(account)).or_default(),
        };
        let mut new = 0;
        for id in ids {
            if !objects.contains_key(id.as_str()) {
                objects.insert(id.clone(), owner.clone());
                new += 1;
            }
        }
        new
    }

    /// Whether `id` is recorded here (for any owner).
    pub fn knows(&self, account: &str, id: &str) -> bool {
        self.owner_of(account, id).is_some()
    }

    /// Removes `id` if `owner` owns it.
    pub fn remove(&self, account: &str, owner: &str, id: &str) {
        let mut accounts = self
            .accounts
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(objects) = accounts.get_mut(account) {
            if objects.get(id).is_some_and(|o| &**o == owner) {
                objects.remove(id);
            }
        }
    }

    /// The ids `owner` owns in `account`, as recorded here.
    pub fn owned_by(&self, account: &str, owner: &str) -> HashSet<String> {
        let accounts = self.accounts.read().unwrap_or_else(PoisonError::into_inner);
        accounts.get(account).map_or_else(HashSet::new, |objects| {
            objects
                .iter()
                .filter(|(_, o)| &***o == owner)
                .map(|(id, _)| id.clone())
                .collect()
        })
    }
}

#[async_trait]
impl OwnershipStore for MemoryOwnership {
    fn record(&self, account: &str, owner: &str, ids: Vec<String>) {
        self.insert(account, owner, &ids);
    }

    fn knows(&self, account: &str, id: &str) -> bool {
        MemoryOwnership::knows(self, account, id)
    }

    fn seed(&self, account: &str, owner: &str, ids: &[String]) {
        self.insert(account, owner, ids);
    }

    fn forget(&self, account: &str, owner: &str, id: &str) {
        self.remove(account, owner, id);
    }

    async fn owns(&self, account: &str, owner: &str, id: &str) -> Result<bool, OwnershipError> {
        Ok(self.owner_of(account, id).is_some_and(|o| &*o == owner))
    }

    async fn owned(&self, account: &str, owner: &str) -> Result<HashSet<String>, OwnershipError> {
        Ok(self.owned_by(account, owner))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn first_owner_wins_and_accounts_are_separate() {
        let m = MemoryOwnership::new();
        m.record("default/openai", "default/a", vec!["file-1".into()]);
        m.record(
            "default/openai",
            "default/b",
            vec!["file-1".into(), "file-2".into()],
        );
        assert!(matches!(
            m.owns("default/openai", "default/a", "file-1").await,
            Ok(true)
        ));
        assert!(matches!(
            m.owns("default/openai", "default/b", "file-1").await,
            Ok(false)
        ));
        assert!(matches!(
            m.owns("default/openai", "default/b", "file-2").await,
            Ok(true)
        ));
        assert!(matches!(
            m.owns("default/other", "default/a", "file-1").await,
            Ok(false)
        ));
        let owned = m
            .owned("default/openai", "default/b")
            .await
            .unwrap_or_default();
        assert_eq!(owned, HashSet::from(["file-2".to_owned()]));
    }
}
