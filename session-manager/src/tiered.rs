//! [`Tiered`]: a bounded fast front (memory) over a durable back, the back the source of truth.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{RwLock, RwLockWriteGuard};

use session_core::Result;
use session_core::SessionKey;
use session_core::codec::record;
use session_core::{Bytes, async_trait, time::OffsetDateTime};
use session_core::{
    Capabilities, CreateOutcome, OwnedSession, Owner, Record, SessionStore, SessionStoreExt,
    UpdateOutcome, WriteOptions, truncate_to_millis,
};

/// Default longest time a front entry serves reads before the back is asked again.
pub const DEFAULT_FRONT_TTL: Duration = Duration::from_secs(5);
/// Default largest number of sessions in the front.
pub const DEFAULT_FRONT_CAPACITY: usize = 100_000;

/// A store in two tiers (memory-first sessions, made safe for several processes):
/// reads are served by the `front` (typically a memory store) and, on a miss, by the `back`
/// (SQLite, PostgreSQL, Redis), whose record then fills the front; every write goes to the back
/// first, with the back's atomic compare-and-swap, and only then to the front.
///
/// What holds with any number of `Tiered` instances (app servers) sharing one back:
/// - **No lost update, no fork, no resurrection.** Writes are decided by the back alone: a save
///   based on a stale front version is `Conflict`, a rotation of a key rotated elsewhere
///   `NotFound`, a save of a deleted session `NotFound`. A refused or failed-over write
///   invalidates the keys it named in this front, so the next read asks the back.
/// - **A failed back write (an error) empties the front of the keys it named.** The back may
///   have applied it (an error means the outcome is unknown), so the next read asks the back.
/// - **Bounded staleness of reads.** A front entry serves reads for at most its time to live
///   ([`with_front_ttl`](Self::with_front_ttl), default 5 s) and never past the record's own
///   expiry. Within that window an instance can still read a session that *another* instance
///   updated, rotated or deleted; its own writes it always reads back. Choose the TTL as the
///   longest a logout may take to reach every server, or use the back alone.
/// - **Bounded memory.** At most [`with_capacity`](Self::with_capacity) sessions (default
///   100 000) are kept in the front; the oldest filled go first.
///
/// The front holds the back's version and expiry inside its own record, so the front store's
/// own version counter does not matter; give each `Tiered` a front store of its own.
pub struct Tiered<F, B> {
    front: F,
    back: B,
    ttl: Duration,
    capacity: usize,
    keys: Mutex<FrontKeys>,
    /// Per key shard: a write through this instance holds its keys' shards exclusively from
    /// before the back write until the front is updated; a read that misses the front holds its
    /// key's shard shared while it asks the back and fills the front. So a fill never installs a
    /// record older than a write of this instance, and no reader of this instance sees a
    /// rotation half applied (both keys live, or neither).
    shards: Box<[RwLock<()>]>,
}

#[derive(Default)]
struct FrontKeys {
    order: VecDeque<SessionKey>,
    present: HashSet<SessionKey>,
}

impl<F: fmt::Debug, B: fmt::Debug> fmt::Debug for Tiered<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tiered")
            .field("front", &self.front)
            .field("back", &self.back)
            .field("ttl", &self.ttl)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

const SHARDS: usize = 256;

fn shard(key: &SessionKey) -> usize {
    usize::from(key.as_bytes()[0]) % SHARDS
}

impl<F: SessionStore, B: SessionStore> Tiered<F, B> {
    /// `front` over `back`, with [`DEFAULT_FRONT_TTL`] and [`DEFAULT_FRONT_CAPACITY`].
    pub fn new(front: F, back: B) -> Self {
        Self {
            front,
            back,
            ttl: DEFAULT_FRONT_TTL,
            capacity: DEFAULT_FRONT_CAPACITY,
            keys: Mutex::new(FrontKeys::default()),
            shards: (0..SHARDS).map(|_| RwLock::new(())).collect(),
        }
    }

    /// Sets how long a front entry may serve reads (zero: the front is never filled by reads).
    /// Any value is accepted: a huge one means "until the record's own expiry".
    #[must_use]
    pub fn with_front_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Sets the most sessions kept in the front (zero: none).
    #[must_use]
    pub fn with_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// The front store.
    pub fn front(&self) -> &F {
        &self.front
    }

