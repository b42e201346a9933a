//! The doc examples of seed 001 (tower-sessions' `Session`), run against this crate's handle.
//! Differences, on purpose: ids are `SessionId::generate()`; the default expiry is the manager's
//! policy (24 hours idle, not two weeks); a handle made with an id the store does not know
//! creates its session under a fresh id (no fixation), which the examples read back through
//! `session.id()` exactly as the seed does.

use std::sync::Arc;

use session_manager::time::{Duration, OffsetDateTime};
use session_manager::{Expiry, Session, SessionId, SessionStore};
use session_memory::MemoryStore;

fn store() -> Arc<MemoryStore> {
    Arc::new(MemoryStore::new())
}

#[tokio::test]
async fn new_is_lazy() {
    let store = store();
    let session = Session::new(None, store.clone(), None);
    assert!(session.id().is_none());
    assert_eq!(store.stored_records(), 0);
}

#[tokio::test]
async fn insert_and_get() {
    let session = Session::new(None, store(), None);
    session.insert("foo", 42).await.unwrap();
    let value = session.get::<usize>("foo").await.unwrap();
    assert_eq!(value, Some(42));
}

#[tokio::test]
async fn insert_value() {
    let session = Session::new(None, store(), None);
    let value = session
        .insert_value("foo", serde_json::json!(42))
        .await
        .unwrap();
    assert!(value.is_none());
    let value = session
        .insert_value("foo", serde_json::json!(42))
        .await
        .unwrap();
    assert!(value.is_none());
    let value = session
        .insert_value("foo", serde_json::json!("bar"))
        .await
        .unwrap();
    assert_eq!(value, Some(serde_json::json!(42)));
}

#[tokio::test]
async fn get_value() {
    let session = Session::new(None, store(), None);
    session.insert("foo", 42).await.unwrap();
    let value = session.get_value("foo").await.unwrap().unwrap();
    assert_eq!(value, serde_json::json!(42));
}

#[tokio::test]
async fn remove_and_remove_value() {
    let session = Session::new(None, store(), None);
    session.insert("foo", 42).await.unwrap();
    let value: Option<usize> = session.remove("foo").await.unwrap();
    assert_eq!(value, Some(42));
    let value: Option<usize> = session.get("foo").await.unwrap();
    assert!(value.is_none());

    session.insert("foo", 42).await.unwrap();
    let value = session.remove_value("foo").await.unwrap().unwrap();
    assert_eq!(value, serde_json::json!(42));
    let value: Option<usize> = session.get("foo").await.unwrap();
    assert!(value.is_none());
}

#[tokio::test]
async fn clear_does_not_delete_from_the_store() {
    let store = store();
    let session = Session::new(None, store.clone(), None);
    session.insert("foo", 42).await.unwrap();
    assert!(!session.is_empty().await);
    session.save().await.unwrap();
    session.clear().await;
    // Not empty! (We have an ID still.)
    assert!(!session.is_empty().await);
    // Data is cleared...
    assert!(session.get::<usize>("foo").await.unwrap().is_none());
    // ...data is cleared before loading from the backend...
    let session = Session::new(session.id(), store.clone(), None);
    session.clear().await;
    assert!(session.get::<usize>("foo").await.unwrap().is_none());
    let session = Session::new(session.id(), store, None);
    // ...but data is not deleted from the store.
    assert_eq!(session.get::<usize>("foo").await.unwrap(), Some(42));
}

#[tokio::test]
async fn is_empty_cases() {
    let store = store();
    let session = Session::new(None, store.clone(), None);
    // Empty if we have no ID and record is not loaded.
    assert!(session.is_empty().await);
    let session = Session::new(Some(SessionId::generate()), store.clone(), None);
    // Not empty if we have an ID but no record. (Record is not loaded here.)
    assert!(!session.is_empty().await);
    let session = Session::new(Some(SessionId::generate()), store.clone(), None);
    session.insert("foo", 42).await.unwrap();
    // Not empty after inserting.
    assert!(!session.is_empty().await);
    session.save().await.unwrap();
    // Not empty after saving.
    assert!(!session.is_empty().await);
    let session = Session::new(session.id(), store.clone(), None);
    session.load().await.unwrap();
    // Not empty after loading from store...
    assert!(!session.is_empty().await);
    // ...and not empty after accessing the session.
    session.get::<usize>("foo").await.unwrap();
    assert!(!session.is_empty().await);
    let session = Session::new(session.id(), store.clone(), None);
    session.delete().await.unwrap();
    // Not empty after deleting from store...
    assert!(!session.is_empty().await);
    session.get::<usize>("foo").await.unwrap();
    // ...but empty after trying to access the deleted session.
    assert!(session.is_empty().await);
    let session = Session::new(None, store, None);
    session.insert("foo", 42).await.unwrap();
    session.flush().await.unwrap();
    // Empty after flushing.
    assert!(session.is_empty().await);
}

