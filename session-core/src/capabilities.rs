//! [`Capabilities`]: the one answer to "what can this store do".

use std::time::Duration;

use crate::id::SessionKey;

/// Everything a caller (the front, tools, the conformance suite, `session-any`) must know about
/// a store that its operations do not show. One value per store, from
/// [`SessionStore::capabilities`](crate::SessionStore::capabilities).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// The backend drops expired records by itself (a server's key expiry, an in-process
    /// sweep), so [`delete_expired`](crate::SessionStore::delete_expired) may count fewer
    /// records than expired.
    pub expires_by_itself: bool,
    /// Two stores opened with the same configuration share their sessions (a server, a file).
    /// `false` for a store private to its instance (in-process memory).
    pub shared: bool,
    /// `StoreAdmin::counts` reports expired records still stored.
    pub counts_expired: bool,
    /// The store keeps an owner index: writes take [`OwnerChange::Set`](crate::OwnerChange),
    /// and [`sessions_of`](crate::SessionStore::sessions_of) /
    /// [`revoke_owner`](crate::SessionStore::revoke_owner) work. Where `false` they answer
    /// [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported) and change nothing.
    pub owner_index: bool,
    /// Which pairs of keys one atomic rotation can join.
    pub rotation: Rotation,
    /// How long the store waits for an answer that does not come before it answers itself,
    /// with a transient error: the operation deadline of a SQL store, the per-command response
    /// timeout of Redis (an operation stops at its first command that times out). `None` for
    /// stores that wait on nothing remote (in-process stores). Under a frozen server every
    /// operation answers within it; the front fits its re-read after an unknown outcome into
    /// the same deadline plus a tenth.
    pub deadline: Option<Duration>,
    /// Reading a record back after a write whose outcome is unknown proves the write as well as
    /// the store's own acknowledgement would. `false` for a store that acknowledges a write only
    /// once replicas hold it (Redis `wait_replicas`): a re-read on the master cannot show that,
    /// so the front reports the error instead of a success it cannot vouch for.
    pub rereads_confirm_writes: bool,
}

/// Which keys one atomic [`update_opts`](crate::SessionStore::update_opts) can rotate between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rotation {
    /// Any two keys.
    Anywhere,
    /// Only keys whose first `bits` bits are equal: a partitioned store whose atomic operations
    /// reach one partition (Redis Cluster runs a script on one hash slot, and this store puts a
    /// key's first byte in its hash tag: `bits = 8`). A rotation across partitions is refused
    /// with `Unsupported` and changes nothing; whoever picks the new id draws ids until the
    /// pair is accepted (the front does), so the id stays fully random and only its key's
    /// partition is chosen.
    WithinPartition {
        /// Leading bits of the key that name its partition (1 to 256).
        bits: u16,
    },
}

impl Capabilities {
    /// A shared store that expires nothing by itself, counts expired records, has no owner
    /// index, rotates between any keys, keeps no deadline and whose re-reads confirm writes:
    /// what a plain SQL store is. Adjust with the setters.
    pub const fn new() -> Self {
        Self {
            expires_by_itself: false,
            shared: true,
            counts_expired: true,
            owner_index: false,
            rotation: Rotation::Anywhere,
            deadline: None,
            rereads_confirm_writes: true,
        }
    }

    /// Sets [`expires_by_itself`](Self::expires_by_itself).
    #[must_use]
    pub const fn expires_by_itself(mut self, value: bool) -> Self {
        self.expires_by_itself = value;
        self
    }

    /// Sets [`shared`](Self::shared).
    #[must_use]
    pub const fn shared(mut self, value: bool) -> Self {
        self.shared = value;
        self
    }

    /// Sets [`counts_expired`](Self::counts_expired).
    #[must_use]
    pub const fn counts_expired(mut self, value: bool) -> Self {
        self.counts_expired = value;
        self
    }

    /// Sets [`owner_index`](Self::owner_index).
    #[must_use]
    pub const fn owner_index(mut self, value: bool) -> Self {
        self.owner_index = value;
        self
    }

    /// Sets [`rotation`](Self::rotation).
    #[must_use]
    pub const fn rotation(mut self, value: Rotation) -> Self {
        self.rotation = value;
        self
    }

    /// Sets [`deadline`](Self::deadline).
    #[must_use]
    pub const fn deadline(mut self, value: Option<Duration>) -> Self {
        self.deadline = value;
        self
    }

    /// Sets [`rereads_confirm_writes`](Self::rereads_confirm_writes).
    #[must_use]
    pub const fn rereads_confirm_writes(mut self, value: bool) -> Self {
        self.rereads_confirm_writes = value;
        self
    }

    /// Whether one atomic update can move a record from `previous` to `current`.
    pub fn can_rotate_between(&self, previous: &SessionKey, current: &SessionKey) -> bool {
        match self.rotation {
            Rotation::Anywhere => true,
            Rotation::WithinPartition { bits } => {
                let (a, b) = (previous.as_bytes(), current.as_bytes());
                let whole = usize::from(bits / 8).min(a.len());
                if a[..whole] != b[..whole] {
                    return false;
                }
                let rest = bits % 8;
                if rest == 0 || whole == a.len() {
                    return true;
                }
                let mask = 0xffu8 << (8 - rest);
                a[whole] & mask == b[whole] & mask
            }
        }
    }
}

impl Default for Capabilities {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(first: u8, second: u8) -> SessionKey {
        let mut bytes = [7u8; 32];
        bytes[0] = first;
        bytes[1] = second;
        SessionKey::from_bytes(&bytes).unwrap()
    }

    #[test]
    fn partitions_compare_leading_bits_only() {
        let anywhere = Capabilities::new();
        assert!(anywhere.can_rotate_between(&key(0, 0), &key(255, 255)));
        let slot = Capabilities::new().rotation(Rotation::WithinPartition { bits: 8 });
        assert!(slot.can_rotate_between(&key(9, 0), &key(9, 255)));
        assert!(!slot.can_rotate_between(&key(9, 0), &key(10, 0)));
        let twelve = Capabilities::new().rotation(Rotation::WithinPartition { bits: 12 });
        assert!(twelve.can_rotate_between(&key(9, 0x10), &key(9, 0x1f)));
        assert!(!twelve.can_rotate_between(&key(9, 0x10), &key(9, 0x20)));
        let four = Capabilities::new().rotation(Rotation::WithinPartition { bits: 4 });
        assert!(four.can_rotate_between(&key(0x90, 0), &key(0x9f, 0)));
        assert!(!four.can_rotate_between(&key(0x90, 0), &key(0xa0, 0)));
        let all = Capabilities::new().rotation(Rotation::WithinPartition { bits: 256 });
        assert!(all.can_rotate_between(&key(1, 2), &key(1, 2)));
        assert!(!all.can_rotate_between(&key(1, 2), &key(1, 3)));
    }
}