    /// The back store.
    pub fn back(&self) -> &B {
        &self.back
    }

    /// Sessions currently tracked in the front.
    pub fn front_len(&self) -> usize {
        self.keys.lock().present.len()
    }

    /// Puts the back's `record` at `key` in the front (replacing what is there), evicting the
    /// oldest entries beyond the capacity.
    async fn put_front(&self, key: &SessionKey, record: &Record) -> Result<()> {
        let now = OffsetDateTime::now_utc();
        // Saturating: no TTL, however large, can overflow the clock.
        let ttl = time::Duration::try_from(self.ttl).unwrap_or(time::Duration::MAX);
        let until = record.expires_at.min(now.saturating_add(ttl));
        self.front.delete(key).await?;
        if until <= now || self.capacity == 0 {
            self.forget(key);
            return Ok(());
        }
        let value = record::encode(record.version, record.expires_at, &record.data);
        if self.front.create(key, until, value.into()).await? == CreateOutcome::IdTaken {
            // Another task of this instance filled it between our delete and create; which of
            // the two is newer is unknown, so keep neither.
            self.front.delete(key).await?;
            self.forget(key);
            return Ok(());
        }
        let evicted = {
            let mut keys = self.keys.lock();
            if keys.present.insert(*key) {
                keys.order.push_back(*key);
            }
            let mut evicted = Vec::new();
            while keys.present.len() > self.capacity {
                let Some(oldest) = keys.order.pop_front() else {
                    break;
                };
                if keys.present.remove(&oldest) {
                    evicted.push(oldest);
                }
            }
            if keys.order.len() > 2 * self.capacity.max(16) {
                let FrontKeys { order, present } = &mut *keys;
                order.retain(|k| present.contains(k));
            }
            evicted
        };
        for key in evicted {
            self.front.delete(&key).await?;
        }
        Ok(())
    }

    /// Passes `result` of a back write on; when it is an error the write's outcome is unknown
    /// (the back may have applied it), so the front first forgets every key the write named.
    async fn unless_failed<T>(&self, result: Result<T>, keys: &[&SessionKey]) -> Result<T> {
        if result.is_err() {
            for key in keys {
                if let Err(error) = self.invalidate(key).await {
                    tracing::warn!(%error, "could not drop a front entry after a failed back write");
                }
            }
        }
        result
    }

    /// The front's entry for `key`. An entry that is not a tiered entry (another writer of a
    /// shared front, a corrupt value) is dropped and counts as absent: the back holds the
    /// truth, so a broken cache entry never makes a session unreadable.
    async fn front_entry(&self, key: &SessionKey) -> Result<Option<Record>> {
        let Some(record) = self.front.read(key).await? else {
            return Ok(None);
        };
        match record::decode(record.data) {
            Ok(record) => Ok(Some(record)),
            Err(error) => {
                tracing::warn!(%error, "dropping a front entry that is not a tiered entry");
                self.invalidate(key).await?;
                Ok(None)
            }
        }
    }

    async fn invalidate(&self, key: &SessionKey) -> Result<()> {
        self.forget(key);
        self.front.delete(key).await
    }

    fn forget(&self, key: &SessionKey) {
        self.keys.lock().present.remove(key);
    }

    /// Locks the shards of `keys` for a write, in index order (no deadlock between writers).
    async fn lock(&self, keys: &[&SessionKey]) -> Vec<RwLockWriteGuard<'_, ()>> {
        let mut indices: Vec<usize> = keys.iter().map(|k| shard(k)).collect();
        indices.sort_unstable();
        indices.dedup();
        let mut guards = Vec::with_capacity(indices.len());
        for i in indices {
            guards.push(self.shards[i].write().await);
        }
        guards
    }

    async fn lock_all(&self) -> Vec<RwLockWriteGuard<'_, ()>> {
        let mut guards = Vec::with_capacity(SHARDS);
        for lock in self.shards.iter() {
            guards.push(lock.write().await);
        }
        guards
    }
}

