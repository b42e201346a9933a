//! The `Session` handle's promises under races and in-doubt writes, on every backend (memory,
//! SQLite, PostgreSQL, Redis through `session_any`): no resurrection after a replay, read-set
//! conflicts (blind write / read-then-write / remove-once, with 2 and 32 handles), changes made
//! through a clone during a save, and writes whose reply was lost.
//!
//! A `Faulty` wrapper injects the concurrent event at a chosen moment: a delete right after an
//! update met `Conflict`, a pause inside an update, a reply lost after the write was applied, a
//! failure before the write reached the store.

use session_core::SessionStoreExt as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use serde_json::json;
use session_any::StoreAdmin;
use session_any::testing::{UrlFactory, fresh_namespace};
use session_manager::Bytes;
use session_manager::time::OffsetDateTime;
use session_manager::{
    CreateOutcome, Error, ErrorKind, Record, Result, Session, SessionId, SessionKey,
    SessionManager, SessionStore, UpdateOutcome, async_trait,
};
use tokio::sync::oneshot;

type Manager = Arc<SessionManager<Arc<dyn SessionStore>>>;

/// Forwards to `inner`, with faults switched on by the test.
struct Faulty {
    inner: Arc<dyn StoreAdmin>,
    /// Create and update reach the store, then fail (transient): a lost reply.
    lost_reply: AtomicBool,
    /// Create and update fail (transient) before reaching the store.
    fail_before: AtomicBool,
    /// Deleted (once) right after an update answers `Conflict`: a logout racing the replay.
    delete_on_conflict: Mutex<Option<SessionKey>>,
    /// The next update tells the test it started, then waits for the go-ahead.
    pause: Mutex<Option<(oneshot::Sender<()>, oneshot::Receiver<()>)>>,
}

impl Faulty {
    fn new(inner: Arc<dyn StoreAdmin>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            lost_reply: AtomicBool::new(false),
            fail_before: AtomicBool::new(false),
            delete_on_conflict: Mutex::new(None),
            pause: Mutex::new(None),
        })
    }

    fn before(&self) -> Result<()> {
        if self.fail_before.load(Ordering::Acquire) {
            return Err(
                Error::new(ErrorKind::Backend, "injected: refused before sending").transient(true),
            );
        }
        Ok(())
    }

    fn after<T>(&self, outcome: Result<T>) -> Result<T> {
        let outcome = outcome?;
        if self.lost_reply.load(Ordering::Acquire) {
            return Err(Error::new(ErrorKind::Backend, "injected: reply lost").transient(true));
        }
        Ok(outcome)
    }
}

#[async_trait]
impl SessionStore for Faulty {
    async fn create_opts(
        &self,
        key: &SessionKey,
        at: OffsetDateTime,
        data: Bytes,
        options: &session_manager::WriteOptions,
    ) -> Result<CreateOutcome> {
        self.before()?;
        self.after(self.inner.create_opts(key, at, data, options).await)
    }
    async fn read(&self, key: &SessionKey) -> Result<Option<Record>> {
        self.inner.read(key).await
    }
    async fn update_opts(
        &self,
        current: &SessionKey,
        previous: &SessionKey,
        version: u64,
        at: OffsetDateTime,
        data: Bytes,
        _options: &session_manager::WriteOptions,
    ) -> Result<UpdateOutcome> {
        self.before()?;
        let pause = self.pause.lock().take();
        if let Some((started, go)) = pause {
            let _ = started.send(());
            let _ = go.await;
        }
        let outcome = self
            .inner
            .update(current, previous, version, at, data)
            .await;
        if matches!(outcome, Ok(UpdateOutcome::Conflict)) {
            let victim = self.delete_on_conflict.lock().take();
            if let Some(key) = victim {
                self.inner.delete(&key).await?;
            }
        }
        self.after(outcome)
    }
    async fn touch(&self, key: &SessionKey, at: OffsetDateTime) -> Result<bool> {
        self.inner.touch(key, at).await
    }
    async fn delete(&self, key: &SessionKey) -> Result<()> {
        self.inner.delete(key).await
    }
    async fn delete_expired(&self) -> Result<u64> {
        self.inner.delete_expired().await
    }
    async fn clear(&self) -> Result<()> {
        self.inner.clear().await
    }

    fn capabilities(&self) -> session_manager::Capabilities {
        self.inner.capabilities()
    }
}

