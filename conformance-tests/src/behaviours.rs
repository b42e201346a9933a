//! The behaviours, one `pub async fn` each. Every function takes a [`StoreFactory`], asks it for
//! fresh stores, and returns `Ok(())` or the first [`Failure`] it saw.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use session_core::time::{Duration, OffsetDateTime};
use session_core::{
    CreateOutcome, ErrorKind, ExpiryPolicy, SessionId, SessionKey, SessionManager, SessionStore,
    UpdateOutcome, truncate_to_millis,
};
use tokio::sync::Barrier;

use crate::support::{
    CountingStore, create, create_expired, ensure, ensure_eq, in_secs, key, live,
};
use crate::{CheckResult, Failure, StoreFactory};

/// Concurrent tasks in each race.
const RACERS: usize = 32;
/// How many times each race is repeated.
const RACE_ROUNDS: usize = 16;

/// Empty, binary (every byte value) and 1 MiB data round-trip exactly; the expiry comes back
/// truncated to the millisecond; the version is 1.
pub async fn create_read_round_trip(factory: &dyn StoreFactory) -> CheckResult {
    let store = factory.store().await?;
    let every_byte: Vec<u8> = (0..=255u8).collect();
    let mut big = vec![0u8; 1024 * 1024];
    let mut x: u32 = 0x9e37_79b9;
    for byte in &mut big {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *byte = x as u8;
    }
    // A sub-millisecond part that must be truncated, not rounded.
    let expires_at = (OffsetDateTime::now_utc() + Duration::hours(1))
        .replace_nanosecond(123_999_999)
        .expect("valid");
    for data in [Vec::new(), every_byte, big] {
        let k = key();
        ensure_eq!(
            store.create(&k, expires_at, &data).await?,
            CreateOutcome::Created,
            "create"
        );
        let record = store.read(&k).await?;
        let Some(record) = record else {
            return Err(Failure::new(format!(
                "a record of {} bytes was created but reads as absent",
                data.len()
            )));
        };
        ensure!(
            record.data == data,
            "data of {} bytes did not round-trip (got {} bytes)",
            data.len(),
            record.data.len()
        );
        ensure_eq!(
            record.expires_at,
            truncate_to_millis(expires_at),
            "expiry at millisecond precision"
        );
        ensure_eq!(
            record.expires_at.offset(),
            session_core::time::UtcOffset::UTC,
            "expiry offset"
        );
        ensure_eq!(record.version, 1, "version after create");
    }
    Ok(())
}

/// Create on a live key is `IdTaken` and leaves the original untouched.
pub async fn create_on_live_key_is_id_taken(factory: &dyn StoreFactory) -> CheckResult {
    let store = factory.store().await?;
    let k = key();
    let expires_at = in_secs(600);
    create(&*store, &k, expires_at, b"original").await?;
    ensure_eq!(
        store.create(&k, in_secs(1200), b"intruder").await?,
        CreateOutcome::IdTaken,
        "second create"
    );
    let record = live(&*store, &k, "the original record vanished").await?;
    ensure_eq!(
        record.data,
        b"original".to_vec(),
        "data after a refused create"
    );
    ensure_eq!(
        record.expires_at,
        expires_at,
        "expiry after a refused create"
    );
    ensure_eq!(record.version, 1, "version after a refused create");
    Ok(())
}

/// Create over an expired record replaces it, with version 1.
pub async fn create_over_expired_record(factory: &dyn StoreFactory) -> CheckResult {
    let store = factory.store().await?;
    let k = key();
    create_expired(&*store, &k, b"old").await?;
    let expires_at = in_secs(600);
    ensure_eq!(
        store.create(&k, expires_at, b"new").await?,
        CreateOutcome::Created,
        "create over an expired record"
    );
    let record = live(&*store, &k, "the new record reads as absent").await?;
    ensure_eq!(record.data, b"new".to_vec(), "data");
    ensure_eq!(record.version, 1, "version");
    ensure_eq!(record.expires_at, expires_at, "expiry");
    Ok(())
}

/// Reading a missing or an expired key is `None`, and reading creates nothing.
pub async fn read_missing_or_expired_is_none(factory: &dyn StoreFactory) -> CheckResult {
    let store = factory.store().await?;
    let missing = key();
    ensure!(
        store.read(&missing).await?.is_none(),
        "a key never written reads as present"
    );
    ensure!(
        store.read(&missing).await?.is_none(),
        "a key never written reads as present the second time"
    );
    // Had the reads created anything, this create would be refused.
    create(&*store, &missing, in_secs(600), b"first").await?;
    let expired = key();
    create_expired(&*store, &expired, b"stale").await?;
    for _ in 0..2 {
        ensure!(
            store.read(&expired).await?.is_none(),
            "an expired record reads as present"
        );
    }
    Ok(())
}

