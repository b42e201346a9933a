//! Configuration of a [`MysqlStore`](crate::MysqlStore).

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use session_core::{
    BackendConfig, Error, ErrorKind, Options, Result, async_trait, redact_url, validate_identifier,
};

/// Settings of a [`MysqlStore`](crate::MysqlStore). `Debug` hides the password.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct MysqlConfig {
    /// Connection URL, `mysql://user:password@host:port/database?…` (`mariadb://` is the same).
    pub url: String,
    /// Table holding this store's sessions (its namespace), in the URL's database. A plain
    /// identifier of at most 48 characters.
    pub table: String,
    /// Most connections in the pool.
    pub max_connections: u32,
    /// Connections kept open while idle.
    pub min_connections: u32,
    /// How long an operation waits for a connection (including connecting) before a transient
    /// error. URL: `acquire_timeout`.
    #[serde(with = "session_core::serde_duration")]
    pub acquire_timeout: Duration,
    /// The deadline of every operation, from its call to its answer (waiting for a connection
    /// and retries of deadlocked rotations included), kept by the client. A missed deadline is
    /// a transient error whose outcome is unknown. URL: `operation_timeout`.
    #[serde(with = "session_core::serde_duration")]
    pub operation_timeout: Duration,
    /// Open without a server: `connect` succeeds at once, operations fail with transient errors
    /// until the server is reachable, and the table is checked (and created if allowed) on the
    /// first operation that reaches it. URL: `lazy=true`.
    pub lazy: bool,
    /// Whether the store may create its table. With `false` it never runs DDL and a missing
    /// table (or one of another layout) is a `Config` error. URL: `migrate=false`.
    pub migrate: bool,
}

/// The query parameters sqlx's MySQL driver understands. Any other is refused.
const DRIVER_PARAMETERS: &[&str] = &[
    "sslmode",
    "ssl-mode",
    "sslca",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "charset",
    "collation",
    "statement-cache-capacity",
    "socket",
    "timezone",
    "time-zone",
];

impl Default for MysqlConfig {
    fn default() -> Self {
        Self {
            url: "mysql://root@localhost/test".to_owned(),
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

impl fmt::Debug for MysqlConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MysqlConfig")
            .field("url", &redact_url(&self.url))
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

impl MysqlConfig {
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

    /// Reads `url` and `extra` (which win over the URL's query): this store's settings
    /// (`table`, `max_connections`, `min_connections`, `acquire_timeout`,
    /// `operation_timeout`, `lazy`, `migrate`) become fields, the driver's parameters stay in
    /// the URL, anything else is refused.
    pub(crate) fn parse(mut self, extra: &[(String, String)]) -> Result<Self> {
        let url = self.url.clone();
        let (base, mut options) = Options::split_url("mysql", &url, extra)?;
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
        self.url = options.into_driver_url(base, DRIVER_PARAMETERS, &url)?;
        self.validate()?;
        Ok(self)
    }

    /// The URL sqlx gets: `mariadb://` spelled `mysql://`.
    pub(crate) fn driver_url(&self) -> String {
        match self.url.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("mariadb") => {
                format!("mysql://{rest}")
            }
            _ => self.url.clone(),
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        validate_identifier("mysql", "table", &self.table, 48)?;
        let scheme = self
            .url
            .split_once("://")
            .map(|(s, _)| s.to_ascii_lowercase());
        if !matches!(scheme.as_deref(), Some("mysql" | "mariadb")) {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "mysql: the URL must start with mysql:// or mariadb://, not {}",
                    redact_url(&self.url)
                ),
            ));
        }
        if self.operation_timeout.is_zero() {
            return Err(Error::new(
                ErrorKind::Config,
                "mysql: `operation_timeout` must be more than zero",
            ));
        }
        if self.max_connections == 0 {
            return Err(Error::new(
                ErrorKind::Config,
                "mysql: `max_connections` must be at least 1",
            ));
        }
        Ok(())
    }
}

impl std::str::FromStr for MysqlConfig {
    type Err = Error;

    fn from_str(url: &str) -> Result<Self> {
        Self::from_url(url)
    }
}

#[async_trait]
impl BackendConfig for MysqlConfig {
    type Store = crate::MysqlStore;

    /// `mysql://…` or `mariadb://…`, with this store's settings ([`MysqlConfig`]'s fields,
    /// timeouts as `…_ms`) and the driver's parameters (`ssl-mode`, …) in the query.
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

    async fn open(self) -> Result<crate::MysqlStore> {
        crate::MysqlStore::connect(self).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let options = [("table".to_owned(), "from_map".to_owned())];
        let config = MysqlConfig::from_url_with(
            "mariadb://app:pw@db:3306/app?ssl-mode=disabled&table=s&max_connections=4&operation_timeout=250&lazy=true&migrate=false",
            &options,
        )
        .unwrap();
        assert_eq!(config.url, "mariadb://app:pw@db:3306/app?ssl-mode=disabled");
        assert_eq!(
            config.driver_url(),
            "mysql://app:pw@db:3306/app?ssl-mode=disabled"
        );
        assert_eq!(config.table, "from_map");
        assert_eq!(config.max_connections, 4);
        assert_eq!(config.operation_timeout, Duration::from_millis(250));
        assert!(config.lazy && !config.migrate);
        for bad in [
            "mysql://db/app?password=s3cr3t",
            "mysql://db/app?tabel=x",
            "mysql://db/app?lazy=maybe",
            "mysql://db/app?operation_timeout=0",
            "mysql://db/app?table=a-b",
            "postgres://db/app",
        ] {
            let error = MysqlConfig::from_url(bad).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Config, "{bad}: {error}");
            assert!(!error.to_string().contains("s3cr3t"), "{error}");
        }
    }

    #[test]
    fn debug_hides_passwords() {
        let shown = format!("{:?}", MysqlConfig::new("mysql://app:s3cr3t@db/app"));
        assert!(!shown.contains("s3cr3t") && shown.contains("db"), "{shown}");
    }
}
