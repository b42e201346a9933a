//! Fresh PostgreSQL tables for the tests. The conformance suite runs on the backend's own
//! factory (`session_postgres::testing`, [`factory`]); [`PgFactory`] serves the tests that
//! need a config before connecting (connections in another time zone, proxies, roles): each
//! store gets its own table in the `session_tests` schema, dropped again when the test
//! finishes.

#![allow(dead_code, unreachable_pub)]

use std::sync::{Arc, Mutex};

use conformance_tests::StoreFactory;
use session_core::{Error, SessionId, SessionStore, async_trait};
use session_postgres::{PostgresConfig, PostgresStore};

pub const SCHEMA: &str = "session_tests";

/// Stores in fresh tables of the test server, through the backend's own factory.
pub fn factory() -> conformance_tests::NamespaceFactory<PostgresConfig> {
    session_test_support::factory_from_env(
        session_test_support::POSTGRES,
        session_postgres::testing::factory,
    )
}

pub struct PgFactory {
    url: Option<String>,
    time_zone: Option<String>,
    tables: Mutex<Vec<String>>,
}

/// `url` with a connection parameter added to its query.
pub fn with_param(url: &str, name: &str, value: &str) -> String {
    let mut parsed = url::Url::parse(url).expect("a valid test URL");
    parsed.query_pairs_mut().append_pair(name, value);
    parsed.to_string()
}

/// A store whose connections all run with session time zone `zone`.
pub async fn connect_in_zone(config: PostgresConfig, zone: &str) -> Result<PostgresStore, Error> {
    // sqlx pins `TimeZone=UTC` in its startup packet, so the zone is set after connecting.
    let set_zone = format!("SET TIME ZONE '{zone}'");
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(config.max_connections)
        .after_connect(move |connection, _| {
            let set_zone = set_zone.clone();
            Box::pin(async move {
                sqlx::Executor::execute(connection, set_zone.as_str()).await?;
                Ok(())
            })
        })
        .connect(&config.url)
        .await
        .expect("connect");
    let store = PostgresStore::with_pool(pool, config)?;
    store.migrate().await?;
    Ok(store)
}

impl PgFactory {
    pub fn from_env() -> Self {
        Self {
            url: session_test_support::server_url(session_test_support::POSTGRES),
            time_zone: None,
            tables: Mutex::new(Vec::new()),
        }
    }

    /// Stores whose connections run in session time zone `zone`.
    pub fn in_time_zone(zone: &str) -> Self {
        Self {
            time_zone: Some(zone.to_owned()),
            ..Self::from_env()
        }
    }

    /// Connects a store for `config`, in the factory's time zone if it has one.
    pub async fn connect(&self, config: PostgresConfig) -> Result<PostgresStore, Error> {
        let Some(zone) = &self.time_zone else {
            return PostgresStore::connect(config).await;
        };
        connect_in_zone(config, zone).await
    }

    pub fn url(&self) -> &str {
        self.url.as_deref().expect("checked by unavailable()")
    }

    /// A config for a fresh table.
    pub fn fresh_config(&self) -> PostgresConfig {
        let table = format!("t_{}", &SessionId::generate().key().to_hex()[..16]);
        self.tables.lock().unwrap().push(table.clone());
        PostgresConfig::new(self.url())
            .schema(SCHEMA)
            .table(table)
            .max_connections(8)
    }
}

#[async_trait]
impl StoreFactory for PgFactory {
    async fn store(&self) -> Result<Arc<dyn SessionStore>, Error> {
        Ok(Arc::new(self.connect(self.fresh_config()).await?))
    }

    async fn store_pair(&self) -> Result<(Arc<dyn SessionStore>, Arc<dyn SessionStore>), Error> {
        let config = self.fresh_config();
        // Two pools: two application instances sharing one table.
        let first = self.connect(config.clone()).await?;
        let second = self.connect(config).await?;
        Ok((Arc::new(first), Arc::new(second)))
    }

    fn unavailable(&self) -> Option<String> {
        self.url
            .is_none()
            .then(|| "SESSION_TEST_POSTGRES_URL is not set".to_owned())
    }

    async fn finish(&self) {
        let tables = std::mem::take(&mut *self.tables.lock().unwrap());
        if tables.is_empty() {
            return;
        }
        let Ok(pool) = sqlx::PgPool::connect(self.url()).await else {
            return;
        };
        for table in tables {
            let _ = sqlx::query(&format!("DROP TABLE IF EXISTS \"{SCHEMA}\".\"{table}\""))
                .execute(&pool)
                .await;
        }
        pool.close().await;
    }
}
