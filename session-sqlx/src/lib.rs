#![doc = include_str!("../README.md")]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use session_core::{Error, ErrorKind, Result};
use sqlx::pool::PoolOptions;
use sqlx::{ConnectOptions, Connection, Database};
use tokio::sync::OnceCell;

/// The pool every sqlx store opens: its size, how long a checkout may wait, and no ping before
/// a checkout (a ping would double the round trips; a dead connection fails its operation with
/// a transient error and is replaced).
pub fn pool_options<DB: Database>(
    max_connections: u32,
    min_connections: u32,
    acquire_timeout: Duration,
) -> PoolOptions<DB> {
    PoolOptions::new()
        .max_connections(max_connections)
        .min_connections(min_connections)
        .acquire_timeout(acquire_timeout)
        .test_before_acquire(false)
}

/// What the database's own errors mean: the kind and whether a retry may help, or `None` for
/// the common mapping.
pub type DatabaseKind = fn(&dyn sqlx::error::DatabaseError) -> Option<(ErrorKind, bool)>;

/// Maps an sqlx error met while `doing` something to a session [`Error`] of `backend`, keeping
/// it as the source. Database errors are what `database` says (else a permanent `Backend`
/// error); lost connections, pool timeouts and crashed workers are transient; configuration and
/// TLS problems are `Config`; decoding problems `Decode`.
pub fn map_error(
    backend: &'static str,
    doing: &'static str,
    error: sqlx::Error,
    database: DatabaseKind,
) -> Error {
    use sqlx::Error as E;
    let (kind, transient) = match &error {
        E::Database(db) => database(db.as_ref()).unwrap_or((ErrorKind::Backend, false)),
        E::Io(_) | E::PoolTimedOut | E::Protocol(_) | E::WorkerCrashed => {
            (ErrorKind::Backend, true)
        }
        E::Configuration(_) | E::Tls(_) => (ErrorKind::Config, false),
        E::ColumnDecode { .. } | E::Decode(_) | E::TypeNotFound { .. } | E::ColumnNotFound(_) => {
            (ErrorKind::Decode, false)
        }
        _ => (ErrorKind::Backend, false),
    };
    Error::with_source(kind, format!("{backend}: {doing}"), error).transient(transient)
}

/// Whether `error` comes from waiting for a pool connection in vain.
pub fn is_pool_timeout(error: &Error) -> bool {
    std::error::Error::source(error)
        .and_then(|source| source.downcast_ref::<sqlx::Error>())
        .is_some_and(|e| matches!(e, sqlx::Error::PoolTimedOut))
}

/// The bounds of a store's operations: the deadline of each, the schema check that runs once
/// before the first, and, when the pool cannot connect, one connection attempt of its own that
/// says why (refused, unknown host, TLS, authentication).
pub struct Bounds<DB: Database> {
    backend: &'static str,
    operation_timeout: Duration,
    acquire_timeout: Duration,
    /// How to open a connection of our own (`None` for a pool handed in by the application).
    connect_options: Option<Arc<<DB::Connection as Connection>::Options>>,
    map: DatabaseKind,
    /// Set once the schema is known to be there.
    ready: Arc<OnceCell<()>>,
}

impl<DB: Database> Clone for Bounds<DB> {
    fn clone(&self) -> Self {
        Self {
            backend: self.backend,
            operation_timeout: self.operation_timeout,
            acquire_timeout: self.acquire_timeout,
            connect_options: self.connect_options.clone(),
            map: self.map,
            ready: Arc::clone(&self.ready),
        }
    }
}

impl<DB: Database> Bounds<DB> {
    /// Bounds for `backend`'s operations; `map` says what its server's error codes mean.
    pub fn new(
        backend: &'static str,
        operation_timeout: Duration,
        acquire_timeout: Duration,
        map: DatabaseKind,
    ) -> Self {
        Self {
            backend,
            operation_timeout,
            acquire_timeout,
            connect_options: None,
            map,
            ready: Arc::new(OnceCell::new()),
        }
    }