/// A record whose expiry is the current millisecond is already absent (`expires_at <= now`), for
/// create, update and touch alike.
pub async fn expires_at_now_is_absent(factory: &dyn StoreFactory) -> CheckResult {
    let store = factory.store().await?;
    for round in 0..20 {
        let k = key();
        let now = truncate_to_millis(OffsetDateTime::now_utc());
        ensure_eq!(
            store.create(&k, now, b"x").await?,
            CreateOutcome::Created,
            "create expiring now (round {round})"
        );
        ensure!(
            store.read(&k).await?.is_none(),
            "a record with expires_at == now reads as live (round {round})"
        );

        let k = key();
        create(&*store, &k, in_secs(600), b"x").await?;
        let now = truncate_to_millis(OffsetDateTime::now_utc());
        ensure_eq!(
            store.update(&k, &k, 1, now, b"y").await?,
            UpdateOutcome::Updated { version: 2 },
            "update to expire now"
        );
        ensure!(
            store.read(&k).await?.is_none(),
            "a record updated to expire now reads as live (round {round})"
        );

        let k = key();
        create(&*store, &k, in_secs(600), b"x").await?;
        let now = truncate_to_millis(OffsetDateTime::now_utc());
        ensure!(store.touch(&k, now).await?, "touch of a live record");
        ensure!(
            store.read(&k).await?.is_none(),
            "a record touched to expire now reads as live (round {round})"
        );
    }
    Ok(())
}

/// Update in place with the right version: new data and expiry, version + 1, again and again.
pub async fn update_in_place(factory: &dyn StoreFactory) -> CheckResult {
    let store = factory.store().await?;
    let k = key();
    create(&*store, &k, in_secs(600), b"v1").await?;
    for version in 1..=3u64 {
        let expires_at = in_secs(600 + version as i64);
        let data = format!("v{}", version + 1).into_bytes();
        let outcome = store.update(&k, &k, version, expires_at, &data).await?;
        ensure_eq!(
            outcome,
            UpdateOutcome::Updated {
                version: version + 1
            },
            "update with the current version"
        );
        let record = live(&*store, &k, "an updated record reads as absent").await?;
        ensure_eq!(record.data, data, "data after update");
        ensure_eq!(record.expires_at, expires_at, "expiry after update");
        ensure_eq!(record.version, version + 1, "version after update");
    }
    Ok(())
}

/// Update with a stale (or future) version is `Conflict` and changes nothing.
pub async fn update_with_stale_version_is_conflict(factory: &dyn StoreFactory) -> CheckResult {
    let store = factory.store().await?;
    let k = key();
    create(&*store, &k, in_secs(600), b"v1").await?;
    let expires_at = in_secs(700);
    ensure_eq!(
        store.update(&k, &k, 1, expires_at, b"v2").await?,
        UpdateOutcome::Updated { version: 2 },
        "first update"
    );
    for stale in [1, 0, 3, 99] {
        ensure_eq!(
            store.update(&k, &k, stale, in_secs(900), b"lost").await?,
            UpdateOutcome::Conflict,
            "update expecting version {stale}"
        );
        let other = key();
        ensure_eq!(
            store
                .update(&other, &k, stale, in_secs(900), b"lost")
                .await?,
            UpdateOutcome::Conflict,
            "rotation expecting version {stale}"
        );
        ensure!(
            store.read(&other).await?.is_none(),
            "a refused rotation created its target"
        );
    }
    let record = live(&*store, &k, "the record vanished").await?;
    ensure_eq!(
        (record.data.to_vec(), record.version, record.expires_at),
        (b"v2".to_vec(), 2, expires_at),
        "record after refused updates"
    );
    Ok(())
}

/// Rotation moves the record: the old key is gone, the new one holds the new data, version + 1.
pub async fn rotation_moves_the_record(factory: &dyn StoreFactory) -> CheckResult {
    let store = factory.store().await?;
    let (a, b, c) = (key(), key(), key());
    create(&*store, &a, in_secs(600), b"at a").await?;
    let expires_at = in_secs(800);
    ensure_eq!(
        store.update(&b, &a, 1, expires_at, b"at b").await?,
        UpdateOutcome::Updated { version: 2 },
        "rotation a -> b"
    );
    ensure!(
        store.read(&a).await?.is_none(),
        "the rotated-away key is still live"
    );
    let record = live(&*store, &b, "the rotation target reads as absent").await?;
    ensure_eq!(
        (record.data.to_vec(), record.version, record.expires_at),
        (b"at b".to_vec(), 2, expires_at),
        "record at the new key"
    );
    ensure_eq!(
        store.update(&c, &b, 2, expires_at, b"at c").await?,
        UpdateOutcome::Updated { version: 3 },
        "rotation b -> c"
    );
    ensure!(
        store.read(&b).await?.is_none(),
        "the second rotated-away key is still live"
    );
    ensure_eq!(
        store.read(&c).await?.map(|r| r.version),
        Some(3),
        "version after two rotations"
    );
    Ok(())
}

/// Rotation onto a live key is `IdTaken`, and both records stay as they were.
pub async fn rotation_onto_live_key_is_id_taken(factory: &dyn StoreFactory) -> CheckResult {
    let store = factory.store().await?;
    let (a, b) = (key(), key());
    let (ea, eb) = (in_secs(600), in_secs(900));
    create(&*store, &a, ea, b"a").await?;
    create(&*store, &b, eb, b"b").await?;
    ensure_eq!(
        store.update(&b, &a, 1, in_secs(1200), b"moved").await?,
        UpdateOutcome::IdTaken,
        "rotation onto a live key"
    );
    let ra = live(&*store, &a, "the source of a refused rotation vanished").await?;
    let rb = live(&*store, &b, "the target of a refused rotation vanished").await?;
    ensure_eq!(
        (ra.data.to_vec(), ra.version, ra.expires_at),
        (b"a".to_vec(), 1, ea),
        "source after refused rotation"
    );
    ensure_eq!(
        (rb.data.to_vec(), rb.version, rb.expires_at),
        (b"b".to_vec(), 1, eb),
        "target after refused rotation"
    );
    Ok(())
}

