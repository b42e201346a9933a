//! The whole conformance suite against `MemoryStore`.

use session_memory::MemoryStore;

conformance_tests::suite!(conformance_tests::factory(|| async { Ok(MemoryStore::new()) }));
