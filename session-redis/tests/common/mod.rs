//! The tests' Redis namespaces: the backend's own factory (`session_redis::testing`) over the
//! server in `SESSION_TEST_REDIS_URL`, under the workspace's test policy.

#![allow(dead_code, unreachable_pub)]

use conformance_tests::NamespaceFactory;
use session_core::BackendConfig;
use session_redis::{RedisConfig, testing};

/// Stores under fresh key prefixes of the test server.
pub fn factory() -> NamespaceFactory<RedisConfig> {
    session_test_support::factory_from_env(session_test_support::REDIS, testing::factory)
}

/// Stores that spread their commands over `connections` multiplexed connections.
pub fn with_connections(connections: usize) -> NamespaceFactory<RedisConfig> {
    session_test_support::factory_from_env(session_test_support::REDIS, |url| {
        Ok(testing::factory_for(
            RedisConfig::from_url(url)?.connections(connections),
        ))
    })
}

/// Stores under fresh key prefixes of the test cluster (`SESSION_TEST_REDIS_CLUSTER_URL`).
pub fn cluster_factory() -> NamespaceFactory<RedisConfig> {
    session_test_support::factory_from_env(session_test_support::REDIS_CLUSTER, testing::factory)
}
