//! Expiry: the `expires_at <= now` rule by the store's clock, millisecond precision, purges.

use super::prelude::*;

/// A record whose expiry is the current millisecond is already absent (`expires_at <= now`), for
/// create, update and touch alike.
async fn expires_at_now_is_absent(factory: &dyn StoreFactory) -> CheckResult {
    let store = factory.store().await?;
    for round in 0..20 {
        let k = key();
        let now = truncate_to_millis(OffsetDateTime::now_utc());
        ensure_eq!(
            store.create(&k, now, Bytes::from_static(b"x")).await?,
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
            store
                .update(&k, &k, 1, now, Bytes::from_static(b"y"))
                .await?,
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

/// A record with a short expiry is live, then absent once the time has passed; touch extends it;
/// create over the expired key succeeds.
async fn expiry_in_real_time(factory: &dyn StoreFactory) -> CheckResult {
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
            .update(
                &fading,
                &fading,
                1,
                in_secs(600),
                Bytes::from_static(b"zombie")
            )
            .await?,
        UpdateOutcome::NotFound,
        "update after expiry"
    );
    create(&*store, &fading, in_secs(600), b"reborn").await?;
    Ok(())
}

/// `delete_expired` removes only expired records and reports how many.
async fn delete_expired_purges_only_expired(factory: &dyn StoreFactory) -> CheckResult {
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
    if store.capabilities().expires_by_itself {
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

/// Expiries with a sub-millisecond part read back truncated to the millisecond after create,
/// update in place, rotation and touch, from seconds to more than a year ahead (no TTL cap, no
/// rounding to seconds).
async fn millisecond_precision_everywhere(factory: &dyn StoreFactory) -> CheckResult {
    let store = factory.store().await?;
    let offsets = [
        Duration::milliseconds(2_001),
        Duration::milliseconds(60_007),
        Duration::milliseconds(86_400_999),
        Duration::days(400) + Duration::milliseconds(1),
    ];
    for offset in offsets {
        // A sub-millisecond part that must be truncated, not rounded.
        let at = |extra_ms: i64| {
            let t = OffsetDateTime::now_utc() + offset + Duration::milliseconds(extra_ms);
            t.replace_nanosecond(t.nanosecond() / 1_000_000 * 1_000_000 + 999_999)
                .expect("valid")
        };
        let (a, b) = (key(), key());
        let created = at(0);
        create(&*store, &a, created, b"x").await?;
        let check = |what: &'static str, k: SessionKey, expected: OffsetDateTime| {
            let store = Arc::clone(&store);
            async move {
                let record = live(&*store, &k, "a record reads as absent").await?;
                ensure_eq!(
                    record.expires_at,
                    truncate_to_millis(expected),
                    "expiry {offset} ahead after {what}"
                );
                Ok::<_, Failure>(record)
            }
        };
        check("create", a, created).await?;
        let updated = at(1);
        ensure_eq!(
            store
                .update(&a, &a, 1, updated, Bytes::from_static(b"y"))
                .await?,
            UpdateOutcome::Updated { version: 2 },
            "update"
        );
        check("update in place", a, updated).await?;
        let rotated = at(2);
        ensure_eq!(
            store
                .update(&b, &a, 2, rotated, Bytes::from_static(b"z"))
                .await?,
            UpdateOutcome::Updated { version: 3 },
            "rotation"
        );
        check("rotation", b, rotated).await?;
        let touched = at(3);
        ensure!(store.touch(&b, touched).await?, "touch of a live record");
        let record = check("touch", b, touched).await?;
        ensure_eq!(record.version, 3, "version after touch");
    }
    Ok(())
}

/// How far the backend's clock may lag or lead the test's clock, and how late a read may
/// complete, for [`expiry_boundaries_are_exact`] to still judge it.
const CLOCK_ALLOWANCE: Duration = Duration::milliseconds(100);
/// How far before and after the expiry instant the boundary probes read.
const PROBE: Duration = Duration::milliseconds(200);

/// A record is live until its `expires_at` and absent from it on, checked deterministically: the
/// expiry is aligned to fixed fractions of a second (.250, .500, .750), and probes read 200 ms
/// before and after it. A store that rounds expiry to whole seconds (down, up or to nearest)
/// misses at least one probe by 250 ms or more; a correct store whose clock is within 100 ms of
/// the test's passes every time. A probe whose read started or ended too close to the instant to
/// judge is repeated with a fresh record (up to 5 times).
async fn expiry_boundaries_are_exact(factory: &dyn StoreFactory) -> CheckResult {
    let store = factory.store().await?;
    let tasks: Vec<_> = [250, 500, 750]
        .into_iter()
        .map(|fraction_ms| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { boundary_probe(&*store, fraction_ms).await })
        })
        .collect();
    let mut first = Ok(());
    for task in tasks {
        let result = task
            .await
            .map_err(|e| Failure::new(format!("a probe panicked: {e}")))
            .and_then(|r| r);
        if first.is_ok() {
            first = result;
        }
    }
    first
}

async fn boundary_probe(store: &dyn SessionStore, fraction_ms: i64) -> CheckResult {
    for _ in 0..5 {
        let now = OffsetDateTime::now_utc();
        let second = now.replace_nanosecond(0).expect("valid") + Duration::seconds(1);
        let expires_at = second + Duration::seconds(1) + Duration::milliseconds(fraction_ms);
        let k = key();
        create(store, &k, expires_at, b"boundary").await?;
        let mut judged = 0;
        sleep_until(expires_at - PROBE).await;
        let started = OffsetDateTime::now_utc();
        let alive = store.read(&k).await?.is_some();
        let ended = OffsetDateTime::now_utc();
        if ended <= expires_at - CLOCK_ALLOWANCE {
            ensure!(
                alive,
                "a record expiring at .{fraction_ms} s read as absent {} ms before its expiry",
                (expires_at - started).whole_milliseconds()
            );
            judged += 1;
        }
        sleep_until(expires_at + PROBE).await;
        let started = OffsetDateTime::now_utc();
        let alive = store.read(&k).await?.is_some();
        if started >= expires_at + CLOCK_ALLOWANCE {
            ensure!(
                !alive,
                "a record expiring at .{fraction_ms} s read as live {} ms after its expiry",
                (started - expires_at).whole_milliseconds()
            );
            judged += 1;
        }
        if judged == 2 {
            return Ok(());
        }
    }
    Err(Failure::new(format!(
        "could not judge the expiry boundary at .{fraction_ms} s: 5 times a read took longer than {CLOCK_ALLOWANCE} to start or finish"
    )))
}

/// `delete_expired` at scale: of 1,000 expired records, 20 expiring about a second after the
/// purge starts and 200 live ones, it removes the expired ones only and counts what it removed.
///
/// "Exactly" means: the count is never more than the expired records the namespace held, a
/// purge right after counts 0, and, for a store that does not drop expired records on its own
/// ([`StoreFactory::expires_by_itself`] is `false`), the count is exactly 1,000. A store that
/// drops them lazily may count fewer (it did not find them), never more.
async fn delete_expired_at_scale_is_exact(factory: &dyn StoreFactory) -> CheckResult {
    const EXPIRED: usize = 1_000;
    const SOON: usize = 20;
    const LIVE: usize = 200;
    let store = factory.store().await?;
    let expired: Vec<SessionKey> = (0..EXPIRED).map(|_| key()).collect();
    let live_keys: Vec<SessionKey> = (0..LIVE).map(|_| key()).collect();
    for k in &expired {
        create_expired(&*store, k, b"dead").await?;
    }
    for k in &live_keys {
        create(&*store, k, in_secs(600), b"live").await?;
    }
    let soon_at = truncate_to_millis(OffsetDateTime::now_utc() + Duration::milliseconds(1_200));
    let soon: Vec<SessionKey> = (0..SOON).map(|_| key()).collect();
    for k in &soon {
        create(&*store, k, soon_at, b"soon").await?;
    }
    let purge_started = OffsetDateTime::now_utc();
    let purged = store.delete_expired().await?;
    let mut soon_alive = 0;
    for k in &soon {
        soon_alive += usize::from(store.read(k).await?.is_some());
    }
    let again = store.delete_expired().await?;
    let checked = OffsetDateTime::now_utc();
    ensure!(
        checked < soon_at - CLOCK_ALLOWANCE,
        "writing, purging and reading took too long to check purges ahead of the clock ({} ms)",
        (checked - purge_started).whole_milliseconds()
    );
    ensure_eq!(
        soon_alive,
        SOON,
        "records still live after a purge that started {} ms before their expiry",
        (soon_at - purge_started).whole_milliseconds()
    );
    ensure!(
        purged <= EXPIRED as u64,
        "delete_expired reported {purged} purged records, only {EXPIRED} were expired"
    );
    if store.capabilities().expires_by_itself {
        eprintln!(
            "note: delete_expired_at_scale_is_exact: this store drops expired records by itself; its purge count ({purged} of {EXPIRED}) is checked as an upper bound only"
        );
    } else {
        ensure_eq!(
            purged,
            EXPIRED as u64,
            "records reported purged by delete_expired"
        );
    }
    for k in &live_keys {
        ensure!(
            store.read(k).await?.is_some(),
            "delete_expired removed a live record"
        );
    }
    for k in &expired {
        ensure!(
            store.read(k).await?.is_none(),
            "an expired record survived the purge"
        );
    }
    ensure_eq!(again, 0, "records counted by a purge right after a purge");
    Ok(())
}

/// The behaviours of this file, in order.
pub(crate) const BEHAVIOURS: &[Behaviour] = register!(
    Store:
    expires_at_now_is_absent,
    expiry_in_real_time,
    delete_expired_purges_only_expired,
    millisecond_precision_everywhere,
    expiry_boundaries_are_exact,
    delete_expired_at_scale_is_exact,
);
