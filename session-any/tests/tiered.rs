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

    fn expires_by_itself(&self) -> bool {
        self.0.expires_by_itself()
    }

    fn unavailable(&self) -> Option<String> {
        self.0.unavailable()
    }

    async fn finish(&self) {
        self.0.finish().await;
    }
}

mod memory_over_sqlite {
    use super::*;
    conformance_tests::suite!(TieredFactory(UrlFactory::new("sqlite::memory:").unwrap()));
}

mod memory_over_postgres {
    use super::*;
    conformance_tests::suite!(TieredFactory(session_test_support::from_env(
        "SESSION_TEST_POSTGRES_URL",
        UrlFactory::new,
        UrlFactory::unavailable
    )));
}

mod memory_over_redis {
    use super::*;
    conformance_tests::suite!(TieredFactory(session_test_support::from_env(
        "SESSION_TEST_REDIS_URL",
        UrlFactory::new,
        UrlFactory::unavailable
    )));
}
