//! The adapter's rules over every backend (memory, SQLite, PostgreSQL, Redis), through
//! tower-sessions' own `SessionStore` trait (core 0.15 and 0.14), and one HTTP round through
//! tower-sessions' `SessionManagerLayer` on axum.

use session_manager::SessionStoreExt as _;
use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};
use session_manager::envelope;
use session_manager::time::{Duration, OffsetDateTime};
use session_manager::{Bytes, CreateOutcome, SessionStore, StoreAdmin};
use session_tower_sessions::{TowerStore, VERSION_ENTRY, key_of};
use tsc15::SessionStore as _;
use tsc15::session::{Id, Record};

fn later() -> OffsetDateTime {
    OffsetDateTime::now_utc() + Duration::hours(1)
}

fn record(data: Value) -> Record {
    let Value::Object(map) = data else {
        panic!("an object")
    };
    Record {
        id: Id::default(),
        data: map.into_iter().collect(),
        expiry_date: later(),
    }
}

/// The application's part of a record's data (without the adapter's entry).
fn app_data(record: &Record) -> HashMap<String, Value> {
    record
        .data
        .iter()
        .filter(|(k, _)| k.as_str() != VERSION_ENTRY)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn map(data: Value) -> HashMap<String, Value> {
    let Value::Object(map) = data else {
        panic!("an object")
    };
    map.into_iter().collect()
}

/// Every rule of the adapter against `store` (a fresh namespace of some backend).
async fn rules(store: Arc<dyn StoreAdmin>) {
    let inner: Arc<dyn SessionStore> = store.clone();
    let adapter = TowerStore::new(Arc::clone(&inner));

    // create never overwrites: a taken id is replaced by a fresh one, the occupant untouched.
    let taken = Id::default();
    let occupant = Bytes::from(envelope::encode(None, br#"{"owner":"someone else"}"#));
    assert_eq!(
        inner
            .create(&key_of(taken.0), later(), occupant.clone())
            .await
            .unwrap(),
        CreateOutcome::Created
    );
    let mut mine = record(json!({"user": 1}));
    mine.id = taken;
    adapter.create(&mut mine).await.unwrap();
    assert_ne!(mine.id, taken, "create reused a taken id");
    let stored = inner.read(&key_of(taken.0)).await.unwrap().unwrap();
    assert_eq!(
        stored.data, occupant,
        "create overwrote someone else's session"
    );

    // The stored data is exactly the Session handle's shape: its envelope around the JSON map.
    let stored = inner.read(&key_of(mine.id.0)).await.unwrap().unwrap();
    let (deadline, json) = envelope::decode(stored.data).unwrap();
    assert_eq!(deadline, None);
    let as_map: HashMap<String, Value> = serde_json::from_slice(&json).unwrap();
    assert_eq!(as_map, map(json!({"user": 1})));

    // load → save round trip, and a request saving twice.
    let mut loaded = adapter.load(&mine.id).await.unwrap().unwrap();
    assert_eq!(app_data(&loaded), map(json!({"user": 1})));
    loaded.data.insert("cart".into(), json!([7]));
    adapter.save(&loaded).await.unwrap();
    loaded.data.insert("cart".into(), json!([7, 8]));
    adapter.save(&loaded).await.unwrap();
    let again = adapter.load(&mine.id).await.unwrap().unwrap();
    assert_eq!(app_data(&again), map(json!({"user": 1, "cart": [7, 8]})));

    // Two requests loaded the same version: the first save wins, the second is refused (nothing
    // written) instead of silently undoing the first.
    let mut a = adapter.load(&mine.id).await.unwrap().unwrap();
    let mut b = adapter.load(&mine.id).await.unwrap().unwrap();
    a.data.insert("a".into(), json!(true));
    b.data.insert("b".into(), json!(true));
    adapter.save(&a).await.unwrap();
    let error = adapter.save(&b).await.unwrap_err();
    assert!(error.to_string().contains("concurrent"), "{error}");
    let now = adapter.load(&mine.id).await.unwrap().unwrap();
    assert_eq!(now.data.get("a"), Some(&json!(true)));
    assert_eq!(now.data.get("b"), None);

    // No resurrection: a save after the session was deleted (logout, or tower-sessions'
    // cycle_id, which deletes the old id) writes nothing.
    let stale = adapter.load(&mine.id).await.unwrap().unwrap();
    adapter.delete(&mine.id).await.unwrap();
    adapter.save(&stale).await.unwrap();
    assert!(
        adapter.load(&mine.id).await.unwrap().is_none(),
        "a save brought the session back"
    );
    // Even when the application cleared the map (the adapter's entry with it).
    let mut cleared = stale.clone();
    cleared.data.clear();
    adapter.save(&cleared).await.unwrap();
    assert!(
        adapter.load(&mine.id).await.unwrap().is_none(),
        "a cleared save brought it back"
    );

    // A cleared map of a live session still saves (against the stored version).
    let mut live = record(json!({"x": 1}));
    adapter.create(&mut live).await.unwrap();
    let mut cleared = adapter.load(&live.id).await.unwrap().unwrap();
    cleared.data.clear();
    cleared.data.insert("y".into(), json!(2));
    adapter.save(&cleared).await.unwrap();
    assert_eq!(
        app_data(&adapter.load(&live.id).await.unwrap().unwrap()),
        map(json!({"y": 2}))
    );

    // Expired records are absent.
    let mut short = record(json!({"s": 1}));
    short.expiry_date = OffsetDateTime::now_utc() - Duration::seconds(1);
    adapter.create(&mut short).await.unwrap();
    assert!(adapter.load(&short.id).await.unwrap().is_none());

    // The same store through tower-sessions-core 0.14's trait (axum-login 0.18's version).
    let mut old = tsc14::session::Record {
        id: tsc14::session::Id::default(),
        data: map(json!({"via": "0.14"})),
        expiry_date: later(),
    };
    tsc14::SessionStore::create(&adapter, &mut old)
        .await
        .unwrap();
    let back = tsc14::SessionStore::load(&adapter, &old.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back.data.get("via"), Some(&json!("0.14")));

    // The size limit of the Session handle holds here too: a larger session writes nothing.
    let small = TowerStore::new(Arc::clone(&inner)).with_max_data_size(64);
    let mut big = record(json!({"blob": "x".repeat(100)}));
    assert!(small.create(&mut big).await.is_err());
    assert!(small.load(&big.id).await.unwrap().is_none());
    let mut fits = record(json!({"n": 1}));
    small.create(&mut fits).await.unwrap();
    let mut grown = small.load(&fits.id).await.unwrap().unwrap();
    grown.data.insert("blob".into(), json!("x".repeat(100)));
    assert!(small.save(&grown).await.is_err());
    let stored = small.load(&fits.id).await.unwrap().unwrap();
    assert_eq!(
        app_data(&stored),
        map(json!({"n": 1})),
        "a refused save wrote"
    );

    store.drop_namespace().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory() {
    rules(Arc::new(session_memory::MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite() {
    let factory = session_sqlite::testing::factory().unwrap();
    rules(factory.open_fresh().await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres() {
    let factory = session_test_support::factory_from_env(
        session_test_support::POSTGRES,
        session_postgres::testing::factory,
    );
    if factory.base().is_none() {
        return;
    }
    rules(factory.open_fresh().await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis() {
    let factory = session_test_support::factory_from_env(
        session_test_support::REDIS,
        session_redis::testing::factory,
    );
    if factory.base().is_none() {
        return;
    }
    rules(factory.open_fresh().await.unwrap()).await;
}
