//! [`Instrumented`]: every store operation in a `tracing` span, and counted and timed through
//! the `metrics` facade (feature `metrics`).

use std::time::Instant;

use session_core::time::OffsetDateTime;
use std::future::Future;
use std::pin::Pin;

use session_core::{
    Bytes, Capabilities, CreateOutcome, OwnedSession, Owner, Record, Result, SessionKey,
    SessionStore, UpdateOutcome, WriteOptions,
};
use tracing::Instrument as _;
use tracing::field::Empty;

/// A store whose every operation runs in a `tracing` span named `session_store` (fields
/// `backend`, `operation`, `outcome`, `duration_us`; never a key, a token or data), and, after
/// `with_metrics` (feature `metrics`), is counted
/// (`session_store_operations_total`, labels backend, operation, outcome) and timed
/// (`session_store_operation_seconds`, labels backend, operation) through the `metrics` facade.
///
/// Nothing is timed unless a subscriber wants the span or metrics were asked for: with no
/// subscriber the cost is the span's disabled check and one boxed future (measured in the
/// README).
///
/// Outcomes: `created`, `id_taken`, `found`, `absent`, `updated`, `not_found`, `conflict`,
/// `touched`, `deleted`, `purged`, `cleared`, `listed`, `revoked`, and `error` /
/// `transient_error`.
///
/// Writes with an owner count as `create`, `update` or `rotate` like the others; `sessions_of`
/// and `revoke_owner` have operations of their own.
#[derive(Clone)]
pub struct Instrumented<S> {
    inner: S,
    backend: &'static str,
    /// Metric handles registered once at construction (a recorder installed later is not seen:
    /// install it first), so an operation costs no label building or lookup.
    #[cfg(feature = "metrics")]
    metrics: Option<std::sync::Arc<Handles>>,
}

impl<S> std::fmt::Debug for Instrumented<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instrumented")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

/// The operations, in the order of the handle tables.
const OPERATIONS: [&str; 10] = [
    "create",
    "read",
    "update",
    "rotate",
    "touch",
    "delete",
    "delete_expired",
    "clear",
    "sessions_of",
    "revoke_owner",
];
/// The outcomes, in the order of the handle tables.
const OUTCOMES: [&str; 15] = [
    "created",
    "id_taken",
    "found",
    "absent",
    "updated",
    "not_found",
    "conflict",
    "touched",
    "deleted",
    "purged",
    "cleared",
    "error",
    "transient_error",
    "listed",
    "revoked",
];

/// Indices into [`OUTCOMES`].
const CREATED: usize = 0;
const ID_TAKEN: usize = 1;
const FOUND: usize = 2;
const ABSENT: usize = 3;
const UPDATED: usize = 4;
const NOT_FOUND: usize = 5;
const CONFLICT: usize = 6;
const TOUCHED: usize = 7;
const DELETED: usize = 8;
const PURGED: usize = 9;
const CLEARED: usize = 10;
const ERROR: usize = 11;
const TRANSIENT_ERROR: usize = 12;
const LISTED: usize = 13;
const REVOKED: usize = 14;

#[cfg(feature = "metrics")]
struct Handles {
    counters: Vec<metrics::Counter>,
    histograms: Vec<metrics::Histogram>,
}

/// Whether `operation` (index into [`OPERATIONS`]) can end in `outcome` (into [`OUTCOMES`]):
/// only those counters are registered, so an exporter shows no impossible series.
#[cfg(feature = "metrics")]
fn possible(operation: usize, outcome: usize) -> bool {
    matches!(
        (operation, outcome),
        (_, ERROR | TRANSIENT_ERROR)
            | (0, CREATED | ID_TAKEN)
            | (1, FOUND | ABSENT)
            | (2 | 3, UPDATED | NOT_FOUND | CONFLICT | ID_TAKEN)
            | (4, TOUCHED | NOT_FOUND)
            | (5, DELETED)
            | (6, PURGED)
            | (7, CLEARED)
            | (8, LISTED)
            | (9, REVOKED)
    )
}

