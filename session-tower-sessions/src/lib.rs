#![doc = include_str!("../README.md")]

use session_manager::SessionStoreExt as _;
use std::collections::HashMap;
use std::fmt;

use serde_json::Value;
use session_manager::{Bytes, CreateOutcome, ErrorKind, SessionKey, SessionStore, UpdateOutcome};
use session_manager::{LoadVersions, envelope};
use sha2::{Digest, Sha256};

/// The data entry that carries what the adapter needs between a load and the saves of the same
/// request (the version loaded and a random load tag). Removed before the data is stored, so
/// the stored JSON is exactly the application's map.
pub const VERSION_ENTRY: &str = "\u{0}session-store";

/// The store key of a tower-sessions id (its `i128`): `SHA-256("tower-sessions:" ‖ id bytes)`,
/// so the store never holds the cookie's value.
pub fn key_of(id: i128) -> SessionKey {
    let mut hasher = Sha256::new();
    hasher.update(b"tower-sessions:");
    hasher.update(id.to_le_bytes());
    SessionKey::from_bytes(&hasher.finalize()).expect("32 bytes")
}

/// Fresh ids `create` tries before giving up.
const CREATE_ATTEMPTS: usize = 3;

/// Any [`SessionStore`] of this workspace as a tower-sessions store (`tower_sessions_core`'s
/// `SessionStore` of version 0.15 with feature `core-0-15`, of 0.14 with `core-0-14`).
///
/// - `create` never overwrites: on a taken id it picks a fresh random id (up to 3 tries).
/// - `save` is a compare-and-swap on the version the request loaded: a concurrent save by
///   another request makes it fail (`Backend` error, nothing written) instead of losing that
///   request's changes; a session that is gone (deleted, expired, rotated away) is never written
///   back: the save is dropped and reported as done.
/// - `load` and `delete` map one to one. Data is stored as the `Session` handle of
///   `session-manager` stores it (its envelope around the JSON map).
pub struct TowerStore<S> {
    store: S,
    /// Load tag → the latest version a save under that load wrote (a request saving twice).
    loads: LoadVersions,
    max_data_size: usize,
}

impl<S> fmt::Debug for TowerStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TowerStore").finish_non_exhaustive()
    }
}

impl<S: Clone> Clone for TowerStore<S> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            loads: self.loads.clone(),
            max_data_size: self.max_data_size,
        }
    }
}

impl<S: SessionStore> TowerStore<S> {
    /// Wraps `store`.
    pub fn new(store: S) -> Self {
        Self {
            store,
            loads: LoadVersions::default(),
            max_data_size: session_manager::DEFAULT_MAX_DATA_SIZE,
        }
    }

    /// Sets the largest session (its stored JSON, in bytes) a save or create writes; larger
    /// ones fail with [`ErrorKind::TooLarge`] and write nothing. Default
    /// [`DEFAULT_MAX_DATA_SIZE`](session_manager::DEFAULT_MAX_DATA_SIZE), as for the
    /// `Session` handle.
    #[must_use]
    pub fn with_max_data_size(mut self, bytes: usize) -> Self {
        self.max_data_size = bytes;
        self
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.store
    }

    /// What a save of data `data` compares against: the version its load saw (or the latest
    /// one a save under the same load wrote), and the load's tag.
    fn expected(&self, data: &HashMap<String, Value>) -> Option<(u64, u64)> {
        let entry = data.get(VERSION_ENTRY)?;
        let version = entry.get("v")?.as_u64()?;
        let tag = entry.get("t")?.as_u64()?;
        Some((self.loads.expected(tag, version), tag))
    }
}

/// The stored bytes of `data`: the `Session` handle's envelope around its JSON map, without
/// the adapter's own entry; `TooLarge` above `limit` bytes of JSON.
fn encode(data: &HashMap<String, Value>, limit: usize) -> session_manager::Result<Bytes> {
    let data: serde_json::Map<String, Value> = data
        .iter()
        .filter(|(k, _)| k.as_str() != VERSION_ENTRY)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let json = serde_json::to_vec(&data).map_err(|e| {
        session_manager::Error::with_source(ErrorKind::Encode, "encoding the session", e)
    })?;
    envelope::check_size(&json, limit)?;
    Ok(Bytes::from(envelope::encode(None, &json)))
}

/// The application's map of a stored record.
fn decode(stored: Bytes) -> session_manager::Result<HashMap<String, Value>> {
    let (_, json) = envelope::decode(stored)?;
    serde_json::from_slice(&json).map_err(|e| {
        session_manager::Error::with_source(
            ErrorKind::Decode,
            "tower-sessions adapter: stored data is not a JSON map",
            e,
        )
    })
}

fn tag_entry(version: u64, tag: u64) -> Value {
    serde_json::json!({ "v": version, "t": tag })
}

/// What a save does once the expected version is known.
enum Saved {
    Done,
    Conflict,
}

