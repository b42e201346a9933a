//! Configuration of a [`PostgresStore`](crate::PostgresStore).

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use session_core::{
    BackendConfig, Error, ErrorKind, Options, Result, async_trait, redact_url, validate_identifier,
};

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
    #[serde(with = "session_core::serde_duration")]
    pub acquire_timeout: Duration,
    /// The deadline of every operation, from its call to its answer (waiting for a connection
    /// included), enforced by the client (so it holds against a frozen server or network) and
    /// sent to the server as `statement_timeout` (so the server stops work nobody waits for).
    /// A missed deadline is a transient error whose outcome is unknown. URL: `operation_timeout`.
    #[serde(with = "session_core::serde_duration")]
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

    /// Takes this store's settings from `options`: `schema`, `table`, `max_connections`,
    /// `min_connections`, `acquire_timeout`, `operation_timeout`, `lazy`, `migrate`.
    fn take_options(&mut self, options: &mut Options) -> Result<()> {
        if let Some(schema) = options.take("schema") {
            self.schema = schema;
        }
        if let Some(table) = options.take("table") {
            self.table = table;
        }
        if let Some(max) = options.take_parsed("max_connections", "a whole number")? {
            self.max_connections = max;
        }
        if let Some(min) = options.take_parsed("min_connections", "a whole number")? {
            self.min_connections = min;
        }
        if let Some(timeout) = options.take_duration("acquire_timeout")? {
            self.acquire_timeout = timeout;
        }
        if let Some(timeout) = options.take_duration("operation_timeout")? {
            self.operation_timeout = timeout;
        }
        if let Some(lazy) = options.take_bool("lazy")? {
            self.lazy = lazy;
        }
        if let Some(migrate) = options.take_bool("migrate")? {
            self.migrate = migrate;
        }
        Ok(())
    }

    /// Reads `url` and `extra` (which win over the URL's query): this store's settings become
    /// fields, the driver's parameters stay in the URL, anything else is refused.
    fn parse(mut self, extra: &[(String, String)]) -> Result<Self> {
        let url = self.url.clone();
        let (base, mut options) = Options::split_url("postgres", &url, extra)?;
        self.take_options(&mut options)?;
        self.url = options.into_driver_url(base, DRIVER_PARAMETERS, &url)?;
        self.validate()?;
        Ok(self)
    }

    /// This store's parameters taken off the URL: the settings with them applied (a URL
    /// parameter wins over the field), and the URL the driver gets.
    pub(crate) fn resolved(&self) -> Result<(Self, String)> {
        let config = self.clone().parse(&[])?;
        let url = config.url.clone();
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

impl std::str::FromStr for PostgresConfig {
    type Err = Error;

    fn from_str(url: &str) -> Result<Self> {
        Self::from_url(url)
    }
}

#[async_trait]
impl BackendConfig for PostgresConfig {
    type Store = crate::PostgresStore;

    /// `postgres://…` or `postgresql://…`, with this store's settings ([`PostgresConfig`]'s
    /// fields, timeouts as `…_ms`) and the driver's parameters (`sslmode`, …) in the query.
    fn from_url_with(url: &str, options: &[(String, String)]) -> Result<Self> {
        Self::new(url).parse(options)
    }

    fn isolated(&self, namespace: &str) -> Result<Self> {
        let config = self.clone().table(namespace);
        config.validate()?;
        Ok(config)
    }

    fn existing_only(self) -> Self {
        self.migrate(false)
    }

    async fn open(self) -> Result<crate::PostgresStore> {
        crate::PostgresStore::connect(self).await
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
            "postgres://app:pw@db/app?sslmode=disable&operation_timeout=250&lazy=true&migrate=false",
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
        let options = [("table".to_owned(), "from_map".to_owned())];
        let config = PostgresConfig::from_url_with(
            "postgres://h/d?schema=auth&table=s&max_connections=4&acquire_timeout=9",
            &options,
        )
        .unwrap();
        assert_eq!(config.url, "postgres://h/d");
        assert_eq!(
            (config.schema.as_str(), config.table.as_str()),
            ("auth", "from_map")
        );
        assert_eq!(config.max_connections, 4);
        assert_eq!(config.acquire_timeout, Duration::from_millis(9));
        for bad in [
            "postgres://db/app?sslpassword=s3cr3t",
            "postgres://db/app?tabel=x",
            "postgres://db/app?lazy=maybe",
            "postgres://db/app?operation_timeout=soon",
            "postgres://db/app?operation_timeout=0",
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
