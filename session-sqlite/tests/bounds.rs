//! Bounded resources under load: the WAL stays under its limit while readers keep up, purges
//! run in chunks that let other writes through, full queues fail fast, and work whose caller is
//! gone is never applied.

use session_core::SessionStoreExt as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use session_core::Bytes;
use session_core::time::{Duration as TimeDuration, OffsetDateTime};
use session_core::{CreateOutcome, SessionId, SessionStore, UpdateOutcome, unix_millis};
use session_sqlite::rusqlite;
use session_sqlite::{SqliteConfig, SqliteStore};

fn later() -> OffsetDateTime {
    OffsetDateTime::now_utc() + TimeDuration::hours(1)
}

fn wal_size(path: &Path) -> u64 {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(wal).map_or(0, |m| m.len())
}

/// The largest WAL size seen, sampled every `every` for 4 s while `tasks` run; then stops and
/// joins them.
async fn largest_wal_under_load(
    path: &Path,
    every: Duration,
    stop: &AtomicBool,
    tasks: Vec<tokio::task::JoinHandle<()>>,
) -> u64 {
    let started = Instant::now();
    let mut largest = 0;
    while started.elapsed() < Duration::from_secs(4) {
        largest = largest.max(wal_size(path));
        tokio::time::sleep(every).await;
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    largest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_wal_stays_under_its_limit_while_readers_keep_up() {
    const LIMIT: u64 = 16 * 1024 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wal.db");
    let store = Arc::new(
        SqliteStore::with_config(SqliteConfig::new(&path).wal_limit(LIMIT).readers(4))
            .await
            .unwrap(),
    );
    let keys: Arc<Vec<_>> = Arc::new((0..64).map(|_| SessionId::generate().key()).collect());
    for key in keys.iter() {
        assert_eq!(
            store
                .create(key, later(), Bytes::copy_from_slice(&[7; 4096]))
                .await
                .unwrap(),
            CreateOutcome::Created
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for t in 0..12 {
        let (store, keys, stop, writes) = (
            Arc::clone(&store),
            Arc::clone(&keys),
            Arc::clone(&stop),
            Arc::clone(&writes),
        );
        tasks.push(tokio::spawn(async move {
            let mut i = t;
            while !stop.load(Ordering::Relaxed) {
                let key = &keys[i % keys.len()];
                if t % 3 == 0 {
                    store.read(key).await.unwrap();
                } else {
                    let version = store.read(key).await.unwrap().unwrap().version;
                    if let UpdateOutcome::Updated { .. } = store
                        .update(
                            key,
                            key,
                            version,
                            later(),
                            Bytes::copy_from_slice(&[t as u8; 4096]),
                        )
                        .await
                        .unwrap()
                    {
                        writes.fetch_add(1, Ordering::Relaxed);
                    }
                }
                i += 7;
            }
        }));
    }
    let largest = largest_wal_under_load(&path, Duration::from_millis(20), &stop, tasks).await;
    let written = writes.load(Ordering::Relaxed) * 4096;
    assert!(
        written > 2 * LIMIT,
        "the load wrote only {written} bytes: not enough to test the limit"
    );
    assert!(
        largest <= LIMIT + LIMIT / 10,
        "the WAL reached {largest} bytes (limit {LIMIT}) after {written} bytes written"
    );
    // After the load it is trimmed back under the limit.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(wal_size(&path) <= LIMIT, "{}", wal_size(&path));
}

/// Writers alone, never pausing, over a table large enough that each write dirties pages of its
/// own: passive checkpoints then never catch up by themselves, so the log is only restarted by
/// the checkpointer's handover (or, failing that, the writer's fallback). Also checks that the
/// log is reused rather than truncated: its file keeps a size once the load runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_wal_stays_under_its_limit_under_writes_that_never_pause() {
    const LIMIT: u64 = 8 * 1024 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("writes.db");
    let store = Arc::new(
        SqliteStore::with_config(SqliteConfig::new(&path).wal_limit(LIMIT))
            .await
            .unwrap(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (store, stop, writes) = (Arc::clone(&store), Arc::clone(&stop), Arc::clone(&writes));
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let key = SessionId::generate().key();
                let created = store
                    .create(&key, later(), Bytes::copy_from_slice(&[1; 200]))
                    .await
                    .unwrap();
                assert_eq!(created, CreateOutcome::Created);
                mine.push(key);
                // Every other write saves an older session in place (a random page).
                let old = &mine[mine.len() / 2];
                let version = store.read(old).await.unwrap().unwrap().version;
                let saved = store
                    .update(
                        old,
                        old,
                        version,
                        later(),
                        Bytes::copy_from_slice(&[2; 200]),
                    )
                    .await
                    .unwrap();
                assert!(matches!(saved, UpdateOutcome::Updated { .. }), "{saved:?}");
                writes.fetch_add(2, Ordering::Relaxed);
            }
        }));
    }
    let largest = largest_wal_under_load(&path, Duration::from_millis(5), &stop, tasks).await;
    let written = writes.load(Ordering::Relaxed);
    // Each write adds at least one 4 KiB page to the log.
    assert!(
        written * 4096 > 4 * LIMIT,
        "only {written} writes: not enough to test the limit"
    );
    assert!(
        largest <= LIMIT + LIMIT / 10,
        "the WAL reached {largest} bytes (limit {LIMIT}) after {written} writes"
    );
}

