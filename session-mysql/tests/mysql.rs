//! MySQL/MariaDB-specific behaviour: the session time zone really is applied (and changes
//! nothing), killed connections under load, bad configuration, unknown database, missing
//! privileges, migrate=false.

mod common;

use session_core::SessionStoreExt as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use conformance_tests::NamespaceFactory;
use session_core::Bytes;
use session_core::time::{Duration as TimeDuration, OffsetDateTime};
use session_core::{
    BackendConfig, CreateOutcome, ErrorKind, SessionId, SessionKey, SessionStore, StoreAdmin,
    UpdateOutcome, truncate_to_millis,
};
use session_mysql::{MysqlConfig, MysqlStore};

/// Runs `body` with the test server's factory (skipped loudly, or failing under CI, without
/// one), then drops the tables it made.
async fn with_factory<F, Fut>(body: F)
where
    F: FnOnce(Arc<NamespaceFactory<MysqlConfig>>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let factory = Arc::new(common::factory());
    if factory.base().is_none() {
        return;
    }
    body(Arc::clone(&factory)).await;
    factory.remove_namespaces().await.unwrap();
}

fn later() -> OffsetDateTime {
    OffsetDateTime::now_utc() + TimeDuration::hours(1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_is_right_in_any_session_time_zone() {
    for zone in ["+13:00", "-10:00", "+05:45"] {
        let factory = common::in_time_zone(zone);
        let Some(_) = factory.base() else { return };
        let store = factory.open_fresh().await.unwrap();
        let shown: String = sqlx::query_scalar("SELECT @@session.time_zone")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(shown, zone, "the connection's time zone was not applied");
        let key = SessionId::generate().key();
        let soon = truncate_to_millis(OffsetDateTime::now_utc() + TimeDuration::milliseconds(800));
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
        assert_eq!(record.expires_at, soon, "{zone}: the expiry moved");
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert!(
            store.read(&key).await.unwrap().is_none(),
            "{zone}: live after its expiry"
        );
        factory.remove_namespaces().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_connections_give_transient_errors_never_false_success() {
    with_factory(|factory| async move {
        let base = factory.base().unwrap().clone().max_connections(4);
        // The store connects as a user of its own, so that only its connections are killed
        // (other tests run against the same server at the same time).
        let admin = sqlx::MySqlPool::connect(&base.url).await.unwrap();
        let database: String = sqlx::query_scalar("SELECT DATABASE()")
            .fetch_one(&admin)
            .await
            .unwrap();
        for host in ["%", "localhost"] {
            sqlx::query(&format!("CREATE USER IF NOT EXISTS 'session_kill'@'{host}'"))
                .execute(&admin)
                .await
                .unwrap();
            sqlx::query(&format!("GRANT ALL ON `{database}`.* TO 'session_kill'@'{host}'"))
                .execute(&admin)
                .await
                .unwrap();
        }
        let mut url = url::Url::parse(&base.url).unwrap();
        url.set_username("session_kill").unwrap();
        let _ = url.set_password(None);
        let namespace = conformance_tests::fresh_namespace();
        let config = base.isolated(&namespace).unwrap();
        let store = Arc::new(
            MysqlStore::connect(config.url(url.to_string()))
                .await
                .unwrap(),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..8)
            .map(|_| {
                let (store, stop) = (Arc::clone(&store), Arc::clone(&stop));
                tokio::spawn(async move {
                    let (mut created, mut errors) = (Vec::<SessionKey>::new(), 0u32);
                    let deadline = Instant::now() + Duration::from_secs(10);
                    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                        let key = SessionId::generate().key();
                        match store.create(&key, later(), Bytes::from_static(b"load")).await {
                            Ok(CreateOutcome::Created) => created.push(key),
                            Ok(CreateOutcome::IdTaken) => panic!("a fresh key was reported taken"),
                            Err(e) => {
                                assert!(
                                    e.is_transient(),
                                    "a killed connection gave a permanent error: {e}"
                                );
                                errors += 1;
                            }
                        }
                    }
                    (created, errors)
                })
            })
            .collect();
        let mut killed = 0;
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            // Every connection of the store's user: the store's pool.
            let ids: Vec<i64> = sqlx::query_scalar(
                "SELECT CAST(id AS SIGNED) FROM information_schema.processlist WHERE user = 'session_kill'",
            )
            .fetch_all(&admin)
            .await
            .unwrap();
            for id in ids {
                if sqlx::query(&format!("KILL {id}")).execute(&admin).await.is_ok() {
                    killed += 1;
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        let (mut created, mut errors) = (Vec::new(), 0);
        for worker in workers {
            let (c, e) = worker.await.unwrap();
            created.extend(c);
            errors += e;
        }
        assert!(killed > 0, "no connection was killed");
        println!(
            "killed {killed} connections; {} creates acknowledged, {errors} transient errors",
            created.len()
        );
        for key in &created {
            assert!(
                store.read(key).await.unwrap().is_some(),
                "an acknowledged create is missing"
            );
        }
        // The store recovers by itself.
        let (mut failures, mut successes) = (0, 0);
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
        store.drop_namespace().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configuration_and_unreachable_servers_are_clear_errors() {
    let err = MysqlStore::connect(MysqlConfig::new("mysql://user:pw@[bad-host/db"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(
        !err.to_string().contains("pw@"),
        "the password leaked: {err}"
    );

    let err =
        MysqlStore::connect(MysqlConfig::new("mysql://x@127.0.0.1:3306/db").table("bad-name"))
            .await
            .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");

    let started = Instant::now();
    let config = MysqlConfig::new("mysql://app:s3cr3t@127.0.0.1:1/db")
        .acquire_timeout(Duration::from_secs(2));
    let err = MysqlStore::connect(config.clone()).await.unwrap_err();
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

    // Lazy: opens at once, operations fail transiently until the server is there.
    let store = MysqlStore::connect(config.lazy(true).operation_timeout(Duration::from_secs(3)))
        .await
        .unwrap();
    let err = store.read(&SessionId::generate().key()).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_database_missing_privileges_and_migrate_false_are_clear_errors() {
    with_factory(|factory| async move {
        let base = factory.base().unwrap().clone();
        let mut url = url::Url::parse(&base.url).unwrap();
        url.set_path("/no_such_database_here");
        let err = MysqlStore::connect(MysqlConfig::new(url.as_str())).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{err}");

        // A user without any privilege on the database.
        let admin = sqlx::MySqlPool::connect(&base.url).await.unwrap();
        sqlx::query("CREATE USER IF NOT EXISTS 'session_noperm'@'%'")
            .execute(&admin)
            .await
            .unwrap();
        sqlx::query("CREATE USER IF NOT EXISTS 'session_noperm'@'localhost'")
            .execute(&admin)
            .await
            .unwrap();
        let mut url = url::Url::parse(&base.url).unwrap();
        url.set_username("session_noperm").unwrap();
        let _ = url.set_password(None);
        let err = MysqlStore::connect(MysqlConfig::new(url.as_str())).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{err}");
        assert!(!err.is_transient());

        // migrate=false and no table: a Config error, and no table is created.
        let namespace = conformance_tests::fresh_namespace();
        let config = base.isolated(&namespace).unwrap().migrate(false);
        let err = MysqlStore::connect(config).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{err}");
        assert!(err.to_string().contains("migrate=false"), "{err}");
        let tables: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?",
        )
        .bind(&namespace)
        .fetch_one(&admin)
        .await
        .unwrap();
        assert_eq!(tables, 0, "migrate=false created the table");

        // A foreign table of that name: a Config error naming the layout, nothing changed.
        sqlx::query(&format!("CREATE TABLE `{namespace}` (id INT PRIMARY KEY)"))
            .execute(&admin)
            .await
            .unwrap();
        let err = MysqlStore::connect(base.isolated(&namespace).unwrap()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{err}");
        assert!(err.to_string().contains("another layout"), "{err}");
        sqlx::query(&format!("DROP TABLE `{namespace}`"))
            .execute(&admin)
            .await
            .unwrap();
    })
    .await;
}

/// Found by the mysql_rows fuzz target: a live row with a negative version made `create`
/// fail with a `Backend` error (`LAST_INSERT_ID` of a negative number is out of range), and a
/// version at the top of BIGINT has no successor. Both are corrupt records: `Decode`, and
/// nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_versions_are_decode_errors_and_nothing_changes() {
    with_factory(|factory| async move {
        let table = conformance_tests::fresh_namespace();
        let store = factory.open(&table).await.unwrap();
        let keys: Vec<SessionKey> = (0..2).map(|_| SessionId::generate().key()).collect();
        for key in &keys {
            assert_eq!(
                store
                    .create(key, later(), Bytes::from_static(b"fine"))
                    .await
                    .unwrap(),
                CreateOutcome::Created
            );
        }
        for (key, version) in keys.iter().zip([-3_i64, i64::MAX]) {
            sqlx::query(&format!("UPDATE `{table}` SET version = ? WHERE k = ?"))
                .bind(version)
                .bind(&key.as_bytes()[..])
                .execute(store.pool())
                .await
                .unwrap();
        }
        let err = store
            .create(&keys[0], later(), Bytes::from_static(b"new"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Decode, "{err}");
        let err = store
            .update(
                &keys[1],
                &keys[1],
                i64::MAX as u64,
                later(),
                Bytes::from_static(b"x"),
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Decode, "{err}");
        assert!(matches!(
            store
                .update(&keys[1], &keys[1], 1, later(), Bytes::from_static(b"x"))
                .await
                .unwrap(),
            UpdateOutcome::Conflict
        ));
        for (key, version) in keys.iter().zip([-3_i64, i64::MAX]) {
            let (stored, data): (i64, Vec<u8>) =
                sqlx::query_as(&format!("SELECT version, data FROM `{table}` WHERE k = ?"))
                    .bind(&key.as_bytes()[..])
                    .fetch_one(store.pool())
                    .await
                    .unwrap();
            assert_eq!((stored, &data[..]), (version, &b"fine"[..]));
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_from_before_the_owner_index_is_migrated() {
    use session_core::{Owner, OwnerChange, Ownership, WriteOptions};
    with_factory(|factory| async move {
        let table = conformance_tests::fresh_namespace();
        let base = factory.base().unwrap().clone();
        let admin = sqlx::MySqlPool::connect(&base.url).await.unwrap();
        // What the store created before the owner index.
        sqlx::query(&format!(
            "CREATE TABLE `{table}` (k BINARY(32) NOT NULL PRIMARY KEY, expires_at BIGINT NOT NULL, \
             version BIGINT NOT NULL, data LONGBLOB NOT NULL, \
             INDEX `{table}_expires_at` (expires_at)) ENGINE=InnoDB"
        ))
        .execute(&admin)
        .await
        .unwrap();
        let key = SessionId::generate().key();
        sqlx::query(&format!(
            "INSERT INTO `{table}` VALUES (?, ?, 3, x'0102')"
        ))
        .bind(&key.as_bytes()[..])
        .bind(session_core::unix_millis(later()))
        .execute(&admin)
        .await
        .unwrap();
        // Several instances migrating at once.
        let opening: Vec<_> = (0..4)
            .map(|_| {
                let factory = Arc::clone(&factory);
                let table = table.clone();
                tokio::spawn(async move { factory.open(&table).await })
            })
            .collect();
        let mut stores = Vec::new();
        for store in opening {
            stores.push(store.await.unwrap().expect("concurrent migrations succeed"));
        }
        let store = &stores[0];
        let record = store.read(&key).await.unwrap().unwrap();
        assert_eq!((record.version, &record.data[..]), (3, &[1u8, 2][..]));
        let alice = Owner::new("alice").unwrap();
        assert!(store.sessions_of(&alice).await.unwrap().is_empty());
        let outcome = store
            .update_opts(
                &key,
                &key,
                3,
                later(),
                Bytes::from_static(b"x"),
                &WriteOptions::new().with_owner(OwnerChange::Set(
                    Ownership::new(alice.clone(), "migrated").unwrap(),
                )),
            )
            .await
            .unwrap();
        assert_eq!(outcome, UpdateOutcome::Updated { version: 4 });
        assert_eq!(stores[1].sessions_of(&alice).await.unwrap().len(), 1);
        assert_eq!(store.revoke_owner(&alice, None).await.unwrap(), 1);
    })
    .await;
}

/// A row lock waits no longer than an operation may take (whole seconds, at least 1): the
/// server's default of 50 s would outlive the caller's deadline, and the store's retry of a lock
/// wait timeout would never run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_wait_ends_inside_the_operation_deadline() {
    with_factory(|factory| async move {
        for (deadline, expected) in [(5_000, 5), (2_500, 2), (300, 1)] {
            let config = factory
                .base()
                .unwrap()
                .clone()
                .isolated(&conformance_tests::fresh_namespace())
                .unwrap()
                .operation_timeout(std::time::Duration::from_millis(deadline));
            let store = config.open().await.unwrap();
            let seconds: u64 = sqlx::query_scalar("SELECT @@SESSION.innodb_lock_wait_timeout")
                .fetch_one(store.pool())
                .await
                .unwrap();
            assert_eq!(seconds, expected, "deadline {deadline} ms");
            store.drop_namespace().await.unwrap();
        }
    })
    .await;
}
