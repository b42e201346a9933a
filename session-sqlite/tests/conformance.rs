//! The whole conformance suite against `SqliteStore`, through the backend's own factory: each
//! test on a temporary file of its own, each store in a fresh table of it; `store_pair` opens
//! two independent stores on one table, as two application processes would.

conformance_tests::suite!(session_sqlite::testing::factory().expect("a temporary file"));

/// The owner-index behaviours, on the same kind of factory.
mod owners {
    conformance_tests::owner_suite!(session_sqlite::testing::factory().expect("a temporary file"));
}
