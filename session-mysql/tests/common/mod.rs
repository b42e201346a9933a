//! The tests' MySQL tables: the backend's own factory (`session_mysql::testing`) over the server
//! in `SESSION_TEST_MYSQL_URL`, under the workspace's test policy.

#![allow(dead_code, unreachable_pub)]

use conformance_tests::NamespaceFactory;
use session_mysql::{MysqlConfig, testing};

pub use session_test_support::MYSQL;

/// Stores in fresh tables of the test server.
pub fn factory() -> NamespaceFactory<MysqlConfig> {
    session_test_support::factory_from_env(MYSQL, testing::factory)
}

/// Stores whose connections all run with session `time_zone` `zone` (sqlx sets it right after
/// connecting, from the URL's `timezone` parameter).
pub fn in_time_zone(zone: &str) -> NamespaceFactory<MysqlConfig> {
    session_test_support::factory_from_env(MYSQL, |url| {
        let sep = if url.contains('?') { '&' } else { '?' };
        let zone: String = url::form_urlencoded::byte_serialize(zone.as_bytes()).collect();
        testing::factory(&format!("{url}{sep}timezone={zone}"))
    })
}
