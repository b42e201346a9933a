//! The front over any store: id generation, expiry policy, CAS saves, id rotation.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use time::{Duration, OffsetDateTime};

use session_core::codec::envelope;
use session_core::{
    CreateOutcome, OwnedSession, Owner, OwnerChange, Ownership, Record, SessionStore,
    UpdateOutcome, WriteOptions, truncate_to_millis,
};
use session_core::{Error, ErrorKind, Result};
use session_core::{SessionId, SessionKey};

/// Default limit on the size of one session's data: 1 MiB.
pub const DEFAULT_MAX_DATA_SIZE: usize = 1024 * 1024;
/// Default number of ids tried by `create` and `cycle_id` before giving up with
/// [`ErrorKind::IdCollision`].
pub const DEFAULT_ID_ATTEMPTS: u32 = 3;

/// Ids drawn for one rotation before giving up: a store with 256 partitions (Redis Cluster)
/// needs 256 on average, and fails 65,536 draws with probability about e^-256.
const MAX_ROTATION_DRAWS: u32 = 65_536;

/// Where new session ids come from. The default is [`OsRngIdGenerator`]; tests plug in others
/// (for example one that repeats ids, to force collisions).
pub trait IdGenerator: Send + Sync + 'static {
    /// A fresh id.
    fn generate(&self) -> SessionId;
}

/// Ids from the operating system's CSPRNG ([`SessionId::generate`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct OsRngIdGenerator;

impl IdGenerator for OsRngIdGenerator {
    fn generate(&self) -> SessionId {
        SessionId::generate()
    }
}

impl<F> IdGenerator for F
where
    F: Fn() -> SessionId + Send + Sync + 'static,
{
    fn generate(&self) -> SessionId {
        self()
    }
}

/// How long sessions live: an idle timeout, an absolute lifetime, or both (the earlier deadline
/// wins). The absolute deadline is fixed at creation and survives saves and id rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpiryPolicy {
    idle: Option<Duration>,
    absolute: Option<Duration>,
}

impl ExpiryPolicy {
    /// Sessions expire after `idle` without a save or touch.
    pub fn idle(idle: Duration) -> Self {
        Self {
            idle: Some(idle),
            absolute: None,
        }
    }

    /// Sessions expire `lifetime` after creation, whatever their activity.
    pub fn absolute(lifetime: Duration) -> Self {
        Self {
            idle: None,
            absolute: Some(lifetime),
        }
    }

    /// Both: whichever deadline comes first.
    pub fn idle_and_absolute(idle: Duration, lifetime: Duration) -> Self {
        Self {
            idle: Some(idle),
            absolute: Some(lifetime),
        }
    }

    /// The idle timeout, if any.
    pub fn idle_timeout(&self) -> Option<Duration> {
        self.idle
    }

    /// The absolute lifetime, if any.
    pub fn absolute_lifetime(&self) -> Option<Duration> {
        self.absolute
    }

    /// The expiry of a record written at `now` for a session whose absolute deadline is
    /// `absolute_deadline`, truncated to the millisecond precision stores keep.
    pub fn expires_at(
        &self,
        now: OffsetDateTime,
        absolute_deadline: Option<OffsetDateTime>,
    ) -> OffsetDateTime {
        let idle = self.idle.map(|idle| now.saturating_add(idle));
        let deadline = match (idle, absolute_deadline) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            // Neither: the constructors make this unreachable, but an immediate expiry is the
            // safe reading.
            (None, None) => now,
        };
        truncate_to_millis(deadline)
    }
}

impl Default for ExpiryPolicy {
    /// An idle timeout of 24 hours.
    fn default() -> Self {
        Self::idle(Duration::hours(24))
    }
}

/// A loaded (or just created) session as the manager sees it: id, data, version, deadlines.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionState {
    pub(crate) id: SessionId,
    pub(crate) data: Bytes,
    pub(crate) version: u64,
    pub(crate) expires_at: OffsetDateTime,
    pub(crate) absolute_deadline: Option<OffsetDateTime>,
}

impl SessionState {
    /// The session's id (the token for the cookie).
    pub fn id(&self) -> &SessionId {
        &self.id
    }

    /// The application data.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Replaces the application data; [`SessionManager::save`] writes it.
    pub fn set_data(&mut self, data: impl Into<Bytes>) {
        self.data = data.into();
    }

    /// The version this state was loaded or last saved at.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// When the stored record expires.
    pub fn expires_at(&self) -> OffsetDateTime {
        self.expires_at
    }

