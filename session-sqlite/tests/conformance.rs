//! The whole conformance suite against `SqliteStore`, through the backend's own factory: each
//! test on a temporary file of its own, each store in a fresh table of it; `store_pair` opens
//! two independent stores on one table, as two application processes would.

fn main() {
    conformance_tests::Suite::new()
        .stores("", || {
            session_sqlite::testing::factory().expect("a temporary file")
        })
        .run();
}
