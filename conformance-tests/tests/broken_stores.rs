//! The suite checked against itself: a correct reference store passes every behaviour, and each
//! deliberately broken variant fails at least one. A suite that passes a broken store is a bug in
//! the suite.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use conformance_tests::{BEHAVIOURS, StoreFactory};
use parking_lot::Mutex;
use session_core::time::OffsetDateTime;
use session_core::{
    CreateOutcome, Error, Record, Result, SessionKey, SessionStore, UpdateOutcome, async_trait,
    from_unix_millis, truncate_to_millis, unix_millis,
};

/// The ways a store can get the contract wrong that other session libraries have shipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flaw {
    None,
    /// `create` overwrites whatever is there (an upsert).
    CreateUpserts,
    /// `create` checks, then inserts in a separate step.
    CheckThenInsertCreate,
    /// Rotation deletes the old record, then inserts the new one in a separate step.
    RotationDeleteThenInsert,
    /// `update` ignores the expected version.
    UpdateWithoutVersionCheck,
    /// Expiry compared with `<` instead of `<=`: a record is still live at its expiry instant.
    ExpiryLessThan,
    /// `clear` wipes every namespace of the backend.
    ClearWipesEverything,
    /// `read` returns expired records.
    ReadReturnsExpired,
    /// `update` of a missing key writes it (resurrecting deleted or rotated-away sessions).
    UpdateUpserts,
    /// `touch` of a missing key creates it.
    TouchCreates,
}

const FLAWS: &[Flaw] = &[
    Flaw::CreateUpserts,
    Flaw::CheckThenInsertCreate,
    Flaw::RotationDeleteThenInsert,
    Flaw::UpdateWithoutVersionCheck,
    Flaw::ExpiryLessThan,
    Flaw::ClearWipesEverything,
    Flaw::ReadReturnsExpired,
    Flaw::UpdateUpserts,
    Flaw::TouchCreates,
];

#[derive(Clone)]
struct Row {
    data: Vec<u8>,
    expires_ms: i64,
    version: u64,
}

type Backend = Arc<Mutex<HashMap<(u64, SessionKey), Row>>>;

/// A store over a backend shared by every namespace, comparing expiry in whole milliseconds as
/// SQL stores do.
struct ReferenceStore {
    backend: Backend,
    namespace: u64,
    flaw: Flaw,
}

impl ReferenceStore {
    fn now_ms() -> i64 {
        unix_millis(OffsetDateTime::now_utc())
    }

    fn live(&self, row: &Row, now: i64) -> bool {
        if self.flaw == Flaw::ExpiryLessThan {
            row.expires_ms >= now
        } else {
            row.expires_ms > now
        }
    }

    fn get_live(&self, map: &HashMap<(u64, SessionKey), Row>, key: &SessionKey) -> Option<Row> {
        map.get(&(self.namespace, *key))
            .filter(|row| self.live(row, Self::now_ms()))
            .cloned()
    }

    fn row(expires_at: OffsetDateTime, data: &[u8], version: u64) -> Row {
        Row {
            data: data.to_vec(),
            expires_ms: unix_millis(expires_at),
            version,
        }
    }

    /// The window a non-atomic implementation leaves open between its two statements.
    async fn gap() {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}

#[async_trait]
impl SessionStore for ReferenceStore {
    async fn create(
        &self,
        key: &SessionKey,
        expires_at: OffsetDateTime,
        data: &[u8],
    ) -> Result<CreateOutcome> {
        let id = (self.namespace, *key);
        match self.flaw {
            Flaw::CreateUpserts => {}
            Flaw::CheckThenInsertCreate => {
                if self.get_live(&self.backend.lock(), key).is_some() {
                    return Ok(CreateOutcome::IdTaken);
                }
                Self::gap().await;
            }
            _ => {
                let mut map = self.backend.lock();
                if self.get_live(&map, key).is_some() {
                    return Ok(CreateOutcome::IdTaken);
                }
                map.insert(id, Self::row(expires_at, data, 1));
                return Ok(CreateOutcome::Created);
            }
        }
        self.backend
            .lock()
            .insert(id, Self::row(expires_at, data, 1));
        Ok(CreateOutcome::Created)
    }

    async fn read(&self, key: &SessionKey) -> Result<Option<Record>> {
        let map = self.backend.lock();
        let row = if self.flaw == Flaw::ReadReturnsExpired {
            map.get(&(self.namespace, *key)).cloned()
        } else {
            self.get_live(&map, key)
        };
        Ok(row.map(|row| Record {
            data: row.data.into(),
            expires_at: from_unix_millis(row.expires_ms).expect("in range"),
            version: row.version,
        }))
    }

