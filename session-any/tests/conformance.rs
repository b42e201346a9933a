//! The whole conformance suite and the front's checks against each backend, every store built
//! from a URL through `session_any` (so parsing, settings and dispatch are what is tested).

use session_any::testing::UrlFactory;
use session_manager::testing::FRONT_CHECKS;

/// The factory of the server a variable names, or an unavailable one (a failure under CI).
fn from_env(variable: &'static str) -> impl Fn() -> UrlFactory + Send + Sync + Clone + 'static {
    move || session_test_support::from_env(variable, UrlFactory::new, UrlFactory::unavailable)
}

fn url(url: &'static str) -> impl Fn() -> UrlFactory + Send + Sync + Clone + 'static {
    move || UrlFactory::new(url).expect("a valid URL")
}

/// Makes the factory of one backend.
type Make = Box<dyn Fn() -> UrlFactory + Send + Sync>;

fn main() {
    let mut suite = conformance_tests::Suite::new();
    let groups: Vec<(&str, Make)> = vec![
        ("memory", Box::new(url("memory://"))),
        ("sqlite_temporary", Box::new(url("sqlite::memory:"))),
        (
            "sqlite_full_durability",
            Box::new(url("sqlite::memory:?durability=full&busy_timeout=5000")),
        ),
        ("postgres", Box::new(from_env("SESSION_TEST_POSTGRES_URL"))),
        ("redis", Box::new(from_env("SESSION_TEST_REDIS_URL"))),
        ("mysql", Box::new(from_env(session_test_support::MYSQL))),
    ];
    for (name, make) in groups {
        let make = std::sync::Arc::new(make);
        let again = std::sync::Arc::clone(&make);
        suite = suite
            .stores(name, move || make())
            .behaviours(name, FRONT_CHECKS, move || again());
    }
    suite.run();
}
