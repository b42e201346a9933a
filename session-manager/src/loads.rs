//! [`LoadVersions`]: what an adapter for another framework's session API needs to make its
//! saves compare-and-swap on the version a request loaded.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;

/// Loads whose saves are followed by default; the oldest is forgotten first.
pub const DEFAULT_TRACKED_LOADS: usize = 100_000;

/// For adapters whose framework hands the session's data back at save time but not the
/// version it was loaded at: each load gets a random tag (carried in the data), and this
/// remembers, per tag, the latest version a save under that load wrote, so a request that
/// saves twice compares its second save against its own first write, while another request
/// that loaded the same version is refused. Bounded: the oldest tags are forgotten (a request
/// that saves twice after that many other loads is refused, never silently applied). Clones
/// share the record.
#[derive(Clone)]
pub struct LoadVersions {
    inner: Arc<Mutex<Tracked>>,
    capacity: usize,
}

#[derive(Default)]
struct Tracked {
    latest: HashMap<u64, u64>,
    order: VecDeque<u64>,
}

impl Default for LoadVersions {
    fn default() -> Self {
        Self::new(DEFAULT_TRACKED_LOADS)
    }
}

impl std::fmt::Debug for LoadVersions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadVersions")
            .field("tracked", &self.inner.lock().latest.len())
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl LoadVersions {
    /// Follows at most `capacity` loads.
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Arc::default(),
            capacity,
        }
    }

    /// A fresh random tag for a load.
    pub fn fresh_tag() -> u64 {
        let key = session_core::SessionId::generate().key();
        u64::from_le_bytes(key.as_bytes()[..8].try_into().expect("8 bytes"))
    }

    /// The version a save under load `tag`, which saw `loaded`, compares against: the latest
    /// version a save under that load wrote, or `loaded`.
    pub fn expected(&self, tag: u64, loaded: u64) -> u64 {
        let latest = self.inner.lock().latest.get(&tag).copied();
        latest.unwrap_or(loaded).max(loaded)
    }

    /// Records that a save under load `tag` wrote `version`.
    pub fn remember(&self, tag: u64, version: u64) {
        let mut tracked = self.inner.lock();
        if tracked.latest.insert(tag, version).is_none() {
            tracked.order.push_back(tag);
            if tracked.order.len() > self.capacity
                && let Some(oldest) = tracked.order.pop_front()
            {
                tracked.latest.remove(&oldest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_load_chains_its_own_saves_and_forgets_the_oldest() {
        let loads = LoadVersions::new(2);
        let (a, b, c) = (1, 2, 3);
        assert_eq!(loads.expected(a, 5), 5);
        loads.remember(a, 6);
        assert_eq!(
            loads.expected(a, 5),
            6,
            "a second save compares with the first"
        );
        assert_eq!(
            loads.expected(b, 5),
            5,
            "another load keeps its own version"
        );
        loads.remember(b, 7);
        loads.remember(c, 9);
        assert_eq!(loads.expected(a, 5), 5, "the oldest load is forgotten");
        assert_eq!(loads.expected(c, 8), 9);
        assert_ne!(LoadVersions::fresh_tag(), LoadVersions::fresh_tag());
    }
}
