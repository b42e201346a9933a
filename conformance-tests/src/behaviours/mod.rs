//! The behaviours, one `async fn` each, one file per area. Every function takes a
//! [`StoreFactory`](crate::StoreFactory), asks it for fresh stores, and returns `Ok(())` or the
//! first [`Failure`](crate::Failure) it saw.
//!
//! Each file registers its behaviours at its end (`BEHAVIOURS`); the functions are private to
//! their file, so one that is written and not registered is dead code, which the workspace's
//! lints refuse. [`behaviours()`](fn@crate::behaviours) lists them all.

mod basic;
mod expiry;
mod histories;
mod namespaces;
mod owners;
mod races;
mod rotation;

pub use histories::{HistoryOptions, NonLinearizable, Op, Ret, Seen, check_histories};

use crate::Behaviour;

/// The behaviours of every file, in the suite's order.
pub(crate) const ALL: &[&[Behaviour]] = &[
    basic::BEHAVIOURS,
    rotation::BEHAVIOURS,
    expiry::BEHAVIOURS,
    namespaces::BEHAVIOURS,
    races::BEHAVIOURS,
    histories::BEHAVIOURS,
    owners::BEHAVIOURS,
];

/// What every behaviour file uses.
mod prelude {
    pub(super) use std::sync::Arc;
    pub(super) use std::sync::Mutex;
    pub(super) use std::sync::atomic::{AtomicBool, Ordering};

    pub(super) use session_core::time::{Duration, OffsetDateTime};
    pub(super) use session_core::{
        Bytes, CreateOutcome, ErrorKind, SessionKey, SessionStore, SessionStoreExt, UpdateOutcome,
        truncate_to_millis,
    };
    pub(super) use tokio::sync::Barrier;

    pub(super) use crate::support::{
        create, create_expired, data_set, describe, ensure, ensure_eq, holds, in_secs,
        join_workers, key, live, long_ago, neighbour, sleep_until,
    };
    pub(super) use crate::{Behaviour, CheckResult, Failure, StoreFactory, register};
}
