//! The suite checked against itself: a correct reference store passes every behaviour, and each
//! deliberately broken variant fails at least one. A suite that passes a broken store is a bug in
//! the suite.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use conformance_tests::{StoreFactory, behaviours};
use parking_lot::Mutex;
use session_core::Bytes;
use session_core::time::OffsetDateTime;
use session_core::{
    CreateOutcome, Error, Record, Result, SessionKey, SessionStore, UpdateOutcome, async_trait,
    from_unix_millis, unix_millis,
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
    // Suite v2: one per rule of the contract the first suite did not check.
    /// `touch` reads the record, then writes the whole record back in a second step.
    TouchReadModifyWrite,
    /// Each instance caches what it read and wrote, never told about other instances' writes.
    CachePerInstance,
    /// `delete_expired` also removes records expiring within the next two seconds.
    PurgeAheadOfClock,
    /// At most 5,000 records per namespace: a create beyond that evicts another record.
    EvictsBeyondCapacity,
    /// `update` trims trailing NULs and spaces (as a `CHAR` column would); `create` does not.
    UpdateTrimsData,
    /// `update` truncates data to 64 KiB; `create` does not.
    UpdateTruncatesData,
    /// `read`, `update`, `touch` and `delete` find a key in any namespace; only `create` and
    /// `clear` respect namespaces.
    SingleKeyOpsIgnoreNamespace,
    /// Expiry stored in whole seconds, rounded down.
    ExpirySecondsFloor,
    /// Expiry stored in whole seconds, rounded up.
    ExpirySecondsCeil,
    /// Expiry capped at 30 days ahead (a TTL limit).
    ExpiryCappedAt30Days,
    /// `create` over an expired record continues its version instead of writing 1.
    CreateOverExpiredKeepsVersion,
    /// `update` checks the version before liveness: an expired `previous` with another version
    /// is `Conflict`.
    ExpiredPreviousIsConflict,
    /// Keys compared by their first 16 bytes only.
    KeysComparedByPrefix,
    /// `clear` removes at most 1,000 records per call.
    ClearStopsAtOneThousand,
    /// `create` over an *expired* record checks, then replaces it in a separate step.
    CreateOverExpiredCheckThenReplace,
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
    Flaw::TouchReadModifyWrite,
    Flaw::CachePerInstance,
    Flaw::PurgeAheadOfClock,
    Flaw::EvictsBeyondCapacity,
    Flaw::UpdateTrimsData,
    Flaw::UpdateTruncatesData,
    Flaw::SingleKeyOpsIgnoreNamespace,
    Flaw::ExpirySecondsFloor,
    Flaw::ExpirySecondsCeil,
    Flaw::ExpiryCappedAt30Days,
    Flaw::CreateOverExpiredKeepsVersion,
    Flaw::ExpiredPreviousIsConflict,
    Flaw::KeysComparedByPrefix,
    Flaw::ClearStopsAtOneThousand,
    Flaw::CreateOverExpiredCheckThenReplace,
];

#[derive(Clone)]
struct Row {
    data: Vec<u8>,
    expires_ms: i64,
    version: u64,
}

type Map = HashMap<(u64, SessionKey), Row>;
type Backend = Arc<Mutex<Map>>;

/// A store over a backend shared by every namespace, comparing expiry in whole milliseconds as
/// SQL stores do.
struct ReferenceStore {
    backend: Backend,
    namespace: u64,
    /// Namespaces handed out so far (for the namespace-blind flaw).
    namespaces: Arc<AtomicU64>,
    flaw: Flaw,
    /// This instance's cache (the per-instance cache flaw only).
    cache: Mutex<HashMap<SessionKey, Row>>,
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

    /// The key as this store compares it.
    fn key(&self, key: &SessionKey) -> SessionKey {
        if self.flaw != Flaw::KeysComparedByPrefix {
            return *key;
        }
        let mut bytes = *key.as_bytes();
        bytes[16..].fill(0);
        SessionKey::from_bytes(&bytes).expect("32 bytes")
    }

    /// Where `key` lives for single-key operations: this namespace, or (namespace-blind flaw)
    /// the first namespace holding it.
    fn locate(&self, map: &Map, key: &SessionKey) -> (u64, SessionKey) {
        let key = self.key(key);
        if self.flaw == Flaw::SingleKeyOpsIgnoreNamespace {
            let namespaces = self.namespaces.load(Ordering::Relaxed);
            for ns in 0..=namespaces {
                if map.contains_key(&(ns, key)) {
                    return (ns, key);
                }
            }
        }
        (self.namespace, key)
    }

