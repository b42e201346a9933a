//! The whole conformance suite against a real PostgreSQL (`SESSION_TEST_POSTGRES_URL`), each
//! store in its own table; the races run across two independent pools.

mod common;

conformance_tests::suite!(common::factory());

/// The whole suite again with every connection in UTC+14: expiry must not move.
mod time_zone_plus_14 {
    use super::common;
    conformance_tests::suite!(common::PgFactory::in_time_zone("Pacific/Kiritimati"));
}

/// The owner-index behaviours.
mod owners {
    use super::common;
    conformance_tests::owner_suite!(common::factory());
}
