//! The store's Lua scripts (in `src/lua/`, one file per part) and the names the client gives
//! their replies and owner modes: the same names as the scripts' own locals, checked to agree by
//! this module's tests. Keys and arguments are sent in the order `protocol.lua` names them
//! (see `RedisStore::update_opts`).

/// An update in place or a rotation, the new value inline: `protocol.lua`, the checks, the owner
/// check, the write, the owner write.
pub(crate) const UPDATE: &str = concat!(
    include_str!("lua/protocol.lua"),
    include_str!("lua/update_checks.lua"),
    include_str!("lua/owner_check.lua"),
    include_str!("lua/update_swap.lua"),
    include_str!("lua/owner_write.lua"),
);

/// [`UPDATE`] for large values: the new value waits under a staging key (a plain `SET`
/// pipelined just before the script) and is renamed into place, so it never passes through Lua
/// (Redis copies every script argument into Lua and back: measured, a 64 KiB argument makes
/// `EVALSHA` of a bare `SET` 6x slower than the `SET` itself).
pub(crate) const STAGED_UPDATE: &str = concat!(
    include_str!("lua/protocol.lua"),
    include_str!("lua/staged_checks.lua"),
    include_str!("lua/owner_check.lua"),
    include_str!("lua/staged_swap.lua"),
    include_str!("lua/owner_write.lua"),
);

/// A create with an owner record beside the session.
pub(crate) const CREATE_OWNED: &str = include_str!("lua/create_owned.lua");
/// One owner index member revoked, forward markers followed.
pub(crate) const REVOKE_ONE: &str = include_str!("lua/revoke_one.lua");
/// A touch of the session and its owner record.
pub(crate) const TOUCH: &str = include_str!("lua/touch.lua");

/// Replies of [`UPDATE`] and [`STAGED_UPDATE`] (`protocol.lua`).
pub(crate) mod update {
    /// No live record at `previous`.
    pub(crate) const NOT_FOUND: i64 = 0;
    /// Written.
    pub(crate) const UPDATED: i64 = 1;
    /// Another version at `previous`.
    pub(crate) const CONFLICT: i64 = 2;
    /// `current` is live.
    pub(crate) const ID_TAKEN: i64 = 3;
    /// `{NEEDS_INDEX, owner record}`: the owner's index must list `current` first; nothing
    /// changed.
    pub(crate) const NEEDS_INDEX: i64 = 4;

    /// Owner mode: keep the record's owner.
    pub(crate) const KEEP: &str = "k";
    /// Owner mode: set the owner record sent.
    pub(crate) const SET: &str = "s";
    /// Owner mode: clear the owner.
    pub(crate) const CLEAR: &str = "c";
}

/// Replies of [`CREATE_OWNED`].
pub(crate) mod create_owned {
    /// A live session holds the key.
    pub(crate) const ID_TAKEN: i64 = 0;
    /// Created.
    pub(crate) const CREATED: i64 = 1;
}

/// Replies of [`REVOKE_ONE`].
pub(crate) mod revoke_one {
    /// Nothing deleted (gone, another owner, or the session kept).
    pub(crate) const KEPT: i64 = 0;
    /// A live session deleted.
    pub(crate) const REVOKED: i64 = 1;
}

/// Replies of [`TOUCH`].
pub(crate) mod touch {
    /// No session.
    pub(crate) const ABSENT: i64 = 0;
    /// Touched.
    pub(crate) const TOUCHED: i64 = 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scripts declare the client's names with the client's values.
    #[test]
    fn both_sides_name_the_same_values() {
        let protocol = include_str!("lua/protocol.lua");
        for line in [
            format!(
                "local KEEP, SET, CLEAR = '{}', '{}', '{}'",
                update::KEEP,
                update::SET,
                update::CLEAR
            ),
            format!(
                "local NOT_FOUND, UPDATED, CONFLICT, ID_TAKEN, NEEDS_INDEX = {}, {}, {}, {}, {}",
                update::NOT_FOUND,
                update::UPDATED,
                update::CONFLICT,
                update::ID_TAKEN,
                update::NEEDS_INDEX
            ),
        ] {
            assert!(protocol.contains(&line), "protocol.lua lacks {line:?}");
        }
        for (script, line) in [
            (
                CREATE_OWNED,
                format!(
                    "local ID_TAKEN, CREATED = {}, {}",
                    create_owned::ID_TAKEN,
                    create_owned::CREATED
                ),
            ),
            (
                REVOKE_ONE,
                format!(
                    "local KEPT, REVOKED = {}, {}",
                    revoke_one::KEPT,
                    revoke_one::REVOKED
                ),
            ),
            (
                TOUCH,
                format!(
                    "local ABSENT, TOUCHED = {}, {}",
                    touch::ABSENT,
                    touch::TOUCHED
                ),
            ),
        ] {
            assert!(script.contains(&line), "a script lacks {line:?}");
        }
        // Every update script starts with the protocol, so its names are in scope.
        assert!(UPDATE.starts_with(protocol) && STAGED_UPDATE.starts_with(protocol));
    }
}