    /// Probes reachability with connections opened from `options` (without them, for a pool
    /// handed in, a pool that cannot connect is reported as it is).
    #[must_use]
    pub fn with_connect_options(
        mut self,
        options: <DB::Connection as Connection>::Options,
    ) -> Self {
        self.connect_options = Some(Arc::new(options));
        self
    }

    /// Marks the schema as checked (after a `migrate`).
    pub fn set_ready(&self) {
        let _ = self.ready.set(());
    }

    /// Why no connection can be opened, if it cannot: one connection attempt of its own (within
    /// `acquire_timeout`), its error mapped. `None` when it connects, or for a pool handed in.
    pub async fn why_unreachable(&self) -> Option<Error> {
        let options = self.connect_options.as_ref()?;
        match tokio::time::timeout(self.acquire_timeout, options.connect()).await {
            Ok(Ok(connection)) => {
                let _ = connection.close().await;
                None
            }
            Ok(Err(e)) => Some(map_error(self.backend, "connecting", e, self.map)),
            Err(elapsed) => Some(
                Error::with_source(
                    ErrorKind::Backend,
                    format!(
                        "{}: connecting: no answer within {} ms",
                        self.backend,
                        self.acquire_timeout.as_millis()
                    ),
                    elapsed,
                )
                .transient(true),
            ),
        }
    }

    /// Runs `op` after `check_schema` (once per store), and returns within the operation
    /// deadline, whatever happens: a missed deadline, or a pool that could not connect, becomes
    /// a transient error saying why. When the pool holds no connection (`pool_size` 0: at start,
    /// or after an outage) a probe connection runs beside the work, inside the same deadline, so
    /// the error can say why the server is unreachable without waiting any longer.
    pub async fn run<T, C, CF>(
        &self,
        doing: &'static str,
        pool_size: impl Fn() -> u32,
        check_schema: C,
        op: impl Future<Output = Result<T>>,
    ) -> Result<T>
    where
        C: FnOnce() -> CF,
        CF: Future<Output = Result<()>>,
    {
        let deadline = tokio::time::Instant::now() + self.operation_timeout;
        let work = tokio::time::timeout_at(deadline, async {
            self.ready.get_or_try_init(check_schema).await?;
            op.await
        });
        let probing = pool_size() == 0 && self.connect_options.is_some();
        let probe = async {
            if probing {
                self.why_unreachable().await
            } else {
                std::future::pending().await
            }
        };
        tokio::pin!(work, probe);
        // The probe's answer once it has one: `Some(None)` when it connected.
        let mut probed: Option<Option<Error>> = None;
        let outcome = loop {
            tokio::select! {
                outcome = &mut work => break outcome,
                cause = &mut probe, if probed.is_none() => probed = Some(cause),
            }
        };
        let unreachable = |cause| {
            Error::with_source(
                ErrorKind::Backend,
                format!("{}: {doing}: no connection could be opened", self.backend),
                cause,
            )
            .transient(true)
        };
        match outcome {
            Ok(Err(error)) if is_pool_timeout(&error) => {
                let cause = match probed {
                    Some(cause) => cause,
                    // Whatever time the deadline leaves.
                    None => tokio::time::timeout_at(deadline, self.why_unreachable())
                        .await
                        .ok()
                        .flatten(),
                };
                Err(cause.map_or(error, unreachable))
            }
            Ok(result) => result,
            Err(elapsed) => {
                if let Some(Some(cause)) = probed {
                    return Err(unreachable(cause));
                }
                Err(Error::with_source(
                    ErrorKind::Backend,
                    format!(
                        "{}: {doing}: no answer within the {} ms deadline; the outcome is unknown",
                        self.backend,
                        self.operation_timeout.as_millis()
                    ),
                    elapsed,
                )
                .transient(true))
            }
        }
    }
}
