#![doc = include_str!("../README.md")]

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use parking_lot::{Mutex, MutexGuard};
use session_core::time::OffsetDateTime;
use session_core::{
    BackendConfig, Bytes, Capabilities, Counts, CreateOutcome, Error, ErrorKind, Options, Record,
    Result, SessionKey, SessionStore, StoreAdmin, UpdateOutcome, async_trait, truncate_to_millis,
};

/// Number of shards when none is given: enough that 64 busy tasks rarely meet on one lock.
const DEFAULT_SHARDS: usize = 64;

/// An in-process [`SessionStore`].
///
/// Records live in a fixed number of shards, each a `HashMap` behind its own
/// `parking_lot::Mutex`. Locks are held only for a few map operations, never across an
/// `.await`. A rotation whose two keys fall in different shards locks both, lower index first,
/// so it is atomic and cannot deadlock.
///
/// Expired records are invisible at once, removed when touched, by
/// [`delete_expired`](SessionStore::delete_expired), and by an amortised sweep: when a shard has
/// doubled in size since its last sweep, the next insert into it purges its expired records. So
/// memory stays proportional to the live sessions even if nobody calls `delete_expired`.
///
/// Each `MemoryStore` is its own namespace: `clear` empties this instance only. Clone it (it is
/// not `Clone`) by sharing an `Arc<MemoryStore>`.
pub struct MemoryStore {
    shards: Box<[Mutex<Shard>]>,
}

#[derive(Default)]
struct Shard {
    map: HashMap<SessionKey, Entry, KeyHasher>,
    /// Size after the last sweep; the next sweep runs when the map is twice as big.
    swept_len: usize,
}

struct Entry {
    data: Bytes,
    expires_at: OffsetDateTime,
    version: u64,
}

impl Entry {
    fn is_live(&self, now: OffsetDateTime) -> bool {
        self.expires_at > now
    }
}

/// Keys are SHA-256 digests already: their first bytes are a perfectly good hash.
type KeyHasher = BuildHasherDefault<PrefixHasher>;

#[derive(Default)]
struct PrefixHasher(u64);

impl Hasher for PrefixHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // `SessionKey` hashes as one 32-byte slice (plus, for arrays, nothing else).
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(word);
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("shards", &self.shards.len())
            .finish()
    }
}

impl MemoryStore {
    /// An empty store with the default number of shards (64).
    pub fn new() -> Self {
        Self::with_shards(DEFAULT_SHARDS)
    }

    /// An empty store with `shards` shards (at least 1).
    pub fn with_shards(shards: usize) -> Self {
        Self {
            shards: (0..shards.max(1))
                .map(|_| Mutex::new(Shard::default()))
                .collect(),
        }
    }

    fn shard_index(&self, key: &SessionKey) -> usize {
        let bytes = key.as_bytes();
        let word = u64::from_le_bytes(bytes[24..32].try_into().expect("8 bytes"));
        (word % self.shards.len() as u64) as usize
    }

    fn shard(&self, key: &SessionKey) -> MutexGuard<'_, Shard> {
        self.shards[self.shard_index(key)].lock()
    }

    /// Number of records held, including expired ones not yet purged. For tests and metrics.
    pub fn stored_records(&self) -> usize {
        self.shards.iter().map(|shard| shard.lock().map.len()).sum()
    }

    /// Number of live records.
    pub fn live_records(&self) -> usize {
        let now = OffsetDateTime::now_utc();
        self.shards
            .iter()
            .map(|shard| shard.lock().map.values().filter(|e| e.is_live(now)).count())
            .sum()
    }
}

impl Shard {
    /// The live entry at `key`; an expired one is removed on the way.
    fn live(&mut self, key: &SessionKey, now: OffsetDateTime) -> Option<&mut Entry> {
        if self.map.get(key).is_some_and(|entry| !entry.is_live(now)) {
            self.map.remove(key);
            return None;
        }
        self.map.get_mut(key)
    }

