#![doc = include_str!("../README.md")]

use session_manager::SessionStoreExt as _;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

use actix_session::storage::{LoadError, SaveError, SessionKey, UpdateError};
use serde_json::value::RawValue;
use session_manager::time::{Duration, OffsetDateTime};
use session_manager::{Bytes, CreateOutcome, SessionId, SessionStore, UpdateOutcome};
use session_manager::{LoadVersions, envelope};

/// The state entry that carries the version a request loaded and a random tag of that load
/// between `load` and `update`; removed before anything is stored.
pub const VERSION_ENTRY: &str = "\u{0}session-store";

/// Fresh ids `save` tries before giving up.
const CREATE_ATTEMPTS: usize = 3;

type State = HashMap<String, String>;

/// Any [`SessionStore`] of this workspace as an `actix_session::storage::SessionStore`.
///
/// The cookie value is a [`SessionId`] (43 characters, 256 random bits); the store keeps only
/// its SHA-256 key. `save` is collision-safe, `update` a compare-and-swap on the version the
/// request loaded (a concurrent update by another request is refused, nothing written), an
/// `update` of a session that no longer exists writes nothing (no resurrection), `update_ttl`
/// is the contract's `touch`.
pub struct ActixStore<S> {
    store: S,
    loads: LoadVersions,
    max_data_size: usize,
}

impl<S> fmt::Debug for ActixStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActixStore").finish_non_exhaustive()
    }
}

impl<S: Clone> Clone for ActixStore<S> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            loads: self.loads.clone(),
            max_data_size: self.max_data_size,
        }
    }
}

fn other(error: impl Into<anyhow::Error>) -> anyhow::Error {
    error.into()
}

fn expiry(ttl: &Duration) -> OffsetDateTime {
    OffsetDateTime::now_utc().saturating_add(*ttl)
}

/// The stored bytes of `state`: the `Session` handle's envelope around a JSON map whose values
/// are the JSON text actix-session serialised, as written (a value that is not JSON is kept as a
/// string); `TooLarge` above `limit` bytes of JSON. The text is embedded, not parsed into
/// numbers: an integer beyond 64 bits (`u128::MAX`, 2^100) comes back exactly.
fn encode(state: &State, limit: usize) -> session_manager::Result<Bytes> {
    let map: BTreeMap<&str, Box<RawValue>> = state
        .iter()
        .filter(|(k, _)| k.as_str() != VERSION_ENTRY)
        .map(|(k, v)| {
            let value = RawValue::from_string(v.clone()).unwrap_or_else(|_| {
                serde_json::value::to_raw_value(v).expect("a string serialises")
            });
            (k.as_str(), value)
        })
        .collect();
    let json = serde_json::to_vec(&map).expect("a JSON map serialises");
    envelope::check_size(&json, limit)?;
    Ok(Bytes::from(envelope::encode(None, &json)))
}

fn decode(stored: Bytes) -> anyhow::Result<State> {
    let (_, json) = envelope::decode(stored)?;
    let map: BTreeMap<String, Box<RawValue>> = serde_json::from_slice(&json)?;
    Ok(map
        .into_iter()
        .map(|(k, v)| (k, v.get().to_owned()))
        .collect())
}

fn parse(key: &SessionKey) -> Option<SessionId> {
    SessionId::parse(key.as_ref()).ok()
}

impl<S: SessionStore> ActixStore<S> {
    /// Wraps `store`.
    pub fn new(store: S) -> Self {
        Self {
            store,
            loads: LoadVersions::default(),
            max_data_size: session_manager::DEFAULT_MAX_DATA_SIZE,
        }
    }

    /// Sets the largest session (its stored JSON, in bytes) a save or update writes; larger
    /// ones fail (the error's source is a `TooLarge` session error) and write nothing. Default
    /// [`DEFAULT_MAX_DATA_SIZE`](session_manager::DEFAULT_MAX_DATA_SIZE), as for the `Session`
    /// handle.
    #[must_use]
    pub fn with_max_data_size(mut self, bytes: usize) -> Self {
        self.max_data_size = bytes;
        self
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.store
    }

