//! Configuration of a [`RedisStore`](crate::RedisStore).

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use session_core::{BackendConfig, Error, ErrorKind, Options, Result, async_trait, redact_url};

/// Settings of a [`RedisStore`](crate::RedisStore). `Debug` hides the password.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]` or `rediss://…`.
    pub url: String,
    /// Prefix of every key of this store (its namespace): 1 to 64 printable ASCII characters
    /// without spaces or the glob characters `* ? [ ] \`.
    pub key_prefix: String,
    /// Timeout for establishing a connection.
    #[serde(with = "session_core::serde_duration")]
    pub connection_timeout: Duration,
    /// Timeout for one command's reply.
    #[serde(with = "session_core::serde_duration")]
    pub response_timeout: Duration,
    /// Multiplexed connections the store spreads its commands over (round robin, at least 1).
    /// Single-server mode only: a cluster connection already keeps one per node.
    pub connections: usize,
    /// Redis Cluster mode (set by a `redis+cluster://` or `rediss+cluster://` URL): keys carry a
    /// hash tag so a session's rotation stays in one slot.
    pub cluster: bool,
    /// More seed nodes of a cluster (`host:port`, the URL's credentials apply); the URL's own
    /// host is always the first. URL parameter `seed`, repeatable.
    pub seeds: Vec<String>,
    /// Replicas that must hold each write before it is acknowledged (`WAIT n`, sent with the
    /// write on its connection); 0, the default, acknowledges on the master's reply. With 1, an
    /// acknowledged write survives the loss of its master once a replica holding it is promoted.
    /// URL parameter `wait_replicas`.
    pub wait_replicas: u32,
    /// How long a write waits for `wait_replicas` (URL `wait_timeout`); fewer replicas by
    /// then is an error (the write is on the master, maybe nowhere else: outcome unknown).
    #[serde(with = "session_core::serde_duration")]
    pub wait_timeout: Duration,
}

/// The query parameters the `redis` crate reads from a URL (`db`, `user` and `pass` for
/// `redis+unix://` URLs). Any other is refused.
const DRIVER_PARAMETERS: &[&str] = &["protocol", "db", "user", "pass"];

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".to_owned(),
            key_prefix: "session:".to_owned(),
            connection_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(5),
            connections: 1,
            cluster: false,
            seeds: Vec::new(),
            wait_replicas: 0,
            wait_timeout: Duration::from_secs(1),
        }
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redact_url(&self.url))
            .field("key_prefix", &self.key_prefix)
            .field("connection_timeout", &self.connection_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("connections", &self.connections)
            .field("cluster", &self.cluster)
            .field("seeds", &self.seeds)
            .field("wait_replicas", &self.wait_replicas)
            .field("wait_timeout", &self.wait_timeout)
            .finish()
    }
}

impl RedisConfig {
    /// Sets the number of multiplexed connections.
    #[must_use]
    pub fn connections(mut self, connections: usize) -> Self {
        self.connections = connections.max(1);
        self
    }

    /// The defaults with `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }

    /// Sets the key prefix.
    #[must_use]
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// Sets the connection timeout.
    #[must_use]
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// Sets the response timeout.
    #[must_use]
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Sets cluster mode (what a `redis+cluster://` URL sets).
    #[must_use]
    pub fn cluster(mut self, cluster: bool) -> Self {
        self.cluster = cluster;
        self
    }

    /// Sets how many replicas must hold each write before it is acknowledged (`WAIT`).
    #[must_use]
    pub fn wait_replicas(mut self, replicas: u32, timeout: Duration) -> Self {
        self.wait_replicas = replicas;
        self.wait_timeout = timeout;
        self
    }

    /// Adds a seed node (`host:port`) of a cluster.
    #[must_use]
    pub fn seed(mut self, node: impl Into<String>) -> Self {
        self.seeds.push(node.into());
        self
    }

    /// Reads `url` and `extra` (which win over the URL's query): this store's settings
    /// (`key_prefix`, `connection_timeout`, `response_timeout`, `connections`, `seed`)
    /// become fields, a `+cluster` scheme sets cluster mode; other parameters stay in the URL
    /// for the driver.
    pub(crate) fn parse(mut self, extra: &[(String, String)]) -> Result<Self> {
        let url = self.url.clone();
        let (base, mut options) = Options::split_url("redis", &url, extra)?;
        let base = match base.split_once("+cluster://") {
            Some((scheme @ ("redis" | "rediss"), rest)) => {
                self.cluster = true;
                format!("{scheme}://{rest}")
            }
            _ => base.to_owned(),
        };
        let base = base.as_str();
        self.seeds.extend(options.take_all("seed"));
        if let Some(replicas) = options.take_parsed::<u32>("wait_replicas", "a whole number")? {
            self.wait_replicas = replicas;
        }
        if let Some(timeout) = options.take_duration("wait_timeout")? {
            self.wait_timeout = timeout;
        }
        if let Some(prefix) = options.take("key_prefix") {
            self.key_prefix = prefix;
        }
        if let Some(timeout) = options.take_duration("connection_timeout")? {
            self.connection_timeout = timeout;
        }
        if let Some(timeout) = options.take_duration("response_timeout")? {
            self.response_timeout = timeout;
        }
        if let Some(connections) = options.take_parsed::<usize>("connections", "a whole number")? {
            self = self.connections(connections);
        }
        self.url = options.into_driver_url(base, DRIVER_PARAMETERS, &url)?;
        self.validate()?;
        Ok(self)
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let prefix = &self.key_prefix;
        let valid = !prefix.is_empty()
            && prefix.len() <= 64
            && prefix
                .bytes()
                .all(|b| b.is_ascii_graphic() && !matches!(b, b'*' | b'?' | b'[' | b']' | b'\\'));
        if self.cluster && prefix.contains(['{', '}']) {
            return Err(Error::new(
                ErrorKind::Config,
                "redis: in cluster mode a key prefix must not contain `{` or `}` (the store's hash tag decides each key's slot)",
            ));
        }
        if valid {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::Config,
                format!(
                    "redis: key prefix {:?} must be 1 to 64 printable ASCII characters without spaces or `* ? [ ] \\`",
                    prefix.chars().take(80).collect::<String>()
                ),
            ))
        }
    }
}