/// Rotation onto a key holding an expired record succeeds and replaces it.
pub async fn rotation_onto_expired_key(factory: &dyn StoreFactory) -> CheckResult {
    let store = factory.store().await?;
    let (a, b) = (key(), key());
    create(&*store, &a, in_secs(600), b"a").await?;
    create_expired(&*store, &b, b"stale").await?;
    let expires_at = in_secs(700);
    ensure_eq!(
        store.update(&b, &a, 1, expires_at, b"moved").await?,
        UpdateOutcome::Updated { version: 2 },
        "rotation onto an expired key"
    );
    ensure!(
        store.read(&a).await?.is_none(),
        "the rotated-away key is still live"
    );
    let record = live(&*store, &b, "the rotation target reads as absent").await?;
    ensure_eq!(
        (record.data.to_vec(), record.version, record.expires_at),
        (b"moved".to_vec(), 2, expires_at),
        "record at the target"
    );
    Ok(())
}

/// Update (in place or rotating) of a missing, deleted, expired or rotated-away key is
/// `NotFound`, and creates nothing: no resurrection.
pub async fn update_of_absent_previous_is_not_found(factory: &dyn StoreFactory) -> CheckResult {
    let store = factory.store().await?;
    let missing = key();
    let deleted = key();
    create(&*store, &deleted, in_secs(600), b"d").await?;
    store.delete(&deleted).await?;
    let expired = key();
    create_expired(&*store, &expired, b"e").await?;
    let rotated = key();
    let successor = key();
    create(&*store, &rotated, in_secs(600), b"r").await?;
    ensure_eq!(
        store
            .update(&successor, &rotated, 1, in_secs(600), b"s")
            .await?,
        UpdateOutcome::Updated { version: 2 },
        "rotation"
    );
    for (what, previous, version) in [
        ("a missing", missing, 1),
        ("a deleted", deleted, 1),
        ("an expired", expired, 1),
        ("a rotated-away", rotated, 1),
        ("a rotated-away", rotated, 2),
    ] {
        ensure_eq!(
            store
                .update(&previous, &previous, version, in_secs(600), b"zombie")
                .await?,
            UpdateOutcome::NotFound,
            "update in place of {what} key"
        );
        ensure!(
            store.read(&previous).await?.is_none(),
            "update of {what} key brought it back"
        );
        let target = key();
        ensure_eq!(
            store
                .update(&target, &previous, version, in_secs(600), b"zombie")
                .await?,
            UpdateOutcome::NotFound,
            "rotation from {what} key"
        );
        ensure!(
            store.read(&target).await?.is_none(),
            "rotation from {what} key created its target"
        );
    }
    let record = live(&*store, &successor, "the successor vanished").await?;
    ensure_eq!(
        (record.data.to_vec(), record.version),
        (b"s".to_vec(), 2),
        "successor untouched"
    );
    Ok(())
}

/// Touch moves the expiry (later or earlier) and keeps data and version.
pub async fn touch_moves_expiry_only(factory: &dyn StoreFactory) -> CheckResult {
    let store = factory.store().await?;
    let k = key();
    create(&*store, &k, in_secs(600), b"data").await?;
    ensure_eq!(
        store.update(&k, &k, 1, in_secs(600), b"data2").await?,
        UpdateOutcome::Updated { version: 2 },
        "update"
    );
    for seconds in [3600, 60] {
        let expires_at = in_secs(seconds);
        ensure!(
            store.touch(&k, expires_at).await?,
            "touch of a live record returned false"
        );
        let record = live(&*store, &k, "a touched record reads as absent").await?;
        ensure_eq!(
            (record.data.to_vec(), record.version, record.expires_at),
            (b"data2".to_vec(), 2, expires_at),
            "record after touch"
        );
    }
    Ok(())
}

/// Touch of a missing, expired or deleted key is `false` and creates nothing.
pub async fn touch_of_absent_creates_nothing(factory: &dyn StoreFactory) -> CheckResult {
    let store = factory.store().await?;
    let missing = key();
    let expired = key();
    create_expired(&*store, &expired, b"e").await?;
    let deleted = key();
    create(&*store, &deleted, in_secs(600), b"d").await?;
    store.delete(&deleted).await?;
    for (what, k) in [
        ("a missing", missing),
        ("an expired", expired),
        ("a deleted", deleted),
    ] {
        ensure!(
            !store.touch(&k, in_secs(600)).await?,
            "touch of {what} key returned true"
        );
        ensure!(
            store.read(&k).await?.is_none(),
            "touch of {what} key made it live"
        );
    }
    Ok(())
}

