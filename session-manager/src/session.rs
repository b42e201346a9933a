//! [`Session`]: the key-value handle an application uses during one request.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::{Duration, OffsetDateTime};

use crate::manager::{SessionManager, SessionState};
use session_core::SessionStore;
use session_core::{Error, ErrorKind, Result};
use session_core::{OwnedSession, Owner, OwnerChange, Ownership, SessionId, WriteOptions};

/// How many times [`Session::save`] reloads and replays its changes after a `Conflict` before
/// giving up with [`ErrorKind::Conflict`]. Every round of concurrent saves lets at least one
/// through, so 32 concurrent requests on one session all get their changes in.
pub const DEFAULT_CONFLICT_RETRIES: u32 = 32;

/// When a session expires, as the application chooses per session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Expiry {
    /// The cookie lives until the browser closes; the stored session follows the manager's
    /// expiry policy (24 hours idle by default).
    OnSessionEnd,
    /// Expires after this long without a save (an idle timeout for this session).
    OnInactivity(Duration),
    /// Expires at this moment.
    AtDateTime(OffsetDateTime),
}

/// One recorded change, replayed onto fresh data when a save meets `Conflict`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Change {
    Insert(String, Value),
    Remove(String),
    Clear,
}

/// What the handle knows about the stored session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Stored {
    /// Not asked yet (lazy).
    Unknown,
    /// The store has no live session under the handle's id (or the handle has no id): a save
    /// with data creates one under a fresh id.
    Absent,
    /// The store had this version, with this expiry and absolute deadline.
    Present {
        version: u64,
        expires_at: OffsetDateTime,
        absolute_deadline: Option<OffsetDateTime>,
    },
    /// The handle had a stored session and found it gone (deleted, rotated away or expired
    /// elsewhere): it never writes again, under any id, until [`Session::flush`] starts over.
    Gone,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    id: Option<SessionId>,
    stored: Stored,
    /// The data as the application sees it: the stored data with `changes` applied.
    data: Map<String, Value>,
    /// The stored data bytes of the loaded version (to see whether a save would write the same
    /// bytes). Not part of a snapshot: a restored handle compares nothing and writes.
    #[serde(skip)]
    base: Option<Bytes>,
    /// Changes not yet saved, in order, each with its sequence number.
    changes: Vec<(u64, Change)>,
    /// Keys whose stored value the application read, with the value it saw (`None`: absent). A
    /// replay onto a session where one of them changed is a `Conflict`, not a merge.
    #[serde(default)]
    reads: BTreeMap<String, Option<Value>>,
    /// The next sequence number for a change or an expiry setting.
    #[serde(default)]
    seq: u64,
    expiry: Option<Expiry>,
    /// Sequence number of a `set_expiry` not saved yet.
    expiry_changed: Option<u64>,
    /// Changed during this handle's life (data, expiry or id): what `is_modified` reports.
    modified: bool,
    /// This handle ended its session itself (`flush` or `delete`).
    #[serde(default)]
    ended: bool,
    /// An ownership change not saved yet: its sequence number and the new owner and label
    /// (`None`: no owner).
    #[serde(default)]
    owner_changed: Option<(u64, Option<(String, String)>)>,
}

impl State {
    fn dirty(&self) -> bool {
        !self.changes.is_empty() || self.expiry_changed.is_some() || self.owner_changed.is_some()
    }

    fn next_seq(&mut self) -> u64 {
        let seq = self.seq;
        self.seq += 1;
        seq
    }

    /// Records `change` (already applied to `data`); `modifies` says whether it changed what the
    /// application sees (an insert of the value already there does not, but is still written).
    fn record(&mut self, change: Change, modifies: bool) {
        if change == Change::Clear {
            self.changes.clear();
        }
        let seq = self.next_seq();
        self.changes.push((seq, change));
        self.modified |= modifies;
    }

    /// Whether an unsaved change of this handle decides `key`'s value.
    fn changed_here(&self, key: &str) -> bool {
        self.changes.iter().any(|(_, change)| match change {
            Change::Insert(k, _) | Change::Remove(k) => k == key,
            Change::Clear => true,
        })
    }

