//! [`Observed`]: a store wrapper that tells subscribers what changed.

use std::fmt;

use tokio::sync::broadcast;

use session_core::Result;
use session_core::SessionKey;
use session_core::{Bytes, async_trait, time::OffsetDateTime};
use session_core::{
    Capabilities, CreateOutcome, OwnedSession, Owner, Record, SessionStore, UpdateOutcome,
    WriteOptions,
};

/// What happened to the sessions of an [`Observed`] store. Events carry [`SessionKey`]s (hashes),
/// never tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionEvent {
    /// A session was created.
    Created {
        /// Its key.
        key: SessionKey,
    },
    /// A session's data or expiry was saved in place.
    Updated {
        /// Its key.
        key: SessionKey,
        /// The version written.
        version: u64,
    },
    /// A session moved to a new id (with its data saved).
    Rotated {
        /// The key it left (now dead).
        from: SessionKey,
        /// The key it lives under now.
        to: SessionKey,
        /// The version written.
        version: u64,
    },
    /// A session's expiry moved (data unchanged).
    Touched {
        /// Its key.
        key: SessionKey,
    },
    /// A delete was done for this key (idempotent: the session may not have existed).
    Deleted {
        /// Its key.
        key: SessionKey,
    },
    /// Every session of the store's namespace was removed.
    Cleared,
    /// `delete_expired` purged this many expired sessions (only published when more than 0).
    Expired {
        /// How many.
        count: u64,
    },
    /// `revoke_owner` deleted this many live sessions of `owner` (only published when more
    /// than 0).
    Revoked {
        /// Whose sessions.
        owner: Owner,
        /// How many.
        count: u64,
    },
}

/// Default number of events a subscriber may fall behind before it starts missing some.
pub const DEFAULT_EVENT_CAPACITY: usize = 1024;

/// Wraps a store: forwards every operation unchanged and, after each successful write, publishes
/// a [`SessionEvent`] to every subscriber.
///
/// Publishing never waits: events go to a bounded broadcast channel. A subscriber that falls more
/// than the capacity behind misses the oldest events and is told how many
/// ([`broadcast::error::RecvError::Lagged`]); the store is never slowed by it. Failed operations
/// and outcomes that changed nothing (`IdTaken`, `Conflict`, `NotFound`, a `touch` of an absent
/// session) publish nothing. Events of one caller's operations arrive in the order the
/// operations completed.
pub struct Observed<S> {
    inner: S,
    sender: broadcast::Sender<SessionEvent>,
}

impl<S: fmt::Debug> fmt::Debug for Observed<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Observed")
            .field("inner", &self.inner)
            .field("subscribers", &self.sender.receiver_count())
            .finish()
    }
}

impl<S: SessionStore> Observed<S> {
    /// Wraps `inner` with [`DEFAULT_EVENT_CAPACITY`].
    pub fn new(inner: S) -> Self {
        Self::with_capacity(inner, DEFAULT_EVENT_CAPACITY)
    }

    /// Wraps `inner`; a subscriber may fall `capacity` events behind (at least 1).
    pub fn with_capacity(inner: S, capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(1));
        Self { inner, sender }
    }

    /// A receiver of every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<SessionEvent> {
        self.sender.subscribe()
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn publish(&self, event: SessionEvent) {
        // An error only means nobody is subscribed.
        let _ = self.sender.send(event);
    }

    /// Publishes what an update with `outcome` did.
    fn published(&self, current: &SessionKey, previous: &SessionKey, outcome: UpdateOutcome) {
        if let UpdateOutcome::Updated { version } = outcome {
            self.publish(if current == previous {
                SessionEvent::Updated {
                    key: *current,
                    version,
                }
            } else {
                SessionEvent::Rotated {
                    from: *previous,
                    to: *current,
                    version,
                }
            });
        }
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl<S: SessionStore> SessionStore for Observed<S> {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn create_opts(
        &self,
        key: &SessionKey,
        expires_at: OffsetDateTime,
        data: Bytes,
        options: &WriteOptions,
    ) -> Result<CreateOutcome> {
        let outcome = self
            .inner
            .create_opts(key, expires_at, data, options)
            .await?;
        if outcome == CreateOutcome::Created {
            self.publish(SessionEvent::Created { key: *key });
        }
        Ok(outcome)
    }

    async fn read(&self, key: &SessionKey) -> Result<Option<Record>> {
        self.inner.read(key).await
    }

    async fn update_opts(
        &self,
        current: &SessionKey,
        previous: &SessionKey,
        expected_version: u64,
        expires_at: OffsetDateTime,
        data: Bytes,
        options: &WriteOptions,
    ) -> Result<UpdateOutcome> {
        let outcome = self
            .inner
            .update_opts(
                current,
                previous,
                expected_version,
                expires_at,
                data,
                options,
            )
            .await?;
        self.published(current, previous, outcome);
        Ok(outcome)
    }

    async fn touch(&self, key: &SessionKey, expires_at: OffsetDateTime) -> Result<bool> {
        let touched = self.inner.touch(key, expires_at).await?;
        if touched {
            self.publish(SessionEvent::Touched { key: *key });
        }
        Ok(touched)
    }

    async fn delete(&self, key: &SessionKey) -> Result<()> {
        self.inner.delete(key).await?;
        self.publish(SessionEvent::Deleted { key: *key });
        Ok(())
    }

    async fn delete_expired(&self) -> Result<u64> {
        let count = self.inner.delete_expired().await?;
        if count > 0 {
            self.publish(SessionEvent::Expired { count });
        }
        Ok(count)
    }

    async fn clear(&self) -> Result<()> {
        self.inner.clear().await?;
        self.publish(SessionEvent::Cleared);
        Ok(())
    }

    async fn sessions_of(&self, owner: &Owner) -> Result<Vec<OwnedSession>> {
        self.inner.sessions_of(owner).await
    }

    async fn revoke_owner(&self, owner: &Owner, except: Option<&SessionKey>) -> Result<u64> {
        let count = self.inner.revoke_owner(owner, except).await?;
        if count > 0 {
            self.publish(SessionEvent::Revoked {
                owner: owner.clone(),
                count,
            });
        }
        Ok(count)
    }
}
