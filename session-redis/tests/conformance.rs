//! The whole conformance suite against a real Redis (`SESSION_TEST_REDIS_URL`), each store under
//! its own random key prefix; the races run across two independent clients. Then with one store's
//! commands spread over four connections (every rule still holds), and against the test Redis
//! Cluster (`SESSION_TEST_REDIS_CLUSTER_URL`), where owner sets live in other slots than the
//! sessions.

mod common;

fn main() {
    conformance_tests::Suite::new()
        .stores("one_connection", common::factory)
        .stores("four_connections", || common::with_connections(4))
        .stores("cluster", common::cluster_factory)
        .behaviours(
            "cluster",
            session_manager::testing::FRONT_CHECKS,
            common::cluster_factory,
        )
        .run();
}
