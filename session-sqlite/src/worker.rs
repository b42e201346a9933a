//! The threads that own the connections: one writer with group commit, a pool of readers.
//!
//! SQLite has one writer per database. Instead of letting tasks fight over the write lock (and
//! stall on `SQLITE_BUSY`), every write of a store goes to one thread through a queue. The thread
//! takes whatever is queued (up to [`MAX_BATCH`]) and runs it as one `BEGIN IMMEDIATE`
//! transaction, each job inside its own savepoint, then commits once: under load many writes
//! share one commit (and, with `synchronous=FULL`, one fsync). A job's result is sent only after
//! the commit succeeded, so nothing is acknowledged that is not durable at the configured level.

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
/// A write: given the connection (or why the batch could not start), runs and says whether it
/// succeeded, returning what to do once the commit's outcome is known.
type WriteJob = Box<dyn FnOnce(Result<&Connection, &Arc<rusqlite::Error>>) -> (bool, Completion) + Send>;
type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

fn closed() -> Error {
    Error::new(ErrorKind::Backend, "sqlite: the store's worker thread stopped")
}

/// Handles to the worker threads. Dropping it lets the threads finish their queues and exit.
pub(crate) struct Workers {
    writes: Sender<WriteJob>,
    reads: Sender<ReadJob>,
}

impl Workers {
    pub(crate) fn spawn(writer: Connection, readers: Vec<Connection>) -> Result<Self> {
        let (writes, write_queue) = crossbeam_channel::unbounded::<WriteJob>();
        let (reads, read_queue) = crossbeam_channel::unbounded::<ReadJob>();
        let spawn_error = |e| Error::with_source(ErrorKind::Backend, "sqlite: cannot start a worker thread", e);
        thread::Builder::new()
            .name("session-sqlite-writer".into())
            .spawn(move || write_loop(writer, write_queue))
            .map_err(spawn_error)?;
        for (i, connection) in readers.into_iter().enumerate() {
            let queue = read_queue.clone();
            thread::Builder::new()
                .name(format!("session-sqlite-reader-{i}"))
                .spawn(move || read_loop(connection, queue))
                .map_err(spawn_error)?;
        }
        Ok(Self { writes, reads })
    }

    /// Runs `op` on the writer inside the next batch's transaction; its result arrives after the
    /// commit. `op` must leave the database unchanged when it returns an error (the savepoint
    /// around it is rolled back anyway).
    pub(crate) async fn write<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        let job: WriteJob = Box::new(move |connection| {
            let connection = match connection {
                Ok(connection) => connection,
                Err(error) => {
                    let _ = reply.send(Err(batch_error("sqlite: could not start a write transaction", error)));
                    return (false, Box::new(|_| {}));
                }
            };
            let result = op(connection);
            let ok = result.is_ok();
            let completion: Completion = Box::new(move |commit| {
                let result = match commit {
                    Ok(()) => result,
                    Err(error) => Err(batch_error("sqlite: the transaction holding this write failed to commit", error)),
                };
                let _ = reply.send(result);
            });
            (ok, completion)
        });
        self.writes.send(job).map_err(|_| closed())?;
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

fn run_batch(connection: &Connection, batch: &mut Vec<WriteJob>) {
    if let Err(error) = connection.execute_batch("BEGIN IMMEDIATE") {
        let error = Arc::new(error);
        for job in batch.drain(..) {
            let _ = job(Err(&error));
        }
        return;
    }
    // One job needs no savepoint: the transaction itself is rolled back if it fails.
    let single = batch.len() == 1;
    let mut completions = Vec::with_capacity(batch.len());
    let mut jobs = batch.drain(..);
    while let Some(job) = jobs.next() {
        if single {
            completions.push(job(Ok(connection)));
            continue;
        }
        if let Err(error) = connection.execute_batch("SAVEPOINT job") {
            let _ = job(Err(&Arc::new(error)));
            continue;
        }
        let (ok, completion) = job(Ok(connection));
        let end = if ok { "RELEASE job" } else { "ROLLBACK TO job; RELEASE job" };
        match connection.execute_batch(end) {
            Ok(()) => completions.push((ok, completion)),
            Err(error) => {
                // The savepoint is in an unknown state: fail the whole batch rather than commit it.
                let error = Arc::new(error);
                let _ = connection.execute_batch("ROLLBACK");
                completion(Err(&error));
                completions.into_iter().for_each(|(_, done): (bool, Completion)| done(Err(&error)));
                for job in jobs.by_ref() {
                    let _ = job(Err(&error));
                }
                return;
            }
        }
    }
    drop(jobs);
    let end = if single && !completions[0].0 { "ROLLBACK" } else { "COMMIT" };
    match connection.execute_batch(end) {
        Ok(()) => completions.into_iter().for_each(|(_, done)| done(Ok(()))),
        Err(error) => {
            let _ = connection.execute_batch("ROLLBACK");
            let error = Arc::new(error);
            completions.into_iter().for_each(|(_, done)| done(Err(&error)));
        }
    }
}
