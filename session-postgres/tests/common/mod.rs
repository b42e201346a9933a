//! A factory of fresh PostgreSQL tables for the tests: each store gets its own table in the
//! `session_tests` schema, dropped again when the test finishes.

#![allow(dead_code, unreachable_pub)]

use std::sync::{Arc, Mutex};

use conformance_tests::StoreFactory;
use session_core::{Error, SessionId, SessionStore, async_trait};
use session_postgres::{PostgresConfig, PostgresStore};

pub const SCHEMA: &str = "session_tests";

pub struct PgFactory {
    url: Option<String>,
    tables: Mutex<Vec<String>>,
}

impl PgFactory {
    pub fn from_env() -> Self {
        Self { url: conformance_tests::server_url("SESSION_TEST_POSTGRES_URL"), tables: Mutex::new(Vec::new()) }
    }

    pub fn url(&self) -> &str {
        self.url.as_deref().expect("checked by unavailable()")
    }

    /// A config for a fresh table.
    pub fn fresh_config(&self) -> PostgresConfig {
        let table = format!("t_{}", &SessionId::generate().key().to_hex()[..16]);
        self.tables.lock().unwrap().push(table.clone());
        PostgresConfig::new(self.url()).schema(SCHEMA).table(table).max_connections(8)
    }
}

#[async_trait]
impl StoreFactory for PgFactory {
    async fn store(&self) -> Result<Arc<dyn SessionStore>, Error> {
        Ok(Arc::new(PostgresStore::connect(self.fresh_config()).await?))
    }

    async fn store_pair(&self) -> Result<(Arc<dyn SessionStore>, Arc<dyn SessionStore>), Error> {
        let config = self.fresh_config();
        // Two pools: two application instances sharing one table.
        let first = PostgresStore::connect(config.clone()).await?;
        let second = PostgresStore::connect(config).await?;
        Ok((Arc::new(first), Arc::new(second)))
    }

    fn unavailable(&self) -> Option<String> {
        self.url.is_none().then(|| "SESSION_TEST_POSTGRES_URL is not set".to_owned())
    }

    async fn finish(&self) {
        let tables = std::mem::take(&mut *self.tables.lock().unwrap());
        if tables.is_empty() {
            return;
        }
        let Ok(pool) = sqlx::PgPool::connect(self.url()).await else { return };
        for table in tables {
            let _ = sqlx::query(&format!("DROP TABLE IF EXISTS \"{SCHEMA}\".\"{table}\"")).execute(&pool).await;
        }
        pool.close().await;
    }
}
