//! The owner index ([`SessionStore::sessions_of`], [`SessionStore::revoke_owner`], writes with
//! [`OwnerChange`]): listing an owner's sessions and revoking them, through rotations, expiry and
//! concurrent writers.

use std::collections::BTreeSet;
use std::sync::atomic::AtomicU64;

use session_core::{OwnerChange, Ownership, SessionId, WriteOptions, async_trait};

use super::prelude::*;
use crate::support::{keys_of, owned, owner};

type Pair = (Arc<dyn SessionStore>, Arc<dyn SessionStore>);

/// Two instances over one fresh namespace, when the store keeps an owner index.
async fn owner_pair(factory: &dyn StoreFactory) -> Result<Pair, Failure> {
    let (a, b) = factory.store_pair().await?;
    if !a.capabilities().owner_index {
        return Err(Failure::not_applicable(
            "the store keeps no owner index (Capabilities::owner_index is false)",
        ));
    }
    Ok((a, b))
}

/// The owned writes as these behaviours spell them: `create_opts`/`update_opts` with an
/// [`OwnerChange`] (`None` clears the owner).
#[async_trait]
trait Owned: SessionStore {
    async fn create_owned(
        &self,
        key: &SessionKey,
        expires_at: OffsetDateTime,
        data: Bytes,
        ownership: &Ownership,
    ) -> session_core::Result<CreateOutcome> {
        let options = WriteOptions::new().with_owner(OwnerChange::Set(ownership.clone()));
        self.create_opts(key, expires_at, data, &options).await
    }

    async fn update_owned(
        &self,
        current: &SessionKey,
        previous: &SessionKey,
        expected_version: u64,
        expires_at: OffsetDateTime,
        data: Bytes,
        ownership: Option<&Ownership>,
    ) -> session_core::Result<UpdateOutcome> {
        let options = WriteOptions::new().with_owner(OwnerChange::replace(ownership.cloned()));
        self.update_opts(
            current,
            previous,
            expected_version,
            expires_at,
            data,
            &options,
        )
        .await
    }
}

impl<S: SessionStore + ?Sized> Owned for S {}

/// A key with every byte random: unlike [`key`], keys of a partitioned store land in different
/// partitions (an owner's sessions spread over a Redis Cluster's slots). For sessions that are
/// never rotated onto each other.
fn spread_key() -> SessionKey {
    SessionId::generate().key()
}

async fn create_owned(
    store: &dyn SessionStore,
    key: &SessionKey,
    expires_at: OffsetDateTime,
    ownership: &Ownership,
) -> CheckResult {
    ensure_eq!(
        store
            .create_owned(key, expires_at, Bytes::from_static(b"owned"), ownership)
            .await?,
        CreateOutcome::Created,
        "create_owned on a fresh key"
    );
    Ok(())
}

