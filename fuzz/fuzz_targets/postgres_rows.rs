//! Rows of the PostgreSQL store's table with any contents its column types allow (a key of
//! another length, a negative version, `infinity` or far-away expiries, any data).
//! Needs PostgreSQL: SESSION_TEST_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/test.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use session_fuzz::{block_on, key, server_url};
use session_postgres::{PostgresConfig, PostgresStore};
use sqlx::PgPool;

const TABLE: &str = "fuzz_rows";

#[derive(Arbitrary, Debug)]
enum Expiry {
    Millis(i64),
    Infinity,
    MinusInfinity,
}

#[derive(Arbitrary, Debug)]
struct Row {
    key: Option<Vec<u8>>,
    expires: Expiry,
    version: i64,
    data: Vec<u8>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    row: Row,
    stray: Option<Row>,
    version: u64,
}

struct Fixture {
    store: PostgresStore,
    raw: PgPool,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    block_on(async {
        let url = server_url("POSTGRES", "postgres://postgres@127.0.0.1:5432/test");
        let store = PostgresStore::connect(PostgresConfig::new(url.clone()).table(TABLE))
            .await
            .expect("PostgreSQL (SESSION_TEST_POSTGRES_URL)");
        let raw = PgPool::connect(&url).await.expect("connect");
        Fixture { store, raw }
    })
});

async fn insert(raw: &PgPool, key: &[u8], row: &Row) -> bool {
    let (kind, millis) = match row.expires {
        Expiry::Millis(millis) => (0, millis),
        Expiry::Infinity => (1, 0),
        Expiry::MinusInfinity => (2, 0),
    };
    sqlx::query(&format!(
        "INSERT INTO {TABLE} (key, expires_at, version, data) VALUES ($1, \
         CASE $2 WHEN 1 THEN 'infinity'::timestamptz WHEN 2 THEN '-infinity'::timestamptz \
         ELSE to_timestamp($3::float8 / 1000) END, $4, $5)"
    ))
    .bind(key)
    .bind(kind)
    .bind(millis)
    .bind(row.version)
    .bind(&row.data)
    .execute(raw)
    .await
    .is_ok()
}

fuzz_target!(|input: Input| {
    let fixture = &*FIXTURE;
    let corrupt = key(1);
    block_on(async {
        sqlx::query(&format!("DELETE FROM {TABLE}"))
            .execute(&fixture.raw)
            .await
            .expect("delete");
        if !insert(&fixture.raw, corrupt.as_bytes(), &input.row).await {
            return;
        }
        if let Some(stray) = &input.stray {
            insert(&fixture.raw, stray.key.as_deref().unwrap_or(b""), stray).await;
        }
        session_fuzz::exercise_admin(&fixture.store, &corrupt, input.version, 2).await;
    });
});