    /// Notes that the application is about to see `key`'s stored value: the handle's later
    /// writes may depend on it.
    fn note_read(&mut self, key: &str) {
        if self.reads.contains_key(key) || self.changed_here(key) {
            return;
        }
        let seen = self.data.get(key).cloned();
        self.reads.insert(key.to_owned(), seen);
    }

    /// The key of the first read value that `fresh` no longer holds.
    fn stale_read(&self, fresh: &Map<String, Value>) -> Option<&str> {
        self.reads
            .iter()
            .find(|(key, seen)| fresh.get(key.as_str()) != seen.as_ref())
            .map(|(key, _)| key.as_str())
    }

    /// Forgets the session: no id, no data, nothing to save.
    fn end(&mut self, stored: Stored) {
        self.id = None;
        self.stored = stored;
        self.data.clear();
        self.base = None;
        self.changes.clear();
        self.reads.clear();
        self.expiry_changed = None;
        self.owner_changed = None;
    }
}

fn apply(data: &mut Map<String, Value>, changes: &[(u64, Change)]) {
    for (_, change) in changes {
        match change {
            Change::Insert(key, value) => {
                data.insert(key.clone(), value.clone());
            }
            Change::Remove(key) => {
                data.remove(key);
            }
            Change::Clear => data.clear(),
        }
    }
}

/// A session as a map of string keys to JSON values, over any [`SessionStore`]. Cheap to clone:
/// clones share one state.
///
/// - **Lazy**: [`new`](Self::new) makes no store call; the first read or write loads the session.
/// - **No fixation**: an id the store does not know is dropped when loading; if data is then
///   saved, the session is created under a fresh id from the generator.
/// - **Concurrent saves** (another request saved the session since this handle loaded it: the
///   store answers `Conflict` to the compare-and-swap): the handle reloads and, if it may, replays
///   its own `insert`, `remove` and `clear` calls onto the fresh data, in order, and tries again
///   (up to [`DEFAULT_CONFLICT_RETRIES`] times). Whether it may depends on what it read:
///
///   | what the handle did | example | on a concurrent save |
///   |---|---|---|
///   | blind write: `insert` (or `clear`) of keys it never read | `insert("last_seen", now)` | merged: replayed on top, so the last save wins per key and other keys keep their writes |
///   | read-then-write: `get` (or `insert_value`, which returns the old value) of a key, then any write | read a counter, insert counter + 1 | [`ErrorKind::Conflict`] if a key it read changed meanwhile; nothing is written |
///   | remove-once: `remove` of a key (a read that hands the value out) | take a one-time OAuth state | [`ErrorKind::Conflict`] if the key changed meanwhile: of two handles removing one value, one save succeeds |
///
///   Every key whose stored value the application saw through this handle is in its read set
///   (keys it wrote itself before reading are not: it saw its own write). On a conflict the
///   save fails if any key of the read set changed, whichever keys the handle wrote: a write may
///   depend on any value that was read. Reads of a handle that writes nothing are never checked.
///   After a `Conflict`, [`discard`](Self::discard) the handle's changes (or use a new handle)
///   and redo the request's work on fresh data.
/// - **No resurrection**: a handle whose stored session was deleted, rotated away or expired
///   elsewhere never writes it again, under any id: [`save`](Self::save) and
///   [`cycle_id`](Self::cycle_id) return [`ErrorKind::NotFound`], on the first attempt and after
///   any replay, until [`flush`](Self::flush) starts a new session.
/// - **Errors**: an error from the store means the outcome is unknown (a network store may have
///   applied a write whose reply was lost). After a transient error on a save or a rotation the
///   manager re-reads the session and reports success when the store holds exactly what was
///   written.
/// - Unchanged sessions are not written; they are only touched when their idle deadline would
///   move by at least 5% of the idle timeout (at most 20 touches per idle period). Inserting the
///   value already there is still a write of that value, checked against the store with one read
///   (no write) when nobody saved in between.
#[derive(Clone)]
pub struct Session {
    manager: Arc<SessionManager<Arc<dyn SessionStore>>>,
    state: Arc<Mutex<State>>,
    /// Serialises this handle's store calls (load, save, rotation) so they never interleave.
    io: Arc<tokio::sync::Mutex<()>>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.lock();
        f.debug_struct("Session")
            .field("id", &state.id)
            .field("stored", &state.stored)
            .field("keys", &state.data.len())
            .field("modified", &state.modified)
            .finish_non_exhaustive()
    }
}

