//! Helpers shared by the fuzz targets: one runtime, stores opened once per process, and the
//! property every store operation on a corrupt record must hold.

use std::future::Future;
use std::sync::LazyLock;

use bytes::Bytes;
use session_core::{ErrorKind, Result, SessionKey, SessionStore, SessionStoreExt, StoreAdmin};
use time::{Duration, OffsetDateTime};

/// The runtime every async target runs on (multi-threaded: the SQL drivers and the Redis
/// connection spawn tasks).
pub static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a tokio runtime")
});

/// Runs `future` to completion on [`RUNTIME`].
pub fn block_on<F: Future>(future: F) -> F::Output {
    RUNTIME.block_on(future)
}

/// The URL of a test server: `SESSION_TEST_<NAME>_URL`, else `default`.
pub fn server_url(name: &str, default: &str) -> String {
    std::env::var(format!("SESSION_TEST_{name}_URL")).unwrap_or_else(|_| default.to_owned())
}

/// A fixed key, the one whose stored record a target corrupts.
pub fn key(byte: u8) -> SessionKey {
    SessionKey::from_bytes(&[byte; 32]).expect("32 bytes")
}

/// Panics unless `result` is a success or a `Decode` error: a corrupt record must be reported
/// as such, never as a crash, a hang or an unrelated error.
pub fn decoded_or_refused<T: std::fmt::Debug>(operation: &str, result: &Result<T>) {
    if let Err(error) = result {
        assert_eq!(
            error.kind(),
            ErrorKind::Decode,
            "{operation} on a corrupt record: {error:?}"
        );
    }
}

/// Runs every store operation that reads a stored record on `corrupt` (whose stored contents
/// the target wrote), then deletes it; each must succeed or report `Decode`.
pub async fn exercise(store: &dyn SessionStore, corrupt: &SessionKey, version: u64, fresh: u8) {
    let later = OffsetDateTime::now_utc() + Duration::minutes(5);
    let other = key(fresh);
    let read = store.read(corrupt).await;
    decoded_or_refused("read", &read);
    decoded_or_refused(
        "update in place",
        &store
            .update(corrupt, corrupt, version, later, Bytes::from_static(b"{}"))
            .await,
    );
    decoded_or_refused(
        "rotation",
        &store
            .update(&other, corrupt, version, later, Bytes::from_static(b"{}"))
            .await,
    );
    decoded_or_refused(
        "large update in place",
        &store
            .update(
                corrupt,
                corrupt,
                version,
                later,
                Bytes::from(vec![b' '; 2048]),
            )
            .await,
    );
    decoded_or_refused("touch", &store.touch(corrupt, later).await);
    decoded_or_refused(
        "create over it",
        &store
            .create(corrupt, later, Bytes::from_static(b"{}"))
            .await,
    );
    decoded_or_refused("delete_expired", &store.delete_expired().await);
    store.delete(corrupt).await.expect("delete");
    store.delete(&other).await.expect("delete");
}

/// [`exercise`], then the administrative reads that scan every record.
pub async fn exercise_admin(store: &dyn StoreAdmin, corrupt: &SessionKey, version: u64, fresh: u8) {
    decoded_or_refused("counts", &store.counts().await);
    exercise(store, corrupt, version, fresh).await;
}
