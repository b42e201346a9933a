//! The owner index, an optional ability beside the contract: which sessions belong to whom
//! ([`OwnerIndex`]), so that an application can list a user's sessions and log them out
//! everywhere without scanning and decoding every session.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use time::OffsetDateTime;

use crate::error::{Error, ErrorKind, Result};
use crate::id::SessionKey;
use crate::store::{CreateOutcome, SessionStore, UpdateOutcome};

/// The longest owner, in bytes (UTF-8). Fits an indexed column of every SQL backend.
pub const MAX_OWNER_BYTES: usize = 255;

/// The longest label, in bytes (UTF-8).
pub const MAX_LABEL_BYTES: usize = 255;

/// Who a session belongs to: a string the application chooses (a user id, an account number),
/// compared whole and byte for byte (`"alice"` is not `"Alice"`, `"ali"` is not `"alice"`).
/// 1 to [`MAX_OWNER_BYTES`] bytes of UTF-8 without control characters.
///
/// Stores keep it as it is (not hashed): the session data that the application keeps beside it
/// already names the user, so a hash would hide nothing a dump does not show, and a plain owner
/// lets an operator query a table by user. It is never the session token.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Owner(Arc<str>);

impl Owner {
    /// Checks `owner`: 1 to [`MAX_OWNER_BYTES`] bytes, no control characters; otherwise
    /// [`ErrorKind::InvalidInput`].
    pub fn new(owner: impl AsRef<str>) -> Result<Self> {
        let owner = owner.as_ref();
        check_text("owner", owner, MAX_OWNER_BYTES)?;
        if owner.is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "an owner cannot be empty",
            ));
        }
        Ok(Self(owner.into()))
    }

    /// The owner as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Owner").field(&&*self.0).finish()
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn check_text(what: &str, text: &str, max: usize) -> Result<()> {
    if text.len() > max {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "{what} is {} bytes long; at most {max} are allowed",
                text.len()
            ),
        ));
    }
    if text.chars().any(char::is_control) {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("{what} contains a control character"),
        ));
    }
    Ok(())
}

/// What a session's owner entry says: its [`Owner`] and a short label the application chooses
/// to tell the owner's sessions apart on a "your sessions" page (a device, a browser, where it
/// logged in). The label is shown to the owner; it must not hold secrets.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Ownership {
    owner: Owner,
    label: Arc<str>,
}

impl Ownership {
    /// `owner` with `label` (0 to [`MAX_LABEL_BYTES`] bytes, no control characters; otherwise
    /// [`ErrorKind::InvalidInput`]).
    pub fn new(owner: Owner, label: impl AsRef<str>) -> Result<Self> {
        let label = label.as_ref();
        check_text("a session label", label, MAX_LABEL_BYTES)?;
        Ok(Self {
            owner,
            label: label.into(),
        })
    }

    /// `owner` with an empty label.
    pub fn of(owner: Owner) -> Self {
        Self {
            owner,
            label: "".into(),
        }
    }

    /// The owner.
    pub fn owner(&self) -> &Owner {
        &self.owner
    }

    /// The label.
    pub fn label(&self) -> &str {
        &self.label
    }
}

impl fmt::Debug for Ownership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ownership")
            .field("owner", &self.owner)
            .field("label", &&*self.label)
            .finish()
    }
}

/// One live session of an owner, as [`OwnerIndex::sessions_of`] lists it: never its data.
#[derive(Clone, PartialEq, Eq)]
pub struct OwnedSession {
    /// The session's key (not its token: a listing cannot be replayed as cookies).
    pub key: SessionKey,
    /// When it expires.
    pub expires_at: OffsetDateTime,
    /// Its version.
    pub version: u64,
    /// The label written with its ownership.
    pub label: String,
}

impl fmt::Debug for OwnedSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedSession")
            .field("key", &self.key)
            .field("expires_at", &self.expires_at)
            .field("version", &self.version)
            .field("label", &self.label)
            .finish()
    }
}

