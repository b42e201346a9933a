//! [`Suite`]: the behaviours as the trials of a test binary (`harness = false`), one named trial
//! per behaviour, through `libtest-mimic` (so `cargo test` and `cargo nextest` list, filter and
//! run them like `#[test]`s).

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use libtest_mimic::{Arguments, Failed, Trial};

use crate::{Behaviour, CheckResult, Family, StoreFactory, behaviours};

/// The trials of one test binary. Each trial runs one behaviour on a fresh multi-threaded
/// runtime against stores from a fresh factory.
///
/// ```no_run
/// // The `main` of tests/conformance.rs, a test target with `harness = false`:
/// use session_memory::MemoryStore;
///
/// conformance_tests::Suite::new()
///     .stores("", || conformance_tests::factory(|| async { Ok(MemoryStore::new()) }))
///     .run();
/// ```
#[derive(Default)]
pub struct Suite {
    trials: Vec<Trial>,
}

impl std::fmt::Debug for Suite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Suite")
            .field("trials", &self.trials.len())
            .finish()
    }
}

impl Suite {
    /// No trials yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// One trial per behaviour of the suite ([`behaviours()`](fn@crate::behaviours)), named
    /// `prefix::behaviour` (just `behaviour` when `prefix` is empty), each against a factory
    /// from `make`. The owner-index behaviours are skipped, loudly, on a store whose
    /// capabilities say it keeps none.
    #[must_use]
    pub fn stores<F, M>(self, prefix: &str, make: M) -> Self
    where
        F: StoreFactory + 'static,
        M: Fn() -> F + Send + Sync + 'static,
    {
        self.behaviours(prefix, &behaviours(), make)
    }

    /// One trial per entry of `list` (the suite's behaviours, or checks of another crate such as
    /// the front's), named and run as in [`stores`](Self::stores).
    #[must_use]
    pub fn behaviours<F, M>(mut self, prefix: &str, list: &[Behaviour], make: M) -> Self
    where
        F: StoreFactory + 'static,
        M: Fn() -> F + Send + Sync + 'static,
    {
        let make = Arc::new(make);
        for behaviour in list {
            let name = if prefix.is_empty() {
                behaviour.name.to_owned()
            } else {
                format!("{prefix}::{}", behaviour.name)
            };
            let (make, behaviour) = (Arc::clone(&make), *behaviour);
            let shown = name.clone();
            self.trials.push(
                Trial::test(name, move || {
                    run_behaviour(&shown, || make(), behaviour.run).map_err(Failed::from)
                })
                .with_kind(behaviour.family.as_str()),
            );
        }
        self
    }

    /// Runs the trials the command line selects (`cargo test`'s and nextest's arguments) and
    /// exits with their verdict.
    pub fn run(self) -> ! {
        libtest_mimic::run(&Arguments::from_args(), self.trials).exit()
    }
}

/// Runs one behaviour on a fresh multi-threaded runtime; the failure as text.
fn run_behaviour<F, M>(
    name: &str,
    make: M,
    run: for<'a> fn(&'a dyn StoreFactory) -> BoxFuture<'a, CheckResult>,
) -> Result<(), String>
where
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
        return Ok(());
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
    match result {
        Ok(()) => Ok(()),
        Err(failure) if failure.is_not_applicable() => {
            eprintln!("SKIPPED: behaviour `{name}`: {failure}");
            Ok(())
        }
        Err(failure) => Err(format!("behaviour `{name}` failed: {failure}")),
    }
}

/// Runs one behaviour on a fresh multi-threaded runtime and panics with its failure: for a
/// plain `#[test]` that runs a single behaviour.
pub fn run_test<F, M>(
    name: &str,
    make: M,
    run: for<'a> fn(&'a dyn StoreFactory) -> BoxFuture<'a, CheckResult>,
) where
    F: StoreFactory,
    M: FnOnce() -> F,
{
    if let Err(failure) = run_behaviour(name, make, run) {
        panic!("{failure}");
    }
}
