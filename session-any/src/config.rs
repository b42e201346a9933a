//! [`StoreConfig`]: which store, from a URL plus optional fields, readable with serde.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use session_core::{Error, ErrorKind, Result, redact_url};

/// The backends `session-any` knows, whether or not their Cargo feature is enabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// `memory://`: [`session_memory::MemoryStore`](https://docs.rs/session-memory), private to
    /// this process.
    Memory,
    /// `sqlite://path`: the embedded SQLite store.
    Sqlite,
    /// `postgres://…` or `postgresql://…`.
    Postgres,
    /// `redis://…` or `rediss://…`.
    Redis,
}

/// Every URL scheme and the backend it selects.
pub const SCHEMES: &[(&str, Backend)] = &[
    ("memory", Backend::Memory),
    ("sqlite", Backend::Sqlite),
    ("postgres", Backend::Postgres),
    ("postgresql", Backend::Postgres),
    ("redis", Backend::Redis),
    ("rediss", Backend::Redis),
];

impl Backend {
    /// The backend's name, also the name of its Cargo feature.
    pub fn name(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
            Self::Redis => "redis",
        }
    }

    /// Whether this build has the backend (its Cargo feature is on).
    pub fn enabled(self) -> bool {
        match self {
            Self::Memory => cfg!(feature = "memory"),
            Self::Sqlite => cfg!(feature = "sqlite"),
            Self::Postgres => cfg!(feature = "postgres"),
            Self::Redis => cfg!(feature = "redis"),
        }
    }

    /// The backend selected by a URL's scheme, or the error saying which schemes exist and
    /// which feature to enable.
    pub fn from_url(url: &str) -> Result<Self> {
        let scheme = url
            .split_once(':')
            .map(|(scheme, _)| scheme.to_ascii_lowercase())
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Config,
                    format!(
                        "session-any: store URL {} has no scheme; use one of: {}",
                        redact_url(url),
                        available_schemes()
                    ),
                )
            })?;
        let Some(&(_, backend)) = SCHEMES.iter().find(|(s, _)| *s == scheme) else {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "session-any: unknown store URL scheme `{}`; use one of: {}",
                    scheme.chars().take(32).collect::<String>(),
                    available_schemes()
                ),
            ));
        };
        if !backend.enabled() {
            return Err(feature_off(&scheme, backend));
        }
        Ok(backend)
    }

    /// The options this backend takes, by name.
    fn options(self) -> &'static [&'static str] {
        match self {
            Self::Memory => &[],
            Self::Sqlite => &["table", "durability", "timeout_ms"],
            Self::Postgres => &["table", "schema", "max_connections", "timeout_ms"],
            Self::Redis => &["key_prefix", "timeout_ms"],
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The schemes of this build, e.g. `memory://, sqlite://path, postgres://…`.
pub(crate) fn available_schemes() -> String {
    let list: Vec<String> = SCHEMES
        .iter()
        .map(|(scheme, backend)| {
            let form = match backend {
                Backend::Memory => format!("{scheme}://"),
                Backend::Sqlite => format!("{scheme}://path"),
                Backend::Postgres | Backend::Redis => format!("{scheme}://…"),
            };
            if backend.enabled() {
                form
            } else {
                format!("{form} (needs feature `{}`)", backend.name())
            }
        })
        .collect();
    list.join(", ")
}

pub(crate) fn feature_off(scheme: &str, backend: Backend) -> Error {
    Error::new(
        ErrorKind::Unsupported,
        format!(
            "session-any: `{scheme}://` needs the `{feature}` feature of session-any, which this build lacks \
             (enable it: session-any = {{ features = [\"{feature}\"] }}); available: {}",
            available_schemes(),
            feature = backend.name(),
        ),
    )
}

/// How hard the SQLite store works to keep acknowledged writes across a power loss (see the
/// SQLite store's `Durability`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Durability {
    /// `synchronous=NORMAL` in WAL mode (the default).
    #[default]
    Normal,
    /// `synchronous=FULL`: every acknowledged write survives a power loss.
    Full,
}

impl FromStr for Durability {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "normal" => Ok(Self::Normal),
            "full" => Ok(Self::Full),
            _ => Err(Error::new(
                ErrorKind::Config,
                format!(
                    "session-any: durability must be `normal` or `full`, not {:?}",
                    s.chars().take(32).collect::<String>()
                ),
            )),
        }
    }
}

