//! Memory stays proportional to the live sessions under create/expire churn, with nobody calling
//! `delete_expired`.

use session_core::Bytes;
use session_core::SessionStoreExt as _;
use session_core::time::{Duration, OffsetDateTime};
use session_core::{SessionId, SessionStore, truncate_to_millis};
use session_memory::MemoryStore;

#[tokio::test]
async fn churn_keeps_memory_bounded_without_delete_expired() {
    let store = MemoryStore::new();
    let live: Vec<_> = (0..500).map(|_| SessionId::generate().key()).collect();
    for key in &live {
        let _ = store
            .create(
                key,
                OffsetDateTime::now_utc() + Duration::hours(1),
                Bytes::from_static(b"live"),
            )
            .await
            .unwrap();
    }
    let mut peak = 0;
    for _ in 0..200_000 {
        // Each record is expired by the time the next one is written.
        let expires_at = truncate_to_millis(OffsetDateTime::now_utc());
        let _ = store
            .create(
                &SessionId::generate().key(),
                expires_at,
                Bytes::copy_from_slice(&[0u8; 64]),
            )
            .await
            .unwrap();
        peak = peak.max(store.stored_records());
    }
    // 64 shards, each swept when it doubles past max(64, 2 x last size): at most ~128 per shard.
    assert!(
        peak <= 64 * 128 + 500,
        "{peak} records held at peak for 500 live sessions"
    );
    assert_eq!(store.live_records(), 500);
    for key in &live {
        assert!(
            store.read(key).await.unwrap().is_some(),
            "a sweep removed a live record"
        );
    }
}
