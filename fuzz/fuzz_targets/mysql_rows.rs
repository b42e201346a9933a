//! Rows of the MySQL store's table with any contents its column types allow (a negative
//! version, an expiry no clock can show, any data).
//! Needs MariaDB/MySQL: SESSION_TEST_MYSQL_URL, default mysql://root@127.0.0.1:3306/test.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use session_fuzz::{block_on, key, server_url};
use session_mysql::{MysqlConfig, MysqlStore};
use sqlx::MySqlPool;

const TABLE: &str = "fuzz_rows";

#[derive(Arbitrary, Debug)]
struct Row {
    key: [u8; 32],
    expires: i64,
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
    store: MysqlStore,
    raw: MySqlPool,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    block_on(async {
        let url = server_url("MYSQL", "mysql://root@127.0.0.1:3306/test");
        let store = MysqlStore::connect(MysqlConfig::new(url.clone()).table(TABLE))
            .await
            .expect("MySQL (SESSION_TEST_MYSQL_URL)");
        let raw = MySqlPool::connect(&url).await.expect("connect");
        Fixture { store, raw }
    })
});

async fn insert(raw: &MySqlPool, key: &[u8], row: &Row) -> bool {
    sqlx::query(&format!(
        "INSERT INTO {TABLE} (k, expires_at, version, data) VALUES (?, ?, ?, ?)"
    ))
    .bind(key)
    .bind(row.expires)
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
            insert(&fixture.raw, &stray.key, stray).await;
        }
        session_fuzz::exercise_admin(&fixture.store, &corrupt, input.version, 2).await;
    });
});