/// Which store to open: a URL and optional settings, deserializable from an application's
/// configuration (TOML, YAML, environment):
///
/// ```toml
/// [sessions]
/// url = "postgres://app@db/app"
/// table = "web_sessions"
/// max_connections = 32
/// ```
///
/// Every setting can also be a query parameter of the URL (`sqlite://s.db?table=web&durability=full`,
/// `redis://cache:6379?key_prefix=web:`); a field set here wins over the same parameter. The
/// settings and the backends they apply to:
///
/// | field | memory | sqlite | postgres | redis |
/// |---|---|---|---|---|
/// | `table` | | table name (`sessions`) | table name (`sessions`) | |
/// | `schema` | | | schema (`public`) | |
/// | `key_prefix` | | | | key prefix (`session:`) |
/// | `max_connections` | | | pool size (16) | |
/// | `durability` | | `normal` / `full` | | |
/// | `timeout_ms` | | busy timeout | acquire timeout | connect and reply timeouts |
///
/// A setting given to a backend that does not take it is a `Config` error (a typo should not
/// silently fall back to a default). Other query parameters of a `postgres://` or `redis://` URL
/// go to the driver (`sslmode=require`, …). `Debug` hides secrets, and so does serializing:
/// the URL is written with its password and secret parameters as `***` (serialize a config to
/// show or log it; keep its source to store it).
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct StoreConfig {
    /// `memory://`, `sqlite://path` (`sqlite::memory:` for a temporary file deleted with the
    /// store), `postgres://…`/`postgresql://…`, `redis://…`/`rediss://…`.
    #[serde(serialize_with = "serialize_redacted")]
    pub url: String,
    /// Table of the SQL stores.
    pub table: Option<String>,
    /// Schema of the PostgreSQL table.
    pub schema: Option<String>,
    /// Key prefix of the Redis store.
    pub key_prefix: Option<String>,
    /// Pool size of the PostgreSQL store.
    pub max_connections: Option<u32>,
    /// Durability of the SQLite store.
    pub durability: Option<Durability>,
    /// Timeout in milliseconds (busy, acquire or connect timeout, by backend).
    pub timeout_ms: Option<u64>,
}

fn serialize_redacted<S: serde::Serializer>(url: &str, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&redact_url(url))
}

impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreConfig")
            .field("url", &redact_url(&self.url))
            .field("table", &self.table)
            .field("schema", &self.schema)
            .field("key_prefix", &self.key_prefix)
            .field("max_connections", &self.max_connections)
            .field("durability", &self.durability)
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

impl FromStr for StoreConfig {
    type Err = Error;

    /// A config of just `url`, checked: an unknown scheme, a disabled feature or a bad option
    /// is an error here.
    fn from_str(url: &str) -> Result<Self> {
        let config = Self::new(url);
        config.resolve()?;
        Ok(config)
    }
}

/// A [`StoreConfig`] checked and split into the driver's URL and the settings.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Resolved {
    pub(crate) backend: Backend,
    /// The URL without this crate's query parameters (postgres, redis).
    pub(crate) url: String,
    /// The SQLite file; `None` for a temporary one.
    pub(crate) path: Option<PathBuf>,
    pub(crate) table: Option<String>,
    pub(crate) schema: Option<String>,
    pub(crate) key_prefix: Option<String>,
    pub(crate) max_connections: Option<u32>,
    pub(crate) durability: Option<Durability>,
    pub(crate) timeout_ms: Option<u64>,
    /// Open what exists only: never create a file or table (operator tools).
    pub(crate) existing: bool,
}