/// A store that knows the owner of each session: list an owner's live sessions, delete them all
/// but one. An optional ability of a [`SessionStore`]; every backend of this workspace has it.
///
/// - A record has at most one [`Ownership`], written by [`create_owned`](Self::create_owned)
///   or [`update_owned`](Self::update_owned) in the same atomic step as the record. A plain
///   [`SessionStore::create`] writes none; a plain [`SessionStore::update`] keeps the record's
///   (including through a rotation: the ownership follows the record to its new key);
///   [`SessionStore::touch`] keeps it.
/// - [`sessions_of`](Self::sessions_of) lists the live records whose owner is exactly the one
///   asked: a deleted, rotated-away, expired or re-owned session never appears.
/// - [`revoke_owner`](Self::revoke_owner) deletes the owner's records except one and counts the
///   live ones it deleted. **Guarantee**: every record that had this owner when the call started
///   is gone when it returns (except `except`), whatever ran meanwhile: rotations of those
///   records, saves, other creates. A record given this owner while the call runs may survive.
/// - Every outcome of `create_owned`/`update_owned` is the plain operation's outcome: when it is
///   not `Created`/`Updated`, nothing changed, the ownership included.
#[async_trait]
pub trait OwnerIndex: SessionStore {
    /// [`SessionStore::create`], writing `ownership` with the record.
    async fn create_owned(
        &self,
        key: &SessionKey,
        expires_at: OffsetDateTime,
        data: Bytes,
        ownership: &Ownership,
    ) -> Result<CreateOutcome>;

    /// [`SessionStore::update`] (in place or rotating), replacing the record's ownership by
    /// `ownership` (`None`: the record has no owner afterwards).
    async fn update_owned(
        &self,
        current: &SessionKey,
        previous: &SessionKey,
        expected_version: u64,
        expires_at: OffsetDateTime,
        data: Bytes,
        ownership: Option<&Ownership>,
    ) -> Result<UpdateOutcome>;

    /// The live sessions of `owner`, soonest expiry first. Costs in proportion to the owner's
    /// sessions, not the store's.
    async fn sessions_of(&self, owner: &Owner) -> Result<Vec<OwnedSession>>;

    /// Deletes every session of `owner` except `except` (typically the session making the
    /// request: "log out my other devices"; `None`: all of them) and returns how many live ones
    /// it deleted. See the trait's docs for what is guaranteed against concurrent writers.
    async fn revoke_owner(&self, owner: &Owner, except: Option<&SessionKey>) -> Result<u64>;
}

/// The future type of a store method (what `#[async_trait]` makes of `async fn`).
type Boxed<'a, T> = core::pin::Pin<Box<dyn core::future::Future<Output = Result<T>> + Send + 'a>>;

macro_rules! forward_owner_index {
    ($($ty:ty),*) => {$(
        impl<S: OwnerIndex + ?Sized> OwnerIndex for $ty {
            fn create_owned<'a, 'b, 'c, 'async_trait>(&'a self, key: &'b SessionKey, expires_at: OffsetDateTime, data: Bytes, ownership: &'c Ownership) -> Boxed<'async_trait, CreateOutcome>
            where 'a: 'async_trait, 'b: 'async_trait, 'c: 'async_trait, Self: 'async_trait {
                (**self).create_owned(key, expires_at, data, ownership)
            }
            #[allow(clippy::too_many_arguments)]
            fn update_owned<'a, 'b, 'c, 'd, 'async_trait>(&'a self, current: &'b SessionKey, previous: &'c SessionKey, expected_version: u64, expires_at: OffsetDateTime, data: Bytes, ownership: Option<&'d Ownership>) -> Boxed<'async_trait, UpdateOutcome>
            where 'a: 'async_trait, 'b: 'async_trait, 'c: 'async_trait, 'd: 'async_trait, Self: 'async_trait {
                (**self).update_owned(current, previous, expected_version, expires_at, data, ownership)
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

forward_owner_index!(Arc<S>, Box<S>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_and_labels_are_checked() {
        assert_eq!(Owner::new("user:42").unwrap().as_str(), "user:42");
        assert_eq!(Owner::new("é".repeat(127)).unwrap().as_str().len(), 254);
        for bad in [String::new(), "a".repeat(256), "a\nb".into(), "\0".into()] {
            assert_eq!(
                Owner::new(&bad).unwrap_err().kind(),
                ErrorKind::InvalidInput,
                "{bad:?}"
            );
        }
        let owner = Owner::new("u").unwrap();
        assert_eq!(Ownership::new(owner.clone(), "").unwrap().label(), "");
        assert_eq!(Ownership::of(owner.clone()).owner(), &owner);
        for bad in ["x".repeat(256), "tab\there".into()] {
            assert_eq!(
                Ownership::new(owner.clone(), &bad).unwrap_err().kind(),
                ErrorKind::InvalidInput
            );
        }
    }
}