/// Delete is idempotent, and after it update and touch are `NotFound` while create starts afresh.
pub async fn delete_is_idempotent_and_final(factory: &dyn StoreFactory) -> CheckResult {
    let store = factory.store().await?;
    let k = key();
    store.delete(&k).await?;
    create(&*store, &k, in_secs(600), b"x").await?;
    store.delete(&k).await?;
    store.delete(&k).await?;
    ensure!(
        store.read(&k).await?.is_none(),
        "a deleted record reads as present"
    );
    ensure_eq!(
        store.update(&k, &k, 1, in_secs(600), b"y").await?,
        UpdateOutcome::NotFound,
        "update after delete"
    );
    ensure!(
        !store.touch(&k, in_secs(600)).await?,
        "touch after delete returned true"
    );
    ensure!(
        store.read(&k).await?.is_none(),
        "a deleted record came back"
    );
    create(&*store, &k, in_secs(600), b"z").await?;
    ensure_eq!(
        store.read(&k).await?.map(|r| r.version),
        Some(1),
        "version of a record created after delete"
    );
    Ok(())
}

/// `delete_expired` removes only expired records and reports how many.
pub async fn delete_expired_purges_only_expired(factory: &dyn StoreFactory) -> CheckResult {
    let store = factory.store().await?;
    let live: Vec<SessionKey> = (0..3).map(|_| key()).collect();
    for k in &live {
        create(&*store, k, in_secs(600), b"live").await?;
    }
    for _ in 0..5 {
        create_expired(&*store, &key(), b"dead").await?;
    }
    // One that expires for real rather than being written in the past.
    let soon = truncate_to_millis(OffsetDateTime::now_utc() + Duration::milliseconds(200));
    create(&*store, &key(), soon, b"soon").await?;
    tokio::time::sleep(std::time::Duration::from_millis(350)).await;
    let purged = store.delete_expired().await?;
    if factory.expires_by_itself() {
        ensure!(
            purged <= 6,
            "delete_expired reported {purged} purged records, only 6 were expired"
        );
    } else {
        ensure_eq!(purged, 6, "records reported purged by delete_expired");
    }
    for k in &live {
        ensure!(
            store.read(k).await?.is_some(),
            "delete_expired removed a live record"
        );
    }
    ensure_eq!(store.delete_expired().await?, 0, "a second delete_expired");
    Ok(())
}

/// `clear` empties this store's namespace and nothing else; the store stays usable.
pub async fn clear_only_this_namespace(factory: &dyn StoreFactory) -> CheckResult {
    let mine = factory.store().await?;
    let other = factory.store().await?;
    let shared = key();
    let (only_mine, only_other) = (key(), key());
    create(&*mine, &shared, in_secs(600), b"mine").await?;
    create(&*mine, &only_mine, in_secs(600), b"mine").await?;
    // Namespaces are independent: the same key is free in the other one.
    create(&*other, &shared, in_secs(600), b"other").await?;
    create(&*other, &only_other, in_secs(600), b"other").await?;
    mine.clear().await?;
    ensure!(
        mine.read(&shared).await?.is_none(),
        "clear left a record behind"
    );
    ensure!(
        mine.read(&only_mine).await?.is_none(),
        "clear left a record behind"
    );
    for k in [shared, only_other] {
        let record = live(&*other, &k, "clear removed a record of another namespace").await?;
        ensure_eq!(record.data, b"other".to_vec(), "the other namespace's data");
    }
    create(&*mine, &shared, in_secs(600), b"again").await?;
    Ok(())
}

/// Runs `RACERS` copies of `task` at once (split over the two instances of a pair, released
/// together by a barrier) and returns their results in task order.
async fn race<T, F, Fut>(
    stores: &(Arc<dyn SessionStore>, Arc<dyn SessionStore>),
    task: F,
) -> Result<Vec<T>, Failure>
where
    T: Send + 'static,
    F: Fn(usize, Arc<dyn SessionStore>) -> Fut,
    Fut: std::future::Future<Output = Result<T, session_core::Error>> + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(RACERS));
    let handles: Vec<_> = (0..RACERS)
        .map(|i| {
            let store = if i % 2 == 0 {
                Arc::clone(&stores.0)
            } else {
                Arc::clone(&stores.1)
            };
            let barrier = Arc::clone(&barrier);
            let fut = task(i, store);
            tokio::spawn(async move {
                barrier.wait().await;
                fut.await
            })
        })
        .collect();
    let mut results = Vec::with_capacity(RACERS);
    for handle in handles {
        results.push(
            handle
                .await
                .map_err(|e| Failure::new(format!("a racing task panicked: {e}")))??,
        );
    }
    Ok(results)
}

/// Of 32 concurrent creates of one key, exactly one wins and the stored data is the winner's.
pub async fn race_concurrent_creates(factory: &dyn StoreFactory) -> CheckResult {
    let stores = factory.store_pair().await?;
    for round in 0..RACE_ROUNDS {
        let k = key();
        let outcomes = race(&stores, |i, store| async move {
            store
                .create(&k, in_secs(600), format!("task {i}").as_bytes())
                .await
        })
        .await?;
        let winners: Vec<usize> = (0..RACERS)
            .filter(|&i| outcomes[i] == CreateOutcome::Created)
            .collect();
        ensure_eq!(
            winners.len(),
            1,
            "winners among {RACERS} concurrent creates (round {round})"
        );
        for store in [&stores.0, &stores.1] {
            let record = live(&**store, &k, "the raced key reads as absent").await?;
            ensure_eq!(
                record.data,
                format!("task {}", winners[0]).into_bytes(),
                "stored data vs the winner's (round {round})"
            );
            ensure_eq!(record.version, 1, "version after the create race");
        }
    }
    Ok(())
}