/// `sessions_of` lists exactly the owner's live sessions with their expiry, version and label,
/// soonest expiry first, on both instances; other owners and unowned sessions are not listed.
async fn owner_sessions_are_listed(factory: &dyn StoreFactory) -> CheckResult {
    let (a, b) = owner_pair(factory).await?;
    let alice: Vec<SessionKey> = (0..3).map(|_| spread_key()).collect();
    let labels = ["Firefox on Linux", "", "Ünïcødé ☕ phone"];
    for (i, k) in alice.iter().enumerate() {
        create_owned(
            &*a,
            k,
            in_secs(600 - i as i64 * 10),
            &owned("alice", labels[i]),
        )
        .await?;
    }
    let bob = spread_key();
    create_owned(&*b, &bob, in_secs(600), &owned("bob", "bob's laptop")).await?;
    create(&*a, &key(), in_secs(600), b"nobody's").await?;
    // A long owner with multi-byte characters and a label at the maximum length.
    let long_name = "é".repeat(127);
    let long = key();
    let long_label = "l".repeat(session_core::MAX_LABEL_BYTES);
    create_owned(&*a, &long, in_secs(600), &owned(&long_name, &long_label)).await?;

    for store in [&a, &b] {
        let listed = store.sessions_of(&owner("alice")).await?;
        ensure_eq!(listed.len(), 3, "sessions listed for alice");
        for (got, i) in listed.iter().zip([2usize, 1, 0]) {
            ensure_eq!(got.key, alice[i], "listing order (soonest expiry first)");
            ensure_eq!(got.version, 1, "version of a listed session");
            ensure_eq!(got.label, labels[i], "label of a listed session");
        }
        for (session, i) in listed.iter().zip([2usize, 1, 0]) {
            let record = live(&**store, &alice[i], "a listed session reads as absent").await?;
            ensure_eq!(
                session.expires_at,
                record.expires_at,
                "listed expiry vs the record's"
            );
        }
        ensure_eq!(
            keys_of(&**store, "bob").await?,
            BTreeSet::from([bob]),
            "sessions listed for bob"
        );
        ensure_eq!(
            keys_of(&**store, "carol").await?,
            BTreeSet::new(),
            "sessions listed for an owner with none"
        );
        let long_listed = store.sessions_of(&owner(&long_name)).await?;
        ensure_eq!(long_listed.len(), 1, "sessions of a 254-byte owner");
        ensure_eq!(long_listed[0].label, long_label, "a 255-byte label");
    }
    // The data of an owned session is the plain contract's.
    ensure_eq!(
        live(&*a, &bob, "bob's session").await?.data,
        Bytes::from_static(b"owned"),
        "data of an owned session"
    );
    Ok(())
}

/// `create_owned` over a live key and `update_owned` that is `NotFound`, `Conflict` or `IdTaken`
/// change nothing, the ownership included.
async fn owner_outcomes_change_nothing_else(factory: &dyn StoreFactory) -> CheckResult {
    let (a, _b) = owner_pair(factory).await?;
    let (k, other) = (key(), key());
    create_owned(&*a, &k, in_secs(600), &owned("alice", "first")).await?;
    create(&*a, &other, in_secs(600), b"other").await?;
    ensure_eq!(
        a.create_owned(
            &k,
            in_secs(900),
            Bytes::from_static(b"x"),
            &owned("mallory", "")
        )
        .await?,
        CreateOutcome::IdTaken,
        "create_owned on a live key"
    );
    ensure_eq!(
        a.update_owned(
            &k,
            &k,
            7,
            in_secs(900),
            Bytes::from_static(b"x"),
            Some(&owned("mallory", ""))
        )
        .await?,
        UpdateOutcome::Conflict,
        "update_owned with a stale version"
    );
    ensure_eq!(
        a.update_owned(
            &other,
            &k,
            1,
            in_secs(900),
            Bytes::from_static(b"x"),
            Some(&owned("mallory", ""))
        )
        .await?,
        UpdateOutcome::IdTaken,
        "update_owned rotating onto a live key"
    );
    ensure_eq!(
        a.update_owned(
            &key(),
            &key(),
            1,
            in_secs(900),
            Bytes::from_static(b"x"),
            Some(&owned("mallory", ""))
        )
        .await?,
        UpdateOutcome::NotFound,
        "update_owned of an absent key"
    );
    ensure_eq!(
        keys_of(&*a, "mallory").await?,
        BTreeSet::new(),
        "mallory's sessions"
    );
    let alice = a.sessions_of(&owner("alice")).await?;
    ensure_eq!(alice.len(), 1, "alice's sessions");
    ensure_eq!(
        (alice[0].key, alice[0].version, alice[0].label.as_str()),
        (k, 1, "first"),
        "alice's session"
    );
    let record = live(&*a, &other, "the unowned session").await?;
    ensure_eq!(
        (record.version, &record.data[..]),
        (1, &b"other"[..]),
        "the unowned session"
    );
    Ok(())
}

