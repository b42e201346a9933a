//! Honest outcomes when a reply or a request is lost (a loopback proxy that runs the request and
//! swallows its answer, or swallows the request): every write answers its true outcome or a
//! transient error, never `IdTaken`, `Conflict`, `NotFound` or `false` for a write that landed,
//! and the store keeps working afterwards. On a single Redis server (`SESSION_TEST_REDIS_URL`)
//! and on a one-node Redis Cluster of the test's own that announces the proxy's port (so every
//! connection of the cluster client goes through it).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use session_core::time::{Duration as TimeDuration, OffsetDateTime};
use session_core::{
    BackendConfig, Bytes, CreateOutcome, Error, Owner, OwnerChange, Ownership, SessionId,
    SessionKey, SessionStore, SessionStoreExt, UpdateOutcome, WriteOptions,
};
use session_redis::{RedisConfig, RedisStore};
use session_test_support::proxy::FaultProxy;

fn later(minutes: i64) -> OffsetDateTime {
    OffsetDateTime::now_utc() + TimeDuration::minutes(minutes)
}

/// A key whose first byte is `first` (the slot of a cluster rotation).
fn key_in(first: u8) -> SessionKey {
    loop {
        let key = SessionId::generate().key();
        if key.as_bytes()[0] == first {
            return key;
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Fault {
    /// The request runs; its reply is lost and the connection cut.
    Reply,
    /// The request never reaches the server; the connection is cut.
    Request,
}

fn arm(proxy: &FaultProxy, fault: Fault) {
    match fault {
        Fault::Reply => proxy.drop_next_reply(),
        Fault::Request => proxy.drop_next_request(),
    }
}

/// An error after a fault must say that the outcome is unknown (transient).
fn transient(what: &str, error: &Error) {
    assert!(
        error.is_transient(),
        "{what}: a lost reply or request must be a transient error, got {error:?}"
    );
}

/// Runs `op` with `fault` armed; the proxy is disarmed afterwards and the store gets a moment to
/// reconnect.
async fn faulty<T>(
    proxy: &FaultProxy,
    fault: Fault,
    op: impl std::future::Future<Output = T>,
) -> T {
    arm(proxy, fault);
    let answer = op.await;
    proxy.disarm();
    answer
}

/// Every write of the contract under `fault`; panics on a dishonest outcome.
async fn every_write(store: &RedisStore, proxy: &FaultProxy, fault: Fault) {
    let data = Bytes::from_static(b"payload");
    let cuts = proxy.cuts();

    // create of a fresh key: Created (and stored) or transient; never IdTaken.
    let k = SessionId::generate().key();
    match faulty(proxy, fault, store.create(&k, later(10), data.clone())).await {
        Ok(CreateOutcome::Created) => assert!(store.read(&k).await.unwrap().is_some()),
        Ok(other) => panic!("{fault:?}: create of a fresh key answered {other:?}"),
        Err(e) => transient("create", &e),
    }

    // update in place from version 1.
    let k = SessionId::generate().key();
    assert_eq!(
        store.create(&k, later(10), data.clone()).await.unwrap(),
        CreateOutcome::Created
    );
    match faulty(
        proxy,
        fault,
        store.update(&k, &k, 1, later(10), data.clone()),
    )
    .await
    {
        Ok(UpdateOutcome::Updated { version: 2 }) => {
            assert_eq!(store.read(&k).await.unwrap().unwrap().version, 2)
        }
        Ok(other) => panic!("{fault:?}: a save from the stored version answered {other:?}"),
        Err(e) => transient("update", &e),
    }

    // rotation within one slot, a large value (the staged path) and a small one.
    for size in [16, 4096] {
        let previous = SessionId::generate().key();
        let current = key_in(previous.as_bytes()[0]);
        let value = Bytes::from(vec![7u8; size]);
        assert_eq!(
            store
                .create(&previous, later(10), value.clone())
                .await
                .unwrap(),
            CreateOutcome::Created
        );
        let answer = faulty(
            proxy,
            fault,
            store.update(&current, &previous, 1, later(10), value.clone()),
        )
        .await;
        match answer {
            Ok(UpdateOutcome::Updated { version: 2 }) => {
                assert!(store.read(&previous).await.unwrap().is_none());
                assert_eq!(store.read(&current).await.unwrap().unwrap().version, 2);
            }
            Ok(other) => panic!("{fault:?}: a rotation ({size} B) answered {other:?}"),
            Err(e) => transient("rotation", &e),
        }
    }

    // touch of a live session.
    let k = SessionId::generate().key();
    let _ = store.create(&k, later(10), data.clone()).await.unwrap();
    match faulty(proxy, fault, store.touch(&k, later(20))).await {
        Ok(true) => {}
        Ok(false) => panic!("{fault:?}: touch of a live session answered false"),
        Err(e) => transient("touch", &e),
    }

    // delete.
    let k = SessionId::generate().key();
    let _ = store.create(&k, later(10), data.clone()).await.unwrap();
    match faulty(proxy, fault, store.delete(&k)).await {
        Ok(()) => assert!(store.read(&k).await.unwrap().is_none()),
        Err(e) => transient("delete", &e),
    }

    // owned create, owned rotation, and a revoke of two sessions.
    let owner = Owner::new(format!("ada-{}", SessionId::generate().key().to_hex())).unwrap();
    let owned = WriteOptions::new().with_owner(OwnerChange::Set(Ownership::of(owner.clone())));
    let k = SessionId::generate().key();
    match faulty(
        proxy,
        fault,
        store.create_opts(&k, later(10), data.clone(), &owned),
    )
    .await
    {
        Ok(CreateOutcome::Created) => {}
        Ok(other) => panic!("{fault:?}: an owned create of a fresh key answered {other:?}"),
        Err(e) => transient("owned create", &e),
    }
    let previous = SessionId::generate().key();
    let current = key_in(previous.as_bytes()[0]);
    let _ = store
        .create_opts(&previous, later(10), data.clone(), &owned)
        .await
        .unwrap();
    match faulty(
        proxy,
        fault,
        store.update_opts(&current, &previous, 1, later(10), data.clone(), &owned),
    )
    .await
    {
        Ok(UpdateOutcome::Updated { version: 2 }) => {}
        Ok(other) => panic!("{fault:?}: an owned rotation answered {other:?}"),
        Err(e) => transient("owned rotation", &e),
    }
    let other = Owner::new(format!("bob-{}", SessionId::generate().key().to_hex())).unwrap();
    let bob = WriteOptions::new().with_owner(OwnerChange::Set(Ownership::of(other.clone())));
    for _ in 0..2 {
        let k = SessionId::generate().key();
        let _ = store
            .create_opts(&k, later(10), data.clone(), &bob)
            .await
            .unwrap();
    }
    match faulty(proxy, fault, store.revoke_owner(&other, None)).await {
        Ok(count) => {
            assert_eq!(count, 2, "{fault:?}: revoke counted {count} of 2");
            assert!(store.sessions_of(&other).await.unwrap().is_empty());
        }
        Err(e) => transient("revoke", &e),
    }
    assert!(
        store.revoke_owner(&other, None).await.is_ok(),
        "the store works after the faults"
    );
    assert!(
        proxy.cuts() > cuts,
        "{fault:?}: the proxy cut no connection"
    );
}

/// The single server's store through a proxy, or `None` (loudly) without a server.
async fn single() -> Option<(RedisStore, FaultProxy)> {
    let url = session_test_support::server_url(session_test_support::REDIS)?;
    let parsed = url::Url::parse(&url).unwrap();
    let target = format!(
        "{}:{}",
        parsed.host_str().unwrap_or("127.0.0.1"),
        parsed.port().unwrap_or(6379)
    );
    let proxy = FaultProxy::start(target).await.unwrap();
    let mut via = parsed.clone();
    via.set_host(Some("127.0.0.1")).unwrap();
    via.set_port(Some(proxy.port())).unwrap();
    let config = RedisConfig::from_url(via.as_str())
        .unwrap()
        .key_prefix(format!("{}:", conformance_tests::fresh_namespace()))
        .response_timeout(Duration::from_secs(2));
    Some((RedisStore::connect(config).await.unwrap(), proxy))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_server_writes_are_honest_when_replies_or_requests_are_lost() {
    let Some((store, proxy)) = single().await else {
        return;
    };
    for fault in [Fault::Reply, Fault::Request] {
        every_write(&store, &proxy, fault).await;
    }
    store.clear().await.unwrap();
}

/// A one-node Redis Cluster announcing the proxy's port; stopped on drop.
struct OneNodeCluster {
    child: Child,
    dir: PathBuf,
}

impl Drop for OneNodeCluster {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if port < 50_000 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

fn cli(port: u16, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A one-node cluster behind a proxy, or `None` (loudly; a failure under CI) without
/// `redis-server`.
async fn cluster() -> Option<(RedisStore, FaultProxy, OneNodeCluster)> {
    if Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        assert!(
            !session_test_support::servers_required(),
            "redis-server is not installed"
        );
        eprintln!("SKIPPED: redis-server is not installed");
        return None;
    }
    let port = free_port();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = FaultProxy::on(listener, format!("127.0.0.1:{port}"));
    let dir = std::env::temp_dir().join(format!("reply-loss-{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--cluster-enabled", "yes", "--cluster-config-file"])
        .arg(dir.join("nodes.conf"))
        .args(["--cluster-announce-ip", "127.0.0.1"])
        .args(["--cluster-announce-port", &proxy.port().to_string()])
        .args(["--save", "", "--appendonly", "no", "--dir"])
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let node = OneNodeCluster { child, dir };
    let started = Instant::now();
    while !cli(port, &["PING"]).contains("PONG") {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "redis-server did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cli(port, &["CLUSTER", "ADDSLOTSRANGE", "0", "16383"]);
    while !cli(port, &["CLUSTER", "INFO"]).contains("cluster_state:ok") {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the cluster did not form"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let config = RedisConfig::from_url(&format!("redis+cluster://127.0.0.1:{}", proxy.port()))
        .unwrap()
        .key_prefix("reply_loss:")
        .response_timeout(Duration::from_secs(2));
    let store = RedisStore::connect(config).await.unwrap();
    Some((store, proxy, node))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_writes_are_honest_when_replies_or_requests_are_lost() {
    let Some((store, proxy, _node)) = cluster().await else {
        return;
    };
    for fault in [Fault::Reply, Fault::Request] {
        every_write(&store, &proxy, fault).await;
    }
}
