//! [`PostgresStore`]: every operation of the contract in one statement, one round trip.

use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;

use session_core::time::OffsetDateTime;
use session_core::{
    Bytes, Capabilities, CreateOutcome, Error, ErrorKind, OwnedSession, Owner, OwnerChange, Record,
    Result, SessionKey, SessionStore, UpdateOutcome, WriteOptions, async_trait, from_unix_millis,
    redact_url, truncate_to_millis,
};
use session_sqlx::Bounds;
use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::{Executor, Row};

use crate::config::PostgresConfig;
use crate::error::{UNIQUE_VIOLATION, database_kind, map_sqlx_error};
use crate::sql::Sql;

/// How many times an update statement whose verdict contradicts itself runs (see `update_with`).
const INCONSISTENT_RETRIES: usize = 3;

/// Key of the advisory lock that serialises `migrate` across application instances.
const MIGRATION_LOCK: i64 = 0x5e55_1015_7043_0001;

/// A [`SessionStore`] in a PostgreSQL table.
///
/// Every operation is one statement (one round trip on a warm connection): `create` is an
/// `INSERT … ON CONFLICT DO UPDATE … WHERE <existing is expired>`; `update` is a plain
/// compare-and-swap `UPDATE`, and only when that writes nothing a second, single statement of
/// data-modifying CTEs that locks `previous`, checks its version and `current`, removes an expired
/// occupant, moves the row, and says which outcome happened. Unique constraints and row locks carry the atomicity; no
/// check-then-act, no reliance on `SERIALIZABLE`. Expiry is compared with the server's `now()` in
/// `timestamptz`, so the server's and the session's `TimeZone` do not matter.
///
/// Every operation has a deadline ([`PostgresConfig::operation_timeout`], 5 s by default) kept by
/// the client and sent to the server as `statement_timeout`; every connection runs in
/// `READ COMMITTED` whatever the server's default, so racing writers get `Conflict`, never a
/// serialization error. An error of a write means its outcome is unknown (the server may have
/// committed it and the answer been lost), except a `Config` error or an error raised before
/// the statement was sent (no connection could be had).
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    sql: Arc<Sql>,
    config: PostgresConfig,
    /// The operations' deadline, the table check before the first, and the reachability
    /// probe (shared with the other sqlx store).
    bounds: Bounds<sqlx::Postgres>,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn pg(doing: &'static str) -> impl Fn(sqlx::Error) -> Error {
    move |error| map_sqlx_error(doing, error)
}

/// Whether `error` is the server refusing access (SQLSTATE 42501), not a layout problem.
fn is_privilege_error(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.code().as_deref() == Some("42501"))
}

fn decode_version(version: i64) -> Result<u64> {
    u64::try_from(version)
        .map_err(|_| Error::new(ErrorKind::Decode, "postgres: a stored version is negative"))
}

fn encode_version(version: u64) -> Result<i64> {
    i64::try_from(version).map_err(|_| Error::new(ErrorKind::Backend, "postgres: version overflow"))
}

impl PostgresStore {
    /// Opens a store with `config`: connects once (so the error of an unreachable server says
    /// why: refused, unknown host, TLS, authentication), then checks the table and creates it if
    /// missing and allowed ([`migrate`](Self::migrate)). With [`PostgresConfig::lazy`] it
    /// connects nothing and succeeds at once.
    ///
    /// A bad table or schema name is a `Config` error before anything is sent; a malformed URL is
    /// `Config`; an unreachable server is a transient `Backend` error whose source is the
    /// connection error (at most `acquire_timeout`); wrong credentials or an unknown database are
    /// `Config`. Messages never include passwords.
    pub async fn connect(config: PostgresConfig) -> Result<Self> {
        let (config, url) = config.resolved()?;
        let options = PgConnectOptions::from_str(&url)
            .map_err(|e| {
                Error::with_source(
                    ErrorKind::Config,
                    format!("postgres: invalid URL {}", redact_url(&url)),
                    e,
                )
            })?
            .options([
                (
                    "statement_timeout",
                    config.operation_timeout.as_millis().to_string(),
                ),
                // A space in a startup option is escaped with a backslash.
                (
                    "default_transaction_isolation",
                    r"read\ committed".to_owned(),
                ),
            ]);
        let pool = session_sqlx::pool_options::<sqlx::Postgres>(
            config.max_connections,
            config.min_connections,
            config.acquire_timeout,
        )
        .connect_lazy_with(options.clone());
        let lazy = config.lazy;
        let mut store = Self::with_pool(pool, config)?;
        store.bounds = store.bounds.with_connect_options(options);
        if !lazy {
            if let Some(cause) = store.bounds.why_unreachable().await {
                return Err(cause);
            }
            store.bounded("opening the store", async { Ok(()) }).await?;
        }
        Ok(store)
    }