/// The ownership follows the record: plain updates and rotations keep it (the listing shows the
/// new key and version), `touch` keeps it (the listing shows the new expiry), `update_owned`
/// replaces or removes it, and `create_owned`/`update_owned` write owner and label together.
async fn owner_follows_rotation_and_touch(factory: &dyn StoreFactory) -> CheckResult {
    let (a, b) = owner_pair(factory).await?;
    let k1 = key();
    create_owned(&*a, &k1, in_secs(600), &owned("alice", "tablet")).await?;
    let k2 = key();
    ensure_eq!(
        b.update(&k2, &k1, 1, in_secs(600), Bytes::from_static(b"rotated"))
            .await?,
        UpdateOutcome::Updated { version: 2 },
        "plain rotation of an owned session"
    );
    ensure_eq!(
        b.update(&k2, &k2, 2, in_secs(700), Bytes::from_static(b"saved"))
            .await?,
        UpdateOutcome::Updated { version: 3 },
        "plain update of an owned session"
    );
    ensure!(
        b.touch(&k2, in_secs(800)).await?,
        "touch of an owned session"
    );
    for store in [&a, &b] {
        let listed = store.sessions_of(&owner("alice")).await?;
        ensure_eq!(
            listed.len(),
            1,
            "alice's sessions after rotation, update and touch"
        );
        ensure_eq!(listed[0].key, k2, "listed key after the rotation");
        ensure_eq!(listed[0].version, 3, "listed version");
        let record = live(&**store, &k2, "the rotated session").await?;
        ensure_eq!(
            listed[0].expires_at,
            record.expires_at,
            "listed expiry after touch"
        );
        ensure!(
            record.expires_at > in_secs(700),
            "the touch moved the expiry"
        );
        ensure_eq!(listed[0].label, "tablet", "label kept by plain writes");
    }
    // Re-owned while rotating: listed for bob under the new key, no longer for alice.
    let k3 = key();
    ensure_eq!(
        a.update_owned(
            &k3,
            &k2,
            3,
            in_secs(600),
            Bytes::from_static(b"bob's"),
            Some(&owned("bob", "now bob's"))
        )
        .await?,
        UpdateOutcome::Updated { version: 4 },
        "update_owned rotating to another owner"
    );
    ensure_eq!(
        keys_of(&*b, "alice").await?,
        BTreeSet::new(),
        "alice's sessions after re-owning"
    );
    let bob = b.sessions_of(&owner("bob")).await?;
    ensure_eq!(bob.len(), 1, "bob's sessions");
    ensure_eq!(
        (bob[0].key, bob[0].version, bob[0].label.as_str()),
        (k3, 4, "now bob's"),
        "bob's session"
    );
    // A new label for the same owner, in place.
    ensure_eq!(
        a.update_owned(
            &k3,
            &k3,
            4,
            in_secs(600),
            Bytes::from_static(b"bob's"),
            Some(&owned("bob", "renamed"))
        )
        .await?,
        UpdateOutcome::Updated { version: 5 },
        "update_owned in place with a new label"
    );
    ensure_eq!(
        b.sessions_of(&owner("bob"))
            .await?
            .first()
            .map(|s| s.label.clone()),
        Some("renamed".to_owned()),
        "label after update_owned"
    );
    // Ownership removed: the session lives on, listed for nobody.
    ensure_eq!(
        b.update_owned(
            &k3,
            &k3,
            5,
            in_secs(600),
            Bytes::from_static(b"nobody's"),
            None
        )
        .await?,
        UpdateOutcome::Updated { version: 6 },
        "update_owned removing the owner"
    );
    ensure_eq!(
        keys_of(&*a, "bob").await?,
        BTreeSet::new(),
        "bob's sessions after removing the owner"
    );
    ensure_eq!(
        live(&*a, &k3, "the unowned session").await?.version,
        6,
        "version of the unowned session"
    );
    // Owned again from an unowned session, in a rotation.
    let k4 = key();
    ensure_eq!(
        a.update_owned(
            &k4,
            &k3,
            6,
            in_secs(600),
            Bytes::from_static(b"x"),
            Some(&owned("carol", "c"))
        )
        .await?,
        UpdateOutcome::Updated { version: 7 },
        "update_owned giving an unowned session an owner while rotating"
    );
    ensure_eq!(
        keys_of(&*b, "carol").await?,
        BTreeSet::from([k4]),
        "carol's sessions"
    );
    Ok(())
}

