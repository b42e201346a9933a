//! The whole conformance suite against a real MySQL or MariaDB (`SESSION_TEST_MYSQL_URL`), each
//! store in its own table; the races run across two independent pools. Then again with every
//! connection in UTC+13 (MariaDB's largest offset: it refuses `+14:00`, which MySQL 8 accepts)
//! and in UTC-10: expiry must not move.

mod common;

fn main() {
    conformance_tests::Suite::new()
        .stores("", common::factory)
        .stores("time_zone_plus_13", || common::in_time_zone("+13:00"))
        .stores("time_zone_minus_10", || common::in_time_zone("-10:00"))
        .run();
}
