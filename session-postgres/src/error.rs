//! The one place where sqlx's errors become session errors.

use session_core::{Error, ErrorKind};

/// SQLSTATE of a unique violation.
pub(crate) const UNIQUE_VIOLATION: &str = "23505";

/// Maps an sqlx error met while `doing` something to a session [`Error`], keeping it as the
/// source and marking what a retry may fix (lost connections, pool timeouts, serialization
/// failures, server shutdowns) as transient.
pub(crate) fn map_sqlx_error(doing: &'static str, error: sqlx::Error) -> Error {
    use sqlx::Error as E;
    let (kind, transient) = match &error {
        E::Database(db) => match db.code().as_deref() {
            // serialization failure, deadlock, too many connections, admin/crash shutdown,
            // cannot connect now, connection failures
            Some(
                "40001" | "40P01" | "53300" | "57P01" | "57P02" | "57P03" | "08000" | "08003"
                | "08006",
            ) => (ErrorKind::Backend, true),
            // invalid password / authorization, unknown database
            Some("28P01" | "28000" | "3D000") => (ErrorKind::Config, false),
            // numeric value out of range: only a stored value can cause it (a version at the top
            // of BIGINT, an expiry beyond the clock), since every value bound is checked first
            Some("22003" | "22008") => (ErrorKind::Decode, false),
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
    Error::with_source(kind, format!("postgres: {doing}"), error).transient(transient)
}
