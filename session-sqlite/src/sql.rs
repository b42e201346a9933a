//! The statements of `SqliteStore`, written once per table: the SQL, nothing else.

/// The statements of one table, built once with its quoted name.
pub(crate) struct Sql {
    pub(crate) create: String,
    pub(crate) read: String,
    pub(crate) live_version: String,
    pub(crate) update: String,
    pub(crate) update_owned: String,
    pub(crate) update_checked: String,
    pub(crate) delete_occupant: String,
    pub(crate) rotate: String,
    pub(crate) rotate_owned: String,
    pub(crate) sessions_of: String,
    pub(crate) count_owned: String,
    pub(crate) revoke: String,
    pub(crate) touch: String,
    pub(crate) delete: String,
    pub(crate) delete_expired: String,
    pub(crate) clear: String,
}

impl Sql {
    pub(crate) fn new(table: &str) -> Self {
        let t = format!("\"{table}\"");
        Self {
            // ?5 owner, ?6 label: NULL for a plain create (an expired owned record replaced by
            // a plain create loses its owner).
            create: format!(
                "INSERT INTO {t} (key, expires_at, version, data, owner, label) VALUES (?1, ?2, 1, ?3, ?5, ?6) \
                 ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at, version = 1, data = excluded.data, \
                 owner = excluded.owner, label = excluded.label \
                 WHERE {t}.expires_at <= ?4"
            ),
            read: format!(
                "SELECT expires_at, version, data FROM {t} WHERE key = ?1 AND expires_at > ?2"
            ),
            live_version: format!("SELECT version FROM {t} WHERE key = ?1 AND expires_at > ?2"),
            update: format!(
                "UPDATE {t} SET expires_at = ?2, version = ?3, data = ?4 WHERE key = ?1"
            ),
            update_owned: format!(
                "UPDATE {t} SET expires_at = ?2, version = ?3, data = ?4, owner = ?5, label = ?6 WHERE key = ?1"
            ),
            // The in-place save as one statement: the checks are in its WHERE (?5 the expected
            // version, ?6 now); when it changes nothing, a read tells why.
            update_checked: format!(
                "UPDATE {t} SET expires_at = ?2, version = ?3, data = ?4 WHERE key = ?1 AND version = ?5 AND expires_at > ?6"
            ),
            delete_occupant: format!("DELETE FROM {t} WHERE key = ?1 AND expires_at <= ?2"),
            rotate: format!(
                "UPDATE {t} SET key = ?1, expires_at = ?3, version = ?4, data = ?5 WHERE key = ?2"
            ),
            rotate_owned: format!(
                "UPDATE {t} SET key = ?1, expires_at = ?3, version = ?4, data = ?5, owner = ?6, label = ?7 WHERE key = ?2"
            ),
            // Along the owner index: ?1 owner, ?2 now.
            sessions_of: format!(
                "SELECT key, expires_at, version, label FROM {t} WHERE owner = ?1 AND expires_at > ?2 \
                 ORDER BY expires_at, key"
            ),
            // ?1 owner, ?2 the key kept (NULL: none), ?3 now.
            count_owned: format!(
                "SELECT count(*) FROM {t} WHERE owner = ?1 AND key IS NOT ?2 AND expires_at > ?3"
            ),
            revoke: format!("DELETE FROM {t} WHERE owner = ?1 AND key IS NOT ?2"),
            touch: format!("UPDATE {t} SET expires_at = ?2 WHERE key = ?1 AND expires_at > ?3"),
            delete: format!("DELETE FROM {t} WHERE key = ?1"),
            // One bounded chunk, oldest first along the expiry index: ?1 now, ?2 chunk size.
            delete_expired: format!(
                "DELETE FROM {t} WHERE key IN (SELECT key FROM {t} WHERE expires_at <= ?1 ORDER BY expires_at LIMIT ?2)"
            ),
            clear: format!("DELETE FROM {t}"),
        }
    }

    pub(crate) fn create_table(table: &str) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS \"{table}\" (\
                 key BLOB PRIMARY KEY NOT NULL, \
                 expires_at INTEGER NOT NULL, \
                 version INTEGER NOT NULL, \
                 data BLOB NOT NULL, \
                 owner TEXT, \
                 label TEXT\
             ) WITHOUT ROWID"
        )
    }

    pub(crate) fn create_index(table: &str) -> String {
        format!("CREATE INDEX IF NOT EXISTS \"{table}_expires_at\" ON \"{table}\" (expires_at)")
    }

    /// Partial: sessions without an owner (the common case) cost the index nothing.
    pub(crate) fn create_owner_index(table: &str) -> String {
        format!(
            "CREATE INDEX IF NOT EXISTS \"{table}_owner\" ON \"{table}\" (owner) WHERE owner IS NOT NULL"
        )
    }
}
