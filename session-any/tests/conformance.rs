//! The whole conformance suite against each backend, every store built from a URL through
//! `session_any` (so parsing, settings and dispatch are what is tested).

use session_any::testing::UrlFactory;

mod memory {
    use super::*;
    conformance_tests::suite!(UrlFactory::new("memory://").expect("a valid URL"));
}

mod sqlite_temporary {
    use super::*;
    conformance_tests::suite!(UrlFactory::new("sqlite::memory:").expect("a valid URL"));
}

mod sqlite_full_durability {
    use super::*;
    conformance_tests::suite!(
        UrlFactory::new("sqlite::memory:?durability=full&busy_timeout_ms=5000")
            .expect("a valid URL")
    );
}

mod postgres {
    use super::*;
    conformance_tests::suite!(session_test_support::from_env(
        "SESSION_TEST_POSTGRES_URL",
        UrlFactory::new,
        UrlFactory::unavailable
    ));
}

mod redis {
    use super::*;
    conformance_tests::suite!(session_test_support::from_env(
        "SESSION_TEST_REDIS_URL",
        UrlFactory::new,
        UrlFactory::unavailable
    ));
}

mod mysql {
    use super::*;
    conformance_tests::suite!(session_test_support::from_env(
        session_test_support::MYSQL,
        UrlFactory::new,
        UrlFactory::unavailable
    ));
}

/// The owner-index behaviours on every backend, through `AnyStore`.
mod owners {
    use super::*;

    mod memory {
        use super::*;
        conformance_tests::owner_suite!(UrlFactory::new("memory://").expect("a valid URL"));
    }

    mod sqlite {
        use super::*;
        conformance_tests::owner_suite!(UrlFactory::new("sqlite::memory:").expect("a valid URL"));
    }

    mod postgres {
        use super::*;
        conformance_tests::owner_suite!(session_test_support::from_env(
            "SESSION_TEST_POSTGRES_URL",
            UrlFactory::new,
            UrlFactory::unavailable
        ));
    }

    mod redis {
        use super::*;
        conformance_tests::owner_suite!(session_test_support::from_env(
            "SESSION_TEST_REDIS_URL",
            UrlFactory::new,
            UrlFactory::unavailable
        ));
    }

    mod mysql {
        use super::*;
        conformance_tests::owner_suite!(session_test_support::from_env(
            session_test_support::MYSQL,
            UrlFactory::new,
            UrlFactory::unavailable
        ));
    }
}