    /// A store over an existing pool. The table is checked (and created if missing and allowed)
    /// by the first operation, or call [`migrate`](Self::migrate). `config.url` and the pool
    /// settings are not used; the pool's connections should run in `READ COMMITTED` (the
    /// default) with a `statement_timeout`.
    pub fn with_pool(pool: PgPool, config: PostgresConfig) -> Result<Self> {
        config.validate()?;
        let sql = Arc::new(Sql::new(&config.schema, &config.table));
        let bounds = Bounds::new(
            "postgres",
            config.operation_timeout,
            config.acquire_timeout,
            database_kind,
        );
        Ok(Self {
            pool,
            sql,
            config,
            bounds,
        })
    }

    /// Runs `op` after making sure the table is there, within the operation deadline (see
    /// [`Bounds::run`]).
    async fn bounded<T>(
        &self,
        doing: &'static str,
        op: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        self.bounds
            .run(
                doing,
                || self.pool.size(),
                || self.check_or_create_table(),
                op,
            )
            .await
    }

    /// Checks that the table (with the right layout) and its index exist; creates what is
    /// missing when allowed ([`PostgresConfig::migrate`]). Runs no DDL when everything exists.
    pub async fn migrate(&self) -> Result<()> {
        self.check_or_create_table().await?;
        self.bounds.set_ready();
        Ok(())
    }

