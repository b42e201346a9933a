//! Bad files, bad places, bad rows, bad names: a clear error, no panic, nothing else changed.

use session_core::SessionStoreExt as _;
use std::path::Path;
use std::process::Command;

use session_core::Bytes;
use session_core::time::{Duration, OffsetDateTime};
use session_core::{CreateOutcome, ErrorKind, SessionId, SessionKey, SessionStore};
use session_sqlite::{SqliteConfig, SqliteStore};

fn later() -> OffsetDateTime {
    OffsetDateTime::now_utc() + Duration::hours(1)
}

async fn store_with(path: &Path, table: &str) -> SqliteStore {
    SqliteStore::with_config(SqliteConfig::new(path).table(table))
        .await
        .unwrap()
}

/// Makes `path` unwritable even for root (`chattr +i`), or says why it can't.
struct Immutable<'a>(&'a Path);

impl<'a> Immutable<'a> {
    fn new(path: &'a Path) -> Option<Self> {
        let mut perms = std::fs::metadata(path).unwrap().permissions();
        perms.set_readonly(true);
        std::fs::set_permissions(path, perms).unwrap();
        let probe = if path.is_dir() {
            std::fs::write(path.join(".probe"), b"x")
                .map(|_| std::fs::remove_file(path.join(".probe")))
        } else {
            std::fs::OpenOptions::new()
                .append(true)
                .open(path)
                .map(|_| Ok(()))
        };
        if probe.is_err() {
            return Some(Self(path)); // permissions are enough (not root)
        }
        let status = Command::new("chattr").arg("+i").arg(path).status();
        if matches!(status, Ok(s) if s.success()) {
            Some(Self(path))
        } else {
            eprintln!(
                "SKIPPED: running as root and `chattr +i` is unavailable here: cannot make {path:?} read-only"
            );
            None
        }
    }
}

impl Drop for Immutable<'_> {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(self.0).status();
        let mut perms = std::fs::metadata(self.0).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perms.set_readonly(false);
        let _ = std::fs::set_permissions(self.0, perms);
    }
}

#[tokio::test]
async fn a_file_that_is_not_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    let content = "these are my notes, not a database\n".repeat(200);
    std::fs::write(&path, &content).unwrap();
    let err = SqliteStore::open(&path).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Backend);
    assert!(err.to_string().contains("not an SQLite database"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        content,
        "the file was changed"
    );
}

#[tokio::test]
async fn a_missing_parent_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing").join("sessions.sqlite");
    let err = SqliteStore::open(&path).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Backend);
    assert!(
        err.to_string().contains("cannot open the database file"),
        "{err}"
    );
    assert!(
        !dir.path().join("missing").exists(),
        "the directory was created"
    );
}

#[tokio::test]
async fn a_read_only_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.sqlite");
    let key = SessionId::generate().key();
    {
        let store = store_with(&path, "sessions").await;
        assert_eq!(
            store
                .create(&key, later(), Bytes::from_static(b"kept"))
                .await
                .unwrap(),
            CreateOutcome::Created
        );
    }
    // Fold the WAL back so the database is one file. The dropped store's threads close their
    // connections on their own schedule: leaving WAL mode needs them gone, and SQLite answers
    // "database is locked" at once (no busy wait) while one is open, so try again for up to 10 s.
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.busy_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match raw.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode = DELETE") {
            Ok(()) => break,
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => panic!("folding the WAL back: {e}"),
        }
    }
    drop(raw);
    let before = std::fs::read(&path).unwrap();
    {
        let Some(_guard) = Immutable::new(&path) else {
            return;
        };
        let err = SqliteStore::open(&path).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Backend);
        assert!(
            err.to_string().contains("read-only") || err.to_string().contains("cannot open"),
            "{err}"
        );
        assert_eq!(
            std::fs::read(&path).unwrap(),
            before,
            "a read-only file changed"
        );
    }
    let store = store_with(&path, "sessions").await;
    assert_eq!(
        store.read(&key).await.unwrap().unwrap().data.to_vec(),
        b"kept".to_vec()
    );
}

#[tokio::test]
async fn a_read_only_directory() {
    let dir = tempfile::tempdir().unwrap();
    let locked = dir.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    let path = locked.join("sessions.sqlite");
    let Some(_guard) = Immutable::new(&locked) else {
        return;
    };
    let err = SqliteStore::open(&path).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Backend);
    assert!(
        err.to_string().contains("cannot open") || err.to_string().contains("read-only"),
        "{err}"
    );
    assert!(!path.exists(), "a file appeared in a read-only directory");
}

#[tokio::test]
async fn invalid_table_names_fail_before_any_sql() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.sqlite");
    for table in [
        "",
        "1abc",
        "a-b",
        "x\"; DROP TABLE t; --",
        "sessions table",
        "ünïcode",
    ] {
        let err = SqliteStore::with_config(SqliteConfig::new(&path).table(table))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{table:?}");
        assert!(
            !path.exists(),
            "a file was created for an invalid table name"
        );
    }
    let err = SqliteStore::with_config(SqliteConfig::new(&path).readers(0))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
}

