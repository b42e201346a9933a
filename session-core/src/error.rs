//! The one error type of the workspace.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;

/// What went wrong, independent of the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A session id string is not a well-formed token. No store was touched.
    InvalidId,
    /// An argument other than an id is malformed (an owner, a label). No store was touched.
    InvalidInput,
    /// Creating a session kept hitting ids that were taken (see `SessionManager::create`).
    IdCollision,
    /// Session data is larger than the configured limit. Nothing was written.
    TooLarge,
    /// The session no longer exists (expired, deleted or rotated away elsewhere).
    NotFound,
    /// Another writer saved the session first (version mismatch) and the change was not applied.
    Conflict,
    /// Session data could not be encoded.
    Encode,
    /// Stored bytes could not be decoded (corrupt or foreign data).
    Decode,
    /// Invalid configuration: a bad URL, table name, key prefix, option.
    Config,
    /// The backend does not support what was asked (for example a Redis Cluster).
    Unsupported,
    /// The backend failed: connection, query, I/O, server error.
    Backend,
}

impl ErrorKind {
    /// A short lowercase name of the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidId => "invalid session id",
            Self::InvalidInput => "invalid input",
            Self::IdCollision => "session id collision",
            Self::TooLarge => "session data too large",
            Self::NotFound => "session not found",
            Self::Conflict => "session conflict",
            Self::Encode => "encode error",
            Self::Decode => "decode error",
            Self::Config => "configuration error",
            Self::Unsupported => "unsupported",
            Self::Backend => "backend error",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

type Source = Box<dyn StdError + Send + Sync + 'static>;

/// The error of every operation in the workspace.
///
/// It carries a [`ErrorKind`], a short message saying what was being done, the underlying error as
/// a boxed [`source`](StdError::source) (never flattened into a string), and whether retrying the
/// same operation may succeed ([`Error::is_transient`]: lost connections, timeouts, exhausted
/// pools).
pub struct Error {
    kind: ErrorKind,
    message: Cow<'static, str>,
    source: Option<Source>,
    transient: bool,
}

impl Error {
    /// A permanent error of `kind` with a message.
    pub fn new(kind: ErrorKind, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
            transient: false,
        }
    }

    /// A permanent error of `kind` caused by `source`.
    pub fn with_source(
        kind: ErrorKind,
        message: impl Into<Cow<'static, str>>,
        source: impl Into<Source>,
    ) -> Self {
        Self {
            kind,
            message: message.into(),
            source: Some(source.into()),
            transient: false,
        }
    }

    /// Marks the error as transient (`true`) or permanent (`false`).
    #[must_use]
    pub fn transient(mut self, transient: bool) -> Self {
        self.transient = transient;
        self
    }

    /// A backend error caused by `source`; `transient` says whether a retry may help.
    pub fn backend(
        message: impl Into<Cow<'static, str>>,
        source: impl Into<Source>,
        transient: bool,
    ) -> Self {
        Self::with_source(ErrorKind::Backend, message, source).transient(transient)
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether retrying the same operation may succeed.
    pub fn is_transient(&self) -> bool {
        self.transient
    }

    /// The message, without the kind or the source.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .field("transient", &self.transient)
            .field("source", &self.source)
            .finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn StdError + 'static))
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_is_kept_not_stringified() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        let err = Error::backend("reading a session", io, true);
        assert_eq!(err.kind(), ErrorKind::Backend);
        assert!(err.is_transient());
        let source = err.source().expect("source kept");
        let io = source
            .downcast_ref::<std::io::Error>()
            .expect("typed source");
        assert_eq!(io.kind(), std::io::ErrorKind::ConnectionReset);
        assert_eq!(err.to_string(), "backend error: reading a session: reset");
    }
}
