//! This backend's conformance-suite factory (feature `testing`).

use conformance_tests::NamespaceFactory;
use session_core::{BackendConfig, Result};

use crate::MysqlConfig;

/// The most connections of each test store's pool: behaviours run several at a time, each
/// with two pools, and must stay well inside a server's connection limit (151 by default).
pub const TEST_POOL: u32 = 8;

/// Stores in fresh tables of the database `url` names, each pool at most [`TEST_POOL`]
/// connections; the tables are dropped when a behaviour finishes.
pub fn factory(url: &str) -> Result<NamespaceFactory<MysqlConfig>> {
    Ok(factory_for(MysqlConfig::from_url(url)?))
}

/// Stores in fresh tables of `config`'s database, with its settings (the pool capped at
/// [`TEST_POOL`]).
pub fn factory_for(config: MysqlConfig) -> NamespaceFactory<MysqlConfig> {
    let max = config.max_connections.min(TEST_POOL);
    NamespaceFactory::new(config.max_connections(max))
}
