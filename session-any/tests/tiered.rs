//! The whole conformance suite on `Tiered` stores: a memory front over each durable back, the
//! back opened from a URL in a fresh namespace.

use std::sync::Arc;

use conformance_tests::StoreFactory;
use session_any::testing::{UrlFactory, fresh_namespace};
use session_manager::{Error, OwnerIndex, SessionStore, Tiered};
use session_memory::MemoryStore;

/// Tiered stores over the backs a [`UrlFactory`] opens.
struct TieredFactory(UrlFactory);

#[async_trait::async_trait]
impl StoreFactory for TieredFactory {
    async fn store(&self) -> Result<Arc<dyn SessionStore>, Error> {
        let back = self.0.open(&fresh_namespace()).await?;
        Ok(Arc::new(Tiered::new(MemoryStore::new(), back)))
    }

    /// One tiered store seen twice (each `Tiered` has its own front: two instances would read
    /// each other's writes only after the front's time to live).
    async fn owner_pair(
        &self,
    ) -> Result<Option<(Arc<dyn OwnerIndex>, Arc<dyn OwnerIndex>)>, Error> {
        let Some(back) = self.0.open(&fresh_namespace()).await?.owner_index() else {
            return Ok(None);
        };
        let store: Arc<dyn OwnerIndex> = Arc::new(Tiered::new(MemoryStore::new(), back));
        Ok(Some((Arc::clone(&store), store)))
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

/// The owner-index behaviours through `Tiered` (its owned writes take the plain writes' path).
mod owners_memory_over_sqlite {
    use super::*;
    conformance_tests::owner_suite!(TieredFactory(UrlFactory::new("sqlite::memory:").unwrap()));
}

mod owners_memory_over_redis {
    use super::*;
    conformance_tests::owner_suite!(TieredFactory(session_test_support::from_env(
        "SESSION_TEST_REDIS_URL",
        UrlFactory::new,
        UrlFactory::unavailable
    )));
}