/// The back's capabilities and owner index: the front holds whatever the back holds. Writes
/// with an owner take the same path as the others; `revoke_owner` empties this instance's front
/// (other instances' fronts keep serving what they hold for at most their time to live, as for
/// any delete).
#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl<F: SessionStore, B: SessionStore> SessionStore for Tiered<F, B> {
    fn capabilities(&self) -> Capabilities {
        self.back.capabilities()
    }

    async fn create_opts(
        &self,
        key: &SessionKey,
        expires_at: OffsetDateTime,
        data: Bytes,
        options: &WriteOptions,
    ) -> Result<CreateOutcome> {
        let _guards = self.lock(&[key]).await;
        let written = self
            .back
            .create_opts(key, expires_at, data.clone(), options)
            .await;
        let outcome = self.unless_failed(written, &[key]).await?;
        match outcome {
            CreateOutcome::Created => {
                let record = Record {
                    data,
                    expires_at: truncate_to_millis(expires_at),
                    version: 1,
                };
                self.put_front(key, &record).await?;
            }
            CreateOutcome::IdTaken => self.invalidate(key).await?,
        }
        Ok(outcome)
    }

    async fn read(&self, key: &SessionKey) -> Result<Option<Record>> {
        if let Some(record) = self.front_entry(key).await?
            && record.expires_at > OffsetDateTime::now_utc()
        {
            return Ok(Some(record));
        }
        let _guard = self.shards[shard(key)].read().await;
        // A write may have finished while this task waited: its result is in the front.
        if let Some(record) = self.front_entry(key).await?
            && record.expires_at > OffsetDateTime::now_utc()
        {
            return Ok(Some(record));
        }
        let record = self.back.read(key).await?;
        if let Some(record) = &record {
            self.put_front(key, record).await?;
        }
        Ok(record)
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
        let _guards = self.lock(&[current, previous]).await;
        let written = self
            .back
            .update_opts(
                current,
                previous,
                expected_version,
                expires_at,
                data.clone(),
                options,
            )
            .await;
        let outcome = self.unless_failed(written, &[current, previous]).await?;
        match outcome {
            UpdateOutcome::Updated { version } => {
                if current != previous {
                    self.invalidate(previous).await?;
                }
                let record = Record {
                    data,
                    expires_at: truncate_to_millis(expires_at),
                    version,
                };
                self.put_front(current, &record).await?;
            }
            UpdateOutcome::NotFound | UpdateOutcome::Conflict | UpdateOutcome::IdTaken => {
                // The front disagreed with the back (or may): ask the back next time.
                self.invalidate(previous).await?;
                if current != previous {
                    self.invalidate(current).await?;
                }
            }
        }
        Ok(outcome)
    }

    async fn touch(&self, key: &SessionKey, expires_at: OffsetDateTime) -> Result<bool> {
        let _guards = self.lock(&[key]).await;
        {
            let touched = self
                .unless_failed(self.back.touch(key, expires_at).await, &[key])
                .await?;
            // The front entry's copy of the expiry is now wrong either way.
            self.invalidate(key).await?;
            Ok(touched)
        }
    }

    async fn delete(&self, key: &SessionKey) -> Result<()> {
        let _guards = self.lock(&[key]).await;
        self.unless_failed(self.back.delete(key).await, &[key])
            .await?;
        self.invalidate(key).await
    }

    async fn delete_expired(&self) -> Result<u64> {
        let count = self.back.delete_expired().await?;
        self.front.delete_expired().await?;
        Ok(count)
    }

    async fn clear(&self) -> Result<()> {
        let _guards = self.lock_all().await;
        self.back.clear().await?;
        *self.keys.lock() = FrontKeys::default();
        self.front.clear().await
    }

    async fn sessions_of(&self, owner: &Owner) -> Result<Vec<OwnedSession>> {
        self.back.sessions_of(owner).await
    }

    async fn revoke_owner(&self, owner: &Owner, except: Option<&SessionKey>) -> Result<u64> {
        let _guards = self.lock_all().await;
        let revoked = self.back.revoke_owner(owner, except).await;
        *self.keys.lock() = FrontKeys::default();
        self.front.clear().await?;
        revoked
    }
}