/// A serializable picture of a [`Session`] handle (id, expiry, data, version, unsaved changes
/// and the values it read), to resume it later. It holds the session token: keep it as secret
/// as the cookie.
#[derive(Clone, Serialize, Deserialize)]
pub struct SessionSnapshot {
    state: State,
}

impl fmt::Debug for SessionSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionSnapshot")
            .field("id", &self.state.id)
            .field("stored", &self.state.stored)
            .finish_non_exhaustive()
    }
}

fn encode_error(e: serde_json::Error) -> Error {
    Error::with_source(ErrorKind::Encode, "encoding a session value as JSON", e)
}

fn not_found() -> Error {
    Error::new(
        ErrorKind::NotFound,
        "the session no longer exists (deleted, expired or rotated away); it was not recreated",
    )
}

fn read_conflict(key: &str) -> Error {
    Error::new(
        ErrorKind::Conflict,
        format!(
            "session value {key:?}, which this handle read, was changed by a concurrent save; nothing was written (discard the changes and redo them on fresh data)"
        ),
    )
}

fn kept_changing() -> Error {
    Error::new(
        ErrorKind::Conflict,
        format!(
            "the session kept changing: {DEFAULT_CONFLICT_RETRIES} reloads and replays all met a newer save"
        ),
    )
}

/// What one save attempt works from, taken under one lock.
struct Attempt {
    id: Option<SessionId>,
    stored: Stored,
    data: Map<String, Value>,
    base: Option<Bytes>,
    dirty: bool,
    expiry: Option<Expiry>,
    expiry_changed: bool,
    /// What the write carries beside the data (the owner, when it changed).
    options: WriteOptions,
    /// Changes with a smaller sequence number are carried by this attempt.
    upto: u64,
}

impl Session {
    /// A handle for the session `id` (`None`: no session yet) in `store`, with `expiry`
    /// (`None`: the default policy, 24 hours idle). Makes no store call.
    pub fn new(id: Option<SessionId>, store: impl SessionStore, expiry: Option<Expiry>) -> Self {
        let store: Arc<dyn SessionStore> = Arc::new(store);
        Self::with_manager(id, Arc::new(SessionManager::new(store)), expiry)
    }

    /// A handle using `manager` (its id generator, policy, size limit). Makes no store call.
    pub fn with_manager(
        id: Option<SessionId>,
        manager: Arc<SessionManager<Arc<dyn SessionStore>>>,
        expiry: Option<Expiry>,
    ) -> Self {
        let stored = if id.is_some() {
            Stored::Unknown
        } else {
            Stored::Absent
        };
        Self::from_state(
            manager,
            State {
                id,
                stored,
                data: Map::new(),
                base: None,
                changes: Vec::new(),
                reads: BTreeMap::new(),
                seq: 0,
                expiry,
                expiry_changed: None,
                modified: false,
                ended: false,
                owner_changed: None,
            },
        )
    }

