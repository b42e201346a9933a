//! Rows of the SQLite store's table with any contents (SQLite columns take any type: a text
//! version, a real expiry, a key of another length), as a broken or foreign writer leaves them.
#![no_main]

use std::sync::{LazyLock, Mutex};

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use rusqlite::types::Value as Sql;
use session_fuzz::{block_on, key};
use session_sqlite::{SqliteConfig, SqliteStore};

#[derive(Arbitrary, Debug)]
enum Column {
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Column {
    fn sql(&self) -> Sql {
        match self {
            Self::Integer(n) => Sql::Integer(*n),
            Self::Real(r) => Sql::Real(*r),
            Self::Text(t) => Sql::Text(t.clone()),
            Self::Blob(b) => Sql::Blob(b.clone()),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// The row at the key the operations use: expiry, version, data.
    row: (Column, Column, Column),
    /// Another row under any key (scanned by counts and purges only).
    stray: Option<(Column, Column, Column, Column)>,
    version: u64,
}

struct Fixture {
    store: SqliteStore,
    raw: Mutex<rusqlite::Connection>,
    _dir: std::path::PathBuf,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let dir = std::env::temp_dir().join(format!("session-fuzz-sqlite-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("rows.db");
    let store = block_on(SqliteStore::with_config(
        SqliteConfig::new(&path).table("rows"),
    ))
    .expect("open");
    let raw = rusqlite::Connection::open(&path).expect("raw connection");
    raw.busy_timeout(std::time::Duration::from_secs(5))
        .expect("busy timeout");
    Fixture {
        store,
        raw: Mutex::new(raw),
        _dir: dir,
    }
});

fuzz_target!(|input: Input| {
    let fixture = &*FIXTURE;
    let corrupt = key(1);
    {
        let raw = fixture.raw.lock().expect("lock");
        raw.execute("DELETE FROM rows", []).expect("delete");
        let (expires, version, data) = &input.row;
        let inserted = raw.execute(
            "INSERT INTO rows (key, expires_at, version, data) VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![
                &corrupt.as_bytes()[..],
                expires.sql(),
                version.sql(),
                data.sql()
            ],
        );
        if inserted.is_err() {
            return;
        }
        if let Some((k, e, v, d)) = &input.stray {
            let _ = raw.execute(
                "INSERT INTO rows (key, expires_at, version, data) VALUES (?1, ?2, ?3, ?4)",
                rusqlite::params![k.sql(), e.sql(), v.sql(), d.sql()],
            );
        }
    }
    block_on(session_fuzz::exercise_admin(
        &fixture.store,
        &corrupt,
        input.version,
        2,
    ));
});