    async fn check_or_create_table(&self) -> Result<()> {
        let (table, index, owner_index) = self.existing().await?;
        if table {
            self.check_layout(&self.pool).await?;
        }
        if table && index && owner_index {
            return Ok(());
        }
        if !self.config.migrate {
            if table {
                tracing::warn!(
                    schema = %self.config.schema,
                    table = %self.config.table,
                    expiry_index = index,
                    owner_index,
                    "the session table lacks an index (migrate=false): without the expiry index purges scan the table; without the owner index (schema before it) the owner operations fail"
                );
                return Ok(());
            }
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "postgres: table {}.{} does not exist and migrate=false forbids creating it",
                    self.config.schema, self.config.table
                ),
            ));
        }
        self.create_table().await
    }

    /// Whether the table, its expiry index and its owner index exist.
    async fn existing(&self) -> Result<(bool, bool, bool)> {
        let (schema, table) = (&self.config.schema, &self.config.table);
        let row = sqlx::query(
            "SELECT to_regclass($1) IS NOT NULL, to_regclass($2) IS NOT NULL, to_regclass($3) IS NOT NULL",
        )
        .bind(format!("\"{schema}\".\"{table}\""))
        .bind(format!("\"{schema}\".\"{table}_expires_at\""))
        .bind(format!("\"{schema}\".\"{table}_owner\""))
            .fetch_one(&self.pool)
            .await
            .map_err(pg("looking for the session table"))?;
        Ok((
            row.try_get(0)
                .map_err(pg("looking for the session table"))?,
            row.try_get(1)
                .map_err(pg("looking for the session table"))?,
            row.try_get(2)
                .map_err(pg("looking for the session table"))?,
        ))
    }

    /// A table of that name made by someone else fails here, before anything is changed.
    async fn check_layout<'e, E: Executor<'e, Database = sqlx::Postgres>>(
        &self,
        executor: E,
    ) -> Result<()> {
        let probe = format!(
            "SELECT key, expires_at, version, data FROM \"{}\".\"{}\" LIMIT 0",
            self.config.schema, self.config.table
        );
        match executor.execute(probe.as_str()).await {
            Ok(_) => Ok(()),
            Err(e @ sqlx::Error::Database(_)) if !is_privilege_error(&e) => {
                Err(Error::with_source(
                    ErrorKind::Config,
                    format!(
                        "postgres: table {}.{} exists with another layout",
                        self.config.schema, self.config.table
                    ),
                    e,
                ))
            }
            Err(e) => Err(map_sqlx_error("checking the session table", e)),
        }
    }

    /// Creates the schema, table and expiry index if missing. Idempotent, and safe when many
    /// instances start at once: it runs under a transaction-scoped advisory lock.
    async fn create_table(&self) -> Result<()> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(pg("starting the migration"))?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(pg("taking the migration lock"))?;
        for statement in [&self.sql.schema, &self.sql.table] {
            tx.execute(statement.as_str())
                .await
                .map_err(pg("creating the session table"))?;
        }
        self.check_layout(&mut *tx).await?;
        tx.execute(self.sql.owner_columns.as_str())
            .await
            .map_err(pg("adding the owner columns"))?;
        for (statement, doing) in [
            (&self.sql.index, "creating the expiry index"),
            (&self.sql.owner_index, "creating the owner index"),
        ] {
            tx.execute(statement.as_str()).await.map_err(pg(doing))?;
        }
        tx.commit().await.map_err(pg("committing the migration"))
    }

    /// The pool, for queries of your own.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The configuration.
    pub fn config(&self) -> &PostgresConfig {
        &self.config
    }

    /// Live and expired (not yet purged) records of this table: `(live, expired)`.
    pub async fn counts(&self) -> Result<(u64, u64)> {
        self.bounded("counting sessions", async {
            let row = sqlx::query(&self.sql.counts)
                .fetch_one(&self.pool)
                .await
                .map_err(pg("counting sessions"))?;
            let (live, expired): (i64, i64) = (
                row.try_get(0).map_err(pg("counting"))?,
                row.try_get(1).map_err(pg("counting"))?,
            );
            Ok((live as u64, expired as u64))
        })
        .await
    }

    /// Runs an update or rotation statement and reads its verdict; `None` when the verdict
    /// contradicts itself (checks passed, nothing written: nothing changed, run it again).
    async fn run_update(
        &self,
        query: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
        expected: u64,
    ) -> Result<Option<UpdateOutcome>> {
        let row = match query.fetch_one(&self.pool).await {
            Ok(row) => row,
            // A live record appeared at `current` after our snapshot: the key is taken.
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some(UNIQUE_VIOLATION) => {
                return Ok(Some(UpdateOutcome::IdTaken));
            }
            Err(e) => return Err(map_sqlx_error("updating a session", e)),
        };
        let found: Option<i64> = row
            .try_get("found")
            .map_err(pg("reading the update's outcome"))?;
        let taken: bool = row
            .try_get("taken")
            .map_err(pg("reading the update's outcome"))?;
        let written: Option<i64> = row
            .try_get("written")
            .map_err(pg("reading the update's outcome"))?;
        Ok(Some(
            match (found.map(decode_version).transpose()?, taken, written) {
                (None, _, _) => UpdateOutcome::NotFound,
                (Some(v), _, _) if v != expected => UpdateOutcome::Conflict,
                (Some(_), true, _) => UpdateOutcome::IdTaken,
                (Some(_), false, Some(version)) => UpdateOutcome::Updated {
                    version: decode_version(version)?,
                },
                (Some(_), false, None) => return Ok(None),
            },
        ))
    }
}

