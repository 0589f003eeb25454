//! Named shared state that outlives config reloads: a map from a scope name (`org/project`,
//! `key:<digest>`) to its counters. Reads are one `ArcSwap` load and a hash lookup (no lock);
//! a name seen for the first time copies the map under a mutex, which happens once per scope.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

/// Scope name → shared state.
pub struct Registry<T> {
    map: ArcSwap<Names<T>>,
    write: Mutex<()>,
}

/// The map, hashed by [`NameHasher`].
type Names<T> = HashMap<Arc<str>, Arc<T>, BuildHasherDefault<NameHasher>>;

/// A fast non-cryptographic hash (FxHash's multiply-rotate, eight bytes at a time) for scope
/// names. They come from the config (project names, digests of configured keys, months), are
/// looked up only for authenticated requests, and so cannot be chosen by a client to collide:
/// the default SipHash's flooding resistance is not needed, and a lookup per limited scope
/// on every request costs a fraction of it.
#[derive(Default, Clone, Copy)]
pub struct NameHasher(u64);

impl NameHasher {
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::SEED);
    }
}

impl Hasher for NameHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(c);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl<T> Default for Registry<T> {
    fn default() -> Self {
        Self {
            map: ArcSwap::from_pointee(Names::default()),
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
        let next: Names<T> = current
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

    #[test]
    fn many_similar_names_keep_their_own_state() {
        let r: Registry<AtomicU64> = Registry::default();
        let names: Vec<String> = (0..500)
            .map(|i| format!("key:{i:064x}"))
            .chain((0..100).map(|i| format!("org/p{i}@2026-{:02}", i % 12 + 1)))
            .chain(["", "a", "a\0", "abcdefgh", "abcdefgh\0"].map(String::from))
            .collect();
        for (i, n) in names.iter().enumerate() {
            r.get(n).store(i as u64, Ordering::Relaxed);
        }
        assert_eq!(r.len(), names.len());
        for (i, n) in names.iter().enumerate() {
            assert_eq!(r.get(n).load(Ordering::Relaxed), i as u64, "{n}");
        }
    }
}
