//! The whole conformance suite against `MemoryStore`: with the default shards (rotations mostly
//! cross two shards) and with a single shard (every rotation stays in one).
//!
//! The store sweeps a shard's expired records on its own once the shard has doubled (and holds at
//! least 64 records). With 64 shards the suite's namespaces never reach that, so the sharded
//! factory's purge counts are exact in practice; the store says `expires_by_itself` in its
//! capabilities, so the suite checks counts as an upper bound for both.

use std::sync::Arc;

use conformance_tests::{StoreFactory, Suite};
use session_core::{Error, SessionStore};
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
}

fn main() {
    Suite::new()
        .stores("sharded", || Memory { shards: None })
        .stores("single_shard", || Memory { shards: Some(1) })
        .run();
}
