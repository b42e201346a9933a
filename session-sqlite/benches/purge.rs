//! Writers during a large purge: `PURGE_EXPIRED` expired sessions (default 500,000) and
//! `PURGE_LIVE` live ones (default 100,000) are written straight into the store's table, then
//! `PURGE_TASKS` tasks (default 16) create and update sessions while one `delete_expired` runs;
//! printed: the purge's duration and count, and the writers' operations and p50/p99/max while
//! it ran, next to the same writers without a purge.
//!
//! ```sh
//! cargo bench -p session-sqlite --bench purge
//! ```

use session_core::SessionStoreExt as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use session_core::Bytes;
use session_core::time::{Duration as TimeDuration, OffsetDateTime};
use session_core::{CreateOutcome, SessionId, SessionStore, UpdateOutcome};
use session_sqlite::SqliteStore;
use session_sqlite::rusqlite::{Connection, params};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Creates and updates from `tasks` tasks until `stop`; their latencies.
async fn writers(store: Arc<SqliteStore>, tasks: usize, stop: Arc<AtomicBool>) -> Histogram<u64> {
    let histogram = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("bounds"),
    ));
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let (store, stop, histogram) = (
                Arc::clone(&store),
                Arc::clone(&stop),
                Arc::clone(&histogram),
            );
            tokio::spawn(async move {
                let deadline = Instant::now() + Duration::from_secs(120);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let key = SessionId::generate().key();
                    let later = OffsetDateTime::now_utc() + TimeDuration::hours(1);
                    let started = Instant::now();
                    let created = store
                        .create(&key, later, Bytes::copy_from_slice(&[7u8; 200]))
                        .await;
                    histogram
                        .lock()
                        .record(started.elapsed().as_nanos().max(1) as u64)
                        .ok();
                    assert_eq!(created.expect("create"), CreateOutcome::Created);
                    let started = Instant::now();
                    let updated = store
                        .update(&key, &key, 1, later, Bytes::copy_from_slice(&[8u8; 200]))
                        .await;
                    histogram
                        .lock()
                        .record(started.elapsed().as_nanos().max(1) as u64)
                        .ok();
                    assert!(matches!(
                        updated.expect("update"),
                        UpdateOutcome::Updated { .. }
                    ));
                }
            })
        })
        .collect();
    for handle in handles {
        handle.await.expect("a writer");
    }
    Arc::try_unwrap(histogram)
        .map(Mutex::into_inner)
        .unwrap_or_else(|h| h.lock().clone())
}

fn ms(nanos: u64) -> f64 {
    nanos as f64 / 1e6
}

fn main() {
    let expired = env("PURGE_EXPIRED", 500_000);
    let live = env("PURGE_LIVE", 100_000);
    let tasks = env("PURGE_TASKS", 16) as usize;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("purge.sqlite");
    let runtime = session_bench::runtime();
    runtime.block_on(async {
        let store = Arc::new(SqliteStore::open(&path).await.expect("open"));
        // Straight into the table: one transaction, random keys.
        let started = Instant::now();
        let now_ms = OffsetDateTime::now_utc().unix_timestamp() * 1000;
        let connection = Connection::open(&path).expect("open the file");
        connection.execute_batch("BEGIN").expect("begin");
        {
            let mut insert = connection
                .prepare("INSERT INTO sessions (key, expires_at, version, data) VALUES (?1, ?2, 1, ?3)")
                .expect("prepare");
            for i in 0..expired + live {
                let expires = if i < expired { now_ms - 60_000 } else { now_ms + 3_600_000 };
                insert
                    .execute(params![&SessionId::generate().key().as_bytes()[..], expires, &[1u8; 200][..]])
                    .expect("insert");
            }
        }
        connection
            .execute_batch("COMMIT; PRAGMA wal_checkpoint(TRUNCATE)")
            .expect("commit");
        drop(connection);
        println!(
            "prefilled {expired} expired and {live} live sessions in {:.1?}; {tasks} writer tasks (create + update, 200 B)\n",
            started.elapsed()
        );
        println!("| phase | seconds | purged | writes | writes/s | p50 ms | p99 ms | max ms |");
        println!("|---|---:|---:|---:|---:|---:|---:|---:|");

        // Writers alone, 5 s.
        let stop = Arc::new(AtomicBool::new(false));
        let run = tokio::spawn(writers(Arc::clone(&store), tasks, Arc::clone(&stop)));
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(5)).await;
        stop.store(true, Ordering::Relaxed);
        let alone = run.await.expect("writers");
        let secs = started.elapsed().as_secs_f64();
        println!(
            "| writers alone | {secs:.1} | - | {} | {:.0} | {:.2} | {:.2} | {:.2} |",
            alone.len(),
            alone.len() as f64 / secs,
            ms(alone.value_at_quantile(0.5)),
            ms(alone.value_at_quantile(0.99)),
            ms(alone.max())
        );

        // Writers while one purge runs.
        let stop = Arc::new(AtomicBool::new(false));
        let run = tokio::spawn(writers(Arc::clone(&store), tasks, Arc::clone(&stop)));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = Instant::now();
        let purged = store.delete_expired().await.expect("purge");
        let took = started.elapsed();
        stop.store(true, Ordering::Relaxed);
        let during = run.await.expect("writers");
        let secs = took.as_secs_f64();
        println!(
            "| writers during the purge | {secs:.1} | {purged} | {} | {:.0} | {:.2} | {:.2} | {:.2} |",
            during.len(),
            during.len() as f64 / (secs + 0.2),
            ms(during.value_at_quantile(0.5)),
            ms(during.value_at_quantile(0.99)),
            ms(during.max())
        );
        assert_eq!(purged, expired, "the purge must count exactly the expired sessions");
    });
}