#[tokio::test]
async fn a_foreign_table_with_our_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.sqlite");
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute_batch("CREATE TABLE sessions (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO sessions (name) VALUES ('mine')").unwrap();
    let err = SqliteStore::open(&path).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    let name: String = raw
        .query_row("SELECT name FROM sessions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(name, "mine", "the foreign table was changed");
}

#[tokio::test]
async fn a_newer_schema_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("future.sqlite");
    drop(SqliteStore::open(&path).await.unwrap());
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(&format!(
            "UPDATE {} SET version = 99 WHERE session_table = 'sessions'",
            session_sqlite::SCHEMA_TABLE
        ))
        .unwrap();
    let err = SqliteStore::open(&path).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("99"), "{err}");
    // Another table of the same file is not held back by it.
    assert!(
        SqliteStore::with_config(SqliteConfig::new(&path).table("other"))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn the_host_databases_user_version_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    for host_version in [0, 7, 99] {
        let path = dir.path().join(format!("host{host_version}.sqlite"));
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch(&format!(
                "CREATE TABLE app_users (id INTEGER PRIMARY KEY); PRAGMA user_version = {host_version}"
            ))
            .unwrap();
        let store = SqliteStore::open(&path).await.unwrap();
        let key = SessionId::generate().key();
        assert_eq!(
            store
                .create(&key, later(), Bytes::from_static(b"x"))
                .await
                .unwrap(),
            CreateOutcome::Created
        );
        drop(store);
        let version: i64 = rusqlite::Connection::open(&path)
            .unwrap()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, host_version, "the host's user_version changed");
    }
}

#[tokio::test]
async fn a_file_of_the_previous_layout_is_adopted() {
    // What the previous build wrote: the table and index, and PRAGMA user_version = 1.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("previous.sqlite");
    let key = SessionId::generate().key();
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE \"sessions\" (key BLOB PRIMARY KEY NOT NULL, expires_at INTEGER NOT NULL, \
             version INTEGER NOT NULL, data BLOB NOT NULL) WITHOUT ROWID; \
             CREATE INDEX \"sessions_expires_at\" ON \"sessions\" (expires_at); \
             PRAGMA user_version = 1;",
        )
        .unwrap();
        let expires = session_core::unix_millis(later());
        c.execute(
            "INSERT INTO sessions VALUES (?1, ?2, 3, x'0102')",
            rusqlite::params![&key.as_bytes()[..], expires],
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path).await.unwrap();
    let record = store.read(&key).await.unwrap().unwrap();
    assert_eq!((record.version, &record.data[..]), (3, &[1u8, 2][..]));
    drop(store);
    let c = rusqlite::Connection::open(&path).unwrap();
    let recorded: i64 = c
        .query_row(
            &format!(
                "SELECT version FROM {} WHERE session_table = 'sessions'",
                session_sqlite::SCHEMA_TABLE
            ),
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(recorded, session_sqlite::SCHEMA_VERSION);
}

#[tokio::test]
async fn a_version_1_table_gets_the_owner_index() {
    use session_core::{Owner, OwnerChange, Ownership, UpdateOutcome, WriteOptions};
    // What schema version 1 wrote: the table without owner columns, recorded as version 1.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.sqlite");
    let key = SessionId::generate().key();
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(&format!(
            "CREATE TABLE \"sessions\" (key BLOB PRIMARY KEY NOT NULL, expires_at INTEGER NOT NULL, \
             version INTEGER NOT NULL, data BLOB NOT NULL) WITHOUT ROWID; \
             CREATE INDEX \"sessions_expires_at\" ON \"sessions\" (expires_at); \
             CREATE TABLE \"{0}\" (session_table TEXT PRIMARY KEY NOT NULL, version INTEGER NOT NULL); \
             INSERT INTO \"{0}\" VALUES ('sessions', 1);",
            session_sqlite::SCHEMA_TABLE
        ))
        .unwrap();
        c.execute(
            "INSERT INTO sessions VALUES (?1, ?2, 3, x'0102')",
            rusqlite::params![&key.as_bytes()[..], session_core::unix_millis(later())],
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path).await.unwrap();
    let record = store.read(&key).await.unwrap().unwrap();
    assert_eq!((record.version, &record.data[..]), (3, &[1u8, 2][..]));
    // The old session has no owner until one is given; then it is listed and revocable.
    let alice = Owner::new("alice").unwrap();
    assert!(store.sessions_of(&alice).await.unwrap().is_empty());
    let owned = Ownership::new(alice.clone(), "migrated").unwrap();
    let outcome = store
        .update_opts(
            &key,
            &key,
            3,
            later(),
            Bytes::from_static(b"x"),
            &WriteOptions::new().with_owner(OwnerChange::Set(owned.clone())),
        )
        .await
        .unwrap();
    assert_eq!(outcome, UpdateOutcome::Updated { version: 4 });
    let listed = store.sessions_of(&alice).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].key, listed[0].label.as_str()), (key, "migrated"));
    assert_eq!(store.revoke_owner(&alice, None).await.unwrap(), 1);
    drop(store);
    let c = rusqlite::Connection::open(&path).unwrap();
    let recorded: i64 = c
        .query_row(
            &format!(
                "SELECT version FROM {} WHERE session_table = 'sessions'",
                session_sqlite::SCHEMA_TABLE
            ),
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(recorded, 2);
    let index: i64 = c
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'sessions_owner'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(index, 1, "the owner index was made");
}

