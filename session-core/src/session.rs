//! [`Session`]: the key-value handle an application uses during one request.

use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::{Duration, OffsetDateTime};

use crate::error::{Error, ErrorKind, Result};
use crate::id::SessionId;
use crate::manager::{SessionManager, SessionState};
use crate::store::SessionStore;

/// How many times [`Session::save`] reloads and replays its changes after a `Conflict` before
/// giving up with [`ErrorKind::Conflict`]. Every round of concurrent saves lets at least one
/// through, so 32 concurrent requests on one session all get their changes in.
pub const DEFAULT_CONFLICT_RETRIES: u32 = 32;

/// When a session expires, as the application chooses per session (seed: tower-sessions'
/// `Expiry`).
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
    /// The store has no live session under the handle's id (or the handle has no id).
    Absent,
    /// The store had this version, with this expiry and absolute deadline.
    Present {
        version: u64,
        expires_at: OffsetDateTime,
        absolute_deadline: Option<OffsetDateTime>,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    id: Option<SessionId>,
    stored: Stored,
    /// The data as the application sees it: the stored data with `changes` applied.
    data: Map<String, Value>,
    /// Changes not yet saved, in order.
    changes: Vec<Change>,
    expiry: Option<Expiry>,
    /// `set_expiry` was called since the last save.
    expiry_changed: bool,
    /// Changed during this handle's life (data, expiry or id): what `is_modified` reports.
    modified: bool,
}

impl State {
    fn dirty(&self) -> bool {
        !self.changes.is_empty() || self.expiry_changed
    }

    fn record(&mut self, change: Change) {
        if change == Change::Clear {
            self.changes.clear();
        }
        self.changes.push(change);
        self.modified = true;
    }
}

