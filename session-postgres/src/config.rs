//! Configuration of a [`PostgresStore`](crate::PostgresStore).

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use session_core::{Error, ErrorKind, Result, redact_url, validate_identifier};

/// Settings of a [`PostgresStore`](crate::PostgresStore). `Debug` hides the password.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct PostgresConfig {
    /// Connection URL, `postgres://user:password@host:port/database?…`.
    pub url: String,
    /// Schema of the table (created if missing). A plain identifier.
    pub schema: String,
    /// Table holding this store's sessions (its namespace). A plain identifier.
    pub table: String,
    /// Most connections in the pool.
    pub max_connections: u32,
    /// Connections kept open while idle.
    pub min_connections: u32,
    /// How long an operation waits for a connection (including connecting) before a transient
    /// error.
    #[serde(with = "session_core::serde_millis")]
    pub acquire_timeout: Duration,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            url: "postgres://localhost/postgres".to_owned(),
            schema: "public".to_owned(),
            table: "sessions".to_owned(),
            max_connections: 16,
            min_connections: 0,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

impl fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("url", &redact_url(&self.url))
            .field("schema", &self.schema)
            .field("table", &self.table)
            .field("max_connections", &self.max_connections)
            .field("min_connections", &self.min_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .finish()
    }
}

impl PostgresConfig {
    /// The defaults with `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }

    /// Sets the connection URL.
    #[must_use]
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = url.into();
        self
    }

    /// Sets the schema.
    #[must_use]
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Sets the table.
    #[must_use]
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self
    }

    /// Sets the pool's maximum size.
    #[must_use]
    pub fn max_connections(mut self, max: u32) -> Self {
        self.max_connections = max;
        self
    }

    /// Sets the acquire timeout.
    #[must_use]
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        validate_identifier("postgres", "schema", &self.schema, 48)?;
        validate_identifier("postgres", "table", &self.table, 48)?;
        if self.max_connections == 0 {
            return Err(Error::new(
                ErrorKind::Config,
                "postgres: `max_connections` must be at least 1",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_passwords() {
        let config = PostgresConfig::new(
            "postgres://app:s3cr3t@db.internal:5432/app?sslmode=require&password=other",
        );
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("s3cr3t") && !shown.contains("other"),
            "{shown}"
        );
        assert!(
            shown.contains("db.internal") && shown.contains("app"),
            "{shown}"
        );
    }

    #[test]
    fn identifiers() {
        assert!(PostgresConfig::default().validate().is_ok());
        for bad in [
            "",
            "1t",
            "a-b",
            "x\"y",
            "t; DROP TABLE users",
            "ä",
            &"t".repeat(49),
        ] {
            let err = PostgresConfig::default().table(bad).validate().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Config);
            let err = PostgresConfig::default()
                .schema(bad)
                .validate()
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Config);
        }
    }
}