impl fmt::Debug for Resolved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolved")
            .field("backend", &self.backend)
            .field("url", &redact_url(&self.url))
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl StoreConfig {
    /// A config of `url` with no other settings.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }

    /// The backend the URL selects (an error for unknown schemes or disabled features).
    pub fn backend(&self) -> Result<Backend> {
        Backend::from_url(&self.url)
    }

    /// This config with its namespace (SQL table, Redis key prefix `namespace:`) replaced: the
    /// same server or file, a separate set of sessions. Used by `sessionctl check` and the
    /// conformance factory. `namespace` must be a plain identifier.
    pub fn isolated(&self, namespace: &str) -> Result<Self> {
        let mut config = self.clone();
        match self.backend()? {
            Backend::Memory => {}
            Backend::Sqlite | Backend::Postgres => config.table = Some(namespace.to_owned()),
            Backend::Redis => config.key_prefix = Some(format!("{namespace}:")),
        }
        Ok(config)
    }

    /// Checks the URL and settings and splits off this crate's query parameters.
    pub(crate) fn resolve(&self) -> Result<Resolved> {
        let backend = self.backend()?;
        let mut resolved = Resolved {
            backend,
            url: self.url.clone(),
            path: None,
            table: None,
            schema: None,
            key_prefix: None,
            max_connections: None,
            durability: None,
            timeout_ms: None,
            existing: false,
        };
        let invalid = || {
            Error::new(
                ErrorKind::Config,
                format!(
                    "session-any: invalid {backend} URL {}",
                    redact_url(&self.url)
                ),
            )
        };
        let mut query_options = Vec::new();
        match backend {
            Backend::Memory | Backend::Sqlite => {
                let rest = &self.url[backend_scheme_len(&self.url)..];
                let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
                query_options.extend(url::form_urlencoded::parse(query.as_bytes()).into_owned());
                let location = location.strip_prefix("//").unwrap_or(location);
                if backend == Backend::Memory {
                    if !location.is_empty() {
                        return Err(Error::new(
                            ErrorKind::Config,
                            "session-any: a memory store URL is just `memory://`",
                        ));
                    }
                } else if location == ":memory:" {
                    resolved.path = None;
                } else if location.is_empty() {
                    return Err(Error::new(
                        ErrorKind::Config,
                        "session-any: a SQLite URL needs a file path (`sqlite://sessions.db`, \
                         `sqlite:///var/lib/app/sessions.db`) or `sqlite::memory:` for a temporary file",
                    ));
                } else {
                    resolved.path = Some(PathBuf::from(location));
                }
            }
            Backend::Postgres | Backend::Redis => {
                let mut parsed = url::Url::parse(&self.url).map_err(|_| invalid())?;
                let mut passed = Vec::new();
                for (key, value) in parsed.query_pairs().into_owned() {
                    if is_option(&key) {
                        query_options.push((key, value));
                    } else {
                        passed.push((key, value));
                    }
                }
                if passed.is_empty() {
                    parsed.set_query(None);
                } else {
                    parsed.query_pairs_mut().clear().extend_pairs(passed);
                }
                resolved.url = parsed.into();
            }
        }
        for (key, value) in query_options {
            let parse_number = |v: &str| {
                v.parse::<u64>().map_err(|_| {
                    Error::new(
                        ErrorKind::Config,
                        format!("session-any: URL option `{key}` must be a whole number"),
                    )
                })
            };
            match key.as_str() {
                "table" => resolved.table = Some(value),
                "schema" => resolved.schema = Some(value),
                "key_prefix" => resolved.key_prefix = Some(value),
                "max_connections" => {
                    resolved.max_connections =
                        Some(u32::try_from(parse_number(&value)?).map_err(|_| invalid())?);
                }
                "durability" => resolved.durability = Some(value.parse()?),
                "timeout_ms" => resolved.timeout_ms = Some(parse_number(&value)?),
                _ => {
                    return Err(Error::new(
                        ErrorKind::Config,
                        format!(
                            "session-any: unknown option `{}` in a {backend} URL (it takes: {})",
                            key.chars().take(32).collect::<String>(),
                            option_list(backend)
                        ),
                    ));
                }
            }
        }
        // Fields of the config win over the URL's parameters.
        macro_rules! field {
            ($($name:ident),*) => {$(
                if self.$name.is_some() {
                    resolved.$name = self.$name.clone();
                }
            )*};
        }
        field!(
            table,
            schema,
            key_prefix,
            max_connections,
            durability,
            timeout_ms
        );
        let given = [
            ("table", resolved.table.is_some()),
            ("schema", resolved.schema.is_some()),
            ("key_prefix", resolved.key_prefix.is_some()),
            ("max_connections", resolved.max_connections.is_some()),
            ("durability", resolved.durability.is_some()),
            ("timeout_ms", resolved.timeout_ms.is_some()),
        ];
        for (name, set) in given {
            if set && !backend.options().contains(&name) {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!(
                        "session-any: option `{name}` does not apply to the {backend} store (it takes: {})",
                        option_list(backend)
                    ),
                ));
            }
        }
        Ok(resolved)
    }
}

