//! The whole conformance suite against a real Redis (`SESSION_TEST_REDIS_URL`), each store under
//! its own random key prefix; the races run across two independent clients.

mod common;

conformance_tests::suite!(common::RedisFactory::from_env());
