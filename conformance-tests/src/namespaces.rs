//! [`NamespaceFactory`]: a [`StoreFactory`] for any backend whose configuration implements
//! [`BackendConfig`], each store in a fresh namespace of the same server or file.

use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use session_core::{BackendConfig, Error, Result, SessionStore, StoreAdmin};

use crate::StoreFactory;

/// Makes stores from one configuration, each in a namespace of its own
/// ([`BackendConfig::isolated`] with a [`fresh_namespace`] name), and removes those namespaces
/// when a behaviour finishes ([`StoreAdmin::drop_namespace`]). Existing sessions are never
/// touched.
///
/// ```
/// use conformance_tests::NamespaceFactory;
/// use session_memory::MemoryConfig;
///
/// let suite = conformance_tests::Suite::new()
///     .stores("memory", || NamespaceFactory::new(MemoryConfig::default()));
/// ```
pub struct NamespaceFactory<C: BackendConfig> {
    base: Option<C>,
    unavailable: Option<String>,
    opened: Mutex<Vec<Arc<C::Store>>>,
}

impl<C: BackendConfig> fmt::Debug for NamespaceFactory<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NamespaceFactory")
            .field("base", &self.base)
            .field("unavailable", &self.unavailable)
            .finish_non_exhaustive()
    }
}

impl<C: BackendConfig> NamespaceFactory<C> {
    /// Stores in fresh namespaces of `base`'s server or file.
    pub fn new(base: C) -> Self {
        Self {
            base: Some(base),
            unavailable: None,
            opened: Mutex::new(Vec::new()),
        }
    }

    /// A factory that cannot make stores here, and says why (for example: no server
    /// configured); [`run_test`](crate::run_test) skips its behaviours loudly.
    pub fn unavailable(reason: impl Into<String>) -> Self {
        Self {
            base: None,
            unavailable: Some(reason.into()),
            opened: Mutex::new(Vec::new()),
        }
    }

    /// The configuration namespaces are made from (`None` when unavailable).
    pub fn base(&self) -> Option<&C> {
        self.base.as_ref()
    }

    /// A factory over the same configuration with no namespaces of its own yet: one per
    /// behaviour when behaviours run at once, so that each one's
    /// [`finish`](StoreFactory::finish) removes only its own namespaces.
    pub fn fresh(&self) -> Self {
        Self {
            base: self.base.clone(),
            unavailable: self.unavailable.clone(),
            opened: Mutex::new(Vec::new()),
        }
    }

    /// Opens one store in `namespace`, remembered for [`remove_namespaces`](Self::remove_namespaces).
    pub async fn open(&self, namespace: &str) -> Result<Arc<C::Store>> {
        let base = self.base.as_ref().ok_or_else(|| {
            Error::new(
                session_core::ErrorKind::Unsupported,
                self.unavailable.clone().unwrap_or_default(),
            )
        })?;
        let store = Arc::new(base.isolated(namespace)?.open().await?);
        self.opened
            .lock()
            .expect("not poisoned")
            .push(Arc::clone(&store));
        Ok(store)
    }

    /// Opens one store in a fresh namespace.
    pub async fn open_fresh(&self) -> Result<Arc<C::Store>> {
        self.open(&fresh_namespace()).await
    }

    /// Removes every namespace this factory made so far; the first error, if any.
    pub async fn remove_namespaces(&self) -> Result<()> {
        let stores = std::mem::take(&mut *self.opened.lock().expect("not poisoned"));
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

/// A [`NamespaceFactory`] of any backend, type-erased: for tools that pick the backend at run
/// time (`session-any`, `sessionctl check`).
#[async_trait]
pub trait Namespaces: StoreFactory {
    /// Opens one store in `namespace` ([`NamespaceFactory::open`]).
    async fn open_store(&self, namespace: &str) -> Result<Arc<dyn StoreAdmin>>;

    /// A factory over the same configuration with no namespaces of its own yet
    /// ([`NamespaceFactory::fresh`]).
    fn fresh_factory(&self) -> Box<dyn Namespaces>;

    /// Removes every namespace this factory made so far
    /// ([`NamespaceFactory::remove_namespaces`]).
    async fn remove_all(&self) -> Result<()>;
}

#[async_trait]
impl<C: BackendConfig> Namespaces for NamespaceFactory<C> {
    async fn open_store(&self, namespace: &str) -> Result<Arc<dyn StoreAdmin>> {
        Ok(self.open(namespace).await?)
    }

    fn fresh_factory(&self) -> Box<dyn Namespaces> {
        Box::new(self.fresh())
    }

    async fn remove_all(&self) -> Result<()> {
        self.remove_namespaces().await
    }
}

/// A fresh namespace name: `check_` and 16 random hex digits (a plain identifier, so it is a
/// valid table name as well as a key prefix).
pub fn fresh_namespace() -> String {
    format!("check_{:016x}", rand::random::<u64>())
}

#[async_trait]
impl<C: BackendConfig> StoreFactory for NamespaceFactory<C> {
    async fn store(&self) -> Result<Arc<dyn SessionStore>, Error> {
        Ok(self.open_fresh().await?)
    }

    async fn store_pair(&self) -> Result<(Arc<dyn SessionStore>, Arc<dyn SessionStore>), Error> {
        let namespace = fresh_namespace();
        let first = self.open(&namespace).await?;
        if !first.capabilities().shared {
            // Two instances of a private store never share sessions: one store seen twice.
            return Ok((Arc::clone(&first) as Arc<dyn SessionStore>, first));
        }
        let second = self.open(&namespace).await?;
        Ok((first, second))
    }

    fn unavailable(&self) -> Option<String> {
        self.unavailable.clone()
    }

    async fn finish(&self) {
        if let Err(error) = self.remove_namespaces().await {
            eprintln!("could not remove a test namespace: {error}");
        }
    }
}
