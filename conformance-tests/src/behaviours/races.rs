//! Races: many concurrent callers over two instances of one backend, with exact winner counts.

use super::prelude::*;

/// Concurrent tasks in each race.
const RACERS: usize = 32;
/// How many times each race is repeated.
const RACE_ROUNDS: usize = 16;

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
async fn race_concurrent_creates(factory: &dyn StoreFactory) -> CheckResult {
    let stores = factory.store_pair().await?;
    for round in 0..RACE_ROUNDS {
        let k = key();
        let outcomes = race(&stores, |i, store| async move {
            store
                .create(
                    &k,
                    in_secs(600),
                    Bytes::copy_from_slice(format!("task {i}").as_bytes()),
                )
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
async fn race_concurrent_rotations(factory: &dyn StoreFactory) -> CheckResult {
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
                        Bytes::copy_from_slice(format!("task {i}").as_bytes()),
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
async fn race_concurrent_updates(factory: &dyn StoreFactory) -> CheckResult {
    let stores = factory.store_pair().await?;
    for round in 0..RACE_ROUNDS {
        let k = key();
        create(&*stores.0, &k, in_secs(600), b"origin").await?;
        let outcomes = race(&stores, |i, store| async move {
            store
                .update(
                    &k,
                    &k,
                    1,
                    in_secs(600),
                    Bytes::copy_from_slice(format!("task {i}").as_bytes()),
                )
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
async fn race_cas_counter(factory: &dyn StoreFactory) -> CheckResult {
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
                                Bytes::copy_from_slice(&(value + 1).to_be_bytes()),
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
async fn readers_never_see_both_or_neither(factory: &dyn StoreFactory) -> CheckResult {
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
            .update(
                &current,
                &previous,
                1,
                in_secs(600),
                Bytes::from_static(b"after"),
            )
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

/// `touch` racing `delete` never brings the record back: after 4 deletes and 28 touches at once,
/// the key is absent.
async fn race_touch_against_delete(factory: &dyn StoreFactory) -> CheckResult {
    let stores = factory.store_pair().await?;
    for round in 0..RACE_ROUNDS {
        let k = key();
        create(&*stores.0, &k, in_secs(600), b"doomed").await?;
        race(&stores, move |i, store| async move {
            if i % 8 == 0 {
                store.delete(&k).await.map(|()| true)
            } else {
                store.touch(&k, in_secs(900)).await
            }
        })
        .await?;
        for store in [&stores.0, &stores.1] {
            ensure!(
                store.read(&k).await?.is_none(),
                "a touch racing a delete brought the record back (round {round})"
            );
        }
    }
    Ok(())
}

/// `touch` racing `update` never loses the update: one task updates a record 10 times by
/// compare-and-swap while 31 others touch it; every update succeeds first time and the last one
/// is what is stored.
async fn race_touch_against_update(factory: &dyn StoreFactory) -> CheckResult {
    const UPDATES: u64 = 10;
    let stores = factory.store_pair().await?;
    for round in 0..RACE_ROUNDS / 4 {
        let k = key();
        create(&*stores.0, &k, in_secs(600), b"v1").await?;
        let results = race(&stores, move |i, store| async move {
            let mut lost = None;
            if i == 0 {
                for version in 1..=UPDATES {
                    let data = format!("v{}", version + 1);
                    let outcome = store
                        .update(
                            &k,
                            &k,
                            version,
                            in_secs(600),
                            Bytes::copy_from_slice(data.as_bytes()),
                        )
                        .await?;
                    if outcome
                        != (UpdateOutcome::Updated {
                            version: version + 1,
                        })
                    {
                        lost = Some(format!("update expecting version {version}: {outcome:?}"));
                        break;
                    }
                    tokio::task::yield_now().await;
                }
            } else {
                for _ in 0..UPDATES {
                    store.touch(&k, in_secs(900)).await?;
                    tokio::task::yield_now().await;
                }
            }
            Ok(lost)
        })
        .await?;
        if let Some(lost) = results.into_iter().flatten().next() {
            return Err(Failure::new(format!(
                "a touch interfered with a concurrent update (round {round}): {lost}"
            )));
        }
        let record = live(&*stores.1, &k, "the record vanished").await?;
        ensure_eq!(
            (record.data.to_vec(), record.version),
            (format!("v{}", UPDATES + 1).into_bytes(), UPDATES + 1),
            "record after updates raced by touches (round {round})"
        );
    }
    Ok(())
}

/// Of 32 concurrent creates on a key that holds an *expired* record (version 5), exactly one
/// wins, with version 1 and its own data.
async fn race_creates_over_expired_record(factory: &dyn StoreFactory) -> CheckResult {
    let stores = factory.store_pair().await?;
    for round in 0..RACE_ROUNDS {
        let k = key();
        create(&*stores.0, &k, in_secs(600), b"v1").await?;
        for version in 1..4u64 {
            ensure_eq!(
                stores
                    .0
                    .update(&k, &k, version, in_secs(600), Bytes::from_static(b"v"))
                    .await?,
                UpdateOutcome::Updated {
                    version: version + 1
                },
                "update"
            );
        }
        ensure_eq!(
            stores
                .0
                .update(&k, &k, 4, long_ago(), Bytes::from_static(b"v5"))
                .await?,
            UpdateOutcome::Updated { version: 5 },
            "update to an expired version 5"
        );
        let outcomes = race(&stores, move |i, store| async move {
            store
                .create(
                    &k,
                    in_secs(600),
                    Bytes::copy_from_slice(format!("winner {i}").as_bytes()),
                )
                .await
        })
        .await?;
        let winners: Vec<usize> = outcomes
            .iter()
            .enumerate()
            .filter(|(_, o)| **o == CreateOutcome::Created)
            .map(|(i, _)| i)
            .collect();
        ensure_eq!(
            winners.len(),
            1,
            "creates that won over an expired record (round {round})"
        );
        let record = live(&*stores.1, &k, "the winner's record reads as absent").await?;
        ensure_eq!(
            (record.data.to_vec(), record.version),
            (format!("winner {}", winners[0]).into_bytes(), 1),
            "the record after the race (round {round})"
        );
    }
    Ok(())
}

/// Every operation is visible to every other caller of the backend at once: what one instance
/// writes (create, update, rotation, touch, delete), the other reads right after, even when it
/// read the key before; and its `delete_expired` respects a touch or update made through the
/// first instance.
async fn writes_are_visible_across_instances(factory: &dyn StoreFactory) -> CheckResult {
    let (a, b) = factory.store_pair().await?;
    let (k, moved) = (key(), key());
    ensure!(b.read(&k).await?.is_none(), "a fresh key reads as present");
    create(&*a, &k, in_secs(600), b"v1").await?;
    ensure_eq!(
        live(&*b, &k, "a create is not visible to the other instance")
            .await?
            .version,
        1,
        "version seen by the other instance after create"
    );
    let updated_at = in_secs(650);
    ensure_eq!(
        a.update(&k, &k, 1, updated_at, Bytes::from_static(b"v2"))
            .await?,
        UpdateOutcome::Updated { version: 2 },
        "update"
    );
    let seen = live(
        &*b,
        &k,
        "an update made the record vanish for the other instance",
    )
    .await?;
    ensure_eq!(
        (seen.data.to_vec(), seen.version, seen.expires_at),
        (b"v2".to_vec(), 2, updated_at),
        "record seen by the other instance after update"
    );
    let touched_at = in_secs(700);
    ensure!(a.touch(&k, touched_at).await?, "touch");
    ensure_eq!(
        live(&*b, &k, "a touch made the record vanish")
            .await?
            .expires_at,
        touched_at,
        "expiry seen by the other instance after touch"
    );
    ensure_eq!(
        a.update(&moved, &k, 2, touched_at, Bytes::from_static(b"v3"))
            .await?,
        UpdateOutcome::Updated { version: 3 },
        "rotation"
    );
    ensure!(
        b.read(&k).await?.is_none(),
        "the other instance still reads a rotated-away key"
    );
    ensure_eq!(
        live(
            &*b,
            &moved,
            "the other instance does not see the rotation target"
        )
        .await?
        .version,
        3,
        "version seen by the other instance after rotation"
    );
    a.delete(&moved).await?;
    ensure!(
        b.read(&moved).await?.is_none(),
        "the other instance still reads a deleted record"
    );

    // Purges by the other instance respect a touch and an update made through this one.
    let soon = truncate_to_millis(OffsetDateTime::now_utc() + Duration::milliseconds(300));
    let (touched, updated) = (key(), key());
    create(&*b, &touched, soon, b"t").await?;
    create(&*b, &updated, soon, b"u").await?;
    ensure!(
        b.read(&touched).await?.is_some(),
        "a fresh record reads as absent"
    );
    ensure!(
        b.read(&updated).await?.is_some(),
        "a fresh record reads as absent"
    );
    ensure!(
        a.touch(&touched, in_secs(600)).await?,
        "touch of a live record"
    );
    ensure_eq!(
        a.update(
            &updated,
            &updated,
            1,
            in_secs(600),
            Bytes::from_static(b"u2")
        )
        .await?,
        UpdateOutcome::Updated { version: 2 },
        "update of a live record"
    );
    sleep_until(soon + Duration::milliseconds(200)).await;
    b.delete_expired().await?;
    for (what, k) in [("touch", &touched), ("update", &updated)] {
        ensure!(
            b.read(k).await?.is_some(),
            "the other instance purged or hid a record whose expiry a {what} had moved"
        );
        ensure!(
            a.read(k).await?.is_some(),
            "a purge removed a record whose expiry a {what} had moved"
        );
    }
    Ok(())
}

/// Rotations crossing each other (a → b and b → a at once, both keys live) never deadlock and
/// never move anything: every one is `IdTaken`. 8 pairs, each direction repeating for half a
/// second (at least 20 times); all must be done within 30 seconds.
async fn race_crossed_rotations_never_deadlock(factory: &dyn StoreFactory) -> CheckResult {
    const PAIRS: usize = 8;
    const MIN_ROUNDS: usize = 20;
    const BUSY: std::time::Duration = std::time::Duration::from_millis(500);
    let stores = factory.store_pair().await?;
    let mut keys = Vec::new();
    for _ in 0..PAIRS {
        let (a, b) = (key(), key());
        create(&*stores.0, &a, in_secs(600), b"a").await?;
        create(&*stores.0, &b, in_secs(600), b"b").await?;
        keys.push((a, b));
    }
    let work = async {
        let mut handles = Vec::new();
        for (i, (a, b)) in keys.iter().copied().enumerate() {
            for forward in [true, false] {
                let store = if forward {
                    Arc::clone(&stores.0)
                } else {
                    Arc::clone(&stores.1)
                };
                let (from, to) = if forward { (a, b) } else { (b, a) };
                handles.push(tokio::spawn(async move {
                    let started = std::time::Instant::now();
                    let mut rounds = 0;
                    while rounds < MIN_ROUNDS || started.elapsed() < BUSY {
                        rounds += 1;
                        let outcome = store
                            .update(&to, &from, 1, in_secs(600), Bytes::from_static(b"moved"))
                            .await?;
                        if outcome != UpdateOutcome::IdTaken {
                            return Err(Failure::new(format!(
                                "a rotation onto a live key (pair {i}) answered {outcome:?}"
                            )));
                        }
                    }
                    Ok(())
                }));
            }
        }
        join_workers(handles).await
    };
    match tokio::time::timeout(std::time::Duration::from_secs(30), work).await {
        Ok(result) => result?,
        Err(_) => {
            return Err(Failure::new(
                "crossed rotations did not finish within 30 s (a deadlock?)",
            ));
        }
    }
    for (a, b) in &keys {
        for k in [a, b] {
            ensure_eq!(
                live(&*stores.1, k, "a key of a crossed pair vanished")
                    .await?
                    .version,
                1,
                "version after refused crossed rotations"
            );
        }
    }
    Ok(())
}

/// The behaviours of this file, in order.
pub(crate) const BEHAVIOURS: &[Behaviour] = register!(
    Store:
    race_concurrent_creates,
    race_concurrent_rotations,
    race_concurrent_updates,
    race_cas_counter,
    readers_never_see_both_or_neither,
    race_touch_against_delete,
    race_touch_against_update,
    race_creates_over_expired_record,
    writes_are_visible_across_instances,
    race_crossed_rotations_never_deadlock,
);
