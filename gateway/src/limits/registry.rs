//! Named shared state that outlives config reloads: a map from a scope name (`org/project`,
//! `key:<digest>`) to its counters. Reads are one `ArcSwap` load and a hash lookup (no lock);
//! a name seen for the first time copies the map under a mutex, which happens once per scope.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

/// Scope name → shared state.
pub struct Registry<T> {
    map: ArcSwap<HashMap<Arc<str>, Arc<T>>>,
    write: Mutex<()>,
}

impl<T> Default for Registry<T> {
    fn default() -> Self {
        Self {
            map: ArcSwap::from_pointee(HashMap::new()),
            write: Mutex::new(()),
        }
    }
}

impl<T: Default> Registry<T> {
    /// The state of `name`, created on first use.
    pub fn get(&self, name: &str) -> Arc<T> {
        if let Some(v) = self.map.load().get(name) {
            return v.clone();
        }
        let _guard = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.map.load_full();
        if let Some(v) = current.get(name) {
            return v.clone();
        }
        let mut next = HashMap::clone(&current);
        let v = Arc::new(T::default());
        next.insert(Arc::from(name), v.clone());
        self.map.store(Arc::new(next));
        v
    }

    /// Drops every entry whose name `keep` refuses (holders of an `Arc` keep theirs).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        let _guard = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.map.load_full();
        if current.keys().all(|k| keep(k)) {
            return;
        }
        let next: HashMap<Arc<str>, Arc<T>> = current
            .iter()
            .filter(|(k, _)| keep(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        self.map.store(Arc::new(next));
    }

    /// Number of names held.
    pub fn len(&self) -> usize {
        self.map.load().len()
    }

    /// Whether no name is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    #[test]
    fn same_name_same_state_and_retain_drops_others() {
        let r: Registry<AtomicU64> = Registry::default();
        r.get("a").fetch_add(3, Ordering::Relaxed);
        assert_eq!(r.get("a").load(Ordering::Relaxed), 3);
        r.get("b");
        assert_eq!(r.len(), 2);
        r.retain(|n| n == "a");
        assert_eq!(r.len(), 1);
        assert_eq!(r.get("a").load(Ordering::Relaxed), 3);
    }
}