    fn get_live(&self, map: &Map, key: &SessionKey) -> Option<Row> {
        map.get(&self.locate(map, key))
            .filter(|row| self.live(row, Self::now_ms()))
            .cloned()
    }

    fn row(&self, expires_at: OffsetDateTime, data: &[u8], version: u64) -> Row {
        let mut ms = unix_millis(expires_at);
        match self.flaw {
            Flaw::ExpirySecondsFloor => ms = ms.div_euclid(1000) * 1000,
            Flaw::ExpirySecondsCeil => ms = (ms + 999).div_euclid(1000) * 1000,
            Flaw::ExpiryCappedAt30Days => ms = ms.min(Self::now_ms() + 30 * 86_400_000),
            _ => {}
        }
        Row {
            data: data.to_vec(),
            expires_ms: ms,
            version,
        }
    }

    /// The data `update` stores for `data`.
    fn updated_data<'a>(&self, data: &'a [u8]) -> &'a [u8] {
        match self.flaw {
            Flaw::UpdateTrimsData => {
                let end = data
                    .iter()
                    .rposition(|b| *b != 0 && *b != b' ')
                    .map_or(0, |i| i + 1);
                &data[..end]
            }
            Flaw::UpdateTruncatesData => &data[..data.len().min(64 * 1024)],
            _ => data,
        }
    }

    fn remember(&self, key: &SessionKey, row: Option<Row>) {
        if self.flaw == Flaw::CachePerInstance {
            let mut cache = self.cache.lock();
            match row {
                Some(row) => cache.insert(*key, row),
                None => cache.remove(key),
            };
        }
    }

    /// The window a non-atomic implementation leaves open between its two statements.
    async fn gap() {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}

#[async_trait]
impl SessionStore for ReferenceStore {
    fn capabilities(&self) -> session_core::Capabilities {
        session_core::Capabilities::new()
    }
    async fn create_opts(
        &self,
        key: &SessionKey,
        expires_at: OffsetDateTime,
        data: Bytes,
        options: &session_core::WriteOptions,
    ) -> Result<CreateOutcome> {
        options.check(&self.capabilities())?;
        let id = (self.namespace, self.key(key));
        let mut row = self.row(expires_at, &data, 1);
        match self.flaw {
            Flaw::CreateUpserts => {}
            Flaw::CheckThenInsertCreate => {
                if self.get_live(&self.backend.lock(), key).is_some() {
                    return Ok(CreateOutcome::IdTaken);
                }
                Self::gap().await;
            }
            Flaw::CreateOverExpiredCheckThenReplace => {
                {
                    let mut map = self.backend.lock();
                    match map.get(&id) {
                        Some(old) if self.live(old, Self::now_ms()) => {
                            return Ok(CreateOutcome::IdTaken);
                        }
                        // Expired: replaced below, after the gap.
                        Some(_) => {}
                        None => {
                            map.insert(id, row);
                            return Ok(CreateOutcome::Created);
                        }
                    }
                }
                Self::gap().await;
            }
            _ => {
                let mut map = self.backend.lock();
                if self.get_live(&map, key).is_some() {
                    return Ok(CreateOutcome::IdTaken);
                }
                if self.flaw == Flaw::CreateOverExpiredKeepsVersion
                    && let Some(old) = map.get(&id)
                {
                    row.version = old.version + 1;
                }
                if self.flaw == Flaw::EvictsBeyondCapacity {
                    let ns = self.namespace;
                    let held = map.keys().filter(|(n, _)| *n == ns).count();
                    if held >= 5_000
                        && let Some(victim) = map.keys().find(|(n, _)| *n == ns).copied()
                    {
                        map.remove(&victim);
                    }
                }
                map.insert(id, row.clone());
                drop(map);
                self.remember(key, Some(row));
                return Ok(CreateOutcome::Created);
            }
        }
        self.backend.lock().insert(id, row.clone());
        self.remember(key, Some(row));
        Ok(CreateOutcome::Created)
    }

    async fn read(&self, key: &SessionKey) -> Result<Option<Record>> {
        let cached = if self.flaw == Flaw::CachePerInstance {
            self.cache
                .lock()
                .get(key)
                .filter(|row| self.live(row, Self::now_ms()))
                .cloned()
        } else {
            None
        };
        let row = match cached {
            Some(row) => Some(row),
            None => {
                let map = self.backend.lock();
                let row = if self.flaw == Flaw::ReadReturnsExpired {
                    map.get(&self.locate(&map, key)).cloned()
                } else {
                    self.get_live(&map, key)
                };
                drop(map);
                if let Some(row) = &row {
                    self.remember(key, Some(row.clone()));
                }
                row
            }
        };
        Ok(row.map(|row| Record {
            data: row.data.into(),
            expires_at: from_unix_millis(row.expires_ms).expect("in range"),
            version: row.version,
        }))
    }

