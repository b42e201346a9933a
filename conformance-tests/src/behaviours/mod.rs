//! The behaviours, one `pub async fn` each, one file per area. Every function takes a
//! [`StoreFactory`](crate::StoreFactory), asks it for fresh stores, and returns `Ok(())` or the
//! first [`Failure`](crate::Failure) it saw.
//!
//! Every `pub async fn` of these files is registered in the list behind
//! [`BEHAVIOURS`](crate::BEHAVIOURS) and [`suite!`](crate::suite); a test fails when one is
//! missing from it.

mod basic;
mod expiry;
mod front;
mod histories;
mod namespaces;
mod owners;
mod races;
mod rotation;

pub use basic::*;
pub use expiry::*;
pub use front::*;
pub use histories::*;
pub use namespaces::*;
pub use owners::*;
pub use races::*;
pub use rotation::*;

/// The sources of the behaviour files, for the registration check.
#[doc(hidden)]
pub const SOURCES: &[(&str, &str)] = &[
    ("basic", include_str!("basic.rs")),
    ("expiry", include_str!("expiry.rs")),
    ("front", include_str!("front.rs")),
    ("histories", include_str!("histories.rs")),
    ("namespaces", include_str!("namespaces.rs")),
    ("owners", include_str!("owners.rs")),
    ("races", include_str!("races.rs")),
    ("rotation", include_str!("rotation.rs")),
];

/// What every behaviour file uses.
mod prelude {
    pub(super) use std::collections::VecDeque;
    pub(super) use std::sync::Arc;
    pub(super) use std::sync::Mutex;
    pub(super) use std::sync::atomic::{AtomicBool, Ordering};

    pub(super) use session_manager::time::{Duration, OffsetDateTime};
    pub(super) use session_manager::{
        Bytes, CreateOutcome, ErrorKind, ExpiryPolicy, SessionId, SessionKey, SessionManager,
        SessionStore, UpdateOutcome, truncate_to_millis,
    };
    pub(super) use tokio::sync::Barrier;

    pub(super) use crate::support::{
        CountingStore, create, create_expired, data_set, describe, ensure, ensure_eq, in_secs,
        join_workers, key, live, long_ago, neighbour, sleep_until,
    };
    pub(super) use crate::{CheckResult, Failure, StoreFactory};
}