/// One test's world: a store in a fresh namespace, the faulty wrapper over it, a manager.
struct World {
    store: Arc<dyn StoreAdmin>,
    faulty: Arc<Faulty>,
    manager: Manager,
}

impl World {
    fn handle(&self, id: Option<&SessionId>) -> Session {
        Session::with_manager(id.cloned(), Arc::clone(&self.manager), None)
    }

    /// A saved session holding `{"origin": true}` plus `extra`; returns its id.
    async fn saved(&self, extra: &[(&str, serde_json::Value)]) -> SessionId {
        let session = self.handle(None);
        session.insert("origin", true).await.unwrap();
        for (key, value) in extra {
            session.insert(key, value).await.unwrap();
        }
        session.save().await.unwrap();
        session.id().unwrap()
    }

    async fn live(&self) -> u64 {
        self.store.counts().await.unwrap().live
    }

    async fn version(&self, id: &SessionId) -> Option<u64> {
        self.store.read(&id.key()).await.unwrap().map(|r| r.version)
    }

    async fn value(&self, id: &SessionId, key: &str) -> Option<serde_json::Value> {
        self.handle(Some(id)).get_value(key).await.unwrap()
    }
}

/// Runs `scenario` over a store of `factory` in a fresh namespace (skipping loudly when the
/// backend's server is not configured), then removes the namespace.
async fn run<F, Fut>(factory: UrlFactory, scenario: F)
where
    F: FnOnce(World) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    if let Some(reason) = conformance_tests::StoreFactory::unavailable(&factory) {
        eprintln!("SKIPPED: front test: {reason}");
        return;
    }
    let store = factory.open(&fresh_namespace()).await.unwrap();
    let faulty = Faulty::new(Arc::clone(&store));
    let manager: Manager = Arc::new(SessionManager::new(
        Arc::clone(&faulty) as Arc<dyn SessionStore>
    ));
    scenario(World {
        store,
        faulty,
        manager,
    })
    .await;
    factory.remove_namespaces().await.unwrap();
}