    async fn update_opts(
        &self,
        current: &SessionKey,
        previous: &SessionKey,
        expected_version: u64,
        expires_at: OffsetDateTime,
        data: Bytes,
        options: &session_core::WriteOptions,
    ) -> Result<UpdateOutcome> {
        options.check(&self.capabilities())?;
        let version = expected_version + 1;
        let row = self.row(expires_at, self.updated_data(&data), version);
        {
            let mut map = self.backend.lock();
            let from = self.locate(&map, previous);
            if self.flaw == Flaw::ExpiredPreviousIsConflict
                && map
                    .get(&from)
                    .is_some_and(|old| old.version != expected_version)
            {
                return Ok(UpdateOutcome::Conflict);
            }
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
            if self.key(current) != self.key(previous) && self.get_live(&map, current).is_some() {
                return Ok(UpdateOutcome::IdTaken);
            }
            map.remove(&from);
            let to = if self.key(current) == self.key(previous) {
                from
            } else {
                (self.namespace, self.key(current))
            };
            if self.flaw != Flaw::RotationDeleteThenInsert || current == previous {
                map.insert(to, row.clone());
                drop(map);
                self.remember(previous, None);
                self.remember(current, Some(row));
                return Ok(UpdateOutcome::Updated { version });
            }
        }
        Self::gap().await;
        self.backend
            .lock()
            .insert((self.namespace, self.key(current)), row);
        Ok(UpdateOutcome::Updated { version })
    }

    async fn touch(&self, key: &SessionKey, expires_at: OffsetDateTime) -> Result<bool> {
        let new_expiry = self.row(expires_at, b"", 1).expires_ms;
        if self.flaw == Flaw::TouchReadModifyWrite {
            let (id, row) = {
                let map = self.backend.lock();
                let id = self.locate(&map, key);
                match self.get_live(&map, key) {
                    Some(row) => (id, row),
                    None => return Ok(false),
                }
            };
            Self::gap().await;
            self.backend.lock().insert(
                id,
                Row {
                    expires_ms: new_expiry,
                    ..row
                },
            );
            return Ok(true);
        }
        let mut map = self.backend.lock();
        if self.get_live(&map, key).is_none() {
            if self.flaw == Flaw::TouchCreates {
                let row = self.row(expires_at, b"", 1);
                map.insert((self.namespace, self.key(key)), row);
                return Ok(true);
            }
            return Ok(false);
        }
        let id = self.locate(&map, key);
        if let Some(row) = map.get_mut(&id) {
            row.expires_ms = new_expiry;
            let row = row.clone();
            drop(map);
            self.remember(key, Some(row));
        }
        Ok(true)
    }

    async fn delete(&self, key: &SessionKey) -> Result<()> {
        {
            let mut map = self.backend.lock();
            let id = self.locate(&map, key);
            map.remove(&id);
        }
        self.remember(key, None);
        Ok(())
    }

    async fn delete_expired(&self) -> Result<u64> {
        let mut now = Self::now_ms();
        if self.flaw == Flaw::PurgeAheadOfClock {
            now += 2_000;
        }
        let mut map = self.backend.lock();
        let before = map.len();
        map.retain(|(ns, _), row| *ns != self.namespace || row.expires_ms > now);
        Ok((before - map.len()) as u64)
    }

    async fn clear(&self) -> Result<()> {
        let ns = self.namespace;
        let wipe_all = self.flaw == Flaw::ClearWipesEverything;
        let mut map = self.backend.lock();
        if self.flaw == Flaw::ClearStopsAtOneThousand {
            let victims: Vec<_> = map
                .keys()
                .filter(|(n, _)| *n == ns)
                .take(1_000)
                .copied()
                .collect();
            for victim in victims {
                map.remove(&victim);
            }
        } else {
            map.retain(|(row_ns, _), _| !wipe_all && *row_ns != ns);
        }
        drop(map);
        self.cache.lock().clear();
        Ok(())
    }
}

struct ReferenceFactory {
    backend: Backend,
    next_namespace: Arc<AtomicU64>,
    flaw: Flaw,
}

impl ReferenceFactory {
    fn new(flaw: Flaw) -> Self {
        Self {
            backend: Backend::default(),
            next_namespace: Arc::new(AtomicU64::new(0)),
            flaw,
        }
    }

