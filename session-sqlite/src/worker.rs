//! The threads that own the connections: one writer with group commit, a pool of readers.
//!
//! SQLite has one writer per database. Instead of letting tasks fight over the write lock (and
//! stall on `SQLITE_BUSY`), every write of a store goes to one thread through a queue. The thread
//! takes whatever is queued (up to [`MAX_BATCH`]) and runs it as one `BEGIN IMMEDIATE`
//! transaction, each job inside its own savepoint, then commits once: under load many writes
//! share one commit (and, with `synchronous=FULL`, one fsync). A job's result is sent only after
//! the commit succeeded, so nothing is acknowledged that is not durable at the configured level.
//!
//! WAL checkpoints run on a third thread (`PASSIVE`, every 50 ms), not inside a writer's commit,
//! so a checkpoint never stalls the write queue. Passive checkpoints cannot finish while readers
//! keep old snapshots alive, so before each batch the writer looks at the WAL file, and when it
//! has passed half its limit the writer itself runs a `TRUNCATE` checkpoint (waiting for readers
//! to move on, copying the log back and resetting the file) before writing more: the WAL cannot
//! outgrow half its limit by more than one batch (at most 256 writes), however busy the machine
//! is, unless a reader keeps an old snapshot for longer than the busy timeout.
//!
//! Both queues are bounded: a full queue fails the operation at once ("overloaded", transient)
//! rather than holding memory without bound. A job whose caller went away (its future was
//! dropped, e.g. by a timeout) before the job started is skipped, never applied later.

use std::path::PathBuf;
use std::sync::Arc;
use std::thread;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use rusqlite::Connection;
use session_core::{Error, ErrorKind, Result};
use tokio::sync::oneshot;

/// The most jobs committed together.
const MAX_BATCH: usize = 256;

/// What a finished write job does once the batch's fate is known: `Ok` when the batch committed.
type Completion = Box<dyn FnOnce(Result<(), &Arc<rusqlite::Error>>) + Send>;
/// Runs a write given the connection (or why the batch could not start), says whether it
/// succeeded, and returns what to do once the commit's outcome is known.
type RunWrite =
    Box<dyn FnOnce(Result<&Connection, &Arc<rusqlite::Error>>) -> (bool, Completion) + Send>;

/// How much of the database a write job changes in one go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Statements {
    /// One statement: SQLite makes it atomic by itself, no savepoint needed.
    One,
    /// Several statements: wrapped in a savepoint so a failure undoes all of them.
    Many,
}

struct WriteJob {
    statements: Statements,
    run: RunWrite,
}

/// How often the checkpointer folds the WAL back into the database.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(50);
type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

/// Limits of the workers.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    /// Capacity of each queue.
    pub(crate) queue: usize,
    /// Most bytes of the WAL file.
    pub(crate) wal: u64,
    /// The WAL file (`<database>-wal`).
    pub(crate) wal_path: PathBuf,
}

fn overloaded(what: &str, limit: usize) -> Error {
    Error::new(
        ErrorKind::Backend,
        format!("sqlite: the store is overloaded: {limit} {what} already queued; try again later"),
    )
    .transient(true)
}

fn closed() -> Error {
    Error::new(
        ErrorKind::Backend,
        "sqlite: the store's worker thread stopped",
    )
}

/// Handles to the worker threads. Dropping it lets the threads finish their queues and exit.
pub(crate) struct Workers {
    writes: Sender<WriteJob>,
    reads: Sender<ReadJob>,
    /// Dropped with the workers, which tells the checkpointer to stop.
    _stop_checkpoints: Sender<()>,
}

impl Workers {
    pub(crate) fn spawn(
        writer: Connection,
        readers: Vec<Connection>,
        checkpointer: Connection,
        limits: Limits,
    ) -> Result<Self> {
        let (writes, write_queue) = crossbeam_channel::bounded::<WriteJob>(limits.queue);
        let (stop_checkpoints, stopped) = crossbeam_channel::bounded::<()>(0);
        let (reads, read_queue) = crossbeam_channel::bounded::<ReadJob>(limits.queue);
        let spawn_error = |e| {
            Error::with_source(
                ErrorKind::Backend,
                "sqlite: cannot start a worker thread",
                e,
            )
        };
        thread::Builder::new()
            .name("session-sqlite-writer".into())
            .spawn(move || write_loop(writer, write_queue, limits))
            .map_err(spawn_error)?;
        thread::Builder::new()
            .name("session-sqlite-checkpointer".into())
            .spawn(move || checkpoint_loop(checkpointer, stopped))
            .map_err(spawn_error)?;
        for (i, connection) in readers.into_iter().enumerate() {
            let queue = read_queue.clone();
            thread::Builder::new()
                .name(format!("session-sqlite-reader-{i}"))
                .spawn(move || read_loop(connection, queue))
                .map_err(spawn_error)?;
        }
        Ok(Self {
            writes,
            reads,
            _stop_checkpoints: stop_checkpoints,
        })
    }

