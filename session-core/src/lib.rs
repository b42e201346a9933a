#![doc = include_str!("../README.md")]

mod cleanup;
mod config;
mod error;
mod events;
mod id;
mod manager;
mod session;
mod store;
mod tiered;

pub use cleanup::{CleanupHandle, spawn_cleanup};
pub use config::{is_secret_parameter, redact_url, serde_millis, validate_identifier};
pub use error::{Error, ErrorKind, Result};
pub use events::{DEFAULT_EVENT_CAPACITY, Observed, SessionEvent};
pub use id::{ID_BYTES, ID_LEN, SessionId, SessionKey};
pub use manager::{
    DEFAULT_ID_ATTEMPTS, DEFAULT_MAX_DATA_SIZE, ExpiryPolicy, IdGenerator, OsRngIdGenerator,
    SessionManager, SessionState,
};
pub use session::{DEFAULT_CONFLICT_RETRIES, Expiry, Session, SessionSnapshot};
pub use store::{
    CreateOutcome, Record, SessionStore, SessionStoreExt, UpdateOutcome, from_unix_millis,
    truncate_to_millis, unix_millis,
};

pub use tiered::{DEFAULT_FRONT_CAPACITY, DEFAULT_FRONT_TTL, Tiered};

/// Re-exported so store implementations use the same `async_trait` as the trait.
pub use async_trait::async_trait;
/// Re-exported: the type of [`Record::data`].
pub use bytes::{self, Bytes};
/// Re-exported: the JSON values of a [`Session`].
pub use serde_json;
/// Re-exported so store implementations use the same `time` as the trait.
pub use time;
