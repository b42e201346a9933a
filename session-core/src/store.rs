//! The backend-facing contract: [`SessionStore`] and its types.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use time::OffsetDateTime;

use crate::error::Result;
use crate::id::SessionKey;

/// One stored session as a store returns it.
#[derive(Clone, PartialEq, Eq)]
pub struct Record {
    /// The session's data, opaque to stores. `Bytes`, so in-process stores hand out their copy
    /// without copying it.
    pub data: Bytes,
    /// When the record stops existing (UTC, millisecond precision).
    pub expires_at: OffsetDateTime,
    /// Owned by the store: 1 after `create`, `expected + 1` after each successful `update`.
    pub version: u64,
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record")
            .field("data_len", &self.data.len())
            .field("expires_at", &self.expires_at)
            .field("version", &self.version)
            .finish()
    }
}

/// What [`SessionStore::create`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum CreateOutcome {
    /// The record was written with version 1.
    Created,
    /// A live record already holds the key; nothing changed.
    IdTaken,
}

/// What [`SessionStore::update`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum UpdateOutcome {
    /// The record now lives at `current` only, with this version (`expected + 1`).
    Updated {
        /// The new version.
        version: u64,
    },
    /// No live record at `previous`; nothing changed.
    NotFound,
    /// The live record at `previous` has another version; nothing changed.
    Conflict,
    /// `current != previous` and a live record holds `current`; nothing changed.
    IdTaken,
}

/// Truncates a time to whole milliseconds, the precision every store keeps.
pub fn truncate_to_millis(at: OffsetDateTime) -> OffsetDateTime {
    let nanos = at.nanosecond();
    at.replace_nanosecond(nanos - nanos % 1_000_000)
        .expect("a smaller nanosecond is valid")
}

/// Milliseconds since the Unix epoch, the integer form SQL and key-value stores keep.
pub fn unix_millis(at: OffsetDateTime) -> i64 {
    // Floor division, so times before the epoch truncate the same way as `truncate_to_millis`.
    at.unix_timestamp_nanos().div_euclid(1_000_000) as i64
}

/// The inverse of [`unix_millis`]; `None` when the value is outside the supported range.
pub fn from_unix_millis(millis: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000).ok()
}

/// A server-side session store: the semantics table of the design, nothing more.
///
/// A record whose `expires_at <= now` (the store's own clock) is absent for every operation,
/// whether or not it was purged. Every operation is atomic with respect to every other caller
/// sharing the backend, in this process or another, and visible to all of them once it returns.
/// A success is never reported for something that did not happen.
///
/// **An error means the outcome is unknown.** A network store can apply a write and lose its
/// reply (a cut connection, a timeout): callers must not assume that a failed write changed
/// nothing. A store says in its docs when an error does guarantee that nothing changed (for
/// example a request refused before it was sent). The front (`SessionManager`) resolves
/// in-doubt saves and rotations by re-reading.
///
/// Data arrives as [`Bytes`]: a store may keep it as it is (an in-process store holds the
/// caller's buffer without copying it) or write it out and drop it.
///
/// Run `conformance-tests` against an implementation: it checks all of this.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Writes a record at `key` with version 1 if no live record is there (an expired one is
    /// replaced). Otherwise [`CreateOutcome::IdTaken`] and nothing changes.
    async fn create(
        &self,
        key: &SessionKey,
        expires_at: OffsetDateTime,
        data: Bytes,
    ) -> Result<CreateOutcome>;

    /// The live record at `key`, or `None`. Never creates anything.
    async fn read(&self, key: &SessionKey) -> Result<Option<Record>>;

    /// Replaces the live record at `previous` (which must have `expected_version`) by a record at
    /// `current` with version `expected_version + 1`, `expires_at` and `data`, atomically.
    ///
    /// `current == previous` updates in place; otherwise it rotates the id: afterwards only
    /// `current` exists, and no reader ever sees both or neither. `current` may hold an expired
    /// record (it is replaced) but not a live one ([`UpdateOutcome::IdTaken`]).
    async fn update(
        &self,
        current: &SessionKey,
        previous: &SessionKey,
        expected_version: u64,
        expires_at: OffsetDateTime,
        data: Bytes,
    ) -> Result<UpdateOutcome>;

    /// Moves the expiry of the live record at `key`; data and version stay. `false` when there
    /// is no live record (nothing is created).
    async fn touch(&self, key: &SessionKey, expires_at: OffsetDateTime) -> Result<bool>;

    /// Removes the record at `key`, if any. Idempotent.
    async fn delete(&self, key: &SessionKey) -> Result<()>;

    /// Purges expired records and returns how many were removed. Stores whose backend expires
    /// records by itself may return 0.
    async fn delete_expired(&self) -> Result<u64>;

    /// Removes every record of this store's namespace (its table, its key prefix), and nothing
    /// outside it.
    async fn clear(&self) -> Result<()>;

    /// Whether this store can move a record from `previous` to `current` in one atomic
    /// [`update`](Self::update). Never a round trip.
    ///
    /// `true` for every pair (the default) unless the store partitions its keys so that one
    /// atomic operation reaches only the keys of one partition: Redis Cluster runs a script on
    /// one hash slot. Such a store refuses an `update` across partitions with
    /// [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported) and changes nothing: a rotation
    /// that cannot be atomic fails loudly, never half done. Whoever picks the new id of a
    /// rotation draws fresh ids until this holds (the front does); the drawn id is still fully
    /// random, only its key's partition is chosen.
    fn can_rotate_between(&self, previous: &SessionKey, current: &SessionKey) -> bool {
        let _ = (previous, current);
        true
    }
}

