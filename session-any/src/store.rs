//! [`AnyStore`]: one of the backends, chosen at run time.

use std::fmt;
use std::sync::Arc;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
use std::time::Duration;

use session_core::{
    CreateOutcome, Error, ErrorKind, Record, Result, SessionKey, SessionStore, UpdateOutcome,
    async_trait, time::OffsetDateTime,
};

#[cfg(feature = "sqlite")]
use crate::config::Durability;
use crate::config::{Backend, Resolved, StoreConfig};

/// A store of whichever backend a [`StoreConfig`] names. It implements [`SessionStore`] by
/// forwarding to that backend, and adds the operator's views ([`counts`](Self::counts)) and
/// [`drop_namespace`](Self::drop_namespace).
pub struct AnyStore {
    inner: Inner,
    /// The directory of a temporary SQLite file (`sqlite::memory:`), removed after the store.
    #[cfg(feature = "sqlite")]
    _temp: Option<tempfile::TempDir>,
}

enum Inner {
    #[cfg(feature = "memory")]
    Memory(session_memory::MemoryStore),
    #[cfg(feature = "sqlite")]
    Sqlite(session_sqlite::SqliteStore),
    #[cfg(feature = "postgres")]
    Postgres(session_postgres::PostgresStore),
    #[cfg(feature = "redis")]
    Redis(session_redis::RedisStore),
}

/// Forwards `$body` to the backend store bound to `$s`.
macro_rules! dispatch {
    ($self:expr, $s:ident => $body:expr) => {
        match &$self.inner {
            #[cfg(feature = "memory")]
            Inner::Memory($s) => $body,
            #[cfg(feature = "sqlite")]
            Inner::Sqlite($s) => $body,
            #[cfg(feature = "postgres")]
            Inner::Postgres($s) => $body,
            #[cfg(feature = "redis")]
            Inner::Redis($s) => $body,
        }
    };
}

/// How many sessions a store holds, as far as its backend can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Sessions that have not expired.
    pub live: u64,
    /// Expired sessions still stored (purged by `delete_expired`); `None` where the backend
    /// drops them by itself (Redis).
    pub expired: Option<u64>,
}

/// Opens the store `url` names, with the URL's settings, behind `Arc<dyn SessionStore>`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> session_core::Result<()> {
/// let store = session_any::connect("memory://").await?;
/// let manager = session_core::SessionManager::new(store);
/// let state = manager.create(&b"hello"[..]).await?;
/// assert_eq!(manager.load(state.id()).await?.unwrap().data(), &b"hello"[..]);
/// # Ok(()) }
/// ```
pub async fn connect(url: &str) -> Result<Arc<dyn SessionStore>> {
    StoreConfig::new(url).connect().await
}

impl StoreConfig {
    /// Opens the store behind `Arc<dyn SessionStore>`.
    pub async fn connect(&self) -> Result<Arc<dyn SessionStore>> {
        Ok(Arc::new(AnyStore::open(self).await?))
    }
}

impl AnyStore {
    /// Opens the store `config` names: connects, and creates its table where it has one.
    pub async fn open(config: &StoreConfig) -> Result<Self> {
        Self::open_resolved(config.resolve()?).await
    }

    /// Opens the store `config` names without creating anything: a missing SQLite file or
    /// table, or a missing PostgreSQL table, is a `Config` error (for tools that inspect an
    /// application's store: a mistyped name must not create an empty store).
    pub async fn open_existing(config: &StoreConfig) -> Result<Self> {
        let mut resolved = config.resolve()?;
        resolved.existing = true;
        Self::open_resolved(resolved).await
    }

    async fn open_resolved(resolved: Resolved) -> Result<Self> {
        #[cfg(feature = "sqlite")]
        let mut temp = None;
        let inner = match resolved.backend {
            Backend::Memory => open_memory(&resolved)?,
            Backend::Sqlite => {
                #[cfg(feature = "sqlite")]
                {
                    open_sqlite(&resolved, &mut temp).await?
                }
                #[cfg(not(feature = "sqlite"))]
                {
                    return Err(crate::config::feature_off("sqlite", Backend::Sqlite));
                }
            }
            Backend::Postgres => open_postgres(&resolved).await?,
            Backend::Redis => open_redis(&resolved).await?,
        };
        Ok(Self {
            inner,
            #[cfg(feature = "sqlite")]
            _temp: temp,
        })
    }

    /// The backend of this store.
    pub fn backend(&self) -> Backend {
        match &self.inner {
            #[cfg(feature = "memory")]
            Inner::Memory(_) => Backend::Memory,
            #[cfg(feature = "sqlite")]
            Inner::Sqlite(_) => Backend::Sqlite,
            #[cfg(feature = "postgres")]
            Inner::Postgres(_) => Backend::Postgres,
            #[cfg(feature = "redis")]
            Inner::Redis(_) => Backend::Redis,
        }
    }

    /// Live and expired sessions of this store's namespace.
    pub async fn counts(&self) -> Result<Counts> {
        match &self.inner {
            #[cfg(feature = "memory")]
            Inner::Memory(s) => {
                let (stored, live) = (s.stored_records() as u64, s.live_records() as u64);
                Ok(Counts {
                    live,
                    expired: Some(stored.saturating_sub(live)),
                })
            }
            #[cfg(feature = "sqlite")]
            Inner::Sqlite(s) => s.counts().await.map(|(live, expired)| Counts {
                live,
                expired: Some(expired),
            }),
            #[cfg(feature = "postgres")]
            Inner::Postgres(s) => s.counts().await.map(|(live, expired)| Counts {
                live,
                expired: Some(expired),
            }),
            #[cfg(feature = "redis")]
            Inner::Redis(s) => s.count().await.map(|live| Counts {
                live,
                expired: None,
            }),
        }
    }