/// Writes `count` expired rows straight into the store's table.
fn insert_expired(path: &Path, count: usize) {
    let mut connection = rusqlite::Connection::open(path).unwrap();
    connection.busy_timeout(Duration::from_secs(5)).unwrap();
    let tx = connection.transaction().unwrap();
    {
        let mut insert = tx
            .prepare(
                "INSERT INTO sessions (key, expires_at, version, data) VALUES (?1, ?2, 1, x'00')",
            )
            .unwrap();
        let past = unix_millis(OffsetDateTime::now_utc() - TimeDuration::hours(1));
        for _ in 0..count {
            insert
                .execute(rusqlite::params![
                    &SessionId::generate().key().as_bytes()[..],
                    past
                ])
                .unwrap();
        }
    }
    tx.commit().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_purge_runs_in_chunks_that_let_writes_through() {
    const EXPIRED: usize = 30_000;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("purge.db");
    let store = Arc::new(SqliteStore::open(&path).await.unwrap());
    insert_expired(&path, EXPIRED);
    let purging = Arc::new(AtomicBool::new(true));
    let writer = {
        let (store, purging) = (Arc::clone(&store), Arc::clone(&purging));
        tokio::spawn(async move {
            let mut during = 0;
            for _ in 0..100_000 {
                if !purging.load(Ordering::SeqCst) {
                    break;
                }
                let outcome = store
                    .create(
                        &SessionId::generate().key(),
                        later(),
                        Bytes::from_static(b"x"),
                    )
                    .await
                    .unwrap();
                assert_eq!(outcome, CreateOutcome::Created);
                if purging.load(Ordering::SeqCst) {
                    during += 1;
                }
            }
            during
        })
    };
    tokio::task::yield_now().await;
    let purged = store.delete_expired().await.unwrap();
    purging.store(false, Ordering::SeqCst);
    let during = writer.await.unwrap();
    assert_eq!(purged, EXPIRED as u64, "the chunks add up exactly");
    let chunks = EXPIRED / session_sqlite::PURGE_CHUNK;
    assert!(
        during >= chunks / 3,
        "only {during} creates completed during a purge of {chunks} chunks"
    );
    assert_eq!(store.counts().await.unwrap().1, 0);
}

/// Holds the database's write lock from another connection until dropped.
struct WriteLock(rusqlite::Connection);

impl WriteLock {
    fn take(path: &Path) -> Self {
        let connection = rusqlite::Connection::open(path).unwrap();
        connection.execute_batch("BEGIN IMMEDIATE").unwrap();
        Self(connection)
    }
}

impl Drop for WriteLock {
    fn drop(&mut self) {
        let _ = self.0.execute_batch("ROLLBACK");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_queue_fails_fast_and_transiently() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queue.db");
    let store = Arc::new(
        SqliteStore::with_config(SqliteConfig::new(&path).queue_limit(100))
            .await
            .unwrap(),
    );
    let lock = WriteLock::take(&path);
    let tasks: Vec<_> = (0..600)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let started = Instant::now();
                let result = store
                    .create(
                        &SessionId::generate().key(),
                        later(),
                        Bytes::copy_from_slice(&[1; 4096]),
                    )
                    .await;
                (result, started.elapsed())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(lock);
    let (mut refused, mut created) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            (Ok(CreateOutcome::Created), _) => created += 1,
            (Ok(other), _) => panic!("{other:?}"),
            (Err(error), took) => {
                assert!(error.is_transient(), "{error}");
                assert!(error.to_string().contains("overloaded"), "{error}");
                assert!(took < Duration::from_millis(300), "refused after {took:?}");
                refused += 1;
            }
        }
    }
    assert!(refused >= 600 - 100 - 256, "refused {refused}");
    assert_eq!(created + refused, 600);
    assert_eq!(store.counts().await.unwrap().0, created as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn work_whose_caller_is_gone_is_never_applied() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gone.db");
    let store = Arc::new(SqliteStore::open(&path).await.unwrap());
    let lock = WriteLock::take(&path);
    let mut timed_out = 0;
    for _ in 0..3_000 {
        let key = SessionId::generate().key();
        let write = store.create(&key, later(), Bytes::copy_from_slice(&[2; 4096]));
        if tokio::time::timeout(Duration::from_millis(1), write)
            .await
            .is_err()
        {
            timed_out += 1;
        }
    }
    assert_eq!(timed_out, 3_000);
    drop(lock);
    // Anything still queued runs now; none of it may be applied.
    let probe = SessionId::generate().key();
    assert_eq!(
        store
            .create(&probe, later(), Bytes::from_static(b"after"))
            .await
            .unwrap(),
        CreateOutcome::Created
    );
    assert_eq!(store.counts().await.unwrap(), (1, 0));
    assert_eq!(store.queued(), (0, 0));
}
