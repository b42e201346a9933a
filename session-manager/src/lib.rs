#![doc = include_str!("../README.md")]

mod cleanup;
#[cfg(feature = "cookie")]
pub mod cookie;
mod events;
mod instrument;
mod loads;
mod manager;
mod session;
#[cfg(feature = "testing")]
pub mod testing;
mod tiered;

pub use cleanup::{CleanupHandle, spawn_cleanup};
pub use events::{DEFAULT_EVENT_CAPACITY, Observed, SessionEvent};
pub use instrument::Instrumented;
pub use loads::{DEFAULT_TRACKED_LOADS, LoadVersions};
pub use manager::{
    DEFAULT_ID_ATTEMPTS, DEFAULT_MAX_DATA_SIZE, ExpiryPolicy, IdGenerator, OsRngIdGenerator,
    SessionManager, SessionState,
};
pub use session::{DEFAULT_CONFLICT_RETRIES, Expiry, Session, SessionSnapshot};
/// The stored form of a session's data ([`session_core::codec::envelope`]), for adapters that
/// write the same stores.
pub use session_core::codec::envelope;
pub use tiered::{DEFAULT_FRONT_CAPACITY, DEFAULT_FRONT_TTL, Tiered};

/// Re-exported: the JSON values of a [`Session`].
pub use serde_json;
/// The contract, re-exported whole: an application needs one import path for ids, errors and
/// stores as well as the front.
pub use session_core::*;
