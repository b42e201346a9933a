//! PostgreSQL-specific behaviour: time zones, killed connections, bad input.

mod common;

use session_core::SessionStoreExt as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{PgFactory, with_param};
use conformance_tests::StoreFactory;
use session_core::Bytes;
use session_core::time::{Duration as TimeDuration, OffsetDateTime};
use session_core::{
    CreateOutcome, ErrorKind, SessionId, SessionKey, SessionStore, UpdateOutcome,
    truncate_to_millis,
};
use session_postgres::{PostgresConfig, PostgresStore};

/// Runs `body` with a factory when the server is configured (else skips loudly / fails in CI),
/// then drops the tables it made.
async fn with_factory<F, Fut>(body: F)
where
    F: FnOnce(Arc<PgFactory>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let factory = Arc::new(PgFactory::from_env());
    if factory.unavailable().is_some() {
        return;
    }
    body(Arc::clone(&factory)).await;
    factory.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_is_right_in_any_session_time_zone() {
    with_factory(|factory| async move {
        for zone in ["Pacific/Kiritimati", "Pacific/Honolulu", "Asia/Kathmandu"] {
            let store = common::connect_in_zone(factory.fresh_config(), zone)
                .await
                .unwrap();
            let shown: String = sqlx::query_scalar("SHOW TimeZone")
                .fetch_one(store.pool())
                .await
                .unwrap();
            assert_eq!(shown, zone);
            let key = SessionId::generate().key();
            let soon =
                truncate_to_millis(OffsetDateTime::now_utc() + TimeDuration::milliseconds(800));
            assert_eq!(
                store
                    .create(&key, soon, Bytes::from_static(b"tz"))
                    .await
                    .unwrap(),
                CreateOutcome::Created
            );
            let record = store
                .read(&key)
                .await
                .unwrap()
                .expect("live before its expiry");
            assert_eq!(
                record.expires_at, soon,
                "{zone}: expiry must round-trip as the same instant"
            );
            assert_eq!(
                record.expires_at.offset(),
                session_core::time::UtcOffset::UTC
            );
            tokio::time::sleep(Duration::from_millis(400)).await;
            assert!(
                store.read(&key).await.unwrap().is_some(),
                "{zone}: expired early"
            );
            tokio::time::sleep(Duration::from_millis(600)).await;
            assert!(
                store.read(&key).await.unwrap().is_none(),
                "{zone}: expired late"
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_connections_give_transient_errors_never_false_success() {
    with_factory(|factory| async move {
        let app = format!("session_kill_{}", &SessionId::generate().key().to_hex()[..8]);
        let config = factory.fresh_config().max_connections(4);
        let url = with_param(&config.url, "application_name", &app);
        let store = Arc::new(PostgresStore::connect(config.url(url)).await.unwrap());
        let admin = sqlx::PgPool::connect(factory.url()).await.unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..8)
            .map(|_| {
                let (store, stop) = (Arc::clone(&store), Arc::clone(&stop));
                tokio::spawn(async move {
                    let (mut created, mut errors) = (Vec::<SessionKey>::new(), 0u32);
                    let deadline = Instant::now() + Duration::from_secs(10);
                    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                        let key = SessionId::generate().key();
                        match store.create(&key, OffsetDateTime::now_utc() + TimeDuration::hours(1), Bytes::from_static(b"load")).await {
                            Ok(CreateOutcome::Created) => created.push(key),
                            Ok(CreateOutcome::IdTaken) => panic!("a fresh key was reported taken"),
                            Err(e) => {
                                assert!(e.is_transient(), "a killed connection gave a permanent error: {e}");
                                errors += 1;
                            }
                        }
                    }
                    (created, errors)
                })
            })
            .collect();
        let mut killed = 0i64;
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let n: i64 = sqlx::query_scalar("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1")
                .bind(&app)
                .fetch_one(&admin)
                .await
                .unwrap();
            killed += n;
        }
        stop.store(true, Ordering::Relaxed);
        let (mut created, mut errors) = (Vec::new(), 0);
        for worker in workers {
            let (c, e) = worker.await.unwrap();
            created.extend(c);
            errors += e;
        }
        assert!(killed > 0, "no connection was killed");
        println!("killed {killed} connections; {} creates acknowledged, {errors} transient errors", created.len());
        // No false success: every acknowledged create is there.
        for key in &created {
            assert!(store.read(key).await.unwrap().is_some(), "an acknowledged create is missing");
        }
        // The same store recovers by itself: after at most one failure per pooled connection,
        // operations succeed again.
        let mut failures = 0;
        let mut successes = 0;
        while successes < 100 {
            match store.read(&SessionId::generate().key()).await {
                Ok(_) => successes += 1,
                Err(e) => {
                    assert!(e.is_transient(), "{e}");
                    failures += 1;
                    assert!(failures <= 8, "the store did not recover: {e}");
                }
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configuration_and_unreachable_servers_are_clear_errors() {
    let err = PostgresStore::connect(PostgresConfig::new("postgres://user:pw@[bad-host/db"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(
        !err.to_string().contains("pw"),
        "the password leaked: {err}"
    );

    let err = PostgresStore::connect(
        PostgresConfig::new("postgres://x@127.0.0.1:5432/db").table("bad-name"),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");

    let started = Instant::now();
    let config = PostgresConfig::new("postgres://app:s3cr3t@127.0.0.1:1/db")
        .acquire_timeout(Duration::from_secs(2));
    let err = PostgresStore::connect(config).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Backend, "{err}");
    assert!(
        err.is_transient(),
        "an unreachable server should be retryable: {err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        !format!("{err} {err:?}").contains("s3cr3t"),
        "the password leaked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_database_and_missing_privileges_are_clear_errors() {
    with_factory(|factory| async move {
        let mut url = url::Url::parse(factory.url()).unwrap();
        url.set_path("/no_such_database_here");
        let err = PostgresStore::connect(PostgresConfig::new(url.as_str())).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{err}");

        let admin = sqlx::PgPool::connect(factory.url()).await.unwrap();
        sqlx::query("DO $$ BEGIN CREATE ROLE session_noperm LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
            .execute(&admin)
            .await
            .unwrap();
        let mut url = url::Url::parse(factory.url()).unwrap();
        url.set_username("session_noperm").unwrap();
        let config = factory.fresh_config().url(url.to_string()).schema("session_noperm_schema");
        let err = PostgresStore::connect(config).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Backend, "{err}");
        assert!(!err.is_transient());
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'session_noperm_schema')")
            .fetch_one(&admin)
            .await
            .unwrap();
        assert!(!exists, "a schema was created without the privilege to");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_rows_are_decode_errors_and_nothing_else_changes() {
    with_factory(|factory| async move {
        let config = factory.fresh_config();
        let table = format!("\"{}\".\"{}\"", config.schema, config.table);
        let store = PostgresStore::connect(config).await.unwrap();
        let keys: Vec<SessionKey> = (0..3).map(|_| SessionId::generate().key()).collect();
        for key in &keys {
            let _ = store
                .create(
                    key,
                    OffsetDateTime::now_utc() + TimeDuration::hours(1),
                    Bytes::from_static(b"fine"),
                )
                .await
                .unwrap();
        }
        sqlx::query(&format!("UPDATE {table} SET version = -7 WHERE key = $1"))
            .bind(&keys[0].as_bytes()[..])
            .execute(store.pool())
            .await
            .unwrap();
        sqlx::query(&format!(
            "UPDATE {table} SET expires_at = 'infinity' WHERE key = $1"
        ))
        .bind(&keys[1].as_bytes()[..])
        .execute(store.pool())
        .await
        .unwrap();
        for key in &keys[..2] {
            let err = store.read(key).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Decode, "{err}");
        }
        assert_eq!(
            store.read(&keys[2]).await.unwrap().unwrap().data.to_vec(),
            b"fine".to_vec()
        );
        let version: i64 =
            sqlx::query_scalar(&format!("SELECT version FROM {table} WHERE key = $1"))
                .bind(&keys[0].as_bytes()[..])
                .fetch_one(store.pool())
                .await
                .unwrap();
        assert_eq!(version, -7, "reading a corrupt row changed it");
        // Found by the postgres_rows fuzz target: a version at the top of BIGINT has no
        // successor; a corrupt record (Decode), never a backend failure, and nothing changes.
        sqlx::query(&format!(
            "UPDATE {table} SET version = 9223372036854775807 WHERE key = $1"
        ))
        .bind(&keys[2].as_bytes()[..])
        .execute(store.pool())
        .await
        .unwrap();
        let later = OffsetDateTime::now_utc() + TimeDuration::hours(1);
        for (current, expected) in [(&keys[2], i64::MAX as u64), (&keys[0], 0)] {
            let err = store
                .update(current, &keys[2], expected, later, Bytes::from_static(b"x"))
                .await;
            match expected {
                0 => assert!(matches!(err, Ok(UpdateOutcome::Conflict)), "{err:?}"),
                _ => assert_eq!(err.unwrap_err().kind(), ErrorKind::Decode),
            }
        }
        assert_eq!(
            store.read(&keys[2]).await.unwrap().unwrap().data.to_vec(),
            b"fine".to_vec()
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_migrations_and_a_foreign_table() {
    with_factory(|factory| async move {
        let config = factory.fresh_config();
        let opening: Vec<_> = (0..6)
            .map(|_| tokio::spawn(PostgresStore::connect(config.clone())))
            .collect();
        for store in opening {
            store
                .await
                .unwrap()
                .expect("concurrent migrations all succeed");
        }
        let foreign = factory.fresh_config();
        let admin = sqlx::PgPool::connect(factory.url()).await.unwrap();
        sqlx::query(&format!(
            "CREATE SCHEMA IF NOT EXISTS \"{}\"",
            foreign.schema
        ))
        .execute(&admin)
        .await
        .unwrap();
        sqlx::query(&format!(
            "CREATE TABLE \"{}\".\"{}\" (id int PRIMARY KEY)",
            foreign.schema, foreign.table
        ))
        .execute(&admin)
        .await
        .unwrap();
        let err = PostgresStore::connect(foreign).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_from_before_the_owner_index_is_migrated() {
    use session_core::{Owner, OwnerChange, Ownership, WriteOptions};
    with_factory(|factory| async move {
        let config = factory.fresh_config();
        let admin = sqlx::PgPool::connect(factory.url()).await.unwrap();
        let t = format!("\"{}\".\"{}\"", config.schema, config.table);
        // What the store created before the owner index: no owner columns, no owner index.
        for statement in [
            format!("CREATE SCHEMA IF NOT EXISTS \"{}\"", config.schema),
            format!(
                "CREATE TABLE {t} (key bytea PRIMARY KEY, expires_at timestamptz NOT NULL, \
                 version bigint NOT NULL, data bytea NOT NULL)"
            ),
            format!(
                "CREATE INDEX \"{}_expires_at\" ON {t} (expires_at)",
                config.table
            ),
        ] {
            sqlx::query(&statement).execute(&admin).await.unwrap();
        }
        let key = SessionId::generate().key();
        sqlx::query(&format!(
            "INSERT INTO {t} VALUES ($1, now() + interval '1 hour', 3, '\\x0102')"
        ))
        .bind(&key.as_bytes()[..])
        .execute(&admin)
        .await
        .unwrap();
        let store = factory.connect(config.clone()).await.unwrap();
        let record = store.read(&key).await.unwrap().unwrap();
        assert_eq!((record.version, &record.data[..]), (3, &[1u8, 2][..]));
        let alice = Owner::new("alice").unwrap();
        assert!(store.sessions_of(&alice).await.unwrap().is_empty());
        let outcome = store
            .update_opts(
                &key,
                &key,
                3,
                OffsetDateTime::now_utc() + TimeDuration::hours(1),
                Bytes::from_static(b"x"),
                &WriteOptions::new().with_owner(OwnerChange::Set(
                    Ownership::new(alice.clone(), "migrated").unwrap(),
                )),
            )
            .await
            .unwrap();
        assert_eq!(outcome, UpdateOutcome::Updated { version: 4 });
        assert_eq!(store.sessions_of(&alice).await.unwrap().len(), 1);
        assert_eq!(store.revoke_owner(&alice, None).await.unwrap(), 1);
        let index: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(format!("\"{}\".\"{}_owner\"", config.schema, config.table))
            .fetch_one(&admin)
            .await
            .unwrap();
        assert!(index, "the owner index was made");
    })
    .await;
}
