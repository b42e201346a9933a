//! Configuration of a [`RedisStore`](crate::RedisStore).

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use session_core::{Error, ErrorKind, Result, redact_url};

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
    #[serde(with = "session_core::serde_millis")]
    pub connection_timeout: Duration,
    /// Timeout for one command's reply.
    #[serde(with = "session_core::serde_millis")]
    pub response_timeout: Duration,
    /// Multiplexed connections the store spreads its commands over (round robin, at least 1).
    pub connections: usize,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".to_owned(),
            key_prefix: "session:".to_owned(),
            connection_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(5),
            connections: 1,
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

    pub(crate) fn validate(&self) -> Result<()> {
        let prefix = &self.key_prefix;
        let valid = !prefix.is_empty()
            && prefix.len() <= 64
            && prefix
                .bytes()
                .all(|b| b.is_ascii_graphic() && !matches!(b, b'*' | b'?' | b'[' | b']' | b'\\'));
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

#[cfg(test)]
mod tests {
    use super::*;

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
