#![doc = include_str!("../README.md")]

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use parking_lot::{Mutex, MutexGuard};
use session_core::time::OffsetDateTime;
use session_core::{
    BackendConfig, Bytes, Capabilities, Counts, CreateOutcome, Error, ErrorKind, Options,
    OwnedSession, Owner, OwnerChange, Ownership, Record, Result, SessionKey, SessionStore,
    StoreAdmin, UpdateOutcome, WriteOptions, async_trait, truncate_to_millis,
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
///
/// **Owner index** ([`SessionStore::sessions_of`], [`SessionStore::revoke_owner`]): a map owner → keys beside the shards, behind one mutex
/// taken only by operations on owned records, always after the record's shard lock. A record
/// with an owner is live only while its key is in its owner's set: `revoke_owner` takes the
/// owner's keys out of the map in one step and then deletes the records, and a rotation or
/// re-owning (or a touch) that finds its key gone from the set (a revoke took it meanwhile)
/// deletes the record and answers `NotFound`. So every session an owner had when `revoke_owner`
/// started is gone when it returns, rotations included. The index keeps each record's expiry,
/// so the revoke counts the live sessions at the moment it took them.
pub struct MemoryStore {
    shards: Box<[Mutex<Shard>]>,
    owners: Mutex<Owners>,
}

/// Owner → the keys of its records, each with the record's expiry. Exact but for expiry: a
/// record leaves it when it is deleted, rotated away, re-owned or purged, under its shard lock.
type Owners = HashMap<Owner, HashMap<SessionKey, OffsetDateTime, KeyHasher>>;

/// Adds `key` to `owner`'s set (or moves its expiry).
fn index_key(owners: &mut Owners, owner: &Owner, key: SessionKey, expires_at: OffsetDateTime) {
    owners
        .entry(owner.clone())
        .or_default()
        .insert(key, expires_at);
}

/// Removes `key` from `owner`'s set; whether it was there.
fn unindex_key(owners: &mut Owners, owner: &Owner, key: &SessionKey) -> bool {
    let Some(keys) = owners.get_mut(owner) else {
        return false;
    };
    let was = keys.remove(key).is_some();
    if keys.is_empty() {
        owners.remove(owner);
    }
    was
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
    /// Boxed: most sessions have none, and an entry stays one word larger instead of four.
    owner: Option<Box<Ownership>>,
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
            owners: Mutex::new(Owners::default()),
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
    fn live(
        &mut self,
        key: &SessionKey,
        now: OffsetDateTime,
        owners: &Mutex<Owners>,
    ) -> Option<&mut Entry> {
        if self.map.get(key).is_some_and(|entry| !entry.is_live(now)) {
            if let Some(Entry {
                owner: Some(ownership),
                ..
            }) = self.map.remove(key)
            {
                unindex_key(&mut owners.lock(), ownership.owner(), key);
            }
            return None;
        }
        self.map.get_mut(key)
    }

    fn insert(
        &mut self,
        key: SessionKey,
        entry: Entry,
        now: OffsetDateTime,
        owners: &Mutex<Owners>,
    ) {
        self.map.insert(key, entry);
        if self.map.len() >= (self.swept_len * 2).max(64) {
            self.purge(now, owners);
        }
    }

    /// Removes the expired records (and their keys from the owner index).
    fn purge(&mut self, now: OffsetDateTime, owners: &Mutex<Owners>) -> u64 {
        let before = self.map.len();
        let mut unowned = Vec::new();
        self.map.retain(|key, entry| {
            let live = entry.is_live(now);
            if !live && let Some(ownership) = entry.owner.take() {
                unowned.push((*key, ownership));
            }
            live
        });
        if !unowned.is_empty() {
            let mut owners = owners.lock();
            for (key, ownership) in &unowned {
                unindex_key(&mut owners, ownership.owner(), key);
            }
        }
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

impl MemoryStore {
    fn create_entry(
        &self,
        key: &SessionKey,
        expires_at: OffsetDateTime,
        data: Bytes,
        owner: &OwnerChange,
    ) -> CreateOutcome {
        let now = OffsetDateTime::now_utc();
        let mut shard = self.shard(key);
        if shard.live(key, now, &self.owners).is_some() {
            return CreateOutcome::IdTaken;
        }
        let expires_at = truncate_to_millis(expires_at);
        let owner = match owner {
            OwnerChange::Keep | OwnerChange::Clear => None,
            OwnerChange::Set(ownership) => {
                index_key(&mut self.owners.lock(), ownership.owner(), *key, expires_at);
                Some(Box::new(ownership.clone()))
            }
        };
        let entry = Entry {
            data,
            expires_at,
            version: 1,
            owner,
        };
        shard.insert(*key, entry, now, &self.owners);
        CreateOutcome::Created
    }

    /// Moves `entry`'s ownership from `previous` to `current` (and to the new owner, for
    /// [`OwnerChange::Set`]) in the owner index. `false` when a `revoke_owner` took `previous`
    /// out of its owner's set meanwhile: the session is revoked and must not be written.
    /// Called with the record's shard lock(s) held.
    fn reindex(
        &self,
        entry: &mut Entry,
        previous: &SessionKey,
        current: &SessionKey,
        expires_at: OffsetDateTime,
        owner: &OwnerChange,
    ) -> bool {
        let next = match owner {
            OwnerChange::Keep => entry.owner.as_deref(),
            OwnerChange::Set(next) => Some(next),
            OwnerChange::Clear => None,
        };
        if entry.owner.is_none() && next.is_none() {
            return true;
        }
        let mut owners = self.owners.lock();
        if let Some(old) = &entry.owner
            && !unindex_key(&mut owners, old.owner(), previous)
        {
            return false;
        }
        if let Some(next) = next {
            index_key(&mut owners, next.owner(), *current, expires_at);
        }
        drop(owners);
        match owner {
            OwnerChange::Keep => {}
            OwnerChange::Set(next) => entry.owner = Some(Box::new(next.clone())),
            OwnerChange::Clear => entry.owner = None,
        }
        true
    }

    fn update_entry(
        &self,
        current: &SessionKey,
        previous: &SessionKey,
        expected_version: u64,
        expires_at: OffsetDateTime,
        data: Bytes,
        owner: &OwnerChange,
    ) -> UpdateOutcome {
        let now = OffsetDateTime::now_utc();
        let expires_at = truncate_to_millis(expires_at);
        let version = expected_version.wrapping_add(1);
        if current == previous {
            let mut shard = self.shard(previous);
            let Some(entry) = shard.live(previous, now, &self.owners) else {
                return UpdateOutcome::NotFound;
            };
            if entry.version != expected_version {
                return UpdateOutcome::Conflict;
            }
            if !self.reindex(entry, previous, current, expires_at, owner) {
                // Revoked meanwhile: gone for good.
                shard.map.remove(previous);
                return UpdateOutcome::NotFound;
            }
            entry.data = data;
            entry.expires_at = expires_at;
            entry.version = version;
            return UpdateOutcome::Updated { version };
        }
        // Both shards stay locked from the checks to the move: no reader sees both keys or
        // neither, and no other writer gets in between.
        let mut pair = self.lock_pair(current, previous);
        match pair.previous().live(previous, now, &self.owners) {
            None => return UpdateOutcome::NotFound,
            Some(entry) if entry.version != expected_version => return UpdateOutcome::Conflict,
            Some(_) => {}
        }
        if pair.current().live(current, now, &self.owners).is_some() {
            return UpdateOutcome::IdTaken;
        }
        let mut entry = pair
            .previous()
            .map
            .remove(previous)
            .expect("checked live under the same lock");
        if !self.reindex(&mut entry, previous, current, expires_at, owner) {
            // Revoked meanwhile: gone for good.
            return UpdateOutcome::NotFound;
        }
        entry.data = data;
        entry.expires_at = expires_at;
        entry.version = version;
        pair.current().insert(*current, entry, now, &self.owners);
        UpdateOutcome::Updated { version }
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    /// Private to the instance; its amortised sweep drops expired records by itself.
    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
            .shared(false)
            .expires_by_itself(true)
            .owner_index(true)
    }

    async fn create_opts(
        &self,
        key: &SessionKey,
        expires_at: OffsetDateTime,
        data: Bytes,
        options: &WriteOptions,
    ) -> Result<CreateOutcome> {
        Ok(self.create_entry(key, expires_at, data, &options.owner))
    }

    async fn read(&self, key: &SessionKey) -> Result<Option<Record>> {
        let now = OffsetDateTime::now_utc();
        let mut shard = self.shard(key);
        Ok(shard.live(key, now, &self.owners).map(|entry| Record {
            data: entry.data.clone(),
            expires_at: entry.expires_at,
            version: entry.version,
        }))
    }

    async fn update_opts(
        &self,
        current: &SessionKey,
        previous: &SessionKey,
        expected_version: u64,
        expires_at: OffsetDateTime,
        data: Bytes,
        options: &WriteOptions,
    ) -> Result<UpdateOutcome> {
        Ok(self.update_entry(
            current,
            previous,
            expected_version,
            expires_at,
            data,
            &options.owner,
        ))
    }

    async fn touch(&self, key: &SessionKey, expires_at: OffsetDateTime) -> Result<bool> {
        let now = OffsetDateTime::now_utc();
        let mut shard = self.shard(key);
        let expires_at = truncate_to_millis(expires_at);
        let Some(entry) = shard.live(key, now, &self.owners) else {
            return Ok(false);
        };
        if let Some(ownership) = &entry.owner {
            let mut owners = self.owners.lock();
            match owners
                .get_mut(ownership.owner())
                .and_then(|keys| keys.get_mut(key))
            {
                Some(indexed) => *indexed = expires_at,
                None => {
                    // Revoked meanwhile: gone for good.
                    drop(owners);
                    shard.map.remove(key);
                    return Ok(false);
                }
            }
        }
        entry.expires_at = expires_at;
        Ok(true)
    }

    async fn delete(&self, key: &SessionKey) -> Result<()> {
        let mut shard = self.shard(key);
        if let Some(Entry {
            owner: Some(ownership),
            ..
        }) = shard.map.remove(key)
        {
            unindex_key(&mut self.owners.lock(), ownership.owner(), key);
        }
        Ok(())
    }

    async fn delete_expired(&self) -> Result<u64> {
        let now = OffsetDateTime::now_utc();
        Ok(self
            .shards
            .iter()
            .map(|shard| shard.lock().purge(now, &self.owners))
            .sum())
    }

    async fn clear(&self) -> Result<()> {
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            shard.map = HashMap::default();
            shard.swept_len = 0;
        }
        *self.owners.lock() = Owners::default();
        Ok(())
    }

    async fn sessions_of(&self, owner: &Owner) -> Result<Vec<OwnedSession>> {
        let keys: Vec<SessionKey> = match self.owners.lock().get(owner) {
            Some(keys) => keys.keys().copied().collect(),
            None => return Ok(Vec::new()),
        };
        let now = OffsetDateTime::now_utc();
        let mut found = Vec::with_capacity(keys.len());
        for key in keys {
            let mut shard = self.shard(&key);
            match shard.live(&key, now, &self.owners) {
                Some(entry) if entry.owner.as_ref().is_some_and(|o| o.owner() == owner) => {
                    found.push(OwnedSession {
                        key,
                        expires_at: entry.expires_at,
                        version: entry.version,
                        label: entry
                            .owner
                            .as_ref()
                            .map_or_else(String::new, |o| o.label().to_owned()),
                    });
                }
                // Expired meanwhile, or rotated, re-owned or revoked since the keys were read.
                _ => {}
            }
        }
        found.sort_by_key(|session| (session.expires_at, *session.key.as_bytes()));
        Ok(found)
    }

    async fn revoke_owner(&self, owner: &Owner, except: Option<&SessionKey>) -> Result<u64> {
        // Taking the keys out of the index revokes them at once: a rotation or re-owning of one
        // of them from now on finds it gone and deletes the record instead.
        let (keys, revoked) = {
            let mut owners = self.owners.lock();
            let Some(mut keys) = owners.remove(owner) else {
                return Ok(0);
            };
            if let Some(except) = except
                && let Some(expires_at) = keys.remove(except)
            {
                index_key(&mut owners, owner, *except, expires_at);
            }
            let now = OffsetDateTime::now_utc();
            let live = keys
                .values()
                .filter(|expires_at| **expires_at > now)
                .count();
            (keys, live as u64)
        };
        for key in keys.into_keys() {
            let mut shard = self.shard(&key);
            let owned = shard
                .map
                .get(&key)
                .is_some_and(|entry| entry.owner.as_ref().is_some_and(|o| o.owner() == owner));
            if owned {
                shard.map.remove(&key);
            }
        }
        Ok(revoked)
    }
}

#[async_trait]
impl StoreAdmin for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
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