/// Of 32 concurrent rotations of one key (one expected version, each to its own new key), exactly
/// one succeeds; exactly one successor is live and the old key is gone.
pub async fn race_concurrent_rotations(factory: &dyn StoreFactory) -> CheckResult {
    let stores = factory.store_pair().await?;
    for round in 0..RACE_ROUNDS {
        let previous = key();
        create(&*stores.0, &previous, in_secs(600), b"origin").await?;
        let targets: Arc<Vec<SessionKey>> = Arc::new((0..RACERS).map(|_| key()).collect());
        let outcomes = race(&stores, |i, store| {
            let targets = Arc::clone(&targets);
            async move {
                store
                    .update(
                        &targets[i],
                        &previous,
                        1,
                        in_secs(600),
                        format!("task {i}").as_bytes(),
                    )
                    .await
            }
        })
        .await?;
        let winners: Vec<usize> = (0..RACERS)
            .filter(|&i| matches!(outcomes[i], UpdateOutcome::Updated { .. }))
            .collect();
        ensure_eq!(
            winners.len(),
            1,
            "successful rotations among {RACERS} concurrent ones (round {round})"
        );
        for (i, outcome) in outcomes.iter().enumerate() {
            ensure!(
                matches!(
                    outcome,
                    UpdateOutcome::Updated { version: 2 }
                        | UpdateOutcome::NotFound
                        | UpdateOutcome::Conflict
                ),
                "rotation {i} returned {outcome:?} (round {round})"
            );
        }
        let mut live = Vec::new();
        for (i, target) in targets.iter().enumerate() {
            if let Some(record) = stores.1.read(target).await? {
                live.push((i, record));
            }
        }
        ensure_eq!(
            live.len(),
            1,
            "live successors after the rotation race (round {round})"
        );
        ensure_eq!(live[0].0, winners[0], "the live successor is the winner's");
        ensure_eq!(
            (live[0].1.data.to_vec(), live[0].1.version),
            (format!("task {}", winners[0]).into_bytes(), 2),
            "successor record"
        );
        ensure!(
            stores.0.read(&previous).await?.is_none(),
            "the rotated-away key is still live (round {round})"
        );
    }
    Ok(())
}

/// Of 32 concurrent in-place updates with one expected version, exactly one succeeds and its data
/// is what is stored.
pub async fn race_concurrent_updates(factory: &dyn StoreFactory) -> CheckResult {
    let stores = factory.store_pair().await?;
    for round in 0..RACE_ROUNDS {
        let k = key();
        create(&*stores.0, &k, in_secs(600), b"origin").await?;
        let outcomes = race(&stores, |i, store| async move {
            store
                .update(&k, &k, 1, in_secs(600), format!("task {i}").as_bytes())
                .await
        })
        .await?;
        let winners: Vec<usize> = (0..RACERS)
            .filter(|&i| matches!(outcomes[i], UpdateOutcome::Updated { .. }))
            .collect();
        ensure_eq!(
            winners.len(),
            1,
            "successful updates among {RACERS} concurrent ones (round {round})"
        );
        for (i, outcome) in outcomes.iter().enumerate() {
            ensure!(
                matches!(
                    outcome,
                    UpdateOutcome::Updated { version: 2 } | UpdateOutcome::Conflict
                ),
                "update {i} returned {outcome:?} (round {round})"
            );
        }
        let record = live(&*stores.1, &k, "the raced key reads as absent").await?;
        ensure_eq!(
            (record.data.to_vec(), record.version),
            (format!("task {}", winners[0]).into_bytes(), 2),
            "record after the update race"
        );
    }
    Ok(())
}

/// A counter incremented by compare-and-swap (read, update with the read version, retry on
/// `Conflict`) from 16 tasks × 20 increments ends at exactly 320: no lost update.
pub async fn race_cas_counter(factory: &dyn StoreFactory) -> CheckResult {
    const TASKS: usize = 16;
    const INCREMENTS: u64 = 20;
    const MAX_ATTEMPTS: usize = 100_000;
    let stores = factory.store_pair().await?;
    let k = key();
    create(&*stores.0, &k, in_secs(600), &0u64.to_be_bytes()).await?;
    let handles: Vec<_> = (0..TASKS)
        .map(|i| {
            let store = if i % 2 == 0 {
                Arc::clone(&stores.0)
            } else {
                Arc::clone(&stores.1)
            };
            tokio::spawn(async move {
                let mut attempts = 0;
                for _ in 0..INCREMENTS {
                    loop {
                        attempts += 1;
                        if attempts > MAX_ATTEMPTS {
                            return Err(Failure::new("a CAS increment kept conflicting"));
                        }
                        let record = live(&*store, &k, "the counter vanished").await?;
                        let value = u64::from_be_bytes(
                            record.data[..]
                                .try_into()
                                .map_err(|_| Failure::new("the counter is not 8 bytes"))?,
                        );
                        match store
                            .update(
                                &k,
                                &k,
                                record.version,
                                in_secs(600),
                                &(value + 1).to_be_bytes(),
                            )
                            .await?
                        {
                            UpdateOutcome::Updated { .. } => break,
                            UpdateOutcome::Conflict => continue,
                            other => {
                                return Err(Failure::new(format!(
                                    "a CAS increment returned {other:?}"
                                )));
                            }
                        }
                    }
                }
                Ok(())
            })
        })
        .collect();
    for handle in handles {
        handle
            .await
            .map_err(|e| Failure::new(format!("a counting task panicked: {e}")))??;
    }
    let record = live(&*stores.1, &k, "the counter vanished").await?;
    let value = u64::from_be_bytes(
        record.data[..]
            .try_into()
            .map_err(|_| Failure::new("the counter is not 8 bytes"))?,
    );
    let expected = TASKS as u64 * INCREMENTS;
    ensure_eq!(
        value,
        expected,
        "counter after {TASKS} tasks x {INCREMENTS} CAS increments"
    );
    ensure_eq!(
        record.version,
        expected + 1,
        "version after every increment"
    );
    Ok(())
}

