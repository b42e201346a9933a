//! Cluster mode against a real Redis Cluster (`SESSION_TEST_REDIS_CLUSTER_URL`; scripts/test
//! starts a private one: 3 masters, 3 replicas; the conformance suite runs on it in
//! tests/conformance.rs): how sessions
//! spread over the masters, rotation kept within a slot, cross-slot rotations refused, counts
//! and clear over every master.

mod common;

use session_core::SessionStoreExt as _;
use std::collections::HashMap;
use std::sync::Arc;

use redis::AsyncCommands;
use session_core::time::{Duration as TimeDuration, OffsetDateTime};
use session_core::{
    BackendConfig, Bytes, CreateOutcome, ErrorKind, SessionId, SessionKey, SessionStore,
    StoreAdmin, UpdateOutcome,
};
use session_redis::{RedisConfig, RedisStore};

fn later() -> OffsetDateTime {
    OffsetDateTime::now_utc() + TimeDuration::hours(1)
}

/// A store on the test cluster under a fresh prefix, or `None` (loudly; a failure under CI).
async fn store() -> Option<(RedisStore, String)> {
    let url = session_test_support::server_url(session_test_support::REDIS_CLUSTER)?;
    let prefix = format!("{}:", conformance_tests::fresh_namespace());
    let config = RedisConfig::from_url(&url).unwrap().key_prefix(&prefix);
    assert!(config.cluster, "{url} is not a cluster URL");
    Some((RedisStore::connect(config).await.unwrap(), url))
}

/// One direct connection per master of the cluster (for counting keys where they live).
async fn masters(url: &str) -> Vec<(String, redis::aio::MultiplexedConnection)> {
    let single = url.replace("redis+cluster://", "redis://");
    let mut seed = redis::Client::open(single)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let nodes: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query_async(&mut seed)
        .await
        .unwrap();
    let mut masters = Vec::new();
    for line in nodes.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() >= 9 && fields[2].split(',').any(|f| f == "master") {
            let address = fields[1].split('@').next().unwrap().to_owned();
            let connection = redis::Client::open(format!("redis://{address}"))
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap();
            masters.push((address, connection));
        }
    }
    masters
}

