//! What a backend says about itself, and the operator's view of a store: [`StoreAdmin`], and
//! [`BackendConfig`], the shape every backend's configuration type has.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::error::Result;
use crate::owner::OwnerIndex;
use crate::store::SessionStore;

/// Facts about a backend that callers (tools, test factories, fronts) need and cannot observe
/// through the contract alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// The backend drops expired records by itself (a server's key expiry, an in-process
    /// sweep), so [`SessionStore::delete_expired`] may count fewer records than expired.
    pub expires_by_itself: bool,
    /// Two stores opened with the same configuration share their sessions (a server, a file).
    /// `false` for a store private to its instance (in-process memory).
    pub shared: bool,
    /// [`StoreAdmin::counts`] reports expired records still stored.
    pub counts_expired: bool,
}

impl Capabilities {
    /// A shared store that expires nothing by itself and counts expired records: what a SQL
    /// backend is. Adjust with the setters.
    pub const fn new() -> Self {
        Self {
            expires_by_itself: false,
            shared: true,
            counts_expired: true,
        }
    }

    /// Sets [`expires_by_itself`](Self::expires_by_itself).
    #[must_use]
    pub const fn expires_by_itself(mut self, value: bool) -> Self {
        self.expires_by_itself = value;
        self
    }

    /// Sets [`shared`](Self::shared).
    #[must_use]
    pub const fn shared(mut self, value: bool) -> Self {
        self.shared = value;
        self
    }

    /// Sets [`counts_expired`](Self::counts_expired).
    #[must_use]
    pub const fn counts_expired(mut self, value: bool) -> Self {
        self.counts_expired = value;
        self
    }
}

impl Default for Capabilities {
    fn default() -> Self {
        Self::new()
    }
}

/// How many sessions a store's namespace holds, as far as its backend can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Sessions that have not expired.
    pub live: u64,
    /// Expired sessions still stored (purged by `delete_expired`); `None` where the backend
    /// cannot tell ([`Capabilities::counts_expired`] is `false`).
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

    /// What the backend does by itself.
    fn capabilities(&self) -> Capabilities;

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

    /// This store as an [`OwnerIndex`], when it has one (every backend of this workspace does;
    /// `None` by default): how tools and test factories holding a `dyn StoreAdmin` reach it.
    /// Implement it as `Some(self)`.
    fn owner_index(self: Arc<Self>) -> Option<Arc<dyn OwnerIndex>> {
        None
    }
}

macro_rules! forward_admin {
    ($($ty:ty: $owner_index:ident),*) => {$(
        #[async_trait]
        impl<S: StoreAdmin + ?Sized> StoreAdmin for $ty {
            fn backend(&self) -> &'static str {
                (**self).backend()
            }
            fn capabilities(&self) -> Capabilities {
                (**self).capabilities()
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
            fn owner_index(self: Arc<Self>) -> Option<Arc<dyn OwnerIndex>> {
                $owner_index(self)
            }
        }
    )*};
}

fn arc_owner_index<S: StoreAdmin + ?Sized>(this: Arc<Arc<S>>) -> Option<Arc<dyn OwnerIndex>> {
    S::owner_index(Arc::clone(&*this))
}

/// An `Arc<Box<S>>` cannot be had as an `Arc<S>`: put the store in an `Arc` instead.
fn box_owner_index<S: StoreAdmin + ?Sized>(_: Arc<Box<S>>) -> Option<Arc<dyn OwnerIndex>> {
    None
}

forward_admin!(Arc<S>: arc_owner_index, Box<S>: box_owner_index);

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