    fn from_state(manager: Arc<SessionManager<Arc<dyn SessionStore>>>, state: State) -> Self {
        Self {
            manager,
            state: Arc::new(Mutex::new(state)),
            io: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// A serializable picture of this handle, for [`restore`](Self::restore).
    pub fn snapshot(&self) -> SessionSnapshot {
        SessionSnapshot {
            state: self.state.lock().clone(),
        }
    }

    /// A handle resumed from `snapshot` over `manager`: same id, data, expiry, loaded version,
    /// unsaved changes and read set. Its next save is a compare-and-swap on the snapshot's
    /// version, so a session changed meanwhile is reloaded and the snapshot's changes replayed on
    /// top (or `Conflict`, under the rules of the type's docs).
    pub fn restore(
        snapshot: SessionSnapshot,
        manager: Arc<SessionManager<Arc<dyn SessionStore>>>,
    ) -> Self {
        Self::from_state(manager, snapshot.state)
    }

    /// Loads the stored session if that has not happened yet.
    async fn ensure_loaded(&self) -> Result<()> {
        if self.state.lock().stored != Stored::Unknown {
            return Ok(());
        }
        let _io = self.io.lock().await;
        if self.state.lock().stored != Stored::Unknown {
            return Ok(());
        }
        self.load_locked().await
    }

    /// Reads the session from the store and applies the unsaved changes on top; `Conflict`
    /// (nothing changed in the handle) when a value the handle read is no longer the stored one.
    /// Call with `io` held.
    async fn load_locked(&self) -> Result<()> {
        let id = self.state.lock().id.clone();
        let Some(id) = id else {
            let mut state = self.state.lock();
            if state.stored != Stored::Gone {
                state.stored = Stored::Absent;
            }
            return Ok(());
        };
        let loaded = self.manager.load(&id).await?;
        let fresh = match &loaded {
            Some(loaded) => Some(decode_map(loaded.data())?),
            None => None,
        };
        let mut state = self.state.lock();
        if state.id.as_ref() != Some(&id) {
            // Rotated or flushed meanwhile by another clone of this handle: keep that.
            return Ok(());
        }
        match (loaded, fresh) {
            (Some(loaded), Some(mut data)) => {
                if let Some(key) = state.stale_read(&data) {
                    return Err(read_conflict(key));
                }
                apply(&mut data, &state.changes);
                state.data = data;
                state.base = Some(loaded.data.clone());
                state.stored = Stored::Present {
                    version: loaded.version(),
                    expires_at: loaded.expires_at(),
                    absolute_deadline: loaded.absolute_deadline(),
                };
            }
            _ if matches!(state.stored, Stored::Present { .. }) => {
                // It was there and is gone: ended elsewhere. Never written again.
                state.end(Stored::Gone);
            }
            _ => {
                // Unknown to the store: never adopt the client's id.
                state.id = None;
                state.stored = Stored::Absent;
                state.base = None;
                let mut data = Map::new();
                apply(&mut data, &state.changes);
                state.data = data;
            }
        }
        Ok(())
    }

    /// Inserts a value (anything `Serialize`, stored as JSON) under `key`: a blind write (see
    /// the type's docs), merged with concurrent saves.
    pub async fn insert(&self, key: &str, value: impl Serialize) -> Result<()> {
        let value = serde_json::to_value(value).map_err(encode_error)?;
        self.write(key, value, false).await.map(drop)
    }

    /// Inserts a JSON value under `key`. Returns the previous value if there was a different
    /// one; inserting the value already there returns `None` and leaves
    /// [`is_modified`](Self::is_modified) as it was (the value is still saved, so that it wins
    /// over a concurrent save). Since it hands out the previous value, it counts as a read of
    /// `key` (a read-then-write): use [`insert`](Self::insert) for a blind write.
    pub async fn insert_value(&self, key: &str, value: Value) -> Result<Option<Value>> {
        self.write(key, value, true).await
    }

    async fn write(&self, key: &str, value: Value, read: bool) -> Result<Option<Value>> {
        self.ensure_loaded().await?;
        let mut state = self.state.lock();
        if read {
            state.note_read(key);
        }
        let previous = state.data.insert(key.to_owned(), value.clone());
        let unchanged = previous.as_ref() == Some(&value);
        state.record(Change::Insert(key.to_owned(), value), !unchanged);
        Ok(if unchanged { None } else { previous })
    }

    /// The value under `key`, deserialized; `None` when absent. Adds `key` to the read set.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        self.get_value(key)
            .await?
            .map(|value| typed(key, value))
            .transpose()
    }

    /// The JSON value under `key`. Adds `key` to the read set.
    pub async fn get_value(&self, key: &str) -> Result<Option<Value>> {
        self.ensure_loaded().await?;
        let mut state = self.state.lock();
        state.note_read(key);
        Ok(state.data.get(key).cloned())
    }

    /// Removes `key`, returning its value deserialized: a remove-once (it conflicts with a
    /// concurrent save that changed or removed the value).
    pub async fn remove<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        self.remove_value(key)
            .await?
            .map(|value| typed(key, value))
            .transpose()
    }

    /// Removes `key`, returning its JSON value: a remove-once, as [`remove`](Self::remove).
    pub async fn remove_value(&self, key: &str) -> Result<Option<Value>> {
        self.ensure_loaded().await?;
        let mut state = self.state.lock();
        state.note_read(key);
        let removed = state.data.remove(key);
        if removed.is_some() {
            state.record(Change::Remove(key.to_owned()), true);
        }
        Ok(removed)
    }

