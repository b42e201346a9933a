//! The whole conformance suite against a real PostgreSQL (`SESSION_TEST_POSTGRES_URL`), each
//! store in its own table; the races run across two independent pools.

mod common;

conformance_tests::suite!(common::PgFactory::from_env());
