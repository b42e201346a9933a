//! Honest outcomes when a reply or a request is lost (a loopback proxy that runs the request and
//! swallows its answer, or swallows the request): every write answers its true outcome or a
//! transient error, never `IdTaken`, `Conflict`, `NotFound` or `false` for a write that landed,
//! and the store keeps working afterwards. On a single Redis server (`SESSION_TEST_REDIS_URL`)
//! and on a one-node Redis Cluster of the test's own that announces the proxy's port (so every
//! connection of the cluster client goes through it). And a write that replicas did not confirm
//! is never acknowledged, re-read or not.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use session_core::{BackendConfig, SessionStore};
use session_redis::{RedisConfig, RedisStore};
use session_test_support::proxy::{Fault, FaultProxy, every_write};

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

/// A private master and replica, stopped on drop (the replica resumed first if paused).
struct Replicated {
    master: Child,
    replica: Child,
    master_port: u16,
}

impl Drop for Replicated {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.replica.id().to_string()])
            .status();
        for child in [&mut self.master, &mut self.replica] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn server(port: u16, extra: &[&str]) -> Child {
    Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// With `wait_replicas=1` and the only replica paused, a save reaches the master but no
/// replica: the store reports it unconfirmed (an error saying so), and the manager does not
/// acknowledge it, though the master holds the write. (A transient error after such a write,
/// which the manager would otherwise resolve by re-reading the master, is covered by
/// `Capabilities::rereads_confirm_writes`: session-manager's unknown_outcomes tests.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_replicas_did_not_confirm_is_never_acknowledged() {
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
        return;
    }
    let (master_port, replica_port) = (free_port(), free_port());
    let master = server(master_port, &[]);
    let replica = server(
        replica_port,
        &["--replicaof", "127.0.0.1", &master_port.to_string()],
    );
    let servers = Replicated {
        master,
        replica,
        master_port,
    };
    let started = Instant::now();
    while !cli(servers.master_port, &["INFO", "replication"]).contains("connected_slaves:1")
        || !cli(replica_port, &["INFO", "replication"]).contains("master_link_status:up")
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the replica did not sync"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let config = RedisConfig::from_url(&format!("redis://127.0.0.1:{master_port}"))
        .unwrap()
        .key_prefix("replicas:")
        .wait_replicas(1, Duration::from_millis(300));
    let store = std::sync::Arc::new(RedisStore::connect(config).await.unwrap());
    assert!(!store.capabilities().rereads_confirm_writes);
    let manager = session_manager::SessionManager::new(std::sync::Arc::clone(&store));
    let mut state = manager.create(&b"v1"[..]).await.unwrap();

    let paused = Command::new("kill")
        .args(["-STOP", &servers.replica.id().to_string()])
        .status()
        .unwrap();
    assert!(paused.success());
    state.set_data(&b"v2"[..]);
    let error = manager.save(&mut state).await.unwrap_err();
    assert!(
        error.to_string().contains("replicas acknowledged"),
        "the error says why: {error}"
    );
    assert_eq!(state.version(), 1, "the save was acknowledged");
    let on_master = store.read(&state.id().key()).await.unwrap().unwrap();
    assert_eq!(
        on_master.version, 2,
        "the master holds the unconfirmed write"
    );
    assert!(
        manager.create(&b"x"[..]).await.is_err(),
        "a create no replica confirmed is not acknowledged either"
    );
}

/// Under a frozen server every operation answers within the response timeout plus a tenth (it
/// stops at its first command that gets no answer), the manager's save with its re-read too; on
/// a single server and on the one-node cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_answers_within_its_deadline_under_a_frozen_server() {
    let deadline = Duration::from_millis(500);
    let slack = Duration::from_millis(250);
    let mut stores = Vec::new();
    if let Some((store, proxy)) = single().await {
        stores.push((store, proxy, None));
    }
    if let Some((store, proxy, node)) = cluster().await {
        stores.push((store, proxy, Some(node)));
    }
    for (store, proxy, _node) in stores {
        let config = store.config().clone().response_timeout(deadline);
        let store = std::sync::Arc::new(RedisStore::connect(config).await.unwrap());
        assert_eq!(store.capabilities().deadline, Some(deadline));
        let manager = session_manager::SessionManager::new(std::sync::Arc::clone(&store));
        let mut state = manager.create(&b"v1"[..]).await.unwrap();
        session_test_support::proxy::every_operation_within(
            &*store,
            &proxy,
            deadline,
            slack,
            || async move {
                state.set_data(&b"v2"[..]);
                manager.save(&mut state).await
            },
        )
        .await;
    }
}
