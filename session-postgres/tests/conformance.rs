//! The whole conformance suite against a real PostgreSQL (`SESSION_TEST_POSTGRES_URL`), each
//! store in its own table; the races run across two independent pools. Then the whole suite again
//! with every connection in UTC+14: expiry must not move.

mod common;

fn main() {
    conformance_tests::Suite::new()
        .stores("", common::factory)
        .stores("time_zone_plus_14", || {
            common::PgFactory::in_time_zone("Pacific/Kiritimati")
        })
        .run();
}
