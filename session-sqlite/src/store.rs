//! [`SqliteStore`]: the operations of the contract as single statements or short transactions.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use session_core::time::OffsetDateTime;
use session_core::{
    Bytes, Capabilities, CreateOutcome, Error, ErrorKind, OwnedSession, Owner, OwnerChange, Record,
    Result, SessionKey, SessionStore, UpdateOutcome, WriteOptions, async_trait, from_unix_millis,
    unix_millis,
};

use crate::config::{Durability, SqliteConfig};
use crate::error::map_sqlite_error;
use crate::sql::Sql;
use crate::worker::{Limits, Statements, Workers};

/// Records removed per transaction by `delete_expired`.
pub const PURGE_CHUNK: usize = 1_000;

/// The schema version of a session table, kept per table in [`SCHEMA_TABLE`]. Version 2 added
/// the owner index (columns `owner` and `label`, a partial index on `owner`); a version 1 table
/// is migrated when a store opens it in creating mode.
pub const SCHEMA_VERSION: i64 = 2;

/// The store's own metadata table: one row per session table of the file, with its schema
/// version. The database-wide `PRAGMA user_version` belongs to the host application and is never
/// read or written.
pub const SCHEMA_TABLE: &str = "session_store_schema";

/// A [`SessionStore`] in an SQLite database file.
///
/// Writes go through one writer thread with group commit, reads through a pool of reader
/// threads; the async runtime never blocks on SQLite. Several stores (or processes) may open one
/// file: SQLite's locking plus `BEGIN IMMEDIATE` transactions keep every operation atomic across
/// them, and a busy timeout lets a writer wait for another process's commit.
pub struct SqliteStore {
    workers: Workers,
    sql: Arc<Sql>,
    config: SqliteConfig,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    unix_millis(OffsetDateTime::now_utc())
}

fn sqlite(doing: &'static str) -> impl Fn(rusqlite::Error) -> Error {
    move |error| map_sqlite_error(doing, error)
}

fn decode_expiry(millis: i64) -> Result<OffsetDateTime> {
    from_unix_millis(millis)
        .ok_or_else(|| Error::new(ErrorKind::Decode, "sqlite: a stored expiry is out of range"))
}

fn decode_version(version: i64) -> Result<u64> {
    u64::try_from(version)
        .map_err(|_| Error::new(ErrorKind::Decode, "sqlite: a stored version is negative"))
}

fn at_maximum() -> Error {
    Error::new(
        ErrorKind::Decode,
        "sqlite: the stored version is at its maximum (a corrupt record)",
    )
}

fn encode_version(version: u64) -> Result<i64> {
    i64::try_from(version).map_err(|_| Error::new(ErrorKind::Backend, "sqlite: version overflow"))
}

/// Opens a connection with the store's pragmas.
fn connect(config: &SqliteConfig, writer: bool) -> Result<Connection> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    if config.create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let connection = Connection::open_with_flags(&config.path, flags).map_err(|e| {
        if config.create {
            sqlite("opening the database")(e)
        } else {
            Error::with_source(
                ErrorKind::Config,
                format!(
                    "sqlite: no database at {} (opened without creating it)",
                    config.path.display()
                ),
                e,
            )
        }
    })?;
    if connection
        .is_readonly(rusqlite::MAIN_DB)
        .map_err(sqlite("opening the database"))?
    {
        return Err(Error::new(
            ErrorKind::Backend,
            "sqlite: the database file is read-only (a session store must write)",
        ));
    }
    connection
        .busy_timeout(config.busy_timeout)
        .map_err(sqlite("setting the busy timeout"))?;
    // Journal mode is a property of the file; reading it also proves the file is a database.
    // (Opened without creating, for inspection: the file's mode is read, not changed.)
    let pragma = if config.create {
        "PRAGMA journal_mode = WAL"
    } else {
        "PRAGMA journal_mode"
    };
    let mode: String = connection
        .query_row(pragma, [], |row| row.get(0))
        .map_err(sqlite("switching to WAL"))?;
    if writer && !mode.eq_ignore_ascii_case("wal") && !mode.eq_ignore_ascii_case("memory") {
        tracing::warn!(
            mode,
            "sqlite: the database is not in WAL mode; readers may wait for writers"
        );
    }
    let synchronous = match config.durability {
        Durability::Normal => "NORMAL",
        Durability::Full => "FULL",
    };
    connection
        .execute_batch(&format!("PRAGMA synchronous = {synchronous}"))
        .map_err(sqlite("setting durability"))?;
    connection
        .execute_batch(&format!(
            "PRAGMA cache_size = -{}; PRAGMA mmap_size = {}",
            config.cache_size_kib, config.mmap_size
        ))
        .map_err(sqlite("sizing the page cache"))?;
    connection.set_prepared_statement_cache_capacity(32);
    Ok(connection)
}

