//! The one place where the redis crate's errors become session errors.

use redis::{ErrorKind as RedisKind, RedisError, RetryMethod};
use session_core::{Error, ErrorKind};

/// Maps a redis error met while `doing` something to a session [`Error`], keeping it as the
/// source. Lost connections, timeouts and busy servers are transient; a value of the wrong type
/// under our prefix is [`ErrorKind::Decode`]; failed authentication is [`ErrorKind::Config`].
pub(crate) fn map_redis_error(doing: &'static str, error: RedisError) -> Error {
    let transient = error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || matches!(
            error.retry_method(),
            RetryMethod::Reconnect
                | RetryMethod::RetryImmediately
                | RetryMethod::WaitAndRetry
                // A refusal (a redirect the store resent in vain): nothing ran, a retry may work.
                | RetryMethod::MovedRedirect
                | RetryMethod::AskRedirect
                | RetryMethod::RefreshSlotsAndRetry
                | RetryMethod::ReconnectFromInitialConnections
        );
    // WRONGTYPE: a foreign type under our prefix; CORRUPT: our scripts' word for a foreign string.
    let text = error.to_string();
    let kind = if matches!(error.code(), Some("WRONGTYPE" | "CORRUPT"))
        || text.contains("WRONGTYPE")
        || text.contains("CORRUPT")
    {
        ErrorKind::Decode
    } else {
        match error.kind() {
            RedisKind::AuthenticationFailed | RedisKind::InvalidClientConfig => ErrorKind::Config,
            RedisKind::Server(redis::ServerErrorKind::NoPerm) => ErrorKind::Config,
            _ if error.code() == Some("NOAUTH") || error.code() == Some("WRONGPASS") => {
                ErrorKind::Config
            }
            _ => ErrorKind::Backend,
        }
    };
    let transient = transient && kind == ErrorKind::Backend;
    Error::with_source(kind, format!("redis: {doing}"), error).transient(transient)
}
