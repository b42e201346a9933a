//! This backend's conformance-suite factory (feature `testing`).

use conformance_tests::NamespaceFactory;
use session_core::Result;

use crate::SqliteConfig;

/// Stores in fresh tables of one temporary file (removed with the factory and its stores); a
/// pair is two independent stores (own connections, own writer) on one table, as two
/// processes would open it.
pub fn factory() -> Result<NamespaceFactory<SqliteConfig>> {
    Ok(NamespaceFactory::new(SqliteConfig::temporary()?))
}

/// Stores in fresh tables of the file `config` names, with its settings.
pub fn factory_for(config: SqliteConfig) -> NamespaceFactory<SqliteConfig> {
    NamespaceFactory::new(config)
}