/// Creates or checks the table, under the write lock so concurrent openers agree. The table's
/// schema version lives in [`SCHEMA_TABLE`]; a table made by an earlier build (which recorded
/// version 1 in `PRAGMA user_version` instead) is adopted by recording it there.
fn migrate(connection: &Connection, table: &str) -> Result<()> {
    connection
        .execute_batch("BEGIN IMMEDIATE")
        .map_err(sqlite("starting the migration"))?;
    let result = (|| {
        connection
            .execute_batch(&format!(
                "CREATE TABLE IF NOT EXISTS \"{SCHEMA_TABLE}\" (\
                     session_table TEXT PRIMARY KEY NOT NULL, \
                     version INTEGER NOT NULL)"
            ))
            .map_err(sqlite("creating the schema table"))?;
        let recorded: Option<i64> = connection
            .query_row(
                &format!("SELECT version FROM \"{SCHEMA_TABLE}\" WHERE session_table = ?1"),
                [table],
                |row| row.get(0),
            )
            .optional()
            .map_err(sqlite("reading the schema version"))?;
        if let Some(version) = recorded
            && version > SCHEMA_VERSION
        {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "sqlite: session table {table:?} has schema version {version}; this build knows up to {SCHEMA_VERSION}"
                ),
            ));
        }
        connection
            .execute_batch(&Sql::create_table(table))
            .map_err(sqlite("creating the table"))?;
        // A table of that name made by someone else fails here, before anything is changed.
        check_layout(connection, table)?;
        connection
            .execute_batch(&Sql::create_index(table))
            .map_err(sqlite("creating the expiry index"))?;
        // Version 1 → 2: the owner columns (NULL for every existing session) and their index.
        if connection
            .prepare(&format!("SELECT owner, label FROM \"{table}\" LIMIT 0"))
            .is_err()
        {
            connection
                .execute_batch(&format!(
                    "ALTER TABLE \"{table}\" ADD COLUMN owner TEXT; \
                     ALTER TABLE \"{table}\" ADD COLUMN label TEXT"
                ))
                .map_err(sqlite("adding the owner columns"))?;
        }
        connection
            .execute_batch(&Sql::create_owner_index(table))
            .map_err(sqlite("creating the owner index"))?;
        if recorded != Some(SCHEMA_VERSION) {
            connection
                .execute(
                    &format!(
                        "INSERT OR REPLACE INTO \"{SCHEMA_TABLE}\" (session_table, version) VALUES (?1, ?2)"
                    ),
                    params![table, SCHEMA_VERSION],
                )
                .map_err(sqlite("writing the schema version"))?;
        }
        Ok(())
    })();
    let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
    connection
        .execute_batch(end)
        .map_err(sqlite("ending the migration"))?;
    result
}

/// Checks that the session table exists with this store's layout, changing nothing.
fn check_table(connection: &Connection, table: &str) -> Result<()> {
    let exists: bool = connection
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
            [table],
            |row| row.get(0),
        )
        .map_err(sqlite("looking for the session table"))?;
    if !exists {
        return Err(Error::new(
            ErrorKind::Config,
            format!(
                "sqlite: no session table {table:?} in this database (opened without creating it)"
            ),
        ));
    }
    check_layout(connection, table)
}

