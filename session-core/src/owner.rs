//! The owner index's vocabulary: which sessions belong to whom ([`Owner`], [`Ownership`],
//! [`OwnerChange`], [`OwnedSession`]), so that an application can list a user's sessions and log
//! them out everywhere without scanning and decoding every session.

use std::fmt;
use std::sync::Arc;

use time::OffsetDateTime;

use crate::error::{Error, ErrorKind, Result};
use crate::id::SessionKey;

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

/// One live session of an owner, as [`SessionStore::sessions_of`](crate::SessionStore::sessions_of) lists it: never its data.
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

/// What a write does to the record's owner ([`WriteOptions::owner`](crate::WriteOptions)).
///
/// The rules of the owner index, for stores whose
/// [`Capabilities::owner_index`](crate::Capabilities) is `true`:
///
/// - A record has at most one [`Ownership`], written in the same atomic step as the record. A
///   create with [`Keep`](Self::Keep) or [`Clear`](Self::Clear) writes none (a create over an
///   expired owned record does not inherit its owner); an update with `Keep` keeps the record's
///   (through a rotation too: the ownership follows the record to its new key); `touch` keeps
///   it.
/// - [`sessions_of`](crate::SessionStore::sessions_of) lists the live records whose owner is
///   exactly the one asked: a deleted, rotated-away, expired or re-owned session never appears.
/// - [`revoke_owner`](crate::SessionStore::revoke_owner) deletes the owner's records except one
///   and counts the live ones it deleted (see its docs for the guarantee under concurrency).
/// - When a write's outcome is not `Created`/`Updated`, nothing changed, the ownership included.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum OwnerChange {
    /// Keep the record's owner (a create: none).
    #[default]
    Keep,
    /// Give the record this owner (and label), replacing any other.
    Set(Ownership),
    /// The record has no owner afterwards.
    Clear,
}

impl OwnerChange {
    /// `Set` for `Some`, `Clear` for `None`.
    pub fn replace(ownership: Option<Ownership>) -> Self {
        ownership.map_or(Self::Clear, Self::Set)
    }
}

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