/// Conveniences over any [`SessionStore`].
#[async_trait]
pub trait SessionStoreExt: SessionStore {
    /// Updates the record at `key` in place (no rotation).
    async fn update_in_place(
        &self,
        key: &SessionKey,
        expected_version: u64,
        expires_at: OffsetDateTime,
        data: Bytes,
    ) -> Result<UpdateOutcome> {
        self.update(key, key, expected_version, expires_at, data)
            .await
    }

    /// Whether a live record is at `key`.
    async fn exists(&self, key: &SessionKey) -> Result<bool> {
        Ok(self.read(key).await?.is_some())
    }
}

impl<S: SessionStore + ?Sized> SessionStoreExt for S {}

/// The future type of a store method (what `#[async_trait]` makes of `async fn`).
type Boxed<'a, T> = core::pin::Pin<Box<dyn core::future::Future<Output = Result<T>> + Send + 'a>>;

// Forwarding hands the inner store's future back as it is: a wrapper such as `Arc<S>` adds no
// allocation of its own.
macro_rules! forward_store {
    ($($ty:ty),*) => {$(
        impl<S: SessionStore + ?Sized> SessionStore for $ty {
            fn create<'a, 'b, 'async_trait>(&'a self, key: &'b SessionKey, expires_at: OffsetDateTime, data: Bytes) -> Boxed<'async_trait, CreateOutcome>
            where 'a: 'async_trait, 'b: 'async_trait, Self: 'async_trait {
                (**self).create(key, expires_at, data)
            }
            fn read<'a, 'b, 'async_trait>(&'a self, key: &'b SessionKey) -> Boxed<'async_trait, Option<Record>>
            where 'a: 'async_trait, 'b: 'async_trait, Self: 'async_trait {
                (**self).read(key)
            }
            fn update<'a, 'b, 'c, 'async_trait>(&'a self, current: &'b SessionKey, previous: &'c SessionKey, expected_version: u64, expires_at: OffsetDateTime, data: Bytes) -> Boxed<'async_trait, UpdateOutcome>
            where 'a: 'async_trait, 'b: 'async_trait, 'c: 'async_trait, Self: 'async_trait {
                (**self).update(current, previous, expected_version, expires_at, data)
            }
            fn touch<'a, 'b, 'async_trait>(&'a self, key: &'b SessionKey, expires_at: OffsetDateTime) -> Boxed<'async_trait, bool>
            where 'a: 'async_trait, 'b: 'async_trait, Self: 'async_trait {
                (**self).touch(key, expires_at)
            }
            fn delete<'a, 'b, 'async_trait>(&'a self, key: &'b SessionKey) -> Boxed<'async_trait, ()>
            where 'a: 'async_trait, 'b: 'async_trait, Self: 'async_trait {
                (**self).delete(key)
            }
            fn delete_expired<'a, 'async_trait>(&'a self) -> Boxed<'async_trait, u64>
            where 'a: 'async_trait, Self: 'async_trait {
                (**self).delete_expired()
            }
            fn clear<'a, 'async_trait>(&'a self) -> Boxed<'async_trait, ()>
            where 'a: 'async_trait, Self: 'async_trait {
                (**self).clear()
            }
            fn can_rotate_between(&self, previous: &SessionKey, current: &SessionKey) -> bool {
                (**self).can_rotate_between(previous, current)
            }
        }
    )*};
}

forward_store!(Arc<S>, Box<S>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_round_trip_and_truncate() {
        let at = OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_789).unwrap();
        let cut = truncate_to_millis(at);
        assert_eq!(cut.unix_timestamp_nanos(), 1_700_000_000_123_000_000);
        assert_eq!(unix_millis(at), 1_700_000_000_123);
        assert_eq!(from_unix_millis(unix_millis(at)), Some(cut));
        let before_epoch = OffsetDateTime::from_unix_timestamp_nanos(-1_500_000).unwrap();
        assert_eq!(unix_millis(before_epoch), -2);
        assert_eq!(from_unix_millis(-2), Some(truncate_to_millis(before_epoch)));
        assert_eq!(from_unix_millis(i64::MAX), None);
    }
}