#[cfg(feature = "metrics")]
impl Handles {
    fn register(backend: &'static str) -> Self {
        let mut counters = Vec::with_capacity(OPERATIONS.len() * OUTCOMES.len());
        for (i, operation) in OPERATIONS.into_iter().enumerate() {
            for (j, outcome) in OUTCOMES.into_iter().enumerate() {
                counters.push(if possible(i, j) {
                    metrics::counter!(
                        "session_store_operations_total",
                        "backend" => backend,
                        "operation" => operation,
                        "outcome" => outcome
                    )
                } else {
                    metrics::Counter::noop()
                });
            }
        }
        let histograms = OPERATIONS
            .iter()
            .map(|operation| {
                metrics::histogram!(
                    "session_store_operation_seconds",
                    "backend" => backend,
                    "operation" => *operation
                )
            })
            .collect();
        Self {
            counters,
            histograms,
        }
    }
}

impl<S: SessionStore> Instrumented<S> {
    /// Wraps `inner`, naming its backend (`"postgres"`, `"redis"`, …) in spans.
    pub fn new(inner: S, backend: &'static str) -> Self {
        Self {
            inner,
            backend,
            #[cfg(feature = "metrics")]
            metrics: None,
        }
    }

    /// Also counts and times every operation through the `metrics` facade. The handles are
    /// registered here, with the recorder installed now: install the recorder first.
    #[cfg(feature = "metrics")]
    #[must_use]
    pub fn with_metrics(mut self) -> Self {
        self.metrics = Some(std::sync::Arc::new(Handles::register(self.backend)));
        self
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Whether nobody listens: no subscriber enabled at DEBUG anywhere (a static and a global
    /// check) and no metrics asked for.
    fn quiet(&self) -> bool {
        #[cfg(feature = "metrics")]
        if self.metrics.is_some() {
            return false;
        }
        !tracing::level_enabled!(tracing::Level::DEBUG)
    }

    async fn observe<T>(
        &self,
        operation: usize,
        call: impl Future<Output = Result<T>>,
        outcome: impl FnOnce(&T) -> usize,
    ) -> Result<T> {
        let span = tracing::debug_span!(
            "session_store",
            backend = self.backend,
            operation = OPERATIONS[operation],
            outcome = Empty,
            duration_us = Empty
        );
        #[cfg(feature = "metrics")]
        let metrics = self.metrics.as_deref();
        #[cfg(not(feature = "metrics"))]
        let metrics: Option<&()> = None;
        if span.is_disabled() && metrics.is_none() {
            return call.await;
        }
        let started = Instant::now();
        let result = if span.is_disabled() {
            call.await
        } else {
            call.instrument(span.clone()).await
        };
        let elapsed = started.elapsed();
        let outcome = match &result {
            Ok(value) => outcome(value),
            Err(error) if error.is_transient() => TRANSIENT_ERROR,
            Err(_) => ERROR,
        };
        if !span.is_disabled() {
            span.record("outcome", OUTCOMES[outcome]);
            span.record("duration_us", elapsed.as_micros() as u64);
        }
        #[cfg(feature = "metrics")]
        if let Some(metrics) = metrics {
            metrics.counters[operation * OUTCOMES.len() + outcome].increment(1);
            metrics.histograms[operation].record(elapsed.as_secs_f64());
        }
        result
    }
}

fn updated(outcome: &UpdateOutcome) -> usize {
    match outcome {
        UpdateOutcome::Updated { .. } => UPDATED,
        UpdateOutcome::NotFound => NOT_FOUND,
        UpdateOutcome::Conflict => CONFLICT,
        UpdateOutcome::IdTaken => ID_TAKEN,
    }
}

/// The future type of a store method (what `#[async_trait]` makes of `async fn`).
type Boxed<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// Each method hands the inner store's future back untouched when nobody listens (no
/// subscriber at DEBUG, no metrics): no extra allocation, no timing.
#[deny(clippy::missing_trait_methods)]
impl<S: SessionStore> SessionStore for Instrumented<S> {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn create_opts<'a, 'b, 'c, 'async_trait>(
        &'a self,
        key: &'b SessionKey,
        expires_at: OffsetDateTime,
        data: Bytes,
        options: &'c WriteOptions,
    ) -> Boxed<'async_trait, CreateOutcome>
    where
        'a: 'async_trait,
        'b: 'async_trait,
        'c: 'async_trait,
        Self: 'async_trait,
    {
        let call = self.inner.create_opts(key, expires_at, data, options);
        if self.quiet() {
            return call;
        }
        Box::pin(self.observe(0, call, |o| match o {
            CreateOutcome::Created => CREATED,
            CreateOutcome::IdTaken => ID_TAKEN,
        }))
    }

    fn read<'a, 'b, 'async_trait>(
        &'a self,
        key: &'b SessionKey,
    ) -> Boxed<'async_trait, Option<Record>>
    where
        'a: 'async_trait,
        'b: 'async_trait,
        Self: 'async_trait,
    {
        let call = self.inner.read(key);
        if self.quiet() {
            return call;
        }
        Box::pin(self.observe(1, call, |r| if r.is_some() { FOUND } else { ABSENT }))
    }

    fn update_opts<'a, 'b, 'c, 'd, 'async_trait>(
        &'a self,
        current: &'b SessionKey,
        previous: &'c SessionKey,
        expected_version: u64,
        expires_at: OffsetDateTime,
        data: Bytes,
        options: &'d WriteOptions,
    ) -> Boxed<'async_trait, UpdateOutcome>
    where
        'a: 'async_trait,
        'b: 'async_trait,
        'c: 'async_trait,
        'd: 'async_trait,
        Self: 'async_trait,
    {
        let operation = if current == previous { 2 } else { 3 };
        let call = self.inner.update_opts(
            current,
            previous,
            expected_version,
            expires_at,
            data,
            options,
        );
        if self.quiet() {
            return call;
        }
        Box::pin(self.observe(operation, call, updated))
    }