/// Deleted, rotated-away, expired and purged sessions are never listed; revoking them finds
/// nothing to count.
async fn owner_listing_hides_ended_sessions(factory: &dyn StoreFactory) -> CheckResult {
    let (a, b) = owner_pair(factory).await?;
    let keep = key();
    create_owned(&*a, &keep, in_secs(600), &owned("alice", "kept")).await?;
    let deleted = key();
    create_owned(&*a, &deleted, in_secs(600), &owned("alice", "deleted")).await?;
    b.delete(&deleted).await?;
    let rotated = key();
    create_owned(&*a, &rotated, in_secs(600), &owned("alice", "rotated")).await?;
    let target = key();
    ensure_eq!(
        b.update(&target, &rotated, 1, in_secs(600), Bytes::from_static(b"r"))
            .await?,
        UpdateOutcome::Updated { version: 2 },
        "rotation"
    );
    let short = key();
    let soon = in_secs(1);
    create_owned(&*a, &short, soon, &owned("alice", "short")).await?;
    let dead = key();
    ensure!(
        a.create_owned(
            &dead,
            long_ago(),
            Bytes::from_static(b"d"),
            &owned("alice", "dead")
        )
        .await?
            == CreateOutcome::Created,
        "create_owned of an expired record"
    );
    ensure_eq!(
        keys_of(&*b, "alice").await?,
        BTreeSet::from([keep, target, short]),
        "alice's sessions before the short one expires"
    );
    sleep_until(soon + Duration::milliseconds(50)).await;
    for store in [&a, &b] {
        ensure_eq!(
            keys_of(&**store, "alice").await?,
            BTreeSet::from([keep, target]),
            "alice's sessions after deletion, rotation and expiry"
        );
    }
    let _purged = a.delete_expired().await?;
    ensure_eq!(
        keys_of(&*b, "alice").await?,
        BTreeSet::from([keep, target]),
        "alice's sessions after the purge"
    );
    ensure_eq!(
        a.revoke_owner(&owner("alice"), Some(&keep)).await?,
        1,
        "live sessions revoked (the rotated one; ended ones are not counted)"
    );
    ensure_eq!(
        keys_of(&*b, "alice").await?,
        BTreeSet::from([keep]),
        "alice's sessions after the revoke"
    );
    Ok(())
}

/// Owners are compared whole and exactly: a prefix, a different case, a trailing space or SQL
/// wildcard characters name other owners, for listing and for revoking.
async fn owners_are_whole(factory: &dyn StoreFactory) -> CheckResult {
    let (a, b) = owner_pair(factory).await?;
    let names = [
        "alice", "ali", "alice2", "Alice", "alice ", " alice", "al%", "al_ce", "a*", "{alice}",
        "alice:1",
    ];
    let mut keys = Vec::new();
    for name in names {
        let k = spread_key();
        create_owned(&*a, &k, in_secs(600), &owned(name, name)).await?;
        keys.push(k);
    }
    for (name, k) in names.iter().zip(&keys) {
        ensure_eq!(
            keys_of(&*b, name).await?,
            BTreeSet::from([*k]),
            "sessions of owner {name:?}"
        );
    }
    ensure_eq!(
        b.revoke_owner(&owner("ali"), None).await?,
        1,
        "sessions revoked for \"ali\""
    );
    ensure_eq!(
        b.revoke_owner(&owner("al%"), None).await?,
        1,
        "sessions revoked for \"al%\""
    );
    ensure_eq!(
        b.revoke_owner(&owner("a*"), None).await?,
        1,
        "sessions revoked for \"a*\""
    );
    for (name, k) in names.iter().zip(&keys) {
        let gone = ["ali", "al%", "a*"].contains(name);
        ensure_eq!(
            a.read(k).await?.is_none(),
            gone,
            "session of {name:?} gone after the revokes"
        );
    }
    Ok(())
}

