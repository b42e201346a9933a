//! The front's checks over any store: the `SessionManager` and the `Session` handle over the
//! store under test, in the conformance suite's shape ([`FRONT_CHECKS`], run by a
//! [`conformance_tests::Suite`] beside the store behaviours). They are not rules of the store
//! contract: they show that the front keeps its promises on a backend. Feature `testing`.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use conformance_tests::support::{keys_of, owned, owner};
use conformance_tests::{Behaviour, CheckResult, Failure, Family, StoreFactory, ensure, ensure_eq};
use session_core::time::{Duration, OffsetDateTime};
use session_core::{
    Capabilities, CreateOutcome, ErrorKind, OwnedSession, Owner, Record, Result, SessionId,
    SessionKey, SessionStore, UpdateOutcome, WriteOptions,
};

use crate::{ExpiryPolicy, Session, SessionManager};

/// The front's checks, in order.
pub const FRONT_CHECKS: &[Behaviour] = &[
    check("manager_retries_then_reports_collisions", |f| {
        Box::pin(manager_retries_then_reports_collisions(f))
    }),
    check("manager_cycle_id_keeps_data_and_deadline", |f| {
        Box::pin(manager_cycle_id_keeps_data_and_deadline(f))
    }),
    check("manager_rejects_invalid_ids_before_the_store", |f| {
        Box::pin(manager_rejects_invalid_ids_before_the_store(f))
    }),
    check("manager_rejects_oversized_data", |f| {
        Box::pin(manager_rejects_oversized_data(f))
    }),
    check("manager_never_resurrects", |f| {
        Box::pin(manager_never_resurrects(f))
    }),
    check("manager_login_lists_and_revokes_owners", |f| {
        Box::pin(manager_login_lists_and_revokes_owners(f))
    }),
];

const fn check(
    name: &'static str,
    run: for<'a> fn(&'a dyn StoreFactory) -> futures_like::BoxFuture<'a, CheckResult>,
) -> Behaviour {
    Behaviour {
        name,
        family: Family::Front,
        run,
    }
}

