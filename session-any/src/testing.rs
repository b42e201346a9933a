//! A conformance-suite [`StoreFactory`] over a store URL (feature `conformance`): every store it
//! makes lives in a fresh namespace (SQL table, Redis key prefix) of the server or file the URL
//! names, removed again when the behaviour finishes. Existing sessions are never touched.
//!
//! ```no_run
//! mod conformance {
//!     conformance_tests::suite!(
//!         session_any::testing::UrlFactory::new("sqlite::memory:").expect("a valid URL")
//!     );
//! }
//! ```

use std::sync::Arc;

use conformance_tests::StoreFactory;
use parking_lot::Mutex;
use session_core::{Error, ErrorKind, Result, SessionStore};

use crate::{AnyStore, Backend, StoreConfig};

/// Makes stores from one URL, each in a namespace of its own.
pub struct UrlFactory {
    config: StoreConfig,
    backend: Backend,
    unavailable: Option<String>,
    created: Mutex<Vec<Arc<AnyStore>>>,
    /// For `sqlite::memory:`: one temporary file shared by the factory's stores, so that the two
    /// stores of a pair share it.
    #[cfg(feature = "sqlite")]
    _temp: Option<Arc<tempfile::TempDir>>,
}

impl std::fmt::Debug for UrlFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UrlFactory")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl UrlFactory {
    /// A factory for `url` (checked now; nothing is opened until a store is asked for).
    pub fn new(url: &str) -> Result<Self> {
        Self::with_config(StoreConfig::new(url))
    }

    /// A factory for `config`.
    pub fn with_config(config: StoreConfig) -> Result<Self> {
        let resolved = config.resolve()?;
        #[cfg(feature = "sqlite")]
        let mut temp = None;
        #[allow(unused_mut)]
        let mut config = config;
        // Behaviours run several at a time, each with two pools: keep them small so a check
        // stays well inside a server's connection limit (100 by default).
        if resolved.backend == Backend::Postgres && resolved.max_connections.is_none() {
            config.max_connections = Some(8);
        }
        #[cfg(feature = "sqlite")]
        if resolved.backend == Backend::Sqlite && resolved.path.is_none() {
            let dir = tempfile::Builder::new()
                .prefix("session-check-")
                .tempdir()
                .map_err(|e| {
                    Error::with_source(ErrorKind::Config, "creating a temporary directory", e)
                })?;
            let mut url = format!("sqlite://{}", dir.path().join("check.sqlite").display());
            if let Some((_, query)) = config.url.split_once('?') {
                url.push('?');
                url.push_str(query);
            }
            config.url = url;
            temp = Some(Arc::new(dir));
        }
        Ok(Self {
            config,
            backend: resolved.backend,
            unavailable: None,
            created: Mutex::new(Vec::new()),
            #[cfg(feature = "sqlite")]
            _temp: temp,
        })
    }

    /// A factory for the URL in environment variable `var` (see
    /// [`conformance_tests::server_url`]): without it the behaviours skip loudly, or fail under
    /// `CI` / `SESSION_TEST_REQUIRE=1`.
    pub fn from_env(var: &str) -> Self {
        match conformance_tests::server_url(var) {
            Some(url) => Self::new(&url).unwrap_or_else(|e| panic!("{var}: {e}")),
            None => Self {
                config: StoreConfig::new("memory://"),
                backend: Backend::Memory,
                unavailable: Some(format!("{var} is not set")),
                created: Mutex::new(Vec::new()),
                #[cfg(feature = "sqlite")]
                _temp: None,
            },
        }
    }

    /// A factory for the same URL (and the same temporary file) with no namespaces of its own
    /// yet: one per behaviour when behaviours run at once, so that each one's
    /// [`finish`](StoreFactory::finish) removes only its own namespaces.
    pub fn fresh(&self) -> Self {
        Self {
            config: self.config.clone(),
            backend: self.backend,
            unavailable: self.unavailable.clone(),
            created: Mutex::new(Vec::new()),
            #[cfg(feature = "sqlite")]
            _temp: self._temp.clone(),
        }
    }

    /// The backend of the URL.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Opens one store in `namespace`, remembered for [`StoreFactory::finish`].
    pub async fn open(&self, namespace: &str) -> Result<Arc<AnyStore>> {
        let store = Arc::new(AnyStore::open(&self.config.isolated(namespace)?).await?);
        self.created.lock().push(Arc::clone(&store));
        Ok(store)
    }

    /// Removes every namespace this factory made so far; the first error, if any.
    pub async fn remove_namespaces(&self) -> Result<()> {
        let stores = std::mem::take(&mut *self.created.lock());
        let mut first = Ok(());
        for store in stores {
            if let Err(e) = store.drop_namespace().await
                && first.is_ok()
            {
                first = Err(e);
            }
        }
        first
    }
}

/// A fresh namespace name: `check_` and 16 random hex digits.
pub fn fresh_namespace() -> String {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the OS random number generator");
    format!("check_{:016x}", u64::from_le_bytes(bytes))
}

#[async_trait::async_trait]
impl StoreFactory for UrlFactory {
    async fn store(&self) -> Result<Arc<dyn SessionStore>, Error> {
        Ok(self.open(&fresh_namespace()).await?)
    }

    async fn store_pair(&self) -> Result<(Arc<dyn SessionStore>, Arc<dyn SessionStore>), Error> {
        let namespace = fresh_namespace();
        let first = self.open(&namespace).await?;
        if self.backend == Backend::Memory {
            // Two memory stores never share sessions: a pair is one store seen twice.
            return Ok((Arc::clone(&first) as Arc<dyn SessionStore>, first));
        }
        let second = self.open(&namespace).await?;
        Ok((first, second))
    }

    fn expires_by_itself(&self) -> bool {
        // Redis expires keys itself. (The memory store sweeps a shard only once it holds 64
        // records or more: never in a suite namespace spread over 64 shards.)
        self.backend == Backend::Redis
    }

    fn unavailable(&self) -> Option<String> {
        self.unavailable.clone()
    }

    async fn finish(&self) {
        if let Err(error) = self.remove_namespaces().await {
            tracing::warn!(%error, "could not remove a test namespace");
        }
    }
}