    /// Removes every value from the handle (also values not loaded yet): a blind write. The
    /// session stays in the store until saved (then empty) or deleted.
    pub async fn clear(&self) {
        let mut state = self.state.lock();
        state.data.clear();
        state.record(Change::Clear, true);
    }

    /// Drops the unsaved changes (data and expiry) and the read set; the next access reloads
    /// the session. The way on after a [`ErrorKind::Conflict`] from [`save`](Self::save): redo
    /// the work on fresh data.
    pub fn discard(&self) {
        let mut state = self.state.lock();
        state.changes.clear();
        state.reads.clear();
        state.expiry_changed = None;
        state.data.clear();
        state.base = None;
        if state.id.is_some() && state.stored != Stored::Gone {
            state.stored = Stored::Unknown;
        }
    }

    /// `true` when the handle has no id and no data.
    pub async fn is_empty(&self) -> bool {
        let state = self.state.lock();
        state.id.is_none() && state.data.is_empty()
    }

    /// The session id, if the handle has one. Before the first load this is the id the handle
    /// was made with, which the store may not know.
    pub fn id(&self) -> Option<SessionId> {
        self.state.lock().id.clone()
    }

    /// The expiry set on this handle, if any.
    pub fn expiry(&self) -> Option<Expiry> {
        self.state.lock().expiry
    }

    /// Sets the expiry; saved with the next [`save`](Self::save).
    pub fn set_expiry(&self, expiry: Option<Expiry>) {
        let mut state = self.state.lock();
        state.expiry = expiry;
        let seq = state.next_seq();
        state.expiry_changed = Some(seq);
        state.modified = true;
    }

    /// The moment the session would expire if saved now.
    pub fn expiry_date(&self) -> OffsetDateTime {
        let state = self.state.lock();
        let now = OffsetDateTime::now_utc();
        let absolute = match state.stored {
            Stored::Present {
                absolute_deadline, ..
            } => absolute_deadline,
            _ => None,
        };
        match requested_expiry(state.expiry, now) {
            Some(at) => absolute.map_or(at, |deadline| at.min(deadline)),
            None => self.manager.policy().expires_at(now, absolute),
        }
    }

    /// Time left until [`expiry_date`](Self::expiry_date) (zero if past).
    pub fn expiry_age(&self) -> Duration {
        (self.expiry_date() - OffsetDateTime::now_utc()).max(Duration::ZERO)
    }

    /// `true` once the handle knows what the store holds (it loaded, or it has no id and so
    /// nothing to load): a web layer uses it to skip the save of requests that never used
    /// their session.
    pub fn is_loaded(&self) -> bool {
        self.state.lock().stored != Stored::Unknown
    }

    /// `true` once the data, the expiry or the id changed through this handle.
    pub fn is_modified(&self) -> bool {
        self.state.lock().modified
    }

    /// `true` when this handle ended its session itself ([`flush`](Self::flush) or
    /// [`delete`](Self::delete)), as opposed to finding it ended elsewhere: a web layer removes
    /// the cookie only then.
    pub fn ended_here(&self) -> bool {
        self.state.lock().ended
    }

    /// Reloads the session from the store, keeping unsaved changes on top.
    /// [`ErrorKind::Conflict`] (nothing changed in the handle) when a value the handle read has
    /// changed meanwhile, since its unsaved changes may depend on it.
    pub async fn load(&self) -> Result<()> {
        let _io = self.io.lock().await;
        self.load_locked().await
    }

    fn attempt(&self) -> Result<Attempt> {
        let state = self.state.lock();
        let owner = match &state.owner_changed {
            None => OwnerChange::Keep,
            Some((_, None)) => OwnerChange::Clear,
            Some((_, Some((owner, label)))) => {
                OwnerChange::Set(Ownership::new(Owner::new(owner)?, label)?)
            }
        };
        Ok(Attempt {
            id: state.id.clone(),
            stored: state.stored.clone(),
            data: state.data.clone(),
            base: state.base.clone(),
            dirty: state.dirty(),
            expiry: state.expiry,
            expiry_changed: state.expiry_changed.is_some(),
            options: WriteOptions::new().with_owner(owner),
            upto: state.seq,
        })
    }