mod futures_like {
    /// The future type of a check.
    pub(super) type BoxFuture<'a, T> =
        std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
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
async fn manager_retries_then_reports_collisions(factory: &dyn StoreFactory) -> CheckResult {
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
        crate::DEFAULT_ID_ATTEMPTS as usize,
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
async fn manager_cycle_id_keeps_data_and_deadline(factory: &dyn StoreFactory) -> CheckResult {
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
async fn manager_rejects_invalid_ids_before_the_store(factory: &dyn StoreFactory) -> CheckResult {
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
async fn manager_rejects_oversized_data(factory: &dyn StoreFactory) -> CheckResult {
    let counting = Arc::new(CountingStore::new(factory.store().await?));
    let manager = SessionManager::new(Arc::clone(&counting)).with_max_data_size(1024);
    let too_large = |result: Result<()>, what: &str| match result {
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
async fn manager_never_resurrects(factory: &dyn StoreFactory) -> CheckResult {
    let store = factory.store().await?;
    let manager = SessionManager::new(Arc::clone(&store));
    let kind = |result: Result<()>| result.err().map(|e| e.kind());

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

/// The front over the owner index: a `Session` handle that logs in (`set_owner` with
/// `cycle_id`, one write) is listed with its label; "log out my other devices" revokes the others
/// and keeps it; a stale handle of a revoked device never writes again; removing the owner
/// unlists the session; over a store without an owner index, owned writes are refused and
/// nothing reaches the store.
async fn manager_login_lists_and_revokes_owners(factory: &dyn StoreFactory) -> CheckResult {
    let index = factory.store().await?;
    if !index.capabilities().owner_index {
        return Err(Failure::not_applicable(
            "the store keeps no owner index (Capabilities::owner_index is false)",
        ));
    }
    let manager = Arc::new(SessionManager::new(Arc::clone(&index)));
    let alice = owner("alice");
    // Another device, already logged in.
    let other = manager
        .create_owned(&b"{\"user\":\"alice\"}"[..], &owned("alice", "phone"))
        .await?;
    let stale = Session::with_manager(Some(other.id().clone()), Arc::clone(&manager), None);
    ensure!(
        stale.get::<String>("user").await?.is_some(),
        "the other device's session loads"
    );
    // Login on this device: data, owner and a fresh id in one save.
    let session = Session::with_manager(None, Arc::clone(&manager), None);
    session.insert("cart", 3).await?;
    session.save().await?;
    let anonymous = session
        .id()
        .ok_or_else(|| Failure::new("no id after save"))?;
    session.insert("user", "alice").await?;
    session.set_owner(Some(&owned("alice", "laptop")));
    session.cycle_id().await?;
    let id = session
        .id()
        .ok_or_else(|| Failure::new("no id after login"))?;
    ensure!(id != anonymous, "login kept the anonymous id");
    ensure!(
        index.read(&anonymous.key()).await?.is_none(),
        "the anonymous id still reads after login"
    );
    let listed = manager.sessions_of(&alice).await?;
    ensure_eq!(listed.len(), 2, "alice's sessions after login");
    let mine = listed
        .iter()
        .find(|s| s.key == id.key())
        .ok_or_else(|| Failure::new("the logged-in session is not listed"))?;
    ensure_eq!(mine.label, "laptop", "label of the logged-in session");
    // Log out the other devices.
    ensure_eq!(
        session.revoke_other_sessions(&alice).await?,
        1,
        "sessions revoked"
    );
    ensure_eq!(
        keys_of(&*index, "alice").await?,
        BTreeSet::from([id.key()]),
        "alice's sessions after logging out the others"
    );
    ensure!(
        manager.load(other.id()).await?.is_none(),
        "the revoked device's session loads"
    );
    stale.insert("late", true).await?;
    match stale.save().await {
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        other => {
            return Err(Failure::new(format!(
                "a save of a revoked session: expected NotFound, got {other:?}"
            )));
        }
    }
    ensure!(
        manager.load(other.id()).await?.is_none(),
        "a stale handle brought a revoked session back"
    );
    // This session keeps working and can be unowned.
    session.insert("cart", 4).await?;
    session.save().await?;
    session.set_owner(None);
    session.save().await?;
    ensure_eq!(
        keys_of(&*index, "alice").await?,
        BTreeSet::new(),
        "alice's sessions after unowning"
    );
    ensure!(
        manager.load(&id).await?.is_some(),
        "the unowned session still loads"
    );
    // Over a store without an owner index: refused before anything is written.
    let counting = Arc::new(CountingStore::new(Arc::clone(&index)).without_owner_index());
    let plain = Arc::new(SessionManager::new(
        Arc::clone(&counting) as Arc<dyn SessionStore>
    ));
    let refused = Session::with_manager(None, plain, None);
    refused.insert("user", "bob").await?;
    refused.set_owner(Some(&owned("bob", "")));
    match refused.save().await {
        Err(e) if e.kind() == ErrorKind::Unsupported => {}
        other => {
            return Err(Failure::new(format!(
                "an owned save without an owner index: expected Unsupported, got {other:?}"
            )));
        }
    }
    ensure!(refused.id().is_none(), "a refused owned create left an id");
    ensure_eq!(counting.calls(), 0, "store calls of a refused owned create");
    ensure_eq!(
        keys_of(&*index, "bob").await?,
        BTreeSet::new(),
        "bob's sessions"
    );
    Ok(())
}

/// Counts every call that reaches the inner store; optionally says it keeps no owner index.
struct CountingStore {
    inner: Arc<dyn SessionStore>,
    calls: AtomicUsize,
    owner_index: bool,
}

impl CountingStore {
    fn new(inner: Arc<dyn SessionStore>) -> Self {
        let owner_index = inner.capabilities().owner_index;
        Self {
            inner,
            calls: AtomicUsize::new(0),
            owner_index,
        }
    }

    fn without_owner_index(mut self) -> Self {
        self.owner_index = false;
        self
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn count(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl SessionStore for CountingStore {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities().owner_index(self.owner_index)
    }
    async fn create_opts(
        &self,
        key: &SessionKey,
        expires_at: OffsetDateTime,
        data: Bytes,
        options: &WriteOptions,
    ) -> Result<CreateOutcome> {
        self.count();
        options.check(&self.capabilities())?;
        self.inner.create_opts(key, expires_at, data, options).await
    }
    async fn read(&self, key: &SessionKey) -> Result<Option<Record>> {
        self.count();
        self.inner.read(key).await
    }
    async fn update_opts(
        &self,
        current: &SessionKey,
        previous: &SessionKey,
        expected_version: u64,
        expires_at: OffsetDateTime,
        data: Bytes,
        options: &WriteOptions,
    ) -> Result<UpdateOutcome> {
        self.count();
        options.check(&self.capabilities())?;
        self.inner
            .update_opts(
                current,
                previous,
                expected_version,
                expires_at,
                data,
                options,
            )
            .await
    }
    async fn touch(&self, key: &SessionKey, expires_at: OffsetDateTime) -> Result<bool> {
        self.count();
        self.inner.touch(key, expires_at).await
    }
    async fn delete(&self, key: &SessionKey) -> Result<()> {
        self.count();
        self.inner.delete(key).await
    }
    async fn delete_expired(&self) -> Result<u64> {
        self.count();
        self.inner.delete_expired().await
    }
    async fn clear(&self) -> Result<()> {
        self.count();
        self.inner.clear().await
    }
    async fn sessions_of(&self, owner: &Owner) -> Result<Vec<OwnedSession>> {
        self.count();
        self.inner.sessions_of(owner).await
    }
    async fn revoke_owner(&self, owner: &Owner, except: Option<&SessionKey>) -> Result<u64> {
        self.count();
        self.inner.revoke_owner(owner, except).await
    }
}
