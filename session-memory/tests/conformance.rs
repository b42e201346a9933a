//! The whole conformance suite against `MemoryStore`: with the default shards (rotations mostly
//! cross two shards) and with a single shard (every rotation stays in one).

use session_memory::MemoryStore;

mod sharded {
    use super::*;
    conformance_tests::suite!(conformance_tests::factory(|| async {
        Ok(MemoryStore::new())
    }));
}

mod single_shard {
    use super::*;
    conformance_tests::suite!(conformance_tests::factory(|| async {
        Ok(MemoryStore::with_shards(1))
    }));
}