async fn keys_on(connection: &mut redis::aio::MultiplexedConnection, prefix: &str) -> Vec<String> {
    let mut iter: redis::AsyncIter<'_, String> =
        connection.scan_match(format!("{prefix}*")).await.unwrap();
    let mut keys = Vec::new();
    while let Some(key) = iter.next_item().await {
        keys.push(key.unwrap());
    }
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_spread_over_every_master_and_rotation_keeps_the_slot() {
    let Some((store, url)) = store().await else {
        return;
    };
    let store = Arc::new(store);
    let manager = session_manager::SessionManager::new(Arc::clone(&store));
    let mut states = Vec::new();
    for _ in 0..10_000 {
        states.push(manager.create(Bytes::from_static(b"{}")).await.unwrap());
    }
    let prefix = store.config().key_prefix.clone();
    let mut spread = Vec::new();
    for (address, mut connection) in masters(&url).await {
        spread.push((address, keys_on(&mut connection, &prefix).await.len()));
    }
    eprintln!("10,000 sessions over the masters: {spread:?}");
    assert_eq!(spread.len(), 3, "{spread:?}");
    assert_eq!(spread.iter().map(|(_, n)| n).sum::<usize>(), 10_000);
    for (address, n) in &spread {
        // 256 hash tags over 3 masters: each gets about a third.
        assert!((2_500..=4_200).contains(n), "{address} holds {n} of 10,000");
    }

    // Rotations through the front: every new id lands in the old one's slot, the old key is gone.
    let mut seed = redis::Client::open(url.replace("redis+cluster://", "redis://"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keyslot = |name: String| redis::cmd("CLUSTER").arg("KEYSLOT").arg(name).clone();
    for state in states.iter_mut().take(300) {
        let before = state.id().key();
        manager.cycle_id(state).await.unwrap();
        let after = state.id().key();
        assert_ne!(before, after);
        let slot_before: i64 = keyslot(format!("{prefix}{{{}}}", &before.to_hex()[..2]))
            .query_async(&mut seed)
            .await
            .unwrap();
        let slot_after: i64 = keyslot(format!("{prefix}{{{}}}", &after.to_hex()[..2]))
            .query_async(&mut seed)
            .await
            .unwrap();
        assert_eq!(slot_before, slot_after);
        assert!(store.read(&before).await.unwrap().is_none());
        assert_eq!(store.read(&after).await.unwrap().unwrap().version, 2);
    }
    assert_eq!(store.counts().await.unwrap().live, 10_000);
    store.clear().await.unwrap();
    assert_eq!(store.counts().await.unwrap().live, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_across_slots_is_refused_and_changes_nothing() {
    let Some((store, _)) = store().await else {
        return;
    };
    let previous = SessionId::generate().key();
    let mut other = *previous.as_bytes();
    other[0] ^= 0x80;
    let current = SessionKey::from_bytes(&other).unwrap();
    assert!(!store.can_rotate_between(&previous, &current));
    assert_eq!(
        store
            .create(&previous, later(), Bytes::from_static(b"kept"))
            .await
            .unwrap(),
        CreateOutcome::Created
    );
    let error = store
        .update(
            &current,
            &previous,
            1,
            later(),
            Bytes::from_static(b"moved"),
        )
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unsupported, "{error}");
    assert!(!error.is_transient(), "{error}");
    let record = store.read(&previous).await.unwrap().unwrap();
    assert_eq!((&record.data[..], record.version), (&b"kept"[..], 1));
    assert!(store.read(&current).await.unwrap().is_none());
    // Same first byte: allowed, and atomic.
    let mut same = *previous.as_bytes();
    same[31] ^= 0x01;
    let same = SessionKey::from_bytes(&same).unwrap();
    assert!(store.can_rotate_between(&previous, &same));
    assert_eq!(
        store
            .update(&same, &previous, 1, later(), Bytes::from_static(b"moved"))
            .await
            .unwrap(),
        UpdateOutcome::Updated { version: 2 }
    );
    store.clear().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_and_counts_visit_every_master_and_only_the_namespace() {
    let Some((store, url)) = store().await else {
        return;
    };
    let prefix = store.config().key_prefix.clone();
    let neighbour = RedisStore::connect(
        RedisConfig::from_url(&url)
            .unwrap()
            .key_prefix(format!("{}:", conformance_tests::fresh_namespace())),
    )
    .await
    .unwrap();
    for _ in 0..600 {
        let key = SessionId::generate().key();
        assert_eq!(
            store.create(&key, later(), Bytes::new()).await.unwrap(),
            CreateOutcome::Created
        );
        let key = SessionId::generate().key();
        assert_eq!(
            neighbour.create(&key, later(), Bytes::new()).await.unwrap(),
            CreateOutcome::Created
        );
    }
    // Foreign keys under the same prefix, on every master: never counted, never deleted.
    let mut foreign: HashMap<String, ()> = HashMap::new();
    for (i, (_, mut connection)) in masters(&url).await.into_iter().enumerate() {
        for j in 0..64 {
            let name = format!("{prefix}user-data-{i}-{j}");
            // Only keys whose slot this master serves can be written here.
            if redis::cmd("SET")
                .arg(&name)
                .arg("x")
                .query_async::<()>(&mut connection)
                .await
                .is_ok()
            {
                foreign.insert(name, ());
            }
        }
        let on_this_master = keys_on(&mut connection, &prefix).await.len();
        assert!(
            on_this_master > 100,
            "master {i} holds {on_this_master} of the store's keys"
        );
    }
    assert!(!foreign.is_empty());
    assert_eq!(store.counts().await.unwrap().live, 600);
    store.clear().await.unwrap();
    assert_eq!(store.counts().await.unwrap().live, 0);
    assert_eq!(neighbour.counts().await.unwrap().live, 600);
    let mut left = 0;
    for (_, mut connection) in masters(&url).await {
        left += keys_on(&mut connection, &prefix).await.len();
    }
    assert_eq!(
        left,
        foreign.len(),
        "clear removed foreign keys or left sessions"
    );
    neighbour.drop_namespace().await.unwrap();
    for (_, mut connection) in masters(&url).await {
        for name in keys_on(&mut connection, &prefix).await {
            let _: i64 = connection.del(name).await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_urls_reach_the_cluster_and_single_urls_are_told_to_switch() {
    let Some(url) = session_test_support::server_url(session_test_support::REDIS_CLUSTER) else {
        return;
    };
    // A second seed given as a parameter, the first one unreachable: the other seeds suffice.
    let with_seeds = format!(
        "redis+cluster://127.0.0.1:1?seed={}&connection_timeout=500",
        url.trim_start_matches("redis+cluster://")
    );
    let store = RedisConfig::from_url(&with_seeds)
        .unwrap()
        .isolated(&conformance_tests::fresh_namespace())
        .unwrap()
        .open()
        .await
        .unwrap();
    let key = SessionId::generate().key();
    assert_eq!(
        store
            .create(&key, later(), Bytes::from_static(b"x"))
            .await
            .unwrap(),
        CreateOutcome::Created
    );
    store.clear().await.unwrap();
    let single = url.replace("redis+cluster://", "redis://");
    let error = RedisStore::connect(RedisConfig::new(single))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config, "{error}");
    assert!(error.to_string().contains("redis+cluster://"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_wait_for_replicas_when_asked() {
    let Some((_, url)) = store().await else {
        return;
    };
    let open = |replicas: u32| {
        let url = url.clone();
        async move {
            RedisConfig::from_url(&url)
                .unwrap()
                .key_prefix(format!("{}:", conformance_tests::fresh_namespace()))
                .wait_replicas(replicas, std::time::Duration::from_millis(200))
                .open()
                .await
                .unwrap()
        }
    };
    // One replica per master: WAIT 1 is met, every kind of write goes through.
    let one = open(1).await;
    let key = SessionId::generate().key();
    assert_eq!(
        one.create(&key, later(), Bytes::from_static(b"a"))
            .await
            .unwrap(),
        CreateOutcome::Created
    );
    assert_eq!(
        one.update(&key, &key, 1, later(), Bytes::from_static(b"b"))
            .await
            .unwrap(),
        UpdateOutcome::Updated { version: 2 }
    );
    assert!(one.touch(&key, later()).await.unwrap());
    one.delete(&key).await.unwrap();
    assert!(one.read(&key).await.unwrap().is_none());
    // Two replicas cannot be met: the write is reported as failed (outcome unknown), never as
    // acknowledged; it did reach the master.
    let two = open(2).await;
    let key = SessionId::generate().key();
    let error = two
        .create(&key, later(), Bytes::from_static(b"a"))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("1 of 2 replicas"), "{error}");
    assert!(!error.is_transient(), "{error}");
    assert!(two.read(&key).await.unwrap().is_some());
    let error = two
        .update(&key, &key, 1, later(), Bytes::from_static(b"b"))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("1 of 2 replicas"), "{error}");
    one.clear().await.unwrap();
    two.clear().await.unwrap();
}

/// An owner's sessions spread over many slots (random keys, unlike the suite's, whose keys share
/// one slot): listed whole, rotations followed, all revoked, the index keys left in their own
/// slot and cleared with the namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owners_sessions_over_many_slots_are_listed_and_revoked() {
    use session_core::{Owner, OwnerChange, Ownership, WriteOptions};
    let Some((store, _url)) = store().await else {
        return;
    };
    let ada = Owner::new("ada").unwrap();
    let owned = Ownership::new(ada.clone(), "device").unwrap();
    let mut keys = Vec::new();
    for _ in 0..60 {
        let key = SessionId::generate().key();
        assert_eq!(
            store
                .create_opts(
                    &key,
                    later(),
                    Bytes::from_static(b"x"),
                    &WriteOptions::new().with_owner(OwnerChange::Set(owned.clone()))
                )
                .await
                .unwrap(),
            CreateOutcome::Created
        );
        keys.push(key);
    }
    let slots: std::collections::HashSet<u8> = keys.iter().map(|k| k.as_bytes()[0]).collect();
    assert!(slots.len() > 20, "{} slots", slots.len());
    // Rotate a third of them (plain rotations: the owner follows).
    for key in keys.iter_mut().step_by(3) {
        let mut next = SessionId::generate().key();
        while !store.can_rotate_between(key, &next) {
            next = SessionId::generate().key();
        }
        assert_eq!(
            store
                .update(&next, key, 1, later(), Bytes::from_static(b"y"))
                .await
                .unwrap(),
            UpdateOutcome::Updated { version: 2 }
        );
        *key = next;
    }
    let listed: std::collections::HashSet<SessionKey> = store
        .sessions_of(&ada)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.key)
        .collect();
    assert_eq!(listed, keys.iter().copied().collect());
    assert_eq!(store.revoke_owner(&ada, Some(&keys[1])).await.unwrap(), 59);
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(store.read(key).await.unwrap().is_some(), i == 1);
    }
    assert_eq!(store.sessions_of(&ada).await.unwrap().len(), 1);
    store.drop_namespace().await.unwrap();
}
