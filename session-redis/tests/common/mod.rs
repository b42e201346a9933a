//! A factory of fresh Redis namespaces for the tests: a random key prefix per store, cleared
//! again when the test finishes.

#![allow(dead_code, unreachable_pub)]

use std::sync::{Arc, Mutex};

use conformance_tests::StoreFactory;
use session_core::{Error, SessionId, SessionStore, async_trait};
use session_redis::{RedisConfig, RedisStore};

pub struct RedisFactory {
    url: Option<String>,
    prefixes: Mutex<Vec<String>>,
    connections: usize,
}

impl RedisFactory {
    pub fn from_env() -> Self {
        Self {
            url: conformance_tests::server_url("SESSION_TEST_REDIS_URL"),
            prefixes: Mutex::new(Vec::new()),
            connections: 1,
        }
    }

    /// Stores that spread their commands over `connections` multiplexed connections.
    pub fn with_connections(connections: usize) -> Self {
        Self {
            connections,
            ..Self::from_env()
        }
    }

    pub fn url(&self) -> &str {
        self.url.as_deref().expect("checked by unavailable()")
    }

    pub fn fresh_config(&self) -> RedisConfig {
        let prefix = format!("test:{}:", &SessionId::generate().key().to_hex()[..16]);
        self.prefixes.lock().unwrap().push(prefix.clone());
        RedisConfig::new(self.url())
            .key_prefix(prefix)
            .connections(self.connections)
    }
}

#[async_trait]
impl StoreFactory for RedisFactory {
    async fn store(&self) -> Result<Arc<dyn SessionStore>, Error> {
        Ok(Arc::new(RedisStore::connect(self.fresh_config()).await?))
    }

    async fn store_pair(&self) -> Result<(Arc<dyn SessionStore>, Arc<dyn SessionStore>), Error> {
        let config = self.fresh_config();
        // Two clients, two connections: two application instances sharing one namespace.
        let first = RedisStore::connect(config.clone()).await?;
        let second = RedisStore::connect(config).await?;
        Ok((Arc::new(first), Arc::new(second)))
    }

    fn expires_by_itself(&self) -> bool {
        true
    }

    fn unavailable(&self) -> Option<String> {
        self.url
            .is_none()
            .then(|| "SESSION_TEST_REDIS_URL is not set".to_owned())
    }

    async fn finish(&self) {
        let prefixes = std::mem::take(&mut *self.prefixes.lock().unwrap());
        for prefix in prefixes {
            if let Ok(store) =
                RedisStore::connect(RedisConfig::new(self.url()).key_prefix(prefix)).await
            {
                let _ = store.clear().await;
            }
        }
    }
}
