#![doc = include_str!("../README.md")]

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use session_core::{Error, SessionStore};

pub mod behaviours;
mod namespaces;
mod runner;
pub mod support;

pub use namespaces::{NamespaceFactory, Namespaces, fresh_namespace};
pub use runner::{Suite, run_test};

/// Makes fresh, isolated stores for the behaviours.
///
/// Every call to [`store`](StoreFactory::store) must return an empty store in a namespace of its
/// own (a fresh table, key prefix or file) on the same backend, so behaviours can run in parallel
/// and `clear` can be checked not to reach other namespaces.
#[async_trait::async_trait]
pub trait StoreFactory: Send + Sync {
    /// A fresh, empty store in its own namespace.
    async fn store(&self) -> Result<Arc<dyn SessionStore>, Error>;

    /// Two independent instances (own connections, own caches) over one fresh namespace, as two
    /// application processes sharing a backend would have. The race behaviours split their tasks
    /// between the two. The default returns one instance twice.
    async fn store_pair(&self) -> Result<(Arc<dyn SessionStore>, Arc<dyn SessionStore>), Error> {
        let store = self.store().await?;
        Ok((Arc::clone(&store), store))
    }

    /// Why this factory cannot make stores here (for example: no server configured), if so.
    /// [`run_test`] then skips loudly.
    fn unavailable(&self) -> Option<String> {
        None
    }

    /// Removes what the factory created (tables, keys, files). Called once after a behaviour.
    async fn finish(&self) {}
}

/// A [`StoreFactory`] made of a closure; see [`factory`].
pub struct FnFactory<F>(F);

/// Wraps a closure returning a fresh store as a [`StoreFactory`]:
///
/// ```
/// # use session_memory::MemoryStore;
/// let factory = conformance_tests::factory(|| async { Ok(MemoryStore::new()) });
/// ```
pub fn factory<F, Fut, S>(make: F) -> FnFactory<F>
where
    F: Fn() -> Fut + Send + Sync,
    Fut: Future<Output = Result<S, Error>> + Send,
    S: SessionStore,
{
    FnFactory(make)
}

#[async_trait::async_trait]
impl<F, Fut, S> StoreFactory for FnFactory<F>
where
    F: Fn() -> Fut + Send + Sync,
    Fut: Future<Output = Result<S, Error>> + Send,
    S: SessionStore,
{
    async fn store(&self) -> Result<Arc<dyn SessionStore>, Error> {
        Ok(Arc::new((self.0)().await?))
    }
}

/// Why a behaviour failed: what was expected, and the store error if one caused it. Or, for a
/// behaviour of an ability the store does not have ([`Failure::not_applicable`]), why it did not
/// run.
pub struct Failure {
    message: String,
    error: Option<Error>,
    not_applicable: bool,
}

impl Failure {
    /// A failure with a message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            error: None,
            not_applicable: false,
        }
    }

    /// Not a failure: the behaviour checks an ability the store's capabilities say it lacks (the
    /// owner index). The runner reports it as skipped; that the store answers such calls with
    /// `Unsupported` and changes nothing is a store behaviour of its own.
    pub fn not_applicable(reason: impl Into<String>) -> Self {
        Self {
            not_applicable: true,
            ..Self::new(reason)
        }
    }

    /// Whether this is [`not_applicable`](Self::not_applicable) rather than a failure.
    pub fn is_not_applicable(&self) -> bool {
        self.not_applicable
    }

    /// The store error that caused the failure, if any.
    pub fn error(&self) -> Option<&Error> {
        self.error.as_ref()
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Self {
            message: "the store returned an error".into(),
            error: Some(error),
            not_applicable: false,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(error) = &self.error {
            write!(f, ": {error}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The result of one behaviour.
pub type CheckResult = Result<(), Failure>;

/// What a behaviour checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// A rule of the store contract (the semantics table): a store that fails it is broken.
    Store,
    /// A check of the front (`SessionManager`) over the store: not a rule of the store
    /// contract, run per backend so the front's promises are seen to hold on it.
    Front,
    /// A rule of the optional owner index, run on stores whose capabilities say they keep one
    /// (on the others each is reported as skipped).
    Owner,
}

impl Family {
    /// `"store"`, `"front"` or `"owner"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Store => "store",
            Family::Front => "front",
            Family::Owner => "owner",
        }
    }
}

/// One named behaviour of the suite.
#[derive(Clone, Copy)]
pub struct Behaviour {
    /// The behaviour's name (also its function's name).
    pub name: &'static str,
    /// Store rule or front check.
    pub family: Family,
    /// Runs the behaviour against stores from the factory.
    pub run: for<'a> fn(&'a dyn StoreFactory) -> BoxFuture<'a, CheckResult>,
}

impl fmt::Debug for Behaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Behaviour")
            .field("name", &self.name)
            .field("family", &self.family)
            .finish()
    }
}

/// How long one behaviour may run before it counts as failed (a hung store is a broken store).
pub const BEHAVIOUR_TIMEOUT: Duration = Duration::from_secs(120);

impl Behaviour {
    /// Runs the behaviour with [`BEHAVIOUR_TIMEOUT`], returning its result and how long it took.
    pub async fn check(&self, factory: &dyn StoreFactory) -> (CheckResult, Duration) {
        let started = Instant::now();
        let result = match tokio::time::timeout(BEHAVIOUR_TIMEOUT, (self.run)(factory)).await {
            Ok(result) => result,
            Err(_) => Err(Failure::new(format!(
                "did not finish within {BEHAVIOUR_TIMEOUT:?}"
            ))),
        };
        (result, started.elapsed())
    }
}

/// Every behaviour of the suite, in order: the store rules, then the owner-index rules. Each
/// behaviour file registers its own functions next to them (they are private to the file, so one
/// left out of its file's list is dead code, which the workspace's lints refuse).
pub fn behaviours() -> Vec<Behaviour> {
    behaviours::ALL
        .iter()
        .flat_map(|file| file.iter().copied())
        .collect()
}

/// Registers behaviour functions of one family: `register!(Store: a, b, c)` is a
/// `&[Behaviour]` naming each after its function.
macro_rules! register {
    ($family:ident: $($name:ident),* $(,)?) => {
        &[$($crate::Behaviour {
            name: stringify!($name),
            family: $crate::Family::$family,
            run: |factory| Box::pin($name(factory)),
        }),*]
    };
}
pub(crate) use register;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_families_follow_names() {
        let all = behaviours();
        assert!(all.len() >= 45, "{all:?}");
        let mut names: Vec<&str> = all.iter().map(|b| b.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all.len(), "duplicate behaviour names");
        for behaviour in all {
            assert_ne!(
                behaviour.family,
                Family::Front,
                "{}: front checks live with the front",
                behaviour.name
            );
            assert_eq!(
                behaviour.family == Family::Owner,
                behaviour.name.starts_with("owner_") || behaviour.name.starts_with("owners_"),
                "{}: owner-index rules are the owner* behaviours",
                behaviour.name
            );
        }
    }
}
