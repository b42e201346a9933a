//! Front checks: the `SessionManager` over the store under test. These are not rules of the store
//! contract; they check that the front keeps its promises on this backend.

use super::prelude::*;

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
        session_manager::DEFAULT_ID_ATTEMPTS as usize,
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
    let too_large = |result: session_manager::Result<()>, what: &str| match result {
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
    let kind = |result: session_manager::Result<()>| result.err().map(|e| e.kind());

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
