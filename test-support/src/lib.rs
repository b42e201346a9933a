//! The test policy of this workspace, in one place: the tests' servers come from environment
//! variables (`SESSION_TEST_POSTGRES_URL`, `SESSION_TEST_REDIS_URL`, `SESSION_TEST_MYSQL_URL`,
//! `SESSION_TEST_REDIS_CLUSTER_URL`; `scripts/test` finds or
//! starts the servers and sets them). Without one, the tests needing it skip loudly; under `CI`
//! or with `SESSION_TEST_REQUIRE=1` they fail instead. Not published: a policy of this
//! repository's test tree, not of the suite.

#[cfg(feature = "containers")]
mod containers;
pub mod proxy;

use conformance_tests::NamespaceFactory;
use session_core::{BackendConfig, Result};

/// Environment variable of the PostgreSQL server for tests.
pub const POSTGRES: &str = "SESSION_TEST_POSTGRES_URL";
/// Environment variable of the Redis server for tests.
pub const REDIS: &str = "SESSION_TEST_REDIS_URL";
/// Environment variable of the MySQL/MariaDB server for tests.
pub const MYSQL: &str = "SESSION_TEST_MYSQL_URL";
/// Environment variable of the Redis Cluster for tests (`redis+cluster://host:port`).
pub const REDIS_CLUSTER: &str = "SESSION_TEST_REDIS_CLUSTER_URL";

/// Whether a missing test server must fail the run: under `CI` or with `SESSION_TEST_REQUIRE=1`.
pub fn servers_required() -> bool {
    is_ci() || std::env::var("SESSION_TEST_REQUIRE").is_ok_and(|v| v == "1")
}

/// Whether this runs under CI (`CI` set, not `0`/`false`).
fn is_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// The server URL in environment variable `var`; else, for PostgreSQL and Redis with feature
/// `containers` and a reachable Docker engine (not under CI), the URL of a test container
/// started for it (see the `containers` module docs); else `None` after saying loudly that the
/// tests needing it are skipped. Under [`servers_required`] a missing server panics instead.
pub fn server_url(var: &str) -> Option<String> {
    if let Ok(url) = std::env::var(var)
        && !url.is_empty()
    {
        return Some(url);
    }
    #[allow(unused_mut)]
    let mut why = format!("{var} is not set");
    #[cfg(feature = "containers")]
    if containers::enabled() && (var == POSTGRES || var == REDIS) {
        let server = if var == POSTGRES {
            containers::Server::Postgres
        } else {
            containers::Server::Redis
        };
        match containers::cached_url(server) {
            Ok(url) => return Some(url),
            Err(error) => why = format!("{why} and no test container: {error}"),
        }
    }
    if servers_required() {
        panic!(
            "{why}, and CI / SESSION_TEST_REQUIRE=1 demands the server (run scripts/test, which finds it)"
        );
    }
    eprintln!("SKIPPED: {why}; the tests that need this server do not run (scripts/test sets it)");
    None
}

/// What `make` builds from the URL in `var`, or what `unavailable` makes of the reason when the
/// variable is unset; under [`servers_required`] an unset variable panics.
pub fn from_env<T>(
    var: &str,
    make: impl FnOnce(&str) -> Result<T>,
    unavailable: impl FnOnce(String) -> T,
) -> T {
    match server_url(var) {
        Some(url) => make(&url).unwrap_or_else(|e| panic!("{var}: {e}")),
        None => unavailable(format!("{var} is not set")),
    }
}

/// The factory `make` builds from the URL in `var`, or one that is unavailable (its behaviours
/// skip loudly) when the variable is unset; under [`servers_required`] an unset variable
/// panics.
pub fn factory_from_env<C: BackendConfig>(
    var: &str,
    make: impl FnOnce(&str) -> Result<NamespaceFactory<C>>,
) -> NamespaceFactory<C> {
    from_env(var, make, NamespaceFactory::unavailable)
}
