//! `Observed`: events after successful writes, in order, keys only; slow subscribers lag.

use session_core::SessionStoreExt as _;
use std::sync::Arc;
use std::time::Duration;

mod common;

use session_manager::Bytes;
use session_manager::time::OffsetDateTime;
use session_manager::{
    CreateOutcome, Observed, SessionEvent, SessionId, SessionStore, UpdateOutcome,
};
use session_memory::MemoryStore;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

fn later(ms: u64) -> OffsetDateTime {
    OffsetDateTime::now_utc() + Duration::from_millis(ms)
}

#[tokio::test]
async fn one_sessions_events_in_order() {
    let store = Observed::new(MemoryStore::new());
    let mut events = store.subscribe();
    let (a, b, c) = (
        SessionId::generate().key(),
        SessionId::generate().key(),
        SessionId::generate().key(),
    );
    assert_eq!(
        store
            .create(&a, later(60_000), Bytes::from_static(b"1"))
            .await
            .unwrap(),
        CreateOutcome::Created
    );
    assert_eq!(
        store
            .create(&a, later(60_000), Bytes::from_static(b"x"))
            .await
            .unwrap(),
        CreateOutcome::IdTaken
    );
    assert_eq!(
        store
            .update(&a, &a, 1, later(60_000), Bytes::from_static(b"2"))
            .await
            .unwrap(),
        UpdateOutcome::Updated { version: 2 }
    );
    assert_eq!(
        store
            .update(&a, &a, 1, later(60_000), Bytes::from_static(b"x"))
            .await
            .unwrap(),
        UpdateOutcome::Conflict
    );
    assert!(store.touch(&a, later(90_000)).await.unwrap());
    assert!(!store.touch(&c, later(90_000)).await.unwrap());
    assert_eq!(
        store
            .update(&b, &a, 2, later(60_000), Bytes::from_static(b"3"))
            .await
            .unwrap(),
        UpdateOutcome::Updated { version: 3 }
    );
    assert_eq!(
        store
            .update(&c, &a, 3, later(60_000), Bytes::from_static(b"x"))
            .await
            .unwrap(),
        UpdateOutcome::NotFound
    );
    store.delete(&b).await.unwrap();
    assert_eq!(
        store
            .create(&c, later(20), Bytes::from_static(b"short"))
            .await
            .unwrap(),
        CreateOutcome::Created
    );
    tokio::time::sleep(Duration::from_millis(40)).await;
    assert_eq!(store.delete_expired().await.unwrap(), 1);
    assert_eq!(store.delete_expired().await.unwrap(), 0);
    store.clear().await.unwrap();

    let mut seen = Vec::new();
    while let Ok(event) = events.try_recv() {
        seen.push(event);
    }
    assert_eq!(
        seen,
        [
            SessionEvent::Created { key: a },
            SessionEvent::Updated { key: a, version: 2 },
            SessionEvent::Touched { key: a },
            SessionEvent::Rotated {
                from: a,
                to: b,
                version: 3
            },
            SessionEvent::Deleted { key: b },
            SessionEvent::Created { key: c },
            SessionEvent::Expired { count: 1 },
            SessionEvent::Cleared,
        ]
    );
    // Events name keys (hashes), and their Debug shows a short prefix of the key only.
    let text = format!("{seen:?}");
    assert!(!text.contains(&a.to_hex()), "{text}");
}

#[tokio::test]
async fn a_slow_subscriber_lags_and_never_blocks_the_store() {
    let store = Arc::new(Observed::with_capacity(MemoryStore::new(), 4));
    let mut slow = store.subscribe();
    let mut fast = store.subscribe();
    for _ in 0..10 {
        let outcome = store
            .create(
                &SessionId::generate().key(),
                later(60_000),
                Bytes::from_static(b"x"),
            )
            .await;
        assert_eq!(outcome.unwrap(), CreateOutcome::Created);
    }
    // The store finished all ten writes without anyone reading.
    assert_eq!(store.inner().live_records(), 10);
    assert_eq!(slow.recv().await, Err(RecvError::Lagged(6)));
    let mut rest = 0;
    while slow.try_recv().is_ok() {
        rest += 1;
    }
    assert_eq!(rest, 4, "the newest `capacity` events remain");
    assert!(matches!(fast.try_recv(), Err(TryRecvError::Lagged(6))));
    // No subscribers at all is fine too.
    let lonely = Observed::new(MemoryStore::new());
    let outcome = lonely
        .create(
            &SessionId::generate().key(),
            later(1000),
            Bytes::from_static(b"x"),
        )
        .await;
    assert_eq!(outcome.unwrap(), CreateOutcome::Created);
}

#[tokio::test]
async fn failed_operations_publish_nothing() {
    let flaky = common::Flaky::new(MemoryStore::new());
    flaky
        .fail_writes
        .store(true, std::sync::atomic::Ordering::Release);
    flaky
        .failing_purges
        .store(1, std::sync::atomic::Ordering::Release);
    let store = Observed::new(flaky);
    let mut events = store.subscribe();
    let key = SessionId::generate().key();
    assert!(
        store
            .create(&key, later(1000), Bytes::from_static(b"x"))
            .await
            .is_err()
    );
    assert!(
        store
            .update(&key, &key, 1, later(1000), Bytes::from_static(b"x"))
            .await
            .is_err()
    );
    assert!(store.touch(&key, later(1000)).await.is_err());
    assert!(store.delete(&key).await.is_err());
    assert!(store.delete_expired().await.is_err());
    assert!(store.clear().await.is_err());
    assert_eq!(events.try_recv(), Err(TryRecvError::Empty));
}