/// `revoke_owner` with `except` keeps exactly that session (data and version untouched) and
/// counts the others; without it, it removes all; other owners and unowned sessions stay.
async fn owner_revoke_keeps_exactly_except(factory: &dyn StoreFactory) -> CheckResult {
    let (a, b) = owner_pair(factory).await?;
    let keys: Vec<SessionKey> = (0..5).map(|_| spread_key()).collect();
    for k in &keys {
        create_owned(&*a, k, in_secs(600), &owned("alice", "device")).await?;
    }
    let bob = key();
    create_owned(&*a, &bob, in_secs(600), &owned("bob", "")).await?;
    let plain = key();
    create(&*a, &plain, in_secs(600), b"plain").await?;
    ensure_eq!(
        b.update(
            &keys[2],
            &keys[2],
            1,
            in_secs(600),
            Bytes::from_static(b"current")
        )
        .await?,
        UpdateOutcome::Updated { version: 2 },
        "save of the session that will be kept"
    );
    ensure_eq!(
        b.revoke_owner(&owner("alice"), Some(&keys[2])).await?,
        4,
        "sessions revoked except one"
    );
    for (i, k) in keys.iter().enumerate() {
        ensure_eq!(
            a.read(k).await?.is_some(),
            i == 2,
            "session {i} live after the revoke"
        );
    }
    let kept = live(&*a, &keys[2], "the kept session").await?;
    ensure_eq!(
        (kept.version, &kept.data[..]),
        (2, &b"current"[..]),
        "the kept session"
    );
    ensure_eq!(
        keys_of(&*a, "alice").await?,
        BTreeSet::from([keys[2]]),
        "alice's sessions"
    );
    ensure_eq!(
        b.revoke_owner(&owner("alice"), Some(&keys[2])).await?,
        0,
        "a second revoke"
    );
    // `except` naming a session of someone else protects nothing of alice's and touches bob.
    ensure_eq!(
        b.revoke_owner(&owner("alice"), Some(&bob)).await?,
        1,
        "revoke with another owner's key as except"
    );
    ensure_eq!(
        a.revoke_owner(&owner("alice"), None).await?,
        0,
        "revoke of an owner with none"
    );
    ensure!(
        a.read(&bob).await?.is_some(),
        "bob's session survived alice's revokes"
    );
    ensure!(
        a.read(&plain).await?.is_some(),
        "an unowned session survived the revokes"
    );
    ensure_eq!(
        a.revoke_owner(&owner("bob"), None).await?,
        1,
        "revoke of bob's one session"
    );
    ensure!(
        a.read(&bob).await?.is_none(),
        "bob's session after his revoke"
    );
    Ok(())
}

/// Two namespaces of one backend keep separate owner indexes: the same owner in both is listed
/// and revoked per namespace, and `clear` empties its namespace's index only.
async fn owner_index_stays_in_its_namespace(factory: &dyn StoreFactory) -> CheckResult {
    let (one, _) = owner_pair(factory).await?;
    let (two, _) = owner_pair(factory).await?;
    let (k1, k2) = (key(), key());
    create_owned(&*one, &k1, in_secs(600), &owned("alice", "one")).await?;
    create_owned(&*two, &k2, in_secs(600), &owned("alice", "two")).await?;
    ensure_eq!(
        keys_of(&*one, "alice").await?,
        BTreeSet::from([k1]),
        "alice in namespace one"
    );
    ensure_eq!(
        keys_of(&*two, "alice").await?,
        BTreeSet::from([k2]),
        "alice in namespace two"
    );
    ensure_eq!(
        one.revoke_owner(&owner("alice"), None).await?,
        1,
        "revoke in namespace one"
    );
    ensure!(
        two.read(&k2).await?.is_some(),
        "namespace two's session after a revoke in one"
    );
    let k3 = key();
    create_owned(&*one, &k3, in_secs(600), &owned("alice", "one again")).await?;
    one.clear().await?;
    ensure_eq!(
        keys_of(&*one, "alice").await?,
        BTreeSet::new(),
        "alice in namespace one after clear"
    );
    ensure_eq!(
        keys_of(&*two, "alice").await?,
        BTreeSet::from([k2]),
        "alice in namespace two after one's clear"
    );
    Ok(())
}