/// While a key is rotated, concurrent readers never see both keys live (reading the new one
/// first), never neither (reading the old one first), and never a mixed record.
pub async fn readers_never_see_both_or_neither(factory: &dyn StoreFactory) -> CheckResult {
    const READERS: usize = 4;
    let stores = factory.store_pair().await?;
    for round in 0..24 {
        let (previous, current) = (key(), key());
        create(&*stores.0, &previous, in_secs(600), b"before").await?;
        let stop = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..READERS)
            .map(|i| {
                let store = if i % 2 == 0 {
                    Arc::clone(&stores.0)
                } else {
                    Arc::clone(&stores.1)
                };
                let stop = Arc::clone(&stop);
                tokio::spawn(async move {
                    let check =
                        |record: &Option<session_core::Record>, data: &[u8], version: u64| {
                            record
                                .as_ref()
                                .is_none_or(|r| r.data == data && r.version == version)
                        };
                    let mut reads = 0u64;
                    // Always read a few times after the stop flag, so the reader overlaps the rotation.
                    let mut tail = 3;
                    while tail > 0 {
                        if stop.load(Ordering::Acquire) {
                            tail -= 1;
                        }
                        let new = store.read(&current).await?;
                        let old = store.read(&previous).await?;
                        if new.is_some() && old.is_some() {
                            return Err(Failure::new(
                                "a reader saw the old and the new key live at once",
                            ));
                        }
                        let old2 = store.read(&previous).await?;
                        let new2 = store.read(&current).await?;
                        if old2.is_none() && new2.is_none() {
                            return Err(Failure::new(
                                "a reader saw neither the old nor the new key live",
                            ));
                        }
                        for (new, old) in [(&new, &old), (&new2, &old2)] {
                            if !check(new, b"after", 2) || !check(old, b"before", 1) {
                                return Err(Failure::new("a reader saw a half-written record"));
                            }
                        }
                        reads += 1;
                        tokio::task::yield_now().await;
                    }
                    Ok::<u64, Failure>(reads)
                })
            })
            .collect();
        tokio::task::yield_now().await;
        let outcome = stores
            .0
            .update(&current, &previous, 1, in_secs(600), b"after")
            .await?;
        stop.store(true, Ordering::Release);
        ensure_eq!(
            outcome,
            UpdateOutcome::Updated { version: 2 },
            "rotation (round {round})"
        );
        for reader in readers {
            reader
                .await
                .map_err(|e| Failure::new(format!("a reader panicked: {e}")))??;
        }
    }
    Ok(())
}

/// A record with a short expiry is live, then absent once the time has passed; touch extends it;
/// create over the expired key succeeds.
pub async fn expiry_in_real_time(factory: &dyn StoreFactory) -> CheckResult {
    let store = factory.store().await?;
    let (fading, kept) = (key(), key());
    let soon = truncate_to_millis(OffsetDateTime::now_utc() + Duration::milliseconds(700));
    create(&*store, &fading, soon, b"fading").await?;
    create(&*store, &kept, soon, b"kept").await?;
    ensure!(
        store.read(&fading).await?.is_some(),
        "a record with 700 ms to live reads as absent at once"
    );
    ensure!(
        store.touch(&kept, in_secs(600)).await?,
        "touch of a live record"
    );
    let wait = soon - OffsetDateTime::now_utc() + Duration::milliseconds(150);
    tokio::time::sleep(wait.try_into().unwrap_or_default()).await;
    ensure!(
        store.read(&fading).await?.is_none(),
        "a record still reads as live after its expiry"
    );
    ensure!(
        store.read(&kept).await?.is_some(),
        "a touched record expired at its old deadline"
    );
    ensure_eq!(
        store
            .update(&fading, &fading, 1, in_secs(600), b"zombie")
            .await?,
        UpdateOutcome::NotFound,
        "update after expiry"
    );
    create(&*store, &fading, in_secs(600), b"reborn").await?;
    Ok(())
}

