//! [`AnyStore`]: one of the backends, chosen at run time by a URL's scheme.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use session_core::{
    BackendConfig, Bytes, Capabilities, Counts, CreateOutcome, Error, ErrorKind, Gauges,
    OwnedSession, Owner, Record, Result, SessionKey, SessionStore, StoreAdmin, UpdateOutcome,
    WriteOptions, async_trait, time::OffsetDateTime,
};

use session_manager::Instrumented;

use crate::config::StoreConfig;

/// The backends, one line each: the Cargo feature, the URL schemes, the crate and its
/// configuration type (which parses the URL and options, and opens the store). Adding a backend
/// is one crate plus one line here (and its feature in `Cargo.toml`).
macro_rules! backends {
    ($($feature:literal => [$($scheme:literal),+] $krate:ident :: $config:ident;)*) => {
        /// Every URL scheme `session-any` knows, with the Cargo feature of its backend (whether
        /// or not this build has it).
        pub const SCHEMES: &[(&str, &str)] = &[$($(($scheme, $feature),)+)*];

        /// The backend of `scheme` in this build.
        fn dispatch(scheme: &str) -> Option<Backend> {
            match scheme {
                $(
                    #[cfg(feature = $feature)]
                    $($scheme)|+ => Some(Backend {
                        name: $feature,
                        check: |config| parse::<$krate::$config>(config).map(drop),
                        open: |config| Box::pin(open::<$krate::$config>(config)),
                        #[cfg(feature = "conformance")]
                        factory: |config| Ok(Box::new($krate::testing::factory_for(
                            parse::<$krate::$config>(config)?,
                        ))),
                    }),
                )*
                _ => None,
            }
        }
    };
}

backends! {
    "memory" => ["memory"] session_memory::MemoryConfig;
    "sqlite" => ["sqlite"] session_sqlite::SqliteConfig;
    "postgres" => ["postgres", "postgresql"] session_postgres::PostgresConfig;
    "redis" => ["redis", "rediss", "redis+cluster", "rediss+cluster"] session_redis::RedisConfig;
    "mysql" => ["mysql", "mariadb"] session_mysql::MysqlConfig;
}

type Opening<'a> = Pin<Box<dyn Future<Output = Result<AnyStore>> + Send + 'a>>;

/// What `session-any` does with one backend, type-erased.
pub(crate) struct Backend {
    pub(crate) name: &'static str,
    pub(crate) check: fn(&StoreConfig) -> Result<()>,
    pub(crate) open: for<'a> fn(&'a StoreConfig) -> Opening<'a>,
    #[cfg(feature = "conformance")]
    pub(crate) factory: fn(&StoreConfig) -> Result<Box<dyn conformance_tests::Namespaces>>,
}

/// The backend's configuration from `config`: its URL and options, then the namespace and
/// mode `config` asks for.
#[allow(dead_code)] // unused in a build without any backend
fn parse<C: BackendConfig>(config: &StoreConfig) -> Result<C> {
    let mut parsed = C::from_url_with(&config.url, &config.pairs())?;
    if let Some(namespace) = &config.namespace {
        parsed = parsed.isolated(namespace)?;
    }
    if config.existing {
        parsed = parsed.existing_only();
    }
    Ok(parsed)
}

#[allow(dead_code)] // unused in a build without any backend
async fn open<C: BackendConfig>(config: &StoreConfig) -> Result<AnyStore> {
    let parsed = parse::<C>(config)?;
    // The backend's configuration, secrets hidden by its `Debug`.
    let shown: Arc<str> = format!("{parsed:?}").into();
    let store = AnyStore::with_shown(Arc::new(parsed.open().await?), shown);
    #[cfg(feature = "metrics")]
    sample_gauges(&store.inner);
    Ok(store)
}