    async fn update(
        &self,
        current: &SessionKey,
        previous: &SessionKey,
        expected_version: u64,
        expires_at: OffsetDateTime,
        data: &[u8],
    ) -> Result<UpdateOutcome> {
        let version = expected_version + 1;
        let row = Self::row(expires_at, data, version);
        {
            let mut map = self.backend.lock();
            match self.get_live(&map, previous) {
                None if self.flaw == Flaw::UpdateUpserts => {}
                None => return Ok(UpdateOutcome::NotFound),
                Some(row)
                    if row.version != expected_version
                        && self.flaw != Flaw::UpdateWithoutVersionCheck =>
                {
                    return Ok(UpdateOutcome::Conflict);
                }
                Some(_) => {}
            }
            if current != previous && self.get_live(&map, current).is_some() {
                return Ok(UpdateOutcome::IdTaken);
            }
            map.remove(&(self.namespace, *previous));
            if self.flaw != Flaw::RotationDeleteThenInsert || current == previous {
                map.insert((self.namespace, *current), row);
                return Ok(UpdateOutcome::Updated { version });
            }
        }
        Self::gap().await;
        self.backend.lock().insert((self.namespace, *current), row);
        Ok(UpdateOutcome::Updated { version })
    }

    async fn touch(&self, key: &SessionKey, expires_at: OffsetDateTime) -> Result<bool> {
        let mut map = self.backend.lock();
        if self.get_live(&map, key).is_none() {
            if self.flaw == Flaw::TouchCreates {
                map.insert((self.namespace, *key), Self::row(expires_at, b"", 1));
                return Ok(true);
            }
            return Ok(false);
        }
        if let Some(row) = map.get_mut(&(self.namespace, *key)) {
            row.expires_ms = unix_millis(truncate_to_millis(expires_at));
        }
        Ok(true)
    }

    async fn delete(&self, key: &SessionKey) -> Result<()> {
        self.backend.lock().remove(&(self.namespace, *key));
        Ok(())
    }

    async fn delete_expired(&self) -> Result<u64> {
        let now = Self::now_ms();
        let mut map = self.backend.lock();
        let before = map.len();
        map.retain(|(ns, _), row| *ns != self.namespace || self.live(row, now));
        Ok((before - map.len()) as u64)
    }

    async fn clear(&self) -> Result<()> {
        let ns = self.namespace;
        let wipe_all = self.flaw == Flaw::ClearWipesEverything;
        self.backend
            .lock()
            .retain(|(row_ns, _), _| !wipe_all && *row_ns != ns);
        Ok(())
    }
}

struct ReferenceFactory {
    backend: Backend,
    next_namespace: AtomicU64,
    flaw: Flaw,
}

impl ReferenceFactory {
    fn new(flaw: Flaw) -> Self {
        Self {
            backend: Backend::default(),
            next_namespace: AtomicU64::new(0),
            flaw,
        }
    }

    fn open(&self, namespace: u64) -> Arc<dyn SessionStore> {
        Arc::new(ReferenceStore {
            backend: Arc::clone(&self.backend),
            namespace,
            flaw: self.flaw,
        })
    }
}

#[async_trait]
impl StoreFactory for ReferenceFactory {
    async fn store(&self) -> Result<Arc<dyn SessionStore>, Error> {
        Ok(self.open(self.next_namespace.fetch_add(1, Ordering::Relaxed)))
    }

    async fn store_pair(&self) -> Result<(Arc<dyn SessionStore>, Arc<dyn SessionStore>), Error> {
        let namespace = self.next_namespace.fetch_add(1, Ordering::Relaxed);
        Ok((self.open(namespace), self.open(namespace)))
    }
}

/// Runs every behaviour against a store with `flaw` and returns the names of those that failed.
async fn failing_behaviours(flaw: Flaw) -> Vec<(&'static str, String)> {
    let factory = ReferenceFactory::new(flaw);
    let mut failed = Vec::new();
    for behaviour in BEHAVIOURS {
        if let (Err(failure), _) = behaviour.check(&factory).await {
            failed.push((behaviour.name, failure.to_string()));
        }
    }
    failed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_reference_store_passes_every_behaviour() {
    let failed = failing_behaviours(Flaw::None).await;
    assert!(failed.is_empty(), "a correct store failed: {failed:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_broken_store_is_caught() {
    let mut uncaught = Vec::new();
    for &flaw in FLAWS {
        let failed = failing_behaviours(flaw).await;
        println!("{flaw:?} caught by {} behaviour(s):", failed.len());
        for (name, failure) in &failed {
            println!("    {name}: {failure}");
        }
        if failed.is_empty() {
            uncaught.push(flaw);
        }
    }
    assert!(
        uncaught.is_empty(),
        "broken stores that pass the whole suite: {uncaught:?}"
    );
}

#[test]
fn the_behaviour_list_is_complete_and_unique() {
    let mut names: Vec<&str> = BEHAVIOURS.iter().map(|b| b.name).collect();
    assert!(names.len() >= 28, "{names:?}");
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), BEHAVIOURS.len(), "duplicate behaviour names");
}
