//! [`PostgresStore`]: every operation of the contract in one statement, one round trip.

use std::fmt;
use std::str::FromStr;

use session_core::time::OffsetDateTime;
use session_core::{
    Bytes, CreateOutcome, Error, ErrorKind, Record, Result, SessionKey, SessionStore,
    UpdateOutcome, async_trait, from_unix_millis, redact_url, truncate_to_millis,
};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Executor, Row};

use crate::config::PostgresConfig;
use crate::error::{UNIQUE_VIOLATION, map_sqlx_error};

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
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    sql: std::sync::Arc<Sql>,
    config: PostgresConfig,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

struct Sql {
    table: String,
    index: String,
    schema: String,
    create: String,
    read: String,
    update_fast: String,
    rotate_fast: String,
    update: String,
    rotate: String,
    touch: String,
    delete: String,
    delete_expired: String,
    clear: String,
    counts: String,
}

impl Sql {
    fn new(schema: &str, table: &str) -> Self {
        let t = format!("\"{schema}\".\"{table}\"");
        Self {
            table: format!(
                "CREATE TABLE IF NOT EXISTS {t} (\
                     key bytea PRIMARY KEY, \
                     expires_at timestamptz NOT NULL, \
                     version bigint NOT NULL, \
                     data bytea NOT NULL)"
            ),
            index: format!("CREATE INDEX IF NOT EXISTS \"{table}_expires_at\" ON {t} (expires_at)"),
            schema: format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""),
            create: format!(
                "INSERT INTO {t} AS s (key, expires_at, version, data) VALUES ($1, $2, 1, $3) \
                 ON CONFLICT (key) DO UPDATE SET expires_at = EXCLUDED.expires_at, version = 1, data = EXCLUDED.data \
                 WHERE s.expires_at <= now()"
            ),
            // Expiry travels as epoch milliseconds: the driver panics on decoding `infinity` into
            // a date, and a NULL here (a non-finite stored value) is a clean decode error instead.
            read: format!(
                "SELECT CASE WHEN isfinite(expires_at) THEN (extract(epoch FROM expires_at) * 1000)::bigint END, version, data \
                 FROM {t} WHERE key = $1 AND expires_at > now()"
            ),
            // The common case in one plain statement: $1 key, $2 expected, $3 expiry, $4 data.
            update_fast: format!(
                "UPDATE {t} SET expires_at = $3, version = $2 + 1, data = $4 WHERE key = $1 AND version = $2 AND expires_at > now()"
            ),
            // $1 current, $2 previous, $3 expected, $4 expiry, $5 data. Any occupant of
            // `current`, live or expired, makes it fail on the primary key.
            rotate_fast: format!(
                "UPDATE {t} SET key = $1, expires_at = $4, version = $3 + 1, data = $5 WHERE key = $2 AND version = $3 AND expires_at > now()"
            ),
            // $1 key, $2 expected version, $3 expiry, $4 data. `prev` locks the live row and
            // reads its newest version; `done` writes only if that version is the expected one.
            update: format!(
                "WITH prev AS (SELECT version FROM {t} WHERE key = $1 AND expires_at > now() FOR UPDATE), \
                 done AS (UPDATE {t} SET expires_at = $3, version = $2 + 1, data = $4 \
                          WHERE key = $1 AND (SELECT version FROM prev) = $2 RETURNING version) \
                 SELECT (SELECT version FROM prev) AS found, FALSE AS taken, (SELECT version FROM done) AS written"
            ),
            // $1 current, $2 previous, $3 expected version, $4 expiry, $5 data. `cleared` (an
            // expired occupant of `current`) runs before `moved`, which reads its count; a live
            // occupant that commits meanwhile makes `moved` fail on the primary key (IdTaken).
            rotate: format!(
                "WITH prev AS (SELECT version FROM {t} WHERE key = $2 AND expires_at > now() FOR UPDATE), \
                 occupant AS (SELECT 1 FROM {t} WHERE key = $1 AND expires_at > now() FOR UPDATE), \
                 go AS (SELECT (SELECT version FROM prev) = $3 AND NOT EXISTS (SELECT 1 FROM occupant) AS ok), \
                 cleared AS (DELETE FROM {t} WHERE key = $1 AND expires_at <= now() AND (SELECT ok FROM go) RETURNING 1), \
                 moved AS (UPDATE {t} SET key = $1, expires_at = $4, version = $3 + 1, data = $5 \
                           WHERE key = $2 AND (SELECT ok FROM go) AND (SELECT count(*) FROM cleared) >= 0 RETURNING version) \
                 SELECT (SELECT version FROM prev) AS found, EXISTS (SELECT 1 FROM occupant) AS taken, \
                        (SELECT version FROM moved) AS written"
            ),
            touch: format!("UPDATE {t} SET expires_at = $2 WHERE key = $1 AND expires_at > now()"),
            delete: format!("DELETE FROM {t} WHERE key = $1"),
            delete_expired: format!("DELETE FROM {t} WHERE expires_at <= now()"),
            clear: format!("DELETE FROM {t}"),
            counts: format!(
                "SELECT count(*) FILTER (WHERE expires_at > now()), count(*) FILTER (WHERE expires_at <= now()) FROM {t}"
            ),
        }
    }
}