/// 10,000 sessions created (16 at a time) and each read back intact.
pub async fn ten_thousand_sessions(factory: &dyn StoreFactory) -> CheckResult {
    const SESSIONS: usize = 10_000;
    const WORKERS: usize = 16;
    let store = factory.store().await?;
    let handles: Vec<_> = (0..WORKERS)
        .map(|w| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let keys: Vec<SessionKey> = (w..SESSIONS).step_by(WORKERS).map(|_| key()).collect();
                for (i, k) in keys.iter().enumerate() {
                    let data = format!("session {w}/{i}");
                    if store.create(k, in_secs(600), data.as_bytes()).await?
                        != CreateOutcome::Created
                    {
                        return Err(Failure::new(
                            "create of a fresh key among 10,000 was refused",
                        ));
                    }
                }
                for (i, k) in keys.iter().enumerate() {
                    let data = format!("session {w}/{i}").into_bytes();
                    match store.read(k).await? {
                        Some(record) if record.data == data && record.version == 1 => {}
                        Some(_) => {
                            return Err(Failure::new("one of 10,000 sessions read back different"));
                        }
                        None => return Err(Failure::new("one of 10,000 sessions reads as absent")),
                    }
                }
                Ok(keys.len())
            })
        })
        .collect();
    let mut total = 0;
    for handle in handles {
        total += handle
            .await
            .map_err(|e| Failure::new(format!("a worker panicked: {e}")))??;
    }
    ensure_eq!(total, SESSIONS, "sessions checked");
    Ok(())
}

/// An id generator that hands out queued ids first, then fresh ones.
fn queued_ids(ids: Vec<SessionId>) -> impl Fn() -> SessionId + Send + Sync + 'static {
    let queue = Mutex::new(VecDeque::from(ids));
    move || {
        queue
            .lock()
            .expect("not poisoned")
            .pop_front()
            .unwrap_or_else(SessionId::generate)
    }
}

/// The manager retries a taken id with a fresh one, reports `IdCollision` after the configured
/// attempts, and never overwrites the session that holds the id.
pub async fn manager_retries_then_reports_collisions(factory: &dyn StoreFactory) -> CheckResult {
    let counting = Arc::new(CountingStore::new(factory.store().await?));
    let taken = SessionId::generate();
    let owner = SessionManager::new(Arc::clone(&counting))
        .with_id_generator(queued_ids(vec![taken.clone()]));
    let original = owner.create(b"owner".to_vec()).await?;
    ensure_eq!(original.id(), &taken, "the queued id");

    // One collision, then a fresh id: created.
    let retrying = SessionManager::new(Arc::clone(&counting))
        .with_id_generator(queued_ids(vec![taken.clone()]));
    let created = retrying.create(b"second".to_vec()).await?;
    ensure!(created.id() != &taken, "the manager adopted a taken id");

    // Always the same id: three attempts, then IdCollision.
    let repeating = {
        let taken = taken.clone();
        SessionManager::new(Arc::clone(&counting)).with_id_generator(move || taken.clone())
    };
    let before = counting.calls();
    match repeating.create(b"third".to_vec()).await {
        Err(e) if e.kind() == ErrorKind::IdCollision => {}
        other => {
            return Err(Failure::new(format!(
                "a generator repeating a taken id gave {other:?}, expected IdCollision"
            )));
        }
    }
    ensure_eq!(
        counting.calls() - before,
        session_core::DEFAULT_ID_ATTEMPTS as usize,
        "store calls for the failed create"
    );
    let state = owner
        .load(&taken)
        .await?
        .ok_or_else(|| Failure::new("the owner's session vanished"))?;
    ensure_eq!(
        (state.data().to_vec(), state.version()),
        (b"owner".to_vec(), 1),
        "the owner's session"
    );
    Ok(())
}

/// `cycle_id` moves the session to a fresh id in one step, keeps data and absolute deadline,
/// retries when the fresh id is taken, and kills the old id.
pub async fn manager_cycle_id_keeps_data_and_deadline(factory: &dyn StoreFactory) -> CheckResult {
    let store = factory.store().await?;
    let policy = ExpiryPolicy::idle_and_absolute(Duration::minutes(30), Duration::hours(2));
    let bystander = SessionManager::new(Arc::clone(&store))
        .with_expiry(policy)
        .create(b"bystander".to_vec())
        .await?;
    let manager = SessionManager::new(Arc::clone(&store))
        .with_expiry(policy)
        .with_id_generator(queued_ids(vec![
            SessionId::generate(),
            bystander.id().clone(),
        ]));
    let mut state = manager.create(b"payload".to_vec()).await?;
    let (old_id, deadline) = (state.id().clone(), state.absolute_deadline());
    ensure!(
        deadline.is_some(),
        "an absolute policy gave no absolute deadline"
    );
    manager.cycle_id(&mut state).await?;
    ensure!(
        state.id() != &old_id && state.id() != bystander.id(),
        "cycle_id kept the old id or took a live one"
    );
    ensure!(
        manager.load(&old_id).await?.is_none(),
        "the old id still loads after cycle_id"
    );
    let loaded = manager
        .load(state.id())
        .await?
        .ok_or_else(|| Failure::new("the new id does not load"))?;
    ensure_eq!(
        loaded.data().to_vec(),
        b"payload".to_vec(),
        "data after cycle_id"
    );
    ensure_eq!(
        loaded.absolute_deadline(),
        deadline,
        "absolute deadline after cycle_id"
    );
    ensure_eq!(loaded.version(), 2, "version after cycle_id");
    ensure!(
        loaded.expires_at() <= deadline.expect("checked"),
        "expiry beyond the absolute deadline"
    );
    let other = manager
        .load(bystander.id())
        .await?
        .ok_or_else(|| Failure::new("the bystander vanished"))?;
    ensure_eq!(
        (other.data().to_vec(), other.version()),
        (b"bystander".to_vec(), 1),
        "bystander after a colliding cycle_id"
    );
    Ok(())
}

