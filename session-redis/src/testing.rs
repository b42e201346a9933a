//! This backend's conformance-suite factory (feature `testing`).

use conformance_tests::NamespaceFactory;
use session_core::{BackendConfig, Result};

use crate::RedisConfig;

/// Stores under fresh key prefixes (`check_…:`) of the server `url` names; their keys are
/// deleted when a behaviour finishes. A pair is two clients with their own connections.
pub fn factory(url: &str) -> Result<NamespaceFactory<RedisConfig>> {
    Ok(factory_for(RedisConfig::from_url(url)?))
}

/// Stores under fresh key prefixes with `config`'s settings.
pub fn factory_for(config: RedisConfig) -> NamespaceFactory<RedisConfig> {
    NamespaceFactory::new(config)
}
