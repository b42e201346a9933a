//! `spawn_cleanup`: purges periodically, survives failures, stops when dropped.

use session_core::SessionStoreExt as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use session_manager::Bytes;
use session_manager::time::OffsetDateTime;
use session_manager::{CreateOutcome, SessionId, spawn_cleanup};
use session_memory::MemoryStore;

mod common;
use common::Flaky;

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purges_expired_sessions_and_reports_counts() {
    let store = Arc::new(MemoryStore::new());
    let soon = OffsetDateTime::now_utc() + Duration::from_millis(100);
    let far = OffsetDateTime::now_utc() + Duration::from_secs(3600);
    for i in 0..150 {
        let at = if i < 100 { soon } else { far };
        let outcome = store
            .create(&SessionId::generate().key(), at, Bytes::from_static(b"x"))
            .await
            .unwrap();
        assert_eq!(outcome, CreateOutcome::Created);
    }
    let cleanup = spawn_cleanup(Arc::clone(&store), Duration::from_millis(20));
    wait_for("100 purged", || cleanup.deleted() == 100).await;
    assert!(cleanup.runs() >= 2, "it ran before and after the expiry");
    assert_eq!(cleanup.failures(), 0);
    assert_eq!(store.stored_records(), 50);
    cleanup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeps_going_after_failures() {
    let store = Arc::new(Flaky::new(MemoryStore::new()));
    store.failing_purges.store(3, Ordering::Release);
    let outcome = store
        .create(
            &SessionId::generate().key(),
            OffsetDateTime::now_utc() + Duration::from_millis(1),
            Bytes::from_static(b"x"),
        )
        .await
        .unwrap();
    assert_eq!(outcome, CreateOutcome::Created);
    tokio::time::sleep(Duration::from_millis(5)).await;
    // Backoff is capped by the interval, so three failures take about 3 x 10 ms.
    let cleanup = spawn_cleanup(Arc::clone(&store), Duration::from_millis(10));
    wait_for("a successful purge after three failures", || {
        cleanup.deleted() == 1
    })
    .await;
    assert_eq!(cleanup.failures(), 3);
    assert!(cleanup.runs() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stops_when_dropped() {
    let store = Arc::new(Flaky::new(MemoryStore::new()));
    let cleanup = spawn_cleanup(Arc::clone(&store), Duration::from_millis(5));
    wait_for("a few purges", || store.purges.load(Ordering::Acquire) >= 3).await;
    drop(cleanup);
    tokio::time::sleep(Duration::from_millis(30)).await;
    let after_drop = store.purges.load(Ordering::Acquire);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        store.purges.load(Ordering::Acquire),
        after_drop,
        "no purge after the drop"
    );
    assert_eq!(Arc::strong_count(&store), 1, "the task released the store");
}