    /// Runs `op` on the writer inside the next batch's transaction; its result arrives after the
    /// commit. `op` must leave the database unchanged when it returns an error (the savepoint
    /// around it is rolled back anyway).
    pub(crate) async fn write<T: Send + 'static>(
        &self,
        statements: Statements,
        op: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        let run: RunWrite = Box::new(move |connection| {
            if reply.is_closed() {
                // The caller is gone: nobody would learn the outcome, so do nothing.
                return (true, Box::new(|_| {}));
            }
            let connection = match connection {
                Ok(connection) => connection,
                Err(error) => {
                    let _ = reply.send(Err(batch_error(
                        "sqlite: could not start a write transaction",
                        error,
                    )));
                    return (false, Box::new(|_| {}));
                }
            };
            let result = op(connection);
            let ok = result.is_ok();
            let completion: Completion = Box::new(move |commit| {
                let result = match commit {
                    Ok(()) => result,
                    Err(error) => Err(batch_error(
                        "sqlite: the transaction holding this write failed to commit",
                        error,
                    )),
                };
                let _ = reply.send(result);
            });
            (ok, completion)
        });
        self.writes
            .try_send(WriteJob { statements, run })
            .map_err(|e| match e {
                TrySendError::Full(_) => overloaded("writes", self.writes.capacity().unwrap_or(0)),
                TrySendError::Disconnected(_) => closed(),
            })?;
        answer.await.map_err(|_| closed())?
    }

    /// Operations waiting for the writer and for the readers.
    pub(crate) fn queued(&self) -> (usize, usize) {
        (self.writes.len(), self.reads.len())
    }

    /// Runs `op` on one of the readers.
    pub(crate) async fn read<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        self.reads
            .try_send(Box::new(move |connection| {
                if !reply.is_closed() {
                    let _ = reply.send(op(connection));
                }
            }))
            .map_err(|e| match e {
                TrySendError::Full(_) => overloaded("reads", self.reads.capacity().unwrap_or(0)),
                TrySendError::Disconnected(_) => closed(),
            })?;
        answer.await.map_err(|_| closed())?
    }
}

/// An error shared by every job of a batch, each job getting its own `Error` over the same source.
fn batch_error(message: &'static str, error: &Arc<rusqlite::Error>) -> Error {
    let busy = matches!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    );
    Error::backend(message, Arc::clone(error), busy)
}

fn read_loop(connection: Connection, queue: Receiver<ReadJob>) {
    while let Ok(job) = queue.recv() {
        job(&connection);
    }
}

fn write_loop(connection: Connection, queue: Receiver<WriteJob>, limits: Limits) {
    let mut batch: Vec<WriteJob> = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = queue.recv() {
        let wal = std::fs::metadata(&limits.wal_path).map_or(0, |m| m.len());
        if wal > limits.wal / 2 {
            // Readers kept the passive checkpoints from finishing: wait for them (busy
            // handler), copy everything back and reset the file before writing more.
            match connection.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
                row.get::<_, i64>(0)
            }) {
                Ok(0) => tracing::debug!(wal, "sqlite: WAL truncated"),
                Ok(_) => tracing::debug!(wal, "sqlite: a TRUNCATE checkpoint met a busy reader"),
                Err(error) => tracing::debug!(%error, "sqlite: a TRUNCATE checkpoint failed"),
            }
        }
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        run_batch(&connection, &mut batch);
    }
}

fn checkpoint_loop(connection: Connection, stop: Receiver<()>) {
    while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
        stop.recv_timeout(CHECKPOINT_EVERY)
    {
        if let Err(error) = connection.execute_batch("PRAGMA wal_checkpoint(PASSIVE)") {
            tracing::debug!(%error, "sqlite: a WAL checkpoint did not run");
        }
    }
}

/// Fails every job not run yet with `error`.
fn fail_rest(jobs: impl Iterator<Item = WriteJob>, error: &Arc<rusqlite::Error>) {
    for job in jobs {
        let _ = (job.run)(Err(error));
    }
}

fn run_batch(connection: &Connection, batch: &mut Vec<WriteJob>) {
    if let Err(error) = connection.execute_batch("BEGIN IMMEDIATE") {
        fail_rest(batch.drain(..), &Arc::new(error));
        return;
    }
    // One job needs no savepoint: the transaction itself is rolled back if it fails.
    let single = batch.len() == 1;
    let mut completions: Vec<(bool, Completion)> = Vec::with_capacity(batch.len());
    let mut jobs = batch.drain(..);
    while let Some(job) = jobs.next() {
        let savepoint = !single && job.statements == Statements::Many;
        if savepoint && let Err(error) = connection.execute_batch("SAVEPOINT job") {
            let _ = (job.run)(Err(&Arc::new(error)));
            continue;
        }
        let (ok, completion) = (job.run)(Ok(connection));
        let ended = match (savepoint, ok) {
            (false, _) => Ok(()),
            (true, true) => connection.execute_batch("RELEASE job"),
            (true, false) => connection.execute_batch("ROLLBACK TO job; RELEASE job"),
        };
        completions.push((ok, completion));
        // Some errors (I/O, full disk, busy) roll the whole transaction back; the jobs after it
        // would then run in autocommit mode and could not be undone. Stop the batch instead.
        let lost = !ok && !single && connection.is_autocommit();
        if let Err(error) = ended.map_err(Arc::new) {
            let _ = connection.execute_batch("ROLLBACK");
            completions
                .into_iter()
                .for_each(|(_, done)| done(Err(&error)));
            fail_rest(jobs, &error);
            return;
        }
        if lost {
            let error = Arc::new(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT),
                Some("a failed write rolled back its batch's transaction".into()),
            ));
            completions
                .into_iter()
                .for_each(|(_, done)| done(Err(&error)));
            fail_rest(jobs, &error);
            return;
        }
    }
    drop(jobs);
    let end = if single && !completions[0].0 {
        "ROLLBACK"
    } else {
        "COMMIT"
    };
    match connection.execute_batch(end) {
        Ok(()) => completions.into_iter().for_each(|(_, done)| done(Ok(()))),
        Err(error) => {
            let _ = connection.execute_batch("ROLLBACK");
            let error = Arc::new(error);
            completions
                .into_iter()
                .for_each(|(_, done)| done(Err(&error)));
        }
    }
}
