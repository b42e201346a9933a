//! The whole conformance suite on `Tiered` stores: a memory front over each durable back, the
//! back opened from a URL in a fresh namespace.

use std::sync::Arc;

use conformance_tests::StoreFactory;
use session_any::testing::{UrlFactory, fresh_namespace};
use session_manager::{Error, SessionStore, Tiered};
use session_memory::MemoryStore;

/// Tiered stores over the backs a [`UrlFactory`] opens.
struct TieredFactory(UrlFactory);

#[async_trait::async_trait]
impl StoreFactory for TieredFactory {
    async fn store(&self) -> Result<Arc<dyn SessionStore>, Error> {
        let back = self.0.open(&fresh_namespace()).await?;
        Ok(Arc::new(Tiered::new(MemoryStore::new(), back)))
    }

    fn unavailable(&self) -> Option<String> {
        self.0.unavailable()
    }

    async fn finish(&self) {
        self.0.finish().await;
    }
}

fn main() {
    conformance_tests::Suite::new()
        .stores("memory_over_sqlite", || {
            TieredFactory(UrlFactory::new("sqlite::memory:").unwrap())
        })
        .stores("memory_over_postgres", || {
            TieredFactory(session_test_support::from_env(
                "SESSION_TEST_POSTGRES_URL",
                UrlFactory::new,
                UrlFactory::unavailable,
            ))
        })
        .stores("memory_over_redis", || {
            TieredFactory(session_test_support::from_env(
                "SESSION_TEST_REDIS_URL",
                UrlFactory::new,
                UrlFactory::unavailable,
            ))
        })
        .run();
}