/// Item 1: a save meets `Conflict`, and the session is logged out before the replay reloads it:
/// `NotFound`, nothing written under any id, on this save and every later one.
async fn logout_during_a_replay_is_not_undone(w: World) {
    let id = w.saved(&[]).await;
    let slow = w.handle(Some(&id));
    slow.get_value("origin").await.unwrap();
    let other = w.handle(Some(&id));
    other.insert("other", 1).await.unwrap();
    other.save().await.unwrap();
    *w.faulty.delete_on_conflict.lock() = Some(id.key());

    slow.insert("cart", 3).await.unwrap();
    let error = slow.save().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NotFound, "{error}");
    assert_eq!(w.live().await, 0, "no session under any id");
    assert!(slow.id().is_none());
    slow.insert("cart", 4).await.unwrap();
    assert_eq!(slow.save().await.unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(
        slow.cycle_id().await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(w.live().await, 0, "later saves write nothing either");
}

/// Item 1, rotation: the session is logged out while a rotation replays.
async fn logout_during_a_rotation_replay_is_not_undone(w: World) {
    let id = w.saved(&[]).await;
    let slow = w.handle(Some(&id));
    slow.get_value("origin").await.unwrap();
    let other = w.handle(Some(&id));
    other.insert("other", 1).await.unwrap();
    other.save().await.unwrap();
    *w.faulty.delete_on_conflict.lock() = Some(id.key());
    assert_eq!(
        slow.cycle_id().await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(w.live().await, 0);
}

/// Starts `n` handles on session `id`, each loaded (having read `origin`).
async fn loaded_handles(w: &World, id: &SessionId, n: usize) -> Vec<Session> {
    let mut handles = Vec::with_capacity(n);
    for _ in 0..n {
        let handle = w.handle(Some(id));
        assert_eq!(handle.get_value("origin").await.unwrap(), Some(json!(true)));
        handles.push(handle);
    }
    handles
}

/// Saves every handle at once; the results in handle order.
async fn save_all(handles: Vec<Session>) -> Vec<Result<()>> {
    let tasks: Vec<_> = handles
        .into_iter()
        .map(|h| tokio::spawn(async move { h.save().await }))
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    results
}

/// Row "blind write": every handle's insert persists (different keys), one value per shared
/// key wins, and each handle wrote once.
async fn blind_writes_merge(w: World, n: usize) {
    let id = w.saved(&[]).await;
    let handles = loaded_handles(&w, &id, n).await;
    for (i, h) in handles.iter().enumerate() {
        h.insert(&format!("k{i}"), i).await.unwrap();
        h.insert("shared", i).await.unwrap();
    }
    for result in save_all(handles).await {
        result.unwrap();
    }
    assert_eq!(w.version(&id).await, Some(1 + n as u64));
    for i in 0..n {
        assert_eq!(w.value(&id, &format!("k{i}")).await, Some(json!(i)));
    }
    let shared = w.value(&id, "shared").await.unwrap().as_u64().unwrap();
    assert!(shared < n as u64);

    // In order: the save that reaches the store last wins, also with a value equal to the one
    // it loaded (written, not dropped as unchanged).
    let a = w.handle(Some(&id));
    let b = w.handle(Some(&id));
    a.get_value("origin").await.unwrap();
    b.get_value("origin").await.unwrap();
    b.insert("shared", "b").await.unwrap();
    b.save().await.unwrap();
    a.insert("shared", shared).await.unwrap();
    a.save().await.unwrap();
    assert_eq!(w.value(&id, "shared").await, Some(json!(shared)));
}

/// Row "read-then-write": of `n` handles incrementing a counter they read, exactly one save
/// succeeds and the others get `Conflict` with nothing written; retried on fresh data, every
/// increment counts.
async fn read_then_write_conflicts(w: World, n: usize) {
    let id = w.saved(&[("counter", json!(0))]).await;
    let handles = loaded_handles(&w, &id, n).await;
    for h in &handles {
        let value: u64 = h.get("counter").await.unwrap().unwrap();
        h.insert("counter", value + 1).await.unwrap();
    }
    let results = save_all(handles).await;
    let won = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(won, 1, "exactly one read-modify-write lands");
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(r.kind(), ErrorKind::Conflict, "{r}");
    }
    assert_eq!(w.value(&id, "counter").await, Some(json!(1)));
    assert_eq!(w.version(&id).await, Some(2), "losers wrote nothing");

    // An application that redoes its work on Conflict loses no increment.
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let h = w.handle(Some(&id));
            tokio::spawn(async move {
                for _ in 0..10 * n {
                    let value: u64 = h.get("counter").await.unwrap().unwrap();
                    h.insert("counter", value + 1).await.unwrap();
                    match h.save().await {
                        Ok(()) => return,
                        Err(e) if e.kind() == ErrorKind::Conflict => h.discard(),
                        Err(e) => panic!("{e}"),
                    }
                }
                panic!("no progress");
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(w.value(&id, "counter").await, Some(json!(1 + n as u64)));
}

/// Row "remove-once": of `n` handles taking one one-time value, exactly one save succeeds.
async fn remove_once_conflicts(w: World, n: usize) {
    let id = w.saved(&[("oauth_state", json!("s3cr3t"))]).await;
    let handles = loaded_handles(&w, &id, n).await;
    for h in &handles {
        let taken: Option<String> = h.remove("oauth_state").await.unwrap();
        assert_eq!(taken.as_deref(), Some("s3cr3t"));
    }
    let results = save_all(handles).await;
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "taken once"
    );
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(r.kind(), ErrorKind::Conflict, "{r}");
    }
    assert_eq!(w.value(&id, "oauth_state").await, None);
    assert_eq!(w.version(&id).await, Some(2));
}

/// Item 3: an insert through a clone while a save is in flight is saved by the next save.
async fn a_clone_insert_during_a_save_is_kept(w: World) {
    let id = w.saved(&[]).await;
    let session = w.handle(Some(&id));
    session.insert("a", 1).await.unwrap();
    let (started_tx, started_rx) = oneshot::channel();
    let (go_tx, go_rx) = oneshot::channel();
    *w.faulty.pause.lock() = Some((started_tx, go_rx));
    let saving = {
        let session = session.clone();
        tokio::spawn(async move { session.save().await })
    };
    started_rx.await.unwrap();
    let clone = session.clone();
    clone.insert("b", 2).await.unwrap();
    go_tx.send(()).unwrap();
    saving.await.unwrap().unwrap();
    assert_eq!(w.value(&id, "b").await, None, "b was not part of that save");
    session.save().await.unwrap();
    assert_eq!(w.value(&id, "a").await, Some(json!(1)));
    assert_eq!(
        w.value(&id, "b").await,
        Some(json!(2)),
        "b saved by the next save"
    );
}

/// Item 7: a save, a rotation and a create whose reply was lost after the store applied them
/// are reported as successes (the rotation with its new id); ones refused before reaching the
/// store are errors and changed nothing.
async fn in_doubt_writes_are_resolved_by_rereading(w: World) {
    let id = w.saved(&[]).await;
    let session = w.handle(Some(&id));
    session.insert("n", 1).await.unwrap();
    w.faulty.lost_reply.store(true, Ordering::Release);
    session.save().await.unwrap();
    assert_eq!(w.version(&id).await, Some(2));
    assert_eq!(w.value(&id, "n").await, Some(json!(1)));

    session.insert("n", 2).await.unwrap();
    session.cycle_id().await.unwrap();
    let new_id = session.id().unwrap();
    assert_ne!(new_id, id);
    assert_eq!(w.version(&id).await, None, "old id dead");
    assert_eq!(w.version(&new_id).await, Some(3));
    assert_eq!(w.value(&new_id, "n").await, Some(json!(2)));

    let fresh = w.handle(None);
    fresh.insert("new", true).await.unwrap();
    fresh.save().await.unwrap();
    let fresh_id = fresh.id().expect("created although the reply was lost");
    assert_eq!(w.version(&fresh_id).await, Some(1));
    w.faulty.lost_reply.store(false, Ordering::Release);

    // Refused before reaching the store: errors, and nothing changed.
    w.faulty.fail_before.store(true, Ordering::Release);
    session.insert("n", 3).await.unwrap();
    let error = session.save().await.unwrap_err();
    assert!(error.is_transient(), "{error}");
    assert_eq!(w.version(&new_id).await, Some(3));
    let error = session.cycle_id().await.unwrap_err();
    assert!(error.is_transient(), "{error}");
    assert_eq!(
        session.id(),
        Some(new_id.clone()),
        "the handle keeps its id"
    );
    assert_eq!(w.version(&new_id).await, Some(3));
    let before = w.live().await;
    let other = w.handle(None);
    other.insert("x", 1).await.unwrap();
    assert!(other.save().await.unwrap_err().is_transient());
    assert_eq!(w.live().await, before);
    w.faulty.fail_before.store(false, Ordering::Release);
    session.save().await.unwrap();
    assert_eq!(w.value(&new_id, "n").await, Some(json!(3)));
}

/// One `#[tokio::test]` per `name => scenario` (a `FnOnce(World)` future), over `factory()`.
macro_rules! scenarios {
    ($($name:ident => $scenario:expr;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $name() {
            run(factory(), $scenario).await;
        }
    )*};
}

macro_rules! front_tests {
    ($($backend:ident => $factory:expr;)*) => {$(
        mod $backend {
            use super::*;

            fn factory() -> UrlFactory {
                $factory
            }

            scenarios! {
                logout_during_a_replay_is_not_undone => super::logout_during_a_replay_is_not_undone;
                logout_during_a_rotation_replay_is_not_undone =>
                    super::logout_during_a_rotation_replay_is_not_undone;
                blind_writes_merge_2 => |w| super::blind_writes_merge(w, 2);
                blind_writes_merge_32 => |w| super::blind_writes_merge(w, 32);
                read_then_write_conflicts_2 => |w| super::read_then_write_conflicts(w, 2);
                read_then_write_conflicts_32 => |w| super::read_then_write_conflicts(w, 32);
                remove_once_conflicts_2 => |w| super::remove_once_conflicts(w, 2);
                remove_once_conflicts_32 => |w| super::remove_once_conflicts(w, 32);
                a_clone_insert_during_a_save_is_kept => super::a_clone_insert_during_a_save_is_kept;
                in_doubt_writes_are_resolved_by_rereading =>
                    super::in_doubt_writes_are_resolved_by_rereading;
            }
        }
    )*};
}

front_tests! {
    memory => UrlFactory::new("memory://").unwrap();
    sqlite => UrlFactory::new("sqlite::memory:").unwrap();
    postgres => session_test_support::from_env("SESSION_TEST_POSTGRES_URL", UrlFactory::new, UrlFactory::unavailable);
    redis => session_test_support::from_env("SESSION_TEST_REDIS_URL", UrlFactory::new, UrlFactory::unavailable);
    mysql => session_test_support::from_env(session_test_support::MYSQL, UrlFactory::new, UrlFactory::unavailable);
}