impl std::str::FromStr for RedisConfig {
    type Err = Error;

    fn from_str(url: &str) -> Result<Self> {
        Self::from_url(url)
    }
}

#[async_trait]
impl BackendConfig for RedisConfig {
    type Store = crate::RedisStore;

    /// `redis://…` or `rediss://…` (a single server), `redis+cluster://…` or
    /// `rediss+cluster://…` (a Redis Cluster; more seed nodes as `seed=host:port`, repeatable),
    /// with this store's settings in the query (`key_prefix`, `connection_timeout`,
    /// `response_timeout`, `connections`); other parameters go to the driver.
    fn from_url_with(url: &str, options: &[(String, String)]) -> Result<Self> {
        let config = Self::new(url).parse(options)?;
        if !config.url.contains("://") {
            return Err(Error::new(
                ErrorKind::Config,
                format!("redis: invalid URL {}", redact_url(url)),
            ));
        }
        Ok(config)
    }

    /// Key prefix `namespace:`.
    fn isolated(&self, namespace: &str) -> Result<Self> {
        let config = self.clone().key_prefix(format!("{namespace}:"));
        config.validate()?;
        Ok(config)
    }

    fn existing_only(self) -> Self {
        self
    }

    async fn open(self) -> Result<crate::RedisStore> {
        crate::RedisStore::connect(self).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let options = [("key_prefix".to_owned(), "from_map:".to_owned())];
        let config = RedisConfig::from_url_with(
            "redis://127.0.0.1:6379/2?key_prefix=web%3A&response_timeout=50&connections=3&protocol=resp3",
            &options,
        )
        .unwrap();
        assert_eq!(config.url, "redis://127.0.0.1:6379/2?protocol=resp3");
        assert_eq!(config.key_prefix, "from_map:");
        assert_eq!(config.response_timeout, Duration::from_millis(50));
        assert_eq!(config.connections, 3);
        assert_eq!(
            RedisConfig::from_url("redis://h?key_prefix=web%3A")
                .unwrap()
                .key_prefix,
            "web:"
        );
        for bad in [
            "redis://h?key_prefix=a*",
            "redis://h?connections=many",
            "redis://h?response_timeout=soon",
            "redis://h?prefix=x",
        ] {
            let error = RedisConfig::from_url(bad).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Config, "{bad}");
        }
    }

    #[test]
    fn cluster_urls() {
        let config = RedisConfig::from_url(
            "redis+cluster://app:pw@127.0.0.1:7000?seed=127.0.0.1:7001&key_prefix=web%3A&seed=h:7002",
        )
        .unwrap();
        assert!(config.cluster);
        assert_eq!(config.url, "redis://app:pw@127.0.0.1:7000");
        assert_eq!(config.wait_replicas, 0);
        let waiting =
            RedisConfig::from_url("redis+cluster://h:7000?wait_replicas=1&wait_timeout=250")
                .unwrap();
        assert_eq!(
            (waiting.wait_replicas, waiting.wait_timeout),
            (1, Duration::from_millis(250))
        );
        assert!(RedisConfig::from_url("redis://h?wait_replicas=-1").is_err());
        assert_eq!(config.seeds, ["127.0.0.1:7001", "h:7002"]);
        assert_eq!(config.key_prefix, "web:");
        // Parsing again (as `connect` does) changes nothing.
        assert_eq!(config.clone().parse(&[]).unwrap(), config);
        let tls = RedisConfig::from_url("rediss+cluster://h:7000").unwrap();
        assert!(tls.cluster && tls.url == "rediss://h:7000");
        assert!(!RedisConfig::from_url("redis://h:6379").unwrap().cluster);
        let error =
            RedisConfig::from_url("redis+cluster://h:7000?key_prefix=a%7Bb%7D").unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config);
        assert!(RedisConfig::from_url("redis://h:6379?key_prefix=a%7Bb%7D").is_ok());
    }

    #[test]
    fn prefixes() {
        for good in ["session:", "app1/sessions:", "x"] {
            assert!(
                RedisConfig::default().key_prefix(good).validate().is_ok(),
                "{good}"
            );
        }
        for bad in [
            "",
            "a*",
            "a?",
            "[a]",
            "a\\",
            "has space",
            "tab\t",
            "é",
            &"p".repeat(65),
        ] {
            assert_eq!(
                RedisConfig::default()
                    .key_prefix(bad)
                    .validate()
                    .unwrap_err()
                    .kind(),
                ErrorKind::Config,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn debug_hides_passwords() {
        let shown = format!("{:?}", RedisConfig::new("redis://app:s3cr3t@cache:6379/2"));
        assert!(
            !shown.contains("s3cr3t") && shown.contains("cache"),
            "{shown}"
        );
    }
}
