//! What `Instrumented` costs with no tracing subscriber and no metrics recorder installed:
//! the memory store (the fastest, so the overhead shows most) and SQLite, each bare,
//! instrumented (spans) and instrumented with metrics (timed, counted into the no-op
//! recorder), same harness, same run, 1 and 16 tasks, 200 B.
//!
//! `BENCH_REPEATS=5 cargo bench -p session-manager --bench instrument`

use std::sync::Arc;
use std::time::Duration;

use session_bench::{Op, compare, print_markdown};
use session_manager::{BackendConfig, Instrumented, SessionStore};

fn main() {
    let ops = session_bench::ops_from_env(100_000);
    let runtime = session_bench::runtime();
    for (name, store) in runtime.block_on(async {
        let memory: Arc<dyn SessionStore> = Arc::new(session_memory::MemoryStore::new());
        let sqlite: Arc<dyn SessionStore> = Arc::new(
            session_sqlite::SqliteConfig::temporary()
                .unwrap()
                .open()
                .await
                .unwrap(),
        );
        vec![("memory", memory), ("sqlite", sqlite)]
    }) {
        let ops = if name == "sqlite" { ops / 10 } else { ops };
        let rows = runtime.block_on(async {
            let stores: Vec<(&str, Arc<dyn SessionStore>)> = vec![
                (name, Arc::clone(&store)),
                (
                    "instrumented",
                    Arc::new(Instrumented::new(Arc::clone(&store), name)),
                ),
                (
                    "with_metrics",
                    Arc::new(Instrumented::new(Arc::clone(&store), name).with_metrics()),
                ),
            ];
            compare(
                &stores,
                name,
                &[Op::Create, Op::Read, Op::Update],
                &[1, 16],
                &[200],
                ops,
                Duration::from_secs(10),
            )
            .await
            .expect("benchmark")
        });
        print_markdown(&rows, name);
    }
}