fn apply(data: &mut Map<String, Value>, changes: &[Change]) {
    for change in changes {
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

/// A session as a map of string keys to JSON values, over any [`SessionStore`] (seed 001:
/// tower-sessions' `Session` API). Cheap to clone: clones share one state.
///
/// - **Lazy**: [`new`](Self::new) makes no store call; the first read or write loads the session.
/// - **No fixation**: an id the store does not know is dropped when loading; if data is then
///   saved, the session is created under a fresh id from the generator.
/// - **Conflict replay**: the handle records each `insert`, `remove` and `clear`. When
///   [`save`](Self::save) meets a concurrent save (`Conflict`), it reloads the session, replays
///   its own changes onto the fresh data in the order they were made, and tries again (up to
///   [`DEFAULT_CONFLICT_RETRIES`] times). Two requests changing *different* keys therefore both
///   keep their writes. When both change the *same* key, the save that reaches the store last
///   wins, because its replay runs on top of the other's stored result: "last save wins", per key.
/// - **No resurrection**: a save after the session was deleted or rotated away elsewhere is
///   [`ErrorKind::NotFound`]; the old id is never written again.
/// - Unchanged sessions are not written; they are only touched when their idle deadline would
///   move by at least 5% of the idle timeout (at most 20 touches per idle period).
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

/// A serializable picture of a [`Session`] handle (id, expiry, data, version, unsaved changes),
/// to resume it later (seed 000). It holds the session token: keep it as secret as the cookie.
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
                changes: Vec::new(),
                expiry,
                expiry_changed: false,
                modified: false,
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

    /// A handle resumed from `snapshot` over `manager`: same id, data, expiry, loaded version
    /// and unsaved changes. Its next save is a compare-and-swap on the snapshot's version, so a
    /// session changed meanwhile is reloaded and the snapshot's changes replayed on top.
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

    /// Reads the session from the store and applies the unsaved changes on top. Call with
    /// `io` held.
    async fn load_locked(&self) -> Result<()> {
        let id = self.state.lock().id.clone();
        let Some(id) = id else {
            self.state.lock().stored = Stored::Absent;
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
                apply(&mut data, &state.changes);
                state.data = data;
                state.stored = Stored::Present {
                    version: loaded.version(),
                    expires_at: loaded.expires_at(),
                    absolute_deadline: loaded.absolute_deadline(),
                };
            }
            _ => {
                // Unknown to the store: never adopt the client's id.
                state.id = None;
                state.stored = Stored::Absent;
                let mut data = Map::new();
                apply(&mut data, &state.changes);
                state.data = data;
            }
        }
        Ok(())
    }

    /// Inserts a value (anything `Serialize`, stored as JSON) under `key`.
    pub async fn insert(&self, key: &str, value: impl Serialize) -> Result<()> {
        let value = serde_json::to_value(value).map_err(encode_error)?;
        self.insert_value(key, value).await.map(drop)
    }

    /// Inserts a JSON value under `key`. Returns the previous value if there was a different
    /// one; inserting the value already there returns `None` and changes nothing.
    pub async fn insert_value(&self, key: &str, value: Value) -> Result<Option<Value>> {
        self.ensure_loaded().await?;
        let mut state = self.state.lock();
        if state.data.get(key) == Some(&value) {
            return Ok(None);
        }
        let previous = state.data.insert(key.to_owned(), value.clone());
        state.record(Change::Insert(key.to_owned(), value));
        Ok(previous)
    }

    /// The value under `key`, deserialized; `None` when absent.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        self.get_value(key)
            .await?
            .map(|value| typed(key, value))
            .transpose()
    }

    /// The JSON value under `key`.
    pub async fn get_value(&self, key: &str) -> Result<Option<Value>> {
        self.ensure_loaded().await?;
        Ok(self.state.lock().data.get(key).cloned())
    }

    /// Removes `key`, returning its value deserialized.
    pub async fn remove<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        self.remove_value(key)
            .await?
            .map(|value| typed(key, value))
            .transpose()
    }

    /// Removes `key`, returning its JSON value.
    pub async fn remove_value(&self, key: &str) -> Result<Option<Value>> {
        self.ensure_loaded().await?;
        let mut state = self.state.lock();
        let removed = state.data.remove(key);
        if removed.is_some() {
            state.record(Change::Remove(key.to_owned()));
        }
        Ok(removed)
    }

    /// Removes every value from the handle (also values not loaded yet). The session stays in the
    /// store until saved (then empty) or deleted.
    pub async fn clear(&self) {
        let mut state = self.state.lock();
        state.data.clear();
        state.record(Change::Clear);
    }

    /// `true` when the handle has no id and no data (seed 001's table of cases).
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
        state.expiry_changed = true;
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

    /// Reloads the session from the store, keeping unsaved changes on top.
    pub async fn load(&self) -> Result<()> {
        let _io = self.io.lock().await;
        self.load_locked().await
    }

    /// Writes the session if it changed: creates it (under a fresh id) if the store has none,
    /// otherwise a compare-and-swap update, replaying this handle's changes after a concurrent
    /// save (see the type's docs). An unchanged session is not written; it is touched when its
    /// idle deadline needs to move. A session that does not exist and has no data is not
    /// created.
    ///
    /// [`ErrorKind::NotFound`] when the session was deleted, expired or rotated away meanwhile:
    /// nothing is written and the handle becomes empty (no id, no data).
    pub async fn save(&self) -> Result<()> {
        self.ensure_loaded().await?;
        let _io = self.io.lock().await;
        let mut attempts = 0;
        loop {
            let (id, stored, data, dirty, expiry) = {
                let state = self.state.lock();
                (
                    state.id.clone(),
                    state.stored.clone(),
                    state.data.clone(),
                    state.dirty(),
                    state.expiry,
                )
            };
            let now = OffsetDateTime::now_utc();
            let requested = requested_expiry(expiry, now);
            let Some(mut session) = stored_session(id, stored, &data)? else {
                if data.is_empty() {
                    return Ok(());
                }
                let bytes = encode_map(&data)?;
                let created = self.manager.create_with(bytes.into(), requested).await?;
                self.committed(&created);
                self.state.lock().modified = true;
                return Ok(());
            };
            let id = session.id().clone();
            if !dirty {
                return self
                    .touch_if_due(&mut session, requested, expiry)
                    .await
                    .inspect_err(|e| self.forget_if_gone(e, &id));
            }
            match self.manager.save_with(&mut session, requested).await {
                Ok(()) => {
                    self.committed(&session);
                    return Ok(());
                }
                Err(e) if e.kind() == ErrorKind::Conflict => {
                    attempts += 1;
                    if attempts > DEFAULT_CONFLICT_RETRIES {
                        return Err(Error::new(
                            ErrorKind::Conflict,
                            format!(
                                "the session kept changing: {DEFAULT_CONFLICT_RETRIES} reloads and replays all met a newer save"
                            ),
                        ));
                    }
                    tracing::debug!(session = %id, attempts, "save met a concurrent save; reloading and replaying");
                    self.load_locked().await?;
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

    /// Records a successful write of `session`: its id and version are now the stored ones and
    /// nothing is left to save.
    fn committed(&self, session: &SessionState) {
        let mut state = self.state.lock();
        state.id = Some(session.id().clone());
        state.stored = Stored::Present {
            version: session.version(),
            expires_at: session.expires_at(),
            absolute_deadline: session.absolute_deadline(),
        };
        state.changes.clear();
        state.expiry_changed = false;
    }

    /// After `NotFound` for `id`: the session is over; empty the handle.
    fn forget_if_gone(&self, error: &Error, id: &SessionId) {
        if error.kind() != ErrorKind::NotFound {
            return;
        }
        let mut state = self.state.lock();
        if state.id.as_ref() == Some(id) {
            state.id = None;
            state.stored = Stored::Absent;
            state.data.clear();
            state.changes.clear();
            state.expiry_changed = false;
        }
    }

    /// Deletes the session from the store. The handle keeps its id until the next access finds
    /// the session gone (seed 001).
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
        state.changes.clear();
        state.expiry_changed = false;
        Ok(())
    }

    /// Deletes the session from the store and empties the handle: no id, no data (logout).
    /// A later [`save`](Self::save) of this handle writes nothing unless new data is inserted.
    pub async fn flush(&self) -> Result<()> {
        let _io = self.io.lock().await;
        let id = self.state.lock().id.clone();
        if let Some(id) = id {
            self.manager.destroy(&id).await?;
        }
        let mut state = self.state.lock();
        state.id = None;
        state.stored = Stored::Absent;
        state.data.clear();
        state.changes.clear();
        state.expiry_changed = false;
        state.modified = true;
        Ok(())
    }

    /// Gives the session a fresh id, keeping its data and absolute deadline (call it on login).
    ///
    /// If the session exists in the store, this is one atomic rotation that also saves the
    /// handle's changes (replayed after a concurrent save, as in [`save`](Self::save)): the old
    /// id is dead at once. Of many concurrent rotations of one session exactly one succeeds; the
    /// others get [`ErrorKind::NotFound`]. If the session does not exist yet, the handle simply
    /// drops its id and the next save creates the session under a fresh one.
    pub async fn cycle_id(&self) -> Result<()> {
        self.ensure_loaded().await?;
        let _io = self.io.lock().await;
        let mut attempts = 0;
        loop {
            let (id, stored, data, expiry) = {
                let mut state = self.state.lock();
                state.modified = true;
                (
                    state.id.clone(),
                    state.stored.clone(),
                    state.data.clone(),
                    state.expiry,
                )
            };
            let Some(mut session) = stored_session(id, stored, &data)? else {
                self.state.lock().id = None;
                return Ok(());
            };
            let id = session.id().clone();
            let requested = requested_expiry(expiry, OffsetDateTime::now_utc());
            match self.manager.cycle_id_with(&mut session, requested).await {
                Ok(()) => {
                    self.committed(&session);
                    return Ok(());
                }
                Err(e) if e.kind() == ErrorKind::Conflict => {
                    attempts += 1;
                    if attempts > DEFAULT_CONFLICT_RETRIES {
                        return Err(e);
                    }
                    self.load_locked().await?;
                    if self.state.lock().id.is_none() {
                        return Err(not_found());
                    }
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
