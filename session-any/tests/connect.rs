//! Opening stores from URLs: settings reach the store, namespaces stay apart, bad URLs and
//! unreachable servers are clear errors without secrets.

use session_core::SessionStoreExt as _;
use std::time::Duration;

use session_any::{AnyStore, StoreAdmin, StoreConfig, connect};
use session_core::Bytes;
use session_core::{CreateOutcome, ErrorKind, SessionId, SessionStore, time::OffsetDateTime};

fn later() -> OffsetDateTime {
    OffsetDateTime::now_utc() + Duration::from_secs(3600)
}

#[tokio::test]
async fn sqlite_settings_reach_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let url = format!("sqlite://{}?table=web_sessions", path.display());
    let store = AnyStore::open(&StoreConfig::new(&url)).await.unwrap();
    assert_eq!(store.backend(), "sqlite");
    let key = SessionId::generate().key();
    assert_eq!(
        store
            .create(&key, later(), Bytes::from_static(b"x"))
            .await
            .unwrap(),
        CreateOutcome::Created
    );
    let counts = store.counts().await.unwrap();
    assert_eq!((counts.live, counts.expired), (1, Some(0)));
    drop(store);

    // The session is in the named table of the named file.
    let connection = session_sqlite::rusqlite::Connection::open(&path).unwrap();
    let rows: i64 = connection
        .query_row("SELECT count(*) FROM web_sessions", [], |row| row.get(0))
        .unwrap();
    assert_eq!(rows, 1);

    // Reopened through the same URL, it is still there; another table does not see it.
    let again = connect(&url).await.unwrap();
    assert!(again.read(&key).await.unwrap().is_some());
    let other = connect(&format!("sqlite://{}?table=other", path.display()))
        .await
        .unwrap();
    assert!(other.read(&key).await.unwrap().is_none());
}

#[tokio::test]
async fn temporary_sqlite_files_are_private_and_removed() {
    let a = AnyStore::open(&StoreConfig::new("sqlite::memory:"))
        .await
        .unwrap();
    let b = AnyStore::open(&StoreConfig::new("sqlite::memory:"))
        .await
        .unwrap();
    let key = SessionId::generate().key();
    assert_eq!(
        a.create(&key, later(), Bytes::from_static(b"x"))
            .await
            .unwrap(),
        CreateOutcome::Created
    );
    assert!(b.read(&key).await.unwrap().is_none());
    let dir = format!("{a:?}");
    assert!(dir.contains("session-sqlite-"), "{dir}");
}

#[tokio::test]
async fn drop_namespace_removes_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ns.db");
    let url = format!("sqlite://{}?table=doomed", path.display());
    let store = AnyStore::open(&StoreConfig::new(&url)).await.unwrap();
    assert_eq!(
        store
            .create(
                &SessionId::generate().key(),
                later(),
                Bytes::from_static(b"x")
            )
            .await
            .unwrap(),
        CreateOutcome::Created
    );
    store.drop_namespace().await.unwrap();
    drop(store);
    let connection = session_sqlite::rusqlite::Connection::open(&path).unwrap();
    let tables: i64 = connection
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'doomed'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(tables, 0);
}

#[tokio::test]
async fn bad_urls_are_config_errors() {
    for (url, needle) in [
        (
            "oracle://scott@localhost/test",
            "unknown store URL scheme `oracle`",
        ),
        ("sqlite://", "needs a file path"),
        ("sqlite:///nonexistent-dir-for-session-any/x.db", "sqlite"),
        ("postgres://u@h/d?table=bad-name", "not a plain identifier"),
        ("redis://127.0.0.1:6379?key_prefix=a*b", "prefix"),
    ] {
        let error = connect(url)
            .await
            .err()
            .unwrap_or_else(|| panic!("{url} opened"));
        assert!(error.to_string().contains(needle), "{url}: {error}");
    }
}