/// Malformed id strings are `InvalidId` and never reach the store.
pub async fn manager_rejects_invalid_ids_before_the_store(
    factory: &dyn StoreFactory,
) -> CheckResult {
    let counting = Arc::new(CountingStore::new(factory.store().await?));
    let manager = SessionManager::new(Arc::clone(&counting));
    let good = SessionId::generate().expose();
    let bad = [
        String::new(),
        good[..42].to_owned(),
        format!("{good}A"),
        format!("{}=", &good[..42]),
        format!("{} ", &good[..42]),
        format!("{}+", &good[..42]),
        format!("{}é", &good[..41]),
        "../../etc/passwd".to_owned(),
        "x".repeat(10 * 1024 * 1024),
    ];
    for text in &bad {
        match manager.load_str(text).await {
            Err(e) if e.kind() == ErrorKind::InvalidId => {}
            other => {
                return Err(Failure::new(format!(
                    "load of a malformed id gave {other:?}, expected InvalidId"
                )));
            }
        }
    }
    ensure_eq!(counting.calls(), 0, "store calls made for malformed ids");
    ensure!(
        manager.load_str(&good).await?.is_none(),
        "an unknown well-formed id loaded a session"
    );
    ensure_eq!(counting.calls(), 1, "store calls for one well-formed id");
    Ok(())
}

/// Data over the size limit is `TooLarge` before any store call, on create, save and cycle_id.
pub async fn manager_rejects_oversized_data(factory: &dyn StoreFactory) -> CheckResult {
    let counting = Arc::new(CountingStore::new(factory.store().await?));
    let manager = SessionManager::new(Arc::clone(&counting)).with_max_data_size(1024);
    let too_large = |result: session_core::Result<()>, what: &str| match result {
        Err(e) if e.kind() == ErrorKind::TooLarge => Ok(()),
        other => Err(Failure::new(format!(
            "{what} of 1025 bytes gave {other:?}, expected TooLarge"
        ))),
    };
    too_large(manager.create(vec![7; 1025]).await.map(|_| ()), "create")?;
    ensure_eq!(counting.calls(), 0, "store calls for an oversized create");
    let mut state = manager.create(vec![1; 1024]).await?;
    let calls = counting.calls();
    state.set_data(vec![2; 1025]);
    too_large(manager.save(&mut state).await, "save")?;
    too_large(manager.cycle_id(&mut state).await, "cycle_id")?;
    ensure_eq!(counting.calls(), calls, "store calls for oversized saves");
    let stored = manager
        .load(state.id())
        .await?
        .ok_or_else(|| Failure::new("the session vanished"))?;
    ensure_eq!(
        (stored.data().to_vec(), stored.version()),
        (vec![1; 1024], 1),
        "session after refused saves"
    );
    Ok(())
}

/// Saves through the manager never bring back a destroyed or rotated-away session, and a save
/// from a stale copy is `Conflict`.
pub async fn manager_never_resurrects(factory: &dyn StoreFactory) -> CheckResult {
    let store = factory.store().await?;
    let manager = SessionManager::new(Arc::clone(&store));
    let kind = |result: session_core::Result<()>| result.err().map(|e| e.kind());

    let state = manager.create(b"a".to_vec()).await?;
    let mut copy = manager
        .load(state.id())
        .await?
        .ok_or_else(|| Failure::new("a created session does not load"))?;
    manager.destroy(state.id()).await?;
    copy.set_data(b"zombie".to_vec());
    ensure_eq!(
        kind(manager.save(&mut copy).await),
        Some(ErrorKind::NotFound),
        "save after destroy"
    );
    ensure_eq!(
        kind(manager.touch(&mut copy).await),
        Some(ErrorKind::NotFound),
        "touch after destroy"
    );
    ensure!(
        manager.load(state.id()).await?.is_none(),
        "a destroyed session came back"
    );

    let mut rotated = manager.create(b"b".to_vec()).await?;
    let mut stale = manager
        .load(rotated.id())
        .await?
        .ok_or_else(|| Failure::new("a created session does not load"))?;
    manager.cycle_id(&mut rotated).await?;
    stale.set_data(b"zombie".to_vec());
    ensure_eq!(
        kind(manager.save(&mut stale).await),
        Some(ErrorKind::NotFound),
        "save under a rotated-away id"
    );
    ensure!(
        manager.load(stale.id()).await?.is_none(),
        "a rotated-away id came back"
    );

    let mut first = manager
        .load(rotated.id())
        .await?
        .ok_or_else(|| Failure::new("the rotated session does not load"))?;
    let mut second = first.clone();
    first.set_data(b"first".to_vec());
    manager.save(&mut first).await?;
    second.set_data(b"second".to_vec());
    ensure_eq!(
        kind(manager.save(&mut second).await),
        Some(ErrorKind::Conflict),
        "save from a stale copy"
    );
    let now = manager
        .load(rotated.id())
        .await?
        .ok_or_else(|| Failure::new("the session vanished"))?;
    ensure_eq!(
        now.data().to_vec(),
        b"first".to_vec(),
        "data after a refused stale save"
    );
    Ok(())
}
