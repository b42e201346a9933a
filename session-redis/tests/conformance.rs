//! The whole conformance suite against a real Redis (`SESSION_TEST_REDIS_URL`), each store under
//! its own random key prefix; the races run across two independent clients.

mod common;

mod one_connection {
    conformance_tests::suite!(super::common::factory());
}

/// Commands of one store spread over four connections: every rule still holds.
mod four_connections {
    conformance_tests::suite!(super::common::with_connections(4));
}

/// The owner-index behaviours.
mod owners {
    conformance_tests::owner_suite!(super::common::factory());
}
