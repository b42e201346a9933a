//! This backend's conformance-suite factory (feature `testing`).

use conformance_tests::NamespaceFactory;
use session_core::{BackendConfig, Result};

use crate::PostgresConfig;

/// The most connections of each test store's pool: behaviours run several at a time, each
/// with two pools, and must stay well inside a server's connection limit (100 by default).
pub const TEST_POOL: u32 = 8;

/// Stores in fresh tables (in the URL's schema) of the database `url` names, each pool at most
/// [`TEST_POOL`] connections; the tables are dropped when a behaviour finishes.
pub fn factory(url: &str) -> Result<NamespaceFactory<PostgresConfig>> {
    Ok(factory_for(PostgresConfig::from_url(url)?))
}

/// Stores in fresh tables of `config`'s database and schema, with its settings (the pool
/// capped at [`TEST_POOL`]).
pub fn factory_for(config: PostgresConfig) -> NamespaceFactory<PostgresConfig> {
    let max = config.max_connections.min(TEST_POOL);
    NamespaceFactory::new(config.max_connections(max))
}