/// With feature `metrics`: the store's pool and queue gauges every second
/// (`session_store_connections`, `session_store_idle_connections`, `session_store_queued`, label
/// backend), until the store is dropped.
#[cfg(feature = "metrics")]
fn sample_gauges(store: &Arc<dyn StoreAdmin>) {
    let backend = store.backend();
    if store.gauges() == Gauges::default() {
        return;
    }
    let store = Arc::downgrade(store);
    let connections = metrics::gauge!("session_store_connections", "backend" => backend);
    let idle = metrics::gauge!("session_store_idle_connections", "backend" => backend);
    let queued = metrics::gauge!("session_store_queued", "backend" => backend);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            every.tick().await;
            let Some(store) = store.upgrade() else { return };
            let gauges = store.gauges();
            for (gauge, value) in [
                (&connections, gauges.connections),
                (&idle, gauges.idle_connections),
                (&queued, gauges.queued),
            ] {
                if let Some(value) = value {
                    gauge.set(value as f64);
                }
            }
        }
    });
}

/// The backend `config`'s URL selects in this build, or the error listing the schemes.
pub(crate) fn backend_of(config: &StoreConfig) -> Result<Backend> {
    let scheme = config.scheme()?;
    if let Some(backend) = dispatch(&scheme) {
        return Ok(backend);
    }
    let shown = scheme.chars().take(32).collect::<String>();
    Err(match SCHEMES.iter().find(|(s, _)| *s == scheme) {
        Some((_, feature)) => feature_off(&shown, feature),
        None => Error::new(
            ErrorKind::Config,
            format!(
                "session-any: unknown store URL scheme `{shown}`; use one of: {}",
                available_schemes()
            ),
        ),
    })
}

/// The error for a scheme whose backend's Cargo feature is off in this build.
fn feature_off(scheme: &str, feature: &str) -> Error {
    Error::new(
        ErrorKind::Unsupported,
        format!(
            "session-any: `{scheme}://` needs the `{feature}` feature of session-any, which this build lacks \
             (enable it: session-any = {{ features = [\"{feature}\"] }}); available: {}",
            available_schemes(),
        ),
    )
}

/// The schemes of this build, e.g. `memory://, sqlite://, postgres:// (needs feature …)`.
pub(crate) fn available_schemes() -> String {
    let list: Vec<String> = SCHEMES
        .iter()
        .map(|(scheme, feature)| {
            if dispatch(scheme).is_some() {
                format!("{scheme}://")
            } else {
                format!("{scheme}:// (needs feature `{feature}`)")
            }
        })
        .collect();
    list.join(", ")
}

/// A store of whichever backend a [`StoreConfig`] names. It implements [`SessionStore`] by
/// forwarding to that backend, and [`StoreAdmin`] (the backend's name and capabilities,
/// [`counts`](StoreAdmin::counts), [`drop_namespace`](StoreAdmin::drop_namespace)).
///
/// Every operation runs in a `tracing` span `session_store` (backend, operation, outcome,
/// duration; never a key or data: [`session_manager::Instrumented`]); with feature `metrics`
/// each is also counted and timed through the `metrics` facade (install the recorder before
/// opening the store). With no subscriber and no metrics the cost is a disabled-span check.
///
/// What it can do is its backend's [`Capabilities`] (every backend of this workspace keeps an
/// owner index).
#[derive(Clone)]
pub struct AnyStore {
    inner: Arc<dyn StoreAdmin>,
    operations: Instrumented<Arc<dyn StoreAdmin>>,
    shown: Arc<str>,
}

/// Opens the store `url` names, with the URL's settings, behind `Arc<dyn SessionStore>`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> session_core::Result<()> {
/// let store = session_any::connect("memory://").await?;
/// let manager = session_manager::SessionManager::new(store);
/// let state = manager.create(&b"hello"[..]).await?;
/// assert_eq!(manager.load(state.id()).await?.unwrap().data(), &b"hello"[..]);
/// # Ok(()) }
/// ```
pub async fn connect(url: &str) -> Result<Arc<dyn SessionStore>> {
    StoreConfig::new(url).connect().await
}

