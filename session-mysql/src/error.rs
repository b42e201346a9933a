//! The one place where sqlx's MySQL errors become session errors: what the server's error
//! numbers mean; the rest of the mapping is shared with the other sqlx store
//! (`session_sqlx::map_error`).

use session_core::{Error, ErrorKind};
use sqlx::mysql::MySqlDatabaseError;

/// `ER_DUP_ENTRY`: a duplicate primary key.
pub(crate) const DUP_ENTRY: u16 = 1062;
/// `ER_LOCK_DEADLOCK`: InnoDB picked this transaction as a deadlock victim (rolled back).
pub(crate) const DEADLOCK: u16 = 1213;
/// `ER_LOCK_WAIT_TIMEOUT`: a row lock was not granted in time (the statement was rolled back).
pub(crate) const LOCK_WAIT_TIMEOUT: u16 = 1205;

/// The server's error number, if `error` is one.
pub(crate) fn error_number(error: &sqlx::Error) -> Option<u16> {
    match error {
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<MySqlDatabaseError>()
            .map(MySqlDatabaseError::number),
        _ => None,
    }
}

/// Whether a rotation that met `error` is rolled back and may simply run again: a deadlock, a
/// lock wait timeout, or a key taken by a concurrent create after our look.
pub(crate) fn is_retryable(error: &sqlx::Error) -> bool {
    matches!(
        error_number(error),
        Some(DEADLOCK | LOCK_WAIT_TIMEOUT | DUP_ENTRY)
    )
}

/// What a MySQL/MariaDB error means: transient for what a retry may fix (deadlocks, lock wait
/// timeouts, too many connections, a killed connection or query, a server shutting down or
/// gone), `Config` for refused access and unknown databases, `Decode` for values only a stored
/// one can put out of range.
pub(crate) fn database_kind(db: &dyn sqlx::error::DatabaseError) -> Option<(ErrorKind, bool)> {
    let number = db
        .try_downcast_ref::<MySqlDatabaseError>()
        .map(MySqlDatabaseError::number)?;
    match number {
        // deadlock, lock wait timeout, too many connections, server shutdown, connection or
        // query killed, server gone away / lost during the query
        1213 | 1205 | 1040 | 1053 | 1927 | 1317 | 2006 | 2013 => Some((ErrorKind::Backend, true)),
        // access denied (user, database, table, command), unknown database
        1045 | 1044 | 1142 | 1143 | 1049 => Some((ErrorKind::Config, false)),
        // out of range value: only a stored value can cause it (a version at the top of BIGINT
        // or a negative one taken by LAST_INSERT_ID), since every value bound is checked first
        1264 | 1690 => Some((ErrorKind::Decode, false)),
        _ => None,
    }
}

/// Maps an sqlx error met while `doing` something to a session [`Error`], keeping it as the
/// source and marking what a retry may fix as transient.
pub(crate) fn map_sqlx_error(doing: &'static str, error: sqlx::Error) -> Error {
    session_sqlx::map_error("mysql", doing, error, database_kind)
}