/// The owner index is an `owner` column with a partial index; `sessions_of` is one indexed
/// `SELECT`, `revoke_owner` one `DELETE` (atomic; in `READ COMMITTED` a row moved by a
/// concurrent rotation is re-checked on its new version and deleted too).
#[async_trait]
impl SessionStore for PostgresStore {
    /// Every operation answers within [`operation_timeout`](crate::PostgresConfig::operation_timeout).
    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
            .owner_index(true)
            .deadline(Some(self.config.operation_timeout))
    }

    async fn create_opts(
        &self,
        key: &SessionKey,
        expires_at: OffsetDateTime,
        data: Bytes,
        options: &WriteOptions,
    ) -> Result<CreateOutcome> {
        let owner = match &options.owner {
            OwnerChange::Set(ownership) => Some(ownership),
            OwnerChange::Keep | OwnerChange::Clear => None,
        };
        self.bounded("creating a session", async {
            let done = sqlx::query(&self.sql.create)
                .bind(&key.as_bytes()[..])
                .bind(truncate_to_millis(expires_at))
                .bind(&data[..])
                .bind(owner.map(|o| o.owner().as_str()))
                .bind(owner.map(|o| o.label()))
                .execute(&self.pool)
                .await
                .map_err(pg("creating a session"))?;
            Ok(if done.rows_affected() == 1 {
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
        let (set_owner, owner_name, label) = match &options.owner {
            OwnerChange::Keep => (false, None, None),
            OwnerChange::Clear => (true, None, None),
            OwnerChange::Set(o) => (true, Some(o.owner().as_str()), Some(o.label())),
        };
        self.bounded("updating a session", async {
            if expected_version >= i64::MAX as u64 {
                // No stored version is that high (they are BIGINT), except i64::MAX itself, whose
                // successor cannot be stored: the outcome is NotFound or Conflict, or an overflow.
                return match self.read(previous).await? {
                    None => Ok(UpdateOutcome::NotFound),
                    Some(record) if record.version == expected_version => Err(Error::new(
                        ErrorKind::Decode,
                        "postgres: the stored version is at its maximum (a corrupt record)",
                    )),
                    Some(_) => Ok(UpdateOutcome::Conflict),
                };
            }
            let expected = encode_version(expected_version)?;
            let expires_at = truncate_to_millis(expires_at);
            // First the plain compare-and-swap: one statement, one round trip, and the answer when it
            // writes (the usual case). When it writes nothing (missing, stale, or an occupant of
            // `current`), the full statement below decides atomically, writing if it now can
            // (replacing an expired occupant) and telling NotFound, Conflict and IdTaken apart.
            // In place: key, expected, expiry, data, owner values; a rotation puts `current`
            // first.
            let statement = |fast: bool| {
                let (in_place, rotating) = if fast {
                    (&self.sql.update_fast, &self.sql.rotate_fast)
                } else {
                    (&self.sql.update, &self.sql.rotate)
                };
                let query = if current == previous {
                    sqlx::query(in_place)
                } else {
                    sqlx::query(rotating).bind(&current.as_bytes()[..])
                };
                query
                    .bind(&previous.as_bytes()[..])
                    .bind(expected)
                    .bind(expires_at)
                    .bind(&data[..])
                    .bind(set_owner)
                    .bind(owner_name)
                    .bind(label)
            };
            let fast = statement(true);
            match fast.execute(&self.pool).await {
                Ok(done) if done.rows_affected() == 1 => {
                    return Ok(UpdateOutcome::Updated {
                        version: expected_version + 1,
                    });
                }
                Ok(_) => {}
                Err(sqlx::Error::Database(db))
                    if db.code().as_deref() == Some(UNIQUE_VIOLATION) => {}
                Err(e) => return Err(map_sqlx_error("updating a session", e)),
            }
            // A verdict that contradicts itself (the checks passed, nothing was written: a
            // concurrent write slipped between the statement's lock and its update; seen once in
            // a linearizability history) wrote nothing, so the statement runs again.
            for _ in 0..INCONSISTENT_RETRIES {
                let query = statement(false);
                if let Some(outcome) = self.run_update(query, expected_version).await? {
                    return Ok(outcome);
                }
                tracing::debug!(
                    "postgres: an update's checks passed but it wrote nothing; running it again"
                );
            }
            Err(Error::new(
                ErrorKind::Backend,
                "postgres: an update matched its checks but wrote nothing, every time it ran",
            ))
        })
        .await
    }

    async fn read(&self, key: &SessionKey) -> Result<Option<Record>> {
        self.bounded("reading a session", async {
            let row = sqlx::query(&self.sql.read)
                .bind(&key.as_bytes()[..])
                .fetch_optional(&self.pool)
                .await
                .map_err(pg("reading a session"))?;
            let Some(row) = row else { return Ok(None) };
            let millis: Option<i64> = row.try_get(0).map_err(pg("decoding a session"))?;
            let expires_at = millis.and_then(from_unix_millis).ok_or_else(|| {
                Error::new(
                    ErrorKind::Decode,
                    "postgres: a stored expiry is not a representable time",
                )
            })?;
            let version: i64 = row.try_get(1).map_err(pg("decoding a session"))?;
            let data: Vec<u8> = row.try_get(2).map_err(pg("decoding a session"))?;
            Ok(Some(Record {
                data: Bytes::from(data),
                expires_at,
                version: decode_version(version)?,
            }))
        })
        .await
    }

    async fn touch(&self, key: &SessionKey, expires_at: OffsetDateTime) -> Result<bool> {
        self.bounded("touching a session", async {
            let done = sqlx::query(&self.sql.touch)
                .bind(&key.as_bytes()[..])
                .bind(truncate_to_millis(expires_at))
                .execute(&self.pool)
                .await
                .map_err(pg("touching a session"))?;
            Ok(done.rows_affected() == 1)
        })
        .await
    }

    async fn delete(&self, key: &SessionKey) -> Result<()> {
        self.bounded("deleting a session", async {
            sqlx::query(&self.sql.delete)
                .bind(&key.as_bytes()[..])
                .execute(&self.pool)
                .await
                .map_err(pg("deleting a session"))?;
            Ok(())
        })
        .await
    }

    async fn delete_expired(&self) -> Result<u64> {
        self.bounded("deleting expired sessions", async {
            let done = sqlx::query(&self.sql.delete_expired)
                .execute(&self.pool)
                .await
                .map_err(pg("deleting expired sessions"))?;
            Ok(done.rows_affected())
        })
        .await
    }

    async fn clear(&self) -> Result<()> {
        self.bounded("clearing the table", async {
            sqlx::query(&self.sql.clear)
                .execute(&self.pool)
                .await
                .map_err(pg("clearing the table"))?;
            Ok(())
        })
        .await
    }

    async fn sessions_of(&self, owner: &Owner) -> Result<Vec<OwnedSession>> {
        self.bounded("listing an owner's sessions", async {
            let rows = sqlx::query(&self.sql.sessions_of)
                .bind(owner.as_str())
                .fetch_all(&self.pool)
                .await
                .map_err(pg("listing an owner's sessions"))?;
            let mut sessions = rows
                .iter()
                .map(|row| {
                    let key: Vec<u8> = row.try_get(0).map_err(pg("decoding a listed session"))?;
                    let millis: Option<i64> =
                        row.try_get(1).map_err(pg("decoding a listed session"))?;
                    let version: i64 = row.try_get(2).map_err(pg("decoding a listed session"))?;
                    let label: Option<String> =
                        row.try_get(3).map_err(pg("decoding a listed session"))?;
                    Ok(OwnedSession {
                        key: SessionKey::from_bytes(&key)?,
                        expires_at: millis.and_then(from_unix_millis).ok_or_else(|| {
                            Error::new(
                                ErrorKind::Decode,
                                "postgres: a stored expiry is not a representable time",
                            )
                        })?,
                        version: decode_version(version)?,
                        label: label.unwrap_or_default(),
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            sessions.sort_by_key(|session| (session.expires_at, *session.key.as_bytes()));
            Ok(sessions)
        })
        .await
    }

    async fn revoke_owner(&self, owner: &Owner, except: Option<&SessionKey>) -> Result<u64> {
        self.bounded("revoking an owner's sessions", async {
            let live: i64 = sqlx::query_scalar(&self.sql.revoke)
                .bind(owner.as_str())
                .bind(except.map(|key| &key.as_bytes()[..]))
                .fetch_one(&self.pool)
                .await
                .map_err(pg("revoking an owner's sessions"))?;
            Ok(live as u64)
        })
        .await
    }
}

#[async_trait]
impl session_core::StoreAdmin for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn counts(&self) -> Result<session_core::Counts> {
        let (live, expired) = PostgresStore::counts(self).await?;
        Ok(session_core::Counts {
            live,
            expired: Some(expired),
        })
    }

    /// Drops this store's table (and its index).
    async fn drop_namespace(&self) -> Result<()> {
        let statement = format!(
            "DROP TABLE IF EXISTS \"{}\".\"{}\"",
            self.config.schema, self.config.table
        );
        // Not through `bounded`, which would first create the table it is about to drop.
        let drop_table = sqlx::raw_sql(&statement).execute(&self.pool);
        match tokio::time::timeout(self.config.operation_timeout, drop_table).await {
            Ok(done) => done.map(drop).map_err(pg("dropping the table")),
            Err(elapsed) => Err(Error::with_source(
                ErrorKind::Backend,
                "postgres: dropping the table: no answer within the deadline",
                elapsed,
            )
            .transient(true)),
        }
    }

    fn gauges(&self) -> session_core::Gauges {
        session_core::Gauges::pool(u64::from(self.pool.size()), self.pool.num_idle() as u64)
    }
}
