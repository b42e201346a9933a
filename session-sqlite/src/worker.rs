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
//! so a checkpoint never stalls the write queue.

use std::sync::Arc;
use std::thread;

use crossbeam_channel::{Receiver, Sender};
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
    ) -> Result<Self> {
        let (writes, write_queue) = crossbeam_channel::unbounded::<WriteJob>();
        let (stop_checkpoints, stopped) = crossbeam_channel::bounded::<()>(0);
        let (reads, read_queue) = crossbeam_channel::unbounded::<ReadJob>();
        let spawn_error = |e| {
            Error::with_source(
                ErrorKind::Backend,
                "sqlite: cannot start a worker thread",
                e,
            )
        };
        thread::Builder::new()
            .name("session-sqlite-writer".into())
            .spawn(move || write_loop(writer, write_queue))
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
            .send(WriteJob { statements, run })
            .map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }

    /// Runs `op` on one of the readers.
    pub(crate) async fn read<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        self.reads
            .send(Box::new(move |connection| {
                let _ = reply.send(op(connection));
            }))
            .map_err(|_| closed())?;
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

fn write_loop(connection: Connection, queue: Receiver<WriteJob>) {
    let mut batch: Vec<WriteJob> = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = queue.recv() {
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