    /// The absolute deadline fixed at creation, if the policy has one.
    pub fn absolute_deadline(&self) -> Option<OffsetDateTime> {
        self.absolute_deadline
    }
}

impl fmt::Debug for SessionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionState")
            .field("id", &self.id)
            .field("data_len", &self.data.len())
            .field("version", &self.version)
            .field("expires_at", &self.expires_at)
            .field("absolute_deadline", &self.absolute_deadline)
            .finish()
    }
}

/// The front over a [`SessionStore`]: mints ids, applies the expiry policy and the size limit,
/// and turns store outcomes into errors an application can act on.
///
/// Every write is a single store operation: `save` is a compare-and-swap on the loaded version,
/// `cycle_id` one atomic rotation.
///
/// An error from the store means the outcome is unknown: a network store may have applied a
/// write whose reply was lost. After a transient error on `create`, `save` or `cycle_id` the
/// manager re-reads the record it wrote and, when the store holds exactly that version, expiry
/// and data, reports success (for `cycle_id`: with the new id). Otherwise the error is returned
/// and the write may still land later.
pub struct SessionManager<S> {
    store: S,
    generator: Arc<dyn IdGenerator>,
    policy: ExpiryPolicy,
    max_data_size: usize,
    id_attempts: u32,
}

impl<S: Clone> Clone for SessionManager<S> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            generator: Arc::clone(&self.generator),
            policy: self.policy,
            max_data_size: self.max_data_size,
            id_attempts: self.id_attempts,
        }
    }
}

impl<S> fmt::Debug for SessionManager<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionManager")
            .field("policy", &self.policy)
            .field("max_data_size", &self.max_data_size)
            .field("id_attempts", &self.id_attempts)
            .finish_non_exhaustive()
    }
}

impl<S: SessionStore> SessionManager<S> {
    /// A manager with the default policy (24 h idle), ids from the OS CSPRNG, a 1 MiB limit and
    /// 3 id attempts.
    pub fn new(store: S) -> Self {
        Self {
            store,
            generator: Arc::new(OsRngIdGenerator),
            policy: ExpiryPolicy::default(),
            max_data_size: DEFAULT_MAX_DATA_SIZE,
            id_attempts: DEFAULT_ID_ATTEMPTS,
        }
    }

