//! `MysqlStore` against the raw sqlx floor: the same single statement for each operation (no
//! outcome classification, no locking path, no retries, no deadline) through the same pool,
//! same harness, same run.
//!
//! `SESSION_TEST_MYSQL_URL=mysql://root@127.0.0.1:3306/test cargo bench -p session-mysql --bench mysql`

use std::sync::Arc;
use std::time::Duration;

use session_bench::{Op, compare, print_markdown};
use session_core::time::OffsetDateTime;
use session_core::{
    BackendConfig, Bytes, CreateOutcome, Record, Result, SessionKey, SessionStore, UpdateOutcome,
    async_trait, from_unix_millis, unix_millis,
};
use session_mysql::MysqlConfig;
use sqlx::{MySqlPool, Row};

const NOW: &str = "CAST(FLOOR(@@timestamp * 1000) AS SIGNED)";

struct RawMysql {
    pool: MySqlPool,
    table: String,
}

fn fail(e: sqlx::Error) -> session_core::Error {
    session_core::Error::backend("raw sqlx", e, false)
}

#[async_trait]
impl SessionStore for RawMysql {
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
            "INSERT INTO {} (k, expires_at, version, data) VALUES (?, ?, 1, ?) ON DUPLICATE KEY UPDATE \
             data = IF(expires_at <= {NOW}, VALUES(data), data), \
             version = IF(expires_at <= {NOW}, 1, LAST_INSERT_ID(version)), \
             expires_at = IF(expires_at <= {NOW}, VALUES(expires_at), expires_at)",
            self.table
        );
        let done = sqlx::query(&sql)
            .bind(&key.as_bytes()[..])
            .bind(unix_millis(expires_at))
            .bind(&data[..])
            .execute(&self.pool)
            .await
            .map_err(fail)?;
        Ok(if done.last_insert_id() == 0 {
            CreateOutcome::Created
        } else {
            CreateOutcome::IdTaken
        })
    }
    async fn read(&self, key: &SessionKey) -> Result<Option<Record>> {
        let sql = format!(
            "SELECT expires_at, version, data FROM {} WHERE k = ? AND expires_at > {NOW}",
            self.table
        );
        let row = sqlx::query(&sql)
            .bind(&key.as_bytes()[..])
            .fetch_optional(&self.pool)
            .await
            .map_err(fail)?;
        Ok(row.map(|r| Record {
            expires_at: from_unix_millis(r.get(0)).expect("a valid expiry"),
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
            "UPDATE {} SET k = ?, expires_at = ?, version = version + 1, data = ? WHERE k = ? AND version = ? AND expires_at > {NOW}",
            self.table
        );
        let done = sqlx::query(&sql)
            .bind(&current.as_bytes()[..])
            .bind(unix_millis(expires_at))
            .bind(&data[..])
            .bind(&previous.as_bytes()[..])
            .bind(expected as i64)
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
            "UPDATE {} SET expires_at = ? WHERE k = ? AND expires_at > {NOW}",
            self.table
        );
        let done = sqlx::query(&sql)
            .bind(unix_millis(expires_at))
            .bind(&key.as_bytes()[..])
            .execute(&self.pool)
            .await
            .map_err(fail)?;
        Ok(done.rows_affected() >= 1)
    }
    async fn delete(&self, key: &SessionKey) -> Result<()> {
        let sql = format!("DELETE FROM {} WHERE k = ?", self.table);
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
    let Ok(url) = std::env::var("SESSION_TEST_MYSQL_URL") else {
        eprintln!("set SESSION_TEST_MYSQL_URL (e.g. mysql://root@127.0.0.1:3306/test)");
        std::process::exit(2);
    };
    let ops: usize = session_bench::ops_from_env(5_000);
    let runtime = session_bench::runtime();
    let rows = runtime.block_on(async {
        // Two fresh tables of the backend's own test factory, removed afterwards; the floor
        // shares the store's pool.
        let base = MysqlConfig::from_url(&url).unwrap().max_connections(64);
        let factory = conformance_tests::NamespaceFactory::new(base);
        let store = factory.open_fresh().await.unwrap();
        let floor = factory.open_fresh().await.unwrap();
        let raw = RawMysql {
            pool: store.pool().clone(),
            table: format!("`{}`", floor.config().table),
        };
        let stores: Vec<(&str, Arc<dyn SessionStore>)> = vec![
            ("MysqlStore", Arc::clone(&store) as Arc<dyn SessionStore>),
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
        factory.remove_namespaces().await.unwrap();
        rows
    });
    print_markdown(&rows, "raw sqlx");
}