    /// The version an update of `state` compares against, and its load's tag.
    fn expected(&self, state: &State) -> Option<(u64, u64)> {
        let (version, tag) = state.get(VERSION_ENTRY)?.split_once(':')?;
        let (version, tag) = (version.parse::<u64>().ok()?, tag.parse::<u64>().ok()?);
        Some((self.loads.expected(tag, version), tag))
    }
}

impl<S: SessionStore> actix_session::storage::SessionStore for ActixStore<S> {
    async fn load(&self, session_key: &SessionKey) -> Result<Option<State>, LoadError> {
        // A cookie that is not one of our ids names no session (and never reaches the store).
        let Some(id) = parse(session_key) else {
            return Ok(None);
        };
        let Some(stored) = self
            .store
            .read(&id.key())
            .await
            .map_err(|e| LoadError::Other(other(e)))?
        else {
            return Ok(None);
        };
        let mut state = decode(stored.data).map_err(LoadError::Deserialization)?;
        state.insert(
            VERSION_ENTRY.to_owned(),
            format!("{}:{}", stored.version, LoadVersions::fresh_tag()),
        );
        Ok(Some(state))
    }

    async fn save(&self, session_state: State, ttl: &Duration) -> Result<SessionKey, SaveError> {
        let data =
            encode(&session_state, self.max_data_size).map_err(|e| SaveError::Other(other(e)))?;
        for _ in 0..CREATE_ATTEMPTS {
            let id = SessionId::generate();
            match self
                .store
                .create(&id.key(), expiry(ttl), data.clone())
                .await
                .map_err(|e| SaveError::Other(other(e)))?
            {
                CreateOutcome::Created => {
                    return SessionKey::try_from(id.expose())
                        .map_err(|e| SaveError::Other(other(e)));
                }
                CreateOutcome::IdTaken => tracing::warn!("generated session id was taken"),
            }
        }
        Err(SaveError::Other(anyhow::anyhow!(
            "{CREATE_ATTEMPTS} fresh session ids were all taken"
        )))
    }

    async fn update(
        &self,
        session_key: SessionKey,
        session_state: State,
        ttl: &Duration,
    ) -> Result<SessionKey, UpdateError> {
        let Some(id) = parse(&session_key) else {
            // Never one of ours: nothing to update, nothing is created.
            return Ok(session_key);
        };
        let key = id.key();
        let data =
            encode(&session_state, self.max_data_size).map_err(|e| UpdateError::Other(other(e)))?;
        let (expected, tag) = match self.expected(&session_state) {
            Some(found) => found,
            None => match self
                .store
                .read(&key)
                .await
                .map_err(|e| UpdateError::Other(other(e)))?
            {
                Some(current) => (current.version, LoadVersions::fresh_tag()),
                None => return Ok(session_key),
            },
        };
        match self
            .store
            .update(&key, &key, expected, expiry(ttl), data)
            .await
            .map_err(|e| UpdateError::Other(other(e)))?
        {
            UpdateOutcome::Updated { version } => {
                self.loads.remember(tag, version);
                Ok(session_key)
            }
            UpdateOutcome::NotFound => {
                // Logged out, expired or renewed away while this request ran: writing it back
                // would resurrect it.
                tracing::debug!("update of a session that no longer exists dropped");
                Ok(session_key)
            }
            UpdateOutcome::Conflict | UpdateOutcome::IdTaken => {
                Err(UpdateError::Other(anyhow::anyhow!(
                    "the session was updated by a concurrent request; nothing was written"
                )))
            }
        }
    }

    async fn update_ttl(&self, session_key: &SessionKey, ttl: &Duration) -> anyhow::Result<()> {
        if let Some(id) = parse(session_key) {
            self.store.touch(&id.key(), expiry(ttl)).await?;
        }
        Ok(())
    }

    async fn delete(&self, session_key: &SessionKey) -> anyhow::Result<()> {
        if let Some(id) = parse(session_key) {
            self.store.delete(&id.key()).await?;
        }
        Ok(())
    }
}