impl StoreConfig {
    /// Opens the store behind `Arc<dyn SessionStore>`.
    pub async fn connect(&self) -> Result<Arc<dyn SessionStore>> {
        Ok(Arc::new(AnyStore::open(self).await?))
    }
}

impl AnyStore {
    /// Opens the store `config` names: connects, and creates its table where it has one.
    pub async fn open(config: &StoreConfig) -> Result<Self> {
        (backend_of(config)?.open)(config).await
    }

    /// Opens the store `config` names without creating anything: a missing SQLite file or
    /// table, or a missing PostgreSQL table, is a `Config` error (for tools that inspect an
    /// application's store: a mistyped name must not create an empty store).
    pub async fn open_existing(config: &StoreConfig) -> Result<Self> {
        let mut config = config.clone();
        config.existing = true;
        Self::open(&config).await
    }

    /// A store of any backend (for example a `session_postgres::PostgresStore` opened by the
    /// application), as an `AnyStore`.
    pub fn new(store: impl StoreAdmin + fmt::Debug) -> Self {
        let shown = format!("{store:?}").into();
        Self::with_shown(Arc::new(store), shown)
    }

    fn with_shown(inner: Arc<dyn StoreAdmin>, shown: Arc<str>) -> Self {
        let operations = Instrumented::new(Arc::clone(&inner), inner.backend());
        #[cfg(feature = "metrics")]
        let operations = operations.with_metrics();
        Self {
            inner,
            operations,
            shown,
        }
    }
}

