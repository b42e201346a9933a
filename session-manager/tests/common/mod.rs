//! A store wrapper whose writes can be made to fail, for the wrappers' tests.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use session_manager::Bytes;
use session_manager::time::OffsetDateTime;
use session_manager::{
    CreateOutcome, Error, ErrorKind, Record, Result, SessionKey, SessionStore, UpdateOutcome,
    async_trait,
};

/// Forwards to `inner`; while `fail_writes` is set every write fails (transient) before reaching
/// `inner`; while `fail_after_write` is set every create and update reaches `inner` and then
/// fails (transient), as a write whose reply was lost; the first `failing_purges` calls of
/// `delete_expired` fail. Counts `delete_expired` calls. `write_delay_ms` and `read_delay_ms`
/// slow writes and reads down; `deadline` and `rereads_unconfirmed` change the capabilities it
/// reports (a store with a deadline, a store whose re-reads cannot confirm a write).
#[derive(Debug, Default)]
pub(crate) struct Flaky<S> {
    pub(crate) inner: S,
    pub(crate) fail_writes: AtomicBool,
    pub(crate) fail_after_write: AtomicBool,
    pub(crate) failing_purges: AtomicU64,
    pub(crate) purges: AtomicU64,
    pub(crate) write_delay_ms: AtomicU64,
    pub(crate) read_delay_ms: AtomicU64,
    /// Milliseconds of [`Capabilities::deadline`]; 0 for the inner store's.
    pub(crate) deadline_ms: AtomicU64,
    pub(crate) rereads_unconfirmed: AtomicBool,
}

impl<S> Flaky<S> {
    pub(crate) fn new(inner: S) -> Self {
        Self {
            inner,
            fail_writes: AtomicBool::new(false),
            fail_after_write: AtomicBool::new(false),
            failing_purges: AtomicU64::new(0),
            purges: AtomicU64::new(0),
            write_delay_ms: AtomicU64::new(0),
            read_delay_ms: AtomicU64::new(0),
            deadline_ms: AtomicU64::new(0),
            rereads_unconfirmed: AtomicBool::new(false),
        }
    }

    async fn pause(&self, ms: &AtomicU64) {
        let ms = ms.load(Ordering::Acquire);
        if ms > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
    }

    fn check(&self) -> Result<()> {
        if self.fail_writes.load(Ordering::Acquire) {
            return Err(Error::new(ErrorKind::Backend, "injected failure").transient(true));
        }
        Ok(())
    }

    /// `outcome` of a write that reached `inner`, or the reply lost.
    fn reply<T>(&self, outcome: Result<T>) -> Result<T> {
        if self.fail_after_write.load(Ordering::Acquire) {
            outcome?;
            return Err(Error::new(ErrorKind::Backend, "injected lost reply").transient(true));
        }
        outcome
    }
}

#[async_trait]
impl<S: SessionStore> SessionStore for Flaky<S> {
    async fn create_opts(
        &self,
        key: &SessionKey,
        at: OffsetDateTime,
        data: Bytes,
        options: &session_manager::WriteOptions,
    ) -> Result<CreateOutcome> {
        self.check()?;
        let outcome = self.inner.create_opts(key, at, data, options).await;
        self.pause(&self.write_delay_ms).await;
        self.reply(outcome)
    }
    async fn read(&self, key: &SessionKey) -> Result<Option<Record>> {
        self.pause(&self.read_delay_ms).await;
        self.inner.read(key).await
    }
    async fn update_opts(
        &self,
        current: &SessionKey,
        previous: &SessionKey,
        version: u64,
        at: OffsetDateTime,
        data: Bytes,
        options: &session_manager::WriteOptions,
    ) -> Result<UpdateOutcome> {
        self.check()?;
        let outcome = self
            .inner
            .update_opts(current, previous, version, at, data, options)
            .await;
        self.pause(&self.write_delay_ms).await;
        self.reply(outcome)
    }
    async fn touch(&self, key: &SessionKey, at: OffsetDateTime) -> Result<bool> {
        self.check()?;
        self.inner.touch(key, at).await
    }
    async fn delete(&self, key: &SessionKey) -> Result<()> {
        self.check()?;
        self.inner.delete(key).await
    }
    async fn delete_expired(&self) -> Result<u64> {
        self.purges.fetch_add(1, Ordering::AcqRel);
        let failing = self.failing_purges.load(Ordering::Acquire);
        if failing > 0 {
            self.failing_purges.store(failing - 1, Ordering::Release);
            return Err(Error::new(ErrorKind::Backend, "injected purge failure").transient(true));
        }
        self.check()?;
        self.inner.delete_expired().await
    }
    async fn clear(&self) -> Result<()> {
        self.check()?;
        self.inner.clear().await
    }

    fn capabilities(&self) -> session_manager::Capabilities {
        let deadline = match self.deadline_ms.load(Ordering::Acquire) {
            0 => self.inner.capabilities().deadline,
            ms => Some(std::time::Duration::from_millis(ms)),
        };
        self.inner
            .capabilities()
            .deadline(deadline)
            .rereads_confirm_writes(!self.rereads_unconfirmed.load(Ordering::Acquire))
    }
}