#[tokio::test]
async fn in_memory_databases_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    for path in [
        "",
        ":memory:",
        "file::memory:",
        "file::memory:?cache=shared",
        "file:sessions?mode=memory&cache=shared",
    ] {
        let error = SqliteStore::open(path).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config, "{path:?}: {error}");
        assert!(error.to_string().contains("memory://"), "{path:?}: {error}");
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    let error = SqliteStore::with_config(
        SqliteConfig::new(dir.path().join("s.db")).table(session_sqlite::SCHEMA_TABLE),
    )
    .await
    .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config, "{error}");
}

#[tokio::test]
async fn corrupt_rows_are_decode_errors_and_nothing_else_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.sqlite");
    let store = store_with(&path, "sessions").await;
    let keys: Vec<SessionKey> = (0..4).map(|_| SessionId::generate().key()).collect();
    for key in &keys {
        assert_eq!(
            store
                .create(key, later(), Bytes::from_static(b"fine"))
                .await
                .unwrap(),
            CreateOutcome::Created
        );
    }
    let raw = rusqlite::Connection::open(&path).unwrap();
    let corrupt = [
        "UPDATE sessions SET data = 'text, not a blob' WHERE key = ?1",
        "UPDATE sessions SET expires_at = 'garbage' WHERE key = ?1",
        "UPDATE sessions SET version = -5 WHERE key = ?1",
    ];
    for (sql, key) in corrupt.iter().zip(&keys) {
        raw.execute(sql, [&key.as_bytes()[..]]).unwrap();
        let err = store.read(key).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Decode, "{sql}: {err}");
    }
    let untouched = store
        .read(&keys[3])
        .await
        .unwrap()
        .expect("a healthy row next to corrupt ones");
    assert_eq!(untouched.data.to_vec(), b"fine".to_vec());
    assert_eq!(
        store
            .update(&keys[2], &keys[2], 1, later(), Bytes::from_static(b"x"))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Decode
    );
    let version: i64 = raw
        .query_row(
            "SELECT version FROM sessions WHERE key = ?1",
            [&keys[2].as_bytes()[..]],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(version, -5, "a failed update changed the row");
    // Found by the sqlite_rows fuzz target: a version at the top of the range has no successor;
    // that is a corrupt record (Decode), not a backend failure, and nothing changes.
    raw.execute(
        "UPDATE sessions SET version = 9223372036854775807 WHERE key = ?1",
        [&keys[3].as_bytes()[..]],
    )
    .unwrap();
    let err = store
        .update(
            &keys[3],
            &keys[3],
            i64::MAX as u64,
            later(),
            Bytes::from_static(b"x"),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Decode, "{err}");
    assert_eq!(
        store.read(&keys[3]).await.unwrap().unwrap().data.to_vec(),
        b"fine".to_vec()
    );
}

#[tokio::test]
async fn tables_in_one_file_are_separate_namespaces() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.sqlite");
    let (a, b) = (
        store_with(&path, "app_a").await,
        store_with(&path, "app_b").await,
    );
    let key = SessionId::generate().key();
    assert_eq!(
        a.create(&key, later(), Bytes::from_static(b"a"))
            .await
            .unwrap(),
        CreateOutcome::Created
    );
    assert_eq!(
        b.create(&key, later(), Bytes::from_static(b"b"))
            .await
            .unwrap(),
        CreateOutcome::Created
    );
    a.clear().await.unwrap();
    assert!(a.read(&key).await.unwrap().is_none());
    assert_eq!(
        b.read(&key).await.unwrap().unwrap().data.to_vec(),
        b"b".to_vec()
    );
    assert_eq!(b.counts().await.unwrap(), (1, 0));
}

#[tokio::test]
async fn dropping_a_namespace_twice_is_fine() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.sqlite");
    // Two stores of one namespace (two processes would have this), each told to drop it.
    let first = store_with(&path, "shared").await;
    let second = store_with(&path, "shared").await;
    first.drop_table().await.unwrap();
    second.drop_table().await.unwrap();
    first.drop_table().await.unwrap();
    let connection = rusqlite::Connection::open(&path).unwrap();
    let tables: i64 = connection
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(tables, 0, "the table and the store's metadata are gone");
}