#[tokio::test]
async fn id() {
    let store = store();
    let session = Session::new(None, store.clone(), None);
    assert!(session.id().is_none());
    let id = Some(SessionId::generate());
    let session = Session::new(id.clone(), store, None);
    assert_eq!(id, session.id());
}

#[tokio::test]
async fn expiry_and_set_expiry() {
    let session = Session::new(None, store(), None);
    assert_eq!(session.expiry(), None);
    let expiry = Expiry::AtDateTime(OffsetDateTime::now_utc());
    session.set_expiry(Some(expiry));
    assert_eq!(session.expiry(), Some(expiry));
}

#[tokio::test]
async fn expiry_date_and_age_follow_the_default_policy() {
    let session = Session::new(None, store(), None);
    // Our default: 24 hours idle.
    let expected = OffsetDateTime::now_utc().saturating_add(Duration::hours(24));
    assert!(session.expiry_date() > expected.saturating_sub(Duration::seconds(1)));
    assert!(session.expiry_date() < expected.saturating_add(Duration::seconds(1)));
    assert!(session.expiry_age() > Duration::hours(24).saturating_sub(Duration::seconds(1)));
    assert!(session.expiry_age() < Duration::hours(24).saturating_add(Duration::seconds(1)));
    session.set_expiry(Some(Expiry::OnInactivity(Duration::minutes(5))));
    assert!(session.expiry_age() > Duration::minutes(5) - Duration::seconds(1));
    assert!(session.expiry_age() <= Duration::minutes(5));
}

#[tokio::test]
async fn is_modified() {
    let session = Session::new(None, store(), None);
    // Not modified initially.
    assert!(!session.is_modified());
    // Getting doesn't count as a modification.
    session.get::<usize>("foo").await.unwrap();
    assert!(!session.is_modified());
    // Insertions and removals do though.
    session.insert("foo", 42).await.unwrap();
    assert!(session.is_modified());
}

#[tokio::test]
async fn save_then_read_back() {
    let store = store();
    let session = Session::new(None, store.clone(), None);
    session.insert("foo", 42).await.unwrap();
    session.save().await.unwrap();
    let session = Session::new(session.id(), store, None);
    assert_eq!(session.get::<usize>("foo").await.unwrap().unwrap(), 42);
}

#[tokio::test]
async fn load() {
    let store = store();
    let id = Some(SessionId::generate());
    let session = Session::new(id, store.clone(), None);
    session.insert("foo", 42).await.unwrap();
    session.save().await.unwrap();
    let session = Session::new(session.id(), store, None);
    session.load().await.unwrap();
    assert_eq!(session.get::<usize>("foo").await.unwrap().unwrap(), 42);
}

#[tokio::test]
async fn delete() {
    let store = store();
    let session = Session::new(None, store.clone(), None);
    session.insert("foo", 1).await.unwrap();
    // Save before deleting.
    session.save().await.unwrap();
    let id = session.id().unwrap();
    // Delete from the store.
    session.delete().await.unwrap();
    assert!(store.read(&id.key()).await.unwrap().is_none());
}

#[tokio::test]
async fn flush() {
    let store = store();
    let session = Session::new(None, store.clone(), None);
    session.insert("foo", "bar").await.unwrap();
    session.save().await.unwrap();
    let id = session.id().unwrap();
    session.flush().await.unwrap();
    assert!(session.id().is_none());
    assert!(session.is_empty().await);
    assert!(store.read(&id.key()).await.unwrap().is_none());
    // And a later save of the flushed handle writes nothing.
    session.save().await.unwrap();
    assert_eq!(store.live_records(), 0);
}

#[tokio::test]
async fn cycle_id() {
    let store = store();
    let session = Session::new(None, store.clone(), None);
    session.insert("foo", 42).await.unwrap();
    session.save().await.unwrap();
    let id = session.id();
    let session = Session::new(session.id(), store.clone(), None);
    session.cycle_id().await.unwrap();
    assert!(!session.is_empty().await);
    assert!(session.is_modified());
    session.save().await.unwrap();
    let session = Session::new(session.id(), store.clone(), None);
    assert_ne!(id, session.id());
    assert_eq!(session.get::<usize>("foo").await.unwrap().unwrap(), 42);
    // Ours: the old id is dead at once.
    assert!(store.read(&id.unwrap().key()).await.unwrap().is_none());
}
