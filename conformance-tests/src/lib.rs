#![doc = include_str!("../README.md")]

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use session_manager::{Error, OwnerIndex, SessionStore};

pub mod behaviours;
mod namespaces;
mod support;

pub use namespaces::{NamespaceFactory, Namespaces, fresh_namespace};

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

    /// Two instances over one fresh namespace as [`OwnerIndex`]es, for the owner behaviours
    /// ([`owner_suite!`]); `None` (the default) when the store has no owner index.
    async fn owner_pair(
        &self,
    ) -> Result<Option<(Arc<dyn OwnerIndex>, Arc<dyn OwnerIndex>)>, Error> {
        Ok(None)
    }

    /// `true` when the backend may drop expired records by itself, before any `delete_expired`
    /// (Redis's own expiry, an in-process sweep). `delete_expired` may then count fewer records
    /// than were expired (it did not find the others), never more; for other stores the count
    /// must be exact. That expired records are absent and live ones stay is checked either way.
    fn expires_by_itself(&self) -> bool {
        false
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

/// Why a behaviour failed: what was expected, and the store error if one caused it.
pub struct Failure {
    message: String,
    error: Option<Error>,
}

impl Failure {
    /// A failure with a message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            error: None,
        }
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
    /// A rule of the optional owner index ([`OwnerIndex`]), run on stores that have one.
    Owner,
}