    fn open(&self, namespace: u64) -> Arc<dyn SessionStore> {
        Arc::new(ReferenceStore {
            backend: Arc::clone(&self.backend),
            namespace,
            namespaces: Arc::clone(&self.next_namespace),
            flaw: self.flaw,
            cache: Mutex::new(HashMap::new()),
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
    for behaviour in behaviours() {
        if let (Err(failure), _) = behaviour.check(&factory).await
            && !failure.is_not_applicable()
        {
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

/// The behaviour written for the rule each flaw breaks (other behaviours may catch it too).
fn intended_catcher(flaw: Flaw) -> Option<&'static str> {
    Some(match flaw {
        Flaw::TouchReadModifyWrite => "race_touch_against_delete",
        Flaw::CachePerInstance => "writes_are_visible_across_instances",
        Flaw::PurgeAheadOfClock => "delete_expired_at_scale_is_exact",
        Flaw::EvictsBeyondCapacity => "ten_thousand_sessions",
        Flaw::UpdateTrimsData | Flaw::UpdateTruncatesData => {
            "update_and_rotation_keep_data_exactly"
        }
        Flaw::SingleKeyOpsIgnoreNamespace => "namespaces_are_whole_for_every_operation",
        Flaw::ExpirySecondsFloor | Flaw::ExpirySecondsCeil => "expiry_boundaries_are_exact",
        Flaw::ExpiryCappedAt30Days => "millisecond_precision_everywhere",
        Flaw::CreateOverExpiredKeepsVersion => "create_always_writes_version_one",
        Flaw::ExpiredPreviousIsConflict => "absent_previous_is_never_conflict",
        Flaw::KeysComparedByPrefix => "keys_are_whole",
        Flaw::ClearStopsAtOneThousand => "clear_is_complete_at_scale",
        Flaw::CreateOverExpiredCheckThenReplace => "race_creates_over_expired_record",
        _ => return None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_broken_store_is_caught() {
    let mut uncaught = Vec::new();
    let mut missed = Vec::new();
    // Every flaw at once: most behaviours wait on the clock, not the CPU.
    let runs: Vec<_> = FLAWS
        .iter()
        .map(|&flaw| tokio::spawn(async move { (flaw, failing_behaviours(flaw).await) }))
        .collect();
    for run in runs {
        let (flaw, failed) = run.await.expect("a flaw's run panicked");
        println!("{flaw:?} caught by {} behaviour(s):", failed.len());
        for (name, failure) in &failed {
            println!("    {name}: {failure}");
        }
        if failed.is_empty() {
            uncaught.push(flaw);
        }
        if let Some(intended) = intended_catcher(flaw)
            && !failed.iter().any(|(name, _)| *name == intended)
        {
            missed.push((flaw, intended));
        }
    }
    assert!(
        uncaught.is_empty(),
        "broken stores that pass the whole suite: {uncaught:?}"
    );
    assert!(
        missed.is_empty(),
        "behaviours that miss the flaw they were written for: {missed:?}"
    );
}

#[test]
fn the_behaviour_list_is_complete_and_unique() {
    let all = behaviours();
    let mut names: Vec<&str> = all.iter().map(|b| b.name).collect();
    assert!(names.len() >= 28, "{names:?}");
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), all.len(), "duplicate behaviour names");
}

/// The linearizability family on its own catches stores that break atomicity or visibility, and
/// its failure names the seed and shows a minimal failing history.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn histories_catch_broken_stores_and_name_the_seed() {
    use conformance_tests::behaviours::{HistoryOptions, check_histories};
    for flaw in [
        Flaw::CachePerInstance,
        Flaw::UpdateWithoutVersionCheck,
        Flaw::CreateUpserts,
    ] {
        let factory = ReferenceFactory::new(flaw);
        let options = HistoryOptions {
            histories: 200,
            seed: 1000,
            ..HistoryOptions::default()
        };
        let failure = check_histories(&factory, options)
            .await
            .expect_err(&format!("{flaw:?} passed 200 histories"))
            .to_string();
        println!("{flaw:?}: {failure}");
        assert!(failure.contains("history of seed 1"), "{failure}");
        assert!(failure.contains("minimal failing history"), "{failure}");
        assert!(
            failure.contains("invokes") && failure.contains("returns"),
            "{failure}"
        );
    }
    // And the reference store passes them all.
    let factory = ReferenceFactory::new(Flaw::None);
    check_histories(
        &factory,
        HistoryOptions {
            histories: 200,
            seed: 1000,
            ..HistoryOptions::default()
        },
    )
    .await
    .unwrap();
}