    /// Removes this store's namespace: every session in it, and its table where it has one
    /// (SQL backends drop the table; Redis deletes the prefix's keys). For tooling and tests
    /// that made a namespace of their own; the store must not be used afterwards.
    pub async fn drop_namespace(&self) -> Result<()> {
        match &self.inner {
            #[cfg(feature = "memory")]
            Inner::Memory(s) => s.clear().await,
            #[cfg(feature = "sqlite")]
            Inner::Sqlite(s) => s.drop_table().await,
            #[cfg(feature = "postgres")]
            Inner::Postgres(s) => {
                let config = s.config();
                let statement = format!(
                    "DROP TABLE IF EXISTS \"{}\".\"{}\"",
                    config.schema, config.table
                );
                session_postgres::sqlx::raw_sql(&statement)
                    .execute(s.pool())
                    .await
                    .map(drop)
                    .map_err(|e| Error::backend("postgres: dropping the table", e, false))
            }
            #[cfg(feature = "redis")]
            Inner::Redis(s) => s.clear().await,
        }
    }
}

impl fmt::Debug for AnyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        dispatch!(self, s => f.debug_tuple("AnyStore").field(s).finish())
    }
}

fn open_memory(resolved: &Resolved) -> Result<Inner> {
    let _ = resolved;
    #[cfg(feature = "memory")]
    {
        Ok(Inner::Memory(session_memory::MemoryStore::new()))
    }
    #[cfg(not(feature = "memory"))]
    {
        Err(crate::config::feature_off("memory", Backend::Memory))
    }
}

#[cfg(feature = "sqlite")]
async fn open_sqlite(resolved: &Resolved, temp: &mut Option<tempfile::TempDir>) -> Result<Inner> {
    let path = match &resolved.path {
        Some(path) => path.clone(),
        None => {
            let dir = tempfile::Builder::new()
                .prefix("session-any-")
                .tempdir()
                .map_err(|e| {
                    Error::with_source(
                        ErrorKind::Config,
                        "sqlite: creating a temporary directory",
                        e,
                    )
                })?;
            let path = dir.path().join("sessions.sqlite");
            *temp = Some(dir);
            path
        }
    };
    let mut config = session_sqlite::SqliteConfig::new(path);
    if let Some(table) = &resolved.table {
        config = config.table(table);
    }
    if let Some(durability) = resolved.durability {
        config = config.durability(match durability {
            Durability::Normal => session_sqlite::Durability::Normal,
            Durability::Full => session_sqlite::Durability::Full,
        });
    }
    if let Some(ms) = resolved.timeout_ms {
        config = config.busy_timeout(Duration::from_millis(ms));
    }
    if resolved.existing {
        config = config.create(false);
    }
    session_sqlite::SqliteStore::with_config(config)
        .await
        .map(Inner::Sqlite)
}

async fn open_postgres(resolved: &Resolved) -> Result<Inner> {
    #[cfg(feature = "postgres")]
    {
        let mut config = session_postgres::PostgresConfig::new(&resolved.url);
        if let Some(schema) = &resolved.schema {
            config = config.schema(schema);
        }
        if let Some(table) = &resolved.table {
            config = config.table(table);
        }
        if let Some(max) = resolved.max_connections {
            config = config.max_connections(max);
        }
        if let Some(ms) = resolved.timeout_ms {
            config = config.acquire_timeout(Duration::from_millis(ms));
        }
        if resolved.existing {
            config = config.migrate(false);
        }
        session_postgres::PostgresStore::connect(config)
            .await
            .map(Inner::Postgres)
    }
    #[cfg(not(feature = "postgres"))]
    {
        let _ = resolved;
        Err(crate::config::feature_off("postgres", Backend::Postgres))
    }
}

async fn open_redis(resolved: &Resolved) -> Result<Inner> {
    #[cfg(feature = "redis")]
    {
        let mut config = session_redis::RedisConfig::new(&resolved.url);
        if let Some(prefix) = &resolved.key_prefix {
            config = config.key_prefix(prefix);
        }
        if let Some(ms) = resolved.timeout_ms {
            config = config
                .connection_timeout(Duration::from_millis(ms))
                .response_timeout(Duration::from_millis(ms));
        }
        session_redis::RedisStore::connect(config)
            .await
            .map(Inner::Redis)
    }
    #[cfg(not(feature = "redis"))]
    {
        let _ = resolved;
        Err(crate::config::feature_off("redis", Backend::Redis))
    }
}

#[async_trait]
impl SessionStore for AnyStore {
    async fn create(
        &self,
        key: &SessionKey,
        expires_at: OffsetDateTime,
        data: &[u8],
    ) -> Result<CreateOutcome> {
        dispatch!(self, s => s.create(key, expires_at, data).await)
    }

    async fn read(&self, key: &SessionKey) -> Result<Option<Record>> {
        dispatch!(self, s => s.read(key).await)
    }

    async fn update(
        &self,
        current: &SessionKey,
        previous: &SessionKey,
        expected_version: u64,
        expires_at: OffsetDateTime,
        data: &[u8],
    ) -> Result<UpdateOutcome> {
        dispatch!(self, s => s.update(current, previous, expected_version, expires_at, data).await)
    }

    async fn touch(&self, key: &SessionKey, expires_at: OffsetDateTime) -> Result<bool> {
        dispatch!(self, s => s.touch(key, expires_at).await)
    }

    async fn delete(&self, key: &SessionKey) -> Result<()> {
        dispatch!(self, s => s.delete(key).await)
    }

    async fn delete_expired(&self) -> Result<u64> {
        dispatch!(self, s => s.delete_expired().await)
    }

    async fn clear(&self) -> Result<()> {
        dispatch!(self, s => s.clear().await)
    }
}
