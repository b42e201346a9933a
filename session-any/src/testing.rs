//! A conformance-suite [`StoreFactory`] over a store URL (feature `conformance`): the factory of
//! the backend the URL names (each backend's `testing::factory_for`), so every store it makes
//! lives in a fresh namespace (SQL table, Redis key prefix) of the server or file the URL
//! names, removed again when the behaviour finishes. Existing sessions are never touched.
//!
//! ```no_run
//! // The `main` of a test target with `harness = false`:
//! conformance_tests::Suite::new()
//!     .stores("sqlite", || {
//!         session_any::testing::UrlFactory::new("sqlite::memory:").expect("a valid URL")
//!     })
//!     .run();
//! ```

use std::fmt;
use std::sync::Arc;

pub use conformance_tests::fresh_namespace;
use conformance_tests::{Namespaces, StoreFactory};
use session_core::{Error, ErrorKind, Result, SessionStore, StoreAdmin};

use crate::StoreConfig;

/// Makes stores from one URL, each in a namespace of its own.
pub struct UrlFactory {
    inner: Option<Box<dyn Namespaces>>,
    backend: &'static str,
    unavailable: Option<String>,
}

impl fmt::Debug for UrlFactory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UrlFactory")
            .field("backend", &self.backend)
            .field("unavailable", &self.unavailable)
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
        let backend = crate::store::backend_of(&config)?;
        Ok(Self {
            inner: Some((backend.factory)(&config)?),
            backend: backend.name,
            unavailable: None,
        })
    }

    /// A factory that cannot make stores here, saying why (its behaviours skip loudly).
    pub fn unavailable(reason: impl Into<String>) -> Self {
        Self {
            inner: None,
            backend: "none",
            unavailable: Some(reason.into()),
        }
    }

    fn inner(&self) -> Result<&dyn Namespaces> {
        self.inner.as_deref().ok_or_else(|| {
            Error::new(
                ErrorKind::Unsupported,
                self.unavailable.clone().unwrap_or_default(),
            )
        })
    }

    /// A factory for the same URL (and the same temporary file) with no namespaces of its own
    /// yet: one per behaviour when behaviours run at once, so that each one's
    /// [`finish`](StoreFactory::finish) removes only its own namespaces.
    pub fn fresh(&self) -> Self {
        Self {
            inner: self.inner.as_ref().map(|inner| inner.fresh_factory()),
            backend: self.backend,
            unavailable: self.unavailable.clone(),
        }
    }

    /// The backend of the URL (`"postgres"`, …).
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// Opens one store in `namespace`, remembered for [`StoreFactory::finish`].
    pub async fn open(&self, namespace: &str) -> Result<Arc<dyn StoreAdmin>> {
        self.inner()?.open_store(namespace).await
    }

    /// Removes every namespace this factory made so far; the first error, if any.
    pub async fn remove_namespaces(&self) -> Result<()> {
        match &self.inner {
            Some(inner) => inner.remove_all().await,
            None => Ok(()),
        }
    }
}

#[async_trait::async_trait]
impl StoreFactory for UrlFactory {
    async fn store(&self) -> Result<Arc<dyn SessionStore>, Error> {
        self.inner()?.store().await
    }

    async fn store_pair(&self) -> Result<(Arc<dyn SessionStore>, Arc<dyn SessionStore>), Error> {
        self.inner()?.store_pair().await
    }

    fn unavailable(&self) -> Option<String> {
        self.unavailable.clone()
    }

    async fn finish(&self) {
        if let Some(inner) = &self.inner {
            inner.finish().await;
        }
    }
}
