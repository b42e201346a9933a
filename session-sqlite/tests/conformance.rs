//! The whole conformance suite against `SqliteStore`, each store on a fresh file; `store_pair`
//! opens two independent stores on one file, as two application processes would.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use conformance_tests::StoreFactory;
use session_core::{Error, SessionStore, async_trait};
use session_sqlite::{SqliteConfig, SqliteStore};
use tempfile::TempDir;

struct FreshFiles {
    dir: TempDir,
    next: AtomicUsize,
}

impl FreshFiles {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("a temporary directory"),
            next: AtomicUsize::new(0),
        }
    }

    fn config(&self) -> SqliteConfig {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        SqliteConfig::new(self.dir.path().join(format!("sessions-{n}.sqlite")))
    }
}

#[async_trait]
impl StoreFactory for FreshFiles {
    async fn store(&self) -> Result<Arc<dyn SessionStore>, Error> {
        Ok(Arc::new(SqliteStore::with_config(self.config()).await?))
    }

    async fn store_pair(&self) -> Result<(Arc<dyn SessionStore>, Arc<dyn SessionStore>), Error> {
        let config = self.config();
        let first = SqliteStore::with_config(config.clone()).await?;
        let second = SqliteStore::with_config(config).await?;
        Ok((Arc::new(first), Arc::new(second)))
    }
}

conformance_tests::suite!(FreshFiles::new());
