//! `PostgresStore` against the raw sqlx floor: the plainest single statement for each operation
//! (no outcome classification, no expired-occupant handling) through the same pool, same harness,
//! same run.
//!
//! `SESSION_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test cargo bench -p session-postgres --bench postgres`

use std::sync::Arc;
use std::time::Duration;

use session_bench::{Op, compare, print_markdown};
use session_core::time::OffsetDateTime;
use session_core::{
    Bytes, CreateOutcome, Record, Result, SessionId, SessionKey, SessionStore, UpdateOutcome,
    async_trait,
};
use session_postgres::{PostgresConfig, PostgresStore};
use sqlx::{PgPool, Row};

struct RawPg {
    pool: PgPool,
    table: String,
}

fn fail(e: sqlx::Error) -> session_core::Error {
    session_core::Error::backend("raw sqlx", e, false)
}

#[async_trait]
impl SessionStore for RawPg {
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
        let sql = format!(
            "INSERT INTO {} AS s (key, expires_at, version, data) VALUES ($1, $2, 1, $3) ON CONFLICT (key) DO UPDATE SET expires_at = EXCLUDED.expires_at, version = 1, data = EXCLUDED.data WHERE s.expires_at <= now()",
            self.table
        );
        let done = sqlx::query(&sql)
            .bind(&key.as_bytes()[..])
            .bind(expires_at)
            .bind(&data[..])
            .execute(&self.pool)
            .await
            .map_err(fail)?;
        Ok(if done.rows_affected() == 1 {
            CreateOutcome::Created
        } else {
            CreateOutcome::IdTaken
        })
    }
    async fn read(&self, key: &SessionKey) -> Result<Option<Record>> {
        let sql = format!(
            "SELECT expires_at, version, data FROM {} WHERE key = $1 AND expires_at > now()",
            self.table
        );
        let row = sqlx::query(&sql)
            .bind(&key.as_bytes()[..])
            .fetch_optional(&self.pool)
            .await
            .map_err(fail)?;
        Ok(row.map(|r| Record {
            expires_at: r.get(0),
            version: r.get::<i64, _>(1) as u64,
            data: Bytes::from(r.get::<Vec<u8>, _>(2)),
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
        let sql = format!(
            "UPDATE {} SET key = $1, expires_at = $3, version = $4 + 1, data = $5 WHERE key = $2 AND version = $4 AND expires_at > now()",
            self.table
        );
        let done = sqlx::query(&sql)
            .bind(&current.as_bytes()[..])
            .bind(&previous.as_bytes()[..])
            .bind(expires_at)
            .bind(expected as i64)
            .bind(&data[..])
            .execute(&self.pool)
            .await
            .map_err(fail)?;
        Ok(if done.rows_affected() == 1 {
            UpdateOutcome::Updated {
                version: expected + 1,
            }
        } else {
            UpdateOutcome::Conflict
        })
    }
    async fn touch(&self, key: &SessionKey, expires_at: OffsetDateTime) -> Result<bool> {
        let sql = format!(
            "UPDATE {} SET expires_at = $2 WHERE key = $1 AND expires_at > now()",
            self.table
        );
        let done = sqlx::query(&sql)
            .bind(&key.as_bytes()[..])
            .bind(expires_at)
            .execute(&self.pool)
            .await
            .map_err(fail)?;
        Ok(done.rows_affected() == 1)
    }
    async fn delete(&self, key: &SessionKey) -> Result<()> {
        let sql = format!("DELETE FROM {} WHERE key = $1", self.table);
        sqlx::query(&sql)
            .bind(&key.as_bytes()[..])
            .execute(&self.pool)
            .await
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
    let Ok(url) = std::env::var("SESSION_TEST_POSTGRES_URL") else {
        eprintln!("set SESSION_TEST_POSTGRES_URL (e.g. postgres://postgres@127.0.0.1:5432/test)");
        std::process::exit(2);
    };
    let ops: usize = session_bench::ops_from_env(5_000);
    let runtime = session_bench::runtime();
    let suffix = &SessionId::generate().key().to_hex()[..8];
    let (store_table, raw_table) = (
        format!("bench_store_{suffix}"),
        format!("bench_raw_{suffix}"),
    );
    let rows = runtime.block_on(async {
        let store = PostgresStore::connect(
            PostgresConfig::new(&url)
                .schema("session_bench")
                .table(&store_table)
                .max_connections(64),
        )
        .await
        .unwrap();
        // The floor gets an identical table and shares the store's pool.
        let raw = PostgresStore::with_pool(
            store.pool().clone(),
            PostgresConfig::new(&url)
                .schema("session_bench")
                .table(&raw_table),
        )
        .unwrap();
        raw.migrate().await.unwrap();
        let raw = RawPg {
            pool: store.pool().clone(),
            table: format!("session_bench.{raw_table}"),
        };
        let pool = store.pool().clone();
        let stores: Vec<(&str, Arc<dyn SessionStore>)> = vec![
            ("PostgresStore", Arc::new(store)),
            ("raw sqlx", Arc::new(raw)),
        ];
        let rows = compare(
            &stores,
            "raw sqlx",
            &Op::ALL,
            &[1, 16, 64],
            &[200, 4096],
            ops,
            Duration::from_secs(10),
        )
        .await
        .expect("benchmark");
        for table in [&store_table, &raw_table] {
            sqlx::query(&format!("DROP TABLE session_bench.{table}"))
                .execute(&pool)
                .await
                .unwrap();
        }
        rows
    });
    print_markdown(&rows, "raw sqlx");
}
