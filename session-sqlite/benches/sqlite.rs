//! `SqliteStore` against the raw `rusqlite` floor: one connection in WAL mode running the same
//! single prepared statements directly on the calling task (blocking the runtime, which a real
//! store must not do). Same harness, same run, both `synchronous=NORMAL`.
//!
//! `cargo bench -p session-sqlite --bench sqlite`

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, params};
use session_bench::{Op, compare, print_markdown};
use session_core::time::OffsetDateTime;
use session_core::{
    Bytes, CreateOutcome, Record, Result, SessionKey, SessionStore, UpdateOutcome, async_trait,
    from_unix_millis, unix_millis,
};
use session_sqlite::{SqliteConfig, SqliteStore};

struct RawSqlite(Mutex<Connection>);

fn now() -> i64 {
    unix_millis(OffsetDateTime::now_utc())
}

fn fail(e: rusqlite::Error) -> session_core::Error {
    session_core::Error::backend("raw sqlite", e, false)
}

impl RawSqlite {
    fn open(path: &std::path::Path) -> Self {
        let c = Connection::open(path).unwrap();
        // The store's pragmas, its default `mmap_size` included.
        c.execute_batch(&format!(
            "PRAGMA mmap_size = {};",
            session_sqlite::DEFAULT_MMAP_SIZE
        ))
        .unwrap();
        c.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
             CREATE TABLE s (key BLOB PRIMARY KEY NOT NULL, expires_at INTEGER NOT NULL, version INTEGER NOT NULL, data BLOB NOT NULL) WITHOUT ROWID;
             CREATE INDEX s_expires_at ON s (expires_at);",
        )
        .unwrap();
        Self(Mutex::new(c))
    }
}

#[async_trait]
impl SessionStore for RawSqlite {
    fn capabilities(&self) -> session_core::Capabilities {
        session_core::Capabilities::new()
    }
    async fn create_opts(
        &self,
        key: &SessionKey,
        expires_at: OffsetDateTime,
        data: Bytes,
        _options: &session_core::WriteOptions,
    ) -> Result<CreateOutcome> {
        let c = self.0.lock();
        let n = c
            .prepare_cached("INSERT INTO s VALUES (?1, ?2, 1, ?3) ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at, version = 1, data = excluded.data WHERE s.expires_at <= ?4")
            .and_then(|mut s| s.execute(params![&key.as_bytes()[..], unix_millis(expires_at), &data[..], now()]))
            .map_err(fail)?;
        Ok(if n == 1 {
            CreateOutcome::Created
        } else {
            CreateOutcome::IdTaken
        })
    }
    async fn read(&self, key: &SessionKey) -> Result<Option<Record>> {
        let c = self.0.lock();
        let row: Option<(i64, i64, Vec<u8>)> = c
            .prepare_cached(
                "SELECT expires_at, version, data FROM s WHERE key = ?1 AND expires_at > ?2",
            )
            .and_then(|mut s| {
                s.query_row(params![&key.as_bytes()[..], now()], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .optional()
            })
            .map_err(fail)?;
        Ok(row.map(|(e, v, d)| Record {
            data: Bytes::from(d),
            expires_at: from_unix_millis(e).unwrap(),
            version: v as u64,
        }))
    }
    async fn update_opts(
        &self,
        current: &SessionKey,
        previous: &SessionKey,
        expected: u64,
        expires_at: OffsetDateTime,
        data: Bytes,
        _options: &session_core::WriteOptions,
    ) -> Result<UpdateOutcome> {
        let c = self.0.lock();
        let n = c
            .prepare_cached("UPDATE s SET key = ?1, expires_at = ?3, version = ?4 + 1, data = ?5 WHERE key = ?2 AND version = ?4 AND expires_at > ?6")
            .and_then(|mut s| s.execute(params![&current.as_bytes()[..], &previous.as_bytes()[..], unix_millis(expires_at), expected as i64, &data[..], now()]))
            .map_err(fail)?;
        Ok(if n == 1 {
            UpdateOutcome::Updated {
                version: expected + 1,
            }
        } else {
            UpdateOutcome::Conflict
        })
    }
    async fn touch(&self, key: &SessionKey, expires_at: OffsetDateTime) -> Result<bool> {
        let c = self.0.lock();
        let n = c
            .prepare_cached("UPDATE s SET expires_at = ?2 WHERE key = ?1 AND expires_at > ?3")
            .and_then(|mut s| {
                s.execute(params![&key.as_bytes()[..], unix_millis(expires_at), now()])
            })
            .map_err(fail)?;
        Ok(n == 1)
    }
    async fn delete(&self, key: &SessionKey) -> Result<()> {
        let c = self.0.lock();
        c.prepare_cached("DELETE FROM s WHERE key = ?1")
            .and_then(|mut s| s.execute(params![&key.as_bytes()[..]]))
            .map_err(fail)?;
        Ok(())
    }
    async fn delete_expired(&self) -> Result<u64> {
        Ok(0)
    }
    async fn clear(&self) -> Result<()> {
        Ok(())
    }
}

fn main() {
    let runtime = session_bench::runtime();
    let dir = tempfile::tempdir().unwrap();
    let ops: usize = session_bench::ops_from_env(20_000);
    let rows = runtime.block_on(async {
        let store = SqliteStore::with_config(SqliteConfig::new(dir.path().join("store.sqlite")))
            .await
            .unwrap();
        let stores: Vec<(&str, Arc<dyn SessionStore>)> = vec![
            ("SqliteStore", Arc::new(store)),
            (
                "raw rusqlite",
                Arc::new(RawSqlite::open(&dir.path().join("raw.sqlite"))),
            ),
        ];
        compare(
            &stores,
            "raw rusqlite",
            &[
                Op::Create,
                Op::Read,
                Op::Update,
                Op::Rotate,
                Op::Touch,
                Op::Delete,
            ],
            &[1, 16, 64],
            &[200, 4096],
            ops,
            Duration::from_secs(10),
        )
        .await
        .expect("benchmark")
    });
    print_markdown(&rows, "raw rusqlite");
}
