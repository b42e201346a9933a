#![doc = include_str!("../README.md")]

mod admin;
mod capabilities;
pub mod codec;
#[cfg(feature = "config")]
pub mod config;
mod error;
mod id;
mod owner;
mod store;

pub use admin::{BackendConfig, Counts, Gauges, StoreAdmin};
pub use capabilities::{Capabilities, Rotation};
pub use error::{Error, ErrorKind, Result};
pub use id::{ID_BYTES, ID_LEN, SessionId, SessionKey};
pub use owner::{MAX_LABEL_BYTES, MAX_OWNER_BYTES, OwnedSession, Owner, OwnerChange, Ownership};
pub use store::{
    CreateOutcome, Record, SessionStore, SessionStoreExt, UpdateOutcome, WriteOptions,
    from_unix_millis, truncate_to_millis, unix_millis,
};

/// Re-exported so store implementations use the same `async_trait` as the trait.
pub use async_trait::async_trait;
/// Re-exported: the type of [`Record::data`].
pub use bytes::{self, Bytes};
/// Re-exported so store implementations use the same `time` as the trait.
pub use time;

#[cfg(feature = "config")]
pub use config::{
    MAX_CONFIG_BYTES, Options, format_duration, is_secret_parameter, parse_duration, redact_url,
    serde_duration, validate_identifier,
};