    fn touch<'a, 'b, 'async_trait>(
        &'a self,
        key: &'b SessionKey,
        expires_at: OffsetDateTime,
    ) -> Boxed<'async_trait, bool>
    where
        'a: 'async_trait,
        'b: 'async_trait,
        Self: 'async_trait,
    {
        let call = self.inner.touch(key, expires_at);
        if self.quiet() {
            return call;
        }
        Box::pin(self.observe(4, call, |t| if *t { TOUCHED } else { NOT_FOUND }))
    }

    fn delete<'a, 'b, 'async_trait>(&'a self, key: &'b SessionKey) -> Boxed<'async_trait, ()>
    where
        'a: 'async_trait,
        'b: 'async_trait,
        Self: 'async_trait,
    {
        let call = self.inner.delete(key);
        if self.quiet() {
            return call;
        }
        Box::pin(self.observe(5, call, |_| DELETED))
    }

    fn delete_expired<'a, 'async_trait>(&'a self) -> Boxed<'async_trait, u64>
    where
        'a: 'async_trait,
        Self: 'async_trait,
    {
        let call = self.inner.delete_expired();
        if self.quiet() {
            return call;
        }
        Box::pin(self.observe(6, call, |_| PURGED))
    }

    fn clear<'a, 'async_trait>(&'a self) -> Boxed<'async_trait, ()>
    where
        'a: 'async_trait,
        Self: 'async_trait,
    {
        let call = self.inner.clear();
        if self.quiet() {
            return call;
        }
        Box::pin(self.observe(7, call, |_| CLEARED))
    }

    fn sessions_of<'a, 'b, 'async_trait>(
        &'a self,
        owner: &'b Owner,
    ) -> Boxed<'async_trait, Vec<OwnedSession>>
    where
        'a: 'async_trait,
        'b: 'async_trait,
        Self: 'async_trait,
    {
        let call = self.inner.sessions_of(owner);
        if self.quiet() {
            return call;
        }
        Box::pin(self.observe(8, call, |_| LISTED))
    }

    fn revoke_owner<'a, 'b, 'c, 'async_trait>(
        &'a self,
        owner: &'b Owner,
        except: Option<&'c SessionKey>,
    ) -> Boxed<'async_trait, u64>
    where
        'a: 'async_trait,
        'b: 'async_trait,
        'c: 'async_trait,
        Self: 'async_trait,
    {
        let call = self.inner.revoke_owner(owner, except);
        if self.quiet() {
            return call;
        }
        Box::pin(self.observe(9, call, |_| REVOKED))
    }
}
