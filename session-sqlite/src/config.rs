//! Configuration of a [`SqliteStore`](crate::SqliteStore).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use session_core::{Error, ErrorKind, Result, validate_identifier};

/// How hard SQLite works to keep acknowledged writes across a power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Durability {
    /// `synchronous=NORMAL` in WAL mode: no fsync per commit. The database never corrupts, but a
    /// power loss (not a process crash) may lose the last acknowledged writes. The default:
    /// losing a few seconds of sessions on power loss logs a few users out; an fsync per write
    /// costs most of the throughput.
    #[default]
    Normal,
    /// `synchronous=FULL`: every acknowledged write survives a power loss. Group commit keeps
    /// concurrent writers from paying one fsync each.
    Full,
}

/// Settings of a [`SqliteStore`](crate::SqliteStore).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct SqliteConfig {
    /// The database file. Created if missing (its directory must exist).
    pub path: PathBuf,
    /// The table holding this store's sessions (its namespace). A plain identifier:
    /// ASCII letters, digits and `_`, not starting with a digit, at most 63 characters.
    pub table: String,
    /// Durability of commits.
    pub durability: Durability,
    /// Reader threads, each with its own connection (at least 1).
    pub readers: usize,
    /// How long an operation waits for another process's write lock before failing (transient).
    #[serde(with = "session_core::serde_millis")]
    pub busy_timeout: Duration,
    /// The most bytes the write-ahead log may hold: the checkpointer escalates from passive
    /// checkpoints to `TRUNCATE` checkpoints before the WAL reaches it, and SQLite trims the
    /// file back to it (`journal_size_limit`) after each reset. Default 64 MiB.
    pub wal_limit: u64,
    /// The most operations waiting for the writer (and, separately, for the readers). Beyond
    /// it an operation fails at once with a transient "overloaded" error instead of queueing
    /// without bound. Default 10,000.
    pub queue_limit: usize,
    /// Whether opening may create the database file and the table. With `false` (for tools
    /// that inspect an application's store, such as `sessionctl stats`) a missing file or table
    /// is a `Config` error and nothing is written to the file by opening it.
    pub create: bool,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("sessions.sqlite"),
            table: "sessions".to_owned(),
            durability: Durability::Normal,
            readers: 2,
            busy_timeout: Duration::from_secs(5),
            wal_limit: 64 * 1024 * 1024,
            queue_limit: 10_000,
            create: true,
        }
    }
}

impl SqliteConfig {
    /// The defaults with `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            ..Self::default()
        }
    }

    /// Sets the table.
    #[must_use]
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self
    }

    /// Sets the durability.
    #[must_use]
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Sets the number of reader threads.
    #[must_use]
    pub fn readers(mut self, readers: usize) -> Self {
        self.readers = readers;
        self
    }

    /// Sets the busy timeout.
    #[must_use]
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Sets the WAL size limit in bytes.
    #[must_use]
    pub fn wal_limit(mut self, bytes: u64) -> Self {
        self.wal_limit = bytes;
        self
    }

    /// Sets the queue limit.
    #[must_use]
    pub fn queue_limit(mut self, limit: usize) -> Self {
        self.queue_limit = limit;
        self
    }

    /// Sets whether opening may create the file and the table.
    #[must_use]
    pub fn create(mut self, create: bool) -> Self {
        self.create = create;
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        validate_identifier("sqlite", "table", &self.table, 63)?;
        let path = self.path.to_string_lossy();
        let in_memory = path.is_empty()
            || path == ":memory:"
            || (path.starts_with("file:")
                && (path.contains("mode=memory") || path.starts_with("file::memory:")));
        if in_memory {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "sqlite: {path:?} is not a database file: every connection of the store (a writer and its readers) would get a private, empty in-memory database; use a file path, or memory:// for an in-process store"
                ),
            ));
        }
        if self.table == crate::SCHEMA_TABLE {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "sqlite: {:?} is the store's own metadata table, not a session table name",
                    crate::SCHEMA_TABLE
                ),
            ));
        }
        if self.queue_limit == 0 || self.wal_limit < 1024 * 1024 {
            return Err(Error::new(
                ErrorKind::Config,
                "sqlite: `queue_limit` must be at least 1 and `wal_limit` at least 1 MiB",
            ));
        }
        if self.readers == 0 {
            return Err(Error::new(
                ErrorKind::Config,
                "sqlite: `readers` must be at least 1",
            ));
        }
        Ok(())
    }
}
