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
    /// The deadline of every operation, from its call to its answer (waiting for a connection
    /// included), enforced by the client (so it holds against a frozen server or network) and
    /// sent to the server as `statement_timeout` (so the server stops work nobody waits for).
    /// A missed deadline is a transient error whose outcome is unknown. URL: `operation_timeout_ms`.
    #[serde(with = "session_core::serde_millis")]
    pub operation_timeout: Duration,
    /// Open without a server: `connect` succeeds at once, operations fail with transient errors
    /// until the server is reachable, and the table is checked (and created if allowed) on the
    /// first operation that reaches it. Default `false`: `connect` fails fast, so a wrong URL stops
    /// a deploy. URL: `lazy=true`.
    pub lazy: bool,
    /// Whether the store may create its schema, table and index. With `false` it never runs DDL
    /// and a missing table (or one of another layout) is a `Config` error. Even with `true`, DDL
    /// only runs when something is missing, so a role with nothing but SELECT, INSERT, UPDATE and
    /// DELETE on an existing table works. URL: `migrate=false`.
    pub migrate: bool,
}

/// The query parameters of a PostgreSQL URL that belong to this crate (removed before the URL
/// reaches the driver).
pub const URL_PARAMETERS: &[&str] = &["operation_timeout_ms", "lazy", "migrate"];

/// The query parameters sqlx's PostgreSQL driver understands. Any other is refused: the driver
/// would log it, value included, and ignore it.
const DRIVER_PARAMETERS: &[&str] = &[
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
    "options",
];

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            url: "postgres://localhost/postgres".to_owned(),
            schema: "public".to_owned(),
            table: "sessions".to_owned(),
            max_connections: 16,
            min_connections: 0,
            acquire_timeout: Duration::from_secs(5),
            operation_timeout: Duration::from_secs(5),
            lazy: false,
            migrate: true,
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
            .field("operation_timeout", &self.operation_timeout)
            .field("lazy", &self.lazy)
            .field("migrate", &self.migrate)
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

    /// Sets the operation deadline.
    #[must_use]
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// Sets lazy opening.
    #[must_use]
    pub fn lazy(mut self, lazy: bool) -> Self {
        self.lazy = lazy;
        self
    }

    /// Sets whether the store may create its table.
    #[must_use]
    pub fn migrate(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }

    /// Splits this crate's parameters ([`URL_PARAMETERS`]) off the URL: the settings with them
    /// applied (a URL parameter wins over the field), and the URL the driver gets.
    pub(crate) fn resolved(&self) -> Result<(Self, String)> {
        let bad = |what: String| {
            Error::new(
                ErrorKind::Config,
                format!("postgres: {what} in {}", redact_url(&self.url)),
            )
        };
        let mut config = self.clone();
        let Some((base, query)) = self.url.split_once('?') else {
            return Ok((config, self.url.clone()));
        };
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            match name {
                "operation_timeout_ms" => {
                    let ms: u64 = value.parse().map_err(|_| {
                        bad(format!(
                            "`operation_timeout_ms` must be a whole number, not {value:?}"
                        ))
                    })?;
                    config.operation_timeout = Duration::from_millis(ms);
                }
                "lazy" | "migrate" => {
                    let flag = match value {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => {
                            return Err(bad(format!(
                                "`{name}` must be true or false, not {value:?}"
                            )));
                        }
                    };
                    if name == "lazy" {
                        config.lazy = flag;
                    } else {
                        config.migrate = flag;
                    }
                }
                _ if DRIVER_PARAMETERS.contains(&name) => kept.push(pair),
                _ => {
                    // Never handed to the driver, which would log it with its value.
                    return Err(bad(format!(
                        "unknown URL parameter `{name}` (the driver takes {}; this store takes {})",
                        DRIVER_PARAMETERS.join(", "),
                        URL_PARAMETERS.join(", ")
                    )));
                }
            }
        }
        let url = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        config.url = url.clone();
        config.validate()?;
        Ok((config, url))
    }

    pub(crate) fn validate(&self) -> Result<()> {
        validate_identifier("postgres", "schema", &self.schema, 48)?;
        validate_identifier("postgres", "table", &self.table, 48)?;
        if self.operation_timeout.is_zero() {
            return Err(Error::new(
                ErrorKind::Config,
                "postgres: `operation_timeout` must be more than zero",
            ));
        }
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
    fn own_url_parameters_are_taken_off_the_url() {
        let config = PostgresConfig::new(
            "postgres://app:pw@db/app?sslmode=disable&operation_timeout_ms=250&lazy=true&migrate=false",
        );
        let (resolved, url) = config.resolved().unwrap();
        assert_eq!(url, "postgres://app:pw@db/app?sslmode=disable");
        assert_eq!(resolved.operation_timeout, Duration::from_millis(250));
        assert!(resolved.lazy && !resolved.migrate);
        let (plain, url) = PostgresConfig::new("postgres://db/app?lazy=0")
            .resolved()
            .unwrap();
        assert_eq!(url, "postgres://db/app");
        assert!(!plain.lazy && plain.migrate);
        for bad in [
            "postgres://db/app?sslpassword=s3cr3t",
            "postgres://db/app?tabel=x",
            "postgres://db/app?lazy=maybe",
            "postgres://db/app?operation_timeout_ms=soon",
            "postgres://db/app?operation_timeout_ms=0",
        ] {
            let error = PostgresConfig::new(bad).resolved().unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Config, "{bad}: {error}");
            assert!(!error.to_string().contains("s3cr3t"), "{error}");
        }
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
