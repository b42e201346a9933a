//! Rotation (`update` with `current != previous`): the record moves, atomically, onto free keys only.

use super::prelude::*;

/// Rotation moves the record: the old key is gone, the new one holds the new data, version + 1.
async fn rotation_moves_the_record(factory: &dyn StoreFactory) -> CheckResult {
    let store = factory.store().await?;
    let (a, b, c) = (key(), key(), key());
    create(&*store, &a, in_secs(600), b"at a").await?;
    let expires_at = in_secs(800);
    ensure_eq!(
        store
            .update(&b, &a, 1, expires_at, Bytes::from_static(b"at b"))
            .await?,
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
        store
            .update(&c, &b, 2, expires_at, Bytes::from_static(b"at c"))
            .await?,
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
async fn rotation_onto_live_key_is_id_taken(factory: &dyn StoreFactory) -> CheckResult {
    let store = factory.store().await?;
    let (a, b) = (key(), key());
    let (ea, eb) = (in_secs(600), in_secs(900));
    create(&*store, &a, ea, b"a").await?;
    create(&*store, &b, eb, b"b").await?;
    ensure_eq!(
        store
            .update(&b, &a, 1, in_secs(1200), Bytes::from_static(b"moved"))
            .await?,
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
async fn rotation_onto_expired_key(factory: &dyn StoreFactory) -> CheckResult {
    let store = factory.store().await?;
    let (a, b) = (key(), key());
    create(&*store, &a, in_secs(600), b"a").await?;
    create_expired(&*store, &b, b"stale").await?;
    let expires_at = in_secs(700);
    ensure_eq!(
        store
            .update(&b, &a, 1, expires_at, Bytes::from_static(b"moved"))
            .await?,
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

/// What the store's capabilities say about rotations holds: a store that rotates anywhere moves
/// a record between keys that differ in their first byte; a partitioned store refuses a pair
/// across partitions with `Unsupported` and changes nothing (both keys as they were).
async fn rotation_follows_capabilities(factory: &dyn StoreFactory) -> CheckResult {
    let store = factory.store().await?;
    let capabilities = store.capabilities();
    let previous = key();
    let mut bytes = *previous.as_bytes();
    bytes[0] ^= 0x80;
    let across = SessionKey::from_bytes(&bytes).expect("32 bytes");
    create(&*store, &previous, in_secs(600), b"rotating").await?;
    create(
        &*store,
        &neighbour(&previous, 1),
        in_secs(600),
        b"bystander",
    )
    .await?;
    let answer = store
        .update(
            &across,
            &previous,
            1,
            in_secs(600),
            Bytes::from_static(b"moved"),
        )
        .await;
    if capabilities.can_rotate_between(&previous, &across) {
        ensure_eq!(
            answer?,
            UpdateOutcome::Updated { version: 2 },
            "a rotation the capabilities allow (first key byte changed)"
        );
        ensure!(
            store.read(&previous).await?.is_none(),
            "the old key is gone"
        );
        holds(&*store, &across, 2, b"moved", "the rotated record").await?;
    } else {
        match answer {
            Err(e) if e.kind() == ErrorKind::Unsupported => {}
            other => {
                return Err(Failure::new(format!(
                    "a rotation across partitions must be refused with Unsupported, got {other:?}"
                )));
            }
        }
        holds(
            &*store,
            &previous,
            1,
            b"rotating",
            "the record of a refused rotation",
        )
        .await?;
        ensure!(
            store.read(&across).await?.is_none(),
            "a refused rotation wrote its target"
        );
    }
    Ok(())
}

/// The behaviours of this file, in order.
pub(crate) const BEHAVIOURS: &[Behaviour] = register!(
    Store:
    rotation_moves_the_record,
    rotation_onto_live_key_is_id_taken,
    rotation_onto_expired_key,
    rotation_follows_capabilities,
);