    /// Sets the expiry policy.
    #[must_use]
    pub fn with_expiry(mut self, policy: ExpiryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Sets the id generator.
    #[must_use]
    pub fn with_id_generator(mut self, generator: impl IdGenerator) -> Self {
        self.generator = Arc::new(generator);
        self
    }

    /// Sets the largest accepted session data, in bytes.
    #[must_use]
    pub fn with_max_data_size(mut self, bytes: usize) -> Self {
        self.max_data_size = bytes;
        self
    }

    /// Sets how many fresh ids `create` and `cycle_id` try (at least 1).
    #[must_use]
    pub fn with_id_attempts(mut self, attempts: u32) -> Self {
        self.id_attempts = attempts.max(1);
        self
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The expiry policy.
    pub fn policy(&self) -> ExpiryPolicy {
        self.policy
    }

    /// The data size limit in bytes.
    pub fn max_data_size(&self) -> usize {
        self.max_data_size
    }

    fn check_size(&self, data: &[u8]) -> Result<()> {
        envelope::check_size(data, self.max_data_size)
    }

    fn id_collision(&self) -> Error {
        Error::new(
            ErrorKind::IdCollision,
            format!(
                "{} freshly generated session ids were all taken",
                self.id_attempts
            ),
        )
    }

    /// Creates a session holding `data` under a fresh id.
    ///
    /// On [`CreateOutcome::IdTaken`] another fresh id is tried, up to the configured number of
    /// attempts; then [`ErrorKind::IdCollision`]. An existing session is never overwritten.
    pub async fn create(&self, data: impl Into<Bytes>) -> Result<SessionState> {
        self.create_with(data.into(), None, &WriteOptions::new())
            .await
    }

    /// [`create`](Self::create), the session owned by `ownership` (listed by
    /// [`sessions_of`](Self::sessions_of), revoked by [`revoke_owner`](Self::revoke_owner)).
    pub async fn create_owned(
        &self,
        data: impl Into<Bytes>,
        ownership: &Ownership,
    ) -> Result<SessionState> {
        let options = WriteOptions::new().with_owner(OwnerChange::Set(ownership.clone()));
        self.create_with(data.into(), None, &options).await
    }

    /// [`create`](Self::create) with an expiry chosen by the caller (still capped by the
    /// absolute deadline) instead of the policy's idle deadline.
    pub(crate) async fn create_with(
        &self,
        data: Bytes,
        requested: Option<OffsetDateTime>,
        options: &WriteOptions,
    ) -> Result<SessionState> {
        self.check_size(&data)?;
        options.check(&self.store.capabilities())?;
        let now = OffsetDateTime::now_utc();
        let absolute_deadline = self
            .policy
            .absolute
            .map(|life| truncate_to_millis(now.saturating_add(life)));
        let expires_at = self.expiry_for(requested, absolute_deadline)?;
        let stored = Bytes::from(envelope::encode(absolute_deadline, &data));
        for _ in 0..self.id_attempts {
            let id = self.generator.generate();
            let key = id.key();
            let started = Instant::now();
            let written = self
                .store
                .create_opts(&key, expires_at, stored.clone(), options)
                .await;
            let outcome = match written {
                Ok(outcome) => outcome,
                Err(e) if self.landed(started, &e, &key, 1, expires_at, &stored).await => {
                    CreateOutcome::Created
                }
                Err(e) => return Err(e),
            };
            match outcome {
                CreateOutcome::Created => {
                    return Ok(SessionState {
                        id,
                        data,
                        version: 1,
                        expires_at,
                        absolute_deadline,
                    });
                }
                CreateOutcome::IdTaken => {
                    tracing::warn!(id = %id, "generated session id was taken; trying another")
                }
            }
        }
        Err(self.id_collision())
    }

    /// A fresh id (and its key) the store can rotate `previous` to in one atomic update (see
    /// [`Capabilities::can_rotate_between`](session_core::Capabilities::can_rotate_between)):
    /// the generator's first id for most stores; for a
    /// partitioned store (Redis Cluster) ids are drawn until one falls in `previous`'s partition.
    fn rotation_target(&self, previous: &SessionKey) -> Result<(SessionId, SessionKey)> {
        let capabilities = self.store.capabilities();
        for _ in 0..MAX_ROTATION_DRAWS {
            let id = self.generator.generate();
            let key = id.key();
            if capabilities.can_rotate_between(previous, &key) {
                return Ok((id, key));
            }
        }
        Err(Error::new(
            ErrorKind::Unsupported,
            format!(
                "none of {MAX_ROTATION_DRAWS} generated ids can take over this session atomically in this store"
            ),
        ))
    }

    /// After `error` from a write of `stored` at `key` started at `started`: whether the write
    /// was applied anyway (its reply was lost). Only transient errors are in doubt; the answer is
    /// a re-read that finds exactly the version, expiry and bytes the write would have left, made
    /// within what the store's deadline leaves of the operation (its
    /// [`Capabilities::deadline`](session_core::Capabilities::deadline) plus a tenth), so a write
    /// and its re-read together stay inside that bound. `false` also when the store's re-reads
    /// cannot confirm a write ([`Capabilities::rereads_confirm_writes`]), when the re-read
    /// fails, runs out of time or finds something else: the write may still land later (an error
    /// means the outcome is unknown), so the caller reports the original error.
    ///
    /// [`Capabilities::rereads_confirm_writes`]: session_core::Capabilities::rereads_confirm_writes
    async fn landed(
        &self,
        started: Instant,
        error: &Error,
        key: &SessionKey,
        version: u64,
        expires_at: OffsetDateTime,
        stored: &[u8],
    ) -> bool {
        let capabilities = self.store.capabilities();
        if !error.is_transient() || !capabilities.rereads_confirm_writes {
            return false;
        }
        let reread = self.store.read(key);
        let reread = match capabilities.deadline {
            Some(deadline) => {
                let until = tokio::time::Instant::from_std(started + deadline + deadline / 10);
                match tokio::time::timeout_at(until, reread).await {
                    Ok(reread) => reread,
                    Err(_) => {
                        tracing::debug!(%error, "no time left to re-read after a write whose outcome was unknown");
                        return false;
                    }
                }
            }
            None => reread.await,
        };
        match reread {
            Ok(Some(record)) => {
                let landed = record.version == version
                    && record.expires_at == expires_at
                    && record.data.as_ref() == stored;
                tracing::debug!(%error, landed, "re-read after a write whose outcome was unknown");
                landed
            }
            Ok(None) => false,
            Err(reread) => {
                tracing::debug!(%error, %reread, "could not re-read after a write whose outcome was unknown");
                false
            }
        }
    }

    /// Loads the live session `id`, or `None` when there is none.
    pub async fn load(&self, id: &SessionId) -> Result<Option<SessionState>> {
        let Some(record) = self.store.read(&id.key()).await? else {
            return Ok(None);
        };
        self.state_from(id.clone(), record).map(Some)
    }

    /// Parses a client-supplied id (a cookie value) and loads it. A malformed id is
    /// [`ErrorKind::InvalidId`] and never reaches the store.
    pub async fn load_str(&self, id: &str) -> Result<Option<SessionState>> {
        let id = SessionId::parse(id)?;
        self.load(&id).await
    }

    /// The expiry for a write now: `requested` or the policy's, capped by the absolute
    /// deadline; [`ErrorKind::NotFound`] when that is not in the future (the session is over;
    /// writing it would only store an expired record).
    pub(crate) fn expiry_for(
        &self,
        requested: Option<OffsetDateTime>,
        absolute_deadline: Option<OffsetDateTime>,
    ) -> Result<OffsetDateTime> {
        let now = OffsetDateTime::now_utc();
        let expires_at = match requested {
            Some(requested) => truncate_to_millis(
                absolute_deadline.map_or(requested, |deadline| requested.min(deadline)),
            ),
            None => self.policy.expires_at(now, absolute_deadline),
        };
        if expires_at <= now {
            return Err(Error::new(
                ErrorKind::NotFound,
                "the session's expiry is not in the future (absolute deadline reached)",
            ));
        }
        Ok(expires_at)
    }

    fn next_expiry(&self, state: &SessionState) -> Result<OffsetDateTime> {
        self.expiry_for(None, state.absolute_deadline)
    }

    /// Decodes a stored record into a state for `id`.
    pub(crate) fn state_from(&self, id: SessionId, record: Record) -> Result<SessionState> {
        let (absolute_deadline, data) = envelope::decode(record.data)?;
        Ok(SessionState {
            id,
            data,
            version: record.version,
            expires_at: record.expires_at,
            absolute_deadline,
        })
    }

    /// Saves `state`'s data if the stored version is still the one `state` was loaded at
    /// (compare-and-swap), and moves the idle deadline.
    ///
    /// [`ErrorKind::Conflict`]: another writer saved first; reload and reapply.
    /// [`ErrorKind::NotFound`]: the session is gone (expired, destroyed, rotated away); it is
    /// never recreated.
    pub async fn save(&self, state: &mut SessionState) -> Result<()> {
        self.save_with(state, None, &WriteOptions::new()).await
    }

    /// Gives the session `ownership` (`None`: no owner), saving its data with the same
    /// compare-and-swap as [`save`](Self::save); with `rotate`, in the same atomic step as a
    /// [`cycle_id`](Self::cycle_id) (what a login does: new id, new owner).
    pub async fn set_owner(
        &self,
        state: &mut SessionState,
        ownership: Option<&Ownership>,
        rotate: bool,
    ) -> Result<()> {
        let options = WriteOptions::new().with_owner(OwnerChange::replace(ownership.cloned()));
        if rotate {
            self.cycle_id_with(state, None, &options).await
        } else {
            self.save_with(state, None, &options).await
        }
    }

    /// The live sessions of `owner` (keys, expiry, version, label; never data or tokens).
    pub async fn sessions_of(&self, owner: &Owner) -> Result<Vec<OwnedSession>> {
        self.store.sessions_of(owner).await
    }

    /// Deletes every session of `owner` except `except` (the caller's own session, for "log out
    /// my other devices") and returns how many live ones were deleted. Every session the owner
    /// had when this started is gone when it returns (see [`SessionStore::revoke_owner`]).
    pub async fn revoke_owner(&self, owner: &Owner, except: Option<&SessionId>) -> Result<u64> {
        let except = except.map(SessionId::key);
        self.store.revoke_owner(owner, except.as_ref()).await
    }

    /// [`save`](Self::save) with a caller-chosen expiry (capped by the absolute deadline).
    pub(crate) async fn save_with(
        &self,
        state: &mut SessionState,
        requested: Option<OffsetDateTime>,
        options: &WriteOptions,
    ) -> Result<()> {
        self.check_size(&state.data)?;
        let expires_at = self.expiry_for(requested, state.absolute_deadline)?;
        let stored = Bytes::from(envelope::encode(state.absolute_deadline, &state.data));
        let key = state.id.key();
        let started = Instant::now();
        let outcome = match self
            .store
            .update_opts(
                &key,
                &key,
                state.version,
                expires_at,
                stored.clone(),
                options,
            )
            .await
        {
            Ok(outcome) => outcome,
            Err(e)
                if self
                    .landed(started, &e, &key, state.version + 1, expires_at, &stored)
                    .await =>
            {
                UpdateOutcome::Updated {
                    version: state.version + 1,
                }
            }
            Err(e) => return Err(e),
        };
        match outcome {
            UpdateOutcome::Updated { version } => {
                state.version = version;
                state.expires_at = expires_at;
                Ok(())
            }
            UpdateOutcome::NotFound => Err(Error::new(
                ErrorKind::NotFound,
                "the session no longer exists",
            )),
            UpdateOutcome::Conflict | UpdateOutcome::IdTaken => Err(Error::new(
                ErrorKind::Conflict,
                "the session was saved by another writer",
            )),
        }
    }

    /// Moves the session to a fresh id in one atomic store update, keeping its data and absolute
    /// deadline (and saving `state`'s current data). The old id stops working at once.
    pub async fn cycle_id(&self, state: &mut SessionState) -> Result<()> {
        self.cycle_id_with(state, None, &WriteOptions::new()).await
    }

    /// [`cycle_id`](Self::cycle_id) with a caller-chosen expiry (capped by the absolute
    /// deadline).
    pub(crate) async fn cycle_id_with(
        &self,
        state: &mut SessionState,
        requested: Option<OffsetDateTime>,
        options: &WriteOptions,
    ) -> Result<()> {
        self.check_size(&state.data)?;
        let expires_at = self.expiry_for(requested, state.absolute_deadline)?;
        let stored = Bytes::from(envelope::encode(state.absolute_deadline, &state.data));
        let previous = state.id.key();
        for _ in 0..self.id_attempts {
            let (id, current) = self.rotation_target(&previous)?;
            let started = Instant::now();
            let outcome = match self
                .store
                .update_opts(
                    &current,
                    &previous,
                    state.version,
                    expires_at,
                    stored.clone(),
                    options,
                )
                .await
            {
                Ok(outcome) => outcome,
                Err(e)
                    if self
                        .landed(
                            started,
                            &e,
                            &current,
                            state.version + 1,
                            expires_at,
                            &stored,
                        )
                        .await =>
                {
                    UpdateOutcome::Updated {
                        version: state.version + 1,
                    }
                }
                Err(e) => return Err(e),
            };
            match outcome {
                UpdateOutcome::Updated { version } => {
                    state.id = id;
                    state.version = version;
                    state.expires_at = expires_at;
                    return Ok(());
                }
                UpdateOutcome::IdTaken => {
                    tracing::warn!(id = %id, "generated session id was taken; trying another")
                }
                UpdateOutcome::NotFound => {
                    return Err(Error::new(
                        ErrorKind::NotFound,
                        "the session no longer exists",
                    ));
                }
                UpdateOutcome::Conflict => {
                    return Err(Error::new(
                        ErrorKind::Conflict,
                        "the session was saved by another writer",
                    ));
                }
            }
        }
        Err(self.id_collision())
    }

    /// Extends the idle deadline without rewriting the data. With an absolute-only policy there
    /// is nothing to extend and no store call is made.
    pub async fn touch(&self, state: &mut SessionState) -> Result<()> {
        if self.policy.idle.is_none() {
            return Ok(());
        }
        let expires_at = self.next_expiry(state)?;
        self.touch_to(state, expires_at).await
    }

    /// Moves the stored expiry of `state` to `expires_at`.
    pub(crate) async fn touch_to(
        &self,
        state: &mut SessionState,
        expires_at: OffsetDateTime,
    ) -> Result<()> {
        if self.store.touch(&state.id.key(), expires_at).await? {
            state.expires_at = expires_at;
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::NotFound,
                "the session no longer exists",
            ))
        }
    }

    /// Deletes the session `id` (idempotent).
    pub async fn destroy(&self, id: &SessionId) -> Result<()> {
        self.store.delete(&id.key()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earlier_deadline_wins() {
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let policy = ExpiryPolicy::idle_and_absolute(Duration::minutes(30), Duration::hours(8));
        assert_eq!(
            policy.expires_at(now, Some(now + Duration::hours(8))),
            now + Duration::minutes(30)
        );
        assert_eq!(
            policy.expires_at(now, Some(now + Duration::minutes(5))),
            now + Duration::minutes(5)
        );
        assert_eq!(
            ExpiryPolicy::absolute(Duration::hours(1))
                .expires_at(now, Some(now + Duration::hours(1))),
            now + Duration::hours(1)
        );
    }
}
