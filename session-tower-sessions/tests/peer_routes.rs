//! tower-sessions' own route tests (`tests/common`, reproduced with its license) against the
//! adapter over each backend: memory, SQLite, PostgreSQL and Redis. The PostgreSQL and Redis
//! stores share one namespace (`tower_routes`) across runs: each test's sessions have random
//! ids, and the peer's tests set a one-hour expiry at most.

#[macro_use]
mod common;

use std::sync::Arc;

use axum::Router;
use session_manager::time::Duration;
use session_manager::{BackendConfig, SessionStore};
use session_tower_sessions::TowerStore;
use tower_sessions::SessionManagerLayer;

/// The peer's app over `store`, as its own memory-store tests build it.
fn app_over(
    store: Arc<dyn SessionStore>,
    max_age: Option<Duration>,
    domain: Option<String>,
) -> Router {
    let session_manager = SessionManagerLayer::new(TowerStore::new(store)).with_secure(true);
    common::build_app(session_manager, max_age, domain)
}

/// The store of a server backend in the shared `tower_routes` namespace; without the server
/// (and outside CI, where that fails) the test says so and runs over the memory store.
async fn server_store<C: BackendConfig>(var: &str) -> Arc<dyn SessionStore> {
    match session_test_support::server_url(var) {
        Some(url) => Arc::new(
            C::from_url(&url)
                .unwrap()
                .isolated("tower_routes")
                .unwrap()
                .open()
                .await
                .unwrap(),
        ),
        None => {
            eprintln!(
                "SKIPPED: {var} is not set; this route test ran over the memory store instead"
            );
            Arc::new(session_memory::MemoryStore::new())
        }
    }
}

mod memory {
    use super::*;

    async fn app(max_age: Option<Duration>, domain: Option<String>) -> Router {
        app_over(
            Arc::new(session_memory::MemoryStore::new()),
            max_age,
            domain,
        )
    }

    route_tests!(app);
}

mod sqlite {
    use super::*;

    async fn app(max_age: Option<Duration>, domain: Option<String>) -> Router {
        let store = session_sqlite::SqliteConfig::temporary()
            .unwrap()
            .open()
            .await
            .unwrap();
        app_over(Arc::new(store), max_age, domain)
    }

    route_tests!(app);
}

mod postgres {
    use super::*;

    async fn app(max_age: Option<Duration>, domain: Option<String>) -> Router {
        let store =
            server_store::<session_postgres::PostgresConfig>(session_test_support::POSTGRES).await;
        app_over(store, max_age, domain)
    }

    route_tests!(app);
}

mod redis {
    use super::*;

    async fn app(max_age: Option<Duration>, domain: Option<String>) -> Router {
        let store = server_store::<session_redis::RedisConfig>(session_test_support::REDIS).await;
        app_over(store, max_age, domain)
    }

    route_tests!(app);
}
