//! The backend-facing contract: [`SessionStore`] and its types.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use time::OffsetDateTime;

use crate::capabilities::Capabilities;
use crate::error::{Error, ErrorKind, Result};
use crate::id::SessionKey;
use crate::owner::{OwnedSession, Owner, OwnerChange};

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

/// What [`SessionStore::create_opts`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum CreateOutcome {
    /// The record was written with version 1.
    Created,
    /// A live record already holds the key; nothing changed.
    IdTaken,
}

/// What [`SessionStore::update_opts`] did.
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

/// What a write ([`SessionStore::create_opts`], [`SessionStore::update_opts`]) writes with the
/// record, in the same atomic step. The default writes the record alone: a create gets no
/// owner, an update keeps the record's owner.
///
/// Non-exhaustive: what a write carries grows (device metadata, tombstone policy) without a
/// new write method. Build it with [`WriteOptions::new`] and the `with_*` methods.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WriteOptions {
    /// What happens to the record's owner ([`OwnerChange::Keep`] by default).
    pub owner: OwnerChange,
}

impl WriteOptions {
    /// The record alone: no owner change.
    pub const fn new() -> Self {
        Self {
            owner: OwnerChange::Keep,
        }
    }

    /// Sets what happens to the record's owner.
    #[must_use]
    pub fn with_owner(mut self, owner: OwnerChange) -> Self {
        self.owner = owner;
        self
    }

    /// [`ErrorKind::Unsupported`] when these options ask for something a store with
    /// `capabilities` cannot write (an owner without an owner index); checked by a store
    /// before it sends anything, so such a write changes nothing.
    pub fn check(&self, capabilities: &Capabilities) -> Result<()> {
        if matches!(self.owner, OwnerChange::Set(_)) && !capabilities.owner_index {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "this store has no owner index: it cannot write an owner",
            ));
        }
        Ok(())
    }
}

/// The options of a plain write, shared so the plain forms borrow no temporary.
static PLAIN: WriteOptions = WriteOptions::new();

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

fn no_owner_index() -> Error {
    Error::new(
        ErrorKind::Unsupported,
        "this store has no owner index (Capabilities::owner_index is false)",
    )
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
/// There is one method per write: [`create_opts`](Self::create_opts) and
/// [`update_opts`](Self::update_opts) take [`WriteOptions`] (what else is written in the same
/// atomic step). The plain forms `create` and `update` are on [`SessionStoreExt`].
///
/// What a store can do beyond the table is one value, [`capabilities`](Self::capabilities):
/// the owner index ([`sessions_of`](Self::sessions_of), [`revoke_owner`](Self::revoke_owner),
/// [`OwnerChange::Set`]) answers [`ErrorKind::Unsupported`] where it says so.
///
/// Run `conformance-tests` against an implementation: it checks all of this.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Everything a caller must know about this store that the operations do not show. Cheap:
    /// never a round trip.
    fn capabilities(&self) -> Capabilities;

    /// Writes a record at `key` with version 1 if no live record is there (an expired one is
    /// replaced), with what `options` asks for ([`OwnerChange::Set`] gives it an owner; `Keep`
    /// and `Clear` leave it without). Otherwise [`CreateOutcome::IdTaken`] and nothing changes.
    async fn create_opts(
        &self,
        key: &SessionKey,
        expires_at: OffsetDateTime,
        data: Bytes,
        options: &WriteOptions,
    ) -> Result<CreateOutcome>;

    /// The live record at `key`, or `None`. Never creates anything.
    async fn read(&self, key: &SessionKey) -> Result<Option<Record>>;

    /// Replaces the live record at `previous` (which must have `expected_version`) by a record at
    /// `current` with version `expected_version + 1`, `expires_at` and `data`, atomically, with
    /// what `options` asks for (the owner is kept, set or cleared in the same step).
    ///
    /// `current == previous` updates in place; otherwise it rotates the id: afterwards only
    /// `current` exists, and no reader ever sees both or neither. `current` may hold an expired
    /// record (it is replaced) but not a live one ([`UpdateOutcome::IdTaken`]). A store whose
    /// [`Capabilities::rotation`] is partitioned refuses a pair it cannot rotate between with
    /// [`ErrorKind::Unsupported`] and changes nothing.
    async fn update_opts(
        &self,
        current: &SessionKey,
        previous: &SessionKey,
        expected_version: u64,
        expires_at: OffsetDateTime,
        data: Bytes,
        options: &WriteOptions,
    ) -> Result<UpdateOutcome>;

    /// Moves the expiry of the live record at `key`; data, version and owner stay. `false` when
    /// there is no live record (nothing is created).
    async fn touch(&self, key: &SessionKey, expires_at: OffsetDateTime) -> Result<bool>;

    /// Removes the record at `key`, if any. Idempotent.
    async fn delete(&self, key: &SessionKey) -> Result<()>;

    /// Purges expired records and returns how many were removed. Stores whose backend expires
    /// records by itself may return 0.
    async fn delete_expired(&self) -> Result<u64>;

    /// Removes every record of this store's namespace (its table, its key prefix), and nothing
    /// outside it.
    async fn clear(&self) -> Result<()>;

    /// The live sessions of `owner`, soonest expiry first. Costs in proportion to the owner's
    /// sessions, not the store's. [`ErrorKind::Unsupported`] (the default) where
    /// [`Capabilities::owner_index`] is `false`. See [`Owner`] for the rules of the index.
    async fn sessions_of(&self, owner: &Owner) -> Result<Vec<OwnedSession>> {
        let _ = owner;
        Err(no_owner_index())
    }

    /// Deletes every session of `owner` except `except` (typically the session making the
    /// request: "log out my other devices"; `None`: all of them) and returns how many live ones
    /// it deleted. **Guarantee**: every record that had this owner when the call started is gone
    /// when it returns (except `except`), whatever ran meanwhile (rotations, saves, creates); a
    /// record given this owner while the call runs may survive. [`ErrorKind::Unsupported`] (the
    /// default) where [`Capabilities::owner_index`] is `false`.
    async fn revoke_owner(&self, owner: &Owner, except: Option<&SessionKey>) -> Result<u64> {
        let _ = (owner, except);
        Err(no_owner_index())
    }
}