    /// Reloads after a `Conflict` (at most [`DEFAULT_CONFLICT_RETRIES`] times): `NotFound` when
    /// the session is gone, `Conflict` when a read value changed.
    async fn reload_after_conflict(&self, attempts: &mut u32, id: &SessionId) -> Result<()> {
        *attempts += 1;
        if *attempts > DEFAULT_CONFLICT_RETRIES {
            return Err(kept_changing());
        }
        tracing::debug!(session = %id, attempts = *attempts, "write met a concurrent save; reloading");
        self.load_locked().await?;
        if self.state.lock().stored == Stored::Gone {
            return Err(not_found());
        }
        Ok(())
    }

    /// Writes the session if it changed: creates it (under a fresh id) if the store has none,
    /// otherwise a compare-and-swap update, replaying this handle's changes after a concurrent
    /// save when the rules of the type's docs allow. An unchanged session is not written; it is
    /// touched when its idle deadline needs to move. A session that does not exist and has no
    /// data is not created.
    ///
    /// [`ErrorKind::NotFound`] when the session was deleted, expired or rotated away meanwhile:
    /// nothing is written and the handle becomes empty (no id, no data) and stays so.
    /// [`ErrorKind::Conflict`] when a value the handle read was changed by a concurrent save:
    /// nothing is written and the handle keeps its changes.
    pub async fn save(&self) -> Result<()> {
        self.ensure_loaded().await?;
        let _io = self.io.lock().await;
        let mut attempts = 0;
        loop {
            let attempt = self.attempt()?;
            if attempt.stored == Stored::Gone {
                return Err(not_found());
            }
            let now = OffsetDateTime::now_utc();
            let requested = requested_expiry(attempt.expiry, now);
            let Some(mut session) = stored_session(attempt.id, attempt.stored, &attempt.data)?
            else {
                let owned = matches!(attempt.options.owner, OwnerChange::Set(_));
                if attempt.data.is_empty() && !owned {
                    return Ok(());
                }
                let bytes = encode_map(&attempt.data)?;
                let created = self
                    .manager
                    .create_with(bytes.into(), requested, &attempt.options)
                    .await?;
                self.committed(&created, attempt.upto);
                self.state.lock().modified = true;
                return Ok(());
            };
            let id = session.id().clone();
            if !attempt.dirty {
                return self
                    .touch_if_due(&mut session, requested, attempt.expiry)
                    .await
                    .inspect_err(|e| self.forget_if_gone(e, &id));
            }
            if !attempt.expiry_changed
                && attempt.options.owner == OwnerChange::Keep
                && attempt.base.as_ref() == Some(&session.data)
            {
                // Only values equal to the stored ones were written: if nobody saved since the
                // load, the store already holds them (one read instead of a write); otherwise
                // the changes are replayed on the fresh data and written.
                let loaded_version = session.version();
                self.load_locked().await?;
                let unchanged = {
                    let mut state = self.state.lock();
                    if state.stored == Stored::Gone {
                        return Err(not_found());
                    }
                    let unchanged = matches!(state.stored, Stored::Present { version, .. } if version == loaded_version);
                    if unchanged {
                        state.changes.retain(|(seq, _)| *seq >= attempt.upto);
                    }
                    unchanged
                };
                if !unchanged {
                    attempts += 1;
                    if attempts > DEFAULT_CONFLICT_RETRIES {
                        return Err(kept_changing());
                    }
                }
                continue;
            }
            match self
                .manager
                .save_with(&mut session, requested, &attempt.options)
                .await
            {
                Ok(()) => {
                    self.committed(&session, attempt.upto);
                    return Ok(());
                }
                Err(e) if e.kind() == ErrorKind::Conflict => {
                    self.reload_after_conflict(&mut attempts, &id).await?;
                }
                Err(e) => {
                    self.forget_if_gone(&e, &id);
                    return Err(e);
                }
            }
        }
    }

