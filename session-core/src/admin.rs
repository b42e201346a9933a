//! The operator's view of a store: [`StoreAdmin`], and [`BackendConfig`], the shape every
//! backend's configuration type has.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::error::Result;
use crate::store::SessionStore;

/// How many sessions a store's namespace holds, as far as its backend can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Sessions that have not expired.
    pub live: u64,
    /// Expired sessions still stored (purged by `delete_expired`); `None` where the backend
    /// cannot tell ([`Capabilities::counts_expired`](crate::Capabilities) is `false`).
    pub expired: Option<u64>,
}

/// A sample of a backend's resource gauges, each `None` where the backend has no such thing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Gauges {
    /// Connections open in the store's pool (PostgreSQL, MySQL).
    pub connections: Option<u64>,
    /// Of those, the idle ones.
    pub idle_connections: Option<u64>,
    /// Operations waiting in the store's own queues (SQLite's writer and readers).
    pub queued: Option<u64>,
}

impl Gauges {
    /// A pool of `connections`, `idle_connections` of them idle.
    pub fn pool(connections: u64, idle_connections: u64) -> Self {
        Self {
            connections: Some(connections),
            idle_connections: Some(idle_connections),
            queued: None,
        }
    }

    /// `queued` operations waiting.
    pub fn queue(queued: u64) -> Self {
        Self {
            queued: Some(queued),
            ..Self::default()
        }
    }
}

/// The operator's side of a store, beside the contract: what the backend is, how much it
/// holds, and removing its namespace. Optional for third-party stores; every backend of this
/// workspace implements it.
#[async_trait]
pub trait StoreAdmin: SessionStore {
    /// The backend's short name (`"postgres"`, `"redis"`, …), for messages.
    fn backend(&self) -> &'static str;

    /// Live (and, where the backend can tell, expired) sessions of this store's namespace.
    async fn counts(&self) -> Result<Counts>;

    /// Removes this store's namespace: every session in it, and its table where it has one.
    /// For tools and tests that made a namespace of their own; the store must not be used
    /// afterwards.
    async fn drop_namespace(&self) -> Result<()>;

    /// The backend's pool and queue gauges now (cheap: no I/O); none by default.
    fn gauges(&self) -> Gauges {
        Gauges::default()
    }
}

macro_rules! forward_admin {
    ($($ty:ty),*) => {$(
        #[deny(clippy::missing_trait_methods)]
        #[async_trait]
        impl<S: StoreAdmin + ?Sized> StoreAdmin for $ty {
            fn backend(&self) -> &'static str {
                (**self).backend()
            }
            async fn counts(&self) -> Result<Counts> {
                (**self).counts().await
            }
            async fn drop_namespace(&self) -> Result<()> {
                (**self).drop_namespace().await
            }
            fn gauges(&self) -> Gauges {
                (**self).gauges()
            }
        }
    )*};
}

forward_admin!(Arc<S>, Box<S>);

/// The shape of a backend's configuration type: parsed from a URL and named options, turned
/// into a fresh namespace or an open-what-exists mode, and opened. `session-any`, the CLI and the
/// test factories work through it, so a backend's options are named in the backend only.
#[async_trait]
pub trait BackendConfig: Clone + fmt::Debug + Send + Sync + Sized + 'static {
    /// The store this configuration opens.
    type Store: StoreAdmin;

    /// Reads `url` and the named `options` (the same names as the URL's query parameters; an
    /// option given both ways takes the value in `options`). An unknown or malformed option is
    /// a `Config` error.
    fn from_url_with(url: &str, options: &[(String, String)]) -> Result<Self>;

    /// Reads `url` alone.
    fn from_url(url: &str) -> Result<Self> {
        Self::from_url_with(url, &[])
    }

    /// The same server or file with a separate set of sessions called `namespace` (a plain
    /// identifier): a table of that name, a key prefix `namespace:`, …
    fn isolated(&self, namespace: &str) -> Result<Self>;

    /// This configuration in a mode that never creates anything (a file, a table): for tools
    /// inspecting an application's store, where a mistyped name must not create an empty one.
    /// Backends with nothing to create return it unchanged.
    #[must_use]
    fn existing_only(self) -> Self;

    /// Opens the store.
    async fn open(self) -> Result<Self::Store>;
}
