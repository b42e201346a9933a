//! `Tiered`: two instances (two app servers) over one back (the whole conformance suite runs
//! over it in tests/conformance.rs).

use session_core::SessionStoreExt as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use session_manager::Bytes;
use session_manager::time::OffsetDateTime;
use session_manager::{
    CreateOutcome, Session, SessionId, SessionManager, SessionStore, Tiered, UpdateOutcome,
};
use session_memory::MemoryStore;

mod common;
use common::Flaky;

type Instance = Tiered<MemoryStore, Arc<MemoryStore>>;

fn two_servers(ttl: Duration) -> (Arc<MemoryStore>, Arc<Instance>, Arc<Instance>) {
    let back = Arc::new(MemoryStore::new());
    let a = Tiered::new(MemoryStore::new(), Arc::clone(&back)).with_front_ttl(ttl);
    let b = Tiered::new(MemoryStore::new(), Arc::clone(&back)).with_front_ttl(ttl);
    (back, Arc::new(a), Arc::new(b))
}

fn later() -> OffsetDateTime {
    OffsetDateTime::now_utc() + Duration::from_secs(600)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cas_counter_across_instances_loses_no_update() {
    const TASKS: usize = 16;
    const INCREMENTS: u64 = 25;
    let (back, a, b) = two_servers(Duration::from_secs(60));
    let key = SessionId::generate().key();
    assert_eq!(
        a.create(&key, later(), Bytes::copy_from_slice(&0u64.to_be_bytes()))
            .await
            .unwrap(),
        CreateOutcome::Created
    );
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let store = if i % 2 == 0 {
                Arc::clone(&a)
            } else {
                Arc::clone(&b)
            };
            tokio::spawn(async move {
                let mut conflicts = 0u64;
                for _ in 0..INCREMENTS {
                    loop {
                        let record = store.read(&key).await.unwrap().expect("the counter exists");
                        let value = u64::from_be_bytes(record.data[..].try_into().unwrap());
                        match store
                            .update(
                                &key,
                                &key,
                                record.version,
                                later(),
                                Bytes::copy_from_slice(&(value + 1).to_be_bytes()),
                            )
                            .await
                            .unwrap()
                        {
                            UpdateOutcome::Updated { .. } => break,
                            UpdateOutcome::Conflict => conflicts += 1,
                            other => panic!("{other:?}"),
                        }
                        assert!(
                            conflicts < 100_000,
                            "a stale front kept the counter conflicting"
                        );
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let record = back.read(&key).await.unwrap().unwrap();
    assert_eq!(
        u64::from_be_bytes(record.data[..].try_into().unwrap()),
        TASKS as u64 * INCREMENTS
    );
    assert_eq!(record.version, 1 + TASKS as u64 * INCREMENTS);
}

#[tokio::test]
async fn a_stale_front_never_resurrects_a_deleted_session() {
    let (back, a, b) = two_servers(Duration::from_secs(60));
    let key = SessionId::generate().key();
    assert_eq!(
        a.create(&key, later(), Bytes::from_static(b"v1"))
            .await
            .unwrap(),
        CreateOutcome::Created
    );
    assert!(b.read(&key).await.unwrap().is_some(), "b's front is filled");
    a.delete(&key).await.unwrap();
    // Within the TTL b may still read it (documented)...
    let stale = b
        .read(&key)
        .await
        .unwrap()
        .expect("b serves its front entry");
    // ...but cannot write it back.
    assert_eq!(
        b.update(
            &key,
            &key,
            stale.version,
            later(),
            Bytes::from_static(b"v2")
        )
        .await
        .unwrap(),
        UpdateOutcome::NotFound
    );
    assert!(back.read(&key).await.unwrap().is_none());
    assert!(
        b.read(&key).await.unwrap().is_none(),
        "the refused write invalidated b's entry"
    );
    assert!(!b.touch(&key, later()).await.unwrap());
    assert!(back.read(&key).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotations_from_two_instances_never_fork() {
    const RACERS: usize = 32;
    let (back, a, b) = two_servers(Duration::from_secs(60));
    for _round in 0..10 {
        let previous = SessionId::generate().key();
        assert_eq!(
            a.create(&previous, later(), Bytes::from_static(b"origin"))
                .await
                .unwrap(),
            CreateOutcome::Created
        );
        b.read(&previous).await.unwrap();
        let targets: Vec<_> = (0..RACERS).map(|_| SessionId::generate().key()).collect();
        let tasks: Vec<_> = targets
            .iter()
            .enumerate()
            .map(|(i, target)| {
                let store = if i % 2 == 0 {
                    Arc::clone(&a)
                } else {
                    Arc::clone(&b)
                };
                let target = *target;
                tokio::spawn(async move {
                    store
                        .update(&target, &previous, 1, later(), Bytes::from_static(b"moved"))
                        .await
                })
            })
            .collect();
        let mut winners = 0;
        for task in tasks {
            match task.await.unwrap().unwrap() {
                UpdateOutcome::Updated { version: 2 } => winners += 1,
                UpdateOutcome::NotFound | UpdateOutcome::Conflict => {}
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(winners, 1);
        let mut live = 0;
        for target in &targets {
            if back.read(target).await.unwrap().is_some() {
                live += 1;
            }
        }
        assert_eq!(live, 1, "exactly one successor in the back");
        assert!(back.read(&previous).await.unwrap().is_none());
        assert!(a.read(&previous).await.unwrap().is_none());
        assert!(b.read(&previous).await.unwrap().is_none());
    }
}

#[tokio::test]
async fn staleness_is_bounded_by_the_front_ttl() {
    let (_back, a, b) = two_servers(Duration::from_millis(200));
    let key = SessionId::generate().key();
    assert_eq!(
        a.create(&key, later(), Bytes::from_static(b"v1"))
            .await
            .unwrap(),
        CreateOutcome::Created
    );
    assert_eq!(&b.read(&key).await.unwrap().unwrap().data[..], b"v1");
    assert!(matches!(
        a.update(&key, &key, 1, later(), Bytes::from_static(b"v2"))
            .await
            .unwrap(),
        UpdateOutcome::Updated { .. }
    ));
    // Own writes are read back at once.
    assert_eq!(&a.read(&key).await.unwrap().unwrap().data[..], b"v2");
    tokio::time::sleep(Duration::from_millis(250)).await;
    let record = b.read(&key).await.unwrap().unwrap();
    assert_eq!((&record.data[..], record.version), (&b"v2"[..], 2));
}

#[tokio::test]
async fn a_failed_back_write_empties_the_front_of_its_keys() {
    let back = Arc::new(Flaky::new(MemoryStore::new()));
    let store = Tiered::new(MemoryStore::new(), Arc::clone(&back));
    let key = SessionId::generate().key();
    assert_eq!(
        store
            .create(&key, later(), Bytes::from_static(b"v1"))
            .await
            .unwrap(),
        CreateOutcome::Created
    );
    assert_eq!(store.front_len(), 1);
    back.fail_writes.store(true, Ordering::Release);
    let fresh = SessionId::generate().key();
    assert!(
        store
            .update(&key, &key, 1, later(), Bytes::from_static(b"v2"))
            .await
            .is_err()
    );
    assert_eq!(
        store.front_len(),
        0,
        "an in-doubt write drops the front entry"
    );
    assert!(store.front().read(&key).await.unwrap().is_none());
    assert!(
        store
            .update(&fresh, &key, 1, later(), Bytes::from_static(b"v2"))
            .await
            .is_err()
    );
    assert!(store.delete(&key).await.is_err());
    assert!(
        store
            .create(&fresh, later(), Bytes::from_static(b"x"))
            .await
            .is_err()
    );
    assert!(store.front().read(&fresh).await.unwrap().is_none());
    // The back refused every write before applying it: reads find v1 there.
    let record = store.read(&key).await.unwrap().unwrap();
    assert_eq!((&record.data[..], record.version), (&b"v1"[..], 1));
    back.fail_writes.store(false, Ordering::Release);
    assert_eq!(
        store
            .update(&key, &key, 1, later(), Bytes::from_static(b"v2"))
            .await
            .unwrap(),
        UpdateOutcome::Updated { version: 2 }
    );
}

#[tokio::test]
async fn a_write_applied_by_the_back_but_reported_failed_is_read_back() {
    let back = Arc::new(Flaky::new(MemoryStore::new()));
    let store = Tiered::new(MemoryStore::new(), Arc::clone(&back));
    let key = SessionId::generate().key();
    assert_eq!(
        store
            .create(&key, later(), Bytes::from_static(b"v1"))
            .await
            .unwrap(),
        CreateOutcome::Created
    );
    assert!(store.read(&key).await.unwrap().is_some(), "front filled");
    back.fail_after_write.store(true, Ordering::Release);
    assert!(
        store
            .update(&key, &key, 1, later(), Bytes::from_static(b"v2"))
            .await
            .is_err()
    );
    back.fail_after_write.store(false, Ordering::Release);
    let record = store.read(&key).await.unwrap().unwrap();
    assert_eq!((&record.data[..], record.version), (&b"v2"[..], 2));
}

#[tokio::test]
async fn a_huge_front_ttl_does_not_panic() {
    let store = Tiered::new(MemoryStore::new(), MemoryStore::new()).with_front_ttl(Duration::MAX);
    let key = SessionId::generate().key();
    assert_eq!(
        store
            .create(&key, later(), Bytes::from_static(b"v1"))
            .await
            .unwrap(),
        CreateOutcome::Created
    );
    let record = store.read(&key).await.unwrap().unwrap();
    assert_eq!(&record.data[..], b"v1");
    let unfilled =
        Tiered::new(MemoryStore::new(), MemoryStore::new()).with_front_ttl(Duration::ZERO);
    assert_eq!(
        unfilled
            .create(&key, later(), Bytes::from_static(b"v1"))
            .await
            .unwrap(),
        CreateOutcome::Created
    );
    assert_eq!(unfilled.front_len(), 0);
    assert!(unfilled.read(&key).await.unwrap().is_some());
}

#[tokio::test]
async fn the_front_is_bounded() {
    let back = Arc::new(MemoryStore::new());
    let store = Tiered::new(MemoryStore::new(), Arc::clone(&back)).with_capacity(10);
    let mut keys = Vec::new();
    for _ in 0..50 {
        let key = SessionId::generate().key();
        assert_eq!(
            back.create(&key, later(), Bytes::from_static(b"x"))
                .await
                .unwrap(),
            CreateOutcome::Created
        );
        keys.push(key);
    }
    for key in &keys {
        assert!(store.read(key).await.unwrap().is_some());
    }
    for key in &keys {
        assert_eq!(
            store
                .create(key, later(), Bytes::from_static(b"y"))
                .await
                .unwrap(),
            CreateOutcome::IdTaken
        );
        assert!(store.read(key).await.unwrap().is_some());
    }
    assert!(store.front_len() <= 10, "{}", store.front_len());
    assert!(
        store.front().live_records() <= 10,
        "{}",
        store.front().live_records()
    );
    // The most recently read keys are the ones kept.
    assert!(store.front().read(&keys[49]).await.unwrap().is_some());
    assert!(store.front().read(&keys[0]).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn session_handles_on_two_servers_merge_their_changes() {
    const TASKS: usize = 16;
    let (back, a, b) = two_servers(Duration::from_secs(60));
    let managers: Vec<Arc<SessionManager<Arc<dyn SessionStore>>>> = [a, b]
        .into_iter()
        .map(|s| Arc::new(SessionManager::new(s as Arc<dyn SessionStore>)))
        .collect();
    let first = Session::with_manager(None, Arc::clone(&managers[0]), None);
    first.insert("origin", true).await.unwrap();
    first.save().await.unwrap();
    let id = first.id().unwrap();
    let handles: Vec<Session> = (0..TASKS)
        .map(|i| Session::with_manager(Some(id.clone()), Arc::clone(&managers[i % 2]), None))
        .collect();
    for handle in &handles {
        handle.get_value("origin").await.unwrap();
    }
    let tasks: Vec<_> = handles
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            tokio::spawn(async move {
                s.insert(&format!("k{i}"), i).await.unwrap();
                s.save().await
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    // The back holds every request's key.
    let back_view = Session::new(Some(id), back, None);
    for i in 0..TASKS {
        assert_eq!(
            back_view.get::<usize>(&format!("k{i}")).await.unwrap(),
            Some(i)
        );
    }
    assert_eq!(back_view.get::<bool>("origin").await.unwrap(), Some(true));
}

/// Found by the `tiered_front` fuzz target: a front entry that is not a tiered entry (a shared
/// front written by something else, a corrupt value) made every read of that session fail with
/// `Decode` until the entry expired. Now it is dropped and the back answers.
#[tokio::test]
async fn a_corrupt_front_entry_is_dropped_and_the_back_answers() {
    for junk in [&b""[..], b"short", &[0xff; 16], &[0x7f; 40]] {
        let store = Tiered::new(MemoryStore::new(), MemoryStore::new());
        let key = SessionId::generate().key();
        assert_eq!(
            store
                .back()
                .create(&key, later(), Bytes::from_static(b"back"))
                .await
                .unwrap(),
            CreateOutcome::Created
        );
        assert_eq!(
            store
                .front()
                .create(&key, later(), Bytes::copy_from_slice(junk))
                .await
                .unwrap(),
            CreateOutcome::Created
        );
        let record = store.read(&key).await.unwrap().expect("the back has it");
        assert_eq!(&record.data[..], b"back", "front held {junk:?}");
        // The junk is gone; the front now caches the back's record.
        let front = store.front().read(&key).await.unwrap().expect("refilled");
        assert!(front.data.ends_with(b"back"));
    }
}
