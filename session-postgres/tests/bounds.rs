//! Every operation bounded, every error saying why: a frozen server (a TCP proxy on loopback
//! that stops forwarding), a server that refuses connections, a server that comes up after the
//! store was opened (lazy mode), a least-privilege role, and servers whose default isolation is
//! repeatable read or serializable.

mod common;

use session_core::SessionStoreExt as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{PgFactory, SCHEMA};
use conformance_tests::StoreFactory;
use session_core::Bytes;
use session_core::time::{Duration as TimeDuration, OffsetDateTime};
use session_core::{CreateOutcome, ErrorKind, SessionId, SessionStore, UpdateOutcome};
use session_postgres::PostgresStore;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

fn later() -> OffsetDateTime {
    OffsetDateTime::now_utc() + TimeDuration::hours(1)
}

/// A TCP proxy on 127.0.0.1 in front of the test server. While `frozen`, it forwards nothing
/// (the kernel still accepts and acknowledges): a server or network that hangs.
struct Proxy {
    frozen: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Starts forwarding `listener`'s connections to `target`.
    fn start(listener: TcpListener, target: String) -> Self {
        let frozen = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&frozen);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (target, flag) = (target.clone(), Arc::clone(&flag));
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&target).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::join!(pump(cr, sw, Arc::clone(&flag)), pump(sr, cw, flag));
                });
            }
        });
        Self { frozen, task }
    }

    fn freeze(&self, frozen: bool) {
        self.frozen.store(frozen, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies `from` to `to` chunk by chunk, holding each chunk while the proxy is frozen.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
) {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        while frozen.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// The test server's `host:port`, and `url` pointed at `port` on 127.0.0.1 instead.
fn via_port(url: &str, port: u16) -> (String, String) {
    let mut parsed = url::Url::parse(url).unwrap();
    let target = format!(
        "{}:{}",
        parsed.host_str().unwrap_or("127.0.0.1"),
        parsed.port().unwrap_or(5432)
    );
    parsed.set_host(Some("127.0.0.1")).unwrap();
    parsed.set_port(Some(port)).unwrap();
    (target, parsed.to_string())
}

/// A port on 127.0.0.1 where nothing listens (bound, then released).
async fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn with_factory<F, Fut>(body: F)
where
    F: FnOnce(Arc<PgFactory>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let factory = Arc::new(PgFactory::from_env());
    if let Some(reason) = factory.unavailable() {
        eprintln!("SKIPPED: {reason}");
        return;
    }
    body(Arc::clone(&factory)).await;
    factory.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_server_is_bounded_by_the_operation_deadline() {
    with_factory(|factory| async move {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (target, url) = via_port(factory.url(), listener.local_addr().unwrap().port());
        let proxy = Proxy::start(listener, target);
        let deadline = Duration::from_millis(500);
        let config = factory
            .fresh_config()
            .url(url)
            .max_connections(2)
            .operation_timeout(deadline);
        let store = PostgresStore::connect(config).await.unwrap();
        let key = SessionId::generate().key();
        assert_eq!(
            store
                .create(&key, later(), Bytes::from_static(b"v1"))
                .await
                .unwrap(),
            CreateOutcome::Created
        );

        proxy.freeze(true);
        for op in ["read", "update", "touch", "delete_expired"] {
            let started = Instant::now();
            let result = match op {
                "read" => store.read(&key).await.map(drop),
                "update" => store
                    .update(&key, &key, 1, later(), Bytes::from_static(b"v2"))
                    .await
                    .map(drop),
                "touch" => store.touch(&key, later()).await.map(drop),
                _ => store.delete_expired().await.map(drop),
            };
            let took = started.elapsed();
            let error = result.expect_err("an operation against a frozen server succeeded");
            assert!(error.is_transient(), "{op}: {error}");
            assert!(
                error.to_string().contains("deadline"),
                "{op}: the error says why: {error}"
            );
            assert!(
                took < deadline + Duration::from_millis(1_500),
                "{op} took {took:?} against a frozen server (deadline {deadline:?})"
            );
        }

        // Unfrozen, the store recovers by itself.
        proxy.freeze(false);
        let started = Instant::now();
        loop {
            match store.read(&key).await {
                Ok(Some(_)) => break,
                Ok(None) => panic!("the session vanished"),
                Err(e) => {
                    assert!(e.is_transient(), "{e}");
                    assert!(
                        started.elapsed() < Duration::from_secs(10),
                        "no recovery: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        // The update may or may not have landed (its outcome was unknown); either way one more
        // compare-and-swap from the version read works.
        let record = store.read(&key).await.unwrap().unwrap();
        assert!(matches!(
            store
                .update(
                    &key,
                    &key,
                    record.version,
                    later(),
                    Bytes::from_static(b"v3")
                )
                .await
                .unwrap(),
            UpdateOutcome::Updated { .. }
        ));
        drop(proxy);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_says_why_at_once() {
    with_factory(|factory| async move {
        let (_, url) = via_port(factory.url(), closed_port().await);
        let config = factory.fresh_config().url(url.clone());
        let started = Instant::now();
        let error = PostgresStore::connect(config.clone()).await.unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "took {:?}",
            started.elapsed()
        );
        assert!(error.is_transient(), "{error}");
        assert!(
            error.to_string().to_lowercase().contains("refused"),
            "the cause is named: {error}"
        );

        // Lazy: opens at once; operations fail with the cause, transiently.
        let store = PostgresStore::connect(config.lazy(true)).await.unwrap();
        let started = Instant::now();
        let error = store.read(&SessionId::generate().key()).await.unwrap_err();
        assert!(error.is_transient(), "{error}");
        assert!(
            error.to_string().to_lowercase().contains("refused"),
            "the cause is named during an outage: {error}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(7),
            "took {:?}",
            started.elapsed()
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lazy_store_works_once_the_server_comes_up() {
    with_factory(|factory| async move {
        let port = closed_port().await;
        let (target, url) = via_port(factory.url(), port);
        // Through the URL: `lazy` and `operation_timeout` are the store's, not the driver's.
        let config = factory
            .fresh_config()
            .url(format!("{url}?lazy=true&operation_timeout=2000"))
            .acquire_timeout(Duration::from_millis(500));
        assert!(
            PostgresStore::connect(config.clone().url(url.clone()))
                .await
                .is_err(),
            "not lazy: fails fast"
        );
        let store = PostgresStore::connect(config).await.unwrap();
        let key = SessionId::generate().key();
        let error = store
            .create(&key, later(), Bytes::from_static(b"early"))
            .await
            .unwrap_err();
        assert!(error.is_transient(), "{error}");

        // The server appears on that port: the same store starts working by itself, table
        // created on first contact.
        let proxy = Proxy::start(
            TcpListener::bind(("127.0.0.1", port)).await.unwrap(),
            target,
        );
        let started = Instant::now();
        let outcome = loop {
            match store
                .create(&key, later(), Bytes::from_static(b"late"))
                .await
            {
                Ok(outcome) => break outcome,
                Err(e) => {
                    assert!(e.is_transient(), "{e}");
                    assert!(
                        started.elapsed() < Duration::from_secs(15),
                        "no recovery: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        assert_eq!(outcome, CreateOutcome::Created);
        assert_eq!(&store.read(&key).await.unwrap().unwrap().data[..], b"late");
        drop(proxy);
    })
    .await;
}

/// Runs `statements` as the test server's superuser.
async fn admin(factory: &PgFactory, statements: &[String]) {
    let pool = sqlx::PgPool::connect(factory.url()).await.unwrap();
    for statement in statements {
        sqlx::query(statement).execute(&pool).await.unwrap();
    }
    pool.close().await;
}

/// `url` logged in as `role`.
fn as_role(url: &str, role: &str) -> String {
    let mut parsed = url::Url::parse(url).unwrap();
    parsed.set_username(role).unwrap();
    parsed.to_string()
}

fn create_role(role: &str, extra: &str) -> String {
    format!(
        "DO $$ BEGIN CREATE ROLE {role} LOGIN {extra}; EXCEPTION WHEN duplicate_object THEN NULL; END $$"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_least_privilege_role_uses_an_existing_table_and_migrate_false_runs_no_ddl() {
    with_factory(|factory| async move {
        let config = factory.fresh_config();
        // The owner creates the table.
        drop(PostgresStore::connect(config.clone()).await.unwrap());
        let role = "session_app_rw";
        admin(
            &factory,
            &[
                create_role(role, ""),
                format!("GRANT USAGE ON SCHEMA {SCHEMA} TO {role}"),
                format!(
                    "GRANT SELECT, INSERT, UPDATE, DELETE ON {SCHEMA}.\"{}\" TO {role}",
                    config.table
                ),
            ],
        )
        .await;
        let app = config.clone().url(as_role(factory.url(), role));
        let store = PostgresStore::connect(app.clone()).await.unwrap();
        let key = SessionId::generate().key();
        assert_eq!(
            store
                .create(&key, later(), Bytes::from_static(b"x"))
                .await
                .unwrap(),
            CreateOutcome::Created
        );
        assert_eq!(
            store
                .update(&key, &key, 1, later(), Bytes::from_static(b"y"))
                .await
                .unwrap(),
            UpdateOutcome::Updated { version: 2 }
        );
        assert_eq!(store.counts().await.unwrap(), (1, 0));
        store.delete(&key).await.unwrap();

        // migrate=false on a table that does not exist: a clear Config error, nothing created.
        let missing = factory.fresh_config().migrate(false);
        let table = missing.table.clone();
        let error = PostgresStore::connect(missing).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config, "{error}");
        assert!(error.to_string().contains("migrate=false"), "{error}");
        let pool = sqlx::PgPool::connect(factory.url()).await.unwrap();
        let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(format!("{SCHEMA}.\"{table}\""))
            .fetch_one(&pool)
            .await
            .unwrap();
        assert!(!exists, "migrate=false created the table");
        pool.close().await;
        // The same through the URL.
        let error = PostgresStore::connect(
            factory
                .fresh_config()
                .url(format!("{}?migrate=false", factory.url())),
        )
        .await
        .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config, "{error}");
    })
    .await;
}

/// A factory logged in as `role`, whose default isolation is not read committed.
struct RoleFactory {
    inner: PgFactory,
    url: String,
}

#[session_core::async_trait]
impl StoreFactory for RoleFactory {
    async fn store(&self) -> Result<Arc<dyn SessionStore>, session_core::Error> {
        let config = self.inner.fresh_config().url(self.url.clone());
        Ok(Arc::new(PostgresStore::connect(config).await?))
    }

    async fn store_pair(
        &self,
    ) -> Result<(Arc<dyn SessionStore>, Arc<dyn SessionStore>), session_core::Error> {
        let config = self.inner.fresh_config().url(self.url.clone());
        let first = PostgresStore::connect(config.clone()).await?;
        let second = PostgresStore::connect(config).await?;
        Ok((Arc::new(first), Arc::new(second)))
    }

    async fn finish(&self) {
        self.inner.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_writers_get_conflict_whatever_the_default_isolation() {
    with_factory(|factory| async move {
        for (role, level) in [
            ("session_repeatable_read", "repeatable read"),
            ("session_serializable", "serializable"),
        ] {
            admin(
                &factory,
                &[
                    create_role(role, "SUPERUSER"),
                    format!("ALTER ROLE {role} SET default_transaction_isolation = '{level}'"),
                ],
            )
            .await;
            let races = RoleFactory {
                inner: PgFactory::from_env(),
                url: as_role(factory.url(), role),
            };
            for behaviour in conformance_tests::behaviours()
                .iter()
                .filter(|b| b.name.starts_with("race_") || b.name.starts_with("histories"))
            {
                let (result, _) = behaviour.check(&races).await;
                if let Err(failure) = result {
                    panic!(
                        "{}: with default isolation {level}: {failure}",
                        behaviour.name
                    );
                }
            }
            races.finish().await;
        }
    })
    .await;
}