impl<S: SessionStore> TowerStore<S> {
    /// `create` of the contract for a tower-sessions record: the id actually used (a fresh one
    /// replaces a taken one), or `None` when every try was taken.
    async fn create_record(
        &self,
        id: &mut i128,
        fresh: impl Fn() -> i128,
        expiry: session_manager::time::OffsetDateTime,
        data: &mut HashMap<String, Value>,
    ) -> session_manager::Result<bool> {
        let bytes = encode(data, self.max_data_size)?;
        for attempt in 0..CREATE_ATTEMPTS {
            if attempt > 0 {
                *id = fresh();
            }
            match self
                .store
                .create(&key_of(*id), expiry, bytes.clone())
                .await?
            {
                CreateOutcome::Created => {
                    data.insert(
                        VERSION_ENTRY.to_owned(),
                        tag_entry(1, LoadVersions::fresh_tag()),
                    );
                    return Ok(true);
                }
                CreateOutcome::IdTaken => {
                    tracing::warn!("tower-sessions id was taken; trying a fresh one")
                }
            }
        }
        Ok(false)
    }

    async fn save_record(
        &self,
        id: i128,
        expiry: session_manager::time::OffsetDateTime,
        data: &HashMap<String, Value>,
    ) -> session_manager::Result<Saved> {
        let key = key_of(id);
        let (expected, tag) = match self.expected(data) {
            Some(found) => found,
            // Data that lost the adapter's entry (the application cleared the map): compare
            // against what is stored now; a session that is gone stays gone.
            None => match self.store.read(&key).await? {
                Some(current) => (current.version, LoadVersions::fresh_tag()),
                None => return Ok(Saved::Done),
            },
        };
        let bytes = encode(data, self.max_data_size)?;
        match self
            .store
            .update(&key, &key, expected, expiry, bytes)
            .await?
        {
            UpdateOutcome::Updated { version } => {
                self.loads.remember(tag, version);
                Ok(Saved::Done)
            }
            UpdateOutcome::NotFound => {
                // Deleted, expired or rotated away while this request ran: writing it back
                // would resurrect it. The write is dropped.
                tracing::debug!("save of a session that no longer exists dropped");
                Ok(Saved::Done)
            }
            UpdateOutcome::Conflict | UpdateOutcome::IdTaken => Ok(Saved::Conflict),
        }
    }

    async fn load_record(
        &self,
        id: i128,
    ) -> session_manager::Result<
        Option<(
            HashMap<String, Value>,
            session_manager::time::OffsetDateTime,
        )>,
    > {
        let Some(stored) = self.store.read(&key_of(id)).await? else {
            return Ok(None);
        };
        let mut data = decode(stored.data)?;
        data.insert(
            VERSION_ENTRY.to_owned(),
            tag_entry(stored.version, LoadVersions::fresh_tag()),
        );
        Ok(Some((data, stored.expires_at)))
    }
}

/// Implements `$core::SessionStore` (and `ExpiredDeletion`) for [`TowerStore`].
macro_rules! tower_sessions_core_impl {
    ($core:ident) => {
        const _: () = {
            use $core::session::{Id, Record};
            use $core::session_store::{Error as TowerError, Result as TowerResult};

            fn tower_error(error: session_manager::Error) -> TowerError {
                match error.kind() {
                    ErrorKind::Decode => TowerError::Decode(error.to_string()),
                    _ => TowerError::Backend(error.to_string()),
                }
            }

            #[async_trait::async_trait]
            impl<S: SessionStore> $core::SessionStore for TowerStore<S> {
                async fn create(&self, record: &mut Record) -> TowerResult<()> {
                    let mut id = record.id.0;
                    let created = self
                        .create_record(&mut id, || Id::default().0, record.expiry_date, &mut record.data)
                        .await
                        .map_err(tower_error)?;
                    record.id = Id(id);
                    if created {
                        Ok(())
                    } else {
                        Err(TowerError::Backend(format!(
                            "{CREATE_ATTEMPTS} fresh session ids were all taken"
                        )))
                    }
                }

                async fn save(&self, record: &Record) -> TowerResult<()> {
                    match self
                        .save_record(record.id.0, record.expiry_date, &record.data)
                        .await
                        .map_err(tower_error)?
                    {
                        Saved::Done => Ok(()),
                        Saved::Conflict => Err(TowerError::Backend(
                            "the session was saved by a concurrent request; nothing was written (reload and retry)"
                                .to_owned(),
                        )),
                    }
                }

                async fn load(&self, session_id: &Id) -> TowerResult<Option<Record>> {
                    Ok(self
                        .load_record(session_id.0)
                        .await
                        .map_err(tower_error)?
                        .map(|(data, expiry_date)| Record {
                            id: *session_id,
                            data,
                            expiry_date,
                        }))
                }

                async fn delete(&self, session_id: &Id) -> TowerResult<()> {
                    self.store
                        .delete(&key_of(session_id.0))
                        .await
                        .map_err(tower_error)
                }
            }

            /// `delete_expired` of the wrapped store, for tower-sessions' expired-deletion task.
            #[async_trait::async_trait]
            impl<S: SessionStore> $core::ExpiredDeletion for TowerStore<S> {
                async fn delete_expired(&self) -> TowerResult<()> {
                    self.store.delete_expired().await.map_err(tower_error)?;
                    Ok(())
                }
            }
        };
    };
}

#[cfg(feature = "core-0-15")]
tower_sessions_core_impl!(tsc15);
#[cfg(feature = "core-0-14")]
tower_sessions_core_impl!(tsc14);