/// Conveniences over any [`SessionStore`]: the plain forms of the writes, and small helpers.
#[async_trait]
pub trait SessionStoreExt: SessionStore {
    /// [`SessionStore::create_opts`] with the record alone (no owner).
    async fn create(
        &self,
        key: &SessionKey,
        expires_at: OffsetDateTime,
        data: Bytes,
    ) -> Result<CreateOutcome> {
        self.create_opts(key, expires_at, data, &PLAIN).await
    }

    /// [`SessionStore::update_opts`] with the record alone (the owner is kept).
    async fn update(
        &self,
        current: &SessionKey,
        previous: &SessionKey,
        expected_version: u64,
        expires_at: OffsetDateTime,
        data: Bytes,
    ) -> Result<UpdateOutcome> {
        self.update_opts(
            current,
            previous,
            expected_version,
            expires_at,
            data,
            &PLAIN,
        )
        .await
    }

    /// Updates the record at `key` in place (no rotation), keeping its owner.
    async fn update_in_place(
        &self,
        key: &SessionKey,
        expected_version: u64,
        expires_at: OffsetDateTime,
        data: Bytes,
    ) -> Result<UpdateOutcome> {
        self.update_opts(key, key, expected_version, expires_at, data, &PLAIN)
            .await
    }

    /// Whether a live record is at `key`.
    async fn exists(&self, key: &SessionKey) -> Result<bool> {
        Ok(self.read(key).await?.is_some())
    }

    /// Whether this store can move a record from `previous` to `current` in one atomic update
    /// ([`Capabilities::can_rotate_between`]). Never a round trip.
    fn can_rotate_between(&self, previous: &SessionKey, current: &SessionKey) -> bool {
        self.capabilities().can_rotate_between(previous, current)
    }
}

impl<S: SessionStore + ?Sized> SessionStoreExt for S {}

/// The future type of a store method (what `#[async_trait]` makes of `async fn`).
type Boxed<'a, T> = core::pin::Pin<Box<dyn core::future::Future<Output = Result<T>> + Send + 'a>>;

// Forwarding hands the inner store's future back as it is: a wrapper such as `Arc<S>` adds no
// allocation of its own. `missing_trait_methods` is denied so that a method added to the trait
// with a default cannot go unforwarded (the wrapper would answer the default, not the store).
macro_rules! forward_store {
    ($($ty:ty),*) => {$(
        #[deny(clippy::missing_trait_methods)]
        impl<S: SessionStore + ?Sized> SessionStore for $ty {
            fn capabilities(&self) -> Capabilities {
                (**self).capabilities()
            }
            fn create_opts<'a, 'b, 'c, 'async_trait>(&'a self, key: &'b SessionKey, expires_at: OffsetDateTime, data: Bytes, options: &'c WriteOptions) -> Boxed<'async_trait, CreateOutcome>
            where 'a: 'async_trait, 'b: 'async_trait, 'c: 'async_trait, Self: 'async_trait {
                (**self).create_opts(key, expires_at, data, options)
            }
            fn read<'a, 'b, 'async_trait>(&'a self, key: &'b SessionKey) -> Boxed<'async_trait, Option<Record>>
            where 'a: 'async_trait, 'b: 'async_trait, Self: 'async_trait {
                (**self).read(key)
            }
            fn update_opts<'a, 'b, 'c, 'd, 'async_trait>(&'a self, current: &'b SessionKey, previous: &'c SessionKey, expected_version: u64, expires_at: OffsetDateTime, data: Bytes, options: &'d WriteOptions) -> Boxed<'async_trait, UpdateOutcome>
            where 'a: 'async_trait, 'b: 'async_trait, 'c: 'async_trait, 'd: 'async_trait, Self: 'async_trait {
                (**self).update_opts(current, previous, expected_version, expires_at, data, options)
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
            fn sessions_of<'a, 'b, 'async_trait>(&'a self, owner: &'b Owner) -> Boxed<'async_trait, Vec<OwnedSession>>
            where 'a: 'async_trait, 'b: 'async_trait, Self: 'async_trait {
                (**self).sessions_of(owner)
            }
            fn revoke_owner<'a, 'b, 'c, 'async_trait>(&'a self, owner: &'b Owner, except: Option<&'c SessionKey>) -> Boxed<'async_trait, u64>
            where 'a: 'async_trait, 'b: 'async_trait, 'c: 'async_trait, Self: 'async_trait {
                (**self).revoke_owner(owner, except)
            }
        }
    )*};
}

forward_store!(Arc<S>, Box<S>);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::owner::Ownership;

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

    #[test]
    fn an_owner_needs_an_owner_index() {
        let owned = WriteOptions::new()
            .with_owner(OwnerChange::Set(Ownership::of(Owner::new("u").unwrap())));
        let without = Capabilities::new();
        let with = Capabilities::new().owner_index(true);
        assert_eq!(
            owned.check(&without).unwrap_err().kind(),
            ErrorKind::Unsupported
        );
        owned.check(&with).unwrap();
        for plain in [
            WriteOptions::new(),
            WriteOptions::new().with_owner(OwnerChange::Clear),
        ] {
            plain.check(&without).unwrap();
            plain.check(&with).unwrap();
        }
        assert_eq!(WriteOptions::default(), WriteOptions::new());
    }
}