/// A `Config` error when `table` lacks this store's columns (someone else's table).
fn check_layout(connection: &Connection, table: &str) -> Result<()> {
    connection
        .prepare(&format!(
            "SELECT key, expires_at, version, data FROM \"{table}\" LIMIT 0"
        ))
        .map_err(|e| {
            Error::with_source(
                ErrorKind::Config,
                format!("sqlite: table {table:?} exists with another layout"),
                e,
            )
        })?;
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` with default settings.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::with_config(SqliteConfig::new(path.as_ref())).await
    }

    /// Opens a store with `config`: validates it (a bad table name is a `Config` error before any
    /// SQL runs), opens the connections, switches to WAL and creates the table if needed.
    pub async fn with_config(config: SqliteConfig) -> Result<Self> {
        config.validate()?;
        let opened = config.clone();
        let (writer, readers, checkpointer) = tokio::task::spawn_blocking(move || -> Result<_> {
            let writer = connect(&opened, true)?;
            if opened.create {
                migrate(&writer, &opened.table)?;
            } else {
                check_table(&writer, &opened.table)?;
            }
            // Checkpoints run on their own connection, off the write path; after a reset the
            // WAL file is trimmed back to the limit.
            writer
                .execute_batch(&format!(
                    "PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = {}",
                    opened.wal_limit
                ))
                .map_err(sqlite("configuring checkpoints"))?;
            let checkpointer = connect(&opened, false)?;
            let readers = (0..opened.readers)
                .map(|_| connect(&opened, false))
                .collect::<Result<Vec<_>>>()?;
            Ok((writer, readers, checkpointer))
        })
        .await
        .map_err(|e| {
            Error::with_source(ErrorKind::Backend, "sqlite: the opening task failed", e)
        })??;
        let mut wal_path = config.path.clone().into_os_string();
        wal_path.push("-wal");
        let limits = Limits {
            queue: config.queue_limit,
            wal: config.wal_limit,
            wal_path: wal_path.into(),
        };
        let workers = Workers::spawn(writer, readers, checkpointer, limits)?;
        Ok(Self {
            workers,
            sql: Arc::new(Sql::new(&config.table)),
            config,
        })
    }

    /// Drops this store's table and its schema record (the namespace is gone; the store is
    /// unusable afterwards). For tools and tests that made a namespace of their own.
    pub async fn drop_table(&self) -> Result<()> {
        let table = self.config.table.clone();
        self.workers
            .write(Statements::Many, move |c| {
                c.execute_batch(&format!("DROP TABLE IF EXISTS \"{table}\""))
                    .map_err(sqlite("dropping the table"))?;
                // Idempotent: a second store of the same namespace (or the last table of the
                // file, dropped before) finds the metadata gone already.
                let metadata: i64 = c
                    .query_row(
                        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                        [SCHEMA_TABLE],
                        |r| r.get(0),
                    )
                    .map_err(sqlite("looking for the schema table"))?;
                if metadata == 0 {
                    return Ok(());
                }
                c.execute(
                    &format!("DELETE FROM \"{SCHEMA_TABLE}\" WHERE session_table = ?1"),
                    [&table],
                )
                .map_err(sqlite("dropping the table's schema record"))?;
                // The last session table of the file gone: leave no metadata behind either.
                let left: i64 = c
                    .query_row(
                        &format!("SELECT count(*) FROM \"{SCHEMA_TABLE}\""),
                        [],
                        |r| r.get(0),
                    )
                    .map_err(sqlite("counting session tables"))?;
                if left == 0 {
                    c.execute_batch(&format!("DROP TABLE \"{SCHEMA_TABLE}\""))
                        .map_err(sqlite("dropping the schema table"))?;
                }
                Ok(())
            })
            .await
    }

    /// Operations waiting right now: `(writes, reads)`. For metrics and load tests.
    pub fn queued(&self) -> (usize, usize) {
        self.workers.queued()
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &SqliteConfig {
        &self.config
    }

    /// Counts live and expired records of this store's table: `(live, expired)`.
    pub async fn counts(&self) -> Result<(u64, u64)> {
        let table = self.config.table.clone();
        self.workers
            .read(move |c| {
                let now = now_ms();
                c.query_row(
                    &format!("SELECT COUNT(*) FILTER (WHERE expires_at > ?1), COUNT(*) FILTER (WHERE expires_at <= ?1) FROM \"{table}\""),
                    [now],
                    |row| Ok((row.get::<_, i64>(0)? as u64, row.get::<_, i64>(1)? as u64)),
                )
                .map_err(sqlite("counting records"))
            })
            .await
    }
}

/// The live version at `key`, inside the writer's transaction.
fn live_version(c: &Connection, sql: &Sql, key: &[u8; 32], now: i64) -> Result<Option<u64>> {
    let version: Option<i64> = c
        .prepare_cached(&sql.live_version)
        .and_then(|mut s| {
            s.query_row(params![&key[..], now], |row| row.get(0))
                .optional()
        })
        .map_err(sqlite("reading a version"))?;
    version.map(decode_version).transpose()
}

/// The owner index is an `owner` column with a partial index. `revoke_owner` is one write
/// transaction (count, then delete), so it is atomic against every other writer of the file.
#[async_trait]
impl SessionStore for SqliteStore {
    fn capabilities(&self) -> Capabilities {
        Capabilities::new().owner_index(true)
    }

    async fn create_opts(
        &self,
        key: &SessionKey,
        expires_at: OffsetDateTime,
        data: Bytes,
        options: &WriteOptions,
    ) -> Result<CreateOutcome> {
        let owner = match &options.owner {
            OwnerChange::Set(ownership) => Some(ownership.clone()),
            OwnerChange::Keep | OwnerChange::Clear => None,
        };
        let (sql, key, expires, data) = (
            Arc::clone(&self.sql),
            *key.as_bytes(),
            unix_millis(expires_at),
            data.to_vec(),
        );
        self.workers
            .write(Statements::One, move |c| {
                let changed = c
                    .prepare_cached(&sql.create)
                    .and_then(|mut s| {
                        s.execute(params![
                            &key[..],
                            expires,
                            data,
                            now_ms(),
                            owner.as_ref().map(|o| o.owner().as_str()),
                            owner.as_ref().map(|o| o.label())
                        ])
                    })
                    .map_err(sqlite("creating a session"))?;
                Ok(if changed == 1 {
                    CreateOutcome::Created
                } else {
                    CreateOutcome::IdTaken
                })
            })
            .await
    }

    async fn update_opts(
        &self,
        current: &SessionKey,
        previous: &SessionKey,
        expected_version: u64,
        expires_at: OffsetDateTime,
        data: Bytes,
        options: &WriteOptions,
    ) -> Result<UpdateOutcome> {
        let owner = options.owner.clone();
        let (sql, current, previous) = (
            Arc::clone(&self.sql),
            *current.as_bytes(),
            *previous.as_bytes(),
        );
        let (expires, data) = (unix_millis(expires_at), data.to_vec());
        // The common save (same id, owner kept, versions that fit the column): one statement.
        if current == previous
            && owner == OwnerChange::Keep
            && let (Ok(expected), Some(Ok(stored))) = (
                i64::try_from(expected_version),
                expected_version.checked_add(1).map(encode_version),
            )
        {
            return self
                .workers
                .write(Statements::One, move |c| {
                    let now = now_ms();
                    let changed = c
                        .prepare_cached(&sql.update_checked)
                        .and_then(|mut s| {
                            s.execute(params![&previous[..], expires, stored, data, expected, now])
                        })
                        .map_err(sqlite("updating a session"))?;
                    if changed == 1 {
                        return Ok(UpdateOutcome::Updated {
                            version: expected_version + 1,
                        });
                    }
                    Ok(match live_version(c, &sql, &previous, now)? {
                        None => UpdateOutcome::NotFound,
                        Some(_) => UpdateOutcome::Conflict,
                    })
                })
                .await;
        }
        // Runs inside the writer's IMMEDIATE transaction: no other connection can write between
        // the checks and the change.
        self.workers
            .write(Statements::Many, move |c| {
                let now = now_ms();
                match live_version(c, &sql, &previous, now)? {
                    None => return Ok(UpdateOutcome::NotFound),
                    Some(v) if v != expected_version => return Ok(UpdateOutcome::Conflict),
                    Some(_) => {}
                }
                // The stored version matched, so it fits an i64; only its successor may not.
                let version = expected_version.checked_add(1).ok_or_else(at_maximum)?;
                let stored_version = encode_version(version).map_err(|_| at_maximum())?;
                let (owner_name, label) = match &owner {
                    OwnerChange::Set(o) => (Some(o.owner().as_str()), Some(o.label())),
                    OwnerChange::Keep | OwnerChange::Clear => (None, None),
                };
                if current == previous {
                    match &owner {
                        OwnerChange::Keep => c.prepare_cached(&sql.update).and_then(|mut s| {
                            s.execute(params![&previous[..], expires, stored_version, data])
                        }),
                        OwnerChange::Set(_) | OwnerChange::Clear => {
                            c.prepare_cached(&sql.update_owned).and_then(|mut s| {
                                s.execute(params![
                                    &previous[..],
                                    expires,
                                    stored_version,
                                    data,
                                    owner_name,
                                    label
                                ])
                            })
                        }
                    }
                    .map_err(sqlite("updating a session"))?;
                    return Ok(UpdateOutcome::Updated { version });
                }
                if live_version(c, &sql, &current, now)?.is_some() {
                    return Ok(UpdateOutcome::IdTaken);
                }
                c.prepare_cached(&sql.delete_occupant)
                    .and_then(|mut s| s.execute(params![&current[..], now]))
                    .map_err(sqlite("removing an expired record"))?;
                match &owner {
                    OwnerChange::Keep => c.prepare_cached(&sql.rotate).and_then(|mut s| {
                        s.execute(params![
                            &current[..],
                            &previous[..],
                            expires,
                            stored_version,
                            data
                        ])
                    }),
                    OwnerChange::Set(_) | OwnerChange::Clear => {
                        c.prepare_cached(&sql.rotate_owned).and_then(|mut s| {
                            s.execute(params![
                                &current[..],
                                &previous[..],
                                expires,
                                stored_version,
                                data,
                                owner_name,
                                label
                            ])
                        })
                    }
                }
                .map_err(sqlite("rotating a session id"))?;
                Ok(UpdateOutcome::Updated { version })
            })
            .await
    }

    async fn read(&self, key: &SessionKey) -> Result<Option<Record>> {
        let (sql, key) = (Arc::clone(&self.sql), *key.as_bytes());
        self.workers
            .read(move |c| {
                let row: Option<(i64, i64, Vec<u8>)> = c
                    .prepare_cached(&sql.read)
                    .and_then(|mut s| {
                        s.query_row(params![&key[..], now_ms()], |row| {
                            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                        })
                        .optional()
                    })
                    .map_err(sqlite("reading a session"))?;
                row.map(|(expires, version, data)| {
                    Ok(Record {
                        data: Bytes::from(data),
                        expires_at: decode_expiry(expires)?,
                        version: decode_version(version)?,
                    })
                })
                .transpose()
            })
            .await
    }

    async fn touch(&self, key: &SessionKey, expires_at: OffsetDateTime) -> Result<bool> {
        let (sql, key, expires) = (
            Arc::clone(&self.sql),
            *key.as_bytes(),
            unix_millis(expires_at),
        );
        self.workers
            .write(Statements::One, move |c| {
                let changed = c
                    .prepare_cached(&sql.touch)
                    .and_then(|mut s| s.execute(params![&key[..], expires, now_ms()]))
                    .map_err(sqlite("touching a session"))?;
                Ok(changed == 1)
            })
            .await
    }

    async fn delete(&self, key: &SessionKey) -> Result<()> {
        let (sql, key) = (Arc::clone(&self.sql), *key.as_bytes());
        self.workers
            .write(Statements::One, move |c| {
                c.prepare_cached(&sql.delete)
                    .and_then(|mut s| s.execute(params![&key[..]]))
                    .map_err(sqlite("deleting a session"))?;
                Ok(())
            })
            .await
    }

    /// Purges in chunks of [`PURGE_CHUNK`] records, each its own short write transaction, so
    /// other writes (of this process and others) run between chunks instead of waiting for the
    /// whole purge. Counts exactly the records that had expired when the purge started (one `now`
    /// for every chunk); an error ends the purge (chunks before it stay purged).
    async fn delete_expired(&self) -> Result<u64> {
        let now = now_ms();
        let mut total = 0;
        loop {
            let sql = Arc::clone(&self.sql);
            let removed = self
                .workers
                .write(Statements::One, move |c| {
                    c.prepare_cached(&sql.delete_expired)
                        .and_then(|mut s| s.execute(params![now, PURGE_CHUNK as i64]))
                        .map_err(sqlite("deleting expired sessions"))
                })
                .await?;
            total += removed as u64;
            if removed < PURGE_CHUNK {
                return Ok(total);
            }
            tokio::task::yield_now().await;
        }
    }

    async fn clear(&self) -> Result<()> {
        let sql = Arc::clone(&self.sql);
        self.workers
            .write(Statements::One, move |c| {
                c.execute(&sql.clear, [])
                    .map_err(sqlite("clearing the table"))?;
                Ok(())
            })
            .await
    }

    async fn sessions_of(&self, owner: &Owner) -> Result<Vec<OwnedSession>> {
        let (sql, owner) = (Arc::clone(&self.sql), owner.clone());
        self.workers
            .read(move |c| {
                let mut statement = c
                    .prepare_cached(&sql.sessions_of)
                    .map_err(sqlite("listing an owner's sessions"))?;
                let rows = statement
                    .query_map(params![owner.as_str(), now_ms()], |row| {
                        Ok((
                            row.get::<_, Vec<u8>>(0)?,
                            row.get::<_, i64>(1)?,
                            row.get::<_, i64>(2)?,
                            row.get::<_, Option<String>>(3)?,
                        ))
                    })
                    .map_err(sqlite("listing an owner's sessions"))?;
                let mut sessions = Vec::new();
                for row in rows {
                    let (key, expires, version, label) =
                        row.map_err(sqlite("listing an owner's sessions"))?;
                    sessions.push(OwnedSession {
                        key: SessionKey::from_bytes(&key)?,
                        expires_at: decode_expiry(expires)?,
                        version: decode_version(version)?,
                        label: label.unwrap_or_default(),
                    });
                }
                Ok(sessions)
            })
            .await
    }

    async fn revoke_owner(&self, owner: &Owner, except: Option<&SessionKey>) -> Result<u64> {
        let (sql, owner) = (Arc::clone(&self.sql), owner.clone());
        let except = except.map(|key| key.as_bytes().to_vec());
        self.workers
            .write(Statements::Many, move |c| {
                let live: i64 = c
                    .prepare_cached(&sql.count_owned)
                    .and_then(|mut s| {
                        s.query_row(params![owner.as_str(), except, now_ms()], |row| row.get(0))
                    })
                    .map_err(sqlite("counting an owner's sessions"))?;
                c.prepare_cached(&sql.revoke)
                    .and_then(|mut s| s.execute(params![owner.as_str(), except]))
                    .map_err(sqlite("revoking an owner's sessions"))?;
                Ok(live as u64)
            })
            .await
    }
}

#[async_trait]
impl session_core::StoreAdmin for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn counts(&self) -> Result<session_core::Counts> {
        let (live, expired) = SqliteStore::counts(self).await?;
        Ok(session_core::Counts {
            live,
            expired: Some(expired),
        })
    }

    async fn drop_namespace(&self) -> Result<()> {
        self.drop_table().await
    }

    fn gauges(&self) -> session_core::Gauges {
        let (writes, reads) = self.workers.queued();
        session_core::Gauges::queue((writes + reads) as u64)
    }
}
