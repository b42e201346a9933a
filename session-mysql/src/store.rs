//! [`MysqlStore`]: sessions in a MySQL or MariaDB (InnoDB) table.

use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use session_core::time::OffsetDateTime;
use session_core::{
    Bytes, Capabilities, Counts, CreateOutcome, Error, ErrorKind, OwnedSession, Owner, OwnerChange,
    Record, Result, SessionKey, SessionStore, StoreAdmin, UpdateOutcome, WriteOptions, async_trait,
    from_unix_millis, redact_url, unix_millis,
};
use session_sqlx::Bounds;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool};
use sqlx::{Connection, Executor, Row};

use crate::config::MysqlConfig;
use crate::error::{
    DEADLOCK, DUP_ENTRY, LOCK_WAIT_TIMEOUT, database_kind, error_number, is_retryable,
    map_sqlx_error,
};
use crate::sql::Sql;

/// How many times a rotation that met a deadlock, a lock wait timeout or a key taken
/// meanwhile runs again before the error is returned (always within the operation deadline).
const ROTATION_ATTEMPTS: u32 = 16;

/// Rows removed per statement by `delete_expired` and `clear` (short transactions and locks).
pub(crate) const PURGE_CHUNK: u32 = 5000;

/// A [`SessionStore`] in a MySQL or MariaDB (InnoDB) table.
///
/// `create` is one `INSERT … ON DUPLICATE KEY UPDATE` whose assignments only take effect when
/// the existing row is expired (a live one is never overwritten); `update` in place is one
/// compare-and-swap `UPDATE`; a rotation is one `UPDATE` of the primary key when the new key
/// is free (the common case), otherwise one transaction that locks both rows in key order.
/// Expiry is an integer of Unix milliseconds compared with the server's clock, so no
/// `time_zone` can shift it. Deadlocks and lock wait timeouts under racing rotations are
/// retried inside the store; they never surface as outcomes.
///
/// Every operation has a deadline ([`MysqlConfig::operation_timeout`]) kept by the client.
/// Every connection runs in `READ COMMITTED`. An error of a write means its outcome is unknown,
/// except a `Config` error or an error raised before the statement was sent.
#[derive(Clone)]
pub struct MysqlStore {
    pool: MySqlPool,
    sql: Arc<Sql>,
    config: MysqlConfig,
    /// The operations' deadline, the table check before the first, and the reachability
    /// probe (shared with the other sqlx store).
    bounds: Bounds<sqlx::MySql>,
}

impl fmt::Debug for MysqlStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MysqlStore")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn my(doing: &'static str) -> impl Fn(sqlx::Error) -> Error {
    move |error| map_sqlx_error(doing, error)
}

fn decode_version(version: i64) -> Result<u64> {
    u64::try_from(version)
        .map_err(|_| Error::new(ErrorKind::Decode, "mysql: a stored version is negative"))
}

fn decode_expiry(millis: i64) -> Result<OffsetDateTime> {
    from_unix_millis(millis).ok_or_else(|| {
        Error::new(
            ErrorKind::Decode,
            "mysql: a stored expiry is not a representable time",
        )
    })
}

/// Runs a single-statement write again when InnoDB rolled it back as a deadlock victim or after
/// a lock wait timeout (it then changed nothing), a bounded number of times.
async fn retry_locks<T, F, Fut>(doing: &'static str, mut statement: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<T, sqlx::Error>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match statement().await {
            Ok(value) => return Ok(value),
            Err(e)
                if matches!(error_number(&e), Some(DEADLOCK | LOCK_WAIT_TIMEOUT))
                    && attempt < ROTATION_ATTEMPTS =>
            {
                tokio::time::sleep(Duration::from_millis(u64::from(attempt))).await;
            }
            Err(e) => return Err(map_sqlx_error(doing, e)),
        }
    }
}

/// An [`OwnerChange`] as the statements' four owner parameters.
#[derive(Clone, Copy)]
struct OwnerArgs<'a> {
    /// Write `owner` and `label` (else keep the row's).
    set: bool,
    owner: Option<&'a [u8]>,
    label: Option<&'a [u8]>,
}

