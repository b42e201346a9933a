//! Namespaces: a store sees and changes only its own namespace (table, key prefix), for every operation.

use super::prelude::*;

/// `clear` empties this store's namespace and nothing else; the store stays usable.
async fn clear_only_this_namespace(factory: &dyn StoreFactory) -> CheckResult {
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

/// Namespaces are whole for every operation, not only `clear`: create, read, update, rotation,
/// touch and delete through one namespace never see or change a record of another namespace
/// with the same key.
async fn namespaces_are_whole_for_every_operation(factory: &dyn StoreFactory) -> CheckResult {
    let a = factory.store().await?;
    let b = factory.store().await?;
    let (k, target) = (key(), key());
    let b_expiry = in_secs(900);
    create(&*a, &k, in_secs(600), b"a").await?;
    ensure!(
        b.read(&k).await?.is_none(),
        "a record of another namespace is readable"
    );
    ensure!(
        !b.touch(&k, in_secs(700)).await?,
        "touch reached another namespace"
    );
    ensure_eq!(
        b.update(&k, &k, 1, in_secs(700), Bytes::from_static(b"b?"))
            .await?,
        UpdateOutcome::NotFound,
        "update of a key live only in another namespace"
    );
    ensure_eq!(
        b.update(&target, &k, 1, in_secs(700), Bytes::from_static(b"b?"))
            .await?,
        UpdateOutcome::NotFound,
        "rotation of a key live only in another namespace"
    );
    ensure_eq!(
        b.create(&k, b_expiry, Bytes::from_static(b"b")).await?,
        CreateOutcome::Created,
        "create of a key live only in another namespace"
    );
    ensure_eq!(
        a.update(&k, &k, 1, in_secs(650), Bytes::from_static(b"a2"))
            .await?,
        UpdateOutcome::Updated { version: 2 },
        "update in the first namespace"
    );
    ensure!(
        a.touch(&k, in_secs(660)).await?,
        "touch in the first namespace"
    );
    let theirs = live(
        &*b,
        &k,
        "a write in one namespace removed the other's record",
    )
    .await?;
    ensure_eq!(
        (theirs.data.to_vec(), theirs.version, theirs.expires_at),
        (b"b".to_vec(), 1, b_expiry),
        "the other namespace's record after update and touch"
    );
    // A rotation in `b` onto a key live in `a` only is free there.
    create(&*a, &target, in_secs(600), b"a-target").await?;
    ensure_eq!(
        b.update(&target, &k, 1, b_expiry, Bytes::from_static(b"b-moved"))
            .await?,
        UpdateOutcome::Updated { version: 2 },
        "rotation onto a key live only in another namespace"
    );
    ensure_eq!(
        live(&*a, &k, "a rotation in another namespace moved this record")
            .await?
            .data,
        b"a2".to_vec(),
        "record after another namespace rotated the same key away"
    );
    ensure_eq!(
        live(
            &*a,
            &target,
            "a rotation in another namespace replaced this record"
        )
        .await?
        .data,
        b"a-target".to_vec(),
        "record after another namespace rotated onto the same key"
    );
    a.delete(&target).await?;
    ensure_eq!(
        live(
            &*b,
            &target,
            "a delete in another namespace removed this record"
        )
        .await?
        .data,
        b"b-moved".to_vec(),
        "record after another namespace deleted the same key"
    );
    Ok(())
}

/// `clear` is complete at scale: a namespace holding 3,000 records is empty afterwards, and the
/// other namespace keeps all of its own.
async fn clear_is_complete_at_scale(factory: &dyn StoreFactory) -> CheckResult {
    const RECORDS: usize = 3_000;
    const WORKERS: usize = 8;
    let mine = factory.store().await?;
    let other = factory.store().await?;
    let keys: Arc<Vec<SessionKey>> = Arc::new((0..RECORDS).map(|_| key()).collect());
    let mut handles = Vec::new();
    for w in 0..WORKERS {
        let (store, keys) = (Arc::clone(&mine), Arc::clone(&keys));
        handles.push(tokio::spawn(async move {
            for k in keys.iter().skip(w).step_by(WORKERS) {
                create(&*store, k, in_secs(600), b"mine").await?;
            }
            Ok(())
        }));
    }
    join_workers(handles).await?;
    for k in keys.iter().take(50) {
        create(&*other, k, in_secs(600), b"other").await?;
    }
    mine.clear().await?;
    let mut left = 0;
    for k in keys.iter() {
        left += usize::from(mine.read(k).await?.is_some());
    }
    ensure_eq!(left, 0, "records left after clear of {RECORDS}");
    for k in keys.iter().take(50) {
        ensure!(
            other.read(k).await?.is_some(),
            "clear removed a record of another namespace"
        );
    }
    create(&*mine, &keys[0], in_secs(600), b"again").await?;
    Ok(())
}

/// The behaviours of this file, in order.
pub(crate) const BEHAVIOURS: &[Behaviour] = register!(
    Store:
    clear_only_this_namespace,
    namespaces_are_whole_for_every_operation,
    clear_is_complete_at_scale,
);