impl fmt::Debug for AnyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AnyStore({})", self.shown)
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl StoreAdmin for AnyStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn counts(&self) -> Result<Counts> {
        self.inner.counts().await
    }

    async fn drop_namespace(&self) -> Result<()> {
        self.inner.drop_namespace().await
    }

    fn gauges(&self) -> Gauges {
        self.inner.gauges()
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl SessionStore for AnyStore {
    fn capabilities(&self) -> Capabilities {
        self.operations.capabilities()
    }

    async fn create_opts(
        &self,
        key: &SessionKey,
        expires_at: OffsetDateTime,
        data: Bytes,
        options: &WriteOptions,
    ) -> Result<CreateOutcome> {
        self.operations
            .create_opts(key, expires_at, data, options)
            .await
    }

    async fn read(&self, key: &SessionKey) -> Result<Option<Record>> {
        self.operations.read(key).await
    }

    async fn update_opts(
        &self,
        current: &SessionKey,
        previous: &SessionKey,
        expected_version: u64,
        expires_at: OffsetDateTime,
        data: Bytes,
        options: &WriteOptions,
    ) -> Result<UpdateOutcome> {
        self.operations
            .update_opts(
                current,
                previous,
                expected_version,
                expires_at,
                data,
                options,
            )
            .await
    }

    async fn touch(&self, key: &SessionKey, expires_at: OffsetDateTime) -> Result<bool> {
        self.operations.touch(key, expires_at).await
    }

    async fn delete(&self, key: &SessionKey) -> Result<()> {
        self.operations.delete(key).await
    }

    async fn delete_expired(&self) -> Result<u64> {
        self.operations.delete_expired().await
    }

    async fn clear(&self) -> Result<()> {
        self.operations.clear().await
    }

    async fn sessions_of(&self, owner: &Owner) -> Result<Vec<OwnedSession>> {
        self.operations.sessions_of(owner).await
    }

    async fn revoke_owner(&self, owner: &Owner, except: Option<&SessionKey>) -> Result<u64> {
        self.operations.revoke_owner(owner, except).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(url: &str) -> Result<&'static str> {
        StoreConfig::new(url).backend()
    }

    #[test]
    fn schemes_select_backends() {
        for (url, name) in [
            ("memory://", "memory"),
            ("MEMORY://", "memory"),
            ("sqlite://s.db", "sqlite"),
            ("postgres://u@h/d", "postgres"),
            ("postgresql://u@h/d", "postgres"),
            ("redis://h:6379", "redis"),
            ("rediss://h:6379", "redis"),
            ("redis+cluster://h:7000?seed=h2:7001", "redis"),
            ("rediss+cluster://h:7000", "redis"),
        ] {
            assert_eq!(backend(url).unwrap(), name, "{url}");
            StoreConfig::new(url).check().unwrap();
        }
    }

    #[test]
    fn unknown_scheme_lists_the_available_ones() {
        let error = backend("oracle://scott@localhost/db").unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config);
        let message = error.to_string();
        assert!(
            message.contains("unknown store URL scheme `oracle`"),
            "{message}"
        );
        for scheme in [
            "memory://",
            "sqlite://",
            "postgres://",
            "redis://",
            "rediss://",
            "redis+cluster://",
        ] {
            assert!(message.contains(scheme), "{message} lacks {scheme}");
        }
        let error = backend("no scheme here").unwrap_err();
        assert!(error.to_string().contains("has no scheme"), "{error}");
    }

    #[test]
    fn a_disabled_feature_is_named() {
        let error = feature_off("redis", "redis");
        assert_eq!(error.kind(), ErrorKind::Unsupported);
        let message = error.to_string();
        assert!(message.contains("needs the `redis` feature"), "{message}");
        assert!(message.contains("features = [\"redis\"]"), "{message}");
    }

    #[test]
    fn every_scheme_has_a_backend_in_the_default_build() {
        for (scheme, feature) in SCHEMES {
            let backend = dispatch(scheme).expect("the default build has every backend");
            assert_eq!(backend.name, *feature);
        }
    }

    #[test]
    fn options_reach_the_backend_and_win_over_the_query() {
        let config =
            StoreConfig::new("sqlite://s.db?table=from_query").option("table", "from_field");
        let parsed: session_sqlite::SqliteConfig = parse(&config).unwrap();
        assert_eq!(parsed.table, "from_field");
        let config = StoreConfig::new(
            "postgres://app:pw@db:5432/app?sslmode=disable&schema=auth&table=s&max_connections=4",
        );
        let parsed: session_postgres::PostgresConfig = parse(&config).unwrap();
        assert_eq!(parsed.url, "postgres://app:pw@db:5432/app?sslmode=disable");
        assert_eq!(
            (parsed.schema.as_str(), parsed.table.as_str()),
            ("auth", "s")
        );
        assert_eq!(parsed.max_connections, 4);
        let parsed: session_redis::RedisConfig = parse(&StoreConfig::new(
            "redis://127.0.0.1:6379/2?key_prefix=web%3A",
        ))
        .unwrap();
        assert_eq!(parsed.url, "redis://127.0.0.1:6379/2");
        assert_eq!(parsed.key_prefix, "web:");
    }

    #[test]
    fn misplaced_and_malformed_options_are_errors() {
        for (url, needle) in [
            (
                "postgres://h/d?key_prefix=x",
                "unknown URL parameter `key_prefix`",
            ),
            ("redis://h?table=x", "unknown URL parameter `table`"),
            ("redis://h?key_prefix=a*", "key prefix"),
            ("memory://?table=x", "unknown option `table`"),
            ("sqlite://s.db?tabel=x", "unknown option `tabel`"),
            ("sqlite://s.db?durability=sometimes", "durability must be"),
            ("sqlite://s.db?busy_timeout=soon", "must be a duration"),
            ("memory://somewhere", "just `memory://`"),
        ] {
            let error = StoreConfig::new(url).check().unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Config, "{url}");
            assert!(error.to_string().contains(needle), "{url}: {error}");
        }
    }

    #[test]
    fn secrets_stay_hidden() {
        let config = StoreConfig::new("postgres://app:hunter2@db/app?password=hunter3")
            .option("sslpassword", "hunter4");
        let debug = format!("{config:?}");
        assert!(!debug.contains("hunter"), "{debug}");
        let shown = serde_json::to_string(&config).unwrap();
        assert!(!shown.contains("hunter"), "{shown}");
        let error = StoreConfig::new("postgres://app:hunter2@db/app?key_prefix=x")
            .check()
            .unwrap_err();
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }

    #[test]
    fn deserializes_from_toml_and_json() {
        let config: StoreConfig = toml::from_str(
            "url = \"sqlite://s.db\"\ntable = \"web\"\ndurability = \"full\"\nbusy_timeout = \"100ms\"\ncreate = false\n",
        )
        .unwrap();
        let parsed: session_sqlite::SqliteConfig = parse(&config).unwrap();
        assert_eq!(parsed.table, "web");
        assert_eq!(parsed.durability, session_sqlite::Durability::Full);
        assert_eq!(parsed.busy_timeout, std::time::Duration::from_millis(100));
        assert!(!parsed.create);
        let config: StoreConfig =
            serde_json::from_str(r#"{"url":"redis://h","key_prefix":"app:"}"#).unwrap();
        let parsed: session_redis::RedisConfig = parse(&config).unwrap();
        assert_eq!(parsed.key_prefix, "app:");
        let typo: StoreConfig =
            serde_json::from_str(r#"{"url":"redis://h","prefix":"x"}"#).unwrap();
        assert!(typo.check().unwrap_err().to_string().contains("`prefix`"));
    }

    /// A duration setting has one name and one form, in a URL, a configuration file and the
    /// backend's own serde alike: `2s` and `2000` (milliseconds) mean the same.
    #[test]
    fn durations_have_one_name_and_one_form_everywhere() {
        let two = std::time::Duration::from_secs(2);
        for url in [
            "redis://h?response_timeout=2s",
            "redis://h?response_timeout=2000",
            "redis://h?response_timeout=2000ms",
        ] {
            let parsed: session_redis::RedisConfig = parse(&StoreConfig::new(url)).unwrap();
            assert_eq!(parsed.response_timeout, two, "{url}");
        }
        for file in [
            "url = \"postgres://h/d\"\nacquire_timeout = \"2s\"\n",
            "url = \"postgres://h/d\"\nacquire_timeout = 2000\n",
        ] {
            let config: StoreConfig = toml::from_str(file).unwrap();
            let parsed: session_postgres::PostgresConfig = parse(&config).unwrap();
            assert_eq!(parsed.acquire_timeout, two, "{file}");
        }
        for json in [
            r#"{"url":"redis://h","wait_timeout":"2s"}"#,
            r#"{"url":"redis://h","wait_timeout":2000}"#,
        ] {
            let direct: session_redis::RedisConfig = serde_json::from_str(json).unwrap();
            assert_eq!(direct.wait_timeout, two, "{json}");
        }
        let old = StoreConfig::new("redis://h?response_timeout_ms=2000")
            .check()
            .unwrap_err();
        assert!(old.to_string().contains("`response_timeout_ms`"), "{old}");
        let bad = StoreConfig::new("mysql://h/d?operation_timeout=1.5s")
            .check()
            .unwrap_err();
        assert!(bad.to_string().contains("must be a duration"), "{bad}");
    }

    #[test]
    fn isolated_replaces_the_namespace() {
        let pg = StoreConfig::new("postgres://h/d?table=sessions")
            .isolated("ns1")
            .unwrap();
        let parsed: session_postgres::PostgresConfig = parse(&pg).unwrap();
        assert_eq!(parsed.table, "ns1");
        let redis = StoreConfig::new("redis://h").isolated("ns1").unwrap();
        let parsed: session_redis::RedisConfig = parse(&redis).unwrap();
        assert_eq!(parsed.key_prefix, "ns1:");
        assert!(StoreConfig::new("redis://h").isolated("a b").is_err());
    }
}
