//! [`spawn_cleanup`]: purge expired sessions periodically.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use session_core::SessionStore;

/// The longest wait between attempts after failures.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// What the cleanup task has done so far.
#[derive(Debug, Default)]
struct Counters {
    runs: AtomicU64,
    deleted: AtomicU64,
    failures: AtomicU64,
}

/// Controls a task started by [`spawn_cleanup`]. Dropping it stops the task (after the purge in
/// progress, if any, returns).
#[derive(Debug)]
pub struct CleanupHandle {
    stop: watch::Sender<bool>,
    counters: Arc<Counters>,
    task: Option<JoinHandle<()>>,
}

impl CleanupHandle {
    /// Successful `delete_expired` calls so far.
    pub fn runs(&self) -> u64 {
        self.counters.runs.load(Ordering::Acquire)
    }

    /// Expired sessions purged so far.
    pub fn deleted(&self) -> u64 {
        self.counters.deleted.load(Ordering::Acquire)
    }

    /// Failed `delete_expired` calls so far.
    pub fn failures(&self) -> u64 {
        self.counters.failures.load(Ordering::Acquire)
    }

    /// Stops the task and waits for it to end.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for CleanupHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Starts a task on the current tokio runtime that calls `store.delete_expired()` every
/// `interval` (the first call right away).
///
/// Each purge is logged with `tracing` (`debug`, or `info` when it removed sessions) and counted
/// on the returned handle. A failing call is logged at `warn` and retried after a backoff that
/// starts at one second and doubles up to `interval` (at most five minutes); the task never stops
/// by itself. It stops when the handle is dropped or [`CleanupHandle::stop`] is called.
///
/// # Panics
///
/// Panics if called outside a tokio runtime.
pub fn spawn_cleanup<S>(store: S, interval: Duration) -> CleanupHandle
where
    S: SessionStore,
{
    let interval = interval.max(Duration::from_millis(1));
    let (stop, mut stopped) = watch::channel(false);
    let counters = Arc::new(Counters::default());
    let task_counters = Arc::clone(&counters);
    let task = tokio::spawn(async move {
        let mut consecutive_failures = 0u32;
        loop {
            let wait = tokio::select! {
                biased;
                _ = stopped.changed() => break,
                result = store.delete_expired() => match result {
                    Ok(count) => {
                        consecutive_failures = 0;
                        task_counters.runs.fetch_add(1, Ordering::AcqRel);
                        task_counters.deleted.fetch_add(count, Ordering::AcqRel);
                        if count > 0 {
                            tracing::info!(count, "purged expired sessions");
                        } else {
                            tracing::debug!("no expired sessions to purge");
                        }
                        interval
                    }
                    Err(error) => {
                        consecutive_failures = consecutive_failures.saturating_add(1);
                        task_counters.failures.fetch_add(1, Ordering::AcqRel);
                        let backoff = Duration::from_secs(1)
                            .saturating_mul(1 << consecutive_failures.saturating_sub(1).min(16))
                            .min(interval)
                            .min(MAX_BACKOFF);
                        tracing::warn!(%error, retry_in = ?backoff, "purging expired sessions failed");
                        backoff
                    }
                },
            };
            tokio::select! {
                biased;
                _ = stopped.changed() => break,
                () = tokio::time::sleep(wait) => {}
            }
        }
    });
    CleanupHandle {
        stop,
        counters,
        task: Some(task),
    }
}