    fn insert(&mut self, key: SessionKey, entry: Entry, now: OffsetDateTime) {
        self.map.insert(key, entry);
        if self.map.len() >= (self.swept_len * 2).max(64) {
            self.purge(now);
        }
    }

    fn purge(&mut self, now: OffsetDateTime) -> u64 {
        let before = self.map.len();
        self.map.retain(|_, entry| entry.is_live(now));
        if self.map.capacity() > 4 * self.map.len().max(16) {
            self.map.shrink_to_fit();
        }
        self.swept_len = self.map.len();
        (before - self.map.len()) as u64
    }
}

/// Locks the shards of both keys of a rotation, lower index first, once if they coincide.
enum Pair<'a> {
    One(MutexGuard<'a, Shard>),
    Two {
        current: MutexGuard<'a, Shard>,
        previous: MutexGuard<'a, Shard>,
    },
}

impl Pair<'_> {
    fn current(&mut self) -> &mut Shard {
        match self {
            Pair::One(shard) | Pair::Two { current: shard, .. } => shard,
        }
    }

    fn previous(&mut self) -> &mut Shard {
        match self {
            Pair::One(shard)
            | Pair::Two {
                previous: shard, ..
            } => shard,
        }
    }
}

impl MemoryStore {
    fn lock_pair(&self, current: &SessionKey, previous: &SessionKey) -> Pair<'_> {
        let (c, p) = (self.shard_index(current), self.shard_index(previous));
        if c == p {
            return Pair::One(self.shards[c].lock());
        }
        if c < p {
            let current = self.shards[c].lock();
            let previous = self.shards[p].lock();
            Pair::Two { current, previous }
        } else {
            let previous = self.shards[p].lock();
            let current = self.shards[c].lock();
            Pair::Two { current, previous }
        }
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn create(
        &self,
        key: &SessionKey,
        expires_at: OffsetDateTime,
        data: Bytes,
    ) -> Result<CreateOutcome> {
        let now = OffsetDateTime::now_utc();
        let mut shard = self.shard(key);
        if shard.live(key, now).is_some() {
            return Ok(CreateOutcome::IdTaken);
        }
        let entry = Entry {
            data,
            expires_at: truncate_to_millis(expires_at),
            version: 1,
        };
        shard.insert(*key, entry, now);
        Ok(CreateOutcome::Created)
    }

    async fn read(&self, key: &SessionKey) -> Result<Option<Record>> {
        let now = OffsetDateTime::now_utc();
        let mut shard = self.shard(key);
        Ok(shard.live(key, now).map(|entry| Record {
            data: entry.data.clone(),
            expires_at: entry.expires_at,
            version: entry.version,
        }))
    }

    async fn update(
        &self,
        current: &SessionKey,
        previous: &SessionKey,
        expected_version: u64,
        expires_at: OffsetDateTime,
        data: Bytes,
    ) -> Result<UpdateOutcome> {
        let now = OffsetDateTime::now_utc();
        let expires_at = truncate_to_millis(expires_at);
        let version = expected_version.wrapping_add(1);
        if current == previous {
            let mut shard = self.shard(previous);
            let Some(entry) = shard.live(previous, now) else {
                return Ok(UpdateOutcome::NotFound);
            };
            if entry.version != expected_version {
                return Ok(UpdateOutcome::Conflict);
            }
            entry.data = data;
            entry.expires_at = expires_at;
            entry.version = version;
            return Ok(UpdateOutcome::Updated { version });
        }
        // Both shards stay locked from the checks to the move: no reader sees both keys or
        // neither, and no other writer gets in between.
        let mut pair = self.lock_pair(current, previous);
        match pair.previous().live(previous, now) {
            None => return Ok(UpdateOutcome::NotFound),
            Some(entry) if entry.version != expected_version => return Ok(UpdateOutcome::Conflict),
            Some(_) => {}
        }
        if pair.current().live(current, now).is_some() {
            return Ok(UpdateOutcome::IdTaken);
        }
        let mut entry = pair
            .previous()
            .map
            .remove(previous)
            .expect("checked live under the same lock");
        entry.data = data;
        entry.expires_at = expires_at;
        entry.version = version;
        pair.current().insert(*current, entry, now);
        Ok(UpdateOutcome::Updated { version })
    }

