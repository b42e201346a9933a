//! The whole conformance suite against `MemoryStore`: with the default shards (rotations mostly
//! cross two shards) and with a single shard (every rotation stays in one).
//!
//! The store sweeps expired records on its own (an amortised sweep on insert), so its factories
//! say `expires_by_itself`: `delete_expired` may count fewer records than expired, never more.

use std::sync::Arc;

use conformance_tests::StoreFactory;
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

    fn expires_by_itself(&self) -> bool {
        true
    }
}

mod sharded {
    use super::*;
    conformance_tests::suite!(Memory { shards: None });
}

mod single_shard {
    use super::*;
    conformance_tests::suite!(Memory { shards: Some(1) });
}
