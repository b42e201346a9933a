//! [`StoreConfig`]: which store, as a URL plus named options, readable with serde.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use session_core::{Error, ErrorKind, Result, is_secret_parameter, redact_url};

/// Which store to open: a URL and options, deserializable from an application's configuration
/// (TOML, YAML, environment):
///
/// ```toml
/// [sessions]
/// url = "postgres://app@db/app"
/// table = "web_sessions"
/// max_connections = 32
/// ```
///
/// Every option is also a query parameter of the URL, under the same name
/// (`sqlite://s.db?table=web&durability=full`, `redis://cache:6379?key_prefix=web:`); an option
/// given both ways takes the value here. The backend named by the URL's scheme reads them: the
/// names and what they mean are in each backend's configuration type (`SqliteConfig`,
/// `PostgresConfig`, `RedisConfig`, `MemoryConfig`), and an option the backend does not take is
/// a `Config` error (a typo must not silently fall back to a default). `Debug` hides secrets,
/// and so does serializing: the URL is written with its password and secret parameters as
/// `***`, and so are options whose names carry a secret (serialize a config to show or log it;
/// keep its source to store it).
#[derive(Clone, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StoreConfig {
    /// `memory://`, `sqlite://path` (`sqlite::memory:` for a temporary file deleted with the
    /// store), `postgres://…`/`postgresql://…`, `redis://…`/`rediss://…`.
    #[serde(serialize_with = "serialize_redacted")]
    pub url: String,
    /// The backend's options by name, as in the URL's query.
    #[serde(flatten, serialize_with = "serialize_options")]
    pub options: BTreeMap<String, OptionValue>,
    /// A namespace replacing the configured one ([`StoreConfig::isolated`]).
    #[serde(skip)]
    pub(crate) namespace: Option<String>,
    /// Open what exists only ([`session_core::BackendConfig::existing_only`]).
    #[serde(skip)]
    pub(crate) existing: bool,
}

/// One option's value as a configuration file writes it: text, a whole number or a boolean.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OptionValue {
    /// `true` / `false`.
    Bool(bool),
    /// A whole number.
    Number(i64),
    /// Text.
    Text(String),
}

impl fmt::Display for OptionValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bool(b) => write!(f, "{b}"),
            Self::Number(n) => write!(f, "{n}"),
            Self::Text(t) => f.write_str(t),
        }
    }
}

impl From<&str> for OptionValue {
    fn from(text: &str) -> Self {
        Self::Text(text.to_owned())
    }
}

impl From<String> for OptionValue {
    fn from(text: String) -> Self {
        Self::Text(text)
    }
}

impl From<i64> for OptionValue {
    fn from(number: i64) -> Self {
        Self::Number(number)
    }
}

impl From<bool> for OptionValue {
    fn from(flag: bool) -> Self {
        Self::Bool(flag)
    }
}

fn serialize_redacted<S: serde::Serializer>(url: &str, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&redact_url(url))
}

fn redacted_options(options: &BTreeMap<String, OptionValue>) -> BTreeMap<&str, OptionValue> {
    options
        .iter()
        .map(|(name, value)| {
            let value = if is_secret_parameter(name) {
                OptionValue::Text("***".to_owned())
            } else {
                value.clone()
            };
            (name.as_str(), value)
        })
        .collect()
}

fn serialize_options<S: serde::Serializer>(
    options: &BTreeMap<String, OptionValue>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serde::Serialize::serialize(&redacted_options(options), serializer)
}

impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreConfig")
            .field("url", &redact_url(&self.url))
            .field("options", &redacted_options(&self.options))
            .field("namespace", &self.namespace)
            .field("existing", &self.existing)
            .finish()
    }
}

impl PartialEq for StoreConfig {
    fn eq(&self, other: &Self) -> bool {
        (&self.url, &self.options, &self.namespace, self.existing)
            == (&other.url, &other.options, &other.namespace, other.existing)
    }
}

impl Eq for StoreConfig {}

impl FromStr for StoreConfig {
    type Err = Error;

    /// A config of just `url`, checked: an unknown scheme, a disabled feature or a bad option
    /// is an error here.
    fn from_str(url: &str) -> Result<Self> {
        let config = Self::new(url);
        config.check()?;
        Ok(config)
    }
}

impl StoreConfig {
    /// A config of `url` with no other options.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }

    /// This config with option `name` set to `value`.
    #[must_use]
    pub fn option(mut self, name: impl Into<String>, value: impl Into<OptionValue>) -> Self {
        self.options.insert(name.into(), value.into());
        self
    }

    /// The URL's scheme, lowercase.
    pub fn scheme(&self) -> Result<String> {
        self.url
            .split_once(':')
            .map(|(scheme, _)| scheme.to_ascii_lowercase())
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Config,
                    format!(
                        "session-any: store URL {} has no scheme; use one of: {}",
                        redact_url(&self.url),
                        crate::store::available_schemes()
                    ),
                )
            })
    }

    /// The options as name/value pairs, for a backend's `from_url_with`.
    pub(crate) fn pairs(&self) -> Vec<(String, String)> {
        self.options
            .iter()
            .map(|(name, value)| (name.clone(), value.to_string()))
            .collect()
    }

    /// This config with its namespace (SQL table, Redis key prefix `namespace:`) replaced: the
    /// same server or file, a separate set of sessions. `namespace` must be a plain identifier.
    pub fn isolated(&self, namespace: &str) -> Result<Self> {
        session_core::validate_identifier("session-any", "namespace", namespace, 48)?;
        let mut config = self.clone();
        config.namespace = Some(namespace.to_owned());
        Ok(config)
    }

    /// Checks the URL and options without opening anything.
    pub fn check(&self) -> Result<()> {
        (crate::store::backend_of(self)?.check)(self)
    }

    /// The name of the backend the URL selects (`"postgres"` for `postgresql://`), or the error
    /// saying which schemes exist and which feature to enable.
    pub fn backend(&self) -> Result<&'static str> {
        Ok(crate::store::backend_of(self)?.name)
    }
}