impl<'a> OwnerArgs<'a> {
    fn of(change: &'a OwnerChange) -> Self {
        let (set, ownership) = match change {
            OwnerChange::Keep => (false, None),
            OwnerChange::Clear => (true, None),
            OwnerChange::Set(ownership) => (true, Some(ownership)),
        };
        Self {
            set,
            owner: ownership.map(|o| o.owner().as_str().as_bytes()),
            label: ownership.map(|o| o.label().as_bytes()),
        }
    }

    fn bind(
        self,
        query: sqlx::query::Query<'a, sqlx::MySql, sqlx::mysql::MySqlArguments>,
    ) -> sqlx::query::Query<'a, sqlx::MySql, sqlx::mysql::MySqlArguments> {
        query
            .bind(self.set)
            .bind(self.owner)
            .bind(self.set)
            .bind(self.label)
    }
}

/// What the locking path of a rotation decided.
enum Locked {
    Outcome(UpdateOutcome),
    Retry,
}

/// InnoDB's row lock wait for a store whose operations end after `deadline`: whole seconds
/// (the server's unit), rounded down to stay inside the deadline, at least 1.
fn lock_wait_seconds(deadline: std::time::Duration) -> u64 {
    deadline.as_secs().max(1)
}

impl MysqlStore {
    /// Opens a store with `config`: connects once (so the error of an unreachable server says
    /// why), then checks the table and creates it if missing and allowed. With
    /// [`MysqlConfig::lazy`] it connects nothing and succeeds at once.
    ///
    /// A bad table name or URL is a `Config` error before anything is sent; an unreachable
    /// server is a transient `Backend` error (within `acquire_timeout`); wrong credentials or an
    /// unknown database are `Config`. Messages never include passwords.
    pub async fn connect(config: MysqlConfig) -> Result<Self> {
        let config = config.parse(&[])?;
        let url = config.driver_url();
        let options = MySqlConnectOptions::from_str(&url).map_err(|e| {
            Error::with_source(
                ErrorKind::Config,
                format!("mysql: invalid URL {}", redact_url(&config.url)),
                e,
            )
        })?;
        let lock_wait: std::sync::Arc<str> = format!(
            "SET SESSION innodb_lock_wait_timeout = {}",
            lock_wait_seconds(config.operation_timeout)
        )
        .into();
        let pool = session_sqlx::pool_options::<sqlx::MySql>(
            config.max_connections,
            config.min_connections,
            config.acquire_timeout,
        )
        .after_connect(move |connection, _| {
            let lock_wait = std::sync::Arc::clone(&lock_wait);
            Box::pin(async move {
                connection
                    .execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                    .await?;
                // A row lock waits at most as long as the operation may take: the server's
                // default (50 s) is far past the deadline, so the store's retry of a lock wait
                // timeout could never run and a lock wait would outlive its caller.
                connection.execute(&*lock_wait).await.map(drop)
            })
        })
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

    /// A store over an existing pool (whose connections should run in `READ COMMITTED`). The
    /// table is checked (and created if missing and allowed) by the first operation, or call
    /// [`migrate`](Self::migrate). `config.url` and the pool settings are not used.
    pub fn with_pool(pool: MySqlPool, config: MysqlConfig) -> Result<Self> {
        config.validate()?;
        let sql = Arc::new(Sql::new(&config.table));
        let bounds = Bounds::new(
            "mysql",
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

    /// The pool, for queries of your own.
    pub fn pool(&self) -> &MySqlPool {
        &self.pool
    }

    /// The configuration.
    pub fn config(&self) -> &MysqlConfig {
        &self.config
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

    /// Checks that the table exists with the right layout; creates it when missing and allowed
    /// ([`MysqlConfig::migrate`]). Runs no DDL when it exists.
    pub async fn migrate(&self) -> Result<()> {
        self.check_or_create_table().await?;
        self.bounds.set_ready();
        Ok(())
    }

    async fn check_or_create_table(&self) -> Result<()> {
        let found: i64 = sqlx::query_scalar(self.sql.exists)
            .bind(&self.config.table)
            .fetch_one(&self.pool)
            .await
            .map_err(my("looking for the session table"))?;
        if found == 0 {
            if !self.config.migrate {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!(
                        "mysql: table {} does not exist and migrate=false forbids creating it",
                        self.config.table
                    ),
                ));
            }
            self.pool
                .execute(self.sql.table.as_str())
                .await
                .map_err(my("creating the session table"))?;
        }
        match self.pool.execute(self.sql.layout.as_str()).await {
            Ok(_) => {}
            Err(e) if error_number(&e) == Some(1054) => {
                return Err(Error::with_source(
                    ErrorKind::Config,
                    format!(
                        "mysql: table {} exists with another layout",
                        self.config.table
                    ),
                    e,
                ));
            }
            Err(e) => return Err(map_sqlx_error("checking the session table", e)),
        }
        self.add_owner_columns().await
    }

    /// Adds the owner index's columns to a table made before it (when migrating is allowed;
    /// otherwise the owner operations fail and a warning says why). Several instances may race
    /// to do it: the loser's duplicate-column error means it is done.
    async fn add_owner_columns(&self) -> Result<()> {
        match self.pool.execute(self.sql.owner_layout.as_str()).await {
            Ok(_) => return Ok(()),
            Err(e) if error_number(&e) == Some(1054) => {}
            Err(e) => return Err(map_sqlx_error("checking the owner columns", e)),
        }
        if !self.config.migrate {
            tracing::warn!(
                table = %self.config.table,
                "the session table has no owner columns (made before the owner index; migrate=false): the owner operations fail"
            );
            return Ok(());
        }
        match self.pool.execute(self.sql.owner_columns.as_str()).await {
            Ok(_) => Ok(()),
            // Duplicate column or index name: another instance added them meanwhile.
            Err(e) if matches!(error_number(&e), Some(1060 | 1061)) => Ok(()),
            Err(e) => Err(map_sqlx_error("adding the owner columns", e)),
        }
    }

    /// Live and expired (not yet purged) records of this table: `(live, expired)`.
    pub async fn counts(&self) -> Result<(u64, u64)> {
        self.bounded("counting sessions", async {
            let row = sqlx::query(&self.sql.counts)
                .fetch_one(&self.pool)
                .await
                .map_err(my("counting sessions"))?;
            let (live, expired): (i64, i64) = (
                row.try_get(0).map_err(my("counting"))?,
                row.try_get(1).map_err(my("counting"))?,
            );
            Ok((live.max(0) as u64, expired.max(0) as u64))
        })
        .await
    }

    /// The live version at `key`, if any.
    async fn live_version(&self, key: &SessionKey) -> Result<Option<u64>> {
        let version: Option<i64> = sqlx::query_scalar(&self.sql.version)
            .bind(&key.as_bytes()[..])
            .fetch_optional(&self.pool)
            .await
            .map_err(my("reading a version"))?;
        version.map(decode_version).transpose()
    }

    /// The locking path of a rotation: one transaction that locks both rows in key order,
    /// decides, removes an expired occupant of `current` and moves the row.
    async fn rotate_locked(
        &self,
        current: &SessionKey,
        previous: &SessionKey,
        expected: u64,
        expires_at: i64,
        data: &[u8],
        owner: OwnerArgs<'_>,
    ) -> std::result::Result<Locked, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(&self.sql.lock_pair)
            .bind(&current.as_bytes()[..])
            .bind(&previous.as_bytes()[..])
            .fetch_all(&mut *tx)
            .await?;
        let (mut prev, mut occupant) = (None, None);
        for row in rows {
            let key: Vec<u8> = row.try_get(0)?;
            let version: i64 = row.try_get(1)?;
            let live: i64 = row.try_get(2)?;
            if key == previous.as_bytes()[..] {
                prev = Some((version, live != 0));
            } else {
                occupant = Some(live != 0);
            }
        }
        let outcome = match (prev, occupant) {
            (None | Some((_, false)), _) => Some(UpdateOutcome::NotFound),
            (Some((version, true)), _) if version != expected as i64 => {
                Some(UpdateOutcome::Conflict)
            }
            (_, Some(true)) => Some(UpdateOutcome::IdTaken),
            _ => None,
        };
        if let Some(outcome) = outcome {
            tx.rollback().await?;
            return Ok(Locked::Outcome(outcome));
        }
        if occupant.is_some() {
            sqlx::query(&self.sql.remove_expired_at)
                .bind(&current.as_bytes()[..])
                .execute(&mut *tx)
                .await?;
        }
        let version = expected as i64 + 1;
        let moved = owner
            .bind(
                sqlx::query(&self.sql.move_row)
                    .bind(&current.as_bytes()[..])
                    .bind(expires_at)
                    .bind(version)
                    .bind(data),
            )
            .bind(&previous.as_bytes()[..])
            .execute(&mut *tx)
            .await?;
        if moved.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(Locked::Retry);
        }
        tx.commit().await?;
        Ok(Locked::Outcome(UpdateOutcome::Updated {
            version: version as u64,
        }))
    }

