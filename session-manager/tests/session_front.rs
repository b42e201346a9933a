//! The `Session` handle's own rules: conflict replay, the same-key rule, no resurrection, no
//! fixation, atomic rotation, writes only when needed, resumable state.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use serde_json::json;
use session_manager::time::{Duration, OffsetDateTime};
use session_manager::{
    ErrorKind, Expiry, ExpiryPolicy, Observed, Session, SessionEvent, SessionId, SessionManager,
    SessionSnapshot, SessionStore,
};
use session_memory::MemoryStore;
use tokio::sync::broadcast::error::TryRecvError;

type Manager = Arc<SessionManager<Arc<dyn SessionStore>>>;

fn manager_over(store: Arc<dyn SessionStore>) -> Manager {
    Arc::new(SessionManager::new(store))
}

/// A saved session holding `{"origin": true}`; returns its id.
async fn saved(manager: &Manager) -> SessionId {
    let session = Session::with_manager(None, Arc::clone(manager), None);
    session.insert("origin", true).await.unwrap();
    session.save().await.unwrap();
    session.id().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_changing_different_keys_all_persist() {
    const TASKS: usize = 32;
    let store = Arc::new(MemoryStore::new());
    let manager = manager_over(store.clone());
    let id = saved(&manager).await;
    // Every request loads the session first, so all of them start from version 1.
    let handles: Vec<Session> = (0..TASKS)
        .map(|_| Session::with_manager(Some(id.clone()), Arc::clone(&manager), None))
        .collect();
    for handle in &handles {
        assert_eq!(handle.get::<bool>("origin").await.unwrap(), Some(true));
    }
    let tasks: Vec<_> = handles
        .into_iter()
        .enumerate()
        .map(|(i, session)| {
            tokio::spawn(async move {
                session.insert(&format!("k{i}"), i).await.unwrap();
                session.save().await
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let record = store.read(&id.key()).await.unwrap().unwrap();
    assert_eq!(record.version, 1 + TASKS as u64, "one write per request");
    let check = Session::with_manager(Some(id), manager, None);
    for i in 0..TASKS {
        assert_eq!(check.get::<usize>(&format!("k{i}")).await.unwrap(), Some(i));
    }
    assert_eq!(check.get::<bool>("origin").await.unwrap(), Some(true));
}

#[tokio::test]
async fn same_key_changed_by_two_requests_last_save_wins() {
    let manager = manager_over(Arc::new(MemoryStore::new()));
    for (first, second) in [("a", "b"), ("b", "a")] {
        let id = saved(&manager).await;
        let a = Session::with_manager(Some(id.clone()), Arc::clone(&manager), None);
        let b = Session::with_manager(Some(id.clone()), Arc::clone(&manager), None);
        // Both load the session; neither reads `x`: blind writes.
        a.get_value("origin").await.unwrap();
        b.get_value("origin").await.unwrap();
        a.insert("x", "a").await.unwrap();
        a.insert("only_a", 1).await.unwrap();
        b.insert("x", "b").await.unwrap();
        b.insert("only_b", 2).await.unwrap();
        let (s1, s2) = if first == "a" { (&a, &b) } else { (&b, &a) };
        s1.save().await.unwrap();
        s2.save().await.unwrap();
        let check = Session::with_manager(Some(id), Arc::clone(&manager), None);
        assert_eq!(
            check.get::<String>("x").await.unwrap().as_deref(),
            Some(second)
        );
        // Changes to other keys survive whichever order.
        assert_eq!(check.get::<u32>("only_a").await.unwrap(), Some(1));
        assert_eq!(check.get::<u32>("only_b").await.unwrap(), Some(2));
    }
}

#[tokio::test]
async fn clear_is_replayed_as_a_clear() {
    let manager = manager_over(Arc::new(MemoryStore::new()));
    let id = saved(&manager).await;
    let a = Session::with_manager(Some(id.clone()), Arc::clone(&manager), None);
    let b = Session::with_manager(Some(id.clone()), Arc::clone(&manager), None);
    a.get_value("x").await.unwrap();
    b.insert("from_b", 1).await.unwrap();
    b.save().await.unwrap();
    a.clear().await;
    a.insert("after_clear", 2).await.unwrap();
    a.save().await.unwrap();
    let check = Session::with_manager(Some(id), manager, None);
    assert_eq!(check.get::<u32>("from_b").await.unwrap(), None);
    assert_eq!(check.get::<u32>("after_clear").await.unwrap(), Some(2));
}

#[tokio::test]
async fn save_after_delete_elsewhere_never_resurrects() {
    let store = Arc::new(MemoryStore::new());
    let manager = manager_over(store.clone());
    let id = saved(&manager).await;
    let slow = Session::with_manager(Some(id.clone()), Arc::clone(&manager), None);
    slow.get_value("origin").await.unwrap();
    let logout = Session::with_manager(Some(id.clone()), Arc::clone(&manager), None);
    logout.flush().await.unwrap();

    slow.insert("cart", 3).await.unwrap();
    let error = slow.save().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NotFound, "{error}");
    assert_eq!(store.live_records(), 0, "nothing was written");
    assert!(slow.id().is_none() && slow.is_empty().await);
    slow.insert("cart", 4).await.unwrap();
    assert_eq!(
        slow.save().await.unwrap_err().kind(),
        ErrorKind::NotFound,
        "a handle whose session ended elsewhere never writes again"
    );
    assert_eq!(
        store.live_records(),
        0,
        "a second save writes nothing either"
    );
}

#[tokio::test]
async fn save_after_rotation_elsewhere_never_writes_the_old_id() {
    let store = Arc::new(MemoryStore::new());
    let manager = manager_over(store.clone());
    let id = saved(&manager).await;
    let slow = Session::with_manager(Some(id.clone()), Arc::clone(&manager), None);
    slow.get_value("origin").await.unwrap();
    let login = Session::with_manager(Some(id.clone()), Arc::clone(&manager), None);
    login.cycle_id().await.unwrap();
    let new_id = login.id().unwrap();

    slow.insert("stale", 1).await.unwrap();
    assert_eq!(slow.save().await.unwrap_err().kind(), ErrorKind::NotFound);
    assert!(store.read(&id.key()).await.unwrap().is_none());
    assert_eq!(store.live_records(), 1);
    let check = Session::with_manager(Some(new_id), manager, None);
    assert_eq!(check.get::<u32>("stale").await.unwrap(), None);
    assert_eq!(check.get::<bool>("origin").await.unwrap(), Some(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cycle_id_race_leaves_exactly_one_live_successor() {
    const TASKS: usize = 24;
    let store = Arc::new(MemoryStore::new());
    let manager = manager_over(store.clone());
    for _round in 0..5 {
        store.clear().await.unwrap();
        let id = saved(&manager).await;
        let handles: Vec<Session> = (0..TASKS)
            .map(|_| Session::with_manager(Some(id.clone()), Arc::clone(&manager), None))
            .collect();
        for handle in &handles {
            handle.get_value("origin").await.unwrap();
        }
        let tasks: Vec<_> = handles
            .into_iter()
            .map(|session| {
                tokio::spawn(async move {
                    let result = session.cycle_id().await;
                    (result, session.id())
                })
            })
            .collect();
        let mut winners = Vec::new();
        for task in tasks {
            match task.await.unwrap() {
                (Ok(()), Some(new_id)) => winners.push(new_id),
                (Ok(()), None) => panic!("a successful rotation left no id"),
                (Err(e), _) => assert_eq!(e.kind(), ErrorKind::NotFound, "{e}"),
            }
        }
        assert_eq!(winners.len(), 1, "exactly one rotation wins");
        assert_eq!(store.live_records(), 1, "exactly one live session");
        assert!(store.read(&id.key()).await.unwrap().is_none());
        let record = store.read(&winners[0].key()).await.unwrap().unwrap();
        assert_eq!(record.version, 2);
    }
}

#[tokio::test]
async fn cycle_id_keeps_data_and_absolute_deadline() {
    let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
    let manager = Arc::new(SessionManager::new(store).with_expiry(
        ExpiryPolicy::idle_and_absolute(Duration::hours(1), Duration::hours(8)),
    ));
    let session = Session::with_manager(None, Arc::clone(&manager), None);
    session.insert("user", 7).await.unwrap();
    session.save().await.unwrap();
    let old = session.id().unwrap();
    let deadline = manager
        .load(&old)
        .await
        .unwrap()
        .unwrap()
        .absolute_deadline();
    assert!(deadline.is_some());
    session.insert("csrf", "t").await.unwrap();
    session.cycle_id().await.unwrap();
    let new = session.id().unwrap();
    assert_ne!(old, new);
    let state = manager.load(&new).await.unwrap().unwrap();
    assert_eq!(state.absolute_deadline(), deadline);
    let check = Session::with_manager(Some(new), manager, None);
    assert_eq!(check.get::<u32>("user").await.unwrap(), Some(7));
    assert_eq!(
        check.get::<String>("csrf").await.unwrap().as_deref(),
        Some("t")
    );
}

#[tokio::test]
async fn cycle_id_of_a_new_session_just_means_a_fresh_id() {
    let store = Arc::new(MemoryStore::new());
    let forged = SessionId::generate();
    let session = Session::new(Some(forged.clone()), store.clone(), None);
    session.insert("a", 1).await.unwrap();
    session.cycle_id().await.unwrap();
    assert!(session.id().is_none());
    assert_eq!(store.stored_records(), 0);
    session.save().await.unwrap();
    assert_ne!(session.id(), Some(forged));
    assert_eq!(store.live_records(), 1);
}

#[tokio::test]
async fn unknown_ids_are_never_adopted() {
    let store = Arc::new(MemoryStore::new());
    let forged = SessionId::generate();
    // Reading through a forged id writes nothing.
    let session = Session::new(Some(forged.clone()), store.clone(), None);
    assert_eq!(session.get::<u32>("a").await.unwrap(), None);
    session.save().await.unwrap();
    assert_eq!(store.stored_records(), 0);
    assert!(session.id().is_none());
    // Writing through one creates a session under a fresh id.
    let session = Session::new(Some(forged.clone()), store.clone(), None);
    session.insert("a", 1).await.unwrap();
    session.save().await.unwrap();
    let id = session.id().unwrap();
    assert_ne!(id, forged);
    assert!(store.read(&forged.key()).await.unwrap().is_none());
    assert!(store.read(&id.key()).await.unwrap().is_some());
}

async fn events_of(
    receiver: &mut tokio::sync::broadcast::Receiver<SessionEvent>,
) -> Vec<SessionEvent> {
    let mut events = Vec::new();
    loop {
        match receiver.try_recv() {
            Ok(event) => events.push(event),
            Err(TryRecvError::Empty) => return events,
            Err(e) => panic!("{e}"),
        }
    }
}

#[tokio::test]
async fn unchanged_sessions_are_not_written() {
    let store = Arc::new(Observed::new(MemoryStore::new()));
    let mut events = store.subscribe();
    let session = Session::new(None, store.clone(), None);
    session.insert("a", 1).await.unwrap();
    session.save().await.unwrap();
    let id = session.id().unwrap();
    assert!(matches!(
        events_of(&mut events).await[..],
        [SessionEvent::Created { .. }]
    ));

    // A later request reads and saves: nothing is written (the deadline barely moved).
    let session = Session::new(Some(id.clone()), store.clone(), None);
    assert_eq!(session.get::<u32>("a").await.unwrap(), Some(1));
    session.save().await.unwrap();
    // Inserting the value already there is no change either.
    session.insert("a", 1).await.unwrap();
    assert!(!session.is_modified());
    session.save().await.unwrap();
    assert_eq!(events_of(&mut events).await, []);

    // A change is one update.
    session.insert("a", 2).await.unwrap();
    session.save().await.unwrap();
    session.save().await.unwrap();
    assert_eq!(
        events_of(&mut events).await,
        [SessionEvent::Updated {
            key: id.key(),
            version: 2
        }]
    );
}

#[tokio::test]
async fn an_unchanged_session_is_touched_when_its_idle_deadline_must_move() {
    let store = Arc::new(Observed::new(MemoryStore::new()));
    let mut events = store.subscribe();
    let dyn_store: Arc<dyn SessionStore> = store.clone();
    // Idle 10 s: an unchanged save touches once the deadline would move by >= 1 s.
    let manager = Arc::new(
        SessionManager::new(dyn_store).with_expiry(ExpiryPolicy::idle(Duration::seconds(10))),
    );
    let session = Session::with_manager(None, Arc::clone(&manager), None);
    session.insert("a", 1).await.unwrap();
    session.save().await.unwrap();
    let id = session.id().unwrap();
    let before = manager.load(&id).await.unwrap().unwrap().expires_at();
    events_of(&mut events).await;

    let early = Session::with_manager(Some(id.clone()), Arc::clone(&manager), None);
    early.load().await.unwrap();
    early.save().await.unwrap();
    assert_eq!(
        events_of(&mut events).await,
        [],
        "no touch within the first second"
    );

    tokio::time::sleep(StdDuration::from_millis(1100)).await;
    let later = Session::with_manager(Some(id.clone()), Arc::clone(&manager), None);
    later.load().await.unwrap();
    later.save().await.unwrap();
    assert_eq!(
        events_of(&mut events).await,
        [SessionEvent::Touched { key: id.key() }]
    );
    let after = manager.load(&id).await.unwrap().unwrap();
    assert!(after.expires_at() >= before + Duration::seconds(1));
    assert_eq!(after.version(), 1, "a touch does not rewrite the data");
}

#[tokio::test]
async fn set_expiry_is_saved() {
    let store = Arc::new(MemoryStore::new());
    let manager = manager_over(store.clone());
    let id = saved(&manager).await;
    let session = Session::with_manager(Some(id.clone()), Arc::clone(&manager), None);
    let at = OffsetDateTime::now_utc() + Duration::minutes(3);
    session.set_expiry(Some(Expiry::AtDateTime(at)));
    session.save().await.unwrap();
    let stored = store.read(&id.key()).await.unwrap().unwrap();
    assert_eq!(stored.expires_at, session_manager::truncate_to_millis(at));
}

#[tokio::test]
async fn snapshots_resume_with_their_unsaved_changes() {
    let store = Arc::new(MemoryStore::new());
    let manager = manager_over(store.clone());
    let id = saved(&manager).await;
    let session = Session::with_manager(Some(id.clone()), Arc::clone(&manager), None);
    session.insert("draft", "hello").await.unwrap();
    session.set_expiry(Some(Expiry::OnInactivity(Duration::minutes(30))));
    let json = serde_json::to_string(&session.snapshot()).unwrap();
    assert!(
        !format!("{:?}", session.snapshot()).contains(&id.expose()),
        "Debug hides the token"
    );
    drop(session);

    // Meanwhile another request saved.
    let other = Session::with_manager(Some(id.clone()), Arc::clone(&manager), None);
    other.insert("other", 1).await.unwrap();
    other.save().await.unwrap();

    let snapshot: SessionSnapshot = serde_json::from_str(&json).unwrap();
    let resumed = Session::restore(snapshot, Arc::clone(&manager));
    assert_eq!(resumed.id(), Some(id.clone()));
    assert_eq!(
        resumed.expiry(),
        Some(Expiry::OnInactivity(Duration::minutes(30)))
    );
    assert!(resumed.is_modified());
    resumed.save().await.unwrap();
    let check = Session::with_manager(Some(id), manager, None);
    assert_eq!(
        check.get::<String>("draft").await.unwrap().as_deref(),
        Some("hello")
    );
    assert_eq!(check.get::<u32>("other").await.unwrap(), Some(1));
    assert_eq!(check.get::<bool>("origin").await.unwrap(), Some(true));
    // A snapshot with a malformed id is refused.
    let bad = json.replace(&check.id().unwrap().expose(), "not-a-token");
    assert!(serde_json::from_str::<SessionSnapshot>(&bad).is_err());
}

#[tokio::test]
async fn bad_input_is_a_clear_error_and_changes_nothing() {
    let store = Arc::new(MemoryStore::new());
    let manager = manager_over(store.clone());
    let id = saved(&manager).await;
    let session = Session::with_manager(Some(id.clone()), Arc::clone(&manager), None);
    session.insert("big", "x".repeat(2 << 20)).await.unwrap();
    let error = session.save().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::TooLarge);
    let check = Session::with_manager(Some(id.clone()), Arc::clone(&manager), None);
    assert_eq!(check.get_value("big").await.unwrap(), None);
    // A value of another type.
    let error = check.get::<u32>("origin").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Decode);
    // Stored data that is not a JSON object.
    let raw = manager.create(&b"not json"[..]).await.unwrap();
    let session = Session::with_manager(Some(raw.id().clone()), manager, None);
    assert_eq!(
        session.get_value("a").await.unwrap_err().kind(),
        ErrorKind::Decode
    );
    // A value that cannot be JSON.
    let session = Session::new(None, store, None);
    let map: std::collections::HashMap<(u8, u8), u8> = [((1, 2), 3)].into();
    assert_eq!(
        session.insert("m", map).await.unwrap_err().kind(),
        ErrorKind::Encode
    );
    let _ = json!(null);
}

/// Found by the `session_snapshot` fuzz target: without serde_json's exact float parsing a
/// stored number read back could differ from the one written in its last bit (so a handle
/// that read it would see another value than the handle that wrote it).
#[tokio::test]
async fn numbers_read_back_exactly_as_written() {
    let manager = manager_over(Arc::new(MemoryStore::new()));
    let values = [
        2.2222222222222226e50,
        0.1 + 0.2,
        f64::MAX,
        f64::MIN_POSITIVE,
        -1e-300,
    ];
    let session = Session::with_manager(None, Arc::clone(&manager), None);
    for (i, value) in values.iter().enumerate() {
        session.insert(&format!("n{i}"), value).await.unwrap();
    }
    session.save().await.unwrap();
    let again = Session::with_manager(session.id(), manager, None);
    for (i, value) in values.iter().enumerate() {
        let read: f64 = again.get(&format!("n{i}")).await.unwrap().unwrap();
        assert_eq!(
            read.to_bits(),
            value.to_bits(),
            "{value:e} came back as {read:e}"
        );
    }
    // And a snapshot's JSON round trip keeps them too.
    let json = serde_json::to_vec(&again.snapshot()).unwrap();
    let snapshot: SessionSnapshot = serde_json::from_slice(&json).unwrap();
    assert_eq!(serde_json::to_vec(&snapshot).unwrap(), json);
}