fn pg(doing: &'static str) -> impl Fn(sqlx::Error) -> Error {
    move |error| map_sqlx_error(doing, error)
}

fn decode_version(version: i64) -> Result<u64> {
    u64::try_from(version)
        .map_err(|_| Error::new(ErrorKind::Decode, "postgres: a stored version is negative"))
}

fn encode_version(version: u64) -> Result<i64> {
    i64::try_from(version).map_err(|_| Error::new(ErrorKind::Backend, "postgres: version overflow"))
}

impl PostgresStore {
    /// Connects a pool with `config`, then runs [`migrate`](Self::migrate).
    ///
    /// A bad table or schema name is a `Config` error before anything is sent; a malformed URL is
    /// `Config`; an unreachable server is a transient `Backend` error after `acquire_timeout`;
    /// wrong credentials or an unknown database are `Config`. Messages never include passwords.
    pub async fn connect(config: PostgresConfig) -> Result<Self> {
        config.validate()?;
        let options = PgConnectOptions::from_str(&config.url).map_err(|e| {
            Error::with_source(
                ErrorKind::Config,
                format!("postgres: invalid URL {}", redact_url(&config.url)),
                e,
            )
        })?;
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .min_connections(config.min_connections)
            .acquire_timeout(config.acquire_timeout)
            // A ping before every checkout would double the round trips; a dead connection fails
            // its operation with a transient error and is replaced.
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(pg("connecting"))?;
        let store = Self::with_pool(pool, config)?;
        store.migrate().await?;
        Ok(store)
    }

    /// A store over an existing pool, without migrating (call [`migrate`](Self::migrate) once).
    /// `config.url` and the pool settings are not used.
    pub fn with_pool(pool: PgPool, config: PostgresConfig) -> Result<Self> {
        config.validate()?;
        let sql = std::sync::Arc::new(Sql::new(&config.schema, &config.table));
        Ok(Self { pool, sql, config })
    }

    /// Creates the schema, table and expiry index if missing. Idempotent, and safe when many
    /// instances start at once: it runs under a transaction-scoped advisory lock. A table of that
    /// name with another layout is a `Config` error.
    pub async fn migrate(&self) -> Result<()> {
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
        // A table of that name made by someone else fails here, before anything is changed.
        let probe = format!(
            "SELECT key, expires_at, version, data FROM \"{}\".\"{}\" LIMIT 0",
            self.config.schema, self.config.table
        );
        if let Err(e) = tx.execute(probe.as_str()).await {
            return Err(Error::with_source(
                ErrorKind::Config,
                format!(
                    "postgres: table {}.{} exists with another layout",
                    self.config.schema, self.config.table
                ),
                e,
            ));
        }
        tx.execute(self.sql.index.as_str())
            .await
            .map_err(pg("creating the expiry index"))?;
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
        let row = sqlx::query(&self.sql.counts)
            .fetch_one(&self.pool)
            .await
            .map_err(pg("counting sessions"))?;
        let (live, expired): (i64, i64) = (
            row.try_get(0).map_err(pg("counting"))?,
            row.try_get(1).map_err(pg("counting"))?,
        );
        Ok((live as u64, expired as u64))
    }

