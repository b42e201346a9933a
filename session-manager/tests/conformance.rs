//! The conformance suite and the front's checks through the front crate's store wrappers:
//! `Tiered` (a memory front over a memory back) and `Instrumented`, and the front's checks over
//! a plain memory store.

use conformance_tests::{Suite, factory};
use session_manager::testing::FRONT_CHECKS;
use session_manager::{Instrumented, Tiered};
use session_memory::MemoryStore;

fn main() {
    let tiered = || factory(|| async { Ok(Tiered::new(MemoryStore::new(), MemoryStore::new())) });
    let instrumented = || factory(|| async { Ok(Instrumented::new(MemoryStore::new(), "memory")) });
    Suite::new()
        .stores("tiered", tiered)
        .behaviours("tiered", FRONT_CHECKS, tiered)
        .stores("instrumented", instrumented)
        .behaviours("memory", FRONT_CHECKS, || {
            factory(|| async { Ok(MemoryStore::new()) })
        })
        .run();
}
