//! The threads that own the connections: one writer with group commit, a pool of readers.
//!
//! SQLite has one writer per database. Instead of letting tasks fight over the write lock (and
//! stall on `SQLITE_BUSY`), every write of a store goes to one thread through a queue. The thread
//! takes whatever is queued (up to [`MAX_BATCH`]) and runs it as one `BEGIN IMMEDIATE`
//! transaction, each job inside its own savepoint, then commits once: under load many writes
//! share one commit (and, with `synchronous=FULL`, one fsync). A job's result is sent only after
//! the commit succeeded, so nothing is acknowledged that is not durable at the configured level.
//!
//! WAL checkpoints run on a third thread, not inside a writer's commit, so copying the log back
//! into the database (a page read and written for each page the log holds) happens beside the
//! writes, not between them. The checkpointer runs `PASSIVE` checkpoints back to back while the
//! writer adds pages (every 50 ms when idle). SQLite restarts the log from its beginning only
//! when a write begins after everything was copied back, which never happens while the writer
//! writes without pause, and it syncs the database file only when a checkpoint reaches the end
//! of the log. So once the log holds half the limit, the checkpointer hands over: the writer
//! pauses between two batches, the checkpointer runs a `RESTART` checkpoint (the pages added
//! since its last pass, the sync, readers moving off the log), and the writer's next write
//! starts the log over. The file keeps its size and is reused: nothing is truncated and
//! reallocated under load. A fallback bounds the file whatever the passes achieve: past three
//! quarters of the limit the writer hands over for a `TRUNCATE` checkpoint before writing more,
//! so the WAL cannot outgrow three quarters of its limit by more than one batch (at most 256
//! writes), however busy the machine is, unless a reader keeps an old snapshot for longer than
//! the busy timeout or the checkpointer does not answer within a second. Only the checkpointer
//! runs checkpoints: SQLite lets one run at a time and fails a second at once, so a checkpoint
//! on the writer would fail whenever a pass is under way.
//!
//! Both queues are bounded: a full queue fails the operation at once ("overloaded", transient)
//! rather than holding memory without bound. A job whose caller went away (its future was
//! dropped, e.g. by a timeout) before the job started is skipped, never applied later.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

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

/// How often the checkpointer looks at an idle WAL.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(50);
/// The pause between two checkpoints while the writer keeps adding pages.
const CHECKPOINT_BUSY: Duration = Duration::from_millis(1);
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
        let asked = Arc::new(AtomicBool::new(false));
        let (paused, writer_paused) = crossbeam_channel::bounded::<&'static str>(1);
        let (resume, resumed) = crossbeam_channel::bounded::<()>(1);
        let turn = Turn {
            asked: Arc::clone(&asked),
            paused,
            resumed,
        };
        let handover = Handover {
            asked,
            paused: writer_paused,
            resume,
        };
        let wal_limit = limits.wal;
        let spawn_error = |e| {
            Error::with_source(
                ErrorKind::Backend,
                "sqlite: cannot start a worker thread",
                e,
            )
        };
        thread::Builder::new()
            .name("session-sqlite-writer".into())
            .spawn(move || write_loop(writer, write_queue, limits, &turn))
            .map_err(spawn_error)?;
        thread::Builder::new()
            .name("session-sqlite-checkpointer".into())
            .spawn(move || checkpoint_loop(checkpointer, stopped, wal_limit, &handover))
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

/// The writer's side of the handover: when asked (or when the log file is too large), it pauses
/// between two batches, sending the checkpoint mode to run, while the checkpointer copies the
/// rest of the log back.
struct Turn {
    asked: Arc<AtomicBool>,
    paused: Sender<&'static str>,
    resumed: Receiver<()>,
}

/// The checkpointer's side of the handover.
struct Handover {
    asked: Arc<AtomicBool>,
    paused: Receiver<&'static str>,
    resume: Sender<()>,
}

/// The longest the writer waits for the checkpointer before writing on regardless.
const MOST_PAUSE: Duration = Duration::from_secs(1);

fn write_loop(connection: Connection, queue: Receiver<WriteJob>, limits: Limits, turn: &Turn) {
    let mut batch: Vec<WriteJob> = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = queue.recv() {
        let mode = if turn.asked.swap(false, Ordering::AcqRel) {
            // The checkpointer copied the log back up to its last pass: with no page added
            // meanwhile, its checkpoint completes, and this thread's next write starts the log
            // over.
            Some("RESTART")
        } else if std::fs::metadata(&limits.wal_path).map_or(0, |m| m.len()) > limits.wal / 4 * 3 {
            // The log outgrew what the handovers keep it under (another process writing, a
            // reader holding an old snapshot): copy everything back and reset the file.
            Some("TRUNCATE")
        } else {
            None
        };
        if let Some(mode) = mode {
            // Checkpoints run on the checkpointer only: one run here would find its lock taken
            // by a pass whenever the checkpointer keeps up with a busy writer.
            // A go-ahead left over from a handover the writer stopped waiting for is stale.
            while turn.resumed.try_recv().is_ok() {}
            if turn.paused.try_send(mode).is_ok() {
                let _ = turn.resumed.recv_timeout(MOST_PAUSE);
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

/// Runs a checkpoint in `mode`: `(busy, frames in the log, frames copied back)`.
fn checkpoint(connection: &Connection, mode: &str) -> Option<(bool, i64, i64)> {
    let result = connection.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
        Ok((row.get::<_, i64>(0)? != 0, row.get(1)?, row.get(2)?))
    });
    match result {
        Ok((busy, frames, copied)) => {
            if busy {
                tracing::debug!(
                    mode,
                    frames,
                    copied,
                    "sqlite: a checkpoint met a busy reader"
                );
            }
            Some((busy, frames, copied))
        }
        Err(error) => {
            tracing::debug!(mode, %error, "sqlite: a checkpoint did not run");
            None
        }
    }
}

fn checkpoint_loop(connection: Connection, stop: Receiver<()>, limit: u64, handover: &Handover) {
    // Bytes of one log frame: a page and its 24-byte header.
    let frame = connection
        .query_row("PRAGMA page_size", [], |row| row.get::<_, u64>(0))
        .unwrap_or(4096)
        + 24;
    let mut wait = CHECKPOINT_EVERY;
    let mut last = (0, 0);
    loop {
        crossbeam_channel::select! {
            recv(stop) -> _ => return,
            recv(handover.paused) -> mode => {
                let Ok(mode) = mode else {
                    // The writer is gone: so is the store.
                    return;
                };
                // The writer waits: copy everything, wait for readers to leave the log (busy
                // handler), let the writer go on. Its next write starts the log over.
                checkpoint(&connection, mode);
                let _ = handover.resume.send(());
                wait = CHECKPOINT_BUSY;
                continue;
            },
            default(wait) => {}
        }
        wait = match checkpoint(&connection, "PASSIVE") {
            Some((_, frames, copied)) => {
                let moved = (frames, copied) != last;
                last = (frames, copied);
                // Ask once per log: a log already handed over starts over with the next write.
                if moved && u64::try_from(frames).unwrap_or(0) * frame > limit / 2 {
                    handover.asked.store(true, Ordering::Release);
                }
                // Pages were added since the last pass: the writer is busy, keep up with it.
                if moved && frames > 0 {
                    CHECKPOINT_BUSY
                } else {
                    CHECKPOINT_EVERY
                }
            }
            None => CHECKPOINT_EVERY,
        };
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
