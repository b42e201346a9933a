//! The whole conformance suite against a real MySQL or MariaDB (`SESSION_TEST_MYSQL_URL`), each
//! store in its own table; the races run across two independent pools.

mod common;

conformance_tests::suite!(common::factory());

/// The whole suite again with every connection in UTC+13 (MariaDB's largest offset: it refuses
/// `+14:00`, which MySQL 8 accepts): expiry must not move.
mod time_zone_plus_13 {
    conformance_tests::suite!(super::common::in_time_zone("+13:00"));
}

/// And in UTC-10.
mod time_zone_minus_10 {
    conformance_tests::suite!(super::common::in_time_zone("-10:00"));
}

/// The owner-index behaviours.
mod owners {
    conformance_tests::owner_suite!(super::common::factory());
}
