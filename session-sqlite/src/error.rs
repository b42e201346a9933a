//! The one place where rusqlite's errors become session errors.

use rusqlite::ErrorCode;
use session_core::{Error, ErrorKind};

/// Maps a rusqlite error met while `doing` something to a session [`Error`], keeping it as the
/// source. Busy and locked databases are transient (another process holds the write lock);
/// values that do not decode are [`ErrorKind::Decode`].
pub(crate) fn map_sqlite_error(doing: &'static str, error: rusqlite::Error) -> Error {
    use rusqlite::Error as E;
    match &error {
        E::SqliteFailure(failure, _) => {
            let (kind, transient, what) = match failure.code {
                ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => (
                    ErrorKind::Backend,
                    true,
                    "the database is locked by another connection",
                ),
                ErrorCode::NotADatabase => (
                    ErrorKind::Backend,
                    false,
                    "the file is not an SQLite database",
                ),
                ErrorCode::DatabaseCorrupt => {
                    (ErrorKind::Backend, false, "the database file is corrupt")
                }
                ErrorCode::CannotOpen => (
                    ErrorKind::Backend,
                    false,
                    "cannot open the database file (does its directory exist and is it writable?)",
                ),
                ErrorCode::ReadOnly => (ErrorKind::Backend, false, "the database is read-only"),
                ErrorCode::DiskFull => (ErrorKind::Backend, false, "the disk is full"),
                ErrorCode::SystemIoFailure => (ErrorKind::Backend, true, "an I/O error occurred"),
                ErrorCode::TooBig => (
                    ErrorKind::TooLarge,
                    false,
                    "a value is larger than SQLite's limit",
                ),
                _ => (ErrorKind::Backend, false, "the statement failed"),
            };
            Error::with_source(kind, format!("sqlite: {doing}: {what}"), error).transient(transient)
        }
        E::FromSqlConversionFailure(..)
        | E::InvalidColumnType(..)
        | E::IntegralValueOutOfRange(..) => Error::with_source(
            ErrorKind::Decode,
            format!("sqlite: {doing}: a stored row is corrupt"),
            error,
        ),
        _ => Error::with_source(ErrorKind::Backend, format!("sqlite: {doing}"), error),
    }
}
