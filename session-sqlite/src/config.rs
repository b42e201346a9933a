//! Configuration of a [`SqliteStore`](crate::SqliteStore).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use session_core::{
    BackendConfig, Error, ErrorKind, Options, Result, async_trait, validate_identifier,
};

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

/// The default [`SqliteConfig::mmap_size`]: 0, memory-mapped I/O off (see there why).
pub const DEFAULT_MMAP_SIZE: u64 = 0;

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
    #[serde(with = "session_core::serde_duration")]
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
    /// Page cache of each connection, in KiB (`PRAGMA cache_size`). URL: `cache_size_kib`.
    pub cache_size_kib: u32,
    /// Bytes of the database file each connection maps into memory (`PRAGMA mmap_size`; 0, the
    /// default, turns memory-mapped I/O off). Worth it only for a store that is rarely written:
    /// at the start of each read transaction after another connection's commit, SQLite drops
    /// the connection's page cache *and unmaps the whole file* (`pagerBeginReadTransaction`), so
    /// under interleaved writes every read maps the file again and faults its pages back in.
    /// Measured (`benches/soak.rs`, 16 tasks, reads and writes mixed): 1 GiB gave 20–35 % less
    /// throughput and a higher read p99 than 0; a point read right after another connection's
    /// commit took 31 µs mapped against 11 µs not (30k rows, `benches/scale.rs`). Read-only
    /// phases gain (loads 1.3–2× faster when nothing writes). SQLite's caveat applies: an I/O
    /// error while reading a mapped page is a `SIGBUS`, not an error. URL: `mmap_size`.
    pub mmap_size: u64,
    /// The temporary directory of a `sqlite::memory:` URL, removed when the last store and
    /// config sharing it are dropped.
    #[serde(skip)]
    temporary: Temporary,
}

/// A shared temporary directory; every value compares equal (it is not a setting).
#[derive(Clone, Default)]
struct Temporary(Option<Arc<tempfile::TempDir>>);

impl PartialEq for Temporary {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Temporary {}

impl fmt::Debug for Temporary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() { "yes" } else { "no" })
    }
}

impl FromStr for Durability {
    type Err = Error;

    /// `normal` or `full` (any case).
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "normal" => Ok(Self::Normal),
            "full" => Ok(Self::Full),
            _ => Err(Error::new(
                ErrorKind::Config,
                format!(
                    "sqlite: durability must be `normal` or `full`, not {:?}",
                    s.chars().take(32).collect::<String>()
                ),
            )),
        }
    }
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
            cache_size_kib: 2_000,
            mmap_size: DEFAULT_MMAP_SIZE,
            temporary: Temporary::default(),
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

    /// A config for a file in a fresh temporary directory, removed when the last store opened
    /// from this config (or a clone of it) and the configs themselves are dropped. Stores
    /// opened from clones share the file. The URL form is `sqlite::memory:`.
    pub fn temporary() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("session-sqlite-")
            .tempdir()
            .map_err(|e| {
                Error::with_source(
                    ErrorKind::Config,
                    "sqlite: creating a temporary directory",
                    e,
                )
            })?;
        Ok(Self {
            path: dir.path().join("sessions.sqlite"),
            temporary: Temporary(Some(Arc::new(dir))),
            ..Self::default()
        })
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

impl FromStr for SqliteConfig {
    type Err = Error;

    fn from_str(url: &str) -> Result<Self> {
        Self::from_url(url)
    }
}

#[async_trait]
impl BackendConfig for SqliteConfig {
    type Store = crate::SqliteStore;