impl Family {
    /// `"store"` or `"front"`.
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
    /// The behaviour's name (also its function's name in [`behaviours`]).
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

/// Lists every behaviour name once (store rules, then front checks), and hands the list to a
/// macro. A `pub async fn` of `behaviours` that is missing here fails the test
/// `every_behaviour_function_is_registered`.
#[doc(hidden)]
#[macro_export]
macro_rules! __with_behaviours {
    ($callback:ident ! ( $($args:tt)* )) => {
        $crate::$callback! { ($($args)*)
            store: [
                // basic
                create_read_round_trip,
                create_on_live_key_is_id_taken,
                create_over_expired_record,
                create_always_writes_version_one,
                read_missing_or_expired_is_none,
                update_in_place,
                update_with_stale_version_is_conflict,
                update_of_absent_previous_is_not_found,
                absent_previous_is_never_conflict,
                update_and_rotation_keep_data_exactly,
                touch_moves_expiry_only,
                touch_of_absent_creates_nothing,
                delete_is_idempotent_and_final,
                keys_are_whole,
                ten_thousand_sessions,
                // rotation
                rotation_moves_the_record,
                rotation_onto_live_key_is_id_taken,
                rotation_onto_expired_key,
                // expiry
                expires_at_now_is_absent,
                expiry_in_real_time,
                millisecond_precision_everywhere,
                expiry_boundaries_are_exact,
                delete_expired_purges_only_expired,
                delete_expired_at_scale_is_exact,
                // namespaces
                clear_only_this_namespace,
                namespaces_are_whole_for_every_operation,
                clear_is_complete_at_scale,
                // races
                race_concurrent_creates,
                race_creates_over_expired_record,
                race_concurrent_rotations,
                race_concurrent_updates,
                race_cas_counter,
                race_touch_against_delete,
                race_touch_against_update,
                race_crossed_rotations_never_deadlock,
                readers_never_see_both_or_neither,
                writes_are_visible_across_instances,
                // histories
                histories_are_linearizable,
            ],
            front: [
                manager_retries_then_reports_collisions,
                manager_cycle_id_keeps_data_and_deadline,
                manager_rejects_invalid_ids_before_the_store,
                manager_rejects_oversized_data,
                manager_never_resurrects,
            ],
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __behaviour_list {
    (() store: [$($store:ident),* $(,)?], front: [$($front:ident),* $(,)?] $(,)?) => {
        /// Every behaviour of the suite, in order: the store rules, then the front checks.
        pub const BEHAVIOURS: &[Behaviour] = &[
            $(Behaviour {
                name: stringify!($store),
                family: Family::Store,
                run: |factory| Box::pin(behaviours::$store(factory)),
            },)*
            $(Behaviour {
                name: stringify!($front),
                family: Family::Front,
                run: |factory| Box::pin(behaviours::$front(factory)),
            },)*
        ];
    };
}

__with_behaviours!(__behaviour_list!());

/// Lists every owner-index behaviour once and hands the list to a macro (see
/// [`OWNER_BEHAVIOURS`] and [`owner_suite!`]).
#[doc(hidden)]
#[macro_export]
macro_rules! __with_owner_behaviours {
    ($callback:ident ! ( $($args:tt)* )) => {
        $crate::$callback! { ($($args)*)
            owner: [
                owner_sessions_are_listed,
                owner_outcomes_change_nothing_else,
                owner_follows_rotation_and_touch,
                owner_listing_hides_ended_sessions,
                owners_are_whole,
                owner_revoke_keeps_exactly_except,
                owner_index_stays_in_its_namespace,
                owner_race_revoke_against_creates_and_rotations,
                owner_race_concurrent_revokes,
                owner_front_login_lists_and_revokes,
            ],
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __owner_behaviour_list {
    (() owner: [$($owner:ident),* $(,)?] $(,)?) => {
        /// The owner-index behaviours ([`Family::Owner`]), for stores that implement
        /// [`OwnerIndex`](session_manager::OwnerIndex); their factory answers
        /// [`StoreFactory::owner_pair`].
        pub const OWNER_BEHAVIOURS: &[Behaviour] = &[
            $(Behaviour {
                name: stringify!($owner),
                family: Family::Owner,
                run: |factory| Box::pin(behaviours::$owner(factory)),
            },)*
        ];
    };
}

__with_owner_behaviours!(__owner_behaviour_list!());

#[doc(hidden)]
#[macro_export]
macro_rules! __owner_suite_tests {
    (($factory:expr) owner: [$($owner:ident),* $(,)?] $(,)?) => {
        $crate::__suite_tests!(@each ($factory) $($owner,)*);
    };
}

/// Expands to one `#[test]` per owner-index behaviour ([`OWNER_BEHAVIOURS`]), like
/// [`suite!`]; `$factory` must answer [`StoreFactory::owner_pair`].
///
/// ```
/// mod owners {
///     use conformance_tests::NamespaceFactory;
///     use session_memory::MemoryConfig;
///     conformance_tests::owner_suite!(NamespaceFactory::new(MemoryConfig::default()));
/// }
/// ```
#[macro_export]
macro_rules! owner_suite {
    ($factory:expr) => {
        $crate::__with_owner_behaviours!(__owner_suite_tests!($factory));
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __suite_tests {
    (($factory:expr) store: [$($store:ident),* $(,)?], front: [$($front:ident),* $(,)?] $(,)?) => {
        $crate::__suite_tests!(@each ($factory) $($store,)* $($front,)*);
    };
    (@each ($factory:expr) $($name:ident,)*) => {$(
        #[test]
        fn $name() {
            $crate::run_test(stringify!($name), || $factory, |factory| {
                ::std::boxed::Box::pin($crate::behaviours::$name(factory))
            });
        }
    )*};
}

/// Expands to one `#[test]` per behaviour, named after it, each running against stores from
/// `$factory` (an expression evaluated afresh in every test, whose value implements
/// [`StoreFactory`]).
///
/// ```
/// mod conformance {
///     use session_memory::MemoryStore;
///     conformance_tests::suite!(conformance_tests::factory(|| async { Ok(MemoryStore::new()) }));
/// }
/// ```
#[macro_export]
macro_rules! suite {
    ($factory:expr) => {
        $crate::__with_behaviours!(__suite_tests!($factory));
    };
}

/// Runs one behaviour on a fresh multi-threaded runtime and panics with its failure.
/// Used by [`suite!`]; call it yourself to run a behaviour from a plain `#[test]`.
pub fn run_test<F, M>(
    name: &str,
    make: M,
    run: for<'a> fn(&'a dyn StoreFactory) -> BoxFuture<'a, CheckResult>,
) where
    F: StoreFactory,
    M: FnOnce() -> F,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let factory = runtime.block_on(async { make() });
    if let Some(reason) = factory.unavailable() {
        // Whether a missing server may be skipped is the test tree's policy, decided where its
        // factory is made (under CI the workspace's factories fail instead of being unavailable).
        eprintln!("SKIPPED: behaviour `{name}`: {reason}");
        return;
    }
    let behaviour = Behaviour {
        name: "",
        family: Family::Store,
        run,
    };
    let (result, _) = runtime.block_on(async {
        let outcome = behaviour.check(&factory).await;
        factory.finish().await;
        outcome
    });
    // Tasks of a broken store may be stuck for good (a deadlock): do not wait for them.
    runtime.shutdown_timeout(Duration::from_secs(1));
    if let Err(failure) = result {
        panic!("behaviour `{name}` failed: {failure}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `pub async fn name(factory: &dyn StoreFactory) -> CheckResult` of the behaviour files
    /// is in [`BEHAVIOURS`] (so in [`suite!`] and `sessionctl check`), and every entry is unique.
    #[test]
    fn every_behaviour_function_is_registered() {
        let mut found = Vec::new();
        for (file, source) in behaviours::SOURCES {
            for item in source.split("\npub async fn ").skip(1) {
                let (name, rest) = item.split_once('(').expect("a parameter list");
                let params: String = rest
                    .split(')')
                    .next()
                    .unwrap_or_default()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ");
                if params.trim_end_matches(',') == "factory: &dyn StoreFactory" {
                    found.push((*file, name.to_owned()));
                }
            }
        }
        assert!(found.len() >= 40, "{found:?}");
        let all: Vec<&Behaviour> = BEHAVIOURS.iter().chain(OWNER_BEHAVIOURS).collect();
        for (file, name) in &found {
            assert!(
                all.iter().any(|b| b.name == name),
                "behaviour `{name}` of {file}.rs is not in __with_behaviours! or __with_owner_behaviours!"
            );
        }
        assert_eq!(found.len(), all.len(), "listed but not found: {all:?}");
        for behaviour in all {
            let front = behaviour.name.starts_with("manager_");
            assert_eq!(
                behaviour.family == Family::Front,
                front,
                "{}: front checks are the manager_* behaviours",
                behaviour.name
            );
            let owner = behaviour.name.starts_with("owner");
            assert_eq!(
                behaviour.family == Family::Owner,
                owner,
                "{}: owner-index rules are the owner* behaviours",
                behaviour.name
            );
        }
    }
}
