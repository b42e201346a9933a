//! The one place where sqlx's PostgreSQL errors become session errors: what the server's
//! SQLSTATEs mean; the rest of the mapping is shared with the other sqlx store
//! (`session_sqlx::map_error`).

use session_core::{Error, ErrorKind};

/// SQLSTATE of a unique violation.
pub(crate) const UNIQUE_VIOLATION: &str = "23505";

/// What a PostgreSQL error means: transient for what a retry may fix (serialization failures,
/// deadlocks, too many connections, shutdowns, connection failures), `Config` for refused
/// credentials and unknown databases, `Decode` for values only a stored one can put out of
/// range.
pub(crate) fn database_kind(db: &dyn sqlx::error::DatabaseError) -> Option<(ErrorKind, bool)> {
    match db.code().as_deref() {
        // serialization failure, deadlock, too many connections, admin/crash shutdown,
        // cannot connect now, connection failures
        Some(
            "40001" | "40P01" | "53300" | "57P01" | "57P02" | "57P03" | "08000" | "08003" | "08006",
        ) => Some((ErrorKind::Backend, true)),
        // invalid password / authorization, unknown database
        Some("28P01" | "28000" | "3D000") => Some((ErrorKind::Config, false)),
        // numeric value out of range: only a stored value can cause it (a version at the top of
        // BIGINT, an expiry beyond the clock), since every value bound is checked first
        Some("22003" | "22008") => Some((ErrorKind::Decode, false)),
        _ => None,
    }
}

/// Maps an sqlx error met while `doing` something to a session [`Error`], keeping it as the
/// source and marking what a retry may fix as transient.
pub(crate) fn map_sqlx_error(doing: &'static str, error: sqlx::Error) -> Error {
    session_sqlx::map_error("postgres", doing, error, database_kind)
}