#[tokio::test]
async fn unreachable_servers_fail_fast_without_secrets() {
    for url in [
        "postgres://app:hunter2@127.0.0.1:1/app?acquire_timeout=1500",
        "redis://:hunter2@127.0.0.1:1?connection_timeout=1500&response_timeout=1500",
    ] {
        let started = std::time::Instant::now();
        let error = connect(url).await.err().expect("nothing listens on port 1");
        assert!(started.elapsed() < Duration::from_secs(10), "{url}");
        assert_eq!(error.kind(), ErrorKind::Backend, "{url}: {error}");
        assert!(error.is_transient(), "{url}: {error}");
        let text = format!("{error} {error:?}");
        assert!(!text.contains("hunter2"), "{text}");
    }
}

/// Opens `url`, checks its backend, and creates one session in it.
async fn open_with_one_session(url: &str, backend: &str) -> AnyStore {
    let store = AnyStore::open(&StoreConfig::new(url)).await.unwrap();
    assert_eq!(store.backend(), backend);
    let outcome = store
        .create(
            &SessionId::generate().key(),
            later(),
            Bytes::from_static(b"x"),
        )
        .await;
    assert_eq!(outcome.unwrap(), CreateOutcome::Created);
    store
}

#[tokio::test]
async fn postgres_settings_reach_the_server() {
    let Some(base) = session_test_support::server_url("SESSION_TEST_POSTGRES_URL") else {
        return;
    };
    let namespace = session_any::testing::fresh_namespace();
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}schema=session_any_tests&table={namespace}&max_connections=2");
    let store = open_with_one_session(&url, "postgres").await;
    assert_eq!(store.counts().await.unwrap().live, 1);
    // The pool gauges: at least the connection just used, at most max_connections.
    let gauges = store.gauges();
    let open = gauges.connections.expect("a pool");
    assert!((1..=2).contains(&open), "{gauges:?}");
    assert!(gauges.idle_connections.unwrap() <= open, "{gauges:?}");
    let debug = format!("{store:?}");
    assert!(
        debug.contains("session_any_tests") && debug.contains(&namespace),
        "{debug}"
    );
    store.drop_namespace().await.unwrap();
    assert!(store.counts().await.is_err(), "the table is gone");
}

#[tokio::test]
async fn redis_settings_reach_the_server() {
    let Some(base) = session_test_support::server_url("SESSION_TEST_REDIS_URL") else {
        return;
    };
    let namespace = session_any::testing::fresh_namespace();
    let url = format!("{base}?key_prefix={namespace}%3A");
    let store = open_with_one_session(&url, "redis").await;
    let counts = store.counts().await.unwrap();
    assert_eq!((counts.live, counts.expired), (1, None));
    store.drop_namespace().await.unwrap();
    assert_eq!(store.counts().await.unwrap().live, 0);
}

/// A store opened from a URL is instrumented with no code of the application's: its operations
/// show up as `session_store` spans naming the backend (never the key).
#[test]
fn stores_opened_from_a_url_trace_their_operations() {
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .with_writer(move || writer.clone())
        .finish();
    let key = SessionId::generate().key();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    tracing::subscriber::with_default(subscriber, || {
        runtime.block_on(async {
            let store = connect("memory://").await.unwrap();
            let _ = store
                .create(&key, later(), Bytes::from_static(b"x"))
                .await
                .unwrap();
            assert!(store.read(&key).await.unwrap().is_some());
        })
    });
    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    for expected in [
        "session_store{backend=\"memory\" operation=\"create\"",
        "session_store{backend=\"memory\" operation=\"read\"",
    ] {
        assert!(text.contains(expected), "{expected} not in {text}");
    }
    assert!(!text.contains(&key.to_hex()[..12]), "{text}");
}

/// Pool and queue gauges: SQLite reports its queue, memory nothing.
#[tokio::test]
async fn gauges_name_what_the_backend_has() {
    use session_core::Gauges;
    let sqlite = AnyStore::open(&StoreConfig::new("sqlite::memory:"))
        .await
        .unwrap();
    let _ = sqlite
        .create(
            &SessionId::generate().key(),
            later(),
            Bytes::from_static(b"x"),
        )
        .await
        .unwrap();
    assert_eq!(sqlite.gauges(), Gauges::queue(0));
    let memory = AnyStore::open(&StoreConfig::new("memory://"))
        .await
        .unwrap();
    assert_eq!(memory.gauges(), Gauges::default());
}