    /// Runs an update or rotation statement and reads its verdict.
    async fn run_update(
        &self,
        query: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
        expected: u64,
    ) -> Result<UpdateOutcome> {
        let row = match query.fetch_one(&self.pool).await {
            Ok(row) => row,
            // A live record appeared at `current` after our snapshot: the key is taken.
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some(UNIQUE_VIOLATION) => {
                return Ok(UpdateOutcome::IdTaken);
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
        Ok(
            match (found.map(decode_version).transpose()?, taken, written) {
                (None, _, _) => UpdateOutcome::NotFound,
                (Some(v), _, _) if v != expected => UpdateOutcome::Conflict,
                (Some(_), true, _) => UpdateOutcome::IdTaken,
                (Some(_), false, Some(version)) => UpdateOutcome::Updated {
                    version: decode_version(version)?,
                },
                (Some(_), false, None) => {
                    return Err(Error::new(
                        ErrorKind::Backend,
                        "postgres: an update matched its checks but wrote nothing",
                    ));
                }
            },
        )
    }
}

#[async_trait]
impl SessionStore for PostgresStore {
    async fn create(
        &self,
        key: &SessionKey,
        expires_at: OffsetDateTime,
        data: &[u8],
    ) -> Result<CreateOutcome> {
        let done = sqlx::query(&self.sql.create)
            .bind(&key.as_bytes()[..])
            .bind(truncate_to_millis(expires_at))
            .bind(data)
            .execute(&self.pool)
            .await
            .map_err(pg("creating a session"))?;
        Ok(if done.rows_affected() == 1 {
            CreateOutcome::Created
        } else {
            CreateOutcome::IdTaken
        })
    }

    async fn read(&self, key: &SessionKey) -> Result<Option<Record>> {
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
    }

    async fn update(
        &self,
        current: &SessionKey,
        previous: &SessionKey,
        expected_version: u64,
        expires_at: OffsetDateTime,
        data: &[u8],
    ) -> Result<UpdateOutcome> {
        if expected_version >= i64::MAX as u64 {
            // No stored version is that high (they are BIGINT), except i64::MAX itself, whose
            // successor cannot be stored: the outcome is NotFound or Conflict, or an overflow.
            return match self.read(previous).await? {
                None => Ok(UpdateOutcome::NotFound),
                Some(record) if record.version == expected_version => {
                    Err(Error::new(ErrorKind::Backend, "postgres: version overflow"))
                }
                Some(_) => Ok(UpdateOutcome::Conflict),
            };
        }
        let expected = encode_version(expected_version)?;
        let expires_at = truncate_to_millis(expires_at);
        // First the plain compare-and-swap: one statement, one round trip, and the answer when it
        // writes (the usual case). When it writes nothing (missing, stale, or an occupant of
        // `current`), the full statement below decides atomically, writing if it now can
        // (replacing an expired occupant) and telling NotFound, Conflict and IdTaken apart.
        let fast = if current == previous {
            sqlx::query(&self.sql.update_fast)
                .bind(&previous.as_bytes()[..])
                .bind(expected)
                .bind(expires_at)
                .bind(data)
        } else {
            sqlx::query(&self.sql.rotate_fast)
                .bind(&current.as_bytes()[..])
                .bind(&previous.as_bytes()[..])
                .bind(expected)
                .bind(expires_at)
                .bind(data)
        };
        match fast.execute(&self.pool).await {
            Ok(done) if done.rows_affected() == 1 => {
                return Ok(UpdateOutcome::Updated {
                    version: expected_version + 1,
                });
            }
            Ok(_) => {}
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some(UNIQUE_VIOLATION) => {}
            Err(e) => return Err(map_sqlx_error("updating a session", e)),
        }
        let query = if current == previous {
            sqlx::query(&self.sql.update)
                .bind(&previous.as_bytes()[..])
                .bind(expected)
                .bind(expires_at)
                .bind(data)
        } else {
            sqlx::query(&self.sql.rotate)
                .bind(&current.as_bytes()[..])
                .bind(&previous.as_bytes()[..])
                .bind(expected)
                .bind(expires_at)
                .bind(data)
        };
        self.run_update(query, expected_version).await
    }

    async fn touch(&self, key: &SessionKey, expires_at: OffsetDateTime) -> Result<bool> {
        let done = sqlx::query(&self.sql.touch)
            .bind(&key.as_bytes()[..])
            .bind(truncate_to_millis(expires_at))
            .execute(&self.pool)
            .await
            .map_err(pg("touching a session"))?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete(&self, key: &SessionKey) -> Result<()> {
        sqlx::query(&self.sql.delete)
            .bind(&key.as_bytes()[..])
            .execute(&self.pool)
            .await
            .map_err(pg("deleting a session"))?;
        Ok(())
    }

    async fn delete_expired(&self) -> Result<u64> {
        let done = sqlx::query(&self.sql.delete_expired)
            .execute(&self.pool)
            .await
            .map_err(pg("deleting expired sessions"))?;
        Ok(done.rows_affected())
    }

    async fn clear(&self) -> Result<()> {
        sqlx::query(&self.sql.clear)
            .execute(&self.pool)
            .await
            .map_err(pg("clearing the table"))?;
        Ok(())
    }
}