    /// Touches an unchanged session when its idle deadline would move by at least 5% of the
    /// idle timeout (or it has an explicit expiry that differs from the stored one).
    async fn touch_if_due(
        &self,
        session: &mut SessionState,
        requested: Option<OffsetDateTime>,
        expiry: Option<Expiry>,
    ) -> Result<()> {
        let idle = match expiry {
            Some(Expiry::OnInactivity(idle)) => Some(idle),
            Some(Expiry::AtDateTime(_)) => None,
            Some(Expiry::OnSessionEnd) | None => self.manager.policy().idle_timeout(),
        };
        let Some(idle) = idle else {
            return Ok(());
        };
        let target = self
            .manager
            .expiry_for(requested, session.absolute_deadline())?;
        let threshold = (idle / 20_i32).max(Duration::SECOND);
        if target - session.expires_at() < threshold {
            return Ok(());
        }
        self.manager.touch_to(session, target).await?;
        let mut state = self.state.lock();
        if let Stored::Present { expires_at, .. } = &mut state.stored {
            *expires_at = session.expires_at();
        }
        Ok(())
    }

    /// Records a successful write of `session` carrying the changes numbered below `upto`: its
    /// id and version are now the stored ones; changes made meanwhile (through a clone) stay to
    /// be saved.
    fn committed(&self, session: &SessionState, upto: u64) {
        let mut state = self.state.lock();
        state.id = Some(session.id().clone());
        state.stored = Stored::Present {
            version: session.version(),
            expires_at: session.expires_at(),
            absolute_deadline: session.absolute_deadline(),
        };
        state.base = Some(session.data.clone());
        state.changes.retain(|(seq, _)| *seq >= upto);
        if state.expiry_changed.is_some_and(|seq| seq < upto) {
            state.expiry_changed = None;
        }
        if state
            .owner_changed
            .as_ref()
            .is_some_and(|(seq, _)| *seq < upto)
        {
            state.owner_changed = None;
        }
    }

    /// After `NotFound` for `id`: the session is over; empty the handle for good.
    fn forget_if_gone(&self, error: &Error, id: &SessionId) {
        if error.kind() != ErrorKind::NotFound {
            return;
        }
        let mut state = self.state.lock();
        if state.id.as_ref() == Some(id) {
            state.end(Stored::Gone);
        }
    }

    /// Deletes the session from the store. The handle keeps its id until the next access finds
    /// the session gone; new data saved after that creates a new session under a fresh id.
    pub async fn delete(&self) -> Result<()> {
        let _io = self.io.lock().await;
        let id = self.state.lock().id.clone();
        let Some(id) = id else {
            return Ok(());
        };
        self.manager.destroy(&id).await?;
        let mut state = self.state.lock();
        state.stored = Stored::Unknown;
        state.data.clear();
        state.base = None;
        state.changes.clear();
        state.reads.clear();
        state.expiry_changed = None;
        state.owner_changed = None;
        state.ended = true;
        state.modified = true;
        Ok(())
    }

    /// Deletes the session from the store and empties the handle: no id, no data (logout).
    /// A later [`save`](Self::save) of this handle writes nothing unless new data is inserted,
    /// which then goes into a new session under a fresh id.
    pub async fn flush(&self) -> Result<()> {
        let _io = self.io.lock().await;
        let id = self.state.lock().id.clone();
        if let Some(id) = id {
            self.manager.destroy(&id).await?;
        }
        let mut state = self.state.lock();
        state.end(Stored::Absent);
        state.modified = true;
        state.ended = true;
        Ok(())
    }

    /// Makes `ownership` the session's owner (`None`: no owner), written by the next
    /// [`save`](Self::save) or [`cycle_id`](Self::cycle_id) in the same atomic step as the
    /// data. At login, call it with [`cycle_id`](Self::cycle_id): the new id and the owner are
    /// one store write. A new session with an owner is created by the next save even without
    /// data. The store needs an owner index ([`Capabilities::owner_index`]); the save is
    /// [`ErrorKind::Unsupported`] otherwise and writes nothing.
    ///
    /// [`Capabilities::owner_index`]: session_core::Capabilities::owner_index
    pub fn set_owner(&self, ownership: Option<&Ownership>) {
        let mut state = self.state.lock();
        let seq = state.next_seq();
        let repr = ownership.map(|o| (o.owner().as_str().to_owned(), o.label().to_owned()));
        state.owner_changed = Some((seq, repr));
        state.modified = true;
    }

    /// The live sessions of `owner` (see [`SessionManager::sessions_of`]). Whether one of them
    /// is this session: compare its key with [`SessionId::key`] of [`id`](Self::id).
    pub async fn sessions_of(&self, owner: &Owner) -> Result<Vec<OwnedSession>> {
        self.manager.sessions_of(owner).await
    }

