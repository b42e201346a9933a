//! The whole conformance suite against `MemoryStore`: with the default shards (rotations mostly
//! cross two shards) and with a single shard (every rotation stays in one).
//!
//! The store sweeps a shard's expired records on its own once the shard has doubled (and holds at
//! least 64 records). With 64 shards the suite's namespaces never reach that, so the sharded
//! factory is held to exact purge counts; the single-shard one sweeps during the suite's larger
//! behaviours and says `expires_by_itself` (counts checked as an upper bound).

use std::sync::Arc;

use conformance_tests::StoreFactory;
use session_core::{Error, OwnerIndex, SessionStore};
use session_memory::MemoryStore;

/// Fresh memory stores with `shards` shards.
struct Memory {
    shards: Option<usize>,
}

#[session_core::async_trait]
impl StoreFactory for Memory {
    async fn store(&self) -> Result<Arc<dyn SessionStore>, Error> {
        Ok(Arc::new(match self.shards {
            Some(shards) => MemoryStore::with_shards(shards),
            None => MemoryStore::new(),
        }))
    }

    async fn owner_pair(
        &self,
    ) -> Result<Option<(Arc<dyn OwnerIndex>, Arc<dyn OwnerIndex>)>, Error> {
        let store: Arc<dyn OwnerIndex> = Arc::new(match self.shards {
            Some(shards) => MemoryStore::with_shards(shards),
            None => MemoryStore::new(),
        });
        Ok(Some((Arc::clone(&store), store)))
    }

    fn expires_by_itself(&self) -> bool {
        self.shards == Some(1)
    }
}

mod sharded {
    use super::*;
    conformance_tests::suite!(Memory { shards: None });
    mod owners {
        use super::*;
        conformance_tests::owner_suite!(Memory { shards: None });
    }
}

mod single_shard {
    use super::*;
    conformance_tests::suite!(Memory { shards: Some(1) });
    mod owners {
        use super::*;
        conformance_tests::owner_suite!(Memory { shards: Some(1) });
    }
}