/// The guarantee of `revoke_owner` under concurrent writers, over two instances: while tasks
/// keep rotating and saving the owner's sessions and creating new ones, every session that
/// existed (its create returned) before the revoke started is gone when it returns, under
/// whatever key it was rotated to; no rotation or save of one of them succeeds afterwards; and
/// the count is at least the number of those sessions.
async fn owner_race_revoke_against_creates_and_rotations(
    factory: &dyn StoreFactory,
) -> CheckResult {
    const ROUNDS: usize = 6;
    const SESSIONS: usize = 24;
    let (a, b) = owner_pair(factory).await?;
    for round in 0..ROUNDS {
        let name = format!("racer-{round}");
        let ownership = owned(&name, "racing");
        let mut start = Vec::new();
        for _ in 0..SESSIONS {
            let k = key();
            create_owned(&*a, &k, in_secs(600), &ownership).await?;
            start.push(k);
        }
        let revoke_started = Arc::new(AtomicBool::new(false));
        let revoke_done = Arc::new(AtomicBool::new(false));
        let created_before = Arc::new(AtomicU64::new(0));
        let barrier = Arc::new(Barrier::new(SESSIONS + 4));
        let mut handles = Vec::new();
        // One task per session: rotate, save in place, rotate again, … until it is gone.
        for (i, k) in start.iter().copied().enumerate() {
            let store = if i % 2 == 0 {
                Arc::clone(&a)
            } else {
                Arc::clone(&b)
            };
            let (barrier, done) = (Arc::clone(&barrier), Arc::clone(&revoke_done));
            handles.push(tokio::spawn(async move {
                barrier.wait().await;
                let (mut current, mut version) = (k, 1u64);
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
                for step in 0u64.. {
                    if std::time::Instant::now() > deadline {
                        break;
                    }
                    let next = if step % 2 == 0 { key() } else { current };
                    let finished = done.load(Ordering::SeqCst);
                    let outcome = store
                        .update(&next, &current, version, in_secs(600), Bytes::from_static(b"busy"))
                        .await?;
                    match outcome {
                        UpdateOutcome::Updated { version: v } => {
                            ensure!(
                                !finished,
                                "a write of a revoked session succeeded after revoke_owner returned (session {i}, step {step})"
                            );
                            (current, version) = (next, v);
                        }
                        UpdateOutcome::NotFound => {
                            ensure!(store.read(&current).await?.is_none(), "NotFound yet readable");
                            return Ok(current);
                        }
                        other => {
                            return Err(Failure::new(format!(
                                "a lone writer of session {i} got {other:?}"
                            )));
                        }
                    }
                    tokio::task::yield_now().await;
                }
                Err(Failure::new(format!("session {i} was still writable 60 s after the race started")))
            }));
        }
        // Two creators: sessions created before the revoke started must be gone after it.
        let mut creators = Vec::new();
        for c in 0..2 {
            let store = if c == 0 {
                Arc::clone(&a)
            } else {
                Arc::clone(&b)
            };
            let (barrier, started, done, before) = (
                Arc::clone(&barrier),
                Arc::clone(&revoke_started),
                Arc::clone(&revoke_done),
                Arc::clone(&created_before),
            );
            let ownership = ownership.clone();
            creators.push(tokio::spawn(async move {
                barrier.wait().await;
                let mut early = Vec::new();
                for _ in 0..200 {
                    if done.load(Ordering::SeqCst) {
                        break;
                    }
                    let k = key();
                    let outcome = store
                        .create_owned(&k, in_secs(600), Bytes::from_static(b"new"), &ownership)
                        .await?;
                    if outcome != CreateOutcome::Created {
                        return Err(Failure::new(format!(
                            "create_owned of a fresh key: {outcome:?}"
                        )));
                    }
                    if !started.load(Ordering::SeqCst) {
                        early.push(k);
                        before.fetch_add(1, Ordering::SeqCst);
                    }
                    tokio::task::yield_now().await;
                }
                Ok::<_, Failure>(early)
            }));
        }
        let revoker = {
            let store = Arc::clone(&b);
            let (barrier, started, done) = (
                Arc::clone(&barrier),
                Arc::clone(&revoke_started),
                Arc::clone(&revoke_done),
            );
            let owner = ownership.owner().clone();
            tokio::spawn(async move {
                barrier.wait().await;
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                started.store(true, Ordering::SeqCst);
                let revoked = store.revoke_owner(&owner, None).await;
                done.store(true, Ordering::SeqCst);
                revoked
            })
        };
        barrier.wait().await;
        let revoked = revoker
            .await
            .map_err(|e| Failure::new(format!("the revoking task panicked: {e}")))??;
        let before = created_before.load(Ordering::SeqCst);
        let mut early = Vec::new();
        for creator in creators {
            early.extend(
                creator
                    .await
                    .map_err(|e| Failure::new(format!("a creating task panicked: {e}")))??,
            );
        }
        for handle in handles {
            let last = handle
                .await
                .map_err(|e| Failure::new(format!("a rotating task panicked: {e}")))??;
            ensure!(
                a.read(&last).await?.is_none(),
                "a revoked session is readable (round {round})"
            );
        }
        for k in &early {
            ensure!(
                a.read(k).await?.is_none(),
                "a session created before the revoke started survived it (round {round})"
            );
        }
        ensure!(
            revoked >= SESSIONS as u64 + before,
            "revoke_owner counted {revoked}, but {SESSIONS} + {before} sessions existed when it started (round {round})"
        );
        let left = a.sessions_of(ownership.owner()).await?;
        for session in &left {
            ensure!(
                !early.contains(&session.key),
                "a session created before the revoke is still listed (round {round})"
            );
        }
        let again = a.revoke_owner(ownership.owner(), None).await?;
        ensure_eq!(
            again,
            left.len() as u64,
            "a second revoke counts what was still listed (round {round})"
        );
    }
    Ok(())
}