    /// One compare-and-swap statement (in place, or moving the key when `current` is free);
    /// `None` when it wrote nothing and the reason must be found.
    async fn update_once(
        &self,
        current: &SessionKey,
        previous: &SessionKey,
        expected: u64,
        expires_at: i64,
        data: &[u8],
        owner: OwnerArgs<'_>,
    ) -> Result<Option<UpdateOutcome>> {
        if current == previous {
            let done = retry_locks("updating a session", || {
                owner
                    .bind(sqlx::query(&self.sql.update).bind(expires_at).bind(data))
                    .bind(&previous.as_bytes()[..])
                    .bind(expected as i64)
                    .execute(&self.pool)
            })
            .await?;
            return Ok(
                (done.rows_affected() == 1).then_some(UpdateOutcome::Updated {
                    version: expected + 1,
                }),
            );
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let fast = owner
                .bind(
                    sqlx::query(&self.sql.rotate)
                        .bind(&current.as_bytes()[..])
                        .bind(expires_at)
                        .bind(data),
                )
                .bind(&previous.as_bytes()[..])
                .bind(expected as i64)
                .execute(&self.pool)
                .await;
            let result = match fast {
                Ok(done) if done.rows_affected() == 1 => {
                    return Ok(Some(UpdateOutcome::Updated {
                        version: expected + 1,
                    }));
                }
                Ok(_) => return Ok(None),
                // `current` holds a row (live or expired): the locking path decides.
                Err(e) if error_number(&e) == Some(DUP_ENTRY) => {
                    match self
                        .rotate_locked(current, previous, expected, expires_at, data, owner)
                        .await
                    {
                        Ok(Locked::Outcome(outcome)) => return Ok(Some(outcome)),
                        Ok(Locked::Retry) => Ok(()),
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => {}
                Err(e) if is_retryable(&e) && attempt < ROTATION_ATTEMPTS => {}
                Err(e) => return Err(map_sqlx_error("rotating a session id", e)),
            }
            // Rolled back by the server (a deadlock victim, a lock wait timeout, a key taken
            // meanwhile): nothing was written; run again after a short pause.
            tokio::time::sleep(Duration::from_millis(u64::from(attempt))).await;
        }
    }
}

/// The owner index: `owner`/`label` columns (bytes, compared exactly) with an index on
/// `owner`. `revoke_owner` is one `REPEATABLE READ` transaction whose locking read takes the
/// owner's whole index range (gaps included): a rotation of one of its sessions waits for it
/// or has committed before it, so none escapes. Deadlocks with racing rotations are retried.
#[async_trait]
impl SessionStore for MysqlStore {
    /// Every operation answers within [`operation_timeout`](crate::MysqlConfig::operation_timeout).
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
            let done = retry_locks("creating a session", || {
                sqlx::query(&self.sql.create)
                    .bind(&key.as_bytes()[..])
                    .bind(unix_millis(expires_at))
                    .bind(&data[..])
                    .bind(owner.map(|o| o.owner().as_str().as_bytes()))
                    .bind(owner.map(|o| o.label().as_bytes()))
                    .execute(&self.pool)
            })
            .await?;
            Ok(match (done.rows_affected(), done.last_insert_id()) {
                // A new row (an insert reports no id), or an expired row replaced.
                (1, 0) | (2, _) => CreateOutcome::Created,
                // A live row, untouched: found (1 with FOUND_ROWS, 0 without), its version
                // reported through LAST_INSERT_ID.
                _ => CreateOutcome::IdTaken,
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
        let owner = OwnerArgs::of(&options.owner);
        self.bounded("updating a session", async {
            if expected_version >= i64::MAX as u64 {
                // No stored version is that high (they are BIGINT), except i64::MAX itself,
                // whose successor cannot be stored.
                return match self.live_version(previous).await? {
                    None => Ok(UpdateOutcome::NotFound),
                    Some(version) if version == expected_version => Err(Error::new(
                        ErrorKind::Decode,
                        "mysql: the stored version is at its maximum (a corrupt record)",
                    )),
                    Some(_) => Ok(UpdateOutcome::Conflict),
                };
            }
            let expires_at = unix_millis(expires_at);
            loop {
                if let Some(outcome) = self
                    .update_once(
                        current,
                        previous,
                        expected_version,
                        expires_at,
                        &data,
                        owner,
                    )
                    .await?
                {
                    return Ok(outcome);
                }
                // Nothing written: say why. A live row with the expected version means it
                // changed between the two statements; try again.
                match self.live_version(previous).await? {
                    None => return Ok(UpdateOutcome::NotFound),
                    Some(version) if version != expected_version => {
                        return Ok(UpdateOutcome::Conflict);
                    }
                    Some(_) => {}
                }
            }
        })
        .await
    }

    async fn read(&self, key: &SessionKey) -> Result<Option<Record>> {
        self.bounded("reading a session", async {
            let row = sqlx::query(&self.sql.read)
                .bind(&key.as_bytes()[..])
                .fetch_optional(&self.pool)
                .await
                .map_err(my("reading a session"))?;
            let Some(row) = row else { return Ok(None) };
            let millis: i64 = row.try_get(0).map_err(my("decoding a session"))?;
            let version: i64 = row.try_get(1).map_err(my("decoding a session"))?;
            let data: Vec<u8> = row.try_get(2).map_err(my("decoding a session"))?;
            Ok(Some(Record {
                data: Bytes::from(data),
                expires_at: decode_expiry(millis)?,
                version: decode_version(version)?,
            }))
        })
        .await
    }

    async fn touch(&self, key: &SessionKey, expires_at: OffsetDateTime) -> Result<bool> {
        self.bounded("touching a session", async {
            let done = retry_locks("touching a session", || {
                sqlx::query(&self.sql.touch)
                    .bind(unix_millis(expires_at))
                    .bind(&key.as_bytes()[..])
                    .execute(&self.pool)
            })
            .await?;
            // FOUND_ROWS: a matched row counts even when its expiry did not change.
            Ok(done.rows_affected() >= 1)
        })
        .await
    }

    async fn delete(&self, key: &SessionKey) -> Result<()> {
        self.bounded("deleting a session", async {
            retry_locks("deleting a session", || {
                sqlx::query(&self.sql.delete)
                    .bind(&key.as_bytes()[..])
                    .execute(&self.pool)
            })
            .await
            .map(drop)
        })
        .await
    }

    async fn delete_expired(&self) -> Result<u64> {
        self.bounded("purging expired sessions", async {
            let mut total = 0;
            loop {
                let done = retry_locks("purging expired sessions", || {
                    sqlx::query(&self.sql.delete_expired).execute(&self.pool)
                })
                .await?;
                total += done.rows_affected();
                if done.rows_affected() < u64::from(PURGE_CHUNK) {
                    return Ok(total);
                }
            }
        })
        .await
    }

    async fn clear(&self) -> Result<()> {
        self.bounded("clearing the table", async {
            loop {
                let done = retry_locks("clearing the table", || {
                    sqlx::query(&self.sql.clear).execute(&self.pool)
                })
                .await?;
                if done.rows_affected() < u64::from(PURGE_CHUNK) {
                    return Ok(());
                }
            }
        })
        .await
    }

    async fn sessions_of(&self, owner: &Owner) -> Result<Vec<OwnedSession>> {
        self.bounded("listing an owner's sessions", async {
            let rows = sqlx::query(&self.sql.sessions_of)
                .bind(owner.as_str().as_bytes())
                .fetch_all(&self.pool)
                .await
                .map_err(my("listing an owner's sessions"))?;
            rows.iter()
                .map(|row| {
                    let key: Vec<u8> = row.try_get(0).map_err(my("decoding a listed session"))?;
                    let millis: i64 = row.try_get(1).map_err(my("decoding a listed session"))?;
                    let version: i64 = row.try_get(2).map_err(my("decoding a listed session"))?;
                    let label: Option<Vec<u8>> =
                        row.try_get(3).map_err(my("decoding a listed session"))?;
                    Ok(OwnedSession {
                        key: SessionKey::from_bytes(&key)?,
                        expires_at: decode_expiry(millis)?,
                        version: decode_version(version)?,
                        label: decode_label(label)?,
                    })
                })
                .collect()
        })
        .await
    }

    async fn revoke_owner(&self, owner: &Owner, except: Option<&SessionKey>) -> Result<u64> {
        // No key is empty: `k <> ''` keeps every row when nothing is excepted.
        let except: &[u8] = except.map_or(&[], |key| &key.as_bytes()[..]);
        let owner = owner.as_str().as_bytes();
        self.bounded("revoking an owner's sessions", async {
            retry_locks("revoking an owner's sessions", || async {
                let mut connection = self.pool.acquire().await?;
                connection
                    .execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    .await?;
                let mut tx = connection.begin().await?;
                let live: i64 = sqlx::query_scalar(&self.sql.count_owned)
                    .bind(owner)
                    .bind(except)
                    .fetch_one(&mut *tx)
                    .await?;
                sqlx::query(&self.sql.revoke)
                    .bind(owner)
                    .bind(except)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(live.max(0) as u64)
            })
            .await
        })
        .await
    }
}

#[async_trait]
impl StoreAdmin for MysqlStore {
    fn backend(&self) -> &'static str {
        "mysql"
    }

    async fn counts(&self) -> Result<Counts> {
        let (live, expired) = MysqlStore::counts(self).await?;
        Ok(Counts {
            live,
            expired: Some(expired),
        })
    }

    /// Drops this store's table. Not through `bounded`, which would first create the table
    /// it is about to drop.
    async fn drop_namespace(&self) -> Result<()> {
        tokio::time::timeout(self.config.operation_timeout, async {
            self.pool
                .execute(self.sql.drop.as_str())
                .await
                .map(drop)
                .map_err(my("dropping the table"))
        })
        .await
        .map_err(|elapsed| {
            Error::with_source(
                ErrorKind::Backend,
                "mysql: dropping the table: no answer",
                elapsed,
            )
            .transient(true)
        })?
    }

    fn gauges(&self) -> session_core::Gauges {
        session_core::Gauges::pool(u64::from(self.pool.size()), self.pool.num_idle() as u64)
    }
}

fn decode_label(label: Option<Vec<u8>>) -> Result<String> {
    String::from_utf8(label.unwrap_or_default())
        .map_err(|e| Error::with_source(ErrorKind::Decode, "mysql: a stored label is not UTF-8", e))
}
