//! Create, read, update in place, touch and delete: the single-caller rules of the semantics table.

use super::prelude::*;

/// Empty, binary (every byte value), trailing NULs and spaces, and 1 MiB data round-trip exactly; the expiry comes back
/// truncated to the millisecond; the version is 1.
async fn create_read_round_trip(factory: &dyn StoreFactory) -> CheckResult {
    let store = factory.store().await?;
    // A sub-millisecond part that must be truncated, not rounded.
    let expires_at = (OffsetDateTime::now_utc() + Duration::hours(1))
        .replace_nanosecond(123_999_999)
        .expect("valid");
    for data in data_set() {
        let k = key();
        ensure_eq!(
            store
                .create(&k, expires_at, Bytes::copy_from_slice(&data))
                .await?,
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
async fn create_on_live_key_is_id_taken(factory: &dyn StoreFactory) -> CheckResult {
    let store = factory.store().await?;
    let k = key();
    let expires_at = in_secs(600);
    create(&*store, &k, expires_at, b"original").await?;
    ensure_eq!(
        store
            .create(&k, in_secs(1200), Bytes::from_static(b"intruder"))
            .await?,
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
async fn create_over_expired_record(factory: &dyn StoreFactory) -> CheckResult {
    let store = factory.store().await?;
    let k = key();
    create_expired(&*store, &k, b"old").await?;
    let expires_at = in_secs(600);
    ensure_eq!(
        store
            .create(&k, expires_at, Bytes::from_static(b"new"))
            .await?,
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
async fn read_missing_or_expired_is_none(factory: &dyn StoreFactory) -> CheckResult {
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

/// Update in place with the right version: new data and expiry, version + 1, again and again.
async fn update_in_place(factory: &dyn StoreFactory) -> CheckResult {
    let store = factory.store().await?;
    let k = key();
    create(&*store, &k, in_secs(600), b"v1").await?;
    for version in 1..=3u64 {
        let expires_at = in_secs(600 + version as i64);
        let data = format!("v{}", version + 1).into_bytes();
        let outcome = store
            .update(&k, &k, version, expires_at, Bytes::copy_from_slice(&data))
            .await?;
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
async fn update_with_stale_version_is_conflict(factory: &dyn StoreFactory) -> CheckResult {
    let store = factory.store().await?;
    let k = key();
    create(&*store, &k, in_secs(600), b"v1").await?;
    let expires_at = in_secs(700);
    ensure_eq!(
        store
            .update(&k, &k, 1, expires_at, Bytes::from_static(b"v2"))
            .await?,
        UpdateOutcome::Updated { version: 2 },
        "first update"
    );
    for stale in [1, 0, 3, 99] {
        ensure_eq!(
            store
                .update(&k, &k, stale, in_secs(900), Bytes::from_static(b"lost"))
                .await?,
            UpdateOutcome::Conflict,
            "update expecting version {stale}"
        );
        let other = key();
        ensure_eq!(
            store
                .update(&other, &k, stale, in_secs(900), Bytes::from_static(b"lost"))
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

/// Update (in place or rotating) of a missing, deleted, expired or rotated-away key is
/// `NotFound`, and creates nothing: no resurrection.
async fn update_of_absent_previous_is_not_found(factory: &dyn StoreFactory) -> CheckResult {
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
            .update(
                &successor,
                &rotated,
                1,
                in_secs(600),
                Bytes::from_static(b"s")
            )
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
                .update(
                    &previous,
                    &previous,
                    version,
                    in_secs(600),
                    Bytes::from_static(b"zombie")
                )
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
                .update(
                    &target,
                    &previous,
                    version,
                    in_secs(600),
                    Bytes::from_static(b"zombie")
                )
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
async fn touch_moves_expiry_only(factory: &dyn StoreFactory) -> CheckResult {
    let store = factory.store().await?;
    let k = key();
    create(&*store, &k, in_secs(600), b"data").await?;
    ensure_eq!(
        store
            .update(&k, &k, 1, in_secs(600), Bytes::from_static(b"data2"))
            .await?,
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
async fn touch_of_absent_creates_nothing(factory: &dyn StoreFactory) -> CheckResult {
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
async fn delete_is_idempotent_and_final(factory: &dyn StoreFactory) -> CheckResult {
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
        store
            .update(&k, &k, 1, in_secs(600), Bytes::from_static(b"y"))
            .await?,
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

/// 10,000 sessions created first (16 at a time), *then* every one read back intact: nothing is
/// evicted.
async fn ten_thousand_sessions(factory: &dyn StoreFactory) -> CheckResult {
    const SESSIONS: usize = 10_000;
    const WORKERS: usize = 16;
    let store = factory.store().await?;
    let keys: Arc<Vec<SessionKey>> = Arc::new((0..SESSIONS).map(|_| key()).collect());
    let data = |i: usize| format!("session {i}").into_bytes();
    let mut handles = Vec::new();
    for w in 0..WORKERS {
        let (store, keys) = (Arc::clone(&store), Arc::clone(&keys));
        handles.push(tokio::spawn(async move {
            for i in (w..SESSIONS).step_by(WORKERS) {
                if store
                    .create(&keys[i], in_secs(600), Bytes::copy_from_slice(&data(i)))
                    .await?
                    != CreateOutcome::Created
                {
                    return Err(Failure::new(
                        "create of a fresh key among 10,000 was refused",
                    ));
                }
            }
            Ok(())
        }));
    }
    join_workers(handles).await?;
    let mut handles = Vec::new();
    for w in 0..WORKERS {
        let (store, keys) = (Arc::clone(&store), Arc::clone(&keys));
        handles.push(tokio::spawn(async move {
            for i in (w..SESSIONS).step_by(WORKERS) {
                match store.read(&keys[i]).await? {
                    Some(record) if record.data == data(i) && record.version == 1 => {}
                    Some(_) => {
                        return Err(Failure::new(format!(
                            "session {i} of 10,000 read back different"
                        )));
                    }
                    None => {
                        return Err(Failure::new(format!(
                            "session {i} of 10,000 reads as absent after all were created (evicted?)"
                        )));
                    }
                }
            }
            Ok(())
        }));
    }
    join_workers(handles).await
}

/// Update in place and rotation keep data exactly, with the data set `create` is held to: empty,
/// every byte value, trailing NULs and spaces, 1 MiB.
async fn update_and_rotation_keep_data_exactly(factory: &dyn StoreFactory) -> CheckResult {
    let store = factory.store().await?;
    for data in data_set() {
        let (a, b) = (key(), key());
        create(&*store, &a, in_secs(600), b"before").await?;
        ensure_eq!(
            store
                .update(&a, &a, 1, in_secs(600), Bytes::copy_from_slice(&data))
                .await?,
            UpdateOutcome::Updated { version: 2 },
            "update in place to {}",
            describe(&data)
        );
        let record = live(&*store, &a, "an updated record reads as absent").await?;
        ensure!(
            record.data == data,
            "update in place stored {} for {}",
            describe(&record.data),
            describe(&data)
        );
        ensure_eq!(
            store
                .update(&b, &a, 2, in_secs(600), Bytes::copy_from_slice(&data))
                .await?,
            UpdateOutcome::Updated { version: 3 },
            "rotation with {}",
            describe(&data)
        );
        let record = live(&*store, &b, "a rotated record reads as absent").await?;
        ensure!(
            record.data == data,
            "rotation stored {} for {}",
            describe(&record.data),
            describe(&data)
        );
        // And back to something short: nothing of the long value may stick.
        ensure_eq!(
            store
                .update(&b, &b, 3, in_secs(600), Bytes::from_static(b"x"))
                .await?,
            UpdateOutcome::Updated { version: 4 },
            "update back to one byte"
        );
        ensure_eq!(
            live(&*store, &b, "the record vanished").await?.data,
            b"x".to_vec(),
            "data after shrinking"
        );
    }
    Ok(())
}

/// `create` always writes version 1, also over an expired record that had reached version 5; a
/// rotation onto such a record writes `expected + 1`, not the old record's version + 1.
async fn create_always_writes_version_one(factory: &dyn StoreFactory) -> CheckResult {
    let store = factory.store().await?;
    let (k, source) = (key(), key());
    for round in 0..2 {
        create(&*store, &k, in_secs(600), b"v1").await?;
        for version in 1..4u64 {
            ensure_eq!(
                store
                    .update(&k, &k, version, in_secs(600), Bytes::from_static(b"v"))
                    .await?,
                UpdateOutcome::Updated {
                    version: version + 1
                },
                "update to version {}",
                version + 1
            );
        }
        // Version 5, already expired.
        ensure_eq!(
            store
                .update(&k, &k, 4, long_ago(), Bytes::from_static(b"v5"))
                .await?,
            UpdateOutcome::Updated { version: 5 },
            "update to version 5 with a past expiry"
        );
        ensure!(
            store.read(&k).await?.is_none(),
            "an expired version 5 reads as live"
        );
        if round == 0 {
            ensure_eq!(
                store
                    .create(&k, in_secs(600), Bytes::from_static(b"fresh"))
                    .await?,
                CreateOutcome::Created,
                "create over the expired version 5"
            );
            let record = live(&*store, &k, "the new record reads as absent").await?;
            ensure_eq!(
                record.version,
                1,
                "version of a create over an expired version 5"
            );
            ensure_eq!(record.data, b"fresh".to_vec(), "data of the new record");
            store.delete(&k).await?;
        } else {
            create(&*store, &source, in_secs(600), b"source").await?;
            ensure_eq!(
                store
                    .update(&k, &source, 1, in_secs(600), Bytes::from_static(b"moved"))
                    .await?,
                UpdateOutcome::Updated { version: 2 },
                "rotation onto the expired version 5"
            );
            ensure_eq!(
                live(&*store, &k, "the rotation target reads as absent")
                    .await?
                    .version,
                2,
                "version after a rotation onto an expired version 5"
            );
        }
    }
    Ok(())
}

/// An expired `previous` is `NotFound` whatever `expected_version` says (matching or not), in
/// place and rotating; a missing or deleted `previous` is never `Conflict`.
async fn absent_previous_is_never_conflict(factory: &dyn StoreFactory) -> CheckResult {
    let store = factory.store().await?;
    let expired = key();
    create(&*store, &expired, in_secs(600), b"v1").await?;
    ensure_eq!(
        store
            .update(&expired, &expired, 1, long_ago(), Bytes::from_static(b"v2"))
            .await?,
        UpdateOutcome::Updated { version: 2 },
        "update to a past expiry"
    );
    let deleted = key();
    create(&*store, &deleted, in_secs(600), b"v1").await?;
    store.delete(&deleted).await?;
    let missing = key();
    for (what, previous) in [
        ("expired", &expired),
        ("deleted", &deleted),
        ("missing", &missing),
    ] {
        for expected in [0, 1, 2, 3, u64::MAX / 2] {
            ensure_eq!(
                store
                    .update(
                        previous,
                        previous,
                        expected,
                        in_secs(600),
                        Bytes::from_static(b"x")
                    )
                    .await?,
                UpdateOutcome::NotFound,
                "update in place of a {what} record expecting version {expected}"
            );
            let target = key();
            ensure_eq!(
                store
                    .update(
                        &target,
                        previous,
                        expected,
                        in_secs(600),
                        Bytes::from_static(b"x")
                    )
                    .await?,
                UpdateOutcome::NotFound,
                "rotation of a {what} record expecting version {expected}"
            );
            ensure!(
                store.read(&target).await?.is_none(),
                "a refused rotation of a {what} record created its target"
            );
        }
        ensure!(
            store.read(previous).await?.is_none(),
            "a {what} record came back"
        );
    }
    Ok(())
}

/// Keys that differ in a single byte (the first, a middle one, the last) are independent records
/// for every operation.
async fn keys_are_whole(factory: &dyn StoreFactory) -> CheckResult {
    let store = factory.store().await?;
    let base = key();
    let neighbours: Vec<SessionKey> = [0, 15, 16, 31]
        .iter()
        .map(|&i| neighbour(&base, i))
        .collect();
    let base_expiry = in_secs(600);
    create(&*store, &base, base_expiry, b"base").await?;
    let their_expiry = in_secs(900);
    for (i, n) in neighbours.iter().enumerate() {
        ensure!(
            store.read(n).await?.is_none(),
            "a key one byte away (#{i}) reads the base record"
        );
        ensure!(
            !store.touch(n, in_secs(700)).await?,
            "touch of a key one byte away (#{i}) found a record"
        );
        ensure_eq!(
            store
                .update(n, n, 1, in_secs(700), Bytes::from_static(b"no"))
                .await?,
            UpdateOutcome::NotFound,
            "update of a key one byte away (#{i})"
        );
        ensure_eq!(
            store
                .create(
                    n,
                    their_expiry,
                    Bytes::copy_from_slice(format!("n{i}").as_bytes())
                )
                .await?,
            CreateOutcome::Created,
            "create of a key one byte away (#{i})"
        );
    }
    ensure_eq!(
        store
            .update(&base, &base, 1, in_secs(650), Bytes::from_static(b"base2"))
            .await?,
        UpdateOutcome::Updated { version: 2 },
        "update of the base key"
    );
    ensure!(
        store.touch(&base, in_secs(660)).await?,
        "touch of the base key"
    );
    for (i, n) in neighbours.iter().enumerate() {
        let record = live(&*store, n, "a neighbour vanished").await?;
        ensure_eq!(
            (record.data.to_vec(), record.version, record.expires_at),
            (format!("n{i}").into_bytes(), 1, their_expiry),
            "neighbour #{i} after writes to the base key"
        );
    }
    // Rotation between the neighbours that share the first byte (a partitioned store such as
    // Redis Cluster keeps a rotation within one first byte).
    store.delete(&neighbours[3]).await?;
    ensure_eq!(
        store
            .update(
                &neighbours[3],
                &neighbours[1],
                1,
                in_secs(600),
                Bytes::from_static(b"moved")
            )
            .await?,
        UpdateOutcome::Updated { version: 2 },
        "rotation between neighbours"
    );
    store.delete(&neighbours[2]).await?;
    let record = live(
        &*store,
        &base,
        "deleting neighbours removed the base record",
    )
    .await?;
    ensure_eq!(
        (record.data.to_vec(), record.version),
        (b"base2".to_vec(), 2),
        "the base record after writes to its neighbours"
    );
    ensure!(
        store.read(&neighbours[3]).await?.is_some() && store.read(&neighbours[0]).await?.is_some(),
        "a neighbour vanished"
    );
    Ok(())
}

/// What the store's capabilities say about the owner index holds. Without one, a write that
/// sets an owner, `sessions_of` and `revoke_owner` answer `Unsupported` and change nothing; with
/// one, they work (an owner nobody has lists nothing and revokes nothing).
async fn capabilities_match_owner_operations(factory: &dyn StoreFactory) -> CheckResult {
    use session_core::{Owner, OwnerChange, Ownership, WriteOptions};
    let store = factory.store().await?;
    let owner = Owner::new("nobody-yet").expect("a valid owner");
    let options = WriteOptions::new().with_owner(OwnerChange::Set(Ownership::of(owner.clone())));
    let k = key();
    if store.capabilities().owner_index {
        ensure!(
            store.sessions_of(&owner).await?.is_empty(),
            "an owner with no sessions lists some"
        );
        ensure_eq!(
            store.revoke_owner(&owner, None).await?,
            0,
            "revoking an owner with no sessions"
        );
        ensure_eq!(
            store
                .create_opts(&k, in_secs(600), Bytes::from_static(b"owned"), &options)
                .await?,
            CreateOutcome::Created,
            "a create with an owner"
        );
        ensure_eq!(
            store.sessions_of(&owner).await?.len(),
            1,
            "the owned session listed"
        );
        return Ok(());
    }
    let unsupported = |what: &str, answer: Result<(), session_core::Error>| match answer {
        Err(e) if e.kind() == ErrorKind::Unsupported => Ok(()),
        other => Err(Failure::new(format!(
            "{what} on a store without an owner index must be Unsupported, got {other:?}"
        ))),
    };
    unsupported(
        "a create with an owner",
        store
            .create_opts(&k, in_secs(600), Bytes::from_static(b"owned"), &options)
            .await
            .map(drop),
    )?;
    ensure!(
        store.read(&k).await?.is_none(),
        "a refused owned create wrote the record"
    );
    create(&*store, &k, in_secs(600), b"plain").await?;
    unsupported(
        "an update with an owner",
        store
            .update_opts(
                &k,
                &k,
                1,
                in_secs(600),
                Bytes::from_static(b"owned"),
                &options,
            )
            .await
            .map(drop),
    )?;
    holds(
        &*store,
        &k,
        1,
        b"plain",
        "the record after a refused owned update",
    )
    .await?;
    unsupported("sessions_of", store.sessions_of(&owner).await.map(drop))?;
    unsupported(
        "revoke_owner",
        store.revoke_owner(&owner, None).await.map(drop),
    )?;
    holds(
        &*store,
        &k,
        1,
        b"plain",
        "the record after refused owner calls",
    )
    .await?;
    Ok(())
}

/// The behaviours of this file, in order.
pub(crate) const BEHAVIOURS: &[Behaviour] = register!(
    Store:
    create_read_round_trip,
    create_on_live_key_is_id_taken,
    create_over_expired_record,
    read_missing_or_expired_is_none,
    update_in_place,
    update_with_stale_version_is_conflict,
    update_of_absent_previous_is_not_found,
    touch_moves_expiry_only,
    touch_of_absent_creates_nothing,
    delete_is_idempotent_and_final,
    ten_thousand_sessions,
    update_and_rotation_keep_data_exactly,
    create_always_writes_version_one,
    absent_previous_is_never_conflict,
    keys_are_whole,
    capabilities_match_owner_operations,
);
