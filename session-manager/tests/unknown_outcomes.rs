//! The manager's re-read after a write whose outcome is unknown (a transient error): it resolves
//! a lost reply, stays inside the store's deadline, and never vouches for a write the store
//! would only acknowledge with more than the re-read can see (replicas).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use session_manager::{ErrorKind, SessionManager};
use session_memory::MemoryStore;

mod common;
use common::Flaky;

fn manager() -> (
    Arc<Flaky<MemoryStore>>,
    SessionManager<Arc<Flaky<MemoryStore>>>,
) {
    let store = Arc::new(Flaky::new(MemoryStore::new()));
    (Arc::clone(&store), SessionManager::new(store))
}

#[tokio::test]
async fn a_lost_reply_is_resolved_by_a_reread() {
    let (store, manager) = manager();
    let mut state = manager.create(&b"v1"[..]).await.unwrap();
    store.fail_after_write.store(true, Ordering::Release);
    state.set_data(&b"v2"[..]);
    manager.save(&mut state).await.unwrap();
    assert_eq!(state.version(), 2);
    let created = manager.create(&b"new"[..]).await.unwrap();
    assert_eq!(created.version(), 1);
}

/// With `wait_replicas`, a write is acknowledged only once replicas hold it; a re-read of the
/// master cannot show that, so a lost acknowledgement stays an error, though the master holds
/// the write.
#[tokio::test]
async fn no_reread_vouches_for_a_write_replicas_must_confirm() {
    let (store, manager) = manager();
    let mut state = manager.create(&b"v1"[..]).await.unwrap();
    store.rereads_unconfirmed.store(true, Ordering::Release);
    store.fail_after_write.store(true, Ordering::Release);
    state.set_data(&b"v2"[..]);
    let error = manager.save(&mut state).await.unwrap_err();
    assert!(error.is_transient(), "{error}");
    assert_eq!(state.version(), 1, "the save was not acknowledged");
    let stored = manager.load(state.id()).await.unwrap().unwrap();
    assert_eq!(stored.version(), 2, "the write did reach the store");
    assert_eq!(
        manager.create(&b"x"[..]).await.unwrap_err().kind(),
        ErrorKind::Backend,
        "nor is a create vouched for"
    );
    let before = state.id().clone();
    assert!(
        manager.cycle_id(&mut state).await.is_err(),
        "nor a rotation"
    );
    assert_eq!(state.id(), &before);
}

/// A write that used up the store's deadline leaves its re-read a tenth of it: the save answers
/// (with the original error) within the deadline plus a tenth, however long the read would
/// take. The slack allows for scheduling; a re-read with a deadline of its own took 5 s.
#[tokio::test]
async fn the_reread_stays_inside_the_stores_deadline() {
    let (store, manager) = manager();
    let mut state = manager.create(&b"v1"[..]).await.unwrap();
    let deadline = Duration::from_millis(300);
    store
        .deadline_ms
        .store(deadline.as_millis() as u64, Ordering::Release);
    store
        .write_delay_ms
        .store(deadline.as_millis() as u64, Ordering::Release);
    store.read_delay_ms.store(5_000, Ordering::Release);
    store.fail_after_write.store(true, Ordering::Release);
    state.set_data(&b"v2"[..]);
    let started = Instant::now();
    let error = manager.save(&mut state).await.unwrap_err();
    let took = started.elapsed();
    assert!(error.is_transient(), "{error}");
    assert!(
        took < deadline + deadline / 10 + Duration::from_millis(150),
        "a save and its re-read took {took:?} with a {deadline:?} deadline"
    );
}