/// Of concurrent `revoke_owner` calls on one owner over two instances, the counts add up to the
/// owner's sessions exactly: each session is revoked once.
async fn owner_race_concurrent_revokes(factory: &dyn StoreFactory) -> CheckResult {
    let (a, b) = owner_pair(factory).await?;
    for round in 0..4 {
        let name = format!("revoked-{round}");
        let ownership = owned(&name, "");
        let mut keys = Vec::new();
        for _ in 0..40 {
            let k = spread_key();
            create_owned(&*a, &k, in_secs(600), &ownership).await?;
            keys.push(k);
        }
        let barrier = Arc::new(Barrier::new(8));
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let store = if i % 2 == 0 {
                    Arc::clone(&a)
                } else {
                    Arc::clone(&b)
                };
                let barrier = Arc::clone(&barrier);
                let owner = ownership.owner().clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    store.revoke_owner(&owner, None).await
                })
            })
            .collect();
        let mut total = 0;
        for handle in handles {
            total += handle
                .await
                .map_err(|e| Failure::new(format!("a revoking task panicked: {e}")))??;
        }
        ensure_eq!(
            total,
            40,
            "sessions revoked by 8 concurrent revokes (round {round})"
        );
        for k in &keys {
            ensure!(
                a.read(k).await?.is_none(),
                "a session survived the revokes (round {round})"
            );
        }
    }
    Ok(())
}

/// The behaviours of this file, in order.
pub(crate) const BEHAVIOURS: &[Behaviour] = register!(
    Owner:
    owner_sessions_are_listed,
    owner_outcomes_change_nothing_else,
    owner_follows_rotation_and_touch,
    owner_listing_hides_ended_sessions,
    owners_are_whole,
    owner_revoke_keeps_exactly_except,
    owner_index_stays_in_its_namespace,
    owner_race_revoke_against_creates_and_rotations,
    owner_race_concurrent_revokes,
);
