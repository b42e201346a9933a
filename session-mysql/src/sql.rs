//! The statements of `MysqlStore`, written once per table: the SQL, nothing else.

use crate::store::PURGE_CHUNK;

/// The server's clock in Unix milliseconds. `@@timestamp` is the statement's start time as a
/// Unix timestamp with microseconds, independent of the session's `time_zone` (which
/// `UNIX_TIMESTAMP(NOW(3))` is not, around a daylight-saving change).
const NOW: &str = "CAST(FLOOR(@@timestamp * 1000) AS SIGNED)";

pub(crate) struct Sql {
    pub(crate) table: String,
    pub(crate) exists: &'static str,
    pub(crate) layout: String,
    pub(crate) create: String,
    pub(crate) read: String,
    pub(crate) version: String,
    pub(crate) update: String,
    pub(crate) rotate: String,
    pub(crate) lock_pair: String,
    pub(crate) remove_expired_at: String,
    pub(crate) move_row: String,
    pub(crate) touch: String,
    pub(crate) delete: String,
    pub(crate) delete_expired: String,
    pub(crate) clear: String,
    pub(crate) counts: String,
    pub(crate) drop: String,
    pub(crate) owner_layout: String,
    pub(crate) owner_columns: String,
    pub(crate) sessions_of: String,
    pub(crate) count_owned: String,
    pub(crate) revoke: String,
}

impl Sql {
    pub(crate) fn new(table: &str) -> Self {
        let t = format!("`{table}`");
        Self {
            table: format!(
                "CREATE TABLE IF NOT EXISTS {t} (\
                     k BINARY(32) NOT NULL PRIMARY KEY, \
                     expires_at BIGINT NOT NULL, \
                     version BIGINT NOT NULL, \
                     data LONGBLOB NOT NULL, \
                     owner VARBINARY(255) NULL, \
                     label VARBINARY(255) NULL, \
                     INDEX `{table}_expires_at` (expires_at), \
                     INDEX `{table}_owner` (owner)) ENGINE=InnoDB"
            ),
            exists: "SELECT COUNT(*) FROM information_schema.tables \
                     WHERE table_schema = DATABASE() AND table_name = ?",
            layout: format!("SELECT k, expires_at, version, data FROM {t} LIMIT 0"),
            // Assignments run left to right and see the values assigned before them: the
            // expiry, which the conditions read, is assigned last. A live row keeps every
            // value and calls LAST_INSERT_ID(version), which the OK packet reports (an insert
            // reports 0): with the FOUND_ROWS flag sqlx sets, an insert and an untouched
            // duplicate both count 1 row, a replaced expired row 2.
            create: format!(
                "INSERT INTO {t} (k, expires_at, version, data, owner, label) VALUES (?, ?, 1, ?, ?, ?) \
                 ON DUPLICATE KEY UPDATE \
                 data = IF(expires_at <= {NOW}, VALUES(data), data), \
                 owner = IF(expires_at <= {NOW}, VALUES(owner), owner), \
                 label = IF(expires_at <= {NOW}, VALUES(label), label), \
                 version = IF(expires_at <= {NOW}, 1, LAST_INSERT_ID(version)), \
                 expires_at = IF(expires_at <= {NOW}, VALUES(expires_at), expires_at)"
            ),
            read: format!(
                "SELECT expires_at, version, data FROM {t} WHERE k = ? AND expires_at > {NOW}"
            ),
            version: format!("SELECT version FROM {t} WHERE k = ? AND expires_at > {NOW}"),
            // ? expiry, ? data, (? set owner, ? owner, ? set owner, ? label), ? key, ? expected.
            update: format!(
                "UPDATE {t} SET expires_at = ?, version = version + 1, data = ?, owner = IF(?, ?, owner), label = IF(?, ?, label) \
                 WHERE k = ? AND version = ? AND expires_at > {NOW}"
            ),
            // ? current, ? expiry, ? data, (the four owner values), ? previous, ? expected. Any
            // row at `current`, live or expired, makes it fail on the primary key (then the
            // locking path decides).
            rotate: format!(
                "UPDATE {t} SET k = ?, expires_at = ?, version = version + 1, data = ?, owner = IF(?, ?, owner), label = IF(?, ?, label) \
                 WHERE k = ? AND version = ? AND expires_at > {NOW}"
            ),
            lock_pair: format!(
                "SELECT k, version, expires_at > {NOW} AS live FROM {t} \
                 WHERE k IN (?, ?) ORDER BY k FOR UPDATE"
            ),
            remove_expired_at: format!("DELETE FROM {t} WHERE k = ? AND expires_at <= {NOW}"),
            // ? current, ? expiry, ? version, ? data, (the four owner values), ? previous.
            move_row: format!(
                "UPDATE {t} SET k = ?, expires_at = ?, version = ?, data = ?, owner = IF(?, ?, owner), label = IF(?, ?, label) WHERE k = ?"
            ),
            touch: format!("UPDATE {t} SET expires_at = ? WHERE k = ? AND expires_at > {NOW}"),
            delete: format!("DELETE FROM {t} WHERE k = ?"),
            delete_expired: format!(
                "DELETE FROM {t} WHERE expires_at <= {NOW} LIMIT {PURGE_CHUNK}"
            ),
            clear: format!("DELETE FROM {t} LIMIT {PURGE_CHUNK}"),
            counts: format!(
                "SELECT CAST(COALESCE(SUM(expires_at > {NOW}), 0) AS SIGNED), \
                        CAST(COALESCE(SUM(expires_at <= {NOW}), 0) AS SIGNED) FROM {t}"
            ),
            drop: format!("DROP TABLE IF EXISTS {t}"),
            owner_layout: format!("SELECT owner, label FROM {t} LIMIT 0"),
            // Tables made before the owner index. Bytes, not text: owners compare exactly
            // (no collation folds case or trailing spaces).
            owner_columns: format!(
                "ALTER TABLE {t} ADD COLUMN owner VARBINARY(255) NULL, \
                 ADD COLUMN label VARBINARY(255) NULL, ADD INDEX `{table}_owner` (owner)"
            ),
            sessions_of: format!(
                "SELECT k, expires_at, version, label FROM {t} WHERE owner = ? AND expires_at > {NOW} \
                 ORDER BY expires_at, k"
            ),
            // ? owner, ? the key kept (empty: none). A locking read in REPEATABLE READ: the
            // owner's index range is locked, gaps included, so no row of the owner moves or
            // arrives until the revoke commits.
            count_owned: format!(
                "SELECT CAST(COALESCE(SUM(expires_at > {NOW}), 0) AS SIGNED) FROM {t} \
                 WHERE owner = ? AND k <> ? FOR UPDATE"
            ),
            revoke: format!("DELETE FROM {t} WHERE owner = ? AND k <> ?"),
        }
    }
}