    /// `sqlite://relative/path`, `sqlite:///absolute/path`, `sqlite:path`, or `sqlite::memory:`
    /// for a temporary file ([`SqliteConfig::temporary`]); settings as query parameters: `table`,
    /// `durability` (`normal`/`full`), `readers`, `busy_timeout`, `wal_limit` (bytes),
    /// `queue_limit`, `create` (`true`/`false`).
    fn from_url_with(url: &str, options: &[(String, String)]) -> Result<Self> {
        let (base, mut options) = Options::split_url("sqlite", url, options)?;
        let location = match base.split_once(':') {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("sqlite") => rest,
            _ => {
                return Err(Error::new(
                    ErrorKind::Config,
                    "sqlite: the URL must start with `sqlite:`",
                ));
            }
        };
        let location = location.strip_prefix("//").unwrap_or(location);
        let mut config = if location == ":memory:" {
            Self::temporary()?
        } else if location.is_empty() {
            return Err(Error::new(
                ErrorKind::Config,
                "sqlite: a SQLite URL needs a file path (`sqlite://sessions.db`, \
                 `sqlite:///var/lib/app/sessions.db`) or `sqlite::memory:` for a temporary file",
            ));
        } else {
            Self::new(location)
        };
        if let Some(table) = options.take("table") {
            config.table = table;
        }
        if let Some(durability) = options.take("durability") {
            config.durability = durability.parse()?;
        }
        if let Some(readers) = options.take_parsed("readers", "a whole number")? {
            config.readers = readers;
        }
        if let Some(timeout) = options.take_duration("busy_timeout")? {
            config.busy_timeout = timeout;
        }
        if let Some(bytes) = options.take_parsed("wal_limit", "a number of bytes")? {
            config.wal_limit = bytes;
        }
        if let Some(limit) = options.take_parsed("queue_limit", "a whole number")? {
            config.queue_limit = limit;
        }
        if let Some(create) = options.take_bool("create")? {
            config.create = create;
        }
        if let Some(kib) = options.take_parsed("cache_size_kib", "a number of KiB")? {
            config.cache_size_kib = kib;
        }
        if let Some(bytes) = options.take_parsed("mmap_size", "a number of bytes")? {
            config.mmap_size = bytes;
        }
        options.finish()?;
        config.validate()?;
        Ok(config)
    }

    fn isolated(&self, namespace: &str) -> Result<Self> {
        let config = self.clone().table(namespace);
        config.validate()?;
        Ok(config)
    }

    fn existing_only(self) -> Self {
        self.create(false)
    }

    async fn open(self) -> Result<crate::SqliteStore> {
        crate::SqliteStore::with_config(self).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            SqliteConfig::from_url("sqlite://data/s.db").unwrap().path,
            PathBuf::from("data/s.db")
        );
        assert_eq!(
            SqliteConfig::from_url("sqlite:///var/lib/s.db")
                .unwrap()
                .path,
            PathBuf::from("/var/lib/s.db")
        );
        assert_eq!(
            SqliteConfig::from_url("sqlite:s.db").unwrap().path,
            PathBuf::from("s.db")
        );
        let config = SqliteConfig::from_url(
            "sqlite://s.db?table=web&durability=full&busy_timeout=250&readers=3&create=false",
        )
        .unwrap();
        assert_eq!(config.table, "web");
        assert_eq!(config.durability, Durability::Full);
        assert_eq!(config.busy_timeout, Duration::from_millis(250));
        assert_eq!(config.readers, 3);
        assert!(!config.create);
        let sized =
            SqliteConfig::from_url("sqlite://s.db?cache_size_kib=65536&mmap_size=1048576").unwrap();
        assert_eq!((sized.cache_size_kib, sized.mmap_size), (65_536, 1_048_576));
        let plain = SqliteConfig::from_url("sqlite://s.db").unwrap();
        assert_eq!(
            (plain.cache_size_kib, plain.mmap_size),
            (2_000, DEFAULT_MMAP_SIZE)
        );
        let options = [("table".to_owned(), "from_map".to_owned())];
        let config = SqliteConfig::from_url_with("sqlite://s.db?table=from_url", &options).unwrap();
        assert_eq!(config.table, "from_map");
        for memory in ["sqlite::memory:", "sqlite://:memory:"] {
            let temporary = SqliteConfig::from_url(memory).unwrap();
            assert!(temporary.path.ends_with("sessions.sqlite"), "{memory}");
            assert!(temporary.path.parent().unwrap().exists());
        }
        for (bad, needle) in [
            ("sqlite://", "needs a file path"),
            ("sqlite://s.db?tabel=x", "unknown option `tabel`"),
            ("sqlite://s.db?durability=sometimes", "durability must be"),
            ("sqlite://s.db?busy_timeout=soon", "must be a duration"),
            ("sqlite://s.db?table=a-b", "not a plain identifier"),
            ("sqlite://s.db?cache_size_kib=-5", "must be a number of KiB"),
            ("sqlite://s.db?mmap_size=big", "must be a number of bytes"),
        ] {
            let error = SqliteConfig::from_url(bad).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Config, "{bad}");
            assert!(error.to_string().contains(needle), "{bad}: {error}");
        }
    }
}
