//! The one place where sqlx's MySQL errors become session errors.

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

/// Maps an sqlx error met while `doing` something to a session [`Error`], keeping it as the
/// source and marking what a retry may fix (lost connections, pool timeouts, deadlocks, too
/// many connections, a killed connection or query, a server shutting down) as transient.
pub(crate) fn map_sqlx_error(doing: &'static str, error: sqlx::Error) -> Error {
    use sqlx::Error as E;
    let (kind, transient) = match &error {
        E::Database(_) => match error_number(&error) {
            // deadlock, lock wait timeout, too many connections, server shutdown, connection
            // or query killed, server gone away / lost during the query
            Some(1213 | 1205 | 1040 | 1053 | 1927 | 1317 | 2006 | 2013) => {
                (ErrorKind::Backend, true)
            }
            // access denied (user, database, table, command), unknown database
            Some(1045 | 1044 | 1142 | 1143 | 1049) => (ErrorKind::Config, false),
            // out of range value: only a stored value can cause it (a version at the top of
            // BIGINT or a negative one taken by LAST_INSERT_ID), since every value bound is
            // checked first
            Some(1264 | 1690) => (ErrorKind::Decode, false),
            _ => (ErrorKind::Backend, false),
        },
        E::Io(_) | E::PoolTimedOut | E::Protocol(_) | E::WorkerCrashed => {
            (ErrorKind::Backend, true)
        }
        E::Configuration(_) | E::Tls(_) => (ErrorKind::Config, false),
        E::ColumnDecode { .. } | E::Decode(_) | E::TypeNotFound { .. } | E::ColumnNotFound(_) => {
            (ErrorKind::Decode, false)
        }
        _ => (ErrorKind::Backend, false),
    };
    Error::with_source(kind, format!("mysql: {doing}"), error).transient(transient)
}