fn is_option(key: &str) -> bool {
    matches!(
        key,
        "table" | "schema" | "key_prefix" | "max_connections" | "durability" | "timeout_ms"
    )
}

fn option_list(backend: Backend) -> String {
    let options = backend.options();
    if options.is_empty() {
        "no options".to_owned()
    } else {
        options.join(", ")
    }
}

/// Length of `scheme:` at the start of `url`.
fn backend_scheme_len(url: &str) -> usize {
    url.find(':').map_or(0, |i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(url: &str) -> Result<Resolved> {
        StoreConfig::new(url).resolve()
    }

    #[test]
    fn schemes_select_backends() {
        for (url, backend) in [
            ("memory://", Backend::Memory),
            ("MEMORY://", Backend::Memory),
            ("sqlite://s.db", Backend::Sqlite),
            ("postgres://u@h/d", Backend::Postgres),
            ("postgresql://u@h/d", Backend::Postgres),
            ("redis://h:6379", Backend::Redis),
            ("rediss://h:6379", Backend::Redis),
        ] {
            assert_eq!(resolve(url).unwrap().backend, backend, "{url}");
        }
    }

    #[test]
    fn unknown_scheme_lists_the_available_ones() {
        let error = resolve("mysql://root@localhost/db").unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config);
        let message = error.to_string();
        assert!(
            message.contains("unknown store URL scheme `mysql`"),
            "{message}"
        );
        for scheme in [
            "memory://",
            "sqlite://path",
            "postgres://",
            "redis://",
            "rediss://",
        ] {
            assert!(message.contains(scheme), "{message} lacks {scheme}");
        }
        let error = resolve("no scheme here").unwrap_err();
        assert!(error.to_string().contains("has no scheme"), "{error}");
    }

    #[test]
    fn a_disabled_feature_is_named() {
        let message = feature_off("redis", Backend::Redis).to_string();
        assert!(message.contains("needs the `redis` feature"), "{message}");
        assert!(message.contains("features = [\"redis\"]"), "{message}");
    }

    #[test]
    fn sqlite_paths() {
        assert_eq!(
            resolve("sqlite://data/s.db").unwrap().path,
            Some(PathBuf::from("data/s.db"))
        );
        assert_eq!(
            resolve("sqlite:///var/lib/s.db").unwrap().path,
            Some(PathBuf::from("/var/lib/s.db"))
        );
        assert_eq!(
            resolve("sqlite:s.db").unwrap().path,
            Some(PathBuf::from("s.db"))
        );
        assert_eq!(resolve("sqlite::memory:").unwrap().path, None);
        assert_eq!(resolve("sqlite://:memory:").unwrap().path, None);
        let error = resolve("sqlite://").unwrap_err();
        assert!(error.to_string().contains("needs a file path"), "{error}");
    }

    #[test]
    fn query_options_are_read_and_stripped() {
        let r = resolve("sqlite://s.db?table=web&durability=full&timeout_ms=250").unwrap();
        assert_eq!(r.path, Some(PathBuf::from("s.db")));
        assert_eq!(r.table.as_deref(), Some("web"));
        assert_eq!(r.durability, Some(Durability::Full));
        assert_eq!(r.timeout_ms, Some(250));

        let r = resolve(
            "postgres://app:pw@db:5432/app?sslmode=disable&schema=auth&table=s&max_connections=4",
        )
        .unwrap();
        assert_eq!(r.url, "postgres://app:pw@db:5432/app?sslmode=disable");
        assert_eq!(r.schema.as_deref(), Some("auth"));
        assert_eq!(r.table.as_deref(), Some("s"));
        assert_eq!(r.max_connections, Some(4));

        let r = resolve("redis://127.0.0.1:6379/2?key_prefix=web%3A").unwrap();
        assert_eq!(r.url, "redis://127.0.0.1:6379/2");
        assert_eq!(r.key_prefix.as_deref(), Some("web:"));
    }

    #[test]
    fn fields_win_over_the_query() {
        let config = StoreConfig {
            table: Some("from_field".into()),
            ..StoreConfig::new("sqlite://s.db?table=from_query")
        };
        assert_eq!(
            config.resolve().unwrap().table.as_deref(),
            Some("from_field")
        );
    }

    #[test]
    fn misplaced_and_malformed_options_are_errors() {
        for (url, needle) in [
            (
                "postgres://h/d?key_prefix=x",
                "`key_prefix` does not apply to the postgres store",
            ),
            (
                "redis://h?table=x",
                "`table` does not apply to the redis store",
            ),
            (
                "memory://?table=x",
                "`table` does not apply to the memory store",
            ),
            ("sqlite://s.db?tabel=x", "unknown option `tabel`"),
            ("sqlite://s.db?durability=sometimes", "durability must be"),
            ("sqlite://s.db?timeout_ms=soon", "must be a whole number"),
            ("memory://somewhere", "just `memory://`"),
            ("postgres://[broken", "invalid postgres URL"),
        ] {
            let error = resolve(url).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Config, "{url}");
            assert!(error.to_string().contains(needle), "{url}: {error}");
        }
    }

    #[test]
    fn secrets_stay_hidden() {
        let config = StoreConfig::new("postgres://app:hunter2@db/app?password=hunter3");
        let debug = format!("{config:?}");
        assert!(!debug.contains("hunter"), "{debug}");
        let error = StoreConfig::new("postgres://app:hunter2@db/app?key_prefix=x")
            .resolve()
            .unwrap_err();
        assert!(!error.to_string().contains("hunter2"), "{error}");
        let error = StoreConfig::new("postgres://app:hunter2@[db/app")
            .resolve()
            .unwrap_err();
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }

    #[test]
    fn deserializes_from_toml_and_json() {
        let config: StoreConfig = toml::from_str(
            "url = \"sqlite://s.db\"\ntable = \"web\"\ndurability = \"full\"\ntimeout_ms = 100\n",
        )
        .unwrap();
        assert_eq!(config.table.as_deref(), Some("web"));
        assert_eq!(config.durability, Some(Durability::Full));
        let config: StoreConfig =
            serde_json::from_str(r#"{"url":"redis://h","key_prefix":"app:"}"#).unwrap();
        assert_eq!(
            config.resolve().unwrap().key_prefix.as_deref(),
            Some("app:")
        );
        assert!(
            serde_json::from_str::<StoreConfig>(r#"{"url":"redis://h","prefix":"x"}"#).is_err()
        );
    }

    #[test]
    fn isolated_replaces_the_namespace() {
        let pg = StoreConfig::new("postgres://h/d?table=sessions")
            .isolated("ns1")
            .unwrap();
        assert_eq!(pg.resolve().unwrap().table.as_deref(), Some("ns1"));
        let redis = StoreConfig::new("redis://h").isolated("ns1").unwrap();
        assert_eq!(redis.resolve().unwrap().key_prefix.as_deref(), Some("ns1:"));
    }
}