    /// Deletes every other session of `owner` ("log out my other devices"), keeping this one,
    /// and returns how many were deleted.
    pub async fn revoke_other_sessions(&self, owner: &Owner) -> Result<u64> {
        let id = self.state.lock().id.clone();
        self.manager.revoke_owner(owner, id.as_ref()).await
    }

    /// Gives the session a fresh id, keeping its data and absolute deadline (call it on login).
    ///
    /// If the session exists in the store, this is one atomic rotation that also saves the
    /// handle's changes (replayed after a concurrent save under the same rules as
    /// [`save`](Self::save)): the old id is dead at once. Of many concurrent rotations of one
    /// session exactly one succeeds; the others get [`ErrorKind::NotFound`]. If the session does
    /// not exist yet, the handle simply drops its id and the next save creates the session under
    /// a fresh one.
    pub async fn cycle_id(&self) -> Result<()> {
        self.ensure_loaded().await?;
        let _io = self.io.lock().await;
        let mut attempts = 0;
        loop {
            let attempt = {
                self.state.lock().modified = true;
                self.attempt()?
            };
            if attempt.stored == Stored::Gone {
                return Err(not_found());
            }
            let Some(mut session) = stored_session(attempt.id, attempt.stored, &attempt.data)?
            else {
                self.state.lock().id = None;
                return Ok(());
            };
            let id = session.id().clone();
            let requested = requested_expiry(attempt.expiry, OffsetDateTime::now_utc());
            match self
                .manager
                .cycle_id_with(&mut session, requested, &attempt.options)
                .await
            {
                Ok(()) => {
                    self.committed(&session, attempt.upto);
                    return Ok(());
                }
                Err(e) if e.kind() == ErrorKind::Conflict => {
                    self.reload_after_conflict(&mut attempts, &id).await?;
                }
                Err(e) => {
                    self.forget_if_gone(&e, &id);
                    return Err(e);
                }
            }
        }
    }
}

/// The stored session the handle would write over (id, loaded version and deadlines, `data`
/// encoded), or `None` when the store has none.
fn stored_session(
    id: Option<SessionId>,
    stored: Stored,
    data: &Map<String, Value>,
) -> Result<Option<SessionState>> {
    let (
        Some(id),
        Stored::Present {
            version,
            expires_at,
            absolute_deadline,
        },
    ) = (id, stored)
    else {
        return Ok(None);
    };
    Ok(Some(SessionState {
        id,
        data: encode_map(data)?.into(),
        version,
        expires_at,
        absolute_deadline,
    }))
}

fn typed<T: DeserializeOwned>(key: &str, value: Value) -> Result<T> {
    serde_json::from_value(value).map_err(|e| {
        Error::with_source(
            ErrorKind::Decode,
            format!("session value {key:?} has another type"),
            e,
        )
    })
}

fn requested_expiry(expiry: Option<Expiry>, now: OffsetDateTime) -> Option<OffsetDateTime> {
    match expiry {
        Some(Expiry::OnInactivity(idle)) => Some(now.saturating_add(idle)),
        Some(Expiry::AtDateTime(at)) => Some(at),
        Some(Expiry::OnSessionEnd) | None => None,
    }
}

fn encode_map(data: &Map<String, Value>) -> Result<Vec<u8>> {
    serde_json::to_vec(data).map_err(encode_error)
}

fn decode_map(bytes: &[u8]) -> Result<Map<String, Value>> {
    if bytes.is_empty() {
        return Ok(Map::new());
    }
    serde_json::from_slice(bytes).map_err(|e| {
        Error::with_source(
            ErrorKind::Decode,
            "stored session data is not a JSON object",
            e,
        )
    })
}

/// With the `axum` feature, a handler takes a `Session` argument; the session layer
/// (`session_axum::SessionLayer`) must have put one in the request.
#[cfg(feature = "axum")]
impl<S: Send + Sync> axum_core::extract::FromRequestParts<S> for Session {
    type Rejection = (http::StatusCode, &'static str);

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> std::result::Result<Self, Self::Rejection> {
        parts.extensions.get::<Session>().cloned().ok_or((
            http::StatusCode::INTERNAL_SERVER_ERROR,
            "no session in this request: add session_axum::SessionLayer to the router (around this route)",
        ))
    }
}