    async fn touch(&self, key: &SessionKey, expires_at: OffsetDateTime) -> Result<bool> {
        let now = OffsetDateTime::now_utc();
        let mut shard = self.shard(key);
        Ok(match shard.live(key, now) {
            Some(entry) => {
                entry.expires_at = truncate_to_millis(expires_at);
                true
            }
            None => false,
        })
    }

    async fn delete(&self, key: &SessionKey) -> Result<()> {
        self.shard(key).map.remove(key);
        Ok(())
    }

    async fn delete_expired(&self) -> Result<u64> {
        let now = OffsetDateTime::now_utc();
        Ok(self
            .shards
            .iter()
            .map(|shard| shard.lock().purge(now))
            .sum())
    }

    async fn clear(&self) -> Result<()> {
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            shard.map = HashMap::default();
            shard.swept_len = 0;
        }
        Ok(())
    }
}

#[async_trait]
impl StoreAdmin for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    /// Private to the instance; its amortised sweep drops expired records by itself.
    fn capabilities(&self) -> Capabilities {
        Capabilities::new().shared(false).expires_by_itself(true)
    }

    async fn counts(&self) -> Result<Counts> {
        let (stored, live) = (self.stored_records() as u64, self.live_records() as u64);
        Ok(Counts {
            live,
            expired: Some(stored.saturating_sub(live)),
        })
    }

    async fn drop_namespace(&self) -> Result<()> {
        self.clear().await
    }
}

/// Settings of a [`MemoryStore`], from the URL `memory://` (query parameter `shards=N`, the
/// number of shards, default 64).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryConfig {
    /// Number of shards (at least 1).
    pub shards: usize,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            shards: DEFAULT_SHARDS,
        }
    }
}

impl std::str::FromStr for MemoryConfig {
    type Err = Error;

    fn from_str(url: &str) -> Result<Self> {
        Self::from_url(url)
    }
}

#[async_trait]
impl BackendConfig for MemoryConfig {
    type Store = MemoryStore;

    fn from_url_with(url: &str, options: &[(String, String)]) -> Result<Self> {
        let (base, mut options) = Options::split_url("memory", url, options)?;
        if !base.eq_ignore_ascii_case("memory://") && !base.eq_ignore_ascii_case("memory:") {
            return Err(Error::new(
                ErrorKind::Config,
                "memory: a memory store URL is just `memory://` (with `?shards=N` at most)",
            ));
        }
        let mut config = Self::default();
        if let Some(shards) = options.take_parsed::<usize>("shards", "a whole number")? {
            config.shards = shards.max(1);
        }
        options.finish()?;
        Ok(config)
    }

    /// Every memory store is a namespace of its own already.
    fn isolated(&self, _namespace: &str) -> Result<Self> {
        Ok(*self)
    }

    fn existing_only(self) -> Self {
        self
    }

    async fn open(self) -> Result<MemoryStore> {
        Ok(MemoryStore::with_shards(self.shards))
    }
}

#[cfg(test)]
mod config_tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(MemoryConfig::from_url("memory://").unwrap().shards, 64);
        assert_eq!(
            MemoryConfig::from_url("MEMORY://?shards=4").unwrap().shards,
            4
        );
        for bad in [
            "memory://somewhere",
            "memory://?table=x",
            "memory://?shards=many",
        ] {
            let error = MemoryConfig::from_url(bad).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Config, "{bad}");
        }
    }
}

/// This backend's conformance-suite factory (feature `testing`).
#[cfg(feature = "testing")]
pub mod testing {
    use conformance_tests::NamespaceFactory;

    use crate::MemoryConfig;

    /// Fresh memory stores (each store is a namespace of its own; a pair is one store twice).
    pub fn factory_for(config: MemoryConfig) -> NamespaceFactory<MemoryConfig> {
        NamespaceFactory::new(config)
    }
}
